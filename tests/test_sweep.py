"""``curvnb sweep``: grid, cache skipping, resume and failures as unit tests (an in-process engine
and fake tasks); then the local and the Ray engine each executing the ``intro`` chapter (smoke profile) for two
seeds, each run compared with the library's own computation at its seed; and the seed-robustness page."""
from __future__ import annotations

import functools
import json
import os
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from curvnb import sweep
from curvnb.claims import read_claims_file
from curvnb.cli import main
from curvnb import robustness
from curvnb.claims import COLOURS, ClaimSpec, evaluate, format_value, scorecard_rows_html
from curvnb.claims.pooling import Run, pool_claim
from curvnb.robustness import dot_plot_svg, robustness_markdown, with_book_runs
from curvnb.sweep import Task, TaskFailed, TaskInput, TaskOutput, expand_grid, run_sweep

HASH = "0" * 64
NB = {"intro": "01_intro.ipynb", "toolkit": "02_toolkit.ipynb"}


# --------------------------------------------------------------------------- helpers
def fake_output(task: Task, sources: str = HASH, passed: bool = True, value: float = 1.0) -> TaskOutput:
    """What a worker would return for ``task``: a claims file (one claim) and an executed notebook."""
    run = {"chapter": task.chapter, "seed": task.seed, "profile": task.profile, "device": "cpu",
           "sources_sha256": sources, "torch": "x"}
    claim = {"id": "c", "statement": "s", "measured": {"ratio": value}, "threshold": "> 0", "passed": passed,
             "profile": task.profile, "kind": "paper", "seeds": 1, "interval": None, "source": "Sec. 1"}
    files = {f"claims/{task.chapter}.json": json.dumps({"format": 2, "run": run, "claims": [claim]}).encode(),
             f"executed/{NB[task.chapter]}": b"{}", f"cache/{task.chapter}/k.pkl": b"entry"}
    return TaskOutput(task, files, 0.01, "test")


class InlineEngine:
    """Runs each task at submission, in this process: the driver's logic without processes."""

    name, startup_s = "inline", 0.0

    def submit(self, fn, payload):
        future: Future = Future()
        try:
            future.set_result(fn(payload))
        except Exception as exc:  # noqa: BLE001 - handed to the driver like a worker's failure
            future.set_exception(exc)
        return future

    def wait(self, handles, timeout):
        return list(handles)

    def result(self, handle):
        return handle.result()

    def close(self, cancel=False):
        pass


def inline_sweep(tmp_path: Path, fn, seeds=(0, 1), chapters=("intro",), **kwargs) -> sweep.SweepReport:
    lines: list[str] = []
    report = run_sweep(list(chapters), seeds, ["quick"], engine=InlineEngine(), sweeps_root=tmp_path / "sweeps",
                       task_fn=fn, sources_sha256=HASH, echo=lines.append, **kwargs)
    report.lines = lines  # type: ignore[attr-defined]
    return report


# --------------------------------------------------------------------------- unit tests
def test_grid_is_profiles_by_chapters_by_seeds_without_duplicates():
    tasks = expand_grid(["intro", "toolkit", "intro"], [2, 0, 2], ["quick", "full"], "cpu")
    assert [(t.profile, t.chapter, t.seed) for t in tasks] == [
        (p, c, s) for p in ("quick", "full") for c in ("intro", "toolkit") for s in (2, 0)]
    assert all(t.device == "cpu" for t in tasks)
    assert Task("quick", "intro", 3).folder(Path("/s")) == Path("/s/quick/intro/seed-3")
    with pytest.raises(ValueError, match="seed must be an integer"):
        expand_grid(["intro"], [-1], ["quick"])
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        expand_grid(["intro"], [0], ["huge"])
    with pytest.raises(ValueError, match="at least one seed"):
        expand_grid(["intro"], [], ["quick"])


def test_completed_tasks_are_skipped_only_with_current_sources(tmp_path):
    root = tmp_path / "sweeps"
    complete, stale, partial, other_seed, cuda = (Task("quick", "intro", s) for s in range(5))
    sweep.store_output(fake_output(complete), complete.folder(root))
    sweep.store_output(fake_output(stale, sources="1" * 64), stale.folder(root))
    out = fake_output(partial)
    del out.files["executed/01_intro.ipynb"]
    sweep.store_output(out, partial.folder(root))
    sweep.store_output(fake_output(Task("quick", "intro", 9)), other_seed.folder(root))   # wrong seed inside
    sweep.store_output(fake_output(cuda), cuda.folder(root))
    tasks = [complete, stale, partial, other_seed, cuda]
    todo, done = sweep.pending_tasks(tasks, root, NB, HASH)
    assert done == [complete, cuda] and todo == [stale, partial, other_seed]
    # an explicit device must match the stored run's device type; "auto" accepts any
    on_cuda = Task("quick", "intro", 4, "cuda")
    assert sweep.pending_tasks([on_cuda], root, NB, HASH) == ([on_cuda], [])
    on_cpu = Task("quick", "intro", 4, "cpu")
    assert sweep.pending_tasks([on_cpu], root, NB, HASH) == ([], [on_cpu])


