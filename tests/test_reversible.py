"""ReversibleNet: exact inversion in float64."""
import pytest
import torch

from curvnb.models import ReversibleNet


@pytest.mark.parametrize("depth", [1, 3])
def test_inverse_reconstructs_inputs(depth):
    net = ReversibleNet(10, 4, width=12, expansion=40, depth=depth, init_scale=2.0, seed=1, dtype=torch.float64)
    x = torch.randn(24, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = net.features(x)
    x_rec = net.inverse(h)
    err = (x_rec - x).norm() / x.norm()
    assert err < 1e-10, err
    assert (h - net.block_inputs(x)[0]).norm() > 0.1 * h.norm()  # the blocks do change the features


def test_inverse_jvp_matches_autograd():
    net = ReversibleNet(12, 4, width=12, expansion=20, depth=2, seed=2, dtype=torch.float64)
    block = net.blocks[1]
    x = torch.randn(5, 12, dtype=torch.float64)
    y = block(x)
    dy = torch.randn_like(y)
    dx = block.inverse_jvp(y, dy)
    _, jv = torch.func.jvp(block, (x,), (dx,))
    assert torch.allclose(jv, dy, atol=1e-12)


def test_bad_width():
    with pytest.raises(ValueError, match="even"):
        ReversibleNet(4, 2, width=7, expansion=3, depth=1)
