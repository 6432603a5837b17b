"""The report of the orvieto2021 chapter: claims, figures, slider views and prose over the results
of :mod:`curvnb.studies.orvieto2021.compute` (editing this module reuses every cached result).
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from curvnb.claims import by_verdict, what_we_found
from curvnb.config import single_thread
from curvnb.figures import panels
from curvnb.init_stats import (CHAIN_LOG_MEAN, balanced_escape_theory, grad_norms_over_depths, hessian_top_at_init,
                               log_ratio_per_layer)
from curvnb.stats import bootstrap_interval, quantile_interval
from curvnb.studies.orvieto2021.compute import CONDITIONS, Config, STREAMS, VARIANTS
from curvnb.studies.orvieto2021.specs import COLLAPSE_WIDTHS, LN10, SPEC, claim_results, slope


def _log10(a: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log10(a)  # exact zeros (dead ReLU nets) become -inf and sort below everything


def _quartiles(a: np.ndarray, axis: int = 0) -> dict:
    with np.errstate(invalid="ignore"):  # a quartile of a column with -inf entries may be -inf
        q1, med, q3 = np.quantile(a, [0.25, 0.5, 0.75], axis=axis)
    return {"q1": q1, "median": med, "q3": q3}


def claims(results: dict, config: Config, seed: int):
    """Every claim of the chapter as an engine ``Result`` (see :mod:`curvnb.studies.orvieto2021.specs`)."""
    return claim_results(results, config, seed)


#: Why a claim can come out as it did although the theory behind it is right (shown by verdict).
def why(records: list[dict]) -> str:
    """The study's explanations, each conditioned on its claim's verdict in this run."""
    r = {rec["id"]: rec for rec in records}
    parts = [
        by_verdict(r["hessian-vanishes"], reproduced="",
                   not_reproduced="At initialisation f ≈ 0, so |f − y| = O(1) and the top eigenvalue is set by the "
                   "residual term (f − y)∇²f, a single product of L − 2 random matrices: it decays at half the "
                   "gradient's rate in decades (F3), so a fixed factor needs twice the depth.",
                   inconclusive="The ratio of medians sits near its threshold; at this many nets its interval "
                   "still contains it."),
        by_verdict(r["relu-collapse-span1"], reproduced="", not_reproduced="The L/d law holds to leading order in "
                   "1/d; at finite width the curves are shifted by corrections of higher order in 1/d (width 8, "
                   "reported, sits visibly higher).", inconclusive=""),
        by_verdict(r["gradient-slope"], reproduced="", not_reproduced="At d = 64 the slope is small, so a few "
                   "hundredths of a decade of noise in the medians is a large relative error.",
                   inconclusive="At d = 64 the slope is small, so the noise of the medians is a large relative "
                   "error and the interval stays wide."),
    ]
    return " ".join(p for p in parts if p)


def findings_markdown(records: list[dict]) -> str:
    """The generated "what we found" paragraph with the study's verdict-conditioned explanations."""
    text = what_we_found(records)
    changed = sum(bool(r.get("changed")) for r in records)
    if changed:
        text += (f"\n\nThe rules of {changed} of these {len(records)} claims changed from the chapter's previous "
                 "version (each row links to the book's Changes page), and every result here is on new seeds: "
                 "the seed derivation changed.")
    extra = why(records)
    return text + ("\n\n" + extra if extra else "")


def hessian_slope_markdown(results: dict, config: Config, seed: int) -> str:
    """The measured decay of the median top |λ| per layer, with its interval, against the two theory rates."""
    ht = results["hessian_top"]
    depths = sorted(ht)
    logs = [_log10(ht[L]) for L in depths]
    fit = float(slope(depths, np.stack([np.median(a) for a in logs])))
    lo, hi = bootstrap_interval(tuple(logs), lambda *a: float(slope(depths, np.stack([np.median(x) for x in a]))),
                                seed=STREAMS.seed(seed, "bootstrap", len(SPEC)))
    gn = log_ratio_per_layer(config.hessian_width, "linear") / LN10
    return (f"Measured over {ht[depths[0]].size} nets, the median top $|\\lambda|$ falls by {-fit:.3g} decades per "
            f"layer (95 % interval [{-hi:.3g}, {-lo:.3g}]); the Gauss–Newton rate is {-gn:.3g} and the "
            f"residual-term rate {-gn / 2:.3g} decades per layer.")


# --------------------------------------------------------------------------- figures
def _band(ax, x, samples_by_x, label, color, log=True, marker="o"):
    arr = np.array([_log10(s) if log else s for s in samples_by_x])
    q = _quartiles(arr, axis=1)
    ax.plot(x, q["median"], marker=marker, ms=3.5, color=color, label=label)
    ax.fill_between(x, q["q1"], q["q3"], color=color, alpha=0.18, lw=0)
    return q


