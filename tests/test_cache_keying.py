"""What a cached result depends on: its compute code, not the report code (curvnb.cache.compute_sources).

A throw-away package laid out like curvnb (a top-level ``__init__`` that re-exports report code,
``claims``/``figures`` modules, a library module, a study package split into compute and report)
is registered with the cache and edited file by file."""
from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from curvnb import cache

FILES = {
    "__init__.py": "from fakebook.chapterish import Chapterish\n",
    "chapterish.py": "from fakebook import claims, figures\nclass Chapterish: pass\n",
    "claims.py": "THRESHOLD = 1.0\n",
    "figures.py": "WIDTH = 7\n",
    "widgets.py": "from fakebook import figures\n",
    "lib/__init__.py": "from fakebook.lib.core import double\n",
    "lib/core.py": "def double(x):\n    return 2 * x\n",
    "lib/lazy.py": "OFFSET = 0\n",
    "lib/unused.py": "UNUSED = 0\n",
    "consts.py": "SCALE = 1\n",
    "studies/__init__.py": "CHAPTERS = ('demo',)\n",
    "studies/demo/__init__.py": textwrap.dedent("""\
        from fakebook.studies.demo.compute import Config, run
        from fakebook.studies.demo.report import claims, figure
        """),
    "studies/demo/compute.py": textwrap.dedent("""\
        from dataclasses import dataclass

        from fakebook.lib import double
        from fakebook import consts
        from . import helpers

        CALLS = []

        @dataclass(frozen=True)
        class Config:
            n: int = 3

        def run(config, *, device, seed):
            from fakebook.lib.lazy import OFFSET   # a function-level import counts too
            CALLS.append(seed)   # config: the intro chapter's (the cache test borrows its Chapter)
            return {"value": helpers.total(double(3) * consts.SCALE + OFFSET + seed)}
        """),
    "studies/demo/helpers.py": "def total(x):\n    return x\n",
    "studies/demo/report.py": textwrap.dedent("""\
        from fakebook import claims, figures, widgets
        from fakebook.studies.demo.compute import Config

        def claims(results, config):   # prose, figures and claims live here
            return results["value"] > 0

        def figure(results):
            return figures.WIDTH
        """),
}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    root = tmp_path / "src"
    for rel, text in FILES.items():
        (root / "fakebook" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "fakebook" / rel).write_text(text)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setitem(cache.PACKAGES, "fakebook", root / "fakebook")
    monkeypatch.setenv("CURVNB_BUILD", str(tmp_path / "build"))
    yield root / "fakebook"
    for name in [m for m in sys.modules if m == "fakebook" or m.startswith("fakebook.")]:
        del sys.modules[name]


def edit(path, line="\n# edited\n"):
    path.write_text(path.read_text() + line)


def test_compute_sources_follow_the_compute_imports_only(fake):
    study = importlib.import_module("fakebook.studies.demo")
    assert set(cache.compute_sources(study.run)) == {
        "fakebook/studies/demo/compute.py", "fakebook/studies/demo/helpers.py",   # relative import
        "fakebook/lib/__init__.py", "fakebook/lib/core.py",   # a name imported from a package: its __init__ and what it imports
        "fakebook/lib/lazy.py",                                # imported inside a function
        "fakebook/consts.py"}                                  # `from package import module`
    # the report side pulls in claims, figures and widgets, and the compute module through its import
    assert {"fakebook/claims.py", "fakebook/figures.py", "fakebook/widgets.py", "fakebook/studies/demo/compute.py"} \
        <= set(cache.compute_sources(study.claims))


def test_real_studies_exclude_report_code():
    """No cached computation of the book depends on claims, figures, widgets or the chapter object."""
    from curvnb.studies import CHAPTERS

    for name in CHAPTERS:
        compute = importlib.import_module(f"curvnb.studies.{name}.compute")
        sources = cache.compute_sources(compute.run)
        assert f"curvnb/studies/{name}/compute.py" in sources
        report_side = {"curvnb/__init__.py", "curvnb/claims.py", "curvnb/figures.py", "curvnb/widgets.py",
                       "curvnb/chapter.py", "curvnb/book.py", f"curvnb/studies/{name}/report.py",
                       f"curvnb/studies/{name}/__init__.py"}
        assert not report_side & set(sources), (name, report_side & set(sources))


@pytest.mark.parametrize("edited, recomputes", [
    ("studies/demo/report.py", False), ("claims.py", False), ("figures.py", False), ("widgets.py", False),
    ("chapterish.py", False), ("__init__.py", False), ("studies/demo/__init__.py", False),
    ("studies/__init__.py", False), ("lib/unused.py", False),
    ("studies/demo/compute.py", True), ("studies/demo/helpers.py", True), ("lib/core.py", True),
    ("lib/__init__.py", True), ("lib/lazy.py", True), ("consts.py", True)])
def test_cached_result_is_reused_or_recomputed(fake, edited, recomputes):
    from curvnb import Chapter

    study = importlib.import_module("fakebook.studies.demo")
    calls = sys.modules["fakebook.studies.demo.compute"].CALLS
    ch = Chapter("intro", profile="quick", device="cpu", seed=0, verbose=False)
    assert ch.cached(study.run, key="demo") == {"value": 6}
    assert calls == [0]
    assert ch.cached(study.run, key="demo") == {"value": 6}
    assert calls == [0]                        # unchanged code: reused
    first = list(calls)
    edit(fake / edited)
    ch.cached(study.run, key="demo")
    assert len(calls) == len(first) + recomputes, edited
    ch.cached(study.run, key="demo")
    assert len(calls) == len(first) + recomputes  # and the recomputed entry is reused in turn


def test_key_still_depends_on_seed_and_arguments(fake):
    from curvnb import Chapter

    study = importlib.import_module("fakebook.studies.demo")
    calls = sys.modules["fakebook.studies.demo.compute"].CALLS
    Chapter("intro", seed=0, device="cpu", verbose=False).cached(study.run, key="demo")
    Chapter("intro", seed=1, device="cpu", verbose=False).cached(study.run, key="demo")
    Chapter("intro", seed=1, device="cpu", verbose=False).cached(study.run, key="other")
    assert calls == [0, 1, 1]


def test_function_outside_the_package_counts_its_own_source():
    def local(config, *, device, seed):
        return seed

    sources = cache.compute_sources(local)
    assert any(k.endswith("test_cache_keying.py") for k in sources)
    assert "curvnb/cache.py" in sources            # this file imports curvnb.cache: followed
    assert "curvnb/__init__.py" not in sources     # `from curvnb import Chapter` names no compute code
