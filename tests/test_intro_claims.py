"""The intro chapter's claims: three deterministic self-checks of gradient descent on a quadratic,
declared once as engine specs. The tests assert the machinery (records, units, streams) and the
exact identities the checks rest on, on the chapter's smoke run."""
import numpy as np
import pytest
import torch

from conftest import BOOK_GROUP, assert_well_formed, claims_by_id, smoke_chapter
from curvnb.claims import VERDICT_VALUES, evaluate
from curvnb.studies import intro as study

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)


def test_specs_are_deterministic_checks_with_one_unit():
    assert {s.id for s in study.SPECS} == {"stable-below-2/λ", "diverges-above-2/λ", "slowest-mode-rate"}
    for spec in study.SPECS:
        assert spec.kind == "check" and spec.statistic == "value" and spec.min_units() == 1


def test_claims_on_the_smoke_run_are_engine_records():
    results = smoke_chapter("intro").run()
    records = [r.record("smoke") for r in study.claims(results, study.PROFILES["smoke"])]
    by_id = claims_by_id(records)
    assert set(by_id) == {s.id for s in study.SPECS}
    for r in records:
        assert r["rule"] == "engine" and r["verdict"] in VERDICT_VALUES and r["n_units"] == 1
        assert r["values"]["x"] == [r["estimate"]]
    # the tested values are the run's own curves, not a copy: recompute them
    curves = results["curves"]
    assert by_id["stable-below-2/λ"]["estimate"] == curves[0.99][0] / curves[0.99][-1]
    assert by_id["diverges-above-2/λ"]["estimate"] == curves[1.01][-1] / curves[1.01][0]
    # the engine decides a value on the threshold's wrong side as not reproduced
    assert evaluate(study.STABLE, study.STABLE.threshold / 2).verdict == "not reproduced"


def test_gd_on_the_quadratic_is_the_per_mode_product():
    """Exact identity behind every check: GD's loss is Σ_i ½ λ_i c_i² (1 − ηλ_i)^{2k}."""
    a, theta0 = study.problem(8, 50.0, seed=3)
    lam, q = torch.linalg.eigh(a)
    lr = 0.9 * 2 / float(lam[-1])
    c = (q.T @ theta0).numpy()
    k = np.arange(21)
    theory = (0.5 * lam.numpy() * c ** 2 * np.abs(1 - lr * lam.numpy())[None, :] ** (2 * k[:, None])).sum(1)
    np.testing.assert_allclose(study.gd_losses(a, theta0, lr, 20), theory, rtol=1e-10)
    assert np.allclose(lam.numpy()[[0, -1]], [1.0, 50.0])


def test_streams_are_declared_and_seeds_differ():
    a0, t0 = study.problem(6, 10.0, seed=0)
    a1, t1 = study.problem(6, 10.0, seed=1)
    assert not torch.equal(a0, a1) and not torch.equal(t0, t1)
    assert torch.equal(a0, study.problem(6, 10.0, seed=0)[0])
    assert {study.STREAMS.role(n) for n in ("matrix", "init")} == {"test"}


@pytest.mark.slow
def test_smoke_run_records(executed_chapter):
    records = executed_chapter("intro")
    assert_well_formed(records, "intro")
    assert {r["id"] for r in records} == {s.id for s in study.SPECS}
    assert all(r["rule"] == "engine" for r in records)
