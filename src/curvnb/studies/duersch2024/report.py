"""The report of the duersch2024 chapter: claims, figures, slider views and prose over the results
of :mod:`curvnb.studies.duersch2024.compute` (editing this module reuses every cached result).

Every claim is declared once below (:class:`~curvnb.claims.ClaimSpec`, thresholds written only
here) and decided by the verdict engine; the prose is generated from the records.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from curvnb import stats
from curvnb.claims import ClaimSpec, Result, by_verdict, evaluate, format_value, what_we_found
from curvnb.curvature.glass import loglog_slope
from curvnb.figures import panels
from curvnb.studies.duersch2024.compute import Config, HEAVY_BALL, POINTS, VARIANTS, line_comparison

# --------------------------------------------------------------------------- the claims, declared once
_NET = dict(statistic="median", unit="network", kind="paper")
GLASS_SCALING = ClaimSpec(
    id="glass-scaling", source="glass-density estimator: ρ independent of σ for ReLU", **_NET,
    statement="ReLU: the mean squared even part (ḡ − g₀)² grows like σ¹ (the glass): its log–log slope over "
              "σ ∈ [1e-5, 1e-2] lies in [0.6, 1.5]",
    direction="agreement", threshold=1.05, delta=0.45, quantity="median log–log slope, ReLU",
    changed="duersch2024-glass-scaling")
GLASS_SCALING_TANH = ClaimSpec(
    id="glass-scaling-tanh", source="glass-density estimator: a smooth model has no glass", **_NET,
    statement="tanh: the even part grows like σ⁴ (smooth): its log–log slope is above 3",
    direction="greater", threshold=3.0, quantity="median log–log slope, tanh", changed="duersch2024-glass-scaling")
HESSIAN_SCALING = ClaimSpec(
    id="hessian-scaling", source="Hessian-diagonal estimator; restated for the ReLU odd part (errata)", **_NET,
    statement="ReLU: the odd part carries the jumps as much as the even part: mean ((g₊ − g₋)/2)² equals "
              "σ²·E[(Hz)²] + mean (ḡ − g₀)² within 20 % at every σ ∈ [1e-5, 1e-2]",
    direction="less", threshold=0.2, quantity="median of the largest relative deviation over σ, ReLU",
    changed="duersch2024-hessian-scaling")
HESSIAN_EVEN_TANH = ClaimSpec(
    id="hessian-scaling-tanh-even", source="Hessian-diagonal estimator (errata)", **_NET,
    statement="tanh: the even part is below 1 % of the odd part for σ ≤ 1e-3",
    direction="less", threshold=1e-2, quantity="median of the largest even/odd ratio, σ ≤ 1e-3, tanh",
    changed="duersch2024-hessian-scaling")
HESSIAN_SLOPE_TANH = ClaimSpec(
    id="hessian-scaling-tanh-slope", source="Hessian-diagonal estimator (errata)", **_NET,
    statement="tanh: the odd part grows like σ², the Hessian's: its log–log slope lies in [1.8, 2.2]",
    direction="agreement", threshold=2.0, delta=0.2, quantity="median log–log slope of the odd part, tanh",
    changed="duersch2024-hessian-scaling")
GLASS_LOSS_MODEL = ClaimSpec(
    id="glass-loss-model", source="expected-loss model behind Alice's step", **_NET,
    statement="the glass-corrected model of the loss change along random directions has a smaller error than the "
              "Hessian-only model (ReLU, at steps where ≥ 10 boundaries are crossed)",
    direction="less", threshold=1.0, quantity="median error ratio, glass-corrected / Hessian-only",
    changed="duersch2024-glass-loss-model")
SMOOTH_GLASS_RATIO = ClaimSpec(
    id="smooth-glass-ratio", source="idea: no glass in smooth models", **_NET,
    statement="the glass density of the ReLU net is ≥ 100× that of its tanh twin at σ = 1e-3",
    direction="greater", threshold=100.0, quantity="median glass-density ratio, ReLU / tanh",
    changed="duersch2024-smooth-glass-ratio")
NAQ_EXACT = ClaimSpec(
    id="naq-exactness", kind="check", source="Alice's two iterates (NAQ exactness)", statistic="value",
    statement="Alice's running gradient G equals ∇L(μ) on a diagonal quadratic (condition 1e4) with "
              "φ = 1 − β₁, ω = 1",
    direction="less", threshold=1e-10, unit="run", quantity="max |G − ∇L(μ)| over all steps",
    changed="duersch2024-naq-exactness")
NAQ_OTHER_PHI = ClaimSpec(
    id="naq-other-phi", kind="check", source="Alice's two iterates (NAQ exactness)", statistic="value",
    statement="with φ = 0.5 instead, G does not track ∇L(μ) exactly after the warm-up",
    direction="greater", threshold=1e-6, unit="run", quantity="max |G − ∇L(μ)| after the warm-up, φ = 0.5",
    changed="duersch2024-naq-exactness")

#: δ, the smallest change of test accuracy that matters, fixed before the run: 0.5 points (1.5 of the
#: 297 test images), half the 1-point margin the specification uses for "as accurate as Adam".
DELTA = 0.5
_PAIRED = dict(statistic="mean_of_differences", direction="two-sided", threshold=0.0, delta=DELTA, unit="run",
               physical_unit="accuracy points")
_ABLATION_SOURCE = "abstract: Alice tests which curvature terms are most impactful (ablation)"
ABLATIONS = {   # spec -> the variant Alice (both terms) is compared with
    ClaimSpec(id="ablation-glass", source=_ABLATION_SOURCE, **_PAIRED, labels=("Alice", "Hessian only"),
              statement="adding the glass term to the Hessian term changes Alice's test accuracy at equal gradient "
                        "evaluations, in either direction, by more than δ",
              quantity="mean of Alice − Hessian-only", changed="duersch2024-ablations"): "Alice: Hessian only",
    ClaimSpec(id="ablation-hessian", source=_ABLATION_SOURCE, **_PAIRED, labels=("Alice", "glass only"),
              statement="adding the Hessian term to the glass term changes Alice's test accuracy at equal gradient "
                        "evaluations, in either direction, by more than δ",
              quantity="mean of Alice − glass-only", changed="duersch2024-ablations"): "Alice: glass only",
    ClaimSpec(id="ablation-curvature", source=_ABLATION_SOURCE, **_PAIRED, labels=("Alice", "no curvature"),
              statement="both curvature terms together (against none) change Alice's test accuracy at equal gradient "
                        "evaluations, in either direction, by more than δ",
              quantity="mean of Alice − no-curvature", changed="duersch2024-ablations"): "Alice: no curvature",
}
COMPARISONS = {   # spec -> comparison point: the errata's reported comparison with Adam, as findings
    ClaimSpec(id="alice-vs-adam-evals", kind="finding", source="errata: Alice vs Adam, a reported comparison",
              **_PAIRED, labels=("Alice", "Adam"),
              statement="Alice's test accuracy differs from Adam's by more than δ at equal gradient evaluations",
              quantity="mean of Alice − Adam"): "evals",
    ClaimSpec(id="alice-vs-adam-steps", kind="finding", source="errata: Alice vs Adam, a reported comparison",
              **_PAIRED, labels=("Alice", "Adam"),
              statement="Alice's test accuracy differs from Adam's by more than δ at equal optimizer steps",
              quantity="mean of Alice − Adam"): "steps",
}
#: the curvature claims and the per-net statistic each is decided on (compute.seed_statistics)
CURVATURE = {GLASS_SCALING: "relu_even_slope", GLASS_SCALING_TANH: "tanh_even_slope",
             HESSIAN_SCALING: "relu_odd_deviation", HESSIAN_EVEN_TANH: "tanh_even_over_odd",
             HESSIAN_SLOPE_TANH: "tanh_odd_slope", GLASS_LOSS_MODEL: "line_ratio", SMOOTH_GLASS_RATIO: "glass_ratio"}
SPECS = (*CURVATURE, NAQ_EXACT, NAQ_OTHER_PHI, *ABLATIONS, *COMPARISONS)
ABLATION = ("Alice", "Alice: Hessian only", "Alice: glass only", "Alice: no curvature")


def reported(results: dict, name: str, point: str, key: str = "test_acc") -> np.ndarray:
    """``key`` of the reported units of ``name`` at its selected rate, at the comparison ``point``
    (NaN for every unit of a run that diverged)."""
    tr = results["training"]
    r = tr["reports"][name][tr["selected"][name][point]]
    i = np.flatnonzero(r["step"] == r["point_step"][point])
    if r["diverged"] or not len(i):
        return np.full(r["test_acc"].shape[1], np.nan)
    return r[key][i[0]]


def _upper(results: dict, name: str, point: str) -> float:
    """Mean fraction of the reported units' element-steps held at Alice's upper bound (NaN: not Alice)."""
    up = reported(results, name, point, "upper")
    return float(np.mean(up)) if np.all(np.isfinite(up)) else float("nan")


def _paired_result(spec: ClaimSpec, results: dict, a: str, b: str, point: str) -> Result:
    """``spec`` on the test accuracies (points) of ``a`` and ``b``, paired by unit; units where either
    run diverged are left out and counted in the detail."""
    tr = results["training"]
    xa, xb = 100 * reported(results, a, point), 100 * reported(results, b, point)
    keep = np.isfinite(xa) & np.isfinite(xb)
    detail = {f"rate of {a} (selected)": tr["selected"][a][point], f"rate of {b} (selected)": tr["selected"][b][point],
              "diverged units (left out)": int((~keep).sum())}
    if a.startswith("Alice") and math.isfinite(_upper(results, a, point)):
        detail["Alice: element-steps at the upper bound"] = round(_upper(results, a, point), 3)
    if not keep.any():   # every unit diverged: nothing to test (the engine refuses empty values)
        return Result(spec, float("nan"), None, "inconclusive", 0, {"design": "paired", "a": [], "b": []}, "other",
                      None, None, "every run diverged", detail)
    return evaluate(spec, xa[keep], xb[keep], detail=detail)


def claims(results: dict, config: Config) -> list[Result]:
    """Every claim of :data:`SPECS`, decided by the engine: the curvature claims on the median over
    ``curvature_seeds`` independent nets (exact order-statistic intervals), the NAQ checks on one
    deterministic run, the ablations and the comparison with Adam on the mean paired difference over the
    ``report_seeds`` reported runs (Student t), two-sided with margin :data:`DELTA`."""
    st = results["seed_stats"]
    ranges = [r for r in st["line_t_range"] if r]
    line = dict(step_range=[min(r[0] for r in ranges), max(r[1] for r in ranges)] if ranges else [],
                **line_details(results))
    out = [evaluate(spec, st[key], detail=line if spec is GLASS_LOSS_MODEL else None)
           for spec, key in CURVATURE.items()]
    naq = results["naq"]
    w = naq["phi=1-beta1"]["warmup"]
    out += [evaluate(NAQ_EXACT, float(naq["phi=1-beta1"]["error"].max()), detail={"condition": naq["condition"]}),
            evaluate(NAQ_OTHER_PHI, float(naq["phi=0.5"]["error"][w:].max()), detail={"warm-up steps": w})]
    if "training" in results:
        out += [_paired_result(spec, results, "Alice", other, "evals") for spec, other in ABLATIONS.items()]
        out += [_paired_result(spec, results, "Alice", "Adam", point) for spec, point in COMPARISONS.items()]
    return out


def line_details(results: dict) -> dict:
    """On the first net, steps crossing ≥ 10 ReLU boundaries: the signed/absolute deviation of the measured
    loss from the Hessian quadratic, and how much the finite-difference curvature shrinks its error."""
    ln = results["line"]["relu"]
    cross = ln["crossings"].mean(axis=(0, 1)) >= 10
    if not cross.any():
        return {}
    return {"signed / absolute deviation from the quadratic (first net)":
            round(float(np.mean(ln["mean_deviation"][cross] / ln["err_hessian"][cross])), 3),
            "Hessian-model error / finite-difference-model error (first net)":
            round(float(np.exp(np.mean(np.log(ln["err_hessian"][cross] / ln["err_fd"][cross])))), 3)}


# --------------------------------------------------------------------------- the comparison table
def _cell(values: np.ndarray) -> str:
    """Test accuracy in %: mean [95 % Student-t interval] over the reported units."""
    values = 100 * np.asarray(values, float)
    if not np.all(np.isfinite(values)):
        return "diverged"
    lo, hi = stats.t_interval(values) if len(values) >= 2 else (math.nan, math.nan)
    return f"{values.mean():.1f} [{lo:.1f}, {hi:.1f}]"


def comparison_table(results: dict, config: Config) -> str:
    """The comparison as a Markdown table: test accuracy in %, mean [95 % interval] over the reported
    units, each optimizer at its selected rate; the fraction of Alice's element-steps at the upper bound."""
    tr = results["training"]
    head = ["optimizer", "lr (steps)", f"test acc @ {config.train_steps} steps",
            "lr (evals)", f"test acc @ {tr['budget']} evals", "steps taken", "held at upper bound"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in VARIANTS:
        lr = tr["selected"][name]
        upper = _upper(results, name, "evals")
        steps = tr["reports"][name][lr["evals"]]["point_step"]["evals"]
        lines.append(f"| {name} | {lr['steps']:g} | {_cell(reported(results, name, 'steps'))} | {lr['evals']:g} | "
                     f"{_cell(reported(results, name, 'evals'))} | {steps} | "
                     + ("–" if math.isnan(upper) else f"{100 * upper:.0f} %") + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures
_COLORS = {"relu": "C1", "tanh": "C0"}


def figure_scaling(results: dict):
    """Mean squared even and odd gradient differences vs σ, ReLU vs tanh, log–log; the odd panel
    also shows the restated ReLU prediction σ²E[(Hz)²] + even part."""
    s, sig = results["scaling"], results["sigmas"]
    fig, axes = panels(2, row_height=3.0)
    for act in ("relu", "tanh"):
        for ax, key in ((axes[0], "even"), (axes[1], "odd")):
            ax.loglog(sig, s[act][key], "o-", ms=4, color=_COLORS[act],
                      label=f"{act} (slope {loglog_slope(sig, s[act][key]):.2f})")
    axes[1].loglog(sig, sig ** 2 * s["relu"]["hz2"] + s["relu"]["even"], "k--", lw=1,
                   label=r"relu: $\sigma^2 E[(Hz)^2]$ + even")
    if "relu (long)" in s:
        lg = s["relu (long)"]
        axes[0].loglog(sig, lg["even"], "^:", color="C2", ms=4, label=f"relu, ≈0 loss (slope {loglog_slope(sig, lg['even']):.2f})")
    for p, y0 in ((1, s["relu"]["even"][0]), (4, s["tanh"]["even"][0])):
        axes[0].loglog(sig, y0 * (sig / sig[0]) ** p, color="0.5", lw=0.8, ls=":")
        axes[0].annotate(rf"$\propto\sigma^{p}$", (sig[-3], y0 * (sig[-3] / sig[0]) ** p), fontsize=8)
    axes[0].set(xlabel=r"perturbation scale $\sigma$", ylabel=r"mean $(\bar g - g_0)^2$", title="even part (glass)")
    axes[1].set(xlabel=r"perturbation scale $\sigma$", ylabel=r"mean $((g_+ - g_-)/2)^2$", title="odd part")
    for ax in axes:
        ax.legend(fontsize=7)
    return fig


def figure_layers(results: dict):
    """Per-layer glass density ρ and Hessian-diagonal estimate h at σ_ref; the glass curvature α = (3/4π) ρ/|g|."""
    s, layers = results["scaling"], results["layers"]
    fig, axes = panels(2, row_height=2.9)
    xs = np.arange(len(layers))
    for j, act in enumerate(("relu", "tanh")):
        rho = [s[act]["ref"][f"rho/{n}"] for n in layers]
        axes[0].bar(xs + (j - 0.5) * 0.38, rho, 0.38, color=_COLORS[act], label=act)
    ref = s["relu"]["ref"]
    for j, (vals, lab) in enumerate((([ref[f"hess/{n}"] for n in layers], r"Hessian $h$"),
                                     ([3 / (4 * np.pi) * ref[f"rho/{n}"] / ref[f"absgrad/{n}"] for n in layers],
                                      r"glass $\alpha$"))):
        axes[1].bar(xs + (j - 0.5) * 0.38, vals, 0.38, color=("C2", "C1")[j], label=lab)
    axes[0].set(yscale="log", ylabel=r"mean glass density $\rho$", title="glass density per layer")
    axes[1].set(yscale="log", ylabel="mean curvature (1/step)", title="ReLU net: Hessian vs glass")
    for ax in axes:
        ax.set_xticks(xs, [n.split(":")[0] for n in layers])
        ax.set_xlabel(rf"layer ($\sigma$ = {results['sigma_ref']:g})")
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * 30)  # room for the legend above the bars
        ax.legend(loc="upper right", ncols=2)
    return fig


def figure_line(results: dict):
    """Loss along a random direction (ReLU), and the mean error of each model vs step size."""
    ln = results["line"]["relu"]
    ex = ln["example"]
    fig, axes = panels(2, row_height=3.8)   # room for the model-error legend below its panel
    ax = axes[0]
    ax.plot(ex["t"], ex["loss"], "k-", label="measured")
    ax.plot(ex["t"], ex["hessian"], "C0--", label="Hessian quadratic")
    ax.plot(ex["t"], ex["glass"], "C1-.", label="+ glass term")
    ax.plot(ex["t"], ex["fd"], "C2:", lw=2, label="finite-difference curvature")
    ax.set(xlabel=r"step $t$ along $d$ (per parameter)", ylabel=r"$L(\nu + t d) - L(\nu)$", title="ReLU MLP: one line")
    ax.locator_params(axis="x", nbins=4)
    ax.legend(fontsize=7)
    ax = axes[1]
    for act, style in (("relu", "-"), ("tanh", ":")):
        l2 = results["line"][act]
        ax.loglog(l2["t"], l2["err_hessian"], "C0" + style, marker="o", ms=3, label=f"{act}: Hessian")
        ax.loglog(l2["t"], l2["err_glass"], "C1" + style, marker="s", ms=3, label=f"{act}: + glass")
        ax.loglog(l2["t"], l2["err_fd"], "C2" + style, marker="^", ms=3, label=f"{act}: finite diff.")
    lc = line_comparison(ln)
    if lc["t_range"] and lc["t_range"][0] > min(ln["t"]):   # where the lines cross ≥ 10 ReLU boundaries
        ax.axvline(lc["t_range"][0], color="0.5", ls="--", lw=1, label="≥ 10 ReLU crossings beyond")
    elif lc["t_range"]:
        ax.plot([], [], " ", label="every step: ≥ 10 ReLU crossings")
    ax.set(xlabel=r"step $t$ (per parameter)", ylabel="mean |measured − model|", title="model error")
    ax.legend(fontsize=7, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))   # below: the curves fill the panel
    return fig


