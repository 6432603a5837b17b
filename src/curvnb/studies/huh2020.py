"""Huh (2020): curvature-corrected learning dynamics in deep linear networks.

Five claims of the abstract, checked through seven measurements (our derivation, see
``curvnb.linear``): natural gradient (NGD) keeps gradient descent's (GD) path and only changes
its speed (a conservation law), it accelerates learning of the input–output map, it can hurt
generalization, block-diagonal (layer-wise) NGD breaks the stability of the parameter dynamics,
and fractional correction (α = ½) restores it while keeping most of the speed-up.

Continuous-time results integrate the exact flows in float64 on the CPU (``curvnb.linear``,
adaptive Runge–Kutta); discrete-time results train with the optimizer classes of
``curvnb.optim`` on the chapter's device.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from curvnb.claims import Claim
from curvnb.linear import (DeepLinearNetwork, IntegrationError, balanced_weights, conservation_drift, integrate, loss,
                           mode_curve, mode_time, natural_gradient_maps, noisy_teacher, random_weights, teacher_map,
                           teacher_student_data)
from curvnb.optim import BlockDiagonalNaturalGradient, FractionalNaturalGradient

TITLE = "Curvature-corrected learning dynamics in deep linear networks"
COST = {"quick": "about 1 minute on a 2-core CPU",
        "full": "about 8 minutes on a 2-core CPU (measured; the float64 ODEs stay on the CPU, a GPU only speeds up "
                "the discrete-time runs)"}

# (label, rule, alpha) of the update rules compared throughout the chapter.
GD, NGD = ("GD", "full", 0.0), ("NGD", "full", 1.0)
BLOCK_NGD, BLOCK_HALF = ("block NGD", "block", 1.0), ("block α=½", "block", 0.5)
FULL_HALF = ("full α=½", "full", 0.5)
COLORS = {"GD": "C0", "NGD": "C3", "block NGD": "C1", "block α=½": "C2", "full α=½": "C4",
          "full α=¼": "C5", "full α=¾": "C6", "block α=½ (K-FAC)": "C2", "block NGD (K-FAC)": "C1"}


@dataclass(frozen=True)
class Config:
    # Claim 1: single modes from balanced, aligned init.
    saxe_singular_values: tuple[float, ...] = (1.0, 2.0)
    mode_w0: float = 1e-3
    mode_depth: int = 3
    # Claim 5: the brief's learning times to s/2 at d = 3, s = 1, w0 = 1e-3 (units of τ).
    reference_times: tuple[tuple[str, str, float, float], ...] = (
        ("GD", "full", 0.0, 10.0), ("NGD", "full", 1.0, 0.692), ("full α=½", "full", 0.5, 1.50),
        ("block α=½", "block", 0.5, 1.00), ("block NGD", "block", 1.0, 0.231))
    # Claims 2–3: square matrices.
    width: int = 4
    depth: int = 3
    target_singular_values: tuple[float, ...] = (3.0, 2.0, 1.0, 0.5)
    init_scale: float = 0.3                       # Gaussian entries × init_scale / √n
    horizon: float = 3.0
    drift_scales: tuple[float, ...] = (0.3, 0.1, 0.03)
    max_evaluations: int = 40_000                 # per integration (singular flows are reported, not waited on)
    # Claim 4 and the phase portrait: scalar two-layer net.
    scalar_init: tuple[float, float] = (0.05, 0.2)
    portrait_inits: tuple[tuple[float, float], ...] = ((0.05, 0.2), (0.2, 0.05), (0.1, 0.8), (0.8, 0.1), (0.3, 0.3))
    # Claim 6 and the stability figure: discrete steps with the optimizer classes.
    discrete_init: float = 0.05                   # Gaussian entries × discrete_init / √n
    discrete_steps: int = 4000
    discrete_lr: float = 0.005                    # block NGD uses lr / depth
    discrete_seeds: int = 4
    record_every: int = 10
    # Claim 7: generalization with a noisy teacher.
    gen_width: int = 16
    gen_singular_values: tuple[float, ...] = (3.0, 2.0, 1.0)
    gen_noise: float = 0.1
    gen_init: float = 1e-2                        # orthogonal init × gen_init
    gen_rules: tuple[tuple[str, str, float, float], ...] = (   # (label, rule, alpha, time horizon)
        ("GD", "full", 0.0, 3000.0), ("NGD", "full", 1.0, 6.0), ("block α=½", "block", 0.5, 60.0))
    gen_points: int = 120
    # Beyond the theory: fractional K-FAC on a tanh MLP on sklearn digits (full batch).
    mlp_width: int = 64
    mlp_depth: int = 3
    mlp_steps: int = 150
    mlp_damping: float = 1e-3
    mlp_lrs: tuple[tuple[str, float, tuple[float, ...]], ...] = (   # (label, alpha, learning-rate grid)
        ("GD", 0.0, (1.0, 3.0, 10.0, 30.0)), ("block α=½ (K-FAC)", 0.5, (0.3, 1.0, 3.0, 10.0)),
        ("block NGD (K-FAC)", 1.0, (0.01, 0.03, 0.1, 0.3)))
    mlp_seeds: int = 1


PROFILES = {
    "quick": Config(),
    "full": Config(drift_scales=(0.3, 0.1, 0.03, 0.01), discrete_seeds=16, discrete_steps=8000,
                   gen_rules=Config.gen_rules + (("full α=½", "full", 0.5, 300.0),), gen_points=300,
                   mlp_steps=600, mlp_seeds=3, mlp_width=128),
}


def _scalar(values) -> list[torch.Tensor]:
    return [torch.tensor([[float(v)]], dtype=torch.float64) for v in values]


def _one(value: float) -> torch.Tensor:
    return torch.tensor([[float(value)]], dtype=torch.float64)


def crossing_time(times: np.ndarray, values: np.ndarray, level: float) -> float:
    """First time ``values`` reaches ``level`` (linear interpolation between samples; NaN if never)."""
    above = np.nonzero(values >= level)[0]
    if len(above) == 0 or above[0] == 0:
        return float("nan")
    k = above[0]
    return float(times[k - 1] + (level - values[k - 1]) / (values[k] - values[k - 1]) * (times[k] - times[k - 1]))


# ----------------------------------------------------------------------------- single modes
def run_modes(config: Config) -> dict:
    """Claims 1 and 5: integrated matrix flows of 1 × 1 layers vs the single-mode closed forms."""
    saxe = {}
    for s in config.saxe_singular_values:
        t = np.linspace(0.0, 12.0 / s, 241)
        traj = integrate(balanced_weights(_one(config.mode_w0), 2), _one(s), t, "full", 0.0)
        simulated, closed_form = traj.maps()[:, 0, 0], mode_curve(t, config.mode_w0, s, 2, 0.0)
        saxe[s] = {"t": t, "simulated": simulated, "closed_form": closed_form,
                   "max_error": float(np.abs(simulated - closed_form).max())}
    times = {}
    for label, rule, alpha, reference in config.reference_times:
        quadrature = mode_time(0.5, config.mode_w0, 1.0, config.mode_depth, alpha, rule)
        t = np.linspace(0.0, 3.0 * quadrature, 601)
        w = integrate(balanced_weights(_one(config.mode_w0), config.mode_depth), _one(1.0), t, rule, alpha).maps()[:, 0, 0]
        times[label] = {"simulated": crossing_time(t, w, 0.5), "quadrature": quadrature, "reference": reference,
                        "t": t, "w": w, "rule": rule, "alpha": alpha}
    return {"saxe": saxe, "times": times}


# ----------------------------------------------------------------------------- square matrices
def run_matrix(config: Config, seed: int) -> dict:
    """Claims 2–3: n × n, depth d, Gaussian init, integrated to ``horizon`` under five rules."""
    n, d = config.width, config.depth
    target = teacher_map(config.target_singular_values, n, n, seed=seed)
    weights0 = random_weights([n] * (d + 1), config.init_scale / n ** 0.5, seed=seed + 1)
    t = np.linspace(0.0, config.horizon, 31)
    rules, out = (GD, NGD, FULL_HALF, BLOCK_NGD, BLOCK_HALF), {}
    for label, rule, alpha in rules:
        try:
            traj = integrate(weights0, target, t, rule, alpha, max_evaluations=config.max_evaluations)
        except IntegrationError as exc:  # reported in the claims, never hidden
            out[label] = {"drift": float("nan"), "final_loss": float("nan"), "failed": str(exc),
                          **({"closed_form_error": float("inf")} if alpha == 1.0 else {})}
            print(f"  matrix: {exc}", flush=True)
            continue
        maps = traj.maps()
        entry = {"drift": traj.max_drift(), "final_loss": loss(traj.weights(len(t) - 1), target)}
        if alpha == 1.0:  # W(t) − S = (W₀ − S) e^{−t} (NGD), e^{−dt} (block NGD)
            entry["closed_form_error"] = float(np.abs(maps - natural_gradient_maps(weights0, target, t, rule)).max())
        out[label] = entry
    shrink = {}
    for scale in config.drift_scales:
        w0 = random_weights([n] * (d + 1), scale / n ** 0.5, seed=seed + 1)
        try:
            traj = integrate(w0, target, t, "block", 0.5, rtol=1e-8, atol=1e-10, max_evaluations=config.max_evaluations)
            shrink[scale] = traj.max_drift()
        except IntegrationError as exc:
            shrink[scale] = float("nan")
            print(f"  matrix: {exc}", flush=True)
    return {"rules": out, "block_half_drift_by_scale": shrink}


# ----------------------------------------------------------------------------- scalar two-layer net
def run_scalar(config: Config) -> dict:
    """Claim 4 and the phase portrait: ``w = a₁a₂`` learning ``s = 1``."""
    t = np.concatenate([[0.0], np.logspace(-3, np.log10(200.0), 400)])
    endpoints, paths = {}, {}
    for label, rule, alpha in (GD, NGD, FULL_HALF, BLOCK_NGD, BLOCK_HALF):
        traj = integrate(_scalar(config.scalar_init), _one(1.0), t, rule, alpha)
        endpoints[label] = traj.states[-1].tolist()
        paths[label] = [integrate(_scalar(a0), _one(1.0), t, rule, alpha).states for a0 in config.portrait_inits]
    return {"endpoints": endpoints, "paths": paths}


# ----------------------------------------------------------------------------- discrete steps
def _optimizer(model: torch.nn.Module, rule: str, alpha: float, lr: float):
    if rule == "full":  # α = 0 is plain gradient descent (tested against torch.optim.SGD)
        return FractionalNaturalGradient(model, lr, alpha, on_nonfinite="mark")
    return BlockDiagonalNaturalGradient(model, lr, alpha, loss="mse", on_nonfinite="mark")


def train_deep_linear(weights0: list[torch.Tensor], target: torch.Tensor, rule: str, alpha: float, lr: float,
                      steps: int, *, device: torch.device, record_every: int = 10) -> dict:
    """Discrete training on whitened teacher data with an optimizer class; records norms, drift, steps."""
    model = DeepLinearNetwork(weights=[w.to(device) for w in weights0])
    x, y = teacher_student_data(target.to(device))
    opt = _optimizer(model, rule, alpha, lr)
    weights0_cpu = [w.cpu() for w in model.weights()]
    history = {"step": [], "norms": [], "drift": [], "loss": []}
    step_norms = np.zeros(steps)
    for k in range(steps + 1):
        if k % record_every == 0 or k == steps:
            weights = [w.cpu() for w in model.weights()]
            history["step"].append(k)
            history["norms"].append([float(torch.linalg.norm(w)) for w in weights])
            history["drift"].append(conservation_drift(weights0_cpu, weights))
            history["loss"].append(loss(weights, target.cpu()))
        if k == steps:
            break
        opt.zero_grad()
        batch_loss = 0.5 * ((model(x) - y) ** 2).sum(dim=1).mean()
        batch_loss.backward()
        opt.step(x) if isinstance(opt, BlockDiagonalNaturalGradient) else opt.step()
        if getattr(opt, "diverged", False):
            history["diverged_at"] = k + 1
            step_norms = step_norms[:k]
            break
        step_norms[k] = opt.last_step_norm
    norms = history["norms"][-1]
    return {**{key: np.asarray(v) for key, v in history.items()}, "step_norms": step_norms,
            "max_step": float(step_norms.max()) if len(step_norms) else float("nan"),
            "norm_ratio": max(norms) / min(norms), "final_loss": history["loss"][-1]}


def run_discrete(config: Config, *, device: torch.device, seed: int) -> dict:
    """Claim 6 (block rules, every seed) and the stability figure (all four rules, first seed)."""
    n, d = config.width, config.depth
    target = teacher_map(config.target_singular_values, n, n, seed=seed)
    runs: dict[str, list[dict]] = {label: [] for label, *_ in (GD, NGD, BLOCK_NGD, BLOCK_HALF)}
    for i in range(config.discrete_seeds):
        weights0 = random_weights([n] * (d + 1), config.discrete_init / n ** 0.5, seed=seed + 100 + i)
        rules = (GD, NGD, BLOCK_NGD, BLOCK_HALF) if i == 0 else (BLOCK_NGD, BLOCK_HALF)
        for label, rule, alpha in rules:
            lr = config.discrete_lr / d if label == "block NGD" else config.discrete_lr
            runs[label].append(train_deep_linear(weights0, target, rule, alpha, lr, config.discrete_steps,
                                                 device=device, record_every=config.record_every))
        print(f"  discrete steps: seed {i + 1}/{config.discrete_seeds} done", flush=True)
    return runs


# ----------------------------------------------------------------------------- generalization
def run_generalization(config: Config, seed: int) -> dict:
    """Claim 7: train on ``S = W̄ + σZ`` (continuous time), test error ``‖W(t) − W̄‖_F²``.

    NGD's map follows its closed form (claim 2): from this small random init the parameter flow
    passes through rank drops of ``W`` where its speed diverges, and the integrator would crawl."""
    n, d = config.gen_width, config.depth
    clean = teacher_map(config.gen_singular_values, n, n, seed=seed + 7)
    noisy = noisy_teacher(clean, config.gen_noise, seed=seed + 8)
    weights0 = random_weights([n] * (d + 1), config.gen_init, seed=seed + 9, init="orthogonal")
    out = {}
    for label, rule, alpha, horizon in config.gen_rules:
        t = np.concatenate([[0.0], np.logspace(-2, np.log10(horizon), config.gen_points)])
        if alpha == 1.0:
            maps = natural_gradient_maps(weights0, noisy, t, rule)
        else:
            maps = integrate(weights0, noisy, t, rule, alpha, rtol=1e-7, atol=1e-12).maps()
        test = ((maps - clean.numpy()) ** 2).sum(axis=(1, 2))
        train = ((maps - noisy.numpy()) ** 2).sum(axis=(1, 2))
        out[label] = {"t": t, "test": test, "train": train, "min_test": float(test.min()),
                      "t_min": float(t[test.argmin()])}
        print(f"  generalization: {label} done", flush=True)
    return out


# ----------------------------------------------------------------------------- nonlinear MLP
def run_mlp(config: Config, *, device: torch.device, seed: int) -> dict:
    """Fractional K-FAC (``BlockDiagonalNaturalGradient``) vs GD on a tanh MLP, full batch on sklearn
    digits. Every learning rate of each grid is run; the chosen one has the lowest mean log training
    loss over the run (fast *and* stable: an early blow-up counts against it)."""
    from curvnb.data.digits import load_digits_split
    from curvnb.models.mlp import deep_mlp

    x, y, x_test, y_test = load_digits_split(seed=seed, device=device)
    out = {}
    for label, alpha, lrs in config.mlp_lrs:
        grid = {}
        for lr in lrs:
            curves = []
            for i in range(config.mlp_seeds):
                model = deep_mlp(config.mlp_depth, config.mlp_width, x.shape[1], 10, activation="tanh",
                                 init="xavier", seed=seed + i, device=device)
                opt = (torch.optim.SGD(model.parameters(), lr=lr) if alpha == 0.0 else
                       BlockDiagonalNaturalGradient(model, lr, alpha, damping=config.mlp_damping,
                                                    loss="cross_entropy", on_nonfinite="mark"))
                train_loss, test_acc = [], []
                for _ in range(config.mlp_steps):
                    opt.zero_grad()
                    torch.nn.functional.cross_entropy(model(x), y).backward()
                    opt.step(x) if alpha > 0 else opt.step()
                    with torch.no_grad():
                        train_loss.append(float(torch.nn.functional.cross_entropy(model(x), y)))
                        test_acc.append(float((model(x_test).argmax(1) == y_test).float().mean()))
                curves.append((train_loss, test_acc))
            train_loss = np.mean([c[0] for c in curves], axis=0)
            score = float(np.mean(np.log10(train_loss))) if np.all(np.isfinite(train_loss)) else np.inf
            grid[lr] = {"train_loss": train_loss, "test_accuracy": np.mean([c[1] for c in curves], axis=0),
                        "score": score}
        best = min(grid, key=lambda lr: grid[lr]["score"])
        out[label] = {"lr": best, **grid[best], "grid": {lr: v["score"] for lr, v in grid.items()}}
        print(f"  MLP: {label} chose lr {best:g} from {list(lrs)}", flush=True)
    return out


def run(config: Config, *, device: torch.device, seed: int) -> dict:
    results, start = {}, time.perf_counter()
    for name, compute in (("modes", lambda: run_modes(config)), ("matrix", lambda: run_matrix(config, seed)),
                          ("scalar", lambda: run_scalar(config)),
                          ("discrete", lambda: run_discrete(config, device=device, seed=seed)),
                          ("generalization", lambda: run_generalization(config, seed)),
                          ("mlp", lambda: run_mlp(config, device=device, seed=seed))):
        results[name] = compute()
        print(f"{name}: done at {time.perf_counter() - start:.0f} s", flush=True)
    return results


# ----------------------------------------------------------------------------- claims
def claims(results: dict, config: Config) -> list[Claim]:
    modes, matrix, scalar = results["modes"], results["matrix"], results["scalar"]
    discrete, gen = results["discrete"], results["generalization"]
    rules = matrix["rules"]

    saxe_error = max(v["max_error"] for v in modes["saxe"].values())
    gd3 = modes["times"]["GD"]
    quad_error = abs(gd3["simulated"] / gd3["quadrature"] - 1)

    ngd_err, block_err = rules["NGD"]["closed_form_error"], rules["block NGD"]["closed_form_error"]
    failed = {k: v["failed"] for k, v in rules.items() if "failed" in v}

    conserving = {k: rules[k]["drift"] for k in ("GD", "NGD", "full α=½")}
    shrink = [matrix["block_half_drift_by_scale"][s] for s in sorted(matrix["block_half_drift_by_scale"], reverse=True)]
    shrinks = all(b < a for a, b in zip(shrink, shrink[1:]))

    end = scalar["endpoints"]
    same = max(np.abs(np.subtract(end[k], end["GD"])).max() for k in ("NGD", "full α=½"))
    ray = float(np.abs(np.subtract(end["block NGD"], [0.5, 2.0])).max())

    times = modes["times"]
    rel = {k: v["simulated"] / v["reference"] - 1 for k, v in times.items()}
    sim_vs_quad = max(abs(v["simulated"] / v["quadrature"] - 1) for v in times.values())

    bngd, bhalf = discrete["block NGD"], discrete["block α=½"]
    unstable = sum(r["max_step"] > 10 and r["norm_ratio"] > 2 for r in bngd)
    stable = all(r["max_step"] < 0.1 and r["norm_ratio"] < 1.05 and r["final_loss"] < 1e-10 for r in bhalf)

    g = {k: v["min_test"] for k, v in gen.items()}
    return [
        Claim("1-closed-forms",
              "Integrated dynamics match the Saxe closed form (d = 2, s ∈ {1, 2}, w₀ = 1e-3) to 1e-4, "
              "and at d = 3 the quadrature t(w) matches simulation within 1 %",
              {"max |w_sim − w_Saxe|": saxe_error, "d=3 |t_sim/t_quad − 1|": quad_error},
              "< 1e-4 and < 1 %", saxe_error < 1e-4 and quad_error < 0.01),
        Claim("2-matrix-closed-forms",
              "n = 4, d = 3: NGD obeys W(t) − S = (W₀ − S)e^{−t} and block-diagonal NGD (W₀ − S)e^{−3t} up to t = 3",
              {"NGD max error": ngd_err, "block NGD max error": block_err, **failed}, "both < 1e-6",
              ngd_err < 1e-6 and block_err < 1e-6),
        Claim("3-conservation-law",
              "C_i = W_{i+1}ᵀW_{i+1} − W_iW_iᵀ is conserved by GD, NGD and full fractional α = ½, not by "
              "block-diagonal NGD; block-diagonal α = ½ drifts less from smaller init",
              {**{f"{k} drift": v for k, v in conserving.items()}, "block NGD drift": rules["block NGD"]["drift"],
               "block α=½ drift by init scale": dict(zip(sorted(matrix["block_half_drift_by_scale"], reverse=True), shrink)),
               **failed},
              "conserving < 1e-6, block NGD > 1, block α=½ decreasing with scale",
              all(v < 1e-6 for v in conserving.values()) and rules["block NGD"]["drift"] > 1 and shrinks),
        Claim("4-same-path",
              "Scalar d = 2 from a₀ = (0.05, 0.2): GD, NGD and full fractional end at the same point; block-diagonal "
              "NGD ends on the ray a₂/a₁ = 4 at (0.5, 2.0)",
              {"max endpoint difference to GD": same, "block NGD distance to (0.5, 2)": ray,
               "GD endpoint": end["GD"]}, "both < 1e-4", same < 1e-4 and ray < 1e-4),
        Claim("5-learning-times",
              "d = 3, s = 1, w₀ = 1e-3: time to s/2 is GD 10.0, NGD 0.692, full α=½ 1.50, block α=½ 1.00, "
              "block NGD 0.231 (units of τ)",
              {**{k: v["simulated"] for k, v in times.items()}, "max |t_sim/t_quad − 1|": sim_vs_quad},
              "each within 3 % of the stated value", all(abs(r) < 0.03 for r in rel.values())),
        Claim("6-block-instability",
              f"Discrete steps from small init ({config.discrete_seeds} seeds): block-diagonal NGD takes steps > 10 "
              "and ends with layer-norm ratio > 2 in ≥ 3 of 4 seeds; block α=½ keeps steps < 0.1, ratio < 1.05 "
              "and reaches loss < 1e-10",
              {"block NGD unstable seeds": f"{unstable}/{len(bngd)}",
               "block NGD max steps": [r["max_step"] for r in bngd],
               "block NGD norm ratios": [r["norm_ratio"] for r in bngd],
               "block α=½ max step": max(r["max_step"] for r in bhalf),
               "block α=½ max norm ratio": max(r["norm_ratio"] for r in bhalf),
               "block α=½ max final loss": max(r["final_loss"] for r in bhalf)},
              "≥ 3/4 of seeds unstable; α=½ stable in all",
              unstable >= int(np.ceil(0.75 * len(bngd))) and stable),
        Claim("7-generalization",
              "Noisy teacher (n = 16, d = 3, s = (3, 2, 1), σ = 0.1): NGD's best test error over time is > 1.5 × "
              "GD's, block α=½ lies in between",
              {**{f"{k} min test error": v for k, v in g.items()}, "NGD / GD": g["NGD"] / g["GD"]},
              "NGD > 1.5 × GD and GD ≤ block α=½ < NGD",
              g["NGD"] > 1.5 * g["GD"] and g["GD"] <= g["block α=½"] < g["NGD"]),
    ]


# ----------------------------------------------------------------------------- figures
def figure_phase_portrait(results: dict):
    """F1: trajectories of w = a₁a₂ in the (a₁, a₂) plane over the loss ½(a₁a₂ − 1)²."""
    labels = ("GD", "NGD", "block NGD", "block α=½")
    fig, axes = plt.subplots(1, len(labels), figsize=(13, 3.6), sharex=True, sharey=True)
    grid = np.linspace(0, 2.2, 200)
    a1, a2 = np.meshgrid(grid, grid)
    for ax, label in zip(axes, labels):
        ax.contourf(a1, a2, np.log10(0.5 * (a1 * a2 - 1) ** 2 + 1e-6), levels=20, cmap="Greys", alpha=0.5)
        ax.plot(grid[1:], 1 / grid[1:], "k--", lw=1, label="a₁a₂ = 1 (minima)")
        for path in results["scalar"]["paths"][label]:
            ax.plot(path[:, 0], path[:, 1], color=COLORS[label], lw=2)
            ax.plot(*path[0], "o", color=COLORS[label], ms=4)
        ax.set(title=label, xlabel="a₁", xlim=(0, 2.2), ylim=(0, 2.2), aspect="equal")
    axes[0].set_ylabel("a₂")
    axes[0].legend(loc="upper right", fontsize=8)
    fig.suptitle("Paths of a two-layer scalar net (dots: initial points; shading: log₁₀ loss). GD and NGD follow "
                 "the same hyperbolas a₂² − a₁² = const; block NGD follows rays, block α=½ lines of slope 1", fontsize=9)
    return fig


def figure_modes(results: dict, config: Config):
    """F2: one singular mode learned under each rule (lines: closed form / quadrature; dots: matrix flow),
    and learning time vs s."""
    fig, (ax, ax_s) = plt.subplots(1, 2, figsize=(12, 4))
    times = results["modes"]["times"]
    for label, v in times.items():
        t = v["t"][1:]
        ax.plot(t, mode_curve(t, config.mode_w0, 1.0, config.mode_depth, v["alpha"], v["rule"]),
                color=COLORS[label], label=f"{label}: t½ = {v['simulated']:.3g}")
        ax.plot(t[::40], v["w"][1:][::40], "o", color=COLORS[label], ms=4)
    for alpha, name in ((0.25, "full α=¼"), (0.75, "full α=¾")):
        t = np.logspace(-2, np.log10(30), 200)
        ax.plot(t, mode_curve(t, config.mode_w0, 1.0, config.mode_depth, alpha, "full"), "--",
                color=COLORS[name], label=name)
    ax.set(xscale="log", xlabel="time t/τ (log scale)", ylabel="w(t)/s",
           title=f"One mode, d = {config.mode_depth}, s = 1, w₀ = {config.mode_w0:g} (dots: simulation)")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.legend(fontsize=8)
    s_values = np.logspace(-1, 1, 25)
    for label, rule, alpha, _ in config.reference_times:
        t_half = [mode_time(0.5 * s, config.mode_w0, s, config.mode_depth, alpha, rule) for s in s_values]
        ax_s.loglog(s_values, t_half, color=COLORS[label], label=label)
    ax_s.set(xlabel="target singular value s (log scale)", ylabel="time to s/2, t/τ (log scale)",
             title=f"Learning time vs s (w₀ = {config.mode_w0:g})")
    ax_s.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_saxe(results: dict):
    """Claim 1: simulated two-layer modes vs Saxe et al.'s closed form."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (s, v) in enumerate(results["modes"]["saxe"].items()):
        ax.plot(v["t"], v["closed_form"] / s, color=f"C{i}", label=f"closed form, s = {s:g}")
        ax.plot(v["t"][::10], v["simulated"][::10] / s, "o", color=f"C{i}", ms=4,
                label=f"matrix flow, max error {v['max_error']:.1e}")
    ax.set(xlabel="time t/τ", ylabel="w(t)/s", title="Two-layer GD: simulation vs Saxe et al. (2014)")
    ax.legend(fontsize=8)
    return fig


