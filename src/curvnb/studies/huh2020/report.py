"""The report of the huh2020 chapter: claims, figures, slider views and prose over the results
of :mod:`curvnb.studies.huh2020.compute` (editing this module reuses every cached result).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from curvnb.claims import by_verdict, format_estimate, format_interval, verdict
from curvnb.figures import panels
from curvnb.linear import mode_curve, mode_time
from curvnb.studies.huh2020 import specs
from curvnb.studies.huh2020.compute import Config


COLORS = {"GD": "C0", "NGD": "C3", "block NGD": "C1", "block α=½": "C2", "full α=½": "C4",
          "full α=¼": "C5", "full α=¾": "C6", "block α=½ (K-FAC)": "C2", "block NGD (K-FAC)": "C1"}
#: Figure labels in mathtext.
TEX = {"GD": "GD", "NGD": "NGD", "block NGD": "block NGD", "block α=½": r"block $\alpha=1/2$",
       "full α=½": r"full $\alpha=1/2$", "full α=¼": r"full $\alpha=1/4$", "full α=¾": r"full $\alpha=3/4$",
       "block α=½ (K-FAC)": r"block $\alpha=1/2$ (K-FAC)", "block NGD (K-FAC)": "block NGD (K-FAC)"}

# ----------------------------------------------------------------------------- narrative over the records
#: Why a claim came out as it did, by verdict (reproduced, not reproduced, inconclusive); "" says nothing.
WHY = {
    "2-matrix-closed-forms": ("", "A precondition seed whose flow passes close to (not through) a singular matrix can "
                              "be stiff enough to exhaust the evaluation budget; the errors in the row's detail say "
                              "whether the map left its closed form or the integration stopped.", ""),
    "2b-singular-block-flows": ("", "A regular but non-smooth flow (block α=½ passes rank drops of single layers with "
                                "bounded speed but a kink in direction) can also exhaust the evaluation budget.", ""),
    "5b-plateau": ("", "The thresholds are the plateau exponents of the mode equation; the growth factors in the row's "
                   "detail are what the simulation gives.", ""),
    "6b-block-imbalance": ("", "Block NGD's final layer-norm ratio depends on the init's imbalance, which it keeps (it "
                           "conserves ratios).", "Block NGD's final layer-norm ratio depends on the init's imbalance, "
                           "which it keeps (it conserves ratios): it spreads widely over seeds."),
    "7b-half-above-gd": ("", "Block α=½ generalizes at least as well as GD here.",
                         "Block α=½'s and GD's best test errors lie a few per cent apart: these seeds cannot order "
                         "them."),
}


def findings(records: Sequence[dict], ids: Sequence[str]) -> str:
    """One generated line per claim in ``ids``: verdict, estimate, interval (engine's report layer), and the
    study's explanation for that verdict (:data:`WHY`)."""
    by_id = {r["id"]: r for r in records}
    lines = []
    for cid in ids:
        r = by_id[cid]
        interval = format_interval(r)
        why = by_verdict(r, *WHY.get(cid, ("", "", "")))
        lines.append(f"- **{cid}** ({verdict(r)}): {format_estimate(r)}" + (f", {interval}" if interval else "")
                     + "." + (f" {why}" if why else ""))
    return "\n".join(lines)


def mlp_markdown(results: dict, config: Config) -> str:
    """What the MLP runs measured (no claim is attached): chosen learning rates, final losses and accuracies."""
    mlp = results["mlp"]
    lines = [f"- {k}: learning rate {v['lr']:g} (chosen on {config.mlp_select_nets} selection net(s) from {', '.join(f'{lr:g}' for lr in v['grid'])}), final training loss "
             f"{v['train_loss'][-1]:.2e}, test accuracy {v['test_accuracy'][-1]:.1%}" for k, v in mlp.items()]
    by_loss = sorted(mlp, key=lambda k: mlp[k]["train_loss"][-1])
    by_accuracy = sorted(mlp, key=lambda k: -mlp[k]["test_accuracy"][-1])
    theory = ["GD", "block α=½ (K-FAC)", "block NGD (K-FAC)"]
    return ("\n".join(lines) + f"\n\nIn this run the final training loss is lowest for {by_loss[0]} and highest for "
            f"{by_loss[-1]}; final test accuracy, best first: {', '.join(by_accuracy)}. The linear theory's ordering of "
            f"generalization (GD, then α = ½, then NGD) {'holds' if by_accuracy == theory else 'does not hold'} here "
            f"(mean over {config.mlp_seeds} test net(s), not the selection nets; no claim is attached).")


# ----------------------------------------------------------------------------- figures
def figure_phase_portrait(results: dict):
    """F1: trajectories of w = a₁a₂ in the (a₁, a₂) plane over the loss ½(a₁a₂ − 1)²."""
    labels = ("GD", "NGD", "block NGD", "block α=½")
    fig, axes = panels(len(labels), ncols=2, row_height=2.9, sharex=True, sharey=True)
    grid = np.linspace(0, 2.2, 200)
    a1, a2 = np.meshgrid(grid, grid)
    for ax, label in zip(axes, labels):
        ax.contourf(a1, a2, np.log10(0.5 * (a1 * a2 - 1) ** 2 + 1e-6), levels=20, cmap="Greys", alpha=0.5)
        ax.plot(grid[1:], 1 / grid[1:], "k--", lw=1, label=r"minima $a_1a_2 = 1$")
        for path in results["scalar"]["paths"][label]:
            ax.plot(path[:, 0], path[:, 1], color=COLORS[label], lw=1.8)
            ax.plot(*path[0], "o", color=COLORS[label], ms=4)
        ax.set(title=TEX[label], xlim=(0, 2.2), ylim=(0, 2.2), aspect="equal")
    for ax in axes[2:]:
        ax.set_xlabel(r"first-layer weight $a_1$")
    for ax in axes[::2]:
        ax.set_ylabel(r"second-layer weight $a_2$")
    axes[0].legend(loc="upper right")
    fig.suptitle(r"Paths of $w = a_1a_2$ towards $s = 1$ (dots: starts; shading: $\log_{10}$ loss)")
    return fig


def figure_modes(results: dict, config: Config):
    """F2: one singular mode under each rule (lines: closed form / quadrature; dots: matrix flow), learning time
    vs s, and the plateau: learning time vs w₀."""
    fig, (ax, ax_s, ax_w) = panels(3, row_height=2.9)
    times = results["modes"]["times"]
    for label, v in times.items():
        t = v["t"][1:]
        ax.plot(t, mode_curve(t, config.mode_w0, 1.0, config.mode_depth, v["alpha"], v["rule"]),
                color=COLORS[label], label=TEX[label])
        ax.plot(t[::40], v["w"][1:][::40], "o", color=COLORS[label], ms=3)
    for alpha, name in ((0.25, "full α=¼"), (0.75, "full α=¾")):
        t = np.logspace(-2, np.log10(30), 200)
        ax.plot(t, mode_curve(t, config.mode_w0, 1.0, config.mode_depth, alpha, "full"), "--",
                color=COLORS[name], label=TEX[name])
    ax.set(xscale="log", xlabel=r"time $t/\tau$", ylabel=r"mode $w(t)/s$", title=rf"One mode, $w_0 = 10^{{-3}}$")
    ax.axhline(0.5, color="grey", lw=0.5)
    s_values = np.logspace(-1, 1, 25)
    w0_values = np.logspace(-7, -1, 25)
    for label, rule, alpha, _ in config.reference_times:
        ax_s.loglog(s_values, [mode_time(0.5 * s, config.mode_w0, s, config.mode_depth, alpha, rule) for s in s_values],
                    color=COLORS[label])
        ax_w.loglog(w0_values, [mode_time(0.5, w0, 1.0, config.mode_depth, alpha, rule) for w0 in w0_values],
                    color=COLORS[label])
        v = times[label]
        ax_w.plot([config.mode_w0, config.plateau_w0], [v["simulated"], v["plateau_simulated"]], "o",
                  color=COLORS[label], ms=4)
    ax_s.set(xlabel=r"target singular value $s$", ylabel=r"time to $s/2$, $t/\tau$", title=r"Learning time vs $s$")
    ax_w.set(xlabel=r"initial mode $w_0$", ylabel=r"time to $s/2$, $t/\tau$", title=r"The plateau ($s = 1$)")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=4)
    fig.suptitle(rf"Single modes at depth $d = {config.mode_depth}$ (lines: mode equation; dots: matrix flow)")
    return fig


