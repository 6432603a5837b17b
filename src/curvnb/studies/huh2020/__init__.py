"""Huh (2020): curvature-corrected learning dynamics in deep linear networks.

Five statements of the abstract, checked through eight restated claims and two self-checks (our
derivation, see :mod:`curvnb.linear`): natural gradient (NGD) keeps gradient descent's (GD) path
and only changes its speed (a conservation law), it accelerates learning of the input–output map,
it can hurt generalization, block-diagonal (layer-wise) NGD breaks the stability of the parameter
dynamics, and fractional correction (α = ½) restores it while keeping most of the speed-up.

Every claim is declared once in :mod:`curvnb.studies.huh2020.specs` and decided by the verdict engine
(:func:`curvnb.claims.evaluate`): exact statements as deterministic values against a tolerance,
statements about a typical seed as medians or proportions over seeds with a 95 % interval. Every
random draw comes from a declared stream of :mod:`curvnb.seeds` (:data:`STREAMS`). Seeds are batched: the
flows of all seeds are integrated together (:func:`curvnb.linear.integrate`, float64 on the CPU,
each seed with its own adaptive steps) and the discrete runs step all seeds at once
(:func:`curvnb.linear.euler_steps`, the optimizers' update on whitened data) on the chapter's device.

The study is split in two: :mod:`curvnb.studies.huh2020.compute` (configuration, profiles and the
cached computations), :mod:`curvnb.studies.huh2020.specs` (claims) and :mod:`curvnb.studies.huh2020.report`
(figures, prose). The result cache keys on the
compute part only (:func:`curvnb.cache.compute_sources`). Every public name of both is re-exported here.
"""

from curvnb.studies.huh2020.compute import (BLOCK_HALF, BLOCK_NGD, Config, FULL_HALF, GD, MATRIX_RULES, NGD,
                                            PROFILES, STREAMS, crossing_time, draw, matrix_problem, run, run_discrete,
                                            run_generalization, run_matrix, run_mlp, run_modes, run_scalar)
from curvnb.studies.huh2020.report import (COLORS, STATIC_SLIDER_VALUES, TEX, WHY, draw_modes, figure_generalization,
                                           figure_mlp, figure_modes, figure_phase_portrait, figure_saxe,
                                           figure_singular_flows, figure_stability, figure_stability_seeds, findings,
                                           changes_note,
                                           mlp_markdown)
from curvnb.studies.huh2020.specs import SPECS, claims, units

TITLE = "Curvature-corrected learning dynamics in deep linear networks"
COST = {"quick": "≈5 min on a 2-core CPU (289 s measured 2026-12-06)",
        "full": "about 15 minutes on a 2-core CPU (measured: 13 min of CPU time, 10 of them the MLP grid; the float64 "
                "ODEs stay on the CPU, a GPU only speeds up the discrete-time runs and the MLP)",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}
