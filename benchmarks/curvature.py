"""Speed of curvnb.curvature against the obvious alternatives, measured in one process.

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/curvature.py [--repeats 5] [--quick]``.
Every timing is the median of ``--repeats`` runs after one warm-up run. Ratios (to the gradient
time, or between methods) are what carry over between machines. Comparisons whose package
(curvlinops-for-pytorch, backpack-for-pytorch) is missing are skipped with a message.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn

from curvnb.curvature import (CurvatureOperator, flatten, lanczos, operator_eigenvalues, per_example_grads)

LOSS = nn.CrossEntropyLoss()


def mlp(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 10)).to(dtype)


def cnn(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.Tanh(), nn.Conv2d(8, 16, 3, stride=2), nn.Tanh(), nn.Flatten(),
                         nn.Linear(16 * 6 * 6, 10)).to(dtype)


def make_data(kind, n, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 64, generator=g) if kind == "mlp" else torch.randn(n, 1, 16, 16, generator=g)
    return x.to(dtype), torch.randint(0, 10, (n,), generator=g)


def timeit(fn, repeats):
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def try_import(name):
    try:
        return __import__(name)
    except ImportError:
        print(f"  [skipped: {name} is not installed — see benchmarks/README.md]")
        return None


def grad_fn(model, x, y):
    params = [p for p in model.parameters()]
    return lambda: torch.autograd.grad(LOSS(model(x), y), params)


def interleaved(fns, repeats):
    """Median time of each function and median of its per-round ratio to the first one, timed in
    round-robin (every round runs all functions once), so load changes on a shared machine hit all alike."""
    for f in fns.values():
        f()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    base = next(iter(fns))
    return {k: (statistics.median(v), statistics.median(np.array(v) / np.array(times[base])))
            for k, v in times.items()}


def bench_hvp(name, model, x, y, repeats, rows):
    params = list(model.parameters())
    P = sum(p.numel() for p in params)
    v = torch.randn(P, generator=torch.Generator().manual_seed(1)).to(x.dtype)
    vs = [c.view_as(p) for c, p in zip(torch.split(v, [p.numel() for p in params]), params)]
    fns = {"gradient (autograd)": grad_fn(model, x, y)}
    for method, label in [("reuse", "HVP, reused gradient graph (curvnb default)"),
                          ("linearize", "HVP, torch.func.linearize reused (curvnb method='linearize')"),
                          ("rebuild", "HVP, graph rebuilt per product (forward-over-reverse jvp)")]:
        op = CurvatureOperator(model, LOSS, (x, y), method=method)
        fns[label] = (lambda op: lambda: op.matvec(v))(op)

    def double_backward():
        g = torch.autograd.grad(LOSS(model(x), y), params, create_graph=True)
        return torch.autograd.grad(g, params, vs)
    fns["HVP, double backward rebuilt per product (PyHessian)"] = double_backward
    if try_import("curvlinops"):
        from curvlinops import HessianLinearOperator
        H = HessianLinearOperator(model, LOSS, params, [(x, y)], check_deterministic=False)
        fns["HVP, curvlinops HessianLinearOperator"] = lambda: H @ vs
    for label, (t, ratio) in interleaved(fns, repeats).items():
        rows.append((name, label, t, ratio))
    return interleaved({"g": fns["gradient (autograd)"]}, repeats)["g"][0]


def power_iteration(matvec, n, k, tol=1e-3, max_iter=100, seed=0, dtype=torch.float32):
    """PyHessian's rule: deflated power iteration, stop when the estimate changes by < tol (relative)."""
    g = torch.Generator().manual_seed(seed)
    vals, vecs, count = [], [], 0
    for _ in range(k):
        v = torch.randn(n, generator=g).to(dtype)
        v /= v.norm()
        lam = None
        for _ in range(max_iter):
            for u in vecs:
                v -= torch.dot(u, v) * u
            v /= v.norm()
            w = matvec(v)
            count += 1
            new = float(torch.dot(w, v))
            v = w / w.norm()
            if lam is not None and abs(new - lam) / (abs(lam) + 1e-6) < tol:
                lam = new
                break
            lam = new
        vals.append(lam)
        vecs.append(v)
    return np.array(vals), count


