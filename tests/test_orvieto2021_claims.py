"""Quick-profile claims of the orvieto2021 chapter (executes the chapter once per session)."""
import pytest
from conftest import checked_claims

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
    claims = checked_claims(executed_chapter("orvieto2021"), ALL, EXPECTED_TO_HOLD)
    slope = claims["gradient-slope"]["measured"]
    assert abs(slope["relu d=16"] / slope["theory relu d=16"] - 1) <= 0.4
    assert abs(slope["linear d=4"] / slope["theory linear d=4"] - 1) <= 0.4
    assert slope["relu d=64"] > 0.5 * slope["relu d=16"]  # wide nets decay much more slowly
    assert claims["relu-collapse"]["measured"]["drop from L/d=1 to 2 (decades)"] >= 1
    assert claims["hessian-vanishes"]["measured"]["ratio"] < 0.1  # the curvature does vanish with depth
    mlp = claims["deep-narrow-mlp"]["measured"]
    assert mlp["best plain SGD CE"] - mlp["best Adam CE"] >= 0.5


def test_widget_view_headless():
    from curvnb.studies import orvieto2021 as study

    fig = study.draw_init(depth=8, width=4, init="xavier", activation="linear", seeds=3)
    ax_grad, ax_hess = fig.axes[:2]
    assert "gradient" in ax_grad.get_title() and "Hessian" in ax_hess.get_title()
    depths = list(ax_grad.lines[0].get_xdata())
    assert depths == [2, 4, 8] and len(ax_grad.lines) == 2  # median + theory slope


def test_fashion_mnist_path_smoke(tmp_path, monkeypatch):
    """The full profile's data path (local IDX folder) runs end to end on a tiny fake data set."""
    import dataclasses
    import gzip
    import struct

    import numpy as np
    import torch

    from curvnb.studies import orvieto2021 as study

    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, arr in (("train-images-idx3-ubyte", rng.integers(0, 256, (40, 28, 28))),
                      ("train-labels-idx1-ubyte", np.arange(40) % 10),
                      ("t10k-images-idx3-ubyte", rng.integers(0, 256, (5, 28, 28))),
                      ("t10k-labels-idx1-ubyte", np.arange(5) % 10)):
        header = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + b"".join(struct.pack(">I", s) for s in arr.shape)
        gzip.open(folder / (name + ".gz"), "wb").write(header + arr.astype(np.uint8).tobytes())
    monkeypatch.setenv("CURVNB_DATA", str(tmp_path))
    cfg = dataclasses.replace(study.PROFILES["full"], train_size=32, arch_examples=16)
    x, y = study.load_classification(cfg, seed=0)
    assert x.shape == (32, 784) and y.dtype == torch.long
    x_all, _ = study.load_classification(dataclasses.replace(cfg, train_size=0), seed=0)
    assert x_all.shape == (40, 784) and torch.allclose(x_all.mean(0), torch.zeros(784), atol=1e-5)
    monkeypatch.setenv("CURVNB_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="fashion-mnist"):
        study.load_classification(cfg, seed=0)
