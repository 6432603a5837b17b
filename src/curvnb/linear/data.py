"""Whitened teacher–student data for deep linear networks (``Σxx = I``, ``Σyx = S``)."""
from __future__ import annotations

from typing import Sequence

import torch

from curvnb.seeds import cpu_generator

__all__ = ["teacher_map", "noisy_teacher", "whitened_inputs", "teacher_student_data"]


def _orthonormal(rows: int, cols: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(rows, cols, generator=g, dtype=dtype))
    return q * torch.sign(torch.diagonal(r))  # unique (Haar) orthonormal columns


def teacher_map(singular_values: Sequence[float], n_out: int, n_in: int, *, seed: int = 0,
                dtype: torch.dtype = torch.float64, generator: torch.Generator | None = None) -> torch.Tensor:
    """``S = U diag(s) Vᵀ`` with random orthonormal ``U`` (``n_out × r``) and ``V`` (``n_in × r``);
    drawn from ``generator`` if given (e.g. :func:`curvnb.seeds.torch_generator`), else from ``seed``."""
    s = torch.as_tensor(list(singular_values), dtype=dtype)
    r = len(s)
    if r > min(n_out, n_in):
        raise ValueError(f"{r} singular values do not fit a {n_out} × {n_in} map")
    if (s < 0).any():
        raise ValueError("singular values must be non-negative")
    g = generator if generator is not None else cpu_generator(seed)
    u, v = _orthonormal(n_out, r, g, dtype), _orthonormal(n_in, r, g, dtype)
    return (u * s) @ v.T


def noisy_teacher(clean: torch.Tensor, sigma: float, *, seed: int = 0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``S = W̄ + σZ`` with i.i.d. standard normal ``Z``: the map the student is trained on (``Z`` from
    ``generator`` if given, else from ``seed``)."""
    g = generator if generator is not None else cpu_generator(seed)
    return clean + sigma * torch.randn(clean.shape, generator=g, dtype=clean.dtype)


def whitened_inputs(n_in: int, n_samples: int, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``X`` (``n_samples × n_in``) with ``XᵀX / n_samples = I`` exactly."""
    if n_samples < n_in:
        raise ValueError(f"whitened inputs need n_samples ≥ n_in, got {n_samples} < {n_in}")
    g = cpu_generator(seed)
    return n_samples ** 0.5 * _orthonormal(n_samples, n_in, g, dtype)


def teacher_student_data(target: torch.Tensor, n_samples: int | None = None, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``(X, Y = X Sᵀ)`` with whitened ``X``: the mean loss ``½‖f(x) − y‖²`` over it equals
    ``½‖W − S‖_F²`` for a linear map ``f(x) = W x``."""
    n_out, n_in = target.shape
    x = whitened_inputs(n_in, n_samples or n_in, seed=seed, dtype=target.dtype).to(target.device)
    return x, x @ target.T
