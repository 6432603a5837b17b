"""Exact Gauss–Newton for :class:`curvnb.models.ReversibleNet` (Buffelli et al. 2024, our reading).

Function space first: on the batch, the outputs should move by ``ε = −lr · r`` with ``r`` the
per-example residual (``softmax(f) − onehot(y)`` for cross-entropy, ``f − y`` for squared error;
*not* divided by the batch size). Any right inverse of the Jacobian realises it, ``J u = ε``.

The construction (a generalized inverse, stated exactly):

* readout: the last features should move by ``δh = ε Uᵀ`` (``U`` has orthonormal columns, so this
  is the min-norm feature change, ``δh = R⁺ε`` with ``R`` the readout);
* block ``l`` alone: pull ``δh`` back through the later blocks' exact inverses (their inverse
  JVPs), giving the change ``(t₁, t₂)`` the block's output must make; the half ``F`` is linear in
  ``[W_F b_F]`` so ``Δ[W_F b_F] = pinv([φ(x₂C_F), 1]) t₁`` (an ``n × (M+1)`` pseudo-inverse), and
  ``G``'s target subtracts what ``ΔF`` induces through ``G``: ``pinv([φ(y₁C_G), 1]) (t₂ − G'(y₁) t₁)``.
  This is exactly ``J_l⁺ δh``, the Moore–Penrose solution of block ``l``'s own Jacobian ``J_l``
  (the F/G solves decouple because the map is block-triangular);
* each block alone realises the whole change, so the update is the average
  ``u = (1/L) Σ_l J_l⁺ R⁺ ε``; then ``J u = ε`` whenever every ``[φ, 1]`` has full row rank
  (``n ≤ M + 1``). For ``L = 1`` and a square readout (``k = d``) this equals ``J⁺ε``; with
  ``k < d`` it is a right inverse but not in general the Moore–Penrose one.

Cost per step: one forward pass storing the ``L + 1`` block inputs, ``L`` inverse-JVPs
(``O(n d M)`` each), and ``2L`` pseudo-inverses of ``n × (M+1)`` matrices
(``O(n (M+1) min(n, M+1))`` each) — no ``P × P`` matrix and no explicit Jacobian. Memory
``O(L n d + n M)``.

Call::

    opt = ExactGaussNewton(model, lr=1.0, damping=0.0, loss="cross_entropy")
    loss = opt.step(x_batch, y_batch)          # returns the batch loss before the step
    loss = opt.step(closure=lambda: (x_batch, y_batch))   # or a closure returning the batch
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as Fn

from curvnb.models.reversible import CouplingHalf, ReversibleNet

__all__ = ["ExactGaussNewton", "LOSSES", "function_space_step"]

LOSSES = ("cross_entropy", "mse")


def function_space_step(outputs: torch.Tensor, targets: torch.Tensor, loss: str, lr: float) -> torch.Tensor:
    """``ε = −lr · r``: the per-example residual of the loss (see module docstring)."""
    if loss == "cross_entropy":
        r = torch.softmax(outputs, dim=-1) - Fn.one_hot(targets, outputs.shape[-1]).to(outputs.dtype)
    elif loss == "mse":
        r = outputs - targets
    else:
        raise ValueError(f"unknown loss {loss!r}: allowed values are {', '.join(map(repr, LOSSES))}")
    return -lr * r


def batch_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "cross_entropy":
        return Fn.cross_entropy(outputs, targets)
    return 0.5 * ((outputs - targets) ** 2).sum(-1).mean()


def _solve_half(half: CouplingHalf, z: torch.Tensor, target: torch.Tensor, damping: float,
                rcond: Optional[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-norm ``(ΔW, Δb)`` with ``φ(zC) ΔWᵀ + Δb = target`` (damped: Tikhonov ``λ``)."""
    a = torch.cat([half.features(z), torch.ones(len(z), 1, dtype=z.dtype, device=z.device)], dim=1)
    if damping > 0:
        # Aᵀ (A Aᵀ + λ I)⁻¹ t: an n × n solve, the Tikhonov-damped pseudo-inverse.
        gram = a @ a.T
        gram.diagonal().add_(damping * gram.diagonal().mean())
        sol = a.T @ torch.linalg.solve(gram, target)
    else:
        sol = torch.linalg.pinv(a, rtol=rcond) @ target if rcond is not None else torch.linalg.pinv(a) @ target
    return sol[:-1].T, sol[-1]  # ΔW (half × M), Δb (half)


