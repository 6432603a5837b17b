"""Figures and the slider view of the buffelli2024 chapter (report code: editing it reuses cached results)."""
from __future__ import annotations

import warnings

import numpy as np

from curvnb.figures import panels
from curvnb.studies.buffelli2024.compute import OPTIMIZERS, REGIMES, SCORES, TARGET_FACTOR, TUNED

COLORS = {"gn": "#D55E00", "adam": "#0072B2", "sgd": "#009E73"}
NAMES = {"gn": "exact GN", "adam": "Adam", "sgd": "SGD"}


def _label(name: str, lr: float) -> str:
    tuned = "" if name in TUNED else ", untuned"
    return f"{NAMES[name]} (lr {lr:g}{tuned})"


def _band(ax, steps, values, color, style="-", label=None, log=False):
    """Mean over seeds with a min–max band (a diverged seed's NaNs are left out)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps of a diverged run: drawn as gaps
        mean, lo, hi = np.nanmean(values, axis=1), np.nanmin(values, axis=1), np.nanmax(values, axis=1)
    ax.plot(steps, mean, style, color=color, label=label)
    ax.fill_between(steps, lo, hi, color=color, alpha=0.15, lw=0)
    if log:
        ax.set_yscale("log")


def figure_training(results: dict):
    """Train (solid) and test (dashed) loss and accuracy vs steps at the selected learning rates, on the
    test seeds, full batch (top) and mini-batch (bottom); mean over seeds with a min–max band."""
    fig, axes = panels(4, ncols=2, row_height=2.5)
    for row, regime in enumerate(REGIMES):
        for name in OPTIMIZERS:
            h = results[regime][name]
            _band(axes[2 * row], h["step"], h["train_loss"], COLORS[name], label=_label(name, h["lr"]), log=True)
            _band(axes[2 * row], h["step"], h["test_loss"], COLORS[name], "--", log=True)
            _band(axes[2 * row + 1], h["step"], 100 * h["train_acc"], COLORS[name])
            _band(axes[2 * row + 1], h["step"], 100 * h["test_acc"], COLORS[name], "--")
        what = "full batch" if regime == "full" else "mini-batch"
        axes[2 * row].set(xlabel="step", ylabel="cross-entropy (nats)", title=f"{what}: loss")
        axes[2 * row + 1].set(xlabel="step", ylabel="accuracy (%)", title=f"{what}: accuracy (dashed: test)")
    axes[0].legend(fontsize=7, loc="lower left")
    return fig


def figure_lr_sweep(results: dict):
    """The selection runs: each optimizer's objective vs learning rate on the selection seeds (full batch:
    steps to the target; mini-batch and control: final validation loss), the chosen rate circled."""
    fig, axes = panels(4, ncols=2, row_height=2.4)
    ylabels = {"full": f"steps to {TARGET_FACTOR:g}× lower loss", "mini": "final validation loss (nats)"}
    for row, name in enumerate(TUNED):
        lrs = np.array(results["grids"][name])
        for col, groups in enumerate((("full",), ("mini", "rich"))):
            ax = axes[2 * row + col]
            for group, marker in zip(groups, ("o", "s")):
                score = np.array([SCORES[group](results["selection"][group][(name, lr)]) for lr in lrs])
                shown = np.where(np.isfinite(score), score, np.nan)
                label = {"full": "full batch", "mini": "mini-batch", "rich": "control"}[group]
                ax.plot(lrs, shown, marker=marker, color=COLORS[name], ls="-" if group != "rich" else "--", label=label)
                best = results["selected"][(group, name)]
                ax.plot([best], [shown[list(lrs).index(best)]], marker=marker, ms=11, mfc="none", mec="k", ls="")
            ax.set(xscale="log", xlabel="learning rate", ylabel=ylabels[groups[0]], title=NAMES[name])
            ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
            ax.minorticks_off()
            ax.legend(fontsize=7)
    return fig


def figure_batch_overfit(results: dict):
    """Relative loss drop of one step on its own mini-batch and on another one, mean over test seeds."""
    fig, (ax,) = panels(1, row_height=2.8)
    w = min(10, len(results["mini"]["gn"]["batch"]["before"]))
    smooth = lambda v: np.convolve(v, np.ones(w) / w, mode="valid")  # noqa: E731
    for name in TUNED:
        h = results["mini"][name]
        b = h["batch"]
        with np.errstate(divide="ignore", invalid="ignore"):
            own = np.nanmean(1 - b["after"] / b["before"], 1)
            other = np.nanmean(1 - b["others_after"] / b["others_before"], 1)
        steps = np.arange(w, len(own) + 1)
        ax.plot(steps, 100 * smooth(own), color=COLORS[name], label=f"{_label(name, h['lr'])}: own batch")
        ax.plot(steps, 100 * smooth(other), ":", color=COLORS[name], label=f"{_label(name, h['lr'])}: another batch")
    ax.axhline(50, color="gray", lw=0.8, ls="--", label="claimed 50 %")
    ax.set(xlabel="step", ylabel="loss drop of one step (%)",
           title="one step's loss drop (10-step moving average, mean over seeds)")
    ax.legend(fontsize=7, ncols=2)
    return fig


def figure_lazy(results: dict):
    """NTK distance from init and mean feature CKA with init vs step on the test seeds; rich control dashed."""
    fig, axes = panels(2, row_height=2.8)
    for group, style, suffix in (("mini", "-", ""), ("rich", "--", ", control")):
        for name in TUNED:
            h = results[group][name]
            label = _label(name, h["lr"]) + suffix
            s = h["kernel_step"]
            _band(axes[0], s[1:], np.maximum(h["ntk_distance"][1:], 1e-12), COLORS[name], style, label, log=True)
            _band(axes[1], s, h["cka"].mean(-1), COLORS[name], style, label)
    axes[0].set(xlabel="step", ylabel="NTK distance from init", title="kernel movement")
    axes[1].set(xlabel="step", ylabel="linear CKA with init", title="feature movement (mean over blocks)")
    axes[1].legend(fontsize=7)
    return fig


_WIDGET_RESULTS: dict = {}


def set_widget_results(results: dict) -> None:
    _WIDGET_RESULTS["r"] = results


def draw_sweep(gn_lr: float = 1.0, adam_lr: float = 3e-3):
    """Widget view over the cached mini-batch selection runs: GN and Adam at any rate of their grids."""
    runs = _WIDGET_RESULTS["r"]["selection"]["mini"]
    keys = {("gn", gn_lr), ("adam", adam_lr)}
    missing = [k for k in keys if k not in runs]
    if missing:
        raise ValueError(f"no cached run for {missing}; cached: {sorted(runs)}")
    fig, axes = panels(2, row_height=2.6)
    for name, lr in (("gn", gn_lr), ("adam", adam_lr)):
        h = runs[(name, lr)]
        _band(axes[0], h["step"], h["train_loss"], COLORS[name], label=f"{_label(name, lr)}: train", log=True)
        _band(axes[0], h["step"], h["test_loss"], COLORS[name], "--", label="test")
        _band(axes[1], h["step"], 100 * h["test_acc"], COLORS[name], label=_label(name, lr))
    axes[0].set(xlabel="step", ylabel="cross-entropy (nats)", title="loss (dashed: test)")
    axes[1].set(xlabel="step", ylabel="test accuracy (%)", title="test accuracy")
    axes[0].legend(fontsize=7)
    return fig
