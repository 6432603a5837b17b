"""Deep linear networks: models, whitened teacher–student data, curvature-corrected dynamics
(GD, NGD, block-diagonal and fractional variants), single-mode closed forms and conserved quantities."""
from curvnb.linear.data import noisy_teacher, teacher_map, teacher_student_data, whitened_inputs
from curvnb.linear.dynamics import (RULES, IntegrationError, Trajectory, block_natural_direction, conservation_drift,
                                    conservation_drifts, euler_steps, losses, singular_time,
                                    conserved_quantities, full_natural_direction, function_space_kernel, integrate,
                                    kronecker_direction, layer_gradients, loss, natural_gradient_maps,
                                    weight_velocity)
from curvnb.linear.modes import (mode_closed_form, mode_coefficients, mode_curve, mode_rate, mode_time,
                                 plateau_is_finite)
from curvnb.linear.network import DeepLinearNetwork, balanced_weights, end_to_end, partial_products, random_weights

__all__ = [
    "RULES", "DeepLinearNetwork", "IntegrationError", "Trajectory", "balanced_weights", "block_natural_direction", "conservation_drift", "conservation_drifts", "euler_steps", "losses", "singular_time",
    "conserved_quantities", "end_to_end", "full_natural_direction", "function_space_kernel", "integrate",
    "kronecker_direction", "layer_gradients", "loss", "mode_closed_form", "mode_coefficients", "mode_curve",
    "mode_rate", "mode_time", "natural_gradient_maps", "noisy_teacher", "partial_products", "plateau_is_finite", "random_weights",
    "teacher_map", "teacher_student_data", "weight_velocity",
]
