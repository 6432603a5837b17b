"""The report of the jastrzebski2020 chapter: claims, figures, slider views and prose over the results
of :mod:`curvnb.studies.jastrzebski2020.compute` (editing this module reuses every cached result).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
from scipy.stats import spearmanr

from curvnb.claims import Claim
from curvnb.figures import panels
from curvnb.stats import bootstrap_interval, clopper_pearson, median_ratio
from curvnb.studies.jastrzebski2020.compute import Config, _label, epochs_for


def _tex_label(lr: float, batch_size: int, bn: bool = False) -> str:
    return rf"$\eta={lr:g}$, $S={batch_size}$" + (", BN" if bn else "")


# --------------------------------------------------------------------------- measurements (one run)
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


# --------------------------------------------------------------------------- claims (over seeds)
def _lr_runs(rep: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted([r for r in rep["runs"].values() if r["sweep"] == "lr"], key=lambda r: r["lr"])


def _run(rep: dict[str, Any], lr: float, batch_size: int) -> dict[str, Any]:
    return rep["runs"][_label(lr, batch_size)]


def _interval(values, statistic: Callable[..., float], n: int) -> tuple[float, float] | None:
    """95 % bootstrap interval over seeds (``None`` for a single seed: there is nothing to resample)."""
    return bootstrap_interval(values, statistic) if n > 1 else None


def claims(results: dict[str, Any], config: Config) -> list[Claim]:
    """Every claim computed from ``results`` over its seeds, as pre-registered (see each threshold).

    The first entry of each claim's ``measured`` is its tested statistic; ``interval`` is the
    95 % bootstrap interval of that statistic over seeds (Clopper–Pearson for the count of claim 7)."""
    reps = results["replicates"] if "replicates" in results else [results]
    n = len(reps)
    lrs = [r["lr"] for r in _lr_runs(reps[0])]
    lo, hi = lrs[0], lrs[-1]
    eta = lambda lr: f"η={lr:g}"  # noqa: E731
    out: list[Claim] = []

    # 1. max of the 3-point-smoothed λ_H¹: decreasing in η (medians over seeds), median ratio ≥ 2
    smax = np.array([[smoothed_max(r["lambda_h"]) for r in _lr_runs(rep)] for rep in reps])
    ratio1 = smax[:, 0] / smax[:, -1]
    med_smax = np.median(smax, axis=0)
    dec1 = bool(np.all(np.diff(med_smax) < 0))
    out.append(Claim(
        "1-max-lambda-H-decreases-with-lr",
        f"Max of the 3-point-smoothed λ_H¹ decreases with η; the η={lo:g} value is ≥ 2× the η={hi:g} value",
        {f"median ratio η={lo:g}/η={hi:g}": float(np.median(ratio1)), "per-seed ratios": ratio1,
         "median max λ_H¹": {eta(lr): v for lr, v in zip(lrs, med_smax)},
         "seeds where it decreases": int(np.sum(np.all(np.diff(smax, axis=1) < 0, axis=1)))},
        f"median over seeds decreasing in η and median ratio ≥ 2 ({n} seeds)",
        dec1 and float(np.median(ratio1)) >= 2, seeds=n, interval=_interval(ratio1, np.median, n),
        source="Conjecture 1; Fig. 4 (λ_H¹ vs epoch)"))

    # 2. second-half median of λ_H¹ relative to 2/η: ≤ 1 for every η, ≥ 0.3 for η ≥ 0.1
    rel2 = np.array([[np.median(second_half(r, "lambda_h")) * r["lr"] / 2 for r in _lr_runs(rep)] for rep in reps])
    med2 = np.median(rel2, axis=0)
    lower = [j for j, lr in enumerate(lrs) if lr >= 0.1]
    out.append(Claim(
        "2-lambda-H-below-2-over-lr",
        "Second-half median of λ_H¹ ≤ 2/η for every η, and ≥ 0.3·(2/η) for η ≥ 0.1",
        {"largest median λ_H¹/(2/η)": float(med2.max()),
         "median λ_H¹/(2/η)": {eta(lr): v for lr, v in zip(lrs, med2)},
         "smallest for η ≥ 0.1": float(med2[lower].min()) if lower else float("nan")},
        f"medians over seeds: all ≤ 1, and ≥ 0.3 for η ≥ 0.1 (interval: the largest; {n} seeds)",
        bool(np.all(med2 <= 1) and np.all(med2[lower] >= 0.3)), seeds=n,
        interval=_interval(tuple(rel2.T), lambda *c: max(np.median(x) for x in c), n),
        source="break-even point (stability condition); Fig. 4"))

    # 3. median λ_K¹: η = lo at least 1.5× η = hi (median of per-seed ratios)
    mk = np.array([[np.median(after_start(r, "lambda_k")) for r in _lr_runs(rep)] for rep in reps])
    ratio3 = mk[:, 0] / mk[:, -1]
    out.append(Claim(
        "3-lambda-K-decreases-with-lr",
        f"Median λ_K¹ at η={lo:g} ≥ 1.5× that at η={hi:g}",
        {f"median ratio η={lo:g}/η={hi:g}": float(np.median(ratio3)), "per-seed ratios": ratio3,
         "median λ_K¹": {eta(lr): v for lr, v in zip(lrs, np.median(mk, axis=0))}},
        f"median ratio ≥ 1.5 ({n} seeds)", float(np.median(ratio3)) >= 1.5, seeds=n,
        interval=_interval(ratio3, np.median, n), source="Conjecture 1; Fig. 3 (λ_K¹ vs epoch)"))

    # 4. median Tr K: decreasing in η (medians over seeds), median ratio lo/hi ≥ 2
    tk = np.array([[np.median(after_start(r, "trace_k")) for r in _lr_runs(rep)] for rep in reps])
    ratio4 = tk[:, 0] / tk[:, -1]
    med_tk = np.median(tk, axis=0)
    out.append(Claim(
        "4-trace-K-decreases-with-lr",
        f"Median Tr K decreases with η; ratio ≥ 2 between η={lo:g} and η={hi:g}",
        {f"median ratio η={lo:g}/η={hi:g}": float(np.median(ratio4)), "per-seed ratios": ratio4,
         "median Tr K": {eta(lr): v for lr, v in zip(lrs, med_tk)}},
        f"median over seeds decreasing in η and median ratio ≥ 2 ({n} seeds)",
        bool(np.all(np.diff(med_tk) < 0)) and float(np.median(ratio4)) >= 2, seeds=n,
        interval=_interval(ratio4, np.median, n), source="Conjecture 2 (Tr K); Fig. 3"))

    # 5. S = large vs small at η = batch_lr: 5-point running-median max λ_H¹ and second-half median Tr K
    small, large = min(config.batch_sizes), max(config.batch_sizes)
    m_s = np.array([running_median_max(_run(rep, config.batch_lr, small)["lambda_h"]) for rep in reps])
    m_l = np.array([running_median_max(_run(rep, config.batch_lr, large)["lambda_h"]) for rep in reps])
    t_s = np.array([np.median(second_half(_run(rep, config.batch_lr, small), "trace_k")) for rep in reps])
    t_l = np.array([np.median(second_half(_run(rep, config.batch_lr, large), "trace_k")) for rep in reps])
    both5 = lambda ml, ms, tl, ts: min(median_ratio(ml, ms), median_ratio(tl, ts))  # noqa: E731
    stat5 = both5(m_l, m_s, t_l, t_s)
    out.append(Claim(
        "5-larger-batch-sharper",
        f"At η={config.batch_lr:g}, S={large} has a higher max sharpness (5-point running median of λ_H¹) and a "
        f"higher second-half median Tr K than S={small}, in the median over seeds",
        {f"smaller of the two ratios S={large}/S={small}": stat5,
         "max λ_H¹ ratio of medians": median_ratio(m_l, m_s),
         "Tr K ratio of medians": median_ratio(t_l, t_s),
         f"max λ_H¹ per seed S={small}": m_s, f"max λ_H¹ per seed S={large}": m_l,
         f"Tr K per seed S={small}": t_s, f"Tr K per seed S={large}": t_l},
        f"both ratios of medians > 1 ({n} seeds)", stat5 > 1, seeds=n,
        interval=_interval((m_l, m_s, t_l, t_s), both5, n), source="Conjectures 1–2 (batch size); Figs. 3–4"))

    # 6. progressive sharpening: per seed the least-sharpening LR run; medians over seeds
    sh = np.array([[sharpening(r) for r in _lr_runs(rep)] for rep in reps])  # (seeds, lrs, 2)
    peak6, rho6 = sh[:, :, 0].min(axis=1), np.nan_to_num(sh[:, :, 1], nan=-1.0).min(axis=1)
    out.append(Claim(
        "6-progressive-sharpening",
        "Every LR-sweep run: peak λ_H¹ ≥ 5× its initial value, and λ_H¹, λ_K¹ rise together before the peak",
        {"median pre-peak Spearman (least of the runs)": float(np.median(rho6)),
         "median peak/initial (least of the runs)": float(np.median(peak6)),
         "peak/initial interval": _interval(peak6, np.median, n) or [float(peak6[0])] * 2,
         "per-seed Spearman": rho6, "per-seed peak/initial": peak6},
        f"medians over seeds: peak/initial ≥ 5 and Spearman ≥ 0.4 (interval: Spearman; {n} seeds)",
        float(np.median(peak6)) >= 5 and float(np.median(rho6)) >= 0.4, seeds=n,
        interval=_interval(rho6, np.median, n), source="Fig. 2 (early phase); progressive sharpening"))

    # 7. edge of stability: the pre-registered window test holds in the majority of seeds
    windows = [eos_window(rep["eos"]) for rep in reps]
    k7 = sum(w["holds"] for w in windows)
    eos0 = reps[0]["eos"]
    out.append(Claim(
        "7-edge-of-stability",
        f"Full-batch GD ({'½·Σ squared error' if eos0.get('loss_name', 'mse') == 'mse' else 'cross-entropy'}, "
        f"η={eos0['lr']:g}, {eos0['examples']} examples): λ_H¹ rises to 2/η and then hovers there while the loss "
        "still decreases",
        {"seeds where it holds": f"{k7} of {n}", **{f"seed {rep['seed']}": w for rep, w in zip(reps, windows)}},
        "per seed: λ_H¹(0) ≤ 0.8·2/η; in the window ≥ 90 % of probes in [0.8, 1.25]·2/η, median ratio in "
        f"[0.95, 1.15], loss at its end < loss at reach; holds in > half of the {n} seeds",
        k7 > n / 2, kind="finding", seeds=n, interval=clopper_pearson(k7, n) if n > 1 else None,
        source="cross-check: edge of stability (Cohen et al. 2021)"))

    # 8. conditioning after break-even: λ_K^*/λ_K¹ higher for the largest η (reported; may fail)
    c_lo = np.array([conditioning_after_break_even(_lr_runs(rep)[0]) for rep in reps])
    c_hi = np.array([conditioning_after_break_even(_lr_runs(rep)[-1]) for rep in reps])
    e_lo = np.array([effective_rank_after_break_even(_lr_runs(rep)[0]) for rep in reps])
    e_hi = np.array([effective_rank_after_break_even(_lr_runs(rep)[-1]) for rep in reps])
    ratio8, eratio = c_hi / c_lo, e_hi / e_lo
    rank = {lr: [float(np.median(_lr_runs(rep)[j]["rank_k_rel"][break_even_index(_lr_runs(rep)[j]):]))
                 for rep in reps] for j, lr in ((0, lo), (-1, hi))}
    at_cutoff = float(max(np.median(c_lo), np.median(c_hi)) / config.cov_cutoff)
    out.append(Claim(
        "8-conditioning-K (may fail)",
        f"Conjecture 2: λ_K^*/λ_K¹ after break-even (λ_K^* the smallest eigenvalue above "
        f"{config.cov_cutoff:g}·λ_K¹) is higher for η={hi:g} than for η={lo:g}",
        {f"median ratio η={hi:g}/η={lo:g}": float(np.median(ratio8)),
         f"median λ_K^*/λ_K¹": {eta(lo): float(np.median(c_lo)), eta(hi): float(np.median(c_hi))},
         f"effective rank Tr K/λ_K¹ median ratio η={hi:g}/η={lo:g}": float(np.median(eratio)),
         "effective rank ratio interval": _interval(eratio, np.median, n) or [float(eratio[0])] * 2,
         "median effective rank": {eta(lo): float(np.median(e_lo)), eta(hi): float(np.median(e_hi))},
         "median number of eigenvalues above the cutoff": {eta(lr): float(np.median(v)) for lr, v in rank.items()},
         "larger median λ_K^*/λ_K¹ in units of the cutoff": at_cutoff},
        f"median ratio > 1 ({n} seeds); effective rank reported", float(np.median(ratio8)) > 1, seeds=n,
        interval=_interval(ratio8, np.median, n), source="Conjecture 2 (conditioning of K); Fig. 3"))

    # 9. final test accuracy (mean of the last 4 probes): median at the largest η ≥ median at the smallest
    a_lo = np.array([final_test_accuracy(_lr_runs(rep)[0]) for rep in reps])
    a_hi = np.array([final_test_accuracy(_lr_runs(rep)[-1]) for rep in reps])
    diff9 = lambda h, l: float(np.median(h) - np.median(l))  # noqa: E731
    out.append(Claim(
        "9-test-accuracy (may fail)",
        f"Final test accuracy (mean of the last 4 probes) is not lower for η={hi:g} than for η={lo:g}",
        {f"difference of medians η={hi:g} − η={lo:g}": diff9(a_hi, a_lo),
         "median test accuracy": {eta(lo): float(np.median(a_lo)), eta(hi): float(np.median(a_hi))},
         f"per seed η={lo:g}": a_lo, f"per seed η={hi:g}": a_hi},
        f"difference of medians ≥ 0 ({n} seeds)", diff9(a_hi, a_lo) >= 0, seeds=n,
        interval=_interval((a_hi, a_lo), diff9, n), source="larger η, better final test accuracy (within the trainable range)"))

    bn = [sorted([r for r in rep["runs"].values() if r["bn"]], key=lambda r: r["lr"]) for rep in reps]
    if len(bn[0]) >= 2:  # full profile only: the SimpleCNN-with-BN sweep
        ratio10 = np.array([np.median(after_start(b[0], "lambda_k")) / np.median(after_start(b[-1], "lambda_k"))
                            for b in bn])
        out.append(Claim(
            "10-batchnorm-small-lr",
            f"With batch norm, the smallest η ({bn[0][0]['lr']:g}) still gives a large λ_K¹: median λ_K¹ ≥ 1.5× "
            f"that at the largest η ({bn[0][-1]['lr']:g})",
            {"median ratio": float(np.median(ratio10)), "per-seed ratios": ratio10},
            f"median ratio ≥ 1.5 ({n} seeds)", float(np.median(ratio10)) >= 1.5, seeds=n,
            interval=_interval(ratio10, np.median, n), source="Fig. 5 (SimpleCNN with batch norm)"))

    finite = [bool(not r["diverged"] and np.all(np.isfinite(r["lambda_h"])) and np.all(np.isfinite(r["step_loss"]))
                   and np.all(np.isfinite(r["trace_k"]))) for rep in reps for r in rep["runs"].values()]
    labels = [r["label"] for r in reps[0]["runs"].values() if r["lr"] >= 0.1 and not r["bn"]]
    acc = np.array([[rep["runs"][lab]["final_train_accuracy"] for lab in labels] for rep in reps])
    least = lambda *cols: min(float(np.median(c)) for c in cols)  # noqa: E731
    stat_s = least(*acc.T)
    out.append(Claim(
        "sanity",
        "Every run of every seed stays finite (no NaNs); final training accuracy ≥ 0.8 for every run with η ≥ 0.1 "
        f"(S={large} trained {epochs_for(config, large)} epochs)",
        {"least median train accuracy (η ≥ 0.1)": stat_s,
         "median train accuracy": {lab: float(np.median(acc[:, j])) for j, lab in enumerate(labels)},
         "finite runs": f"{sum(finite)} of {len(finite)}"},
        f"all finite; median over seeds ≥ 0.8 for each run ({n} seeds)", all(finite) and stat_s >= 0.8,
        kind="check", seeds=n, interval=_interval(tuple(acc.T), least, n)))
    return out


# --------------------------------------------------------------------------- generated conclusions
_TOPICS = {
    "1-max-lambda-H-decreases-with-lr": "the maximum of λ_H¹ falls with the learning rate (Conjecture 1)",
    "2-lambda-H-below-2-over-lr": "after break-even SGD keeps λ_H¹ below, but at the scale of, 2/η",
    "3-lambda-K-decreases-with-lr": "the top eigenvalue λ_K¹ of the gradient covariance falls with the learning "
                                    "rate (Conjecture 1)",
    "4-trace-K-decreases-with-lr": "Tr K falls with the learning rate (Conjecture 2, first half)",
    "5-larger-batch-sharper": "a larger batch reaches a sharper region with a larger Tr K (Conjectures 1–2 along S)",
    "6-progressive-sharpening": "λ_H¹ and λ_K¹ rise together before break-even (progressive sharpening)",
    "7-edge-of-stability": "full-batch GD hovers at the edge of stability 2/η",
    "8-conditioning-K (may fail)": "K is better conditioned for a larger learning rate (Conjecture 2, second half)",
    "9-test-accuracy (may fail)": "a larger learning rate generalises at least as well",
    "10-batchnorm-small-lr": "with batch norm a small learning rate still gives a large λ_K¹",
    "sanity": "every run is finite and the runs with η ≥ 0.1 fit the training set",
}

# Why a claim comes out as it does: narrative shown only for the outcome it explains, with numbers
# taken from the record (never a verdict of its own).
_WHY = {
    ("9-test-accuracy (may fail)", False):
        "The table lists the per-seed accuracies: the interval of the difference shows how it compares with "
        "the seed-to-seed spread.",
    ("5-larger-batch-sharper", False):
        "The table lists both ratios per seed: a catapult of a small-batch run can lift its maximum, which is "
        "why the maximum is taken of a 5-point running median.",
}


def _why(record: dict[str, Any]) -> str:
    """Narrative for one record, conditioned on its outcome and measured values."""
    cid, passed, m = record["id"], bool(record["passed"]), record["measured"]
    if cid.startswith("7-") and isinstance(m, dict):
        failing = [f"{key} fails on {', '.join(v['failed'])}" for key, v in m.items()
                   if key.startswith("seed ") and isinstance(v, dict) and v.get("failed")]
        return ("Per seed: " + "; ".join(failing) + ".") if failing else ""
    if cid.startswith("8-") and isinstance(m, dict):
        rank_key = next((k for k in m if k.startswith("effective rank Tr K/λ_K¹ median ratio")), None)
        text = ""
        if not passed and m.get("larger median λ_K^*/λ_K¹ in units of the cutoff", np.inf) < 2:
            text += ("λ_K^* sits at the cutoff for both learning rates: the spectrum of K continues below it, so "
                     "the ratio measures the cutoff rather than a difference between learning rates. With 256 "
                     "per-example gradients, K has rank at most 255, and as examples are fitted their gradients "
                     "shrink towards zero; the paper estimates K from about 25 mini-batch gradients, whose small "
                     "spectrum does not see this. ")
        if rank_key:
            r, (a, b) = m[rank_key], m.get("effective rank ratio interval", [np.nan, np.nan])
            side = "lower" if b < 1 else "higher" if a > 1 else "not distinguishable"
            text += (f"The effective rank Tr K/λ_K¹ (the submission's conditioning, where Conjecture 2 expects it "
                     f"higher for the larger η) is {side}{' for the larger η' if side != 'not distinguishable' else ''}: "
                     f"{rank_key.split('median ratio ')[-1]} = {_fmt(r)} (95 % interval [{_fmt(a)}, {_fmt(b)}]).")
        return text
    return _WHY.get((cid, passed), "")


def _as_records(claims_or_records: Sequence[Any], profile: str = "quick") -> list[dict[str, Any]]:
    return [c.record(profile) if isinstance(c, Claim) else c for c in claims_or_records]


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.3g}"
    return str(v)


def claim_sentence(record: dict[str, Any]) -> str:
    """One generated sentence: the claim's topic, its verdict, tested statistic and interval."""
    topic = _TOPICS.get(record["id"], record["statement"])
    if record.get("kind", "paper") == "paper":
        verdict = "**reproduced**" if record["passed"] else "**not reproduced**"
    else:
        verdict = "**holds**" if record["passed"] else "**does not hold**"
    measured = record["measured"]
    stat_name, stat = next(iter(measured.items())) if isinstance(measured, dict) and measured else ("value", measured)
    text = f"*{topic}* — {verdict}: {stat_name} = {_fmt(stat)}"
    if record.get("interval"):
        lo, hi = record["interval"]
        text += f" (95 % interval [{_fmt(lo)}, {_fmt(hi)}] over {record['seeds']} seeds)"
    text += f"; threshold: {record['threshold']}."
    if record.get("source"):
        text += f" Source: {record['source']}."
    why = _why(record)
    return text + (f" {why}" if why else "")


