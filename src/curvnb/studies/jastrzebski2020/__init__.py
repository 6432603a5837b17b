"""The break-even point on optimization trajectories (Jastrzębski et al., ICLR 2020).

SGD with a larger learning rate η or a smaller batch size S reaches the point where training
becomes unstable along the top Hessian direction ("break-even", λ_H¹ ≈ 2/η for full-batch GD)
earlier, at lower curvature, and from then on stays in flatter regions: the maxima of λ_H¹ and of
λ_K¹ (top eigenvalue of the per-example gradient covariance K) are smaller (Conjecture 1), and K
is better conditioned (Conjecture 2).

The quick profile trains a small 1D-CNN on MNIST-1D (generated offline) with plain SGD for
η ∈ {0.05, 0.1, 0.2} at S = 32 and S ∈ {16, 128} at η = 0.1 (S = 128 for 45 epochs, the others
15), over ``Config.seeds`` independent seeds (initialisation, batch order and probe subsets),
probing λ_H¹ (Lanczos on 500 fixed training examples), the full spectrum of K (exact, from
per-example gradients of 256 fixed examples, in float64) and the test accuracy twice per epoch
and more often early. It also runs full-batch GD with a squared loss on 256 examples per seed to
test the edge of stability (Cohen et al. 2021). The full profile is the paper's SimpleCNN on
CIFAR-10 from a local folder, with the batch-norm sweep.

Every claim is a pre-registered statistic over the seeds with a 95 % interval (:mod:`curvnb.stats`);
the chapter's conclusions are generated from the claim records by :func:`summary_markdown`.

The study is split in two: :mod:`curvnb.studies.jastrzebski2020.compute` (configuration, profiles and the
cached computations) and :mod:`curvnb.studies.jastrzebski2020.report` (claims, figures, prose). The result cache keys on the
compute part only (:func:`curvnb.cache.compute_sources`). Every public name of both is re-exported here.
"""

from curvnb.studies.jastrzebski2020.compute import (ALPHA_GRID, Config, DATASETS, EOS_LOSSES, HalfSquaredError,
                                                    MODELS, PROFILES, accuracy_probe, combine, covariance_probe,
                                                    eos_loss_fn, epochs_for, load_data, make_model,
                                                    overshoot_probe, run, run_eos, run_seed, run_sgd, run_specs,
                                                    top_hessian_probe)
from curvnb.studies.jastrzebski2020.report import (EOS_BAND, EOS_IN_BAND, EOS_LOSS_DROP, EOS_MEDIAN,
                                                   EOS_PRECONDITION, LAMBDA_H, LAMBDA_K, QUANTITIES, after_start,
                                                   break_even_index, claim_sentence, claims,
                                                   conditioning_after_break_even, draw_run,
                                                   effective_rank_after_break_even, eos_markdown, eos_window,
                                                   figure_accuracy, figure_covariance, figure_eos,
                                                   figure_overshoot, figure_plane, figure_sharpness,
                                                   final_test_accuracy, run_labels, running_median_max, runs_table,
                                                   second_half, sharpening, smoothed_max, summary_markdown,
                                                   widget_view)

TITLE = "The break-even point on optimization trajectories"
COST = {"quick": "≈3 min on 2 CPU cores (3 seeds × (5 SGD runs + 1 GD run) on 2 worker processes, cached per seed)",
        "full": "many GPU hours (SimpleCNN on CIFAR-10, 200 epochs per run, BN sweep, 5 seeds; resumable)",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}
