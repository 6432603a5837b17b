"""The ``curvnb`` command: its checks and failures in this process (``main``), one real chapter run as a
subprocess (``python -m curvnb.cli run intro --profile smoke --seed 1``)."""
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from curvnb.cli import main


def test_list_shows_chapters_and_costs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "intro" in out and "quick:" in out and "full:" in out


def test_run_unknown_chapter_is_a_clear_error(capsys):
    assert main(["run", "no_such_chapter"]) == 2
    assert "unknown chapter(s) ['no_such_chapter']" in capsys.readouterr().err


def test_bad_profile_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "intro", "--profile", "huge"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'huge'" in err and "'quick'" in err and "'smoke'" in err


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli(*args, cwd=..., env=...)``: the ``curvnb`` command's ``main`` run in this process (no
    interpreter start-up: the console script calls the same function), its exit code and output.
    Working directory and environment, ``CURVNB_ROOT`` which ``main`` pins included, are restored
    after the test."""
    monkeypatch.setenv("CURVNB_ROOT", os.environ.get("CURVNB_ROOT", ""))

    def run(*args: str, cwd=None, env=None) -> Result:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        if env and env.get("CURVNB_ROOT"):   # a repository of the test's own: its own _build, not the tests'
            monkeypatch.delenv("CURVNB_BUILD", raising=False)
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def _clean_failure(proc, needle):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # progress bars may precede it; the failure itself is one line, the last one
    assert lines[-1].startswith("curvnb: error: ") and needle in lines[-1], proc.stderr
    assert sum(line.startswith("curvnb: error") for line in lines) == 1, proc.stderr


@pytest.fixture
def no_kernel(monkeypatch):
    """Fails the test if a notebook is executed."""
    import papermill

    def refuse(*args, **kwargs):
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(papermill, "execute_notebook", refuse)


def test_bad_seeds_rejected_before_a_kernel_starts(cli, no_kernel):
    for seed in ("-1", str(2**32), str(2**64)):
        _clean_failure(cli("run", "intro", "--seed", seed), "seed must be an integer in [0, 2**32)")


def test_cuda_without_gpu_rejected_before_a_kernel_starts(cli, no_kernel):
    import torch

    if torch.cuda.is_available():
        return
    _clean_failure(cli("run", "intro", "--device", "cuda"), "torch sees no CUDA GPU")


def test_outside_the_repository(tmp_path, cli):
    # an editable install finds its checkout from anywhere ...
    proc = cli("list", cwd=tmp_path, env={"CURVNB_ROOT": ""})
    assert proc.returncode == 0 and "huh2020" in proc.stdout
    # ... and a wrong CURVNB_ROOT says how to set it
    _clean_failure(cli("list", env={"CURVNB_ROOT": str(tmp_path)}), "set CURVNB_ROOT=")


def _one_chapter_repo(tmp_path, name: str, body: str):
    """A book repository with one chapter ``01_<name>.ipynb``: title, parameters cell, ``body``."""
    import shutil

    import nbformat

    from curvnb.paths import project_root

    root = tmp_path / "repo"
    (root / "book").mkdir(parents=True)
    shutil.copy(project_root() / "_config.yml", root / "_config.yml")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name.title()}"),
                nbformat.v4.new_code_cell("profile, device, seed = 'quick', 'auto', 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "book" / f"01_{name}.ipynb")
    return root, nb


def test_failed_chapter_is_one_message_and_marks_old_outputs_stale(tmp_path, cli):
    """A chapter that raises: exit 2, one line, no partial notebook left, the previous run flagged."""
    import json

    import nbformat

    from curvnb import book

    root, nb = _one_chapter_repo(tmp_path, "boom", "raise RuntimeError('boom at seed %d' % seed)")
    previous = root / "_build" / "executed" / "01_boom.ipynb"
    previous.parent.mkdir(parents=True)
    nbformat.write(nb, previous)                      # an older, successful run
    proc = cli("run", "boom", "--seed", "7", env={"CURVNB_ROOT": str(root)})
    _clean_failure(proc, "chapter boom failed in cell")
    assert "RuntimeError: boom at seed 7" in proc.stderr and "details in" in proc.stderr
    assert not list((root / "_build").rglob("*.running.ipynb"))
    assert (root / "_build" / "failed" / "01_boom.ipynb").exists()
    marker = json.loads((root / "_build" / "stale" / "boom.json").read_text())
    assert marker["seed"] == 7 and "boom at seed 7" in marker["error"]
    # the older run is shown with a warning, never as current
    staged = tmp_path / "staged.ipynb"
    book._stage_notebook(previous, staged, marker)
    cells = json.loads(staged.read_text())["cells"]
    assert "Stale results" in "".join(cells[1]["source"]) and "failed" in "".join(cells[1]["source"])
    assert "remove-cell" in cells[2]["metadata"]["tags"]      # the parameters cell is plumbing


def test_smoke_run_pages_say_they_are_no_evidence(tmp_path):
    """A chapter executed in the smoke profile is staged with a note under its title; others are not."""
    import json

    import nbformat

    from curvnb import book
    from curvnb.config import SMOKE_NOTE

    _, nb = _one_chapter_repo(tmp_path, "tiny", "x = 1")
    for profile in ("smoke", "quick"):
        nb.metadata["papermill"] = {"parameters": {"profile": profile, "device": "cpu", "seed": 0}}
        nbformat.write(nb, tmp_path / f"{profile}.ipynb")
        book._stage_notebook(tmp_path / f"{profile}.ipynb", tmp_path / f"staged-{profile}.ipynb")
        cells = json.loads((tmp_path / f"staged-{profile}.ipynb").read_text())["cells"]
        notes = [c for c in cells if c.get("id") == "curvnb-smoke"]
        if profile == "smoke":
            assert cells[1] is notes[0] and SMOKE_NOTE in "".join(notes[0]["source"])
            assert "a test run, not evidence" in SMOKE_NOTE
        else:
            assert not notes


def test_chapter_that_never_reports_fails_and_keeps_old_outputs_stale(tmp_path, cli):
    """A notebook that runs to its end without writing its claims (no ch.report) is a failed run:
    exit 2, one line, the previous executed notebook kept but flagged stale."""
    import json
    import os

    root, _ = _one_chapter_repo(tmp_path, "quiet", "x = 1 + 1")
    previous = root / "_build" / "executed" / "01_quiet.ipynb"
    previous.parent.mkdir(parents=True)
    previous.write_text("older run")
    old_claims = root / "_build" / "claims" / "quiet.json"
    old_claims.parent.mkdir(parents=True)
    old_claims.write_text("[]")
    os.utime(old_claims, (0, 0))                       # written long before this run
    proc = cli("run", "quiet", env={"CURVNB_ROOT": str(root)})
    _clean_failure(proc, "chapter quiet failed in its run: the notebook ended without writing _build/claims/quiet.json")
    assert previous.read_text() == "older run"          # not replaced by the incomplete run
    assert (root / "_build" / "failed" / "01_quiet.ipynb").exists()
    assert "without writing" in json.loads((root / "_build" / "stale" / "quiet.json").read_text())["error"]


@pytest.mark.slow
def test_run_executes_a_chapter_as_the_library_computes_it(tmp_path, library_claims):
    """`curvnb run intro --profile smoke --seed 1`, the ordinary command, into a build folder of its own:
    the executed notebook, figures, slider frames and claims, the claims equal to the library's."""
    from curvnb.claims import read_claims_file

    build = tmp_path / "_build"
    proc = subprocess.run([sys.executable, "-m", "curvnb.cli", "run", "intro", "--profile", "smoke", "--seed", "1",
                           "--device", "cpu"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CURVNB_BUILD": str(build)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[1/1] intro (smoke, cpu, seed 1)" in proc.stdout
    run, records = read_claims_file(build / "claims" / "intro.json")
    assert (run["chapter"], run["profile"], run["seed"], run["device"]) == ("intro", "smoke", 1, "cpu")
    assert records == library_claims("intro", 1)
    assert (build / "executed" / "01_intro.ipynb").stat().st_size > 1000
    assert list((build / "figures" / "intro").glob("*.png")) and list((build / "figures" / "intro" / "frames").rglob("*.webp"))


def test_each_execution_is_logged_and_a_repeated_run_is_found(tmp_path, monkeypatch):
    """The session guard's parts: book.run_chapters' log line, and the check that finds a repeat."""
    from conftest import repeated_executions
    from curvnb import book

    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(book.EXECUTION_LOG, str(log))
    book._log_execution("intro", "smoke", "cpu", 1)
    book._log_execution("intro", "smoke", "cpu", 2)
    assert repeated_executions(log) == {}
    book._log_execution("intro", "smoke", "cuda", 1)    # the same run on another device is still a repeat
    assert repeated_executions(log) == {("intro", "smoke", 1): 2}


def test_a_kernel_that_never_answers_gets_one_fresh_kernel(tmp_path):
    """nbclient's start timeout (no cell ran) is retried once with a fresh kernel; any other error,
    or a second timeout, is the chapter's failure."""
    from curvnb import book

    def fake(errors):
        calls = []

        def execute_notebook(*args, **kwargs):
            calls.append(kwargs["parameters"])
            if errors:
                raise errors.pop(0)
        return type("FakePapermill", (), {"execute_notebook": staticmethod(execute_notebook)}), calls

    timeout = lambda: RuntimeError("Kernel didn't respond in 60 seconds")  # noqa: E731
    pm, calls = fake([timeout()])
    book._execute(pm, Path("01_x.ipynb"), tmp_path / "out.ipynb", {"seed": 3}, tmp_path, False)
    assert calls == [{"seed": 3}, {"seed": 3}]
    pm, calls = fake([timeout(), timeout()])
    with pytest.raises(RuntimeError, match="didn't respond"):
        book._execute(pm, Path("01_x.ipynb"), tmp_path / "out.ipynb", {}, tmp_path, False)
    assert len(calls) == 2
    pm, calls = fake([RuntimeError("boom")])
    with pytest.raises(RuntimeError, match="boom"):
        book._execute(pm, Path("01_x.ipynb"), tmp_path / "out.ipynb", {}, tmp_path, False)
    assert len(calls) == 1


def test_kernels_started_at_once_get_sockets_of_their_own(tmp_path, monkeypatch):
    """jupyter_client's default IPC path is "kernel-ipc" in the working directory, shared by every
    kernel started from there: two kernels starting at once could bind the same sockets, and one
    chapter then read the other kernel's messages ("Invalid Signature", seen in make test)."""
    import os

    from curvnb.book import ipc_kernel_manager

    monkeypatch.chdir(tmp_path)
    manager = ipc_kernel_manager()
    ips = {manager(kernel_name="python3").ip for _ in range(20)}
    assert len(ips) == 20 and all(os.path.isabs(ip) for ip in ips)
    assert not any(ip.startswith(str(tmp_path)) for ip in ips)   # not in the working directory
    if os.name == "posix":
        assert manager(kernel_name="python3").transport == "ipc"
        assert all(len(f"{ip}-99") < 100 for ip in ips)           # Unix socket paths are limited to ~107 bytes
    assert manager(kernel_name="python3", transport="tcp").ip in ("127.0.0.1", "localhost")


def test_chapters_run_side_by_side_longest_first_after_their_inputs(tmp_path, monkeypatch, capsys):
    """``run_chapters(jobs=2)``: two at a time, longest path first (a chapter's longest recorded time plus
    that of the chapters waiting for it), a chapter that reads another's claims after it, kernels
    in the driver's environment; a failure stops further starts and is
    raised once the running chapter has finished, its outputs marked stale."""
    import json
    import threading

    from curvnb import book

    monkeypatch.setenv("CURVNB_BUILD", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv(book.EXECUTION_LOG, raising=False)   # fake runs: not the session's executions
    recorded = json.dumps({"longest": {"smoke": {"atlas": 50, "huh2020": 40, "buffelli2024": 1, "intro": 2}}})
    (tmp_path / "timings.json").write_text(recorded)
    names = ["intro", "huh2020", "buffelli2024", "atlas"]
    # buffelli2024 first: atlas (the longest) waits for it, so its path is 1 + 50
    assert [c.id for c in book._longest_first(book.select_chapters(names), "smoke")] == \
        ["buffelli2024", "atlas", "huh2020", "intro"]
    lock, events, fail = threading.Lock(), [], set()
    both = threading.Barrier(2, timeout=10)   # the first two chapters must be running at the same time
    released = threading.Event()

    def execute(pm, path, out, parameters, cwd, progress):
        chapter = book.CHAPTER_FILE.match(path.name)["id"]
        assert os.environ["OMP_NUM_THREADS"] == "2" and progress is False   # the kernels' environment untouched
        with lock:
            events.append(("start", chapter))
            first_two = len(events) <= 2
        if fail and chapter not in fail:
            assert released.wait(timeout=10)   # runs on until the failure beside it has been seen
        elif first_two and not fail:
            both.wait()
        with lock:
            events.append(("end", chapter))
        if chapter in fail:
            raise RuntimeError("boom")
        (tmp_path / "claims").mkdir(exist_ok=True)
        (tmp_path / "claims" / f"{chapter}.json").write_text("{}")
        Path(out).write_text("{}")

    monkeypatch.setattr(book, "_execute", execute)
    timings = book.run_chapters(names, profile="smoke", device="cpu", jobs=2, progress=True)
    assert set(timings) == set(names) and os.environ["OMP_NUM_THREADS"] == "2"
    assert {c for _, c in events[:2]} == {"buffelli2024", "huh2020"}   # atlas is not ready: huh2020 is next
    assert events.index(("start", "atlas")) > events.index(("end", "buffelli2024"))
    stored = json.loads((tmp_path / "timings.json").read_text())
    assert stored["smoke"]["intro"] == round(timings["intro"], 2)        # the last time ...
    assert stored["longest"]["smoke"] == json.loads(recorded)["longest"]["smoke"]   # ... and the longest kept

    events.clear()
    (tmp_path / "timings.json").write_text(recorded)
    fail.add("huh2020")

    def announce(*args, **kwargs):   # the runner says it starts nothing more: only then may intro end
        if "not starting" in str(args[0]):
            released.set()
        print(*args, **kwargs)
    monkeypatch.setattr(book, "print", announce, raising=False)
    with pytest.raises(book.ChapterFailed, match="chapter huh2020 failed"):
        book.run_chapters(names, profile="smoke", device="cpu", jobs=2)
    started = {c for kind, c in events if kind == "start"}
    assert started == {"buffelli2024", "huh2020"}                 # nothing started after the failure
    assert {c for kind, c in events if kind == "end"} == started  # the running one finished
    assert json.loads(book.stale_marker("huh2020").read_text())["error"].startswith("RuntimeError: boom")
    assert "not starting atlas, intro after the failure" in capsys.readouterr().out
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        book.run_chapters(names, profile="smoke", device="cpu", jobs=0)


def test_a_ctrl_c_reaches_the_kernels_of_chapters_running_in_threads():
    """Kernels run in process groups of their own (a terminal's Ctrl-C reaches only the driver):
    ``interrupt_kernels`` sends SIGINT to the group of every live kernel manager made by curvnb."""
    import signal

    from curvnb import book

    # a stand-in kernel that says when it is up (a signal that arrives while Python is still starting can
    # be lost in its start-up imports), with SIGINT's default action whatever this worker inherited
    kernel = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                              start_new_session=True, stdout=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert kernel.stdout.readline().strip() == "up"
    manager = type("FakeKernelManager", (), {})()
    manager.provisioner = type("FakeProvisioner", (), {"pgid": os.getpgid(kernel.pid)})()
    book._KERNEL_MANAGERS.add(manager)
    try:
        assert book.interrupt_kernels() >= 1
        assert kernel.wait(timeout=30) == -signal.SIGINT
    finally:
        book._KERNEL_MANAGERS.discard(manager)
        kernel.kill()