def figure_saxe(results: dict):
    """Check 1: simulated two-layer modes vs Saxe et al.'s closed form."""
    fig, (ax,) = panels(1, row_height=2.6)
    for i, (s, v) in enumerate(results["modes"]["saxe"].items()):
        ax.plot(v["t"], v["closed_form"] / s, color=f"C{i}", label=rf"closed form, $s = {s:g}$")
        ax.plot(v["t"][::10], v["simulated"][::10] / s, "o", color=f"C{i}", ms=3,
                label=f"matrix flow, max error {v['max_error']:.1e}")
    ax.set(xlabel=r"time $t/\tau$", ylabel=r"mode $w(t)/s$", title="Two-layer GD: simulation vs Saxe et al. (2014)")
    ax.legend()
    return fig


def figure_singular_flows(results: dict, config: Config):
    """Claims 2b, 3 and check 2c: where block NGD's flow stops vs the predicted singular time, and the drift of the
    conserved quantities by t = 3 under every rule, one dot per seed."""
    fig, (ax_t, ax_d) = panels(2, row_height=2.9)
    matrix = results["matrix"]
    predicted, reached = matrix["predicted_singular_time"], matrix["rules"]["block NGD"]["reached"]
    singular = predicted < config.horizon
    ax_t.loglog(predicted[singular], reached[singular], "o", color=COLORS["block NGD"], ms=4,
                label=f"singular path ({int(singular.sum())} seeds)")
    lo = max(min(predicted[singular].min(), reached[singular].min()) / 2, 1e-7) if singular.any() else 1e-4
    line = np.array([lo, config.horizon])
    ax_t.loglog(line, line, "k:", lw=1, label="stops at the predicted time")
    if (~singular).any():
        ax_t.plot(np.full((~singular).sum(), config.horizon), reached[~singular], "s", color=COLORS["block α=½"], ms=4,
                  label=f"nonsingular path ({int((~singular).sum())} seeds)")
    ax_t.set(xlabel=r"predicted singular time $t^*/\tau$", ylabel=r"time the flow reached, $t/\tau$",
             title="Block NGD flows")
    ax_t.legend(loc="upper left")
    groups = [(label, matrix["rules"][label]["final_drift"]) for label in ("GD", "NGD", "full α=½", "block α=½")]
    groups.append(("block NGD", matrix["conditioned"]["final_drift"]))
    rng = np.random.default_rng(0)
    for i, (label, drift) in enumerate(groups):
        x = i + rng.uniform(-0.15, 0.15, len(drift))
        ax_d.semilogy(x, np.maximum(drift, 1e-16), "o", color=COLORS[label], ms=3)
    ax_d.axhline(specs.CONSERVED.threshold, color="grey", lw=0.8, ls="--")
    ax_d.set_xticks(range(len(groups)), ["GD", "NGD", "full\n" + r"$\alpha=1/2$", "block\n" + r"$\alpha=1/2$",
                                         "block NGD\n(precond.)"])
    ax_d.set(xlabel="update rule", ylabel=r"drift $\max_i \|C_i(3) - C_i(0)\|_F$",
             title=r"Conserved quantities at $t = 3$")
    return fig


