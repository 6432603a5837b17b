"""Curvature in the looking-glass (Duersch et al. 2024): glass curvature of ReLU networks and Alice.

All on sklearn's digits with an MLP ``64 → H → H → 10`` (with biases), in a ReLU version and a
tanh twin of the same size and the same initial weights:

1. *Curvature* (:func:`run`, float64, over ``curvature_seeds`` independent nets, each pretrained
   briefly with full-batch Adam): the mean squared even part ``(ḡ − g₀)²`` and odd part
   ``((g₊ − g₋)/2)²`` of gradient differences against σ, the Hessian prediction ``σ² E[(Hz)²]`` of
   the odd part (exact Hessian-vector products), glass density and Hessian-diagonal estimates per
   layer, and the loss along random directions against the Hessian quadratic and the
   glass-corrected model (the quadratic plus ``sqrt(2/(3π)) sqrt(ρ_d) t^{3/2}``, the loss model
   whose minimiser is Alice's step). Plus *NAQ exactness*: Alice on a diagonal quadratic.
2. *Training* (:func:`run_training`, float32): Adam, SGD-momentum and Alice variants on a fresh
   ReLU MLP. Every optimizer gets a learning-rate grid of the same size; the rate is selected on a
   validation split carved from the training data (never the test set) with ``selection_seeds``
   runs, separately for the equal-steps and the equal-gradient-evaluations comparison; test
   accuracy is reported over ``report_seeds`` further runs. All seeds of one (optimizer, rate)
   train together as one seed-batched model (batched matrix products; each seed has its own
   initial weights, batch order and Alice perturbations).
"""
from __future__ import annotations

import contextlib
import math
import os
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from curvnb.claims import Claim
from curvnb.config import single_thread
from curvnb.curvature import hvp, loss_and_grad
from curvnb.curvature.glass import GLASS_LOSS_COEFFICIENT, gradient_variation, loglog_slope, perturbed_gradients, rademacher
from curvnb.data import load_digits_split
from curvnb.figures import panels
from curvnb.optim.alice import Alice, HeavyBallAlice
from tqdm.auto import tqdm
from curvnb.stats import bootstrap_interval, t_interval
from curvnb.train import train

TITLE = "Curvature in the looking-glass: glass curvature and the Alice optimizer"
COST = {"quick": "≈2 min on 2 CPU cores (150 s of CPU time, spread over both cores)",
        "full": "≈15 min on one GPU (estimate; several hours on a 2-core CPU)",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}


@dataclass(frozen=True)
class Config:
    hidden: int = 64
    pretrain_steps: int = 50           # full-batch Adam steps before the curvature measurements ("briefly")
    pretrain_lr: float = 1e-3
    long_pretrain_steps: int = 400     # a contrast: the ReLU net trained to (near) zero training loss (first seed only)
    sigmas: tuple[float, ...] = (1e-5, 3.16e-5, 1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2)
    scaling_samples: int = 4           # Rademacher draws per σ
    sigma_ref: float = 1e-3            # σ for per-layer densities and the ReLU/tanh ratio (= Alice's σ = lr)
    curvature_seeds: int = 5           # independent nets (initial weights, pretraining, z) for the curvature claims
    line_directions: int = 8
    line_steps: tuple[float, ...] = tuple(float(t) for t in np.logspace(-4, -1.5, 11))
    line_example_max: float = 0.02     # half-width of the example line plot (per-parameter step)
    train_steps: int = 400             # the equal-steps point; the equal-evaluations budget is 3 × this
    batch_size: int = 64
    eval_every: int = 40
    validation: int = 300              # validation examples carved from the 1500 training images
    selection_seeds: int = 3           # runs per (optimizer, rate) whose validation accuracy selects the rate
    report_seeds: int = 5              # further runs per (optimizer, rate) whose test accuracy is reported
    lrs_adaptive: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2)   # Adam and every Alice variant
    lrs_sgd: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)          # SGD with momentum 0.9
    naq_dim: int = 50
    naq_condition: float = 1e4
    naq_steps: int = 200
    workers: int = 0                   # CPU worker processes for independent runs (0: one per available core)


