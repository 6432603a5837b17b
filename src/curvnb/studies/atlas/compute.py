"""The computation of the atlas chapter: configuration, profiles and the cached runs.

The result cache keys on this module and the ``curvnb`` modules it imports
(:func:`curvnb.cache.compute_sources`): it must not import report code (:mod:`curvnb.studies.atlas.report`,
claims, figures, widgets), so that editing those reuses cached results.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from curvnb.config import single_thread
from curvnb.curvature import (empirical_ntk, gradient_covariance_eigenvalues, gradient_covariance_trace,
                              hessian_eigenvalues, linear_cka, loss_and_grad, ntk_distance, ntk_relative_change,
                              unflatten_like)
from curvnb.curvature.glass import gradient_variation
from curvnb.init_stats import hidden_states
from curvnb.models import ReversibleNet, deep_mlp
from curvnb.optim import Alice, BlockDiagonalNaturalGradient, ExactGaussNewton
from curvnb.seeds import declare_streams, seed_torch, torch_generator
from curvnb.train import evaluate, train

#: Every random draw of the chapter: (chapter seed, stream, unit). Selection runs (rate choice on the
#: validation split) draw only from the ``select-*`` streams, the tested runs only from the others.
#: One unit = one seed: the MLP runs of a unit share their initialization (and so do the reversible
#: runs), so the findings' ratios are paired by unit.
STREAMS = declare_streams("atlas", {
    "init": ("test", 64), "data": ("test", 64), "optim": ("test", 64), "probe": ("test", 64),
    "select-init": ("selection", 16), "select-data": ("selection", 16), "select-optim": ("selection", 16)})
ROLES = {"test": "", "selection": "select-"}


#: Every run of the chapter: (label, model, base optimizer whose grid/rule sets its rate).
RUNS = ("sgd-small", "sgd-large", "sgd-mom", "adam", "adam-small", "kfac-half", "kfac-1", "alice",
        "gn", "rev-sgd", "rev-adam")
REVERSIBLE = ("gn", "rev-sgd", "rev-adam")
#: The optimizers whose rate is selected on validation data, and the run each one's rate feeds.
TUNED = ("sgd", "sgd-mom", "adam", "kfac-half", "kfac-1", "alice", "gn", "rev-sgd", "rev-adam")
BASE = {"sgd-small": "sgd", "sgd-large": "sgd", "adam-small": "adam"}
NUM_CLASSES = 10
#: Lenses probed along every trajectory: key -> (short header, axis label, log scale).
LENSES = {
    "loss": ("train loss", "training loss (probe set)", True),
    "test_acc": ("test acc", "test accuracy", False),
    "lam_h": ("λ_H¹", r"$\lambda_H^1$ (top Hessian eig.)", True),
    "lam_k": ("λ_K¹", r"$\lambda_K^1$ (top grad. cov. eig.)", True),
    "tr_k": ("Tr K", r"$\mathrm{Tr}\,K$", True),
    "rho": ("glass ρ", r"glass density $\rho$", True),
    "hess": ("Hess. diag", r"mean $|H_{ii}|$ estimate", True),
    "ntk_move": ("NTK move", r"NTK change $\|K_t-K_0\|/\|K_0\|$", True),
    "ntk": ("NTK dist.", r"NTK distance $1-\cos(K_t,K_0)$", True),
    "cka": ("CKA", "CKA to init (last hidden)", False),
}


def _half_decades(low_exponent: float) -> tuple[float, ...]:
    """Five rates half a decade apart from ``10**low_exponent``."""
    return tuple(float(f"{10 ** (low_exponent + k / 2):.3g}") for k in range(5))


DEFAULT_GRIDS = (("sgd", _half_decades(-2)), ("sgd-mom", _half_decades(-2.5)), ("adam", _half_decades(-3.5)),
                 ("kfac-half", _half_decades(-2)), ("kfac-1", _half_decades(-3)), ("alice", _half_decades(-3)),
                 ("gn", _half_decades(-1.5)), ("rev-sgd", _half_decades(-2)), ("rev-adam", _half_decades(-3.5)))


@dataclass(frozen=True)
class Config:
    dataset: str = "mnist1d"          # "mnist1d" | "cifar10" (local folder)
    data_folder: str = "data"
    num_samples: int = 5000           # MNIST-1D examples generated (80 % train, 20 % test)
    n_val: int = 500                  # validation examples held out of the training split
    width: int = 128                  # MLP hidden width = reversible feature width
    depth: int = 3                    # MLP weight matrices (2 hidden layers)
    rev_depth: int = 2                # coupling blocks (each has two hidden half-maps: depth-matched)
    rev_expansion: int = 128          # ≥ 2 × batch_size: exact GN's per-block solves are exact
    batch_size: int = 64
    budget: int = 400                 # gradient evaluations per reported run
    select_budget: int = 200          # gradient evaluations per learning-rate selection run
    probe_every: int = 25             # steps between lens probes
    probe_n: int = 256                # probe subset (training loss and every curvature lens)
    ntk_n: int = 32                   # examples for the NTK and the CKA
    # tested units: 8 (chosen for the paired bootstrap of two medians, the findings' first statistic; the
    # median of per-seed differences that replaced it decides from 6, by its exact order-statistic interval)
    seeds: int = 8
    select_seeds: int = 1
    lr_grids: tuple = DEFAULT_GRIDS
    kfac_damping: float = 0.1          # Tikhonov δ on both factors: (B + δ)^−α ∇W (A + δ)^−α
    kfac_update_every: int = 10
    sigma: float = 1e-3               # glass / Hessian-diagonal perturbation scale
    glass_samples: int = 1
    lanczos_tol: float = 1e-2


PROFILES = {
    "quick": Config(),
    "full": Config(dataset="cifar10", n_val=5000, width=512, rev_expansion=512, batch_size=256, budget=5000,
                   select_budget=1500, probe_every=250, probe_n=512, ntk_n=64, seeds=8, select_seeds=2,
                   glass_samples=2),
    # tiny: every code path in seconds (tests); 2 seeds, so its findings are inconclusive by construction
    "smoke": Config(num_samples=400, n_val=60, width=10, rev_expansion=32, batch_size=16, budget=16, select_budget=8,
                    probe_every=8, probe_n=32, ntk_n=8, seeds=2, lanczos_tol=1e-1,
                    lr_grids=tuple((name, lrs[2:3]) for name, lrs in DEFAULT_GRIDS), kfac_update_every=4),
}


# --------------------------------------------------------------------------- data, models, optimizers
@functools.lru_cache(maxsize=2)
def _load(dataset: str, data_folder: str, num_samples: int, n_val: int, probe_n: int, device: str) -> dict:
    if dataset == "mnist1d":
        from curvnb.data import load_mnist1d
        xtr, ytr, xte, yte = load_mnist1d(num_samples, seed=42, device=device)
    elif dataset == "cifar10":
        from curvnb.data.local import load_cifar10  # raises a clear error naming the folder if missing
        xtr, ytr, xte, yte = load_cifar10(data_folder or None)
        xtr, xte = xtr.flatten(1), xte.flatten(1)
        mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
        xtr, xte, ytr, yte = ((xtr - mean) / std).to(device), ((xte - mean) / std).to(device), ytr.to(device), yte.to(device)
    else:
        raise ValueError(f"unknown dataset {dataset!r}: allowed values are 'mnist1d', 'cifar10'")
    if not 0 < n_val < len(xtr) - probe_n:
        raise ValueError(f"n_val={n_val} must leave more than probe_n={probe_n} training examples")
    perm = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(7)).to(xtr.device)
    val, fit = perm[:n_val], perm[n_val:]
    x, y = xtr[fit], ytr[fit]
    return {"train": (x, y), "val": (xtr[val], ytr[val]), "test": (xte, yte), "probe": (x[:probe_n], y[:probe_n])}


def load_data(config: Config, device: torch.device) -> dict:
    """``train`` (minus validation), ``val``, ``test`` and the fixed ``probe`` subset of ``train``."""
    return _load(config.dataset, config.data_folder, config.num_samples, config.n_val, config.probe_n, str(device))


def grid(config: Config, name: str) -> tuple[float, ...]:
    """The learning-rate grid of tuned optimizer ``name``."""
    grids = dict(config.lr_grids)
    if name not in grids:
        raise ValueError(f"no learning-rate grid for {name!r}: grids exist for {', '.join(grids)}")
    return tuple(grids[name])


def make_model(config: Config, name: str, in_dim: int, seed: int, device: torch.device) -> nn.Module:
    """The MLP, or for a reversible-net run the :class:`ReversibleNet`, initialized from the derived
    ``seed`` (all 64 bits: :func:`curvnb.seeds.torch_generator`)."""
    if name in REVERSIBLE:
        return ReversibleNet(in_dim, NUM_CLASSES, width=config.width, expansion=config.rev_expansion,
                             depth=config.rev_depth, generator=torch_generator(seed)).to(device)
    return deep_mlp(config.depth, config.width, in_dim, NUM_CLASSES, generator=torch_generator(seed), device=device)


LOSS = nn.CrossEntropyLoss()


def make_optimizer(config: Config, name: str, model: nn.Module, lr: float, seed: int) -> torch.optim.Optimizer:
    """The optimizer of run or tuned name ``name`` at rate ``lr``."""
    base = BASE.get(name, name)
    if base in ("sgd", "rev-sgd"):
        return torch.optim.SGD(model.parameters(), lr=lr)
    if base == "sgd-mom":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    if base in ("adam", "rev-adam"):
        return torch.optim.Adam(model.parameters(), lr=lr)
    if base in ("kfac-half", "kfac-1"):
        return BlockDiagonalNaturalGradient(model, lr, 0.5 if base == "kfac-half" else 1.0, damping=config.kfac_damping,
                                            loss="cross_entropy", update_every=config.kfac_update_every,
                                            on_nonfinite="mark")
    if base == "alice":   # its Rademacher draws from the derived seed, all 64 bits
        opt = Alice(model.parameters(), lr=lr)
        opt.generator = torch_generator(seed)
        return opt
    if base == "gn":
        return ExactGaussNewton(model, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}: allowed values are {', '.join(RUNS + TUNED)}")


def evaluation_counts(config: Config, name: str, steps: int) -> np.ndarray:
    """Gradient evaluations spent after 0, 1, …, ``steps`` steps (see the module docstring)."""
    n = np.arange(steps + 1)
    base = BASE.get(name, name)
    if base in ("kfac-half", "kfac-1"):   # a factor refresh before steps 1, u+1, 2u+1, …: C backward passes
        return n + NUM_CLASSES * -(-n // config.kfac_update_every)
    if base == "alice":
        probe = Alice([torch.zeros(1, requires_grad=True)])
        return np.concatenate([[0], np.cumsum([3 if probe.is_curvature_step(k) else 1 for k in range(1, steps + 1)])])
    return n


def steps_within(config: Config, name: str, budget: int) -> int:
    """The most steps whose gradient evaluations fit in ``budget``."""
    counts = evaluation_counts(config, name, budget)
    return int(np.searchsorted(counts, budget, side="right") - 1)


def batches(data: tuple[torch.Tensor, torch.Tensor], batch_size: int, generator: torch.Generator):
    """Mini-batches without replacement, a fresh permutation per epoch, from ``generator`` (the
    run's own data-order stream: :func:`curvnb.train.train` would seed its order with 32 bits)."""
    x, y = data
    while True:
        perm = torch.randperm(len(x), generator=generator).to(x.device)
        for k in range(0, len(x) - batch_size + 1, batch_size):
            idx = perm[k:k + batch_size]
            yield x[idx], y[idx]


def make_step(name: str, train_seconds: list[float], batch_iter=None) -> Callable:
    """``step_fn`` for :func:`curvnb.train.train` (each optimizer's own step call); it adds the
    step's wall time to ``train_seconds[0]`` and returns the batch loss (NaN when a step is refused).
    With ``batch_iter`` (:func:`batches`) the step trains on its batches instead of the loop's."""
    base = BASE.get(name, name)

    def step(model: nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor) -> float:
        if batch_iter is not None:
            xb, yb = next(batch_iter)
        tic = time.perf_counter()
        try:
            if base == "gn":
                return float(opt.step(xb, yb))

            def closure() -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                loss = LOSS(model(xb), yb)
                loss.backward()
                return loss
            if base == "alice":
                try:
                    return float(opt.step(closure))
                except FloatingPointError:   # Alice refuses a non-finite step: the run diverged
                    return float("nan")
            loss = closure()
            if base in ("kfac-half", "kfac-1"):
                try:
                    opt.step(xb)
                except torch.linalg.LinAlgError:   # factors of non-finite parameters: the run diverged
                    return float("nan")
                return float("nan") if opt.diverged else loss.item()
            opt.step()
            return loss.item()
        finally:
            train_seconds[0] += time.perf_counter() - tic
    return step


# --------------------------------------------------------------------------- lenses
def representation(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last hidden representation: the MLP's last hidden layer, the reversible net's last features."""
    with torch.no_grad():
        if isinstance(model, ReversibleNet):
            return model.features(x)
        *_, last = hidden_states([layer.weight[None] for layer in model.layers], x, activation=model.activation)
        return last[0]


def layer_grad_norms(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> list[float]:
    """‖∇_W L‖ of every trainable weight matrix (biases skipped), input to output."""
    params = [p for p in model.parameters() if p.requires_grad]
    _, g = loss_and_grad(model, LOSS, data)
    return [float(t.norm()) for p, t in zip(params, unflatten_like(g, params)) if p.dim() >= 2]


def lens_probe(config: Config, data: dict, train_seconds: list[float], seed: int) -> Callable[[nn.Module], dict]:
    """``probe(model) -> {lens: value}`` for :func:`curvnb.train.train`; the NTK and representation of
    the first call are the references of the kernel distance and the CKA."""
    probe = data["probe"]
    x_ntk = probe[0][:config.ntk_n]
    ref: dict[str, torch.Tensor] = {}

    def fn(model: nn.Module) -> dict:
        kernel = empirical_ntk(model, x_ntk, mode="trace").detach()
        rep = representation(model, x_ntk)
        if not ref:
            ref["K0"], ref["R0"] = kernel, rep
        test = evaluate(model, LOSS, data["test"])
        glass = gradient_variation(model, LOSS, probe, [config.sigma], num_samples=config.glass_samples, seed=seed)
        return {"test_loss": test["loss"], "test_acc": test["accuracy"],
                "lam_h": float(hessian_eigenvalues(model, LOSS, probe, k=1, tol=config.lanczos_tol, seed=seed).eigenvalues[0]),
                "lam_k": float(gradient_covariance_eigenvalues(model, LOSS, probe, k=1)[0]),
                "tr_k": gradient_covariance_trace(model, LOSS, probe),
                "rho": float(glass["rho"][0]), "hess": float(glass["hess"][0]),
                "ntk_move": ntk_relative_change(ref["K0"], kernel),
                "ntk": ntk_distance(ref["K0"], kernel), "cka": linear_cka(ref["R0"], rep),
                "train_seconds": train_seconds[0]}
    return fn


# --------------------------------------------------------------------------- runs
def train_one(config: Config, *, device: torch.device, seed: int, name: str, lr: float, role: str, unit: int,
              budget: int, lenses: bool) -> dict:
    """One run of ``name`` at ``lr``, unit ``unit`` of role ``role`` ("test": a tested run;
    "selection": a rate-selection run), for ``budget`` gradient evaluations. Its initialization,
    data order and optimizer noise come from the role's streams at (chapter ``seed``, ``unit``).

    With ``lenses`` every lens is probed every ``probe_every`` steps (training loss on the probe
    subset); without, only the validation loss at the start and the end (learning-rate selection)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: allowed values are {', '.join(map(repr, ROLES))}")
    prefix = ROLES[role]
    data = load_data(config, device)
    x, y = data["train"]
    init = STREAMS.seed(seed, prefix + "init", unit)
    seed_torch(init)   # anything drawn from torch's global generator during construction
    model = make_model(config, name, x.shape[1], init, x.device)
    opt = make_optimizer(config, name, model, lr, seed=STREAMS.seed(seed, prefix + "optim", unit))
    steps = steps_within(config, name, budget)
    train_seconds = [0.0]
    step_fn = make_step(name, train_seconds, batches((x, y), config.batch_size,
                                                     STREAMS.torch(seed, prefix + "data", unit)))
    common = dict(steps=steps, batch_size=config.batch_size, seed=0, step_fn=step_fn, progress=False,
                  description=name)
    with single_thread(device):
        out: dict[str, Any] = {"name": name, "lr": lr, "role": role, "unit": unit, "init_seed": init, "steps": steps}
        if lenses:
            out["grad_norms_init"] = layer_grad_norms(model, data["probe"])
            probe = lens_probe(config, data, train_seconds, STREAMS.seed(seed, "probe", unit))
            hist = train(model, opt, LOSS, (x, y), probe_every=config.probe_every, probes={"lens": probe},
                         probe_data=data["probe"], **common)
        else:
            hist = train(model, opt, LOSS, (x, y), probe_every=max(steps, 1), probe_data=data["val"], **common)
    step = np.array(hist["step"])
    out.update(step=step, evals=evaluation_counts(config, name, steps)[step], loss=np.array(hist["loss"]),
               accuracy=np.array(hist["accuracy"]), diverged=bool(hist["diverged"]), seconds=train_seconds[0])
    if lenses:
        for key in hist["lens"][0]:
            out[key] = np.array([r[key] for r in hist["lens"]], dtype=float)
    return out


def unit_lists(config: Config) -> tuple[list[int], list[int]]:
    """(tested units, selection units): indices into the test and the selection streams."""
    return list(range(config.seeds)), list(range(config.select_seeds))


def _direct(config: Config, device: torch.device, seed: int) -> Callable:
    def cached(fn: Callable, key: str | None = None, **kwargs: Any) -> Any:
        return fn(config, device=device, seed=seed, **kwargs)
    return cached


def select_score(runs: Sequence[dict]) -> float:
    """The selection rule's score: mean final validation loss over the selection seeds (+∞ if any diverged)."""
    last = [r["loss"][-1] if not r["diverged"] else math.inf for r in runs]
    return float(np.mean(last)) if all(np.isfinite(last)) else math.inf


def choose_rates(config: Config, selection: dict) -> dict[str, float]:
    """Every run's learning rate from the selection runs ``{(tuned name, lr): [runs]}`` (the rules above)."""
    chosen = {name: min(grid(config, name), key=lambda lr: select_score(selection[(name, lr)])) for name in TUNED}
    stable = [lr for lr in grid(config, "sgd")
              if all(not r["diverged"] and np.isfinite(r["loss"][-1]) and r["loss"][-1] < r["loss"][0]
                     for r in selection[("sgd", lr)])]
    large = max(stable) if stable else min(grid(config, "sgd"))
    rates = {name: chosen[name] for name in RUNS if name in chosen}
    rates.update({"sgd-large": large, "sgd-small": large / 10, "adam-small": chosen["adam"] / 10})
    return rates


def run(config: Config, *, device: torch.device, seed: int, cached: Callable | None = None) -> dict:
    """Every run of the chapter. ``cached(fn, key=..., **kwargs)`` (e.g. ``Chapter.cached``) caches each
    (optimizer, rate, seed) run on its own; without it they are computed directly."""
    cached = cached or _direct(config, device, seed)
    units, select_units = unit_lists(config)
    selection = {(name, lr): [cached(train_one, key=f"select-{name}-{lr:g}-{u}", name=name, lr=lr, role="selection",
                                     unit=u, budget=config.select_budget, lenses=False) for u in select_units]
                 for name in TUNED for lr in grid(config, name)}
    rates = choose_rates(config, selection)
    runs = {name: [cached(train_one, key=f"run-{name}-{u}", name=name, lr=rates[name], role="test", unit=u,
                          budget=config.budget, lenses=True) for u in units] for name in RUNS}
    results = {"config": config, "seed": seed, "units": units, "select_units": select_units, "rates": rates,
               "runs": runs,
               "selection": {k: [{"loss": r["loss"], "diverged": r["diverged"]} for r in v] for k, v in selection.items()}}
    results["matched"] = matched(results)
    return results


def run_chapter(ch) -> dict:
    """:func:`run` with every piece cached on disk through the chapter ``ch``."""
    return run(ch.config, device=ch.device, seed=ch.seed, cached=ch.cached)


# --------------------------------------------------------------------------- comparisons
def target_loss(runs: dict) -> float:
    """1.05 × the largest final training loss over every run and seed (diverged runs excluded)."""
    finals = [r["loss"][-1] for rs in runs.values() for r in rs if not r["diverged"] and np.isfinite(r["loss"][-1])]
    return 1.05 * max(finals)


def first_below(loss: np.ndarray, target: float) -> int:
    """Index of the first probe whose loss is ≤ ``target`` (−1 if none)."""
    hit = np.flatnonzero(np.asarray(loss) <= target)
    return int(hit[0]) if len(hit) else -1


def matched(results: dict) -> dict:
    """Per run: the matched probe index per seed and every lens there."""
    target = target_loss(results["runs"])
    out: dict[str, Any] = {"target": target, "index": {}, "values": {}}
    for name, rs in results["runs"].items():
        idx = [first_below(r["loss"], target) for r in rs]
        out["index"][name] = idx
        vals: dict[str, list[float]] = {}
        for key in (*LENSES, "evals", "train_seconds"):
            vals[key] = [float(r[key][i]) if i >= 0 else math.nan for r, i in zip(rs, idx)]
        out["values"][name] = vals
    return out
