"""Lanczos with full reorthogonalisation, in torch (any device), with Ritz-residual stopping.

The stopping rule is on the Ritz residual ``r_i = |β_m s_{m,i}| = ‖A y_i − θ_i y_i‖``, which bounds
the distance from the Ritz value ``θ_i`` to the nearest eigenvalue of A: stopping when
``r_i ≤ tol·|θ_i|`` for all wanted Ritz pairs guarantees that each reported value is within a
relative ``tol`` of an eigenvalue. (A power iteration stopped on the change of its estimate has no
such guarantee and can stall between λ5 and λ6.)

The residual is computed in the operator's dtype, so it can certify no better than the dtype's
rounding of the products: a ``tol`` below :func:`min_tolerance` (10 ε, 1.2e-6 in float32) is refused,
and the stopping test never asks a residual to fall below ``10 ε ‖A‖`` (values much smaller than
the largest one in magnitude are then certified to that absolute accuracy, not relative ``tol``).

**Multiplicities and missed eigenvalues.** Single-vector Lanczos sees one copy of a repeated
eigenvalue per Krylov space in exact arithmetic (it finds further copies only through rounding), and
the residual bound proves each value near *an* eigenvalue, not that it is the i-th: an eigenvalue
whose eigenvector is nearly orthogonal to the start vector can be missed while the others converge
(``benchmarks/curvature.py`` shows one such case: a top-5 that returned λ6 in place of λ5 with
``converged=True``). :func:`block_lanczos` with a block of b start vectors finds up to b copies
by construction, makes such a miss much less likely, and its products of a block can run as one
batched pass; :func:`curvnb.curvature.operator_eigenvalues` uses a block by default for k ≥ 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from curvnb.seeds import cpu_generator

WHICH = ("LA", "SA", "LM")
BOUNDS = ("residual", "gap")


@dataclass
class SpectrumResult:
    """Eigenvalues (descending) with their eigenvectors (P, k) or None, Ritz residuals, convergence.

    ``eigenvalues`` and ``residuals`` are small CPU tensors (in the operator's dtype); ``eigenvectors``
    live on the operator's device."""

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor | None
    residuals: torch.Tensor
    converged: bool
    num_matvecs: int
    num_steps: int = 0


def random_unit_vector(n: int, *, dtype: torch.dtype, device: torch.device | str, seed: int,
                       rademacher: bool = False) -> torch.Tensor:
    """A seeded random unit vector (drawn on the CPU so the same seed gives the same vector on every device)."""
    g = cpu_generator(int(seed))
    if rademacher:
        v = torch.randint(0, 2, (n,), generator=g, dtype=torch.float64) * 2 - 1
    else:
        v = torch.randn(n, generator=g, dtype=torch.float64)
    return (v / v.norm()).to(dtype=dtype, device=device)


def min_tolerance(dtype: torch.dtype) -> float:
    """The smallest relative tolerance a residual computed in ``dtype`` can certify: 10 ε."""
    return 10 * torch.finfo(dtype).eps


def check_tolerance(tol: float, dtype: torch.dtype) -> None:
    """Refuse a non-positive ``tol`` or one below what ``dtype`` can deliver."""
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if tol < min_tolerance(dtype):
        raise ValueError(f"tol={tol:g} is below what {dtype} can certify (10 ε = {min_tolerance(dtype):.1e}): "
                         f"the residuals are computed in {dtype}; ask for tol ≥ {min_tolerance(dtype):.1e} or "
                         "run the model in float64")


def _limits(theta_wanted: np.ndarray, tol: float, scale: float, dtype: torch.dtype) -> np.ndarray:
    """Residual limits: tol·|θ|, but never below the operator's rounding level 10 ε ‖A‖."""
    return np.maximum(tol * np.abs(theta_wanted), min_tolerance(dtype) * scale)


def _select(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the k wanted Ritz values."""
    if which == "LA":
        order = np.argsort(-theta)
    elif which == "SA":
        order = np.argsort(theta)
    else:
        order = np.argsort(-np.abs(theta))
    return order[:k]


def _fresh_block(basis: torch.Tensor, b: int, *, seed: int, restart: int) -> torch.Tensor | None:
    """Up to ``b`` orthonormal columns (n, b') orthogonal to the rows of ``basis`` (m, n), drawn from a
    seeded random block: the start of a restart after the Krylov space closed. None if the basis
    already spans everything."""
    m, n = basis.shape
    b = min(b, n - m)
    if b <= 0:
        return None
    g = cpu_generator((int(seed) * 1000003 + 7919 * (restart + 1)) % 2**64)
    X = torch.randn(n, b, generator=g, dtype=torch.float64).to(dtype=basis.dtype, device=basis.device)
    for _ in range(2):  # twice is enough
        X = X - basis.T @ (basis @ X)
    U, sig, _ = torch.linalg.svd(X, full_matrices=False)
    keep = sig > 1e-8 * float(sig.max())
    return U[:, keep] if bool(keep.any()) else None


def _may_miss(theta: np.ndarray, closed: np.ndarray, k: int, which: str, tol: float, scale: float,
              dtype: torch.dtype) -> bool:
    """Whether the complement of a Krylov space that just closed may still hold a wanted value.

    A Krylov space from a random start holds every distinct eigenvalue of the operator restricted to
    the space it started in, but one copy of each per start vector (per column of a block). So the
    complement of the basis holds only further copies of the values of the block that just closed
    (``closed``): a wanted value is missing iff fewer than k values were found, or ``closed`` has a
    value strictly better than the k-th wanted one (e.g. a repeated eigenvalue 0 of a low-rank GGN,
    asked for with ``which="SA"``)."""
    if len(theta) < k:
        return True
    worst = float(theta[_select(theta, k, which)[-1]])
    margin = float(_limits(np.array([worst]), tol, scale, dtype)[0])
    if which == "LA":
        return bool(np.any(closed > worst + margin))
    if which == "SA":
        return bool(np.any(closed < worst - margin))
    return bool(np.any(np.abs(closed) > abs(worst) + margin))


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], n: int, *, k: int = 1, which: str = "LA",
            tol: float = 1e-3, max_iter: int | None = None, seed: int = 0, dtype: torch.dtype = torch.float64,
            device: torch.device | str = "cpu", return_eigenvectors: bool = False,
            start: torch.Tensor | None = None, check_every: int = 1, bound: str = "residual") -> SpectrumResult:
    """k extreme eigenpairs of the symmetric operator ``matvec`` (vectors of length ``n``).

    Stops when every wanted Ritz value has relative error bound ≤ ``tol`` (``converged=True``), when the
    Krylov space is invariant (exact) with at least k values, or after ``max_iter`` products
    (``converged=False``). A space that closes before k values (an operator with fewer than k
    distinct eigenvalues: the identity, a zero GGN) is an exact answer for its part: the iteration
    restarts from a fresh seeded vector orthogonal to it, so k values are always returned; it also
    restarts while the complement may hold a further copy of a wanted value (the repeated eigenvalue
    0 of a low-rank GGN with ``which="SA"``), so a closed space never reports a repeated value once.
    ``bound="residual"`` (default) uses the Ritz residual r, a rigorous bound on the distance to an
    eigenvalue; ``bound="gap"`` uses min(r, r²/gap) with the gap to the nearest other Ritz value, the
    usual eigenvalue error *estimate*: fewer products, but NOT a bound — when the Ritz gap overstates
    the true gap (an eigenvalue not yet found lies in between) it stops too early. In
    ``benchmarks/curvature.py`` it returned a top-5 with relative error 8e-3 at ``tol=1e-3``; use it
    only for rough, cheap estimates."""
    if bound not in BOUNDS:
        raise ValueError(f"unknown bound {bound!r}: allowed values are {', '.join(map(repr, BOUNDS))}")
    if which not in WHICH:
        raise ValueError(f"unknown which {which!r}: allowed values are {', '.join(map(repr, WHICH))}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    check_tolerance(tol, dtype)
    max_iter = min(n, max_iter if max_iter is not None else max(300, 20 * k))
    if max_iter < k:
        raise ValueError(f"max_iter={max_iter} < k={k}")
    q = start.to(dtype=dtype, device=device) if start is not None else \
        random_unit_vector(n, dtype=dtype, device=device, seed=seed)
    q = q / q.norm()
    Q = torch.empty(max_iter, n, dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    m = 0
    converged = False
    theta = S = idx = None
    scale = 0.0
    block_start = 0  # first row of the Krylov space begun at the last (re)start
    for j in range(max_iter):
        Q[j] = q
        w = matvec(q).to(dtype)
        alpha = float(torch.dot(q, w))
        alphas.append(alpha)
        # full reorthogonalisation (twice is enough: "twice is enough", Parlett)
        Qj = Q[: j + 1]
        w = w - Qj.T @ (Qj @ w)
        w = w - Qj.T @ (Qj @ w)
        beta = float(w.norm())
        m = j + 1
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        theta, S = np.linalg.eigh(T)
        scale = max(scale, float(np.abs(theta).max()))
        invariant = beta <= 1e-10 * max(scale, 1e-300) or m == n
        if invariant:
            # the Krylov space closed: an exact invariant subspace. Its complement holds only further
            # copies of the values just found; go on from a fresh start orthogonal to it (T stays block
            # diagonal) while one of those copies could still be wanted (fewer than k values, or a
            # repeated value better than the k-th, e.g. the eigenvalue 0 of a low-rank GGN)
            need = m < n and _may_miss(theta, np.linalg.eigvalsh(T[block_start:, block_start:]), k, which, tol,
                                       scale, dtype)
            if need and m < max_iter:
                q = _fresh_block(Q[:m], 1, seed=seed, restart=m)
                if q is not None:
                    betas.append(0.0)
                    q = q[:, 0]
                    block_start = m
                    continue
            converged = not need
            break
        if m >= k and (m % check_every == 0 or m == max_iter):
            idx = _select(theta, k, which)
            res = np.abs(beta * S[-1, idx])
            if bound == "gap" and m > 1:
                others = np.abs(theta[idx][:, None] - theta[None, :])
                others[np.arange(k), idx] = np.inf
                gap = others.min(axis=1)
                res = np.minimum(res, res ** 2 / np.maximum(gap, 1e-300))
            if np.all(res <= _limits(theta[idx], tol, scale, dtype)):
                converged = True
                break
        betas.append(beta)
        q = w / beta
    idx = _select(theta, min(k, m), which)
    res = np.abs(beta * S[-1, idx])
    if m == n or beta <= 1e-10 * max(scale, 1e-300):
        res = np.zeros_like(res)
    order = np.argsort(-theta[idx])  # report descending
    idx, res = idx[order], res[order]
    vecs = None
    if return_eigenvectors:
        Sk = torch.as_tensor(S[:, idx], dtype=dtype, device=device)
        vecs = Q[:m].T @ Sk
    return SpectrumResult(eigenvalues=torch.as_tensor(theta[idx], dtype=dtype),
                          eigenvectors=vecs, residuals=torch.as_tensor(res, dtype=dtype),
                          converged=converged, num_matvecs=m, num_steps=m)


def block_lanczos(matmat: Callable[[torch.Tensor], torch.Tensor], n: int, *, k: int = 1,
                  block_size: int | None = None, which: str = "LA", tol: float = 1e-3, max_iter: int | None = None,
                  seed: int = 0, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                  return_eigenvectors: bool = False, start: torch.Tensor | None = None) -> SpectrumResult:
    """k extreme eigenpairs of the symmetric operator ``matmat`` ((n, b) -> (n, b)) by block Lanczos.

    Each step multiplies a block of ``block_size`` (default k) orthonormal vectors at once, so an
    eigenvalue of multiplicity ≤ b is found with all its copies by construction, and the b products
    of a step can run as one batched pass. The basis is fully reorthogonalised (twice) and the
    Rayleigh quotient T = QᵀAQ is kept whole, so the Ritz residual of pair i is ``‖R S_i‖`` with R
    the last block's remainder; stopping, ``converged`` and restarts when the space closes before k
    values are as in :func:`lanczos`.
    ``max_iter`` counts products (columns), default max(300, 20k); ``num_matvecs`` too."""
    if which not in WHICH:
        raise ValueError(f"unknown which {which!r}: allowed values are {', '.join(map(repr, WHICH))}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    check_tolerance(tol, dtype)
    b = k if block_size is None else int(block_size)
    if not 1 <= b <= n:
        raise ValueError(f"block_size must be in [1, {n}], got {block_size}")
    max_iter = min(n, max_iter if max_iter is not None else max(300, 20 * k))
    if max_iter < max(k, b):
        raise ValueError(f"max_iter={max_iter} < max(k, block_size)={max(k, b)}")
    if start is None:
        g = cpu_generator(int(seed))
        start = torch.randn(n, b, generator=g, dtype=torch.float64)
    block, _ = torch.linalg.qr(start.to(dtype=torch.float64).reshape(n, -1))
    block = block.to(dtype=dtype, device=device)
    Q = torch.empty(max_iter + b, n, dtype=dtype, device=device)  # basis vectors as rows: contiguous slices
    T = np.zeros((max_iter + b, max_iter + b))
    m = count = block_start = 0
    scale = 0.0
    converged = False
    while True:
        w = block.shape[1]
        Q[m:m + w] = block.T
        W = matmat(block).to(dtype)
        count += w
        basis = Q[:m + w]
        C = basis @ W
        W = W - basis.T @ C
        C2 = basis @ W  # twice is enough
        W = W - basis.T @ C2
        C = (C + C2).double().cpu().numpy()
        T[:m + w, m:m + w] = C
        T[m:m + w, :m + w] = C.T
        T[m:m + w, m:m + w] = 0.5 * (C[m:] + C[m:].T)
        m += w
        theta, S = np.linalg.eigh(T[:m, :m])
        scale = max(scale, float(np.abs(theta).max()))
        # next block: an orthonormal basis of the remainder's range (rank-revealing, so the block
        # shrinks instead of taking noise when the Krylov space is (partly) invariant)
        U, sig, Vh = torch.linalg.svd(W, full_matrices=False)
        keep = sig > 1e-10 * max(scale, 1e-300)
        R = (sig[:, None] * Vh).double().cpu().numpy()  # remainder = U R (all of it, for the residuals)
        exhausted = not bool(keep.any()) or m >= n  # an (exactly) invariant subspace
        if exhausted:
            # closed: restart from a fresh block orthogonal to the invariant subspace while its
            # complement may still hold a wanted value (as in :func:`lanczos`)
            need = m < n and _may_miss(theta, np.linalg.eigvalsh(T[block_start:m, block_start:m]), k, which,
                                       tol, scale, dtype)
            if need:
                fresh = _fresh_block(Q[:m], b, seed=seed, restart=m)
                if fresh is not None and count + fresh.shape[1] <= max_iter:
                    block, block_start = fresh, m
                    continue
            converged = not need
            break
        if m >= k:
            idx = _select(theta, k, which)
            res = np.linalg.norm(R @ S[m - w:m, idx], axis=0)
            if np.all(res <= _limits(theta[idx], tol, scale, dtype)):
                converged = True
                break
        if count + int(keep.sum()) > max_iter:
            break
        block = U[:, keep]
    idx = _select(theta, min(k, m), which)
    res = np.zeros(len(idx)) if exhausted else np.linalg.norm(R @ S[m - w:m, idx], axis=0)
    order = np.argsort(-theta[idx])
    idx, res = idx[order], res[order]
    vecs = Q[:m].T @ torch.as_tensor(S[:, idx], dtype=dtype, device=device) if return_eigenvectors else None
    return SpectrumResult(eigenvalues=torch.as_tensor(theta[idx], dtype=dtype), eigenvectors=vecs,
                          residuals=torch.as_tensor(res, dtype=dtype), converged=converged, num_matvecs=count,
                          num_steps=m)


def lanczos_coefficients(matvec: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor,
                         num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The Lanczos tridiagonal (α diagonal, β off-diagonal) after up to ``num_steps`` fully
    reorthogonalised steps from ``start``; stops early on an invariant subspace. The Ritz values after
    m ≤ num_steps steps are the eigenvalues of the leading m×m block."""
    n = start.numel()
    num_steps = min(num_steps, n)
    q = start / start.norm()
    Q = torch.empty(num_steps, n, dtype=start.dtype, device=start.device)
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(num_steps):
        Q[j] = q
        w = matvec(q).to(start.dtype)
        alphas.append(float(torch.dot(q, w)))
        Qj = Q[: j + 1]
        w = w - Qj.T @ (Qj @ w)
        w = w - Qj.T @ (Qj @ w)
        beta = float(w.norm())
        if j == num_steps - 1 or beta <= 1e-10 * max(1.0, max(abs(a) for a in alphas)):
            break
        betas.append(beta)
        q = w / beta
    return np.array(alphas), np.array(betas)


def tridiagonal_eigh(alphas: np.ndarray, betas: np.ndarray, m: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of the leading m×m block of the Lanczos tridiagonal."""
    m = len(alphas) if m is None else min(m, len(alphas))
    T = np.diag(alphas[:m]) + np.diag(betas[: m - 1], 1) + np.diag(betas[: m - 1], -1)
    return np.linalg.eigh(T)


def lanczos_tridiagonal(matvec: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor,
                        num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``num_steps`` Lanczos steps from ``start`` (fully reorthogonalised): the Ritz values θ and the
    Gauss quadrature weights τ = (first components of the Ritz vectors)² — the nodes and weights of
    stochastic Lanczos quadrature."""
    theta, S = tridiagonal_eigh(*lanczos_coefficients(matvec, start, num_steps))
    return theta, S[0] ** 2
