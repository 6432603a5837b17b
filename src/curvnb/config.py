"""Profiles, devices and seeds: the three parameters every chapter takes."""
from __future__ import annotations

import random
from typing import Mapping, TypeVar

import numpy as np
import torch

PROFILES = ("quick", "full")
DEVICES = ("auto", "cpu", "cuda")

C = TypeVar("C")


def select_profile(profiles: Mapping[str, C], profile: str) -> C:
    """The configuration named ``profile``; a clear error naming the allowed values otherwise."""
    if profile not in profiles:
        allowed = ", ".join(repr(p) for p in profiles)
        raise ValueError(f"unknown profile {profile!r}: allowed values are {allowed}")
    return profiles[profile]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device not in DEVICES:
        allowed = ", ".join(repr(d) for d in DEVICES)
        raise ValueError(f"unknown device {device!r}: allowed values are {allowed}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a chapter is deterministic under ``seed``."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))
