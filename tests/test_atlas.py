"""atlas: the chapter's smoke run (its findings' machinery, never their answers) and the study's machinery."""
import numpy as np
import pytest
import torch
from conftest import BOOK_GROUP, assert_over_seeds, assert_well_formed, checked_claims, smoke_chapter

from curvnb.studies import atlas as s

pytestmark = BOOK_GROUP   # with the chapter's smoke run (conftest)

CPU = torch.device("cpu")


def _tiny_config():
    return s.PROFILES["smoke"]   # two rates per optimizer, tiny sizes: fast


@pytest.fixture(scope="module")
def tiny():
    c = _tiny_config()
    return c, s.run_chapter(smoke_chapter("atlas"))   # the chapter's smoke run reads the same cache


@pytest.mark.slow
def test_smoke_run_findings(executed_chapter):
    from curvnb import book
    from curvnb.claims import read_claims_file

    records = executed_chapter("atlas")
    assert_well_formed(records, "atlas", {fid: "finding" for fid in s.FINDINGS})
    claims = checked_claims(records, s.FINDINGS)
    # yes/no depends on sampling (and a smoke run is no evidence): not asserted
    assert_over_seeds(claims, {fid: s.PROFILES["smoke"].seeds for fid in s.FINDINGS})
    run, _ = read_claims_file(book.build_dir() / "claims" / "atlas.json")
    assert run["chapter"] == "atlas" and run["profile"] == "smoke"


def test_full_profile_is_valid():
    full = s.PROFILES["full"]
    hash(full)
    assert full.dataset == "cifar10" and full.seeds > s.PROFILES["quick"].seeds >= 3
    assert full.rev_expansion >= 2 * full.batch_size and full.width % 2 == 0
    assert all(len(s.grid(full, n)) == 5 for n in s.TUNED)
    model = s.make_model(full, "gn", 3072, 0, CPU)
    assert model(torch.zeros(2, 3072)).shape == (2, 10)


def test_evaluation_counts_follow_the_definition():
    c = _tiny_config()
    assert list(s.evaluation_counts(c, "adam", 5)) == [0, 1, 2, 3, 4, 5]
    assert list(s.evaluation_counts(c, "gn", 3)) == [0, 1, 2, 3]
    # K-FAC: a refresh (10 backward passes) before steps 1, 5, 9 with update_every = 4
    assert list(s.evaluation_counts(c, "kfac-1", 9)) == [0, 11, 12, 13, 14, 25, 26, 27, 28, 39]
    # Alice: counted by the optimizer itself while training
    data = s.load_data(c, CPU)
    model = s.make_model(c, "alice", 40, 0, CPU)
    opt = s.make_optimizer(c, "alice", model, 1e-3, 0)
    step = s.make_step("alice", [0.0])
    x, y = data["train"]
    for k in range(14):
        step(model, opt, x[k * 16:(k + 1) * 16], y[k * 16:(k + 1) * 16])
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


def test_runs_rates_and_matching(tiny):
    c, r = tiny
    assert r["seeds"] == [100, 101, 102] and not set(r["seeds"]) & set(r["select_seeds"])
    # every tuned rate is the argmin of the recorded validation losses
    for name in s.TUNED:
        if name in r["rates"]:
            scores = {lr: s.select_score([{"loss": v["loss"], "diverged": v["diverged"]}
                                          for v in r["selection"][(name, lr)]]) for lr in s.grid(c, name)}
            assert r["rates"][name] == min(scores, key=scores.get)
    assert r["rates"]["sgd-small"] == pytest.approx(r["rates"]["sgd-large"] / 10)
    assert r["rates"]["adam-small"] == pytest.approx(r["rates"]["adam"] / 10)
    # each run stops at the budget; the matched probe is the first one at or below the target
    target = r["matched"]["target"]
    assert target == pytest.approx(1.05 * max(run["loss"][-1] for rs in r["runs"].values() for run in rs
                                              if not run["diverged"]))
    for name, rs in r["runs"].items():
        for run, i in zip(rs, r["matched"]["index"][name]):
            assert run["evals"][-1] <= c.budget < s.evaluation_counts(c, name, run["steps"] + 1)[-1]
            assert run["loss"][i] <= target and np.all(run["loss"][:i] > target)
            assert run["ntk"][0] == pytest.approx(0.0, abs=1e-9) and run["cka"][0] == pytest.approx(1.0)
            assert run["ntk_move"][0] == 0 and np.all(np.asarray(run["ntk_move"]) >= 0)
            assert len(run["grad_norms_init"]) == (c.depth if name not in s.REVERSIBLE else 2 * c.rev_depth)


