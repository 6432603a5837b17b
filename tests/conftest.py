"""Shared fixtures. ``executed_chapter(id)`` executes a chapter once per session (**smoke** profile,
papermill) and returns its claim records; ``built_book`` executes every chapter that way and
builds the HTML book.

The tests write into a build folder of their own, ``_build/test`` ($CURVNB_BUILD), so `make test`
never changes what `make book` built in ``_build``; the folder persists, so a rerun reuses its cache
(keyed by configuration and code). Smoke runs exercise every code path, figure and slider in
seconds: their claim verdicts are no evidence, and tests of them assert machinery, not verdicts.

Every chapter execution of the session (here, in CLI subprocesses, in sweep workers) is logged
through $CURVNB_EXECUTION_LOG; the session fails if one (chapter, profile, seed) ran twice."""
from __future__ import annotations

import collections
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_BUILD = ROOT / "_build" / "test"
os.environ.setdefault("CURVNB_ROOT", str(ROOT))
os.environ["CURVNB_BUILD"] = str(TEST_BUILD)   # never the book's own _build
os.environ.setdefault("MPLBACKEND", "Agg")

from curvnb import book  # noqa: E402
from curvnb.claims import read_claims  # noqa: E402

PROFILE = "smoke"   # the profile of every chapter execution in the tests
# The modules that execute chapters (or compute what their smoke runs read from the cache) share one
# pytest-xdist worker, so each chapter is computed and executed once, in one place.
BOOK_GROUP = pytest.mark.xdist_group("book")
# A test in a BOOK_GROUP module that shares no chapter run (its own build folder, no cache): marked
# with this too, it joins a group of its own ("book_free"), which the other worker can take.
OUTSIDE_BOOK = pytest.mark.xdist_group("free")
_executed: dict[str, list[dict]] = {}


def execute_chapter(name: str) -> list[dict]:
    """Execute chapter ``name`` (smoke profile, seed 0, CPU) through papermill, once per session."""
    if name not in _executed:
        claims_file = book.build_dir() / "claims" / f"{name}.json"
        claims_file.unlink(missing_ok=True)  # the records must come from this session's run
        book.run_chapters([name], profile=PROFILE, device="cpu", seed=0, progress=False)
        _executed[name] = read_claims(claims_file)
    return _executed[name]


@pytest.fixture(scope="session")
def executed_chapter():
    """``executed_chapter("huh2020")`` -> that chapter's smoke-profile claim records."""
    return execute_chapter


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Every chapter executed (smoke profile) and the HTML book built; returns index.html."""
    for chapter in book.chapters():
        execute_chapter(chapter.id)
    return book.build_book()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster, and avoids oversubscribing shared cores
    (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def smoke_chapter(name: str, seed: int = 0):
    """The ``Chapter`` of ``name`` in the smoke profile on the CPU, as its notebook makes it, with the
    tests' build folder: results computed through it (``ch.run()``, ``ch.cached(...)``) are the cache
    entries the chapter's smoke execution reads, and the other way round, so a test of the study's
    code and the notebook's run share one computation."""
    from curvnb import Chapter

    ch = Chapter(name, profile=PROFILE, device="cpu", seed=seed, verbose=False)
    Chapter.current = None   # no notebook here: a slider shown later must not save frames for it
    return ch


@pytest.fixture(scope="session")
def library_claims(tmp_path_factory):
    """``library_claims("intro", seed)`` -> the claim records a smoke run of the chapter at ``seed``
    must write, computed here through the library (``Chapter.run``, ``study.claims``), with no
    notebook and no kernel: what the CLI and sweep executions are compared with."""
    from curvnb.claims import write_claims

    done: dict[tuple[str, int], list[dict]] = {}

    def claims(name: str, seed: int) -> list[dict]:
        if (name, seed) not in done:
            ch = smoke_chapter(name, seed)
            path = tmp_path_factory.mktemp("library") / f"{name}.json"
            write_claims(path, ch.study.claims(ch.run(), ch.config), PROFILE)
            done[name, seed] = read_claims(path)
        return done[name, seed]

    return claims


