"""Vanishing curvature at random initialisation (Orvieto et al., 2021/2022).

Deep networks whose width grows slower than their depth have, *typically* (in median), gradients
and Hessian eigenvalues that shrink exponentially in L/d at Xavier/He init, although the *mean*
squared signal is preserved. GD's time to escape the resulting plateau scales like 1/curvature;
Adam's does not; residual branches (with or without BatchNorm) restore the gradient.

Every claim is declared once in :mod:`curvnb.studies.orvieto2021.specs` (statistic, direction,
threshold) and decided by the verdict engine (:mod:`curvnb.claims`) over independent units
(chains, nets), every random draw from the declared seed streams :data:`STREAMS`. All logic lives
in :mod:`curvnb.init_stats`, :mod:`curvnb.models.mlp` and :mod:`curvnb.curvature`.

The study is split in three: :mod:`~curvnb.studies.orvieto2021.compute` (configuration, profiles,
seed streams and the cached computations; the result cache keys on it only), :mod:`~.specs`
(the claims) and :mod:`~.report` (figures, prose). Every public name is re-exported here.
"""

from curvnb.studies.orvieto2021.compute import (CONDITIONS, Config, PIECES, PROFILES, STREAMS, VARIANTS,
                                                load_classification, run, run_chain, run_escape, run_gradients,
                                                run_hessian, run_mlp, seed_ids)
from curvnb.studies.orvieto2021.report import (GRAD_LABEL, claims, draw_init, figure_architecture, figure_chain,
                                               figure_collapse, figure_escape, figure_gradients, figure_hessian,
                                               findings_markdown, hessian_slope_markdown, why)
from curvnb.studies.orvieto2021.specs import COLLAPSE_WIDTHS, LN10, SLOPE_DEPTHS, SLOPE_PARTS, SPEC, SPECS, units

TITLE = "Vanishing curvature at initialisation"
COST = {"quick": "≈3 min on 2 CPU cores (173 s measured 2026-12-06)", "full": "≈20 min (CPU or GPU; Fashion-MNIST from data/fashion-mnist)",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}
