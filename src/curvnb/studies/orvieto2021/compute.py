"""The computation of the orvieto2021 chapter: configuration, profiles and the cached runs.

The result cache keys on this module and the ``curvnb`` modules it imports
(:func:`curvnb.cache.compute_sources`): it must not import report code (:mod:`curvnb.studies.orvieto2021.report`,
claims, figures, widgets), so that editing those reuses cached results.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from curvnb.config import single_thread
from curvnb.init_stats import (chain_descent, chain_log_products, grad_norms_over_depths, hessian_spectrum_at_init,
                               hessian_top_at_init, seed_batched_mlp, train_seeds)


#: Seeds of chapter seed k are k·SEED_STRIDE + i: independent sets for different chapter seeds.
SEED_STRIDE = 100_000


@dataclass(frozen=True)
class Config:
    # F1 / claim 1: the neural chain
    chain_depths: tuple[int, ...] = (5, 10, 20, 50)
    chain_samples: int = 200_000
    chain_claim_depth: int = 20
    # F2 / claims 2-3: first-layer gradient at init (d_in, n examples, MSE to N(0,1) targets)
    grad_depths: tuple[int, ...] = (8, 16, 32, 64, 128)
    relu_widths: tuple[int, ...] = (8, 16, 32, 64)
    linear_widths: tuple[int, ...] = (4, 16, 64)
    grad_seeds: int = 200                              # claim 2 asks ≥ 100, claim 3 ≥ 200
    d_in: int = 16
    n: int = 64
    slope_depths: tuple[int, ...] = (8, 16, 32, 64)    # claim 2: least-squares slope over these depths
    collapse_widths: tuple[int, ...] = (16, 32, 64)    # claim 3: tested widths (the others are reported)
    # F3 / claim 4: Hessian at init (linear/Xavier)
    hessian_width: int = 4
    hessian_depths: tuple[int, ...] = (8, 16, 32, 64)
    hessian_seeds: int = 50                            # claim 4 asks ≥ 50
    spectrum_depths: tuple[int, ...] = (4, 8, 16)
    spectrum_width: int = 4
    # F4 / claims 5-6: escape times on the chain
    balanced_depth: int = 6
    balanced_w0: tuple[float, ...] = (0.5, 0.3, 0.2)
    gd_lr: float = 0.1
    gd_lr_grid: tuple[float, ...] = (0.025, 0.05, 0.1, 0.2, 0.4)
    adam_lr: float = 0.01
    adam_lr_grid: tuple[float, ...] = (0.003, 0.01, 0.03)
    escape_steps: int = 10_000
    rescale_depth: int = 8
    rescale_seeds: int = 100
    rescale_scales: tuple[float, ...] = (1.0, 1e-2, 1e-4, 1e-8)
    rescale_steps: int = 3000
    adam_tiny_eps: float = 1e-30
    # F5 / claim 7: deep narrow MLP on a real classification task
    dataset: str = "digits"  # "digits" (ships with scikit-learn) or "fashion-mnist" (local folder)
    train_size: int = 0  # 0: the whole training split
    mlp_depth: int = 32
    mlp_width: int = 16
    batch_size: int = 128
    train_steps: int = 600
    sgd_lrs: tuple[float, ...] = (0.03, 0.1, 0.3)
    adam_lrs: tuple[float, ...] = (1e-3,)
    mlp_seeds: int = 5                                 # claim 7 asks ≥ 5 (trained nets per condition)
    arch_depths: tuple[int, ...] = (8, 16, 32, 64)
    arch_seeds: int = 50                               # gradient at init per architecture
    arch_examples: int = 0  # examples for the gradient at init (0: the whole training set)


PROFILES = {
    "quick": Config(),
    "full": Config(chain_samples=2_000_000, grad_depths=(8, 16, 32, 64, 128, 256), relu_widths=(8, 16, 32, 64, 128),
                   linear_widths=(4, 16, 64, 128), grad_seeds=1000, hessian_seeds=200,
                   hessian_depths=(8, 16, 32, 64, 128), rescale_seeds=1000, dataset="fashion-mnist", train_size=10_000,
                   train_steps=3000, sgd_lrs=(0.01, 0.03, 0.1, 0.3, 1.0), adam_lrs=(3e-4, 1e-3, 3e-3), mlp_seeds=10,
                   arch_depths=(8, 16, 32, 64, 128), arch_seeds=100, arch_examples=2000),
    # tiny: every code path in seconds (tests); its verdicts are no evidence (and its seed counts are
    # below what the claims ask)
    "smoke": Config(chain_samples=2000, grad_seeds=6, hessian_seeds=3, hessian_depths=(8, 16), spectrum_depths=(4,),
                    balanced_w0=(0.5,), gd_lr_grid=(0.1,), adam_lr_grid=(0.01,), escape_steps=300, rescale_seeds=8,
                    rescale_steps=200, train_size=256, mlp_depth=8, train_steps=20, sgd_lrs=(0.03, 0.1), mlp_seeds=3,
                    arch_depths=(8,), arch_seeds=4, arch_examples=128),
}

#: Architectures of F5 (keyword arguments of ``deep_mlp``); "BN" (BatchNorm alone) is only measured at init.
VARIANTS = {"plain": {}, "residual": {"residual": True}, "residual+BN": {"residual": True, "batchnorm": True},
            "BN": {"batchnorm": True}}


def seed_ids(config: Config, seed: int, count: int) -> list[int]:
    """The ``count`` initialisation seeds of chapter seed ``seed`` (disjoint across chapter seeds)."""
    return [SEED_STRIDE * int(seed) + i for i in range(count)]


def load_classification(config: Config, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split of ``config.dataset`` as flat, standardised float32 features and labels."""
    if config.dataset == "digits":
        from curvnb.data import load_digits_split
        x, y, _, _ = load_digits_split(seed=seed)
    elif config.dataset in ("fashion-mnist", "mnist"):
        from curvnb.data.local import load_mnist_like
        x, y, _, _ = load_mnist_like(name=config.dataset)
        x = x.flatten(1)
        x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    else:
        raise ValueError(f"unknown dataset {config.dataset!r}: allowed values are 'digits', 'fashion-mnist', 'mnist'")
    if config.train_size:
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:config.train_size]
        x, y = x[idx], y[idx]
    return x, y


