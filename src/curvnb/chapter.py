"""The object every chapter notebook starts from: validated parameters, cache, figures, claims.

A chapter notebook is::

    ch = Chapter("huh2020", profile=profile, device=device, seed=seed)   # validates, seeds
    results = ch.run()                     # study.run(config, device=..., seed=...), cached
    ch.save(study.figure_modes(results), "modes")   # shown inline, saved as PNG + PDF
    ch.report(study.claims(results, ch.config))     # claims table + _build/claims/<id>.json
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from curvnb.cache import DiskCache, cache_key, compute_sources
from curvnb.claims import KINDS, Claim, claims_table_html, count_sentence, write_claims
from curvnb.config import resolve_device, seed_everything, select_profile
from curvnb.figures import apply_style, figure_image, save_figure
from curvnb.paths import build_dir


PACKAGE_DIR = Path(__file__).resolve().parent


def loaded_sources() -> dict[str, str]:
    """SHA-256 of the source of every ``curvnb`` module loaded now: what a slider view's frames may
    depend on (they are drawn by report code). Cached results key on less:
    :func:`curvnb.cache.compute_sources`."""
    digests = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (name == "curvnb" or name.startswith("curvnb.")) and path and path.endswith(".py"):
            p = Path(path).resolve()
            if p.is_relative_to(PACKAGE_DIR) and p.exists():
                digests[str(p.relative_to(PACKAGE_DIR))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return digests


def units_sources_sha256(study: Any) -> str:
    """One SHA-256 over the code that drew a run's units and computed them: the study's ``run`` and
    the curvnb modules it imports (:func:`curvnb.cache.compute_sources`, what its cached results are
    keyed on), not its prose, figures, widgets or claims code. Two runs of one profile and
    configuration with equal hashes have exchangeable units (:mod:`curvnb.claims.pooling`; the
    claim's definition is checked on the records themselves)."""
    return hashlib.sha256(json.dumps(compute_sources(study.run), sort_keys=True).encode()).hexdigest()


def package_sources_sha256() -> str:
    """One SHA-256 over every ``curvnb`` source file (path and content): which code made a run."""
    h = hashlib.sha256()
    for p in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(str(p.relative_to(PACKAGE_DIR)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def sources_unchanged(digests: dict[str, str]) -> bool:
    for rel, digest in digests.items():
        p = PACKAGE_DIR / rel
        if not p.exists() or hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            return False
    return True


class Chapter:
    """Parameters, caching, figure files and claims for one chapter (``name`` = chapter id).

    The chapter created last is ``Chapter.current`` (what a slider view in the same notebook
    saves its static frames with)."""

    current: "Chapter | None" = None

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
        self._started = time.perf_counter()
        seed_everything(seed)
        apply_style()
        self.build = build_dir()
        self.cache = DiskCache(self.build / "cache" / name)
        self._view_names: dict[str, int] = {}
        Chapter.current = self
        if verbose:  # one short line; the full configuration is in the claims file's run record
            print(f"This run: {profile} profile, seed {seed}, device {self.device}.")

    def cached(self, fn: Callable[..., Any], key: str | None = None, **kwargs: Any) -> Any:
        """``fn(config, device=..., seed=..., **kwargs)``, computed once per configuration.

        An entry is found by chapter, ``key`` (default: ``fn``'s qualified name), configuration,
        profile, seed, device type and ``kwargs``, and reused only while the source of the code
        that computed it is unchanged: the module defining ``fn`` and the ``curvnb`` modules it
        imports, transitively (:func:`curvnb.cache.compute_sources`). Editing a study's compute
        module or a library module it imports recomputes; editing its report code (prose, figures,
        claims), ``claims.py``, ``figures.py``, ``widgets.py`` or this module reuses the entry."""
        key = key or getattr(fn, "__qualname__", "result")
        digest = cache_key(chapter=self.name, key=key, config=self.config, profile=self.profile,
                           seed=self.seed, device=self.device.type, kwargs=kwargs)
        start = time.perf_counter()
        sources = compute_sources(fn)   # read before computing: the code that will run

        def compute() -> dict[str, Any]:
            return {"value": fn(self.config, device=self.device, seed=self.seed, **kwargs), "sources": sources}

        def still_valid(entry: Any) -> bool:
            return isinstance(entry, dict) and "value" in entry and entry.get("sources") == sources

        entry = self.cache.get_or_compute(digest, compute, valid=still_valid)
        # progress, not a result: stderr, which the book's HTML leaves out (nb_output_stderr: remove)
        print(f"{key}: ready in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        return entry["value"]

    def run(self, **kwargs: Any) -> Any:
        """The study's main computation, ``study.run``, through the cache."""
        return self.cached(self.study.run, key="run", **kwargs)

    def reuse_key(self, what: str) -> str:
        """A key for derived files (e.g. a slider view's frames): this chapter's configuration, seed,
        profile and device type. Callers also check the curvnb sources are unchanged."""
        return cache_key(chapter=self.name, key=what, config=self.config, profile=self.profile,
                         seed=self.seed, device=self.device.type)

    def next_view_name(self, base: str) -> str:
        """``base``, then ``base-2``, ``base-3`` ...: distinct names for this chapter's slider views."""
        self._view_names[base] = self._view_names.get(base, 0) + 1
        n = self._view_names[base]
        return base if n == 1 else f"{base}-{n}"

    @property
    def figure_dir(self) -> Path:
        return self.build / "figures" / self.name

    def save(self, fig, name: str) -> None:
        """Save ``fig`` under ``_build/figures/<chapter>/`` as PNG and PDF and show it.

        The figure is displayed explicitly (a PNG at the book's content width) and then closed, so
        the executed notebook carries it under any matplotlib backend (Agg included), once."""
        import matplotlib.pyplot as plt

        png = save_figure(fig, self.figure_dir, name)
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # pragma: no cover
            return
        if get_ipython() is not None:
            display(figure_image(fig, png=png))
            plt.close(fig)

    def what_we_ran(self, **chosen: Any) -> str:
        """The chapter's "What we ran" section (HTML): every setting of this run's configuration, in
        its order and in words (data, sizes, optimizers and rates, steps, batch sizes, seeds and
        units), with the chapter seed, device and wall time so far; ``chosen``: what the run chose
        itself (``learning_rate_GD=0.3``), listed first. Generated from state, never typed in."""
        import html

        def words(value: Any) -> str:
            if isinstance(value, float):
                return f"{value:g}"
            if isinstance(value, (tuple, list)):
                inner = [words(v) for v in value]
                return ("; " if any(isinstance(v, (tuple, list)) for v in value) else ", ").join(inner) or "none"
            if isinstance(value, dict):
                return "; ".join(f"{k}: {words(v)}" for k, v in value.items()) or "none"
            return "none" if value is None or value == "" else str(value)

        rows = [(name.replace("_", " "), words(value)) for name, value in chosen.items()]
        rows += [("profile", self.profile), ("chapter seed", str(self.seed)), ("device", str(self.device)),
                 ("wall time so far", f"{time.perf_counter() - self._started:.0f} s")]
        if dataclasses.is_dataclass(self.config):
            rows += [(f.name.replace("_", " "), words(getattr(self.config, f.name)))
                     for f in dataclasses.fields(self.config)]
        cell = "vertical-align:top;padding:3px 6px;border-bottom:1px solid #ddd;text-align:left"
        body = "".join(f'<tr><td style="{cell};width:38%">{html.escape(k)}</td><td style="{cell}">{html.escape(v)}</td></tr>'
                       for k, v in rows)
        return ('<details class="curvnb-what-we-ran" open><summary><b>What we ran</b>: the settings of this run '
                f"({self.profile} profile), from its configuration</summary>"
                '<table style="width:100%;table-layout:fixed;border-collapse:collapse;font-size:0.9em;'
                f'overflow-wrap:anywhere;word-break:normal"><tbody>{body}</tbody></table></details>')

    def run_metadata(self) -> dict[str, Any]:
        """What made this run: chapter, profile, seed, device, versions, source hash, date, wall time."""
        import torch

        import curvnb

        return {"chapter": self.name, "profile": self.profile, "seed": self.seed,
                "device": str(self.device), "torch": torch.__version__, "curvnb": curvnb.__version__,
                "sources_sha256": package_sources_sha256(), "units_sha256": units_sources_sha256(self.study),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "wall_time_s": round(time.perf_counter() - self._started, 2),
                "config": dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else repr(self.config)}

    def report(self, claims: Sequence[Claim]) -> list[dict[str, Any]]:
        """Write ``_build/claims/<chapter>.json`` and display the claims table. A composite statistic's
        record carries its interval's coverage in simulation at this profile's unit count, where
        ``make coverage`` measured it for this statistic (:mod:`curvnb.claims.coverage`)."""
        from curvnb.claims import Result
        from curvnb.claims import coverage

        results = coverage.stored()
        claims = [dataclasses.replace(c, simulated_coverage=coverage.simulated_coverage(self.name, c.spec, self.profile,
                                                                                         results))
                  if isinstance(c, Result) and coverage.simulated(c.spec) else c for c in claims]
        records = write_claims(self.build / "claims" / f"{self.name}.json", claims, self.profile,
                               run=self.run_metadata())
        try:
            from IPython.display import HTML, display
            display(HTML(claims_table_html(records)))
        except ImportError:  # pragma: no cover
            pass
        print("; ".join(filter(None, (count_sentence(records, kind) for kind in KINDS)))
              + f" ({self.profile} profile)")
        return records
