"""The book pipeline: discover chapters, execute them with papermill, build the HTML.

``curvnb run`` executes ``book/NN_<id>.ipynb`` into ``_build/executed/`` (outputs live only
there; the sources stay output-free). ``curvnb build`` stages the repository layout with the
executed chapters, a scorecard generated from ``_build/claims/*.json`` and a table of contents
reduced to the pages that exist, then runs Jupyter Book on it.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from curvnb.claims import scorecard_markdown
from curvnb.config import DEVICES, PROFILES, SMOKE_NOTE
from curvnb.paths import book_dir, build_dir, project_root

CHAPTER_FILE = re.compile(r"^(?:\d+_)?(?P<id>[a-z][a-z0-9_]*)\.ipynb$")
PARAMETERS_SOURCE = (
    'profile = "quick"  # or "full": the paper-scale run, for a GPU\n'
    'device = "auto"  # "auto" (CUDA when available), "cpu" or "cuda"\n'
    "seed = 0"
)


@dataclass(frozen=True)
class ChapterFile:
    id: str
    path: Path

    @property
    def title(self) -> str:
        from importlib import import_module
        try:
            return import_module(f"curvnb.studies.{self.id}").TITLE
        except (ImportError, AttributeError):
            return self.id

    @property
    def cost(self) -> dict[str, str]:
        from importlib import import_module
        try:
            return dict(import_module(f"curvnb.studies.{self.id}").COST)
        except (ImportError, AttributeError):
            return {}


def chapters(folder: Path | None = None) -> list[ChapterFile]:
    """The chapter notebooks in ``book/``, in file-name order."""
    folder = folder or book_dir()
    found = []
    for path in sorted(folder.glob("*.ipynb")):
        m = CHAPTER_FILE.match(path.name)
        if m:
            found.append(ChapterFile(m.group("id"), path))
    return found


def select_chapters(names: Sequence[str] | None) -> list[ChapterFile]:
    available = chapters()
    if not names:
        return available
    by_id = {c.id: c for c in available}
    unknown = [n for n in names if n not in by_id]
    if unknown:
        raise ValueError(f"unknown chapter(s) {unknown}: available are {list(by_id)}")
    return [by_id[n] for n in names]


# --------------------------------------------------------------------------- notebooks
def repository_url(root: Path | None = None) -> str:
    import yaml
    cfg = yaml.safe_load(((root or project_root()) / "_config.yml").read_text())
    return cfg["repository"]["url"].rstrip("/")


def colab_install_source(url: str) -> str:
    """The first code cell of every chapter: install curvnb when it is not importable (Colab).

    It installs ``curvnb @ git+<url>``, or, when the environment variable ``CURVNB_INSTALL`` is
    set, that pip requirement instead (a fork, a pinned release, a local wheel). IPython expands
    ``{curvnb_install}`` in the ``%pip`` line. A kernel that already imports curvnb (a local
    book run) installs nothing."""
    return (
        "# On Colab or a fresh kernel, install curvnb from the book's repository. For a fork or a\n"
        "# pinned release, set CURVNB_INSTALL to a pip requirement, URL or path first.\n"
        "try:\n"
        "    import curvnb\n"
        "except ImportError:\n"
        "    import os\n"
        f'    curvnb_install = os.environ.get("CURVNB_INSTALL") or "curvnb @ git+{url}"\n'
        '    %pip install -q "{curvnb_install}"'
    )


def percent_to_notebook(text: str, url: str):
    """Build a chapter notebook from py:percent text (``# %%`` code, ``# %% [markdown]`` prose).

    The Colab install cell and the papermill ``parameters`` cell are inserted before the first
    code cell (after the title), so every chapter starts the same way."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata.update({"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                        "language_info": {"name": "python"}})
    preamble = [nbformat.v4.new_code_cell(colab_install_source(url)),
                nbformat.v4.new_code_cell(PARAMETERS_SOURCE, metadata={"tags": ["parameters"]})]
    cells = []
    chunks = re.split(r"^# %%(.*)$", text, flags=re.M)
    for header, body in zip(chunks[1::2], chunks[2::2]):
        body = body.strip("\n")
        if "[markdown]" in header:
            md = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(md))
        elif body.strip():
            if preamble:
                cells, preamble = cells + preamble, []
            cells.append(nbformat.v4.new_code_cell(body))
    cells += preamble
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i}"
    nb.cells = cells
    return nb


