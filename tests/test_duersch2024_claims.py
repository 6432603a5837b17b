"""duersch2024 chapter (glass curvature and Alice): the claims' machinery on the smoke configuration, in
process and in the chapter's smoke run (exact checks asserted, statistical verdicts never), units from
the methods, and the seed streams."""
import numpy as np
import pytest
import torch
from conftest import BOOK_GROUP, OUTSIDE_BOOK, assert_distinct_seeds, assert_well_formed, checked_claims, saved_figures, smoke_chapter

from curvnb.studies import duersch2024 as study

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)

ALL = {spec.id for spec in study.SPECS}
EXACT = ["naq-exactness", "naq-other-phi"]   # deterministic identities: asserted
TINY = study.PROFILES["smoke"]
PAIRED = (*study.ABLATIONS, *study.COMPARISONS)


def _units(config: study.Config, spec) -> int:
    """The units a claim is decided on under ``config`` (computed from the config, without running)."""
    if spec in study.CURVATURE:
        return config.curvature_seeds
    return 1 if spec.statistic == "value" else config.report_seeds


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_units_meet_each_methods_minimum(profile):
    config = study.PROFILES[profile]
    for spec in study.SPECS:
        assert _units(config, spec) >= spec.min_units(), (profile, spec.id)
    assert config.curvature_seeds <= study.STREAMS.streams["curv-init"].max_index
    assert config.report_seeds <= study.STREAMS.streams["init"].max_index


def test_specs_declare_the_rules_once():
    assert len(ALL) == len(study.SPECS) == 14
    for spec in PAIRED:   # two-sided, in accuracy points, the margin fixed in the module
        assert (spec.direction, spec.threshold, spec.delta, spec.physical_unit) == \
            ("two-sided", 0.0, study.DELTA, "accuracy points")
    assert {s.kind for s in study.ABLATIONS} == {"paper"} and {s.kind for s in study.COMPARISONS} == {"finding"}
    assert all(spec.changed for spec in study.SPECS if spec not in study.COMPARISONS)


def test_seed_streams_separate_selection_from_test_and_chapter_seeds():
    roles = {name: study.STREAMS.role(name) for name in study.STREAMS.streams}
    assert [roles[n] for n in study.ROLES["selection"]] == ["selection"] * 3
    assert [roles[n] for n in study.ROLES["test"]] == ["test"] * 3
    assert roles["validation"] == "selection"
    assert_distinct_seeds(study.STREAMS)
    # the derived seeds reach the weights: chapter seeds 0 and 1 give different nets (torch.manual_seed would not)
    a, b = (study.mlp(8, "relu", seed=study.STREAMS.seed(k, "init", 0)) for k in (0, 1))
    assert not torch.equal(a[0].weight, b[0].weight)
    c = study.mlp(8, "tanh", seed=study.STREAMS.seed(0, "init", 0))   # the tanh twin shares the weights
    assert torch.equal(a[0].weight, c[0].weight)


@pytest.mark.slow
def test_smoke_run_claims(executed_chapter):
    records = executed_chapter("duersch2024")
    assert_well_formed(records, "duersch2024", specs=study.SPECS)
    claims = checked_claims(records, ALL, EXACT)
    for spec in study.SPECS:
        assert claims[spec.id]["n_units"] == _units(TINY, spec), spec.id
    for spec in PAIRED:   # the direction found is the estimate's sign
        r = claims[spec.id]
        assert r["direction_found"] in ({"greater"} if r["estimate"] > 0 else {"less"} if r["estimate"] < 0 else {None})


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


@OUTSIDE_BOOK   # its own build folder: no chapter run to share
def test_parallel_map_keeps_job_order_in_worker_processes():
    import dataclasses

    cfg = dataclasses.replace(TINY, workers=2)
    jobs = [dict(config=cfg, name=name) for name in ("SGD-momentum", "Adam", "Alice")]
    assert study.parallel_map(study.learning_rates, jobs, cfg, torch.device("cpu"), "test") == \
        [cfg.lrs_sgd, cfg.lrs_adaptive, cfg.lrs_adaptive]