def figure_naq(results: dict):
    """max |G − ∇L(μ)| per step on the badly conditioned quadratic, for two choices of φ."""
    naq = results["naq"]
    fig, axes = panels(2, row_height=2.8)
    labels = {"phi=1-beta1": r"$\varphi = 1 - \beta_1$", "phi=0.5": r"$\varphi = 0.5$"}
    for label, c in (("phi=1-beta1", "C2"), ("phi=0.5", "C1")):
        axes[0].semilogy(np.maximum(naq[label]["error"], 1e-18), color=c, label=labels[label])
        axes[1].semilogy(naq[label]["loss"] - naq["optimal_loss"] + 1e-16, color=c, label=labels[label])
    w = naq["phi=1-beta1"]["warmup"]
    for ax in axes:
        ax.axvline(w, color="0.6", ls=":", label="end of warm-up")
        ax.legend(fontsize=7)
    axes[0].set(xlabel="step", ylabel=r"max $|G - \nabla L(\mu)|$ (floor $10^{-18}$)",
                title=f"NAQ exactness, condition {naq['condition']:.0e}")
    axes[1].set(xlabel="step", ylabel=r"$L(\mu) - L^*$", title="loss on the quadratic")
    return fig


# (colour, line style, width): Alice in black and thick, the baselines dashed, the heavy-ball variant grey dotted
_STYLE = {"Adam": ("C0", "--", 1.6), "SGD-momentum": ("C1", "--", 1.6), "Alice": ("k", "-", 2.4),
          "Alice: Hessian only": ("C2", "-", 1.4), "Alice: glass only": ("C3", "-", 1.4),
          "Alice: no curvature": ("C5", "-", 1.4), "Alice: no quick steps": ("C4", "-", 1.4),
          HEAVY_BALL: ("0.45", ":", 1.8)}


