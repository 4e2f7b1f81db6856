"""Anchor fit: the objective is torchvision's own labelling, the snippets build a RetinaNet, the fit is no worse than
any baseline, head mode keeps 9 anchors, the CLI fails in one line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from explorer import synthetic
from explorer.__main__ import main
from explorer.anchors import fit_baselines as fb
from explorer.anchors import fit_export as fx
from explorer.anchors.fit import HEAD_ANCHORS, covered_mask, evaluate, fit_anchors, score_result, subset
from explorer.anchors.grid import default_config, generate_anchors
from explorer.dataset.coco import load_coco
from explorer.dataset.scan import scan_dataset
from explorer.dataset.scan_config import ScanConfig
from explorer.dataset.scan_reference import TorchvisionReference
from tests.dataset.scan_cases import assert_matches_torchvision, write_json

SMALL = synthetic.SceneConfig(min_size=4.0, max_size=24.0, n_objects=(6, 16))
SCAN = ScanConfig(anchors=default_config(min_size=480, max_size=800))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    coco, _ = synthetic.make_dataset(30, seed=3)
    path = write_json(tmp_path_factory.mktemp("fit"), coco)
    ds = load_coco(path)
    return path, ds, fit_anchors(ds, SCAN, budget_s=20, subset_images=16, seed=1)


@pytest.fixture(scope="module")
def small_objects(tmp_path_factory):
    coco, _ = synthetic.make_dataset(24, seed=7, config=SMALL)
    path = write_json(tmp_path_factory.mktemp("fit_small"), coco)
    ds = load_coco(path)
    return path, ds, fit_anchors(ds, SCAN, budget_s=20, subset_images=16, seed=2)


def _torchvision_covered(path, cfg: ScanConfig, ds) -> tuple[int, list[int]]:
    """Boxes with a positive that is not a low-quality rescue, and every box's positives, from torchvision."""
    a = cfg.anchors
    ref = TorchvisionReference(
        COCO(str(path)), sizes=a.sizes, aspect_ratios=a.aspect_ratios, strides=a.strides, min_size=a.min_size,
        max_size=a.max_size, pos_thresh=cfg.pos_thresh, neg_thresh=cfg.neg_thresh, low_quality=cfg.low_quality,
    )  # fmt: skip
    covered, positives = 0, []
    for image_id in ds.image_ids:
        r = ref.image_stats(image_id.item())
        covered += int(((r["box_pos"] > 0) & ~r["box_lq_only"]).sum())
        positives += [int(p) for p in r["box_pos"]]
    return covered, positives


@pytest.mark.slow  # several seconds: the full suite runs it, the fast loop does not
def test_the_fitted_score_is_torchvision_s_own_labelling(sample):
    path, ds, fit = sample
    cfg = dataclasses.replace(SCAN, anchors=fit.winner.config)
    assert_matches_torchvision(path, cfg, limit=6)
    covered, positives = _torchvision_covered(path, cfg, ds)
    s = fit.winner.full
    assert s.boxes == len(positives) and round(s.covered * s.boxes) == covered
    assert s.median_pos == np.median(positives) and s.p10_pos == np.percentile(positives, 10)


@pytest.mark.slow  # its fixture runs a fit: the full suite runs it, the fast loop does not
def test_the_torchvision_snippet_builds_a_retinanet_with_the_same_anchors(sample):
    from torchvision.models.detection import retinanet_resnet50_fpn

    _, _, fit = sample
    cfg = dataclasses.replace(fit.winner.config, min_size=128, max_size=213)
    scope: dict = {}
    exec(fx.torchvision_snippet(cfg.sizes, cfg.aspect_ratios), scope)  # our own generated code
    model = retinanet_resnet50_fpn(
        weights=None, weights_backbone=None, anchor_generator=scope["anchor_generator"], min_size=128, max_size=213
    ).eval()
    assert model.head.classification_head.num_anchors == HEAD_ANCHORS
    image = torch.rand(3, 96, 120)
    with torch.no_grad():
        images, _ = model.transform([image])
        feats = list(model.backbone(images.tensors).values())
        anchors = model.anchor_generator(images, feats)[0].numpy()
        out = model([image])
    h, w = images.image_sizes[0]
    ours, _ = generate_anchors(h, w, cfg)
    np.testing.assert_array_equal(anchors, ours)
    assert set(out[0]) == {"boxes", "scores", "labels"}


