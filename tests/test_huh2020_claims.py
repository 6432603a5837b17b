"""huh2020: the chapter's smoke run (machinery and exact statements asserted, statistical verdicts not) and the
study code on the smoke configuration, in process."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from conftest import BOOK_GROUP, assert_well_formed, checked_claims, smoke_chapter

from curvnb.claims import VERDICTS3
from curvnb.studies import huh2020 as study
from curvnb.studies.huh2020 import specs

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)

ALL = {s.id for s in study.SPECS}
CHECKS = {"1-closed-forms", "1b-quadrature", "2c-singularity-predicted"}
# Deterministic computations without any random draw (closed forms, quadrature, the scalar net): asserted.
EXACT = {"1-closed-forms", "1b-quadrature", "4-same-path", "5-learning-times", "5b-plateau",
         "5c-fractional-no-plateau", "5d-ngd-no-plateau"}
SMOKE = study.PROFILES["smoke"]


@pytest.mark.slow
def test_smoke_run_claims(executed_chapter):
    records = executed_chapter("huh2020")
    assert_well_formed(records, "huh2020")
    claims = checked_claims(records, ALL, EXACT)
    assert {cid for cid, r in claims.items() if r["kind"] == "check"} == CHECKS
    for r in records:
        assert r["rule"] == "engine" and r["verdict"] in VERDICTS3 and r["source"], r["id"]
        assert r["values"]["design"] and r["n_units"] >= 1
    for cid, n in study.units(SMOKE).items():   # statistical claims: one value per unit of the config
        r = claims[cid]
        assert r["n_units"] == n, (cid, r["n_units"], n)
        x = r["values"].get("x") or r["values"]["a"]
        assert len(x) == n
    for cid in ALL - set(study.units(SMOKE)):
        assert claims[cid]["method"] == "deterministic" and claims[cid]["interval"] is None
    drifts = claims["3-conservation-law"]["detail"]   # the conserving rules are exact in every seed
    assert max(drifts[f"{k} max drift"] for k in ("GD", "NGD", "full α=½")) < specs.CONSERVED.threshold
    times = claims["5-learning-times"]["detail"]
    assert times["GD time to s/2"] == pytest.approx(9.14, rel=0.03)
    assert times["block α=½ time to s/2"] == pytest.approx(0.838, rel=0.03)


def test_quick_and_full_profiles_give_every_statistic_its_units():
    """Units come from the configuration, before any run: each statistic can reach a 95 % decision."""
    by_id = {s.id: s for s in study.SPECS}
    for profile in ("quick", "full"):
        for cid, n in study.units(study.PROFILES[profile]).items():
            assert n >= by_id[cid].min_units(), (profile, cid, n, by_id[cid].min_units())


def test_seed_streams_are_disjoint():
    """Selection streams (MLP rate choice) never share a seed with test streams, and chapter seeds never share."""
    roles = {name: study.STREAMS.role(name) for name in study.STREAMS.streams}
    assert roles["mlp select init"] == "selection"
    assert {n for n, r in roles.items() if r == "selection"} == {"mlp select init"}
    n = {name: min(s.max_index, 300) for name, s in study.STREAMS.streams.items()}
    for chapter_seed in (0, 1, 11):
        test = {study.STREAMS.seed(chapter_seed, name, i) for name in n if roles[name] == "test" for i in range(n[name])}
        select = {study.STREAMS.seed(chapter_seed, "mlp select init", i) for i in range(n["mlp select init"])}
        assert not test & select and len(test) == sum(n[k] for k in n if roles[k] == "test")
    seeds0 = {study.STREAMS.seed(0, name, i) for name in n for i in range(n[name])}
    seeds1 = {study.STREAMS.seed(1, name, i) for name in n for i in range(n[name])}
    assert not seeds0 & seeds1
    # Chapter seeds differing by 2³² would collide under torch.manual_seed; the draws use all 64 bits.
    a, b = study.draw(0, "matrix init", 3), study.draw(2**32 - 1, "matrix init", 3)
    assert not torch.equal(torch.randn(4, generator=a), torch.randn(4, generator=b))


@pytest.fixture(scope="module")
def tiny():
    return SMOKE, smoke_chapter("huh2020").run()   # the chapter's smoke run reads the same cache


def test_study_code_path_on_a_tiny_configuration(tiny):
    config, results = tiny
    results_ = study.claims(results, config)
    assert [r.id for r in results_] == [s.id for s in study.SPECS]
    conditioned = results["matrix"]["conditioned"]
    assert len(conditioned["draws"]) == config.conditioned_seeds
    for r in results["discrete"].values():
        assert r["step_norms"].shape == (config.discrete_seeds, config.discrete_steps)
        assert r["step"][-1] == config.discrete_steps
    for label, alpha, lrs in config.mlp_lrs:
        mlp = results["mlp"][label]
        assert set(mlp["grid"]) == set(lrs) and mlp["grid"][mlp["lr"]] == min(mlp["grid"].values())
        assert len(mlp["train_loss"]) == config.mlp_steps
    records = [r.record("smoke") for r in results_]
    text = study.findings(records, [s.id for s in study.SPECS])
    assert all(f"**{s.id}**" in text for s in study.SPECS)
    assert study.changes_note(records) and study.mlp_markdown(results, config)


def test_values_follow_the_measurements(tiny):
    """The per-unit values are computed from the results: spoiling one measured quantity changes exactly that
    claim's values."""
    config, results = tiny
    spoiled = {**results, "discrete": {**results["discrete"],
                                       "block NGD": {**results["discrete"]["block NGD"],
                                                     "norm_ratio": np.full(config.discrete_seeds, 7.0)}}}
    before = {r.id: r.values for r in study.claims(results, config)}
    after = {r.id: r.values for r in study.claims(spoiled, config)}
    assert after["6b-block-imbalance"]["x"] == [7.0] * config.discrete_seeds != before["6b-block-imbalance"]["x"]
    assert {k: v for k, v in after.items() if k != "6b-block-imbalance"} == \
        {k: v for k, v in before.items() if k != "6b-block-imbalance"}


@pytest.mark.parametrize("alpha,depth,log10_w0", [(0.5, 3, -3.0), (0.0, 1, -6.0), (1.0, 8, -0.5)])
def test_widget_draws_five_mode_curves(alpha, depth, log10_w0):
    fig = study.draw_modes(alpha=alpha, depth=depth, log10_w0=log10_w0, s=2.0)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 5
    for line in lines:   # every curve starts at w0/s and approaches 1
        y = np.asarray(line.get_ydata())
        assert np.all(np.isfinite(y)) and y[0] < 0.5 and y[-1] > 0.5
    plt.close(fig)


def test_crossing_time():
    t = np.linspace(0, 1, 11)
    assert study.crossing_time(t, t, 0.55) == pytest.approx(0.55)
    assert study.crossing_time(t, t ** 2, 0.3) == pytest.approx(0.3 ** 0.5, rel=1e-4)   # between samples
    assert np.isnan(study.crossing_time(t, t, 2.0))
