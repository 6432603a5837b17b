"""Vanishing curvature at random initialisation (Orvieto et al., 2021/2022).

Deep networks whose width grows slower than their depth have, *typically* (in median), gradients
and Hessian eigenvalues that shrink exponentially in L/d at Xavier/He init, although the *mean*
squared signal is preserved. GD's time to escape the resulting plateau scales like 1/curvature;
Adam's does not; residual branches (with or without BatchNorm) restore the gradient.

Every claim about a random quantity is a statistic fixed before running, over independent
seeds, with a 95 % interval (:mod:`curvnb.stats`); for a claim with several parts the first
entry of ``measured`` is the tested statistic the interval belongs to (the worst part, in the
parts' common unit), and every part is listed with its own interval. All logic lives in
:mod:`curvnb.init_stats`, :mod:`curvnb.models.mlp` and :mod:`curvnb.curvature`.

The study is split in two: :mod:`curvnb.studies.orvieto2021.compute` (configuration, profiles and the
cached computations) and :mod:`curvnb.studies.orvieto2021.report` (claims, figures, prose). The result cache keys on the
compute part only (:func:`curvnb.cache.compute_sources`). Every public name of both is re-exported here.
"""

from curvnb.studies.orvieto2021.compute import (Config, PIECES, PROFILES, SEED_STRIDE, VARIANTS,
                                                load_classification, run, run_chain, run_escape, run_gradients,
                                                run_hessian, run_mlp, seed_ids)
from curvnb.studies.orvieto2021.report import (GRAD_LABEL, LN10, SOURCES, UNITS, WHY_NOT, best_curves, best_final,
                                               claim_parts, claims, collapse_stats, draw_init, figure_architecture,
                                               figure_chain, figure_collapse, figure_escape, figure_gradients,
                                               figure_hessian, grad_slope, hessian_slope_markdown,
                                               summary_markdown)

TITLE = "Vanishing curvature at initialisation"
COST = {"quick": "≈1–2 min on 2 CPU cores", "full": "≈20 min (CPU or GPU; Fashion-MNIST from data/fashion-mnist)",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}
