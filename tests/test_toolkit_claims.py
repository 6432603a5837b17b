"""The toolkit chapter's quick-profile claims: every tool matches its explicit reference.

All claims are self-checks (kind "check"). The exact ones are asserted to hold; the two randomised
estimators (SLQ, Hutchinson) are statistics over probe seeds: their seeds and intervals are asserted,
not their verdicts."""
import pytest
from conftest import assert_over_seeds, checked_claims

EXACT = {"hvp-vs-dense", "iterable-data", "lanczos-top-k", "gradient-covariance", "ntk-explicit"}
STATISTICAL = {"slq-density": 20, "hutchinson-trace": 20}
ALL = EXACT | set(STATISTICAL)


@pytest.mark.slow
def test_quick_claims(executed_chapter):
    records = executed_chapter("toolkit")
    claims = checked_claims(records, ALL, EXACT)  # exactness checks: all must hold
    assert all(r["kind"] == "check" for r in records)
    assert all(claims[c]["seeds"] == 1 and claims[c]["interval"] is None for c in EXACT)
    assert_over_seeds(claims, STATISTICAL)
    assert claims["lanczos-top-k"]["measured"]["max_rel_error"] < 1e-3
    assert claims["hvp-vs-dense"]["measured"]["hvp"] < 1e-6


def test_widget_callback_claims_and_figures_headless():
    import matplotlib
    matplotlib.use("Agg")
    import torch
    from curvnb.claims import write_claims
    from curvnb.figures import smallest_text_px
    from curvnb.studies import toolkit as study

    cfg = study.Config(hidden=4, num_train=64, batch_size=32, train_steps=5, ritz_steps=20, slq_runs=2,
                       slq_steps=20, hutchinson_samples=20, num_cov=8, num_ntk=4, probe_seeds=3)
    results = study.run(cfg, device=torch.device("cpu"), seed=0)
    fig = study.draw_lanczos(results, steps=5, sigma_frac=0.02)
    assert len(fig.axes) == 2 and fig.axes[0].get_title()
    claims = study.claims(results, cfg)
    assert {c.id for c in claims} == ALL and all(c.kind == "check" for c in claims)
    for c in claims:
        if c.id in STATISTICAL:
            assert c.seeds == 3 and c.interval is not None
    assert len(results["probe_seeds"]["hutchinson_z"]) == 3
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        records = write_claims(Path(tmp) / "toolkit.json", claims, "test")
    text = study.summary_markdown(records)
    assert f"of {len(ALL)} checks hold" in text
    for make in (study.figure_spectrum, study.figure_density, study.figure_hutchinson):
        f = make(results)
        assert f.axes[0].get_xlabel() and f.get_size_inches()[0] <= 6.8 + 1e-9
        assert smallest_text_px(f) >= 9