def _curve(run: dict, key: str = "test_acc") -> np.ndarray:
    """Mean over a run's units of ``key`` at every probe."""
    return run[key].mean(axis=1)


def figure_sweep(results: dict, config: Config):
    """Validation accuracy (selection runs) against the learning rate, at both comparison points;
    the selected rate of each optimizer is marked."""
    fig, axes = panels(2, row_height=3.0, sharey=True)
    tr = results["training"]
    for ax, point in zip(axes, POINTS):
        for name in VARIANTS:
            lrs = list(tr["sweep"][name])
            vals = []
            for lr in lrs:
                r = tr["sweep"][name][lr]
                i = np.flatnonzero(r["step"] == r["point_step"][point])
                vals.append(np.nan if r["diverged"] or not len(i) else 100 * r["val_acc"][i[0]].mean())
            color, ls, lw = _STYLE[name]
            # SGD's grid is 100× Adam's: plot every optimizer against its grid position
            ax.plot(range(len(lrs)), vals, ls, lw=lw, marker="o", ms=3, color=color, label=name,
                    zorder=3 if name == "Alice" else 2)
            k = lrs.index(tr["selected"][name][point])
            ax.plot([k], [vals[k]], "o", ms=8, mfc="none", color=color)
        ax.set_xticks(range(len(config.lrs_adaptive)),
                      [f"{a:g}\n{b:g}" for a, b in zip(config.lrs_adaptive, config.lrs_sgd)])
        ax.set(xlabel="learning rate (Adam, Alice / SGD)",
               title=(f"{config.train_steps} steps" if point == "steps" else f"{tr['budget']} gradient evaluations"))
    axes[0].set_ylabel("validation accuracy (%)")
    axes[0].set_ylim(80, 100)  # a diverged or far-too-slow rate falls off the bottom
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=7)
    return fig


