"""Tests for explorer.dataset.yolo: data.yaml and bare images/labels layouts, splits, list files, class names,
label lines named by file and line, segments, sizes from headers with Ultralytics' EXIF rule, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.dataset.yolo import label_path, load_yolo
from tests.dataset.format_cases import image, text, yolo_pair


def kinds(ds) -> list[str]:
    return ds.problems["kind"].tolist()


def test_label_path_follows_ultralytics() -> None:
    assert label_path("/d/images/train/images/a.b.JPG").as_posix() == "/d/images/train/labels/a.b.txt"
    assert label_path("/d/pics/a.png").as_posix() == "/d/pics/a.txt"  # no /images/: beside the image


def test_bare_pair_empty_and_missing_label_files(tmp_path) -> None:
    root = yolo_pair(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n2 0.25 0.5 0.1 0.2\n", "b": "", "c": None})
    ds = load_yolo(root)
    assert ds.file_names == ["images/a.jpg", "images/b.jpg", "images/c.jpg"]
    assert ds.widths.tolist() == [100] * 3 and ds.heights.tolist() == [50] * 3
    assert np.diff(ds.ann_offsets).tolist() == [2, 0, 0]
    np.testing.assert_array_equal(ds.boxes_xyxy, np.array([[25, 12.5, 75, 37.5], [20, 20, 30, 30]], np.float32))
    assert ds.boxes_xyxy.dtype == np.float32 and not ds.iscrowd.any()
    assert ds.category_ids.tolist() == [0, 2] and ds.category_names == ["0", "2"]  # no names: the ids found
    assert kinds(ds) == ["no_label_file"] and "1 image(s) have no label file" in ds.problems["message"][0]
    assert ds.image_root == str(root)


def test_data_yaml_names_splits_and_list_files(tmp_path) -> None:
    for split, names in (("train", ["a", "b"]), ("val", ["c"])):
        for n in names:
            image(tmp_path / "images" / split / f"{n}.jpg", 64, 32)
            text(tmp_path / "labels" / split / f"{n}.txt", "1 0.5 0.5 1.0 1.0\n")
    text(tmp_path / "lists" / "some.txt", "../images/train/b.jpg\n\n./../images/val/c.jpg\n")
    data = "path: .\ntrain: images/train\nval: [images/val]\ntest: lists/some.txt\nnames: [cat, dog]\n"
    yaml_path = text(tmp_path / "data.yaml", data)
    with pytest.raises(ValueError, match="has the splits train, val, test: choose one"):
        load_yolo(yaml_path)
    with pytest.raises(ValueError, match=r"has no split 'valid' \(it has: train, val, test\)"):
        load_yolo(yaml_path, split="valid")
    train = load_yolo(yaml_path, split="train")
    assert train.file_names == ["images/train/a.jpg", "images/train/b.jpg"] and train.name == "data.yaml (train)"
    assert train.category_ids.tolist() == [0, 1] and train.category_names == ["cat", "dog"]
    assert train.ann_category.tolist() == [1, 1]
    np.testing.assert_array_equal(train.boxes_xyxy, np.array([[0, 0, 64, 32]] * 2, np.float32))
    assert load_yolo(yaml_path, split="val").file_names == ["images/val/c.jpg"]
    assert load_yolo(yaml_path, split="test").file_names == ["images/train/b.jpg", "images/val/c.jpg"]


@pytest.mark.parametrize(
    ("names", "ids", "expected"),
    [
        ("names: {0: cat, 1: dog}", [0, 1], ["cat", "dog"]),
        ("names: {'1': dog, '0': cat}", [0, 1], ["cat", "dog"]),
        ("nc: 3", [0, 1, 2], ["class_0", "class_1", "class_2"]),
    ],
)
def test_names_as_dict_or_nc(tmp_path, names, ids, expected) -> None:
    yolo_pair(tmp_path, {"a": "1 0.5 0.5 0.5 0.5\n"})
    ds = load_yolo(text(tmp_path / "data.yaml", f"train: images\n{names}\n"))
    assert ds.category_ids.tolist() == ids and ds.category_names == expected


def test_bad_lines_are_named_by_file_and_line_and_integral_floats_are_class_ids(tmp_path) -> None:
    lines = ["1.0 0.5 0.5 0.2 0.2", "x 0.5 0.5 0.1 0.1", "0 0.5 0.5 0.1", "0 320 240 50 50", "1e0 0.5 0.5 0.4 0.4"]
    yolo_pair(tmp_path, {"a": "\n".join(lines)})
    ds = load_yolo(text(tmp_path / "data.yaml", "train: images\nnames: [a, b]\n"))
    assert ds.ann_category.tolist() == [1, 1]
    bad = ds.problems[ds.problems["kind"] == "invalid_line"]["message"].tolist()
    assert [m.split(":")[0] for m in bad] == ["labels/a.txt line 2", "labels/a.txt line 3", "labels/a.txt line 4"]
    assert "class must be a non-negative integer id, got x" in bad[0] and "look like pixels" in bad[2]
    assert (ds.problems.loc[ds.problems["kind"] == "invalid_line", "image_id"] == 1).all()


def test_segment_lines_become_their_bounding_box_with_a_notice(tmp_path) -> None:
    yolo_pair(tmp_path, {"a": "0 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n0 0.5 0.5 0.2 0.2 0.3 0.3 0.4\n"})
    ds = load_yolo(tmp_path)
    np.testing.assert_array_equal(ds.boxes_xyxy, np.array([[10, 10, 50, 30]], np.float32))
    assert kinds(ds) == ["invalid_line", "segment"]
    assert "odd number of segment coordinates" in ds.problems["message"][0]
    assert (
        "1 segment (polygon) line(s) reduced to their bounding box (e.g. labels/a.txt line 1)"
        in ds.problems["message"][1]
    )


def test_exif_rotated_jpeg_size_follows_ultralytics(tmp_path) -> None:
    image(tmp_path / "images" / "r6.jpg", 100, 50, orientation=6)  # rotated 90°: shown 50 x 100
    image(tmp_path / "images" / "r3.jpg", 100, 50, orientation=3)  # rotated 180°: same size
    image(tmp_path / "images" / "r5.jpg", 100, 50, orientation=5)  # transposed: Ultralytics leaves it
    text(tmp_path / "labels" / "r6.txt", "0 0.5 0.5 1 1\n")
    ds = load_yolo(tmp_path)
    assert ds.file_names == ["images/r3.jpg", "images/r5.jpg", "images/r6.jpg"]
    assert ds.widths.tolist() == [100, 100, 50] and ds.heights.tolist() == [50, 50, 100]
    np.testing.assert_array_equal(ds.boxes_xyxy, np.array([[0, 0, 50, 100]], np.float32))


def test_unreadable_image_is_a_problem_row_and_left_out(tmp_path) -> None:
    yolo_pair(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n"})
    text(tmp_path / "images" / "broken.jpg", "not a jpeg")
    text(tmp_path / "labels" / "broken.txt", "0 0.5 0.5 0.5 0.5\n")
    ds = load_yolo(tmp_path)
    assert ds.file_names == ["images/a.jpg"] and ds.num_annotations == 1 and ds.counts["images_in_file"] == 2
    assert kinds(ds) == ["image_unreadable"] and "broken.jpg" in ds.problems["message"][0]


def test_boxes_a_little_outside_are_clamped_quietly_and_far_outside_with_a_warning(tmp_path) -> None:
    yolo_pair(tmp_path, {"a": "0 0.9 0.5 0.2000002 0.2\n0 0.95 0.5 0.2 0.2\n0 1.5 0.5 0.2 0.2\n"})
    ds = load_yolo(tmp_path)
    assert ds.boxes_xyxy[:, 2].tolist() == [100.0, 100.0]
    assert kinds(ds) == ["box_outside_image", "box_outside_image"]
    assert ds.problems["severity"].tolist() == ["warning", "error"]
    assert ds.problems["message"][0].startswith("labels/a.txt line 2: box [85, 20, 105, 30] extends 5 px")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("- train\n- val\n", r"data.yaml is not a YOLO data.yaml: the top level is a list, not a mapping"),
        ("just text", r"data.yaml is not a YOLO data.yaml: the top level is a str"),
        ("train: [images\n", r"data.yaml is not valid YAML at line 2"),
        ("train: images\nnames: cat\n", r"'names' must be a list or a mapping"),
        ("train: images\nnames: [a]\nnc: 2\n", r"'nc' is 2 but 'names' has 1 entries"),
        ("train: nowhere\n", r"split 'train' points to .*nowhere, which is not a folder, list or image"),
    ],
)
def test_bad_yaml_is_a_value_error_naming_the_file(tmp_path, content, match) -> None:
    yolo_pair(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n"})
    with pytest.raises(ValueError, match=match):
        load_yolo(text(tmp_path / "data.yaml", content))


def test_names_that_do_not_cover_the_class_ids(tmp_path) -> None:
    yolo_pair(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n", "b": "0 0.5 0.5 0.5 0.5\n3 0.5 0.5 0.5 0.5\n"})
    with pytest.raises(ValueError, match=r"labels/b.txt line 2: class 3 is not in the names of .*data.yaml \(ids 0..1"):
        load_yolo(text(tmp_path / "data.yaml", "train: images\nnames: [a, b]\n"))


def test_labels_for_missing_images(tmp_path) -> None:
    yolo_pair(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n"})
    text(tmp_path / "labels" / "gone.txt", "0 0.5 0.5 0.5 0.5\n")
    text(tmp_path / "labels" / "classes.txt", "cat\n")  # labelImg's class list is not a label file
    with pytest.raises(ValueError, match=r"1 label file\(s\) in .*labels have no image \(e.g. .*gone.txt\)"):
        load_yolo(tmp_path)


def test_classes_txt_names_a_bare_pair_and_split_subfolders(tmp_path) -> None:
    for split in ("train", "val"):
        image(tmp_path / "images" / split / "a.jpg")
        text(tmp_path / "labels" / split / "a.txt", "1 0.5 0.5 0.5 0.5\n")
    text(tmp_path / "classes.txt", "cat\ndog\n")
    with pytest.raises(ValueError, match=r"images has the splits train, val: choose one"):
        load_yolo(tmp_path)
    ds = load_yolo(tmp_path, split="val")
    assert ds.file_names == ["images/val/a.jpg"] and ds.category_names == ["cat", "dog"]


def test_yaml_path_is_relative_to_the_yaml_and_falls_back_to_its_folder(tmp_path) -> None:
    yolo_pair(tmp_path / "set", {"a": "0 0.5 0.5 0.5 0.5\n"})
    outside = text(tmp_path / "configs" / "set.yaml", "path: ../set\ntrain: images\n")
    assert load_yolo(outside).image_root == str(tmp_path / "set")
    inside = text(tmp_path / "set" / "data.yaml", "path: coco8\ntrain: images\n")  # Ultralytics-style root name
    assert load_yolo(inside).file_names == ["images/a.jpg"]


def test_yaml_aliases_cannot_blow_up_names_or_path(tmp_path) -> None:
    yolo_pair(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n"})
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for k in range(1, 9):
        levels.append(f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 10) + "]")
    bomb = "\n".join(levels)  # 10**9 strings if expanded
    with pytest.raises(ValueError, match="class names must be plain strings or numbers"):
        load_yolo(text(tmp_path / "data.yaml", f"{bomb}\ntrain: images\nnames: [*l8]\n"))
    with pytest.raises(ValueError, match="'path' must be a folder name, got a list"):
        load_yolo(text(tmp_path / "data.yaml", f"{bomb}\ntrain: images\npath: *l8\n"))


def test_root_guard_refuses_paths_that_leave_it(tmp_path) -> None:
    """With ``root=``, a split entry, a list line or a symlinked image that resolves outside it is a ValueError."""
    root = yolo_pair(tmp_path / "data" / "set", {"a": "0 0.5 0.5 0.5 0.5\n"})
    image(tmp_path / "secret" / "images" / "s.jpg")
    assert load_yolo(root, root=tmp_path / "data").num_images == 1
    entry = text(root / "data.yaml", "train: ../../secret/images\nnames: [x]\n")
    assert load_yolo(entry).num_images == 1  # without a root, as Ultralytics reads it
    with pytest.raises(ValueError, match=r"data.yaml: 'train' entry .*secret/images is outside"):
        load_yolo(entry, root=tmp_path / "data")
    listed = text(root / "list.yaml", "train: l.txt\nnames: [x]\n")
    text(root / "l.txt", "images/a.jpg\n../../secret/images/s.jpg\n")
    with pytest.raises(ValueError, match=r"secret/images/s.jpg is outside"):
        load_yolo(listed, root=tmp_path / "data")
    (root / "images" / "b.jpg").symlink_to(tmp_path / "secret" / "images" / "s.jpg")
    with pytest.raises(ValueError, match=r"images/b.jpg is outside"):
        load_yolo(root, root=tmp_path / "data")
