"""The computation of the duersch2024 chapter: configuration, profiles and the cached runs.

The result cache keys on this module and the ``curvnb`` modules it imports
(:func:`curvnb.cache.compute_sources`): it must not import report code (:mod:`curvnb.studies.duersch2024.report`,
claims, figures, widgets), so that editing those reuses cached results.
"""
from __future__ import annotations

import contextlib
import math
import os
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from curvnb.config import single_thread
from curvnb.curvature import hvp, loss_and_grad
from curvnb.curvature.glass import (GLASS_LOSS_COEFFICIENT, gradient_variation, loglog_slope, perturbed_gradients,
                                    rademacher)
from curvnb.data import load_digits_split
from curvnb.optim.alice import Alice, HeavyBallAlice
from curvnb.seeds import declare_streams, seed_torch
from curvnb.train import train


@dataclass(frozen=True)
class Config:
    hidden: int = 64
    pretrain_steps: int = 50           # full-batch Adam steps before the curvature measurements ("briefly")
    pretrain_lr: float = 1e-3
    long_pretrain_steps: int = 400     # a contrast: the ReLU net trained to (near) zero training loss (first seed only)
    sigmas: tuple[float, ...] = (1e-5, 3.16e-5, 1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2)
    scaling_samples: int = 4           # Rademacher draws per σ
    sigma_ref: float = 1e-3            # σ for per-layer densities and the ReLU/tanh ratio (= Alice's σ = lr)
    curvature_seeds: int = 6           # independent nets (weights, z, directions): a median's 95 % interval needs 6
    line_directions: int = 8
    line_steps: tuple[float, ...] = tuple(float(t) for t in np.logspace(-4, -1.5, 11))
    line_example_max: float = 0.02     # half-width of the example line plot (per-parameter step)
    train_steps: int = 400             # the equal-steps point; the equal-evaluations budget is 3 × this
    batch_size: int = 64
    eval_every: int = 40
    validation: int = 300              # validation examples carved from the 1500 training images
    selection_seeds: int = 3           # runs per (optimizer, rate) whose validation accuracy selects the rate
    report_seeds: int = 8              # runs at each selected rate whose test accuracy is reported (paired by unit)
    lrs_adaptive: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2)   # Adam and every Alice variant
    lrs_sgd: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)          # SGD with momentum 0.9
    naq_dim: int = 50
    naq_condition: float = 1e4
    naq_steps: int = 200
    workers: int = 0                   # CPU worker processes for independent runs (0: one per available core)


PROFILES = {
    "quick": Config(),
    "full": Config(hidden=256, pretrain_steps=500, scaling_samples=16, curvature_seeds=10, line_directions=32,
                   train_steps=3000, eval_every=100, selection_seeds=3, report_seeds=12, naq_dim=500,
                   naq_steps=1000),
    # tiny: every code path in seconds (tests); its verdicts are no evidence
    "smoke": Config(hidden=8, pretrain_steps=5, long_pretrain_steps=5, sigmas=(1e-4, 1e-3, 1e-2), scaling_samples=1,
                    curvature_seeds=2, line_directions=1, line_steps=(1e-3, 1e-2), train_steps=16, eval_every=4,
                    validation=100, selection_seeds=2, report_seeds=2, naq_dim=5, naq_steps=15, workers=1),
}

#: The training comparison: name -> (optimizer class or torch name, options). "Alice" is the
#: paper's method with the reference defaults (Hessian and glass terms, 3 quick steps).
HEAVY_BALL = "heavy-ball variant (not Alice)"
VARIANTS: dict[str, tuple[str, dict]] = {
    "Adam": ("adam", {}),
    "SGD-momentum": ("sgd", {}),
    "Alice": ("alice", dict(curvature="both")),
    "Alice: Hessian only": ("alice", dict(curvature="hessian")),
    "Alice: glass only": ("alice", dict(curvature="glass")),
    "Alice: no curvature": ("alice", dict(curvature="none")),
    "Alice: no quick steps": ("alice", dict(curvature="both", quick_steps=0)),
    HEAVY_BALL: ("heavy-ball", dict(curvature="both")),
}
POINTS = ("steps", "evals")   # the two comparisons: equal optimizer steps, equal gradient evaluations