def figure_generalization(results: dict):
    """F3: test error ‖W(t) − W̄‖² (solid) and training error ‖W(t) − S‖² (dashed) vs time for the first seed, and
    every seed's best test error relative to GD's."""
    fig, (ax, ax_r) = panels(2, row_height=2.9)
    gen = results["generalization"]
    for label, v in gen.items():
        ax.loglog(v["t"][1:], v["test"][0, 1:], color=COLORS[label], label=TEX[label])
        ax.loglog(v["t"][1:], v["train"][0, 1:], "--", color=COLORS[label], lw=1)
        ax.plot(v["t_min"][0], v["min_test"][0], "*", color=COLORS[label], ms=10)
    ax.set(xlabel=r"time $t/\tau$", ylabel="squared error", title="First seed (solid: test; dashed: train)")
    ax.legend()
    rng = np.random.default_rng(0)
    others = [k for k in gen if k != "GD"]
    for i, label in enumerate(others):
        ratio = np.asarray(gen[label]["min_test"]) / np.asarray(gen["GD"]["min_test"])
        ax_r.semilogy(i + rng.uniform(-0.12, 0.12, len(ratio)), ratio, "o", color=COLORS[label], ms=4)
        ax_r.plot([i - 0.25, i + 0.25], [np.median(ratio)] * 2, color=COLORS[label], lw=2)
    ax_r.axhline(1.0, color=COLORS["GD"], lw=1, label="GD")
    ax_r.axhline(specs.GENERALIZATION.threshold, color="grey", lw=0.8, ls="--", label="claimed NGD ratio")
    ax_r.set_xticks(range(len(others)), [TEX[k] for k in others])
    ax_r.set(xlabel="update rule", ylabel="best test error / GD's", title="Every seed (bars: medians)")
    ax_r.legend()
    return fig


