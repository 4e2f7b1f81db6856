"""Shared cases of the YOLO, VOC, formats and converter tests: small datasets written into tmp_path here."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def image(path: Path, width: int = 100, height: int = 50, *, orientation: int | None = None) -> Path:
    """A JPEG of ``width`` x ``height`` stored pixels (with an EXIF orientation tag when given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (width, height), (90, 120, 150))
    if orientation is None:
        img.save(path)
    else:
        exif = Image.Exif()
        exif[274] = orientation
        img.save(path, exif=exif)
    return path


def text(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def yolo_pair(root: Path, labels: dict[str, str | None], *, size: tuple[int, int] = (100, 50)) -> Path:
    """``root/images/<name>.jpg`` for every name, and ``root/labels/<name>.txt`` with the text (None: no file)."""
    for name, content in labels.items():
        image(root / "images" / f"{name}.jpg", *size)
        if content is not None:
            text(root / "labels" / f"{name}.txt", content)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    return root


def voc_xml(filename: str = "a.jpg", size: tuple[int, int] | None = (100, 50), objects: str = "") -> str:
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    return f"<annotation><filename>{filename}</filename>{size_xml}{objects}</annotation>"


def voc_object(name: str, box: tuple, difficult: int | None = 0) -> str:
    flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    corners = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
    return f"<object><name>{name}</name>{flag}<bndbox>{corners}</bndbox></object>"


def synthetic_images(folder: Path, n: int = 3, seed: int = 0):
    """The synthetic dataset of ``n`` images as a :class:`CocoDataset` whose images are written to ``folder``."""
    from explorer import synthetic
    from explorer.dataset.coco import load_coco

    coco, arrays = synthetic.make_dataset(n, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for info, arr in zip(coco["images"], arrays, strict=True):
        Image.fromarray(arr).save(folder / info["file_name"])
    ds = load_coco(coco)
    ds.image_root = str(folder)
    return ds


def zip_folder(folder: Path, under: str = "") -> bytes:
    """Every file under ``folder`` (links followed) in a zip, below the folder ``under`` of the archive."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, "/".join(p for p in (under, path.relative_to(folder).as_posix()) if p))
    return buf.getvalue()