BASELINES = ["torchvision default", "mmdet k-means (1 - IoU)", "YOLOv5 autoanchor", "pyodi"]


def assert_fit_beats_every_baseline(fit) -> None:
    """The search's own anchors win, with a strictly higher primary than every baseline on all images."""
    assert [c.name for c in fit.candidates] == ["fit", *BASELINES]
    assert fit.winner.name == "fit"
    for c in fit.candidates[1:]:
        assert fit.winner.full.covered > c.full.covered, c.name
    lo, hi = fit.ci
    assert 0.0 <= lo <= hi <= 1.0


@pytest.mark.slow  # several seconds: the full suite runs it, the fast loop does not
@pytest.mark.parametrize("case", ["sample", "small_objects"])
def test_the_fit_beats_every_baseline(case, request):
    _, _, fit = request.getfixturevalue(case)
    assert not fit.stopped_by_budget  # converged: the same result on any machine
    assert_fit_beats_every_baseline(fit)


@pytest.mark.slow  # several seconds: the full suite runs it, the fast loop does not
def test_on_the_built_in_sample_the_fit_beats_every_baseline():
    path = synthetic.sample_dataset()
    scan = ScanConfig(anchors=default_config(min_size=400, max_size=667))
    fit = fit_anchors(load_coco(path), scan, budget_s=60, subset_images=40, seed=0)
    assert fit.winner.full.boxes == 1770 and not fit.stopped_by_budget
    assert_fit_beats_every_baseline(fit)
    assert_matches_torchvision(path, dataclasses.replace(scan, anchors=fit.winner.config), limit=4)


def test_on_coco_mini_the_fit_beats_every_baseline_and_counts_as_torchvision(coco_mini):
    path = coco_mini / "annotations" / "instances_val2017.json"
    ds = load_coco(path)
    scan = ScanConfig(anchors=default_config(min_size=480, max_size=800))
    fit = fit_anchors(ds, scan, budget_s=120, subset_images=30, seed=0)
    assert not fit.stopped_by_budget
    assert_fit_beats_every_baseline(fit)
    cfg = dataclasses.replace(scan, anchors=fit.winner.config)
    assert_matches_torchvision(path, cfg, limit=3)
    first = subset(ds, np.arange(20))  # torchvision's loop is slow: its count on 20 images against ours
    ours = evaluate(first, fit.winner.config, scan)[0]
    covered, positives = _torchvision_covered(path, cfg, first)
    assert round(ours.covered * ours.boxes) == covered and ours.boxes == len(positives) > 100
    assert ours.median_pos == np.median(positives)


@pytest.mark.slow  # its fixture runs a fit: the full suite runs it, the fast loop does not
def test_the_search_itself_improves_small_object_coverage(small_objects):
    _, _, fit = small_objects
    searched = next(c for c in fit.candidates if c.name == "fit")
    assert searched.full.covered > fit.before.full.covered + 0.2  # the default's 32 px anchors miss 4-24 px boxes
    assert searched.sample.covered >= fit.before.sample.covered


@pytest.mark.slow  # several seconds: the full suite runs it, the fast loop does not
def test_head_mode_keeps_nine_anchors_and_free_mode_warns_only_when_it_changes(sample):
    _, ds, fit = sample
    assert all(a == HEAD_ANCHORS for c in fit.candidates for a in c.config.anchors_per_location())
    assert fx.head_warning(fit.winner.config) is None
    free = fit_anchors(ds, SCAN, mode="free", budget_s=5, subset_images=8, seed=1)
    assert free.winner.full.key() >= fit.before.full.key()
    count = free.winner.config.anchors_per_location()[0]
    assert (fx.head_warning(free.winner.config) is None) == (count == HEAD_ANCHORS)


def test_the_report_holds_the_three_snippets_and_before_after(sample):
    _, _, fit = sample
    report = json.loads(json.dumps(fx.report_dict(fit)))
    w = fit.winner
    assert report["torchvision"]["sizes"] == [list(s) for s in w.config.sizes]
    assert report["torchvision"]["aspect_ratios"] == [list(w.config.aspect_ratios)] * 5
    mm = report["mmdet"]
    sizes = [[round(b * s, 4) for s in mm["scales"]] for b in mm["base_sizes"]]
    assert sizes == report["torchvision"]["sizes"] and mm["ratios"] == list(w.config.aspect_ratios)
    assert "ANCHOR_GENERATOR" in report["detectron2"]
    assert report["before"]["name"] == "torchvision default" and report["after"]["name"] == w.name
    assert report["after"]["full"]["covered_share"] == w.full.covered