def figure_generalization(results: dict):
    """F3: test error ‖W(t) − W̄‖² (solid) and training error ‖W(t) − S‖² (dashed) vs time."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, v in results["generalization"].items():
        name = f"{label} (closed form)" if label.endswith("NGD") else label
        ax.loglog(v["t"][1:], v["test"][1:], color=COLORS[label], label=f"{name}: min test {v['min_test']:.3g}")
        ax.loglog(v["t"][1:], v["train"][1:], "--", color=COLORS[label], lw=1)
        ax.plot(v["t_min"], v["min_test"], "*", color=COLORS[label], ms=12)
    ax.set(xlabel="time t/τ (log scale)", ylabel="squared error (log scale)",
           title="Noisy teacher: test error (solid, ★ = early-stopping optimum) and training error (dashed)")
    ax.legend(fontsize=8)
    return fig


def figure_stability(results: dict, config: Config):
    """F4: per-layer norms, drift of the conserved quantities, step sizes (first seed)."""
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    for label, runs in results["discrete"].items():
        r, c = runs[0], COLORS[label]
        norms = np.asarray(r["norms"])
        for i in range(norms.shape[1]):
            axes[0].plot(r["step"], norms[:, i], color=c, lw=1.5, ls=("-", "--", ":")[i % 3],
                         label=label if i == 0 else None)
        axes[1].semilogy(r["step"], np.maximum(r["drift"], 1e-16), color=c, label=label)
        axes[2].semilogy(np.arange(1, len(r["step_norms"]) + 1), np.maximum(r["step_norms"], 1e-16), color=c,
                         lw=0.8, label=label)
        axes[3].semilogy(r["step"], np.maximum(r["loss"], 1e-30), color=c, label=label)
    axes[0].set(xlabel="step", ylabel="‖W_i‖_F (line style = layer)", title="Layer norms")
    axes[1].set(xlabel="step", ylabel="max_i ‖C_i − C_i(0)‖_F (log)", title="Drift of the conserved quantities")
    axes[2].set(xlabel="step", ylabel="‖Δθ‖ (log)", title="Step size")
    axes[3].set(xlabel="step", ylabel="½‖W − S‖² (log)", title="Loss")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Discrete steps, n = {config.width}, d = {config.depth}, init × {config.discrete_init}/√n, "
                 f"η = {config.discrete_lr} (block NGD η/{config.depth})", fontsize=9)
    fig.tight_layout()
    return fig


def figure_mlp(results: dict):
    """Fractional K-FAC vs GD on a tanh MLP (sklearn digits, full batch)."""
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(12, 3.8))
    for label, v in results["mlp"].items():
        ax_l.semilogy(np.arange(1, len(v["train_loss"]) + 1), v["train_loss"], color=COLORS[label],
                      label=f"{label}, lr {v['lr']:g}")
        ax_a.plot(np.arange(1, len(v["test_accuracy"]) + 1), v["test_accuracy"], color=COLORS[label], label=label)
    ax_l.set(xlabel="full-batch step", ylabel="training cross-entropy (log scale)",
             title="tanh MLP on digits: training loss")
    ax_a.set(xlabel="full-batch step", ylabel="test accuracy", title="Test accuracy", ylim=(0, 1))
    ax_l.legend(fontsize=8)
    fig.tight_layout()
    return fig


def mlp_summary(results: dict) -> str:
    """One line per optimizer: chosen learning rate, final training loss, final test accuracy."""
    lines = []
    for label, v in results["mlp"].items():
        lines.append(f"{label:>20}: lr {v['lr']:<5g} (grid {', '.join(f'{lr:g}' for lr in v['grid'])}), "
                     f"final training loss {v['train_loss'][-1]:.2e}, test accuracy {v['test_accuracy'][-1]:.1%}")
    return "\n".join(lines)


def draw_modes(alpha: float = 0.5, depth: int = 3, log10_w0: float = -3.0, s: float = 1.0):
    """Widget view: one mode under GD, NGD, block NGD and the α-fractional rules (closed forms or
    quadrature/ODE of the mode equation, no cache needed)."""
    w0 = min(10 ** log10_w0, 0.5 * s)
    curves = (("GD", "full", 0.0), ("NGD", "full", 1.0), ("block NGD", "block", 1.0),
              (f"full α={alpha:g}", "full", alpha), (f"block α={alpha:g}", "block", alpha))
    t_end = 3 * max(mode_time(0.5 * s, w0, s, depth, a, r) for _, r, a in curves)
    t = np.logspace(np.log10(t_end) - 5, np.log10(t_end), 300)
    fig, ax = plt.subplots(figsize=(7, 4))
    for (label, rule, a), color in zip(curves, ("C0", "C3", "C1", "C4", "C2")):
        ax.plot(t, mode_curve(t, w0, s, depth, a, rule) / s, color=color, ls="--" if "α" in label else "-",
                label=label)
    ax.set(xscale="log", xlabel="time t/τ (log scale)", ylabel="w(t)/s", ylim=(0, 1.05),
           title=f"One singular mode: d = {depth}, s = {s:g}, w₀ = {w0:.1e}")
    ax.legend(fontsize=8)
    return fig
