"""The claims of the jastrzebski2020 chapter, each declared once (its threshold is written only here),
and their evaluation by the verdict engine over the independent units (seeds) of a result.

Every claim is a statistic over units, one value per unit, decided by :func:`curvnb.claims.evaluate`
(reproduced / not reproduced / inconclusive). Report code: editing it reuses every cached result.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from curvnb.claims import ClaimSpec, Result, evaluate
from curvnb.studies.jastrzebski2020.compute import Config, epochs_for
from curvnb.studies.jastrzebski2020.measures import (after_start, conditioning_after_break_even,
                                                     effective_rank_after_break_even, eos_window,
                                                     final_test_accuracy, lr_runs, replicates, run_of,
                                                     running_median_max, second_half, sharpening, smoothed_max)

NEAR_LR = 0.1          # claim 2b: the learning rates (η ≥ NEAR_LR) whose λ_H¹ must stay at the scale of 2/η
SANITY_LR = 0.1        # the self-check: runs with η ≥ SANITY_LR must fit the training set
_RUN = "jastrzebski2020"   # prefix of this chapter's anchors on the book's Changes page

MAX_SHARPNESS = ClaimSpec(
    id="1-max-lambda-H-decreases-with-lr", kind="paper", source="Conjecture 1; Fig. 4 (λ_H¹ vs epoch)",
    statement="The maximum of the 3-point-smoothed λ_H¹ is at least 2× higher at the smallest learning rate "
              "of the sweep than at the largest",
    statistic="median_of_ratios", direction="greater", threshold=2.0,
    quantity="median over seeds of max λ_H¹, smallest η / largest η", labels=("smallest η", "largest η"),
    changed=f"{_RUN}-claim-1")
BELOW_STABILITY = ClaimSpec(
    id="2-lambda-H-below-2-over-lr", kind="paper", source="break-even point (stability condition); Fig. 4",
    statement="After break-even SGD keeps λ_H¹ below 2/η: the second-half median of λ_H¹/(2/η), the "
              "largest over the learning rates of the sweep, is below 1",
    statistic="median", direction="less", threshold=1.0,
    quantity="median over seeds of the largest second-half λ_H¹/(2/η)", changed=f"{_RUN}-claim-2")
NEAR_STABILITY = ClaimSpec(
    id="2b-lambda-H-near-2-over-lr", kind="paper", source="break-even point (stability condition); Fig. 4",
    statement=f"… and at the scale of 2/η: for η ≥ {NEAR_LR:g} the second-half median of λ_H¹/(2/η), the "
              "smallest over those learning rates, is above 0.3",
    statistic="median", direction="greater", threshold=0.3,
    quantity=f"median over seeds of the smallest second-half λ_H¹/(2/η), η ≥ {NEAR_LR:g}",
    changed=f"{_RUN}-claim-2")
LAMBDA_K = ClaimSpec(
    id="3-lambda-K-decreases-with-lr", kind="paper", source="Conjecture 1; Fig. 3 (λ_K¹ vs epoch)",
    statement="The median λ_K¹ is at least 1.5× higher at the smallest learning rate of the sweep than at "
              "the largest",
    statistic="median_of_ratios", direction="greater", threshold=1.5,
    quantity="median over seeds of median λ_K¹, smallest η / largest η", labels=("smallest η", "largest η"),
    changed=f"{_RUN}-claim-3")
TRACE_K = ClaimSpec(
    id="4-trace-K-decreases-with-lr", kind="paper", source="Conjecture 2 (Tr K); Fig. 3",
    statement="The median Tr K is at least 2× higher at the smallest learning rate of the sweep than at the "
              "largest",
    statistic="median_of_ratios", direction="greater", threshold=2.0,
    quantity="median over seeds of median Tr K, smallest η / largest η", labels=("smallest η", "largest η"),
    changed=f"{_RUN}-claim-4")
LARGER_BATCH = ClaimSpec(
    id="5-larger-batch-sharper", kind="paper", source="Conjectures 1–2 (batch size); Figs. 3–4",
    statement="At a fixed η the largest batch size reaches a higher maximum sharpness (5-point running median "
              "of λ_H¹) and a higher second-half median Tr K than the smallest",
    statistic="median", direction="greater", threshold=1.0,
    quantity="median over seeds of the smaller of the two ratios, largest S / smallest S",
    changed=f"{_RUN}-claim-5")
SHARPENING = ClaimSpec(
    id="6-progressive-sharpening", kind="paper", source="Fig. 2 (early phase); progressive sharpening",
    statement="Progressive sharpening: in every run of the learning-rate sweep the peak of λ_H¹ is at least "
              "5× its initial value",
    statistic="median", direction="greater", threshold=5.0,
    quantity="median over seeds of the least peak/initial λ_H¹ of the sweep", changed=f"{_RUN}-claim-6")
TOGETHER = ClaimSpec(
    id="6b-sharpening-together", kind="paper", source="Fig. 2 (early phase); progressive sharpening",
    statement="Before the peak, λ_H¹ and λ_K¹ rise together: their Spearman correlation, the least over the "
              "learning-rate sweep, is above 0.4",
    statistic="median", direction="greater", threshold=0.4,
    quantity="median over seeds of the least pre-peak Spearman correlation", changed=f"{_RUN}-claim-6")
EDGE_OF_STABILITY = ClaimSpec(
    id="7-edge-of-stability", kind="finding",
    source="Cohen et al. (2021), edge of stability (a finding on this chapter's runs, not a statement of this "
           "paper)",
    statement="Full-batch GD (½·Σ squared error): λ_H¹ rises to 2/η and then hovers there while the loss still "
              "decreases, in more than half of the seeds (the per-seed window test of the errata)",
    statistic="proportion", direction="greater", threshold=0.5,
    quantity="proportion of seeds where the window test holds", changed=f"{_RUN}-claim-7")
CONDITIONING = ClaimSpec(
    id="8-conditioning-K", kind="paper", source="Conjecture 2 (conditioning of K); Fig. 3",
    statement="After break-even K is better conditioned at the largest learning rate of the sweep than at the "
              "smallest: the ratio of K's smallest eigenvalue above the relative cutoff to its largest is higher",
    statistic="median_of_ratios", direction="greater", threshold=1.0,
    quantity="median over seeds of K's conditioning ratio after break-even, largest η / smallest η",
    labels=("largest η", "smallest η"), changed=f"{_RUN}-claim-8")
ACCURACY = ClaimSpec(
    id="9-test-accuracy", kind="paper", source="larger η, better final test accuracy (within the trainable range)",
    statement="The final test accuracy (mean of the last 4 probes) is higher at the largest learning rate of "
              "the sweep than at the smallest",
    statistic="median_of_differences", direction="greater", threshold=0.0, physical_unit="accuracy points",
    quantity="median over seeds of test accuracy, largest η − smallest η", labels=("largest η", "smallest η"),
    changed=f"{_RUN}-claim-9")
BATCHNORM = ClaimSpec(
    id="10-batchnorm-small-lr", kind="paper", source="Fig. 5 (SimpleCNN with batch norm)",
    statement="With batch norm the smallest η still gives a large λ_K¹: its median λ_K¹ is at least 1.5× that "
              "at the largest η (full profile only)",
    statistic="median_of_ratios", direction="greater", threshold=1.5,
    quantity="median over seeds of median λ_K¹ with BN, smallest η / largest η",
    labels=("smallest η", "largest η"), changed=f"{_RUN}-claim-10")
SANITY = ClaimSpec(
    id="fits-training-set", kind="check", source="",
    statement=f"The runs with η ≥ {SANITY_LR:g} fit the training set: final training accuracy, the least over "
              "those runs, above 0.8",
    statistic="median", direction="greater", threshold=0.8,
    quantity=f"median over seeds of the least final training accuracy, η ≥ {SANITY_LR:g}",
    changed=f"{_RUN}-sanity")
FINITE = ClaimSpec(
    id="all-runs-finite", kind="check", source="",
    statement="Every run of every seed stays finite (no NaN, no divergence)",
    statistic="value", direction="less", threshold=1.0, unit="run", quantity="runs that are not finite",
    changed=f"{_RUN}-sanity")

SPECS = (MAX_SHARPNESS, BELOW_STABILITY, NEAR_STABILITY, LAMBDA_K, TRACE_K, LARGER_BATCH, SHARPENING, TOGETHER,
         EDGE_OF_STABILITY, CONDITIONING, ACCURACY, BATCHNORM, SANITY, FINITE)
"""Every claim of the chapter (``10-batchnorm-small-lr`` is evaluated in the full profile only)."""


def _evaluate(spec: ClaimSpec, *groups: Any, detail: dict[str, Any] | None = None) -> Result:
    """``evaluate`` on the units whose values are all finite; a left-out unit is named in the detail
    (the engine refuses NaN). With no finite unit at all, the claim is inconclusive."""
    arrays = [np.asarray(g, dtype=float) for g in groups]
    keep = np.all([np.isfinite(a) for a in arrays], axis=0)
    detail = dict(detail or {})
    if not keep.all():
        detail["units left out (a value is not finite)"] = [int(i) for i in np.nonzero(~keep)[0]]
    if not keep.any():
        return Result(spec, float("nan"), None, "inconclusive", 0, {}, "other", None, None,
                      "no unit has a finite value", detail)
    return evaluate(spec, *[a[keep] for a in arrays], detail=detail)


def _lr_pair(reps: list[dict[str, Any]], measure) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: ``measure`` of the run at the smallest and at the largest η of the sweep."""
    return (np.array([measure(lr_runs(rep)[0]) for rep in reps]),
            np.array([measure(lr_runs(rep)[-1]) for rep in reps]))