def test_claims_table_figures_views(tiny):
    from curvnb.figures import apply_style, smallest_text_px

    c, r = tiny
    claims = s.claims(r, c)
    assert [cl.id for cl in claims] == list(s.FINDINGS)
    for cl in claims:
        assert cl.kind == "finding" and cl.seeds == 3 and cl.interval[0] <= cl.interval[1]
        assert cl.passed == (cl.interval[1] < 1.0)
    for group in (0, 1):
        for point in ("matched", "budget"):
            table = s.matched_table_html(r, group, point)
            assert table.count("<tr><td") == len(s.RUNS) and "nan" not in table
    budget = s.at_budget(r)
    assert budget["adam"]["evals"] == [float(c.budget)] * 3
    assert s.init_markdown(r).count(",") >= c.depth - 1 + 2 * c.rev_depth - 1
    assert "yes" in s.summary_markdown(r) or "no" in s.summary_markdown(r)
    assert s.summary_markdown(r).count("‖K_t − K_0‖/‖K_0‖") == 2      # both laziness findings
    # the scale-sensitive measure is reported beside the registered one, its agreement generated
    assert s.kernel_scale_note([2.0, 3.0, 4.0], [1.0, 1.0, 1.0], lazier=True).endswith("its size moved more.")
    assert s.kernel_scale_note([0.1, 0.2, 0.3], [1.0, 1.0, 1.0], lazier=True).endswith("both measures agree.")
    assert "ratio is 3 [" in s.kernel_scale_note([2.0, 3.0, 4.0], [1.0, 1.0, 1.0], lazier=False)
    M, keys = s.heatmap_matrix(r)
    assert M.shape == (len(s.RUNS), len(keys)) and np.nanmin(M) >= 0 and np.nanmax(M) <= 1
    apply_style()
    import matplotlib.pyplot as plt
    for fig in (s.figure_lenses(r, ("loss", "test_acc", "ntk", "cka", "lam_h", "lam_k")),
                s.figure_lenses(r, ("tr_k", "rho", "hess", "ntk_move")), s.figure_heatmap(r), s.draw_pair(r)):
        assert smallest_text_px(fig) >= 9
        plt.close(fig)
    options = s.widget_options()
    n_frames = np.prod([len(v) for v in options["static_values"].values()])
    assert n_frames <= 40
    with pytest.raises(ValueError):
        s.draw_pair(r, optimizer_a="nope")


def test_answers_compared_with_the_study_chapters_own_verdict(tmp_path, monkeypatch):
    from curvnb.claims import Claim, write_claims

    monkeypatch.setenv("CURVNB_BUILD", str(tmp_path))
    assert s.study_verdict("buffelli2024", "lazy") is None and s._compared_with_study(True, "buffelli2024", "lazy", "x") == ""
    write_claims(tmp_path / "claims" / "buffelli2024.json", [Claim("lazy", "GN is lazy", 0.1, "< 0", False)], "quick")
    assert s.study_verdict("buffelli2024", "lazy") is False and s.study_verdict("buffelli2024", "other") is None
    assert s._compared_with_study(True, "buffelli2024", "lazy", "digits").startswith(", whereas the study chapter's")
    assert s._compared_with_study(False, "buffelli2024", "lazy", "digits").startswith(", as in the study chapter's")
