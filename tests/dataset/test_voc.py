"""Tests for explorer.dataset.voc: detectron2's coordinate rule, difficult objects as crowd regions, class names,
sizes checked against the image header, splits, and hostile or foreign XML."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.dataset.voc import XmlRefused, load_voc, safe_xml
from tests.dataset.format_cases import image, text, voc_object, voc_xml


def kinds(ds) -> list[str]:
    return ds.problems["kind"].tolist()


def write_voc(root, records: dict[str, str], images: dict[str, tuple[int, int]] | None = None):
    for stem, xml in records.items():
        text(root / "Annotations" / f"{stem}.xml", xml)
    for name, size in (images or {}).items():
        image(root / "JPEGImages" / name, *size)
    return root


def test_one_based_corners_become_continuous_coordinates(tmp_path) -> None:
    """xmin = 1 .. xmax = W covers the whole row: [0, W] (detectron2's load_voc_instances); floats are kept."""
    objects = voc_object("dog", (1, 1, 100, 50)) + voc_object("cat", (10.5, 20, 30.25, 40))
    write_voc(tmp_path, {"a": voc_xml("a.jpg", (100, 50), objects)}, {"a.jpg": (100, 50)})
    ds = load_voc(tmp_path)
    np.testing.assert_array_equal(ds.boxes_xyxy, np.array([[0, 0, 100, 50], [9.5, 19, 30.25, 40]], np.float32))
    assert ds.category_names == ["cat", "dog"] and ds.category_ids.tolist() == [1, 2]  # sorted names, 1-based
    assert ds.ann_category.tolist() == [2, 1] and ds.file_names == ["a.jpg"] and ds.problems.empty
    assert ds.image_root == str(tmp_path / "JPEGImages")


@pytest.mark.parametrize(("as_crowd", "crowd"), [(True, [False, True, False]), (False, [False, False, False])])
def test_difficult_objects_are_crowd_regions_by_default(tmp_path, as_crowd, crowd) -> None:
    objects = (
        voc_object("a", (1, 1, 10, 10), 0) + voc_object("a", (5, 5, 20, 20), 1) + voc_object("a", (2, 2, 9, 9), None)
    )
    write_voc(tmp_path, {"x": voc_xml("x.jpg", (64, 48), objects)})
    ds = load_voc(tmp_path, difficult_as_crowd=as_crowd)
    assert ds.iscrowd.tolist() == crowd
    assert ds.images_frame()["crowd_boxes"].tolist() == [sum(crowd)]
    assert kinds(ds) == (["crowd"] if as_crowd else [])


def test_given_classes_fix_the_ids_and_other_names_are_dropped(tmp_path) -> None:
    objects = voc_object("dog", (1, 1, 10, 10)) + voc_object("bird", (1, 1, 10, 10))
    write_voc(tmp_path, {"a": voc_xml("a.jpg", (64, 48), objects)})
    ds = load_voc(tmp_path, classes=["dog", "cat"])
    assert ds.category_names == ["dog", "cat"] and ds.ann_category.tolist() == [1]
    assert kinds(ds) == ["invalid_object"]
    assert (
        ds.problems["message"][0]
        == "Annotations/a.xml object 2 has the class 'bird', not in the given classes; dropped"
    )


def test_size_is_checked_against_the_image_and_taken_from_it_when_missing(tmp_path) -> None:
    records = {
        "a": voc_xml("a.jpg", (100, 50), voc_object("x", (1, 1, 10, 10))),
        "b": voc_xml("b.jpg", None, voc_object("x", (1, 1, 10, 10))),
        "c": voc_xml("c.jpg", None),
        "d": voc_xml("d.jpg", (30, 20)),
    }
    write_voc(tmp_path, records, {"a.jpg": (90, 50), "b.jpg": (64, 48)})
    ds = load_voc(tmp_path)
    assert ds.file_names == ["a.jpg", "b.jpg", "d.jpg"]
    assert ds.widths.tolist() == [100, 64, 30] and ds.heights.tolist() == [50, 48, 20]
    assert kinds(ds) == ["size_mismatch", "image_size", "image_size"]
    messages = ds.problems["message"].tolist()
    assert "<size> says 100x50 but a.jpg is 90x50; the XML's size is used" in messages[0]
    assert "b.xml: no valid <size>; 64x48 from the image" in messages[1]
    assert "c.xml: no valid <size> and the image is missing; left out" in messages[2]


def test_splits_from_image_sets(tmp_path) -> None:
    write_voc(tmp_path, {s: voc_xml(f"{s}.jpg", (64, 48)) for s in ("a", "b", "c")})
    text(tmp_path / "ImageSets" / "Main" / "val.txt", "c\na\nmissing\n")
    text(tmp_path / "ImageSets" / "Main" / "dog_val.txt", "c  1\n")  # a class list, not a split
    assert load_voc(tmp_path).file_names == ["a.jpg", "b.jpg", "c.jpg"]
    ds = load_voc(tmp_path, split="val")
    assert ds.file_names == ["c.jpg", "a.jpg"] and ds.name == f"{tmp_path.name} (val)"
    assert kinds(ds) == ["missing_annotation"]
    with pytest.raises(ValueError, match=r"has no ImageSets/Main/train.txt \(splits: val\)"):
        load_voc(tmp_path, split="train")


def test_bad_objects_and_broken_xml_are_problem_rows(tmp_path) -> None:
    bad = "<object><name>x</name><bndbox><xmin>a</xmin></bndbox></object><object><bndbox/></object>"
    write_voc(
        tmp_path, {"a": voc_xml("a.jpg", (64, 48), bad), "b": "<annotation><size>", "c": voc_xml("c.jpg", (64, 48))}
    )
    ds = load_voc(tmp_path)
    assert ds.file_names == ["a.jpg", "c.jpg"]
    assert kinds(ds) == ["invalid_xml", "invalid_object", "invalid_object"]
    assert ds.problems["message"][0].startswith("Annotations/b.xml: not well-formed XML")
    assert "object 1 has no usable <bndbox>" in ds.problems["message"][1]
    assert "object 2 has no <name>" in ds.problems["message"][2]


def test_xml_that_is_not_voc_is_a_value_error(tmp_path) -> None:
    write_voc(tmp_path, {"a": "<svg><rect/></svg>"})
    with pytest.raises(ValueError, match=r"a.xml is not a Pascal VOC annotation: its root element is <svg>"):
        load_voc(tmp_path)
    with pytest.raises(ValueError, match="has no Annotations/ folder"):
        load_voc(tmp_path / "Annotations")


@pytest.mark.parametrize(
    ("xml", "what"),
    [
        (
            b'<!DOCTYPE a [<!ENTITY x "xx"><!ENTITY y "&x;&x;&x;&x;&x;&x;&x;&x;">]><annotation>&y;</annotation>',
            "DOCTYPE",
        ),
        (b'<!DOCTYPE annotation SYSTEM "file:///etc/passwd"><annotation/>', "DOCTYPE"),
    ],
)
def test_entity_declarations_are_refused(tmp_path, xml, what) -> None:
    with pytest.raises(XmlRefused, match=f"declares an XML {what}"):
        safe_xml(xml, "a.xml")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_bytes(xml)
    with pytest.raises(ValueError, match="refused"):
        load_voc(tmp_path)


def test_safe_xml_reads_other_encodings_and_attributes() -> None:
    root = safe_xml(
        '<?xml version="1.0" encoding="UTF-16"?><annotation k="v"><n>é</n></annotation>'.encode("utf-16"), "a"
    )
    assert root.tag == "annotation" and root.get("k") == "v" and root.find("n").text == "é"


def test_root_guard_refuses_listed_ids_and_images_outside_it(tmp_path) -> None:
    root = tmp_path / "data" / "VOC"
    text(root / "Annotations" / "a.xml", voc_xml("a.jpg", objects=voc_object("cat", (1, 1, 10, 10))))
    text(tmp_path / "secret.xml", voc_xml("s.jpg", objects=voc_object("dog", (1, 1, 10, 10))))
    text(root / "ImageSets" / "Main" / "val.txt", "a\n../../../secret\n")
    assert load_voc(root, split="val").num_images == 2  # without a root the listed id is read as given
    with pytest.raises(ValueError, match=r"Annotations/../../../secret.xml is outside"):
        load_voc(root, split="val", root=tmp_path / "data")
    assert load_voc(root, root=tmp_path / "data").num_images == 1
    (root / "JPEGImages").mkdir()
    (root / "JPEGImages" / "a.jpg").symlink_to(image(tmp_path / "outside.jpg"))
    with pytest.raises(ValueError, match=r"JPEGImages/a.jpg is outside"):
        load_voc(root, root=tmp_path / "data")
    xml = voc_xml("../../../outside.jpg", size=None, objects=voc_object("cat", (1, 1, 10, 10)))
    text(root / "Annotations" / "a.xml", xml)
    (root / "JPEGImages" / "a.jpg").unlink()
    # a <filename> is a bare name: never a path out of JPEGImages/ (with or without a root)
    assert load_voc(root).num_images == 0