def test_the_before_after_table_is_the_primary_per_size_bucket(sample):
    _, _, fit = sample
    table = fx.before_after_table(fit.before_result, fit.winner_result).set_index("size")
    assert list(table.index) == ["small", "medium", "large", "all"]
    assert table.loc["all", "boxes"] == fit.winner.full.boxes == table.loc[["small", "medium", "large"], "boxes"].sum()
    assert table.loc["all", "no_positive_before"] == pytest.approx(1.0 - fit.before.full.covered)
    assert table.loc["all", "no_positive_after"] == pytest.approx(1.0 - fit.winner.full.covered)
    assert "no positive >= pos" in fx.format_table(table.reset_index())


def test_subset_scans_like_the_same_images_on_their_own(sample):
    _, ds, _ = sample
    idx = np.array([0, 4, 5, 17])
    got = scan_dataset(subset(ds, idx), SCAN, device="cpu").boxes
    whole = scan_dataset(ds, SCAN, device="cpu").boxes
    want = whole[whole.image_index.isin(idx)]
    np.testing.assert_array_equal(got.num_positive.to_numpy(), want.num_positive.to_numpy())
    np.testing.assert_array_equal(got.annotation_id.to_numpy(), want.annotation_id.to_numpy())
    assert (
        score_result(scan_dataset(subset(ds, np.arange(ds.num_images)), SCAN, device="cpu"))
        == evaluate(ds, SCAN.anchors, SCAN)[0]
    )


def test_kmeans_iou_finds_two_distinct_shapes():
    rng = np.random.default_rng(0)
    wh = np.concatenate([np.tile([10.0, 20.0], (30, 1)), np.tile([100.0, 50.0], (30, 1))])
    wh = wh * rng.uniform(0.98, 1.02, wh.shape)
    ladder = fb.kmeans_iou(wh, k=15)
    assert len(ladder.bases) == 5 and len(ladder.scales) == 3 and len(ladder.ratios) == 3
    assert ladder.ratios[0] == pytest.approx(0.5, rel=0.05) and ladder.ratios[-1] == pytest.approx(2.0, rel=0.05)


def test_yolov5_evolution_never_lowers_fitness_and_pyodi_keeps_retinanet_bases():
    rng = np.random.default_rng(1)
    wh = np.exp(rng.normal(3.0, 0.8, (300, 2)))
    ladder = fb.yolov5_autoanchor(wh, generations=50)
    assert ladder.scales[0] == 1.0 and len(ladder.sizes()) == 5
    p = fb.pyodi_ladder(wh)
    ratios = np.array(p.bases[1:]) / np.array(p.bases[:-1])
    np.testing.assert_allclose(ratios, 2.0, rtol=1e-3)  # levels stay an octave apart
    with pytest.raises(ValueError, match="at least 15 boxes"):
        fb.kmeans_iou(wh[:5])


def test_fit_anchors_refuses_bad_arguments(sample):
    _, ds, _ = sample
    three = ScanConfig(anchors=default_config(sizes=((32,), (64,), (128,)), strides=(8, 16, 32)))
    for kwargs, message in (
        ({"mode": "both"}, "mode must be one of"),
        ({"budget_s": float("nan")}, "budget_s must be"),
        ({"seed": -2}, "seed must be"),
        ({"scan": three}, "5 levels, got 3"),
    ):
        with pytest.raises(ValueError, match=message):
            fit_anchors(ds, **kwargs)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "{d}/fit.txt"], "must end in .json"),
        (["--out", "{d}/no/fit.json"], "does not exist"),
        (["--out", "{d}/fit.json", "--budget-s", "-1"], "seconds >= 0"),
        (["--out", "{d}/fit.json", "--mode", "both"], "invalid choice"),
        (["--out", "{d}/fit.json", "--pos", "0.3"], "neg_thresh <= pos_thresh"),
        (["--out", "{d}/fit.json", "--subset", "0"], "--subset must be >= 1"),
        (["--out", "{d}/fit.json", "--seed", "-1"], "seed must be a non-negative integer"),
        (["--out", "{d}/fit.json", "--min-size", "0"], "min_size and max_size must be >= 1"),
        (["--out", "{d}/fit.json", "--format", "bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(sample, tmp_path, capsys, extra, message):
    path, _, _ = sample
    argv = ["fit-anchors", str(path), "--quiet", *[a.replace("{d}", str(tmp_path)) for a in extra]]
    code = _exit_code(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_cli_refuses_a_missing_dataset(tmp_path, capsys):
    assert _exit_code(["fit-anchors", str(tmp_path / "none.json"), "--out", str(tmp_path / "f.json")]) == 2
    assert "dataset not found" in capsys.readouterr().err


def test_cli_refuses_a_dataset_without_boxes(tmp_path, capsys):
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}], "annotations": []}
    coco["categories"] = [{"id": 1, "name": "thing"}]
    path = write_json(tmp_path, coco)
    assert _exit_code(["fit-anchors", str(path), "--out", str(tmp_path / "f.json"), "--quiet"]) == 2
    assert "no (non-crowd) boxes" in capsys.readouterr().err


