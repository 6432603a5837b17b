"""Atlas: one task, every optimizer, every curvature lens (the book's own synthesis).

MNIST-1D (generated offline by :func:`curvnb.data.load_mnist1d`), a bias-free ReLU MLP
(``40 → 128 → 128 → 10``, 22 784 weights) and the reversible network of the same width and depth
(:class:`curvnb.models.ReversibleNet`, width 128, expansion 128, 2 coupling blocks: 33 024
weights), trained by :func:`curvnb.train.train` with

* on the MLP: SGD at a small and a large learning rate, SGD with momentum 0.9, Adam at its
  selected rate and at a tenth of it, fractional K-FAC (:class:`curvnb.optim.BlockDiagonalNaturalGradient`,
  cross-entropy factors) at α = ½ and α = 1, and Alice (:class:`curvnb.optim.Alice`, the reference form);
* on the reversible net: exact Gauss–Newton (:class:`curvnb.optim.ExactGaussNewton`) and SGD and
  Adam as its own baselines.

Every lens comes from :mod:`curvnb.curvature`: λ_H¹ (:func:`hessian_eigenvalues`), λ_K¹ and Tr K
(:func:`gradient_covariance_eigenvalues`, :func:`gradient_covariance_trace`), the glass density ρ
and Hessian-diagonal magnitude h̄ (:func:`curvnb.curvature.glass.gradient_variation` at σ = ``sigma``),
the NTK's movement from its initial value, ‖K_t − K_0‖_F/‖K_0‖_F (:func:`ntk_relative_change`), and its
kernel distance ``1 − cos(K_t, K_0)`` (:func:`empirical_ntk`, :func:`ntk_distance`; the laziness
findings were registered on this one), and the linear CKA of the last hidden representation with its initial value
(:func:`linear_cka`); per-layer gradient norms at initialization; test loss and accuracy, gradient
evaluations and training wall time (probes excluded).

Pre-registered protocol (written here and committed before the chapter was first run):

* **Gradient evaluations.** One evaluation is one forward and backward pass over a mini-batch.
  SGD, SGD-momentum and Adam spend 1 per step; K-FAC spends 1 per step plus ``C = 10`` (one
  backward pass per class) every ``kfac_update_every`` steps when it refreshes its factors
  (:func:`evaluation_counts`); Alice spends 3 on its curvature steps and 1 on quick steps
  (:meth:`Alice.gradient_evaluations`); exact GN spends 1 per step (one forward pass and one
  least-squares solve per half-block, no backward pass). Every run stops at the last step within
  ``budget`` evaluations: the *equal-evaluations* comparison is each run's last probe.
* **Learning rates.** Every tuned optimizer gets a grid of five rates half a decade apart
  (``lr_grids``). On ``select_seeds`` selection seeds (never used for the findings) each grid rate
  is trained for ``select_budget`` evaluations; the selected rate has the lowest mean validation
  loss at the end (a diverged run counts as +∞). The validation split is held out of the training
  data; the test split is never used to choose anything. **SGD large** is the largest SGD grid rate
  whose selection runs stayed finite and ended below their validation loss at initialization;
  **SGD small** is SGD large ÷ 10. **Adam** runs at its selected rate, **Adam ÷ 10** at a tenth of it.
* **Matched training loss.** Training loss is measured on a fixed probe subset of ``probe_n``
  training examples. The target is 1.05 × the largest final training loss over every run and seed
  (so every run reaches it); a run's matched probe is the first probe whose loss is ≤ the target.
* **Seeds.** ``seeds`` tested units (initialization, batch order, optimizer noise, probes), each
  drawn from the chapter's ``"test"`` seed streams (:data:`STREAMS`), and ``select_seeds`` selection
  units from its ``"selection"`` streams; the MLP runs of one unit share their initialization (so
  do the reversible runs), so ratios are paired by seed.

The findings are :data:`SPECS` (:class:`curvnb.claims.ClaimSpec`, decided by :func:`curvnb.claims.evaluate`:
the median over seeds of a per-seed difference of two runs, exact order-statistic interval, yes / no / inconclusive).
Their pre-registration and its revisions are stated in the chapter (:func:`registration_markdown`)
and on the book's Changes page.

The study is split in two: :mod:`curvnb.studies.atlas.compute` (configuration, profiles and the
cached computations) and :mod:`curvnb.studies.atlas.report` (claims, figures, prose). The result cache keys on the
compute part only (:func:`curvnb.cache.compute_sources`). Every public name of both is re-exported here.
"""

from curvnb.studies.atlas.compute import (BASE, Config, DEFAULT_GRIDS, LENSES, LOSS, NUM_CLASSES, PROFILES,
                                          REVERSIBLE, ROLES, RUNS, STREAMS, TUNED, batches, choose_rates,
                                          evaluation_counts, first_below, grid, layer_grad_norms, lens_probe,
                                          load_data, make_model, make_optimizer, make_step, matched, representation,
                                          run, run_chapter, select_score, steps_within, target_loss, train_one,
                                          unit_lists)
from curvnb.studies.atlas.report import (BOOTSTRAP_SPECS, COLORS, COMPARED, FINDINGS, FIRST_ANSWERS, HEADERS, LINKS, NAMES, SPECS,
                                         TABLE_GROUPS, TICKS, at_budget, claims, compared_with_study, draw_pair,
                                         figure_heatmap, figure_lenses, findings_markdown, heatmap_matrix,
                                         init_markdown, kernel_scale_note, matched_table_html, rates_markdown,
                                         registration_markdown, study_record, widget_options)

TITLE = "Atlas: one task, every optimizer, every curvature lens"
COST = {"quick": "≈9½ min on 2 CPU cores (8 seeds × 11 runs plus 45 rate-selection runs; 573 s measured 2026-12-06)",
        "full": "not measured; for one GPU (CIFAR-10 from a local folder, 8 seeds)",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}
