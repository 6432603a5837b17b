"""The report of the toolkit chapter: claims, figures, slider views and prose over the results
of :mod:`curvnb.studies.toolkit.compute` (editing this module reuses every cached result).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from curvnb.claims import Claim
from curvnb.curvature import density_from_nodes, tridiagonal_eigh
from curvnb.figures import panels
from curvnb.stats import bootstrap_interval, clopper_pearson
from curvnb.studies.toolkit.compute import Config


# Pre-registered thresholds of the randomised checks (fixed before the multi-seed runs).
SLQ_W1_MAX = 0.02          # median over seeds of W1(SLQ, exact) / spectral width
HUTCHINSON_Z = 3.0         # the exact trace must lie within ±3 standard errors of the estimate ...
HUTCHINSON_COVERAGE = 0.95  # ... in a fraction of seeds whose 95 % interval reaches ≥ 0.95 (nominal ≈ 0.997)


def slq_density(results: dict, sigma_frac: float = 0.01, grid: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    lam = results["exact_eigenvalues"]
    width = float(lam.max() - lam.min())
    sigma = sigma_frac * width
    g = np.linspace(lam.min() - 5 * sigma, lam.max() + 5 * sigma, grid)
    return density_from_nodes(results["slq"]["nodes"], results["slq"]["weights"], grid=g, sigma=sigma)


def claims(results: dict, config: Config) -> list[Claim]:
    """The chapter's self-checks: exact ones on this run, the randomised estimators over probe seeds."""
    exact = results["exact_eigenvalues"]
    lz = results["lanczos"]
    k = len(lz["eigenvalues"])
    lz_err = float(np.max(np.abs(lz["eigenvalues"] / exact[:k] - 1)))
    grid, dens = slq_density(results)
    mass = float(np.trapezoid(dens, grid))
    ps = results["probe_seeds"]
    n_seeds = len(ps["seeds"])
    w1 = np.asarray(ps["slq_w1"])
    w1_median = float(np.median(w1))
    z = np.asarray(ps["hutchinson_z"])
    covered = int(np.sum(np.abs(z) <= HUTCHINSON_Z))
    coverage_iv = clopper_pearson(covered, n_seeds)
    cov, ntk = results["covariance"], results["ntk"]
    return [
        Claim("hvp-vs-dense", "Hessian- and GGN-vector products equal dense-matrix products (autograd "
              "Hessian, explicit Jacobians), float64",
              {"hvp": results["hvp_rel_error"], "ggn": results["ggn_rel_error"]}, "relative error < 1e-6",
              max(results["hvp_rel_error"], results["ggn_rel_error"]) < 1e-6, kind="check"),
        Claim("iterable-data", "an iterable of batches gives the same HVP as one concatenated batch",
              results["iterable_vs_concatenated"], "relative difference < 1e-12",
              results["iterable_vs_concatenated"] < 1e-12, kind="check"),
        Claim("lanczos-top-k", f"Lanczos top-{k} eigenvalues (tol {config.tol:g}) match numpy eigvalsh of the "
              f"dense Hessian", {"max_rel_error": lz_err, "hvps": lz["num_matvecs"], "converged": lz["converged"]},
              f"converged and max relative error < {config.tol:g}", bool(lz["converged"]) and lz_err < config.tol,
              kind="check", source="Lanczos (1950); residual bound: Parlett (1998)"),
        Claim("slq-density", f"the SLQ density integrates to 1 and puts its mass where the exact eigenvalues are "
              f"(W1 distance to the exact spectrum, median over {n_seeds} probe seeds)",
              {"integral": mass, "median W1/width": w1_median, "max W1/width": float(w1.max())},
              f"|∫ρ − 1| < 1e-3 and median W1 < {SLQ_W1_MAX:g} of the spectral width",
              abs(mass - 1) < 1e-3 and w1_median < SLQ_W1_MAX, kind="check", seeds=n_seeds,
              interval=bootstrap_interval(w1, np.median), source="Ghorbani et al. (2019); Lin et al. (2016)"),
        Claim("hutchinson-trace", f"Hutchinson's trace ({config.hutchinson_samples} Rademacher probes) is within "
              f"{HUTCHINSON_Z:g} standard errors of the exact trace in the expected fraction of probe seeds",
              {"covered": covered, "seeds": n_seeds, "fraction": covered / n_seeds,
               "max |z|": float(np.abs(z).max())},
              f"95 % interval of the fraction with |z| ≤ {HUTCHINSON_Z:g} reaches ≥ {HUTCHINSON_COVERAGE:g}",
              coverage_iv[1] >= HUTCHINSON_COVERAGE, kind="check", seeds=n_seeds, interval=coverage_iv,
              source="Hutchinson (1990)"),
        Claim("gradient-covariance", "gradient-covariance top eigenvalues and trace equal an explicit "
              "per-example loop", {"eigenvalues": cov["eig_rel_error"], "trace": cov["trace_rel_error"]},
              "relative error < 1e-8", max(cov["eig_rel_error"], cov["trace_rel_error"]) < 1e-8, kind="check"),
        Claim("ntk-explicit", "the empirical NTK equals J Jᵀ from explicit Jacobians and is symmetric PSD",
              {"rel_error": ntk["rel_error"], "min_eig/max_eig": ntk["min_eigenvalue"] / ntk["max_eigenvalue"]},
              "relative error < 1e-10, λ_min ≥ −1e-10 λ_max",
              ntk["rel_error"] < 1e-10 and ntk["min_eigenvalue"] >= -1e-10 * ntk["max_eigenvalue"], kind="check"),
    ]


