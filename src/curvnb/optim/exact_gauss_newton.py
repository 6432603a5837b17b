"""Exact Gauss–Newton for :class:`curvnb.models.ReversibleNet` (Buffelli et al. 2024, our reading).

**Function space first.** On the batch, the outputs should move by ``ε = −lr · H⁺ r`` with ``r``
the per-example residual of the loss (``softmax(f) − onehot(y)`` for cross-entropy, ``f − y`` for
squared error; *not* divided by the batch size) and ``H`` the loss Hessian in output space:

* ``hessian="identity"`` (default): ``H`` is replaced by the identity, ``ε = −lr · r``. This is the
  authors' published setting (``use_identity: true`` in every GN configuration of their public code,
  ``mtkresearch/exact_GN_revNN``);
* ``hessian="pinv"``: the exact pseudo-inverse of the cross-entropy Hessian in logit space,
  ``H = diag(p) − p pᵀ`` per example, applied to ``r`` (their ``use_identity: false``). Since
  ``r ⊥ 1``, ``H⁺ r = mean_c(y/p) · 1 − y/p``: for a one-hot target, ``1/p_y`` times
  ``(1/k) 1 − e_y``, which is large when the correct class is improbable. For squared error
  ``H = I`` and both settings agree.

**Parameter space: two inverses of the Jacobian ``J``** (``J u = ε`` needs ``nk ≤ P``):

* ``inverse="blockwise"`` (default; the construction of the authors' code): the last features
  should move by ``δh = ε Uᵀ`` (``U`` has orthonormal columns). For block ``l`` alone, pull ``δh``
  back through the later blocks' exact inverses (their inverse JVPs), giving the change
  ``(t₁, t₂)`` the block's output must make; the half ``F`` is linear in ``[W_F b_F]`` so
  ``Δ[W_F b_F] = pinv([φ(x₂C_F), 1]) t₁`` (an ``n × (M+1)`` pseudo-inverse), and ``G``'s target
  subtracts what ``ΔF`` induces through ``G``: ``pinv([φ(y₁C_G), 1]) (t₂ − G'(y₁) t₁)``. That is
  ``J_l⁺ δh``, the minimum-norm solution for block ``l``'s own parameters. Each block alone
  realises the whole change, so the update is the average ``u = (1/L) Σ_l J_l⁺ Uᵀ ε`` (the
  authors' code sums the blocks' solutions and scales by the SGD learning rate, so their
  ``lr`` is our ``lr / L``). Then ``J u = ε``: a **right inverse** of ``J``. It is the
  Moore–Penrose solution ``J⁺ε`` only for ``L = 1`` with a square readout; for ``L > 1`` it is
  several times longer than ``J⁺ε``.
  **Precondition:** ``n ≤ M + 1`` examples per batch (and ``[φ, 1]`` of full row rank, which
  fails for an identity ``φ`` with ``n > d/2 + 1``); otherwise each block's solve is a
  least-squares fit and ``J u ≠ ε`` although ``J`` may have full row rank. A batch larger than
  ``M + 1`` raises a :class:`RuntimeWarning`.
* ``inverse="min_norm"``: the minimum-norm step ``u = J⁺ε = Jᵀ (J Jᵀ)⁺ ε``. ``J Jᵀ`` (the batch's
  ``nk × nk`` empirical NTK) is assembled from per-example ``k × d`` Jacobians pulled back through
  the blocks: for each half, ``(A Aᵀ)_{ij} (P_i P_jᵀ)_{ab}`` with ``A = [φ, 1]`` its design matrix
  and ``P_i`` the Jacobian of example ``i``'s logits w.r.t. the half's output. Cost
  ``O(L n² k² d + (nk)³)``, no ``P × P`` matrix; needs ``nk ≤ P`` (warned otherwise).

Cost of a blockwise step: one forward pass storing the ``L + 1`` block inputs, ``L`` inverse-JVPs
(``O(n d M)`` each) and ``2L`` pseudo-inverses of ``n × (M+1)`` matrices — no ``P × P`` matrix and
no explicit Jacobian. Memory ``O(L n d + n M)``. Works on stacked ensembles
(:meth:`ReversibleNet.stack`): every member takes its own step.

Call::

    opt = ExactGaussNewton(model, lr=1.0)                 # blockwise right inverse, ε = −lr·r
    loss = opt.step(x_batch, y_batch)                     # returns the batch loss before the step
    loss = opt.step(closure=lambda: (x_batch, y_batch))   # or a closure returning the batch
    ExactGaussNewton(model, inverse="min_norm", hessian="pinv")   # J⁺ H⁺ r instead
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional

import torch
import torch.nn.functional as Fn

from curvnb.models.reversible import CouplingHalf, ReversibleNet

__all__ = ["ExactGaussNewton", "HESSIANS", "INVERSES", "LOSSES", "function_space_step"]

LOSSES = ("cross_entropy", "mse")
HESSIANS = ("identity", "pinv")
INVERSES = ("blockwise", "min_norm")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: allowed values are {', '.join(map(repr, allowed))}")


def function_space_step(outputs: torch.Tensor, targets: torch.Tensor, loss: str, lr: float,
                        hessian: str = "identity") -> torch.Tensor:
    """``ε = −lr · H⁺ r`` per example (see the module docstring); shape of ``outputs``."""
    _choice("loss", loss, LOSSES)
    _choice("hessian", hessian, HESSIANS)
    if loss == "mse":
        return -lr * (outputs - targets)  # H = I for ½‖f − y‖²
    k = outputs.shape[-1]
    onehot = Fn.one_hot(targets, k).to(outputs.dtype)
    if hessian == "identity":
        return -lr * (torch.softmax(outputs, dim=-1) - onehot)
    # H⁺ r = (1/p_y) ((1/k) 1 − e_y); 1/p_y = exp(logsumexp f − f_y) stays finite where p_y underflows.
    inv_py = torch.exp(torch.logsumexp(outputs, dim=-1) - (outputs * onehot).sum(-1)).unsqueeze(-1)
    return -lr * inv_py * (1.0 / k - onehot)


def batch_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean loss over the batch (and over ensemble members, which have equal batch sizes)."""
    if loss == "cross_entropy":
        return Fn.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))
    return 0.5 * ((outputs - targets) ** 2).sum(-1).mean()