def summary_markdown(claims_or_records: Sequence[Any], ids: Sequence[str] | None = None) -> str:
    """The chapter's conclusions, generated from this run's claim records (``Claim`` objects or dicts).

    With ``ids``, only those claims (in that order); otherwise an overview and every claim."""
    records = {r["id"]: r for r in _as_records(claims_or_records)}
    if ids is not None:
        return "\n".join(f"- {claim_sentence(records[i])}" for i in ids if i in records)
    paper = [r for r in records.values() if r["kind"] == "paper"]
    held = [r for r in paper if r["passed"]]
    failed = [r["id"] for r in paper if not r["passed"]]
    seeds = max((r["seeds"] for r in records.values()), default=1)
    lines = [f"**In this run, {len(held)} of {len(paper)} of the paper's claims reproduce** "
             f"(each judged on a statistic over {seeds} independent seeds)"
             + (f"; not reproduced: {', '.join(failed)}." if failed else ".")]
    for r in records.values():
        if r["kind"] != "paper":
            lines.append(f"The {'cross-check' if r['kind'] == 'finding' else 'self-check'} `{r['id']}` "
                         f"{'holds' if r['passed'] else 'does not hold'}.")
    lines.append("")
    lines += [f"- {claim_sentence(r)}" for r in records.values()]
    return "\n".join(lines)


