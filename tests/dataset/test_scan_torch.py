"""The torch path (the CUDA code, run on the CPU) equals the CPU path (the compiled kernel)."""

from __future__ import annotations

import pytest

from explorer import synthetic
from explorer.dataset.coco import load_coco
from explorer.dataset.scan import scan_dataset
from explorer.dataset.scan_config import ScanConfig
from tests.dataset.scan_cases import edge_case_coco


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast loop does not
def test_torch_path_equals_numpy_path(tmp_path):
    # The CUDA path's code, run on the CPU: dense torchvision arithmetic, batched by input size and box count.
    coco, _ = synthetic.make_dataset(5, seed=9)
    edge = edge_case_coco()
    coco["images"] += [{**im, "id": im["id"] + 1000} for im in edge["images"]]
    coco["annotations"] += [{**a, "id": a["id"] + 1000, "image_id": a["image_id"] + 1000} for a in edge["annotations"]]
    ds = load_coco(coco)
    for cfg in (ScanConfig(), ScanConfig(low_quality=False, neg_thresh=0.3)):
        a = scan_dataset(ds, cfg, device="cpu")
        b = scan_dataset(ds, cfg, device="torch-cpu")
        assert b.path == "torch-cpu"
        assert a.images.equals(b.images)
        assert a.boxes.equals(b.boxes)
