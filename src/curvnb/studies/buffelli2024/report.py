"""The report of the buffelli2024 chapter: claims, figures, slider views and prose over the results
of :mod:`curvnb.studies.buffelli2024.compute` (editing this module reuses every cached result).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from curvnb.claims import Claim
from curvnb.figures import panels
from curvnb.stats import t_interval
from curvnb.studies.buffelli2024.compute import Config, OPTIMIZERS, REGIMES, TUNED, _exactness


COLORS = {"gn": "#D55E00", "adam": "#0072B2", "sgd": "#009E73"}
NAMES = {"gn": "exact GN", "adam": "Adam", "sgd": "SGD"}


# --------------------------------------------------------------------------- claims
def steps_to_drop(train_loss: np.ndarray, steps: np.ndarray, factor: float = 10.0) -> np.ndarray:
    """Per seed, the first probed step where the training loss is ≤ initial / ``factor``;
    ``steps[-1] + 1`` (censored) if never within the run. ``train_loss``: probes × seeds."""
    hit = train_loss <= train_loss[0] / factor
    first = np.where(hit.any(0), steps[np.argmax(hit, axis=0)], steps[-1] + 1)
    return first.astype(float)


def _interval(values: np.ndarray) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(v)):
        return (-np.inf, np.inf)  # cannot be judged
    if np.ptp(v) == 0:
        return (float(v[0]), float(v[0]))
    return t_interval(v)


def claim_statistics(results: dict) -> dict:
    """Per-seed values, means and 95 % intervals of every statistical claim (plain data)."""
    sel = results["selected"]
    full = {n: results["full"][(n, sel[("full", n)])] for n in TUNED}
    mini = {n: results["mini"][(n, sel[("mini", n)])] for n in TUNED}
    st: dict[str, dict] = {}

    def add(name, per_seed, **extra):
        v = np.asarray(per_seed, dtype=float)
        st[name] = {"per_seed": v.tolist(), "mean": float(np.mean(v)), "interval": _interval(v), **extra}

    steps = {n: steps_to_drop(full[n]["train_loss"], full[n]["step"]) for n in TUNED}
    # Diagnostic only (enters no verdict): mean steps at every learning rate of the grids.
    by_lr = {n: {lr: float(np.mean(steps_to_drop(results["full"][(n, lr)]["train_loss"], results["full"][(n, lr)]["step"])))
                 for lr in results["grids"][n]} for n in TUNED}
    add("speed", steps["adam"] - steps["gn"], gn_steps=steps["gn"].tolist(), adam_steps=steps["adam"].tolist(),
        steps_by_lr=by_lr, censored_at=int(full["gn"]["step"][-1]) + 1)
    b = mini["gn"]["batch"]
    own = 1 - b["after"] / b["before"]
    add("own_drop", np.median(own, axis=0), first_20=float(np.mean(np.median(own[:20], axis=0))),
        last_50=float(np.mean(np.median(own[-50:], axis=0))))
    add("next_drop", np.median(1 - b["others_after"] / b["others_before"], axis=0))
    add("train_gap", mini["gn"]["train_loss"][-1] - mini["adam"]["train_loss"][-1],
        gn=mini["gn"]["train_loss"][-1].tolist(), adam=mini["adam"]["train_loss"][-1].tolist())
    add("acc_margin", 100 * (mini["adam"]["test_acc"][-1] - mini["gn"]["test_acc"][-1]),
        gn=(100 * mini["gn"]["test_acc"][-1]).tolist(), adam=(100 * mini["adam"]["test_acc"][-1]).tolist())
    add("ntk_margin", mini["adam"]["ntk_distance"][-1] - mini["gn"]["ntk_distance"][-1],
        gn=mini["gn"]["ntk_distance"][-1].tolist(), adam=mini["adam"]["ntk_distance"][-1].tolist())
    cka = {n: mini[n]["cka"][-1].mean(-1) for n in TUNED}
    add("cka_margin", cka["gn"] - cka["adam"], gn=cka["gn"].tolist(), adam=cka["adam"].tolist())
    return st


def _above(stat: dict, threshold: float, inclusive: bool = False) -> bool:
    lo = stat["interval"][0]
    return bool(lo >= threshold if inclusive else lo > threshold)


def claims(results: dict, config: Config, exact: dict | None = None) -> list[Claim]:
    """The restated claims, computed from ``results`` (statistics fixed before running)."""
    exact = exact or _exactness(0)
    st = claim_statistics(results)
    sel = results["selected"]
    n_seeds = len(results["seeds"])
    res = max(exact[f"L{d}_residual"] for d in (1, 2, 3, 4))
    res_h = max(exact[f"L{d}_hessian_pinv_residual"] for d in (1, 2, 3, 4))
    inv = max(exact[f"L{d}_inverse"] for d in (1, 2, 3, 4))
    mn = max(exact[f"L{d}_min_norm_vs_pinv"] for d in (1, 2, 3, 4))
    ratios = {f"L{d}": exact[f"L{d}_norm_ratio"] for d in (2, 3, 4)}

    def m(name, **keys):
        return {"mean": st[name]["mean"], "per_seed": st[name]["per_seed"], **keys}

    lrs = lambda regime: {n: sel[(regime, n)] for n in TUNED}  # noqa: E731
    return [
        Claim("exactness", "the block-wise GN update solves J u = ε exactly (J formed explicitly; d=12, M=40, n=24, "
              "L=1–4, float64; ε from the softmax residual and from the exact logit-Hessian pseudo-inverse); "
              "with L=1 and a square readout it equals J⁺ε",
              {"max_residual": res, "max_residual_hessian_pinv": res_h, "L1_vs_pinv": exact["L1_vs_pinv"]},
              "residuals < 1e-8 and ‖u − J⁺ε‖/‖J⁺ε‖ < 1e-8",
              res < 1e-8 and res_h < 1e-8 and exact["L1_vs_pinv"] < 1e-8,
              kind="paper", source="abstract and Sec. 4: exact GN is tractable in reversible networks"),
        Claim("inverse", "inputs are reconstructed exactly from the last features (float64, L=1–4)",
              inv, "< 1e-10", inv < 1e-10, kind="check", source="RevNet coupling blocks"),
        Claim("min-norm", "the min_norm option equals J⁺ε (explicit Jacobian, float64, L=1–4); the default "
              "block-wise update is a right inverse, longer than J⁺ε by the measured factor",
              {"max_min_norm_vs_pinv": mn, **{f"norm_ratio_{k}": v for k, v in ratios.items()}},
              "‖u_min_norm − J⁺ε‖/‖J⁺ε‖ < 1e-8 and every ratio ≥ 1",
              mn < 1e-8 and min(ratios.values()) >= 1 - 1e-10, kind="check",
              source="authors' code: block-wise construction"),
        Claim("full-batch-speed", f"full batch (n={config.full_batch_n} ≤ M+1): GN lowers the training loss 10× "
              "in fewer steps than Adam, each at its validation-selected learning rate",
              m("speed", gn_steps=st["speed"]["gn_steps"], adam_steps=st["speed"]["adam_steps"], lr=lrs("full"),
                mean_steps_by_lr={n: {f"{lr:g}": v for lr, v in d.items()} for n, d in st["speed"]["steps_by_lr"].items()}),
              "mean of (Adam steps − GN steps) over seeds, 95 % interval > 0", _above(st["speed"], 0),
              kind="paper", seeds=n_seeds, interval=st["speed"]["interval"],
              source="abstract: faster progress per iteration; full-batch experiments"),
        Claim("mini-batch-overfit", "mini-batch GN: one step lowers its own batch's loss by ≥ 50 % (median over "
              "steps), and the training loss ends above Adam's",
              m("own_drop", first_20_steps=st["own_drop"]["first_20"], last_50_steps=st["own_drop"]["last_50"],
                next_batch_drop=st["next_drop"]["mean"], train_gap=st["train_gap"]["mean"],
                train_gap_interval=st["train_gap"]["interval"], lr=lrs("mini")),
              "own-batch drop: 95 % interval ≥ 0.5; GN − Adam final training loss: 95 % interval > 0",
              _above(st["own_drop"], 0.5, inclusive=True) and _above(st["train_gap"], 0),
              kind="paper", seeds=n_seeds, interval=st["own_drop"]["interval"],
              source="abstract: progress saturates, updates overfit each mini-batch"),
        Claim("generalization", "mini-batch GN's test accuracy ends below Adam's (margin in points)",
              m("acc_margin", gn=st["acc_margin"]["gn"], adam=st["acc_margin"]["adam"], lr=lrs("mini")),
              "mean of (Adam − GN) test accuracy over seeds, 95 % interval > 0", _above(st["acc_margin"], 0),
              kind="paper", seeds=n_seeds, interval=st["acc_margin"]["interval"],
              source="abstract: exact GN generalizes poorly"),
        Claim("lazy", "GN trains lazier than Adam: smaller NTK distance from init and higher feature CKA with init",
              m("ntk_margin", ntk_gn=st["ntk_margin"]["gn"], ntk_adam=st["ntk_margin"]["adam"],
                cka_margin=st["cka_margin"]["mean"], cka_margin_interval=st["cka_margin"]["interval"],
                cka_gn=st["cka_margin"]["gn"], cka_adam=st["cka_margin"]["adam"]),
              "Adam − GN NTK distance and GN − Adam CKA: both 95 % intervals > 0",
              _above(st["ntk_margin"], 0) and _above(st["cka_margin"], 0),
              kind="paper", seeds=n_seeds, interval=st["ntk_margin"]["interval"],
              source="abstract: lazy regime, NTK and representations barely change"),
    ]


# --------------------------------------------------------------------------- generated prose
def _fmt(v: float, digits: int = 3) -> str:
    return f"{v:.{digits}g}"


def _iv(interval, digits: int = 3) -> str:
    lo, hi = interval
    return f"[{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def selection_markdown(results: dict) -> str:
    """Which learning rates the validation rule chose (generated from the run)."""
    sel, grids = results["selected"], results["grids"]
    lines = []
    for regime, what in (("full", "Full batch"), ("mini", "Mini-batch")):
        parts = []
        for n in TUNED:
            vals = ", ".join(f"{lr:g}: {np.nanmean(results[regime][(n, lr)]['val_loss'][-1]):.3f}" for lr in grids[n])
            parts.append(f"{NAMES[n]} lr {sel[(regime, n)]:g} (final validation loss by lr — {vals})")
        lines.append(f"- {what}: " + "; ".join(parts) + ".")
    return ("Learning rates chosen by the rule (lowest mean validation loss at the end of training, "
            f"over {len(results['seeds'])} seeds):\n\n" + "\n".join(lines))


def summary_markdown(records: Sequence[dict], results: dict) -> str:
    """The chapter's conclusions, one sentence per claim, generated from this run's claim records."""
    rec = {r["id"]: r for r in records}
    st = claim_statistics(results)
    n = len(results["seeds"])
    verdict = lambda cid: "reproduces" if rec[cid]["passed"] else "does not reproduce"  # noqa: E731
    out = []
    e, mn = rec["exactness"]["measured"], rec["min-norm"]["measured"]
    out.append(f"- **Exactness ({verdict('exactness')}).** The block-wise update solves $Ju=\\varepsilon$ to a "
               f"relative residual of {e['max_residual']:.1e} (and {e['max_residual_hessian_pinv']:.1e} with the "
               f"logit-Hessian pseudo-inverse); with one block and a square readout it equals $J^+\\varepsilon$ to "
               f"{e['L1_vs_pinv']:.1e}. It is a right inverse, not the minimum-norm step: it is "
               f"{mn['norm_ratio_L2']:.1f}×, {mn['norm_ratio_L3']:.1f}× and {mn['norm_ratio_L4']:.1f}× longer than "
               f"$J^+\\varepsilon$ for $L$ = 2, 3, 4 (the `min_norm` option matches $J^+\\varepsilon$ to "
               f"{mn['max_min_norm_vs_pinv']:.1e}).")
    out.append(f"- **Inverse ({verdict('inverse')}).** Inputs are recovered from the last features to a relative "
               f"error of {rec['inverse']['measured']:.1e}.")
    s = st["speed"]
    sel, grids = results["selected"], results["grids"]
    grid_steps = "; ".join(f"{NAMES[name]} " + ", ".join(f"lr {lr:g}: {_censored(v, s['censored_at'])}"
                                                         for lr, v in s["steps_by_lr"][name].items()) for name in TUNED)
    why = ""
    smallest = [name for name in TUNED if sel[("full", name)] == min(grids[name])]
    if not rec["full-batch-speed"]["passed"] and smallest:
        why = (" The validation rule chose the smallest learning rate of the grid for "
               + " and ".join(NAMES[name] for name in smallest)
               + ": larger ones fit the training subset faster but end with a higher validation loss.")
    out.append(f"- **Full-batch speed ({verdict('full-batch-speed')}).** Steps to a 10× lower training loss at the "
               f"selected learning rates: GN {_steps(s['gn_steps'])}, Adam {_steps(s['adam_steps'])} (per seed); "
               f"Adam − GN = {s['mean']:.1f} steps on average, 95 % interval {_iv(s['interval'])} over {n} seeds."
               f"{why} For reference, mean steps at every learning rate of the grids (not a verdict): {grid_steps}.")
    o, g = st["own_drop"], st["train_gap"]
    why = ""
    if not rec["mini-batch-overfit"]["passed"]:
        why = ((" The own-batch drop is below the 50 % of the claim." if o["interval"][0] < 0.5 else "")
               + (" GN's final training loss is not above Adam's beyond seed noise." if g["interval"][0] <= 0 else ""))
    out.append(f"- **Mini-batch overfitting ({verdict('mini-batch-overfit')}).** One GN step lowers the loss of "
               f"its own batch by {100 * o['mean']:.0f} % (median over steps, mean over seeds, 95 % interval "
               f"{_iv([100 * v for v in o['interval']], 2)} %; {100 * o['first_20']:.0f} % over the first 20 steps, "
               f"{100 * o['last_50']:.0f} % over the last 50) and that of another batch by "
               f"{100 * st['next_drop']['mean']:.0f} %; GN's final training loss minus Adam's is "
               f"{g['mean']:.3f} (95 % interval {_iv(g['interval'])}).{why}")
    a = st["acc_margin"]
    n_test = results.get("n_test")
    images = f" (≈ {abs(a['mean']) * n_test / 100:.1f} of {n_test} test images)" if n_test else ""
    out.append(f"- **Generalization ({verdict('generalization')}).** Adam's test accuracy minus GN's: "
               f"{a['mean']:+.2f} points on average{images}, 95 % interval {_iv(a['interval'])} points over {n} "
               f"seeds (per seed: {', '.join(f'{v:+.2f}' for v in a['per_seed'])}).")
    k, c = st["ntk_margin"], st["cka_margin"]
    out.append(f"- **Lazy training ({verdict('lazy')}).** Final NTK distance from initialization: GN "
               f"{np.mean(k['gn']):.3g}, Adam {np.mean(k['adam']):.3g} (Adam − GN 95 % interval {_iv(k['interval'])}); "
               f"mean feature CKA with initialization: GN {np.mean(c['gn']):.3f}, Adam {np.mean(c['adam']):.3f} "
               f"(GN − Adam 95 % interval {_iv(c['interval'])}).")
    sources = [f"`{r['id']}` ({r['kind']}{', ' + str(r['seeds']) + ' seeds' if r['seeds'] > 1 else ''}): "
               f"{r['source'] or '–'}" for r in records]
    return "\n".join(out) + "\n\nSources: " + "; ".join(sources) + "."


def _censored(value: float, censored_at: int) -> str:
    return f"> {censored_at - 1}" if value >= censored_at else f"{value:.3g}"


def _steps(values: Sequence[float]) -> str:
    return ", ".join(str(int(v)) for v in values)


def rich_markdown(results: dict) -> str:
    """The lazy-vs-rich control, described from the run (learning rates chosen by the same rule)."""
    parts = []
    for name in TUNED:
        lazy = results["mini"][(name, results["selected"][("mini", name)])]
        lr = results["selected"][("rich", name)]
        r = results["rich"][(name, lr)]
        loss0, loss1 = np.nanmean(r["train_loss"][0]), np.nanmean(r["train_loss"][-1])
        cond = results["design_condition"]
        state = ("" if np.isfinite(loss1) and loss1 < loss0 else
                 f" (there its training loss went from {loss0:.3g} to {loss1:.3g}: the run diverged"
                 + (f"; with {results['config'].batch_size} examples per batch and M + 1 = "
                    f"{results['config'].rich_expansion + 1} unknowns per output, each $[\\varphi, 1]$ is nearly "
                    f"square, with median condition number {cond['control']:.3g} at initialization against "
                    f"{cond['wide']:.3g} in the wide setting, so the exact solves take very large steps"
                    if name == "gn" else "") + ")")
        parts.append(f"{NAMES[name]}: mean feature CKA with init {np.mean(lazy['cka'][-1]):.2f} in the wide setting, "
                     f"{np.nanmean(r['cka'][-1]):.2f} in the control at lr {lr:g}{state}")
    return "; ".join(parts) + "."


# --------------------------------------------------------------------------- figures
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
    """Train (solid) and test (dashed) loss and accuracy vs steps at the selected learning rates,
    full batch (top) and mini-batch (bottom); mean over seeds with a min–max band."""
    fig, axes = panels(4, ncols=2, row_height=2.5)
    for row, regime in enumerate(REGIMES):
        for name in OPTIMIZERS:
            lr = results["selected"][(regime, name)]
            h = results[regime][(name, lr)]
            _band(axes[2 * row], h["step"], h["train_loss"], COLORS[name], label=_label(name, lr), log=True)
            _band(axes[2 * row], h["step"], h["test_loss"], COLORS[name], "--", log=True)
            _band(axes[2 * row + 1], h["step"], 100 * h["train_acc"], COLORS[name])
            _band(axes[2 * row + 1], h["step"], 100 * h["test_acc"], COLORS[name], "--")
        what = "full batch" if regime == "full" else "mini-batch"
        axes[2 * row].set(xlabel="step", ylabel="cross-entropy (nats)", title=f"{what}: loss")
        axes[2 * row + 1].set(xlabel="step", ylabel="accuracy (%)", title=f"{what}: accuracy (dashed: test)")
    axes[0].legend(fontsize=7, loc="lower left")
    return fig


def figure_lr_sweep(results: dict):
    """Final validation loss vs learning rate for GN and Adam (mean over seeds, min–max bars);
    the selected learning rate of each regime is marked."""
    fig, axes = panels(2, row_height=2.6)
    for ax, name in zip(axes, TUNED):
        for regime, marker in (("full", "o"), ("mini", "s")):
            lrs = np.array(results["grids"][name])
            vals = np.array([results[regime][(name, lr)]["val_loss"][-1] for lr in lrs])
            mean = np.nanmean(vals, axis=1)
            err = np.abs(np.stack([np.nanmin(vals, 1), np.nanmax(vals, 1)]) - mean)
            what = "full batch" if regime == "full" else "mini-batch"
            ax.errorbar(lrs, mean, yerr=err, marker=marker, color=COLORS[name], ls="-" if regime == "mini" else ":",
                        capsize=2, label=what)
            best = results["selected"][(regime, name)]
            ax.plot([best], [mean[list(lrs).index(best)]], marker=marker, ms=11, mfc="none", mec="k", ls="")
        ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="final validation loss (nats)",
               title=NAMES[name])
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    return fig


def figure_batch_overfit(results: dict):
    """Relative loss drop of one step on its own mini-batch and on another one, mean over seeds."""
    fig, (ax,) = panels(1, row_height=2.8)
    w = min(10, len(results["mini"][("gn", results["selected"][("mini", "gn")])]["batch"]["before"]))
    smooth = lambda v: np.convolve(v, np.ones(w) / w, mode="valid")  # noqa: E731
    for name in TUNED:
        lr = results["selected"][("mini", name)]
        b = results["mini"][(name, lr)]["batch"]
        own = (1 - b["after"] / b["before"]).mean(1)
        other = (1 - b["others_after"] / b["others_before"]).mean(1)
        steps = np.arange(w, len(own) + 1)
        ax.plot(steps, 100 * smooth(own), color=COLORS[name], label=f"{_label(name, lr)}: own batch")
        ax.plot(steps, 100 * smooth(other), ":", color=COLORS[name], label=f"{_label(name, lr)}: another batch")
    ax.axhline(50, color="gray", lw=0.8, ls="--", label="claimed 50 %")
    ax.set(xlabel="step", ylabel="loss drop of one step (%)",
           title="one step's loss drop (10-step moving average, mean over seeds)")
    ax.legend(fontsize=7, ncols=2)
    return fig


def figure_lazy(results: dict):
    """NTK distance from init and mean feature CKA with init vs step; rich control dashed."""
    fig, axes = panels(2, row_height=2.8)
    for group, style, suffix in (("mini", "-", ""), ("rich", "--", ", control")):
        for (name, lr), h in results[group].items():
            if "ntk_distance" not in h:
                continue  # kernels are probed at the selected learning rates only
            label = _label(name, lr) + suffix
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
    """Widget view over the cached mini-batch runs: GN and Adam at any learning rate of their grids."""
    results = _WIDGET_RESULTS["r"]
    keys = {("gn", gn_lr), ("adam", adam_lr)}
    missing = [k for k in keys if k not in results["mini"]]
    if missing:
        raise ValueError(f"no cached run for {missing}; cached: {sorted(results['mini'])}")
    fig, axes = panels(2, row_height=2.6)
    for name, lr in (("gn", gn_lr), ("adam", adam_lr)):
        h = results["mini"][(name, lr)]
        _band(axes[0], h["step"], h["train_loss"], COLORS[name], label=f"{_label(name, lr)}: train", log=True)
        _band(axes[0], h["step"], h["test_loss"], COLORS[name], "--", label="test")
        _band(axes[1], h["step"], 100 * h["test_acc"], COLORS[name], label=_label(name, lr))
    axes[0].set(xlabel="step", ylabel="cross-entropy (nats)", title="loss (dashed: test)")
    axes[1].set(xlabel="step", ylabel="test accuracy (%)", title="test accuracy")
    axes[0].legend(fontsize=7)
    return fig
