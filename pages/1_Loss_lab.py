"""Loss lab: loss and gradient curves of the dense-detection losses, and where a batch's loss goes."""

from __future__ import annotations

import streamlit as st

from explorer.figures import loss_budget as budget_figs
from explorer.figures import losses as figs
from explorer.losses import box_curves, budget, curves
from ui import losses as ui
from ui.common import page_setup

page_setup("Loss lab", "📉")

QP = "query-params"  # every control is bound to the URL: the current view can be shared by copying the link
GAMMA_CHOICES = [0.0, 0.5, 1.0, 2.0, 3.0, 5.0]

st.markdown(
    "How each loss weighs an example, and what that does to a whole batch. Every control is kept in the page's "
    "address, so a link reproduces the current view. α and γ in the sidebar feed the classification curves and "
    "the batch simulation."
)

with st.sidebar:
    st.subheader("Focal parameters")
    alpha = st.slider("α (weight of positives)", 0.0, 1.0, 0.25, 0.05, key="alpha", bind=QP)
    gamma = st.slider("γ (focusing)", 0.0, 5.0, 2.0, 0.1, key="gamma", bind=QP)
    st.caption("Paper defaults: α = 0.25, γ = 2. Best α for plain α-CE was 0.75 (Table 1a).")


@st.fragment
def classification_section(alpha: float, gamma: float) -> None:
    c1, c2, c3, c4 = st.columns([2.6, 2.2, 1.7, 2.5])
    losses = c1.multiselect(
        "Losses", list(curves.CLASSIFICATION_LOSSES), default=["CE", "focal"], key="losses", bind=QP
    )
    gammas = c2.multiselect(
        "Overlaid γ (focal)", GAMMA_CHOICES, default=[0.0, 0.5, 1.0, 2.0, 5.0], key="gammas", bind=QP
    )
    axis = c3.segmented_control(
        "x axis", ["p_t", "logit"], default="p_t", required=True, key="axis", bind=QP, width="stretch"
    )
    example = c4.segmented_control(
        "Example class",
        ["foreground", "background"],
        default="foreground",
        required=True,
        key="target",
        bind=QP,
        width="stretch",
    )
    target = 1 if example == "foreground" else 0
    c5, c6, c7, c8, c9 = st.columns([2.6, 2, 2, 2, 2])
    alpha_on = c5.toggle(
        "Apply α to focal", value=False, key="alpha_on", bind=QP, help="Off: the paper's Figure 1 (α_t = 1)."
    )
    log_y = c5.toggle("Log scale", value=False, key="log", bind=QP)
    well = c6.slider("Well-classified from p_t >", 0.5, 0.99, 0.6, 0.01, key="wc", bind=QP)
    readout = c7.slider("Readout at p_t =", 0.5, 0.99, 0.9, 0.01, key="pt", bind=QP)
    fls_gamma = c8.slider("FL* γ*", 0.5, 5.0, 2.0, 0.5, key="fls_gamma", bind=QP)
    fls_beta = c9.slider("FL* β*", -2.0, 2.0, 1.0, 0.5, key="fls_beta", bind=QP)

    alpha_t = (alpha if target == 1 else 1 - alpha) if alpha_on else 1.0
    if alpha_on and alpha_t == 0:
        st.warning("α_t is 0 for this class, so every α-weighted loss is 0; the readout ignores α.")
        alpha_t = 1.0
    times = curves.focal_reduction(readout, gamma)
    extra = ""
    if alpha_on and alpha_t != 1.0:
        extra = f" — {curves.focal_reduction(readout, gamma, alpha_t):,.0f}× with α_t = {alpha_t:g}"
    st.info(
        f"At p_t = {readout:g}, focal loss with γ = {gamma:g} is **{times:,.0f}× smaller** than CE{extra}: "
        f"the modulating factor (1 − p_t)^γ = {1 / times:.3g}."
    )
    if not losses:
        st.info("Choose at least one loss to plot.")
        return
    overlay = tuple(sorted({float(g) for g in gammas} | {float(gamma)}))
    df = ui.classification_curves(
        tuple(losses), overlay, alpha, alpha if alpha_on else -1.0, fls_gamma, fls_beta, axis, target
    )
    fig = figs.classification_figure(
        df, axis=axis, log_y=log_y, well_classified=well, target=target, readout_pt=readout
    )
    ui.figure_block(
        fig,
        caption="Read: the higher γ, the faster the loss and its gradient vanish once an example is well "
        "classified (shaded) — hard examples keep almost the full CE signal (focal-loss paper, Figure 1).",
        latex=[
            r"\mathrm{CE}=-\log p_t",
            r"\mathrm{FL}=-\alpha_t(1-p_t)^{\gamma}\log p_t",
            r"\begin{gathered}\frac{\partial \mathrm{FL}}{\partial x}=\alpha_t\, s\,(1-p_t)^{\gamma}\\"
            r"\times(\gamma p_t\log p_t+p_t-1)\end{gathered}",
            r"\mathrm{FL}^*=-\frac{\log \sigma(\gamma^* x_t+\beta^*)}{\gamma^*}",
        ],
        notes="p_t = p for a foreground example, 1 − p for background; s = ±1 is the class sign. "
        "'loss / CE' is the modulating factor α_t(1 − p_t)^γ.",
        df=df,
        name="classification_curves",
    )