def bench_eigen(name, model_fn, x, y, repeats, rows, tg):
    ref_op = CurvatureOperator(model_fn(torch.float64), LOSS, (x.double(), y))
    ref = lanczos(ref_op.matvec, ref_op.shape[0], k=5, tol=1e-7, max_iter=400, dtype=torch.float64).eigenvalues.numpy()
    model = model_fn(torch.float32)
    params = list(model.parameters())
    P = sum(p.numel() for p in params)
    for k in (1, 5):
        fns, info = {}, {}
        for bound in ("residual", "gap"):
            def ours(bound=bound):
                op = CurvatureOperator(model, LOSS, (x, y))  # building the operator is part of the time
                r = operator_eigenvalues(op, k=k, tol=1e-3, bound=bound)
                return r.eigenvalues.double().numpy(), r.num_matvecs
            fns[f"curvnb Lanczos (tol 1e-3, {bound} bound)"] = ours

        def power():
            op = CurvatureOperator(model, LOSS, (x, y))
            vals, count = power_iteration(op.matvec, P, k)
            return np.sort(vals)[::-1], count
        fns["PyHessian-style power iteration (tol 1e-3 on the change)"] = power
        if try_import("curvlinops"):
            from curvlinops import HessianLinearOperator
            from scipy.sparse.linalg import LinearOperator, eigsh
            for tol in (0.0, 1e-3):
                def cl(tol=tol):
                    H = HessianLinearOperator(model, LOSS, params, [(x, y)], check_deterministic=False).to_scipy()
                    count = [0]

                    def counted(v):
                        count[0] += 1
                        return H.matvec(v)
                    L = LinearOperator(H.shape, matvec=counted, dtype=H.dtype)
                    v0 = np.random.default_rng(0).standard_normal(P).astype(np.float32)
                    return np.sort(eigsh(L, k=k, which="LA", tol=tol, v0=v0)[0])[::-1], count[0]
                fns[f"curvlinops + scipy eigsh (tol={tol:g}{', default' if tol == 0 else ''})"] = cl
        for label, f in fns.items():
            vals, count = f()
            info[label] = (count, float(np.max(np.abs(vals / ref[:k] - 1))))
        timed = {label: f for label, f in fns.items()}
        first = next(iter(timed))
        results = interleaved(timed, repeats)
        for label, (t, ratio) in results.items():
            count, err = info[label]
            extra = "" if label == first else f"; curvnb(residual)/this = {1 / ratio:.2f}"
            rows.append((name, f"top-{k} eigenvalues, {label}: {count} HVPs, max rel. err {err:.1e}{extra}", t, t / tg))


def bench_per_example(name, model, x, y, repeats, rows, tg):
    n = len(x)
    params = list(model.parameters())
    fns = {"curvnb per_example_grads (vmap(grad))": lambda: per_example_grads(model, LOSS, (x, y))}

    def loop():
        return torch.stack([flatten(torch.autograd.grad(LOSS(model(x[i:i + 1]), y[i:i + 1]), params))
                            for i in range(n)])
    fns["Python loop over examples"] = loop
    if try_import("backpack"):
        from backpack import backpack, extend
        from backpack.extensions import BatchGrad
        bmodel = extend(model_copy(model))
        bloss = extend(nn.CrossEntropyLoss())

        def bp():
            bmodel.zero_grad()
            loss = bloss(bmodel(x), y)
            with backpack(BatchGrad()):
                loss.backward()
            return torch.cat([p.grad_batch.reshape(n, -1) for p in bmodel.parameters()], 1)
        fns["BackPACK BatchGrad"] = bp
        ref = fns["curvnb per_example_grads (vmap(grad))"]()
        # BackPACK returns per-example gradients of the mean loss, i.e. ∇ℓ_i / N
        assert float((n * bp() - ref).norm() / ref.norm()) < 1e-4, "BackPACK and curvnb disagree"
    for label, (t, ratio) in interleaved(fns, repeats).items():
        rows.append((name, f"per-example grads ×{n}, {label}: {n / t:,.0f} examples/s", t, t / tg))
    # gradient covariance top-5: implicit operator + Lanczos vs the N×N Gram matrix (G given)
    G = per_example_grads(model, LOSS, (x, y))
    Gc = G - G.mean(0)
    cov = {"grad-covariance top-5, N×N Gram matrix + eigvalsh (G given)":
           lambda: torch.linalg.eigvalsh(Gc @ Gc.T / n)[-5:],
           "grad-covariance top-5, Lanczos on v ↦ G_cᵀ(G_c v)/N (G given)":
           lambda: lanczos(lambda v: Gc.T @ (Gc @ v) / n, Gc.shape[1], k=5, tol=1e-3, dtype=Gc.dtype)}
    for label, (t, ratio) in interleaved(cov, repeats).items():
        rows.append((name, label, t, t / tg))


def model_copy(model):
    import copy
    return copy.deepcopy(model)


class Rows(list):
    """Rows that are printed as soon as they are measured."""

    def append(self, row):
        super().append(row)
        print(f"  {row[1]:<110} {row[2] * 1e3:9.1f} ms  {row[3]:7.2f}× grad", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--examples", type=int, default=2048)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, "
          f"float32, N={args.examples}; round-robin medians after 1 warm-up: {2 * args.repeats + 1} rounds (HVP), "
          f"{max(1, args.repeats // 2)} (eigen-solvers), {args.repeats} (per-example, covariance)")
    rows = Rows()
    for name, model_fn, kind in [("MLP 64-256-256-10", mlp, "mlp"), ("CNN 2 conv + linear", cnn, "cnn")]:
        x, y = make_data(kind, args.examples)
        model = model_fn()
        P = sum(p.numel() for p in model.parameters())
        print(f"\n== {name} (P = {P:,}) ==", flush=True)
        tg = bench_hvp(name, model, x, y, 2 * args.repeats + 1, rows)
        bench_eigen(name, model_fn, x, y, max(1, args.repeats // 2), rows, tg)
        bench_per_example(name, model, x, y, args.repeats, rows, tg)
    print("\n| model | measurement | time (ms) | ÷ gradient time |\n|---|---|---:|---:|")  # HVP rows: per-round ratio
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2] * 1e3:.1f} | {r[3]:.2f} |")


if __name__ == "__main__":
    main()
