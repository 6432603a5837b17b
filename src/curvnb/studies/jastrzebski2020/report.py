"""The report of the jastrzebski2020 chapter: the narrative conditioned on the claims' verdicts, figures and
slider views over the results of :mod:`curvnb.studies.jastrzebski2020.compute` (editing this module
reuses every cached result). The claims are declared in :mod:`curvnb.studies.jastrzebski2020.specs`.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from curvnb.claims import (by_verdict, decision_note, format_estimate, format_interval, record_verdict, verdict,
                           what_we_found)
from curvnb.figures import panels
from curvnb.studies.jastrzebski2020.measures import (EOS_BAND, break_even_index, eos_window, final_test_accuracy,
                                                     replicates)


def _tex_label(lr: float, batch_size: int, bn: bool = False) -> str:
    return rf"$\eta={lr:g}$, $S={batch_size}$" + (", BN" if bn else "")


# --------------------------------------------------------------------------- narrative (from the records)
def _why_conditioning(record: dict[str, Any]) -> str:
    """Claim 8: why K's conditioning comes out as it does (from the record's detail)."""
    detail = record.get("detail") or {}
    ranks = [v for v in detail.get("effective rank Tr K/λ_K¹ per seed, largest η / smallest η", [])
             if isinstance(v, (int, float)) and np.isfinite(v)]
    text = ""
    if detail.get("largest λ_K^*/λ_K¹ in units of the cutoff", np.inf) < 2:
        text += ("λ_K^* sits at the cutoff for both learning rates: the spectrum of K continues below it, so the "
                 "ratio measures the cutoff rather than a difference between learning rates (K from 256 "
                 "per-example gradients has rank ≤ 255, and fitted examples' gradients shrink towards zero; the "
                 "paper's K from ~25 mini-batch gradients does not see this). ")
    if ranks:
        lower = sum(v < 1 for v in ranks)
        text += (f"The effective rank Tr K/λ_K¹ (the submission's conditioning, expected higher for the larger η) "
                 f"is lower for the larger η on {lower} of {len(ranks)} seeds (median ratio "
                 f"{np.median(ranks):.3g}).")
    return text


_WHY = {  # claim id -> (reproduced, not reproduced, inconclusive): why it came out so
    "5-larger-batch-sharper": ("", "A catapult of a small-batch run can lift its maximum; this is why the maximum "
                                   "is taken of a 5-point running median (the per-seed ratios are in the details).",
                               "The per-seed ratios (details) show how far the seeds disagree."),
    "7-edge-of-stability": ("", "The details name the part of the window test each failing seed misses.",
                            "A proportion over a handful of seeds has a wide exact interval: nearly every seed must hold for "
                            "it to clear one half; the details name what the failing "
                            "seeds miss."),
    "9-test-accuracy": ("", "At this scale the larger learning rate does not generalise better.",
                        "The seed-to-seed spread of the final accuracy is as large as the difference."),
}


def why(record: dict[str, Any]) -> str:
    """The study's explanation of one record's outcome, conditioned on its verdict."""
    if record["id"] == "8-conditioning-K":
        return _why_conditioning(record)
    texts = _WHY.get(record["id"])
    return by_verdict(record, *texts) if texts else ""


def claims_markdown(records: Sequence[dict[str, Any]], ids: Sequence[str]) -> str:
    """One generated line per claim in ``ids`` (in that order): verdict, estimate, interval, why."""
    by_id = {r["id"]: r for r in records}
    lines = []
    for cid in ids:
        if cid not in by_id:
            continue
        r = by_id[cid]
        parts = [f"**{cid}** — *{verdict(r)}*: {r['statement']}. {format_estimate(r)}",
                 format_interval(r), decision_note(r)]
        text = "; ".join(p for p in parts if p) + f" (rule: {r['threshold']})."
        lines.append(f"- {text} {why(r)}".rstrip())
    return "\n".join(lines)


def summary_markdown(records: Sequence[dict[str, Any]]) -> str:
    """The chapter's conclusions: the engine's counts and unresolved claims, and a generated sentence
    saying which rules changed (all results are on new seeds)."""
    text = what_we_found(list(records))
    changed = [r["id"] for r in records if r.get("changed")]
    if changed:
        text += (f"\n\nThe rules of {len(changed)} of the {len(records)} claims changed in this version of the "
                 "chapter (each row links to the Changes page); every result here is on new seeds, drawn from "
                 "the book's single seed derivation.")
    undecided = [r["id"] for r in records if record_verdict(r) == "inconclusive" and r.get("reason")]
    if undecided:
        text += f" Inconclusive by construction (too few units): {', '.join(undecided)}."
    return text


def runs_table(results: dict[str, Any]) -> str:
    """Plain-text table of every run: probes, final train accuracy and test accuracy (mean of the last
    4 probes) per unit, and the compute time of each unit (when it was computed)."""
    reps = replicates(results)
    width = 7 * len(reps)
    units = "".join(f"{'unit ' + str(rep.get('unit', i)):>7}" for i, rep in enumerate(reps))
    lines = [f"{'':<16}{'':>7}  {'final train acc.':^{width}}  {'test acc. (last 4)':^{width}}",
             f"{'run':<16}{'probes':>7}  {units}  {units}"]
    for label in reps[0]["runs"]:
        runs = [rep["runs"][label] for rep in reps]
        train_acc = "".join(f"{r['final_train_accuracy']:>7.3f}" for r in runs)
        test_acc = "".join(f"{final_test_accuracy(r):>7.3f}" for r in runs)
        lines.append(f"{label:<16}{len(runs[0]['step']):>7}  {train_acc}  {test_acc}")
    eos = reps[0]["eos"]
    lines.append(f"{'GD η=' + format(eos['lr'], 'g'):<16}{len(eos['step']):>7}  full-batch GD on {eos['examples']} "
                 f"examples, {eos['loss_name']} loss")
    secs = [sum(r["seconds"] for r in rep["runs"].values()) + rep["eos"]["seconds"] for rep in reps]
    return "\n".join(lines) + ("\ncompute time of each unit's runs, summed (two runs at a time): "
                               + ", ".join(f"{s:.0f} s" for s in secs))


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


def _other_seeds(results: dict[str, Any], label: str) -> list[dict[str, Any]]:
    return [rep["runs"][label] for rep in replicates(results)[1:] if label in rep["runs"]]


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
    reps = replicates(results)
    eos0 = reps[0]["eos"]
    a.axhspan(*EOS_BAND, color="k", alpha=0.07, label=r"band $[0.8, 1.25]\cdot 2/\eta$")
    a.axhline(1.0, color="k", ls="--", lw=0.9, label=r"$2/\eta$")
    for rep, c in zip(reps, _colors(len(reps)) if len(reps) > 1 else ["C0"]):
        eos = rep["eos"]
        ratio = np.asarray(eos["lambda_h"]) * eos["lr"] / 2
        a.plot(eos["step"], ratio, "-o", ms=1.8, lw=1.0, color=c, label=f"unit {rep.get('unit', 0)}")
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
    reps = replicates(results)
    sweeps = list(_sweeps(results).items())[:2]
    fig, axes = panels(2, row_height=2.8)
    for ax, (name, runs), key, xlabel in zip(axes, sweeps, ("lr", "batch_size"),
                                             (r"learning rate $\eta$", r"batch size $S$")):
        x = [r[key] for r in runs]
        test = np.array([[final_test_accuracy(rep["runs"][r["label"]]) for r in runs] for rep in reps])
        train_acc = np.array([[rep["runs"][r["label"]]["final_train_accuracy"] for r in runs] for rep in reps])
        for row in test:
            ax.semilogx(x, row, "o", ms=3, color="C0", alpha=0.5)
        ax.semilogx(x, np.median(test, axis=0), "-", color="C0", label="test (median; dots: units)")
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
    ax.set(xlabel="epoch", title=f"{_tex_label(r['lr'], r['batch_size'])} (unit {results.get('units', [0])[0]}): "
                                 f"final test accuracy {final_test_accuracy(r):.3f}")
    _legend(ax)
    return _tidy(fig)


def widget_view(results: dict[str, Any]):
    """``SliderFigure`` over the cached runs (reads ``results`` only, never trains)."""
    from curvnb.widgets import SliderFigure

    return SliderFigure(functools.partial(draw_run, results), run=run_labels(results), quantity=list(QUANTITIES))
