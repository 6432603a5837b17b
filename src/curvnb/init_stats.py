"""Statistics of randomly initialised deep networks, and escape times from flat plateaus.

- :func:`chain_log_products`: ln|w_L⋯w_1| of the neural chain over many samples (batched).
- :func:`layer_grad_norms`: per-layer squared gradient norms ‖∇_{W_l} ℓ‖² at init over seeds
  (plain nets are vectorised over seeds with ``torch.func.vmap``; exact, every seed has its own
  weights and data).
- :func:`log_ratio_per_layer`: the exact E ln of the per-layer squared-norm ratio
  (linear/Xavier: χ²_d/d; ReLU/He: (2/d)·χ²_K with K ~ Bin(d, ½), K ≥ 1), the slope of the theory.
- :func:`hessian_top_at_init`, :func:`hessian_spectrum_at_init`: through :mod:`curvnb.curvature`.
- :func:`chain_descent`: GD or Adam on many chains at once (both act per coordinate, so a
  (seeds, L) tensor with a summed loss gives every seed its exact own trajectory).
- :func:`train_classifier`: a short mini-batch loop recording the full training loss.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy.special import digamma
from scipy.stats import binom
from torch import nn

from curvnb.curvature import dense_hessian, hessian_eigenvalues
from curvnb.models.mlp import deep_mlp

EULER_GAMMA = 0.5772156649015329
#: E ln|w| for w ~ N(0, 1): −(γ + ln 2)/2 ≈ −0.635.
CHAIN_LOG_MEAN = -(EULER_GAMMA + math.log(2.0)) / 2


def chain_log_products(depths: Sequence[int], num_samples: int, seed: int = 0,
                       chunk: int = 100_000) -> dict[int, np.ndarray]:
    """``{L: ln|w_L⋯w_1|}`` for w_l ~ N(0, 1), ``num_samples`` chains; depth L uses the first L factors."""
    g = torch.Generator().manual_seed(int(seed))
    depths = sorted(set(int(d) for d in depths))
    out = {d: np.empty(num_samples) for d in depths}
    for start in range(0, num_samples, chunk):
        n = min(chunk, num_samples - start)
        acc = torch.zeros(n, dtype=torch.float64)
        for layer in range(1, depths[-1] + 1):
            # Summing logs: the product itself underflows float64 beyond L ≈ 1000.
            acc += torch.randn(n, generator=g, dtype=torch.float64).abs().log()
            if layer in out:
                out[layer][start:start + n] = acc.numpy()
    return out


def log_ratio_per_layer(width: int, activation: str) -> float:
    """Exact E ln(‖h_l‖²/‖h_{l−1}‖²) for one layer at the critical init (Xavier linear / He ReLU).

    Linear: ψ(d/2) − ln(d/2). ReLU: E[ψ(K/2) + ln 2 | K ≥ 1] + ln(2/d), K ~ Bin(d, ½)
    (K = 0 kills the signal; conditioning on survival gives the slope of the median of survivors)."""
    d = int(width)
    if activation == "linear":
        return float(digamma(d / 2) - math.log(d / 2))
    if activation == "relu":
        k = np.arange(1, d + 1)
        p = binom.pmf(k, d, 0.5)
        return float(np.sum(p * (digamma(k / 2) + math.log(2.0))) / p.sum() + math.log(2.0 / d))
    raise ValueError(f"unknown activation {activation!r}: allowed values are 'relu', 'linear'")


def _regression_data(seed: int, n: int, d_in: int, d_out: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(10_000 + int(seed))
    x = torch.randn(n, d_in, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randn(n, d_out, generator=g, dtype=torch.float64).to(dtype)
    return x, y


def layer_grad_norms(depth: int, width: int, seeds: Sequence[int], *, activation: str = "relu", init: str = "he",
                     d_in: int = 16, n: int = 64, d_out: int = 1, residual: bool = False, batchnorm: bool = False,
                     data: tuple[torch.Tensor, torch.Tensor] | None = None, loss: str = "mse",
                     dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Squared gradient norms ‖∇_{W_l} ℓ‖² at init, shape (seeds, depth).

    Seed ``s`` builds ``deep_mlp(..., seed=s)``; without ``data`` it also draws its own regression
    batch x ~ N(0, I_{d_in}), y ~ N(0, I_{d_out}) (n examples) and uses the MSE loss. With ``data``
    every seed uses that batch (``loss="ce"`` for class labels)."""
    if loss not in ("mse", "ce"):
        raise ValueError(f"unknown loss {loss!r}: allowed values are 'mse', 'ce'")
    if data is not None:
        d_in = data[0].shape[1]
        d_out = int(data[1].max()) + 1 if loss == "ce" else data[1].shape[1]
    models = [deep_mlp(depth, width, d_in, d_out, activation=activation, init=init, residual=residual,
                       batchnorm=batchnorm, seed=int(s), dtype=dtype) for s in seeds]
    batches = [data if data is not None else _regression_data(s, n, d_in, d_out, dtype) for s in seeds]
    loss_fn = nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss()
    if not batchnorm:
        # Vectorised over seeds: each seed's parameters and data are one slice of a stacked tensor.
        from torch.func import functional_call, grad, stack_module_state, vmap

        params, _ = stack_module_state(models)
        base = models[0]

        def seed_loss(p, x, y):
            return loss_fn(functional_call(base, (p,), (x,)), y)

        xs = torch.stack([b[0].to(dtype) for b in batches])
        ys = torch.stack([b[1] if loss == "ce" else b[1].to(dtype) for b in batches])
        grads = vmap(grad(seed_loss))(params, xs, ys)
        return np.stack([grads[f"layers.{l}.weight"].pow(2).sum(dim=(1, 2)).detach().numpy()
                         for l in range(depth)], axis=1)
    out = np.empty((len(models), depth))
    for i, (model, (x, y)) in enumerate(zip(models, batches)):
        model.train()
        model.zero_grad()
        loss_fn(model(x.to(dtype)), y if loss == "ce" else y.to(dtype)).backward()
        out[i] = [float(layer.weight.grad.pow(2).sum()) for layer in model.layers]
    return out


