"""Speed of curvnb.curvature against the obvious alternatives and its peers, measured in one process.

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/curvature.py [--rounds 31] [--quick]``.
Each group of methods is timed round-robin (every round runs each method once, after one warm-up
call each, in an order shuffled each round); ratios are medians of per-round ratios to the group's
reference (a gradient, or our Lanczos), written with their spread to
``benchmarks/results/curvature.json`` and rendered to ``curvature.md`` (which the book's Performance
page includes). Peers (curvlinops, BackPACK,
hessian-eigenthings) are skipped with a message when not installed (see README.md).
"""
from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import find, round_robin, run_info, target, write  # noqa: E402

from curvnb.curvature import (CurvatureOperator, MatrixOperator, flatten, ggn_vp, hvp, lanczos,  # noqa: E402
                              operator_eigenvalues, operator_trace, per_example_grads,
                              unflatten_like)
from curvnb.curvature.operators import AUTO_LINEARIZE_AFTER  # noqa: E402

LOSS = nn.CrossEntropyLoss()
MODELS = {"MLP 64-256-256-10": ("mlp", 2048), "CNN 2 conv + linear": ("cnn", 512)}
MISS_SEEDS = 40  # start vectors over which the top-k eigenvalue misses of our Lanczos are counted


def mlp(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 10)).to(dtype)


def cnn(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.Tanh(), nn.Conv2d(8, 16, 3, stride=2), nn.Tanh(), nn.Flatten(),
                         nn.Linear(16 * 6 * 6, 10)).to(dtype)


BUILDERS = {"mlp": mlp, "cnn": cnn}


def conv_macs(model: nn.Module, x: torch.Tensor) -> list[int]:
    """Forward multiply-adds per example of each convolution of ``model``, input to output."""
    macs = []

    def hook(module, inputs, output):
        k = module.weight[0].numel()  # in_channels/groups × kernel area
        macs.append(int(output[0].numel()) * k)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x[:1])
    for h in handles:
        h.remove()
    return macs


def conv_floor(macs: list[int]) -> float:
    """Convolution multiply-adds of a forward-over-reverse HVP ÷ those of a gradient (no input
    gradient for the first convolution). Gradient: each convolution forward (F) and its weight
    gradient (F), the later ones their input gradient (F). HVP tangents: the first convolution's
    forward and weight-gradient tangents (F each), every later one's forward, weight-gradient and
    input-gradient tangents (2F each: they are bilinear in weights and activations)."""
    first, later = macs[0], sum(macs[1:])
    return (2 * first + 6 * later) / (2 * first + 3 * later)


def make_data(kind, n, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 64, generator=g) if kind == "mlp" else torch.randn(n, 1, 16, 16, generator=g)
    return x.to(dtype), torch.randint(0, 10, (n,), generator=g)


def available(name):
    try:
        return __import__(name)
    except ImportError:
        print(f"  [skipped: {name} is not installed — see benchmarks/README.md]", flush=True)
        return None


def add_rows(rows, section, model, times, ref, info=None):
    for label, t in times.items():
        rows.append({"section": section, "model": model, "label": label, "ref": ref if label != ref else "",
                     "times": t, "ref_times": times[ref], "info": (info or {}).get(label, {})})
        r = np.median(np.asarray(t) / np.asarray(times[ref]))
        print(f"  {label:<72} {1e3 * np.median(t):9.1f} ms  {r:6.2f}× {ref}", flush=True)


def reverse_over_forward(model, x, y, params, vs):
    """H v as the gradient of the directional derivative <∇_out loss, J v>, with J v from forward-mode
    AD: it never forms the gradient (nor a first convolution's unneeded input gradient), but it
    differentiates torch's forward-mode rules once more, and those of LayerNorm and BatchNorm in
    training mode treat the normalisation statistics as constants."""
    names = [n for n, _ in model.named_parameters()]
    leaves = [p.detach().requires_grad_() for p in params]
    with fwAD.dual_level():
        out = torch.func.functional_call(model, {n: fwAD.make_dual(p, t) for n, p, t in zip(names, leaves, vs)}, (x,))
        out, jv = fwAD.unpack_dual(out)
    g_out = torch.autograd.grad(LOSS(out, y), out, create_graph=True)[0]
    return torch.autograd.grad((g_out * jv).sum(), leaves)


