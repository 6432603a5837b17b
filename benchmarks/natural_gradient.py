"""Cost per step of the natural-gradient optimizers of ``curvnb.optim``.

* ``FractionalNaturalGradient`` (through the ``n_out n_in`` function-space kernel) vs the same update
  through the explicit ``P × P`` Gauss–Newton matrix (``jacrev`` Jacobian + eigendecomposition), and vs
  an SGD step, on a deep linear network;
* ``BlockDiagonalNaturalGradient`` (fractional K-FAC, factors refreshed every step) vs an SGD step on
  a tanh MLP on a digits-sized batch.

Round-robin in one process, after warm-up; the per-round times go to
``benchmarks/results/natural_gradient.json`` and are rendered to ``natural_gradient.md`` (the book's
Performance page includes it). Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/natural_gradient.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.func import jacrev

from curvnb.curvature.matrix_functions import symmetric_power
from curvnb.linear import DeepLinearNetwork, end_to_end, teacher_map, teacher_student_data
from curvnb.optim import BlockDiagonalNaturalGradient, FractionalNaturalGradient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import round_robin, run_info, write  # noqa: E402


def deep_linear(widths=(8, 32, 32, 8), rounds: int = 7, warmup: int = 2) -> dict:
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
    return {"times": round_robin(steps, rounds, warmup), "P": sum(a * b for a, b in shapes),
            "kernel": widths[0] * widths[-1]}


def kfac_mlp(width: int = 64, n: int = 1500, rounds: int = 11, warmup: int = 2) -> dict[str, list[float]]:
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
    info = run_info()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    lin = deep_linear()
    t = lin["times"]
    model = f"deep linear 8-32-32-8, P = {lin['P']:,}, float64"
    rows = [
        {"section": "Natural-gradient steps", "model": model, "label": "SGD step", "ref": "",
         "times": t["sgd"], "ref_times": t["sgd"]},
        {"section": "Natural-gradient steps", "model": model,
         "label": f"FractionalNaturalGradient step (α = ½, {lin['kernel']} × {lin['kernel']} function-space kernel)",
         "ref": "an SGD step", "times": t["fng"], "ref_times": t["sgd"]},
        {"section": "Natural-gradient steps", "model": model,
         "label": "the same update through the explicit P × P Gauss–Newton matrix",
         "ref": "a FractionalNaturalGradient step", "times": t["dense"], "ref_times": t["fng"]},
    ]
    mlp = kfac_mlp()
    model = "tanh MLP 64-64-64-10, batch 1,500, float32"
    rows += [
        {"section": "Natural-gradient steps", "model": model, "label": "SGD step", "ref": "",
         "times": mlp["sgd"], "ref_times": mlp["sgd"]},
        {"section": "Natural-gradient steps", "model": model,
         "label": "BlockDiagonalNaturalGradient step (fractional K-FAC, factors every step)", "ref": "an SGD step",
         "times": mlp["kfac"], "ref_times": mlp["sgd"]},
    ]
    path = write("natural_gradient", info, rows, [], [
        "The function-space route makes exact natural gradient cheap for deep linear networks: one "
        "eigendecomposition of an `n_out n_in` square kernel instead of the `P × P` Gauss–Newton matrix. "
        "The K-FAC step's cost is dominated by refreshing the factors (one backward pass per output class "
        "for the exact cross-entropy Gauss–Newton); `update_every` amortizes it."])
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
