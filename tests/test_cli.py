import subprocess
import sys

from curvnb.cli import main


def test_list_shows_chapters_and_costs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "intro" in out and "quick:" in out and "full:" in out


def test_run_unknown_chapter_is_a_clear_error(capsys):
    assert main(["run", "no_such_chapter"]) == 2
    assert "unknown chapter(s) ['no_such_chapter']" in capsys.readouterr().err


def test_bad_profile_is_rejected_by_the_parser():
    proc = subprocess.run([sys.executable, "-m", "curvnb.cli", "run", "intro", "--profile", "huge"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid choice: 'huge'" in proc.stderr and "'quick'" in proc.stderr


def _cli(*args, cwd=None, env=None):
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "curvnb.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=600)


def _clean_failure(proc, needle):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # progress bars may precede it; the failure itself is one line, the last one
    assert lines[-1].startswith("curvnb: error: ") and needle in lines[-1], proc.stderr
    assert sum(line.startswith("curvnb: error") for line in lines) == 1, proc.stderr


def test_bad_seeds_rejected_before_a_kernel_starts():
    for seed in ("-1", str(2**32), str(2**64)):
        proc = _cli("run", "intro", "--seed", seed)
        _clean_failure(proc, "seed must be an integer in [0, 2**32)")
        assert "Executing" not in proc.stderr


def test_cuda_without_gpu_rejected_before_a_kernel_starts():
    import torch

    if torch.cuda.is_available():
        return
    _clean_failure(_cli("run", "intro", "--device", "cuda"), "torch sees no CUDA GPU")


def test_outside_the_repository(tmp_path):
    # an editable install finds its checkout from anywhere ...
    proc = _cli("list", cwd=tmp_path, env={"CURVNB_ROOT": ""})
    assert proc.returncode == 0 and "huh2020" in proc.stdout
    # ... and a wrong CURVNB_ROOT says how to set it
    _clean_failure(_cli("list", env={"CURVNB_ROOT": str(tmp_path)}), "set CURVNB_ROOT=")


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


def test_failed_chapter_is_one_message_and_marks_old_outputs_stale(tmp_path):
    """A chapter that raises: exit 2, one line, no partial notebook left, the previous run flagged."""
    import json

    import nbformat

    from curvnb import book

    root, nb = _one_chapter_repo(tmp_path, "boom", "raise RuntimeError('boom at seed %d' % seed)")
    previous = root / "_build" / "executed" / "01_boom.ipynb"
    previous.parent.mkdir(parents=True)
    nbformat.write(nb, previous)                      # an older, successful run
    proc = _cli("run", "boom", "--seed", "7", env={"CURVNB_ROOT": str(root)})
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


def test_chapter_that_never_reports_fails_and_keeps_old_outputs_stale(tmp_path):
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
    proc = _cli("run", "quiet", env={"CURVNB_ROOT": str(root)})
    _clean_failure(proc, "chapter quiet failed in its run: the notebook ended without writing _build/claims/quiet.json")
    assert previous.read_text() == "older run"          # not replaced by the incomplete run
    assert (root / "_build" / "failed" / "01_quiet.ipynb").exists()
    assert "without writing" in json.loads((root / "_build" / "stale" / "quiet.json").read_text())["error"]