def test_rerun_does_no_work_and_interrupted_sweep_resumes(tmp_path):
    calls: list[int] = []

    def interrupted_after_two(payload: TaskInput) -> TaskOutput:
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(payload.task.seed)
        return fake_output(payload.task)

    with pytest.raises(KeyboardInterrupt):
        inline_sweep(tmp_path, interrupted_after_two, seeds=range(4))
    assert calls == [0, 1]
    calls.clear()

    def counting(payload: TaskInput) -> TaskOutput:
        calls.append(payload.task.seed)
        # the earlier run's cache entries travel with the task (reused where still valid)
        assert payload.cache == ({} if payload.task.seed >= 2 else {"cache/intro/k.pkl": b"entry"})
        return fake_output(payload.task)

    report = inline_sweep(tmp_path, counting, seeds=range(4))
    assert calls == [2, 3] and [t.seed for t in report.skipped] == [0, 1] and not report.failed
    assert "2 already done, 2 to run" in report.lines[0]
    calls.clear()
    report = inline_sweep(tmp_path, counting, seeds=range(4))
    assert calls == [] and len(report.skipped) == 4 and "4 already done, 0 to run" in report.lines[0]


def test_failing_seed_is_retried_once_reported_and_leaves_other_results_intact(tmp_path):
    root = tmp_path / "sweeps"
    # an earlier result of the failing seed (older sources): kept, not deleted by the failure
    old = Task("quick", "intro", 1)
    sweep.store_output(fake_output(old, sources="1" * 64, value=7.0), old.folder(root))
    attempts: list[int] = []

    def seed_1_raises(payload: TaskInput) -> TaskOutput:
        attempts.append(payload.task.seed)
        if payload.task.seed == 1:
            raise TaskFailed("chapter intro failed in cell 5: ValueError: boom", b'{"cells": []}')
        return fake_output(payload.task, value=3.0)

    report = inline_sweep(tmp_path, seed_1_raises, seeds=(0, 1, 2))
    assert attempts.count(1) == 2 and attempts.count(0) == attempts.count(2) == 1
    assert report.failed == {old: "chapter intro failed in cell 5: ValueError: boom"}
    assert [t.seed for t in report.ran] == [0, 2]
    text = "\n".join(report.lines)
    assert "failed: intro seed 1 (quick) (attempt 1 of 2): chapter intro failed in cell 5" in text
    assert "retrying" in text and "(attempt 2 of 2)" in text
    for seed in (0, 2):
        run, records = read_claims_file(root / "quick" / "intro" / f"seed-{seed}" / "claims" / "intro.json")
        assert run["seed"] == seed and records[0]["measured"] == {"ratio": 3.0}
    run, records = read_claims_file(old.folder(root) / "claims" / "intro.json")
    assert records[0]["measured"] == {"ratio": 7.0}          # the older result is still whole
    failed = root / "failed" / "quick" / "intro" / "seed-1"
    assert "boom" in (failed / "error.txt").read_text() and (failed / "01_intro.ipynb").exists()
    assert not list((root / "quick" / "intro").glob(".*"))   # no temporary folders left


def test_a_task_that_fails_once_succeeds_on_retry_and_clears_its_failure(tmp_path):
    seen: set[int] = set()

    def flaky(payload: TaskInput) -> TaskOutput:
        if payload.task.seed not in seen:
            seen.add(payload.task.seed)
            raise sweep.WorkerDied("its worker process died (killed or out of memory)")
        return fake_output(payload.task)

    sweep._store_failure(Task("quick", "intro", 0), tmp_path / "sweeps", "01_intro.ipynb", "old", None)
    report = inline_sweep(tmp_path, flaky)
    assert not report.failed and len(report.ran) == 2 and len(report.retried) == 2
    assert not (tmp_path / "sweeps" / "failed" / "quick" / "intro" / "seed-0").exists()
    meta = json.loads((tmp_path / "sweeps" / "quick" / "intro" / "seed-0" / "task.json").read_text())
    assert meta["attempts"] == 2 and meta["seed"] == 0


