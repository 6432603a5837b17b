"""The computation of the huh2020 chapter: configuration, profiles and the cached runs.

The result cache keys on this module and the ``curvnb`` modules it imports
(:func:`curvnb.cache.compute_sources`): it must not import report code (:mod:`curvnb.studies.huh2020.report`,
claims, figures, widgets), so that editing those reuses cached results.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq

from curvnb.config import single_thread
from curvnb.linear import (balanced_weights, end_to_end, euler_steps, integrate, mode_curve, mode_time,
                           natural_gradient_maps, noisy_teacher, random_weights, singular_time, teacher_map)
from curvnb.optim import BlockDiagonalNaturalGradient
from curvnb.seeds import declare_streams


# (label, rule, alpha) of the update rules compared throughout the chapter.
GD, NGD = ("GD", "full", 0.0), ("NGD", "full", 1.0)
BLOCK_NGD, BLOCK_HALF = ("block NGD", "block", 1.0), ("block α=½", "block", 0.5)
FULL_HALF = ("full α=½", "full", 0.5)
MATRIX_RULES = (GD, NGD, FULL_HALF, BLOCK_NGD, BLOCK_HALF)

#: Every random draw: (chapter seed, stream, index) through :mod:`curvnb.seeds`; index = the seed (unit) or
#: the candidate draw. MLP rates are chosen on "selection" nets, the nets shown are "test" nets.
STREAMS = declare_streams("huh2020", {
    "matrix target": ("test", 256), "matrix init": ("test", 256), "conditioned target": ("test", 1024),
    "conditioned init": ("test", 1024), "discrete target": ("test", 256), "discrete init": ("test", 256),
    "clean teacher": ("test", 64), "teacher noise": ("test", 64), "generalization init": ("test", 64),
    "digits split": ("test", 1), "mlp init": ("test", 16), "mlp select init": ("selection", 16)})


@dataclass(frozen=True)
class Config:
    # Claim 1 (check) and claims 5, 5b: single modes from balanced, aligned init.
    saxe_singular_values: tuple[float, ...] = (1.0, 2.0)
    mode_w0: float = 1e-3
    plateau_w0: float = 1e-6
    mode_depth: int = 3
    mode_points: int = 241
    # Claim 5: learning times to s/2 at d = 3, s = 1, w0 = 1e-3 (units of τ), the corrected reference values.
    reference_times: tuple[tuple[str, str, float, float], ...] = (
        ("GD", "full", 0.0, 9.14), ("NGD", "full", 1.0, 0.692), ("full α=½", "full", 0.5, 1.45),
        ("block α=½", "block", 0.5, 0.838), ("block NGD", "block", 1.0, 0.231))
    # Claims 2, 2b, 2c, 3: square matrices.
    width: int = 4
    depth: int = 3
    target_singular_values: tuple[float, ...] = (3.0, 2.0, 1.0, 0.5)
    init_scale: float = 0.3                       # Gaussian entries × init_scale / √n
    horizon: float = 3.0
    matrix_points: int = 31
    matrix_seeds: int = 32                        # unconditioned seeds (claims 2, 2b, 3, check 2c)
    conditioned_seeds: int = 16                   # seeds drawn under the precondition (claims 2, 3)
    drift_scales: tuple[float, ...] = (0.3, 0.1, 0.03)
    drift_seeds: int = 16                         # first seeds, block α=½ at every init scale (claim 3)
    max_evaluations: int = 10_000                 # per flow and rule: beyond it a flow counts as singular or stiff
    min_rtol: float = 0.0                         # a floor on every flow's relative tolerance (smoke: coarse, fast)
    # Claim 4 and the phase portrait: scalar two-layer net.
    scalar_init: tuple[float, float] = (0.05, 0.2)
    portrait_inits: tuple[tuple[float, float], ...] = ((0.05, 0.2), (0.2, 0.05), (0.1, 0.8), (0.8, 0.1), (0.3, 0.3))
    scalar_horizon: float = 200.0
    scalar_points: int = 150
    # Claim 6 and the stability figures: discrete steps.
    discrete_init: float = 0.05                   # Gaussian entries × discrete_init / √n
    discrete_steps: int = 4000
    discrete_lr: float = 0.005                    # block NGD uses lr / depth
    discrete_seeds: int = 16
    record_every: int = 10
    # Claim 7: generalization with a noisy teacher.
    gen_width: int = 16
    gen_singular_values: tuple[float, ...] = (3.0, 2.0, 1.0)
    gen_noise: float = 0.1
    gen_init: float = 1e-2                        # orthogonal init × gen_init
    gen_rules: tuple[tuple[str, str, float, float], ...] = (   # (label, rule, alpha, time horizon)
        ("GD", "full", 0.0, 3000.0), ("NGD", "full", 1.0, 6.0), ("block α=½", "block", 0.5, 60.0))
    gen_points: int = 120
    gen_seeds: int = 8                            # ≥ 6: a median's 95 % interval (claim 7)
    # Beyond the theory: fractional K-FAC on a tanh MLP on sklearn digits (full batch).
    mlp_width: int = 64
    mlp_depth: int = 3
    mlp_steps: int = 150
    mlp_damping: float = 1e-3
    mlp_lrs: tuple[tuple[str, float, tuple[float, ...]], ...] = (   # (label, alpha, learning-rate grid)
        ("GD", 0.0, (1.0, 3.0, 10.0, 30.0)), ("block α=½ (K-FAC)", 0.5, (0.3, 1.0, 3.0, 10.0)),
        ("block NGD (K-FAC)", 1.0, (0.01, 0.03, 0.1, 0.3)))
    mlp_seeds: int = 1                            # test nets shown (stream "mlp init")
    mlp_select_nets: int = 1                      # nets the rate is chosen on (stream "mlp select init")


PROFILES = {
    "quick": Config(),
    "full": Config(matrix_seeds=128, conditioned_seeds=64, drift_scales=(0.3, 0.1, 0.03, 0.01), drift_seeds=64,
                   discrete_seeds=64, discrete_steps=8000, gen_points=300, gen_seeds=16,
                   mlp_steps=600, mlp_seeds=3, mlp_select_nets=3, mlp_width=128),
    # tiny: every code path in seconds (tests); its verdicts are no evidence
    # (coarse flows, few output times, short horizons: the ODE solves dominate its run time, and the
    # integrator lands a step on every output time, so each output point costs at least one step)
    "smoke": Config(min_rtol=1e-6, saxe_singular_values=(1.0,), mode_points=61, horizon=1.0, matrix_points=7,
                    matrix_seeds=6, conditioned_seeds=2, drift_seeds=3, drift_scales=(0.3, 0.1), max_evaluations=800,
                    portrait_inits=((0.05, 0.2),), scalar_horizon=20.0, scalar_points=12,
                    discrete_steps=40, discrete_seeds=4, record_every=5, gen_width=5, gen_seeds=3,
                    gen_rules=(("GD", "full", 0.0, 100.0), ("NGD", "full", 1.0, 6.0), ("block α=½", "block", 0.5, 15.0)),
                    gen_points=12, mlp_width=16, mlp_steps=3,
                    mlp_lrs=(("GD", 0.0, (0.1,)), ("block α=½ (K-FAC)", 0.5, (0.1, 0.3)))),
}


def draw(seed: int, stream: str, i: int) -> torch.Generator:
    """The torch generator of draw ``i`` of ``stream`` for chapter seed ``seed`` (all 64 bits of the derived seed)."""
    return STREAMS.torch(seed, stream, i)


def _tolerances(config: Config, rtol: float = 1e-10, atol: float = 1e-12) -> dict:
    """``integrate``'s tolerances for a flow, no finer than the profile's floor ``min_rtol``."""
    return {"rtol": max(rtol, config.min_rtol), "atol": max(atol, 1e-2 * config.min_rtol)}


def _one(value: float) -> torch.Tensor:
    return torch.tensor([[float(value)]], dtype=torch.float64)


def _stack(networks: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """Layers of several networks stacked into batched layers (``B × n_i × n_{i−1}``)."""
    return [torch.stack(layers) for layers in zip(*networks)]


def crossing_time(times: np.ndarray, values: np.ndarray, level: float) -> float:
    """First time ``values`` reaches ``level`` (cubic-spline interpolation of the samples; NaN if never)."""
    times, values = np.asarray(times, dtype=float), np.asarray(values, dtype=float)
    above = np.nonzero(values >= level)[0]
    if len(above) == 0 or above[0] == 0:
        return float("nan")
    k = above[0]
    if len(times) < 4:
        return float(times[k - 1] + (level - values[k - 1]) / (values[k] - values[k - 1]) * (times[k] - times[k - 1]))
    spline = CubicSpline(times, values)
    return float(brentq(lambda x: float(spline(x)) - level, times[k - 1], times[k], xtol=1e-14, rtol=1e-12))


# ----------------------------------------------------------------------------- single modes
def run_modes(config: Config) -> dict:
    """Claims 1, 5 and 5b: integrated matrix flows of 1 × 1 layers vs the single-mode closed forms."""
    s_values = np.asarray(config.saxe_singular_values, dtype=float)
    t = np.stack([np.linspace(0.0, 12.0 / s, config.mode_points) for s in s_values])
    start = _stack([balanced_weights(_one(config.mode_w0), 2)] * len(s_values))
    targets = torch.stack([_one(s) for s in s_values])
    simulated = integrate(start, targets, t, "full", 0.0, **_tolerances(config)).maps()[:, :, 0, 0]
    saxe = {}
    for i, s in enumerate(s_values):
        closed_form = mode_curve(t[i], config.mode_w0, s, 2, 0.0)
        saxe[float(s)] = {"t": t[i], "simulated": simulated[i], "closed_form": closed_form,
                          "max_error": float(np.abs(simulated[i] - closed_form).max())}
    times = {}
    starts = (config.mode_w0, config.plateau_w0)
    for label, rule, alpha, reference in config.reference_times:
        quadrature = [mode_time(0.5, w0, 1.0, config.mode_depth, alpha, rule) for w0 in starts]
        t = np.stack([np.linspace(0.0, 3.0 * q, config.mode_points) for q in quadrature])
        start = _stack([balanced_weights(_one(w0), config.mode_depth) for w0 in starts])
        w = integrate(start, _one(1.0), t, rule, alpha, **_tolerances(config)).maps()[:, :, 0, 0]
        times[label] = {"simulated": crossing_time(t[0], w[0], 0.5), "quadrature": quadrature[0],
                        "reference": reference, "t": t[0], "w": w[0], "rule": rule, "alpha": alpha,
                        "plateau_simulated": crossing_time(t[1], w[1], 0.5), "plateau_quadrature": quadrature[1]}
    return {"saxe": saxe, "times": times}


# ----------------------------------------------------------------------------- square matrices
def matrix_problem(config: Config, seed: int, streams: tuple[str, str], draws: Sequence[int],
                   scale: float | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Targets ``S`` (singular values ``target_singular_values``) and Gaussian inits for the given draws, batched."""
    n, d = config.width, config.depth
    scale = config.init_scale if scale is None else scale
    targets = torch.stack([teacher_map(config.target_singular_values, n, n, generator=draw(seed, streams[0], i))
                           for i in draws])
    weights0 = _stack([random_weights([n] * (d + 1), scale / n ** 0.5, generator=draw(seed, streams[1], i))
                       for i in draws])
    return targets, weights0


