"""Exact GN: the update against explicitly formed Jacobians (torch.func.jacrev), float64."""
import pytest
import torch
from torch.func import functional_call, jacrev

from curvnb.models import ReversibleNet
from curvnb.optim import ExactGaussNewton
from curvnb.optim.exact_gauss_newton import function_space_step


def _setup(depth, k=4, d=12, M=40, n=24, seed=0):
    net = ReversibleNet(10, k, width=d, expansion=M, depth=depth, init_scale=1.0, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(n, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    return net, x, y


def _jacobian(net, x, fn="forward"):
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach() for p in net.parameters())

    def f(*ps):
        out = functional_call(net, dict(zip(names, ps)), (x,)) if fn == "forward" else \
            functional_call(net, dict(zip(names, ps)), (x,), strict=False)
        return out.reshape(-1)
    jac = jacrev(f, argnums=tuple(range(len(params))))(*params)
    return torch.cat([j.reshape(j.shape[0], -1) for j in jac], dim=1)


def _update(opt, x, eps):
    return torch.cat([u.reshape(-1) for blk in opt.direction(x, eps) for u in blk])


@pytest.mark.parametrize("depth", [1, 3])
def test_right_inverse(depth):
    net, x, y = _setup(depth)
    opt = ExactGaussNewton(net, lr=0.7)
    eps = function_space_step(net(x), y, "cross_entropy", 0.7)
    J = _jacobian(net, x)
    u = _update(opt, x, eps)
    rel = (J @ u - eps.reshape(-1)).norm() / eps.norm()
    assert rel < 1e-8, rel


def test_one_block_square_readout_is_moore_penrose():
    net, x, y = _setup(1, k=12)
    eps = function_space_step(net(x), y, "cross_entropy", 1.0)
    J = _jacobian(net, x)
    u = _update(ExactGaussNewton(net), x, eps)
    ref = torch.linalg.pinv(J) @ eps.reshape(-1)
    assert (u - ref).norm() / ref.norm() < 1e-8


@pytest.mark.parametrize("depth", [1, 3])
def test_equals_stated_generalized_inverse(depth):
    """u = (1/L) Σ_l J_l⁺ R⁺ ε with J_l the explicit feature Jacobian of block l's parameters."""
    net, x, y = _setup(depth)
    eps = function_space_step(net(x), y, "cross_entropy", 1.0)
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach() for p in net.parameters())
    feats = lambda *ps: functional_call(net, dict(zip(names, ps)), (x,), strict=False)  # noqa: E731
    jac = jacrev(lambda *ps: net.__class__.features(_Bound(net, dict(zip(names, ps))), x).reshape(-1),
                 argnums=tuple(range(len(params))))(*params)
    cols = [j.reshape(j.shape[0], -1) for j in jac]
    dh = (eps @ net.U.T).reshape(-1)
    ref = torch.cat([torch.linalg.pinv(torch.cat(cols[4 * l: 4 * l + 4], 1)) @ dh for l in range(depth)]) / depth
    u = _update(ExactGaussNewton(net), x, eps)
    assert (u - ref).norm() / ref.norm() < 1e-6
    # with k < d the construction is a right inverse but not the Moore–Penrose solution
    J = _jacobian(net, x)
    mp = torch.linalg.pinv(J) @ eps.reshape(-1)
    assert (u - mp).norm() / mp.norm() > 1e-3
    assert u.norm() >= mp.norm() * (1 - 1e-10)


class _Bound:
    """Calls ``ReversibleNet.features`` with substituted parameters."""

    def __init__(self, net, params):
        self.net, self.params = net, params

    def block_inputs(self, x):
        return functional_call(self.net, self.params, (x,), strict=False) if False else \
            _block_inputs(self.net, self.params, x)


def _block_inputs(net, params, x):
    hs = [net.embed(x)]
    for l, block in enumerate(net.blocks):
        p = {k.split(".", 2)[2]: v for k, v in params.items() if k.startswith(f"blocks.{l}.")}
        hs.append(functional_call(block, p, (hs[-1],)))
    return hs


def test_mse_small_step_moves_outputs_by_eps():
    """A real step moves the outputs by ε up to second-order terms (relative error ∝ lr)."""
    net, x, _ = _setup(3)
    y = torch.randn(24, 4, dtype=torch.float64)
    errs = []
    for lr in (1e-2, 1e-3):
        net, x, _ = _setup(3)
        f0 = net(x).detach()
        ExactGaussNewton(net, lr=lr, loss="mse").step(x, y)
        eps = -lr * (f0 - y)
        errs.append(float((net(x).detach() - f0 - eps).norm() / eps.norm()))
    assert errs[0] < 0.1 and errs[1] < 0.2 * errs[0], errs


def test_step_closure_and_errors():
    net, x, y = _setup(2)
    opt = ExactGaussNewton(net, lr=0.5)
    l0 = opt.step(closure=lambda: (x, y))
    l1 = opt.step(x, y)
    assert l1 < l0
    with pytest.raises(ValueError, match="allowed values"):
        ExactGaussNewton(net, loss="hinge")
    with pytest.raises(ValueError, match="needs the batch"):
        opt.step()


def test_damping_shrinks_update():
    net, x, y = _setup(2)
    eps = function_space_step(net(x), y, "cross_entropy", 1.0)
    u0 = _update(ExactGaussNewton(net), x, eps)
    u1 = _update(ExactGaussNewton(net, damping=1.0), x, eps)
    assert u1.norm() < u0.norm()
