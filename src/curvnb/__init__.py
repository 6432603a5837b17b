"""curvnb — curvature in deep learning, as a reproducibility book and a small library.

The package holds everything the chapters compute: curvature operators and spectra
(:mod:`curvnb.curvature`), optimizers (:mod:`curvnb.optim`), deep-linear theory
(:mod:`curvnb.linear`), models, data, and one study module per chapter
(:mod:`curvnb.studies`). The book's chapters are thin narrative over these calls.
"""
from curvnb.chapter import Chapter
from curvnb.claims import Claim
from curvnb.config import DEVICES, PROFILES, resolve_device, select_profile

__version__ = "0.1.0"
__all__ = ["Chapter", "Claim", "DEVICES", "PROFILES", "resolve_device", "select_profile", "__version__"]