def _closed_form_error(trajectory, weights0: list[torch.Tensor], targets: torch.Tensor, t: np.ndarray,
                       rule: str) -> np.ndarray:
    """Per flow: max |W(t) − closed form| over the output times it reached and the time it stopped at."""
    along = np.abs(trajectory.maps() - natural_gradient_maps(weights0, targets, t, rule))
    along = np.nan_to_num(along, nan=-np.inf).reshape(len(targets), -1).max(axis=1)
    rate = 1.0 if rule == "full" else float(len(weights0))
    s = targets.numpy()
    closed = s + (end_to_end(weights0).numpy() - s) * np.exp(-rate * trajectory.reached)[:, None, None]
    at_stop = np.abs(end_to_end(trajectory.weights_at_reached()).numpy() - closed).reshape(len(targets), -1).max(axis=1)
    return np.maximum(along, at_stop)


def run_matrix(config: Config, seed: int) -> dict:
    """Claims 2, 2b, 3 and check 2c: n × n, depth d, Gaussian init, integrated to ``horizon`` under five
    rules on every unconditioned seed, block NGD also on seeds drawn under the precondition that its
    closed-form path stays nonsingular, and block α=½ from several init scales."""
    d, horizon = config.depth, config.horizon
    t = np.linspace(0.0, horizon, config.matrix_points)
    targets, weights0 = matrix_problem(config, seed, ("matrix target", "matrix init"), range(config.matrix_seeds))
    out: dict[str, Any] = {"t": t, "predicted_singular_time": singular_time(weights0, targets, rate=d), "rules": {}}
    for label, rule, alpha in MATRIX_RULES:
        rtol = 1e-8 if label == "block α=½" else 1e-10   # block α=½ is checked to O(1) only (drift, reaching t = 3)
        traj = integrate(weights0, targets, t, rule, alpha, max_evaluations=config.max_evaluations,
                         **_tolerances(config, rtol))
        entry = {"reached": traj.reached, "failed": traj.failed, "drift": traj.max_drift(),
                 "final_drift": traj.drifts()[:, -1]}
        if alpha == 1.0:
            entry["closed_form_error"] = _closed_form_error(traj, weights0, targets, t, rule)
        out["rules"][label] = entry
        print(f"  matrix: {label} done ({sum(bool(f) for f in traj.failed)} of {len(targets)} flows stopped)",
              file=sys.stderr, flush=True)

    # Seeds drawn under the precondition (candidates in order, the first that meet it).
    kept: list[int] = []
    candidate = 0
    while len(kept) < config.conditioned_seeds:
        draws = range(candidate, candidate + 64)
        s, w = matrix_problem(config, seed, ("conditioned target", "conditioned init"), draws)
        kept += [i for i, ts in zip(draws, singular_time(w, s, rate=d)) if ts > horizon]
        candidate += 64
    kept = kept[:config.conditioned_seeds]
    targets_c, weights0_c = matrix_problem(config, seed, ("conditioned target", "conditioned init"), kept)
    traj = integrate(weights0_c, targets_c, t, "block", 1.0, max_evaluations=config.max_evaluations,
                     **_tolerances(config))
    out["conditioned"] = {"draws": np.asarray(kept), "candidates": kept[-1] + 1, "reached": traj.reached,
                          "failed": traj.failed, "drift": traj.max_drift(), "final_drift": traj.drifts()[:, -1],
                          "closed_form_error": _closed_form_error(traj, weights0_c, targets_c, t, "block")}

    # Block α=½ from smaller inits (same Gaussian draws, rescaled): its drift scales with the init.
    draws = range(config.drift_seeds)
    problems = [matrix_problem(config, seed, ("matrix target", "matrix init"), draws, scale=scale)
                for scale in config.drift_scales]
    targets_s = torch.cat([p[0] for p in problems])
    weights0_s = [torch.cat(layers) for layers in zip(*(p[1] for p in problems))]
    traj = integrate(weights0_s, targets_s, t, "block", 0.5, max_evaluations=config.max_evaluations,
                     **_tolerances(config, 1e-8))
    drift = np.where(traj.reached >= horizon, traj.max_drift(), np.nan)
    out["block_half_drift_by_scale"] = drift.reshape(len(config.drift_scales), config.drift_seeds)
    return out


