"""duersch2024 chapter (glass curvature and Alice): claim machinery on the smoke configuration, in process and
in the chapter's smoke run (exact checks asserted, statistical verdicts not)."""
import math

import numpy as np
import pytest
import torch
from conftest import BOOK_GROUP, assert_over_seeds, assert_well_formed, checked_claims, smoke_chapter

from curvnb.studies import duersch2024 as study

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)

ALL = {"glass-scaling", "hessian-scaling", "glass-loss-model", "naq-exactness", "smooth-glass-ratio",
       "ablation-glass", "ablation-hessian", "ablation-curvature"}
# Exactness is asserted; the statistical claims (the ablation included) depend on sampling: their seeds and
# intervals are asserted, never their verdicts.
EXPECTED_TO_HOLD = ["naq-exactness"]
TINY = study.PROFILES["smoke"]
STATISTICAL = {cid: 2 for cid in ("glass-scaling", "hessian-scaling", "glass-loss-model", "smooth-glass-ratio",
                                  "ablation-glass", "ablation-hessian", "ablation-curvature")}   # smoke: 2 seeds


@pytest.mark.slow
def test_smoke_run_claims(executed_chapter):
    records = executed_chapter("duersch2024")
    assert_well_formed(records, "duersch2024")
    claims = checked_claims(records, ALL, EXPECTED_TO_HOLD)
    assert_over_seeds(claims, STATISTICAL)
    assert claims["naq-exactness"]["kind"] == "check" and claims["naq-exactness"]["seeds"] == 1
    assert {claims[c]["kind"] for c in ("ablation-glass", "ablation-hessian", "ablation-curvature")} == {"paper"}
    for cid in ("ablation-glass", "ablation-hessian", "ablation-curvature"):  # verdict = interval excludes 0
        lo, hi = claims[cid]["interval"]
        assert claims[cid]["passed"] == (lo > 0 or hi < 0)


@pytest.fixture(scope="module")
def tiny():
    ch = smoke_chapter("duersch2024")   # as the chapter computes them: its smoke run reads the same cache
    res = ch.run()
    res["training"] = ch.cached(study.run_training, key="training")
    return res


def test_seed_batched_mlp_equals_separate_nets():
    nets = [study.mlp(8, "relu", seed=s) for s in (3, 4)]
    batched = study.SeedBatchedMLP(nets)
    x = torch.randn(5, 2, 64)
    out = batched(x)
    for s, net in enumerate(nets):
        assert torch.allclose(out[:, s], net(x[:, s]), atol=1e-6)
    # the seedwise loss gives each seed its own mini-batch gradient
    y = torch.randint(0, 10, (5, 2))
    study.seedwise_cross_entropy(batched(x), y).backward()
    for s, net in enumerate(nets):
        torch.nn.functional.cross_entropy(net(x[:, s]), y[:, s]).backward()
        assert torch.allclose(batched.weights[0].grad[s], net[0].weight.grad.T, atol=1e-6)


def test_parallel_map_keeps_job_order_in_worker_processes():
    import dataclasses

    cfg = dataclasses.replace(TINY, workers=2)
    jobs = [dict(config=cfg, name=name) for name in ("SGD-momentum", "Adam", "Alice")]
    assert study.parallel_map(study.learning_rates, jobs, cfg, torch.device("cpu"), "test") == \
        [cfg.lrs_sgd, cfg.lrs_adaptive, cfg.lrs_adaptive]


def test_tiny_run_sweep_selection_and_points(tiny):
    tr = tiny["training"]
    assert set(tr["runs"]) == set(study.VARIANTS)
    for name, runs in tr["runs"].items():
        assert len(runs) == len(TINY.lrs_adaptive)  # the same-size grid for every optimizer
        for lr, r in runs.items():
            assert r["test_acc"].shape[1] == TINY.selection_seeds + TINY.report_seeds
            assert r["point_step"]["steps"] == TINY.train_steps
            i = np.flatnonzero(r["step"] == r["point_step"]["evals"])[0]
            assert r["evals"][i] <= 3 * TINY.train_steps  # never past the budget
        for point in study.POINTS:
            assert tr["selected"][name][point] in runs
    # one-gradient optimizers spend one evaluation per step; Alice without quick steps three
    assert tr["runs"]["Adam"][1e-3]["point_step"]["evals"] == 3 * TINY.train_steps
    assert tr["runs"]["Alice: no quick steps"][1e-3]["point_step"]["evals"] == TINY.train_steps
    assert tr["sizes"] == {"train": 1500 - TINY.validation, "val": TINY.validation, "test": 297}
    up = tr["runs"]["Alice"][1e-3]["upper"]
    assert np.all((up[-1] >= 0) & (up[-1] <= 1))
    assert np.all(np.isnan(tr["runs"]["Adam"][1e-3]["upper"]))


def test_selection_uses_validation_only(tiny):
    tr = tiny["training"]
    runs = {lr: dict(r) for lr, r in tr["runs"]["Adam"].items()}
    best = study.select_rate(TINY, runs, "evals")
    for lr, r in runs.items():  # scrambling the test accuracies does not change the selection
        r["test_acc"] = np.random.default_rng(0).random(r["test_acc"].shape)
    assert study.select_rate(TINY, runs, "evals") == best
    worst = min(runs, key=lambda lr: runs[lr]["val_acc"][-1, :TINY.selection_seeds].mean())
    runs[worst] = dict(runs[worst], val_acc=np.ones_like(runs[worst]["val_acc"]))  # a perfect validation score wins
    assert study.select_rate(TINY, runs, "evals") == worst


def test_tiny_claims_figures_tables_and_widget(tiny):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from curvnb.figures import smallest_text_px

    claims = {c.id: c for c in study.claims(tiny, TINY)}
    assert set(claims) == ALL
    for cid in ("glass-scaling", "hessian-scaling", "glass-loss-model", "smooth-glass-ratio"):
        assert claims[cid].seeds == TINY.curvature_seeds and claims[cid].interval is not None
    d = study.paired_difference(tiny, TINY, "Alice", "Alice: Hessian only", "evals")
    assert len(d["per_seed"]) == TINY.report_seeds
    assert math.isclose(claims["ablation-glass"].measured["Alice − Alice: Hessian only (points)"], d["mean"])
    assert study.comparison_table(tiny, TINY).count("\n") == 1 + len(study.VARIANTS)
    assert study.ablation_table(tiny, TINY).count("\n") == 1 + 5
    assert "heavy-ball" in study.ablation_table(tiny, TINY)
    text = study.summary_markdown(tiny, TINY)
    assert "Alice − Adam" in text and "%" in text
    for fig in (study.figure_scaling(tiny), study.figure_layers(tiny), study.figure_line(tiny),
                study.figure_naq(tiny), study.figure_sweep(tiny, TINY), study.figure_training(tiny, TINY),
                study.draw_runs(tiny, TINY, optimizer=study.HEAVY_BALL, x_axis="steps", metric="training loss")):
        assert fig.axes and all(ax.get_xlabel() for ax in fig.axes)
        assert fig.get_size_inches()[0] <= 6.8 + 1e-9
        assert smallest_text_px(fig) >= 9
        plt.close(fig)
    with pytest.raises(ValueError, match="'test accuracy'"):
        study.draw_runs(tiny, TINY, metric="f1")
    with pytest.raises(ValueError, match="allowed values"):
        study.make_optimizer("Lion", [torch.nn.Parameter(torch.ones(1))], 1e-3, 0)