#: Every random quantity of the chapter, by (chapter seed, stream, index) (:mod:`curvnb.seeds`).
#: Rates are selected on "selection" streams only; the reported runs and the curvature nets are "test" units.
STREAMS = declare_streams("duersch2024", {
    "split": ("test", 1),               # the digits train/test split (shared by every part)
    "curv-init": ("test", 64),          # net k's initial weights (the ReLU net and its tanh twin)
    "curv-probe": ("test", 64),         # net k's Rademacher z of the σ scan
    "curv-line": ("test", 64),          # net k's random directions (same for both activations)
    "naq": ("test", 2),                 # 0: the quadratic (b, x0); 1: Alice's z on it
    "validation": ("selection", 1),     # which training images form the validation split
    "select-init": ("selection", 64),   # selection unit u: initial weights
    "select-order": ("selection", 64),  # selection unit u: order of the training images
    "select-alice": ("selection", 1),   # Alice's z in the selection runs (one generator per run)
    "init": ("test", 64),               # reported unit u: initial weights (shared by every optimizer: paired)
    "order": ("test", 64),              # reported unit u: order of the training images
    "alice": ("test", 1),               # Alice's z in the reported runs
})
ROLES = {"selection": ("select-init", "select-order", "select-alice"), "test": ("init", "order", "alice")}


# --------------------------------------------------------------------------- models
def mlp(hidden: int, activation: str, *, seed: int, dtype=torch.float32, device="cpu") -> nn.Sequential:
    """``64 → hidden → hidden → 10`` with biases; ``activation`` is ``"relu"``, ``"tanh"`` or ``"gelu"``.
    The same ``seed`` (a derived seed of :data:`STREAMS`, all 64 bits used) gives the same initial
    weights for every activation."""
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}: allowed values are {', '.join(map(repr, acts))}")
    with torch.random.fork_rng(devices=[]):
        seed_torch(seed)
        model = nn.Sequential(nn.Linear(64, hidden), acts[activation](), nn.Linear(hidden, hidden),
                              acts[activation](), nn.Linear(hidden, 10))
    return model.to(dtype=dtype, device=device)


