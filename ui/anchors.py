"""Streamlit-aware helpers of the Anchor lab: bounded caches keyed on bytes digests, input widgets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from explorer import overlay, synthetic
from explorer.anchors import lab
from explorer.anchors.config_text import custom_config, format_ratios, format_sizes, parse_ratios, parse_sizes
from explorer.anchors.grid import AnchorConfig, octave_sizes
from explorer.anchors.iou import SparseIoU
from explorer.anchors.stats import threshold_sweep
from explorer.dataset import image_boxes as boxio
from explorer.dataset.coco import CocoDataset, load_coco
from explorer.images import UPLOAD_EXTENSIONS
from ui.common import (
    MAX_JSON_BYTES,
    decode_upload,
    digest,
    kept,
    kept_file,
    md_escape,
    pixel_limit_help,
    sample_dataset,
    sample_dataset_image,
    set_kept,
)


@dataclass(frozen=True)
class ImageInput:
    """The chosen image: pixels, a stable key, a display name and its own annotations (if any)."""

    image: np.ndarray
    key: str
    name: str
    own_boxes: boxio.BoxSet | None


#: Session-state key of an image sent to the Anchor lab from another page (:func:`send_to_lab`).
HANDOFF = "al_handoff"


@dataclass(frozen=True)
class Handoff:
    """An image sent to the Anchor lab from another page: its encoded bytes, file name, boxes (original pixels,
    crowd / difficult regions kept apart) and where it came from. Lives in the sender's session only."""

    data: bytes
    name: str
    boxes: boxio.BoxSet
    origin: str


def send_to_lab(handoff: Handoff, values: dict[str, object]) -> None:
    """Give the Anchor lab this image and these widget values (its kept keys, e.g. ``al_sizes``): call from a
    button's ``on_click``; the sender then opens the page with ``st.switch_page``."""
    st.session_state[HANDOFF] = handoff
    set_kept({**values, "al_source": "handoff"})


# ---------------------------------------------------------------- cached loaders


@st.cache_resource(max_entries=1, show_spinner="Reading the COCO file…")
def parsed_coco(key: str, _data: bytes) -> CocoDataset:
    """A COCO JSON read once per content digest (``key``) by the one COCO reader, not on every rerun
    (instances_val2017 is 25 MB). Shared and read-only; raises ValueError for a malformed file (not cached)."""
    return load_coco(_data, max_bytes=MAX_JSON_BYTES)


@st.cache_data(max_entries=16, show_spinner=False)
def coco_boxes(key: str, file_name: str, width: int, height: int, _data: bytes) -> boxio.BoxSet:
    """One image's boxes from the COCO file of digest ``key``, looked up once per image, not on every rerun
    (the lookup walks every annotation: about 40 ms for instances_val2017, a second for train2017)."""
    return boxio.boxes_from_coco(parsed_coco(key, _data), file_name, width, height)


def _coco_digest(data: bytes) -> str:
    """Digest of the stored COCO bytes, computed once per stored object (hashing 450 MB takes about a second)."""
    memo = st.session_state.get("al_coco_digest")
    if memo is None or memo[0] is not data:
        memo = (data, digest(data))
        st.session_state["al_coco_digest"] = memo
    return memo[1]


@st.cache_data(max_entries=8, show_spinner=False)
def sample_scene(seed: int) -> tuple[np.ndarray, list[dict]]:
    """A synthetic 640x480 scene and its annotations."""
    return synthetic.make_scene(int(seed))


@st.cache_resource(max_entries=4, show_spinner=False)
def input_image(
    image_key: str, resized_hw: tuple[int, int], padded_hw: tuple[int, int], _image: np.ndarray
) -> np.ndarray:
    """The image as the network sees it: resized, then padded (dark border) to the padded size. Read-only."""
    resized = overlay.resize_image(_image, *resized_hw)
    out = overlay.pad_canvas(resized, *padded_hw)
    out.setflags(write=False)
    return out


