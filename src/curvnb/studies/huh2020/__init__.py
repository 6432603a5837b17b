"""Huh (2020): curvature-corrected learning dynamics in deep linear networks.

Five statements of the abstract, checked through eight restated claims and two self-checks (our
derivation, see :mod:`curvnb.linear`): natural gradient (NGD) keeps gradient descent's (GD) path
and only changes its speed (a conservation law), it accelerates learning of the input–output map,
it can hurt generalization, block-diagonal (layer-wise) NGD breaks the stability of the parameter
dynamics, and fractional correction (α = ½) restores it while keeping most of the speed-up.

Every claim about a random quantity is a statistic fixed before running (the constants below),
over independent seeds, with a 95 % interval (:mod:`curvnb.stats`); the first entry of a claim's
``measured`` is its tested statistic, the one the interval belongs to. Seeds are batched: the
flows of all seeds are integrated together (:func:`curvnb.linear.integrate`, float64 on the CPU,
each seed with its own adaptive steps) and the discrete runs step all seeds at once
(:func:`curvnb.linear.euler_steps`, the optimizers' update on whitened data) on the chapter's device.

The study is split in two: :mod:`curvnb.studies.huh2020.compute` (configuration, profiles and the
cached computations) and :mod:`curvnb.studies.huh2020.report` (claims, figures, prose). The result cache keys on the
compute part only (:func:`curvnb.cache.compute_sources`). Every public name of both is re-exported here.
"""

from curvnb.studies.huh2020.compute import (BLOCK_HALF, BLOCK_NGD, Config, FULL_HALF, GD, MATRIX_RULES, NGD,
                                            PROFILES, SEED_STRIDE, STREAMS, crossing_time, matrix_problem,
                                            member_seed, run, run_discrete, run_generalization, run_matrix,
                                            run_mlp, run_modes, run_scalar)
from curvnb.studies.huh2020.report import (BLOCK_DRIFT_MIN, BLOCK_NGD_STEP_MIN, COLORS, CONSERVED_TOLERANCE,
                                           ENDPOINT_TOLERANCE, GENERALIZATION_RATIO_MIN, HALF_LOSS_MAX,
                                           HALF_NORM_RATIO_MAX, HALF_STEP_MAX, MAP_TOLERANCE,
                                           NORM_RATIO_MEDIAN_MIN, PLATEAU_FRACTIONAL_GROWTH, PLATEAU_GD_GROWTH,
                                           PLATEAU_NGD_CHANGE, QUADRATURE_TOLERANCE, SAXE_TOLERANCE,
                                           SINGULAR_TIME_ATOL, SINGULAR_TIME_RTOL, SOURCES, STATIC_SLIDER_VALUES,
                                           STEP_RATIO_MIN, TEX, TIME_TOLERANCE, WHY_NOT, claims,
                                           conservation_markdown, draw_modes, figure_generalization, figure_mlp,
                                           figure_modes, figure_phase_portrait, figure_saxe, figure_singular_flows,
                                           figure_stability, figure_stability_seeds, generalization_markdown,
                                           mlp_markdown, modes_markdown, singular_markdown, stability_markdown,
                                           summary_markdown)

TITLE = "Curvature-corrected learning dynamics in deep linear networks"
COST = {"quick": "about 2½ minutes on a 2-core CPU (measured: 140 s of CPU time, single-threaded)",
        "full": "about 15 minutes on a 2-core CPU (measured: 13 min of CPU time, 10 of them the MLP grid; the float64 "
                "ODEs stay on the CPU, a GPU only speeds up the discrete-time runs and the MLP)",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}