GRAD_LABEL = r"median $\log_{10}\|\nabla_{W_1}\ell\|^2$"


def figure_chain(results: dict):
    """F1: distribution of log10|∏w| and mean vs median vs theory."""
    chain = {L: v for L, v in results["chain"].items()}
    depths = sorted(chain)
    fig, axes = panels(2, row_height=2.9)
    cmap = plt.get_cmap("viridis")
    for i, L in enumerate(depths):
        v = chain[L] / LN10
        c = cmap(i / max(1, len(depths) - 1))
        axes[0].hist(v, bins=120, density=True, histtype="step", color=c, label=f"$L = {L}$")
        axes[0].axvline(np.median(v), color=c, lw=1)
        axes[0].axvline(CHAIN_LOG_MEAN * L / LN10, color=c, ls="--", lw=1)
    axes[0].set(xlabel=r"$\log_{10}|w_L\cdots w_1|$", ylabel="density",
                title="solid: median; dashed: $-0.635L/\\ln 10$")
    axes[0].legend(fontsize=7)
    Ls = np.array(depths)
    axes[1].semilogy(Ls, [np.exp(2 * np.median(chain[L])) for L in depths], "o-", label=r"median of $\prod w^2$")
    axes[1].semilogy(Ls, np.exp(2 * CHAIN_LOG_MEAN * Ls), "k--", label=r"$e^{-1.27L}$ (theory, median)")
    axes[1].semilogy(Ls, [np.mean(np.exp(2 * chain[L])) for L in depths], "s-", label=r"sample mean of $\prod w^2$")
    axes[1].axhline(1.0, color="gray", ls=":", label=r"$\mathbb{E}\prod w^2 = 1$")
    axes[1].set(xlabel="depth $L$", ylabel=r"$w_L^2\cdots w_1^2$", title="mean preserved, typical value vanishes")
    axes[1].legend(fontsize=7)
    return fig


def figure_gradients(results: dict, config: Config):
    """F2: median first-layer gradient vs depth (linear/Xavier, ReLU/He) with IQR bands and theory slopes."""
    gf = results["grad_first"]
    depths = np.array(config.grad_depths)
    fig, axes = panels(2, row_height=3.0)
    cmap = plt.get_cmap("plasma")
    for ax, act, widths, name in ((axes[0], "linear", config.linear_widths, "linear / Xavier"),
                                  (axes[1], "relu", config.relu_widths, "ReLU / He")):
        for i, d in enumerate(widths):
            c = cmap(i / max(1, len(widths)))
            q = _band(ax, depths, [gf[(act, d, L)] for L in depths], f"$d = {d}$", c)
            slope = log_ratio_per_layer(d, act) / LN10
            ax.plot(depths, q["median"][0] + slope * (depths - depths[0]), ls="--", color=c, lw=1)
        ax.set(xlabel="depth $L$", ylabel=GRAD_LABEL, title=f"{name} ({config.grad_seeds} seeds)")
        ax.legend(fontsize=7)
    return fig


def figure_collapse(results: dict, config: Config):
    """F2b: ReLU/He medians over the (L, d) grid, and the same medians against L/d with 95 % intervals."""
    gf = results["grad_first"]
    depths = list(config.grad_depths)
    ws = list(config.relu_widths)
    fig, axes = panels(2, row_height=3.0)
    grid = np.array([[np.median(_log10(gf[("relu", d, L)])) for L in depths] for d in ws])
    im = axes[0].imshow(grid, aspect="auto", origin="lower", cmap="magma")
    axes[0].set_xticks(range(len(depths)), [str(L) for L in depths])
    axes[0].set_yticks(range(len(ws)), [str(d) for d in ws])
    axes[0].grid(False)
    for (i, j), val in np.ndenumerate(grid):
        axes[0].text(j, i, f"{val:.1f}", ha="center", va="center", fontsize=7,
                     color="w" if val < np.median(grid) else "k")
    fig.colorbar(im, ax=axes[0], shrink=0.9)   # unlabelled: a label would collide with the next panel's
    axes[0].set(xlabel="depth $L$", ylabel="width $d$", title=r"ReLU / He: " + GRAD_LABEL)
    cmap = plt.get_cmap("plasma")
    ax = axes[1]
    for i, d in enumerate(ws):
        med = np.array([np.median(_log10(gf[("relu", d, L)])) for L in depths])
        ci = np.array([quantile_interval(v) if np.all(np.isfinite(v)) else (np.nan, np.nan)
                       for v in (_log10(gf[("relu", d, L)]) for L in depths)])
        ratio = np.array(depths) / d
        tested = "" if d in COLLAPSE_WIDTHS else " (not tested)"
        with np.errstate(invalid="ignore"):  # dead nets: a median of -inf has no error bar
            err = np.clip(np.nan_to_num(np.array([med - ci[:, 0], ci[:, 1] - med]), nan=0.0, posinf=0.0,
                                        neginf=0.0), 0, None)
        ok = np.isfinite(med)
        ax.errorbar(ratio[ok], med[ok], yerr=err[:, ok], fmt="o-", ms=3, capsize=2,
                    color=cmap(i / len(ws)), label=f"$d = {d}${tested}")
    ax.axvspan(0.9, 2.2, color="gray", alpha=0.12, lw=0)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="$L/d$", ylabel=GRAD_LABEL, title="collapse on $L/d$ (95 % intervals)")
    ax.legend(fontsize=7)
    return fig