def notebook_has_outputs(path: Path) -> bool:
    nb = json.loads(Path(path).read_text())
    return any(c.get("outputs") or c.get("execution_count")
               for c in nb.get("cells", []) if c.get("cell_type") == "code")


# --------------------------------------------------------------------------- running
def executed_path(chapter: ChapterFile) -> Path:
    return build_dir() / "executed" / chapter.path.name


class ChapterFailed(RuntimeError):
    """A chapter's notebook raised; the message names the chapter, the error and where the details are."""


class ChapterIncomplete(RuntimeError):
    """A chapter's notebook ran to its end without writing its claims file (``ch.report`` not reached)."""


def stale_marker(chapter_id: str) -> Path:
    """Written when a run of the chapter fails: its executed notebook and claims are an older run."""
    return build_dir() / "stale" / f"{chapter_id}.json"


def stale_chapters() -> dict[str, dict]:
    """Chapter id -> the failure that made its shown outputs stale."""
    folder = build_dir() / "stale"
    return {f.stem: json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def validate_run(profile: str, device: str, seed: object) -> None:
    """Check the run's parameters before any kernel starts (clear ``ValueError`` otherwise)."""
    from curvnb.config import check_seed, resolve_device

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: allowed values are {', '.join(map(repr, PROFILES))}")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}: allowed values are {', '.join(map(repr, DEVICES))}")
    check_seed(seed)
    resolve_device(device)   # "cuda" without a GPU fails here, not inside the kernel


EXECUTION_LOG = "CURVNB_EXECUTION_LOG"


def _log_execution(chapter: str, profile: str, device: str, seed: int) -> None:
    """Append one JSON line per chapter execution to ``$CURVNB_EXECUTION_LOG`` when it is set (the
    test suite uses it to catch a (chapter, profile, seed) executed twice in one session)."""
    import os

    path = os.environ.get(EXECUTION_LOG)
    if path:
        line = json.dumps({"chapter": chapter, "profile": profile, "device": device, "seed": seed,
                           "pid": os.getpid()})
        with open(path, "a") as f:   # one short append per line: concurrent writers do not interleave
            f.write(line + "\n")


_KERNEL_MANAGERS: "weakref.WeakSet" = weakref.WeakSet()   # every kernel manager made here, while it lives


def interrupt_kernels() -> int:
    """Send SIGINT to every live kernel started by this process (each runs in a process group of its
    own, so a Ctrl-C at the terminal reaches only the driver); the number signalled. Chapters run
    in threads (``jobs > 1``) then fail at their running cell and stop, like a sequential run."""
    import signal

    sent = 0
    for km in list(_KERNEL_MANAGERS):
        pgid = getattr(getattr(km, "provisioner", None), "pgid", None)
        if pgid and hasattr(os, "killpg"):
            try:
                os.killpg(pgid, signal.SIGINT)
                sent += 1
            except OSError:   # the kernel has already gone
                pass
    return sent


def ipc_kernel_manager():
    """A kernel manager that talks to its kernel over Unix sockets where it can (POSIX), not TCP:
    kernels started at once (a sweep's workers, the tests) otherwise pick their five ports by
    binding and releasing them, and two can take the same one (``ZMQError: Address already in
    use``; the kernel never answers and the chapter fails after 60 s)."""
    import tempfile
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc" if os.name == "posix" else "tcp", config=True)

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            _KERNEL_MANAGERS.add(self)

        @default("ip")
        def _ip_default(self) -> str:
            # socket paths of its own: jupyter_client's default is "kernel-ipc" in the working directory,
            # shared by every kernel started from there, and two kernels started at once can take the same
            # sockets (the second binds over the first, whose client then reads the other kernel's
            # messages: "Invalid Signature")
            if self.transport == "ipc":
                return os.path.join(tempfile.gettempdir(), f"curvnb-kernel-{uuid.uuid4().hex[:16]}")
            return super()._ip_default()

    return IPCKernelManager


