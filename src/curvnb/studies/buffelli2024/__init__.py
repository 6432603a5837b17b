"""Exact Gauss–Newton in deep reversible networks (Buffelli et al. 2024), our reproduction.

A :class:`curvnb.models.ReversibleNet` trained by :class:`curvnb.optim.ExactGaussNewton`, Adam and
SGD on sklearn digits (quick) or MNIST/CIFAR-10 from a local folder (full), full batch and
mini-batch, over several seeds at once (the seeds' networks are stacked into one ensemble and
trained by :func:`curvnb.train.train`); NTK distance and feature CKA from initialization via
:mod:`curvnb.curvature`.

Pre-registered protocol (fixed before running; the claims' statistics and thresholds are those
of the restated claims):

* **Learning rates.** GN and Adam each get a grid of the same size (``gn_lrs``, ``adam_lrs``);
  in each regime (full batch, mini-batch) each optimizer's learning rate is the grid value with
  the lowest validation loss at the end of training, averaged over the seeds. The validation
  split is held out of the training data; the test split is never used to choose anything.
* **Seeds.** Every statistical claim is a mean over ``seeds`` independent seeds (initialization,
  fixed random matrices and batch order) with a Student-t 95 % interval, and counts as
  reproduced only when that interval lies on the claimed side of the threshold.

The study is split in two: :mod:`curvnb.studies.buffelli2024.compute` (configuration, profiles and the
cached computations) and :mod:`curvnb.studies.buffelli2024.report` (claims, figures, prose). The result cache keys on the
compute part only (:func:`curvnb.cache.compute_sources`). Every public name of both is re-exported here.
"""

from curvnb.studies.buffelli2024.compute import (Config, OPTIMIZERS, PROFILES, REGIMES, SeedMajor, TUNED,
                                                 design_condition, drop_private, ensemble_loss, kernel_probes,
                                                 load_data, make_ensemble, member_eval, run, run_exactness,
                                                 seed_list, select_lr, train_ensemble)
from curvnb.studies.buffelli2024.report import (COLORS, NAMES, claim_statistics, claims, draw_sweep,
                                                figure_batch_overfit, figure_lazy, figure_lr_sweep,
                                                figure_training, rich_markdown, selection_markdown,
                                                set_widget_results, steps_to_drop, summary_markdown, _interval)

TITLE = "Exact Gauss–Newton in reversible networks"
COST = {"quick": "≈1.5–2 min on 2 CPU cores", "full": "≈30 min on one GPU (MNIST from a local folder)",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}
