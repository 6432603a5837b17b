"""The computation of the jastrzebski2020 chapter: configuration, profiles and the cached runs.

The result cache keys on this module and the ``curvnb`` modules it imports
(:func:`curvnb.cache.compute_sources`): it must not import report code (:mod:`curvnb.studies.jastrzebski2020.report`,
claims, figures, widgets), so that editing those reuses cached results.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from curvnb.cache import cache_key
from curvnb.seeds import declare_streams, seed_torch
from curvnb.curvature import (flatten, gradient_covariance_eigenvalues, hessian_eigenvalues, loss_and_grad,
                              trainable_parameters, unflatten_like)
from curvnb.train import evaluate, train


# Every random draw of a run: unit r of chapter seed k draws from (k, stream, r). All runs of one unit
# (the SGD sweeps and the GD run) share its initialisation, probe subsets, batch order and Lanczos
# start. There is no rate selection in this chapter, hence no selection stream.
STREAMS = declare_streams("jastrzebski2020", {"init": ("test", 64), "probe-subsets": ("test", 64),
                                              "batches": ("test", 64), "lanczos": ("test", 64)})


DATASETS = ("mnist1d", "cifar10")
MODELS = ("cnn1d", "simplecnn")
EOS_LOSSES = ("mse", "cross_entropy")


@dataclass(frozen=True)
class Config:
    dataset: str = "mnist1d"                 # "mnist1d" (generated offline) | "cifar10" (local folder)
    data_folder: str = ""                    # CIFAR-10 folder ("": $CURVNB_DATA/cifar10 or data/cifar10)
    num_samples: int = 5000                  # MNIST-1D: 4000 train / 1000 test
    model: str = "cnn1d"                     # "cnn1d" | "simplecnn"
    # independent units (seeds): unit r draws from the declared streams (chapter seed, stream, r), one
    # cache entry each; 6 = the fewest with which a median has a 95 % interval (exact order statistics)
    seeds: int = 6
    lrs: tuple[float, ...] = (0.05, 0.1, 0.2)  # learning-rate sweep at S = batch_size
    batch_size: int = 32
    batch_sizes: tuple[int, ...] = (16, 128)   # batch-size sweep at η = batch_lr
    batch_lr: float = 0.1
    bn_lrs: tuple[float, ...] = ()           # SimpleCNN-with-BN sweep (full profile)
    epochs: int = 15
    # (S, epochs) overrides: at equal epochs a large batch takes far fewer steps (S = 128: 8× fewer
    # than S = 16) and is still under-trained after 15 epochs
    batch_epochs: tuple[tuple[int, int], ...] = ((128, 45),)
    probes_per_epoch: int = 2
    # (S, probes per epoch) overrides: the 45-epoch S = 128 run is probed once per epoch (still ≥ 45
    # probes for claim 5's running median; its probes were a third of a unit's cost)
    batch_probes: tuple[tuple[int, int], ...] = ((128, 1),)
    early_probes: int = 3                    # extra probes inside the first probe interval
    hessian_examples: int = 500
    hessian_k: int = 1
    hessian_tol: float = 1e-2
    cov_examples: int = 256
    cov_cutoff: float = 1e-6                 # λ_K^* = smallest eigenvalue of K above cov_cutoff·λ_K¹
    alpha_epochs: float = 4.0                # α* is probed in the first epochs of the first seed (figure only)
    eos_examples: int = 256                  # full-batch GD (edge of stability) on this subset
    eos_lr: float = 0.1
    eos_steps: int = 600
    eos_probe_every: int = 10
    eos_loss: str = "mse"                    # "mse": ½ Σ_classes (f − y)², mean over examples, one-hot y
    checkpoints: bool = False                # resumable per-run checkpoints under _build/checkpoints
    # on CPU, the runs of a seed go to this many single-threaded worker processes (the models are
    # too small for intra-op threads to use two cores; separate runs do); 1: in this process
    workers: int = 2


PROFILES = {
    "quick": Config(),
    "full": Config(dataset="cifar10", model="simplecnn", seeds=6, lrs=(0.001, 0.01, 0.1), batch_size=128,
                   batch_sizes=(32, 512), batch_lr=0.01, bn_lrs=(0.001, 0.01, 0.1, 1.0), epochs=200,
                   batch_epochs=(), batch_probes=(), probes_per_epoch=1, early_probes=4, hessian_examples=2250, hessian_k=5,
                   hessian_tol=1e-3, cov_examples=1000, eos_examples=1000, eos_lr=0.02, eos_steps=3000,
                   eos_probe_every=25, checkpoints=True, workers=1),
    # tiny: every code path in seconds (tests); its verdicts are no evidence
    "smoke": Config(seeds=2, num_samples=600, lrs=(0.05, 0.2), batch_sizes=(16, 64), batch_epochs=((64, 3),), epochs=2,
                    early_probes=2, hessian_examples=100, cov_examples=32, eos_examples=64, eos_steps=20,
                    eos_probe_every=5, alpha_epochs=1.0),
}


# --------------------------------------------------------------------------- data and models
def load_data(config: Config, device: torch.device, seed: int = 42):
    """``(x_train, y_train, x_test, y_test)`` for ``config.dataset`` (the same data for every run seed).

    Kept in memory for the life of the process (MNIST-1D takes seconds to generate)."""
    return _load_data(config.dataset, config.data_folder, config.num_samples, str(device), seed)


@functools.lru_cache(maxsize=2)
def _load_data(dataset: str, data_folder: str, num_samples: int, device: str, seed: int):
    if dataset == "mnist1d":
        from curvnb.data.mnist1d import load_mnist1d

        return load_mnist1d(num_samples, seed=seed, device=device)
    if dataset == "cifar10":
        from curvnb.data.local import load_cifar10  # raises a clear error naming the folder if missing

        xtr, ytr, xte, yte = load_cifar10(data_folder or None)
        mean, std = xtr.mean(dim=(0, 2, 3), keepdim=True), xtr.std(dim=(0, 2, 3), keepdim=True)
        return tuple(t.to(device) for t in ((xtr - mean) / std, ytr, (xte - mean) / std, yte))
    raise ValueError(f"unknown dataset {dataset!r}: allowed values are {', '.join(map(repr, DATASETS))}")


def make_model(config: Config, x_example: torch.Tensor, *, batch_norm: bool = False) -> nn.Module:
    """A freshly initialised model for ``config.model`` (initialise under a fixed torch seed)."""
    from curvnb.models.cnn import CNN1D, SimpleCNN

    if config.model == "cnn1d":
        if batch_norm:
            raise ValueError("the batch-norm sweep needs model='simplecnn'")
        return CNN1D(length=x_example.shape[-1])
    if config.model == "simplecnn":
        return SimpleCNN(in_channels=x_example.shape[1], image_size=x_example.shape[-1], batch_norm=batch_norm)
    raise ValueError(f"unknown model {config.model!r}: allowed values are {', '.join(map(repr, MODELS))}")


class HalfSquaredError(nn.Module):
    """L = ½ Σ_classes (f − onehot(y))², averaged over examples (integer class targets ``y``).

    The squared loss of Cohen et al. (2021), under which full-batch GD sits at the edge of
    stability; with integer targets :func:`curvnb.train.evaluate` still reports accuracy."""

    reduction = "mean"

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        onehot = nn.functional.one_hot(targets, outputs.shape[-1]).to(outputs.dtype)
        return 0.5 * (outputs - onehot).pow(2).sum(-1).mean()


def eos_loss_fn(config: Config) -> nn.Module:
    if config.eos_loss == "mse":
        return HalfSquaredError()
    if config.eos_loss == "cross_entropy":
        return nn.CrossEntropyLoss()
    raise ValueError(f"unknown eos_loss {config.eos_loss!r}: allowed values are {', '.join(map(repr, EOS_LOSSES))}")


# --------------------------------------------------------------------------- probes
def top_hessian_probe(loss_fn, data, *, k: int, tol: float, seed: int):
    """Probe: the top-k Hessian eigenvalues of the loss on ``data`` (Lanczos to relative residual ``tol``,
    fixed start vector)."""
    def probe(model: nn.Module) -> list[float]:
        # "reuse" (double backward through a graph built once): a probe needs only ~5–30 products, too
        # few to repay the tracing of method="linearize" (≈0.45 s per probe on this CNN, measured)
        res = hessian_eigenvalues(model, loss_fn, data, k=k, tol=tol, seed=seed, method="reuse")
        return [float(v) for v in res.eigenvalues]
    return probe


def covariance_probe(loss_fn, data, cutoff: float = 1e-6, float64: bool = True):
    """Probe: the whole nonzero spectrum of K from per-example gradients of ``data``.

    K = (1/N) Σ (g_i − ḡ)(g_i − ḡ)ᵀ has rank ≤ N − 1. Returns λ_K¹, Tr K (the sum of the spectrum),
    ``lambda_star`` (the (N−1)-th eigenvalue, which sits at float64 rounding once examples are
    fitted), ``lambda_star_rel`` (the smallest eigenvalue above ``cutoff``·λ_K¹, the conditioning
    that survives rounding), ``rank_rel`` (how many eigenvalues lie above that cutoff) and the top 5.
    With ``float64=False`` the model's own precision is used: λ_K¹ and Tr K are as good, but the
    small eigenvalues are not, so ``lambda_star``, ``lambda_star_rel`` and ``rank_rel`` are NaN."""
    x, y = data
    if float64:
        x = x.double() if torch.is_floating_point(x) else x
        y = y.double() if torch.is_floating_point(y) else y

    def probe(model: nn.Module) -> dict[str, Any]:
        m = copy.deepcopy(model).double() if float64 else model
        vals = gradient_covariance_eigenvalues(m, loss_fn, (x, y), k=len(x)).double().cpu().numpy()
        out = {"lambda_1": float(vals[0]), "trace": float(vals.sum()), "top": [float(v) for v in vals[:5]],
               "lambda_star": float("nan"), "lambda_star_rel": float("nan"), "rank_rel": float("nan")}
        if float64:
            above = vals[vals > cutoff * vals[0]]
            out.update(lambda_star=float(vals[len(x) - 2]), rank_rel=float(len(above)),
                       lambda_star_rel=float(above.min()) if len(above) else float("nan"))
        return out
    return probe


def accuracy_probe(loss_fn, data):
    """Probe: accuracy (and loss) of the model on ``data`` (e.g. the test set)."""
    def probe(model: nn.Module) -> dict[str, float]:
        return evaluate(model, loss_fn, data)
    return probe


ALPHA_GRID = np.geomspace(0.03, 100.0, 25)  # step multiples tried for α*


def overshoot_probe(loss_fn, eval_data, batch, lr: float, grid: np.ndarray = ALPHA_GRID):
    """Probe: α* = the smallest α on ``grid`` with L(θ − α·Δ) ≥ 1.2·L(θ), Δ = η·∇L_batch(θ).

    L is the loss on ``eval_data``; ``batch`` is a fixed mini-batch standing in for the SGD step
    (the paper uses the actual next step). A small α* means the step overshoots along its own
    direction (high curvature along it); NaN if no α on the grid raises the loss by 20 %."""
    def probe(model: nn.Module) -> float:
        params = trainable_parameters(model)
        theta = flatten([p.detach() for p in params]).clone()
        _, g = loss_and_grad(model, loss_fn, batch)
        step = lr * g
        base = evaluate(model, loss_fn, eval_data)["loss"]
        alpha_star = float("nan")
        try:
            with torch.no_grad():
                for alpha in grid:
                    for p, v in zip(params, unflatten_like(theta - float(alpha) * step, params)):
                        p.copy_(v)
                    if evaluate(model, loss_fn, eval_data)["loss"] >= 1.2 * base:
                        alpha_star = float(alpha)
                        break
        finally:
            with torch.no_grad():
                for p, v in zip(params, unflatten_like(theta, params)):
                    p.copy_(v)
        return alpha_star
    return probe


def _label(lr: float, batch_size: int, bn: bool = False) -> str:
    return f"η={lr:g}, S={batch_size}" + (", BN" if bn else "")


def epochs_for(config: Config, batch_size: int) -> int:
    """Training epochs of a run with batch size ``batch_size`` (``config.batch_epochs`` overrides)."""
    return dict(config.batch_epochs).get(batch_size, config.epochs)


def probes_for(config: Config, batch_size: int) -> int:
    """Probes per epoch of a run with batch size ``batch_size`` (``config.batch_probes`` overrides)."""
    return dict(config.batch_probes).get(batch_size, config.probes_per_epoch)


def run_specs(config: Config) -> list[dict[str, Any]]:
    """Every SGD run of the study: the LR sweep, the batch-size sweep and the BN sweep (no duplicates)."""
    specs = [{"lr": lr, "batch_size": config.batch_size, "bn": False, "sweep": "lr"} for lr in config.lrs]
    for s in config.batch_sizes:
        specs.append({"lr": config.batch_lr, "batch_size": s, "bn": False, "sweep": "batch"})
    specs += [{"lr": lr, "batch_size": config.batch_size, "bn": True, "sweep": "bn"} for lr in config.bn_lrs]
    seen, unique = set(), []
    for s in specs:
        key = (s["lr"], s["batch_size"], s["bn"])
        if key not in seen:
            seen.add(key)
            unique.append({**s, "label": _label(*key), "epochs": epochs_for(config, s["batch_size"]),
                           # λ_K^* needs K in float64; only the smallest and largest η of the LR sweep use it
                           # (claim 8 and its figure). λ_K¹ and Tr K are well conditioned: float32 elsewhere,
                           # ≈2.4× cheaper per probe
                           "cov_float64": s["sweep"] == "lr" and s["lr"] in (min(config.lrs), max(config.lrs)),
                           # α* is shown for the LR sweep only
                           "alpha_probe": s["sweep"] == "lr"})
    return unique


def _checkpoint_path(config: Config, seed: int, unit: int, device: torch.device, name: str) -> Path | None:
    if not config.checkpoints:
        return None
    from curvnb.paths import build_dir

    key = cache_key(config=config, seed=seed, unit=unit, device=device.type, run=name)
    return build_dir() / "checkpoints" / "jastrzebski2020" / f"{name.replace(' ', '').replace(',', '_')}-{key}.pt"


def _floats(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _arrays(history: dict[str, Any], steps_per_epoch: float) -> dict[str, Any]:
    """Plain NumPy arrays from a ``train`` history with the curvature probes."""
    out = {"step": np.array(history["step"]), "epoch": np.array(history["step"]) / steps_per_epoch,
           "loss": np.array(history["loss"]), "accuracy": np.array(history.get("accuracy", [])),
           "step_loss": np.array(history["step_loss"]), "diverged": bool(history["diverged"]),
           "seconds": float(history["seconds"])}
    if "hessian" in history:
        out["lambda_h"] = np.array([v[0] for v in history["hessian"]])
        out["lambda_h_top"] = np.array(history["hessian"])
    if "alpha_star" in history:
        out["alpha_star"] = _floats(history["alpha_star"])
    if "test" in history:
        out["test_accuracy_probe"] = np.array([t["accuracy"] for t in history["test"]])
    if "covariance" in history:
        cov = history["covariance"]
        out["lambda_k"] = np.array([c["lambda_1"] for c in cov])
        out["trace_k"] = np.array([c["trace"] for c in cov])
        out["lambda_k_star"] = np.array([c["lambda_star"] for c in cov])
        out["lambda_k_star_rel"] = np.array([c["lambda_star_rel"] for c in cov])
        out["rank_k_rel"] = np.array([c["rank_rel"] for c in cov])
    return out


def run_sgd(config: Config, *, device: torch.device, seed: int, spec: dict[str, Any], data=None,
            alpha: bool = True, progress: bool = True, unit: int = 0) -> dict[str, Any]:
    """One SGD run with curvature probes; returns arrays and final train/test accuracy.

    Unit ``unit`` of chapter seed ``seed`` sets the initialisation (shared by every run of the unit),
    the batch order, the probe subsets and the Lanczos start (:data:`STREAMS`). ``alpha=False`` skips the α* probe (only the figure of the first seed uses it; it
    is also skipped where ``spec["alpha_probe"]`` is false)."""
    xtr, ytr, xte, yte = data if data is not None else load_data(config, device)
    loss_fn = nn.CrossEntropyLoss()
    perm = torch.randperm(len(xtr), generator=STREAMS.torch(seed, "probe-subsets", unit)).to(xtr.device)
    hess_data = (xtr[perm[:config.hessian_examples]], ytr[perm[:config.hessian_examples]])
    cov_idx = perm[config.hessian_examples:config.hessian_examples + config.cov_examples]
    cov_data = (xtr[cov_idx], ytr[cov_idx])
    seed_torch(STREAMS.seed(seed, "init", unit))  # the same initialisation for every run of this unit
    model = make_model(config, xtr, batch_norm=spec["bn"]).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=spec["lr"])
    steps_per_epoch = len(xtr) // spec["batch_size"]
    probe_every = max(1, steps_per_epoch // probes_for(config, spec["batch_size"]))
    early = [int(round(probe_every * i / (config.early_probes + 1))) for i in range(1, config.early_probes + 1)]
    step_batch = (hess_data[0][:spec["batch_size"]], hess_data[1][:spec["batch_size"]])
    probes = {"hessian": top_hessian_probe(loss_fn, hess_data, k=config.hessian_k, tol=config.hessian_tol,
                                           seed=STREAMS.seed(seed, "lanczos", unit)),
              "covariance": covariance_probe(loss_fn, cov_data, cutoff=config.cov_cutoff,
                                             float64=spec.get("cov_float64", True)),
              "test": accuracy_probe(loss_fn, (xte, yte))}
    probe_when = {}
    alpha = alpha and spec.get("alpha_probe", True)
    if alpha:
        probes["alpha_star"] = overshoot_probe(loss_fn, hess_data, step_batch, spec["lr"])
        alpha_until = config.alpha_epochs * steps_per_epoch
        probe_when["alpha_star"] = lambda step: step <= alpha_until
    history = train(model, opt, loss_fn, (xtr, ytr), steps=spec["epochs"] * steps_per_epoch,
                    batch_size=spec["batch_size"], probe_every=probe_every, probe_at=[s for s in early if s > 0],
                    probes=probes, probe_when=probe_when, seed=STREAMS.seed(seed, "batches", unit), probe_data=hess_data,
                    progress=progress, description=f"seed {seed}, unit {unit}: {spec['label']}",
                    checkpoint=_checkpoint_path(config, seed, unit, device, spec["label"]))
    out = {**spec, **_arrays(history, steps_per_epoch)}
    if not alpha:
        out["alpha_star"] = np.full(len(out["step"]), np.nan)
    out["final_train_accuracy"] = evaluate(model, loss_fn, (xtr, ytr))["accuracy"]
    out["test_accuracy"] = evaluate(model, loss_fn, (xte, yte))["accuracy"]
    return out


def run_eos(config: Config, *, device: torch.device, seed: int, data=None, progress: bool = True,
            unit: int = 0) -> dict[str, Any]:
    """Full-batch GD on ``eos_examples`` training examples, sharpness every ``eos_probe_every`` steps
    (unit ``unit`` of chapter seed ``seed``: the unit's initialisation and Lanczos start)."""
    xtr, ytr = (data if data is not None else load_data(config, device))[:2]
    x, y = xtr[:config.eos_examples], ytr[:config.eos_examples]
    loss_fn = eos_loss_fn(config)
    seed_torch(STREAMS.seed(seed, "init", unit))
    model = make_model(config, x).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.eos_lr)
    hessian = top_hessian_probe(loss_fn, (x, y), k=1, tol=config.hessian_tol, seed=STREAMS.seed(seed, "lanczos", unit))
    history = train(model, opt, loss_fn, (x, y), steps=config.eos_steps, batch_size=len(x),  # full batch: no order
                    probe_every=config.eos_probe_every, probe_data=(x, y), seed=0, progress=progress,
                    probes={"hessian": hessian}, description=f"seed {seed}, unit {unit}: GD η={config.eos_lr:g}",
                    checkpoint=_checkpoint_path(config, seed, unit, device, "eos"))
    return {"lr": config.eos_lr, "examples": len(x), "loss_name": config.eos_loss, **_arrays(history, 1.0)}


