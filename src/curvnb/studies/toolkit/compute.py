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
from curvnb.seeds import declare_streams, seed_torch


DT = torch.float64
MAX_PROBE_SEEDS = 100   # the most probe units any profile uses (the full profile)
# Every random draw of the chapter. One run ("unit 0") for the data split, the init, the test vector and
# the machinery's probes; the randomised estimators' independent probe units on "probe".
STREAMS = declare_streams("toolkit", {"data": ("test", 1), "init": ("test", 1), "vector": ("test", 1),
                                      "lanczos": ("test", 1), "slq": ("test", 1), "hutchinson": ("test", 1),
                                      "probe": ("test", MAX_PROBE_SEEDS)})


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
    probe_seeds: int = 36         # probe units of the SLQ and Hutchinson checks: the proportion > 0.9 needs 36


PROFILES = {"quick": Config(), "full": Config(hidden=48, num_train=1500, slq_runs=20, slq_steps=100,
                                              hutchinson_samples=1000, num_cov=512, num_ntk=48, probe_seeds=100),
            # tiny: every code path in seconds (tests); its verdicts are no evidence
            "smoke": Config(hidden=3, num_train=32, batch_size=16, train_steps=5, top_k=2, ritz_steps=8, slq_runs=2,
                            slq_steps=8, hutchinson_samples=8, num_cov=4, num_ntk=2, probe_seeds=3)}


def make_model(hidden: int, seed: int) -> nn.Module:
    """The 64-hidden-10 tanh MLP, initialised from the "init" stream of chapter seed ``seed``."""
    seed_torch(STREAMS.seed(seed, "init"))
    return nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, 10)).to(DT)


