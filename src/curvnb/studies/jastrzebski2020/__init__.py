"""The break-even point on optimization trajectories (Jastrzębski et al., ICLR 2020).

SGD with a larger learning rate η or a smaller batch size S reaches the point where training
becomes unstable along the top Hessian direction ("break-even", λ_H¹ ≈ 2/η for full-batch GD)
earlier, at lower curvature, and from then on stays in flatter regions: the maxima of λ_H¹ and of
λ_K¹ (top eigenvalue of the per-example gradient covariance K) are smaller (Conjecture 1), and K
is better conditioned (Conjecture 2).

The quick profile trains a small 1D-CNN on MNIST-1D (generated offline) with plain SGD for
η ∈ {0.05, 0.1, 0.2} at S = 32 and S ∈ {16, 128} at η = 0.1 (S = 128 for 45 epochs, the others
15), over ``Config.seeds`` independent units (initialisation, batch order, probe subsets and Lanczos
start, each from the declared streams :data:`STREAMS`), probing λ_H¹ (Lanczos on 500 fixed training
examples), the full spectrum of K (exact, from per-example gradients of 256 fixed examples, in
float64) and the test accuracy twice per epoch and more often early. It also runs full-batch GD
with a squared loss on 256 examples per unit to test the edge of stability (Cohen et al. 2021). The
full profile is the paper's SimpleCNN on CIFAR-10 from a local folder, with the batch-norm sweep.

Every claim is declared once in :mod:`~curvnb.studies.jastrzebski2020.specs` and decided by the verdict
engine (:func:`curvnb.claims.evaluate`) over the units. The study is split in four:
:mod:`~curvnb.studies.jastrzebski2020.compute` (configuration, profiles, streams and the cached runs;
the result cache keys on it only), :mod:`~curvnb.studies.jastrzebski2020.measures` (measurements of
one run), :mod:`~curvnb.studies.jastrzebski2020.specs` (the claims) and
:mod:`~curvnb.studies.jastrzebski2020.report` (narrative, figures, slider views). Every public name is
re-exported here.
"""

from curvnb.studies.jastrzebski2020.compute import (ALPHA_GRID, Config, DATASETS, EOS_LOSSES, HalfSquaredError,
                                                    MODELS, PROFILES, STREAMS, accuracy_probe, combine,
                                                    covariance_probe, eos_loss_fn, epochs_for, load_data,
                                                    make_model, overshoot_probe, probes_for, run, run_eos, run_seed,
                                                    run_sgd, run_specs, top_hessian_probe)
from curvnb.studies.jastrzebski2020.measures import (EOS_BAND, EOS_IN_BAND, EOS_LOSS_DROP, EOS_MEDIAN,
                                                     EOS_PRECONDITION, after_start, break_even_index,
                                                     conditioning_after_break_even, effective_rank_after_break_even,
                                                     eos_window, final_test_accuracy, lr_runs, replicates, run_of,
                                                     running_median_max, second_half, sharpening, smoothed_max)
from curvnb.studies.jastrzebski2020.report import (LAMBDA_H, LAMBDA_K, QUANTITIES, claims_markdown, draw_run,
                                                   figure_accuracy, figure_covariance, figure_eos, figure_overshoot,
                                                   figure_plane, figure_sharpness, run_labels, runs_table,
                                                   summary_markdown, why, widget_view)
from curvnb.studies.jastrzebski2020.specs import SPECS, claims

TITLE = "The break-even point on optimization trajectories"
COST = {"quick": "≈9½ min on 2 CPU cores (6 seeds × (5 SGD runs + 1 GD run) on 2 worker processes, cached per seed; 560 s measured 2026-12-06)",
        "full": "many GPU hours (SimpleCNN on CIFAR-10, 200 epochs per run, BN sweep, 6 seeds; resumable)",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}
