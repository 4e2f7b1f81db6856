"""The demo model's training script runs end to end (a CPU smoke run) and writes loadable weights."""

from __future__ import annotations

import json

import pytest
import torch

from explorer.detection import train_demo
from explorer.detection.demo_model import DEMO_NUM_CLASSES, build_demo_model


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast loop does not
def test_train_demo_smoke_run_writes_loadable_weights(tmp_path):
    args = ["--out", str(tmp_path), "--images", "4", "--heldout", "2", "--iters", "2", "--batch", "2"]
    assert train_demo.main([*args, "--workers", "1"]) == 0
    state = torch.load(tmp_path / "demo_retinanet.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    model = build_demo_model(DEMO_NUM_CLASSES)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    meta = json.loads((tmp_path / "demo_retinanet.json").read_text())
    assert {c["name"] for c in meta["categories"]} >= {"circle", "square"}
    log = (tmp_path / "train_log.txt").read_text()
    assert "trained 2 iterations of batch 2" in log and "held-out COCOeval" in log


@pytest.mark.slow  # a few seconds: the full suite runs it, the fast loop does not
def test_train_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_demo_model(DEMO_NUM_CLASSES).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = [torch.rand(3, 128, 128)]
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 80.0, 90.0]]), "labels": torch.tensor([1])}]
    first = train_demo.train_step(model, opt, images, targets, torch.device("cpu"))
    for _ in range(5):
        last = train_demo.train_step(model, opt, images, targets, torch.device("cpu"))
    assert set(first) == {"classification", "bbox_regression"}
    assert sum(last.values()) < sum(first.values())
