"""Break-even study: a tiny end-to-end run of the study module (fast), the CIFAR-10 full-profile
data path on a tiny file written here, and the quick-profile claims of the executed chapter (slow)."""
from __future__ import annotations

import copy
import dataclasses
import pickle

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from conftest import checked_claims, claims_by_id
from curvnb.studies import jastrzebski2020 as study

matplotlib.use("Agg")

ALL_IDS = {"1-max-lambda-H-decreases-with-lr", "2-lambda-H-below-2-over-lr", "3-lambda-K-decreases-with-lr",
           "4-trace-K-decreases-with-lr", "5-larger-batch-sharper", "6-progressive-sharpening",
           "7-edge-of-stability", "8-conditioning-K (may fail)", "9-test-accuracy (may fail)", "sanity"}
# Expected by the brief and reproduced by the quick profile (seed 0).
EXPECTED_TO_HOLD = ["1-max-lambda-H-decreases-with-lr", "2-lambda-H-below-2-over-lr", "3-lambda-K-decreases-with-lr",
                    "4-trace-K-decreases-with-lr", "6-progressive-sharpening"]
# Expected by the brief but NOT reproduced by our quick profile (seed 0); see the chapter. Kept
# as strict xfails so that the suite notices if they start to hold.
EXPECTED_BUT_NOT_REPRODUCED = {
    "5-larger-batch-sharper": "one catapult spike of the S=16 run lifts its 3-point-smoothed max λ_H¹ above S=128's",
    "7-edge-of-stability": "under cross-entropy GD overshoots 2/η by up to 2× and the sharpness falls once the loss → 0",
    "sanity": "the S=128 run reaches 77 % training accuracy in 15 epochs (465 steps), below 80 %",
}

TINY = dataclasses.replace(study.PROFILES["quick"], num_samples=600, lrs=(0.05, 0.2), batch_sizes=(16, 64),
                           epochs=2, hessian_examples=100, cov_examples=32, eos_examples=64, eos_steps=20,
                           eos_probe_every=5)


@pytest.fixture(scope="module")
def tiny_results():
    return study.run(TINY, device=torch.device("cpu"), seed=0)


def test_tiny_run_layout_and_measurements(tiny_results):
    runs = tiny_results["runs"]
    assert list(runs) == ["η=0.05, S=32", "η=0.2, S=32", "η=0.1, S=16", "η=0.1, S=64"]
    r = runs["η=0.05, S=32"]
    steps_per_epoch = 480 // 32
    assert r["step"][-1] == 2 * steps_per_epoch and r["epoch"][-1] == 2.0
    n = len(r["step"])
    for key in ("lambda_h", "lambda_k", "trace_k", "lambda_k_star", "loss", "accuracy"):
        assert r[key].shape == (n,), key
        assert np.all(np.isfinite(r[key])), key
    # Tr K is the whole spectrum's sum: at least λ_K¹, and λ_K^* ≤ λ_K¹
    assert np.all(r["trace_k"] >= r["lambda_k"]) and np.all(r["lambda_k_star"] <= r["lambda_k"])
    assert np.all(r["lambda_h"] > 0)
    # same initialisation for every run: identical step-0 probes
    for other in runs.values():
        assert other["lambda_h"][0] == pytest.approx(r["lambda_h"][0], rel=1e-6)
        assert other["trace_k"][0] == pytest.approx(r["trace_k"][0], rel=1e-9)
    eos = tiny_results["eos"]
    assert list(eos["step"]) == [0, 5, 10, 15, 20] and len(eos["step_loss"]) == 20


def test_covariance_probe_matches_dense_covariance():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 3)).double()
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    loss_fn = torch.nn.CrossEntropyLoss()
    out = study.covariance_probe(loss_fn, (x, y))(model)
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