KERNEL_NOT_STARTED = "Kernel didn't respond"   # nbclient's RuntimeError when a new kernel never answers


def _execute(pm, path: Path, out: Path, parameters: dict, cwd: Path, progress: bool) -> None:
    """papermill on one notebook, with one more try on a fresh kernel when the first kernel never
    answered (nbclient's start timeout, before any cell ran: nothing was computed or written)."""
    for attempt in (1, 2):
        try:
            pm.execute_notebook(str(path), str(out), parameters=parameters, cwd=str(cwd), progress_bar=progress,
                                kernel_name="python3", log_output=False,
                                coalesce_streams=True,  # one output box per cell, not one per print
                                kernel_manager_class=ipc_kernel_manager())
            return
        except RuntimeError as exc:
            if attempt == 2 or KERNEL_NOT_STARTED not in str(exc):
                raise
            print(f"{path.name}: its kernel did not answer ({exc}); retrying once with a fresh kernel",
                  file=sys.stderr, flush=True)


#: Chapters whose run reads another chapter's claims record (that chapter runs first when both are run).
CHAPTER_INPUTS: dict[str, tuple[str, ...]] = {"atlas": ("buffelli2024",)}


def default_jobs(device: str = "auto") -> int:
    """How many chapters run at once by default: two on a CPU machine with two or more cores (the
    chapters' models are too small to fill a second core with threads; a second chapter does),
    one on a GPU (the chapters would share the one device)."""
    from curvnb.config import resolve_device

    if resolve_device(device).type != "cpu":
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


LONGEST = "longest"   # timings.json: {profile: {chapter: last seconds}, "longest": {profile: {chapter: most}}}


def _longest_first(selected: Sequence[ChapterFile], profile: str) -> list[ChapterFile]:
    """``selected`` in start order: longest path first, a chapter's path being its longest recorded time
    (``_build/timings.json``; the longest, a run that computed everything, not the last, which may have
    read every result from the cache) plus the longest path of the chapters that wait for it
    (:data:`CHAPTER_INPUTS`). Chapters never timed keep their file order, after the timed ones."""
    path = build_dir() / "timings.json"
    try:
        known = json.loads(path.read_text()).get(LONGEST, {}).get(profile, {}) if path.exists() else {}
    except ValueError:
        known = {}
    ids = {c.id for c in selected}
    waiting = {c.id: [d for d, inputs in CHAPTER_INPUTS.items() if c.id in inputs and d in ids] for c in selected}

    @functools.lru_cache(maxsize=None)
    def path_seconds(chapter: str) -> float:
        return float(known.get(chapter, 0.0)) + max((path_seconds(d) for d in waiting.get(chapter, ())), default=0.0)

    return sorted(selected, key=lambda c: -path_seconds(c.id) if c.id in known else 1.0)


