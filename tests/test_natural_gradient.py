"""Fractional natural-gradient optimizers: one step against dense matrices, training loops against the
closed forms and the conservation law, factors against brute force, and their failure modes (float64)."""
import numpy as np
import pytest
import torch
from torch import nn

from curvnb.linear import (DeepLinearNetwork, block_natural_direction, conservation_drift, end_to_end,
                           full_natural_direction, layer_gradients, natural_gradient_maps, random_weights, teacher_map,
                           teacher_student_data)
from curvnb.optim import BlockDiagonalNaturalGradient, FractionalNaturalGradient



@pytest.fixture(autouse=True)
def float64():
    """Every test here runs in float64; the default is restored for the rest of the suite."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def setup():
    weights = random_weights([3, 4, 4, 3], 0.6, seed=0)
    target = teacher_map([2.0, 1.0, 0.5], 3, 3, seed=1)
    x, y = teacher_student_data(target, 12, seed=2)
    return weights, target, x, y


def backward(model, x, y):
    model.zero_grad()
    loss = 0.5 * ((model(x) - y) ** 2).sum(1).mean()
    loss.backward()
    return loss.item()


def train(model, opt, x, y, steps, block=False):
    for _ in range(steps):
        backward(model, x, y)
        opt.step(x) if block else opt.step()


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_one_step_of_each_optimizer_is_the_linear_direction(setup, alpha):
    weights, target, x, y = setup
    grads = layer_gradients(weights, target)
    for cls, direction, block in [(FractionalNaturalGradient, full_natural_direction, False),
                                  (BlockDiagonalNaturalGradient, block_natural_direction, True)]:
        model = DeepLinearNetwork(weights=weights)
        opt = cls(model, lr=0.1, alpha=alpha)
        backward(model, x, y)
        for p, g in zip(model.parameters(), grads):   # autograd's gradient is the closed form
            assert torch.allclose(p.grad, g, atol=1e-12)
        opt.step(x) if block else opt.step()
        expected = [w - 0.1 * d for w, d in zip(weights, direction(weights, grads, alpha))]
        for w, e in zip(model.weights(), expected):
            assert torch.allclose(w, e, atol=1e-10), cls.__name__
        assert opt.last_step_norm > 0 and opt.steps_taken == 1


def test_alpha_zero_is_sgd(setup):
    weights, _, x, y = setup
    models = [DeepLinearNetwork(weights=weights) for _ in range(3)]
    opts = [torch.optim.SGD(models[0].parameters(), lr=0.05), FractionalNaturalGradient(models[1], 0.05, 0.0),
            BlockDiagonalNaturalGradient(models[2], 0.05, 0.0)]
    for model, opt in zip(models, opts):
        train(model, opt, x, y, 5, block=isinstance(opt, BlockDiagonalNaturalGradient))
    for w0, w1, w2 in zip(*(m.weights() for m in models)):
        assert torch.allclose(w0, w1, atol=1e-12) and torch.allclose(w0, w2, atol=1e-12)


@pytest.mark.parametrize("cls,rule,rate", [(FractionalNaturalGradient, "full", 1.0),
                                           (BlockDiagonalNaturalGradient, "block", 3.0)])
def test_small_steps_follow_the_ngd_closed_form(setup, cls, rule, rate):
    """Training loop with lr → 0 approaches W(t) − S = (W₀ − S)e^{−rate·t}: error O(lr)."""
    weights, target, x, y = setup
    errors = []
    for lr in (2e-3, 1e-3):
        model = DeepLinearNetwork(weights=weights)
        steps = int(round(0.6 / rate / lr))
        train(model, cls(model, lr=lr, alpha=1.0), x, y, steps, block=rule == "block")
        predicted = natural_gradient_maps(weights, target, [steps * lr], rule)[0]
        errors.append(float(np.abs(model.end_to_end().numpy() - predicted).max()))
    assert errors[1] < 5e-3
    assert errors[0] / errors[1] == pytest.approx(2.0, rel=0.2)   # first-order convergence in lr


def test_conservation_law_in_a_training_loop(setup):
    """Full fractional steps conserve C_i up to O(lr) over a fixed time; block NGD breaks it at any lr."""
    weights, target, x, y = setup
    drift = {}
    for name, cls, alpha in [("full ½", FractionalNaturalGradient, 0.5), ("block NGD", BlockDiagonalNaturalGradient, 1.0)]:
        for lr in (4e-3, 2e-3):
            model = DeepLinearNetwork(weights=weights)
            train(model, cls(model, lr=lr, alpha=alpha), x, y, int(0.4 / lr), block=cls is BlockDiagonalNaturalGradient)
            drift[name, lr] = conservation_drift(weights, model.weights())
    assert drift["full ½", 2e-3] < 2e-3
    assert drift["full ½", 4e-3] / drift["full ½", 2e-3] == pytest.approx(2.0, rel=0.25)
    assert drift["block NGD", 2e-3] > 50 * drift["full ½", 2e-3]
    assert drift["block NGD", 4e-3] == pytest.approx(drift["block NGD", 2e-3], rel=0.1)


def test_kronecker_factors_are_the_exact_gauss_newton_factors():
    """Hidden layer of a tanh MLP with biases, cross-entropy: factors against per-example Jacobians."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    x = torch.randn(6, 4)
    opt = BlockDiagonalNaturalGradient(model, lr=0.1, alpha=0.5, loss="cross_entropy")
    opt.update_factors(x)
    (b0, a0), (b1, a1) = opt.factors
    ones = torch.ones(6, 1)
    h = torch.tanh(model[0](x))
    assert torch.allclose(a0, torch.cat([x, ones], 1).T @ torch.cat([x, ones], 1) / 6)
    assert torch.allclose(a1, torch.cat([h, ones], 1).T @ torch.cat([h, ones], 1) / 6)
    p = torch.softmax(model(x), 1)
    hessians = [torch.diag(q) - torch.outer(q, q) for q in p]
    assert torch.allclose(b1, sum(hessians) / 6, atol=1e-12)           # last layer: ∂f/∂s = I
    expected = sum(j.T @ hh @ j for j, hh in zip(
        [torch.autograd.functional.jacobian(lambda s: model[2](torch.tanh(s)), model[0](xi)) for xi in x],
        hessians)) / 6
    assert torch.allclose(b0, expected, atol=1e-12)