# ----------------------------------------------------------------------------- scalar two-layer net
def run_scalar(config: Config) -> dict:
    """Claim 4 and the phase portrait: ``w = a₁a₂`` learning ``s = 1`` from several starts at once."""
    t = np.concatenate([[0.0], np.logspace(-3, np.log10(config.scalar_horizon), config.scalar_points)])
    starts = (config.scalar_init,) + tuple(config.portrait_inits)
    weights0 = _stack([[_one(a1), _one(a2)] for a1, a2 in starts])
    endpoints, paths = {}, {}
    for label, rule, alpha in MATRIX_RULES:
        states = integrate(weights0, _one(1.0), t, rule, alpha, **_tolerances(config)).states     # starts × times × 2
        endpoints[label] = states[0, -1].tolist()
        paths[label] = list(states[1:])
    return {"endpoints": endpoints, "paths": paths}


# ----------------------------------------------------------------------------- discrete steps
def run_discrete(config: Config, *, device: torch.device, seed: int) -> dict:
    """Claim 6 and the stability figures: discrete steps of GD, NGD, block NGD and block α=½ from a
    small Gaussian init, every seed with its own teacher, all seeds stepped at once."""
    n, d = config.width, config.depth
    draws = range(config.discrete_seeds)
    targets = torch.stack([teacher_map(config.target_singular_values, n, n, generator=draw(seed, "discrete target", i))
                           for i in draws]).to(device)
    weights0 = [w.to(device) for w in _stack([
        random_weights([n] * (d + 1), config.discrete_init / n ** 0.5, generator=draw(seed, "discrete init", i))
        for i in draws])]
    runs = {}
    for label, rule, alpha in (GD, NGD, BLOCK_NGD, BLOCK_HALF):
        lr = config.discrete_lr / d if label == "block NGD" else config.discrete_lr
        r = euler_steps(weights0, targets, rule, alpha, lr, config.discrete_steps, record_every=config.record_every)
        finite_max = np.nan_to_num(r["step_norms"], nan=-np.inf).max(axis=1)
        r["max_step"] = np.where(r["diverged_at"] >= 0, np.inf, finite_max)   # a non-finite step is larger than any
        norms = r["norms"][:, -1]
        r["norm_ratio"] = norms.max(axis=1) / norms.min(axis=1)
        r["final_loss"] = r["loss"][:, -1]
        r["lr"] = lr
        runs[label] = r
        print(f"  discrete steps: {label} done", file=sys.stderr, flush=True)
    return runs


