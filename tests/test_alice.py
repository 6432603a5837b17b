"""Alice optimizer: NAQ exactness, switches, determinism, grad-eval counting, non-finite errors."""
import math

import pytest
import torch

from curvnb.optim import Alice


def quadratic_problem(dim=20, condition=1e4, seed=0):
    g = torch.Generator().manual_seed(seed)
    diag = torch.logspace(0, math.log10(condition), dim, dtype=torch.float64)
    b = torch.randn(dim, generator=g, dtype=torch.float64)
    x = torch.nn.Parameter(torch.randn(dim, generator=g, dtype=torch.float64))
    return diag, b, x


def run_quadratic(phi=None, steps=60, lr=1e-2, **kw):
    diag, b, x = quadratic_problem()
    opt = Alice([x], lr=lr, phi=phi, **kw)

    def closure():
        opt.zero_grad()
        loss = 0.5 * (diag * x * x).sum() - b @ x
        loss.backward()
        return loss

    errs = []
    for _ in range(steps):
        grad_at_mu = diag * x.detach() - b  # the model sits at μ between steps
        opt.step(closure)  # G is updated with ∇L(ν) where ν leads μ
        errs.append(float((opt.state[x]["G"] - grad_at_mu).abs().max()))
    return errs, opt, x


def test_naq_exact_on_badly_conditioned_quadratic():
    errs, opt, _ = run_quadratic()
    assert max(errs[opt.warmup:]) < 1e-10
    errs_other, _, _ = run_quadratic(phi=0.5)
    assert max(errs_other[opt.warmup:]) > 1e-6  # another φ is not exact


def test_quadratic_loss_decreases_for_every_variant():
    diag, b, _ = quadratic_problem()
    x_star = b / diag
    f = lambda x: float(0.5 * (diag * x * x).sum() - b @ x)  # noqa: E731
    for curvature in ("none", "hessian", "glass", "both"):
        for bound in ("adam", "sgdm", "fixed"):
            lr = 1e-5 if bound == "sgdm" else 1e-2  # the sgdm bound scales with |G| ≤ 1e4·|x|
            _, _, x = run_quadratic(steps=200, lr=lr, curvature=curvature, bound=bound)
            _, _, x0 = run_quadratic(steps=0)
            assert f(x.detach()) < f(x0.detach()), (curvature, bound)
            assert f(x.detach()) >= f(x_star) - 1e-9


def test_grad_evals_count_and_quick_steps():
    for curvature, every in (("both", 1), ("both", 5), ("none", 1)):
        _, opt, _ = run_quadratic(steps=10, curvature=curvature, curvature_every=every)
        if curvature == "none":
            assert opt.grad_evals == 10
        elif every == 1:
            assert opt.grad_evals == 30
        else:  # curvature steps 0 and 5: 2×3 + 8×1
            assert opt.grad_evals == 14


def relu_run(seed, steps=15):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (32,), generator=g)
    opt = Alice(model.parameters(), lr=1e-2, seed=seed, warmup=2)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_deterministic_under_seed():
    a, b, c = relu_run(3), relu_run(3), relu_run(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # z is drawn from the optimizer's own seeded generator


def test_non_finite_loss_raises_and_leaves_parameters():
    x = torch.nn.Parameter(torch.ones(3))
    opt = Alice([x], lr=0.1, warmup=0)
    calls = {"n": 0}

    def closure():
        opt.zero_grad()
        calls["n"] += 1
        loss = (x * x).sum() * (float("nan") if calls["n"] > 3 else 1.0)
        loss.backward()
        return loss

    opt.step(closure)
    before = x.detach().clone()
    state_g = opt.state[x]["G"].clone()
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        opt.step(closure)
    assert torch.equal(x.detach(), before)
    assert torch.equal(opt.state[x]["G"], state_g)


def test_bad_options_name_allowed_values():
    x = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="'both'"):
        Alice([x], curvature="full")
    with pytest.raises(ValueError, match="'adam'"):
        Alice([x], bound="lion")
    with pytest.raises(ValueError, match="closure"):
        Alice([x]).step(None)


def test_no_curvature_is_an_adam_like_step_at_the_upper_bound():
    x = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = Alice([x], lr=0.1, curvature="none", warmup=0, phi=1.0)

    def closure():
        opt.zero_grad()
        loss = (x * x).sum()
        loss.backward()
        return loss

    opt.step(closure)
    # first step: G = g, V = g², f = 1, so the step is lr·s_max = 0.2 against the gradient's sign
    assert torch.allclose(x.detach(), torch.tensor([0.8, -1.8], dtype=torch.float64))


def test_trains_a_small_relu_net_and_restores_mu_between_steps():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (64,), generator=g)
    opt = Alice(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.functional.cross_entropy

    def closure():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    start = float(loss_fn(model(x), y).detach())
    for _ in range(150):
        opt.step(closure)
        for p in model.parameters():  # the model is left at μ, not at the last evaluation point
            assert torch.equal(p.detach(), opt.state[p]["mu"])
    assert float(loss_fn(model(x), y).detach()) < 0.7 * start
    assert opt.grad_evals == 3 * 150
