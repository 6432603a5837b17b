"""buffelli2024: the chapter's smoke run (record machinery and exact identities asserted, statistical
verdicts not) and the study's machinery: seed streams, rate selection, diverged units, units per profile."""
from dataclasses import replace

import numpy as np
import pytest
from conftest import BOOK_GROUP, assert_well_formed, checked_claims, smoke_chapter

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)

EXACT = {"exactness", "inverse", "min-norm", "right-inverse-longer"}  # exact float64 computations: must hold
STATISTICAL = {"full-batch-speed", "mini-batch-overfit", "mini-batch-train-gap", "generalization", "lazy", "lazy-cka"}


def _specs():
    from curvnb.studies import buffelli2024 as s
    return {spec.id: spec for spec in s.SPECS}


@pytest.mark.slow
def test_smoke_run_claims(executed_chapter):
    from curvnb import book
    from curvnb.claims import VERDICTS3, read_claims_file

    records = executed_chapter("buffelli2024")
    specs = _specs()
    assert_well_formed(records, "buffelli2024", {i: spec.kind for i, spec in specs.items()})
    claims = checked_claims(records, set(specs), EXACT)   # exact float64 identities hold at any size
    assert set(specs) == EXACT | STATISTICAL
    for cid, r in claims.items():
        spec = specs[cid]
        assert r["rule"] == "engine" and r["verdict"] in VERDICTS3 and r["statistic"] == spec.statistic
        assert r["threshold_value"] == spec.threshold and r["direction"] == spec.direction
        if cid in STATISTICAL:   # values kept: one pair (or value) per test unit that did not diverge
            kept = r["values"].get("a", r["values"].get("x"))
            assert len(kept) == r["n_units"] and r["method"] == "student-t"
            assert "rates (selected)" in r["detail"] and "diverged test seeds" in r["detail"]
    assert claims["exactness"]["estimate"] < 1e-8 and claims["right-inverse-longer"]["estimate"] > 1
    run, _ = read_claims_file(book.build_dir() / "claims" / "buffelli2024.json")
    assert run["chapter"] == "buffelli2024" and run["profile"] == "smoke"


def test_units_per_profile_reach_the_methods_minimum():
    """Decided from the config and the specs, before any run: quick and full have enough test seeds."""
    from curvnb.studies import buffelli2024 as s

    need = max(spec.min_units() for spec in s.SPECS if spec.id in STATISTICAL)
    assert need == 2   # Student t
    for profile in ("quick", "full"):
        assert s.PROFILES[profile].test_seeds >= need, profile


def test_selection_and_test_seeds_are_disjoint():
    from curvnb.studies import buffelli2024 as s

    config = s.PROFILES["full"]
    seen: dict[int, tuple] = {}
    for chapter_seed in range(200):
        us = s.units(config, chapter_seed)
        for role, u in us.items():
            for what in ("init", "order"):
                for i, seed in enumerate(u.seeds(what)):
                    assert seed not in seen, (seed, seen.get(seed), (chapter_seed, role, what, i))
                    seen[seed] = (chapter_seed, role, what, i)
    roles = {name: st.role for name, st in s.STREAMS.streams.items()}
    assert roles["select-init"] == roles["select-order"] == "selection" and roles["init"] == roles["order"] == "test"
    with pytest.raises(ValueError, match="test_seeds"):
        s.units(replace(config, test_seeds=1), 0)


def _run(train_loss, val_last, diverged):
    train_loss = np.asarray(train_loss, float)
    return {"train_loss": train_loss, "step": np.arange(len(train_loss)),
            "val_loss": np.array([[9.0] * len(val_last), val_last]), "diverged": np.asarray(diverged)}