def test_incomplete_output_is_a_failure_and_bad_paths_are_refused(tmp_path):
    def no_notebook(payload):
        out = fake_output(payload.task)
        del out.files["executed/01_intro.ipynb"]
        return out

    report = inline_sweep(tmp_path, no_notebook, seeds=(0,))
    assert "wrote no executed/01_intro.ipynb" in report.failed[Task("quick", "intro", 0)]
    folder = tmp_path / "x" / "seed-0"
    sweep.store_output(fake_output(Task("quick", "intro", 0)), folder)
    evil = fake_output(Task("quick", "intro", 0))
    evil.files["../../escape.txt"] = b"no"
    with pytest.raises(ValueError, match="outside its folder"):
        sweep.store_output(evil, folder)
    assert (folder / "claims" / "intro.json").exists() and not (tmp_path / "escape.txt").exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["seed-0"]   # old result whole, no leftovers


@pytest.mark.parametrize("args, needle", [
    (["sweep", "no_such_chapter", "--seeds", "0"], "unknown chapter(s) ['no_such_chapter']"),
    (["sweep", "intro", "--seeds", "-1"], "seed must be an integer in [0, 2**32)"),
    (["sweep", "intro", "--num-seeds", "0"], "--num-seeds must be at least 1"),
    (["sweep", "intro", "--gpus-per-task", "1"], "--gpus-per-task needs --engine ray"),
    (["sweep", "intro", "--max-parallel", "0"], "--max-parallel must be at least 1"),
])
def test_sweep_cli_errors_are_one_line(capsys, args, needle):
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"curvnb: error: {err[-1][len('curvnb: error: '):]}"] and needle in err[-1]


def test_failed_tasks_make_the_command_fail_with_one_line(tmp_path, capsys, monkeypatch):
    def failing(payload):
        raise TaskFailed("chapter intro failed in cell 2: RuntimeError: nope")

    real = sweep.run_sweep
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: real(
        *a, **{**k, "engine": InlineEngine(), "task_fn": failing, "sweeps_root": tmp_path, "sources_sha256": HASH}))
    assert main(["sweep", "intro", "--seeds", "4"]) == 2
    captured = capsys.readouterr()
    assert "failed: intro seed 4 (quick) (attempt 2 of 2): chapter intro failed in cell 2" in captured.out
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("curvnb: error: 1 sweep task(s) failed after a retry: intro seed 4")


# --------------------------------------------------------------------------- the page
def _results(values_by_seed: dict[int, tuple[float, bool]], chapter="intro", profile="quick"):
    out = []
    for seed, (value, passed) in values_by_seed.items():
        task = Task(profile, chapter, seed, "cpu")
        data = json.loads(fake_output(task, passed=passed, value=value).files[f"claims/{chapter}.json"])
        out.append((task, data["run"], data["claims"]))
    return out


def test_robustness_page_gives_each_seeds_verdict_and_the_spread():
    page = robustness_markdown(_results({0: (1.0, True), 1: (5.0, True), 2: (1000.0, False)}),
                               {"intro": "Introduction"}, {"intro": "01_intro"})
    assert "## Quick profile" in page and "### Introduction" in page and "(01_intro.ipynb)" in page
    assert "Source: Sec. 1" in page
    for seed, word in ((0, "reproduced"), (1, "reproduced"), (2, "not reproduced")):
        assert f'seed {seed}: <b style="color:{COLOURS[word]}">{word}</b>' in page
    assert "3 seed(s): 0, 1, 2; device(s): cpu" in page and "same units code" in page
    assert page.count("<circle") == 3 and "log scale" in page
    assert "not pooled: a pre-engine record keeps no units" in page   # fake_output's records are format 2
    assert 'data-label="verdict per chapter seed"' in page and 'data-label="pooled over chapter seeds"' in page
    empty = robustness_markdown([])
    assert "No sweep results yet" in empty and "curvnb sweep intro toolkit --num-seeds 3" in empty


