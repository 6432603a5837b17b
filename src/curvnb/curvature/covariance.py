"""Per-example gradients and the gradient covariance K = (1/N) Σ (g_i − ḡ)(g_i − ḡ)ᵀ.

With ``process_group`` each rank holds a shard of the examples; the mean ḡ, the trace and the
eigenvalues are those of all N examples of all ranks, the same on every rank."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from curvnb.curvature.distributed import all_gather_rows, all_reduce_sum, global_sum
from curvnb.curvature.lanczos import min_tolerance
from curvnb.curvature.params import FunctionalModel, as_batches, check_deterministic, has_batchnorm_in_training


def per_example_grads(model: nn.Module, loss_fn: Callable, data: Any, chunk_size: int | None = 256, *,
                      allow_stochastic: bool = False) -> torch.Tensor:
    """The (N, P) matrix of per-example gradients ∇ℓ(f(x_i), y_i), by ``vmap`` over ``grad``.

    Each example is evaluated alone (a batch of one), so a BatchNorm must be in ``eval()`` mode;
    ``ℓ`` is ``loss_fn`` on that batch of one (any reduction: of one example, mean and sum agree
    up to the mean over output entries). Stochastic modules (Dropout) in training mode are refused
    unless ``allow_stochastic=True`` (then each example draws its own randomness).
    ``chunk_size`` examples are processed at once to bound memory (``None``: all at once)."""
    if has_batchnorm_in_training(model):
        raise ValueError("per-example gradients need BatchNorm layers in eval() mode (batch statistics "
                         "of a single example are undefined); call model.eval() first")
    check_deterministic(model, allow_stochastic, what="per-example gradient")
    fm = FunctionalModel(model)

    def single(params, x, y):
        return loss_fn(fm(params, x[None]), y[None]).sum()  # "none" gives shape (1,): the same loss

    g = torch.func.vmap(torch.func.grad(single), in_dims=(None, 0, 0),
                        randomness="different" if allow_stochastic else "error")
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


def _centered(model, loss_fn, data, chunk_size, process_group=None, allow_stochastic=False):
    """Local rows of G − ḡ (ḡ the mean over all examples of all ranks) and the global N."""
    G = per_example_grads(model, loss_fn, data, chunk_size=chunk_size, allow_stochastic=allow_stochastic)
    total = torch.cat([G.sum(0), G.new_tensor([len(G)])])
    all_reduce_sum(total, process_group)
    N = int(round(float(total[-1])))
    return G - total[:-1] / N, N


COV_METHODS = ("gram", "lanczos")


def gradient_covariance_eigenvalues(model: nn.Module, loss_fn: Callable, data: Any, k: int = 1,
                                    chunk_size: int | None = 256, method: str = "gram",
                                    tol: float | None = None, *, process_group: Any = None,
                                    allow_stochastic: bool = False) -> torch.Tensor:
    """The k largest eigenvalues (descending) of the gradient covariance K (P×P).

    ``method="gram"`` (exact): when N < P the nonzero spectrum is that of the N×N Gram matrix
    (1/N) G_c G_cᵀ; otherwise K is formed directly. Eigenvalues beyond the rank are returned as zeros.
    ``method="lanczos"``: Lanczos on the implicit operator v ↦ G_cᵀ(G_c v)/N (relative residual ≤ ``tol``,
    default 1e-6, or the dtype's limit if larger), several times faster for a few top eigenvalues of
    large N (see benchmarks/README.md). With ``process_group`` the Lanczos products are all-reduced
    over the ranks' shards; ``"gram"`` gathers the centred rows of all ranks on every rank."""
    if method not in COV_METHODS:
        raise ValueError(f"unknown method {method!r}: allowed values are {', '.join(map(repr, COV_METHODS))}")
    Gc, N = _centered(model, loss_fn, data, chunk_size, process_group, allow_stochastic)
    P = Gc.shape[1]
    if not 1 <= k <= P:
        raise ValueError(f"k must be in [1, P={P}], got {k}")
    if tol is None:
        tol = max(1e-6, min_tolerance(Gc.dtype))
    if method == "lanczos" and k < min(N, P):
        from curvnb.curvature.lanczos import lanczos

        def matvec(v: torch.Tensor) -> torch.Tensor:
            return all_reduce_sum(Gc.T @ (Gc @ v), process_group) / N
        res = lanczos(matvec, P, k=k, tol=tol, dtype=Gc.dtype, device=Gc.device)
        return res.eigenvalues.to(Gc.device).clamp_min(0)
    Gc = all_gather_rows(Gc, process_group)
    M = (Gc @ Gc.T if N < P else Gc.T @ Gc) / N
    vals = torch.linalg.eigvalsh(M).flip(0).clamp_min(0)  # PSD: clamp rounding-level negatives
    if len(vals) < k:
        vals = torch.cat([vals, vals.new_zeros(k - len(vals))])
    return vals[:k]


def gradient_covariance_trace(model: nn.Module, loss_fn: Callable, data: Any, chunk_size: int | None = 256, *,
                              process_group: Any = None, allow_stochastic: bool = False) -> float:
    """tr K = (1/N) Σ ‖g_i − ḡ‖² (over all ranks' examples with ``process_group``)."""
    Gc, N = _centered(model, loss_fn, data, chunk_size, process_group, allow_stochastic)
    return global_sum([float((Gc ** 2).sum())], process_group, Gc.device)[0] / N
