"""atlas: the chapter's smoke run (its findings' machinery, never their answers) and the study's machinery."""
import numpy as np
import pytest
import torch
from conftest import BOOK_GROUP, assert_well_formed, checked_claims, smoke_chapter

from curvnb.studies import atlas as s

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)

CPU = torch.device("cpu")
SMOKE = s.PROFILES["smoke"]


@pytest.fixture(scope="module")
def tiny():
    return SMOKE, s.run_chapter(smoke_chapter("atlas"))   # the chapter's smoke run reads the same cache


@pytest.mark.slow
def test_smoke_run_findings(executed_chapter):
    records = executed_chapter("atlas")
    assert_well_formed(records, "atlas", {fid: "finding" for fid in s.FINDINGS})
    claims = checked_claims(records, s.FINDINGS)
    # the verdict depends on sampling (and a smoke run is no evidence): not asserted
    for spec in s.SPECS:
        r = claims[spec.id]
        assert r["rule"] == "engine" and r["statistic"] == spec.statistic and r["threshold_value"] == spec.threshold
        assert r["verdict"] in ("reproduced", "not reproduced", "inconclusive")
        assert r["n_units"] == len(r["values"]["a"]) == len(r["values"]["b"]) <= SMOKE.seeds
        assert r["changed"] == spec.changed != ""


def test_units_follow_the_method():
    """Units come from the profile, fixed before the run from the method: the quick and full profiles
    reach what the exact interval of a median of paired differences needs (smoke does not: inconclusive by
    construction), and the 8 seeds quick runs (chosen for the first statistic's bootstrap) are more."""
    need = max(spec.min_units() for spec in s.SPECS)
    assert need == 6 and all(spec.interval_method == "order-statistic" for spec in s.SPECS)
    for profile in ("quick", "full"):
        assert len(s.unit_lists(s.PROFILES[profile])[0]) >= need, profile
    assert len(s.unit_lists(SMOKE)[0]) < need
    assert len(s.unit_lists(s.PROFILES["quick"])[0]) == s.PROFILES["quick"].seeds


def test_selection_and_test_seeds_are_disjoint():
    for name in s.STREAMS.streams:
        assert s.STREAMS.role(name) == ("selection" if name.startswith("select-") else "test")
    for stream in ("init", "data", "optim"):
        assert s.STREAMS.role(stream) == "test" and s.STREAMS.role(s.ROLES["selection"] + stream) == "selection"
    for profile in s.PROFILES.values():
        units, select_units = s.unit_lists(profile)
        for chapter_seed in (0, 1, 2**32 - 1):
            test = {s.STREAMS.seed(chapter_seed, st, u) for st in ("init", "data", "optim", "probe") for u in units}
            sel = {s.STREAMS.seed(chapter_seed, "select-" + st, u) for st in ("init", "data", "optim")
                   for u in select_units}
            assert len(test) == 4 * len(units) and len(sel) == 3 * len(select_units) and not test & sel
    with pytest.raises(ValueError):
        s.train_one(SMOKE, device=CPU, seed=0, name="adam", lr=1e-3, role="tuning", unit=0, budget=2, lenses=False)


def test_full_profile_is_valid():
    full = s.PROFILES["full"]
    hash(full)
    assert full.dataset == "cifar10" and full.seeds >= s.PROFILES["quick"].seeds
    assert full.rev_expansion >= 2 * full.batch_size and full.width % 2 == 0
    assert all(len(s.grid(full, n)) == 5 for n in s.TUNED)
    model = s.make_model(full, "gn", 3072, 0, CPU)
    assert model(torch.zeros(2, 3072)).shape == (2, 10)


def test_evaluation_counts_follow_the_definition():
    c = SMOKE
    assert list(s.evaluation_counts(c, "adam", 5)) == [0, 1, 2, 3, 4, 5]
    assert list(s.evaluation_counts(c, "gn", 3)) == [0, 1, 2, 3]
    # K-FAC: a refresh (10 backward passes) before steps 1, 5, 9 with update_every = 4
    assert list(s.evaluation_counts(c, "kfac-1", 9)) == [0, 11, 12, 13, 14, 25, 26, 27, 28, 39]
    # Alice: counted by the optimizer itself while training
    data = s.load_data(c, CPU)
    model = s.make_model(c, "alice", 40, 0, CPU)
    opt = s.make_optimizer(c, "alice", model, 1e-3, 0)
    x, y = data["train"]
    step = s.make_step("alice", [0.0], s.batches((x, y), 16, torch.Generator().manual_seed(0)))
    for _ in range(14):
        step(model, opt, None, None)
    assert s.evaluation_counts(c, "alice", 14)[-1] == opt.grad_evals
    # K-FAC refreshes exactly where the count says
    model = s.make_model(c, "kfac-1", 40, 0, CPU)
    opt = s.make_optimizer(c, "kfac-1", model, 1e-3, 0)
    refreshes = []
    original = opt.update_factors
    opt.update_factors = lambda inputs: (refreshes.append(1), original(inputs))
    step = s.make_step("kfac-1", [0.0])
    for k in range(9):
        step(model, opt, x[k * 16:(k + 1) * 16], y[k * 16:(k + 1) * 16])
    assert 9 + 10 * len(refreshes) == s.evaluation_counts(c, "kfac-1", 9)[-1]
    assert s.steps_within(c, "kfac-1", 25) == 5 and s.steps_within(c, "adam", 25) == 25


def test_batches_cover_each_epoch_once():
    x = torch.arange(10.0)[:, None]
    it = s.batches((x, torch.arange(10)), 3, torch.Generator().manual_seed(1))
    epoch = torch.cat([next(it)[1] for _ in range(3)])
    assert len(set(epoch.tolist())) == 9   # 3 full batches of one permutation, no repeat


