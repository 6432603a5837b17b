"""Cost per step of the natural-gradient optimizers of ``curvnb.optim``.

* ``FractionalNaturalGradient`` (through the ``n_out n_in`` function-space kernel) vs the same update
  through the explicit ``P × P`` Gauss–Newton matrix (``jacrev`` Jacobian + eigendecomposition), and vs
  an SGD step, on a deep linear network;
* ``BlockDiagonalNaturalGradient`` (fractional K-FAC, factors refreshed every step) vs an SGD step on
  a tanh MLP on a digits-sized batch.

Round-robin medians in one process, after warm-up. Run:
``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/natural_gradient.py``.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.func import jacrev

from curvnb.curvature.matrix_functions import symmetric_power
from curvnb.linear import DeepLinearNetwork, end_to_end, teacher_map, teacher_student_data
from curvnb.optim import BlockDiagonalNaturalGradient, FractionalNaturalGradient


def round_robin(steps: dict, rounds: int, warmup: int) -> dict[str, float]:
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def deep_linear(widths=(8, 32, 32, 8), rounds: int = 7, warmup: int = 2) -> dict[str, float]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _deep_linear(widths, rounds, warmup)
    finally:
        torch.set_default_dtype(previous)


def _deep_linear(widths, rounds: int, warmup: int) -> dict[str, float]:
    target = teacher_map([3.0, 2.0, 1.0], widths[-1], widths[0], seed=0)
    x, y = teacher_student_data(target, 4 * widths[0])
    net = DeepLinearNetwork(list(widths), scale=0.5 / widths[1] ** 0.5, seed=1)
    fng = FractionalNaturalGradient(net, lr=1e-6, alpha=0.5)
    sgd = torch.optim.SGD(net.parameters(), lr=1e-6)
    shapes = [w.shape for w in net.weights()]

    def backward():
        net.zero_grad()
        (0.5 * ((net(x) - y) ** 2).sum(1).mean()).backward()

    def dense_step():   # the same update through the explicit P × P Gauss–Newton matrix
        backward()
        theta = torch.cat([w.reshape(-1) for w in net.weights()])

        def vec_map(t):
            parts = torch.split(t, [a * b for a, b in shapes])
            return end_to_end([p.reshape(s) for p, s in zip(parts, shapes)]).reshape(-1)

        jac = jacrev(vec_map)(theta)
        grad = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
        direction = symmetric_power(jac.T @ jac, -0.5) @ grad
        with torch.no_grad():
            for p, d in zip(net.parameters(), torch.split(direction, [a * b for a, b in shapes])):
                p.add_(-1e-6 * d.reshape(p.shape))

    steps = {"sgd": lambda: (backward(), sgd.step()), "fng": lambda: (backward(), fng.step()), "dense": dense_step}
    result = round_robin(steps, rounds, warmup)
    result["P"] = sum(a * b for a, b in shapes)
    result["kernel"] = widths[0] * widths[-1]
    return result


def kfac_mlp(width: int = 64, n: int = 1500, rounds: int = 11, warmup: int = 2) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 10))
    kfac = BlockDiagonalNaturalGradient(model, lr=1e-6, alpha=0.5, damping=1e-3, loss="cross_entropy")
    sgd = torch.optim.SGD(model.parameters(), lr=1e-6)

    def backward():
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()

    return round_robin({"sgd": lambda: (backward(), sgd.step()), "kfac": lambda: (backward(), kfac.step(x))},
                       rounds, warmup)


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    lin = deep_linear()
    print(f"deep linear net 8-32-32-8 (P = {lin['P']}, kernel {lin['kernel']}×{lin['kernel']}), float64:")
    print(f"  SGD step {1e3 * lin['sgd']:.2f} ms; FractionalNaturalGradient step {1e3 * lin['fng']:.2f} ms "
          f"(÷ SGD {lin['fng'] / lin['sgd']:.1f}); explicit P×P Gauss–Newton step {1e3 * lin['dense']:.1f} ms "
          f"(÷ FractionalNaturalGradient {lin['dense'] / lin['fng']:.0f})")
    mlp = kfac_mlp()
    print("tanh MLP 64-64-64-10, batch 1500, float32:")
    print(f"  SGD step {1e3 * mlp['sgd']:.2f} ms; BlockDiagonalNaturalGradient step (factors every step) "
          f"{1e3 * mlp['kfac']:.2f} ms (÷ SGD {mlp['kfac'] / mlp['sgd']:.1f})")


if __name__ == "__main__":
    main()
