"""The report of the toolkit chapter: claims, figures, slider views and prose over the results
of :mod:`curvnb.studies.toolkit.compute` (editing this module reuses every cached result).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from curvnb.claims import ClaimSpec, Result, by_verdict, evaluate
from curvnb.curvature import density_from_nodes, tridiagonal_eigh
from curvnb.figures import panels
from curvnb.studies.toolkit.compute import Config


# Every claim, declared once before the run: the thresholds are written only here.
_EXACT = dict(kind="check", statistic="value", direction="less", unit="run")
HVP_VS_DENSE = ClaimSpec(
    id="hvp-vs-dense", threshold=1e-6, **_EXACT, quantity="largest relative error of Hv and Gv",
    statement="Hessian- and GGN-vector products equal dense-matrix products (autograd Hessian, explicit "
              "Jacobians), float64")
ITERABLE_DATA = ClaimSpec(
    id="iterable-data", threshold=1e-12, **_EXACT, quantity="relative difference of the two HVPs",
    statement="an iterable of batches gives the same HVP as one concatenated batch")
LANCZOS_TOP_K = ClaimSpec(
    id="lanczos-top-k", threshold=1e-3, **_EXACT, changed="toolkit-lanczos",
    source="Lanczos (1950)", quantity="largest relative error of the top-k eigenvalues",
    statement="Lanczos top-k eigenvalues (default stopping rule) match numpy eigvalsh of the dense Hessian")
LANCZOS_RESIDUAL = ClaimSpec(
    id="lanczos-converged", threshold=1e-3, **_EXACT, changed="toolkit-lanczos",
    source="Parlett (1998)", quantity="largest Ritz residual / |θ| at the reported values",
    statement="Lanczos stops with every Ritz residual within its tolerance (the bound behind converged=True)")
SLQ_MASS = ClaimSpec(
    id="slq-mass", threshold=1e-3, **_EXACT, changed="toolkit-slq", source="Lin et al. (2016)",
    quantity="|∫ρ − 1| of the smoothed density", statement="the SLQ density integrates to 1")
SLQ_DENSITY = ClaimSpec(
    id="slq-density", kind="check", statistic="median", direction="less", threshold=0.02, unit="probe seed",
    changed="toolkit-slq", source="Ghorbani et al. (2019); Lin et al. (2016)",
    quantity="median W1(SLQ, exact) / spectral width",
    statement="the SLQ measure puts its mass where the exact eigenvalues are: the median over independent "
              "probe seeds of its Wasserstein-1 distance to the exact spectrum is below 2 % of the spectral width")
HUTCHINSON_PROBES = ClaimSpec(
    id="hutchinson-same-probes", threshold=1e-10, **_EXACT, changed="toolkit-hutchinson",
    source="Hutchinson (1990)", quantity="largest relative difference of zᵀHz, probe for probe",
    statement="Hutchinson's trace through HVPs equals the same Rademacher probes applied to the dense Hessian")
HUTCHINSON_COVERAGE = ClaimSpec(
    id="hutchinson-trace", kind="check", statistic="proportion", direction="greater", threshold=0.9,
    unit="probe seed", changed="toolkit-hutchinson", source="Hutchinson (1990)",
    quantity="fraction of probe seeds with |estimate − exact| ≤ 3 SE",
    statement="Hutchinson's estimate with its standard error covers the exact trace: more than 90 % of "
              "independent probe seeds lie within ±3 standard errors (nominal ≈ 99.7 %)")
HUTCHINSON_Z = 3.0   # the coverage band of HUTCHINSON_COVERAGE, in standard errors
GRADIENT_COVARIANCE = ClaimSpec(
    id="gradient-covariance", threshold=1e-8, **_EXACT, quantity="largest relative error (eigenvalues, trace)",
    statement="gradient-covariance top eigenvalues and trace equal an explicit per-example loop")
NTK_EXPLICIT = ClaimSpec(
    id="ntk-explicit", threshold=1e-10, **_EXACT, quantity="relative error of Θ against J Jᵀ",
    statement="the empirical NTK equals J Jᵀ from explicit Jacobians")
NTK_PSD = ClaimSpec(
    id="ntk-psd", threshold=1e-10, **_EXACT, changed="toolkit-ntk", quantity="max(0, −λ_min / λ_max) of Θ",
    statement="the empirical NTK is positive semi-definite (λ_min ≥ −1e-10 λ_max)")
SPECS = (HVP_VS_DENSE, ITERABLE_DATA, LANCZOS_TOP_K, LANCZOS_RESIDUAL, SLQ_MASS, SLQ_DENSITY, HUTCHINSON_PROBES,
         HUTCHINSON_COVERAGE, GRADIENT_COVARIANCE, NTK_EXPLICIT, NTK_PSD)


def slq_density(results: dict, sigma_frac: float = 0.01, grid: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    lam = results["exact_eigenvalues"]
    width = float(lam.max() - lam.min())
    sigma = sigma_frac * width
    g = np.linspace(lam.min() - 5 * sigma, lam.max() + 5 * sigma, grid)
    return density_from_nodes(results["slq"]["nodes"], results["slq"]["weights"], grid=g, sigma=sigma)


def claims(results: dict, config: Config) -> list[Result]:
    """The chapter's self-checks: exact ones on this run, the randomised estimators over probe seeds."""
    exact = results["exact_eigenvalues"]
    lz = results["lanczos"]
    k = len(lz["eigenvalues"])
    grid, dens = slq_density(results)
    ps = results["probe_seeds"]
    z = np.asarray(ps["hutchinson_z"])
    cov, ntk = results["covariance"], results["ntk"]
    lz_detail = {"HVPs": lz["num_matvecs"], "converged": bool(lz["converged"]), "k": k, "tol": config.tol}
    return [
        evaluate(HVP_VS_DENSE, max(results["hvp_rel_error"], results["ggn_rel_error"]),
                 detail={"Hv": results["hvp_rel_error"], "Gv": results["ggn_rel_error"]}),
        evaluate(ITERABLE_DATA, results["iterable_vs_concatenated"]),
        evaluate(LANCZOS_TOP_K, float(np.max(np.abs(lz["eigenvalues"] / exact[:k] - 1))), detail=lz_detail),
        evaluate(LANCZOS_RESIDUAL, float(np.max(lz["residuals"] / np.abs(lz["eigenvalues"]))), detail=lz_detail),
        evaluate(SLQ_MASS, abs(float(np.trapezoid(dens, grid)) - 1)),
        evaluate(SLQ_DENSITY, np.asarray(ps["slq_w1"]), detail={"probe streams": "toolkit/probe"}),
        evaluate(HUTCHINSON_PROBES, results["hutchinson"]["same_probes_rel_error"],
                 detail={"probes": config.hutchinson_samples}),
        evaluate(HUTCHINSON_COVERAGE, (np.abs(z) <= HUTCHINSON_Z).astype(float),
                 detail={"probes per seed": config.hutchinson_samples, "max |z|": float(np.abs(z).max())}),
        evaluate(GRADIENT_COVARIANCE, max(cov["eig_rel_error"], cov["trace_rel_error"]),
                 detail={"eigenvalues": cov["eig_rel_error"], "trace": cov["trace_rel_error"]}),
        evaluate(NTK_EXPLICIT, ntk["rel_error"], detail={"asymmetry": ntk["asymmetry"]}),
        evaluate(NTK_PSD, max(0.0, -ntk["min_eigenvalue"] / ntk["max_eigenvalue"]),
                 detail={"λ_min": ntk["min_eigenvalue"], "λ_max": ntk["max_eigenvalue"]}),
    ]


def lanczos_note(records: list[dict]) -> str:
    """Why Lanczos came out as it did (conditioned on its verdict)."""
    rec = {r["id"]: r for r in records}
    return by_verdict(rec["lanczos-converged"], reproduced="",
                      not_reproduced="Lanczos stopped without meeting its residual bound (its iteration cap); "
                                     "the per-unit detail gives the HVPs it spent.",
                      inconclusive="")


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
    b.legend(ncol=1, loc="center right")   # between the tolerance line and the converged floor: the free band
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


def changed_note(records: list[dict]) -> str:
    """One generated sentence when rules changed since the chapter's first version (all seeds are new)."""
    changed = [r["id"] for r in records if r.get("changed")]
    if not changed:
        return ""
    return (f"The rules of {len(changed)} of these {len(records)} checks changed since the chapter's first version "
            "(each row links to the book's Changes page), and every result here is on new seeds, drawn from the "
            "book's one seed derivation (`curvnb.seeds`).")
