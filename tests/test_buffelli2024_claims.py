"""buffelli2024: quick-profile claims (executes the chapter)."""
import pytest
from conftest import checked_claims

ALL = {"exactness", "inverse", "full-batch-speed", "mini-batch-overfit", "generalization", "lazy"}
EXPECTED_TO_HOLD = {"exactness", "inverse"}


@pytest.mark.slow
def test_quick_claims(executed_chapter):
    claims = checked_claims(executed_chapter("buffelli2024"), ALL, EXPECTED_TO_HOLD)
    m = claims["exactness"]["measured"]
    assert m["L3_residual"] < 1e-8 and m["L1_vs_pinv"] < 1e-8


def test_widget_and_claims_headless():
    import torch
    from dataclasses import replace
    from curvnb.studies import buffelli2024 as s
    c = replace(s.PROFILES["quick"], full_batch_n=40, expansion=48, full_steps=3, mini_steps=3, probe_every=1,
                adam_lrs=(1e-2,), probe_n=8, rich_expansion=16, sweep_gn_lrs=(1.0,), sweep_batch_sizes=(16,))
    r = s.run(c, device=torch.device("cpu"), seed=0)
    cl = {x.id: x for x in s.claims(r, c)}
    assert set(cl) == ALL and cl["exactness"].passed
    s.set_widget_results(r)
    fig = s.draw_sweep(gn_lr=1.0, batch_size=16)
    assert fig.axes
    with pytest.raises(ValueError, match="cached"):
        s.draw_sweep(gn_lr=0.5, batch_size=16)
