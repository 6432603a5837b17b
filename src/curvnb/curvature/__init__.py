"""Curvature operators and spectra: Hessian/GGN products, Lanczos, traces, densities, gradient covariance, NTK.

Every function takes any ``torch.nn.Module``, a scalar loss ``loss_fn(outputs, targets)`` (mean
or sum reduction, read from ``loss_fn.reduction``; a plain function must pass ``reduction="mean"``
or ``"sum"``; ``"none"`` is refused) and ``data`` as one
``(x, y)`` batch or an iterable of batches (accumulated exactly: weighted by n_b / N for a mean, by
1 for a sum). Parameters are one flat vector of length P in ``model.parameters()`` order
(trainable ones only). The model is evaluated in the mode it is in (``train()``/``eval()``):
choose it before calling, e.g. ``model.eval()`` for BatchNorm with running statistics; stochastic
modules (Dropout) in training mode are refused unless ``allow_stochastic=True``. With
``process_group`` the data are one rank's shard (:mod:`curvnb.curvature.distributed`).
"""
from curvnb.curvature.covariance import (gradient_covariance_eigenvalues, gradient_covariance_trace,
                                         per_example_grads)
from curvnb.curvature.lanczos import (SpectrumResult, block_lanczos, lanczos, lanczos_coefficients,
                                     lanczos_tridiagonal, min_tolerance, random_unit_vector, tridiagonal_eigh)
from curvnb.curvature.ntk import empirical_ntk, linear_cka, ntk_distance, ntk_relative_change, output_jacobian
from curvnb.curvature.operators import (CurvatureOperator, MatrixOperator, dense_hessian, ggn_operator, ggn_vp,
                                        hessian_operator, hvp, loss_and_grad)
from curvnb.curvature.matrix_functions import spectral_cutoff, symmetric_power
from curvnb.curvature.params import (flatten, num_parameters, stochastic_modules, trainable_parameters,
                                     unflatten_like)
from curvnb.curvature.spectra import (density_from_nodes, hessian_density, hessian_eigenvalues, hessian_trace,
                                      operator_eigenvalues, operator_trace, slq_nodes)

__all__ = [
    "CurvatureOperator", "MatrixOperator", "SpectrumResult", "block_lanczos", "dense_hessian", "density_from_nodes", "empirical_ntk", "flatten",
    "ggn_operator", "ggn_vp", "gradient_covariance_eigenvalues", "gradient_covariance_trace", "hessian_density",
    "hessian_eigenvalues", "hessian_operator", "hessian_trace", "hvp", "lanczos", "lanczos_coefficients", "lanczos_tridiagonal",
    "min_tolerance", "random_unit_vector", "stochastic_modules", "tridiagonal_eigh",
    "linear_cka", "loss_and_grad", "ntk_distance", "ntk_relative_change", "num_parameters", "operator_eigenvalues", "operator_trace",
    "output_jacobian", "per_example_grads", "slq_nodes", "spectral_cutoff", "symmetric_power", "trainable_parameters", "unflatten_like",
]
from curvnb.curvature.glass import gradient_variation, glass_density_samples, hessian_diagonal_samples, perturbed_gradients  # noqa: E402
