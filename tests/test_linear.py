"""curvnb.linear: closed forms and operators against dense matrices and autograd (float64)."""
import numpy as np
import pytest
import torch
from torch.func import jacrev

from curvnb.linear import (DeepLinearNetwork, IntegrationError, balanced_weights, block_natural_direction,
                           conservation_drift, conservation_drifts, euler_steps, losses, singular_time,
                           conserved_quantities, end_to_end, full_natural_direction, function_space_kernel, integrate,
                           layer_gradients, loss, mode_closed_form, mode_curve, mode_time, natural_gradient_maps,
                           noisy_teacher, partial_products, plateau_is_finite, random_weights, teacher_map,
                           teacher_student_data, weight_velocity, whitened_inputs)
from curvnb.curvature.matrix_functions import symmetric_power
from curvnb.linear.ode import dop853

WIDTHS = [3, 4, 2, 3]   # W_1: 4×3, W_2: 2×4, W_3: 3×2 (a bottleneck: J is rank deficient)


def dense_jacobian(weights):
    """J = ∂vec(W_d⋯W_1)/∂θ, θ the row-major concatenation of the layers (P columns)."""
    shapes = [w.shape for w in weights]
    flat = torch.cat([w.reshape(-1) for w in weights])

    def vec_map(theta):
        parts = torch.split(theta, [r * c for r, c in shapes])
        return end_to_end([p.reshape(s) for p, s in zip(parts, shapes)]).reshape(-1)

    return jacrev(vec_map)(flat)


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def pseudo_power(matrix, power, damping=0.0):
    return symmetric_power(matrix, power, damping=damping, rcond=1e-10)


@pytest.fixture
def problem():
    weights = random_weights(WIDTHS, 0.8, seed=3)
    target = teacher_map([2.0, 1.0], 3, 3, seed=4)
    return weights, target


def test_partial_products_factor_the_map(problem):
    weights, _ = problem
    before, after = partial_products(weights)
    for w, a, b in zip(weights, before, after):
        assert torch.allclose(b @ w @ a, end_to_end(weights))