def runs_table(results: dict[str, Any]) -> str:
    """Plain-text table of every run: probes, final train accuracy and test accuracy (mean of the last
    4 probes) per seed, and the compute time of each seed (when it was computed)."""
    reps = _replicates(results)
    width = 7 * len(reps)
    seeds = "".join(f"{'seed ' + str(rep['seed']):>7}" for rep in reps)
    lines = [f"{'':<16}{'':>7}  {'final train acc.':^{width}}  {'test acc. (last 4)':^{width}}",
             f"{'run':<16}{'probes':>7}  {seeds}  {seeds}"]
    for label in reps[0]["runs"]:
        runs = [rep["runs"][label] for rep in reps]
        train_acc = "".join(f"{r['final_train_accuracy']:>7.3f}" for r in runs)
        test_acc = "".join(f"{final_test_accuracy(r):>7.3f}" for r in runs)
        lines.append(f"{label:<16}{len(runs[0]['step']):>7}  {train_acc}  {test_acc}")
    eos = reps[0]["eos"]
    lines.append(f"{'GD η=' + format(eos['lr'], 'g'):<16}{len(eos['step']):>7}  full-batch GD on {eos['examples']} "
                 f"examples, {eos['loss_name']} loss")
    times = ", ".join(f"seed {rep['seed']}: {sum(r['seconds'] for r in rep['runs'].values()) + rep['eos']['seconds']:.0f} s"
                      for rep in reps)
    return "\n".join(lines) + f"\nwall time of the runs of each seed, summed (two runs at a time): {times}"


