"""Introduction: why curvature matters, shown on the smallest possible example.

Gradient descent on a quadratic ``L(θ) = ½ θᵀ A θ`` moves each eigen-direction of ``A`` by the
factor ``1 − η λ`` per step: it converges iff ``η < 2 / λ_max``, and the slowest direction
decays like ``(1 − η λ_min)^{2k}`` in loss. Everything else in this book refines this picture.

The study is split in two: :mod:`curvnb.studies.intro.compute` (configuration, profiles and the
cached computations) and :mod:`curvnb.studies.intro.report` (claims, figures, prose). The result cache keys on the
compute part only (:func:`curvnb.cache.compute_sources`). Every public name of both is re-exported here.
"""

from curvnb.studies.intro.compute import Config, PROFILES, STREAMS, gd_losses, problem, quadratic, run
from curvnb.studies.intro.report import (DIVERGES, LOSS_RANGE, SLOWEST_MODE, SPECS, STABLE, claims,
                                         draw_interactive, plot_losses)

TITLE = "Introduction: curvature sets the step size"
COST = {"quick": "≈30 s on a CPU", "full": "seconds on a CPU",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}
