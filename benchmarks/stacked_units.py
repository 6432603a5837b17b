"""Does vectorising over a chapter's independent units pay on a CPU?

The quick book's two longest chapters repeat one computation over independent units: jastrzebski2020
trains and probes its 1D CNN on 6 seeds, atlas its MLP on 8. Issue 25 proposed stacking the units
(``torch.func.stack_module_state`` + ``vmap``) to keep the book's time down. This measures, on the
chapters' own models and sizes, one pass over all units done both ways:

* a gradient at the training batch size (the training step's cost) and on the probe set;
* a Hessian-vector product on the probe set: the chapters' sequential double backward through a graph
  built once (``hessian_eigenvalues(method="reuse")``) against ``torch.func``'s two stacked forms, a
  vmapped ``jvp`` of ``grad`` (forward over reverse) and a vmapped ``vjp`` of ``grad`` (reverse over reverse).

The ratio is vmapped ÷ sequential: below 1, stacking saves time. Round-robin in one process, after
warm-up; the per-round times go to ``benchmarks/results/stacked_units.json`` and are rendered to
``stacked_units.md`` (the book's Performance page includes it).
Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stacked_units.py [--rounds 15]``.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, stack_module_state, vjp, vmap

from curvnb.models import CNN1D

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import ratio_stats, round_robin, run_info, write  # noqa: E402

SECTION = "Stacking independent units (vmap) against one unit after another"
LOSS = nn.CrossEntropyLoss()


def mlp() -> nn.Module:
    """atlas's quick-profile MLP: 40 → 128 → 128 → 10, ReLU."""
    return nn.Sequential(nn.Linear(40, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


def compare(make, units: int, batch: int, probe: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per-round times of each measurement over ``units`` models: ``{measurement: {"sequential": times,
    <stacked form>: times, ...}}``."""
    models = []
    for u in range(units):
        torch.manual_seed(u)
        models.append(make())
    params, _ = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")

    def loss(p, x, y):
        return LOSS(functional_call(skeleton, p, (x,)), y)

    g = torch.Generator().manual_seed(0)
    out: dict[str, dict[str, list[float]]] = {}
    for name, n in ((f"gradient, batch {batch}", batch), (f"gradient, probe set of {probe}", probe)):
        x, y = torch.randn(units, n, 40, generator=g), torch.randint(0, 10, (units, n), generator=g)

        def sequential():
            for u, m in enumerate(models):
                torch.autograd.grad(LOSS(m(x[u]), y[u]), list(m.parameters()))
        stacked = vmap(grad(loss))
        out[name] = round_robin({"sequential": sequential, "vmap of grad": lambda: stacked(params, x, y)}, rounds, 2)

    x, y = torch.randn(units, probe, 40, generator=g), torch.randint(0, 10, (units, probe), generator=g)
    v = {k: torch.randn(t.shape, generator=g) for k, t in params.items()}
    graphs = []
    for u, m in enumerate(models):
        ps = list(m.parameters())
        graphs.append((ps, torch.autograd.grad(LOSS(m(x[u]), y[u]), ps, create_graph=True), [v[k][u] for k in v]))

    def sequential_hvp():
        for ps, gs, vs in graphs:
            torch.autograd.grad(gs, ps, vs, retain_graph=True)
    forward_over_reverse = vmap(lambda p, t, xb, yb: jvp(lambda q: grad(loss)(q, xb, yb), (p,), (t,))[1])
    reverse_over_reverse = vmap(lambda p, t, xb, yb: vjp(lambda q: grad(loss)(q, xb, yb), p)[1](t)[0])
    out[f"Hessian-vector product, probe set of {probe}"] = round_robin(
        {"sequential": sequential_hvp, "vmap of jvp of grad": lambda: forward_over_reverse(params, v, x, y),
         "vmap of vjp of grad": lambda: reverse_over_reverse(params, v, x, y)}, rounds, 2)
    return out


def summary(rows: list[dict]) -> str:
    """The measured range of stacked ÷ sequential, in words (generated from this run's rows)."""
    stacked = [(ratio_stats(r["times"], r["ref_times"])["ratio"], r) for r in rows if r["ref"]]
    (low, lr), (high, hr) = min(stacked, key=lambda t: t[0]), max(stacked, key=lambda t: t[0])

    def name(r: dict) -> str:
        return f"{r['short']}, {r['label'].split(':')[0]}"
    saving = [f"{name(r)} ({q:.2f})" for q, r in stacked if q < 0.9]
    return (f"Stacked ÷ one after another ranged from {low:.2f} ({name(lr)}) to {high:.2f} ({name(hr)}). "
            + (f"Stacking saved 10 % or more only for: {'; '.join(saving)}. " if saving else
               "Stacking saved less than 10 % everywhere. ")
            + "A pass on these models is arithmetic, not per-call overhead, so on a CPU stacking the units "
              "cannot shorten the chapters much: their time is set by how much they compute.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    info = run_info()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    rows = []
    for model, make, units, batch, probe in (
            ("jastrzebski2020's CNN1D (24,490 parameters), 6 units", lambda: CNN1D(40), 6, 32, 500),
            ("atlas's MLP 40-128-128-10, 8 units", mlp, 8, 64, 256)):
        for measurement, times in compare(make, units, batch, probe, args.rounds).items():
            seq = times.pop("sequential")
            rows.append({"section": SECTION, "model": model, "label": f"{measurement}: one unit after another",
                         "ref": "", "times": seq, "ref_times": seq, "short": model.split("'s")[0]})
            rows += [{"section": SECTION, "model": model, "label": f"{measurement}: all units stacked, {how}",
                      "ref": "one after another", "times": t, "ref_times": seq, "short": model.split("'s")[0]}
                     for how, t in times.items()]
    path = write("stacked_units", info, rows, [], [summary(rows)])
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
