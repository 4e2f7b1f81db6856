"""``python -m explorer scan``: summary, progress, outputs, and clean failures on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from explorer import synthetic
from explorer.__main__ import main


@pytest.fixture(scope="module")
def annotations(tmp_path_factory):
    coco, _ = synthetic.make_dataset(8, seed=3)
    coco["annotations"].append({"id": 999, "image_id": 1, "category_id": 1, "bbox": [1, 2, 0, 5], "iscrowd": 0})
    path = tmp_path_factory.mktemp("cli") / "ann.json"
    path.write_text(json.dumps(coco))
    return path


def test_scan_prints_summary_and_writes_tables(annotations, tmp_path, capsys):
    out, boxes, classes, problems = (tmp_path / n for n in ("i.parquet", "b.csv", "c.csv", "p.csv"))
    argv = ["scan", str(annotations), "--out", str(out), "--boxes-out", str(boxes), "--classes-out", str(classes)]
    assert main([*argv, "--problems-out", str(problems)]) == 0
    captured = capsys.readouterr()
    assert "images" in captured.out and "hard negatives" in captured.out and "P7" in captured.out
    assert "empty_box" in captured.out  # the validation summary
    assert "scanning" in captured.err  # tqdm progress bar on stderr
    images = pd.read_parquet(out)
    assert len(images) == 8 and {"positives", "easy_negatives", "pos_P3"} <= set(images.columns)
    assert len(pd.read_csv(boxes)) == images["boxes"].sum()
    assert len(pd.read_csv(classes)) == len(synthetic.CLASS_NAMES)
    assert pd.read_csv(problems)["kind"].tolist() == ["empty_box"]


def test_scan_options_change_the_labels(annotations, tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["scan", str(annotations), "--out", str(a), "--quiet"]) == 0
    argv = ["scan", str(annotations), "--out", str(b), "--quiet", "--pos", "0.6", "--neg", "0.3", "--min-size", "600"]
    assert main([*argv, "--max-size", "1000", "--no-low-quality", "--device", "cpu"]) == 0
    capsys.readouterr()
    da, db = pd.read_csv(a), pd.read_csv(b)
    assert da["positives"].sum() > db["positives"].sum()
    assert (db["input_height"] == 600).all()


def test_custom_anchor_sizes(annotations, capsys):
    argv = ["scan", str(annotations), "--quiet", "--sizes", "24,36;48,72;96,144", "--strides", "8,16,32"]
    assert main([*argv, "--ratios", "1"]) == 0
    out = capsys.readouterr().out
    assert "P5" in out and "P6" not in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"images": [', "invalid JSON at line 1"),
        (b"not json at all", "not a COCO JSON file"),
        (b"[]", "top level is a JSON list"),
        (b'{"categories": []}', "no 'images' key"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00L%w]\x0c\x16\xe3\xff", "this is a zip archive"),
        (b"\x1f\x8b\x08\x00 compressed", "bad.json is a gzip file that cannot be decompressed"),
        (b"hello\x07world\x1b[31m", "starts with 'hello?world?[31m'"),
        (b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "the JSON is nested too deeply"),
        (b'{"images": [{"id": ' + b"9" * 5000 + b"}]}", "a number in the JSON has more than 4,300 digits"),
    ],
)
def test_invalid_input_exits_with_a_message(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    assert main(["scan", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.strip().startswith("error:") and len(err.strip().splitlines()) == 1


def test_bad_options_and_missing_file(annotations, tmp_path, capsys):
    assert main(["scan", str(tmp_path / "missing.json"), "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["scan", str(annotations), "--quiet", "--out", str(tmp_path / "x.xlsx")]) == 2
    assert ".parquet or .csv" in capsys.readouterr().err
    assert main(["scan", str(annotations), "--quiet", "--pos", "0.3"]) == 2
    assert "neg_thresh" in capsys.readouterr().err
    assert main(["scan", str(tmp_path), "--quiet"]) == 2
    assert "no dataset in" in capsys.readouterr().err
    assert main(["scan", str(annotations), "--quiet", "--max-mb", "0.000001"]) == 2
    assert "over the 1e-06 MB limit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["scan", str(annotations), "--sizes", "a,b"])
    assert info.value.code == 2


def test_bad_output_paths_are_refused_before_the_scan(annotations, tmp_path, capsys, monkeypatch):
    import explorer.dataset.formats

    def no_load(*args, **kwargs):
        raise AssertionError("loaded the annotations before checking the output path")

    monkeypatch.setattr(explorer.dataset.formats, "load_dataset", no_load)
    missing = tmp_path / "no" / "such" / "folder" / "stats.csv"
    assert main(["scan", str(annotations), "--quiet", "--out", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "output folder" in err and "does not exist" in err
    folder = tmp_path / "stats.parquet"
    folder.mkdir()
    assert main(["scan", str(annotations), "--quiet", "--boxes-out", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_module_entry_point_has_no_traceback(tmp_path, repo_root):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [}')
    proc = subprocess.run(
        [sys.executable, "-m", "explorer", "scan", str(path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=repo_root,
    )
    assert proc.returncode == 2
    assert "invalid JSON at line 1, column" in proc.stderr and "Traceback" not in proc.stderr


def test_a_problem_reported_once_shows_its_message(tmp_path, capsys):
    coco = {
        "images": [{"id": 1, "width": 640, "height": 480}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "iscrowd": 1},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [100, 100, 50, 50], "iscrowd": 1},
        ],
    }
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps(coco))
    assert main(["scan", str(path), "--quiet"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if " crowd " in s)
    assert "2 crowd annotation(s)" in line


def _run(argv: list[str]) -> int:
    """main()'s exit status, also when argparse ends the run with SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--device", "cuda"], "no CUDA GPU is available; use --device auto or cpu"),
        (["--ratios", "inf"], "argument --ratios: expected finite numbers"),
        (["--ratios", "0.5,nan"], "argument --ratios: expected finite numbers"),
        (["--ratios", "1e300"], "aspect ratios must be positive numbers in [0.001, 1000]"),
        (["--sizes", "inf;64;128;256;512"], "argument --sizes: anchor sizes of level 1: expected finite numbers"),
        (["--sizes", "1e300;64;128;256;512"], "anchor sizes must be positive numbers from 1 to 100,000 px"),
        (["--strides", "1e30,2e30,4e30,8e30,16e30"], "strides must be positive integers up to 100,000"),
        (["--min-size", "100000000"], "min_size and max_size must be >= 1 and at most 100,000"),
        (["--max-mb", "inf"], "argument --max-mb: expected a finite number > 0"),
        (["--max-mb", "nan"], "argument --max-mb: expected a finite number > 0"),
        (["--max-mb", "-1"], "argument --max-mb: expected a finite number > 0"),
        (["--sizes", "a,b"], "argument --sizes: anchor sizes of level 1: expected comma-separated"),
    ],
)
def test_bad_numbers_and_devices_exit_2_with_one_line(annotations, capsys, monkeypatch, options, message):
    import explorer.dataset.scan

    monkeypatch.setattr(explorer.dataset.scan, "_cuda_available", lambda: False)
    assert _run(["scan", str(annotations), "--quiet", *options]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert message in err


def test_a_huge_max_mb_means_no_limit(annotations, capsys):
    assert main(["scan", str(annotations), "--quiet", "--max-mb", "1e308"]) == 0
    capsys.readouterr()


def test_values_beyond_int64_and_float64_are_problem_rows_not_crashes(tmp_path, capsys):
    text = json.dumps(
        {
            "images": [{"id": 1, "width": 640, "height": 480}, {"id": 2, "width": 640, "height": 480}],
            "categories": [{"id": 1, "name": "a"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "iscrowd": 0, "area": 2500},
                {"id": 2**70, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "iscrowd": 0, "area": 2500},
                {
                    "id": 3,
                    "image_id": 1,
                    "category_id": 2**70,
                    "bbox": [10, 10, 50, 50],
                    "iscrowd": 2**70,
                    "area": 2500,
                },
            ],
        }
    ).replace('"id": 2, "width": 640', '"id": 2, "width": 1e400')
    path = tmp_path / "huge.json"
    path.write_text(text)
    problems = tmp_path / "p.csv"
    assert main(["scan", str(path), "--quiet", "--problems-out", str(problems)]) == 0
    assert "image_size" in capsys.readouterr().out
    assert sorted(pd.read_csv(problems)["kind"]) == ["image_size", "missing_key", "unknown_category"]


def test_convert_then_scan_yolo_and_voc_copies(annotations, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for rec in json.loads(annotations.read_text())["images"]:
        Image.new("RGB", (rec["width"], rec["height"])).save(images / rec["file_name"])
    want, got = tmp_path / "want.csv", tmp_path / "got.csv"
    assert main(["scan", str(annotations), "--quiet", "--out", str(want)]) == 0
    argv = ["convert", str(annotations), "--images", str(images), "--split", "val", "--to"]
    assert main([*argv, "yolo", str(tmp_path / "yolo")]) == 0
    out = capsys.readouterr().out
    assert "read ann.json: 8 images" in out and "wrote 8 images and" in out and "every box reads back exactly" in out
    assert main([*argv, "voc", str(tmp_path / "voc")]) == 0
    assert main(["convert", str(tmp_path / "voc"), "--to", "coco", str(tmp_path / "back.json.gz")]) == 0
    capsys.readouterr()
    columns = ["positives", "ignored", "hard_negatives", "easy_negatives", "boxes"]
    expected = pd.read_csv(want)[columns]
    for path, options in (
        (tmp_path / "yolo", ["--format", "yolo", "--split", "val"]),
        (tmp_path / "voc" / "Annotations" / "..", ["--split", "val"]),
        (tmp_path / "back.json.gz", []),
    ):
        assert main(["scan", str(path), "--quiet", "--out", str(got), *options]) == 0
        pd.testing.assert_frame_equal(pd.read_csv(got)[columns], expected)
    capsys.readouterr()


@pytest.mark.parametrize(
    ("setup", "argv", "message"),
    [
        ("two", ["scan", "{d}", "--quiet"], "holds several datasets: a.json (coco), b.json (coco)"),
        ("two", ["convert", "{d}", "--to", "yolo", "{d}/out"], "holds several datasets"),
        ("two", ["convert", "{d}/a.json", "--to", "voc", "{d}"], "output folder"),
        ("two", ["convert", "{d}/a.json", "--to", "coco", "{d}/no/x.json"], "does not exist"),
        ("yaml", ["scan", "{d}/data.yaml", "--quiet"], "is not a YOLO data.yaml: the top level is a list"),
        ("two", ["scan", "{d}/a.json", "--quiet", "--format", "voc"], "a.json is not well-formed XML"),
    ],
)
def test_format_errors_exit_2_with_one_line(tmp_path, capsys, setup, argv, message):
    coco = json.dumps({"images": [{"id": 1, "width": 8, "height": 8, "file_name": "a.jpg"}]})
    if setup == "two":
        (tmp_path / "a.json").write_text(coco)
        (tmp_path / "b.json").write_text(coco)
    else:
        (tmp_path / "data.yaml").write_text("- a\n- b\n")
    assert _run([a.replace("{d}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert message in err


def test_scan_with_a_fit_report_uses_its_anchors(annotations, tmp_path, capsys):
    report = tmp_path / "fit.json"
    sizes = [[20.5, 29.0, 41.0], [41.0, 58.0, 82.0], [82.0, 116.0, 164.0], [164.0, 232.0, 328.0], [328, 464, 656]]
    report.write_text(json.dumps({"torchvision": {"sizes": sizes, "aspect_ratios": [[0.5, 1.0, 2.0]] * 5}}))
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["scan", str(annotations), "--quiet", "--out", str(a), "--anchors", str(report)]) == 0
    text = ";".join(",".join(str(v) for v in level) for level in sizes)
    assert main(["scan", str(annotations), "--quiet", "--out", str(b), "--sizes", text]) == 0
    default = tmp_path / "d.csv"
    assert main(["scan", str(annotations), "--quiet", "--out", str(default)]) == 0
    capsys.readouterr()
    pd.testing.assert_frame_equal(pd.read_csv(a), pd.read_csv(b))
    assert not pd.read_csv(a)["positives"].equals(pd.read_csv(default)["positives"])


def test_a_bad_fit_report_exits_2_with_one_line(annotations, tmp_path, capsys):
    bad = tmp_path / "fit.json"
    bad.write_text('{"mmdet": {}}')
    for extra, message in (
        (["--anchors", str(bad)], "fit.json: not a fit-anchors report"),
        (["--anchors", str(tmp_path / "missing.json")], "cannot read"),
        (["--anchors", str(bad), "--sizes", "32;64"], "give --anchors or --sizes, not both"),
    ):
        assert main(["scan", str(annotations), "--quiet", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_scan_streams_the_box_table_of_a_large_dataset(annotations, tmp_path, capsys, monkeypatch):
    import explorer.dataset.scan as scan_module

    full = tmp_path / "full.csv"
    argv = ["scan", str(annotations), "--quiet", "--boxes-out", str(full), "--classes-out", str(tmp_path / "a.csv")]
    assert main(argv) == 0
    capsys.readouterr()
    monkeypatch.setattr(scan_module, "STREAM_BOXES_MIN", 3)  # "large": more than 3 boxes
    streamed = tmp_path / "b.parquet"
    argv = ["scan", str(annotations), "--quiet", "--boxes-out", str(streamed), "--classes-out", str(tmp_path / "b.csv")]
    assert main(argv) == 0
    assert "streamed" in capsys.readouterr().out
    as_text = {"size": str}
    pd.testing.assert_frame_equal(
        pd.read_parquet(streamed).astype(as_text), pd.read_csv(full).astype(as_text), check_dtype=False
    )
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    pd.testing.assert_frame_equal(a, b, rtol=1e-6)
    # no box file asked for: streamed to a temporary file, which is gone afterwards
    before = set(Path(tempfile.gettempdir()).glob("focalscope-boxes-*"))
    assert main(["scan", str(annotations), "--quiet"]) == 0
    assert set(Path(tempfile.gettempdir()).glob("focalscope-boxes-*")) == before
    # a CSV box table of a large dataset is refused (it would have to be held in memory), before the scan
    assert main(["scan", str(annotations), "--quiet", "--boxes-out", str(tmp_path / "c.csv")]) == 2
    assert "write it as .parquet" in capsys.readouterr().err
