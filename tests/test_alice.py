"""Alice against an independent transcription of the authors' reference update, NAQ exactness,
schedule and gradient-evaluation counts, switches, determinism and non-finite errors."""
import math

import numpy as np
import pytest
import torch

from curvnb.optim import Alice, HeavyBallAlice


pytestmark = pytest.mark.usefixtures("one_thread")   # conftest


# --------------------------------------------------------------------------- reference transcription
def reference_alice(x0, grad_fn, *, steps, lr, beta1=0.9, beta2=0.999, eps=1e-8, q=3, hess="abs", glass=True,
                    limiter="adam", lr_min=0.0, lr_max=None, phi=None, omega=1.0, seed=0, heavy_ball=False):
    """The reference equations (sandialabs/alice 1.1, ``Alice.step`` and the fused kernel's
    ``pert_update`` / ``quick_update`` / ``state_update``) written out in plain float64 torch, one
    flat tensor per parameter. ``hess`` is "zero", "abs" or "rms"; ``grad_fn(list of tensors)``
    returns the gradients there. ``z``: ``2·randint(0, 2) − 1`` per parameter per curvature step from
    a CPU generator seeded with ``seed`` (Alice's documented random stream). Returns μ after each step
    and the G before each step's update of μ."""
    phi = 1 - beta1 if phi is None else phi
    lr_max = 2.0 * lr if lr_max is None else lr_max
    beta3 = 1.0 - (q + 1) * (1.0 - beta2)
    gen = torch.Generator().manual_seed(seed)
    mu = [x.clone() for x in x0]
    nu = [x.clone() for x in x0]
    G, V, H, R = ([torch.zeros_like(x) for x in x0] for _ in range(4))
    mus = []
    for n in range(1, steps + 1):
        bmax = (n - 1.0) / n
        b1, b2, b3 = min(beta1, bmax), min(beta2, bmax), min(beta3, bmax)
        if n <= 1.0 / (1.0 - beta1) or n % (q + 1) == 0:  # sample step
            z = [(2 * torch.randint(0, 2, (x.numel(),), generator=gen) - 1).to(x.dtype).view_as(x) for x in x0]
            gp = grad_fn([v + lr * zz for v, zz in zip(nu, z)])
            gm = grad_fn([v - lr * zz for v, zz in zip(nu, z)])
            g0 = grad_fn(nu)
            for i in range(len(x0)):
                h = 0.5 * (gp[i] - gm[i]) / lr
                h = h * h if hess == "rms" else h.abs()
                H[i] = h + b3 * (H[i] - h)
                dg = 0.5 * (gp[i] + gm[i]) - g0[i]
                rho = 2.0 * dg * dg / lr
                R[i] = rho + b3 * (R[i] - rho)
                V[i] = g0[i] * g0[i] + b2 * (V[i] - g0[i] * g0[i])
                G[i] = g0[i] + b1 * (G[i] - g0[i])
        else:  # quick step
            g0 = grad_fn(nu)
            for i in range(len(x0)):
                V[i] = g0[i] * g0[i] + b2 * (V[i] - g0[i] * g0[i])
                G[i] = g0[i] + b1 * (G[i] - g0[i])
        if n > 1.0 / (1.0 - beta1):  # state update
            for i in range(len(x0)):
                g = G[i]
                absg = g.abs()
                rho = R[i] if glass else torch.zeros_like(g)
                h = torch.zeros_like(g) if hess == "zero" else (H[i] if hess == "abs" else H[i].sqrt())
                alpha = 3.0 / (4.0 * math.pi) * rho / (absg + eps)
                h_opt = alpha + h + torch.sqrt(alpha * (alpha + 2.0 * h)) + eps
                delta = absg / h_opt
                dmin, dmax = torch.full_like(g, lr_min), torch.full_like(g, lr_max)
                if limiter == "sgdm":
                    dmin, dmax = dmin * absg, dmax * absg
                elif limiter == "adam":
                    factor = absg / (V[i].sqrt() + eps)
                    dmin, dmax = dmin * factor, dmax * factor
                delta = torch.where(delta < dmin, dmin, torch.where(~(delta < dmax), dmax, delta))
                delta = torch.where(g > 0, -delta, delta)
                step = (nu[i] - mu[i]) + delta if heavy_ball else delta
                nu[i] = mu[i] + omega * step
                mu[i] = mu[i] + phi * step
        mus.append([m.clone() for m in mu])
    return mus


CURVATURE_OPTIONS = {  # Alice's switches -> the reference's (hess_comp, grad_glass)
    ("none", "abs"): ("zero", False), ("hessian", "abs"): ("abs", False), ("hessian", "rms"): ("rms", False),
    ("glass", "abs"): ("zero", True), ("both", "abs"): ("abs", True), ("both", "rms"): ("rms", True)}


