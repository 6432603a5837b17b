"""The toolkit chapter's claims: every tool matches its explicit reference.

All claims are self-checks (kind "check"). The exact ones are asserted to hold, in the chapter's
smoke run too (identities, not sampling); the two randomised estimators (SLQ, Hutchinson) are
statistics over probe seeds: their seeds and intervals are asserted, not their verdicts."""
import pytest
from conftest import BOOK_GROUP, assert_over_seeds, assert_well_formed, checked_claims, smoke_chapter

from curvnb.studies import toolkit as study

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)

SMOKE = study.PROFILES["smoke"]

EXACT = {"hvp-vs-dense", "iterable-data", "lanczos-top-k", "gradient-covariance", "ntk-explicit"}
STATISTICAL = {"slq-density": SMOKE.probe_seeds, "hutchinson-trace": SMOKE.probe_seeds}
ALL = EXACT | set(STATISTICAL)


@pytest.mark.slow
def test_smoke_run_claims(executed_chapter):
    records = executed_chapter("toolkit")
    assert_well_formed(records, "toolkit")
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

    cfg = SMOKE
    results = smoke_chapter("toolkit").run()   # the chapter's smoke run reads the same cache
    fig = study.draw_lanczos(results, steps=5, sigma_frac=0.02)
    assert len(fig.axes) == 2 and fig.axes[0].get_title()
    claims = study.claims(results, cfg)
    assert {c.id for c in claims} == ALL and all(c.kind == "check" for c in claims)
    for c in claims:
        if c.id in STATISTICAL:
            assert c.seeds == cfg.probe_seeds and c.interval is not None
    assert len(results["probe_seeds"]["hutchinson_z"]) == cfg.probe_seeds
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
