"""Profiles, devices and seeds: the three parameters every chapter takes."""
from __future__ import annotations

import contextlib
import random
from typing import Iterator, Mapping, TypeVar

import numpy as np
import torch

PROFILES = ("quick", "full", "smoke")   # smoke: tiny sizes through every code path (tests)
DEVICES = ("auto", "cpu", "cuda")
SMOKE_NOTE = ("**Smoke profile: a test run, not evidence.** This was executed in the `smoke` profile, "
              "tiny sizes that take every code path in seconds for the test suite; its figures and "
              "verdicts say nothing about the papers. The book's results come from the quick profile "
              "(`make book`) or the full one.")

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


SEED_LIMIT = 2**32   # NumPy's legacy seeding takes [0, 2**32); so do all our chapters


def check_seed(seed: object) -> int:
    """``seed`` as an int, or a clear error unless it is an integer in ``[0, 2**32)``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


@contextlib.contextmanager
def single_thread(device: str | torch.device | None = None) -> Iterator[None]:
    """One intra-op CPU thread while it lasts (a no-op when ``device`` is given and is not the CPU):
    for work made of small matrices, which gains nothing from threads, and where on a busy machine
    spinning threads cost several times the work (measured: 6× the CPU time on 2 cores)."""
    if device is not None and torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a chapter is deterministic under ``seed``."""
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