PROFILES = {
    "quick": Config(),
    "full": Config(hidden=256, pretrain_steps=500, scaling_samples=16, curvature_seeds=10, line_directions=32,
                   train_steps=3000, eval_every=100, selection_seeds=3, report_seeds=10, naq_dim=500,
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
ABLATION = ("Alice", "Alice: Hessian only", "Alice: glass only", "Alice: no curvature")
POINTS = ("steps", "evals")   # the two comparisons: equal optimizer steps, equal gradient evaluations


# --------------------------------------------------------------------------- models
def mlp(hidden: int, activation: str, *, seed: int, dtype=torch.float32, device="cpu") -> nn.Sequential:
    """``64 → hidden → hidden → 10`` with biases; ``activation`` is ``"relu"``, ``"tanh"`` or ``"gelu"``.
    The same ``seed`` gives the same initial weights for every activation."""
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}: allowed values are {', '.join(map(repr, acts))}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
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
def run_scaling(config: Config, model: nn.Sequential, data, *, seed: int) -> dict:
    """Even/odd gradient differences vs σ, the Hessian prediction of the odd part, per-layer values at σ_ref."""
    loss_fn = nn.CrossEntropyLoss()
    out = gradient_variation(model, loss_fn, data, config.sigmas, num_samples=config.scaling_samples,
                             seed=seed, groups=layer_slices(model))
    # E[(Hz)²] with the same Rademacher z as gradient_variation draws (same generator and order)
    P = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(seed)
    dtype, dev = next(model.parameters()).dtype, next(model.parameters()).device
    zs = [rademacher(P, generator=gen, dtype=dtype, device=dev) for _ in range(config.scaling_samples)]
    out["hz2"] = float(np.mean([float(hvp(model, loss_fn, data, z).square().mean()) for z in zs]))
    ref = gradient_variation(model, loss_fn, data, [config.sigma_ref], num_samples=config.scaling_samples,
                             seed=seed + 1, groups=layer_slices(model))
    out["ref"] = {k: float(v[0]) for k, v in ref.items()}
    return out


def run_line(config: Config, model: nn.Sequential, data, seed: int, example: bool = True) -> dict:
    """Loss along ``ν ± t d`` (d Rademacher) vs the Hessian and glass-corrected models."""
    loss_fn = nn.CrossEntropyLoss()
    nu = _flat_params(model)
    loss0, g0 = loss_and_grad(model, loss_fn, data)
    signs0 = _preactivation_signs(model, data[0])
    gen = torch.Generator().manual_seed(seed + 11)
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
        d = rademacher(nu.numel(), generator=torch.Generator().manual_seed(seed + 12), dtype=nu.dtype, device=nu.device)
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
    g = torch.Generator().manual_seed(seed + 21)
    diag = torch.logspace(0, math.log10(config.naq_condition), config.naq_dim, dtype=torch.float64)
    b = torch.randn(config.naq_dim, generator=g, dtype=torch.float64)
    x0 = torch.randn(config.naq_dim, generator=g, dtype=torch.float64)
    out = {"condition": float(diag.max() / diag.min())}
    for label, phi in (("phi=1-beta1", None), ("phi=0.5", 0.5)):
        x = nn.Parameter(x0.clone())
        opt = Alice([x], lr=1e-2, phi=phi, seed=seed)

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
    """The curvature measurements of net ``k`` (initial weights ``seed + k``): its claim statistics,
    and for ``k = 0`` the full measurements the figures show."""
    x_tr, y_tr, _, _ = load_digits_split(seed=seed, dtype=torch.float64, device=device)
    data = (x_tr, y_tr)
    models = {act: mlp(config.hidden, act, seed=seed + k, dtype=torch.float64, device=device) for act in ("relu", "tanh")}
    pre_loss = {act: pretrain(m, data, config.pretrain_steps, config.pretrain_lr) for act, m in models.items()}
    scaling = {act: run_scaling(config, m, data, seed=1000 * k + 1) for act, m in models.items()}
    line = {act: run_line(config, m, data, seed + k, example=k == 0) for act, m in models.items()}
    out = {"stats": seed_statistics(config, scaling, line)}
    if k == 0:
        # contrast: the same ReLU net trained much longer, near interpolation (not part of any claim)
        long = mlp(config.hidden, "relu", seed=seed, dtype=torch.float64, device=device)
        pre_loss["relu (long)"] = pretrain(long, data, config.long_pretrain_steps, 3e-3)
        scaling["relu (long)"] = gradient_variation(long, nn.CrossEntropyLoss(), data, config.sigmas,
                                                    num_samples=config.scaling_samples, seed=1)
        out.update(scaling=scaling, line=line, pretrain_loss=pre_loss)
    return out


def run(config: Config, *, device: torch.device, seed: int) -> dict:
    """The curvature measurements over ``curvature_seeds`` independent nets, and the NAQ check.

    Seed ``seed + k`` gives net ``k`` its initial weights; its Rademacher draws are seeded by ``k``;
    net 0 is the one the figures show."""
    jobs = [dict(config=config, device=device, seed=seed, k=k) for k in range(config.curvature_seeds)]
    nets = parallel_map(curvature_seed, jobs, config, device, "curvature seeds")
    stats = {key: [net["stats"][key] for net in nets] for key in nets[0]["stats"]}
    first = {key: nets[0][key] for key in ("scaling", "line", "pretrain_loss")}
    return {**first, "seed_stats": stats, "sigmas": np.array(config.sigmas), "sigma_ref": config.sigma_ref,
            "layers": [n for n, _ in layer_slices(mlp(config.hidden, "relu", seed=0))],
            "naq": run_naq(config, seed=seed)}


# --------------------------------------------------------------------------- training comparison
def learning_rates(config: Config, name: str) -> tuple[float, ...]:
    """The learning-rate grid of optimizer ``name`` (the same size for every optimizer)."""
    return config.lrs_sgd if VARIANTS[name][0] == "sgd" else config.lrs_adaptive


def make_optimizer(name: str, params, lr: float, seed: int) -> torch.optim.Optimizer:
    """The optimizer called ``name`` (a key of :data:`VARIANTS`) at learning rate ``lr``."""
    if name not in VARIANTS:
        raise ValueError(f"unknown optimizer {name!r}: allowed values are {', '.join(map(repr, VARIANTS))}")
    kind, options = VARIANTS[name]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    cls = HeavyBallAlice if kind == "heavy-ball" else Alice
    return cls(params, lr=lr, seed=seed, **options)


def evaluation_counts(opt: torch.optim.Optimizer, steps: int) -> np.ndarray:
    """Gradient evaluations spent after 0, 1, ..., ``steps`` steps (Alice: its fixed schedule)."""
    if not isinstance(opt, Alice):
        return np.arange(steps + 1)
    return np.concatenate([[0], np.cumsum([3 if opt.is_curvature_step(n) else 1 for n in range(1, steps + 1)])])


def training_split(config: Config, *, seed: int, device) -> dict:
    """Training (minus validation), validation and test tensors (float32); the validation examples
    are a seeded subset of the training split, the test split is never used to choose anything."""
    x_tr, y_tr, x_te, y_te = load_digits_split(seed=seed, dtype=torch.float32, device=device)
    perm = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(seed + 7)).to(x_tr.device)
    val, fit = perm[:config.validation], perm[config.validation:]
    return {"train": (x_tr[fit], y_tr[fit]), "val": (x_tr[val], y_tr[val]), "test": (x_te, y_te)}