def test_kernel_and_gradients_match_autograd(problem):
    weights, target = problem
    jac = dense_jacobian(weights)
    assert torch.allclose(function_space_kernel(weights), jac @ jac.T, atol=1e-12)
    params = [w.clone().requires_grad_() for w in weights]
    torch.autograd.backward(0.5 * ((end_to_end(params) - target) ** 2).sum())
    for g, p in zip(layer_gradients(weights, target), params):
        assert torch.allclose(g, p.grad, atol=1e-12)
    assert loss(weights, target) == pytest.approx(0.5 * float(((end_to_end(weights) - target) ** 2).sum()))


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_full_direction_is_dense_gauss_newton_power(problem, alpha, damping):
    weights, target = problem
    jac = dense_jacobian(weights)
    grads = layer_gradients(weights, target)
    expected = pseudo_power(jac.T @ jac, -alpha, damping) @ flat(grads) if alpha else flat(grads)
    got = flat(full_natural_direction(weights, grads, alpha, damping=damping))
    assert torch.allclose(got, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_block_direction_is_dense_block_power(problem, alpha):
    weights, target = problem
    jac = dense_jacobian(weights)
    grads = layer_gradients(weights, target)
    offsets = np.cumsum([0] + [w.numel() for w in weights])
    expected = torch.cat([pseudo_power(jac[:, a:b].T @ jac[:, a:b], -alpha) @ g.reshape(-1)
                          for a, b, g in zip(offsets[:-1], offsets[1:], grads)])
    assert torch.allclose(flat(block_natural_direction(weights, grads, alpha)), expected, rtol=1e-7, atol=1e-9)


def test_rule_and_alpha_are_checked(problem):
    weights, target = problem
    with pytest.raises(ValueError, match="allowed values are 'full', 'block'"):
        weight_velocity(weights, target, "diagonal", 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        weight_velocity(weights, target, "full", 1.5)
    with pytest.raises(ValueError, match="starting at 0"):
        integrate(weights, target, [0.5, 1.0])
    with pytest.raises(ValueError, match="chain"):
        end_to_end([torch.zeros(2, 3), torch.zeros(2, 3)])


def test_conservation_law_along_flows(problem):
    weights, target = problem
    t = np.linspace(0, 2, 5)
    for rule, alpha in [("full", 0.0), ("full", 0.5), ("full", 1.0)]:
        traj = integrate(weights, target, t, rule, alpha)
        assert conservation_drift(weights, traj.weights(len(t) - 1)) < 1e-7, (rule, alpha)
    traj = integrate(weights, target, t, "block", 1.0)
    assert conservation_drift(weights, traj.weights(len(t) - 1)) > 1e-2
    assert len(conserved_quantities(weights)) == len(weights) - 1


def test_ngd_map_closed_form_against_flow():
    weights = random_weights([3, 3, 3], 0.5, seed=0)
    target = teacher_map([2.0, 1.0, 0.5], 3, 3, seed=1)
    t = np.linspace(0, 2, 9)
    for rule in ("full", "block"):
        maps = integrate(weights, target, t, rule, 1.0).maps()
        assert np.abs(maps - natural_gradient_maps(weights, target, t, rule)).max() < 1e-7


@pytest.mark.parametrize("depth,alpha,rule", [(2, 0.0, "full"), (2, 0.5, "full"), (2, 0.5, "block"),
                                              (3, 1.0, "full"), (3, 1.0, "block"), (1, 0.3, "full")])
def test_mode_closed_forms_solve_the_mode_equation(depth, alpha, rule):
    t = np.linspace(0, 6, 50)
    closed = mode_closed_form(t, 0.01, 1.5, depth, alpha, rule)
    assert closed is not None
    c, p = (float(depth) ** (1 - alpha) if rule == "full" else float(depth)), (1 - alpha) * (2 - 2 / depth)
    from scipy.integrate import solve_ivp
    sol = solve_ivp(lambda _t, w: c * w ** p * (1.5 - w), (0, 6), [0.01], t_eval=t, rtol=1e-11, atol=1e-13)
    assert np.abs(closed - sol.y[0]).max() < 1e-7
    assert mode_closed_form(t, 0.01, 1.5, 3, 0.3, "full") is None   # p = 0.93: quadrature only


@pytest.mark.parametrize("rule,alpha", [("full", 0.0), ("full", 0.25), ("block", 0.25), ("block", 0.75)])
def test_balanced_matrix_flow_reduces_to_modes(rule, alpha):
    """The single-mode equation (our derivation) against the full matrix flow, 3 modes at once."""
    s, w0, depth = np.array([2.0, 1.0, 0.5]), 0.05, 3
    u = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64))[0]
    target = u @ torch.diag(torch.tensor(s)) @ v.T
    weights0 = balanced_weights(u @ (w0 * torch.eye(3, dtype=torch.float64)) @ v.T, depth)
    t = np.linspace(0, 3, 7)
    maps = integrate(weights0, target, t, rule, alpha).maps()
    modes = np.stack([np.diag(u.T.numpy() @ m @ v.numpy()) for m in maps])
    for k, s_k in enumerate(s):
        assert np.abs(modes[:, k] - mode_curve(t, w0, s_k, depth, alpha, rule)).max() < 1e-6


def test_mode_time_inverts_the_curve():
    assert mode_time(0.5, 1e-3, 1.0, 3, 1.0) == pytest.approx(np.log(0.999 / 0.5), rel=1e-9)
    assert mode_time(0.5, 1e-3, 1.0, 3, 1.0, "block") == pytest.approx(np.log(0.999 / 0.5) / 3, rel=1e-9)
    t = mode_time(0.7, 1e-2, 1.0, 4, 0.3)
    assert mode_curve(np.array([0.0, t]), 1e-2, 1.0, 4, 0.3)[-1] == pytest.approx(0.7, rel=1e-7)
    with pytest.raises(ValueError, match="not reached"):
        mode_time(2.0, 1e-3, 1.0, 3, 0.0)
    with pytest.raises(ValueError, match="w0 > 0"):
        mode_curve(np.array([0.0, 1.0]), -1.0, 1.0, 3, 0.0)


def test_plateau_condition():
    assert not plateau_is_finite(3, 0.0) and plateau_is_finite(2, 0.1) and plateau_is_finite(3, 0.5)
    assert not plateau_is_finite(2, 0.0)   # p = 1: ln(1/w0) growth


