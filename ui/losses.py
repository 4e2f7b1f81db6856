"""Cached wrappers and small widgets of the Loss lab page. Every cache is bounded and keyed on small scalars."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer.losses import box_curves, budget, curves
from ui.common import download_buttons, plot

#: Batch sizes offered for the simulation, by the label shown (and kept in the URL).
BATCH_SIZES: dict[str, int] = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000, "3M": 3_000_000, "10M": 10_000_000}


@st.cache_data(max_entries=64, show_spinner=False)
def classification_curves(
    losses: tuple[str, ...],
    gammas: tuple[float, ...],
    alpha: float,
    focal_alpha: float,
    fl_star_gamma: float,
    fl_star_beta: float,
    axis: str,
    target: int,
) -> pd.DataFrame:
    return curves.classification_curves(
        losses,
        gammas=gammas,
        alpha=alpha,
        focal_alpha=focal_alpha,
        fl_star_gamma=fl_star_gamma,
        fl_star_beta=fl_star_beta,
        axis=axis,
        target=target,
    )


@st.cache_data(max_entries=32, show_spinner=False)
def soft_target_grid(beta: float, alpha: float, gamma: float) -> curves.SoftTargetGrid:
    return curves.soft_target_grid(beta=beta, alpha=alpha, gamma=gamma)


@st.cache_data(max_entries=64, show_spinner=False)
def soft_target_cut(target: float, beta: float, alpha: float, gamma: float) -> pd.DataFrame:
    return curves.soft_target_cut(target, beta=beta, alpha=alpha, gamma=gamma)


@st.cache_data(max_entries=64, show_spinner=False)
def dfl_tables(target: float, n_bins: int, pred_mean: float, pred_width: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (
        curves.dfl_bins(target, n_bins=n_bins, pred_mean=pred_mean, pred_width=pred_width),
        curves.dfl_loss_vs_mean(target, n_bins=n_bins, pred_width=pred_width),
    )


@st.cache_data(max_entries=32, show_spinner=False)
def box_loss_curves(
    path: str, losses: tuple[str, ...], riou_beta: float, riou_k: float, ciou_gated: bool
) -> pd.DataFrame:
    return box_curves.box_loss_curves(path, losses=losses, riou_beta=riou_beta, riou_k=riou_k, ciou_gated=ciou_gated)


@st.cache_data(max_entries=32, show_spinner=False)
def smooth_l1_curves(betas: tuple[float, ...]) -> pd.DataFrame:
    return box_curves.smooth_l1_curves(betas)


@st.cache_resource(max_entries=2, show_spinner="Simulating the batch…")
def simulated_batch(spec: budget.BatchSpec) -> budget.SimulatedBatch:
    """The simulated batch (up to 10 million anchors, ~90 MB): a resource, so it is never copied."""
    return budget.simulate_batch(spec)


@st.cache_data(max_entries=64, show_spinner=False)
def loss_budget(spec: budget.BatchSpec, alpha: float, gamma: float) -> pd.DataFrame:
    return budget.loss_budget(simulated_batch(spec), alpha=alpha, gamma=gamma)


@st.cache_data(max_entries=16, show_spinner="Sorting the losses…")
def loss_cdf(spec: budget.BatchSpec, gammas: tuple[float, ...]) -> pd.DataFrame:
    return budget.normalized_loss_cdf(simulated_batch(spec), gammas)


@st.cache_data(max_entries=16, show_spinner=False)
def probability_histogram(spec: budget.BatchSpec) -> pd.DataFrame:
    return budget.probability_histogram(simulated_batch(spec))


def figure_block(
    fig: go.Figure,
    *,
    caption: str,
    latex: str | list[str],
    df: pd.DataFrame | None,
    name: str,
    notes: str | None = None,
) -> None:
    """One figure at full width with its reading hint above, and below it its formula(s) beside its notes and
    downloads (the two columns wrap under each other on a narrow screen).

    Formulas are set in KaTeX's ``\\small`` size: at normal size the longer ones overflowed their column.
    """
    st.caption(caption)
    plot(fig, key=f"fig-{name}")
    left, right = st.columns([3, 2], gap="medium")
    with left:
        for line in [latex] if isinstance(latex, str) else latex:
            st.latex(r"\small " + line)
    with right:
        if notes:
            st.caption(notes)
        download_buttons(name=name, df=df, fig=fig, key=f"dl-{name}")