def hessian_top_at_init(depth: int, width: int, seeds: Sequence[int], *, activation: str = "linear",
                        init: str = "xavier", d_in: int = 16, n: int = 64, d_out: int = 1,
                        tol: float = 1e-3) -> np.ndarray:
    """max|λ| of the MSE-loss Hessian at init (Lanczos via ``curvnb.curvature``), one per seed."""
    out = np.empty(len(seeds))
    for i, s in enumerate(seeds):
        model = deep_mlp(depth, width, d_in, d_out, activation=activation, init=init, seed=int(s), dtype=torch.float64)
        batch = _regression_data(int(s), n, d_in, d_out, torch.float64)
        res = hessian_eigenvalues(model, nn.MSELoss(), batch, k=1, which="LM", tol=tol, seed=int(s))
        out[i] = float(res.eigenvalues.abs().max())
    return out


def hessian_spectrum_at_init(depth: int, width: int, seed: int, *, activation: str = "linear",
                             init: str = "xavier", d_in: int = 4, n: int = 32, d_out: int = 1) -> np.ndarray:
    """All Hessian eigenvalues (ascending) of a tiny net at init (dense, float64, via ``curvnb.curvature``)."""
    model = deep_mlp(depth, width, d_in, d_out, activation=activation, init=init, seed=int(seed), dtype=torch.float64)
    h = dense_hessian(model, nn.MSELoss(), _regression_data(int(seed), n, d_in, d_out, torch.float64))
    return torch.linalg.eigvalsh(0.5 * (h + h.T)).numpy()


def chain_descent(weights: torch.Tensor, *, lr: float, steps: int, optimizer: str = "gd", scale: float = 1.0,
                  threshold: float = 0.25, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                  record: bool = False) -> dict:
    """GD or Adam on the chain loss ``scale · ½(w_L⋯w_1 − 1)²`` for every row of ``weights`` (seeds, L).

    Returns ``hit`` (seeds,): the first step k at which the *unscaled* loss ½(∏w − 1)² is below
    ``threshold`` (``inf`` if never within ``steps``), and with ``record=True`` ``loss`` (steps+1, seeds).
    Adam is PyTorch's update (bias-corrected moments, ``eps`` added to √v̂), written per coordinate."""
    if optimizer not in ("gd", "adam"):
        raise ValueError(f"unknown optimizer {optimizer!r}: allowed values are 'gd', 'adam'")
    w = weights.detach().clone().to(torch.float64)
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    hit = np.full(w.shape[0], np.inf)
    history = []
    b1, b2 = betas
    for k in range(steps + 1):
        w.requires_grad_(True)
        p = w.prod(dim=1)
        raw = 0.5 * (p - 1) ** 2
        (g,) = torch.autograd.grad((scale * raw).sum(), w)  # rows are independent: per-seed gradients
        raw = raw.detach().numpy()
        newly = (raw < threshold) & np.isinf(hit)
        hit[newly] = k
        if record:
            history.append(raw.copy())
        elif np.isfinite(hit).all() or not np.isfinite(raw).any():
            break
        if k == steps:
            break
        with torch.no_grad():
            if optimizer == "gd":
                w = w - lr * g
            else:
                t = k + 1
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                denom = (v / (1 - b2 ** t)).sqrt() + eps
                w = w - lr * (m / (1 - b1 ** t)) / denom
    out = {"hit": hit}
    if record:
        out["loss"] = np.array(history)
    return out


def balanced_escape_theory(depth: int, w0: float, lr: float) -> float:
    """GD steps for the balanced chain to leave the plateau: w0^{−(L−2)}/((L−2)η) (gradient-flow blow-up time)."""
    return w0 ** (-(depth - 2)) / ((depth - 2) * lr)


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, optimizer: str, lr: float, steps: int,
                     batch_size: int, seed: int = 0, record_every: int = 20, progress: bool = False) -> dict:
    """Mini-batch training with cross-entropy (SGD without momentum, or Adam); returns
    ``{"step": [...], "loss": [...]}`` with the loss on the full training set (for BatchNorm nets:
    in training mode, i.e. with the full set's batch statistics). A non-finite loss stops the run."""
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"unknown optimizer {optimizer!r}: allowed values are 'sgd', 'adam'")
    opt = torch.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd" else torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(int(seed))
    order, pos = torch.randperm(len(x), generator=g), 0
    history = {"step": [], "loss": []}

    def record(step: int) -> float:
        model.train()
        with torch.no_grad():
            value = float(loss_fn(model(x), y))
        history["step"].append(step)
        history["loss"].append(value)
        return value

    record(0)
    steps_iter = range(1, steps + 1)
    if progress:
        from tqdm.auto import tqdm
        steps_iter = tqdm(steps_iter, leave=False, desc=f"{optimizer} lr={lr:g}")
    for step in steps_iter:
        if pos + batch_size > len(x):
            order, pos = torch.randperm(len(x), generator=g), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        model.train()
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        if step % record_every == 0 or step == steps:
            if not math.isfinite(record(step)):
                break
    return history