def test_robustness_page_pools_engine_records_over_chapter_seeds():
    spec = ClaimSpec(id="c", statement="s", statistic="median", direction="greater", threshold=0.0)
    runs = []
    for seed, values in ((1, [0.5, -0.2, 0.3, 0.8]), (2, [0.1, 0.4, 0.9, -0.1]), (3, [0.6, 0.2, 0.7, 0.35])):
        task = Task("quick", "intro", seed, "cpu")
        run = {"chapter": "intro", "seed": seed, "profile": "quick", "device": "cpu", "sources_sha256": HASH,
               "torch": "x", "config": {"n": 4}}
        # continuous values, as measured: typed decimals are small fractions, which the shared-unit check
        # treats as discrete (equal units expected)
        values = [v + 2 ** 0.5 / 1000 for v in values]
        runs.append((task, run, [evaluate(spec, values).record("quick")]))
    page = robustness_markdown(runs)
    assert "Checked: no unit of one chapter seed (its values, a pair for a paired claim) appears among" in page
    pooled = pool_claim([Run(t.seed, run, recs) for t, run, recs in runs], "c")
    lo, hi = pooled["interval"]
    assert f"— 12 seeds, 3 chapter seeds" in page and f"[{format_value(lo)}, {format_value(hi)}]" in page
    assert [st["verdict"] for st in pooled["pooled"]["narrowing"]][0] == "inconclusive"   # 4 units: too few
    assert page.count('class="curvnb-narrowing"') == 1 and page.count("stroke-width=\"3\"") == 2
    # the scorecard shows the pooled verdict beside the run's own, linked to the page
    swept = robustness.pooled_verdicts(runs)
    assert set(swept) == {("quick", "intro")} and swept["quick", "intro"]["c"]["interval"] == pooled["interval"]
    row = scorecard_rows_html(runs[0][2], "01_intro", swept["quick", "intro"])
    assert '<a href="seed_robustness.html">pooled over a sweep</a>' in row and "— 12 seeds, 3 chapter seeds" in row
    # the book's run joins as chapter seed 0 of a swept profile, not of another profile
    book_run = (Task("quick", "intro", 0, "cpu"), runs[0][1], runs[0][2])
    other = (Task("full", "intro", 0, "cuda"), runs[0][1], runs[0][2])
    assert [t.seed for t, _, _ in with_book_runs(runs, [book_run, other])] == [0, 1, 2, 3]
    # a unit run twice (seed 0 a copy of seed 1) is reported
    shared = robustness_markdown(with_book_runs(runs, [book_run]))
    assert "1 claim(s) share units across chapter seeds" in shared and "seeds 0 and 1" in shared
    # the book's run made with other units code is shown, left out of the pool, and named
    older = (Task("quick", "intro", 0, "cpu"), {**runs[0][1], "seed": 0, "units_sha256": "older"}, runs[0][2])
    page = robustness_markdown(with_book_runs(runs, [older]))
    assert "seed 0: <b" in page and "— 12 seeds, 3 chapter seeds" in page
    assert "seed 0 left out: another profile, configuration or units code" in page
    # units at a rate each seed chose on its own selection seeds: the row says what each chose
    picked = {s: evaluate(spec, [1.0] * 6, detail={"rate of GD (selected)": 0.1 * s}).record("quick") for s in (1, 2)}
    note = robustness.selection_note(picked)
    assert "seed 1: rate of GD: 0.1" in note and "seed 2: rate of GD: 0.2" in note and "pooled as they are" in note
    assert robustness.selection_note({1: runs[0][2][0]}) == ""


def test_robustness_page_labels_smoke_runs_as_no_evidence():
    page = robustness_markdown(_results({0: (1.0, True)}) + _results({0: (2.0, False)}, profile="smoke"))
    quick, smoke = page.split("## Smoke profile")
    assert "not evidence" not in quick and "## Quick profile" in quick
    assert "**Smoke profile: a test run, not evidence.**" in smoke


def test_tested_statistic_and_dot_plot():
    assert robustness.tested_statistic({"measured": 2}) == ("measured", 2.0)
    assert robustness.tested_statistic({"measured": {"name": "x", "nan": float("nan"), "drop": 3.5}}) == ("drop", 3.5)
    assert robustness.tested_statistic({"measured": [1, 2]}) is None
    svg = dot_plot_svg([1.0, 2.0, 3.0], ["reproduced", "not reproduced", "inconclusive"], [0, 1, 2],
                       ["yes", "no", "inconclusive"])
    assert "linear scale" in svg and "seed 0: 1 (yes)" in svg and "seed 1: 2 (no)" in svg
    assert "seed 2: 3 (inconclusive)" in svg   # an undecided seed is not drawn, or named, as failed
    circles = svg.split("<circle")[1:]
    assert 'fill="#0072B2"' in circles[0] and 'fill="none"' in circles[1] and "dasharray" not in circles[1]
    assert 'fill="none"' in circles[2] and "stroke-dasharray" in circles[2]