def test_tiny_run_sweep_selection_and_reports(tiny):
    tr = tiny["training"]
    assert set(tr["sweep"]) == set(tr["reports"]) == set(study.VARIANTS)
    for name, runs in tr["sweep"].items():
        assert len(runs) == len(TINY.lrs_adaptive)  # the same-size grid for every optimizer
        for lr, r in runs.items():
            assert r["val_acc"].shape[1] == TINY.selection_seeds
            assert r["point_step"]["steps"] == TINY.train_steps
            i = np.flatnonzero(r["step"] == r["point_step"]["evals"])[0]
            assert r["evals"][i] <= 3 * TINY.train_steps  # never past the budget
        # reported runs exactly at the selected rates, with their own units
        assert set(tr["reports"][name]) == set(tr["selected"][name].values())
        for lr, r in tr["reports"][name].items():   # each trains as far as the points it was selected for
            assert r["test_acc"].shape[1] == TINY.report_seeds
            assert set(r["point_step"]) == {p for p in study.POINTS if tr["selected"][name][p] == lr}
            assert r["step"][-1] == max(r["point_step"].values())
    # one-gradient optimizers spend one evaluation per step; Alice without quick steps three
    assert tr["sweep"]["Adam"][1e-3]["point_step"]["evals"] == 3 * TINY.train_steps
    assert tr["sweep"]["Alice: no quick steps"][1e-3]["point_step"]["evals"] == TINY.train_steps
    assert tr["sizes"] == {"train": 1500 - TINY.validation, "val": TINY.validation, "test": 297}
    up = tr["sweep"]["Alice"][1e-3]["upper"]
    assert np.all((up[-1] >= 0) & (up[-1] <= 1))
    assert np.all(np.isnan(tr["sweep"]["Adam"][1e-3]["upper"]))


def test_selection_uses_validation_only(tiny):
    runs = {lr: dict(r) for lr, r in tiny["training"]["sweep"]["Adam"].items()}
    best = study.select_rate(runs, "evals")
    for r in runs.values():  # scrambling the test accuracies does not change the selection
        r["test_acc"] = np.random.default_rng(0).random(r["test_acc"].shape)
    assert study.select_rate(runs, "evals") == best
    worst = min(runs, key=lambda lr: runs[lr]["val_acc"][-1].mean())
    runs[worst] = dict(runs[worst], val_acc=np.ones_like(runs[worst]["val_acc"]))  # a perfect validation score wins
    assert study.select_rate(runs, "evals") == worst


def test_tiny_claims_keep_their_values(tiny):
    results = {r.id: r for r in study.claims(tiny, TINY)}
    assert set(results) == ALL
    st = tiny["seed_stats"]
    for spec, key in study.CURVATURE.items():
        assert results[spec.id].values["x"] == pytest.approx(st[key])
    for spec, other in study.ABLATIONS.items():
        v = results[spec.id].values
        assert v["a"] == pytest.approx(100 * study.reported(tiny, "Alice", "evals"))
        assert v["b"] == pytest.approx(100 * study.reported(tiny, other, "evals"))
    assert results["naq-exactness"].estimate == tiny["naq"]["phi=1-beta1"]["error"].max()


def test_tiny_figures_tables_text_and_widget(tiny):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    records = [r.record("smoke") for r in study.claims(tiny, TINY)]
    text = study.findings_markdown(records, tiny, TINY)
    assert "paper claims" in text and "Ablation" in text
    assert study.comparison_table(tiny, TINY).count("\n") == 1 + len(study.VARIANTS)
    assert "{" not in study.pretrain_text(tiny)
    figures = saved_figures("duersch2024")   # as the smoke execution saved them (width, text: test_book)
    assert set(figures) == {"scaling", "layers", "line", "naq", "sweep", "training"}
    assert all(f["axes"] and not f["axes_without_xlabel"] for f in figures.values())
    fig = study.draw_runs(tiny, TINY, optimizer=study.HEAVY_BALL, x_axis="steps", metric="training loss")
    assert fig.axes and all(ax.get_xlabel() for ax in fig.axes)
    plt.close(fig)
    with pytest.raises(ValueError, match="'validation accuracy'"):
        study.draw_runs(tiny, TINY, metric="f1")
    with pytest.raises(ValueError, match="allowed values"):
        study.make_optimizer("Lion", [torch.nn.Parameter(torch.ones(1))], 1e-3)