def smooth_problem():
    """A smooth, non-quadratic loss of two parameter tensors (float64)."""
    g = torch.Generator().manual_seed(3)
    A = torch.randn(12, 6, generator=g, dtype=torch.float64)
    b = torch.randn(12, generator=g, dtype=torch.float64)
    x0 = [torch.randn(6, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)]

    def loss(w, m):
        r = A @ w - b
        return torch.log(torch.cosh(r)).sum() + 0.1 * (w ** 4).sum() + torch.sin(m).sum() + (m @ m.T).square().sum()
    return x0, loss


def relu_problem():
    """A small ReLU MLP with cross-entropy on fixed data (float64); parameters as a list."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    x0 = [0.5 * torch.randn(8, 5, generator=g, dtype=torch.float64), 0.1 * torch.randn(8, generator=g, dtype=torch.float64),
          0.5 * torch.randn(3, 8, generator=g, dtype=torch.float64), 0.1 * torch.randn(3, generator=g, dtype=torch.float64)]

    def loss(w1, b1, w2, b2):
        return torch.nn.functional.cross_entropy(torch.relu(x @ w1.T + b1) @ w2.T + b2, y)
    return x0, loss


def grad_function(loss):
    def grad_fn(xs):
        xs = [x.detach().clone().requires_grad_(True) for x in xs]
        return [g.detach() for g in torch.autograd.grad(loss(*xs), xs)]
    return grad_fn


def closure_for(opt, params, loss):
    """The closure ``opt.step`` calls: ``loss(*params)`` and its gradient."""
    def closure():
        opt.zero_grad()
        value = loss(*params)
        value.backward()
        return value
    return closure


def run_alice(cls, x0, loss, *, steps, **options):
    params = [torch.nn.Parameter(x.clone()) for x in x0]
    opt = cls(params, **options)
    closure = closure_for(opt, params, loss)
    mus = []
    for _ in range(steps):
        opt.step(closure)
        mus.append([p.detach().clone() for p in params])
    return mus, opt


def max_deviation(a, b):
    return max(float((x - y).abs().max()) for sa, sb in zip(a, b) for x, y in zip(sa, sb))


MAX_DEVIATION = {"value": 0.0}  # the largest deviation seen over the parametrised cases (printed by -s)


@pytest.mark.parametrize("problem", ["smooth", "relu"])
@pytest.mark.parametrize("curvature,hessian_method", list(CURVATURE_OPTIONS))
@pytest.mark.parametrize("quick_steps", [0, 3])
@pytest.mark.parametrize("phi", ["1-beta1", 1.0])
def test_alice_matches_reference_transcription(problem, curvature, hessian_method, quick_steps, phi):
    x0, loss = smooth_problem() if problem == "smooth" else relu_problem()
    steps, lr = 30, 0.02
    phi_value = None if phi == "1-beta1" else phi
    mus, opt = run_alice(Alice, x0, loss, steps=steps, lr=lr, curvature=curvature, hessian_method=hessian_method,
                         quick_steps=quick_steps, phi=phi_value, seed=7)
    hess, glass = CURVATURE_OPTIONS[(curvature, hessian_method)]
    ref = reference_alice(x0, grad_function(loss), steps=steps, lr=lr, q=quick_steps, hess=hess, glass=glass,
                          phi=phi_value, seed=7)
    dev = max_deviation(mus, ref)
    MAX_DEVIATION["value"] = max(MAX_DEVIATION["value"], dev)
    print(f"max |μ − μ_ref| = {dev:.2e} ({problem}, {curvature}/{hessian_method}, q={quick_steps}, φ={phi})")
    assert dev <= 1e-12
    assert max_deviation(mus[-1:], [x0]) > 1e-3  # the parameters did move
    assert opt.warmup == 10 and opt.moves == steps - 10


@pytest.mark.parametrize("bound", ["sgdm", "fixed"])
def test_other_bounds_and_heavy_ball_match_reference(bound):
    for problem in (smooth_problem, relu_problem):
        x0, loss = problem()
        lr = 1e-3 if bound == "sgdm" else 0.02
        mus, _ = run_alice(Alice, x0, loss, steps=25, lr=lr, bound=bound, s_min=0.1, seed=1)
        ref = reference_alice(x0, grad_function(loss), steps=25, lr=lr, limiter=bound, lr_min=0.1 * lr, seed=1)
        assert max_deviation(mus, ref) <= 1e-12
        # the heavy-ball variant is the same except for the iterates
        mus, _ = run_alice(HeavyBallAlice, x0, loss, steps=25, lr=lr, bound=bound, seed=1)
        ref = reference_alice(x0, grad_function(loss), steps=25, lr=lr, limiter=bound, seed=1, heavy_ball=True)
        assert max_deviation(mus, ref) <= 1e-12


def test_heavy_ball_moves_further_than_alice():
    x0, loss = relu_problem()
    a, _ = run_alice(Alice, x0, loss, steps=40, lr=0.01, seed=2)
    b, _ = run_alice(HeavyBallAlice, x0, loss, steps=40, lr=0.01, seed=2)
    assert max_deviation(b[-1:], [x0]) > 3 * max_deviation(a[-1:], [x0])


# --------------------------------------------------------------------------- NAQ exactness
def dense_quadratic(dim=20, condition=1e4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.logspace(0, math.log10(condition), dim, dtype=torch.float64)) @ q.T
    b = torch.randn(dim, generator=g, dtype=torch.float64)
    x = torch.nn.Parameter(torch.randn(dim, generator=g, dtype=torch.float64))
    return A, b, x


def run_quadratic(phi=None, steps=60, lr=1e-2, **kw):
    A, b, x = dense_quadratic()
    opt = Alice([x], lr=lr, phi=phi, **kw)

    def closure():
        opt.zero_grad()
        loss = 0.5 * x @ A @ x - b @ x
        loss.backward()
        return loss

    errs = []
    for _ in range(steps):
        grad_at_mu = A @ x.detach() - b  # the model sits at μ between steps
        opt.step(closure)  # G is updated with ∇L(ν), and ν leads μ
        errs.append(float((opt.state[x]["G"] - grad_at_mu).abs().max()))
    return errs, opt, x


@pytest.mark.parametrize("quick_steps", [0, 3])
def test_naq_exact_on_dense_badly_conditioned_quadratic(quick_steps):
    errs, opt, x = run_quadratic(quick_steps=quick_steps)
    assert max(errs) < 1e-10  # statistics-only batches included: μ does not move there
    assert opt.moves == 50
    errs_other, _, _ = run_quadratic(phi=0.5, quick_steps=quick_steps)
    assert max(errs_other[opt.warmup:]) > 1e-6  # another φ is not exact


def test_quadratic_loss_decreases_for_every_variant():
    A, b, _ = dense_quadratic()
    f = lambda x: float(0.5 * x @ A @ x - b @ x)  # noqa: E731
    x_star = torch.linalg.solve(A, b)
    _, _, x0 = run_quadratic(steps=0)
    for curvature in ("none", "hessian", "glass", "both"):
        for bound in ("adam", "sgdm", "fixed"):
            lr = 1e-5 if bound == "sgdm" else 1e-2  # the sgdm bound scales with |G| ≤ 1e4·|x|
            _, _, x = run_quadratic(steps=200, lr=lr, curvature=curvature, bound=bound)
            assert f(x.detach()) < f(x0.detach()), (curvature, bound)
            assert f(x.detach()) >= f(x_star) - 1e-9


# --------------------------------------------------------------------------- schedule and bookkeeping
def test_schedule_running_means_and_grad_evals():
    _, opt, _ = run_quadratic(steps=20, quick_steps=3)
    # batches 1-10 are curvature steps (statistics only), then 12, 16, 20: 13×3 + 7×1
    assert opt.grad_evals == 46 == opt.gradient_evaluations(20)
    assert [n for n in range(1, 21) if opt.is_curvature_step(n)] == list(range(1, 11)) + [12, 16, 20]
    _, opt, _ = run_quadratic(steps=20, quick_steps=0)
    assert opt.grad_evals == 60
    _, opt, _ = run_quadratic(steps=20, curvature="none")
    assert opt.grad_evals == 20 == opt.gradient_evaluations(20)
    assert opt.param_groups[0]["betas"][2] == pytest.approx(1 - 4 * (1 - 0.999))
    with pytest.raises(ValueError, match="β₃"):
        Alice([torch.nn.Parameter(torch.ones(2))], quick_steps=1000)


def test_averages_start_as_running_means():
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(5, 3, generator=g, dtype=torch.float64)
    x = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = Alice([x], curvature="none")
    for k in range(5):
        def closure(k=k):
            opt.zero_grad()
            loss = x @ grads[k]
            loss.backward()
            return loss
        opt.step(closure)
        assert torch.allclose(opt.state[x]["G"], grads[:k + 1].mean(0), rtol=1e-14, atol=0)
        assert torch.allclose(opt.state[x]["V"], grads[:k + 1].square().mean(0), rtol=1e-14, atol=0)
    assert torch.equal(x.detach(), torch.zeros(3, dtype=torch.float64))  # statistics only so far


def test_warmup_length_in_float64():
    # the reference compares n with 1/(1 − β₁) itself; in float64 1/(1 − 0.95) = 19.99999999999998
    # and 1/(1 − 0.99) = 99.99999999999991
    for beta1, expected in ((0.9, 10), (0.5, 2), (0.95, 19), (0.99, 99)):
        assert Alice([torch.nn.Parameter(torch.ones(1))], betas=(beta1, 0.999)).warmup == expected
    # the reference's float32 betas would give 9 for β₁ = 0.9
    assert float(1.0 / (1.0 - torch.tensor(0.9, dtype=torch.float32))) < 10


def relu_run(seed, steps=15, cls=Alice):
    x0, loss = relu_problem()
    mus, _ = run_alice(cls, x0, loss, steps=steps, lr=1e-2, seed=seed, warmup=2)
    return torch.cat([m.flatten() for m in mus[-1]])


def test_deterministic_under_seed():
    a, b, c = relu_run(3), relu_run(3), relu_run(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # z is drawn from the optimizer's own seeded generator


def test_same_global_randomness_for_the_three_gradients():
    x = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = Alice([x], lr=0.1)
    draws = []

    def closure():
        opt.zero_grad()
        noise = torch.rand(4, dtype=torch.float64)  # e.g. a dropout mask
        draws.append(noise)
        loss = (noise * x * x).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[1], draws[2])


def test_non_finite_loss_raises_and_leaves_parameters():
    x = torch.nn.Parameter(torch.ones(3))
    opt = Alice([x], lr=0.1, warmup=0)
    calls = {"n": 0}

    def closure():
        opt.zero_grad()
        calls["n"] += 1
        loss = (x * x).sum() * (float("nan") if calls["n"] > 1 else 1.0)  # batch 1 is a quick step (warmup=0)
        loss.backward()
        return loss

    opt.step(closure)
    before = x.detach().clone()
    state_g = opt.state[x]["G"].clone()
    evals = opt.grad_evals
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        opt.step(closure)
    assert torch.equal(x.detach(), before)
    assert torch.equal(opt.state[x]["G"], state_g)
    assert opt.grad_evals == evals and opt.batches == 1


def test_bad_options_name_allowed_values():
    x = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="'both'"):
        Alice([x], curvature="full")
    with pytest.raises(ValueError, match="'adam'"):
        Alice([x], bound="lion")
    with pytest.raises(ValueError, match="closure"):
        Alice([x]).step(None)
    with pytest.raises(ValueError, match="betas"):
        Alice([x], betas=(0.9, 0.999, 0.99))


def test_no_curvature_is_an_adam_like_step_at_the_upper_bound():
    x = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = Alice([x], lr=0.1, curvature="none", warmup=0, phi=1.0)

    def closure():
        opt.zero_grad()
        loss = (x * x).sum()
        loss.backward()
        return loss

    opt.step(closure)
    # first batch: G = g, V = g², f = 1, so the step is lr_max = 2·lr = 0.2 against the gradient's sign
    assert torch.allclose(x.detach(), torch.tensor([0.8, -1.8], dtype=torch.float64))
    assert opt.upper_bound_fraction() == 1.0


def test_trains_a_small_relu_net_and_leaves_the_model_at_mu():
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
    for _ in range(300):
        opt.step(closure)
        for p in model.parameters():  # the model is left at μ, not at the last evaluation point
            assert torch.equal(p.detach(), opt.state[p]["mu"])
    assert float(loss_fn(model(x), y).detach()) < 0.7 * start
    assert opt.grad_evals == opt.gradient_evaluations(300)
    assert 0.0 <= opt.upper_bound_fraction() <= 1.0


def test_state_dict_round_trip_continues_exactly():
    x0, loss = relu_problem()
    full, full_opt = run_alice(Alice, x0, loss, steps=20, lr=1e-2, seed=5)
    params = [torch.nn.Parameter(x.clone()) for x in x0]
    opt = Alice(params, lr=1e-2, seed=5)
    for _ in range(12):
        opt.step(closure_for(opt, params, loss))
    saved = opt.state_dict()
    params2 = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt2 = Alice(params2, lr=1e-2, seed=99)
    opt2.load_state_dict(saved)
    for _ in range(8):
        opt2.step(closure_for(opt2, params2, loss))
    assert max_deviation([[p.detach() for p in params2]], full[-1:]) == 0.0
    # the bound counters travel with the state too (this compared the value with itself before)
    assert opt2.upper_bound_fraction() == full_opt.upper_bound_fraction()