def eos_markdown(results: dict[str, Any]) -> str:
    """What the full-batch GD runs did, per seed, generated from the results."""
    parts = []
    for rep in results.get("replicates", [results]):
        w = eos_window(rep["eos"])
        if w["step reached"] is None:
            parts.append(f"seed {rep['seed']}: λ_H¹ never reached 2/η (largest λ_H¹/(2/η) = "
                         f"{w['max λ_H¹ / (2/η)']:.2f})")
            continue
        parts.append(f"seed {rep['seed']}: λ_H¹ starts at {w['initial λ_H¹ / (2/η)']:.2f}·2/η, reaches 2/η at step "
                     f"{w['step reached']}; in the window (to step {w['window end step']}, {w['window probes']} "
                     f"probes) {100 * w['fraction in band']:.0f} % of probes lie in [0.8, 1.25]·2/η, median "
                     f"{w['median ratio']:.2f}·2/η, loss {w['loss at reach']:.3g} → {w['loss at window end']:.3g}"
                     + (f" — fails: {', '.join(w['failed'])}" if w["failed"] else " — holds"))
    return "In this run: " + "; ".join(parts) + "."


# --------------------------------------------------------------------------- figures
LAMBDA_H = r"$\lambda_H^1$"
LAMBDA_K = r"$\lambda_K^1$"