def _run_one(pm, chapter: ChapterFile, label: str, profile: str, device: str, seed: int, progress: bool) -> float:
    """Execute one chapter into its ``executed_path``; its seconds. A failure raises
    :class:`ChapterFailed` (the partial notebook goes to ``_build/failed/``, older outputs go stale)."""
    root = project_root()
    out = executed_path(chapter)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"{label} {chapter.id} ({profile}, {device}, seed {seed}) ...", flush=True)
    start, started_at = time.perf_counter(), time.time()
    tmp = out.with_suffix(".running.ipynb")
    _log_execution(chapter.id, profile, device, seed)
    try:
        _execute(pm, chapter.path, tmp, {"profile": profile, "device": device, "seed": seed}, root, progress)
        # A run that ends without its claims (a kernel that quit, a notebook without ch.report)
        # has not produced the chapter: it fails like a raising cell, and older outputs go stale.
        claims = build_dir() / "claims" / f"{chapter.id}.json"
        if not claims.exists() or claims.stat().st_mtime < started_at - 1.0:
            raise ChapterIncomplete(f"the notebook ended without writing {claims.relative_to(build_dir().parent)} "
                                    "(its ch.report(...) cell was not reached)")
    except BaseException as exc:
        failed = build_dir() / "failed" / chapter.path.name
        failed.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            tmp.replace(failed)
        if isinstance(exc, pm.PapermillExecutionError):
            what = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        elif isinstance(exc, ChapterIncomplete):
            what = f"its run: {exc}"
        else:
            what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        marker = stale_marker(chapter.id)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"profile": profile, "device": device, "seed": seed, "error": what,
                                      "details": str(failed) if failed.exists() else None}))
        if not isinstance(exc, Exception):   # KeyboardInterrupt, SystemExit: stop as asked
            raise
        details = f"; details in {failed}" if failed.exists() else ""
        raise ChapterFailed(f"chapter {chapter.id} failed in {what}{details}") from None
    tmp.replace(out)
    stale_marker(chapter.id).unlink(missing_ok=True)
    return time.perf_counter() - start


