"""Measurements of one run of the jastrzebski2020 chapter (report code: editing it reuses every cached
result): smoothed maxima, break-even, conditioning, final accuracy, sharpening, and the per-unit
edge-of-stability window test of claim 7."""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import spearmanr

from curvnb.studies.jastrzebski2020.compute import _label


def smoothed_max(values: np.ndarray, width: int = 3) -> float:
    """Maximum of the ``width``-point running mean."""
    values = np.asarray(values, dtype=float)
    if len(values) < width:
        return float(np.max(values))
    return float(np.max(np.convolve(values, np.ones(width) / width, mode="valid")))


def running_median_max(values: np.ndarray, width: int = 5) -> float:
    """Maximum of the ``width``-point running median: a single catapult spike cannot lift it."""
    values = np.asarray(values, dtype=float)
    if len(values) < width:
        return float(np.median(values))
    windows = np.lib.stride_tricks.sliding_window_view(values, width)
    return float(np.max(np.median(windows, axis=1)))


def second_half(run: dict[str, Any], key: str) -> np.ndarray:
    return run[key][run["step"] > run["step"][-1] / 2]


def after_start(run: dict[str, Any], key: str) -> np.ndarray:
    return run[key][run["step"] > 0]


def break_even_index(run: dict[str, Any]) -> int:
    """Index of the peak of the 3-point-smoothed λ_H¹ (where the trajectory turns; the paper's break-even)."""
    lam = np.asarray(run["lambda_h"], dtype=float)
    if len(lam) < 3:
        return int(np.argmax(lam))
    return int(np.argmax(np.convolve(lam, np.ones(3) / 3, mode="valid"))) + 1


def conditioning_after_break_even(run: dict[str, Any]) -> float:
    """Median over the probes from break-even on of λ_K^*/λ_K¹ (λ_K^* above the relative cutoff)."""
    i = break_even_index(run)
    return float(np.nanmedian(run["lambda_k_star_rel"][i:] / run["lambda_k"][i:]))


def effective_rank_after_break_even(run: dict[str, Any]) -> float:
    """Median over the probes from break-even on of Tr K / λ_K¹ (the submission's conditioning)."""
    i = break_even_index(run)
    return float(np.median(run["trace_k"][i:] / run["lambda_k"][i:]))


def final_test_accuracy(run: dict[str, Any], last: int = 4) -> float:
    """Test accuracy averaged over the last ``last`` probes (one probe can land on a catapult)."""
    return float(np.mean(run["test_accuracy_probe"][-last:]))


def sharpening(run: dict[str, Any]) -> tuple[float, float]:
    """(peak λ_H¹ / initial λ_H¹, Spearman correlation of λ_H¹ and λ_K¹ up to the peak)."""
    peak = break_even_index(run)
    ratio = float(np.max(run["lambda_h"][:peak + 1]) / run["lambda_h"][0])
    pre = slice(0, peak + 1)
    rho = float(spearmanr(run["lambda_h"][pre], run["lambda_k"][pre]).statistic) if peak >= 2 else float("nan")
    return ratio, rho


EOS_BAND = (0.8, 1.25)         # window probes must lie in this band of 2/η ...
EOS_IN_BAND = 0.9              # ... at least this fraction of them
EOS_MEDIAN = (0.95, 1.15)      # and their median ratio to 2/η in this range
EOS_PRECONDITION = 0.8         # λ_H¹ at initialisation ≤ 0.8·2/η (a sharpening phase exists)
EOS_LOSS_DROP = 0.1            # the window ends when the loss falls below 10 % of its value at reach


def eos_window(eos: dict[str, Any]) -> dict[str, Any]:
    """The pre-registered edge-of-stability test of one full-batch GD run.

    Window: from the first probe with λ_H¹ ≥ 2/η until the loss falls below ``EOS_LOSS_DROP`` of its
    value there, or the run ends. It holds if λ_H¹(0) ≤ 0.8·2/η, ≥ 90 % of window probes lie in
    [0.8, 1.25]·2/η, their median ratio to 2/η is in [0.95, 1.15] and the loss at the last window
    probe is below the loss at reach."""
    lam, loss, thr = np.asarray(eos["lambda_h"]), np.asarray(eos["loss"]), 2 / eos["lr"]
    out: dict[str, Any] = {"initial λ_H¹ / (2/η)": float(lam[0] / thr)}
    pre_ok = bool(lam[0] <= EOS_PRECONDITION * thr)
    reached = np.nonzero(lam >= thr)[0]
    if not len(reached):
        return {**out, "step reached": None, "max λ_H¹ / (2/η)": float(lam.max() / thr), "holds": False,
                "failed": ["λ_H¹ never reached 2/η"] + ([] if pre_ok else ["λ_H¹(0) ≤ 0.8·2/η"])}
    i0 = int(reached[0])
    below = np.nonzero(loss[i0:] < EOS_LOSS_DROP * loss[i0])[0]
    i1 = i0 + int(below[0]) - 1 if len(below) else len(lam) - 1
    i1 = max(i1, i0)
    ratio = lam[i0:i1 + 1] / thr
    in_band = float(np.mean((ratio >= EOS_BAND[0]) & (ratio <= EOS_BAND[1])))
    med = float(np.median(ratio))
    loss_down = bool(loss[i1] < loss[i0])
    failed = [name for name, ok in (("λ_H¹(0) ≤ 0.8·2/η", pre_ok), ("≥ 90 % of window probes in the band",
                                                                    in_band >= EOS_IN_BAND),
                                    ("median ratio in [0.95, 1.15]", EOS_MEDIAN[0] <= med <= EOS_MEDIAN[1]),
                                    ("loss decreased over the window", loss_down)) if not ok]
    return {**out, "step reached": int(eos["step"][i0]), "window end step": int(eos["step"][i1]),
            "window probes": int(i1 - i0 + 1), "fraction in band": in_band, "median ratio": med,
            "loss at reach": float(loss[i0]), "loss at window end": float(loss[i1]), "holds": not failed,
            "failed": failed}



def lr_runs(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The learning-rate sweep of one unit, by increasing η."""
    return sorted([r for r in rep["runs"].values() if r["sweep"] == "lr"], key=lambda r: r["lr"])


def run_of(rep: dict[str, Any], lr: float, batch_size: int) -> dict[str, Any]:
    """The run of one unit at (η, S), without batch norm."""
    return rep["runs"][_label(lr, batch_size)]


def replicates(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The units of a result (a single :func:`run_seed` result is one unit)."""
    return results.get("replicates", [results])