def figure_training(results: dict, config: Config):
    """Mean test accuracy of the reported runs at the selected rates, against gradient evaluations
    (rate selected for equal evaluations) and against steps (rate selected for equal steps)."""
    fig, axes = panels(2, row_height=3.2, sharey=True)
    tr = results["training"]
    for ax, point in zip(axes, ("evals", "steps")):
        for name in VARIANTS:
            r = tr["reports"][name][tr["selected"][name][point]]
            acc = _curve(r)
            color, ls, lw = _STYLE[name]
            ax.plot(r["evals"] if point == "evals" else r["step"], 100 * acc, ls, lw=lw, color=color, label=name,
                    zorder=3 if name == "Alice" else 2)
        limit = tr["budget"] if point == "evals" else config.train_steps
        ax.axvline(limit, color="0.5", lw=0.8)
        ax.set(xlim=(0, 1.05 * limit), ylim=(80, 100),
               xlabel="gradient evaluations" if point == "evals" else "optimizer steps",
               title="per gradient evaluation" if point == "evals" else "per step")
    axes[0].set_ylabel("test accuracy (%)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=7)
    return fig


def draw_runs(results: dict, config: Config, optimizer: str = "Alice", x_axis: str = "gradient evaluations",
              metric: str = "validation accuracy"):
    """Widget view of the cached sweep: one optimizer at every rate of its grid (mean of the selection
    runs; the validation-selected rate in bold), with Adam at its selected rate for reference."""
    metrics = {"validation accuracy": "val_acc", "training loss": "train_loss"}
    if optimizer not in VARIANTS:
        raise ValueError(f"unknown optimizer {optimizer!r}: allowed values are {', '.join(map(repr, VARIANTS))}")
    if x_axis not in ("gradient evaluations", "steps"):
        raise ValueError(f"unknown x_axis {x_axis!r}: allowed values are 'gradient evaluations', 'steps'")
    if metric not in metrics:
        raise ValueError(f"unknown metric {metric!r}: allowed values are {', '.join(map(repr, metrics))}")
    point = "evals" if x_axis == "gradient evaluations" else "steps"
    tr = results["training"]
    fig, axes = panels(1, row_height=3.2)
    ax = axes[0]
    scale = 100 if "accuracy" in metric else 1
    shades = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(tr["sweep"][optimizer])))
    for color, lr in zip(shades, tr["sweep"][optimizer]):
        r = tr["sweep"][optimizer][lr]
        y = _curve(r, metrics[metric])
        chosen = lr == tr["selected"][optimizer][point]
        ax.plot(r["evals"] if point == "evals" else r["step"], scale * y, color=color, lw=2.4 if chosen else 1.0,
                label=f"{optimizer}, lr {lr:g}" + (" (selected)" if chosen else ""))
    if optimizer != "Adam":
        r = tr["sweep"]["Adam"][tr["selected"]["Adam"][point]]
        y = _curve(r, metrics[metric])
        ax.plot(r["evals"] if point == "evals" else r["step"], scale * y, "k--", lw=1.2,
                label=f"Adam, lr {tr['selected']['Adam'][point]:g} (selected)")
    if "accuracy" in metric:
        ax.set_ylim(60, 100)
    else:
        ax.set_yscale("log")
    ax.set(xlabel=x_axis, ylabel=metric + (" (%)" if "accuracy" in metric else ""),
           xlim=(0, tr["budget"] if point == "evals" else config.train_steps))
    ax.legend(fontsize=7, ncols=2)
    return fig


