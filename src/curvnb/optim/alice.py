"""Alice (Duersch et al. 2024): Adam-bounded Newton-like steps with Hessian and glass curvature.

:class:`Alice` follows the authors' public implementation (Sandia's ``alice`` 1.1: the optimizer
class and its fused kernel) step for step, in plain PyTorch. Elementwise per parameter, at batch
``n = 1, 2, ...``:

* **Averages as running means first.** Every average uses ``β_t = min(β, (n − 1)/n)``, so the
  first batches give plain running means (no seeding with the first sample, no bias correction).
  ``β₃ = 1 − (q + 1)(1 − β₂)`` for the curvature averages, with ``q`` quick steps.
* **Schedule.** Batch ``n`` is a *curvature* step when ``n ≤ 1/(1 − β₁)`` or ``n mod (q + 1) = 0``,
  otherwise a *quick* step. The first ``1/(1 − β₁)`` batches only accumulate statistics; the
  parameters move from batch ``n > 1/(1 − β₁)`` on. We evaluate ``1/(1 − β₁)`` in float64 (Python
  floats): for β₁ = 0.9 it is 10.000000000000002, so **10** statistics-only batches. (The reference
  keeps β₁ as a float32 tensor, where it is 9.9999981, so the reference has 9.)
* **Curvature step** (3 closure calls, the global RNG state restored before each so dropout is the
  same): gradients at ``ν + σz``, ``ν − σz`` and ``ν`` with ``z`` Rademacher and ``σ = lr`` give
  ``h = |g₊ − g₋|/(2σ)`` (``"abs"``) or its square (``"rms"``), ``ρ = 2(ḡ − g₀)²/σ``
  (:mod:`curvnb.curvature.glass`); ``H ← h + β₃(H − h)``, ``R ← ρ + β₃(R − ρ)``,
  ``V ← g₀² + β₂(V − g₀²)``, ``G ← g₀ + β₁(G − g₀)``.
  **Quick step** (1 closure call at ``ν``): ``V`` and ``G`` only.
* **State update** (after the statistics-only batches, on every batch): ``a = |G|``,
  ``α = (3/(4π)) R/(a + ε)`` (we use 3/(4π) exactly; the kernel's 0.238732 is it rounded),
  ``h_opt = α + h + sqrt(α(α + 2h)) + ε`` (``h = H``, or ``sqrt(H)`` for ``"rms"``), ``δ = a/h_opt``,
  then ``δ ← lo`` if ``δ < lo``, else ``δ ← hi`` unless ``δ < hi`` (so a NaN δ goes to ``hi``), with
  ``lo, hi = lr·s_min·f, lr·s_max·f`` and ``f = a/(√V + ε)`` (``"adam"``), ``a`` (``"sgdm"``) or 1
  (``"fixed"``); ``lr_max = s_max·lr = 2·lr`` by default. The signed step is ``Δ = −δ`` where
  ``G > 0`` and ``+δ`` otherwise.
* **Iterates, both from the old μ:** ``ν ← μ + ωΔ``, ``μ ← μ + φΔ`` (φ = 1 − β₁, ω = 1). Gradients
  are taken at ``ν``; the model is left at ``μ`` between steps. With φ = 1 − β₁ and ω = 1 the
  average ``G`` equals ``∇L(μ)`` exactly on a quadratic ("NAQ").

Not in the reference: ``curvature="none"`` (h = α = 0, so every step sits at its upper bound —
an Adam-like step with Alice's iterates; one gradient per batch) as an ablation baseline; the
Rademacher ``z`` drawn from the optimizer's own seeded generator; the reference's L1/L2
regularisation terms (``w1``, ``w2``, default 0) are not implemented.

:class:`HeavyBallAlice` is **not** the paper's method: it is curvnb's earlier reading, identical
except for the iterates, ``D = (ν − μ) + Δ``, ``μ ← μ + φD``, ``ν ← μ + ωD``, which adds heavy-ball
momentum (μ moves several times further per step). It is kept only as a labelled comparison.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Optional

import torch

from curvnb.curvature.glass import glass_density_samples, hessian_diagonal_samples, rademacher
from curvnb.seeds import cpu_generator

__all__ = ["Alice", "HeavyBallAlice", "CURVATURES", "BOUNDS", "HESSIAN_METHODS"]

CURVATURES = ("none", "hessian", "glass", "both")
BOUNDS = ("adam", "sgdm", "fixed")
HESSIAN_METHODS = ("abs", "rms")
_GLASS_FACTOR = 3.0 / (4.0 * math.pi)


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: allowed values are {', '.join(map(repr, allowed))}")


class Alice(torch.optim.Optimizer):
    """Alice, as in the authors' reference implementation (see the module docstring).

    ``step(closure)`` needs a closure that zeroes grads, computes the loss, calls ``backward()``
    and returns the loss (as for ``torch.optim.LBFGS``); it is called 3 times on curvature steps
    and once on quick steps. The model is left at μ after every step.

    Args:
        lr: step scale and perturbation scale σ (default 1e-3).
        betas: (β₁, β₂) for the gradient and squared-gradient averages (0.9, 0.999); the curvature
            averages use β₃ = 1 − (quick_steps + 1)(1 − β₂).
        eps: ε in the curvature and bound formulas (1e-8).
        curvature: which curvature terms form ``h_opt``: ``"hessian"``, ``"glass"``, ``"both"``
            (default) or ``"none"`` (not in the reference: every step at the upper bound).
        hessian_method: ``"abs"`` (average of |g₊−g₋|/2σ, default) or ``"rms"`` (root of the average square).
        bound: step-bound method ``"adam"`` (default), ``"sgdm"`` or ``"fixed"``.
        s_min, s_max: bounds as multiples of lr (``lr_min = s_min·lr = 0``, ``lr_max = s_max·lr = 2·lr``).
        sigma: perturbation scale σ (default: ``lr``, as in the reference).
        quick_steps: q one-gradient steps between curvature steps (default 3, the reference's).
        phi, omega: iterate weights (defaults ``1 − β₁`` and 1).
        warmup: statistics-only batches; default: the batches ``n ≤ 1/(1 − β₁)`` (float64), 10 for
            β₁ = 0.9. Setting it departs from the reference.
        seed: seed of the optimizer's own Rademacher generator (deterministic runs); ``z`` is
            ``2·randint(0, 2) − 1`` on a CPU generator, one draw per parameter in order per curvature step.

    Counters: ``grad_evals`` (closure calls), ``batches`` (steps taken), ``moves`` (state updates);
    ``state[p]["upper_count"]`` counts, per element, the moves held at the upper bound.
    A non-finite loss, gradient or update raises :class:`FloatingPointError` and leaves the
    parameters and the optimizer state as they were.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, *, curvature: str = "both", hessian_method: str = "abs", bound: str = "adam",
                 s_min: float = 0.0, s_max: float = 2.0, sigma: Optional[float] = None, quick_steps: int = 3,
                 phi: Optional[float] = None, omega: float = 1.0, warmup: Optional[int] = None, seed: int = 0):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if len(betas) != 2 or not all(0.0 < b < 1.0 for b in betas):
            raise ValueError(f"betas must be two values (β₁, β₂) in (0, 1), got {betas}")
        _check("curvature", curvature, CURVATURES)
        _check("hessian_method", hessian_method, HESSIAN_METHODS)
        _check("bound", bound, BOUNDS)
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        if not 0 <= s_min <= s_max:
            raise ValueError(f"need 0 <= s_min <= s_max, got {s_min}, {s_max}")
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if isinstance(quick_steps, bool) or not isinstance(quick_steps, int) or quick_steps < 0:
            raise ValueError(f"quick_steps must be an integer >= 0, got {quick_steps!r}")
        beta3 = 1.0 - (quick_steps + 1) * (1.0 - betas[1])
        if not 0.0 <= beta3 < 1.0:
            raise ValueError(f"β₃ = 1 − (quick_steps + 1)(1 − β₂) = {beta3:g} must lie in [0, 1): "
                             "fewer quick steps or a larger β₂")
        phi = 1.0 - betas[0] if phi is None else phi
        if not 0 < phi < 2:
            raise ValueError(f"phi must be in (0, 2), got {phi}")
        if not omega > 0:
            raise ValueError(f"omega must be positive, got {omega}")
        if warmup is not None and (isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0):
            raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
        defaults = dict(lr=lr, betas=(float(betas[0]), float(betas[1]), beta3), eps=eps, curvature=curvature,
                        hessian_method=hessian_method, bound=bound, s_min=s_min, s_max=s_max, sigma=sigma,
                        phi=phi, omega=omega)
        super().__init__(params, defaults)
        self.quick_steps = quick_steps
        # The reference compares the batch count with 1/(1 − β₁) itself; we do so in float64.
        self._warm_limit = 1.0 / (1.0 - float(betas[0])) if warmup is None else float(warmup)
        self.warmup = math.floor(self._warm_limit)
        self.seed = seed
        self.generator = cpu_generator(seed)
        self.grad_evals = 0
        self.batches = 0
        self.moves = 0
        self.last_info: dict = {}

    # ------------------------------------------------------------------ schedule
    def is_curvature_step(self, n: int) -> bool:
        """Whether batch ``n`` (1-based) is a 3-gradient curvature step."""
        if all(g["curvature"] == "none" for g in self.param_groups):
            return False
        return n <= self._warm_limit or n % (self.quick_steps + 1) == 0

    def gradient_evaluations(self, batches: int) -> int:
        """Closure calls spent by the first ``batches`` batches (the schedule is deterministic)."""
        return sum(3 if self.is_curvature_step(n) else 1 for n in range(1, batches + 1))

    # ------------------------------------------------------------------ helpers
    def _params(self) -> list[tuple[dict, torch.Tensor]]:
        return [(g, p) for g in self.param_groups for p in g["params"] if p.requires_grad]

    def _evaluate(self, closure: Callable[[], torch.Tensor], points: list[torch.Tensor]) -> tuple[float, list]:
        """Loss and gradients with the parameters set to ``points``. The gradient tensors are taken
        from the parameters (``p.grad`` is reset to None), so the next closure call cannot overwrite them."""
        items = self._params()
        with torch.no_grad():
            for (_, p), x in zip(items, points):
                p.copy_(x)
        with torch.enable_grad():
            loss = closure()
        self.grad_evals += 1
        loss = float(loss)
        grads = []
        for _, p in items:
            grads.append(torch.zeros_like(p) if p.grad is None else p.grad.detach())
            p.grad = None
        if not math.isfinite(loss):
            raise FloatingPointError(f"Alice: the closure returned a non-finite loss ({loss}); "
                                     "parameters left unchanged")
        # one reduction per tensor: a NaN or ±inf entry makes the sum non-finite
        if not math.isfinite(float(sum(g.sum(dtype=torch.float64) for g in grads))):
            raise FloatingPointError("Alice: non-finite gradient; parameters left unchanged")
        return loss, grads

    def _rng_states(self) -> tuple:
        cuda = sorted({p.device.index or 0 for _, p in self._params() if p.device.type == "cuda"})
        return torch.get_rng_state(), [(d, torch.cuda.get_rng_state(d)) for d in cuda]

    @staticmethod
    def _set_rng_states(states: tuple) -> None:
        cpu, cuda = states
        torch.set_rng_state(cpu)
        for d, s in cuda:
            torch.cuda.set_rng_state(s, d)

    @staticmethod
    def _iterates(mu: torch.Tensor, nu: torch.Tensor, signed_step: torch.Tensor, phi: float,
                  omega: float) -> tuple[torch.Tensor, torch.Tensor]:
        """New (μ, ν): both from the old μ, as in the reference."""
        return mu + phi * signed_step, mu + omega * signed_step

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> float:  # type: ignore[override]
        """One batch; returns the loss at ν (the last closure evaluation of this step)."""
        if closure is None:
            raise ValueError("Alice needs a closure (it evaluates gradients at several points per step)")
        items = self._params()
        mus = [self.state[p]["mu"] if "mu" in self.state[p] else p.detach().clone() for _, p in items]
        nus = [self.state[p]["nu"] if "nu" in self.state[p] else p.detach().clone() for _, p in items]
        n = self.batches + 1
        shrink = (n - 1) / n  # running means first: β_t = min(β, (n − 1)/n)
        curvature_step = self.is_curvature_step(n)
        moving = n > self._warm_limit
        evals_before = self.grad_evals
        g0: list = []
        try:
            if curvature_step:
                zs = [rademacher(p.numel(), generator=self.generator, dtype=p.dtype, device=p.device).view_as(p)
                      for _, p in items]
                sig = [g["sigma"] if g["sigma"] is not None else g["lr"] for g, _ in items]
                rng = self._rng_states()  # the same randomness (dropout, ...) for all three gradients
                _, gp = self._evaluate(closure, [v + s * z for v, s, z in zip(nus, sig, zs)])
                self._set_rng_states(rng)
                _, gm = self._evaluate(closure, [v - s * z for v, s, z in zip(nus, sig, zs)])
                self._set_rng_states(rng)
            loss, g0 = self._evaluate(closure, nus)
            new: list[dict] = []
            for i, (group, p) in enumerate(items):
                st = self.state[p]
                b1, b2, b3 = (min(b, shrink) for b in group["betas"])
                g, v = g0[i], g0[i].square()
                if "G" in st:
                    s = {"G": g + b1 * (st["G"] - g), "V": v + b2 * (st["V"] - v), "H": st["H"], "R": st["R"]}
                else:  # the averages start at zero (with β_1 = 0 the first batch replaces them)
                    zero = torch.zeros_like(p)
                    s = {"G": g + b1 * (zero - g), "V": v + b2 * (zero - v), "H": zero, "R": zero,
                         "upper_count": zero}
                if curvature_step:
                    h = hessian_diagonal_samples(gp[i], gm[i], sig[i], group["hessian_method"])
                    rho = glass_density_samples(gp[i], gm[i], g, sig[i])
                    s["H"] = h + b3 * (s["H"] - h)
                    s["R"] = rho + b3 * (s["R"] - rho)
                if moving:
                    delta, at_upper = self._step_size(group, s)
                    # −δ where G > 0, +δ otherwise (also at G = ±0, as in the reference): δ ≥ 0 takes
                    # the sign of 0 − G, which is +0 for G = ±0
                    signed = torch.copysign(delta, 0.0 - s["G"])
                    s["mu"], s["nu"] = self._iterates(mus[i], nus[i], signed, group["phi"], group["omega"])
                    s["upper_count"] = s.get("upper_count", st.get("upper_count")) + at_upper
                else:
                    s["mu"], s["nu"] = mus[i], nus[i]
                new.append(s)
            if moving and not math.isfinite(float(sum(s["nu"].sum(dtype=torch.float64) + s["mu"].sum(dtype=torch.float64)
                                                          for s in new))):
                raise FloatingPointError("Alice: non-finite update; parameters left unchanged")
        except BaseException:
            for (_, p), mu in zip(items, mus):  # parameters back at μ, state untouched
                p.copy_(mu)
            self.grad_evals = evals_before
            raise
        for (_, p), s, g in zip(items, new, g0):  # commit; the model is left at μ with the gradient at ν
            self.state[p].update(s)
            p.copy_(s["mu"])
            p.grad = g
        self.batches = n
        self.moves += int(moving)
        self.last_info = {"curvature_step": curvature_step, "moved": moving, "loss": loss}
        return loss

    @staticmethod
    def _step_size(group: dict, s: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Elementwise step magnitude δ = a / h_opt clamped as in the reference (NaN → upper bound),
        and the mask of elements held at the upper bound."""
        eps, curvature = group["eps"], group["curvature"]
        a = s["G"].abs()
        hessian, glass = curvature in ("hessian", "both"), curvature in ("glass", "both")
        h = (s["H"].sqrt() if group["hessian_method"] == "rms" else s["H"]) if hessian else None
        alpha = _GLASS_FACTOR * s["R"] / (a + eps) if glass else None
        # h_opt = α + h + sqrt(α(α + 2h)) + ε; with a term switched off (exactly 0) the same value in fewer operations
        if hessian and glass:
            h_opt = alpha + h + torch.sqrt(alpha * (alpha + 2.0 * h)) + eps
        elif glass:
            h_opt = alpha + torch.sqrt(alpha * alpha) + eps
        elif hessian:
            h_opt = h + eps
        else:
            h_opt = eps
        delta = a / h_opt
        if group["bound"] == "adam":
            f = a / (s["V"].sqrt() + eps)
        elif group["bound"] == "sgdm":
            f = a
        else:
            f = torch.ones_like(a)
        lo, hi = group["lr"] * group["s_min"] * f, group["lr"] * group["s_max"] * f
        # the reference: δ < lo → lo, else δ → hi unless δ < hi (so NaN → hi); as lo ≤ hi this is
        # min(max(δ, lo), hi) with NaN read as +inf, and δ is held at hi exactly when not δ < hi
        at_upper = ~(delta < hi)
        delta = torch.minimum(torch.maximum(torch.nan_to_num(delta, nan=math.inf, posinf=math.inf), lo), hi)
        return delta, at_upper

    def upper_bound_fraction(self) -> float:
        """Fraction of (element, move) pairs held at the upper bound so far (nan before the first move)."""
        if not self.moves:
            return float("nan")
        count = sum(float(self.state[p]["upper_count"].sum()) for _, p in self._params())
        return count / (self.moves * sum(p.numel() for _, p in self._params()))

    def state_dict(self):  # the generator's state and the counters travel with the optimizer's
        sd = super().state_dict()
        sd["alice"] = {"generator": self.generator.get_state(), "grad_evals": self.grad_evals,
                       "batches": self.batches, "moves": self.moves}
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        extra = state_dict.pop("alice", None)
        super().load_state_dict(state_dict)
        if extra is not None:
            self.generator.set_state(extra["generator"])
            self.grad_evals, self.batches, self.moves = extra["grad_evals"], extra["batches"], extra["moves"]


class HeavyBallAlice(Alice):
    """**Not the paper's Alice**: curvnb's earlier two-iterate form, kept as a labelled variant.

    Identical to :class:`Alice` except for the iterates: with ``D = (ν − μ) + Δ``,
    ``μ ← μ + φD`` and ``ν ← μ + ωD`` (both from the old μ). The carried-over ``ν − μ`` is
    heavy-ball momentum: μ moves several times further per step than in the reference form."""

    @staticmethod
    def _iterates(mu: torch.Tensor, nu: torch.Tensor, signed_step: torch.Tensor, phi: float,
                  omega: float) -> tuple[torch.Tensor, torch.Tensor]:
        displacement = (nu - mu) + signed_step
        return mu + phi * displacement, mu + omega * displacement