def _lr_claims(reps: list[dict[str, Any]]) -> list[Result]:
    """Claims 1–4 (the learning-rate sweep)."""
    lrs = [r["lr"] for r in lr_runs(reps[0])]
    smax = np.array([[smoothed_max(r["lambda_h"]) for r in lr_runs(rep)] for rep in reps])
    decreasing = int(np.sum(np.all(np.diff(smax, axis=1) < 0, axis=1)))
    rel = np.array([[np.median(second_half(r, "lambda_h")) * r["lr"] / 2 for r in lr_runs(rep)] for rep in reps])
    near = [j for j, lr in enumerate(lrs) if lr >= NEAR_LR]
    per_lr = lambda m: {f"η={lr:g}": m[:, j] for j, lr in enumerate(lrs)}  # noqa: E731
    out = [_evaluate(MAX_SHARPNESS, smax[:, 0], smax[:, -1],
                     detail={"smallest η, largest η": [lrs[0], lrs[-1]],
                             "seeds where the max strictly decreases in η": f"{decreasing} of {len(reps)}",
                             "max λ_H¹ per seed": per_lr(smax)}),
           _evaluate(BELOW_STABILITY, rel.max(axis=1), detail={"λ_H¹/(2/η) per seed": per_lr(rel)})]
    if near:
        out.append(_evaluate(NEAR_STABILITY, rel[:, near].min(axis=1), detail={"η tested": [lrs[j] for j in near]}))
    lk = _lr_pair(reps, lambda r: np.median(after_start(r, "lambda_k")))
    tk = np.array([[np.median(after_start(r, "trace_k")) for r in lr_runs(rep)] for rep in reps])
    out.append(_evaluate(LAMBDA_K, *lk, detail={"smallest η, largest η": [lrs[0], lrs[-1]]}))
    out.append(_evaluate(TRACE_K, tk[:, 0], tk[:, -1],
                         detail={"seeds where Tr K strictly decreases in η":
                                 f"{int(np.sum(np.all(np.diff(tk, axis=1) < 0, axis=1)))} of {len(reps)}",
                                 "median Tr K per seed": per_lr(tk)}))
    return out