# --------------------------------------------------------------------------- generated text
def pretrain_text(results: dict) -> str:
    """The first net's training loss after pretraining, one readable line."""
    losses = ", ".join(f"{name} {format_value(v)}" for name, v in results["pretrain_loss"].items())
    return f"Training loss of the first net after pretraining: {losses}."


def protocol_markdown(results: dict, config: Config) -> str:
    """How the training comparison was run (sizes, grids, units) for this profile."""
    tr = results["training"]
    sizes = tr["sizes"]
    grid = lambda lrs: ", ".join(f"{lr:g}" for lr in lrs)  # noqa: E731
    return (
        f"Every optimizer trains a fresh ReLU MLP (float32, mini-batches of {config.batch_size}) on "
        f"{sizes['train']} training images. {sizes['val']} images carved from the training split form a validation "
        f"set that chooses the learning rate; the {sizes['test']} test images are used only for the reported "
        f"accuracies. Each optimizer gets a grid of {len(config.lrs_adaptive)} learning rates (Adam and every Alice "
        f"variant: {grid(config.lrs_adaptive)}; SGD with momentum 0.9: {grid(config.lrs_sgd)}). At each rate "
        f"{config.selection_seeds} *selection* runs choose it — the best mean validation accuracy, chosen separately "
        f"after {config.train_steps} steps and after {tr['budget']} gradient evaluations (ties go to the lower "
        f"validation loss; a rate at which a run diverged is out). Then {config.report_seeds} *reported* runs, with "
        f"initial weights, batch orders and Alice perturbations of their own (never those of a selection run), train "
        f"at each selected rate; run u starts from the same weights and reads the data in the same order under every "
        f"optimizer, so differences are paired by run. All runs at one rate train together as one batched model.\n\n"
        f"Alice spends 3 gradient evaluations on a curvature step and 1 on a quick step, Adam and SGD 1 per step. "
        f"The variants: **Alice** (both curvature terms, 3 quick steps: the reference defaults); Hessian only; glass "
        f"only; no curvature (every step at its upper bound, an Adam-like step with Alice's iterates and one "
        f"gradient per batch; a baseline of ours, not in the paper); no quick steps (a curvature step every batch); "
        f"and the **heavy-ball variant, which is not Alice** (described above).")


