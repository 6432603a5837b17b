"""Empirical neural tangent kernel and representation similarity."""
from __future__ import annotations

import torch
from torch import nn

from curvnb.curvature.params import FunctionalModel, check_deterministic, has_batchnorm_in_training

NTK_MODES = ("full", "trace")


def output_jacobian(model: nn.Module, x: torch.Tensor, chunk_size: int | None = 64) -> torch.Tensor:
    """Per-example Jacobians of the outputs w.r.t. the flat parameters: shape (N, C, P).

    BatchNorm must be in ``eval()`` mode and stochastic modules (Dropout) must be off."""
    if has_batchnorm_in_training(model):
        raise ValueError("the per-example Jacobian needs BatchNorm layers in eval() mode; call model.eval()")
    check_deterministic(model, False, what="Jacobian (and NTK)")
    fm = FunctionalModel(model)

    def single(params, xi):
        return fm(params, xi[None])[0].reshape(-1)

    jac = torch.func.vmap(torch.func.jacrev(single), in_dims=(None, 0), chunk_size=chunk_size)(
        fm.params, x.to(fm.device))
    N = len(x)
    return torch.cat([j.reshape(N, j.shape[1], -1) for j in jac], dim=2).detach()


def empirical_ntk(model: nn.Module, x: torch.Tensor, mode: str = "full", chunk_size: int | None = 64) -> torch.Tensor:
    """The empirical NTK Θ = J Jᵀ on inputs ``x``.

    ``mode="full"``: the (N·C)×(N·C) matrix, row index ``i·C + c`` (example i, output c);
    ``mode="trace"``: the N×N kernel summed over outputs, Σ_c J_c J_cᵀ."""
    if mode not in NTK_MODES:
        raise ValueError(f"unknown mode {mode!r}: allowed values are {', '.join(map(repr, NTK_MODES))}")
    J = output_jacobian(model, x, chunk_size=chunk_size)
    N, C, P = J.shape
    if mode == "trace":
        return torch.einsum("icp,jcp->ij", J, J)
    Jf = J.reshape(N * C, P)
    return Jf @ Jf.T


def ntk_distance(K0: torch.Tensor, K1: torch.Tensor) -> float:
    """Kernel distance 1 − ⟨K0, K1⟩_F / (‖K0‖_F ‖K1‖_F) (0 for proportional kernels)."""
    if K0.shape != K1.shape:
        raise ValueError(f"kernels of different shapes {tuple(K0.shape)} and {tuple(K1.shape)}")
    K0, K1 = K0.double(), K1.double()
    return float(1 - (K0 * K1).sum() / (K0.norm() * K1.norm()))


def ntk_relative_change(K0: torch.Tensor, K1: torch.Tensor) -> float:
    """How far the kernel moved from ``K0``: ‖K1 − K0‖_F / ‖K0‖_F (0 when unchanged; unlike
    :func:`ntk_distance` it also sees a change of scale)."""
    if K0.shape != K1.shape:
        raise ValueError(f"kernels of different shapes {tuple(K0.shape)} and {tuple(K1.shape)}")
    K0, K1 = K0.double(), K1.double()
    norm = K0.norm()
    if norm == 0:
        raise ValueError("the reference kernel K0 is zero: its relative change is undefined")
    return float((K1 - K0).norm() / norm)


def linear_cka(A: torch.Tensor, B: torch.Tensor) -> float:
    """Linear centered kernel alignment of representations A (N, d1) and B (N, d2) (Kornblith et al. 2019)."""
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"representations of {A.shape[0]} and {B.shape[0]} examples")
    A = A.reshape(A.shape[0], -1).double()
    B = B.reshape(B.shape[0], -1).double()
    A = A - A.mean(0, keepdim=True)
    B = B - B.mean(0, keepdim=True)
    cross = (B.T @ A).norm() ** 2
    return float(cross / ((A.T @ A).norm() * (B.T @ B).norm()))