def test_factor_running_average():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    x1, x2 = torch.randn(5, 3), torch.randn(5, 3)
    opt = BlockDiagonalNaturalGradient(model, lr=0.1, factor_decay=0.25)
    opt.update_factors(x1)
    a_first = opt.factors[0][1].clone()
    opt.update_factors(x2)
    xa = torch.cat([x2, torch.ones(5, 1)], 1)
    assert torch.allclose(opt.factors[0][1], 0.25 * a_first + 0.75 * xa.T @ xa / 5)


def test_nonfinite_update_raises_or_marks_and_leaves_parameters(setup):
    weights, _, x, y = setup
    for on_nonfinite in ("raise", "mark"):
        model = DeepLinearNetwork(weights=weights)
        opt = FractionalNaturalGradient(model, lr=0.1, on_nonfinite=on_nonfinite)
        backward(model, x, y)
        model.layers[0].weight.grad[0, 0] = float("nan")
        if on_nonfinite == "raise":
            with pytest.raises(FloatingPointError, match="non-finite update at step 1"):
                opt.step()
        else:
            opt.step()
            assert opt.diverged
        for w, w0 in zip(model.weights(), weights):
            assert torch.equal(w, w0)
    model = DeepLinearNetwork(weights=weights)
    opt = BlockDiagonalNaturalGradient(model, lr=0.1)
    backward(model, x, y)
    model.layers[1].weight.grad.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="BlockDiagonalNaturalGradient"):
        opt.step(x)