def train_runs(config: Config, name: str, lr: float, split: dict, *, device, seed: int) -> dict:
    """All seeds of optimizer ``name`` at rate ``lr``, trained together as one seed-batched model.

    Seeds ``0 … selection_seeds − 1`` select the rate (validation), the rest are reported (test).
    Returns per-probe arrays of shape ``(probes, seeds)`` and the probe steps of both comparisons."""
    S = config.selection_seeds + config.report_seeds
    run_seeds = [seed * 1000 + 100 + k for k in range(S)]
    model = SeedBatchedMLP([mlp(config.hidden, "relu", seed=s) for s in run_seeds]).to(device)
    opt = make_optimizer(name, model.parameters(), lr, seed=seed * 1000 + 7)
    x, y = split["train"]
    # seed k reads the training set in its own random order (independent batch sequences)
    perms = torch.stack([torch.randperm(len(x), generator=torch.Generator().manual_seed(s)) for s in run_seeds]).to(x.device)
    data = (x[perms].transpose(0, 1).contiguous(), y[perms].T.contiguous())   # (N, S, 64), (N, S)
    budget = 3 * config.train_steps
    counts = evaluation_counts(opt, 3 * budget)
    at_budget = int(np.searchsorted(counts, budget, side="right") - 1)   # last step within the budget
    steps = max(config.train_steps, at_budget)

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
                 probe_every=config.eval_every, probes={"m": probe}, seed=seed * 1000 + 3, step_fn=step_fn,
                 progress=False, probe_data=(data[0][:config.batch_size], data[1][:config.batch_size]),
                 probe_at=(config.train_steps, at_budget), description=name)
    out = {"step": np.array(hist["step"]), "evals": counts[np.array(hist["step"])],
           "diverged": bool(hist["diverged"]), "point_step": {"steps": config.train_steps, "evals": at_budget}}
    for key in hist["m"][0]:
        out[key] = np.array([r[key] for r in hist["m"]], dtype=float)
    return out


def select_rate(config: Config, runs: dict, point: str) -> float:
    """The rate with the best mean validation accuracy of the selection seeds at ``point``
    (``"steps"`` or ``"evals"``); ties go to the lower validation loss; diverged runs are out."""
    sel = slice(0, config.selection_seeds)

    def score(lr: float) -> tuple[float, float]:
        r = runs[lr]
        i = np.flatnonzero(r["step"] == r["point_step"][point])
        if r["diverged"] or not len(i):
            return (-math.inf, -math.inf)
        return (float(r["val_acc"][i[0], sel].mean()), -float(r["val_loss"][i[0], sel].mean()))
    return max(runs, key=score)


