"""Break-even study: a tiny end-to-end run of the study module over two seeds (fast), the measurement
functions on known inputs, the CIFAR-10 full-profile data path on a tiny file written here, and the
claims of the chapter's smoke run (slow).

The claims are statistics over seeds: the tests assert how they are computed (seeds, intervals, kinds,
sources), never whether they pass — that depends on sampling, their values shift with torch's thread
count, and a smoke run is no evidence."""
from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from conftest import BOOK_GROUP, OUTSIDE_BOOK, assert_well_formed, checked_claims, saved_figures, smoke_chapter
from curvnb.figures import CONTENT_WIDTH_IN
from curvnb.studies import jastrzebski2020 as study

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)

matplotlib.use("Agg")

ALL_IDS = {spec.id for spec in study.SPECS} - {"10-batchnorm-small-lr"}   # the BN sweep: full profile only
KINDS = {spec.id: spec.kind for spec in study.SPECS}
TINY = study.PROFILES["smoke"]

NOTEBOOK = Path(__file__).resolve().parents[1] / "book" / "05_jastrzebski2020.ipynb"


@pytest.fixture(scope="module")
def tiny_results():
    ch = smoke_chapter("jastrzebski2020")   # as the chapter computes it: its smoke run reads the same cache
    return study.combine([ch.cached(study.run_seed, key="seed", replicate=i) for i in range(TINY.seeds)])


def test_tiny_run_layout_and_measurements(tiny_results):
    assert tiny_results["units"] == [0, 1] and tiny_results["seed"] == 0 and len(tiny_results["replicates"]) == 2
    runs = tiny_results["runs"]
    assert runs is tiny_results["replicates"][0]["runs"]
    assert list(runs) == ["η=0.05, S=32", "η=0.2, S=32", "η=0.1, S=16", "η=0.1, S=64"]
    r = runs["η=0.05, S=32"]
    steps_per_epoch = 480 // 32
    assert r["step"][-1] == 2 * steps_per_epoch and r["epoch"][-1] == 2.0
    assert runs["η=0.1, S=64"]["epoch"][-1] == 3.0  # the batch_epochs override
    n = len(r["step"])
    for key in ("lambda_h", "lambda_k", "trace_k", "lambda_k_star", "lambda_k_star_rel", "loss", "accuracy",
                "test_accuracy_probe"):
        assert r[key].shape == (n,), key
        assert np.all(np.isfinite(r[key])), key
    # Tr K is the whole spectrum's sum: at least λ_K¹; λ_K^* ≤ the relative-cutoff λ_K^* ≤ λ_K¹
    assert np.all(r["trace_k"] >= r["lambda_k"])
    assert np.all(r["lambda_k_star"] <= r["lambda_k_star_rel"]) and np.all(r["lambda_k_star_rel"] <= r["lambda_k"])
    assert np.all(r["lambda_k_star_rel"] > TINY.cov_cutoff * r["lambda_k"])
    assert np.all(r["lambda_h"] > 0)
    # the batch-size runs compute K in float32: λ_K¹ and Tr K only (λ_K^* is not measured there)
    b = runs["η=0.1, S=16"]
    assert np.all(np.isfinite(b["trace_k"])) and np.all(np.isnan(b["lambda_k_star_rel"]))
    # α*: probed on the first seed within the first alpha_epochs only, never on the others
    assert np.any(np.isfinite(r["alpha_star"][r["epoch"] <= TINY.alpha_epochs]))
    assert np.all(np.isnan(r["alpha_star"][r["epoch"] > TINY.alpha_epochs]))
    assert np.all(np.isnan(tiny_results["replicates"][1]["runs"]["η=0.05, S=32"]["alpha_star"]))
    # same initialisation for every run of a unit: identical step-0 probes; another unit differs
    for other in runs.values():
        assert other["lambda_h"][0] == pytest.approx(r["lambda_h"][0], rel=1e-6)
        assert other["trace_k"][0] == pytest.approx(r["trace_k"][0], rel=1e-5)  # float32 or float64 K
    assert tiny_results["replicates"][1]["runs"]["η=0.05, S=32"]["trace_k"][0] != pytest.approx(r["trace_k"][0])
    eos = tiny_results["eos"]
    assert list(eos["step"]) == [0, 5, 10, 15, 20] and len(eos["step_loss"]) == 20 and eos["loss_name"] == "mse"