def figure_stability(results: dict, config: Config):
    """F4: per-layer norms, drift of the conserved quantities, step sizes and loss (first seed)."""
    fig, axes = panels(4, ncols=2, row_height=2.4, sharex=True)
    for label, r in results["discrete"].items():
        c = COLORS[label]
        norms = np.asarray(r["norms"][0])
        for i in range(norms.shape[1]):
            axes[0].plot(r["step"], norms[:, i], color=c, lw=1.4, ls=("-", "--", ":")[i % 3],
                         label=TEX[label] if i == 0 else None)
        axes[1].semilogy(r["step"], np.maximum(r["drift"][0], 1e-16), color=c)
        steps = r["step_norms"][0]
        axes[2].semilogy(np.arange(1, len(steps) + 1), np.maximum(steps, 1e-16), color=c, lw=0.8)
        axes[3].semilogy(r["step"], np.maximum(r["loss"][0], 1e-30), color=c)
    axes[0].set(ylabel=r"$\|W_i\|_F$ (line style: layer)", title="Layer norms")
    axes[1].set(ylabel=r"$\max_i \|C_i - C_i(0)\|_F$", title="Drift of the conserved quantities")
    axes[2].set(xlabel="step", ylabel=r"step size $\|\Delta\theta\|$", title="Step size")
    axes[3].set(xlabel="step", ylabel=r"loss $\frac{1}{2}\|W - S\|_F^2$", title="Loss")
    axes[0].legend(fontsize=7)
    fig.suptitle(rf"Discrete steps, first seed ($n = {config.width}$, $d = {config.depth}$, "
                 rf"$\eta = {config.discrete_lr}$, block NGD $\eta/{config.depth}$)")
    return fig


def figure_stability_seeds(results: dict, config: Config):
    """Claim 6 over seeds: every seed's largest step and final layer-norm ratio under each rule."""
    fig, (ax_s, ax_r) = panels(2, row_height=2.7)
    labels = list(results["discrete"])
    rng = np.random.default_rng(0)
    for i, label in enumerate(labels):
        r = results["discrete"][label]
        x = i + rng.uniform(-0.15, 0.15, len(r["max_step"]))
        ax_s.semilogy(x, np.minimum(r["max_step"], 1e300), "o", color=COLORS[label], ms=3)
        ax_r.semilogy(x, r["norm_ratio"], "o", color=COLORS[label], ms=3)
        ax_r.plot([i - 0.25, i + 0.25], [np.median(r["norm_ratio"])] * 2, color=COLORS[label], lw=2)
    ax_s.axhline(specs.BLOCK_STEP_MIN, color="grey", lw=0.8, ls="--")
    ax_s.axhline(specs.HALF_STEP_MAX, color="grey", lw=0.8, ls=":")
    ax_r.axhline(specs.IMBALANCE.threshold, color="grey", lw=0.8, ls="--")
    ax_r.axhline(specs.HALF_NORM_RATIO_MAX, color="grey", lw=0.8, ls=":")
    for ax in (ax_s, ax_r):
        ax.set_xticks(range(len(labels)), [TEX[k].replace("block ", "block\n") for k in labels])
    ax_s.set(xlabel="update rule", ylabel=r"largest step $\max_k \|\Delta\theta_k\|$",
             title=f"Largest step, {config.discrete_seeds} seeds")
    ax_r.set(xlabel="update rule", ylabel=r"final $\max_i \|W_i\|_F / \min_i \|W_i\|_F$",
             title="Layer balance (bars: medians)")
    return fig