@st.fragment
def soft_target_section() -> None:
    st.markdown("##### Quality Focal Loss and Varifocal loss")
    c1, c2, c3, c4, c5 = st.columns(5)
    beta = c1.slider("QFL β", 0.0, 4.0, 2.0, 0.5, key="qfl_beta", bind=QP)
    v_alpha = c2.slider("VFL α (negatives)", 0.05, 1.0, 0.75, 0.05, key="vfl_alpha", bind=QP)
    v_gamma = c3.slider("VFL γ", 0.0, 4.0, 2.0, 0.5, key="vfl_gamma", bind=QP)
    quantity = c4.segmented_control(
        "Heatmap of", ["loss", "grad"], default="loss", required=True, key="soft_q", bind=QP, width="stretch"
    )
    cut = c5.slider("Line cut at target IoU", 0.0, 1.0, 0.6, 0.05, key="cut", bind=QP)
    grid = ui.soft_target_grid(beta, v_alpha, v_gamma)
    fig = figs.soft_heatmap_figure(grid, quantity=quantity, cut_target=cut)
    ui.figure_block(
        fig,
        caption="Read: both losses vanish along the dotted diagonal (prediction = target IoU); VFL keeps the "
        "full BCE-like push on positives but damps negatives (bottom row) by αp^γ.",
        latex=[
            r"\begin{aligned}\mathrm{QFL}=&-|y-\sigma|^{\beta}\\&\times\big[(1-y)\log(1-\sigma)\\"
            r"&\quad+y\log\sigma\big]\end{aligned}",
            r"\begin{gathered}\mathrm{VFL}_{q>0}=-q\,\big[q\log p\\+(1-q)\log(1-p)\big]\\"
            r"\mathrm{VFL}_{q=0}=-\alpha p^{\gamma}\log(1-p)\end{gathered}",
        ],
        notes="Gradients are with respect to the logit; the modulating weights are not detached (mmdet).",
        df=grid.to_frame(),
        name=f"soft_targets_{quantity}",
    )
    cut_df = ui.soft_target_cut(cut, beta, v_alpha, v_gamma)
    ui.figure_block(
        figs.soft_cut_figure(cut_df, target=cut),
        caption="Read: QFL's minimum sits exactly at the target (red line); VFL and BCE have theirs there too, "
        "but with different curvature away from it.",
        latex=r"\begin{gathered}\frac{\partial\mathrm{QFL}}{\partial x}=\beta|y-\sigma|^{\beta-1}\\"
        r"\times\mathrm{sgn}(\sigma-y)\,\sigma(1-\sigma)\\\times\mathrm{BCE}+|y-\sigma|^{\beta}(\sigma-y)\end{gathered}",
        df=cut_df,
        name="soft_target_cut",
    )


