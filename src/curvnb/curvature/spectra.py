"""Hessian spectra: extreme eigenvalues (Lanczos), trace (Hutchinson), density (stochastic Lanczos quadrature)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from curvnb.curvature.lanczos import (WHICH, SpectrumResult, block_lanczos, check_tolerance, lanczos,
                                     lanczos_tridiagonal, random_unit_vector)
from curvnb.curvature.operators import CurvatureOperator
from curvnb.seeds import cpu_generator

BACKENDS = ("lanczos", "scipy")


def eigsh_operator(op: CurvatureOperator, *, k: int = 1, which: str = "LA", tol: float = 1e-3,
                   return_eigenvectors: bool = False, seed: int = 0, max_iter: int | None = None) -> SpectrumResult:
    """SciPy's ``eigsh`` (ARPACK) on ``op`` wrapped as a ``LinearOperator`` (a reference backend)."""
    from scipy.sparse.linalg import ArpackError, LinearOperator, eigsh

    n = op.shape[0]
    start_count = op.num_matvecs

    def mv(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(v).reshape(-1), dtype=op.dtype, device=op.device)
        return op.matvec(t).double().cpu().numpy()

    lin = LinearOperator((n, n), matvec=mv, dtype=np.float64)
    v0 = random_unit_vector(n, dtype=torch.float64, device="cpu", seed=seed).numpy()
    try:
        vals, vecs = eigsh(lin, k=k, which=which, tol=tol, v0=v0, maxiter=max_iter)
    except ArpackError as exc:
        # ARPACK cannot go on from a Krylov space that closed before k values (info -9 "Starting
        # vector is zero" on an exactly zero operator, e.g. the GGN of NLL after LogSoftmax)
        raise ValueError(f"ARPACK (backend='scipy') failed: {str(exc).rstrip('.')}. This happens when the Krylov space closes "
                         "before k values (e.g. an exactly zero GGN); use backend='lanczos', which restarts "
                         "on invariant subspaces") from exc
    order = np.argsort(-vals)
    vals, vecs = vals[order], vecs[:, order]
    Av = np.stack([mv(vecs[:, i]) for i in range(k)], axis=1)  # residuals (not counted below)
    res = np.linalg.norm(Av - vecs * vals, axis=0)
    num = op.num_matvecs - start_count - k
    return SpectrumResult(eigenvalues=torch.as_tensor(vals), residuals=torch.as_tensor(res),
                          eigenvectors=torch.as_tensor(vecs, dtype=op.dtype, device=op.device) if return_eigenvectors else None,
                          converged=bool(np.all(res <= tol * np.abs(vals) + 1e-12)), num_matvecs=num)


def default_block_size(op: Any, k: int, bound: str = "residual") -> int:
    """Block size when none is given. On accelerators k: the k products of a block run as one pass.
    On the CPU, where the products of a block do not batch, 1 for k = 1 and 2 for k ≥ 2: a single
    start vector with almost no component along one of the k wanted eigenvectors makes Lanczos skip
    that eigenvalue while every residual is small (``converged=True``, a wrong i-th value); a second
    start vector makes that much less likely, for a few more products (``benchmarks/curvature.py``
    counts the misses of each over start seeds). ``bound="gap"`` is single-vector only: 1."""
    if bound != "residual":
        return 1
    return min(k, 2) if torch.device(op.device).type == "cpu" else k