_POOL: Any = None


def _init_worker() -> None:
    torch.set_num_threads(1)


def _worker_pool(workers: int):
    """A process pool of ``workers`` single-threaded workers, kept for the life of this process
    (spawned, so it is safe after torch has started its threads; started once, reused by every seed)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _POOL
    if _POOL is None or _POOL._max_workers != workers:
        if _POOL is not None:
            _POOL.shutdown(cancel_futures=True)
            _PENDING.clear()
        _POOL = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_init_worker)
    return _POOL


def _job(config: Config, seed: int, unit: int, spec: dict[str, Any] | None, data) -> dict[str, Any]:
    """One run of unit ``unit``: an SGD run (``spec``) or, with ``spec=None``, the full-batch GD run.
    α* is probed on unit 0 only (the figure)."""
    if spec is None:
        return run_eos(config, device=torch.device("cpu"), seed=seed, data=data, progress=False, unit=unit)
    return run_sgd(config, device=torch.device("cpu"), seed=seed, spec=spec, data=data, alpha=unit == 0,
                   progress=False, unit=unit)


def _expected_cost(config: Config, spec: dict[str, Any] | None, alpha: bool = False) -> float:
    """Rough CPU seconds of one quick-profile run (measured per probe and per step on this CNN), used
    only to queue the longest runs first so that both workers finish together."""
    if spec is None:
        return (config.eos_steps // config.eos_probe_every + 1) * 0.06 + config.eos_steps * 0.006
    steps = spec["epochs"] * int(0.8 * config.num_samples) // spec["batch_size"]
    probes = spec["epochs"] * probes_for(config, spec["batch_size"]) + config.early_probes + 1
    per_probe = 0.12 + (0.2 if spec.get("cov_float64", True) else 0.085)
    alpha_cost = 4.0 if alpha and spec.get("alpha_probe", True) else 0.0
    return probes * per_probe + steps * (0.0015 + 0.000027 * spec["batch_size"]) + alpha_cost


_PENDING: dict[tuple[str, int, int, int], Any] = {}  # (config key, chapter seed, unit, job index) -> Future


def _jobs(config: Config) -> list[dict[str, Any] | None]:
    """The runs of one seed: every SGD run spec, then ``None`` for the full-batch GD run."""
    return [*run_specs(config), None]


def _submit_remaining(config: Config, data, seed: int, replicate: int) -> None:
    """Queue the runs of units ``replicate, …, config.seeds − 1`` not queued yet, longest first over all
    of them: a later :func:`run_seed` call finds its runs already done or running, so the workers are
    never idle at the end of a unit. (Editing the code invalidates every unit's cache entry at once,
    so the later units are needed whenever an earlier one is.)"""
    pool = _worker_pool(config.workers)
    key = cache_key(config=config)
    todo = [(r, i, job) for r in range(replicate, config.seeds) for i, job in enumerate(_jobs(config))
            if (key, seed, r, i) not in _PENDING]
    for r, i, job in sorted(todo, key=lambda t: (-_expected_cost(config, t[2], t[0] == 0), t[0])):
        _PENDING[(key, seed, r, i)] = pool.submit(_job, config, seed, r, job, data)


def run_seed(config: Config, *, device: torch.device, seed: int, replicate: int = 0,
             progress: bool = True) -> dict[str, Any]:
    """Every SGD run and the GD run of unit ``replicate`` of chapter seed ``seed`` (one cache entry per
    unit; its random draws come from the streams (seed, stream, replicate), :data:`STREAMS`).

    On CPU with ``config.workers > 1`` the runs go to single-threaded worker processes, queued
    together with those of the remaining units (see :func:`_submit_remaining`). Each run is seeded on
    its own, so the result does not depend on which worker ran it or when."""
    from tqdm.auto import tqdm

    data = load_data(config, device)
    jobs = _jobs(config)
    done: dict[int, dict[str, Any]] = {}
    bar = tqdm(total=len(jobs), desc=f"unit {replicate}", leave=False, disable=not progress)
    if device.type == "cpu" and config.workers > 1:
        from concurrent.futures import as_completed

        _submit_remaining(config, data, seed, replicate)
        key = cache_key(config=config)
        futures = {_PENDING.pop((key, seed, replicate, i)): i for i in range(len(jobs))}
        for fut in as_completed(futures):
            done[futures[fut]] = fut.result()
            bar.update(1)
    else:
        for i, spec in enumerate(jobs):
            if spec is None:
                done[i] = run_eos(config, device=device, seed=seed, data=data, progress=progress, unit=replicate)
            else:
                done[i] = run_sgd(config, device=device, seed=seed, spec=spec, data=data, alpha=replicate == 0,
                                  progress=progress, unit=replicate)
            bar.update(1)
    bar.close()
    specs = jobs[:-1]
    runs = {spec["label"]: done[i] for i, spec in enumerate(specs)}
    return {"seed": seed, "unit": replicate, "runs": runs, "eos": done[len(specs)], "n_train": len(data[0]),
            "n_test": len(data[2])}


def combine(replicates: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The results of several units in one dict: ``replicates`` (one :func:`run_seed` result each),
    ``units``, the chapter ``seed``, and the first unit's ``runs`` and ``eos`` (what the trajectory
    figures show)."""
    if not replicates:
        raise ValueError("need at least one unit")
    first = replicates[0]
    return {"replicates": list(replicates), "seed": first["seed"], "units": [r["unit"] for r in replicates],
            "runs": first["runs"], "eos": first["eos"], "n_train": first["n_train"], "n_test": first["n_test"]}


def run(config: Config, *, device: torch.device, seed: int) -> dict[str, Any]:
    """All ``config.seeds`` units (uncached; the chapter caches each unit with :func:`run_seed`)."""
    return combine([run_seed(config, device=device, seed=seed, replicate=i) for i in range(config.seeds)])
