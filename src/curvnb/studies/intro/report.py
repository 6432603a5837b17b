"""The report of the intro chapter: claims, figures, slider views and prose over the results
of :mod:`curvnb.studies.intro.compute` (editing this module reuses every cached result).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from curvnb.claims import Claim
from curvnb.figures import CONTENT_WIDTH_IN
from curvnb.studies.intro.compute import Config, gd_losses, quadratic


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


def draw_interactive(step_ratio: float = 0.9, condition: float = 100.0, steps: int = 200):
    """Widget view: one GD run on a fresh quadratic, with the per-mode theory overlaid."""
    a = quadratic(20, condition, seed=0)
    lam = torch.linalg.eigvalsh(a)
    theta0 = torch.randn(20, generator=torch.Generator().manual_seed(1), dtype=a.dtype)
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


def claims(results: dict, config: Config) -> list[Claim]:
    curves, lam_max, lam_min = results["curves"], results["lambda_max"], results["lambda_min"]
    below = max(r for r in curves if r < 1)
    above = min(r for r in curves if r > 1)
    drop = curves[below][0] / curves[below][-1]
    growth = curves[above][-1] / curves[above][0]
    # Late-phase decay rate per step vs the slowest mode's theory (1 − ηλ_min)².
    slow = curves[0.5] if 0.5 in curves else curves[below]
    r = 0.5 if 0.5 in curves else below
    k = 3 * len(slow) // 4
    measured_rate = (slow[-1] / slow[k]) ** (1 / (len(slow) - 1 - k))
    predicted_rate = (1 - r * 2 / lam_max * lam_min) ** 2
    return [
        Claim("stable-below-2/λ", f"GD converges for η = {below:g}·2/λ_max",
              {"loss_drop": float(drop)}, "loss drop > 10", drop > 10, kind="check",
              source="textbook: GD on a quadratic"),
        Claim("diverges-above-2/λ", f"GD diverges for η = {above:g}·2/λ_max",
              {"loss_growth": float(growth)}, "loss growth > 10", growth > 10, kind="check",
              source="textbook: GD on a quadratic"),
        Claim("slowest-mode-rate", "the late loss decay rate equals (1 − ηλ_min)² of the flattest mode",
              {"measured": float(measured_rate), "theory": float(predicted_rate)},
              "relative difference < 1 %", abs(measured_rate / predicted_rate - 1) < 0.01, kind="check",
              source="textbook: GD on a quadratic"),
    ]