@st.fragment
def dfl_section() -> None:
    st.markdown("##### Distribution Focal Loss")
    c1, c2, c3, c4 = st.columns(4)
    n_bins = c1.select_slider("n (reg_max)", [4, 8, 12, 14, 16], value=16, key="dfl_n", bind=QP)
    target = c2.slider("Target y (bins)", 0.0, 16.0, 7.3, 0.1, key="dfl_y", bind=QP)
    mean = c3.slider("Predicted centre", 0.0, 16.0, 6.0, 0.1, key="dfl_mean", bind=QP)
    width = c4.slider("Predicted spread (bins)", 0.2, 4.0, 1.0, 0.1, key="dfl_width", bind=QP)
    if target > n_bins or mean > n_bins:
        st.warning(f"Target and centre must lie in [0, n] = [0, {n_bins}]: they are clipped to {n_bins}.")
        target, mean = min(target, float(n_bins)), min(mean, float(n_bins))
    bins, curve = ui.dfl_tables(target, int(n_bins), mean, width)
    st.metric(
        "DFL of this prediction",
        f"{bins['loss'].iloc[0]:.4f}",
        delta=f"expected value {bins['pred_expectation'].iloc[0]:.2f} vs target {target:g}",
        delta_color="off",
        delta_arrow="off",
    )
    ui.figure_block(
        figs.dfl_figure(bins, curve, target=target),
        caption="Read: DFL only rewards the two bins around the target (red bars); it is smallest when the "
        "prediction puts exactly those weights there — a sharp peak elsewhere is penalised.",
        latex=[
            r"\begin{gathered}\mathrm{DFL}=-\big[(y_{i+1}-y)\log S_i\\+(y-y_i)\log S_{i+1}\big]\end{gathered}",
            r"\frac{\partial\,\mathrm{DFL}}{\partial z_j}=S_j-w_j",
        ],
        notes="S = softmax over the n + 1 bins; y_i = ⌊y⌋. The prediction here is a Gaussian bump over the bins.",
        df=bins,
        name="dfl_bins",
    )


@st.fragment
def box_curves_section(riou_beta: float, riou_k: float) -> None:
    st.markdown("##### IoU-family losses")
    c1, c2, c3, c4 = st.columns([3, 2.6, 2, 2.2])
    chosen = c1.multiselect(
        "Losses", list(box_curves.BOX_LOSSES), default=list(box_curves.BOX_LOSSES), key="box_losses", bind=QP
    )
    path = c2.segmented_control(
        "Prediction moves by",
        list(box_curves.BOX_PATHS),
        default="shift",
        required=True,
        key="box_path",
        bind=QP,
        width="stretch",
    )
    grad_choice = c3.segmented_control(
        "Gradient w.r.t.",
        ["box", "IoU"],
        default="box",
        required=True,
        key="grad_kind",
        bind=QP,
        width="stretch",
        help="box: ‖∂L/∂(x1, y1, x2, y2)‖ of the prediction, for every loss; IoU: |∂L/∂IoU|, for the losses that "
        "are functions of IoU alone (1 − IoU, −ln IoU, RIoU).",
    )
    grad_kind = "box" if grad_choice == "box" else "iou"
    gated = c4.toggle("mmdet CIoU (gated)", value=False, key="gated", bind=QP)
    log_y = c4.toggle("Log scale", value=False, key="box_log", bind=QP)
    if not chosen:
        st.info("Choose at least one loss to plot.")
        return
    df = ui.box_loss_curves(path, tuple(chosen), riou_beta, riou_k, gated)
    ui.figure_block(
        figs.box_loss_figure(df, grad_kind=grad_kind, log_y=log_y),
        caption=f"Read: 1 − IoU pushes every box equally (|∂L/∂IoU| = 1), −ln IoU pushes bad boxes hardest, and "
        f"the RIoU reconstruction gives the most gradient to good boxes just below IoU = β. Path: "
        f"{box_curves.BOX_PATHS[path]}.",
        latex=[
            r"\mathrm{GIoU}=\mathrm{IoU}-\frac{|C\setminus(B\cup G)|}{|C|}",
            r"\mathcal{L}_{\mathrm{DIoU}}=1-\mathrm{IoU}+\frac{\rho^2}{c^2}",
            r"\mathcal{L}_{\mathrm{CIoU}}=\mathcal{L}_{\mathrm{DIoU}}+\alpha v",
            r"-\frac{\partial \mathcal{L}_{\mathrm{RIoU}}}{\partial u}=\begin{cases}k u & u\le\beta\\"
            r" k\beta\frac{1-u}{1-\beta} & u>\beta\end{cases}",
        ],
        notes="RIoU is a reconstruction of the paper's shape (only its abstract could be read): the gradient rises "
        "with IoU up to β, then falls to 0 at IoU = 1. Ground truth is the unit box; gradients are at that scale.",
        df=df,
        name=f"box_losses_{path}",
    )