# --------------------------------------------------------------------------- computation (cached pieces)
def _cpu_single_thread(fn: Callable[..., dict]) -> Callable[..., dict]:
    """Run a piece with one intra-op thread on the CPU: its batched matrices are small, and on a busy
    2-core machine spinning OpenMP threads cost several times the work (measured: 6× the CPU time)."""
    import functools

    @functools.wraps(fn)
    def wrapped(config: Config, *, device: torch.device, seed: int) -> dict:
        with single_thread(device):
            return fn(config, device=device, seed=seed)
    return wrapped


@_cpu_single_thread
def run_chain(config: Config, *, device: torch.device, seed: int) -> dict:
    """F1 / claim 1: ln|∏w| of many neural chains."""
    logs = chain_log_products(config.chain_depths + (config.chain_claim_depth,), config.chain_samples, seed=seed)
    return {"chain": logs}


@_cpu_single_thread
def run_gradients(config: Config, *, device: torch.device, seed: int) -> dict:
    """F2 / claims 2-3: first-layer squared gradient norm at init, (activation, width, depth) -> per-seed values.

    Every cell uses the same ``grad_seeds`` seeds (paired across cells), all seeds of a cell at once."""
    from tqdm.auto import tqdm

    seeds = seed_ids(config, seed, config.grad_seeds)
    rows = [("relu", "he", d) for d in config.relu_widths] + [("linear", "xavier", d) for d in config.linear_widths]
    grads = {}
    for act, init, d in tqdm(rows, desc="gradients at init", leave=False):
        by_depth = grad_norms_over_depths(config.grad_depths, d, seeds, activation=act, init=init, d_in=config.d_in,
                                          n=config.n, first_only=True)
        grads.update({(act, d, L): g[:, 0] for L, g in by_depth.items()})
    return {"grad_first": grads}


@_cpu_single_thread
def run_hessian(config: Config, *, device: torch.device, seed: int) -> dict:
    """F3 / claim 4: top |λ| of the Hessian at init over seeds (Lanczos); dense spectra of tiny nets."""
    from tqdm.auto import tqdm

    seeds = seed_ids(config, seed, config.hessian_seeds)
    top = {L: hessian_top_at_init(L, config.hessian_width, seeds, activation="linear", init="xavier",
                                  d_in=config.d_in, n=config.n)
           for L in tqdm(config.hessian_depths, desc="Hessian at init", leave=False)}
    spectra = {L: hessian_spectrum_at_init(L, config.spectrum_width, seed) for L in config.spectrum_depths}
    return {"hessian_top": top, "spectra": spectra}