def operator_eigenvalues(op: CurvatureOperator, k: int = 1, which: str = "LA", tol: float = 1e-3,
                         return_eigenvectors: bool = False, seed: int = 0, max_iter: int | None = None,
                         backend: str = "lanczos", bound: str = "residual",
                         block_size: int | None = None) -> SpectrumResult:
    """k extreme eigenvalues of any :class:`CurvatureOperator` (Hessian or GGN).

    ``block_size`` b > 1 runs :func:`~curvnb.curvature.lanczos.block_lanczos` (finds eigenvalues of
    multiplicity ≤ b with all their copies; products of a block batched with ``op.matmat``); the
    default (:func:`default_block_size`) is k on accelerators and, on the CPU, 1 for k = 1 and 2 for
    k ≥ 2. ``tol`` below the dtype's precision is refused."""
    if which not in WHICH:
        raise ValueError(f"unknown which {which!r}: allowed values are {', '.join(map(repr, WHICH))}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: allowed values are {', '.join(map(repr, BACKENDS))}")
    check_tolerance(tol, op.dtype)
    if backend == "scipy":
        return eigsh_operator(op, k=k, which=which, tol=tol, return_eigenvectors=return_eigenvectors,
                              seed=seed, max_iter=max_iter)
    start = op.num_matvecs
    b = default_block_size(op, k, bound) if block_size is None else int(block_size)
    if b > 1:
        if bound != "residual":
            raise ValueError("block Lanczos stops on the residual bound only; use bound='residual' or block_size=1")
        res = block_lanczos(op.matmat, op.shape[0], k=k, block_size=b, which=which, tol=tol, max_iter=max_iter,
                            seed=seed, dtype=op.dtype, device=op.device, return_eigenvectors=return_eigenvectors)
    else:
        res = lanczos(op.matvec, op.shape[0], k=k, which=which, tol=tol, max_iter=max_iter, seed=seed,
                      dtype=op.dtype, device=op.device, return_eigenvectors=return_eigenvectors, bound=bound)
    res.num_matvecs = op.num_matvecs - start
    return res


def hessian_eigenvalues(model: nn.Module, loss_fn: Callable, data: Any, k: int = 1, which: str = "LA",
                        tol: float = 1e-3, return_eigenvectors: bool = False, seed: int = 0,
                        max_iter: int | None = None, backend: str = "lanczos", kind: str = "hessian",
                        method: str = "auto", bound: str = "residual", block_size: int | None = None,
                        **kwargs: Any) -> SpectrumResult:
    """The k largest (``which="LA"``), smallest (``"SA"``) or largest-magnitude (``"LM"``) Hessian eigenvalues.

    Returns a :class:`SpectrumResult`: ``eigenvalues`` sorted descending, ``eigenvectors`` (P, k) if asked,
    Ritz ``residuals`` ‖Hy − θy‖ (each value is within its residual of a true eigenvalue),
    ``converged`` (all residuals ≤ ``tol``·|θ|: each value is near *an* eigenvalue; an eigenvalue nearly
    orthogonal to the start vector can still be missed, see :mod:`curvnb.curvature.lanczos`) and
    ``num_matvecs``. ``backend="scipy"`` uses ARPACK's
    ``eigsh`` instead of our torch Lanczos; ``kind="ggn"`` gives the Gauss–Newton spectrum;
    ``block_size`` as in :func:`operator_eigenvalues`.
    ``bound="gap"`` stops on the gap-based error estimate min(r, r²/gap) instead of the residual r:
    fewer products, but only an estimate that can stop early with errors above ``tol`` (see
    :func:`curvnb.curvature.lanczos`); the default ``"residual"`` is a guarantee. Other keyword
    arguments (``reduction``, ``allow_stochastic``, ``process_group``, ``cache``) go to
    :class:`CurvatureOperator`."""
    op = CurvatureOperator(model, loss_fn, data, kind=kind, method=method, **kwargs)
    return operator_eigenvalues(op, k=k, which=which, tol=tol, return_eigenvectors=return_eigenvectors,
                                seed=seed, max_iter=max_iter, backend=backend, bound=bound, block_size=block_size)