def _colors(n: int):
    cmap = plt.get_cmap("viridis")
    return [cmap(0.1 + 0.75 * i / max(1, n - 1)) for i in range(n)]


def _sweeps(results: dict[str, Any], rep: dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The runs of one seed (default: the first) grouped by sweep, with panel titles as keys."""
    runs = list((rep or results)["runs"].values())
    ref_lr = next((r["lr"] for r in runs if r["sweep"] == "batch"), None)
    lr_sweep = sorted([r for r in runs if r["sweep"] == "lr"], key=lambda r: r["lr"])
    batch_sweep = sorted([r for r in runs if r["sweep"] == "batch" or (r["sweep"] == "lr" and r["lr"] == ref_lr)],
                         key=lambda r: r["batch_size"])
    s_fixed = lr_sweep[0]["batch_size"] if lr_sweep else ""
    out = {rf"learning rates ($S={s_fixed}$)": lr_sweep, rf"batch sizes ($\eta={ref_lr:g}$)": batch_sweep}
    bn = sorted([r for r in runs if r["sweep"] == "bn"], key=lambda r: r["lr"])
    if bn:
        out["with batch norm"] = bn
    return out


def _replicates(results: dict[str, Any]) -> list[dict[str, Any]]:
    return results.get("replicates", [results])


def _other_seeds(results: dict[str, Any], label: str) -> list[dict[str, Any]]:
    return [rep["runs"][label] for rep in _replicates(results)[1:] if label in rep["runs"]]


def _legend(ax, **kwargs) -> None:
    ax.legend(fontsize=7, handlelength=1.5, **kwargs)


def _minor_label(value: float, _pos: Any = None) -> str:
    """Label minor log ticks at 2× and 5× a power of ten only (the others would collide)."""
    if value <= 0:
        return ""
    lead = value / 10 ** np.floor(np.log10(value))
    return f"{value:g}" if np.isclose(lead, 2) or np.isclose(lead, 5) else ""


def _tidy(fig):
    """Plain numbers (20, not 2×10¹) on log axes; minor labels only where an axis spans < 1.5 decades."""
    for ax in fig.axes:
        for axis, scale, lim in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()), (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
            if scale != "log" or min(lim) <= 0 or isinstance(axis.get_major_locator(), matplotlib.ticker.FixedLocator):
                continue  # linear, or ticks chosen by the figure itself
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v:g}"))
            narrow = np.log10(max(lim) / min(lim)) < 1.5
            axis.set_minor_formatter(matplotlib.ticker.FuncFormatter(_minor_label) if narrow
                                     else matplotlib.ticker.NullFormatter())
    return fig


def figure_sharpness(results: dict[str, Any]):
    """λ_H¹ (top row) and λ_K¹ (bottom row) vs epoch for each sweep, with the 2/η lines.

    The first seed is drawn solid, the other seeds thin and faint in the same colour."""
    sweeps = _sweeps(results)
    m = len(sweeps)
    fig, axes = panels(2 * m, ncols=min(m, 3), row_height=2.5)
    for j, (name, runs) in enumerate(sweeps.items()):
        top, bottom = axes[j], axes[m + j]
        colors = _colors(len(runs))
        for r, c in zip(runs, colors):
            for other in _other_seeds(results, r["label"]):
                top.semilogy(other["epoch"], other["lambda_h"], "-", lw=0.6, alpha=0.35, color=c)
                bottom.semilogy(other["epoch"], other["lambda_k"], "-", lw=0.6, alpha=0.35, color=c)
            top.semilogy(r["epoch"], r["lambda_h"], "-o", ms=2, lw=1.2, color=c, label=_tex_label(r["lr"], r["batch_size"]))
            bottom.semilogy(r["epoch"], r["lambda_k"], "-o", ms=2, lw=1.2, color=c)
        lrs = sorted({r["lr"] for r in runs})
        for lr in lrs:
            c = colors[[r["lr"] for r in runs].index(lr)] if len(lrs) > 1 else "k"
            top.axhline(2 / lr, ls="--", lw=0.9, color=c)
        top.set(title=name, xlabel="epoch", ylabel=LAMBDA_H + " (top Hessian eigenvalue)")
        bottom.set(xlabel="epoch", ylabel=LAMBDA_K + " (top eigenvalue of K)")
        top.plot([], [], "--", lw=0.9, color="0.3", label=r"$2/\eta$ (stability line)")
        _legend(top, loc="lower right")
    return _tidy(fig)


def figure_plane(results: dict[str, Any]):
    """Trajectories of the first seed in the (λ_H¹, λ_K¹) plane; circle: start, star: peak of λ_H¹, square: end."""
    sweeps = _sweeps(results)
    fig, axes = panels(len(sweeps), row_height=3.0)
    for ax, (name, runs) in zip(axes, sweeps.items()):
        for r, c in zip(runs, _colors(len(runs))):
            ax.loglog(r["lambda_h"], r["lambda_k"], "-", lw=1.0, color=c, label=_tex_label(r["lr"], r["batch_size"]))
            ax.loglog(r["lambda_h"][:1], r["lambda_k"][:1], "o", ms=5, color=c)
            ax.loglog(r["lambda_h"][-1:], r["lambda_k"][-1:], "s", ms=5, color=c)
            i = break_even_index(r)
            ax.loglog(r["lambda_h"][i:i + 1], r["lambda_k"][i:i + 1], "*", ms=10, color=c, mec="k", mew=0.5)
        ax.set(xlabel=LAMBDA_H, ylabel=LAMBDA_K, title=f"{name}\n(● start, ★ peak of {LAMBDA_H}, ■ end)")
        _legend(ax, loc="upper left")
    return _tidy(fig)


def figure_covariance(results: dict[str, Any]):
    """Tr K, the conditioning λ_K^*/λ_K¹ (λ_K^* above the relative cutoff; float64 sweeps only) and
    Tr K/λ_K¹ vs epoch (first seed), one row per sweep."""
    sweeps = _sweeps(results)
    rows = [(name, runs, any(np.isfinite(r["lambda_k_star_rel"]).any() for r in runs)) for name, runs in sweeps.items()]
    fig, axes = panels(sum(3 if cond else 2 for *_, cond in rows), ncols=3, row_height=2.4)
    pos = 0
    for name, runs, cond in rows:
        a, b, c_ax = (axes[pos], axes[pos + 1], axes[pos + 2]) if cond else (axes[pos], None, axes[pos + 1])
        pos += 3 if cond else 2
        for r, c in zip(runs, _colors(len(runs))):
            a.semilogy(r["epoch"], r["trace_k"], color=c, label=_tex_label(r["lr"], r["batch_size"]))
            if b is not None and np.isfinite(r["lambda_k_star_rel"]).any():  # float64 runs only
                b.semilogy(r["epoch"], r["lambda_k_star_rel"] / r["lambda_k"], color=c,
                           label=_tex_label(r["lr"], r["batch_size"]))
            c_ax.plot(r["epoch"], r["trace_k"] / r["lambda_k"], color=c)
        a.set(ylabel=r"$\mathrm{Tr}\,K$", title=r"$\mathrm{Tr}\,K$, " + name)
        if b is not None:
            b.set(ylabel=r"$\lambda_K^*/\lambda_K^1$", title=r"conditioning $\lambda_K^*/\lambda_K^1$")
            _legend(b)
        c_ax.set(ylabel=r"$\mathrm{Tr}\,K/\lambda_K^1$", title="effective rank")
        _legend(a)
    for ax in axes:
        ax.set_xlabel("epoch")
    return _tidy(fig)


def figure_overshoot(results: dict[str, Any], epochs: float = 4.0):
    """α* (how far a step can be stretched before the loss rises by 20 %) and λ_H¹, early in training (first seed)."""
    runs = next(iter(_sweeps(results).values()))
    fig, (a, b) = panels(2, row_height=3.0)
    for r, c in zip(runs, _colors(len(runs))):
        early = (r["epoch"] <= epochs) & np.isfinite(r["alpha_star"])
        a.semilogy(r["epoch"][early], r["alpha_star"][early], "-o", ms=2.5, color=c,
                   label=_tex_label(r["lr"], r["batch_size"]))
        a.semilogy(r["epoch"][early], r["lambda_h"][early] / r["lambda_h"][0], ":", color=c)
    a.set(xlabel="epoch", ylabel=r"$\alpha^*$ (solid), $\lambda_H^1/\lambda_H^1(0)$ (dotted)",
          title=f"early phase (first {epochs:g} epochs)")
    _legend(a)
    for r, c in zip(runs, _colors(len(runs))):
        ok = np.isfinite(r["alpha_star"])
        b.loglog(r["lambda_h"][ok], r["alpha_star"][ok], "o", ms=3, alpha=0.7, color=c,
                 label=_tex_label(r["lr"], r["batch_size"]))
    b.set(xlabel=LAMBDA_H, ylabel=r"$\alpha^*$", title=rf"$\alpha^*$ against {LAMBDA_H} (all early probes)")
    _legend(b)
    return _tidy(fig)


def figure_eos(results: dict[str, Any]):
    """Full-batch GD, every seed: λ_H¹/(2/η) vs step with the pass band and window, and the training loss."""
    fig, (a, b) = panels(2, row_height=3.0)
    reps = _replicates(results)
    eos0 = reps[0]["eos"]
    a.axhspan(*EOS_BAND, color="k", alpha=0.07, label=r"band $[0.8, 1.25]\cdot 2/\eta$")
    a.axhline(1.0, color="k", ls="--", lw=0.9, label=r"$2/\eta$")
    for rep, c in zip(reps, _colors(len(reps)) if len(reps) > 1 else ["C0"]):
        eos = rep["eos"]
        ratio = np.asarray(eos["lambda_h"]) * eos["lr"] / 2
        a.plot(eos["step"], ratio, "-o", ms=1.8, lw=1.0, color=c, label=f"seed {rep['seed']}")
        w = eos_window(eos)
        if w["step reached"] is not None:  # the window starts where λ_H¹ first reaches 2/η
            a.axvline(w["step reached"], color=c, ls=":", lw=0.9)
        b.semilogy(np.arange(1, len(eos["step_loss"]) + 1), eos["step_loss"], lw=0.9, color=c)
    loss_name = r"$\frac{1}{2}\sum_c (f_c-y_c)^2$" if eos0.get("loss_name", "mse") == "mse" else "cross-entropy"
    a.set(xlabel="step", ylabel=r"$\lambda_H^1\,/\,(2/\eta)$",
          title=rf"full-batch GD, $\eta={eos0['lr']:g}$, {eos0['examples']} examples")
    _legend(a, loc="lower right")
    b.set(xlabel="step", ylabel=f"training loss {loss_name}", title="training loss (every step)")
    return _tidy(fig)


def figure_accuracy(results: dict[str, Any]):
    """Final test accuracy (mean of the last 4 probes) vs η and vs S: each seed and the median."""
    reps = _replicates(results)
    sweeps = list(_sweeps(results).items())[:2]
    fig, axes = panels(2, row_height=2.8)
    for ax, (name, runs), key, xlabel in zip(axes, sweeps, ("lr", "batch_size"),
                                             (r"learning rate $\eta$", r"batch size $S$")):
        x = [r[key] for r in runs]
        test = np.array([[final_test_accuracy(rep["runs"][r["label"]]) for r in runs] for rep in reps])
        train_acc = np.array([[rep["runs"][r["label"]]["final_train_accuracy"] for r in runs] for rep in reps])
        for row in test:
            ax.semilogx(x, row, "o", ms=3, color="C0", alpha=0.5)
        ax.semilogx(x, np.median(test, axis=0), "-", color="C0", label="test (median; dots: seeds)")
        ax.semilogx(x, np.median(train_acc, axis=0), "--s", ms=3, color="C1", label="train (median)")
        ax.set(xlabel=xlabel + " (log scale)", ylabel="final accuracy", title=name)
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        _legend(ax, loc="lower left")
    return _tidy(fig)


def run_labels(results: dict[str, Any]) -> list[str]:
    return list(results["runs"])


QUANTITIES = ("λ_H¹ and λ_K¹", "Tr K and conditioning", "loss and accuracy")


def draw_run(results: dict[str, Any], run: str | None = None, quantity: str = "λ_H¹ and λ_K¹"):
    """Widget view of one cached run of the first seed: curvature vs epoch with 2/η, or the loss and accuracy."""
    run = run or next(iter(results["runs"]))
    if run not in results["runs"]:
        raise ValueError(f"unknown run {run!r}: cached runs are {', '.join(results['runs'])}")
    r = results["runs"][run]
    fig, (ax,) = panels(1, row_height=3.2)
    if quantity == "λ_H¹ and λ_K¹":
        ax.semilogy(r["epoch"], r["lambda_h"], "-o", ms=2.5, label=LAMBDA_H)
        ax.semilogy(r["epoch"], r["lambda_k"], "-s", ms=2.5, label=LAMBDA_K)
        ax.axhline(2 / r["lr"], color="k", ls="--", label=rf"$2/\eta = {2 / r['lr']:g}$")
        ax.set_ylabel("eigenvalue (log scale)")
    elif quantity == "Tr K and conditioning":
        ax.semilogy(r["epoch"], r["trace_k"], label=r"$\mathrm{Tr}\,K$")
        if np.isfinite(r["lambda_k_star_rel"]).any():  # measured in float64 sweeps only
            ax.semilogy(r["epoch"], r["lambda_k_star_rel"] / r["lambda_k"], label=r"$\lambda_K^*/\lambda_K^1$")
        ax.set_ylabel("value (log scale)")
    elif quantity == "loss and accuracy":
        ax.semilogy(r["epoch"], r["loss"], label="training loss (probe subset)")
        ax.semilogy(r["epoch"], 1 - r["accuracy"], label="training error rate (probe subset)")
        ax.semilogy(r["epoch"], 1 - r["test_accuracy_probe"], label="test error rate")
        ax.set_ylabel("log scale")
    else:
        raise ValueError(f"unknown quantity {quantity!r}: allowed values are {', '.join(map(repr, QUANTITIES))}")
    ax.set(xlabel="epoch", title=f"{_tex_label(r['lr'], r['batch_size'])} (seed {results.get('seeds', [0])[0]}): "
                                 f"final test accuracy {final_test_accuracy(r):.3f}")
    _legend(ax)
    return _tidy(fig)


def widget_view(results: dict[str, Any]):
    """``SliderFigure`` over the cached runs (reads ``results`` only, never trains)."""
    from curvnb.widgets import SliderFigure

    return SliderFigure(functools.partial(draw_run, results), run=run_labels(results), quantity=list(QUANTITIES))