def figure_hessian(results: dict, config: Config):
    """F3: top |λ| of the Hessian vs depth (with theory slopes) and full spectra of tiny nets."""
    ht = results["hessian_top"]
    depths = np.array(sorted(ht))
    fig, axes = panels(2, row_height=3.0)
    q = _band(axes[0], depths, [ht[L] for L in depths], "median, IQR", "C0")
    slope = log_ratio_per_layer(config.hessian_width, "linear") / LN10
    # Gauss-Newton part J^T J: squared products of L-1 matrices; residual part (f-y)·∇²f: one product of L-2.
    axes[0].plot(depths, q["median"][0] + slope * (depths - depths[0]), "k--", lw=1,
                 label=f"GN term: {slope:.3f} decades/layer")
    axes[0].plot(depths, q["median"][0] + slope / 2 * (depths - depths[0]), "k:", lw=1.2,
                 label=f"residual term: {slope / 2:.3f} decades/layer")
    axes[0].set(xlabel="depth $L$", ylabel=r"$\log_{10}\max|\lambda(H)|$",
                title=f"linear / Xavier, $d = {config.hessian_width}$, {ht[depths[0]].size} seeds")
    axes[0].legend(fontsize=7)
    for L, eig in sorted(results["spectra"].items()):
        axes[1].plot(np.sort(np.abs(eig))[::-1], label=f"$L = {L}$ ({len(eig)} params)")
    axes[1].set_yscale("log")
    axes[1].set(xlabel=r"index (sorted by $|\lambda|$)", ylabel=r"$|\lambda|$",
                title=f"full spectra, $d = {config.spectrum_width}$")
    axes[1].legend(fontsize=7)
    return fig


def figure_escape(results: dict, config: Config):
    """F4: escape time vs learning rate (balanced chain) and the rescaling test."""
    esc = results["balanced"]
    fig, axes = panels(3, row_height=2.9)
    cmap = plt.get_cmap("viridis")
    from matplotlib.lines import Line2D

    handles = []
    for i, w0 in enumerate(config.balanced_w0):
        c = cmap(i / len(config.balanced_w0))
        lrs = sorted(lr for (w, lr) in esc["gd"] if w == w0)
        axes[0].loglog(lrs, [esc["gd"][(w0, lr)] for lr in lrs], "o", ms=4, color=c)
        axes[0].loglog(lrs, [balanced_escape_theory(config.balanced_depth, w0, lr) for lr in lrs], "--", lw=1, color=c)
        alrs = sorted(lr for (w, lr) in esc["adam"] if w == w0)
        axes[0].loglog(alrs, [esc["adam"][(w0, lr)] for lr in alrs], "s-", ms=4, color=c, mfc="none")
        handles.append(Line2D([], [], color=c, label=f"$w_0 = {w0}$"))
    handles += [Line2D([], [], ls="--", marker="o", ms=4, color="k", lw=1, label="GD"),
                Line2D([], [], marker="s", ms=4, color="k", mfc="none", label="Adam")]
    top = max(max(esc["gd"].values()), max(esc["adam"].values()))
    axes[0].set_ylim(top=top * 100)  # room for the legend above the data
    axes[0].set(xlabel=r"learning rate $\eta$", ylabel="steps until loss < 0.25",
                title=f"balanced chain, $L = {config.balanced_depth}$")
    axes[0].legend(handles=handles, fontsize=7, ncol=2, loc="upper right", columnspacing=0.6, handlelength=1.4,
                   frameon=True, framealpha=1, edgecolor="none", borderaxespad=0.2)
    rs = results["rescale"]
    scales = list(config.rescale_scales)
    for key, label, m in (("gd", rf"GD $\eta={config.gd_lr}$", "o"),
                          ("adam", rf"Adam $\epsilon=10^{{{int(round(math.log10(config.adam_tiny_eps)))}}}$", "s"),
                          ("adam-eps1e-8", r"Adam $\epsilon=10^{-8}$", "^")):
        axes[1].semilogx(scales, [np.isfinite(rs[(key, c)]).mean() for c in scales], m + "-", ms=4, label=label)
        med = [np.median(rs[(key, c)]) for c in scales]
        axes[2].loglog(scales, [v if np.isfinite(v) else np.nan for v in med], m + "-", ms=4, label=label)
    axes[1].set(xlabel=r"loss scale $c$", ylabel="fraction hitting loss < 0.25",
                title=f"{config.rescale_seeds} chains, $L = {config.rescale_depth}$")
    axes[1].legend(fontsize=7)
    axes[2].set(xlabel=r"loss scale $c$", ylabel="median hitting step", title="median hitting time")
    return fig


