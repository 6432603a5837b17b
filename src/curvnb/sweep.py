"""``curvnb sweep``: run chapters × seeds × profiles as independent tasks, locally or on Ray.

Each (chapter, seed, profile) is one task that executes the chapter with the book's papermill
runner (:func:`curvnb.book.run_chapters`) in a build folder of its own on the worker, and returns
that folder's artifacts — executed notebook, claims file, cache entries, figures — as bytes. The
driver writes them atomically under ``_build/sweeps/<profile>/<chapter>/seed-<n>/`` (the same
layout as ``_build/``), so no shared filesystem is assumed and the main book is never touched.

- A task whose claims file and executed notebook are already in its folder, made with the current
  curvnb sources (the claims' ``run.sources_sha256``), is not rerun: an interrupted sweep resumes.
- A task that raises, or whose worker dies, is reported with its chapter and seed and retried once;
  other tasks' results are never touched (each task writes only its own folder, by renaming).
- ``engine="local"`` uses a process pool on this machine; ``engine="ray"`` uses Ray tasks on a
  local Ray cluster or the one at ``address`` (``num_gpus`` per task: Ray assigns the GPUs).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ENGINES = ("local", "ray")
RETRIES = 1                 # every task gets one more attempt after a failure
PROGRESS_EVERY_S = 30.0     # a status line at least this often while tasks run
SKIPPED_BUILD_PARTS = ("failed", "stale", "timings.json")   # per-run bookkeeping, not artifacts


@dataclass(frozen=True, order=True)
class Task:
    """One cell of the grid: execute ``chapter`` with ``seed`` under ``profile`` on ``device``."""

    profile: str
    chapter: str
    seed: int
    device: str = "auto"

    @property
    def label(self) -> str:
        return f"{self.chapter} seed {self.seed} ({self.profile})"

    def folder(self, sweeps_root: Path) -> Path:
        return Path(sweeps_root) / self.profile / self.chapter / f"seed-{self.seed}"


@dataclass
class TaskInput:
    """What the driver ships to a worker: the task, the chapter's notebook and the book's
    ``_config.yml`` as bytes, and the cache entries of an earlier run of this task (relative
    path -> bytes; reused by the chapter where its sources are unchanged)."""

    task: Task
    notebook_name: str
    notebook: bytes
    config_yml: bytes
    cache: dict[str, bytes] = field(default_factory=dict)


@dataclass
class TaskOutput:
    """What a worker returns: the task's build folder as relative path -> bytes."""

    task: Task
    files: dict[str, bytes]
    seconds: float
    host: str = ""
    log: str = ""
    cpu_s: float = 0.0   # CPU time of the worker and the chapter's kernel (user + system)


class TaskFailed(Exception):
    """The chapter raised on the worker: ``message`` (cell and error) and the partial notebook."""

    def __init__(self, message: str, failed_notebook: bytes | None = None):
        super().__init__(message, failed_notebook)
        self.message, self.failed_notebook = message, failed_notebook

    def __str__(self) -> str:
        return self.message


class WorkerDied(RuntimeError):
    """The process running a task died (killed, out of memory) before returning."""


@dataclass
class SweepReport:
    """What a sweep did: tasks run, tasks skipped (already done), failures, timings."""

    ran: list[Task] = field(default_factory=list)
    skipped: list[Task] = field(default_factory=list)
    failed: dict[Task, str] = field(default_factory=dict)
    retried: list[Task] = field(default_factory=list)
    seconds: float = 0.0
    startup_s: float = 0.0
    cpu_s: float = 0.0


# --------------------------------------------------------------------------- the grid
def expand_grid(chapters: Sequence[str], seeds: Iterable[int], profiles: Sequence[str],
                device: str = "auto") -> list[Task]:
    """Every (profile, chapter, seed), in that order, without duplicates; seeds and profiles checked."""
    from curvnb.config import PROFILES, check_seed

    seeds = [check_seed(s) for s in seeds]
    if not seeds:
        raise ValueError("a sweep needs at least one seed")
    for p in profiles:
        if p not in PROFILES:
            raise ValueError(f"unknown profile {p!r}: allowed values are {', '.join(map(repr, PROFILES))}")
    tasks = [Task(p, c, s, device) for p in dict.fromkeys(profiles) for c in dict.fromkeys(chapters)
             for s in dict.fromkeys(seeds)]
    return tasks


