"""The computation of the toolkit chapter: configuration, profiles and the cached runs.

The result cache keys on this module and the ``curvnb`` modules it imports
(:func:`curvnb.cache.compute_sources`): it must not import report code (:mod:`curvnb.studies.toolkit.report`,
claims, figures, widgets), so that editing those reuses cached results.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from curvnb.curvature import (CurvatureOperator, MatrixOperator, empirical_ntk, flatten, ggn_vp,
                              gradient_covariance_eigenvalues, gradient_covariance_trace, hessian_eigenvalues, hvp,
                              lanczos_coefficients, operator_trace, random_unit_vector, slq_nodes, unflatten_like)
from curvnb.data.digits import load_digits_split


DT = torch.float64


@dataclass(frozen=True)
class Config:
    hidden: int = 16             # 64-hidden-10 tanh MLP: P = 65·hidden + (hidden+1)·10
    num_train: int = 512          # examples in the loss whose curvature we measure
    batch_size: int = 128         # the data are passed as an iterable of batches of this size
    train_steps: int = 300        # full-batch Adam steps before measuring (a trained, not random, point)
    lr: float = 0.01
    top_k: int = 5                # Lanczos: number of top eigenvalues
    tol: float = 1e-3             # Lanczos relative residual tolerance
    ritz_steps: int = 60          # Lanczos steps recorded for the convergence figure / widget
    slq_runs: int = 8
    slq_steps: int = 60
    hutchinson_samples: int = 300
    num_cov: int = 128            # examples for the gradient-covariance check (explicit loop)
    num_ntk: int = 16             # examples for the NTK check
    probe_seeds: int = 20         # independent probe seeds for the SLQ and Hutchinson checks


PROFILES = {"quick": Config(), "full": Config(hidden=48, num_train=1500, slq_runs=20, slq_steps=100,
                                              hutchinson_samples=1000, num_cov=512, num_ntk=48, probe_seeds=100),
            # tiny: every code path in seconds (tests); its verdicts are no evidence
            "smoke": Config(hidden=4, num_train=64, batch_size=32, train_steps=5, ritz_steps=20, slq_runs=2,
                            slq_steps=20, hutchinson_samples=20, num_cov=8, num_ntk=4, probe_seeds=3)}


def make_model(hidden: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, 10)).to(DT)


def _flat_function(model: nn.Module):
    """``theta -> model outputs`` for a flat parameter vector (the explicit reference path)."""
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach() for p in model.parameters()]
    return (lambda theta, x: torch.func.functional_call(model, dict(zip(names, unflatten_like(theta, params))), (x,)),
            flatten(params))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def run(config: Config, *, device: torch.device, seed: int) -> dict:
    t_start = time.perf_counter()
    x, y, _, _ = load_digits_split(seed=seed, dtype=DT, device=device)
    x, y = x[: config.num_train], y[: config.num_train]
    model = make_model(config.hidden, seed).to(device)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    for _ in range(config.train_steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    batches = [(x[i:i + config.batch_size], y[i:i + config.batch_size]) for i in range(0, len(x), config.batch_size)]
    P = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        out: dict = {"P": P, "N": len(x), "train_loss": float(loss_fn(model(x), y))}

    # explicit references: dense Hessian by torch.autograd.functional, GGN from explicit Jacobians
    f, theta = _flat_function(model)
    H = torch.autograd.functional.hessian(lambda t: loss_fn(f(t, x), y), theta)
    exact = np.linalg.eigvalsh(H.cpu().numpy())[::-1].copy()
    out["exact_eigenvalues"] = exact
    out["exact_trace"] = float(torch.trace(H))
    g = torch.Generator().manual_seed(seed + 1)
    v = torch.randn(P, generator=g, dtype=DT).to(device)
    out["hvp_rel_error"] = _rel(hvp(model, loss_fn, batches, v), H @ v)
    outputs = f(theta, x).detach()
    J = torch.autograd.functional.jacobian(lambda t: f(t, x).reshape(-1), theta)
    Hout = torch.autograd.functional.hessian(lambda o: loss_fn(o.reshape(outputs.shape), y), outputs.reshape(-1))
    out["ggn_rel_error"] = _rel(ggn_vp(model, loss_fn, batches, v), J.T @ (Hout @ (J @ v)))
    out["iterable_vs_concatenated"] = _rel(hvp(model, loss_fn, batches, v), hvp(model, loss_fn, (x, y), v))
    del J

    # Lanczos top-k (our engine, default stopping rule) and the Ritz values along the iteration
    res = hessian_eigenvalues(model, loss_fn, batches, k=config.top_k, tol=config.tol, seed=seed)
    out["lanczos"] = {"eigenvalues": res.eigenvalues.cpu().numpy(), "residuals": res.residuals.cpu().numpy(),
                      "converged": res.converged, "num_matvecs": res.num_matvecs}
    op = CurvatureOperator(model, loss_fn, batches)
    start = random_unit_vector(P, dtype=DT, device=device, seed=seed)
    alphas, betas = lanczos_coefficients(op.matvec, start, config.ritz_steps)
    out["ritz"] = {"alphas": alphas, "betas": betas}

    # SLQ density and Hutchinson trace
    nodes, weights = slq_nodes(op, num_runs=config.slq_runs, num_steps=config.slq_steps, seed=seed)
    out["slq"] = {"nodes": nodes, "weights": weights}
    est, se, samples = operator_trace(op, config.hutchinson_samples, seed=seed, return_samples=True)
    out["hutchinson"] = {"estimate": est, "standard_error": se, "samples": samples}

    # the same estimators over independent probe seeds, on the dense Hessian as an operator
    dense = MatrixOperator(H)
    probe_seeds = [seed * 1000 + s for s in range(config.probe_seeds)]
    w1, z = [], []
    for s in probe_seeds:
        nodes_s, weights_s = slq_nodes(dense, num_runs=config.slq_runs, num_steps=config.slq_steps, seed=s)
        w1.append(slq_wasserstein({"exact_eigenvalues": exact, "slq": {"nodes": nodes_s, "weights": weights_s}}))
        est_s, se_s = operator_trace(dense, config.hutchinson_samples, seed=s)
        z.append((est_s - out["exact_trace"]) / se_s)
    out["probe_seeds"] = {"seeds": probe_seeds, "slq_w1": np.array(w1), "hutchinson_z": np.array(z)}

    # gradient covariance vs an explicit per-example loop
    xc, yc = x[: config.num_cov], y[: config.num_cov]
    rows = []
    for i in range(len(xc)):
        grads = torch.autograd.grad(loss_fn(model(xc[i:i + 1]), yc[i:i + 1]), list(model.parameters()))
        rows.append(flatten(grads))
    G = torch.stack(rows)
    Gc = G - G.mean(0)
    K_eig = torch.linalg.eigvalsh(Gc.T @ Gc / len(xc)).flip(0)[: config.top_k]
    ours = gradient_covariance_eigenvalues(model, loss_fn, (xc, yc), k=config.top_k)
    out["covariance"] = {"eigenvalues": ours.cpu().numpy(), "explicit": K_eig.cpu().numpy(),
                         "eig_rel_error": _rel(ours, K_eig),
                         "trace_rel_error": abs(gradient_covariance_trace(model, loss_fn, (xc, yc))
                                                / float((Gc ** 2).sum() / len(xc)) - 1)}

    # empirical NTK vs explicit Jacobians
    xn = x[: config.num_ntk]
    Jn = torch.autograd.functional.jacobian(lambda t: f(t, xn), theta)  # (N, C, P)
    Jf = Jn.reshape(-1, P)
    K = empirical_ntk(model, xn)
    out["ntk"] = {"rel_error": _rel(K, Jf @ Jf.T), "min_eigenvalue": float(torch.linalg.eigvalsh(K)[0]),
                  "max_eigenvalue": float(torch.linalg.eigvalsh(K)[-1]),
                  "asymmetry": float((K - K.T).abs().max())}
    out["seconds"] = time.perf_counter() - t_start
    return out


# ------------------------------------------------------------------------------------------- analysis
def slq_wasserstein(results: dict) -> float:
    """W1 distance between the SLQ spectral measure and the exact eigenvalue distribution, in units of
    the spectral width λ_max − λ_min (0: identical; small: the SLQ mass sits where the eigenvalues are)."""
    lam = np.sort(results["exact_eigenvalues"])
    nodes, weights = results["slq"]["nodes"].ravel(), results["slq"]["weights"].ravel() / results["slq"]["nodes"].shape[0]
    order = np.argsort(nodes)
    nodes, cw = nodes[order], np.cumsum(weights[order])
    pts = np.sort(np.concatenate([lam, nodes]))
    F_exact = np.searchsorted(lam, pts, side="right") / lam.size
    F_slq = np.concatenate([[0.0], cw])[np.searchsorted(nodes, pts, side="right")]
    w1 = float(np.sum(np.abs(F_exact - F_slq)[:-1] * np.diff(pts)))
    return w1 / float(lam[-1] - lam[0])