def figure_architecture(results: dict, config: Config):
    """F5: first-layer gradient at init per architecture; training curves (median, IQR over seeds); final losses."""
    ag = results["arch_grad"]
    depths = np.array(config.arch_depths)
    fig, axes = panels(3, row_height=3.0)
    for i, name in enumerate(VARIANTS):
        _band(axes[0], depths, [ag[(name, L)] for L in depths], name, f"C{i}")
    axes[0].set(xlabel="depth $L$", ylabel=r"median $\log_{10}\|\nabla_{W_1}\ell\|^2$ (CE)",
                title=f"at init, {ag[('plain', depths[0])].size} seeds")
    axes[0].legend(fontsize=7)
    steps = results["training"]["step"]
    tr = results["training"]
    for i, (arch, opt) in enumerate(CONDITIONS):
        curves = np.asarray(tr["curves"][(arch, opt)])
        with np.errstate(invalid="ignore"):
            q1, med, q3 = np.quantile(curves, [0.25, 0.5, 0.75], axis=1)
        axes[1].plot(steps, med, color=f"C{i}", label=f"{arch}, {'Adam' if opt == 'adam' else 'SGD'}")
        axes[1].fill_between(steps, q1, q3, color=f"C{i}", alpha=0.18, lw=0)
        finals = curves[-1]
        xs = np.full(finals.size, i) + np.linspace(-0.15, 0.15, finals.size)
        axes[2].plot(xs, np.minimum(finals, 10), "o", ms=4, color=f"C{i}", alpha=0.8)
        axes[2].plot([i - 0.3, i + 0.3], [np.median(finals)] * 2, color="k", lw=1.5)
    axes[1].axhline(math.log(10), color="gray", lw=0.8, ls=":", label="chance, $\\ln 10$")
    axes[1].set_yscale("log")
    axes[1].set(xlabel="step", ylabel="training cross-entropy (nats)",
                title=f"selected $\\eta$, {tr['units']} test nets")
    axes[1].legend(fontsize=7)
    axes[2].set_yscale("log")
    axes[2].set_xticks(range(len(CONDITIONS)), ["plain\nSGD", "plain\nAdam", "res.\nSGD", "res.+BN\nSGD"])
    axes[2].set(ylabel="final cross-entropy (nats)", title="per net (bar: median)")
    return fig


def draw_init(depth: int = 32, width: int = 8, init: str = "he", activation: str = "relu", seeds: int = 8):
    """Widget view: median first-layer gradient (``seeds`` seeds) and top Hessian |λ| (3 seeds, Lanczos
    capped at 20 steps: a quick estimate) at init vs depth, up to ``depth``."""
    depths = sorted({d for d in (2, 4, 8, 16, 32, 64, 128) if d < depth} | {depth})
    hdepths = depths[-3:]
    with single_thread():  # tiny matrices: threads cost more than they save
        by_depth = grad_norms_over_depths(depths, width, range(seeds), activation=activation, init=init,
                                          first_only=True)
        hess = [hessian_top_at_init(L, width, range(3), activation=activation, init=init, tol=1e-2, max_iter=20)
                for L in hdepths]
    grads = [by_depth[L][:, 0] for L in depths]
    fig, axes = panels(2, row_height=3.0)
    q = _band(axes[0], np.array(depths), grads, "median, IQR", "C0")
    critical = (activation, init) in (("relu", "he"), ("linear", "xavier"))  # where the theory applies
    slope = log_ratio_per_layer(width, activation) / LN10 if critical else None
    if slope is not None and np.isfinite(q["median"][0]):
        axes[0].plot(depths, q["median"][0] + slope * (np.array(depths) - depths[0]), "k--", lw=1, label="theory slope")
    axes[0].set(xlabel="depth $L$", ylabel=r"$\log_{10}\|\nabla_{W_1}\ell\|^2$",
                title=f"gradient at init: {activation} / {init}, $d = {width}$")
    axes[0].legend(fontsize=7)
    _band(axes[1], np.array(hdepths), hess, "median of 3 seeds", "C1")
    axes[1].set(xlabel="depth $L$", ylabel=r"$\log_{10}\max|\lambda(H)|$", title="top Hessian eigenvalue (Lanczos)")
    axes[1].legend(fontsize=7)
    return fig