def test_claims_are_engine_records_with_their_units(tiny_results):
    results = study.claims(tiny_results, TINY)
    records = [r.record("smoke") for r in results]
    assert {r["id"] for r in records} == ALL_IDS and len(records) == len(ALL_IDS)
    for spec_result, r in zip(results, records):
        cid = r["id"]
        assert r["rule"] == "engine" and r["kind"] == KINDS[cid], cid
        assert r["verdict"] in ("reproduced", "not reproduced", "inconclusive"), cid
        assert r["passed"] == (r["verdict"] == "reproduced"), cid
        if r["method"] == "deterministic":
            assert r["verdict"] != "inconclusive", cid
            continue
        values = r["values"]
        kept = values["x"] if "x" in values else values["a"]
        assert r["n_units"] == len(kept) <= TINY.seeds, cid   # one value per seed, kept in the record
        if r["n_units"] < spec_result.spec.min_units():   # too few units: inconclusive by construction
            assert r["verdict"] == "inconclusive" and r["interval"] is None and r["reason"], cid
    by_id = {r["id"]: r for r in records}
    # claim 1's values are the per-seed smoothed maxima at the smallest and largest η, paired by seed
    lo, hi = TINY.lrs[0], TINY.lrs[-1]
    reps = tiny_results["replicates"]
    expected = [[study.smoothed_max(rep["runs"][f"η={lr:g}, S={TINY.batch_size}"]["lambda_h"]) for rep in reps]
                for lr in (lo, hi)]
    assert by_id["1-max-lambda-H-decreases-with-lr"]["values"]["a"] == pytest.approx(expected[0])
    assert by_id["1-max-lambda-H-decreases-with-lr"]["values"]["b"] == pytest.approx(expected[1])
    assert by_id["1-max-lambda-H-decreases-with-lr"]["estimate"] == pytest.approx(
        np.median(np.array(expected[0]) / np.array(expected[1])))
    # claim 7 is a finding: one 0/1 per seed, the window test of that seed's GD run
    holds = [float(study.eos_window(rep["eos"])["holds"]) for rep in reps]
    assert by_id["7-edge-of-stability"]["values"]["x"] == holds
    assert by_id["7-edge-of-stability"]["statistic"] == "proportion"
    assert by_id["7-edge-of-stability"]["method"] == "clopper-pearson"


def test_units_reach_each_method_minimum_in_quick_and_full():
    """Decided from the configuration (before any run): every statistic gets at least the units its
    interval method needs for a decision in the quick and full profiles."""
    for profile in ("quick", "full"):
        config = study.PROFILES[profile]
        for spec in study.SPECS:
            assert config.seeds >= spec.min_units(), (profile, spec.id, config.seeds, spec.min_units())


def test_seed_streams_are_disjoint_across_chapter_seeds_and_units():
    streams = study.STREAMS.streams
    assert all(s.role == "test" for s in streams.values())   # no rate selection in this chapter
    quick = study.PROFILES["quick"]
    seen = {}
    for k in range(200):
        for name in streams:
            if name == "bootstrap":
                continue
            for r in range(quick.seeds):
                seed = study.STREAMS.seed(k, name, r)
                assert seed not in seen, (k, name, r, seen.get(seed))
                seen[seed] = (k, name, r)
    # the library's seeded calls (batch order, Lanczos start) take the derived 64-bit seeds as they are:
    # their draws differ across chapter seeds although the seeds' low 32 bits (all torch's manual_seed
    # keeps) are the same for every chapter seed
    from curvnb.seeds import cpu_generator
    for name in ("batches", "lanczos"):
        draws = {tuple(torch.randperm(4000, generator=cpu_generator(study.STREAMS.seed(k, name, r)))[:6].tolist())
                 for k in range(200) for r in range(quick.seeds)}
        assert len(draws) == 200 * quick.seeds, name
    # two chapter seeds never share a run: unit 0 of chapter seeds 0 and 1 start from different weights
    x = torch.zeros(2, 1, 40)
    weights = []
    for k in (0, 1):
        from curvnb.seeds import seed_torch
        seed_torch(study.STREAMS.seed(k, "init", 0))
        weights.append(torch.cat([p.detach().flatten() for p in study.make_model(TINY, x).parameters()]))
    assert not torch.equal(*weights)