def operator_trace(op: CurvatureOperator, num_samples: int, seed: int = 0, return_samples: bool = False,
                   chunk: int = 32) -> tuple[float, float] | tuple[float, float, np.ndarray]:
    """Hutchinson's estimate of tr(op) with Rademacher probes, and its standard error.

    The probes are multiplied ``chunk`` at a time with ``op.matmat`` (one batched pass where the
    operator batches, e.g. an explicit matrix or a GPU; the same products one by one otherwise)."""
    if num_samples < 2:
        raise ValueError(f"num_samples must be ≥ 2 to give a standard error, got {num_samples}")
    g = cpu_generator(int(seed))
    samples = np.empty(num_samples)
    n = op.shape[0]
    for start in range(0, num_samples, chunk):
        m = min(chunk, num_samples - start)
        # drawn as one (m, n) block: the same stream as m draws of n, so results do not depend on chunk
        Z = (torch.randint(0, 2, (m, n), generator=g, dtype=torch.float64) * 2 - 1).to(op.dtype).to(op.device)
        samples[start:start + m] = (Z.T * op.matmat(Z.T.contiguous())).sum(0).double().cpu().numpy()
    est, se = float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(num_samples))
    return (est, se, samples) if return_samples else (est, se)


def hessian_trace(model: nn.Module, loss_fn: Callable, data: Any, num_samples: int = 100, seed: int = 0,
                  kind: str = "hessian", **kwargs: Any) -> tuple[float, float]:
    """Hutchinson estimate of tr(H) = E[zᵀHz] (Rademacher z) and its standard error.

    Keyword arguments (``method``, ``reduction``, ``allow_stochastic``, ``process_group``) go to
    :class:`CurvatureOperator`."""
    return operator_trace(CurvatureOperator(model, loss_fn, data, kind=kind, **kwargs), num_samples, seed=seed)


def slq_nodes(op: CurvatureOperator, num_runs: int = 10, num_steps: int = 80,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stochastic Lanczos quadrature nodes and weights, shape (num_runs, m) each (weights sum to 1 per run)."""
    nodes, weights = [], []
    for r in range(num_runs):
        v = random_unit_vector(op.shape[0], dtype=op.dtype, device=op.device, seed=(seed * 100003 + r) % 2**64,
                               rademacher=True)
        theta, tau = lanczos_tridiagonal(op.matvec, v, num_steps)
        m = min(num_steps, op.shape[0])
        # pad short runs (invariant subspace found early) with zero-weight nodes
        nodes.append(np.pad(theta, (0, m - len(theta)), constant_values=theta[-1]))
        weights.append(np.pad(tau, (0, m - len(tau))))
    return np.array(nodes), np.array(weights)


def density_from_nodes(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray | int = 1000,
                       sigma: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-smoothed spectral density from SLQ nodes/weights on ``grid`` (array or number of points).

    ``sigma`` defaults to 1 % of the spectral range; the density integrates to 1 over a grid that
    covers the nodes with a margin of a few σ."""
    lo, hi = float(nodes.min()), float(nodes.max())
    width = max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0))
    sigma = 0.01 * width if sigma is None else float(sigma)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if isinstance(grid, (int, np.integer)):
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, int(grid))
    grid = np.asarray(grid, dtype=float)
    d = (grid[None, None, :] - nodes[..., None]) / sigma
    dens = (weights[..., None] * np.exp(-0.5 * d ** 2)).sum(axis=(0, 1)) / (np.sqrt(2 * np.pi) * sigma)
    return grid, dens / nodes.shape[0]


def hessian_density(model: nn.Module, loss_fn: Callable, data: Any, num_runs: int = 10, num_steps: int = 80,
                    grid: np.ndarray | int = 1000, sigma: float | None = None, seed: int = 0,
                    kind: str = "hessian", **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Spectral density of the Hessian by stochastic Lanczos quadrature (Ghorbani et al. 2019, PyHessian).

    ``num_runs`` Rademacher probes, ``num_steps`` Lanczos steps each; returns ``(grid, density)`` with
    the density (per unit eigenvalue) smoothed by a Gaussian of width ``sigma`` (default 1 % of the range).
    Keyword arguments go to :class:`CurvatureOperator`."""
    op = CurvatureOperator(model, loss_fn, data, kind=kind, **kwargs)
    nodes, weights = slq_nodes(op, num_runs=num_runs, num_steps=num_steps, seed=seed)
    return density_from_nodes(nodes, weights, grid=grid, sigma=sigma)