def test_whitened_teacher_student_data():
    x = whitened_inputs(5, 40, seed=1)
    assert torch.allclose(x.T @ x / 40, torch.eye(5, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError, match="n_samples"):
        whitened_inputs(5, 3)
    target = teacher_map([3.0, 2.0, 1.0], 4, 5, seed=2)
    assert torch.allclose(torch.linalg.svdvals(target)[:3], torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))
    x, y = teacher_student_data(target, 20)
    net = DeepLinearNetwork([5, 6, 4], scale=0.3, seed=0)
    batch = 0.5 * ((net(x) - y) ** 2).sum(1).mean()
    assert batch.item() == pytest.approx(loss(net.weights(), target), rel=1e-10)
    noisy = noisy_teacher(target, 0.1, seed=0)
    assert 0.05 < float(torch.linalg.norm(noisy - target)) / (0.1 * np.sqrt(20)) < 2
    with pytest.raises(ValueError, match="do not fit"):
        teacher_map([1.0] * 5, 4, 5)


# ----------------------------------------------------------------------------- batched networks (one per seed)
def batch_of(networks):
    return [torch.stack(layers) for layers in zip(*networks)]


@pytest.fixture
def batch_problem():
    networks = [random_weights([4, 4, 4, 4], 0.4, seed=10 + i) for i in range(3)]
    targets = torch.stack([teacher_map([3.0, 2.0, 1.0, 0.5], 4, 4, seed=20 + i) for i in range(3)])
    return networks, targets


def test_batched_products_kernel_and_drift_match_one_network_at_a_time(batch_problem):
    networks, targets = batch_problem
    batched = batch_of(networks)
    assert torch.allclose(end_to_end(batched), torch.stack([end_to_end(w) for w in networks]))
    kernels = function_space_kernel(batched)
    drifts = conservation_drifts(batched, [2 * w for w in batched])
    for i, w in enumerate(networks):
        assert torch.allclose(kernels[i], function_space_kernel(w), atol=1e-14)
        assert drifts[i].item() == pytest.approx(conservation_drift(w, [2 * x for x in w]), rel=1e-12)
        assert losses(batched, targets)[i].item() == pytest.approx(loss(w, targets[i]), rel=1e-12)


@pytest.mark.parametrize("rule,alpha", [("full", 0.0), ("full", 0.5), ("full", 1.0), ("block", 0.5), ("block", 1.0)])
def test_batched_velocity_is_the_velocity_of_each_network(batch_problem, rule, alpha):
    networks, targets = batch_problem
    batched = weight_velocity(batch_of(networks), targets, rule, alpha)
    for i, w in enumerate(networks):     # factors with condition numbers ~1e4: round-off differs at ~1e-9
        for got, expected in zip(batched, weight_velocity(w, targets[i], rule, alpha)):
            assert (got[i] - expected).abs().max() <= 1e-7 * expected.abs().max()


def test_batched_integration_matches_single_flows_and_a_singular_flow_stops_alone():
    """Seed 3 below sends block NGD through a rank drop: it stops at the predicted singular time, the
    others go on and match their single-flow integrations."""
    networks = [random_weights([3, 3, 3, 3], 0.1, seed=s) for s in (1, 2, 3)]
    targets = torch.stack([teacher_map([2.0, 1.0, 0.5], 3, 3, seed=s) for s in (4, 5, 6)])
    predicted = singular_time(batch_of(networks), targets, rate=3)
    t = np.linspace(0, 2, 5)
    traj = integrate(batch_of(networks), targets, t, "block", 1.0, max_evaluations=1500)
    for i, w in enumerate(networks):
        if predicted[i] < 2:
            assert traj.failed[i] and traj.reached[i] == pytest.approx(predicted[i], rel=1e-2)
            with pytest.raises(IntegrationError, match="stopped at t|collapsed"):
                integrate(w, targets[i], t, "block", 1.0, max_evaluations=1500)
        else:
            assert not traj.failed[i] and traj.reached[i] == 2
            single = integrate(w, targets[i], t, "block", 1.0)
            assert np.abs(traj.states[i] - single.states).max() < 1e-9
            assert np.abs(traj.maps()[i] - natural_gradient_maps(w, targets[i], t, "block")).max() < 1e-8
    assert any(traj.failed) and not all(traj.failed)


