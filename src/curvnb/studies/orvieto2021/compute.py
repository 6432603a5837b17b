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
from curvnb.seeds import declare_streams
from curvnb.init_stats import (chain_descent, chain_log_products, grad_norms_over_depths, hessian_spectrum_at_init,
                               hessian_top_at_init, seed_batched_mlp, train_seeds)


#: Every random draw of the chapter: (chapter seed, stream, index) -> a generator seed (:mod:`curvnb.seeds`).
#: Tested units come from "test" streams; the learning rates of F5 are chosen on "selection" units only.
STREAMS = declare_streams("orvieto2021", {
    "chain": ("test", 1), "grad-init": ("test", 1000), "hessian-init": ("test", 200), "spectrum": ("test", 1),
    "rescale": ("test", 1), "split": ("test", 1), "arch-init": ("test", 100), "mlp-init": ("test", 16),
    "mlp-reshuffle": ("test", 1), "select-init": ("selection", 8), "select-reshuffle": ("selection", 1)})


@dataclass(frozen=True)
class Config:
    # F1 / claim 1: the neural chain
    chain_depths: tuple[int, ...] = (5, 10, 20, 50)
    chain_samples: int = 200_000
    chain_claim_depth: int = 20
    chain_units: int = 5000                            # claims 1a-b: the first chains of the claim depth
    # F2 / claims 2-3: first-layer gradient at init (d_in, n examples, MSE to N(0,1) targets)
    grad_depths: tuple[int, ...] = (8, 16, 32, 64, 128)
    relu_widths: tuple[int, ...] = (8, 16, 32, 64)
    linear_widths: tuple[int, ...] = (4, 16, 64)
    grad_seeds: int = 200                              # claim 2 asks ≥ 100, claim 3 ≥ 200
    d_in: int = 16
    n: int = 64
    # F3 / claim 4: Hessian at init (linear/Xavier)
    hessian_width: int = 4
    hessian_depths: tuple[int, ...] = (8, 16, 32, 64)
    hessian_claim_depths: tuple[int, int] = (8, 64)   # claim 4: median max|λ| at 64 over that at 8
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
    mlp_seeds: int = 8                                 # tested nets per condition (a bootstrap needs 8)
    select_seeds: int = 3                              # selection nets per (condition, rate)
    arch_depths: tuple[int, ...] = (8, 16, 32, 64)
    arch_seeds: int = 50                               # gradient at init per architecture
    arch_examples: int = 0  # examples for the gradient at init (0: the whole training set)


PROFILES = {
    "quick": Config(),
    "full": Config(chain_samples=2_000_000, grad_depths=(8, 16, 32, 64, 128, 256), relu_widths=(8, 16, 32, 64, 128),
                   linear_widths=(4, 16, 64, 128), grad_seeds=1000, hessian_seeds=200, chain_units=20_000,
                   hessian_depths=(8, 16, 32, 64, 128), rescale_seeds=1000, dataset="fashion-mnist", train_size=10_000,
                   train_steps=3000, sgd_lrs=(0.01, 0.03, 0.1, 0.3, 1.0), adam_lrs=(3e-4, 1e-3, 3e-3), mlp_seeds=16,
                   select_seeds=8,
                   arch_depths=(8, 16, 32, 64, 128), arch_seeds=100, arch_examples=2000),
    # tiny: every code path in seconds (tests); its verdicts are no evidence (and its seed counts are
    # below what the claims ask)
    "smoke": Config(chain_samples=2000, chain_units=2000, grad_seeds=6, hessian_seeds=3, hessian_depths=(8, 64),
                    spectrum_depths=(4,),
                    balanced_w0=(0.5,), gd_lr_grid=(0.1,), adam_lr_grid=(0.01,), escape_steps=300, rescale_seeds=8,
                    rescale_steps=200, train_size=256, mlp_depth=8, train_steps=20, sgd_lrs=(0.03, 0.1), mlp_seeds=3, select_seeds=2,
                    arch_depths=(8,), arch_seeds=4, arch_examples=128),
}

#: Architectures of F5 (keyword arguments of ``deep_mlp``); "BN" (BatchNorm alone) is only measured at init.
VARIANTS = {"plain": {}, "residual": {"residual": True}, "residual+BN": {"residual": True, "batchnorm": True},
            "BN": {"batchnorm": True}}


def seed_ids(seed: int, stream: str, count: int) -> list[int]:
    """The generator seeds of units 0..count-1 of ``stream`` under chapter seed ``seed``."""
    return [STREAMS.seed(seed, stream, i) for i in range(count)]