def test_generated_conclusions_follow_the_records(tiny_results):
    records = [r.record("smoke") for r in study.claims(tiny_results, TINY)]
    for v, word in (("reproduced", "reproduced"), ("not reproduced", "not reproduced"), ("inconclusive", "inconclusive")):
        flipped = [dict(r, verdict=v, passed=v == "reproduced") for r in records]
        text = study.claims_markdown(flipped, ["9-test-accuracy", "7-edge-of-stability"])
        assert f"*{word}*" in text and ({"reproduced": "*yes*", "not reproduced": "*no*"}.get(v, f"*{v}*") in text)
        assert study.why(flipped[[r["id"] for r in flipped].index("9-test-accuracy")]) == \
            study.report._WHY["9-test-accuracy"][("reproduced", "not reproduced", "inconclusive").index(v)]
    summary = study.summary_markdown(records)
    assert "changed in this version" in summary and "new seeds" in summary


def test_chapter_prose_states_no_verdict_by_hand():
    """Verdicts in the chapter come from the records (claims_markdown, summary_markdown, the claims table)."""
    nb = json.loads(NOTEBOOK.read_text())
    prose = " ".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown").lower()
    for phrase in ("reproduces", "not reproduced", "does not reproduce", "fails in", "holds in the quick",
                   "generalise better", "brief", "cross-check"):
        assert phrase not in prose, phrase
    code = " ".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "study.summary_markdown(records)" in code and "ch.report(verdicts)" in code
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")


def test_every_panel_labelled_and_the_widget(tiny_results):
    figures = saved_figures("jastrzebski2020")   # as the smoke execution saved them (width, text: test_book)
    assert set(figures) == {"sharpness", "plane", "covariance", "edge_of_stability", "overshoot", "accuracy"}
    assert all(f["axes"] and not f["axes_without_xlabel"] and not f["axes_without_ylabel"] for f in figures.values())
    view = study.widget_view(tiny_results)
    fig = view.render(run="η=0.1, S=64", quantity="Tr K and conditioning")
    assert "S=64" in fig.axes[0].get_title() and fig.get_size_inches()[0] <= CONTENT_WIDTH_IN + 1e-9
    plt.close(fig)
    with pytest.raises(ValueError, match="cached runs"):
        study.draw_run(tiny_results, run="η=9, S=1")
    with pytest.raises(ValueError, match="quantity"):
        study.draw_run(tiny_results, quantity="nope")


def test_covariance_probe_matches_dense_covariance():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 3)).double()
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    loss_fn = torch.nn.CrossEntropyLoss()
    cutoff = 1e-2
    out = study.covariance_probe(loss_fn, (x, y), cutoff=cutoff)(model)
    grads = []
    for i in range(6):
        model.zero_grad()
        loss_fn(model(x[i:i + 1]), y[i:i + 1]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    G = torch.stack(grads)
    Gc = G - G.mean(0)
    K = Gc.T @ Gc / 6
    ev = torch.linalg.eigvalsh(K).flip(0)
    assert out["lambda_1"] == pytest.approx(float(ev[0]), rel=1e-10)
    assert out["trace"] == pytest.approx(float(torch.trace(K)), rel=1e-10)
    assert out["lambda_star"] == pytest.approx(float(ev[4]), rel=1e-6, abs=1e-14)  # rank ≤ N − 1 = 5
    above = ev[ev > cutoff * ev[0]]
    assert out["rank_rel"] == len(above) and out["lambda_star_rel"] == pytest.approx(float(above[-1]), rel=1e-8)


def test_half_squared_error_is_half_the_summed_squares():
    out = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.0, 1.0]])
    y = torch.tensor([2, 0])
    onehot = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    expected = 0.5 * ((out - onehot) ** 2).sum(1).mean()
    assert float(study.HalfSquaredError()(out, y)) == pytest.approx(float(expected))
    assert study.eos_loss_fn(TINY).reduction == "mean"
    with pytest.raises(ValueError, match="allowed values"):
        study.eos_loss_fn(dataclasses.replace(TINY, eos_loss="hinge"))