def _batch_claim(reps: list[dict[str, Any]], config: Config) -> Result:
    """Claim 5: the largest vs the smallest batch at η = ``config.batch_lr``."""
    small, large = min(config.batch_sizes), max(config.batch_sizes)
    runs = [(run_of(rep, config.batch_lr, small), run_of(rep, config.batch_lr, large)) for rep in reps]
    sharp = np.array([running_median_max(lg["lambda_h"]) / running_median_max(sm["lambda_h"]) for sm, lg in runs])
    trace = np.array([np.median(second_half(lg, "trace_k")) / np.median(second_half(sm, "trace_k"))
                      for sm, lg in runs])
    return _evaluate(LARGER_BATCH, np.minimum(sharp, trace),
                     detail={"η, smallest S, largest S (epochs)": [config.batch_lr, small, large,
                                                                   epochs_for(config, large)],
                             "max λ_H¹ ratio per seed": sharp, "Tr K ratio per seed": trace})


def _sharpening_claims(reps: list[dict[str, Any]]) -> list[Result]:
    """Claim 6: peak/initial λ_H¹ and the pre-peak Spearman correlation, the least of each unit's sweep.
    A run that peaks before its third probe has no pre-peak correlation: it counts as −1 (no joint rise)."""
    sh = np.array([[sharpening(r) for r in lr_runs(rep)] for rep in reps])   # (units, η, 2)
    no_rho = int(np.isnan(sh[:, :, 1]).sum())
    return [_evaluate(SHARPENING, sh[:, :, 0].min(axis=1)),
            _evaluate(TOGETHER, np.nan_to_num(sh[:, :, 1], nan=-1.0).min(axis=1),
                      detail={"runs peaking before their third probe (counted as −1)": no_rho})]