def test_runs_rates_and_matching(tiny):
    c, r = tiny
    assert r["units"] == list(range(c.seeds)) and r["select_units"] == list(range(c.select_seeds))
    # every tuned rate is the argmin of the recorded validation losses
    for name in s.TUNED:
        if name != "sgd":   # SGD's grid feeds sgd-large by its own rule
            scores = {lr: s.select_score(r["selection"][(name, lr)]) for lr in s.grid(c, name)}
            assert r["rates"][name] == min(scores, key=scores.get)
    assert r["rates"]["sgd-small"] == pytest.approx(r["rates"]["sgd-large"] / 10)
    assert r["rates"]["adam-small"] == pytest.approx(r["rates"]["adam"] / 10)
    # each run stops at the budget; the matched probe is the first one at or below the target
    target = r["matched"]["target"]
    assert target == pytest.approx(1.05 * max(run["loss"][-1] for rs in r["runs"].values() for run in rs
                                              if not run["diverged"]))
    inits = {}
    for name, rs in r["runs"].items():
        for run, i in zip(rs, r["matched"]["index"][name]):
            assert run["role"] == "test" and run["init_seed"] == s.STREAMS.seed(0, "init", run["unit"])
            inits.setdefault((name in s.REVERSIBLE, run["unit"]), set()).add(run["init_seed"])
            assert run["evals"][-1] <= c.budget < s.evaluation_counts(c, name, run["steps"] + 1)[-1]
            assert run["loss"][i] <= target and np.all(run["loss"][:i] > target)
            assert run["ntk"][0] == pytest.approx(0.0, abs=1e-9) and run["cka"][0] == pytest.approx(1.0)
            assert run["ntk_move"][0] == 0 and np.all(np.asarray(run["ntk_move"]) >= 0)
            assert len(run["grad_norms_init"]) == (c.depth if name not in s.REVERSIBLE else 2 * c.rev_depth)
    assert all(len(v) == 1 for v in inits.values())   # runs of one unit share their initialization: paired
    # the same unit of another chapter seed starts elsewhere
    a = s.make_model(c, "adam", 40, s.STREAMS.seed(0, "init", 0), CPU).layers[0].weight
    b = s.make_model(c, "adam", 40, s.STREAMS.seed(1, "init", 0), CPU).layers[0].weight
    assert not torch.equal(a, b)


def test_claims_table_figures_views(tiny):

    c, r = tiny
    results = s.claims(r)
    assert [res.id for res in results] == list(s.FINDINGS)
    for res, spec in zip(results, s.SPECS):
        a, b, key = s.COMPARED[spec.id]
        assert res.spec is spec and res.n_units == c.seeds < spec.min_units()
        assert res.verdict == "inconclusive" and res.interval is None   # too few units, by construction
        np.testing.assert_allclose(res.values["a"], r["matched"]["values"][a][key])
    records = [res.record("smoke") for res in results]
    text = s.findings_markdown(records, r)
    assert text.count("**inconclusive**") == len(s.SPECS)
    assert text.count("‖K_t − K_0‖/‖K_0‖") == 2      # both laziness findings
    registration = s.registration_markdown(r)
    assert "kfac-first *no*" in registration
    # the replaced rule, answered on the same values: its bootstrap also needs 8 seeds, so none at smoke
    assert [(b.id, b.statistic, b.threshold) for b in s.BOOTSTRAP_SPECS] == \
        [(a.id, "ratio_of_medians_paired", 1.0) for a in s.SPECS]
    assert registration.count("too few seeds for its interval") == len(s.SPECS)
    for group in (0, 1):
        for point in ("matched", "budget"):
            table = s.matched_table_html(r, group, point)
            assert table.count("<tr><td") == len(s.RUNS) and "nan" not in table
    assert s.at_budget(r)["adam"]["evals"] == [float(c.budget)] * c.seeds
    assert s.init_markdown(r).count(",") >= c.depth - 1 + 2 * c.rev_depth - 1
    assert s.kernel_scale_note([2.0, 3.0, 4.0], [1.0, 1.0, 1.0]).endswith("ratio of medians is 3: by that measure "
                                                                          "the kernel moved more.")
    assert "undefined" in s.kernel_scale_note([1.0], [0.0])
    M, keys = s.heatmap_matrix(r)
    assert M.shape == (len(s.RUNS), len(keys)) and np.nanmin(M) >= 0 and np.nanmax(M) <= 1
    options = s.widget_options()
    assert np.prod([len(v) for v in options["static_values"].values()]) <= 40
    with pytest.raises(ValueError):
        s.draw_pair(r, optimizer_a="nope")


def test_answers_compared_with_the_study_chapters_own_verdict(tmp_path, monkeypatch):
    from curvnb.claims import ClaimSpec, evaluate, write_claims

    monkeypatch.setenv("CURVNB_BUILD", str(tmp_path))
    assert s.study_record("buffelli2024", "lazy") is None and s.compared_with_study("buffelli2024", "lazy", "x") == ""
    spec = ClaimSpec(id="lazy", statement="GN is lazy", statistic="median", direction="less", threshold=1.0)
    write_claims(tmp_path / "claims" / "buffelli2024.json", [evaluate(spec, [2.0] * 6)], "quick")
    assert s.study_record("buffelli2024", "other") is None
    text = s.compared_with_study("buffelli2024", "lazy", "digits")
    assert "(digits, quick profile) the claim is *not reproduced*" in text
    with pytest.raises(ValueError, match="does not declare it"):   # curvnb run orders atlas after its inputs
        s.study_record("huh2020", "lazy")
