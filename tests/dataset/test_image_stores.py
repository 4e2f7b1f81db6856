"""explorer.dataset.image_stores: folder and zip image stores, the data-root path guard, coverage messages."""

from __future__ import annotations

import io
import zipfile

import pytest

from explorer.dataset import image_stores as stores


def test_path_guards(tmp_path):
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "a.jpg").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("no")
    assert stores.safe_join(tmp_path, "inside/a.jpg") == (tmp_path / "inside" / "a.jpg").resolve()
    for bad in ("../etc/passwd", "/etc/passwd", "inside/../../x"):
        with pytest.raises(ValueError, match="outside the data root"):
            stores.safe_join(tmp_path, bad)
    store = stores.FolderImages(tmp_path / "inside")
    assert store.read("a.jpg") == b"x"
    assert store.read("some/dir/a.jpg") == b"x"  # base-name fallback inside the folder
    assert store.read("../secret.txt") is None
    assert store.read("/etc/passwd") is None
    (tmp_path / "inside" / "link.jpg").symlink_to(tmp_path / "secret.txt")
    assert store.read("link.jpg") is None  # a link out of the folder
    within = stores.FolderImages(tmp_path / "inside", within=tmp_path)  # links inside the data root are followed
    assert within.read("link.jpg") == b"no" and within.read("../../etc/passwd") is None
    assert within.identity != store.identity


def test_zip_images(tmp_path):
    with pytest.raises(ValueError, match="not a zip"):
        stores.ZipImages(b"PK\x03\x04 definitely not a zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("imgs/000001.jpg", b"abc")
    store = stores.ZipImages(buf.getvalue())
    assert store.read("000001.jpg") == b"abc"
    assert store.read("imgs/000001.jpg") == b"abc"
    assert store.read("missing.jpg") is None
    assert store.has("000001.jpg") and not store.has("missing.jpg")
    with pytest.raises(ValueError, match="empty"):
        stores.ZipImages(b"")


def test_images_that_do_not_match_the_annotations_are_reported(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    store = stores.FolderImages(tmp_path)
    assert store.has("a.jpg") and store.has("val2017/b.jpg") and not store.has("c.jpg")
    assert stores.image_coverage(store, ["a.jpg", "", "c.jpg"]) == (1, 2)
    assert stores.coverage_message(store, ["a.jpg", "b.jpg"]) is None
    assert stores.coverage_message(store, []) is None
    none = stores.coverage_message(store, ["x.jpg", "y.jpg"])
    assert none is not None and "None of" in none and "'x.jpg'" in none
    partial = stores.coverage_message(store, ["a.jpg", "y.jpg"])
    assert partial is not None and "Only 1 of the 2" in partial