def test_selection_rules():
    from curvnb.studies import buffelli2024 as s

    fast = _run([[10, 10], [0.5, 5], [0.1, 0.5]], [2.0, 2.0], [False, False])     # steps 1, 2 → 1.5
    slow = _run([[10, 10], [5, 5], [0.5, 0.5]], [0.5, 0.5], [False, False])       # steps 2, 2 → 2
    never = _run([[10, 10], [9, 9], [8, 8]], [0.1, 0.1], [False, False])          # censored: 3, 3
    bad = _run([[10, 10], [0.1, np.nan], [0.1, np.nan]], [0.1, np.nan], [False, True])
    assert s.speed_score(fast) == 1.5 and s.speed_score(never) == 3 and s.speed_score(bad) == np.inf
    assert s.validation_score(bad) == np.inf and s.validation_score(slow) == 0.5
    runs = {("gn", 0.3): slow, ("gn", 1.0): fast, ("gn", 3.0): bad, ("adam", 1e-3): never, ("adam", 1e-2): never}
    assert s.select_lr(runs, "gn", s.speed_score) == 1.0        # the claim's objective: fewest steps
    assert s.select_lr(runs, "gn", s.validation_score) == 0.3   # validation loss picks another rate
    assert s.select_lr(runs, "adam", s.speed_score) == 1e-3     # a tie: the first rate of the grid
    assert s.steps_to_drop(np.array([[10.0, 10.0], [2.0, 5.0], [0.5, 2.0]]), np.array([0, 1, 2])).tolist() == [2.0, 3.0]


def test_diverged_units_enter_no_contrast():
    from curvnb.studies.buffelli2024 import report as r

    res = r._decide(r.SPEED, (np.array([5.0, 6.0, 7.0]), np.array([np.nan, 2.0, 3.0])), np.array([True, False, False]), {})
    assert res.n_units == 2 and res.values["a"] == [6.0, 7.0] and res.detail["diverged test seeds"] == [0]
    none = r._decide(r.SPEED, (np.array([1.0, 2.0]), np.array([1.0, 2.0])), np.array([True, True]), {})
    assert none.verdict == "inconclusive" and none.n_units == 0 and none.interval is None


def test_run_report_figures_headless():
    from curvnb.claims import VERDICTS3
    from curvnb.studies import buffelli2024 as s

    ch = smoke_chapter("buffelli2024")
    r = ch.run()   # the chapter's smoke run reads the same cache
    c = s.PROFILES["smoke"]
    sel_seeds = set(r["unit_seeds"]["selection"]["init"]) | set(r["unit_seeds"]["selection"]["order"])
    test_seeds = set(r["unit_seeds"]["test"]["init"]) | set(r["unit_seeds"]["test"]["order"])
    assert len(test_seeds) == 2 * c.test_seeds and not sel_seeds & test_seeds
    for group in s.GROUPS:
        for name in s.TUNED:
            lr = r["selected"][(group, name)]
            assert r[group][name]["lr"] == lr and lr in r["grids"][name]
            assert lr == s.select_lr(r["selection"][group], name, s.SCORES[group])
            assert r[group][name]["train_loss"].shape[1] == c.test_seeds
            assert r["selection"][group][(name, lr)]["train_loss"].shape[1] == c.selection_seeds
    records = [x.record("smoke") for x in s.claims(r, ch.cached(s.run_exactness, key="exactness"))]
    assert all(x["verdict"] in VERDICTS3 for x in records)
    text = s.summary_markdown(records)
    for x in records:
        if x["verdict"] != "reproduced":
            assert f"**{x['id']}**" in text
    ran = s.what_we_ran_markdown(r, ch.run_metadata())
    assert f"exact GN {r['selected'][('full', 'gn')]:g}" in ran and f"{c.test_seeds} test seeds" in ran
    assert "control" in s.rich_markdown(r) and "selection seed" in s.selection_markdown(r)
    s.set_widget_results(r)
    assert s.draw_sweep(gn_lr=1.0, adam_lr=3e-3).axes
    with pytest.raises(ValueError, match="cached"):
        s.draw_sweep(gn_lr=0.5, adam_lr=3e-3)


def test_networks_use_all_64_bits_of_their_seed():
    """Chapter seeds 0 and 1 differ only above bit 32 of a derived seed (torch's manual_seed keeps 32 on the CPU)."""
    import torch
    from curvnb.studies import buffelli2024 as s

    c = s.PROFILES["smoke"]
    net = lambda k: s.make_net(c, 8, 4, s.STREAMS.seed(k, "init", 0), expansion=8)  # noqa: E731
    a, a2, b = net(0), net(0), net(1)
    assert torch.equal(a.P, a2.P) and torch.equal(a.blocks[0].F.W, a2.blocks[0].F.W)
    assert not torch.equal(a.P, b.P) and not torch.equal(a.blocks[0].F.W, b.blocks[0].F.W)
