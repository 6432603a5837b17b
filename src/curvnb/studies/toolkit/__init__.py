"""Measuring curvature: every tool of :mod:`curvnb.curvature` checked against explicit matrices.

A small tanh MLP is trained briefly on sklearn's digits (float64, P ≈ 1,200 so the dense Hessian is
cheap). On its training loss we compare: Lanczos top eigenvalues with the dense spectrum, the SLQ
density with the exact eigenvalue histogram, Hutchinson's trace with the exact trace, Hessian- and
Gauss–Newton-vector products with dense matrices built by ``torch.autograd.functional``, the
gradient covariance with a per-example loop, and the empirical NTK with explicit Jacobians.

All claims are self-checks of the machinery (``kind="check"``). The exact ones use one run
(``seeds=1``); the two randomised estimators (SLQ and Hutchinson) are judged over independent probe
seeds, run with the same ``curvnb.curvature`` code on the dense Hessian wrapped as an operator
(:class:`~curvnb.curvature.MatrixOperator`, cheap), with 95 % intervals.

The study is split in two: :mod:`curvnb.studies.toolkit.compute` (configuration, profiles and the
cached computations) and :mod:`curvnb.studies.toolkit.report` (claims, figures, prose). The result cache keys on the
compute part only (:func:`curvnb.cache.compute_sources`). Every public name of both is re-exported here.
"""

from curvnb.studies.toolkit.compute import (Config, DT, MAX_PROBE_SEEDS, PROFILES, STREAMS, make_model, run,
                                            slq_wasserstein)
from curvnb.studies.toolkit.report import (GRADIENT_COVARIANCE, HUTCHINSON_COVERAGE, HUTCHINSON_PROBES, HUTCHINSON_Z,
                                           HVP_VS_DENSE, ITERABLE_DATA, LANCZOS_RESIDUAL, LANCZOS_TOP_K, NTK_EXPLICIT,
                                           NTK_PSD, SLQ_DENSITY, SLQ_MASS, SPECS, claims, draw_lanczos, figure_density,
                                           figure_hutchinson, figure_spectrum, lanczos_note, slq_density,
                                           changed_note)

TITLE = "Measuring curvature"
COST = {"quick": "≈2 min on 2 CPU cores (122 s measured 2026-12-06)", "full": "a few minutes on one GPU or CPU",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}