class SeedBatchedMLP(nn.Module):
    """``S`` independent ReLU MLPs (one per seed) evaluated together with batched matrix products.

    Built from ``S`` ``nn.Sequential`` MLPs (their initial weights are copied). Input ``(B, S, d)``
    (seed ``s`` reads ``x[:, s]``), output ``(B, S, classes)``. Each parameter has a leading seed
    dimension, so an elementwise optimizer (Adam, SGD, Alice) updates every seed independently."""

    def __init__(self, nets: list[nn.Sequential]):
        super().__init__()
        layers = [[m for m in net if isinstance(m, nn.Linear)] for net in nets]
        self.weights = nn.ParameterList([nn.Parameter(torch.stack([ls[i].weight.detach().T for ls in layers]))
                                         for i in range(len(layers[0]))])          # (S, in, out)
        self.biases = nn.ParameterList([nn.Parameter(torch.stack([ls[i].bias.detach() for ls in layers])[:, None])
                                        for i in range(len(layers[0]))])           # (S, 1, out)

    @property
    def seeds(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(0, 1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return h.transpose(0, 1)


def seedwise_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over seeds of each seed's mean cross-entropy (``logits (B, S, C)``, ``targets (B, S)``):
    the gradient for each seed's parameters is that seed's own mini-batch gradient."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum") / len(logits)


def layer_slices(model: nn.Sequential) -> list[tuple[str, slice]]:
    """(name, slice of the flat parameter vector) for each Linear layer (weight and bias together)."""
    out, start = [], 0
    for i, layer in enumerate(m for m in model if isinstance(m, nn.Linear)):
        n = sum(p.numel() for p in layer.parameters())
        out.append((f"{i + 1}: {layer.in_features}→{layer.out_features}", slice(start, start + n)))
        start += n
    return out


def pretrain(model: nn.Module, data, steps: int, lr: float) -> float:
    """Full-batch Adam (deterministic); returns the final training loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(data[0]), data[1])
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(loss_fn(model(data[0]), data[1]))


def _flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@torch.no_grad()
def _set_flat(model: nn.Module, flat: torch.Tensor) -> None:
    torch.nn.utils.vector_to_parameters(flat, model.parameters())


@torch.no_grad()
def _loss_at(model: nn.Module, flat: torch.Tensor, data) -> float:
    _set_flat(model, flat)
    return float(nn.functional.cross_entropy(model(data[0]), data[1]))


@torch.no_grad()
def _preactivation_signs(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    signs, h = [], x
    for layer in model:
        h = layer(h)
        if isinstance(layer, nn.Linear) and layer is not model[-1]:
            signs.append(h > 0)
    return torch.cat([s.reshape(-1) for s in signs])


# --------------------------------------------------------------------------- independent runs in parallel
_POOL: Any = None


def _init_worker() -> None:
    import signal

    torch.set_num_threads(1)
    # an interrupt (or the kernel's shutdown) is the parent's business: idle workers stay quiet
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _one_thread(device: torch.device):
    """One intra-op thread on CPU: the matrices are tiny, and on a busy 2-core machine OpenMP
    synchronisation cost up to 30× the work (measured); GPU runs are unaffected."""
    if torch.device(device).type != "cpu":
        yield
        return
    with single_thread():
        yield


def _workers(config: Config, device: torch.device, jobs: int) -> int:
    if torch.device(device).type != "cpu":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(config.workers or cores, jobs))


def parallel_map(fn: Callable[..., Any], jobs: list[dict], config: Config, device: torch.device,
                 desc: str) -> list[Any]:
    """``fn(**job)`` for every job, in order. On CPU the jobs run in single-threaded worker processes
    (spawned, one per core, kept for the session); each job is seeded on its own, so its result does
    not depend on which worker ran it. Elsewhere, or with one worker, they run here in turn."""
    global _POOL
    workers = _workers(config, device, len(jobs))
    if workers == 1:
        with _one_thread(device):
            return [fn(**job) for job in tqdm(jobs, desc=desc, leave=False)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if _POOL is None or _POOL._max_workers != workers:
        if _POOL is not None:
            _POOL.shutdown()
        _POOL = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_init_worker)
    futures = [_POOL.submit(fn, **job) for job in jobs]
    for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, leave=False):
        pass
    return [f.result() for f in futures]


# --------------------------------------------------------------------------- curvature measurements
def run_scaling(config: Config, model: nn.Sequential, data, gen: torch.Generator) -> dict:
    """Even/odd gradient differences vs σ, the Hessian prediction of the odd part, per-layer values at
    σ_ref; the Rademacher draws come from ``gen`` (the same z at every σ)."""
    P = sum(p.numel() for p in model.parameters())
    dtype, dev = next(model.parameters()).dtype, next(model.parameters()).device
    zs = [rademacher(P, generator=gen, dtype=dtype, device=dev) for _ in range(2 * config.scaling_samples)]
    scan, refs = zs[:config.scaling_samples], zs[config.scaling_samples:]
    out = gradient_variation(model, nn.CrossEntropyLoss(), data, config.sigmas, directions=scan)
    # E[(Hz)²] with the same z as the σ scan
    out["hz2"] = float(np.mean([float(hvp(model, nn.CrossEntropyLoss(), data, z).square().mean()) for z in scan]))
    ref = gradient_variation(model, nn.CrossEntropyLoss(), data, [config.sigma_ref], directions=refs,
                             groups=layer_slices(model))
    out["ref"] = {k: float(v[0]) for k, v in ref.items()}
    return out


def run_line(config: Config, model: nn.Sequential, data, gen: torch.Generator, example: bool = True) -> dict:
    """Loss along ``ν ± t d`` (d Rademacher, drawn from ``gen``) vs the Hessian and glass-corrected models."""
    loss_fn = nn.CrossEntropyLoss()
    nu = _flat_params(model)
    loss0, g0 = loss_and_grad(model, loss_fn, data)
    signs0 = _preactivation_signs(model, data[0])
    ts = np.array(config.line_steps)
    K = config.line_directions
    measured, hess_pred, crossings = (np.zeros((K, 2, len(ts))) for _ in range(3))
    rho_dir, curv_dir, fd_dir = np.zeros(K), np.zeros(K), np.zeros(K)
    for k in range(K):
        d = rademacher(nu.numel(), generator=gen, dtype=nu.dtype, device=nu.device)
        dHd = float(d @ hvp(model, loss_fn, data, d))
        r = perturbed_gradients(model, loss_fn, data, config.sigma_ref, d)
        # directional glass density: variance rate of the directional derivative's jump part
        rho_dir[k] = 2 * float(d @ (0.5 * (r["g_plus"] + r["g_minus"]) - r["g0"])) ** 2 / config.sigma_ref
        curv_dir[k] = dHd
        fd_dir[k] = float(d @ (r["g_plus"] - r["g_minus"])) / (2 * config.sigma_ref)  # kernel-averaged curvature
        slope = float(g0 @ d)
        for j, sgn in enumerate((1.0, -1.0)):
            for i, t in enumerate(ts):
                measured[k, j, i] = _loss_at(model, nu + sgn * t * d, data) - loss0
                crossings[k, j, i] = float((_preactivation_signs(model, data[0]) != signs0).sum())
                hess_pred[k, j, i] = sgn * t * slope + 0.5 * t * t * dHd
        _set_flat(model, nu)
    rho_mean = float(rho_dir.mean())
    glass_pred = hess_pred + GLASS_LOSS_COEFFICIENT * math.sqrt(rho_mean) * ts ** 1.5
    fd_pred = hess_pred + 0.5 * (fd_dir - curv_dir)[:, None, None] * ts ** 2
    out = {"t": ts, "crossings": crossings, "rho_dir_mean": rho_mean,
           "err_hessian": np.abs(measured - hess_pred).mean(axis=(0, 1)),
           "err_glass": np.abs(measured - glass_pred).mean(axis=(0, 1)),
           "err_fd": np.abs(measured - fd_pred).mean(axis=(0, 1)),
           "mean_deviation": (measured - hess_pred).mean(axis=(0, 1))}
    if example:  # one direction over a symmetric range, for the picture
        d = rademacher(nu.numel(), generator=gen, dtype=nu.dtype, device=nu.device)   # the next direction
        tt = np.linspace(-config.line_example_max, config.line_example_max, 161)
        ex_loss = np.array([_loss_at(model, nu + float(t) * d, data) for t in tt]) - loss0
        _set_flat(model, nu)
        dHd = float(d @ hvp(model, loss_fn, data, d))
        ex_hess = tt * float(g0 @ d) + 0.5 * tt ** 2 * dHd
        r = perturbed_gradients(model, loss_fn, data, config.sigma_ref, d)
        out["example"] = {"t": tt, "loss": ex_loss, "hessian": ex_hess,
                          "glass": ex_hess + GLASS_LOSS_COEFFICIENT * math.sqrt(rho_mean) * np.abs(tt) ** 1.5,
                          "fd": tt * float(g0 @ d) + 0.5 * tt ** 2 * float(d @ (r["g_plus"] - r["g_minus"]))
                          / (2 * config.sigma_ref)}
    return out


def line_comparison(line: dict, min_crossings: float = 10.0) -> dict:
    """Errors of both loss models at steps where on average ≥ ``min_crossings`` ReLU boundaries are crossed."""
    cross = line["crossings"].mean(axis=(0, 1))
    mask = cross >= min_crossings
    ratio = line["err_glass"][mask] / line["err_hessian"][mask]
    return {"t_range": [float(line["t"][mask].min()), float(line["t"][mask].max())] if mask.any() else [],
            "ratio_geomean": float(np.exp(np.mean(np.log(ratio)))) if mask.any() else float("nan")}


def seed_statistics(config: Config, scaling: dict, line: dict) -> dict:
    """The per-seed statistics the claims test (see :func:`claims`)."""
    sig = np.array(config.sigmas)
    relu, tanh = scaling["relu"], scaling["tanh"]
    prediction = sig ** 2 * relu["hz2"] + relu["even"]
    small = sig <= 1e-3
    return {"relu_even_slope": loglog_slope(sig, relu["even"]), "tanh_even_slope": loglog_slope(sig, tanh["even"]),
            "relu_odd_slope": loglog_slope(sig, relu["odd"]), "tanh_odd_slope": loglog_slope(sig, tanh["odd"]),
            "relu_odd_deviation": float(np.max(np.abs(relu["odd"] / prediction - 1))),
            "tanh_even_over_odd": float(np.max(tanh["even"][small] / tanh["odd"][small])),
            "glass_ratio": relu["ref"]["rho"] / tanh["ref"]["rho"],
            "line_ratio": line_comparison(line["relu"])["ratio_geomean"],
            "line_t_range": line_comparison(line["relu"])["t_range"]}


def run_naq(config: Config, *, seed: int) -> dict:
    """max |G − ∇L(μ)| per step for Alice (reference defaults) on a diagonal quadratic, φ = 1 − β₁ and φ = 0.5."""
    g = STREAMS.torch(seed, "naq", 0)
    diag = torch.logspace(0, math.log10(config.naq_condition), config.naq_dim, dtype=torch.float64)
    b = torch.randn(config.naq_dim, generator=g, dtype=torch.float64)
    x0 = torch.randn(config.naq_dim, generator=g, dtype=torch.float64)
    out = {"condition": float(diag.max() / diag.min())}
    for label, phi in (("phi=1-beta1", None), ("phi=0.5", 0.5)):
        x = nn.Parameter(x0.clone())
        opt = Alice([x], lr=1e-2, phi=phi)
        opt.generator = STREAMS.torch(seed, "naq", 1)   # its z from the declared stream (the same for both φ)

        def closure():
            opt.zero_grad()
            loss = 0.5 * (diag * x * x).sum() - b @ x
            loss.backward()
            return loss

        errs, losses = [], []
        for _ in range(config.naq_steps):
            grad_at_mu = diag * x.detach() - b  # the model sits at μ between steps
            with torch.no_grad():
                losses.append(float(0.5 * (diag * x * x).sum() - b @ x))
            opt.step(closure)
            errs.append(float((opt.state[x]["G"] - grad_at_mu).abs().max()))
        out[label] = {"error": np.array(errs), "loss": np.array(losses), "warmup": opt.warmup}
    out["optimal_loss"] = float(-0.5 * (b * b / diag).sum())
    return out


def curvature_seed(config: Config, *, device: torch.device, seed: int, k: int) -> dict:
    """The curvature measurements of net ``k`` (streams ``curv-*``, index ``k``): its claim statistics,
    and for ``k = 0`` the full measurements the figures show."""
    x_tr, y_tr, _, _ = load_digits_split(seed=STREAMS.seed(seed, "split"), dtype=torch.float64, device=device)
    data = (x_tr, y_tr)
    init = STREAMS.seed(seed, "curv-init", k)
    models = {act: mlp(config.hidden, act, seed=init, dtype=torch.float64, device=device) for act in ("relu", "tanh")}
    pre_loss = {act: pretrain(m, data, config.pretrain_steps, config.pretrain_lr) for act, m in models.items()}
    # common random numbers: both activations see the same z and the same directions
    scaling = {act: run_scaling(config, m, data, STREAMS.torch(seed, "curv-probe", k)) for act, m in models.items()}
    line = {act: run_line(config, m, data, STREAMS.torch(seed, "curv-line", k), example=k == 0)
            for act, m in models.items()}
    out = {"stats": seed_statistics(config, scaling, line)}
    if k == 0:
        # contrast: the same ReLU net trained much longer, near interpolation (not part of any claim)
        long = mlp(config.hidden, "relu", seed=init, dtype=torch.float64, device=device)
        pre_loss["relu (long)"] = pretrain(long, data, config.long_pretrain_steps, 3e-3)
        gen = STREAMS.torch(seed, "curv-probe", k)
        zs = [rademacher(sum(p.numel() for p in long.parameters()), generator=gen, dtype=torch.float64, device=device)
              for _ in range(config.scaling_samples)]
        scaling["relu (long)"] = gradient_variation(long, nn.CrossEntropyLoss(), data, config.sigmas, directions=zs)
        out.update(scaling=scaling, line=line, pretrain_loss=pre_loss)
    return out


def run(config: Config, *, device: torch.device, seed: int) -> dict:
    """The curvature measurements over ``curvature_seeds`` independent nets, and the NAQ check; net 0
    is the one the figures show."""
    jobs = [dict(config=config, device=device, seed=seed, k=k) for k in range(config.curvature_seeds)]
    nets = parallel_map(curvature_seed, jobs, config, device, "curvature nets")
    stats = {key: [net["stats"][key] for net in nets] for key in nets[0]["stats"]}
    first = {key: nets[0][key] for key in ("scaling", "line", "pretrain_loss")}
    return {**first, "seed_stats": stats, "sigmas": np.array(config.sigmas), "sigma_ref": config.sigma_ref,
            "layers": [n for n, _ in layer_slices(mlp(config.hidden, "relu", seed=0))],
            "naq": run_naq(config, seed=seed)}


# --------------------------------------------------------------------------- training comparison
def learning_rates(config: Config, name: str) -> tuple[float, ...]:
    """The learning-rate grid of optimizer ``name`` (the same size for every optimizer)."""
    return config.lrs_sgd if VARIANTS[name][0] == "sgd" else config.lrs_adaptive


def make_optimizer(name: str, params, lr: float, generator: torch.Generator | None = None) -> torch.optim.Optimizer:
    """The optimizer called ``name`` (a key of :data:`VARIANTS`) at learning rate ``lr``; an Alice
    variant draws its Rademacher z from ``generator`` (a declared stream's)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown optimizer {name!r}: allowed values are {', '.join(map(repr, VARIANTS))}")
    kind, options = VARIANTS[name]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    cls = HeavyBallAlice if kind == "heavy-ball" else Alice
    opt = cls(params, lr=lr, **options)
    if generator is not None:
        opt.generator = generator   # the optimizer's own generator attribute, seeded from the stream
    return opt


def evaluation_counts(opt: torch.optim.Optimizer, steps: int) -> np.ndarray:
    """Gradient evaluations spent after 0, 1, ..., ``steps`` steps (Alice: its fixed schedule)."""
    if not isinstance(opt, Alice):
        return np.arange(steps + 1)
    return np.concatenate([[0], np.cumsum([3 if opt.is_curvature_step(n) else 1 for n in range(1, steps + 1)])])


def training_split(config: Config, *, seed: int, device) -> dict:
    """Training (minus validation), validation and test tensors (float32); the validation examples
    are a seeded subset of the training split, the test split is never used to choose anything."""
    x_tr, y_tr, x_te, y_te = load_digits_split(seed=STREAMS.seed(seed, "split"), dtype=torch.float32, device=device)
    perm = torch.randperm(len(x_tr), generator=STREAMS.torch(seed, "validation")).to(x_tr.device)
    val, fit = perm[:config.validation], perm[config.validation:]
    return {"train": (x_tr[fit], y_tr[fit]), "val": (x_tr[val], y_tr[val]), "test": (x_te, y_te)}


def train_runs(config: Config, name: str, lr: float, split: dict, *, device, seed: int, role: str,
               points: tuple[str, ...] = POINTS) -> dict:
    """All units of optimizer ``name`` at rate ``lr``, trained together as one seed-batched model.

    ``role="selection"``: the ``selection_seeds`` units that select the rate (validation accuracy);
    ``"test"``: the ``report_seeds`` units whose test accuracy is reported. Unit ``u`` has the same
    initial weights and data order under every optimizer (paired comparisons). Returns per-probe
    arrays of shape ``(probes, units)`` and the probe steps of the comparison ``points`` (training stops at
    the last of them)."""
    init, order, alice = ROLES[role]
    S = config.selection_seeds if role == "selection" else config.report_seeds
    model = SeedBatchedMLP([mlp(config.hidden, "relu", seed=STREAMS.seed(seed, init, u)) for u in range(S)]).to(device)
    opt = make_optimizer(name, model.parameters(), lr, generator=STREAMS.torch(seed, alice))
    x, y = split["train"]
    # unit u reads the training set in its own random order; the batch sampler below is a fixed schedule
    # (its seed 0 is the same for every chapter seed: all randomness of the order is in these permutations)
    perms = torch.stack([torch.randperm(len(x), generator=STREAMS.torch(seed, order, u))
                         for u in range(S)]).to(x.device)
    data = (x[perms].transpose(0, 1).contiguous(), y[perms].T.contiguous())   # (N, S, 64), (N, S)
    budget = 3 * config.train_steps
    counts = evaluation_counts(opt, 3 * budget)
    at_budget = int(np.searchsorted(counts, budget, side="right") - 1)   # last step within the budget
    point_step = {p: {"steps": config.train_steps, "evals": at_budget}[p] for p in points}
    steps = max(point_step.values())

    @torch.no_grad()
    def probe(m: nn.Module) -> dict:
        out = {}
        for part in ("train", "val", "test"):
            xs, ys = split[part]
            if part == "train":  # a fixed subset of the training split is enough for the loss curves
                xs, ys = xs[:config.validation], ys[:config.validation]
            logits = m(xs[:, None].expand(-1, S, -1))
            out[part + "_acc"] = (logits.argmax(-1) == ys[:, None]).double().mean(0).tolist()
            out[part + "_loss"] = F.cross_entropy(logits.permute(0, 2, 1), ys[:, None].expand(-1, S),
                                                  reduction="none").mean(0).tolist()
        if isinstance(opt, Alice) and opt.moves:   # per seed: fraction of element-steps at the upper bound
            held = sum(opt.state[p]["upper_count"].reshape(S, -1).sum(1) for p in m.parameters())
            out["upper"] = (held / (opt.moves * sum(p[0].numel() for p in m.parameters()))).tolist()
        else:
            out["upper"] = [float("nan")] * S
        return out

    def step_fn(m: nn.Module, o: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor) -> float:
        def closure():
            o.zero_grad(set_to_none=True)
            loss = seedwise_cross_entropy(m(xb), yb)
            loss.backward()
            return loss
        try:
            value = o.step(closure)
            return float(value.detach() if torch.is_tensor(value) else value)
        except FloatingPointError:   # Alice refuses a non-finite step: the run diverged
            return float("nan")

    hist = train(model, opt, seedwise_cross_entropy, data, steps=steps, batch_size=config.batch_size,
                 probe_every=config.eval_every, probes={"m": probe}, seed=0, step_fn=step_fn,
                 progress=False, probe_data=(data[0][:config.batch_size], data[1][:config.batch_size]),
                 probe_at=tuple(point_step.values()), description=name)
    out = {"step": np.array(hist["step"]), "evals": counts[np.array(hist["step"])],
           "diverged": bool(hist["diverged"]), "point_step": point_step}
    for key in hist["m"][0]:
        out[key] = np.array([r[key] for r in hist["m"]], dtype=float)
    return out


def select_rate(runs: dict, point: str) -> float:
    """The rate with the best mean validation accuracy of the selection runs at ``point`` (``"steps"``
    or ``"evals"``); ties go to the lower validation loss; diverged runs are out."""
    def score(lr: float) -> tuple[float, float]:
        r = runs[lr]
        i = np.flatnonzero(r["step"] == r["point_step"][point])
        if r["diverged"] or not len(i):
            return (-math.inf, -math.inf)
        return (float(r["val_acc"][i[0]].mean()), -float(r["val_loss"][i[0]].mean()))
    return max(runs, key=score)


def run_training(config: Config, *, device: torch.device, seed: int) -> dict:
    """The learning-rate sweep of every optimizer on selection units, the rate selection, then the
    reported runs (test units) at each selected rate."""
    split = training_split(config, seed=seed, device=device)
    # Alice's runs first: they take longest, so the workers finish together
    order = sorted(VARIANTS, key=lambda name: VARIANTS[name][0] in ("adam", "sgd"))
    common = dict(config=config, split=split, device=device, seed=seed)
    jobs = [dict(common, name=name, lr=lr, role="selection") for name in order for lr in learning_rates(config, name)]
    sweep: dict[str, dict] = {name: {} for name in VARIANTS}
    for job, result in zip(jobs, parallel_map(train_runs, jobs, config, device, "learning-rate sweep")):
        sweep[job["name"]][job["lr"]] = result
    sweep = {name: dict(sorted(sweep[name].items())) for name in VARIANTS}
    selected = {name: {point: select_rate(sweep[name], point) for point in POINTS} for name in VARIANTS}
    # each reported run trains only as far as the comparison(s) its rate was selected for
    jobs = [dict(common, name=name, lr=lr, role="test", points=tuple(p for p in POINTS if selected[name][p] == lr))
            for name in order for lr in sorted(set(selected[name].values()))]
    reports: dict[str, dict] = {name: {} for name in VARIANTS}
    for job, result in zip(jobs, parallel_map(train_runs, jobs, config, device, "reported runs")):
        reports[job["name"]][job["lr"]] = result
    return {"sweep": sweep, "selected": selected, "reports": reports, "budget": 3 * config.train_steps,
            "sizes": {k: len(v[0]) for k, v in split.items()}}