def test_smoothed_maxima_and_break_even_index():
    spike = np.array([1.0, 2.0, 30.0, 2.0, 1.0, 9.0, 9.0, 9.0])
    assert study.smoothed_max(spike) == pytest.approx(11.333333, rel=1e-6)  # a spike lifts a running mean
    assert study.running_median_max(spike, 5) == pytest.approx(9.0)          # not a running median
    assert study.running_median_max(np.array([3.0, 1.0]), 5) == pytest.approx(2.0)
    assert study.break_even_index({"lambda_h": np.array([1.0, 2.0, 5.0, 6.0, 5.0, 3.0])}) == 3
    run = {"test_accuracy_probe": np.array([0.1, 0.5, 0.6, 0.7, 0.2])}
    assert study.final_test_accuracy(run) == pytest.approx(0.5)


def _eos(lam, loss, lr=0.1):
    return {"lambda_h": np.asarray(lam, float), "loss": np.asarray(loss, float), "lr": lr,
            "step": np.arange(len(lam)) * 10}


def test_eos_window_rule():
    # sharpening to 2/η = 20, then hovering just above it while the loss falls slowly: holds
    w = study.eos_window(_eos([10, 15, 20.5, 21, 22, 20, 21.5, 21], [1.0, 0.9, 0.8, 0.7, 0.75, 0.6, 0.5, 0.45]))
    assert w["holds"] and w["step reached"] == 20 and w["window probes"] == 6
    assert w["fraction in band"] == 1.0 and w["median ratio"] == pytest.approx(np.median([20.5, 21, 22, 20, 21.5, 21]) / 20)
    # the window ends before the loss first falls below 10 % of its value at reach
    w = study.eos_window(_eos([10, 21, 21, 21, 5, 5], [1.0, 1.0, 0.5, 0.2, 0.05, 0.01]))
    assert w["window end step"] == 30 and w["window probes"] == 3 and w["holds"]
    # precondition: λ_H¹ at initialisation above 0.8·2/η
    assert not study.eos_window(_eos([17, 21, 21, 21], [1.0, 0.9, 0.8, 0.7]))["holds"]
    # overshooting far above 2/η fails the band; never reaching 2/η fails
    assert not study.eos_window(_eos([10, 20, 30, 35, 30], [1.0, 0.9, 0.8, 0.7, 0.6]))["holds"]
    never = study.eos_window(_eos([10, 12, 14], [1.0, 0.9, 0.8]))
    assert not never["holds"] and never["step reached"] is None
    # the loss must have decreased over the window
    assert not study.eos_window(_eos([10, 20, 21, 20, 21], [1.0, 0.5, 0.6, 0.7, 0.8]))["holds"]


def test_bad_config_values_raise():
    with pytest.raises(ValueError, match="allowed values"):
        study.load_data(dataclasses.replace(TINY, dataset="imagenet"), torch.device("cpu"))
    with pytest.raises(ValueError, match="allowed values"):
        study.make_model(dataclasses.replace(TINY, model="vit"), torch.zeros(2, 40))
    with pytest.raises(ValueError, match="at least one unit"):
        study.combine([])


def test_quick_profile_budget_knobs():
    """The restated claims' preconditions are in the quick profile: S = 128 trained ≥ 45 epochs, probed
    at least once per epoch (claim 5's 5-point running median), the edge-of-stability setting."""
    quick = study.PROFILES["quick"]
    assert study.epochs_for(quick, 128) >= 45 and study.epochs_for(quick, 16) == quick.epochs
    assert study.probes_for(quick, 128) >= 1 and study.probes_for(quick, 32) == quick.probes_per_epoch
    assert quick.eos_loss == "mse" and quick.eos_lr == 0.1 and quick.eos_examples == 256


