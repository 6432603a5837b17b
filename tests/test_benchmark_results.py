"""The benchmark harness (benchmarks/results.py): round-robin timing, targets and their rendering."""
import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "results.py"


@pytest.fixture(scope="module")
def results():
    spec = importlib.util.spec_from_file_location("benchmark_results", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_round_robin_runs_every_method_once_per_round_in_shuffled_orders(results):
    calls = []
    fns = {k: (lambda k: lambda: calls.append(k))(k) for k in "abcde"}
    times = results.round_robin(fns, rounds=8, warmup=2)
    assert calls[:10] == [k for k in "abcde" for _ in range(2)]  # warm-up, in the given order
    rounds = [calls[10 + 5 * r: 15 + 5 * r] for r in range(8)]
    assert all(sorted(r) == list("abcde") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1, "the order must change between rounds"
    assert {k: len(t) for k, t in times.items()} == {k: 8 for k in "abcde"}
    # seeded: the same orders again
    calls.clear()
    results.round_robin(fns, rounds=8, warmup=2)
    assert [calls[10 + 5 * r: 15 + 5 * r] for r in range(8)] == rounds


def test_target_is_the_median_of_per_round_ratios_with_its_quartiles(results):
    a = {"times": [2.0, 3.0, 9.0, 4.0, 1.0]}
    b = {"times": [1.0, 1.0, 3.0, 4.0, 1.0]}   # per-round ratios 2, 3, 3, 1, 1
    t = results.target("a ÷ b", a, b, 2.5)
    assert t["value"] == 2.0 and t["spread"] == [1.0, 3.0] and t["threshold"] == 2.5
    own = results.target("a ÷ ref", {"times": [2.0, 4.0], "ref_times": [1.0, 1.0]}, None, 5)
    assert own["value"] == 3.0


def test_render_marks_verdicts_whose_spread_straddles_the_threshold(results):
    run = {"date": "2026-12-01T00:00:00+00:00", "torch": "2.13.0", "threads": 1, "machine": "x86_64, 2 CPUs",
           "load_average_start": [0.1], "load_average_end": [0.2], "command": "bench"}
    targets = [{"name": "clear", "value": 1.1, "spread": [1.0, 1.2], "threshold": 1.3},
               {"name": "noisy", "value": 1.28, "spread": [1.2, 1.35], "threshold": 1.3},
               {"name": "missed", "value": 1.5, "spread": [1.4, 1.6], "threshold": 1.3}]
    text = results.render({"run": run, "rows": [], "targets": targets})
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert lines["clear"].rstrip().endswith("| yes |")
    assert lines["noisy"].rstrip().endswith("| yes (within noise) |")
    assert lines["missed"].rstrip().endswith("| **no** |")
    assert "shuffled each round" in text


def test_stacked_units_summary_is_generated_from_the_measured_ratios():
    spec = importlib.util.spec_from_file_location("stacked_units", _PATH.parent / "stacked_units.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def row(label, times, ref, short="cnn"):
        return {"label": label, "times": times, "ref_times": ref, "ref": "one after another" if times is not ref else "",
                "short": short}
    seq = [1.0, 1.0, 1.0]
    rows = [row("gradient, batch 32: one unit after another", seq, seq),
            row("gradient, batch 32: all units stacked, vmap of grad", [0.5, 0.6, 0.7], seq),
            row("HVP: all units stacked, vmap of jvp of grad", [2.0, 2.5, 3.0], seq, "mlp")]
    text = module.summary(rows)
    assert text.startswith("Stacked ÷ one after another ranged from 0.60 (cnn, gradient, batch 32) "
                           "to 2.50 (mlp, HVP).")
    assert "saved 10 % or more only for: cnn, gradient, batch 32 (0.60)" in text
    rows[1]["times"] = [0.95, 0.95, 0.95]
    assert "saved less than 10 % everywhere" in module.summary(rows)
