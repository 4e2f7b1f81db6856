"""Tests of explorer.losses.budget: the simulated batch, the loss/gradient budget and the Figure 4 CDFs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.losses import budget as B
from explorer.losses import classification as L


def small_spec(**kw) -> B.BatchSpec:
    return B.BatchSpec(n_anchors=kw.pop("n_anchors", 20_000), seed=kw.pop("seed", 3), **kw)


def test_simulate_batch_counts_order_and_determinism() -> None:
    spec = small_spec()
    a, b = B.simulate_batch(spec), B.simulate_batch(spec)
    np.testing.assert_array_equal(a.p, b.p)
    assert a.counts == spec.counts() == (100, 400, 19_500)
    assert a.p.shape == a.group.shape == (20_000,) and a.p.dtype == np.float64 and a.group.dtype == np.int8
    np.testing.assert_array_equal(np.bincount(a.group, minlength=4)[list(B.GROUP_LABELS)], a.counts)
    stored = np.array([B.GROUP_LABELS.index(code) for code in a.group[::97]])
    assert (np.diff(stored) >= 0).all()  # stored group by group, in GROUP_LABELS' order
    assert ((a.p > 0) & (a.p < 1)).all()
    c = B.simulate_batch(small_spec(seed=4))
    assert not np.array_equal(a.p, c.p)
    # Group means follow the Beta laws.
    for label, g in zip(B.GROUP_LABELS, (spec.positive, spec.hard_negative, spec.easy_negative), strict=True):
        assert a.p[a.group == label].mean() == pytest.approx(g.mean, abs=0.03)


def test_budget_matches_per_anchor_losses_and_torch() -> None:
    batch = B.simulate_batch(small_spec())
    for alpha, gamma in ((0.25, 2.0), (0.5, 0.0), (0.9, 1.3)):
        table = B.loss_budget(batch, alpha=alpha, gamma=gamma)
        per = B.per_anchor_losses(batch, alpha=alpha, gamma=gamma)
        assert len(table) == 9
        for name in B.LOSSES:
            rows = table[table["loss"] == name].set_index("group")
            for label, group in zip(B.GROUP_LABELS, B.GROUPS, strict=True):
                m = batch.group == label
                assert rows.loc[group, "loss_sum"] == pytest.approx(per[name][m].sum(), rel=1e-10)
                assert rows.loc[group, "grad_sum"] == pytest.approx(per[f"{name} grad"][m].sum(), rel=1e-10)
            assert rows["loss_share"].sum() == pytest.approx(1.0)
            assert rows["grad_share"].sum() == pytest.approx(1.0)
        # Per-anchor values agree with the torch losses and their closed-form gradients.
        x = torch.logit(torch.from_numpy(batch.p))
        y = torch.from_numpy(batch.target)
        np.testing.assert_allclose(per["focal"], L.focal_loss(x, y, alpha, gamma).numpy(), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(
            per["focal grad"], L.focal_loss_grad(x, y, alpha, gamma).abs().numpy(), rtol=1e-6, atol=1e-12
        )
        np.testing.assert_allclose(per["α-CE"], L.alpha_ce_loss(x, y, alpha).numpy(), rtol=1e-6, atol=1e-12)


def test_focal_moves_budget_off_easy_negatives() -> None:
    table = B.loss_budget(B.BatchSpec(n_anchors=50_000), alpha=0.25, gamma=2.0)
    share = table.set_index(["loss", "group"])["loss_share"]
    grad = table.set_index(["loss", "group"])["grad_share"]
    assert share["CE", "easy negative"] > 0.5  # the paper's claim: easy negatives dominate CE
    assert share["focal", "easy negative"] < 0.05
    assert grad["CE", "easy negative"] > 0.5 and grad["focal", "easy negative"] < 0.1
    # gamma = 0 focal is alpha-CE.
    g0 = B.loss_budget(B.BatchSpec(n_anchors=50_000), alpha=0.25, gamma=0.0).set_index(["loss", "group"])
    np.testing.assert_allclose(g0.loc["focal", "loss_sum"], g0.loc["α-CE", "loss_sum"], rtol=1e-12)


def test_normalized_loss_cdf_shape_and_paper_trend() -> None:
    df = B.normalized_loss_cdf(small_spec(), gammas=(0.0, 2.0), n_points=101)
    assert set(df["group"]) == {"positive", "negative"}
    for (_, _), d in df.groupby(["group", "gamma"]):
        assert d["cumulative_loss"].iloc[0] == pytest.approx(0.0)
        assert d["cumulative_loss"].iloc[-1] == pytest.approx(1.0)
        assert (np.diff(d["cumulative_loss"].to_numpy()) >= -1e-12).all()
        assert (d["cumulative_loss"] <= d["fraction"] + 1e-9).all()  # sorted ascending: below the diagonal

    def at(group: str, gamma: float, frac: float) -> float:
        d = df[(df["group"] == group) & (df["gamma"] == gamma)]
        return float(np.interp(frac, d["fraction"], d["cumulative_loss"]))

    # Figure 4: with gamma = 2 nearly all negative loss comes from a small fraction of negatives...
    assert at("negative", 2.0, 0.9) < 0.05 < at("negative", 0.0, 0.9)
    # ...while the positives' curve changes much less.
    assert at("positive", 2.0, 0.9) > 10 * at("negative", 2.0, 0.9)


def test_probability_histogram() -> None:
    h = B.probability_histogram(small_spec(), bins=20)
    assert len(h) == 60
    assert h.groupby("group")["count"].sum().to_dict() == {
        "positive": 100,
        "hard negative": 400,
        "easy negative": 19_500,
    }
    assert h.groupby("group")["fraction"].sum().to_numpy() == pytest.approx(1.0)


def test_empty_positive_group() -> None:
    spec = small_spec(positive=B.GroupSpec(0.0, 2, 2))
    table = B.loss_budget(spec)
    assert (table[table["group"] == "positive"]["loss_sum"] == 0).all()
    df = B.normalized_loss_cdf(spec, gammas=(2.0,))
    assert set(df["group"]) == {"negative"}


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: B.BatchSpec(n_anchors=0), "n_anchors=0"),
        (lambda: B.BatchSpec(n_anchors=B.MAX_ANCHORS + 1), "n_anchors"),
        (lambda: B.GroupSpec(1.5, 1, 1), "share"),
        (lambda: B.GroupSpec(0.1, 0, 1), "a=0"),
        (lambda: B.BatchSpec(positive=B.GroupSpec(0.6, 1, 1), hard_negative=B.GroupSpec(0.6, 1, 1)), "exceeds 1"),
        (lambda: B.loss_budget(small_spec(), alpha=2.0), "alpha=2.0"),
        (lambda: B.loss_budget(small_spec(), gamma=-1.0), "gamma=-1.0"),
        (lambda: B.normalized_loss_cdf(small_spec(), gammas=()), "gammas"),
        (lambda: B.loss_budget("not a batch"), "BatchSpec"),
    ],
)
def test_bad_input(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_docstring_examples() -> None:
    import doctest

    assert doctest.testmod(B).failed == 0
