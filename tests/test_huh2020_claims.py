"""huh2020: the quick-profile claims (executes the chapter) and the study code on a tiny configuration."""
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from conftest import checked_claims, claims_by_id

from curvnb.studies import huh2020 as study

ALL = {"1-closed-forms", "2-matrix-closed-forms", "3-conservation-law", "4-same-path", "5-learning-times",
       "6-block-instability", "7-generalization"}
EXPECTED_TO_HOLD = ALL - {"5-learning-times", "6-block-instability"}


@pytest.mark.slow
def test_quick_claims(executed_chapter):
    claims = checked_claims(executed_chapter("huh2020"), ALL, EXPECTED_TO_HOLD)
    m = claims["2-matrix-closed-forms"]["measured"]
    assert m["NGD max error"] < 1e-8 and m["block NGD max error"] < 1e-8
    assert claims["7-generalization"]["measured"]["NGD / GD"] > 1.5


@pytest.mark.slow
def test_quick_claims_that_do_not_reproduce(executed_chapter):
    """Claim 5: simulation = quadrature of the mode equation, and NGD / block NGD match the brief; GD, full
    and block α=½ do not (the brief's values are not what its own equation gives). Claim 6: block NGD's
    steps blow up in every seed, its layer-norm ratio passes 2 in too few; α=½ is stable."""
    claims = claims_by_id(executed_chapter("huh2020"))
    times = claims["5-learning-times"]["measured"]
    assert not claims["5-learning-times"]["passed"]
    assert times["max |t_sim/t_quad − 1|"] < 1e-6
    assert times["NGD"] == pytest.approx(0.692, rel=0.03) and times["block NGD"] == pytest.approx(0.231, rel=0.03)
    assert times["GD"] == pytest.approx(9.145, rel=1e-3) and times["block α=½"] == pytest.approx(0.8377, rel=1e-3)
    six = claims["6-block-instability"]["measured"]
    assert not claims["6-block-instability"]["passed"]
    assert min(six["block NGD max steps"]) > 10
    assert six["block α=½ max step"] < 0.1 and six["block α=½ max norm ratio"] < 1.05
    assert six["block α=½ max final loss"] < 1e-10


def tiny_config():
    return replace(study.PROFILES["quick"], saxe_singular_values=(1.0,), reference_times=study.Config.reference_times[:2],
                   drift_scales=(0.3, 0.1),
                   portrait_inits=((0.05, 0.2),), discrete_steps=40, discrete_seeds=2, record_every=5,
                   gen_width=5, gen_rules=(("GD", "full", 0.0, 400.0), ("NGD", "full", 1.0, 6.0),
                                           ("block α=½", "block", 0.5, 30.0), ("full α=½", "full", 0.5, 30.0)),
                   gen_points=40, mlp_width=16, mlp_steps=3, mlp_lrs=(("GD", 0.0, (0.1,)),
                                                                  ("block α=½ (K-FAC)", 0.5, (0.1, 0.3))))


def test_study_code_path_on_a_tiny_configuration():
    config = tiny_config()
    results = study.run(config, device=torch.device("cpu"), seed=0)
    claims = {c.id: c for c in study.claims(results, config)}
    assert set(claims) == ALL
    assert claims["2-matrix-closed-forms"].passed and claims["4-same-path"].passed
    assert set(results["generalization"]) == {"GD", "NGD", "block α=½", "full α=½"}
    for r in results["discrete"]["block α=½"]:
        assert len(r["step_norms"]) == config.discrete_steps and r["step"][-1] == config.discrete_steps
    assert results["mlp"]["block α=½ (K-FAC)"]["lr"] in (0.1, 0.3)
    for fig in (study.figure_phase_portrait(results), study.figure_modes(results, config), study.figure_saxe(results),
                study.figure_generalization(results), study.figure_stability(results, config),
                study.figure_mlp(results)):
        assert fig.axes and all(ax.get_xlabel() for ax in fig.axes)
        plt.close(fig)
    assert "lr" in study.mlp_summary(results)


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
    assert np.isnan(study.crossing_time(t, t, 2.0))


def test_a_singular_flow_is_reported_not_waited_on():
    """Seed 2 sends block NGD through a rank drop: the run records the failure and the claim fails."""
    config = replace(study.PROFILES["quick"], drift_scales=(0.3,), max_evaluations=3000)
    matrix = study.run_matrix(config, seed=2)
    assert "failed" in matrix["rules"]["block NGD"] and "stopped at t" in matrix["rules"]["block NGD"]["failed"]
    assert matrix["rules"]["NGD"]["closed_form_error"] < 1e-6