def test_claims_figures_and_widget_from_tiny_run(tiny_results):
    claims = study.claims(tiny_results, TINY)
    assert {c.id for c in claims} == ALL_IDS
    for c in claims:
        assert isinstance(c.passed, bool)
    for fig_fn in (study.figure_sharpness, study.figure_plane, study.figure_covariance, study.figure_eos,
                   study.figure_overshoot,
                   study.figure_accuracy):
        fig = fig_fn(tiny_results)
        assert fig.axes and all(ax.get_xlabel() or ax.get_ylabel() for ax in fig.axes)
        plt.close(fig)
    view = study.widget_view(tiny_results)
    fig = view.render(run="η=0.1, S=64", quantity="Tr K and conditioning")
    assert "η=0.1, S=64" in fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="cached runs"):
        study.draw_run(tiny_results, run="η=9, S=1")
    with pytest.raises(ValueError, match="quantity"):
        study.draw_run(tiny_results, quantity="nope")


def test_smoothed_max_and_break_even_index():
    assert study.smoothed_max(np.array([1.0, 2.0, 30.0, 2.0, 1.0, 9.0, 9.0, 9.0])) == pytest.approx(11.333333, rel=1e-6)
    assert study.break_even_index({"lambda_h": np.array([1.0, 2.0, 5.0, 6.0, 5.0, 3.0])}) == 3


def test_bad_config_values_raise():
    with pytest.raises(ValueError, match="allowed values"):
        study.load_data(dataclasses.replace(TINY, dataset="imagenet"), torch.device("cpu"))
    with pytest.raises(ValueError, match="allowed values"):
        study.make_model(dataclasses.replace(TINY, model="vit"), torch.zeros(2, 40))


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
def test_quick_claims(executed_chapter):
    claims = checked_claims(executed_chapter("jastrzebski2020"), ALL_IDS, EXPECTED_TO_HOLD)
    for cid in ("8-conditioning-K (may fail)", "9-test-accuracy (may fail)"):
        assert isinstance(claims[cid]["passed"], bool) and claims[cid]["measured"]
    assert all(r["profile"] == "quick" for r in claims.values())


@pytest.mark.slow
@pytest.mark.parametrize("cid", sorted(EXPECTED_BUT_NOT_REPRODUCED))
def test_quick_claims_not_reproduced(executed_chapter, cid):
    claims = claims_by_id(executed_chapter("jastrzebski2020"))
    if not claims[cid]["passed"]:
        pytest.xfail(f"{cid} not reproduced: {EXPECTED_BUT_NOT_REPRODUCED[cid]} (measured {claims[cid]['measured']})")
    pytest.fail(f"{cid} now holds ({claims[cid]['measured']}): move it to EXPECTED_TO_HOLD")


@pytest.mark.slow
def test_full_profile_code_path_with_batch_norm_and_resumable_checkpoints(tmp_path, monkeypatch):
    """The full profile's path (CIFAR-10 folder, SimpleCNN, BN sweep, checkpoints) at toy size."""
    monkeypatch.setenv("CURVNB_BUILD", str(tmp_path / "build"))
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar10"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (12, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 12))}
        (folder / name).write_bytes(pickle.dumps(batch))
    cfg = dataclasses.replace(study.PROFILES["full"], data_folder=str(folder), lrs=(0.01, 0.1), batch_size=20,
                              batch_sizes=(10,), bn_lrs=(0.01, 0.1), epochs=1, probes_per_epoch=1, early_probes=1,
                              hessian_examples=12, hessian_k=2, hessian_tol=1e-1, cov_examples=6, eos_examples=12, eos_steps=2,
                              eos_probe_every=1)
    first = study.run(cfg, device=torch.device("cpu"), seed=0)
    assert any(r["bn"] for r in first["runs"].values())
    assert first["runs"]["η=0.01, S=20"]["lambda_h_top"].shape[1] == 2
    ckpts = sorted((tmp_path / "build" / "checkpoints" / "jastrzebski2020").glob("*.pt"))
    assert len(ckpts) == len(study.run_specs(cfg)) + 1  # one per SGD run + the GD run
    ids = {c.id for c in study.claims(first, cfg)}
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