def sweeps_dir() -> Path:
    """``_build/sweeps`` (follows ``$CURVNB_BUILD``)."""
    from curvnb.paths import build_dir

    return build_dir() / "sweeps"


def task_files(task: Task, folder: Path, notebook_name: str) -> tuple[Path, Path]:
    """The claims file and executed notebook that make a task's folder complete."""
    return folder / "claims" / f"{task.chapter}.json", folder / "executed" / notebook_name


def is_complete(task: Task, folder: Path, notebook_name: str, sources_sha256: str) -> bool:
    """True when ``folder`` holds this task's claims file and executed notebook, made by the
    current curvnb sources for this chapter, seed and profile (and device type, unless ``auto``)."""
    from curvnb.claims import read_claims_file

    claims, executed = task_files(task, folder, notebook_name)
    if not (claims.is_file() and executed.is_file()):
        return False
    try:
        run, _ = read_claims_file(claims)
    except (ValueError, OSError):   # damaged: rerun it
        return False
    same = (run.get("sources_sha256") == sources_sha256 and run.get("chapter") == task.chapter
            and run.get("seed") == task.seed and run.get("profile") == task.profile)
    if task.device != "auto":
        same = same and str(run.get("device", "")).split(":")[0] == task.device
    return same


def pending_tasks(tasks: Sequence[Task], sweeps_root: Path, notebook_names: dict[str, str],
                  sources_sha256: str) -> tuple[list[Task], list[Task]]:
    """``(to_run, already_done)``: tasks whose results are not yet in the sweep folder."""
    todo, done = [], []
    for t in tasks:
        complete = is_complete(t, t.folder(sweeps_root), notebook_names[t.chapter], sources_sha256)
        (done if complete else todo).append(t)
    return todo, done


# --------------------------------------------------------------------------- one task
def _read_tree(folder: Path, under: str = "") -> dict[str, bytes]:
    base = folder / under if under else folder
    if not base.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def _collect_artifacts(build: Path) -> dict[str, bytes]:
    """Every file the chapter wrote under its build folder, less per-run bookkeeping."""
    files = {}
    for rel, data in _read_tree(build).items():
        first = Path(rel).parts[0]
        if first in SKIPPED_BUILD_PARTS or rel.endswith((".running.ipynb", ".tmp")):
            continue
        files[rel] = data
    return files


@contextlib.contextmanager
def _environment(**values: str):
    """These environment variables while it lasts (the kernels a task starts inherit them); the
    previous values, or their absence, restored after."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the kernels papermill ran)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return 0.0
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def execute_chapter_task(payload: TaskInput) -> TaskOutput:
    """Run one task on this machine: lay out the chapter in a temporary project, execute it with
    :func:`curvnb.book.run_chapters` (``CURVNB_BUILD`` pointed at a temporary build folder) and
    return that folder's artifacts. Raises :class:`TaskFailed` when the chapter raises."""
    from curvnb import book
    from curvnb.paths import find_project_root
    from curvnb.widgets import STATIC_VIEWS_ENV

    task = payload.task
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    with tempfile.TemporaryDirectory(prefix=f"curvnb-{task.chapter}-seed{task.seed}-") as tmp:
        root, build = Path(tmp) / "project", Path(tmp) / "_build"
        (root / "book").mkdir(parents=True)
        (root / "book" / payload.notebook_name).write_bytes(payload.notebook)
        (root / "_config.yml").write_bytes(payload.config_yml)
        for rel, data in payload.cache.items():
            (build / rel).parent.mkdir(parents=True, exist_ok=True)
            (build / rel).write_bytes(data)
        # No static-view frames: only the book's own run is published, a sweep keeps its claims
        env = {"CURVNB_ROOT": str(root), "CURVNB_BUILD": str(build), STATIC_VIEWS_ENV: "0"}
        # Full profiles read data sets from this machine's checkout (or $CURVNB_DATA): keep that.
        local_root = find_project_root()
        if not os.environ.get("CURVNB_DATA") and local_root is not None and (local_root / "data").is_dir():
            env["CURVNB_DATA"] = str(local_root / "data")
        log = io.StringIO()
        with _environment(**env), contextlib.redirect_stdout(log):
            try:
                book.run_chapters([task.chapter], profile=task.profile, device=task.device, seed=task.seed,
                                  progress=False)
            except book.ChapterFailed as exc:
                failed = build / "failed" / payload.notebook_name
                message = re.sub(r"; details in .*$", "", str(exc))
                raise TaskFailed(message, failed.read_bytes() if failed.exists() else None) from None
        files = _collect_artifacts(build)
    return TaskOutput(task, files, time.perf_counter() - start, socket.gethostname(), log.getvalue(),
                      _cpu_seconds() - cpu_start)


