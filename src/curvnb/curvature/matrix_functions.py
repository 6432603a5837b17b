"""Functions of symmetric positive semi-definite matrices (pseudo-powers for natural gradients)."""
from __future__ import annotations

import torch

__all__ = ["spectral_cutoff", "symmetric_power"]


def spectral_cutoff(matrix: torch.Tensor, rcond: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eigendecomposition of a symmetric PSD ``matrix``: ``(eigenvalues, eigenvectors, kept)``.

    ``kept`` marks the eigenvalues above ``rcond × λ_max``; the rest are treated as exact zeros
    (round-off of a singular matrix), which is what makes the powers below *pseudo*-powers."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {tuple(matrix.shape)}")
    if rcond < 0:
        raise ValueError(f"rcond must be non-negative, got {rcond}")
    eigenvalues, eigenvectors = torch.linalg.eigh(0.5 * (matrix + matrix.T))
    eigenvalues = eigenvalues.clamp_min(0)
    kept = eigenvalues > rcond * eigenvalues.max().clamp_min(torch.finfo(matrix.dtype).tiny)
    return eigenvalues, eigenvectors, kept


def symmetric_power(matrix: torch.Tensor, power: float, *, damping: float = 0.0,
                    rcond: float = 1e-12) -> torch.Tensor:
    """``(M + δI)^power`` of a symmetric PSD matrix through its eigendecomposition.

    Without damping (``δ = 0``) a negative power is the Moore–Penrose pseudo-power: eigenvalues
    at or below ``rcond × λ_max`` map to 0 (``power = −1`` gives ``pinv``). With damping every
    eigenvalue below the cutoff counts as 0 and maps to ``δ^power``, the usual damped K-FAC factor."""
    if damping < 0:
        raise ValueError(f"damping must be non-negative, got {damping}")
    eigenvalues, eigenvectors, kept = spectral_cutoff(matrix, rcond)
    if damping > 0:
        values = (torch.where(kept, eigenvalues, torch.zeros_like(eigenvalues)) + damping) ** power
    else:
        values = torch.where(kept, eigenvalues.clamp_min(torch.finfo(matrix.dtype).tiny) ** power,
                             torch.zeros_like(eigenvalues))
    return (eigenvectors * values) @ eigenvectors.T