def run_training(config: Config, *, device: torch.device, seed: int) -> dict:
    """The learning-rate sweep of every optimizer, rate selection and the reported runs."""
    split = training_split(config, seed=seed, device=device)
    # Alice's runs first: they take longest, so the workers finish together
    order = sorted(VARIANTS, key=lambda name: VARIANTS[name][0] in ("adam", "sgd"))
    jobs = [dict(config=config, name=name, lr=lr, split=split, device=device, seed=seed)
            for name in order for lr in learning_rates(config, name)]
    done = parallel_map(train_runs, jobs, config, device, "learning-rate sweep")
    runs: dict[str, dict] = {name: {} for name in VARIANTS}
    for job, result in zip(jobs, done):
        runs[job["name"]][job["lr"]] = result
    runs = {name: dict(sorted(runs[name].items())) for name in VARIANTS}
    selected = {name: {point: select_rate(config, runs[name], point) for point in POINTS} for name in VARIANTS}
    return {"runs": runs, "selected": selected, "budget": 3 * config.train_steps,
            "sizes": {k: len(v[0]) for k, v in split.items()}}


def reported(results: dict, config: Config, name: str, point: str, key: str = "test_acc") -> np.ndarray:
    """``key`` of the report seeds of ``name`` at its selected rate, at the comparison ``point``."""
    r = results["training"]["runs"][name][results["training"]["selected"][name][point]]
    i = np.flatnonzero(r["step"] == r["point_step"][point])
    if r["diverged"] or not len(i):
        return np.full(config.report_seeds, np.nan)
    return r[key][i[0], config.selection_seeds:]


def _mean_interval(values: np.ndarray) -> tuple[float, tuple[float, float]]:
    values = np.asarray(values, float)
    if not np.all(np.isfinite(values)):
        return float("nan"), (float("nan"), float("nan"))
    return float(values.mean()), t_interval(values)


def comparison_rows(results: dict, config: Config) -> list[dict]:
    """One row per optimizer: selected rates, test accuracy (mean and 95 % t interval over the report
    seeds) at equal steps and at equal gradient evaluations, and the fraction of Alice's element-steps
    held at the upper bound."""
    rows = []
    tr = results["training"]
    for name in VARIANTS:
        row = {"optimizer": name}
        for point in POINTS:
            r = tr["runs"][name][tr["selected"][name][point]]
            mean, ci = _mean_interval(reported(results, config, name, point))
            row[point] = {"lr": tr["selected"][name][point], "mean": mean, "interval": ci,
                          "step": r["point_step"][point],
                          "evals": int(r["evals"][np.flatnonzero(r["step"] == r["point_step"][point])[0]]),
                          "upper": float(np.mean(reported(results, config, name, point, "upper")))}
        rows.append(row)
    return rows


def paired_difference(results: dict, config: Config, a: str, b: str, point: str) -> dict:
    """Test accuracy of ``a`` minus ``b`` (points), paired by seed: mean and 95 % t interval."""
    diff = 100 * (reported(results, config, a, point) - reported(results, config, b, point))
    mean, ci = _mean_interval(diff)
    return {"mean": mean, "interval": ci, "per_seed": diff.tolist()}


def _fmt_ci(mean: float, ci: tuple[float, float], scale: float = 100.0, digits: int = 1) -> str:
    if not math.isfinite(mean):
        return "diverged"
    # "+ 0.0" turns a rounded −0.0 into 0.0
    return (f"{round(scale * mean, digits) + 0.0:.{digits}f} [{round(scale * ci[0], digits) + 0.0:.{digits}f}, "
            f"{round(scale * ci[1], digits) + 0.0:.{digits}f}]")


