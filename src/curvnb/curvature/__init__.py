"""Curvature operators and spectra: Hessian/GGN products, Lanczos, traces, densities, gradient covariance, NTK."""