# ----------------------------------------------------------------------------- generalization
def run_generalization(config: Config, seed: int) -> dict:
    """Claim 7: train on ``S = W̄ + σZ`` (continuous time), test error ``‖W(t) − W̄‖_F²``, every seed with
    its own teacher, noise and init.

    NGD's map follows its closed form (claim 2): from this small random init the parameter flow
    passes through rank drops of ``W`` where its speed diverges, and an integrator would crawl."""
    n, d = config.gen_width, config.depth
    draws = range(config.gen_seeds)
    clean = torch.stack([teacher_map(config.gen_singular_values, n, n, generator=draw(seed, "clean teacher", i))
                         for i in draws])
    noisy = torch.stack([noisy_teacher(c, config.gen_noise, generator=draw(seed, "teacher noise", i))
                         for i, c in zip(draws, clean)])
    weights0 = _stack([random_weights([n] * (d + 1), config.gen_init, generator=draw(seed, "generalization init", i),
                                      init="orthogonal") for i in draws])
    out = {}
    for label, rule, alpha, horizon in config.gen_rules:
        t = np.concatenate([[0.0], np.logspace(-2, np.log10(horizon), config.gen_points)])
        if alpha == 1.0:
            maps = natural_gradient_maps(weights0, noisy, t, rule)
        else:
            maps = integrate(weights0, noisy, t, rule, alpha, **_tolerances(config, 1e-7)).maps()
        test = ((maps - clean.numpy()[:, None]) ** 2).sum(axis=(2, 3))
        train = ((maps - noisy.numpy()[:, None]) ** 2).sum(axis=(2, 3))
        best = np.nanargmin(test, axis=1)
        out[label] = {"t": t, "test": test, "train": train, "min_test": test[np.arange(len(test)), best],
                      "t_min": t[best]}
        print(f"  generalization: {label} done", file=sys.stderr, flush=True)
    return out