def run_chapters(names: Sequence[str] | None = None, *, profile: str = "quick", device: str = "auto",
                 seed: int = 0, progress: bool = True, jobs: int | None = None) -> dict[str, float]:
    """Execute chapters with papermill, ``jobs`` at a time (default :func:`default_jobs`); returns
    seconds per chapter.

    With ``jobs > 1`` the chapters on the longest path start first (:func:`_longest_first`) and a
    chapter that reads another's claims (:data:`CHAPTER_INPUTS`) starts after it.
    A failure raises :class:`ChapterFailed` once the chapters already running have finished; no
    further chapter starts. The partial notebook is moved to ``_build/failed/`` (for the details)
    and the chapter's previous outputs are marked stale (:func:`stale_chapters`; ``curvnb build``
    flags them) until a run of it succeeds."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    import papermill as pm

    validate_run(profile, device, seed)
    selected = select_chapters(names)
    jobs = default_jobs(device) if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    jobs = min(jobs, len(selected)) or 1
    order = selected if jobs == 1 else _longest_first(selected, profile)
    ids = {c.id for c in selected}
    timings: dict[str, float] = {}
    total_start = time.perf_counter()
    number = {c.id: i for i, c in enumerate(selected, 1)}
    pending, running, failure = list(order), {}, None
    # The kernels keep this process's environment, whatever ``jobs``: a thread setting such as
    # OMP_NUM_THREADS=1 changes the float rounding of some runs (atlas's reversible nets differed by up
    # to 1e-6 in a step, then by the chaos of training), and a chapter run beside another must compute
    # what it computes alone. The chapters' compute already runs single-threaded where it matters.
    with ThreadPoolExecutor(jobs) as pool:
        try:
            while pending or running:
                while failure is None and len(running) < jobs:
                    ready = [c for c in pending
                             if all(d in timings or d not in ids for d in CHAPTER_INPUTS.get(c.id, ()))]
                    if not ready:
                        break
                    chapter = ready[0]
                    pending.remove(chapter)
                    label = f"[{number[chapter.id]}/{len(selected)}]"
                    running[pool.submit(_run_one, pm, chapter, label, profile, device, seed,
                                        progress and jobs == 1)] = (chapter, label)
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    chapter, label = running.pop(future)
                    try:
                        timings[chapter.id] = future.result()
                    except ChapterFailed as exc:
                        failure = failure or exc
                        continue
                    print(f"{label} {chapter.id} done in {timings[chapter.id]:.1f} s "
                          f"(elapsed {time.perf_counter() - total_start:.1f} s)", flush=True)
                if failure is not None and pending:
                    print(f"not starting {', '.join(c.id for c in pending)} after the failure", flush=True)
                    pending = []
        except BaseException:   # Ctrl-C reaches only this process: stop the chapters running in threads too
            interrupt_kernels()
            raise
    _record_timings(timings, profile)
    if failure is not None:
        raise failure
    print(f"ran {len(selected)} chapter(s) in {time.perf_counter() - total_start:.1f} s"
          + (f", {jobs} at a time" if jobs > 1 else ""), flush=True)
    return timings


def _record_timings(timings: dict[str, float], profile: str) -> None:
    path = build_dir() / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(profile, {}).update({k: round(v, 2) for k, v in timings.items()})
    most = data.setdefault(LONGEST, {}).setdefault(profile, {})
    most.update({k: round(max(v, most.get(k, 0.0)), 2) for k, v in timings.items()})
    path.write_text(json.dumps(data, indent=2))


# --------------------------------------------------------------------------- building
def _filtered_toc(toc: dict, exists) -> dict:
    def keep(entries: Iterable[dict]) -> list[dict]:
        return [e for e in entries if exists(e["file"])]

    out = dict(toc)
    if "parts" in toc:
        parts = []
        for part in toc["parts"]:
            chapters_ = keep(part.get("chapters", []))
            if chapters_:
                parts.append({**part, "chapters": chapters_})
        out["parts"] = parts
    if "chapters" in toc:
        out["chapters"] = keep(toc["chapters"])
    return out


PLUMBING_TAGS = ("parameters", "injected-parameters")


def _is_plumbing(cell: dict) -> bool:
    """The Colab install cell and the papermill parameters cells: needed in the notebook, noise in
    the HTML (the chapter's first output states the profile, seed and device the run used)."""
    tags = cell.get("metadata", {}).get("tags", [])
    source = "".join(cell.get("source", []))
    return cell.get("cell_type") == "code" and (
        any(t in tags for t in PLUMBING_TAGS) or source.startswith("# On Colab or a fresh kernel"))


def stale_warning(failure: dict) -> str:
    """What a stale page and the scorecard say: the latest run failed, this is an older one."""
    return (f"The latest run of this chapter (profile {failure.get('profile')}, seed {failure.get('seed')}, "
            f"device {failure.get('device')}) failed ({failure.get('error')}). What follows, and its "
            "claims on the scorecard, come from an earlier run.")


def executed_profile(nb: dict) -> str | None:
    """The profile an executed notebook ran with (papermill records its parameters), else ``None``."""
    return nb.get("metadata", {}).get("papermill", {}).get("parameters", {}).get("profile")


def _stage_notebook(src: Path, dst: Path, failure: dict | None = None) -> None:
    """Copy an executed chapter for the HTML build, removing its plumbing cells (tag ``remove-cell``),
    opening it with a note when it ran in the smoke profile (a test run, never evidence) and with a
    warning when its latest run failed (the page shows an older run)."""
    nb = json.loads(src.read_text())
    # The ipywidgets state would make the page load the widget manager from a CDN; the book's
    # slider views are the precomputed ones, which need neither a kernel nor the network.
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb["cells"]:   # slider views: the precomputed HTML view, not the kernel-bound one
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("metadata", {}).get("curvnb") == "live-only":
                continue
            data = out.get("data", {})
            if "text/html" in data and "application/vnd.jupyter.widget-view+json" in data:
                del data["application/vnd.jupyter.widget-view+json"]
            outputs.append(out)
        if "outputs" in cell:
            cell["outputs"] = outputs
    if failure is not None:
        warning = {"cell_type": "markdown", "metadata": {}, "id": "curvnb-stale",
                   "source": f":::{{warning}}\n**Stale results.** {stale_warning(failure)}\n:::"}
        nb["cells"].insert(1, warning)
    if executed_profile(nb) == "smoke":
        note = {"cell_type": "markdown", "metadata": {}, "id": "curvnb-smoke",
                "source": f":::{{note}}\n{SMOKE_NOTE}\n:::"}
        nb["cells"].insert(1, note)
    for cell in nb["cells"]:
        if _is_plumbing(cell):
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            if "remove-cell" not in tags:
                tags.append("remove-cell")
    dst.write_text(json.dumps(nb))


MATHJAX_SCRIPT = "tex-mml-chtml.js"   # what Sphinx loads by default, from a CDN


def vendor_mathjax(extra: Path) -> str | None:
    """Copy MathJax 3 (from the pinned ``django-static-mathjax`` wheel) into ``extra/mathjax`` so the
    book typesets its math offline; returns the script path for Sphinx's ``mathjax_path`` (relative to
    ``_static``), or ``None`` (then Sphinx's CDN default stays) when the package is not installed.

    ``extra`` becomes an ``html_extra_path`` (copied to the site root as is): under ``_static``
    Jupyter Book would add every one of MathJax's component files as a ``<script>`` tag."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(spec.submodule_search_locations[0]) / "static" / "mathjax" / "es5"
    if not (source / MATHJAX_SCRIPT).exists():
        return None
    # The speech-rule engine, SVG output and "full" bundles are never loaded by the CHTML script.
    shutil.copytree(source, extra / "mathjax", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("sre", "*svg*", "*-full*", "node-main.js"))
    return f"../mathjax/{MATHJAX_SCRIPT}"


def copy_frames(target: Path) -> None:
    """Copy every chapter's slider frames (``_build/figures/<id>/frames/<view>/``) to ``target/<id>/<view>/``:
    the static book's slider views load them by relative URL (``../frames/<id>/<view>/NNNN.webp``)."""
    for chapter in chapters():
        frames = build_dir() / "figures" / chapter.id / "frames"
        if frames.is_dir():
            shutil.copytree(frames, target / chapter.id, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("manifest.json"))


def sweep_and_book_results(titles: dict[str, str]) -> list:
    """Every stored sweep run (``_build/sweeps``) plus the book's own runs as chapter seed 0 of a
    swept profile (:func:`curvnb.robustness.with_book_runs`): what the robustness page and the
    scorecard's pooled verdicts read."""
    from curvnb.claims import read_claims_file
    from curvnb.robustness import with_book_runs
    from curvnb.sweep import Task, sweep_results

    book_runs = []
    for cid in titles:
        path = build_dir() / "claims" / f"{cid}.json"
        if path.exists():
            run, records = read_claims_file(path)
            if run.get("seed", 0) == 0 and run.get("profile"):
                book_runs.append((Task(run["profile"], cid, 0, str(run.get("device", "auto"))), run, records))
    return with_book_runs(sweep_results(), book_runs)


def stage_seed_robustness(stage: Path, titles: dict[str, str], pages: dict[str, str],
                          results: list | None = None, pooled: dict | None = None) -> None:
    """Write the seed-robustness appendix page (``book/seed_robustness.md``, from every claims file
    under ``_build/sweeps/`` and the book's own runs) into the staged book, and link it from the
    staged scorecard."""
    from curvnb.robustness import PAGE, TITLE, robustness_markdown

    staged = {cid: page for cid, page in pages.items() if (stage / "book" / f"{page}.ipynb").exists()}
    results = sweep_and_book_results(titles) if results is None else results
    (stage / "book" / f"{PAGE}.md").write_text(robustness_markdown(results, titles, staged, pooled))
    scorecard = stage / "book" / "scorecard.md"
    if scorecard.exists():   # after its opening paragraph
        parts = scorecard.read_text().split("\n\n")
        link = (f"How each claim fares over other seeds (`curvnb sweep`) is on the [{TITLE.lower()}]({PAGE}.md) "
                "page.")
        scorecard.write_text("\n\n".join(parts[:2] + [link] + parts[2:]))


def stage_book() -> Path:
    """Lay out ``_build/site`` as the repository would look with every chapter executed."""
    import yaml

    root, build = project_root(), build_dir()
    stage = build / "site"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "book").mkdir(parents=True)
    for name in ("_config.yml", "references.bib"):
        src = root / name if (root / name).exists() else root / "book" / name
        if src.exists():
            shutil.copy2(src, stage / ("book" if src.parent.name == "book" else "") / name)
    for path in (root / "book").iterdir():
        if path.suffix != ".ipynb" and path.is_file():
            shutil.copy2(path, stage / "book" / path.name)
    if (root / "book" / "_static").is_dir():   # the book's CSS: Jupyter Book adds _static/*.css beside _config.yml
        shutil.copytree(root / "book" / "_static", stage / "_static")
    if (root / "benchmarks").is_dir():
        shutil.copytree(root / "benchmarks", stage / "benchmarks",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    stale = stale_chapters()
    for chapter in chapters():
        done = executed_path(chapter)
        if done.exists():
            _stage_notebook(done, stage / "book" / chapter.path.name, stale.get(chapter.id))
        if chapter.id in stale:
            print(f"warning: {chapter.id}: {stale_warning(stale[chapter.id])}", flush=True)
    copy_frames(stage / "_frames" / "frames")
    mathjax = vendor_mathjax(stage / "_mathjax")
    extra = [name for name in ("_mathjax", "_frames") if (stage / name).exists()]
    if (mathjax is not None or extra) and (stage / "_config.yml").exists():
        config = yaml.safe_load((stage / "_config.yml").read_text())
        sphinx = config.setdefault("sphinx", {}).setdefault("config", {})
        if mathjax is not None:
            sphinx["mathjax_path"] = mathjax
        sphinx["html_extra_path"] = [*sphinx.get("html_extra_path", []), *extra]
        (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    titles = {c.id: c.title for c in chapters()}
    pages = {c.id: c.path.stem for c in chapters()}
    notes = {name: stale_warning(failure) for name, failure in stale.items()}
    from curvnb.robustness import pooled_verdicts

    results = sweep_and_book_results(titles)
    pooled = pooled_verdicts(results)   # one pooled decision per claim, for the scorecard and the page
    (stage / "book" / "scorecard.md").write_text(scorecard_markdown(build / "claims", titles, pages, notes, pooled))
    stage_seed_robustness(stage, titles, pages, results, pooled)
    toc = yaml.safe_load((root / "_toc.yml").read_text())

    def exists(stem: str) -> bool:
        return any((stage / f"{stem}{ext}").exists() for ext in (".ipynb", ".md"))

    if not exists(toc["root"]):
        raise FileNotFoundError(f"the book's root page {toc['root']} has not been executed: run `curvnb run` first")
    (stage / "_toc.yml").write_text(yaml.safe_dump(_filtered_toc(toc, exists), sort_keys=False))
    return stage


def build_book(strict: bool = False) -> Path:
    """Build the HTML book; returns the path of ``index.html``."""
    stage = stage_book()
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(stage), "--path-output", str(build_dir() / "book")]
    if strict:
        cmd.append("-W")
    start = time.perf_counter()
    print("building the HTML book ...", flush=True)
    subprocess.run(cmd, check=True)
    index = build_dir() / "book" / "_build" / "html" / "index.html"
    print(f"built in {time.perf_counter() - start:.1f} s: {index}", flush=True)
    return index


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m curvnb.book percent SRC.py OUT.ipynb``: make a chapter notebook from py:percent text."""
    import nbformat

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3 or args[0] != "percent":
        raise SystemExit("usage: python -m curvnb.book percent SRC.py OUT.ipynb")
    nb = percent_to_notebook(Path(args[1]).read_text(), repository_url())
    nbformat.write(nb, args[2])


if __name__ == "__main__":
    main()
