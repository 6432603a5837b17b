"""The toolkit chapter's claims: every tool matches its explicit reference.

All claims are self-checks (kind "check"), declared once as engine specs. The exact ones are
deterministic values against a tolerance (identities: asserted to hold on the smoke run too); the two
randomised estimators (SLQ, Hutchinson coverage) are statistics over probe seeds: their units,
intervals and per-unit values are asserted, never their verdicts."""
import numpy as np
import pytest
import torch
from conftest import BOOK_GROUP, assert_well_formed, checked_claims, smoke_chapter

from curvnb.claims import VERDICT_VALUES
from curvnb.studies import toolkit as study

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)

SMOKE = study.PROFILES["smoke"]
STATISTICAL = {study.SLQ_DENSITY.id, study.HUTCHINSON_COVERAGE.id}
ALL = {s.id for s in study.SPECS}
EXACT = ALL - STATISTICAL


@pytest.fixture(scope="module")
def results():
    return smoke_chapter("toolkit").run()   # the chapter's smoke run reads the same cache


def test_quick_and_full_profiles_have_the_units_the_methods_need():
    for name in ("quick", "full"):
        cfg = study.PROFILES[name]
        for spec in (study.SLQ_DENSITY, study.HUTCHINSON_COVERAGE):
            assert cfg.probe_seeds >= spec.min_units(), (name, spec.id)
        assert cfg.probe_seeds <= study.MAX_PROBE_SEEDS
    assert all(s.kind == "check" for s in study.SPECS) and len(ALL) == len(study.SPECS)
    assert {s.id for s in study.SPECS if s.statistic == "value"} == EXACT


def test_probe_streams_are_test_streams_and_seeds_differ():
    assert {study.STREAMS.role(n) for n in ("probe", "init", "data", "hutchinson", "slq", "lanczos")} == {"test"}
    # no two chapter seeds share a probe unit: the library's first probe vector differs (the derived
    # seeds share their low 32 bits across chapter seeds; the library uses all 64)
    from curvnb.curvature import random_unit_vector
    probes = {tuple(random_unit_vector(50, dtype=torch.float64, device="cpu", seed=study.STREAMS.seed(k, "probe", u),
                                       rademacher=True).tolist()) for k in range(3) for u in range(10)}
    assert len(probes) == 30


def test_claims_are_engine_records_with_their_values(results):
    records = [r.record("smoke") for r in study.claims(results, SMOKE)]
    by_id = checked_claims(records, ALL, EXACT)   # exact identities: all must hold
    for r in records:
        assert r["rule"] == "engine" and r["verdict"] in VERDICT_VALUES
    for cid in STATISTICAL:
        assert by_id[cid]["n_units"] == SMOKE.probe_seeds == len(by_id[cid]["values"]["x"])
    np.testing.assert_array_equal(by_id["slq-density"]["values"]["x"], results["probe_seeds"]["slq_w1"])
    z = np.asarray(results["probe_seeds"]["hutchinson_z"])
    assert by_id["hutchinson-trace"]["values"]["x"] == list((np.abs(z) <= study.HUTCHINSON_Z).astype(float))
    # the smoke run has fewer probe seeds than the median's interval needs: inconclusive by construction
    assert by_id["slq-density"]["verdict"] == "inconclusive" and by_id["slq-density"]["interval"] is None
    assert by_id["lanczos-top-k"]["estimate"] < study.LANCZOS_TOP_K.threshold
    assert len(results["probe_seeds"]["seeds"]) == len(set(results["probe_seeds"]["seeds"])) == SMOKE.probe_seeds


def test_widget_and_figures_headless(results):
    import matplotlib
    matplotlib.use("Agg")
    from curvnb.figures import smallest_text_px

    fig = study.draw_lanczos(results, steps=5, sigma_frac=0.02)
    assert len(fig.axes) == 2 and fig.axes[0].get_title()
    for make in (study.figure_spectrum, study.figure_density, study.figure_hutchinson):
        f = make(results)
        assert f.axes[0].get_xlabel() and f.get_size_inches()[0] <= 6.8 + 1e-9
        assert smallest_text_px(f) >= 9


@pytest.mark.slow
def test_smoke_run_claims(executed_chapter):
    records = executed_chapter("toolkit")
    assert_well_formed(records, "toolkit")
    claims = checked_claims(records, ALL, EXACT)
    assert all(claims[c]["n_units"] == 1 and claims[c]["interval"] is None for c in EXACT)
    assert all(claims[c]["n_units"] == SMOKE.probe_seeds for c in STATISTICAL)
