"""Shared fixtures. ``executed_chapter(id)`` executes a chapter once per session (quick profile,
papermill, cached results) and returns its claim records; ``built_book`` executes every chapter
and builds the HTML book."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("CURVNB_ROOT", str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

from curvnb import book  # noqa: E402
from curvnb.claims import read_claims  # noqa: E402

_executed: dict[str, list[dict]] = {}


def execute_chapter(name: str) -> list[dict]:
    if name not in _executed:
        claims_file = book.build_dir() / "claims" / f"{name}.json"
        claims_file.unlink(missing_ok=True)  # the records must come from this session's run
        book.run_chapters([name], profile="quick", device="cpu", seed=0, progress=False)
        _executed[name] = read_claims(claims_file)
    return _executed[name]


@pytest.fixture(scope="session")
def executed_chapter():
    """``executed_chapter("huh2020")`` -> that chapter's quick-profile claim records."""
    return execute_chapter


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Every chapter executed (quick profile) and the HTML book built; returns index.html."""
    for chapter in book.chapters():
        execute_chapter(chapter.id)
    return book.build_book()


def claims_by_id(records: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in records}


def checked_claims(records: list[dict], all_ids, expected_to_hold) -> dict[str, dict]:
    """Claims by id, after asserting the chapter reports exactly ``all_ids`` and every claim in
    ``expected_to_hold`` passed."""
    claims = claims_by_id(records)
    assert set(claims) == set(all_ids)
    for cid in expected_to_hold:
        assert claims[cid]["passed"], claims[cid]
    return claims


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