@st.fragment
def smooth_l1_section() -> None:
    st.markdown("##### Smooth L1")
    betas = st.multiselect(
        "β values",
        [0.0, 0.1, 0.11, 1 / 9, 0.5, 1.0],
        default=[0.0, 0.11, 1.0],
        format_func=lambda b: f"{b:.4g}",
        key="sl1_betas",
        bind=QP,
    )
    if not betas:
        st.info("Choose at least one β.")
        return
    df = ui.smooth_l1_curves(tuple(sorted(betas)))
    ui.figure_block(
        figs.smooth_l1_figure(df),
        caption="Read: smooth L1 is quadratic (gradient d/β) inside |d| < β and L1 (gradient ±1) outside; "
        "β = 0 is plain L1, as torchvision's RetinaNet v1 and detectron2's configs use.",
        latex=r"s_\beta(d)=\begin{cases}\tfrac{d^2}{2\beta} & |d|<\beta\\"
        r" |d|-\tfrac{\beta}{2} & |d|\ge\beta\end{cases}",
        notes="Detectron (the paper's code) used β = 0.11; torch's default is 1.0.",
        df=df,
        name="smooth_l1",
    )


@st.fragment
def sandbox_section(riou_beta: float, riou_k: float) -> None:
    st.markdown("##### Two-box sandbox")
    c1, c2 = st.columns(2)
    gx = c1.slider("Ground truth x1 – x2", 0, 200, (40, 120), key="gt_x", bind=QP)
    gy = c1.slider("Ground truth y1 – y2", 0, 200, (40, 100), key="gt_y", bind=QP)
    px = c2.slider("Prediction x1 – x2", 0, 200, (70, 160), key="pred_x", bind=QP)
    py = c2.slider("Prediction y1 – y2", 0, 200, (55, 140), key="pred_y", bind=QP)
    pred, gt = (px[0], py[0], px[1], py[1]), (gx[0], gy[0], gx[1], gy[1])
    try:
        table = box_curves.box_pair_table(pred, gt, riou_beta=riou_beta, riou_k=riou_k)
    except ValueError as err:
        st.error(f"{err} — widen the box.")
        return
    metrics = table.set_index("measure")
    cols = st.columns(5)
    for col, name in zip(cols, ["IoU", "GIoU", "DIoU", "CIoU (torchvision)", "RIoU (reconstruction)"], strict=True):
        row = metrics.loc[name]
        value = row["loss"] if name.startswith("RIoU") else row["value"]
        col.metric(name if not name.startswith("RIoU") else "RIoU loss", f"{value:.4f}", help=f"loss {row['loss']:.4f}")
    ui.figure_block(
        figs.box_pair_figure(pred, gt),
        caption="Read: GIoU grows the penalty with the empty part of C; DIoU with the centre distance ρ "
        "relative to C's diagonal c; CIoU adds the aspect-ratio mismatch v. Hover a metric for its loss.",
        latex=[
            r"\begin{gathered}v=\tfrac{4}{\pi^2}\Big(\arctan\tfrac{w_g}{h_g}\\-\arctan\tfrac{w}{h}\Big)^2\end{gathered}",
            r"\alpha=\frac{v}{1-\mathrm{IoU}+v}",
        ],
        notes="mmdet's CIoU sets α = 0 unless IoU > 0.5 (then it equals DIoU below 0.5).",
        df=table,
        name="box_pair",
    )
    st.dataframe(table.style.format(precision=4, na_rep="—"), hide_index=True, width="stretch")