def test_full_profile_cifar10_from_a_local_folder(tmp_path):
    cfg = dataclasses.replace(study.PROFILES["full"], data_folder=str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="missing"):
        study.load_data(cfg, torch.device("cpu"))
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 4))}
        (folder / name).write_bytes(pickle.dumps(batch))
    cfg = dataclasses.replace(cfg, data_folder=str(folder))
    xtr, ytr, xte, yte = study.load_data(cfg, torch.device("cpu"))
    assert xtr.shape == (20, 3, 32, 32) and xte.shape == (4, 3, 32, 32) and ytr.dtype == torch.long
    assert torch.allclose(xtr.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    torch.manual_seed(0)
    model = study.make_model(cfg, xtr, batch_norm=True)
    assert model(xtr[:5]).shape == (5, 10)


@pytest.mark.slow
def test_smoke_run_claims(executed_chapter):
    records = executed_chapter("jastrzebski2020")
    assert_well_formed(records, "jastrzebski2020", KINDS)
    claims = checked_claims(records, ALL_IDS)
    for cid, r in claims.items():
        assert r["rule"] == "engine" and r["verdict"] in ("reproduced", "not reproduced", "inconclusive"), cid
        assert r["values"] and r["n_units"] >= 1, cid
        if r["kind"] == "paper":
            assert r["source"] and r["changed"], cid


@pytest.mark.slow
@OUTSIDE_BOOK   # its own build folder: no chapter run to share
def test_full_profile_code_path_with_batch_norm_and_resumable_checkpoints(tmp_path, monkeypatch):
    """The full profile's path (CIFAR-10 folder, SimpleCNN, BN sweep, checkpoints) at toy size."""
    monkeypatch.setenv("CURVNB_BUILD", str(tmp_path / "build"))
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (12, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 12))}
        (folder / name).write_bytes(pickle.dumps(batch))
    cfg = dataclasses.replace(study.PROFILES["full"], data_folder=str(folder), seeds=1, lrs=(0.01, 0.1),
                              batch_size=20, batch_sizes=(10,), bn_lrs=(0.01, 0.1), epochs=1, probes_per_epoch=1,
                              early_probes=1, hessian_examples=12, hessian_k=1, hessian_tol=0.5, cov_examples=6,
                              eos_examples=12, eos_steps=2, eos_probe_every=1)
    first = study.run(cfg, device=torch.device("cpu"), seed=0)
    assert any(r["bn"] for r in first["runs"].values())
    assert first["runs"]["η=0.01, S=20"]["lambda_h_top"].shape[1] == 1
    ckpts = sorted((tmp_path / "build" / "checkpoints" / "jastrzebski2020").glob("*.pt"))
    assert len(ckpts) == len(study.run_specs(cfg)) + 1  # one per SGD run + the GD run
    ids = {r.id for r in study.claims(first, cfg)}
    assert ids == ALL_IDS | {"10-batchnorm-small-lr"}
    # a second call finds every run finished in its checkpoint and returns the same measurements
    again = study.run(cfg, device=torch.device("cpu"), seed=0)
    for label, r in first["runs"].items():
        for key in ("lambda_h", "lambda_k", "trace_k", "loss"):
            np.testing.assert_array_equal(again["runs"][label][key], r[key])
        assert again["runs"][label]["test_accuracy"] == r["test_accuracy"]


def test_overshoot_probe_finds_first_grid_alpha_and_restores_parameters():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1).double()
    x = torch.randn(40, 3, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    loss_fn = torch.nn.MSELoss()
    before = [p.detach().clone() for p in model.parameters()]
    lr, grid = 0.1, study.ALPHA_GRID
    alpha = study.overshoot_probe(loss_fn, (x, y), (x[:8], y[:8]), lr)(model)
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p.detach(), q)
    # brute force: the loss along the step direction, evaluated on a copy of the model
    model.zero_grad()
    loss_fn(model(x[:8]), y[:8]).backward()
    step = [lr * p.grad.clone() for p in model.parameters()]
    base = loss_fn(model(x), y).item()

    def loss_at(a):
        m = copy.deepcopy(model)
        with torch.no_grad():
            for p, s in zip(m.parameters(), step):
                p -= a * s
        return loss_fn(m(x), y).item()

    i = int(np.nonzero(grid == alpha)[0][0])
    assert loss_at(grid[i]) >= 1.2 * base and all(loss_at(a) < 1.2 * base for a in grid[:i])