def figure_mlp(results: dict):
    """Fractional K-FAC vs GD on a tanh MLP (sklearn digits, full batch)."""
    fig, (ax_l, ax_a) = panels(2, row_height=2.7)
    for label, v in results["mlp"].items():
        ax_l.semilogy(np.arange(1, len(v["train_loss"]) + 1), v["train_loss"], color=COLORS[label],
                      label=f"{TEX[label]}, lr {v['lr']:g}")
        ax_a.plot(np.arange(1, len(v["test_accuracy"]) + 1), v["test_accuracy"], color=COLORS[label])
    ax_l.set(xlabel="full-batch step", ylabel="training cross-entropy", title="Training loss")
    ax_a.set(xlabel="full-batch step", ylabel="test accuracy (fraction)", title="Test accuracy", ylim=(0, 1))
    ax_l.legend(fontsize=7)
    return fig


#: Values of the sliders drawn for the static book (30 frames; the live notebook offers every value). The target
#: ``s`` is no slider: at fixed w₀/s it only rescales time (and NGD's curve not at all).
STATIC_SLIDER_VALUES = {"alpha": (0.0, 0.25, 0.5, 0.75, 1.0), "depth": (2, 3, 6), "log10_w0": (-6.0, -3.0)}


def draw_modes(alpha: float = 0.5, depth: int = 3, log10_w0: float = -3.0, s: float = 1.0):
    """Widget view: one mode under GD, NGD, block NGD and the α-fractional rules (closed forms or
    quadrature/ODE of the mode equation, no cache needed)."""
    w0 = min(10 ** log10_w0, 0.5 * s)
    curves = (("GD", "full", 0.0), ("NGD", "full", 1.0), ("block NGD", "block", 1.0),
              (f"full α={alpha:g}", "full", alpha), (f"block α={alpha:g}", "block", alpha))
    t_end = 3 * max(mode_time(0.5 * s, w0, s, depth, a, r) for _, r, a in curves)
    t = np.logspace(np.log10(t_end) - 5, np.log10(t_end), 300)
    fig, (ax,) = panels(1, row_height=3.0)
    for (label, rule, a), color in zip(curves, ("C0", "C3", "C1", "C4", "C2")):
        name = label.replace(f"α={alpha:g}", rf"$\alpha={alpha:g}$")
        ax.plot(t, mode_curve(t, w0, s, depth, a, rule, method="LSODA", rtol=1e-8) / s, color=color,
                ls="--" if "α" in label else "-", label=name)
    ax.set(xscale="log", xlabel=r"time $t/\tau$", ylabel=r"mode $w(t)/s$", ylim=(0, 1.05),
           title=rf"One singular mode: $d = {depth}$, $s = {s:g}$, $w_0 = {w0:.1e}$")
    ax.legend()
    return fig


def changes_note(records: Sequence[dict]) -> str:
    """One generated sentence when rules changed: how many, and that every result is on new seeds."""
    changed = sum(bool(r.get("changed")) for r in records)
    if not changed:
        return ""
    return (f"{changed} of these {len(records)} rules changed since this chapter's first version (each such row links "
            "to the book's Changes page), and every result here is drawn on new seeds: the book's one seed derivation "
            "(`curvnb.seeds`) replaced the chapter's own.")