def _call(fn: Callable[[TaskInput], TaskOutput], payload: TaskInput) -> TaskOutput:
    """The function every worker runs (module level, so process pools and Ray can ship it)."""
    return fn(payload)


# --------------------------------------------------------------------------- storing results
def store_output(output: TaskOutput, folder: Path, attempts: int = 1) -> None:
    """Write a task's artifacts as ``folder`` atomically: into a sibling temporary folder, then
    renamed into place (an earlier result is replaced only by a complete new one)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        for rel, data in output.files.items():
            target = (tmp / rel).resolve()
            if not target.is_relative_to(tmp.resolve()):
                raise ValueError(f"task {output.task.label} returned a file outside its folder: {rel}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        meta = {**dataclasses.asdict(output.task), "seconds": round(output.seconds, 2),
                "cpu_seconds": round(output.cpu_s, 2), "host": output.host,
                "attempts": attempts,
                "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        (tmp / "task.json").write_text(json.dumps(meta, indent=2))
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}-{time.monotonic_ns()}")
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _failure_folder(task: Task, sweeps_root: Path) -> Path:
    return Path(sweeps_root) / "failed" / task.profile / task.chapter / f"seed-{task.seed}"


def _store_failure(task: Task, sweeps_root: Path, notebook_name: str, message: str,
                   notebook: bytes | None) -> Path:
    """Keep a failed task's partial notebook and error next to (never inside) the results."""
    folder = _failure_folder(task, sweeps_root)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "error.txt").write_text(message + "\n")
    if notebook:
        (folder / notebook_name).write_bytes(notebook)
    return folder


# --------------------------------------------------------------------------- engines
class LocalEngine:
    """A process pool on this machine (a fresh process per task, so tasks share no state)."""

    name = "local"

    def __init__(self, max_parallel: int):
        self.max_parallel = max_parallel
        self.startup_s = 0.0
        self._pool = self._new_pool()
        self._pool_of: dict[Any, Any] = {}   # future -> the pool it ran in

    def _new_pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")   # no fork of a driver that imported torch
        try:
            return ProcessPoolExecutor(self.max_parallel, mp_context=context, max_tasks_per_child=1)
        except TypeError:  # Python < 3.11
            return ProcessPoolExecutor(self.max_parallel, mp_context=context)

    def submit(self, fn: Callable[[TaskInput], TaskOutput], payload: TaskInput):
        future = self._pool.submit(_call, fn, payload)
        self._pool_of[future] = self._pool
        return future

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(list(handles), timeout=timeout, return_when=FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any) -> TaskOutput:
        from concurrent.futures.process import BrokenProcessPool

        pool = self._pool_of.pop(handle, None)
        try:
            return handle.result()
        except BrokenProcessPool:
            # A worker died (killed, out of memory): the pool is unusable for every task in it.
            # Those tasks are reported and retried like any failure, in a new pool (made once
            # per broken pool, so the retries already sent to the new one are not disturbed).
            if pool is self._pool:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            raise WorkerDied("its worker process (or one beside it) died (killed or out of memory)") from None

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