@pytest.mark.slow  # several seconds: the full suite runs it, the fast loop does not
def test_cli_writes_the_report_and_prints_the_snippets(sample, tmp_path, capsys):
    path, _, _ = sample
    out = tmp_path / "fit.json"
    argv = ["fit-anchors", str(path), "--out", str(out), "--budget-s", "2", "--subset", "8", "--min-size", "480"]
    assert main([*argv, "--max-size", "800"]) == 0
    captured = capsys.readouterr()
    assert "AnchorGenerator(" in captured.out and "ANCHOR_GENERATOR" in captured.out and "small" in captured.out
    assert "searching on 8 of 30 images" in captured.err
    assert set(json.loads(out.read_text())) >= {"torchvision", "mmdet", "detectron2", "before", "after"}


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return int(exc.code)


@pytest.mark.slow  # several seconds: the full suite runs it, the fast loop does not
def test_the_fit_is_deterministic_for_a_seed_when_it_converges(sample):
    _, ds, _ = sample
    small, scan = subset(ds, np.arange(4)), ScanConfig(anchors=default_config(min_size=240, max_size=400))
    a, b = (fit_anchors(small, scan, budget_s=120, subset_images=3, seed=5) for _ in range(2))
    assert not a.stopped_by_budget and not b.stopped_by_budget
    assert a.winner.config == b.winner.config and a.ci == b.ci
    assert [c.full for c in a.candidates] == [c.full for c in b.candidates]


@pytest.mark.slow  # its fixture runs a fit: the full suite runs it, the fast loop does not
def test_the_before_after_tables_per_class_and_level_add_up_to_the_scans(sample):
    from explorer.figures import anchor_fit as figs

    _, ds, fit = sample
    b, a = fit.before_result, fit.winner_result
    classes = fx.before_after_classes(b, a)
    assert classes["boxes"].sum() == fit.winner.full.boxes
    uncovered = ~covered_mask(a)
    for row in classes.itertuples():
        sel = a.boxes["category_id"].to_numpy() == row.category_id
        assert row.no_positive_after == pytest.approx(uncovered[sel].mean())
        assert row.category == ds.category_name(row.category_id)
    levels = fx.before_after_levels(b, a)
    assert levels["positives_after"].sum() == a.images["positives"].sum()
    assert levels["share_before"].sum() == pytest.approx(1.0)
    totals = fx.label_totals(b, a).set_index("count")
    assert totals.loc["anchors", "before"] == b.images["anchors"].sum()
    parts = ["positives", "ignored", "hard_negatives", "easy_negatives"]
    assert totals.loc[parts, "after"].sum() == totals.loc["anchors", "after"]
    tables = json.loads(json.dumps(fx.report_dict(fit)))["tables"]
    assert [r["category"] for r in tables["per_class"]] == classes["category"].tolist()
    assert tables["labels"][1] == {"count": "positives", "before": int(b.images["positives"].sum()),
                                   "after": int(a.images["positives"].sum())}  # fmt: skip
    fig = figs.no_positive_before_after(classes, "category")
    assert [t.name for t in fig.data] == ["torchvision default", "fitted"]
    assert list(fig.data[1].y) == pytest.approx(list(100 * classes["no_positive_after"]))
    assert len(figs.positives_per_level_before_after(levels).data[0].x) == 5