class ExactGaussNewton(torch.optim.Optimizer):
    """Exact GN steps for a :class:`ReversibleNet` (see module docstring for the construction).

    Args:
        model: the reversible network (its trainable ``W``/``b`` are the parameters).
        lr: function-space step ``ε = −lr · r``; ``lr = 1`` with ``loss="mse"`` interpolates the batch.
        damping: relative Tikhonov damping ``λ`` (times the mean diagonal of each ``A Aᵀ``); 0 = exact.
        rcond: relative singular-value cutoff for the undamped pseudo-inverses (None: torch default).
        loss: ``"cross_entropy"`` (integer targets) or ``"mse"`` (targets shaped like the outputs).

    ``step(inputs, targets)`` (or ``step(closure=...)`` with a closure returning ``(inputs, targets)``)
    returns the batch loss before the update. Cost per step: see the module docstring.
    """

    def __init__(self, model: ReversibleNet, lr: float = 1.0, damping: float = 0.0,
                 rcond: Optional[float] = None, loss: str = "cross_entropy"):
        if not isinstance(model, ReversibleNet):
            raise ValueError("ExactGaussNewton needs a curvnb.models.ReversibleNet")
        if lr <= 0 or damping < 0:
            raise ValueError(f"lr must be > 0 and damping ≥ 0, got lr={lr}, damping={damping}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: allowed values are {', '.join(map(repr, LOSSES))}")
        super().__init__(model.parameters(), dict(lr=lr, damping=damping, rcond=rcond))
        self.model, self.loss = model, loss

    @torch.no_grad()
    def direction(self, inputs: torch.Tensor, eps: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per block ``(ΔW_F, Δb_F, ΔW_G, Δb_G)`` of ``u = (1/L) Σ_l J_l⁺ R⁺ ε`` (not applied)."""
        group = self.param_groups[0]
        model = self.model
        hs = model.block_inputs(inputs)
        delta = eps @ model.U.T  # δh_L = R⁺ ε (U has orthonormal columns)
        L = len(model.blocks)
        updates = [None] * L
        for l in reversed(range(L)):
            block = model.blocks[l]
            x1, x2 = hs[l].chunk(2, dim=-1)
            y1 = hs[l + 1].chunk(2, dim=-1)[0]
            t1, t2 = delta.chunk(2, dim=-1)
            dWf, dbf = _solve_half(block.F, x2, t1, group["damping"], group["rcond"])
            realised1 = block.F.features(x2) @ dWf.T + dbf  # = t₁ when exact
            dWg, dbg = _solve_half(block.G, y1, t2 - block.G.jvp_input(y1, realised1),
                                   group["damping"], group["rcond"])
            updates[l] = tuple(u / L for u in (dWf, dbf, dWg, dbg))
            delta = block.inverse_jvp(hs[l + 1], delta)  # what block l's input would need to move
        return updates

    @torch.no_grad()
    def step(self, inputs: Optional[torch.Tensor] = None, targets: Optional[torch.Tensor] = None,
             closure: Optional[Callable[[], tuple[torch.Tensor, torch.Tensor]]] = None) -> float:
        if closure is not None:
            inputs, targets = closure()
        if inputs is None or targets is None:
            raise ValueError("step needs the batch: step(inputs, targets) or step(closure=lambda: (inputs, targets))")
        outputs = self.model(inputs)
        loss = float(batch_loss(outputs, targets, self.loss))
        eps = function_space_step(outputs, targets, self.loss, self.param_groups[0]["lr"])
        for block, (dWf, dbf, dWg, dbg) in zip(self.model.blocks, self.direction(inputs, eps)):
            block.F.W.add_(dWf); block.F.b.add_(dbf)
            block.G.W.add_(dWg); block.G.b.add_(dbg)
        return loss
