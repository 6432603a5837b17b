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


def bench_hvp(name, model, x, y, repeats, rows):
    params = list(model.parameters())
    P = sum(p.numel() for p in params)
    v = torch.randn(P, generator=torch.Generator().manual_seed(1)).to(x.dtype)
    tg = timeit(grad_fn(model, x, y), repeats)
    rows.append((name, "gradient (autograd)", tg, 1.0))
    for method, label in [("rebuild", "HVP, graph rebuilt per product (forward-over-reverse jvp)"),
                          ("reuse", "HVP, reused gradient graph (curvnb default)"),
                          ("linearize", "HVP, torch.func.linearize reused")]:
        op = CurvatureOperator(model, LOSS, (x, y), method=method)
        t = timeit(lambda: op.matvec(v), repeats)
        rows.append((name, label, t, t / tg))

    vs = [c.view_as(p) for c, p in zip(torch.split(v, [p.numel() for p in params]), params)]

    def double_backward():
        g = torch.autograd.grad(LOSS(model(x), y), params, create_graph=True)
        return torch.autograd.grad(g, params, vs)
    t = timeit(double_backward, repeats)
    rows.append((name, "HVP, double backward rebuilt per product", t, t / tg))
    if try_import("curvlinops"):
        from curvlinops import HessianLinearOperator
        H = HessianLinearOperator(model, LOSS, params, [(x, y)], check_deterministic=False)
        t = timeit(lambda: H @ vs, repeats)
        rows.append((name, "HVP, curvlinops HessianLinearOperator", t, t / tg))
    return tg


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
    ref_model = model_fn(torch.float64)
    ref_op = CurvatureOperator(ref_model, LOSS, (x.double(), y))
    ref = lanczos(ref_op.matvec, ref_op.shape[0], k=5, tol=1e-9, max_iter=400, dtype=torch.float64).eigenvalues.numpy()
    model = model_fn(torch.float32)
    params = list(model.parameters())
    P = sum(p.numel() for p in params)
    for k in (1, 5):
        ours_t = {}
        for bound in ("residual", "gap"):
            def ours():
                op = CurvatureOperator(model, LOSS, (x, y))
                return operator_eigenvalues(op, k=k, tol=1e-3, bound=bound)
            t = timeit(ours, repeats)
            r = ours()
            err = float(np.max(np.abs(r.eigenvalues.double().numpy() / ref[:k] - 1)))
            rows.append((name, f"top-{k} eigenvalues, curvnb Lanczos (tol 1e-3, {bound} bound): {r.num_matvecs} HVPs, "
                               f"max rel. err {err:.1e}", t, t / tg))
            ours_t[bound] = t

        def power():
            op = CurvatureOperator(model, LOSS, (x, y))
            return power_iteration(op.matvec, P, k)
        t = timeit(power, repeats)
        vals, count = power()
        err = float(np.max(np.abs(np.sort(vals)[::-1] / ref[:k] - 1)))
        rows.append((name, f"top-{k} eigenvalues, PyHessian-style power iteration: {count} HVPs, "
                           f"max rel. err {err:.1e}", t, t / tg))
        if try_import("curvlinops"):
            from curvlinops import HessianLinearOperator
            from scipy.sparse.linalg import eigsh
            for tol in (0.0, 1e-3):
                counter = {"n": 0}

                def cl():
                    H = HessianLinearOperator(model, LOSS, params, [(x, y)], check_deterministic=False).to_scipy()
                    mv = H.matvec

                    def counted(v):
                        counter["n"] += 1
                        return mv(v)
                    from scipy.sparse.linalg import LinearOperator
                    L = LinearOperator(H.shape, matvec=counted, dtype=H.dtype)
                    v0 = np.random.default_rng(0).standard_normal(P).astype(np.float32)
                    return eigsh(L, k=k, which="LA", tol=tol, v0=v0)[0]
                t = timeit(cl, repeats)
                counter["n"] = 0
                vals = cl()
                err = float(np.max(np.abs(np.sort(vals)[::-1] / ref[:k] - 1)))
                rows.append((name, f"top-{k} eigenvalues, curvlinops + eigsh (tol={tol:g}): {counter['n']} HVPs, "
                                   f"max rel. err {err:.1e}; curvnb/this = {ours_t['residual'] / t:.2f} (residual), "
                                   f"{ours_t['gap'] / t:.2f} (gap)", t, t / tg))


def bench_per_example(name, model, x, y, repeats, rows, tg):
    n = len(x)
    t = timeit(lambda: per_example_grads(model, LOSS, (x, y)), repeats)
    rows.append((name, f"per-example grads ×{n}, curvnb vmap(grad) — {n / t:,.0f} examples/s", t, t / tg))
    params = list(model.parameters())

    def loop():
        return torch.stack([flatten(torch.autograd.grad(LOSS(model(x[i:i + 1]), y[i:i + 1]), params))
                            for i in range(n)])
    t = timeit(loop, max(1, repeats // 3))
    rows.append((name, f"per-example grads ×{n}, Python loop — {n / t:,.0f} examples/s", t, t / tg))
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
        t = timeit(bp, repeats)
        rows.append((name, f"per-example grads ×{n}, BackPACK BatchGrad — {n / t:,.0f} examples/s", t, t / tg))
    # gradient covariance top-5: implicit operator + Lanczos vs the N×N Gram matrix
    G = per_example_grads(model, LOSS, (x, y))
    Gc = G - G.mean(0)
    t = timeit(lambda: torch.linalg.eigvalsh(Gc @ Gc.T / n)[-5:], repeats)
    rows.append((name, f"grad-covariance top-5, N×N Gram + eigvalsh (G given)", t, t / tg))
    t = timeit(lambda: lanczos(lambda v: Gc.T @ (Gc @ v) / n, Gc.shape[1], k=5, tol=1e-3, dtype=Gc.dtype), repeats)
    rows.append((name, f"grad-covariance top-5, Lanczos on v ↦ G_cᵀG_c v/N (G given)", t, t / tg))


def model_copy(model):
    import copy
    return copy.deepcopy(model)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--examples", type=int, default=2048)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, "
          f"float32, N={args.examples}, median of {args.repeats} after 1 warm-up")
    rows = []
    for name, model_fn, kind in [("MLP 64-256-256-10", mlp, "mlp"), ("CNN 2 conv + linear", cnn, "cnn")]:
        x, y = make_data(kind, args.examples)
        model = model_fn()
        P = sum(p.numel() for p in model.parameters())
        print(f"\n== {name} (P = {P:,}) ==", flush=True)
        tg = bench_hvp(name, model, x, y, args.repeats, rows)
        bench_eigen(name, model_fn, x, y, max(1, args.repeats // 2), rows, tg)
        bench_per_example(name, model, x, y, args.repeats, rows, tg)
        for r in rows:
            if r[0] == name:
                print(f"  {r[1]:<100} {r[2] * 1e3:9.1f} ms  {r[3]:7.2f}× grad", flush=True)
    print("\n| model | measurement | time (ms) | ÷ gradient time |\n|---|---|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2] * 1e3:.1f} | {r[3]:.2f} |")


if __name__ == "__main__":
    main()