def test_staged_book_has_the_page_and_the_scorecard_links_it(tmp_path, monkeypatch):
    from curvnb import book

    monkeypatch.setenv("CURVNB_BUILD", str(tmp_path / "build"))
    stage = tmp_path / "site"
    (stage / "book").mkdir(parents=True)
    (stage / "book" / "01_intro.ipynb").write_text("{}")
    (stage / "book" / "scorecard.md").write_text("# Reproducibility scorecard\n\nIntro text.\n\n**summary**\n")
    for seed in (0, 1):
        task = Task("quick", "intro", seed)
        sweep.store_output(fake_output(task), task.folder(sweep.sweeps_dir()))
    book.stage_seed_robustness(stage, {"intro": "Introduction", "toolkit": "Toolkit"},
                               {"intro": "01_intro", "toolkit": "02_toolkit"})
    page = (stage / "book" / "seed_robustness.md").read_text()
    assert "seed 1: <b" in page and "(01_intro.ipynb)" in page and "02_toolkit" not in page
    scorecard = (stage / "book" / "scorecard.md").read_text()
    assert scorecard.index("Intro text.") < scorecard.index("(seed_robustness.md)") < scorecard.index("**summary**")
    toc = (Path(__file__).resolve().parents[1] / "_toc.yml").read_text()
    assert toc.index("book/scorecard") < toc.index("book/seed_robustness")


# --------------------------------------------------------------------------- real executions
# Two executions of the intro chapter, smoke profile, each (profile, seed) once in the session: a
# local sweep of seed 2 (beside a failing seed 6, two worker processes) and a Ray sweep of seed 4
# (test_cli runs seed 1, the book seed 0). Each run's claims must equal the library's own
# computation at its seed.
LOCAL_SEEDS, LOCAL_FAILING, RAY_SEEDS = [2], 6, [4]


def seed_6_raises(payload: TaskInput) -> TaskOutput:
    """Seed 6's chapter fails (as a raising cell would, before any work); the others run for real."""
    if payload.task.seed == LOCAL_FAILING:
        raise TaskFailed("chapter intro failed in cell 4: RuntimeError: injected failure")
    return sweep.execute_chapter_task(payload)


def worker_dies_once(payload: TaskInput, marker: str) -> TaskOutput:
    """Seed 4's first attempt kills its worker process (before any work); the retry runs for real."""
    if payload.task.seed == RAY_SEEDS[0] and not os.path.exists(marker):
        Path(marker).write_text("killed once")
        os._exit(1)
    return sweep.execute_chapter_task(payload)


def fake_worker_dies_once(payload: TaskInput, marker: str) -> TaskOutput:
    """No chapter: seed 1's first attempt kills its process, everything else returns at once."""
    if payload.task.seed == 1 and not os.path.exists(marker):
        Path(marker).write_text("killed once")
        os._exit(1)
    return fake_output(payload.task)


