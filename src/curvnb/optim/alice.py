"""Alice (Duersch et al. 2024): Adam-bounded Newton-like steps with Hessian and glass curvature.

Our reading of the method, in plain PyTorch (no custom kernels), elementwise per parameter:

* Curvature steps evaluate the closure three times, at ``ν + σz``, ``ν − σz`` and ``ν`` (``z``
  Rademacher from the optimizer's own seeded generator, the closure's data the same for all
  three); they give ``g₀``, a Hessian-diagonal sample ``h`` and a glass-density sample ``ρ``
  (:mod:`curvnb.curvature.glass`). "Quick" steps evaluate only ``g₀`` and reuse ``H`` and ``R``.
* Running averages ``G`` (of ``g₀``, β₁), ``V`` (of ``g₀²``, β₂), ``H`` (of ``h``) and ``R`` (of ``ρ``,
  both β₃), initialised with the first sample (so no bias correction is needed).
* ``a = |G|``, glass curvature ``α = (3/(4π)) R/(a + ε)``, combined curvature
  ``h_opt = α + h + sqrt(α(α + 2h)) + ε``, Newton-like step ``δ = a / h_opt``, clamped to
  ``[lr·s_min·f, lr·s_max·f]`` with ``f = a/(√V + ε)`` (``bound="adam"``), ``a`` (``"sgdm"``) or ``1``
  (``"fixed"``); a NaN ``δ`` goes to the upper bound. Direction ``−sign(G)``.
* Two iterates: gradients are evaluated at ``ν``, the model is left at ``μ``. With the displacement
  ``D = (ν − μ) + Δ`` (``Δ`` the signed step) we set ``μ ← μ + φD`` and ``ν ← μ_old + ωD``. With
  ``ω = 1`` and ``φ = 1 − β₁``, μ is the β₁-average of the ν's, so on a quadratic (affine gradient)
  ``G = ∇L(μ)`` exactly ("NAQ" exactness); ``φ = 1`` is a plain (single-iterate) method.
* The first ``warmup`` steps (default ``round(1/(1 − β₁))``) only accumulate statistics.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Optional

import torch

from curvnb.curvature.glass import glass_density_samples, hessian_diagonal_samples, rademacher

__all__ = ["Alice", "CURVATURES", "BOUNDS", "HESSIAN_METHODS"]

CURVATURES = ("none", "hessian", "glass", "both")
BOUNDS = ("adam", "sgdm", "fixed")
HESSIAN_METHODS = ("abs", "rms")
_GLASS_FACTOR = 3.0 / (4.0 * math.pi)


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: allowed values are {', '.join(map(repr, allowed))}")


class Alice(torch.optim.Optimizer):
    """Alice optimizer; ``step(closure)`` needs a closure that zeroes grads, computes the loss,
    calls ``backward()`` and returns the loss (as for ``torch.optim.LBFGS``); it is called
    3 times on curvature steps and once on the others.

    Args:
        lr: step scale (default 1e-3).
        betas: (β₁, β₂, β₃) for the gradient, squared-gradient and curvature averages (0.9, 0.999, 0.99).
        eps: ε in the curvature and bound formulas (1e-8).
        curvature: which curvature terms form ``h_opt``: ``"none"`` (always the upper bound: an
            Adam-like step of ``lr·s_max``), ``"hessian"``, ``"glass"`` or ``"both"`` (default).
        hessian_method: ``"abs"`` (mean of |g₊−g₋|/2σ, default) or ``"rms"`` (root of the mean square).
        bound: step-bound method ``"adam"`` (default), ``"sgdm"`` or ``"fixed"``.
        s_min, s_max: bound factors (0 and 2).
        sigma: perturbation scale σ (default: ``lr``).
        curvature_every: one curvature step (3 gradient evaluations) every this many steps; the
            others are quick 1-evaluation steps reusing H and R (default 1: every step). Ignored
            when ``curvature="none"`` (always 1 evaluation).
        phi, omega: iterate weights (defaults ``1 − β₁`` and 1).
        warmup: statistics-only steps (default ``round(1/(1 − β₁))``).
        seed: seed of the optimizer's own Rademacher generator (deterministic runs).

    ``grad_evals`` counts closure calls. A non-finite loss, gradient or update raises
    :class:`FloatingPointError` and leaves the parameters and the optimizer state as they were.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float, float] = (0.9, 0.999, 0.99),
                 eps: float = 1e-8, *, curvature: str = "both", hessian_method: str = "abs", bound: str = "adam",
                 s_min: float = 0.0, s_max: float = 2.0, sigma: Optional[float] = None, curvature_every: int = 1,
                 phi: Optional[float] = None, omega: float = 1.0, warmup: Optional[int] = None, seed: int = 0):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if len(betas) != 3 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be three values in [0, 1), got {betas}")
        _check("curvature", curvature, CURVATURES)
        _check("hessian_method", hessian_method, HESSIAN_METHODS)
        _check("bound", bound, BOUNDS)
        if not 0 <= s_min <= s_max:
            raise ValueError(f"need 0 <= s_min <= s_max, got {s_min}, {s_max}")
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if not (isinstance(curvature_every, int) and curvature_every >= 1):
            raise ValueError(f"curvature_every must be an integer >= 1, got {curvature_every!r}")
        phi = 1.0 - betas[0] if phi is None else phi
        if not 0 < phi <= 1:
            raise ValueError(f"phi must be in (0, 1], got {phi}")
        warmup = round(1.0 / (1.0 - betas[0])) if warmup is None else warmup
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, curvature=curvature, hessian_method=hessian_method,
                        bound=bound, s_min=s_min, s_max=s_max, sigma=sigma, phi=phi, omega=omega)
        super().__init__(params, defaults)
        self.curvature_every = curvature_every
        self.warmup = int(warmup)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.grad_evals = 0
        self.steps_taken = 0
        self.last_info: dict = {}

    # ------------------------------------------------------------------ helpers
    def _params(self) -> list[tuple[dict, torch.Tensor]]:
        return [(g, p) for g in self.param_groups for p in g["params"] if p.requires_grad]

    def _evaluate(self, closure: Callable[[], torch.Tensor], points: list[torch.Tensor]) -> tuple[float, list]:
        """Loss and gradients with the parameters set to ``points``."""
        with torch.no_grad():
            for (_, p), x in zip(self._params(), points):
                p.copy_(x)
        with torch.enable_grad():
            loss = closure()
        self.grad_evals += 1
        loss = float(loss)
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for _, p in self._params()]
        if not math.isfinite(loss):
            raise FloatingPointError(f"Alice: the closure returned a non-finite loss ({loss}); "
                                     "parameters left unchanged")
        if not all(bool(torch.isfinite(g).all()) for g in grads):
            raise FloatingPointError("Alice: non-finite gradient; parameters left unchanged")
        return loss, grads

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> float:  # type: ignore[override]
        """One Alice step; returns the loss at ν (the last closure evaluation of this step)."""
        if closure is None:
            raise ValueError("Alice needs a closure (it evaluates gradients at several points per step)")
        items = self._params()
        mus = [self.state[p].get("mu", p.detach().clone()) for _, p in items]
        nus = [self.state[p].get("nu", p.detach().clone()) for _, p in items]
        first = "G" not in self.state[items[0][1]]
        try:
            uses_curvature = any(g["curvature"] != "none" for g, _ in items)
            curvature_step = uses_curvature and (first or self.steps_taken % self.curvature_every == 0)
            new: list[dict] = []
            n_upper, n_total = 0, 0
            if curvature_step:
                zs = [rademacher(p.numel(), generator=self.generator, dtype=p.dtype, device=p.device).view_as(p)
                      for _, p in items]
                sig = [g["sigma"] if g["sigma"] is not None else g["lr"] for g, _ in items]
                _, gp = self._evaluate(closure, [n + s * z for n, s, z in zip(nus, sig, zs)])
                _, gm = self._evaluate(closure, [n - s * z for n, s, z in zip(nus, sig, zs)])
            loss, g0 = self._evaluate(closure, nus)
            for i, (group, p) in enumerate(items):
                st = self.state[p]
                b1, b2, b3 = group["betas"]
                eps = group["eps"]
                s = dict(G=g0[i].clone() if first else b1 * st["G"] + (1 - b1) * g0[i],
                         V=g0[i].square() if first else b2 * st["V"] + (1 - b2) * g0[i].square())
                if curvature_step:
                    h = hessian_diagonal_samples(gp[i], gm[i], sig[i], group["hessian_method"])
                    rho = glass_density_samples(gp[i], gm[i], g0[i], sig[i])
                    s["H"] = h if "H" not in st else b3 * st["H"] + (1 - b3) * h
                    s["R"] = rho if "R" not in st else b3 * st["R"] + (1 - b3) * rho
                else:
                    s["H"] = st.get("H", torch.zeros_like(p))
                    s["R"] = st.get("R", torch.zeros_like(p))
                mu, nu = mus[i], nus[i]
                if self.steps_taken >= self.warmup:
                    delta, at_upper = self._step_size(group, s)
                    n_upper, n_total = n_upper + int(at_upper.sum()), n_total + at_upper.numel()
                    D = (nu - mu) - torch.sign(s["G"]) * delta
                    s["mu"], s["nu"] = mu + group["phi"] * D, mu + group["omega"] * D
                    if not (torch.isfinite(s["mu"]).all() and torch.isfinite(s["nu"]).all()):
                        raise FloatingPointError("Alice: non-finite update; parameters left unchanged")
                else:
                    s["mu"], s["nu"] = mu.clone(), nu.clone()
                new.append(s)
        except BaseException:
            for (_, p), mu in zip(items, mus):  # parameters back at μ, state untouched
                p.copy_(mu)
            raise
        for (_, p), s in zip(items, new):  # commit
            self.state[p].update(s)
            p.copy_(s["mu"])
        self.steps_taken += 1
        # fraction of elements whose step was capped by the upper bound (nan during warm-up)
        self.last_info = {"curvature_step": curvature_step, "loss": loss,
                          "upper_bound_fraction": n_upper / n_total if n_total else float("nan")}
        return loss

    @staticmethod
    def _step_size(group: dict, s: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Elementwise step magnitude δ = a / h_opt, clamped to the bounds (NaN → upper bound),
        and the mask of elements held at the upper bound."""
        eps = group["eps"]
        a = s["G"].abs()
        h = s["H"].sqrt() if group["hessian_method"] == "rms" else s["H"]
        curvature = group["curvature"]
        if curvature in ("hessian", "none"):
            alpha = torch.zeros_like(a)
        else:
            alpha = _GLASS_FACTOR * s["R"] / (a + eps)
        if curvature in ("glass", "none"):
            h = torch.zeros_like(a)
        if curvature == "none":
            delta = torch.full_like(a, float("inf"))
        else:
            h_opt = alpha + h + torch.sqrt(alpha * (alpha + 2 * h)) + eps
            delta = a / h_opt
        if group["bound"] == "adam":
            f = a / (s["V"].sqrt() + eps)
        elif group["bound"] == "sgdm":
            f = a
        else:
            f = torch.ones_like(a)
        lo, hi = group["lr"] * group["s_min"] * f, group["lr"] * group["s_max"] * f
        delta = torch.where(torch.isnan(delta), hi, delta)
        return torch.minimum(torch.maximum(delta, lo), hi), delta >= hi

    def state_dict(self):  # the generator's state travels with the optimizer's
        sd = super().state_dict()
        sd["alice"] = {"generator": self.generator.get_state(), "grad_evals": self.grad_evals,
                       "steps_taken": self.steps_taken}
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        extra = state_dict.pop("alice", None)
        super().load_state_dict(state_dict)
        if extra is not None:
            self.generator.set_state(extra["generator"])
            self.grad_evals, self.steps_taken = extra["grad_evals"], extra["steps_taken"]