def comparison_table(results: dict, config: Config) -> str:
    """The comparison as a Markdown table: test accuracy in %, mean [95 % interval] over the report seeds."""
    budget = results["training"]["budget"]
    head = ["optimizer", "lr (steps)", f"test acc @ {config.train_steps} steps",
            "lr (evals)", f"test acc @ {budget} evals", "steps taken", "held at upper bound"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in comparison_rows(results, config):
        s, e = row["steps"], row["evals"]
        upper = "–" if math.isnan(e["upper"]) else f"{100 * e['upper']:.0f} %"
        lines.append(f"| {row['optimizer']} | {s['lr']:g} | {_fmt_ci(s['mean'], s['interval'])} | {e['lr']:g} | "
                     f"{_fmt_ci(e['mean'], e['interval'])} | {e['step']} | {upper} |")
    return "\n".join(lines)


def ablation_table(results: dict, config: Config) -> str:
    """Which curvature terms matter: each Alice variant minus Alice (both terms), paired by seed, in points."""
    budget = results["training"]["budget"]
    head = ["variant", f"− Alice @ {config.train_steps} steps", f"− Alice @ {budget} evals",
            "held at upper bound (steps)", "held at upper bound (evals)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = {r["optimizer"]: r for r in comparison_rows(results, config)}
    for name in ABLATION[1:] + ("Alice: no quick steps", HEAVY_BALL):
        cells = [name]
        for point in POINTS:
            d = paired_difference(results, config, name, "Alice", point)
            cells.append(_fmt_ci(d["mean"], d["interval"], scale=1.0))
        cells += [f"{100 * rows[name][p]['upper']:.0f} %" if math.isfinite(rows[name][p]["upper"]) else "–"
                  for p in POINTS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- claims
def _median_ci(values) -> tuple[float, tuple[float, float]]:
    values = np.asarray(values, float)
    return float(np.median(values)), bootstrap_interval(values, np.median)


def claims(results: dict, config: Config) -> list[Claim]:
    """The paper's claims as restated (errata of 2026-12-01), statistics fixed before running:
    medians over ``curvature_seeds`` nets with bootstrap intervals; the ablation — the paper's
    claim that the curvature terms matter — as paired differences over the report seeds with t
    intervals."""
    st = results["seed_stats"]
    n = config.curvature_seeds
    naq = results["naq"]
    w = naq["phi=1-beta1"]["warmup"]
    exact_err = float(naq["phi=1-beta1"]["error"].max())
    other_err = float(naq["phi=0.5"]["error"][w:].max())
    relu_even, relu_even_ci = _median_ci(st["relu_even_slope"])
    tanh_even, tanh_even_ci = _median_ci(st["tanh_even_slope"])
    odd_dev, odd_dev_ci = _median_ci(st["relu_odd_deviation"])
    tanh_ratio, tanh_ratio_ci = _median_ci(st["tanh_even_over_odd"])
    tanh_odd, tanh_odd_ci = _median_ci(st["tanh_odd_slope"])
    line, line_ci = _median_ci(st["line_ratio"])
    glass, glass_ci = _median_ci(st["glass_ratio"])
    ranges = [r for r in st["line_t_range"] if r]
    t_range = [min(r[0] for r in ranges), max(r[1] for r in ranges)] if ranges else []
    out = [
        Claim("glass-scaling", "log–log slope of mean (ḡ − g₀)² vs σ ∈ [1e-5, 1e-2]: ≈ 1 for ReLU (glass), ≥ 3 for "
              "tanh (median over independent nets)",
              {"relu (median)": relu_even, "tanh (median)": tanh_even, "tanh 95 % interval": tanh_even_ci,
               "relu per seed": st["relu_even_slope"], "tanh per seed": st["tanh_even_slope"]},
              "relu median ∈ [0.6, 1.5] and tanh median ≥ 3 (interval: relu median)",
              0.6 <= relu_even <= 1.5 and tanh_even >= 3, seeds=n, interval=relu_even_ci,
              source="glass-density estimator: ρ independent of σ for ReLU"),
        Claim("hessian-scaling", "ReLU: the odd part carries the jumps as much as the even part, mean ((g₊ − g₋)/2)² "
              "≈ σ²·E[(Hz)²] + mean (ḡ − g₀)² within 20 % at every σ ∈ [1e-5, 1e-2]; tanh: even part < 1 % of the odd "
              "part for σ ≤ 1e-3 and odd-part slope ≈ 2",
              {"relu max relative deviation (median)": odd_dev, "tanh max even/odd, σ ≤ 1e-3 (median)": tanh_ratio,
               "tanh even/odd 95 % interval": tanh_ratio_ci, "tanh odd slope (median)": tanh_odd,
               "tanh odd slope 95 % interval": tanh_odd_ci, "relu deviation per seed": st["relu_odd_deviation"]},
              "relu median ≤ 0.2; tanh median ratio < 1e-2 and median slope ∈ [1.8, 2.2] (interval: relu deviation)",
              odd_dev <= 0.2 and tanh_ratio < 1e-2 and 1.8 <= tanh_odd <= 2.2, seeds=n, interval=odd_dev_ci,
              source="Hessian-diagonal estimator; restated for the ReLU odd part"),
        Claim("glass-loss-model", "the glass-corrected model of the loss change along random directions has a "
              "smaller error than the Hessian-only model (ReLU, steps where ≥ 10 boundaries are crossed)",
              {"error ratio glass/Hessian (median of geometric means)": line, "per seed": st["line_ratio"],
               "step range": t_range},
              "median ratio < 1", line < 1, seeds=n, interval=line_ci, source="expected-loss model behind Alice's step"),
        Claim("naq-exactness", f"Alice's running gradient G equals ∇L(μ) exactly on a diagonal quadratic "
              f"(condition {naq['condition']:.0e}) with φ = 1 − β₁, ω = 1, and not with φ = 0.5",
              {"max error, φ = 1−β₁": exact_err, "max error after warm-up, φ = 0.5": other_err},
              "< 1e-10 with φ = 1 − β₁; > 1e-6 with φ = 0.5", exact_err < 1e-10 and other_err > 1e-6,
              kind="check", source="Alice's two iterates (NAQ exactness)"),
        Claim("smooth-glass-ratio", f"the glass density of the ReLU net is ≥ 100× that of its tanh twin at "
              f"σ = {config.sigma_ref:g} (median over independent nets)",
              {"ratio (median)": glass, "per seed": st["glass_ratio"]}, "median ratio ≥ 100", glass >= 100,
              seeds=n, interval=glass_ci, source="idea: no glass in smooth models"),
    ]
    if "training" in results:
        budget = results["training"]["budget"]
        for cid, other, question in (("ablation-glass", "Alice: Hessian only", "adding the glass term to the Hessian term"),
                                     ("ablation-hessian", "Alice: glass only", "adding the Hessian term to the glass term"),
                                     ("ablation-curvature", "Alice: no curvature", "both curvature terms (vs none)")):
            d = paired_difference(results, config, "Alice", other, "evals")
            lo, hi = d["interval"]
            out.append(Claim(
                cid, f"{question} changes Alice's test accuracy at equal gradient evaluations ({budget}); "
                f"paired by seed, each at its validation-selected rate",
                {"Alice − " + other + " (points)": d["mean"], "per seed": d["per_seed"]},
                "95 % interval of the paired difference excludes 0", bool(lo > 0 or hi < 0),
                kind="paper", seeds=config.report_seeds,   # the paper's claim is its ablation
                interval=d["interval"] if math.isfinite(lo) else (-math.inf, math.inf),
                source="training experiments: ablation of the curvature terms"))
    return out


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
    fig, axes = panels(2, row_height=3.0)
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
    if lc["t_range"]:
        ax.axvspan(*lc["t_range"], color="0.9", zorder=0, label="≥ 10 ReLU crossings")
    ax.set(xlabel=r"step $t$ (per parameter)", ylabel="mean |measured − model|", title="model error")
    ax.legend(fontsize=7, ncols=2, loc="upper left")
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


def _curve(results: dict, config: Config, name: str, lr: float, key: str = "test_acc") -> tuple[dict, np.ndarray]:
    r = results["training"]["runs"][name][lr]
    return r, r[key][:, config.selection_seeds:].mean(axis=1)


def figure_sweep(results: dict, config: Config):
    """Validation accuracy (selection seeds) against the learning rate, at both comparison points;
    the selected rate of each optimizer is marked."""
    fig, axes = panels(2, row_height=3.0, sharey=True)
    tr = results["training"]
    for ax, point in zip(axes, POINTS):
        for name in VARIANTS:
            lrs = list(tr["runs"][name])
            vals = []
            for lr in lrs:
                r = tr["runs"][name][lr]
                i = np.flatnonzero(r["step"] == r["point_step"][point])
                vals.append(np.nan if r["diverged"] or not len(i) else 100 * r["val_acc"][i[0], :config.selection_seeds].mean())
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
    """Mean test accuracy of the report seeds at the selected rates, against gradient evaluations
    (rate selected for equal evaluations) and against steps (rate selected for equal steps)."""
    fig, axes = panels(2, row_height=3.2, sharey=True)
    tr = results["training"]
    for ax, point in zip(axes, ("evals", "steps")):
        for name in VARIANTS:
            r, acc = _curve(results, config, name, tr["selected"][name][point])
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
              metric: str = "test accuracy"):
    """Widget view of the cached sweep: one optimizer at every rate of its grid (mean of the report
    seeds; the validation-selected rate in bold), with Adam at its selected rate for reference."""
    metrics = {"test accuracy": "test_acc", "training loss": "train_loss"}
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
    shades = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(tr["runs"][optimizer])))
    for color, lr in zip(shades, tr["runs"][optimizer]):
        r, y = _curve(results, config, optimizer, lr, metrics[metric])
        chosen = lr == tr["selected"][optimizer][point]
        ax.plot(r["evals"] if point == "evals" else r["step"], scale * y, color=color, lw=2.4 if chosen else 1.0,
                label=f"{optimizer}, lr {lr:g}" + (" (selected)" if chosen else ""))
    if optimizer != "Adam":
        r, y = _curve(results, config, "Adam", tr["selected"]["Adam"][point], metrics[metric])
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
def protocol_markdown(results: dict, config: Config) -> str:
    """How the training comparison was run (sizes, grids, seeds) for this profile."""
    tr = results["training"]
    sizes = tr["sizes"]
    grid = lambda lrs: ", ".join(f"{lr:g}" for lr in lrs)  # noqa: E731
    return (
        f"Every optimizer trains a fresh ReLU MLP (float32, mini-batches of {config.batch_size}) on "
        f"{sizes['train']} training images. {sizes['val']} images carved from the training split form a validation "
        f"set that chooses the learning rate; the {sizes['test']} test images are used only for the reported "
        f"accuracies. Each optimizer gets a grid of {len(config.lrs_adaptive)} learning rates (Adam and every Alice "
        f"variant: {grid(config.lrs_adaptive)}; SGD with momentum 0.9: {grid(config.lrs_sgd)}). At each rate "
        f"{config.selection_seeds} runs select it — the best mean validation accuracy, chosen separately after "
        f"{config.train_steps} steps and after {tr['budget']} gradient evaluations (ties go to the lower validation "
        f"loss; a rate at which a run diverged is out) — and {config.report_seeds} further runs, each with its own "
        f"initial weights, batch order and Alice perturbations, are reported at the selected rate. All runs at one "
        f"rate train together as one seed-batched model.\n\n"
        f"Alice spends 3 gradient evaluations on a curvature step and 1 on a quick step, Adam and SGD 1 per step. "
        f"The variants: **Alice** (both curvature terms, 3 quick steps: the reference defaults); Hessian only; glass "
        f"only; no curvature (every step at its upper bound, an Adam-like step with Alice's iterates and one "
        f"gradient per batch; a baseline of ours, not in the paper); no quick steps (a curvature step every batch); "
        f"and the **heavy-ball variant, which is not Alice** (the earlier form described above).")