def pytest_configure(config):
    """One log of chapter executions for the whole session: set here, inherited by every process the
    tests start (CLI subprocesses, sweep workers, pytest-xdist workers, which keep the controller's)."""
    if not os.environ.get(book.EXECUTION_LOG):
        folder = Path(tempfile.mkdtemp(prefix="curvnb-executions-"))
        os.environ[book.EXECUTION_LOG] = str(folder / "log.jsonl")
        config._curvnb_execution_log = folder
    config.addinivalue_line("markers", "xdist_group(name): tests that must share one pytest-xdist worker")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Under ``--dist loadgroup`` pytest-xdist sends a group to one worker by suffixing its tests' node
    ids with ``@<group>``. pytest 9.2 made node ids read-only to that (xdist 3.8 then silently spreads
    the book group over both workers, and every chapter runs twice): fail at collection instead."""
    if not getattr(config.option, "loadgroup", False):
        return
    ungrouped = [i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if ungrouped:   # a worker's own error would be swallowed by xdist: write it to stderr first
        message = (f"pytest-xdist did not group {ungrouped[0]} (and {len(ungrouped) - 1} more): "
                   "pytest and pytest-xdist versions disagree; use the pins in requirements.txt")
        os.write(2, f"\nERROR: {message}\n".encode())
        pytest.exit(message, returncode=4)


def repeated_executions(log: Path) -> dict[tuple, int]:
    """(chapter, profile, seed) -> how often it ran, for those that ran more than once."""
    runs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    counts = collections.Counter((r["chapter"], r["profile"], r["seed"]) for r in runs)
    return {run: n for run, n in counts.items() if n > 1}


def pytest_sessionfinish(session, exitstatus):
    """Fail the session when a (chapter, profile, seed) was executed twice: each costs a kernel start
    and the chapter's work, and a test that needs a run should share it instead. Checked once, by the
    process that set the log up (the controller under pytest-xdist), after every test has run."""
    folder = getattr(session.config, "_curvnb_execution_log", None)
    if folder is None:
        return
    repeated = repeated_executions(folder / "log.jsonl")
    shutil.rmtree(folder, ignore_errors=True)
    if repeated:
        writer = session.config.get_terminal_writer()
        writer.line()
        writer.line(f"FAILED: (chapter, profile, seed) executed more than once in this session: {repeated}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def assert_distinct_seeds(streams) -> None:
    """A study's declared streams (``declare_streams``) give every (chapter seed, stream, index) its
    own seed, at chapter seeds 0, 1 and the largest (the first 16 indices of each stream)."""
    seeds: dict[int, list] = {}
    for chapter_seed in (0, 1, 2**32 - 1):
        for name, stream in streams.streams.items():
            for i in range(min(stream.max_index, 16)):
                seeds.setdefault(streams.seed(chapter_seed, name, i), []).append((chapter_seed, name, i))
    assert all(len(v) == 1 for v in seeds.values()), [v for v in seeds.values() if len(v) > 1][:3]


def saved_figures(name: str) -> dict[str, dict]:
    """Chapter ``name``'s figures as its smoke execution saved them: file stem -> the facts
    ``curvnb.figures.figure_facts`` recorded (widths, smallest text in px, unlabelled axes). The
    figures are read, not drawn again: the chapter's execution is what the tests check."""
    execute_chapter(name)
    folder = book.build_dir() / "figures" / name
    return {meta.stem: json.loads(meta.read_text()) for meta in sorted(folder.glob("*.json"))}


def claims_by_id(records: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in records}


def checked_claims(records: list[dict], all_ids, expected_to_hold=()) -> dict[str, dict]:
    """Claims by id, after asserting the chapter reports exactly ``all_ids`` and every claim in
    ``expected_to_hold`` passed (exact identities only: a smoke run's statistical verdicts are no
    evidence and are never asserted)."""
    claims = claims_by_id(records)
    assert set(claims) == set(all_ids)
    for cid in expected_to_hold:
        assert claims[cid]["passed"], claims[cid]
    return claims


def assert_well_formed(records: list[dict], chapter: str, kinds: dict[str, str] | None = None,
                       specs=None) -> None:
    """The machinery of a chapter's smoke-run claims, whatever their verdicts: each record has its
    fields, the smoke profile, a known kind (``kinds[id]`` when given), a seed count, a boolean
    verdict, an ordered interval where there is one, and finite numbers in its measurement. With
    ``specs`` (the study's ClaimSpecs): every record was decided by the engine from its spec, with
    its kind and Changes anchor, and keeps one value per unit."""
    from curvnb.claims import CLAIM_KEYS, KINDS, VERDICT_VALUES

    assert records, f"{chapter}: no claims"
    if specs is not None:
        by_id = {s.id: s for s in specs}
        kinds = {**(kinds or {}), **{s.id: s.kind for s in specs}}
        for r in records:
            spec = by_id[r["id"]]
            assert r["rule"] == "engine" and r["changed"] == spec.changed, (chapter, r["id"])
            values = r["values"]
            kept = values.get("x") or values.get("a") or values.get("g0")
            assert len(kept) == r["n_units"], (chapter, r["id"])
    for r in records:
        where = (chapter, r.get("id"))
        assert tuple(r)[:len(CLAIM_KEYS)] == CLAIM_KEYS, where
        assert r["profile"] == PROFILE and r["kind"] in KINDS and isinstance(r["passed"], bool), where
        if "verdict" in r:   # format 3
            assert r["verdict"] in VERDICT_VALUES and r["passed"] == (r["verdict"] == "reproduced"), where
        if kinds is not None:
            assert r["kind"] == kinds[r["id"]], where
        assert isinstance(r["seeds"], int) and r["seeds"] >= 1, where
        if r["interval"] is not None:
            lo, hi = r["interval"]
            assert lo <= hi, where
        measured = r["measured"]
        numbers = list(measured.values()) if isinstance(measured, dict) else [measured]
        for v in numbers:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                assert math.isfinite(v), (where, measured)


@pytest.fixture(autouse=True)
def default_dtype_is_left_alone():
    """A test that changes torch's default dtype must restore it (it would leak into later tests)."""
    import torch
    yield
    assert torch.get_default_dtype() == torch.float32, "this test left torch's default dtype changed"


def assert_over_seeds(claims: dict[str, dict], min_seeds: dict[str, int]) -> None:
    """Each named claim is a statistic over at least ``min_seeds[id]`` independent seeds with a
    95 % interval (its pass/fail depends on sampling and is not asserted)."""
    for cid, n in min_seeds.items():
        r = claims[cid]
        assert r["seeds"] >= n, (cid, r["seeds"], n)
        lo, hi = r["interval"]
        assert lo <= hi, (cid, r["interval"])
