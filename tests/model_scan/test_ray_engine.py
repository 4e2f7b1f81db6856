"""The model scan on Ray Data (``--engine ray``): the local engine's rows through the same ScanStore, resuming the same
way, and a one-line refusal when Ray is not installed."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from explorer import synthetic
from explorer.dataset.coco import load_coco
from explorer.dataset.image_stores import FolderImages
from explorer.detection.loading import load_demo_model
from explorer.model_scan import ray_engine
from explorer.model_scan.run import Accumulator, ModelScan, ModelScanConfig, iter_scan
from explorer.model_scan.store import ScanStore
from tests.model_scan.test_batching import assert_same_scan


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    ray_engine.start_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def _argv(path, out, *extra: str) -> list[str]:
    images = path.parent / "images"
    return ["model-scan", str(path), "--images", str(images), "--model", "demo", "--out", str(out), "--quiet", *extra]


@pytest.mark.slow  # a local Ray instance, its actors and 5 images: about 20 s on 2 cores
def test_ray_engine_resumes_and_writes_the_local_engines_rows(local_ray, tmp_path):
    from explorer.__main__ import main

    path = synthetic.sample_dataset()
    ds, store, demo = load_coco(path), FolderImages(path.parent / "images"), load_demo_model(torch.device("cpu"))
    config = ModelScanConfig(limit=6, batch_size=2)
    local = ModelScan.run(ds, store, demo, config)
    # An earlier (local) run stopped after the first image: the Ray run must scan the other 5 only.
    out = tmp_path / "ray.parquet"
    acc = Accumulator()
    acc.add(next(iter_scan(ds, store, demo, config)))
    ScanStore(out).write_part(acc.result())
    assert main(_argv(path, out, "--limit", "6", "--batch-size", "2", "--engine", "ray", "--actors", "1")) == 0
    stored = ScanStore(out).load()
    assert len(stored.images) == 6 and stored.images["image_id"].is_unique
    by_id = pd.read_parquet(out).sort_values("image_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(by_id, local.images.sort_values("image_id").reset_index(drop=True), rtol=1e-5)
    finished = ScanStore(out).finish()
    assert_same_scan(_sorted(local), _sorted(finished))


def _sorted(scan: ModelScan) -> ModelScan:
    keys = {"images": ["image_id"], "detections": ["image_id", "score", "x"], "problems": ["image_id", "kind", "x1"]}
    frames = {k: getattr(scan, k).sort_values(v, kind="stable").reset_index(drop=True) for k, v in keys.items()}
    return ModelScan(frames["images"], frames["problems"], frames["detections"], scan.bins, scan.histograms)


def test_engine_ray_without_ray_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    from explorer.__main__ import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code = main(_argv(synthetic.sample_dataset(), tmp_path / "s.parquet", "--engine", "ray", "--limit", "1"))
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [f"error: {ray_engine.INSTALL_HINT}"]
    assert not (tmp_path / "s.parquet.parts").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-size", "0"], "batch_size must be >= 1"),
        (["--actors", "2"], "--actors needs --engine ray"),
    ],
)
def test_bad_batch_size_or_actors_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    from explorer.__main__ import main

    code = main(_argv(synthetic.sample_dataset(), tmp_path / "s.parquet", "--limit", "1", *extra))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err


def test_ray_batches_round_trip_pending_images_and_results(monkeypatch):
    # The two stages' functions without Ray: pickled Pending in, pickled results and notices out, in order.
    path = synthetic.sample_dataset()
    ds, store, demo = load_coco(path), FolderImages(path.parent / "images"), load_demo_model(torch.device("cpu"))
    monkeypatch.setattr(ray_engine, "_resolve", lambda refs: refs[0])
    reader = ray_engine.Reader([ds], store, demo.model.transform)
    pending = reader({"position": np.array([0, 1]), "index": np.array([3, 7])})["pending"]
    actor = ray_engine.ModelActor([ds], [ray_engine._model_spec(demo)], ModelScanConfig(batch_size=2), threads=1)
    out = actor({"pending": pending})
    assert out["position"].tolist() == [0, 1] and out["notices"].tolist() == ["[]", "[]"]
    rows = [pickle.loads(r).row for r in out["result"]]
    assert [r["image_id"] for r in rows] == [ds.image_ids[3], ds.image_ids[7]] and all(r["error"] == "" for r in rows)
