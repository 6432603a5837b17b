"""Exact Gauss–Newton in deep reversible networks (Buffelli et al. 2024), our reproduction.

A :class:`curvnb.models.ReversibleNet` trained by :class:`curvnb.optim.ExactGaussNewton`, Adam and
SGD on sklearn digits (quick) or MNIST/CIFAR-10 from a local folder (full), full batch and
mini-batch, over several seeds at once (the seeds' networks are stacked into one ensemble and
trained by :func:`curvnb.train.train`); NTK distance and feature CKA from initialization via
:mod:`curvnb.curvature`.

Pre-registered protocol (fixed before running; the claims are declared once in
:mod:`curvnb.studies.buffelli2024.report` and decided by :func:`curvnb.claims.evaluate`):

* **Learning rates.** GN and Adam each get a grid of the same size (``gn_lrs``, ``adam_lrs``),
  run on ``selection_seeds`` *selection* units; each group's rate is the grid value that is best by
  its claims' own objective — full batch: fewest steps to a 10× lower training loss (the speed
  claim); mini-batch and the lazy-vs-rich control: lowest final validation loss. The validation
  split is held out of the training data; the test split is never used to choose anything.
* **Seeds.** Every statistical claim is tested on ``test_seeds`` other, *test* units at the chosen
  rates (:mod:`curvnb.seeds` streams, disjoint from the selection ones), as a mean (of paired
  differences) with a Student-t 95 % interval; a unit that diverged enters no contrast.

The study is a package: :mod:`.compute` (configuration, profiles, streams and the cached
computations; the result cache keys on it only), :mod:`.report` (claims and prose) and
:mod:`.figures`. Every public name is re-exported here.
"""

from curvnb.studies.buffelli2024.compute import (Config, GROUPS, OPTIMIZERS, PROFILES, REGIMES, SCORES, STREAMS, DIVERGE_FACTOR,
                                                 SeedMajor, TUNED, Units, design_condition, diverged, drop_private,
                                                 ensemble_loss, kernel_probes, load_data, make_ensemble, make_net,
                                                 member_eval, run, run_exactness, select_lr, speed_score,
                                                 steps_to_drop, train_ensemble, units, validation_score)
from curvnb.studies.buffelli2024.figures import (COLORS, draw_sweep, figure_batch_overfit, figure_lazy,
                                                 figure_lr_sweep, figure_training, set_widget_results)
from curvnb.studies.buffelli2024.report import (NAMES, SPECS, claims, rich_markdown, selection_markdown,
                                                summary_markdown, what_we_ran_markdown)

TITLE = "Exact Gauss–Newton in reversible networks"
COST = {"quick": "≈2 min on 2 CPU cores (131 s measured 2026-12-06)", "full": "≈30 min on one GPU (MNIST from a local folder)",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}