def load_classification(config: Config, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split of ``config.dataset`` as flat, standardised float32 features and labels."""
    if config.dataset == "digits":
        from curvnb.data import load_digits_split
        x, y, _, _ = load_digits_split(seed=STREAMS.seed(seed, "split", 0))
    elif config.dataset in ("fashion-mnist", "mnist"):
        from curvnb.data.local import load_mnist_like
        x, y, _, _ = load_mnist_like(name=config.dataset)
        x = x.flatten(1)
        x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    else:
        raise ValueError(f"unknown dataset {config.dataset!r}: allowed values are 'digits', 'fashion-mnist', 'mnist'")
    if config.train_size:
        idx = torch.randperm(len(x), generator=STREAMS.torch(seed, "split", 0))[:config.train_size]
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
    logs = chain_log_products(config.chain_depths + (config.chain_claim_depth,), config.chain_samples,
                              seed=STREAMS.seed(seed, "chain", 0))
    return {"chain": logs}


@_cpu_single_thread
def run_gradients(config: Config, *, device: torch.device, seed: int) -> dict:
    """F2 / claims 2-3: first-layer squared gradient norm at init, (activation, width, depth) -> per-seed values.

    Every cell uses the same ``grad_seeds`` seeds (paired across cells), all seeds of a cell at once."""
    from tqdm.auto import tqdm

    seeds = seed_ids(seed, "grad-init", config.grad_seeds)
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

    seeds = seed_ids(seed, "hessian-init", config.hessian_seeds)
    depths = sorted(set(config.hessian_depths) | set(config.hessian_claim_depths))
    top = {L: hessian_top_at_init(L, config.hessian_width, seeds, activation="linear", init="xavier",
                                  d_in=config.d_in, n=config.n)
           for L in tqdm(depths, desc="Hessian at init", leave=False)}
    spectra = {L: hessian_spectrum_at_init(L, config.spectrum_width, STREAMS.seed(seed, "spectrum", 0))
               for L in config.spectrum_depths}
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
    W = torch.randn(config.rescale_seeds, config.rescale_depth, generator=STREAMS.torch(seed, "rescale", 0),
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


def _train(config: Config, x, y, name: str, opt: str, slots: list[tuple[float, int]], device, reshuffle: int):
    """Train every (learning rate, seed) slot of architecture ``name`` as one seed-batched network;
    returns the steps and the (records, slots) cross-entropy curves."""
    model = seed_batched_mlp(config.mlp_depth, config.mlp_width, x.shape[1], int(y.max()) + 1, [s for _, s in slots],
                             init="he", dtype=torch.float32, device=device, **VARIANTS[name])
    h = train_seeds(model, x, y, [s for _, s in slots], optimizer=opt, lr=[lr for lr, _ in slots],
                    steps=config.train_steps, batch_size=config.batch_size, seed=reshuffle)
    return h["step"], h["loss"]


#: F5's trained conditions: (architecture, optimiser).
CONDITIONS = (("plain", "sgd"), ("plain", "adam"), ("residual", "sgd"), ("residual+BN", "sgd"))


@_cpu_single_thread
def run_mlp(config: Config, *, device: torch.device, seed: int) -> dict:
    """F5 / claim 7: gradient at init per architecture; then per condition, the learning rate with the
    lowest median final training cross-entropy on ``select_seeds`` selection nets, and ``mlp_seeds`` test
    nets trained at that rate. All slots of one architecture train as one seed-batched network."""
    from tqdm.auto import tqdm

    x, y = load_classification(config, seed)
    x, y = x.to(device), y.to(device)
    xa, ya = (x, y) if not config.arch_examples else (x[:config.arch_examples], y[:config.arch_examples])
    arch_seeds = seed_ids(seed, "arch-init", config.arch_seeds)
    arch = {}
    for name, kw in tqdm(list(VARIANTS.items()), desc="architectures at init", leave=False):
        by_depth = grad_norms_over_depths(config.arch_depths, config.mlp_width, arch_seeds, loss="ce", first_only=True,
                                          data=(xa.double().cpu(), ya.cpu()), **kw)
        arch.update({(name, L): g[:, 0] for L, g in by_depth.items()})
    select = seed_ids(seed, "select-init", config.select_seeds)
    selection, selected = {}, {}
    for name, opt in tqdm(CONDITIONS, desc="rate selection", leave=False):
        lrs = config.sgd_lrs if opt == "sgd" else config.adam_lrs
        if len(lrs) == 1:   # nothing to choose
            selected[(name, opt)] = lrs[0]
            continue
        _, loss = _train(config, x, y, name, opt, [(lr, s) for lr in lrs for s in select], device,
                         STREAMS.seed(seed, "select-reshuffle", 0))
        finals = loss[-1].reshape(len(lrs), len(select))
        selection.update({(name, opt, lr): finals[i] for i, lr in enumerate(lrs)})
        selected[(name, opt)] = float(lrs[int(np.argmin(np.median(finals, axis=1)))])
    tested = seed_ids(seed, "mlp-init", config.mlp_seeds)
    curves, steps = {}, None
    for name, opt in tqdm(CONDITIONS, desc="training", leave=False):
        steps, curves[(name, opt)] = _train(config, x, y, name, opt, [(selected[(name, opt)], s) for s in tested],
                                            device, STREAMS.seed(seed, "mlp-reshuffle", 0))
    return {"arch_grad": arch, "training": {"step": steps, "curves": curves, "selected": selected,
                                            "selection": selection, "units": len(tested)}}


#: The cached pieces of the chapter, in order (``ch.cached(piece)`` for each).
PIECES: tuple[Callable[..., dict], ...] = (run_chain, run_gradients, run_hessian, run_escape, run_mlp)


def run(config: Config, *, device: torch.device, seed: int) -> dict:
    """Every measurement of the chapter (the union of :data:`PIECES`)."""
    out: dict = {}
    for piece in PIECES:
        out.update(piece(config, device=device, seed=seed))
    return out
