"""The object every chapter notebook starts from: validated parameters, cache, figures, claims.

A chapter notebook is::

    ch = Chapter("huh2020", profile=profile, device=device, seed=seed)   # validates, seeds
    results = ch.run()                     # study.run(config, device=..., seed=...), cached
    ch.save(study.figure_modes(results), "modes")   # shown inline, saved as PNG + PDF
    ch.report(study.claims(results, ch.config))     # claims table + _build/claims/<id>.json
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from curvnb.cache import DiskCache, cache_key
from curvnb.claims import Claim, claims_table_html, write_claims
from curvnb.config import resolve_device, seed_everything, select_profile
from curvnb.figures import apply_style, save_figure
from curvnb.paths import build_dir


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of the package's source: cached results are recomputed after any code change."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


class Chapter:
    """Parameters, caching, figure files and claims for one chapter (``name`` = chapter id)."""

    def __init__(self, name: str, *, profile: str = "quick", device: str = "auto", seed: int = 0,
                 verbose: bool = True):
        try:
            self.study = importlib.import_module(f"curvnb.studies.{name}")
        except ModuleNotFoundError as exc:
            raise ValueError(f"unknown chapter {name!r}: no module curvnb.studies.{name}") from exc
        self.name = name
        self.profile = profile
        self.config = select_profile(self.study.PROFILES, profile)
        self.device = resolve_device(device)
        self.seed = seed
        seed_everything(seed)
        apply_style()
        self.build = build_dir()
        self.cache = DiskCache(self.build / "cache" / name)
        if verbose:
            print(f"chapter {name!r}: profile={profile!r}, device={self.device}, seed={seed}")
            print(f"config: {self.config}")

    def cached(self, fn: Callable[..., Any], key: str | None = None, **kwargs: Any) -> Any:
        """``fn(config, device=..., seed=..., **kwargs)``, computed once per configuration and code version."""
        key = key or getattr(fn, "__qualname__", "result")
        digest = cache_key(chapter=self.name, key=key, config=self.config, profile=self.profile,
                           seed=self.seed, device=self.device.type, code=code_fingerprint(), kwargs=kwargs)
        start = time.perf_counter()

        def compute() -> Any:
            return fn(self.config, device=self.device, seed=self.seed, **kwargs)

        value = self.cache.get_or_compute(digest, compute)
        print(f"{key}: ready in {time.perf_counter() - start:.1f} s")
        return value

    def run(self, **kwargs: Any) -> Any:
        """The study's main computation, ``study.run``, through the cache."""
        return self.cached(self.study.run, key="run", **kwargs)

    @property
    def figure_dir(self) -> Path:
        return self.build / "figures" / self.name

    def save(self, fig, name: str) -> None:
        """Save ``fig`` under ``_build/figures/<chapter>/`` as PNG and PDF (the notebook shows it inline)."""
        save_figure(fig, self.figure_dir, name)

    def report(self, claims: Sequence[Claim]) -> list[dict[str, Any]]:
        """Write ``_build/claims/<chapter>.json`` and display the claims table."""
        records = write_claims(self.build / "claims" / f"{self.name}.json", claims, self.profile)
        try:
            from IPython.display import HTML, display
            display(HTML(claims_table_html(records)))
        except ImportError:  # pragma: no cover
            pass
        n_pass = sum(r["passed"] for r in records)
        print(f"{n_pass} of {len(records)} claims reproduced ({self.profile} profile)")
        return records