def reverse_over_forward_error() -> float:
    """Relative error of :func:`reverse_over_forward` against the exact product on a LayerNorm MLP."""
    from curvnb.curvature import dense_hessian
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.LayerNorm(32), nn.Tanh(), nn.Linear(32, 10)).double()
    x, y = make_data("mlp", 256, torch.float64)
    params = list(model.parameters())
    v = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = dense_hessian(model, LOSS, (x, y)) @ v
    product = flatten(reverse_over_forward(model, x, y, params, unflatten_like(v, params)))
    return float((product - exact).norm() / exact.norm())


class PeerOperator:
    """hessian-eigenthings' operator interface (size, dtype, device, matvec) around any of ours."""

    def __init__(self, op):
        self.op, self.size, self.dtype, self.device = op, op.shape[0], op.dtype, op.device

    def matvec(self, v):
        return self.op.matvec(v)


# ------------------------------------------------------------------------------------ products
def bench_products(name, model, x, y, rounds, rows):
    params = list(model.parameters())
    P = sum(p.numel() for p in params)
    v = torch.randn(P, generator=torch.Generator().manual_seed(1)).to(x.dtype)
    vs = [c.view_as(p) for c, p in zip(torch.split(v, [p.numel() for p in params]), params)]
    grad = "gradient (autograd)"
    fns = {grad: lambda: torch.autograd.grad(LOSS(model(x), y), params)}
    auto = CurvatureOperator(model, LOSS, (x, y))
    for _ in range((auto.switch_after or 0) + 1):
        auto @ v  # past the switch: the steady state of the default
    default = "HVP, curvnb operator, default method='auto'" + (
        f" (after its switch to 'linearize' at {AUTO_LINEARIZE_AFTER} products)" if auto.switch_after else " (= 'reuse')")
    fns[default] = lambda: auto @ v
    for method in ("reuse", "linearize", "rebuild"):
        op = CurvatureOperator(model, LOSS, (x, y), method=method)
        fns[f"HVP, curvnb operator, method='{method}'"] = (lambda op: lambda: op @ v)(op)
    fns["HVP, curvnb hvp() one-shot"] = lambda: hvp(model, LOSS, (x, y), v)
    names = [n for n, _ in model.named_parameters()]
    grad_fn = torch.func.grad(lambda ps: LOSS(torch.func.functional_call(model, dict(zip(names, ps)), (x,)), y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, torch_linearized = torch.func.linearize(grad_fn, tuple(p.detach() for p in params))
    fns["HVP, torch.func.linearize of the gradient (the trace of 'linearize' without its fusion)"] = (
        lambda: torch_linearized(tuple(vs)))

    def double_backward():
        g = torch.autograd.grad(LOSS(model(x), y), params, create_graph=True)
        return torch.autograd.grad(g, params, vs)
    fns["HVP, plain double backward (PyHessian's one-shot product)"] = double_backward
    rof = "HVP, reverse over forward (not used by curvnb: wrong through normalisation layers)"
    fns[rof] = lambda: reverse_over_forward(model, x, y, params, vs)
    if available("curvlinops"):
        from curvlinops import HessianLinearOperator
        H = HessianLinearOperator(model, LOSS, params, [(x, y)], check_deterministic=False)
        fns["HVP, curvlinops HessianLinearOperator"] = lambda: H @ vs
    if available("backpack"):
        from backpack.hessianfree.hvp import hessian_vector_product
        fns["HVP, BackPACK hessian_vector_product"] = lambda: hessian_vector_product(LOSS(model(x), y), params, vs)
    if available("hessian_eigenthings"):
        import hessian_eigenthings as he
        Hh = he.HessianOperator(model, [(x, y)], he.supervised_loss(LOSS))
        fns["HVP, hessian-eigenthings HessianOperator"] = lambda: Hh.matvec(v)
    add_rows(rows, "Hessian-vector products (÷ one gradient)", name, round_robin(fns, rounds), grad,
             {rof: {"relative error on a LayerNorm MLP (float64)": reverse_over_forward_error()}})

    fns = {grad: fns[grad]}
    gop = CurvatureOperator(model, LOSS, (x, y), kind="ggn")
    fns["GGN, curvnb operator (cached linearisation)"] = lambda: gop @ v
    fns["GGN, curvnb ggn_vp() one-shot"] = lambda: ggn_vp(model, LOSS, (x, y), v)
    if available("curvlinops"):
        from curvlinops import GGNLinearOperator
        G = GGNLinearOperator(model, LOSS, params, [(x, y)], check_deterministic=False)
        fns["GGN, curvlinops GGNLinearOperator"] = lambda: G @ vs
    if available("backpack"):
        from backpack.hessianfree.ggnvp import ggn_vector_product_from_plist

        def bp_ggn():
            out = model(x)
            return ggn_vector_product_from_plist(LOSS(out, y), out, params, vs)
        fns["GGN, BackPACK ggn_vector_product"] = bp_ggn
    if available("hessian_eigenthings"):
        import hessian_eigenthings as he
        Gh = he.GGNOperator(model, [(x, y)], he.supervised_forward, he.supervised_loss_of_output(LOSS))
        fns["GGN, hessian-eigenthings GGNOperator"] = lambda: Gh.matvec(v)
    add_rows(rows, "Gauss–Newton-vector products (÷ one gradient)", name, round_robin(fns, rounds), grad)


def bench_build(name, kind, n, rounds, rows):
    """Building a reusable operator (plus its first product), in gradients, and its memory."""
    model = BUILDERS[kind]()
    x, y = make_data(kind, n)
    params = list(model.parameters())
    v = torch.randn(sum(p.numel() for p in params))
    grad = "gradient (autograd)"
    fns = {grad: lambda: torch.autograd.grad(LOSS(model(x), y), params)}
    for method in ("reuse", "linearize"):
        fns[f"build + first product, method='{method}'"] = (
            lambda m: lambda: CurvatureOperator(model, LOSS, (x, y), method=m) @ v)(method)
    info = {label: memory(kind, n, label.split("'")[1] if "'" in label else None) for label in fns}
    add_rows(rows, "Building a reusable Hessian operator (÷ one gradient; memory above the model and data)", name,
             round_robin(fns, max(3, rounds // 3)), grad, info)


def memory(kind, n, method):
    """Resident memory (MiB) above the model and data, in a fresh process (after a warm-up on 4
    examples, so that lazily loaded code is not counted): the peak while computing a gradient
    (``method=None``) or building the operator and 3 products, and what stays resident while the
    operator is alive (its kept graph or traced program)."""
    code = ("import resource, sys, torch; sys.path.insert(0, %r); import curvature as B; "
            "from curvnb.curvature import CurvatureOperator\n"
            "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20\n"
            "m = B.BUILDERS[%r](); x, y = B.make_data(%r, %d)\n"
            "w = CurvatureOperator(m, B.LOSS, (x[:4], y[:4]), method=%r or 'reuse'); w @ torch.randn(w.shape[0])\n"
            "torch.autograd.grad(B.LOSS(m(x[:4]), y[:4]), list(m.parameters())); del w; base = rss()\n"
            "if %r is None:\n"
            "    g = torch.autograd.grad(B.LOSS(m(x), y), list(m.parameters())); kept = rss() - base\n"
            "else:\n"
            "    op = CurvatureOperator(m, B.LOSS, (x, y), method=%r); v = torch.randn(op.shape[0])\n"
            "    [op @ v for _ in range(3)]; kept = rss() - base\n"
            "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base\n"
            "print(peak, kept)\n") % (str(Path(__file__).resolve().parent), kind, kind, n, method, method, method)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, kept = (float(t) for t in out.stdout.strip().splitlines()[-1].split())
    return {"peak MiB": peak, "resident after (MiB)": kept}


# ------------------------------------------------------------------------------------ eigenvalues
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


def bench_eigen(name, kind, n, rounds, rows):
    x, y = make_data(kind, n)
    ref_op = CurvatureOperator(BUILDERS[kind](torch.float64), LOSS, (x.double(), y))
    ref = lanczos(ref_op.matvec, ref_op.shape[0], k=5, tol=1e-7, max_iter=400, dtype=torch.float64).eigenvalues.numpy()
    model = BUILDERS[kind]()
    params = list(model.parameters())
    P = sum(p.numel() for p in params)
    for k in (1, 5):
        def max_error(vals):  # relative to the true eigenvalue of each rank
            return float(np.max(np.abs(vals / ref[:k] - 1)))
        fns, info = {}, {}
        # our variants: (label, block size); the single vector is the group's reference
        variants = [("curvnb Lanczos, single vector" + (" (CPU default for k = 1)" if k == 1 else " (block_size=1)"), 1),
                    ("curvnb block Lanczos, block of 2" + (" (CPU default for k ≥ 2)" if k > 1 else ""), 2)]
        if k > 2:
            variants.append((f"curvnb block Lanczos, block of {k} (GPU default)", k))
        ours = variants[0][0]

        def run_ours(block, seed=0):
            op = CurvatureOperator(model, LOSS, (x, y))  # building the operator is part of the time
            r = operator_eigenvalues(op, k=k, tol=1e-3, block_size=block, seed=seed)
            return r.eigenvalues.double().numpy(), r.num_matvecs, r.converged
        for label, block in variants:
            fns[label] = (lambda b: lambda: run_ours(b))(block)

        def power():
            op = CurvatureOperator(model, LOSS, (x, y))
            vals, count = power_iteration(op.matvec, P, k)
            return np.sort(vals)[::-1], count, None
        fns["PyHessian-style power iteration (stops when the estimate changes < 1e-3)"] = power
        if available("curvlinops"):
            from curvlinops import HessianLinearOperator
            from scipy.sparse.linalg import LinearOperator, eigsh

            def cl():
                H = HessianLinearOperator(model, LOSS, params, [(x, y)], check_deterministic=False).to_scipy()
                count = [0]

                def counted(u):
                    count[0] += 1
                    return H.matvec(u)
                L = LinearOperator(H.shape, matvec=counted, dtype=H.dtype)
                v0 = np.random.default_rng(0).standard_normal(P).astype(np.float32)
                return np.sort(eigsh(L, k=k, which="LA", tol=1e-3, v0=v0)[0])[::-1], count[0], None
            fns["curvlinops + scipy eigsh (tol=1e-3)"] = cl
        if available("hessian_eigenthings"):
            import hessian_eigenthings as he

            def hel():
                # Its lanczos runs a fixed number of steps (max_iter, default 2k) and reports whether the
                # Ritz residuals met tol: as its docstring says, raise max_iter until they do (doubling
                # from 2k, as a user would); the HVPs counted are the converged run's.
                Hh = he.HessianOperator(model, [(x, y)], he.supervised_loss(LOSS))
                steps = 2 * k
                while True:
                    r = he.lanczos(Hh, k=k, tol=1e-3, which="LA", seed=0, max_iter=steps)
                    if bool(r.converged.all()) or 2 * steps > min(P - 1, 400):
                        break
                    steps *= 2
                return (np.sort(r.eigenvalues.double().numpy())[::-1], r.iterations,
                        bool(r.converged.all()))
            fns["hessian-eigenthings lanczos (tol=1e-3, max_iter doubled from 2k until converged)"] = hel
        for label, f in fns.items():
            vals, count, conv = f()
            info[label] = {"HVPs": count, "max rel. error": max_error(vals)}
            if conv is not None:
                info[label]["reports converged"] = conv
        # how often a start vector misses: a reported-converged value off its true rank by more than the tolerance
        for label, block in variants:
            misses = 0
            for seed in range(MISS_SEEDS):
                vals, _, conv = run_ours(block, seed)
                misses += bool(conv) and max_error(vals) > 1e-3
            info[label][f"misses over start seeds 0–{MISS_SEEDS - 1}"] = f"{misses}/{MISS_SEEDS}"
        add_rows(rows, f"Top-{k} Hessian eigenvalues to 1e-3 (÷ curvnb single-vector Lanczos)", name,
                 round_robin(fns, rounds, warmup=0), ours, info)


# ------------------------------------------------------------------------------------ trace
def bench_trace(rows, repeats):
    """Hutchinson (ours) vs Hutch++ (hessian-eigenthings) at equal products, on the exact float64
    Hessian of a small MLP wrapped as an operator (so the error is the estimator's alone)."""
    if not available("hessian_eigenthings"):
        return
    import hessian_eigenthings as he
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).double()
    x, y = make_data("mlp", 512, torch.float64)
    from curvnb.curvature import dense_hessian
    H = dense_hessian(model, LOSS, (x, y))
    exact = float(torch.trace(H))
    op = MatrixOperator(H)
    for m in (30, 99, 300):
        ours = [abs(operator_trace(op, m, seed=s)[0] / exact - 1) for s in range(repeats)]
        theirs = [abs(he.hutch_plus_plus(PeerOperator(op), num_matvecs=m, seed=s).estimate / exact - 1)
                  for s in range(repeats)]
        for label, errs in (("curvnb Hutchinson (operator_trace)", ours), ("hessian-eigenthings Hutch++", theirs)):
            rows.append({"section": "Trace estimates at equal products (relative error, exact float64 Hessian)",
                         "model": f"MLP 64-32-10, P = {H.shape[0]:,}", "label": f"{label}, {m} products",
                         "info": {"median abs. rel. error": float(np.median(errs)), "90th percentile": float(np.quantile(errs, 0.9)),
                                  "seeds": repeats}})
            print(f"  {label}, {m} products: median |rel. error| {np.median(errs):.2e}", flush=True)


# ------------------------------------------------------------------------------------ per-example
def bench_per_example(name, model, x, y, rounds, rows):
    n = len(x)
    params = list(model.parameters())
    grad = "gradient (autograd)"
    fns = {grad: lambda: torch.autograd.grad(LOSS(model(x), y), params),
           "curvnb per_example_grads (vmap(grad))": lambda: per_example_grads(model, LOSS, (x, y))}
    if available("backpack"):
        from backpack import backpack, extend
        from backpack.extensions import BatchGrad
        bmodel = extend(copy.deepcopy(model))
        bloss = extend(nn.CrossEntropyLoss())

        def bp():
            bmodel.zero_grad()
            loss = bloss(bmodel(x), y)
            with backpack(BatchGrad()):
                loss.backward()
            return torch.cat([p.grad_batch.reshape(n, -1) for p in bmodel.parameters()], 1)
        fns["BackPACK BatchGrad"] = bp
        ref = per_example_grads(model, LOSS, (x, y))
        # BackPACK returns per-example gradients of the mean loss, i.e. ∇ℓ_i / N
        assert float((n * bp() - ref).norm() / ref.norm()) < 1e-4, "BackPACK and curvnb disagree"
    fns["Python loop over examples"] = lambda: torch.stack(
        [flatten(torch.autograd.grad(LOSS(model(x[i:i + 1]), y[i:i + 1]), params)) for i in range(n)])
    add_rows(rows, f"Per-example gradients of {n} examples (÷ one gradient of the batch)", name,
             round_robin(fns, rounds), grad)


def targets(rows):
    mlp_name, cnn_name = list(MODELS)
    out = []
    for name in MODELS:
        out.append(target(f"`ggn_vp()` one-shot ÷ gradient, {name}", find(rows, name, "GGN, curvnb ggn_vp() one-shot"),
                          None, 2.5))
        out.append(target(f"`hvp()` one-shot ÷ plain double backward, {name}", find(rows, name, "HVP, curvnb hvp() one-shot"),
                          find(rows, name, "HVP, plain double backward"), 1.0))
    for name, threshold in ((cnn_name, 1.3), (mlp_name, 1.8)):
        out.append(target(f"default operator HVP ÷ gradient, {name}", find(rows, name, "HVP, curvnb operator, default"),
                          None, threshold))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=31, help="rounds for the product groups")
    ap.add_argument("--eigen-rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="few rounds, no eigen-solvers (a smoke test)")
    args = ap.parse_args()
    info = run_info()
    print(f"torch {info['torch']}, {info['threads']} thread(s), {info['machine']}, float32", flush=True)
    rows = []
    for name, (kind, n) in MODELS.items():
        print(f"\n== {name}, {n} examples ==", flush=True)
        model = BUILDERS[kind]()
        x, y = make_data(kind, n)
        bench_products(name, model, x, y, args.rounds, rows)
        bench_build(name, kind, n, args.rounds, rows)
        if not args.quick:
            bench_eigen(name, kind, n, args.eigen_rounds, rows)
            bench_per_example(name, model, *make_data(kind, 2048), max(3, args.rounds // 2), rows)
    bench_trace(rows, 10 if args.quick else 50)
    notes = ["Models: a tanh MLP 64-256-256-10 (P = 85,002) on 2,048 random examples and a small CNN (two 3×3 "
             "convolutions with 8 and 16 channels on 16×16 inputs, then a linear layer; P = 7,018) on 512 "
             "(per-example gradients: 2,048), cross-entropy, float32. Eigenvalue errors are relative to a "
             "float64 Lanczos reference (residual tolerance 1e-7). The CPU default of `method='auto'` on the CNN "
             f"uses 'reuse' for its first {AUTO_LINEARIZE_AFTER} products per batch, then 'linearize'; the row "
             "'default' is timed after that switch, the build rows give what the switch costs once.",
             "A Lanczos row with a maximum error above its tolerance while it reports convergence has missed an "
             "eigenvalue: the residual bound certifies that each value lies near *an* eigenvalue, not that it is "
             "the i-th (the start vector had almost no component along the missed eigenvector); block Lanczos, "
             "with several start vectors, makes such a miss much less likely. The 'misses' entries count, over "
             f"{MISS_SEEDS} start seeds, the runs that reported convergence with a value more than the tolerance "
             "from the true one of its rank. On the CPU, where the products of a block do not batch, "
             "`hessian_eigenvalues` runs a single vector for k = 1 and a block of 2 for k ≥ 2 (on accelerators a "
             "block of k).",
             "Which cases take the slower, safe path (issue 23). The loss's second derivative H_out u is always "
             "computed by reverse mode on the outputs, never forward mode (torch has no forward-mode rule for "
             "HuberLoss/SmoothL1Loss, raises for MSELoss with a mean, and crashed the interpreter when a trace ran "
             "forward mode through mse_loss's gradient): an output-sized double backward, nothing on the network's "
             "scale. The traced 'linearize' program is functionalised, so in-place ops on data-only tensors in "
             "`forward` are recomputed at every product instead of folded. A model that cannot be traced (an op "
             "without a forward-mode rule, or `forward` writing in place into a tensor from outside, such as its "
             "input) falls back from 'linearize' (and from 'auto' on conv nets) to 'reuse', double backward: the "
             "CNN rows' 'reuse' ratio instead of 'linearize''s. The GGN's J v takes the vjp of the vjp where "
             "forward mode has no rule. A plain loss function without `reduction=` is refused, never guessed.",
             "Multiply-adds of the CNN's HVP: a forward-over-reverse product ('linearize') does "
             f"{conv_floor(conv_macs(cnn(), make_data('cnn', 1)[0])):.2f}× the convolution multiply-adds of a "
             "gradient (its tangents are bilinear in weights and activations; see `conv_floor`); only the "
             "elementwise work (tanh) of the gradient is cached. It takes less time than that ratio because "
             "on CPU a strided convolution's input gradient costs several times its forward pass, mostly per "
             "call rather than per channel: 'linearize' runs the two input-gradient tangents of each "
             "convolution as one call with the channels stacked (`curvnb.curvature.linearize`), where "
             "`torch.func.linearize`'s trace runs two (its row above).",
             "Double backward through a convolution (method 'reuse', the one-shot `hvp()` and the plain double "
             "backward alike) also computes the input gradient of the first convolution, which nothing needs: "
             "torch's `_convolution_double_backward` computes it whenever the weight's direction is nonzero, "
             "whatever the output mask says. The traced 'linearize' program computes only what the product needs. "
             "Reverse over forward (its row: J v by forward-mode AD, then the gradient of <∇_out loss, J v>) "
             "skips it too and never forms the gradient, but it differentiates torch's forward-mode rules once "
             "more, and those of LayerNorm and BatchNorm in training mode treat the normalisation statistics as "
             "constants: its products through them are wrong (the error in its row), silently. So the one-shot "
             "`hvp()` stays a plain double backward — the same computation as the plain double backward row, "
             "plus a small fixed setup per call — and its target can at best tie."]
    path = write("curvature", info, rows, targets(rows), notes)
    print(f"\nwrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
