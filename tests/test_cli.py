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