def _pinv_apply(a: torch.Tensor, target: torch.Tensor, damping: float, rcond: Optional[float],
                hermitian: bool = False) -> torch.Tensor:
    """``a⁺ target`` (undamped; ``rcond``: relative singular-value cutoff) or ``aᵀ(aaᵀ + λ)⁻¹ target``."""
    if damping > 0:
        gram = a if hermitian else a @ a.mT
        gram = gram + damping * gram.diagonal(dim1=-2, dim2=-1).mean(-1)[..., None, None] * torch.eye(
            gram.shape[-1], dtype=gram.dtype, device=gram.device)
        sol = torch.linalg.solve(gram, target)
        return sol if hermitian else a.mT @ sol
    pinv = torch.linalg.pinv(a, rtol=rcond, hermitian=hermitian) if rcond is not None else \
        torch.linalg.pinv(a, hermitian=hermitian)
    return pinv @ target


def _solve_half(half: CouplingHalf, z: torch.Tensor, target: torch.Tensor, damping: float,
                rcond: Optional[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-norm ``(ΔW, Δb)`` with ``φ(zC) ΔWᵀ + Δb = target`` (damped: Tikhonov ``λ``)."""
    sol = _pinv_apply(half.design(z), target, damping, rcond)
    return sol[..., :-1, :].mT, sol[..., -1, :]  # ΔW (… × half × M), Δb (… × half)


class ExactGaussNewton(torch.optim.Optimizer):
    """Exact GN steps for a :class:`ReversibleNet` (see the module docstring for the construction).

    Args:
        model: the reversible network (its trainable ``W``/``b`` are the parameters); may be stacked.
        lr: function-space step ``ε = −lr · H⁺ r``; ``lr = 1`` with ``loss="mse"`` interpolates the batch.
        damping: relative Tikhonov damping ``λ`` (times the mean diagonal of each Gram matrix); 0 = exact.
        rcond: relative singular-value cutoff for the undamped pseudo-inverses (None: torch default;
            the authors' configurations use ``1e-2``).
        loss: ``"cross_entropy"`` (integer targets) or ``"mse"`` (targets shaped like the outputs).
        hessian: ``"identity"`` (default, the authors' setting) or ``"pinv"`` (exact logit-Hessian
            pseudo-inverse); see the module docstring.
        inverse: ``"blockwise"`` (default: the right inverse ``(1/L) Σ_l J_l⁺``, the authors'
            construction; precondition ``n ≤ M + 1``) or ``"min_norm"`` (``J⁺``).

    ``step(inputs, targets)`` (or ``step(closure=...)`` with a closure returning ``(inputs, targets)``)
    returns the batch loss before the update. Cost per step: see the module docstring.
    """

    def __init__(self, model: ReversibleNet, lr: float = 1.0, damping: float = 0.0,
                 rcond: Optional[float] = None, loss: str = "cross_entropy", hessian: str = "identity",
                 inverse: str = "blockwise"):
        if not isinstance(model, ReversibleNet):
            raise ValueError("ExactGaussNewton needs a curvnb.models.ReversibleNet")
        if lr <= 0 or damping < 0:
            raise ValueError(f"lr must be > 0 and damping ≥ 0, got lr={lr}, damping={damping}")
        _choice("loss", loss, LOSSES)
        _choice("hessian", hessian, HESSIANS)
        _choice("inverse", inverse, INVERSES)
        super().__init__(model.parameters(), dict(lr=lr, damping=damping, rcond=rcond))
        self.model, self.loss, self.hessian, self.inverse = model, loss, hessian, inverse
        self._warned = False

    def _check_batch(self, n: int, k: int) -> None:
        """Warn (once) when the batch breaks the precondition of an exact step."""
        if self._warned:
            return
        model = self.model
        n_params = sum(p[0].numel() if model.members else p.numel() for p in model.parameters())
        if self.inverse == "blockwise" and n > model.expansion + 1:
            self._warned = True
            warnings.warn(f"ExactGaussNewton: a batch of n={n} examples exceeds M+1={model.expansion + 1}; "
                          "each block's solve is then least-squares and J u ≠ ε (use n ≤ M+1)",
                          RuntimeWarning, stacklevel=3)
        elif self.inverse == "min_norm" and n * k > n_params:
            self._warned = True
            warnings.warn(f"ExactGaussNewton: n·k = {n * k} outputs exceed the {n_params} parameters; "
                          "J has no right inverse and J⁺ε is a least-squares step", RuntimeWarning, stacklevel=3)

    @torch.no_grad()
    def direction(self, inputs: torch.Tensor, eps: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per block ``(ΔW_F, Δb_F, ΔW_G, Δb_G)`` with ``J u = ε`` (not applied)."""
        if self.inverse == "min_norm":
            return self._min_norm_direction(inputs, eps)
        group = self.param_groups[0]
        model = self.model
        hs = model.block_inputs(inputs)
        self._check_batch(hs[0].shape[-2], eps.shape[-1])
        delta = eps @ model.U.mT  # δh_L = R⁺ ε (U has orthonormal columns)
        L = len(model.blocks)
        updates = [None] * L
        for l in reversed(range(L)):
            block = model.blocks[l]
            x2 = hs[l].chunk(2, dim=-1)[1]
            y1 = hs[l + 1].chunk(2, dim=-1)[0]
            t1, t2 = delta.chunk(2, dim=-1)
            dWf, dbf = _solve_half(block.F, x2, t1, group["damping"], group["rcond"])
            realised1 = block.F.features(x2) @ dWf.mT + dbf.unsqueeze(-2)  # = t₁ when exact
            dWg, dbg = _solve_half(block.G, y1, t2 - block.G.jvp_input(y1, realised1),
                                   group["damping"], group["rcond"])
            updates[l] = tuple(u / L for u in (dWf, dbf, dWg, dbg))
            delta = block.inverse_jvp(hs[l + 1], delta)  # what block l's input would need to move
        return updates

    def _min_norm_direction(self, inputs: torch.Tensor, eps: torch.Tensor):
        """``J⁺ε = Jᵀ(JJᵀ)⁺ε`` with ``JJᵀ`` assembled per half from per-example Jacobians (docstring)."""
        group = self.param_groups[0]
        model = self.model
        hs = model.block_inputs(inputs)
        n, k, d = hs[0].shape[-2], eps.shape[-1], model.width
        self._check_batch(n, k)
        lead = hs[0].shape[:-2]
        # q: Jacobian of each example's k logits w.r.t. the current features, (… × n × k × d).
        q = model.U.mT.unsqueeze(-3).expand(*lead, n, k, d)
        gram = torch.zeros(*lead, n, k, n, k, dtype=torch.float64, device=eps.device)
        pieces = [None] * len(model.blocks)
        for l in reversed(range(len(model.blocks))):
            block = model.blocks[l]
            x2 = hs[l].chunk(2, dim=-1)[1]
            y1 = hs[l + 1].chunk(2, dim=-1)[0]
            q1, q2 = q.chunk(2, dim=-1)
            p_f = q1 + block.G.vjp_input(y1, q2)  # logits w.r.t. F's output (through y₁ and G)
            a_f, a_g = block.F.design(x2), block.G.design(y1)
            for a, p in ((a_f, p_f), (a_g, q2)):
                aa = (a @ a.mT).double()
                gram += aa[..., :, None, :, None] * torch.einsum("...iap,...jbp->...iajb", p.double(), p.double())
            pieces[l] = (a_f, p_f, a_g, q2)
            q = torch.cat([p_f, q2 + block.F.vjp_input(x2, p_f)], dim=-1)  # pulled back to the block input
        gram = gram.reshape(*lead, n * k, n * k)
        alpha = _pinv_apply(gram, eps.double().reshape(*lead, n * k, 1), group["damping"], group["rcond"],
                            hermitian=True).reshape(*lead, n, k).to(eps.dtype)
        updates = []
        for a_f, p_f, a_g, p_g in pieces:
            out = []
            for a, p in ((a_f, p_f), (a_g, p_g)):
                theta = a.mT @ torch.einsum("...ia,...iap->...ip", alpha, p)  # Jᵀα for [W b]ᵀ
                out += [theta[..., :-1, :].mT, theta[..., -1, :]]
            updates.append(tuple(out))
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
        eps = function_space_step(outputs, targets, self.loss, self.param_groups[0]["lr"], self.hessian)
        for block, (dWf, dbf, dWg, dbg) in zip(self.model.blocks, self.direction(inputs, eps)):
            block.F.W.add_(dWf); block.F.b.add_(dbf)
            block.G.W.add_(dWg); block.G.b.add_(dbg)
        return loss