def summary_markdown(records: list[dict]) -> str:
    """One sentence per check, generated from this run's claim records."""
    rec = {r["id"]: r for r in records}
    held = [r for r in records if r["passed"]]
    lines = [f"**{len(held)} of {len(records)} checks hold on this run.**"]
    names = {"hvp-vs-dense": "Hessian- and Gauss–Newton-vector products against dense matrices",
             "iterable-data": "an iterable of batches against one concatenated batch",
             "lanczos-top-k": "Lanczos against `eigvalsh`", "slq-density": "the SLQ density against the exact spectrum",
             "hutchinson-trace": "Hutchinson's estimate against the exact trace",
             "gradient-covariance": "the gradient covariance against a per-example loop",
             "ntk-explicit": "the NTK against explicit Jacobians"}
    for cid, name in names.items():
        if cid not in rec:
            continue
        r = rec[cid]
        verdict = "holds" if r["passed"] else "**fails**"
        extra = ""
        if r.get("interval"):
            lo, hi = r["interval"]
            extra = f" (95 % interval [{lo:.3g}, {hi:.3g}] over {r['seeds']} probe seeds)"
        lines.append(f"- {name}: {verdict}{extra}.")
    lz = rec.get("lanczos-top-k")
    if lz is not None and not lz["passed"]:
        lines.append("  Lanczos stopped without meeting its residual bound or missed the dense values; the "
                     "`converged` flag and the residuals in the table say which.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- figures
def figure_spectrum(results: dict, top: int = 20) -> plt.Figure:
    """Dense top eigenvalues vs Lanczos, and the convergence of the Ritz values with the number of HVPs."""
    exact = results["exact_eigenvalues"]
    lz = results["lanczos"]
    fig, (a, b) = panels(2, row_height=3.0)
    idx = np.arange(1, top + 1)
    a.plot(idx, exact[:top], "o", color="0.5", ms=4, label="dense Hessian (eigvalsh)")
    k = len(lz["eigenvalues"])
    a.plot(idx[:k], lz["eigenvalues"], "x", color="C1", ms=8, mew=1.8, label=f"Lanczos top-{k} ({lz['num_matvecs']} HVPs)")
    a.set_xticks(idx[::4])
    a.set(xlabel="eigenvalue index $i$ (descending)", ylabel=r"$\lambda_i$ (log scale)", yscale="log",
          title=f"Top of the spectrum (P = {results['P']:,})")
    a.legend()
    al, be = results["ritz"]["alphas"], results["ritz"]["betas"]
    steps = np.arange(k, len(al) + 1)
    errs = np.array([np.abs(tridiagonal_eigh(al, be, m)[0][::-1][:k] / exact[:k] - 1) for m in steps])
    for i in range(k):
        b.semilogy(steps, np.maximum(errs[:, i], 1e-16), label=rf"$\lambda_{i + 1}$")
    b.axhline(1e-3, color="k", ls="--", lw=1, label="tol $10^{-3}$")
    b.set(xlabel="Lanczos steps (= HVPs)", ylabel="relative error of Ritz value", title="Convergence of Ritz values")
    b.legend(ncol=2)
    return fig


def figure_density(results: dict, sigma_frac: float = 0.01) -> plt.Figure:
    """Exact eigenvalue histogram vs the SLQ density (log y: the bulk near zero dwarfs the outliers)."""
    lam = results["exact_eigenvalues"]
    grid, dens = slq_density(results, sigma_frac)
    fig, (ax,) = panels(1, row_height=3.0)
    ax.hist(lam, bins=120, density=True, color="0.7", label=f"exact eigenvalues ({lam.size}), histogram")
    ax.plot(grid, dens, color="C0", lw=1.5,
            label=f"SLQ: {results['slq']['nodes'].shape[0]} probes × {results['slq']['nodes'].shape[1]} steps, "
                  rf"$\sigma$ = {sigma_frac:g} × width")
    ax.set(yscale="log", ylim=(max(dens.max() * 1e-7, 1e-8), None), xlabel=r"eigenvalue $\lambda$",
           ylabel=r"density (per unit $\lambda$, log scale)", title="Hessian spectral density: exact vs SLQ")
    ax.legend()
    return fig


def figure_hutchinson(results: dict) -> plt.Figure:
    """Running Hutchinson estimate with ±1 and ±3 standard-error bands vs the exact trace (left), and
    the standardised errors of the independent probe seeds (right)."""
    s = results["hutchinson"]["samples"]
    n = np.arange(1, len(s) + 1)
    mean = np.cumsum(s) / n
    var = np.array([s[:i].var(ddof=1) if i > 1 else np.nan for i in n])
    se = np.sqrt(var / n)
    fig, (ax, bx) = panels(2, row_height=3.0)
    ax.fill_between(n, mean - 3 * se, mean + 3 * se, color="C0", alpha=0.15, label="±3 SE")
    ax.fill_between(n, mean - se, mean + se, color="C0", alpha=0.3, label="±1 SE")
    ax.plot(n, mean, color="C0", label="running estimate")
    ax.axhline(results["exact_trace"], color="k", ls="--", label=f"exact trace {results['exact_trace']:.4g}")
    ax.set(xscale="log", xlabel="Rademacher probes (= HVPs, log scale)", ylabel=r"estimate of tr $H$",
           title="One probe seed")
    ax.legend()
    z = np.asarray(results["probe_seeds"]["hutchinson_z"])
    bx.axhspan(-HUTCHINSON_Z, HUTCHINSON_Z, color="C0", alpha=0.12, label=f"±{HUTCHINSON_Z:g} SE")
    bx.plot(np.arange(1, len(z) + 1), z, "o", color="C1", ms=4, label="(estimate − exact) / SE")
    bx.axhline(0, color="k", lw=0.8)
    bx.set(xlabel="probe seed", ylabel="standardised error (SE units)", title=f"{len(z)} independent probe seeds")
    bx.legend()
    return fig


def draw_lanczos(results: dict, steps: int = 10, sigma_frac: float = 0.01) -> plt.Figure:
    """Widget view: Ritz values after ``steps`` Lanczos steps against the exact spectrum (left), and
    the SLQ density smoothed with σ = ``sigma_frac`` × spectral width (right)."""
    lam = results["exact_eigenvalues"]
    al, be = results["ritz"]["alphas"], results["ritz"]["betas"]
    steps = int(min(max(1, steps), len(al)))
    theta = tridiagonal_eigh(al, be, steps)[0]
    fig, (a, b) = panels(2, row_height=3.0)
    a.eventplot([lam, theta], colors=["0.5", "C1"], lineoffsets=[0, 1], linelengths=0.8)
    a.set(yticks=[0, 1], yticklabels=["exact", f"Ritz ({steps} steps)"], xlabel=r"eigenvalue $\lambda$",
          title="Lanczos finds the extremes first")
    grid, dens = slq_density(results, sigma_frac)
    b.hist(lam, bins=120, density=True, color="0.7", label="exact")
    b.plot(grid, dens, color="C0", label=rf"SLQ, $\sigma$ = {sigma_frac:g} × width")
    b.set(yscale="log", ylim=(max(dens.max() * 1e-7, 1e-8), None), xlabel=r"eigenvalue $\lambda$",
          ylabel=r"density (per unit $\lambda$, log)", title="SLQ smoothing width")
    b.legend()
    return fig
