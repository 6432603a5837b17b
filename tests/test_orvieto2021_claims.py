"""orvieto2021: the claims on the verdict engine (specs declared once, units from the methods, values
kept, seed streams), exact identities, figures at the book's width, and the records of the chapter's
smoke run (statistical verdicts never asserted)."""
import dataclasses

import numpy as np
import pytest
import torch
from conftest import BOOK_GROUP, assert_distinct_seeds, assert_well_formed, checked_claims, smoke_chapter

from curvnb.claims import VERDICTS3
from curvnb.studies import orvieto2021 as study

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)

ALL = {spec.id for spec in study.SPECS}
# Deterministic claims and exact identities (no sampling enters their verdict): asserted.
EXPECTED_TO_HOLD = {"balanced-escape-gd", "balanced-escape-adam"}


@pytest.fixture(scope="module")
def tiny_results():
    cfg = study.PROFILES["smoke"]
    ch = smoke_chapter("orvieto2021")   # as the chapter computes it: its smoke run reads the same cache
    results = {}
    for piece in study.PIECES:
        results.update(ch.cached(piece))
    return cfg, results


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_units_meet_each_methods_minimum(profile):
    """Every statistic gets at least the units its interval method needs (from the config, before running)."""
    cfg = study.PROFILES[profile]
    n = study.units(cfg)
    assert set(n) == ALL
    for spec in study.SPECS:
        assert n[spec.id] >= spec.min_units(), (profile, spec.id, n[spec.id], spec.min_units())
    assert cfg.chain_units <= cfg.chain_samples and cfg.hessian_claim_depths == (8, 64)   # the errata: 64 vs 8
    assert set(study.COLLAPSE_WIDTHS) == {16, 32, 64} and 8 in cfg.relu_widths
    assert all(d in cfg.grad_depths and 2 * d in cfg.grad_depths for d in study.COLLAPSE_WIDTHS)
    for stream, count in (("grad-init", cfg.grad_seeds), ("hessian-init", cfg.hessian_seeds),
                          ("arch-init", cfg.arch_seeds), ("mlp-init", cfg.mlp_seeds),
                          ("select-init", cfg.select_seeds)):
        assert count <= study.STREAMS.streams[stream].max_index, (profile, stream)


def test_specs_declare_each_rule_once():
    assert len(ALL) == len(study.SPECS) == 18
    assert {s.id for s in study.SPECS if s.kind == "check"} == {"rescaling-adam", "rescaling-gd"}
    assert all(s.source and s.changed == f"orvieto2021-{s.id}" for s in study.SPECS)
    h = study.SPEC["hessian-vanishes"]
    assert (h.statistic, h.direction, h.threshold) == ("ratio_of_medians_paired", "less", 1e-2)


def test_seed_streams_separate_selection_from_test_and_chapter_seeds():
    roles = {name: study.STREAMS.role(name) for name in study.STREAMS.streams}
    assert {n for n, r in roles.items() if r == "selection"} == {"select-init", "select-reshuffle"}
    assert_distinct_seeds(study.STREAMS)
    # the derived seeds reach the weights: chapter seeds 0 and 1 give different nets (manual_seed would not)
    from curvnb.init_stats import seed_batched_mlp
    a, b = (seed_batched_mlp(4, 4, 3, 2, study.seed_ids(k, "mlp-init", 1)) for k in (0, 1))
    assert not torch.equal(next(a.parameters()), next(b.parameters()))


def test_claims_keep_their_values_on_a_tiny_run(tiny_results):
    cfg, res = tiny_results
    out = {r.id: r for r in study.claims(res, cfg, 0)}
    assert list(out) == [s.id for s in study.SPECS]
    n = study.units(cfg)
    for cid, r in out.items():
        assert r.verdict in VERDICTS3 and r.n_units <= n[cid], cid   # non-finite units are left out
    assert out["balanced-escape-gd"].verdict == "reproduced"   # deterministic: GD matches gradient flow
    # exact: Adam with tiny ε is scale invariant, so its median hitting steps agree to the step
    assert out["rescaling-adam"].estimate == 0
    text = study.findings_markdown([r.record("smoke") for r in out.values()])
    assert "new seeds" in text
    assert "decades per layer" in study.hessian_slope_markdown(res, cfg, 0)