def test_bad_input_is_refused(setup):
    weights, _, x, y = setup
    with pytest.raises(ValueError, match="bias-free"):
        FractionalNaturalGradient(nn.Sequential(nn.Linear(3, 3)), lr=0.1)
    with pytest.raises(ValueError, match="deep linear"):
        FractionalNaturalGradient(nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 3, bias=False)), lr=0.1)
    with pytest.raises(ValueError, match="alpha"):
        FractionalNaturalGradient(DeepLinearNetwork(weights=weights), lr=0.1, alpha=2.0)
    with pytest.raises(ValueError, match="lr"):
        BlockDiagonalNaturalGradient(DeepLinearNetwork(weights=weights), lr=0.0)
    with pytest.raises(ValueError, match="'mse', 'cross_entropy'"):
        BlockDiagonalNaturalGradient(DeepLinearNetwork(weights=weights), lr=0.1, loss="hinge")
    with pytest.raises(ValueError, match="on_nonfinite"):
        FractionalNaturalGradient(DeepLinearNetwork(weights=weights), lr=0.1, on_nonfinite="ignore")
    with pytest.raises(ValueError, match="no nn.Linear"):
        BlockDiagonalNaturalGradient(nn.Sequential(nn.Tanh()), lr=0.1)
    model = DeepLinearNetwork(weights=weights)
    with pytest.raises(RuntimeError, match="backward"):
        FractionalNaturalGradient(model, lr=0.1).step()
    opt = BlockDiagonalNaturalGradient(model, lr=0.1)
    backward(model, x, y)
    with pytest.raises(RuntimeError, match="inputs"):
        opt.step()


def _cnn_classifier():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 8), nn.Tanh(),
                         nn.Linear(8, 3))


def _ce_backward(model, x, y):
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()


def test_kfac_refuses_layers_it_cannot_precondition_unless_asked():
    model = _cnn_classifier()
    x, y = torch.randn(10, 1, 6, 6), torch.randint(0, 3, (10,))
    with pytest.raises(ValueError, match=r"0\.weight, 0\.bias.*unsupported='sgd'"):
        BlockDiagonalNaturalGradient(model, lr=0.1, loss="cross_entropy")
    with pytest.warns(UserWarning, match=r"plain gradient steps .*0\.weight, 0\.bias"):
        opt = BlockDiagonalNaturalGradient(model, lr=0.1, loss="cross_entropy", unsupported="sgd")
    before = [p.detach().clone() for p in model.parameters()]
    _ce_backward(model, x, y)
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step(x)
    after = list(model.parameters())
    for k in (0, 1):  # the conv weight and bias: a plain gradient step
        assert torch.allclose(after[k], before[k] - 0.1 * grads[k], atol=1e-12)
    for k in (2, 3, 4, 5):  # the Linear layers: preconditioned (not the plain step)
        assert not torch.allclose(after[k], before[k] - 0.1 * grads[k])
    with pytest.raises(ValueError, match="unsupported"):
        BlockDiagonalNaturalGradient(model, lr=0.1, unsupported="ignore")


def test_kfac_skips_frozen_layers_and_frozen_biases():
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    model[0].requires_grad_(False)          # a frozen first layer (the input needs no gradient)
    model[4].bias.requires_grad_(False)     # a frozen bias of a trained layer
    frozen = [model[0].weight.clone(), model[0].bias.clone(), model[4].bias.clone()]
    opt = BlockDiagonalNaturalGradient(model, lr=0.1, loss="cross_entropy", damping=1e-3)
    assert [id(layer) for layer in opt.layers] == [id(model[2]), id(model[4])]
    for _ in range(3):
        _ce_backward(model, x, y)
        opt.step(x)
    assert torch.equal(model[0].weight, frozen[0]) and torch.equal(model[0].bias, frozen[1])
    assert torch.equal(model[4].bias, frozen[2])
    assert opt.factors[1][1].shape == (5, 5)  # no appended 1 for the frozen bias
    assert opt.factors[0][1].shape == (7, 7)  # 6 inputs + the trained bias
    # the same with the Linear's trainable bias of a frozen weight: not preconditionable, refused
    model[2].weight.requires_grad_(False)
    with pytest.raises(ValueError, match=r"2\.bias"):
        BlockDiagonalNaturalGradient(model, lr=0.1)
    with pytest.raises(ValueError, match="frozen"):
        layers = DeepLinearNetwork(widths=[3, 4, 3])
        layers.layers[0].weight.requires_grad_(False)
        FractionalNaturalGradient(layers, lr=0.1)