def _verdict(d: dict) -> str:
    lo, hi = d["interval"]
    if not math.isfinite(lo):
        return "cannot be compared (a run diverged)"
    if lo > 0:
        return "ahead"
    if hi < 0:
        return "behind"
    return "level within the interval"


def summary_markdown(results: dict, config: Config) -> str:
    """What this run shows, computed from its results (the prose matches any profile and seed)."""
    st, n = results["seed_stats"], config.curvature_seeds
    tr = results["training"]
    rows = {r["optimizer"]: r for r in comparison_rows(results, config)}
    budget = tr["budget"]
    ln = results["line"]["relu"]
    cross = ln["crossings"].mean(axis=(0, 1)) >= 10
    fd_gain = float(np.exp(np.mean(np.log(ln["err_hessian"][cross] / ln["err_fd"][cross])))) if cross.any() else float("nan")
    sign = float(np.mean(ln["mean_deviation"][cross] / ln["err_hessian"][cross])) if cross.any() else float("nan")
    odd_dev = float(np.median(st["relu_odd_deviation"]))
    lines = [
        f"- **Glass scaling** (median over {n} nets). The even part grows like σ^{np.median(st['relu_even_slope']):.2f} "
        f"for ReLU and σ^{np.median(st['tanh_even_slope']):.2f} for tanh.",
        f"- **Odd part.** For tanh it grows like σ^{np.median(st['tanh_odd_slope']):.2f}, the Hessian's σ². For ReLU "
        f"its slope is {np.median(st['relu_odd_slope']):.2f}: the boundary jumps land in g₊ − g₋ as much as in the even "
        f"part, and σ²·E[(Hz)²] + even part predicts it to within {100 * odd_dev:.0f} % at every σ (median over nets; "
        + ("inside" if odd_dev <= 0.2 else "outside") + " the 20 % of the restated claim).",
        f"- **Loss along lines.** The measured ReLU loss lies "
        + ("systematically above" if sign > 0.5 else "on both sides of")
        + f" the Hessian quadratic (mean signed / mean absolute deviation {sign:.2f}). The glass term changes the model "
        f"error by a factor {np.median(st['line_ratio']):.2f} (median over nets of the geometric mean over steps crossing "
        f"≥ 10 boundaries; below 1 is better); the finite-difference curvature at σ = {config.sigma_ref:g}, which "
        f"includes the jumps, divides it by {fd_gain:.1f} on the first net.",
    ]
    a_e, adam_e = rows["Alice"]["evals"], rows["Adam"]["evals"]
    a_s, adam_s = rows["Alice"]["steps"], rows["Adam"]["steps"]
    d_e = paired_difference(results, config, "Alice", "Adam", "evals")
    d_s = paired_difference(results, config, "Alice", "Adam", "steps")
    best_e = max(VARIANTS, key=lambda k: rows[k]["evals"]["mean"] if math.isfinite(rows[k]["evals"]["mean"]) else -1)
    top_lo = rows[best_e]["evals"]["interval"][0]
    overlapping = [k for k in VARIANTS if rows[k]["evals"]["interval"][1] >= top_lo]
    overlap = len(overlapping) == len(VARIANTS)
    edge = []
    for name in VARIANTS:
        ends = (min(tr["runs"][name]), max(tr["runs"][name]))
        at_end = [p for p in POINTS if tr["selected"][name][p] in ends]
        if at_end:
            rates = sorted({tr["selected"][name][p] for p in at_end})
            edge.append(f"{name} ({', '.join(f'{r:g}' for r in rates)}"
                        + (")" if len(at_end) == len(POINTS) else f" at equal {at_end[0]})"))
    lines.append(
        f"- **Training** (test accuracy, mean [95 % interval] over {config.report_seeds} runs at each optimizer's "
        f"validation-selected rate). At {budget} gradient evaluations Alice reaches {_fmt_ci(a_e['mean'], a_e['interval'])} % "
        f"(lr {a_e['lr']:g}) and Adam {_fmt_ci(adam_e['mean'], adam_e['interval'])} % (lr {adam_e['lr']:g}): paired by "
        f"seed, Alice − Adam = {_fmt_ci(d_e['mean'], d_e['interval'], 1.0, 2)} points, so Alice is {_verdict(d_e)}. "
        f"At {config.train_steps} steps (Alice then has spent {a_s['evals']} evaluations, Adam {adam_s['evals']}): "
        f"Alice {_fmt_ci(a_s['mean'], a_s['interval'])} %, Adam {_fmt_ci(adam_s['mean'], adam_s['interval'])} %, "
        f"difference {_fmt_ci(d_s['mean'], d_s['interval'], 1.0, 2)} points ({_verdict(d_s)}). Highest mean at equal "
        f"evaluations: {best_e}, {100 * rows[best_e]['evals']['mean']:.1f} %; "
        + ("every other optimizer's interval overlaps its interval" if overlap else
           f"the intervals of {', '.join(k for k in VARIANTS if k not in overlapping)} lie entirely below it")
        + f". One test image is {100 / tr['sizes']['test']:.2f} points.")
    if edge:
        lines.append(f"- **Grid edges.** The selected rate is an end of its grid for {', '.join(edge)}: a wider grid "
                     "could change those optimizers' numbers.")
    upper = rows["Alice"]["evals"]["upper"]
    held = (f" Alice's step sat at its upper bound (2·lr·|G|/√V, an Adam-like step) for {100 * upper:.0f} % of "
            f"the element-steps")
    if upper > 0.8:
        held += ", so the curvature terms rarely shaped the step at the selected rate."
    else:
        held += "; the rest of the time the curvature terms set a shorter step."
    ab = {cid: paired_difference(results, config, "Alice", other, "evals")
          for cid, other in (("glass", "Alice: Hessian only"), ("hessian", "Alice: glass only"),
                             ("none", "Alice: no curvature"))}
    hb = paired_difference(results, config, HEAVY_BALL, "Alice", "evals")
    lines.append(
        "- **Ablation** (at equal evaluations, paired by seed)." + held
        + f" Alice minus Hessian-only: {_fmt_ci(ab['glass']['mean'], ab['glass']['interval'], 1.0, 2)} points; minus "
        f"glass-only: {_fmt_ci(ab['hessian']['mean'], ab['hessian']['interval'], 1.0, 2)}; minus no-curvature: "
        f"{_fmt_ci(ab['none']['mean'], ab['none']['interval'], 1.0, 2)}. "
        + ("None of these intervals excludes zero: at this scale the data do not say which curvature term matters."
           if all(d["interval"][0] <= 0 <= d["interval"][1] for d in ab.values())
           else "Intervals that exclude zero mark the terms that changed the outcome here.")
        + f" The heavy-ball variant (not the paper's method) minus Alice: "
        f"{_fmt_ci(hb['mean'], hb['interval'], 1.0, 2)} points, at a selected rate of "
        f"{tr['selected'][HEAVY_BALL]['evals']:g} against Alice's {tr['selected']['Alice']['evals']:g} (its μ moves "
        "further per step at the same rate).")
    return "\n".join(lines)