def test_singular_time_is_where_the_straight_path_is_singular():
    weights = random_weights([3, 3, 3, 3], 0.1, seed=3)
    target = teacher_map([2.0, 1.0, 0.5], 3, 3, seed=6)
    t_star = float(singular_time(weights, target, rate=3.0))
    assert np.isfinite(t_star)
    path = lambda t: target + (end_to_end(weights) - target) * np.exp(-3.0 * t)  # noqa: E731
    assert abs(torch.linalg.det(path(t_star)).item()) < 1e-10 * abs(torch.linalg.det(target).item())
    assert torch.linalg.det(path(0.5 * t_star)) * torch.linalg.det(path(2 * t_star)) < 0
    assert singular_time([0.5 * target], target, rate=1.0) == np.inf   # W₀ = S/2: the path never leaves the ray


def test_dop853_against_scipy_with_one_time_grid_per_member():
    from scipy.integrate import solve_ivp
    rates = torch.tensor([[0.5], [2.0]], dtype=torch.float64)
    times = np.array([np.linspace(0, 3, 7), np.linspace(0, 1, 7)])
    sol = dop853(lambda y, members: -rates[members] * y + torch.sin(y), torch.ones(2, 1, dtype=torch.float64), times)
    assert sol.success.all() and np.all(sol.reached == times[:, -1])
    for i in range(2):
        r = float(rates[i])
        ref = solve_ivp(lambda _t, y: -r * y + np.sin(y), (0, times[i, -1]), [1.0], t_eval=times[i], method="DOP853",
                        rtol=1e-12, atol=1e-14)
        assert np.abs(sol.states[i, :, 0] - ref.y[0]).max() < 1e-9


def test_dop853_stops_a_blow_up_and_keeps_the_others():
    y0 = torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    powers = torch.tensor([[2.0], [0.0]], dtype=torch.float64)       # ẏ = y² blows up at t = 1; ẏ = 1 does not
    sol = dop853(lambda y, members: y ** (powers[members] + 0), y0, np.linspace(0, 2, 5), max_evaluations=5000)
    assert sol.messages[0] and not sol.messages[1]
    assert 0.99 < sol.reached[0] <= 1.0 and sol.reached[1] == 2.0
    assert np.isnan(sol.states[0, -1, 0]) and sol.states[1, -1, 0] == pytest.approx(3.0)


@pytest.mark.parametrize("rule,alpha", [("full", 0.0), ("full", 1.0), ("block", 0.5), ("block", 1.0)])
def test_euler_steps_are_the_optimizers_steps(rule, alpha):
    """On whitened teacher data one step of every seed equals the optimizer's step (and, for the tame rules,
    a hundred steps do)."""
    from curvnb.optim import BlockDiagonalNaturalGradient, FractionalNaturalGradient
    networks = [random_weights([4, 4, 4, 4], 0.05, seed=30 + i) for i in range(2)]
    targets = torch.stack([teacher_map([3.0, 2.0, 1.0, 0.5], 4, 4, seed=40 + i) for i in range(2)])
    steps = 1 if alpha == 1.0 else 100     # NGD's first steps amplify round-off: compare one step
    out = euler_steps(batch_of(networks), targets, rule, alpha, 0.005, steps, record_every=steps)
    for i, w in enumerate(networks):
        model = DeepLinearNetwork(weights=w)
        x, y = teacher_student_data(targets[i])
        opt = (FractionalNaturalGradient(model, 0.005, alpha) if rule == "full"
               else BlockDiagonalNaturalGradient(model, 0.005, alpha, loss="mse"))
        for _ in range(steps):
            opt.zero_grad()
            (0.5 * ((model(x) - y) ** 2).sum(1).mean()).backward()
            opt.step(x) if rule == "block" else opt.step()
        norms = np.array([float(torch.linalg.norm(v)) for v in model.weights()])
        assert np.abs(out["norms"][i, -1] - norms).max() < 1e-10 * max(1.0, norms.max())
        assert out["step_norms"][i, -1] == pytest.approx(opt.last_step_norm, rel=1e-8)
    assert out["norms"].shape == (2, 2, 3) and out["step"].tolist() == [0, steps]


def test_euler_steps_freeze_a_diverging_seed():
    networks = [random_weights([2, 2, 2], 0.5, seed=1), [torch.zeros(2, 2, dtype=torch.float64)] * 2]
    target = torch.eye(2, dtype=torch.float64).expand(2, 2, 2)
    out = euler_steps(batch_of(networks), target, "block", 1.0, 1e300, 3, record_every=1)
    assert out["diverged_at"][0] == 0 and np.isnan(out["step_norms"][0]).all()
    assert np.allclose(out["norms"][0, -1], out["norms"][0, 0])