def _eos_claim(reps: list[dict[str, Any]]) -> Result:
    """Claim 7 (finding): the proportion of units whose full-batch GD run passes the window test."""
    windows = [eos_window(rep["eos"]) for rep in reps]
    eos = reps[0]["eos"]
    return _evaluate(EDGE_OF_STABILITY, [float(w["holds"]) for w in windows],
                     detail={"η, examples, loss": [eos["lr"], eos["examples"], eos.get("loss_name", "mse")],
                             **{f"unit {rep.get('unit', i)} fails on": w["failed"]
                                for i, (rep, w) in enumerate(zip(reps, windows)) if w["failed"]}})


def _conditioning_claim(reps: list[dict[str, Any]], config: Config) -> Result:
    """Claim 8, with the effective rank Tr K/λ_K¹ reported beside it (not decided)."""
    c_lo, c_hi = _lr_pair(reps, conditioning_after_break_even)
    e_lo, e_hi = _lr_pair(reps, effective_rank_after_break_even)
    with np.errstate(invalid="ignore"):
        at_cutoff = float(np.nanmax(np.concatenate([c_lo, c_hi])) / config.cov_cutoff)
    return _evaluate(CONDITIONING, c_hi, c_lo,
                     detail={"effective rank Tr K/λ_K¹ per seed, largest η / smallest η": e_hi / e_lo,
                             "largest conditioning ratio of K, in units of the cutoff": at_cutoff})


def _accuracy_claim(reps: list[dict[str, Any]]) -> Result:
    """Claim 9, in accuracy points."""
    a_lo, a_hi = _lr_pair(reps, final_test_accuracy)
    return _evaluate(ACCURACY, 100 * a_hi, 100 * a_lo)


def _batchnorm_claim(reps: list[dict[str, Any]]) -> Result | None:
    """Claim 10 (full profile: the batch-norm sweep); ``None`` where the sweep was not run."""
    bn = [sorted([r for r in rep["runs"].values() if r["bn"]], key=lambda r: r["lr"]) for rep in reps]
    if len(bn[0]) < 2:
        return None
    med = lambda r: np.median(after_start(r, "lambda_k"))  # noqa: E731
    return _evaluate(BATCHNORM, [med(b[0]) for b in bn], [med(b[-1]) for b in bn])


def _sanity_claims(reps: list[dict[str, Any]]) -> list[Result]:
    """The self-checks: every run finite; the runs with η ≥ ``SANITY_LR`` fit the training set."""
    finite = [bool(not r["diverged"] and np.all(np.isfinite(r["lambda_h"])) and np.all(np.isfinite(r["step_loss"]))
                   and np.all(np.isfinite(r["trace_k"]))) for rep in reps for r in rep["runs"].values()]
    labels = [r["label"] for r in reps[0]["runs"].values() if r["lr"] >= SANITY_LR and not r["bn"]]
    acc = np.array([[rep["runs"][lab]["final_train_accuracy"] for lab in labels] for rep in reps])
    return [_evaluate(SANITY, acc.min(axis=1), detail={"runs": labels}),
            evaluate(FINITE, float(len(finite) - sum(finite)), detail={"runs": len(finite)})]


def claims(results: dict[str, Any], config: Config) -> list[Result]:
    """Every claim of the chapter, decided by the engine over the units of ``results``."""
    reps = replicates(results)
    out = _lr_claims(reps) + [_batch_claim(reps, config)] + _sharpening_claims(reps)
    out += [_eos_claim(reps), _conditioning_claim(reps, config), _accuracy_claim(reps)]
    bn = _batchnorm_claim(reps)
    return out + ([bn] if bn is not None else []) + _sanity_claims(reps)
