"""The toolkit chapter's quick-profile claims: every tool matches its explicit reference."""
import pytest
from conftest import checked_claims

ALL = {"hvp-vs-dense", "iterable-data", "lanczos-top-k", "slq-density", "hutchinson-trace",
       "gradient-covariance", "ntk-explicit"}


@pytest.mark.slow
def test_quick_claims(executed_chapter):
    claims = checked_claims(executed_chapter("toolkit"), ALL, ALL)  # correctness checks: all must hold
    assert claims["lanczos-top-k"]["measured"]["max_rel_error"] < 1e-3
    assert claims["hvp-vs-dense"]["measured"]["hvp"] < 1e-6


def test_widget_callback_headless():
    import matplotlib
    matplotlib.use("Agg")
    import torch
    from curvnb.studies import toolkit as study

    cfg = study.Config(hidden=4, num_train=64, batch_size=32, train_steps=5, ritz_steps=20, slq_runs=2,
                       slq_steps=20, hutchinson_samples=20, num_cov=8, num_ntk=4)
    results = study.run(cfg, device=torch.device("cpu"), seed=0)
    fig = study.draw_lanczos(results, steps=5, sigma_frac=0.02)
    assert len(fig.axes) == 2 and fig.axes[0].get_title()
    for c in study.claims(results, cfg):
        assert c.id in ALL
    for make in (study.figure_spectrum, study.figure_density, study.figure_hutchinson):
        assert make(results).axes[0].get_xlabel()