# ----------------------------------------------------------------------------- nonlinear MLP
def _train_mlp(config: Config, data: tuple, alpha: float, lr: float, generator: torch.Generator,
               device: torch.device) -> tuple[list[float], list[float]]:
    """One tanh MLP trained full batch: training loss and test accuracy after every step."""
    from curvnb.models.mlp import deep_mlp

    x, y, x_test, y_test = data
    model = deep_mlp(config.mlp_depth, config.mlp_width, x.shape[1], 10, activation="tanh", init="xavier",
                     generator=generator, device=device)
    opt = (torch.optim.SGD(model.parameters(), lr=lr) if alpha == 0.0 else
           BlockDiagonalNaturalGradient(model, lr, alpha, damping=config.mlp_damping, loss="cross_entropy",
                                        on_nonfinite="mark"))
    train_loss, test_acc = [], []
    for _ in range(config.mlp_steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step(x) if alpha > 0 else opt.step()
        with torch.no_grad():
            train_loss.append(float(torch.nn.functional.cross_entropy(model(x), y)))
            test_acc.append(float((model(x_test).argmax(1) == y_test).float().mean()))
    return train_loss, test_acc


def _score(train_loss: np.ndarray) -> float:
    """Mean log training loss over the run (fast *and* stable: an early blow-up counts against a rate)."""
    return float(np.mean(np.log10(train_loss))) if np.all(np.isfinite(train_loss)) else np.inf


def run_mlp(config: Config, *, device: torch.device, seed: int) -> dict:
    """Fractional K-FAC (``BlockDiagonalNaturalGradient``) vs GD on a tanh MLP, full batch on sklearn
    digits. Each learning rate of a grid is scored on selection nets ("mlp select init" stream); the
    chosen rate is then run on test nets ("mlp init"), which are the nets shown."""
    from curvnb.data.digits import load_digits_split

    data = load_digits_split(seed=STREAMS.seed(seed, "digits split", 0), device=device)
    out = {}
    for label, alpha, lrs in config.mlp_lrs:
        grid = {}
        for lr in lrs:
            runs = [_train_mlp(config, data, alpha, lr, draw(seed, "mlp select init", i), device)
                    for i in range(config.mlp_select_nets)]
            grid[lr] = _score(np.mean([r[0] for r in runs], axis=0))
        best = min(grid, key=grid.get)
        runs = [_train_mlp(config, data, alpha, best, draw(seed, "mlp init", i), device)
                for i in range(config.mlp_seeds)]
        out[label] = {"lr": best, "train_loss": np.mean([r[0] for r in runs], axis=0),
                      "test_accuracy": np.mean([r[1] for r in runs], axis=0), "grid": grid}
        print(f"  MLP: {label} chose lr {best:g} from {list(lrs)} on selection nets", file=sys.stderr, flush=True)
    return out


def run(config: Config, *, device: torch.device, seed: int) -> dict:
    """Every part of the chapter; prints wall and CPU time per part. Single-threaded on the CPU: the models
    are tiny (seeds are batched instead), and spare threads only spin on a shared machine."""
    results, start, cpu = {}, time.perf_counter(), time.process_time()
    with single_thread(device):
        for name, compute in (("modes", lambda: run_modes(config)), ("matrix", lambda: run_matrix(config, seed)),
                              ("scalar", lambda: run_scalar(config)),
                              ("discrete", lambda: run_discrete(config, device=device, seed=seed)),
                              ("generalization", lambda: run_generalization(config, seed)),
                              ("mlp", lambda: run_mlp(config, device=device, seed=seed))):
            results[name] = compute()
            print(f"{name}: done at {time.perf_counter() - start:.0f} s ({time.process_time() - cpu:.0f} s CPU)",
                  file=sys.stderr, flush=True)
    return results
