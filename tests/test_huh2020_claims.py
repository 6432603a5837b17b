"""huh2020: the chapter's smoke run (exact statements asserted, statistical verdicts not) and the study code on
the smoke configuration, in process."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from conftest import BOOK_GROUP, assert_over_seeds, assert_well_formed, checked_claims, smoke_chapter

from curvnb.figures import CONTENT_WIDTH_IN, apply_style, smallest_text_px
from curvnb.stats import clopper_pearson
from curvnb.studies import huh2020 as study

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)

ALL = {"1-closed-forms", "2-matrix-closed-forms", "2b-singular-block-flows", "2c-singularity-predicted",
       "3-conservation-law", "4-same-path", "5-learning-times", "5b-plateau", "6-block-instability",
       "7-generalization"}
CHECKS = {"1-closed-forms", "2c-singularity-predicted"}
# Exact statements (closed forms, deterministic computations, identities that hold seed by seed under their
# precondition) are asserted; statements about random quantities are not (their seeds and intervals are).
EXACT = {"1-closed-forms", "2-matrix-closed-forms", "2c-singularity-predicted", "4-same-path", "5-learning-times",
         "5b-plateau"}
SMOKE = study.PROFILES["smoke"]
STATISTICAL = {"2-matrix-closed-forms": SMOKE.matrix_seeds + SMOKE.conditioned_seeds,
               "2b-singular-block-flows": SMOKE.matrix_seeds, "2c-singularity-predicted": SMOKE.matrix_seeds,
               "3-conservation-law": SMOKE.matrix_seeds + SMOKE.conditioned_seeds,
               "6-block-instability": SMOKE.discrete_seeds, "7-generalization": SMOKE.gen_seeds}


@pytest.mark.slow
def test_smoke_run_claims(executed_chapter):
    records = executed_chapter("huh2020")
    assert_well_formed(records, "huh2020")
    claims = checked_claims(records, ALL, EXACT)
    assert {cid for cid, r in claims.items() if r["kind"] == "check"} == CHECKS
    assert all(r["source"] for r in records)
    assert_over_seeds(claims, STATISTICAL)
    for cid in ALL - set(STATISTICAL):
        assert claims[cid]["seeds"] == 1 and claims[cid]["interval"] is None
    three = claims["3-conservation-law"]["measured"]     # the conserving rules are exact in every seed
    assert max(three[f"{k} max drift"] for k in ("GD", "NGD", "full α=½")) < 1e-6
    times = claims["5-learning-times"]["measured"]
    assert times["GD"] == pytest.approx(9.14, rel=0.03) and times["block α=½"] == pytest.approx(0.838, rel=0.03)


def tiny_config():
    return SMOKE


@pytest.fixture(scope="module")
def tiny():
    config = tiny_config()
    return config, smoke_chapter("huh2020").run()   # the chapter's smoke run reads the same cache


def test_study_code_path_on_a_tiny_configuration(tiny):
    config, results = tiny
    claims = {c.id: c for c in study.claims(results, config)}
    assert set(claims) == ALL
    assert claims["2-matrix-closed-forms"].passed and claims["4-same-path"].passed
    assert claims["2c-singularity-predicted"].passed
    # Count claims carry the exact interval of their count; seeds are those of the configuration.
    two = claims["2-matrix-closed-forms"]
    assert two.seeds == config.matrix_seeds + config.conditioned_seeds
    assert two.interval == pytest.approx(clopper_pearson(round(two.measured["fraction of seeds where it holds"]
                                                               * two.seeds), two.seeds))
    assert claims["6-block-instability"].seeds == config.discrete_seeds
    assert claims["7-generalization"].seeds == config.gen_seeds
    # Seeds drawn under the precondition meet it, and their block-NGD flows reach the horizon.
    conditioned = results["matrix"]["conditioned"]
    assert len(conditioned["draws"]) == config.conditioned_seeds and np.all(conditioned["reached"] == config.horizon)
    for r in results["discrete"].values():
        assert r["step_norms"].shape == (config.discrete_seeds, config.discrete_steps)
        assert r["step"][-1] == config.discrete_steps
    assert results["mlp"]["block α=½ (K-FAC)"]["lr"] in (0.1, 0.3)
    for text in (study.summary_markdown(list(claims.values())), study.modes_markdown(list(claims.values())),
                 study.singular_markdown(list(claims.values()), results, config),
                 study.conservation_markdown(list(claims.values())), study.stability_markdown(list(claims.values())),
                 study.generalization_markdown(list(claims.values())), study.mlp_markdown(results)):
        assert text and "brief" not in text


def test_verdicts_follow_the_measurements(tiny):
    """``passed`` is computed from the results: spoiling one measured quantity flips exactly that claim."""
    config, results = tiny
    spoiled = {**results, "discrete": {**results["discrete"],
                                       "block α=½": {**results["discrete"]["block α=½"],
                                                     "final_loss": np.full(config.discrete_seeds, 1.0)}}}
    before = {c.id: c.passed for c in study.claims(results, config)}
    after = {c.id: c.passed for c in study.claims(spoiled, config)}
    assert after["6-block-instability"] is False
    assert {k: v for k, v in after.items() if k != "6-block-instability"} == \
        {k: v for k, v in before.items() if k != "6-block-instability"}


def test_figures_fit_the_book(tiny):
    config, results = tiny
    apply_style()
    for fig in (study.figure_phase_portrait(results), study.figure_modes(results, config), study.figure_saxe(results),
                study.figure_singular_flows(results, config), study.figure_generalization(results),
                study.figure_stability(results, config), study.figure_stability_seeds(results, config),
                study.figure_mlp(results), study.draw_modes()):
        assert fig.get_size_inches()[0] <= CONTENT_WIDTH_IN + 1e-9
        assert smallest_text_px(fig) >= 9
        assert any(ax.get_xlabel() for ax in fig.axes) and any(ax.get_ylabel() for ax in fig.axes)
        plt.close(fig)


def test_member_seeds_are_disjoint():
    seen = {study.member_seed(s, stream, i) for s in (0, 1) for stream in study.STREAMS for i in (0, 99_999)}
    assert len(seen) == 2 * len(study.STREAMS) * 2
    with pytest.raises(ValueError):
        study.member_seed(0, "matrix init", 100_000)


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
