"""Cost per step of ExactGaussNewton (block-wise right inverse and minimum-norm J⁺ε) vs an Adam step and
vs an explicitly formed Jacobian pseudo-inverse.

Prints the ratios (GN step / Adam step), (min-norm GN step / block-wise GN step) and (explicit-Jacobian
pinv / GN step), and how much longer the block-wise step is than J⁺ε, measured in one process,
round-robin, after warm-up, as medians. Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/exact_gauss_newton.py``.
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as Fn
from torch.func import functional_call, jacrev

from curvnb.models import ReversibleNet
from curvnb.optim import ExactGaussNewton
from curvnb.optim.exact_gauss_newton import function_space_step


def main(width: int = 32, expansion: int = 128, depth: int = 3, n: int = 64, k: int = 10,
         rounds: int = 7, warmup: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, width, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    net = ReversibleNet(width, k, width=width, expansion=expansion, depth=depth, seed=0, dtype=torch.float64)
    gn = ExactGaussNewton(net, lr=0.1)
    gn_min = ExactGaussNewton(net, lr=0.1, inverse="min_norm")
    adam = torch.optim.Adam(net.parameters(), lr=1e-4)
    names = [m for m, _ in net.named_parameters()]

    def gn_step():
        gn.step(x, y)

    def gn_min_norm_step():
        gn_min.step(x, y)

    def adam_step():
        adam.zero_grad(); Fn.cross_entropy(net(x), y).backward(); adam.step()

    def explicit_step():
        ps = tuple(p.detach() for p in net.parameters())
        jac = jacrev(lambda *q: functional_call(net, dict(zip(names, q)), (x,)).reshape(-1),
                     argnums=tuple(range(len(ps))))(*ps)
        J = torch.cat([j.reshape(j.shape[0], -1) for j in jac], 1)
        eps = function_space_step(net(x).detach(), y, "cross_entropy", 0.1)
        return torch.linalg.pinv(J) @ eps.reshape(-1)

    fns = {"gn": gn_step, "gn_min_norm": gn_min_norm_step, "adam": adam_step, "explicit": explicit_step}
    times = {name: [] for name in fns}
    for r in range(warmup + rounds):
        for name, fn in fns.items():
            t = time.perf_counter(); fn(); dt = time.perf_counter() - t
            if r >= warmup:
                times[name].append(dt)
    med = {name: statistics.median(v) for name, v in times.items()}
    P = sum(p.numel() for p in net.parameters())
    print(f"ReversibleNet d={width}, M={expansion}, L={depth}, n={n}, k={k}, P={P} parameters, float64; "
          f"median of {rounds} rounds after {warmup} warm-up")
    for name, v in med.items():
        print(f"  {name:11s} {1e3 * v:8.2f} ms per step")
    eps = function_space_step(net(x).detach(), y, "cross_entropy", 0.1)
    flat = lambda d: torch.cat([t.reshape(-1) for blk in d for t in blk])  # noqa: E731
    ratio = float(flat(gn.direction(x, eps)).norm() / flat(gn_min.direction(x, eps)).norm())
    print(f"GN step / Adam step            = {med['gn'] / med['adam']:.1f}")
    print(f"min-norm GN / block-wise GN    = {med['gn_min_norm'] / med['gn']:.1f}")
    print(f"‖block-wise u‖ / ‖J⁺ε‖         = {ratio:.1f}")
    print(f"explicit J pinv / GN step      = {med['explicit'] / med['gn']:.1f}")
    return med


if __name__ == "__main__":
    main()