@_cpu_single_thread
def run_escape(config: Config, *, device: torch.device, seed: int) -> dict:
    """F4 / claims 5-6: escape times on the balanced chain (deterministic) and the rescaling test."""
    Lb = config.balanced_depth
    gd_lrs = sorted(set(config.gd_lr_grid) | {config.gd_lr})
    adam_lrs = sorted(set(config.adam_lr_grid) | {config.adam_lr})
    esc: dict = {"gd": {}, "adam": {}}
    # Every (w0, learning rate) setting is one row of a batch (both rules act per row).
    for opt, lrs in (("gd", gd_lrs), ("adam", adam_lrs)):
        grid = [(w0, lr) for w0 in config.balanced_w0 for lr in lrs]
        w = torch.tensor([[float(w0)] * Lb for w0, _ in grid], dtype=torch.float64)
        hits = chain_descent(w, lr=[lr for _, lr in grid], steps=config.escape_steps, optimizer=opt)["hit"]
        esc[opt] = {key: float(h) for key, h in zip(grid, hits)}
    w = torch.tensor([[float(w0)] * Lb for w0 in config.balanced_w0], dtype=torch.float64)
    gd_curves = chain_descent(w, lr=config.gd_lr, steps=2000, record=True)["loss"]
    adam_curves = chain_descent(w, lr=config.adam_lr, steps=2000, optimizer="adam", record=True)["loss"]
    curves = {w0: {"gd": gd_curves[:, i], "adam": adam_curves[:, i]} for i, w0 in enumerate(config.balanced_w0)}
    # Random chains: the same chains at every loss scale c, all scales as one batch.
    W = torch.randn(config.rescale_seeds, config.rescale_depth, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    scales = list(config.rescale_scales)
    Wc = W.repeat(len(scales), 1)
    cs = np.repeat(scales, config.rescale_seeds)
    rescale = {}
    for key, kw in (("gd", {"lr": config.gd_lr}),
                    ("adam", {"lr": config.adam_lr, "optimizer": "adam", "eps": config.adam_tiny_eps}),
                    ("adam-eps1e-8", {"lr": config.adam_lr, "optimizer": "adam", "eps": 1e-8})):
        hits = chain_descent(Wc, steps=config.rescale_steps, scale=cs, **kw)["hit"].reshape(len(scales), -1)
        for i, c in enumerate(scales):
            rescale[(key, c)] = hits[i]
    return {"balanced": esc, "balanced_curves": curves, "rescale": rescale}


@_cpu_single_thread
def run_mlp(config: Config, *, device: torch.device, seed: int) -> dict:
    """F5 / claim 7: gradient at init per architecture, and SGD/Adam training of ``mlp_seeds`` seeds.

    All seeds (and, for SGD, all learning rates) of one architecture train as one seed-batched
    network; each slot follows exactly its own trajectory on its own batch order."""
    from tqdm.auto import tqdm

    x, y = load_classification(config, seed)
    x, y = x.to(device), y.to(device)
    xa, ya = (x, y) if not config.arch_examples else (x[:config.arch_examples], y[:config.arch_examples])
    arch_seeds = seed_ids(config, seed, config.arch_seeds)
    arch = {}
    for name, kw in tqdm(list(VARIANTS.items()), desc="architectures at init", leave=False):
        by_depth = grad_norms_over_depths(config.arch_depths, config.mlp_width, arch_seeds, loss="ce", first_only=True,
                                          data=(xa.double().cpu(), ya.cpu()), **kw)
        arch.update({(name, L): g[:, 0] for L, g in by_depth.items()})
    seeds = seed_ids(config, seed, config.mlp_seeds)
    n_classes = int(y.max()) + 1
    plan = [("plain", "sgd", config.sgd_lrs), ("residual", "sgd", config.sgd_lrs),
            ("residual+BN", "sgd", config.sgd_lrs)] + [("plain", "adam", (lr,)) for lr in config.adam_lrs]
    curves, steps = {}, None
    for name, opt, lrs in tqdm(plan, desc="training", leave=False):
        slots = [(lr, s) for lr in lrs for s in seeds]
        model = seed_batched_mlp(config.mlp_depth, config.mlp_width, x.shape[1], n_classes, [s for _, s in slots],
                                 init="he", dtype=torch.float32, device=device, **VARIANTS[name])
        h = train_seeds(model, x, y, [s for _, s in slots], optimizer=opt, lr=[lr for lr, _ in slots],
                        steps=config.train_steps, batch_size=config.batch_size, seed=seed)
        steps = h["step"]
        for i, lr in enumerate(lrs):
            curves[(name, opt, lr)] = h["loss"][:, i * len(seeds):(i + 1) * len(seeds)]  # (records, seeds)
    return {"arch_grad": arch, "training": {"step": steps, "curves": curves, "seeds": seeds}}


#: The cached pieces of the chapter, in order (``ch.cached(piece)`` for each).
PIECES: tuple[Callable[..., dict], ...] = (run_chain, run_gradients, run_hessian, run_escape, run_mlp)


def run(config: Config, *, device: torch.device, seed: int) -> dict:
    """Every measurement of the chapter (the union of :data:`PIECES`)."""
    out: dict = {}
    for piece in PIECES:
        out.update(piece(config, device=device, seed=seed))
    return out
