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


def _jacobian(net, x):
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach() for p in net.parameters())

    def f(*ps):
        return functional_call(net, dict(zip(names, ps)), (x,)).reshape(-1)
    jac = jacrev(f, argnums=tuple(range(len(params))))(*params)
    return torch.cat([j.reshape(j.shape[0], -1) for j in jac], dim=1)


def _update(opt, x, eps):
    return torch.cat([u.reshape(-1) for blk in opt.direction(x, eps) for u in blk])


@pytest.mark.parametrize("hessian", ["identity", "pinv"])
@pytest.mark.parametrize("depth", [1, 3])
def test_right_inverse(depth, hessian):
    net, x, y = _setup(depth)
    opt = ExactGaussNewton(net, lr=0.7, hessian=hessian)
    eps = function_space_step(net(x), y, "cross_entropy", 0.7, hessian)
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


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_min_norm_equals_explicit_pseudo_inverse(depth):
    """inverse="min_norm" is J⁺ε with J formed explicitly; the block-wise right inverse is longer."""
    net, x, y = _setup(depth)
    eps = function_space_step(net(x), y, "cross_entropy", 1.0)
    J = _jacobian(net, x)
    ref = torch.linalg.pinv(J) @ eps.reshape(-1)
    u_min = _update(ExactGaussNewton(net, inverse="min_norm"), x, eps)
    assert (u_min - ref).norm() / ref.norm() < 1e-8
    u_block = _update(ExactGaussNewton(net), x, eps)
    assert (J @ u_block - eps.reshape(-1)).norm() / eps.norm() < 1e-8  # both solve J u = ε ...
    assert u_block.norm() > 1.5 * u_min.norm()  # ... the block-wise one with a much longer step


@pytest.mark.parametrize("depth", [1, 3])
def test_equals_stated_generalized_inverse(depth):
    """u = (1/L) Σ_l J_l⁺ R⁺ ε with J_l the explicit feature Jacobian of block l's parameters."""
    net, x, y = _setup(depth)
    eps = function_space_step(net(x), y, "cross_entropy", 1.0)
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach() for p in net.parameters())
    jac = jacrev(lambda *ps: _block_inputs(net, dict(zip(names, ps)), x)[-1].reshape(-1),
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


def _block_inputs(net, params, x):
    hs = [net.embed(x)]
    for l, block in enumerate(net.blocks):
        p = {k.split(".", 2)[2]: v for k, v in params.items() if k.startswith(f"blocks.{l}.")}
        hs.append(functional_call(block, p, (hs[-1],)))
    return hs


def test_hessian_pinv_is_the_logit_hessian_pseudo_inverse():
    """hessian="pinv": ε = −lr · (diag(p) − ppᵀ)⁺ (p − y), per example, also where p_y is tiny."""
    g = torch.Generator().manual_seed(3)
    f = 4 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    f[0] = torch.tensor([30.0, -30.0, 0.0, 1.0, 2.0], dtype=torch.float64)  # p_y ≈ e⁻⁶⁰ for y = 1
    y = torch.tensor([1, 0, 2, 3, 4, 4])
    p = f.softmax(-1)
    r = p - torch.nn.functional.one_hot(y, 5).to(f.dtype)
    ref = torch.stack([torch.linalg.pinv(torch.diag(pi) - torch.outer(pi, pi), hermitian=True) @ ri
                       for pi, ri in zip(p[1:], r[1:])])
    eps = function_space_step(f, y, "cross_entropy", 0.5, hessian="pinv")
    assert torch.allclose(eps[1:], -0.5 * ref, rtol=1e-8, atol=1e-10)
    assert torch.isfinite(eps).all() and eps[0, 1] > 0  # the correct logit goes up, finitely
    t = torch.randn(6, 5, dtype=torch.float64)
    assert torch.equal(function_space_step(f, t, "mse", 0.5, "pinv"), function_space_step(f, t, "mse", 0.5))


def test_batch_larger_than_expansion_warns():
    net, x, y = _setup(2, M=10, n=24)  # n = 24 > M + 1 = 11: the per-block solves are least-squares
    with pytest.warns(RuntimeWarning, match="M\\+1"):
        ExactGaussNewton(net).step(x, y)
    net, x, y = _setup(1, d=4, M=2, n=24)  # n·k = 96 outputs > P = 12 parameters
    with pytest.warns(RuntimeWarning, match="parameters"):
        ExactGaussNewton(net, inverse="min_norm").step(x, y)


@pytest.mark.parametrize("inverse", ["blockwise", "min_norm"])
def test_stacked_ensemble_steps_like_its_members(inverse):
    nets = [_setup(3, seed=s)[0] for s in range(3)]
    stacked = ReversibleNet.stack(nets)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 24, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (3, 24), generator=g)
    ExactGaussNewton(stacked, lr=0.5, inverse=inverse).step(x, y)
    for i, net in enumerate(nets):
        ExactGaussNewton(net, lr=0.5, inverse=inverse).step(x[i], y[i])
        assert torch.allclose(stacked.member(i)(x[i]), net(x[i]), atol=1e-10)


def test_stacked_adam_is_independent_adams():
    """torch.optim.Adam on stacked weights, loss = Σ members' mean losses: R independent runs."""
    nets = [ReversibleNet(10, 4, width=12, expansion=16, depth=2, seed=s) for s in range(2)]
    stacked = ReversibleNet.stack(nets)
    x, y = torch.randn(2, 8, 10), torch.randint(0, 4, (2, 8))
    opt = torch.optim.Adam(stacked.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        out = stacked(x)
        torch.nn.functional.cross_entropy(out.permute(0, 2, 1), y, reduction="none").mean(-1).sum().backward()
        opt.step()
    for i, net in enumerate(nets):
        o = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(3):
            o.zero_grad()
            torch.nn.functional.cross_entropy(net(x[i]), y[i]).backward()
            o.step()
        assert torch.allclose(stacked.member(i)(x[i]), net(x[i]), atol=1e-5)


def test_stack_checks_shapes():
    with pytest.raises(ValueError, match="same shape"):
        ReversibleNet.stack([ReversibleNet(10, 4, width=12, expansion=16, depth=2),
                             ReversibleNet(10, 4, width=12, expansion=16, depth=3)])
    with pytest.raises(ValueError, match="stack"):
        ReversibleNet(10, 4, width=12, expansion=16, depth=2).member(0)


def test_mse_small_step_moves_outputs_by_eps():
    """A real step moves the outputs by ε up to second-order terms (relative error ∝ lr)."""
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
    for kwargs in ({"loss": "hinge"}, {"hessian": "diag"}, {"inverse": "left"}):
        with pytest.raises(ValueError, match="allowed values"):
            ExactGaussNewton(net, **kwargs)
    with pytest.raises(ValueError, match="needs the batch"):
        opt.step()


@pytest.mark.parametrize("inverse", ["blockwise", "min_norm"])
def test_damping_shrinks_update(inverse):
    net, x, y = _setup(2)
    eps = function_space_step(net(x), y, "cross_entropy", 1.0)
    u0 = _update(ExactGaussNewton(net, inverse=inverse), x, eps)
    u1 = _update(ExactGaussNewton(net, damping=1.0, inverse=inverse), x, eps)
    assert u1.norm() < u0.norm()