def _ray_remote():
    import ray

    @ray.remote
    def curvnb_sweep_task(fn, payload):
        return _call(fn, payload)

    return curvnb_sweep_task


class RayEngine:
    """Ray tasks: a local Ray cluster (``num_cpus`` = the parallelism asked for, else all CPUs), or
    the cluster at ``address`` (e.g. ``"auto"``). Each task asks for one CPU and ``gpus_per_task``
    GPUs; Ray places it and sets ``CUDA_VISIBLE_DEVICES``. Retries are the driver's (reported)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, gpus_per_task: float = 0):
        try:
            import ray
        except ImportError:
            raise ValueError("the ray engine needs the `ray` package: .venv/bin/pip install -c requirements.txt "
                             "ray (or use --engine local)") from None
        self._ray = ray
        self.started_here = not ray.is_initialized()
        start = time.perf_counter()
        if self.started_here:
            import logging

            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise ValueError(f"cannot join the Ray cluster at {address!r}: {exc}") from None
        self.startup_s = time.perf_counter() - start
        resources = ray.cluster_resources()
        self.cpus = int(resources.get("CPU", 1))
        self.gpus = int(resources.get("GPU", 0))
        if gpus_per_task and self.gpus < gpus_per_task:
            self.close()
            raise ValueError(f"--gpus-per-task {gpus_per_task:g}: the Ray cluster has {self.gpus} GPU(s)")
        self._task = _ray_remote().options(num_cpus=1, num_gpus=gpus_per_task or 0, max_retries=0)

    def submit(self, fn: Callable[[TaskInput], TaskOutput], payload: TaskInput):
        return self._task.remote(fn, payload)

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        done, _ = self._ray.wait(list(handles), num_returns=1, timeout=timeout)
        return done

    def result(self, handle: Any) -> TaskOutput:
        from ray.exceptions import RayTaskError, WorkerCrashedError

        try:
            return self._ray.get(handle)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise RuntimeError(str(exc).strip().splitlines()[-1]) from None
        except WorkerCrashedError:
            raise WorkerDied("its Ray worker died (killed or out of memory)") from None

    def close(self, cancel: bool = False) -> None:
        if self.started_here and self._ray.is_initialized():
            self._ray.shutdown()


# --------------------------------------------------------------------------- the driver
def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, (TaskFailed, WorkerDied)):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1]}" if text else type(exc).__name__


def run_sweep(chapters: Sequence[str] | None, seeds: Iterable[int], profiles: Sequence[str] = ("quick",), *,
              device: str = "auto", engine: Any = "local", address: str | None = None,
              gpus_per_task: float = 0, max_parallel: int | None = None, sweeps_root: Path | None = None,
              task_fn: Callable[[TaskInput], TaskOutput] = execute_chapter_task,
              sources_sha256: str | None = None, retries: int = RETRIES,
              progress_every_s: float = PROGRESS_EVERY_S, echo: Callable[[str], None] | None = None) -> SweepReport:
    """Run every (chapter, seed, profile) not yet done; returns what happened.

    ``engine`` is ``"local"``, ``"ray"`` or an engine object (``submit``, ``wait``, ``result``,
    ``close``, as :class:`LocalEngine`). ``task_fn`` runs one task on a worker (default
    :func:`execute_chapter_task`; tests inject others). A failed task is retried ``retries``
    times, then listed in ``report.failed``; it never stops the other tasks."""
    from curvnb import book
    from curvnb.chapter import package_sources_sha256
    from curvnb.config import DEVICES, resolve_device
    from curvnb.paths import project_root

    echo = echo or (lambda line: print(line, flush=True))
    if isinstance(engine, str) and engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: allowed values are {', '.join(map(repr, ENGINES))}")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}: allowed values are {', '.join(map(repr, DEVICES))}")
    if max_parallel is not None and max_parallel < 1:
        raise ValueError(f"--max-parallel must be at least 1, got {max_parallel}")
    if gpus_per_task < 0:
        raise ValueError(f"--gpus-per-task must be >= 0, got {gpus_per_task:g}")
    if gpus_per_task and engine == "local":
        raise ValueError("--gpus-per-task needs --engine ray (the local engine does not place tasks on GPUs)")
    if engine == "local" or not address:   # a remote cluster may have GPUs this machine lacks
        resolve_device(device)
    selected = book.select_chapters(chapters)
    notebooks = {c.id: c.path for c in selected}
    names = {c.id: c.path.name for c in selected}
    tasks = expand_grid(list(notebooks), seeds, profiles, device)
    root = Path(sweeps_root) if sweeps_root is not None else sweeps_dir()
    sources = sources_sha256 or package_sources_sha256()
    todo, done = pending_tasks(tasks, root, names, sources)
    report = SweepReport(skipped=done)
    n_profiles = len(dict.fromkeys(t.profile for t in tasks))
    echo(f"sweep: {len(tasks)} task(s) ({len(notebooks)} chapter(s) × {len(tasks) // (len(notebooks) * n_profiles)} "
         f"seed(s) × {n_profiles} profile(s)); {len(done)} already done, {len(todo)} to run"
         + (f" on the {engine} engine" if todo else "") + f"; results in {root}")
    if not todo:
        return report

    config_yml = (project_root() / "_config.yml").read_bytes()

    def payload(task: Task) -> TaskInput:
        cache = _read_tree(task.folder(root), f"cache/{task.chapter}")
        return TaskInput(task, names[task.chapter], notebooks[task.chapter].read_bytes(), config_yml, cache)

    start = time.perf_counter()
    if not isinstance(engine, str):   # an engine object (tests): submit / wait / result / close
        runner = engine
        cap = max_parallel or 1
    elif engine == "ray":
        runner = RayEngine(address, max_parallel, gpus_per_task)
        how = (f"joined the cluster at {address}" if address and runner.started_here else
               "started a local cluster" if runner.started_here else "using the Ray instance already running")
        echo(f"ray: {how}: {runner.cpus} CPU(s), {runner.gpus} GPU(s) ({runner.startup_s:.1f} s)")
        # As many at once as the cluster has slots for (one CPU, gpus_per_task GPUs each), so that
        # "running" means running; Ray places each task where its resources are free.
        slots = runner.cpus if not gpus_per_task else min(runner.cpus, int(runner.gpus // gpus_per_task))
        cap = max_parallel or max(1, slots)
    else:
        default = 1 if device == "cuda" else max(1, (os.cpu_count() or 2) // 2)
        cap = max_parallel or default
        runner = LocalEngine(min(cap, len(todo)))
    report.startup_s = getattr(runner, "startup_s", 0.0)

    queue: deque[tuple[Task, int]] = deque((t, 1) for t in todo)
    running: dict[Any, tuple[Task, int, float]] = {}
    durations: list[float] = []
    last_status = 0.0

    def status() -> str:
        elapsed = time.perf_counter() - start
        left = len(queue) + len(running)
        eta = "?"
        if durations:   # the mean task time, less what the running tasks have already spent
            mean, now = sum(durations) / len(durations), time.perf_counter()
            work = len(queue) * mean + sum(max(0.0, mean - (now - began)) for _, _, began in running.values())
            eta = "~" + _duration(work / max(1, min(cap, left)))
        return (f"[sweep {_duration(elapsed)}] {len(report.ran)}/{len(todo)} done, {len(running)} running, "
                f"{len(report.failed)} failed, {len(queue)} queued; {eta} left")

    try:
        while queue or running:
            while queue and len(running) < cap:
                task, attempt = queue.popleft()
                running[runner.submit(task_fn, payload(task))] = (task, attempt, time.perf_counter())
                echo(f"start: {task.label}" + (f" (attempt {attempt} of {retries + 1})" if attempt > 1 else ""))
            finished = runner.wait(list(running), timeout=progress_every_s)
            for handle in finished:
                task, attempt, began = running.pop(handle)
                try:
                    output = runner.result(handle)
                    if output.task != task:
                        raise ValueError(f"worker returned the results of {output.task.label}")
                    claims, executed = task_files(task, Path(), names[task.chapter])
                    missing = [str(p) for p in (claims, executed) if str(p) not in output.files]
                    if missing:
                        raise ValueError(f"the chapter wrote no {' or '.join(missing)}")
                except Exception as exc:  # noqa: BLE001 - every failure of a task is reported, not raised
                    what = _failure_text(exc)
                    if attempt <= retries:
                        echo(f"failed: {task.label} (attempt {attempt} of {retries + 1}): {what}; retrying")
                        report.retried.append(task)
                        queue.append((task, attempt + 1))
                    else:
                        where = _store_failure(task, root, names[task.chapter], what,
                                               getattr(exc, "failed_notebook", None))
                        report.failed[task] = what
                        echo(f"failed: {task.label} (attempt {attempt} of {retries + 1}): {what}; details in {where}")
                    continue
                store_output(output, task.folder(root), attempts=attempt)
                shutil.rmtree(_failure_folder(task, root), ignore_errors=True)   # an earlier failure, now fixed
                durations.append(time.perf_counter() - began)
                report.ran.append(task)
                stored = _claims_sources(task.folder(root) / claims)
                note = "" if stored == sources else (
                    "; note: it ran with other curvnb sources than this checkout's (edited meanwhile, or another "
                    "version on the worker), so the next sweep reruns it")
                report.cpu_s += output.cpu_s
                echo(f"done: {task.label} in {_duration(output.seconds)}"
                     + (f" ({_duration(output.cpu_s)} CPU)" if output.cpu_s else "")
                     + (f" on {output.host}" if output.host else "") + note)
            if finished or time.perf_counter() - last_status >= progress_every_s:
                echo(status())
                last_status = time.perf_counter()
    except BaseException:
        runner.close(cancel=True)
        raise
    runner.close()
    report.seconds = time.perf_counter() - start
    echo(f"sweep finished in {_duration(report.seconds)}: {len(report.ran)} ran"
         + (f" ({_duration(report.cpu_s)} CPU in the tasks)" if report.cpu_s else "")
         + f", {len(report.skipped)} already done, {len(report.failed)} failed")
    return report


def _claims_sources(path: Path) -> str | None:
    from curvnb.claims import read_claims_file

    try:
        return read_claims_file(path)[0].get("sources_sha256")
    except (ValueError, OSError):
        return None


def sweep_results(sweeps_root: Path | None = None) -> list[tuple[Task, dict[str, Any], list[dict[str, Any]]]]:
    """Every stored task result: ``(task, run metadata, claim records)``, ordered by profile,
    chapter and seed (for the seed-robustness page)."""
    from curvnb.claims import read_claims_file

    root = Path(sweeps_root) if sweeps_root is not None else sweeps_dir()
    found = []
    if not root.is_dir():
        return found
    for claims in root.glob("*/*/seed-*/claims/*.json"):
        seed_dir = claims.parent.parent
        profile, chapter = seed_dir.parent.parent.name, seed_dir.parent.name
        m = re.fullmatch(r"seed-(\d+)", seed_dir.name)
        if profile == "failed" or not m or claims.stem != chapter:
            continue
        try:
            run, records = read_claims_file(claims)
        except (ValueError, OSError) as exc:
            print(f"warning: ignoring {claims}: {exc}", file=sys.stderr)
            continue
        found.append((Task(profile, chapter, int(m.group(1)), str(run.get("device", "auto"))), run, records))
    return sorted(found, key=lambda item: (item[0].profile, item[0].chapter, item[0].seed))
