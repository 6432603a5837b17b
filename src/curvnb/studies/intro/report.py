"""The report of the intro chapter: claims, figures, slider views and prose over the results
of :mod:`curvnb.studies.intro.compute` (editing this module reuses every cached result).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from curvnb.claims import ClaimSpec, Result, evaluate
from curvnb.figures import CONTENT_WIDTH_IN
from curvnb.studies.intro.compute import Config, gd_losses, problem


_SOURCE = "textbook: GD on a quadratic"
STABLE = ClaimSpec(
    id="stable-below-2/λ", kind="check", source=_SOURCE, statistic="value", direction="greater", threshold=10.0,
    statement="GD converges for the largest step size below 2/λ_max: the loss falls more than tenfold",
    unit="run", quantity="loss at step 0 / loss at the last step")
DIVERGES = ClaimSpec(
    id="diverges-above-2/λ", kind="check", source=_SOURCE, statistic="value", direction="greater", threshold=10.0,
    statement="GD diverges for the smallest step size above 2/λ_max: the loss grows more than tenfold",
    unit="run", quantity="loss at the last step / loss at step 0")
SLOWEST_MODE = ClaimSpec(
    id="slowest-mode-rate", kind="check", source=_SOURCE, statistic="value", direction="less", threshold=0.01,
    statement="the late loss decay rate per step equals (1 − ηλ_min)² of the flattest mode",
    unit="run", quantity="|measured rate / theory − 1| over the last quarter of the steps")
SPECS = (STABLE, DIVERGES, SLOWEST_MODE)

LOSS_RANGE = (1e-12, 1e8)   # the plotted window: diverging runs leave it upwards, converged ones downwards


def _in_view(values: np.ndarray) -> np.ndarray:
    """Values clipped just outside the plotted window (a diverged run reaches inf, which a log axis
    cannot take), so lines still leave the window where they should."""
    return np.clip(np.nan_to_num(values, nan=np.inf), LOSS_RANGE[0] / 10, LOSS_RANGE[1] * 10)


def plot_losses(results: dict, ratios=None, ax=None):
    """Loss vs step for each step size η = r · 2/λ_max (stable runs solid, unstable dashed)."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(CONTENT_WIDTH_IN, 3.4))
    ratios = ratios if ratios is not None else sorted(results["curves"])
    for r in ratios:
        ax.semilogy(_in_view(results["curves"][r]), ls="-" if r < 1 else "--",
                    label=rf"$\eta = {r:g}\cdot 2/\lambda_{{\max}}$")
    ax.set_ylim(*LOSS_RANGE)
    ax.set(xlabel="step", ylabel=r"loss $\frac{1}{2}\theta^\top A\theta$ (log scale)",
           title=rf"GD on a quadratic, $\lambda_{{\max}} = {results['lambda_max']:.3g}$")
    ax.legend(ncols=2)
    return fig


def draw_interactive(step_ratio: float = 0.9, condition: float = 100.0, steps: int = 200, seed: int = 0):
    """Widget view: one GD run on the quadratic of chapter seed ``seed`` (its streams) at condition
    number ``condition``, with the per-mode theory overlaid."""
    a, theta0 = problem(20, condition, seed)
    lam = torch.linalg.eigvalsh(a)
    lr = step_ratio * 2 / float(lam[-1])
    fig, ax = plt.subplots(figsize=(CONTENT_WIDTH_IN, 3.4))
    ax.semilogy(_in_view(gd_losses(a, theta0, lr, steps)), label="GD")
    ax.semilogy(_in_view(np.abs(1 - lr * float(lam[-1])) ** (2 * np.arange(steps + 1))), "--",
                label=r"$|1 - \eta\lambda_{\max}|^{2k}$ (sharpest mode)")
    ax.semilogy(_in_view(np.abs(1 - lr * float(lam[0])) ** (2 * np.arange(steps + 1))), ":",
                label=r"$|1 - \eta\lambda_{\min}|^{2k}$ (flattest mode)")
    ax.set_ylim(*LOSS_RANGE)
    ax.set(xlabel="step", ylabel="loss (log scale)",
           title=rf"$\eta = {step_ratio:g}\cdot 2/\lambda_{{\max}}$, $\kappa = {condition:g}$")
    ax.legend()
    return fig


def claims(results: dict, config: Config) -> list[Result]:
    """The chapter's three self-checks on this run, decided by the engine (deterministic values)."""
    curves, lam_max, lam_min = results["curves"], results["lambda_max"], results["lambda_min"]
    below = max(r for r in curves if r < 1)
    above = min(r for r in curves if r > 1)
    # Late-phase decay rate per step vs the slowest mode's theory (1 − ηλ_min)², on the smallest step size.
    r = min(curves)
    slow = curves[r]
    k = 3 * len(slow) // 4
    measured_rate = (slow[-1] / slow[k]) ** (1 / (len(slow) - 1 - k))
    predicted_rate = (1 - r * 2 / lam_max * lam_min) ** 2
    return [evaluate(STABLE, float(curves[below][0] / curves[below][-1]), detail={"η / (2/λ_max)": below}),
            evaluate(DIVERGES, float(curves[above][-1] / curves[above][0]), detail={"η / (2/λ_max)": above}),
            evaluate(SLOWEST_MODE, float(abs(measured_rate / predicted_rate - 1)),
                     detail={"η / (2/λ_max)": r, "measured rate": float(measured_rate),
                             "theory (1 − ηλ_min)²": float(predicted_rate)})]
