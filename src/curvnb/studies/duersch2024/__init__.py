"""Curvature in the looking-glass (Duersch et al. 2024): glass curvature of ReLU networks and Alice.

All on sklearn's digits with an MLP ``64 → H → H → 10`` (with biases), in a ReLU version and a
tanh twin of the same size and the same initial weights:

1. *Curvature* (:func:`run`, float64, over ``curvature_seeds`` independent nets, each pretrained
   briefly with full-batch Adam): the mean squared even part ``(ḡ − g₀)²`` and odd part
   ``((g₊ − g₋)/2)²`` of gradient differences against σ, the Hessian prediction ``σ² E[(Hz)²]`` of
   the odd part (exact Hessian-vector products), glass density and Hessian-diagonal estimates per
   layer, and the loss along random directions against the Hessian quadratic and the
   glass-corrected model (the quadratic plus ``sqrt(2/(3π)) sqrt(ρ_d) t^{3/2}``, the loss model
   whose minimiser is Alice's step). Plus *NAQ exactness*: Alice on a diagonal quadratic.
2. *Training* (:func:`run_training`, float32): Adam, SGD-momentum and Alice variants on a fresh
   ReLU MLP. Every optimizer gets a learning-rate grid of the same size; the rate is selected on a
   validation split carved from the training data (never the test set) with ``selection_seeds``
   runs, separately for the equal-steps and the equal-gradient-evaluations comparison; test
   accuracy is reported over ``report_seeds`` further runs at the selected rates, whose initial
   weights, data orders and perturbations come from test streams (:data:`STREAMS`), never from the
   selection streams. All runs of one (optimizer, rate) train together as one batched model.

The study is split in two: :mod:`curvnb.studies.duersch2024.compute` (configuration, profiles and the
cached computations) and :mod:`curvnb.studies.duersch2024.report` (claims, figures, prose). The result cache keys on the
compute part only (:func:`curvnb.cache.compute_sources`). Every public name of both is re-exported here.
"""

from curvnb.studies.duersch2024.compute import (Config, HEAVY_BALL, POINTS, PROFILES, ROLES, STREAMS, SeedBatchedMLP,
                                                VARIANTS, curvature_seed, evaluation_counts, layer_slices,
                                                learning_rates, line_comparison, make_optimizer, mlp, parallel_map,
                                                pretrain, run, run_line, run_naq, run_scaling, run_training,
                                                seed_statistics, seedwise_cross_entropy, select_rate, train_runs,
                                                training_split)
from curvnb.studies.duersch2024.report import (ABLATION, ABLATIONS, COMPARISONS, CURVATURE, DELTA, SPECS, claims,
                                               comparison_table, draw_runs, figure_layers, figure_line, figure_naq,
                                               figure_scaling, figure_sweep, figure_training, findings_markdown,
                                               line_details, pretrain_text, protocol_markdown, reported)

TITLE = "Curvature in the looking-glass: glass curvature and the Alice optimizer"
COST = {"quick": "≈2½ min on 2 CPU cores (157 s measured 2026-12-06, spread over both cores)",
        "full": "≈15 min on one GPU (estimate; several hours on a 2-core CPU)",
        "smoke": "seconds on a CPU (tiny sizes through every code path; its verdicts are no evidence)"}