@st.cache_resource(max_entries=4, show_spinner=False)
def anchor_scene(height: int, width: int, config: AnchorConfig) -> lab.AnchorScene:
    """Anchors and grids for an image size and configuration (shared, read-only)."""
    scene = lab.prepare_scene(height, width, config)
    scene.anchors.setflags(write=False)
    scene.levels.setflags(write=False)
    return scene


def boxes_key(boxes: np.ndarray) -> str:
    """Digest of a box array (float32 bytes and shape)."""
    arr = np.ascontiguousarray(boxes, dtype=np.float32)
    return digest(arr.tobytes() + str(arr.shape).encode())


@st.cache_resource(max_entries=6, show_spinner=False)
def sparse_iou(height: int, width: int, config: AnchorConfig, key: str, _boxes_input: np.ndarray) -> SparseIoU:
    """Intersecting (anchor, GT) pairs; ``key`` is :func:`boxes_key` of the input-pixel boxes."""
    return lab.compute_sparse(anchor_scene(height, width, config), _boxes_input)


@st.cache_data(max_entries=16, show_spinner=False)
def sweep(
    height: int, width: int, config: AnchorConfig, key: str, neg: float, low_quality: bool, semantics: str,
    _boxes_input: np.ndarray,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Threshold sweep 0.30..0.70 for the current boxes (cached on their digest)."""
    sp = sparse_iou(height, width, config, key, _boxes_input)
    return threshold_sweep(sp, neg_thresh=neg, low_quality=low_quality, semantics=semantics)


# ---------------------------------------------------------------- widgets


def custom_anchor_text(
    prefix: str, sizes: tuple[tuple[float, ...], ...], ratios: tuple[float, ...]
) -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...]] | None:
    """Text inputs for anchor sizes per level and aspect ratios (kept as ``{prefix}_sizes`` and
    ``{prefix}_ratios_text``), starting from ``sizes`` and ``ratios``; None, with the reason shown, when the text
    cannot be read."""
    sizes_text = st.text_input(
        "Sizes per level (px, P3 first)", format_sizes(sizes), key=kept(f"{prefix}_sizes"),
        help="Levels separated by ';', sizes by ','; e.g. torchvision's default "
        "'32, 40, 50; 64, 80, 101; 128, 161, 203; 256, 322, 406; 512, 645, 812'. Level k gets stride 8·2^k.",
    )  # fmt: skip
    ratios_text = st.text_input(
        "Aspect ratios (h/w)", format_ratios(ratios), key=kept(f"{prefix}_ratios_text"),
        help="Comma-separated, shared by every level; 0.5 is a wide box.",
    )  # fmt: skip
    try:
        return parse_sizes(sizes_text), parse_ratios(ratios_text)
    except ValueError as err:
        st.error(str(err))
        return None


ANCHOR_MODES = {"ladder": "Octave ladder", "custom": "Custom sizes"}


def anchor_config_widgets() -> AnchorConfig:
    """Sidebar controls for the anchor configuration and the input size."""
    st.subheader("Anchors")
    convention = st.selectbox(
        "Convention",
        ["torchvision", "mmdet", "detectron2"],
        key=kept("al_convention"),
        help="torchvision: integer sizes, rounded cell anchors, stride = padded // grid, floor resize. "
        "mmdet / detectron2: float sizes, fixed strides, rounded resize; detectron2 orders anchors size-major.",
    )
    mode = st.radio(
        "Anchor sizes", list(ANCHOR_MODES), format_func=ANCHOR_MODES.get, horizontal=True, key=kept("al_anchor_mode"),
        help="Octave ladder: a base size doubling per level, n scales per octave. Custom: any sizes per level and "
        "ratios (a fit-anchors result, another framework's config).",
    )  # fmt: skip
    sizes, ratios, strides = _ladder_widgets(convention) if mode == "ladder" else _custom_widgets()
    st.subheader("Input size")
    resize = st.toggle("Resize like the model", value=True, key=kept("al_resize"))
    c3, c4 = st.columns(2)
    min_size = c3.number_input("Short side", 128, 2048, 800, 32, key=kept("al_min"), disabled=not resize)
    max_size = c4.number_input("Long side max", 128, 4096, 1333, 1, key=kept("al_max"), disabled=not resize)
    div = st.selectbox("Pad to a multiple of", [32, 64, 128, 1], key=kept("al_div"))
    return AnchorConfig(
        sizes=sizes,
        aspect_ratios=ratios,
        strides=strides,
        min_size=int(min_size),
        max_size=int(max(max_size, min_size)),
        size_divisible=int(div),
        convention=convention,
        resize=bool(resize),
    )


def _ladder_widgets(convention: str) -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...], tuple[int, ...]]:
    c1, c2 = st.columns(2)
    base = c1.number_input("P3 base size (px)", 4, 256, 32, 4, key=kept("al_base"), help="Sizes double per level.")
    spo = c2.number_input("Scales per octave", 1, 5, 3, 1, key=kept("al_spo"))
    ratios = st.multiselect(
        "Aspect ratios (h/w)",
        [0.25, 0.33, 0.5, 1.0, 2.0, 3.0, 4.0],
        default=[0.5, 1.0, 2.0],
        key=kept("al_ratios"),
        help="h / w in all three frameworks: 0.5 is a wide box.",
    )
    levels = st.slider("Pyramid levels", 3, 7, (3, 7), key=kept("al_levels"))
    lv = list(range(levels[0], levels[1] + 1))
    bases = tuple(int(base) * 2 ** (k - 3) for k in lv)
    if not ratios:
        st.warning("No aspect ratio selected: using 1.0.")
        ratios = [1.0]
    sizes = octave_sizes(bases, int(spo), integer=convention == "torchvision")
    return sizes, tuple(float(r) for r in sorted(ratios)), tuple(2**k for k in lv)


def _custom_widgets() -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...], tuple[int, ...]]:
    default = AnchorConfig()
    parsed = custom_anchor_text("al", default.sizes, default.aspect_ratios)
    cfg = checked_custom_config(parsed)
    return cfg.sizes, cfg.aspect_ratios, cfg.strides


def checked_custom_config(parsed: tuple | None, base: AnchorConfig | None = None) -> AnchorConfig:
    """``base`` (torchvision's default) with parsed sizes and ratios
    (:func:`~explorer.anchors.config_text.custom_config`), or ``base`` unchanged, with the reason shown, when the
    text is unreadable or out of range."""
    base = base or AnchorConfig()
    if parsed is not None:
        try:
            return custom_config(*parsed, base)
        except ValueError as err:
            st.error(str(err))
    st.caption("Using the default anchors until the text reads.")
    return base


def assigner_widgets() -> dict:
    """Sidebar controls for the label assignment."""
    st.subheader("Assignment")
    assigner = st.radio(
        "Assigner", ["max_iou", "atss"], format_func={"max_iou": "Max-IoU (RetinaNet)", "atss": "ATSS"}.get,
        key=kept("al_assigner"), horizontal=True,
    )  # fmt: skip
    pos = st.slider("Positive IoU ≥", 0.05, 0.95, 0.5, 0.05, key=kept("al_pos"), disabled=assigner == "atss")
    neg = st.slider("Negative IoU <", 0.0, 0.95, 0.4, 0.05, key=kept("al_neg"), disabled=assigner == "atss")
    if neg > pos:
        st.warning(f"Negative threshold {neg:.2f} is above the positive one {pos:.2f}: using {pos:.2f}.")
        neg = pos
    low_quality = st.toggle("Low-quality matches", value=True, key=kept("al_lq"), disabled=assigner == "atss")
    semantics = st.radio(
        "Low-quality semantics", ["torchvision", "mmdet"], key=kept("al_sem"), horizontal=True,
        disabled=assigner == "atss" or not low_quality,
        help="torchvision/detectron2: a promoted anchor keeps its own best GT. mmdet: it goes to the GT that "
        "picked it (later GTs overwrite earlier ones).",
    )  # fmt: skip
    topk = st.number_input("ATSS top-k per level", 1, 50, 9, 1, key=kept("al_topk"), disabled=assigner != "atss")
    return {
        "assigner": assigner,
        "pos_thresh": float(pos),
        "neg_thresh": float(neg),
        "low_quality": bool(low_quality),
        "semantics": semantics,
        "topk": int(topk),
    }


def image_input_widget() -> ImageInput | None:
    """Image source: a sample scene, an image of the sample dataset, or an upload. None when nothing usable."""
    handoff: Handoff | None = st.session_state.get(HANDOFF)
    labels = {"scene": "Sample scene", "dataset": "Sample dataset", "upload": "Upload", "handoff": "Sent image"}
    options = ["scene", "dataset", "upload"] + (["handoff"] if handoff is not None else [])
    source = st.radio("Image", options, horizontal=True, key=kept("al_source"), format_func=labels.get)
    if source == "handoff" and handoff is not None:
        key = digest(handoff.data)
        try:
            img = decode_upload(key, handoff.data)
        except ValueError as err:
            st.error(f"Cannot use {handoff.name}: {err}")
            return None
        st.caption(f"**{md_escape(handoff.name)}**, sent from {handoff.origin}.")
        return ImageInput(img, f"handoff-{key}", handoff.name, handoff.boxes)
    if source == "scene":
        seed = int(st.number_input("Scene seed", 0, 10_000, 7, 1, key=kept("al_seed")))
        img, anns = sample_scene(seed)
        own = boxio.boxes_from_scene(anns, img.shape[1], img.shape[0], synthetic.CLASS_NAMES)
        return ImageInput(img, f"scene-{seed}", f"scene_{seed}.png", own)
    if source == "dataset":
        ds = sample_dataset()
        name = st.selectbox("Sample image", ds.file_names, key=kept("al_sample_name"))
        img = sample_dataset_image(name)
        own = boxio.boxes_from_coco(ds, name, img.shape[1], img.shape[0])
        return ImageInput(img, f"sample-{name}", name, own)
    up = kept_file("Image file", key="al_upload", type=list(UPLOAD_EXTENSIONS), help=pixel_limit_help())
    if up is None:
        st.info("Upload an image (jpg, png, webp, bmp, tiff), or pick a sample.")
        return None
    data = up.data
    key = digest(data)
    try:
        img = decode_upload(key, data)
    except ValueError as err:
        st.error(f"Cannot use {up.name}: {err}")
        return None
    return ImageInput(img, f"upload-{key}", up.name, None)


def coco_file_widget() -> tuple[str, bytes] | None:
    """The COCO annotation file (name, bytes), kept in the session once uploaded.

    One COCO file annotates many images (matched by file name), so it must outlive image changes. A browser run
    showed the uploader losing its file when the image upload changed; the file is therefore stored in the
    session and the uploader replaced by its name and a button to use another file.
    """
    stored = st.session_state.get("al_coco_file")
    if stored is not None:
        name, data = stored
        c1, c2 = st.columns([2.6, 1.4], vertical_alignment="center")
        c1.caption(f"COCO annotations: **{name}** ({len(data) / 1024:,.0f} KB), matched to each image by file name.")
        if not c2.button("Use another file", key="al_coco_forget"):
            return stored
        del st.session_state["al_coco_file"]
    up = st.file_uploader("COCO annotations (.json)", type=["json"], key="al_coco")
    if up is None:
        return None
    st.session_state["al_coco_file"] = (up.name, up.getvalue())
    return st.session_state["al_coco_file"]


def label_file_boxes(fmt: str, width: int, height: int) -> tuple[boxio.BoxSet, str] | None:
    """The boxes of an uploaded YOLO .txt or VOC .xml (kept for the session) and a key naming its content; None
    when there is no file or it cannot be read (a message is shown)."""
    if fmt == "yolo":
        up = kept_file("YOLO labels (.txt)", key="al_yolo", type=["txt"])
    else:
        up = kept_file(
            "VOC annotation (.xml)", key="al_voc", type=["xml"],
            help="Pascal VOC: <object>s with <bndbox> (1-based corners); <difficult>1</difficult> objects are "
            "ignore regions, hatched and left out of matching, as COCO crowd boxes are.",
        )  # fmt: skip
    if up is None:
        return None
    try:
        if fmt == "yolo":
            parsed = boxio.parse_yolo(up.data, width, height)
        else:
            parsed = boxio.boxes_from_voc(up.data, width, height, name=up.name)
    except ValueError as err:
        st.error(f"{up.name}: {err}")
        return None
    return parsed, f"{fmt}-{digest(up.data)[:16]}"


def boxes_input_widget(inp: ImageInput) -> boxio.BoxSet:
    """GT source: the sample's own boxes, a COCO JSON, a YOLO .txt, a VOC .xml, or a table; optionally an editable
    table. VOC difficult objects are ignore regions (hatched, never matched), as COCO crowd boxes are.

    The table editor is shown only on request (always for "Table only"): its key and data follow the image and
    the source, and a browser run showed that a new editor appearing after an image change cleared the COCO /
    YOLO uploader, so the next image found no annotations. Without the editor the uploaded file stays.
    """
    h, w = inp.image.shape[:2]
    options = (["own"] if inp.own_boxes is not None else []) + ["coco", "yolo", "voc", "table"]
    own = "Its annotations" if inp.key.startswith("handoff-") else "Sample annotations"
    labels = {"own": own, "coco": "COCO JSON", "yolo": "YOLO .txt", "voc": "VOC .xml"}
    labels["table"] = "Table only"
    src = st.radio("Boxes", options, format_func=labels.get, horizontal=True, key=f"al_boxsrc_{bool(inp.own_boxes)}")
    parsed = boxio.BoxSet(np.zeros((0, 4), np.float32), [])
    src_key = src
    if src == "own" and inp.own_boxes is not None:
        parsed = inp.own_boxes
    elif src == "coco":
        stored = coco_file_widget()
        if stored is not None:
            name, data = stored
            key = _coco_digest(data)
            src_key = f"coco-{key[:16]}"
            try:
                parsed = coco_boxes(key, inp.name, w, h, data)
            except ValueError as err:
                st.error(f"{name}: {err}")
    elif src in ("yolo", "voc"):
        parsed, src_key = label_file_boxes(src, w, h) or (parsed, src_key)
    edit = src == "table" or st.toggle(
        "Edit the boxes in a table",
        value=False,
        key=kept("al_edit_boxes"),
        help="Add, change or delete boxes (original image pixels). Edits start from the source's boxes and are "
        "dropped when the image or the source changes.",
    )
    if not edit:
        return parsed
    with st.expander(f"Edit boxes ({len(parsed)} from the source; original image pixels)", expanded=True):
        rows = st.data_editor(
            parsed.table_rows() or [{"x1": None, "y1": None, "x2": None, "y2": None, "label": None}],
            num_rows="dynamic",
            key=f"al_editor_{inp.key}_{src_key}",
            width="stretch",
            column_config={
                "x1": st.column_config.NumberColumn("x1", format="%.1f"),
                "y1": st.column_config.NumberColumn("y1", format="%.1f"),
                "x2": st.column_config.NumberColumn("x2", format="%.1f"),
                "y2": st.column_config.NumberColumn("y2", format="%.1f"),
                "label": st.column_config.TextColumn("label"),
            },
        )
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    edited = boxio.boxes_from_rows(records, w, h)
    return boxio.BoxSet(
        edited.boxes,
        edited.classes,
        list(parsed.notes) + list(edited.notes),
        list(parsed.warnings) + list(edited.warnings),
        list(parsed.skipped) + list(edited.skipped),
        crowd=parsed.crowd,  # ignore regions are not rows of the table: they stay as the source gives them
    )
