"""Quick-profile claims of the orvieto2021 chapter (executes the chapter once per session)."""
import pytest
from conftest import claims_by_id

ALL = {"chain-median", "gradient-slope", "relu-collapse", "hessian-vanishes", "balanced-escape", "rescaling",
       "deep-narrow-mlp"}
# The brief expects all seven to hold. In the quick profile (seed 0) three did not reproduce as stated
# (reported as failing in the chapter, thresholds untouched): the d = 64 slope is −0.0200 against a
# "> −0.02" threshold, the L/d = 1 medians spread 0.83 decades (< 0.5 asked), and the Hessian's top
# |λ| fell by 1.8 decades from L = 8 to 64 (≥ 2 asked). The parts of those claims that did hold are
# asserted separately below.
EXPECTED_TO_HOLD = {"chain-median", "balanced-escape", "rescaling", "deep-narrow-mlp"}


@pytest.mark.slow
def test_quick_claims(executed_chapter):
    claims = claims_by_id(executed_chapter("orvieto2021"))
    assert set(claims) == ALL
    for cid in EXPECTED_TO_HOLD:
        assert claims[cid]["passed"], claims[cid]
    slope = claims["gradient-slope"]["measured"]
    assert abs(slope["relu d=16"] / slope["theory relu d=16"] - 1) <= 0.4
    assert abs(slope["linear d=4"] / slope["theory linear d=4"] - 1) <= 0.4
    assert slope["relu d=64"] > 0.5 * slope["relu d=16"]  # wide nets decay much more slowly
    assert claims["relu-collapse"]["measured"]["drop from L/d=1 to 2 (decades)"] >= 1
    assert claims["hessian-vanishes"]["measured"]["ratio"] < 0.1  # the curvature does vanish with depth
    mlp = claims["deep-narrow-mlp"]["measured"]
    assert mlp["best plain SGD CE"] - mlp["best Adam CE"] >= 0.5