def _edges(results: dict) -> list[str]:
    """Optimizers whose selected rate is an end of their grid (a wider grid could change their numbers)."""
    tr, out = results["training"], []
    for name in VARIANTS:
        ends = (min(tr["sweep"][name]), max(tr["sweep"][name]))
        rates = sorted({tr["selected"][name][p] for p in POINTS if tr["selected"][name][p] in ends})
        if rates:
            out.append(f"{name} ({', '.join(f'{r:g}' for r in rates)})")
    return out


def findings_markdown(records: list[dict], results: dict, config: Config) -> str:
    """What this run shows: the engine's paragraph over the records, then the study's explanations,
    each chosen by its claim's verdict."""
    rec = {r["id"]: r for r in records}
    lines = [what_we_found(records)]
    changed = sum(bool(r.get("changed")) for r in records)
    if changed:
        lines.append(f"\nThe rules of {changed} of these {len(records)} claims changed from the chapter's previous "
                     "version (each row links to the book's Changes page), and every result is on new seeds: the "
                     "book's single seed derivation replaced the chapter's own.")
    lines.append("")
    lines.append("- **Glass scaling.** " + by_verdict(
        rec["glass-scaling"],
        reproduced="The ReLU net's even part grows like σ¹: the boundary jumps inside the kernel make the glass.",
        not_reproduced="The ReLU net's even part does not grow like σ¹ here: at these σ the jumps are not what "
                       "dominates it.",
        inconclusive="The ReLU slopes of the nets straddle an edge of [0.6, 1.5]: more nets would tell."))
    lines.append("- **Odd part.** " + by_verdict(
        rec["hessian-scaling"],
        reproduced="For ReLU the odd part is the Hessian term plus the jumps, as the restated claim says: "
                   "a jump lands in g₊ − g₋ as much as in g₊ + g₋.",
        not_reproduced="For ReLU the odd part is not the Hessian term plus the even part within 20 %.",
        inconclusive="For ReLU the nets disagree on whether the Hessian term plus the jumps explains the odd part."))
    glass = rec["glass-loss-model"]
    lines.append("- **Loss along lines.** " + by_verdict(
        glass,
        reproduced="Adding the glass term to the Hessian quadratic brings the model closer to the measured loss "
                   "where the line crosses boundaries.",
        not_reproduced="Adding the glass term makes the loss model worse here: the measured ReLU loss does not sit "
                       "above the quadratic by the term in t to the power 3/2 that the glass predicts.",
        inconclusive="The nets disagree on whether the glass term improves the loss model.")
        + " The finite-difference curvature at σ = 1e-3, which counts the jumps inside the kernel, is shown for "
          "comparison (its error ratio to the Hessian model on the first net is in the claim's details).")
    lines.append("- **Ablation** (at equal gradient evaluations, paired by run). " + " ".join(
        f"*{term}* (Alice against {spec.labels[1]}): " + by_verdict(
            rec[spec.id],
            reproduced=f"changes accuracy by more than {DELTA:g} points ("
                       + ("Alice ahead" if rec[spec.id]["direction_found"] == "greater" else "Alice behind") + ").",
            not_reproduced=f"no change beyond ±{DELTA:g} points at this scale.",
            inconclusive="undecided at this number of runs.")
        for spec, term in zip(ABLATIONS, ("The glass term", "The Hessian term", "Both terms")))
        + " The comparison table gives the fraction of element-steps Alice held at its upper bound (an Adam-like "
          "step); where that fraction is high, the curvature terms rarely shape the step, which limits what the "
          "ablation can show.")
    lines.append("- **Alice and Adam** (each at its own selected rate, paired by run). " + " ".join(
        f"At equal {'gradient evaluations' if point == 'evals' else 'steps'}: " + by_verdict(
            rec[spec.id],
            reproduced="Alice is " + ("ahead" if rec[spec.id]["direction_found"] == "greater" else "behind")
                       + f" by more than {DELTA:g} points.",
            not_reproduced=f"they agree within ±{DELTA:g} points.",
            inconclusive="undecided at this number of runs.")
        for spec, point in COMPARISONS.items()))
    edges = _edges(results)
    if edges:
        lines.append(f"- **Grid edges.** The selected rate is an end of its grid for {', '.join(edges)}: a wider grid "
                     "could change those optimizers' numbers.")
    return "\n".join(lines)