def _flat_function(model: nn.Module):
    """``theta -> model outputs`` for a flat parameter vector (the explicit reference path)."""
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach() for p in model.parameters()]
    return (lambda theta, x: torch.func.functional_call(model, dict(zip(names, unflatten_like(theta, params))), (x,)),
            flatten(params))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _train(config: Config, *, device: torch.device, seed: int):
    """The digits subset and the MLP trained on it (full-batch Adam): the point the analyses look at."""
    x, y, _, _ = load_digits_split(seed=STREAMS.seed(seed, "data"), dtype=DT, device=device)
    x, y = x[: config.num_train], y[: config.num_train]
    model = make_model(config.hidden, seed).to(device)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    for _ in range(config.train_steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return model, loss_fn, x, y


def _products(model, loss_fn, x, y, batches, seed: int, out: dict) -> torch.Tensor:
    """Explicit references (dense Hessian by torch.autograd.functional, GGN from explicit Jacobians,
    vectorized: one batched backward pass per matrix instead of one per row) and the products against
    them. Returns the dense Hessian."""
    f, theta = _flat_function(model)
    H = torch.autograd.functional.hessian(lambda t: loss_fn(f(t, x), y), theta, vectorize=True)
    out["exact_eigenvalues"] = np.linalg.eigvalsh(H.cpu().numpy())[::-1].copy()
    out["exact_trace"] = float(torch.trace(H))
    v = torch.randn(out["P"], generator=STREAMS.torch(seed, "vector"), dtype=DT).to(x.device)
    out["hvp_rel_error"] = _rel(hvp(model, loss_fn, batches, v), H @ v)
    outputs = f(theta, x).detach()
    J = torch.autograd.functional.jacobian(lambda t: f(t, x).reshape(-1), theta, vectorize=True)
    Hout = torch.autograd.functional.hessian(lambda o: loss_fn(o.reshape(outputs.shape), y), outputs.reshape(-1),
                                         vectorize=True)
    out["ggn_rel_error"] = _rel(ggn_vp(model, loss_fn, batches, v), J.T @ (Hout @ (J @ v)))
    out["iterable_vs_concatenated"] = _rel(hvp(model, loss_fn, batches, v), hvp(model, loss_fn, (x, y), v))
    return H


def _spectra(config: Config, model, loss_fn, batches, H: torch.Tensor, seed: int, out: dict) -> None:
    """Lanczos top-k (default stopping rule), the Ritz values along the iteration, SLQ and Hutchinson
    (with the same probes on the dense Hessian, probe for probe), and both estimators over independent
    probe seeds on the dense Hessian."""
    res = hessian_eigenvalues(model, loss_fn, batches, k=config.top_k, tol=config.tol,
                             seed=STREAMS.seed(seed, "lanczos"))
    out["lanczos"] = {"eigenvalues": res.eigenvalues.cpu().numpy(), "residuals": res.residuals.cpu().numpy(),
                      "converged": res.converged, "num_matvecs": res.num_matvecs}
    op = CurvatureOperator(model, loss_fn, batches)
    start = random_unit_vector(out["P"], dtype=DT, device=H.device, seed=STREAMS.seed(seed, "lanczos"))
    alphas, betas = lanczos_coefficients(op.matvec, start, config.ritz_steps)
    out["ritz"] = {"alphas": alphas, "betas": betas}
    nodes, weights = slq_nodes(op, num_runs=config.slq_runs, num_steps=config.slq_steps,
                               seed=STREAMS.seed(seed, "slq"))
    out["slq"] = {"nodes": nodes, "weights": weights}
    est, se, samples = operator_trace(op, config.hutchinson_samples, seed=STREAMS.seed(seed, "hutchinson"),
                                      return_samples=True)
    dense = MatrixOperator(H)
    _, _, dense_samples = operator_trace(dense, config.hutchinson_samples,
                                         seed=STREAMS.seed(seed, "hutchinson"), return_samples=True)
    out["hutchinson"] = {"estimate": est, "standard_error": se, "samples": samples,
                         "same_probes_rel_error": float(np.max(np.abs(samples - dense_samples))
                                                        / np.max(np.abs(dense_samples)))}
    probe_seeds = [STREAMS.seed(seed, "probe", unit) for unit in range(config.probe_seeds)]
    w1, z = [], []
    for s in probe_seeds:
        nodes_s, weights_s = slq_nodes(dense, num_runs=config.slq_runs, num_steps=config.slq_steps, seed=s)
        w1.append(slq_wasserstein({"exact_eigenvalues": out["exact_eigenvalues"],
                                   "slq": {"nodes": nodes_s, "weights": weights_s}}))
        est_s, se_s = operator_trace(dense, config.hutchinson_samples, seed=s)
        z.append((est_s - out["exact_trace"]) / se_s)
    out["probe_seeds"] = {"units": list(range(config.probe_seeds)), "seeds": probe_seeds, "slq_w1": np.array(w1),
                          "hutchinson_z": np.array(z)}


def _covariance_and_ntk(config: Config, model, loss_fn, x, y, out: dict) -> None:
    """Gradient covariance against an explicit per-example loop; the empirical NTK against explicit Jacobians."""
    xc, yc = x[: config.num_cov], y[: config.num_cov]
    G = torch.stack([flatten(torch.autograd.grad(loss_fn(model(xc[i:i + 1]), yc[i:i + 1]), list(model.parameters())))
                     for i in range(len(xc))])
    Gc = G - G.mean(0)
    K_eig = torch.linalg.eigvalsh(Gc.T @ Gc / len(xc)).flip(0)[: config.top_k]
    ours = gradient_covariance_eigenvalues(model, loss_fn, (xc, yc), k=config.top_k)
    out["covariance"] = {"eigenvalues": ours.cpu().numpy(), "explicit": K_eig.cpu().numpy(),
                         "eig_rel_error": _rel(ours, K_eig),
                         "trace_rel_error": abs(gradient_covariance_trace(model, loss_fn, (xc, yc))
                                                / float((Gc ** 2).sum() / len(xc)) - 1)}
    f, theta = _flat_function(model)
    xn = x[: config.num_ntk]
    Jf = torch.autograd.functional.jacobian(lambda t: f(t, xn), theta, vectorize=True).reshape(-1, out["P"])
    K = empirical_ntk(model, xn)
    out["ntk"] = {"rel_error": _rel(K, Jf @ Jf.T), "min_eigenvalue": float(torch.linalg.eigvalsh(K)[0]),
                  "max_eigenvalue": float(torch.linalg.eigvalsh(K)[-1]),
                  "asymmetry": float((K - K.T).abs().max())}


def run(config: Config, *, device: torch.device, seed: int) -> dict:
    """Train the digits MLP, then check every toolkit entry point against explicit references."""
    t_start = time.perf_counter()
    model, loss_fn, x, y = _train(config, device=device, seed=seed)
    batches = [(x[i:i + config.batch_size], y[i:i + config.batch_size]) for i in range(0, len(x), config.batch_size)]
    with torch.no_grad():
        out: dict = {"P": sum(p.numel() for p in model.parameters()), "N": len(x),
                     "train_loss": float(loss_fn(model(x), y))}
    H = _products(model, loss_fn, x, y, batches, seed, out)
    _spectra(config, model, loss_fn, batches, H, seed, out)
    _covariance_and_ntk(config, model, loss_fn, x, y, out)
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