@pytest.mark.slow
def test_local_engine_retries_a_dead_worker_process(tmp_path):
    lines: list[str] = []
    marker = tmp_path / "killed-once"
    report = run_sweep(["intro"], [0, 1], ["quick"], engine="local", max_parallel=2, sweeps_root=tmp_path / "sweeps",
                       task_fn=functools.partial(fake_worker_dies_once, marker=str(marker)), sources_sha256=HASH,
                       echo=lines.append, progress_every_s=5)
    assert marker.exists() and not report.failed and sorted(t.seed for t in report.ran) == [0, 1]
    assert Task("quick", "intro", 1) in report.retried
    assert any("failed: intro seed 1 (quick) (attempt 1 of 2): its worker process" in line for line in lines)
    assert sweep.pending_tasks(sorted(report.ran), tmp_path / "sweeps", NB, HASH) == ([], sorted(report.ran))


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """Seed 2 executed by the local engine beside a failing seed 6 (two processes)."""
    build = tmp_path_factory.mktemp("local") / "_build"
    lines: list[str] = []
    old = os.environ.get("CURVNB_BUILD")
    os.environ["CURVNB_BUILD"] = str(build)   # the sweep's default folder: _build/sweeps under it
    try:
        report = run_sweep(["intro"], [*LOCAL_SEEDS, LOCAL_FAILING], ["smoke"], device="cpu", engine="local",
                           max_parallel=2, task_fn=seed_6_raises, echo=lines.append, progress_every_s=10)
    finally:
        os.environ.pop("CURVNB_BUILD") if old is None else os.environ.__setitem__("CURVNB_BUILD", old)
    return build, report, lines


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers need not import this file
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"\nray: local cluster with 2 CPUs started in {time.perf_counter() - start:.1f} s")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_local_engine_matches_the_library_and_isolates_the_failing_seed(local_sweep, library_claims):
    build, report, lines = local_sweep
    root = build / "sweeps"
    assert sorted(t.seed for t in report.ran) == LOCAL_SEEDS
    assert list(report.failed) == [Task("smoke", "intro", LOCAL_FAILING, "cpu")]
    assert sum(f"failed: intro seed {LOCAL_FAILING} (smoke)" in line for line in lines) == 2   # retried once
    assert sorted(p.name for p in build.iterdir()) == ["sweeps"]    # the main build is untouched
    for seed in LOCAL_SEEDS:
        folder = root / "smoke" / "intro" / f"seed-{seed}"
        run, records = read_claims_file(folder / "claims" / "intro.json")
        assert run["seed"] == seed and run["profile"] == "smoke" and run["device"] == "cpu"
        assert records == library_claims("intro", seed)   # the notebook in a worker = the library here
        assert (folder / "executed" / "01_intro.ipynb").stat().st_size > 1000
        assert list((folder / "cache" / "intro").glob("*.pkl")) and list((folder / "figures" / "intro").glob("*.png"))
        assert not (folder / "figures" / "intro" / "frames").exists()   # a task draws no slider frames
        meta = json.loads((folder / "task.json").read_text())
        assert meta["attempts"] == 1 and meta["cpu_seconds"] > 0.5   # the kernel's CPU time is counted
    assert not (root / "smoke" / "intro" / f"seed-{LOCAL_FAILING}").exists()
    assert "injected failure" in (root / "failed" / "smoke" / "intro" / f"seed-{LOCAL_FAILING}" / "error.txt").read_text()
    assert any(line.startswith("[sweep ") and "1/2 done" in line for line in lines)


@pytest.mark.slow
def test_rerunning_the_command_does_no_work(local_sweep, capsys, monkeypatch):
    build, _, _ = local_sweep
    stored = read_claims_file(build / "sweeps" / "smoke" / "intro" / f"seed-{LOCAL_SEEDS[0]}" / "claims" / "intro.json")[0]
    # other edits to curvnb while this module runs would (rightly) make the rerun recompute
    monkeypatch.setattr("curvnb.chapter.package_sources_sha256", lambda: stored["sources_sha256"])
    monkeypatch.setenv("CURVNB_BUILD", str(build))
    seeds = [str(s) for s in LOCAL_SEEDS]
    assert main(["sweep", "intro", "--seeds", *seeds, "--profile", "smoke", "--device", "cpu"]) == 0
    assert "1 already done, 0 to run" in capsys.readouterr().out


@pytest.mark.slow
def test_ray_engine_matches_the_library_and_retries_a_killed_worker(ray_cluster, library_claims, tmp_path):
    lines: list[str] = []
    marker = tmp_path / "killed-once"
    report = run_sweep(["intro"], RAY_SEEDS, ["smoke"], device="cpu", engine="ray", sweeps_root=tmp_path / "sweeps",
                       task_fn=functools.partial(worker_dies_once, marker=str(marker)), echo=lines.append,
                       progress_every_s=10)
    assert marker.exists() and not report.failed and sorted(t.seed for t in report.ran) == RAY_SEEDS
    assert report.retried == [Task("smoke", "intro", RAY_SEEDS[0], "cpu")]
    assert any(f"failed: intro seed {RAY_SEEDS[0]} (smoke) (attempt 1 of 2): its Ray worker died" in line
               for line in lines)
    for seed in RAY_SEEDS:
        run, records = read_claims_file(tmp_path / "sweeps" / "smoke" / "intro" / f"seed-{seed}" / "claims" / "intro.json")
        assert run["seed"] == seed and run["profile"] == "smoke"
        assert records == library_claims("intro", seed)
    page = robustness_markdown(sweep.sweep_results(tmp_path / "sweeps"))
    n_claims = len(library_claims("intro", RAY_SEEDS[0]))
    assert all(page.count(f"seed {seed}: <b") == n_claims for seed in RAY_SEEDS) and "## Smoke profile" in page
    assert "a test run, not evidence" in page    # smoke claims are never shown as evidence