def test_claim_statistics_on_known_inputs():
    """Medians that follow the theory exactly give slope error 0; spans and drop by hand."""
    from curvnb.init_stats import log_ratio_per_layer
    from curvnb.studies.orvieto2021.specs import _drop_of_medians, _span_of_medians, _worst_slope_error

    spread = np.linspace(-1, 1, 7)
    logs = [log_ratio_per_layer(d, act) / np.log(10) * L + spread
            for act, d in study.SLOPE_PARTS for L in study.SLOPE_DEPTHS]
    assert _worst_slope_error(*logs) == pytest.approx(0, abs=1e-9)
    groups = [np.full(7, v) + spread for v in (-1.0, -1.2, -0.9, -2.0, -2.5, -2.1)]
    assert _span_of_medians(*groups[:3]) == pytest.approx(0.3)
    assert _drop_of_medians(*groups) == pytest.approx(-1.0 - (-2.1))


@pytest.mark.slow
def test_smoke_run_claims(executed_chapter):
    from curvnb import book
    from curvnb.claims import read_claims_file

    records = executed_chapter("orvieto2021")
    assert_well_formed(records, "orvieto2021", specs=study.SPECS)
    claims = checked_claims(records, ALL, EXPECTED_TO_HOLD)
    n = study.units(study.PROFILES["smoke"])   # below what the claims ask: machinery, no evidence
    for spec in study.SPECS:
        assert claims[spec.id]["n_units"] <= n[spec.id], spec.id
    run, _ = read_claims_file(book.build_dir() / "claims" / "orvieto2021.json")
    assert run["chapter"] == "orvieto2021" and run["profile"] == "smoke" and run["wall_time_s"] > 0


def test_widget_view_headless():
    from curvnb.studies import orvieto2021 as study

    fig = study.draw_init(depth=8, width=4, init="xavier", activation="linear", seeds=3)
    ax_grad, ax_hess = fig.axes[:2]
    assert "gradient" in ax_grad.get_title() and "Hessian" in ax_hess.get_title()
    depths = list(ax_grad.lines[0].get_xdata())
    assert depths == [2, 4, 8] and len(ax_grad.lines) == 2  # median + theory slope


def test_fashion_mnist_path_smoke(tmp_path, monkeypatch):
    """The full profile's data path (local IDX folder) runs end to end on a tiny fake data set."""
    import gzip
    import struct

    from curvnb.studies import orvieto2021 as study

    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, arr in (("train-images-idx3-ubyte", rng.integers(0, 256, (40, 28, 28))),
                      ("train-labels-idx1-ubyte", np.arange(40) % 10),
                      ("t10k-images-idx3-ubyte", rng.integers(0, 256, (5, 28, 28))),
                      ("t10k-labels-idx1-ubyte", np.arange(5) % 10)):
        header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + b"".join(struct.pack(">I", s) for s in arr.shape)
        gzip.open(folder / (name + ".gz"), "wb").write(header + arr.astype(np.uint8).tobytes())
    monkeypatch.setenv("CURVNB_DATA", str(tmp_path))
    cfg = dataclasses.replace(study.PROFILES["full"], train_size=32, arch_examples=16)
    x, y = study.load_classification(cfg, seed=0)
    assert x.shape == (32, 784) and y.dtype == torch.long
    x_all, _ = study.load_classification(dataclasses.replace(cfg, train_size=0), seed=0)
    assert x_all.shape == (40, 784) and torch.allclose(x_all.mean(0), torch.zeros(784), atol=1e-5)
    monkeypatch.setenv("CURVNB_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="fashion-mnist"):
        study.load_classification(cfg, seed=0)