@st.fragment
def budget_section(alpha: float, gamma: float) -> None:
    st.markdown(
        "A simulated batch of anchors: each group draws its predicted foreground probability p from a Beta(a, b) "
        "law. The bars split the batch's total loss and total gradient between the groups."
    )
    c1, c2, c3 = st.columns(3)
    size = c1.select_slider("Anchors N", list(ui.BATCH_SIZES), value="100k", key="n", bind=QP)
    n = ui.BATCH_SIZES[size]
    pos_share = c2.slider("Positives (%)", 0.0, 20.0, 0.5, 0.1, key="pos_pct", bind=QP)
    hard_share = c3.slider("Hard negatives (%)", 0.0, 50.0, 2.0, 0.5, key="hard_pct", bind=QP)
    with st.expander("Probability laws (Beta a, b) and seed"):
        e1, e2, e3, e4 = st.columns(4)
        pa = e1.number_input("positive a", 0.1, 100.0, 6.0, key="pos_a", bind=QP)
        pb = e1.number_input("positive b", 0.1, 100.0, 3.0, key="pos_b", bind=QP)
        ha = e2.number_input("hard negative a", 0.1, 100.0, 2.0, key="hard_a", bind=QP)
        hb = e2.number_input("hard negative b", 0.1, 100.0, 5.0, key="hard_b", bind=QP)
        ea = e3.number_input("easy negative a", 0.1, 100.0, 1.0, key="easy_a", bind=QP)
        eb = e3.number_input("easy negative b", 0.1, 500.0, 50.0, key="easy_b", bind=QP)
        seed = e4.number_input("seed", 0, 2**31 - 1, 0, key="seed", bind=QP)
    cdf_gammas = st.multiselect(
        "γ values for the cumulative curves", GAMMA_CHOICES, default=[0.0, 0.5, 1.0, 2.0], key="cdf_gammas", bind=QP
    )
    try:
        spec = budget.BatchSpec(
            n_anchors=n,
            positive=budget.GroupSpec(pos_share / 100, pa, pb),
            hard_negative=budget.GroupSpec(hard_share / 100, ha, hb),
            easy_negative=budget.GroupSpec(max(0.0, 1 - (pos_share + hard_share) / 100), ea, eb),
            seed=int(seed),
        )
        table = ui.loss_budget(spec, alpha, gamma)
    except ValueError as err:
        st.error(str(err))
        return
    counts = spec.counts()
    st.caption(
        f"{counts[0]:,} positives · {counts[1]:,} hard negatives · {counts[2]:,} easy negatives "
        f"(mean p {spec.positive.mean:.2f} / {spec.hard_negative.mean:.2f} / {spec.easy_negative.mean:.3f}); "
        f"focal and α-CE use α = {alpha:g}, γ = {gamma:g} from the sidebar."
    )
    shares = table.set_index(["loss", "group"])["loss_share"]
    m1, m2, m3 = st.columns(3)
    for col, name in zip((m1, m2, m3), budget.LOSSES, strict=True):
        col.metric(f"{name}: easy negatives' share of the loss", f"{shares[name, 'easy negative']:.1%}")
    ui.figure_block(
        budget_figs.budget_figure(table),
        caption="Read: with CE the easy negatives, each almost free, still take most of the loss and gradient; "
        "focal loss hands that budget to the hard examples.",
        latex=[
            r"\text{share}_g=\frac{\sum_{i\in g}\mathcal{L}_i}{\sum_i \mathcal{L}_i}",
            r"|\partial\mathrm{CE}/\partial x|=1-p_t",
        ],
        df=table,
        name="loss_budget",
    )
    hist = ui.probability_histogram(spec)
    ui.figure_block(
        budget_figs.probability_figure(hist),
        caption="Read: the simulated predictions — positives near 1, easy negatives piled up near 0.",
        latex=r"p\sim\mathrm{Beta}(a,b)",
        df=hist,
        name="simulated_probabilities",
    )
    if not cdf_gammas:
        st.info("Choose at least one γ for the cumulative curves.")
        return
    cdf = ui.loss_cdf(spec, tuple(sorted(float(g) for g in cdf_gammas)))
    ui.figure_block(
        budget_figs.loss_cdf_figure(cdf),
        caption="Read: as γ grows, the negatives' curve hugs zero until the last few percent — nearly all their "
        "loss comes from a handful of hard negatives — while the positives' curve barely moves (paper Figure 4).",
        latex=r"\mathrm{CDF}(f)=\frac{\sum_{i\le fN}\mathrm{FL}_{(i)}}{\sum_i \mathrm{FL}_i}",
        notes="Losses sorted from lowest to highest within each group; α cancels in the normalisation.",
        df=cdf,
        name="loss_cdf",
    )


tabs = st.tabs(["Classification", "Soft targets", "Box losses", "Where the loss goes"], key="tab", bind=QP)
with tabs[0]:
    if tabs[0].open:
        classification_section(alpha, gamma)
with tabs[1]:
    if tabs[1].open:
        soft_target_section()
        dfl_section()
with tabs[2]:
    if tabs[2].open:
        r1, r2 = st.columns(2)
        riou_beta = r1.slider("RIoU breakpoint β", 0.5, 0.99, 0.95, 0.01, key="riou_beta", bind=QP)
        riou_k = r2.slider("RIoU slope k", 0.5, 5.0, 2.0, 0.5, key="riou_k", bind=QP)
        st.caption("RIoU here is a reconstruction of the paper's shape (see the notes beside the first chart).")
        box_curves_section(riou_beta, riou_k)
        smooth_l1_section()
        sandbox_section(riou_beta, riou_k)
with tabs[3]:
    if tabs[3].open:
        budget_section(alpha, gamma)
