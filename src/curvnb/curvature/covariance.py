"""Per-example gradients and the gradient covariance K = (1/N) Σ (g_i − ḡ)(g_i − ḡ)ᵀ."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from curvnb.curvature.params import FunctionalModel, as_batches, has_batchnorm_in_training


def per_example_grads(model: nn.Module, loss_fn: Callable, data: Any, chunk_size: int | None = 256) -> torch.Tensor:
    """The (N, P) matrix of per-example gradients ∇ℓ(f(x_i), y_i), by ``vmap`` over ``grad``.

    Each example is evaluated alone (a batch of one), so a BatchNorm must be in ``eval()`` mode.
    ``chunk_size`` examples are processed at once to bound memory (``None``: all at once)."""
    if has_batchnorm_in_training(model):
        raise ValueError("per-example gradients need BatchNorm layers in eval() mode (batch statistics "
                         "of a single example are undefined); call model.eval() first")
    fm = FunctionalModel(model)

    def single(params, x, y):
        return fm.loss(loss_fn, x[None], y[None])(params)

    g = torch.func.vmap(torch.func.grad(single), in_dims=(None, 0, 0))
    batches = as_batches(data)
    N = sum(len(x) for x, _ in batches)
    # one preallocated (N, P) output filled chunk by chunk: no concatenation copies of the large matrix
    out = torch.empty(N, fm.num_params, dtype=fm.dtype, device=fm.device)
    sizes = [p.numel() for p in fm.params]
    row = 0
    for x, y in batches:
        x, y = x.to(fm.device), y.to(fm.device)
        step = len(x) if chunk_size is None else int(chunk_size)
        if step < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
        for i in range(0, len(x), step):
            grads = g(fm.params, x[i:i + step], y[i:i + step])
            n = len(grads[0])
            for block, t in zip(torch.split(out[row:row + n], sizes, dim=1), grads):
                block.copy_(t.reshape(n, -1))
            row += n
    return out


def _centered(model, loss_fn, data, chunk_size) -> torch.Tensor:
    G = per_example_grads(model, loss_fn, data, chunk_size=chunk_size)
    return G - G.mean(dim=0, keepdim=True)


COV_METHODS = ("gram", "lanczos")


def gradient_covariance_eigenvalues(model: nn.Module, loss_fn: Callable, data: Any, k: int = 1,
                                    chunk_size: int | None = 256, method: str = "gram",
                                    tol: float = 1e-6) -> torch.Tensor:
    """The k largest eigenvalues (descending) of the gradient covariance K (P×P).

    ``method="gram"`` (exact): when N < P the nonzero spectrum is that of the N×N Gram matrix
    (1/N) G_c G_cᵀ; otherwise K is formed directly. Eigenvalues beyond the rank are returned as zeros.
    ``method="lanczos"``: Lanczos on the implicit operator v ↦ G_cᵀ(G_c v)/N (relative residual ≤ ``tol``),
    several times faster for a few top eigenvalues of large N (see benchmarks/README.md)."""
    if method not in COV_METHODS:
        raise ValueError(f"unknown method {method!r}: allowed values are {', '.join(map(repr, COV_METHODS))}")
    Gc = _centered(model, loss_fn, data, chunk_size)
    N, P = Gc.shape
    if not 1 <= k <= P:
        raise ValueError(f"k must be in [1, P={P}], got {k}")
    if method == "lanczos" and k < min(N, P):
        from curvnb.curvature.lanczos import lanczos

        res = lanczos(lambda v: Gc.T @ (Gc @ v) / N, P, k=k, tol=tol, dtype=Gc.dtype, device=Gc.device)
        return res.eigenvalues.to(Gc.device).clamp_min(0)
    M = (Gc @ Gc.T if N < P else Gc.T @ Gc) / N
    vals = torch.linalg.eigvalsh(M).flip(0).clamp_min(0)  # PSD: clamp rounding-level negatives
    if len(vals) < k:
        vals = torch.cat([vals, vals.new_zeros(k - len(vals))])
    return vals[:k]


def gradient_covariance_trace(model: nn.Module, loss_fn: Callable, data: Any, chunk_size: int | None = 256) -> float:
    """tr K = (1/N) Σ ‖g_i − ḡ‖²."""
    Gc = _centered(model, loss_fn, data, chunk_size)
    return float((Gc ** 2).sum() / Gc.shape[0])
