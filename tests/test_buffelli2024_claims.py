"""buffelli2024: the chapter's smoke run (exact checks asserted, statistical verdicts not) and the study's
machinery."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import BOOK_GROUP, assert_over_seeds, assert_well_formed, checked_claims, smoke_chapter

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)

ALL = {"exactness", "inverse", "min-norm", "full-batch-speed", "mini-batch-overfit", "generalization", "lazy"}
EXACT = {"exactness", "inverse", "min-norm"}  # exact float64 computations: must hold
STATISTICAL = {"full-batch-speed": 3, "mini-batch-overfit": 3, "generalization": 3, "lazy": 3}


@pytest.mark.slow
def test_smoke_run_claims(executed_chapter):
    from curvnb import book
    from curvnb.claims import read_claims_file

    records = executed_chapter("buffelli2024")
    assert_well_formed(records, "buffelli2024")
    claims = checked_claims(records, ALL, EXACT)   # exact float64 identities hold at any size
    m = claims["exactness"]["measured"]
    assert m["max_residual"] < 1e-8 and m["L1_vs_pinv"] < 1e-8
    assert all(claims[c]["kind"] == "check" for c in ("inverse", "min-norm"))
    assert all(claims[c]["kind"] == "paper" and claims[c]["source"] for c in STATISTICAL)
    assert_over_seeds(claims, STATISTICAL)  # pass/fail of these depends on sampling: not asserted
    for cid in STATISTICAL:
        assert len(claims[cid]["measured"]["per_seed"]) == claims[cid]["seeds"]
    run, _ = read_claims_file(book.build_dir() / "claims" / "buffelli2024.json")
    assert run["chapter"] == "buffelli2024" and run["profile"] == "smoke"


def _tiny_config():
    from curvnb.studies import buffelli2024 as s
    return s.PROFILES["smoke"]


def test_run_claims_summary_figures_headless():
    from curvnb.claims import write_claims
    from curvnb.figures import apply_style, smallest_text_px
    from curvnb.studies import buffelli2024 as s

    c = _tiny_config()
    r = smoke_chapter("buffelli2024").run()   # the chapter's smoke run reads the same cache
    assert r["seeds"] == [0, 1, 2]
    assert r["design_condition"]["wide"] >= 1 and r["selected"][("rich", "gn")] in r["grids"]["gn"]
    assert "control" in s.rich_markdown(r)
    for regime in ("full", "mini"):
        for name in ("gn", "adam"):
            assert r["selected"][(regime, name)] in r["grids"][name]
        assert len(c.gn_lrs) == len(c.adam_lrs)
        h = r[regime][("gn", 1.0)]
        assert h["val_loss"].shape == (len(h["step"]), 3)
    cl = s.claims(r, c)
    assert {x.id for x in cl} == ALL and all(x.passed for x in cl if x.id in EXACT)
    for x in cl:
        assert (x.seeds == 3 and x.interval is not None) if x.id in STATISTICAL else (x.seeds == 1 and x.interval is None)
    records = write_claims(__import__("pathlib").Path("/tmp") / "bf_test_claims.json", cl, "quick")
    text = s.summary_markdown(records, r)
    for x in cl:  # one generated verdict per claim, consistent with its record
        if x.id != "min-norm":
            assert ("does not reproduce" if not x.passed else "reproduces") in text
    assert "brief" not in text and "brief" not in s.selection_markdown(r)
    apply_style()
    for fig in (s.figure_training(r), s.figure_lr_sweep(r), s.figure_batch_overfit(r), s.figure_lazy(r)):
        assert fig.get_size_inches()[0] <= 6.8 + 1e-9 and smallest_text_px(fig) >= 9
    s.set_widget_results(r)
    assert s.draw_sweep(gn_lr=1.0, adam_lr=3e-3).axes
    with pytest.raises(ValueError, match="cached"):
        s.draw_sweep(gn_lr=0.5, adam_lr=3e-3)


def test_selection_uses_validation_loss_only():
    from curvnb.studies import buffelli2024 as s

    def run(val, test):
        return {"val_loss": np.array([[9.0, 9.0], val]), "test_loss": np.array([[9.0, 9.0], test])}
    runs = {("gn", 0.3): run([1.0, 1.2], [0.1, 0.1]), ("gn", 1.0): run([0.9, 1.0], [5.0, 5.0]),
            ("gn", 3.0): run([0.5, np.nan], [0.0, 0.0]), ("adam", 1e-3): run([2.0, 2.0], [0.0, 0.0])}
    assert s.select_lr(runs, "gn") == 1.0  # lowest mean validation loss; a diverged seed counts as +inf
    assert s.select_lr(runs, "adam") == 1e-3


def test_steps_to_drop_and_intervals():
    from curvnb.studies import buffelli2024 as s

    loss = np.array([[10.0, 10.0], [2.0, 5.0], [0.5, 2.0]])
    assert s.steps_to_drop(loss, np.array([0, 1, 2])).tolist() == [2.0, 3.0]  # censored: never reached → 3
    assert s._interval(np.array([2.0, 2.0, 2.0])) == (2.0, 2.0)
    lo, hi = s._interval(np.array([1.0, 2.0, 3.0]))
    assert lo < 2.0 < hi and np.isclose(hi - 2.0, 4.302653 * 1.0 / np.sqrt(3), rtol=1e-5)


def test_too_few_seeds_rejected():
    from curvnb.studies import buffelli2024 as s
    with pytest.raises(ValueError, match="3 seeds"):
        s.seed_list(replace(_tiny_config(), seeds=2), 0)
