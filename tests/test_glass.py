"""Glass-curvature estimators on models where the exact quantity is known."""
import numpy as np
import torch

from curvnb.curvature import loss_and_grad
from curvnb.curvature.glass import (glass_density_samples, gradient_variation, hessian_diagonal_samples,
                                    loglog_slope, perturbed_gradients, rademacher)


class Kinks(torch.nn.Module):
    """L(w) = mean_n relu(w − c_n): one scalar parameter, N ReLU boundaries at c_n (gradient jumps 1/N)."""

    def __init__(self, c, w0=0.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([w0], dtype=torch.float64))
        self.c = c

    def forward(self, x):
        return torch.relu(self.w - self.c).unsqueeze(1)


def kink_loss(out, y):
    return out.mean()


kink_loss.reduction = "mean"  # a plain loss function states its reduction (curvnb.curvature refuses to guess)


def test_one_relu_by_hand():
    # L(w) = relu(w) at w0 = 0.001, σ = 0.01, z = +1: g₊ = 1, g₋ = 0, g₀ = 1
    model = Kinks(torch.zeros(1, dtype=torch.float64), w0=0.001)
    data = (torch.zeros(1, 1), torch.zeros(1))
    r = perturbed_gradients(model, kink_loss, data, 0.01, torch.ones(1, dtype=torch.float64))
    assert (float(r["g_plus"]), float(r["g_minus"]), float(r["g0"])) == (1.0, 0.0, 1.0)
    assert torch.allclose(glass_density_samples(r["g_plus"], r["g_minus"], r["g0"], 0.01),
                          torch.tensor([2 * 0.5**2 / 0.01], dtype=torch.float64))  # 2(ḡ − g₀)²/σ = 50
    assert torch.allclose(hessian_diagonal_samples(r["g_plus"], r["g_minus"], 0.01), torch.tensor([50.0], dtype=torch.float64))
    # no boundary inside the kernel: no glass, no curvature (ReLU is piecewise linear)
    r = perturbed_gradients(model, kink_loss, data, 1e-4, torch.ones(1, dtype=torch.float64))
    assert float(glass_density_samples(r["g_plus"], r["g_minus"], r["g0"], 1e-4)) == 0.0
    assert float(model.w.detach()) == 0.001  # parameters restored


def test_many_kinks_match_counting_formula_and_are_sigma_independent():
    N = 20000
    c = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, N))
    data = (torch.zeros(N, 1), torch.zeros(N))
    for sigma in (1e-3, 1e-2, 1e-1):
        rhos = []
        for w0 in np.linspace(-0.5, 0.5, 41):
            model = Kinks(c, w0=float(w0))
            r = perturbed_gradients(model, kink_loss, data, sigma, torch.ones(1, dtype=torch.float64))
            rho = float(glass_density_samples(r["g_plus"], r["g_minus"], r["g0"], sigma))
            # by hand: ḡ − g₀ = (#kinks in (w0, w0+σ) − #kinks in (w0−σ, w0)) / (2N)
            cp = int(((c > w0) & (c < w0 + sigma)).sum())
            cm = int(((c > w0 - sigma) & (c < w0)).sum())
            assert np.isclose(rho, 2 * ((cp - cm) / (2 * N)) ** 2 / sigma, rtol=1e-9, atol=1e-15)
            h = float(hessian_diagonal_samples(r["g_plus"], r["g_minus"], sigma))
            assert np.isclose(h, (cp + cm) / N / (2 * sigma), rtol=1e-9)  # kink-averaged curvature, ≈ 1/2
            rhos.append(rho)
        # E ρ = (kink density N/2) × (jump 1/N)² = 1/(2N), whatever σ
        assert 0.6 / (2 * N) < np.mean(rhos) < 1.5 / (2 * N), (sigma, np.mean(rhos) * 2 * N)


def test_diagonal_quadratic_gives_exact_hessian_diagonal_and_no_glass():
    diag = torch.logspace(0, 4, 10, dtype=torch.float64)

    class Quad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.x = torch.nn.Parameter(torch.linspace(-1, 1, 10, dtype=torch.float64))

        def forward(self, inp):
            return (0.5 * diag * self.x**2).sum().reshape(1, 1)

    model = Quad()
    data = (torch.zeros(1, 1), torch.zeros(1))
    z = rademacher(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = perturbed_gradients(model, kink_loss, data, 1e-3, z)
    assert torch.allclose(hessian_diagonal_samples(r["g_plus"], r["g_minus"], 1e-3), diag, rtol=1e-9)
    assert float(glass_density_samples(r["g_plus"], r["g_minus"], r["g0"], 1e-3).max()) < 1e-18
    loss, g = loss_and_grad(model, kink_loss, data)
    assert torch.equal(g, r["g0"])


def test_smooth_vs_relu_scaling_slopes():
    torch.manual_seed(0)
    x = torch.randn(1024, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (1024,))
    sigmas = np.logspace(-4, -2, 3)
    slopes = {}
    for act in (torch.nn.Tanh(), torch.nn.ReLU()):
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(8, 64), act, torch.nn.Linear(64, 3)).double()
        v = gradient_variation(model, torch.nn.CrossEntropyLoss(), (x, y), sigmas, num_samples=2)
        slopes[type(act).__name__] = (loglog_slope(sigmas, v["even"]), loglog_slope(sigmas, v["odd"]))
    assert slopes["Tanh"][0] > 3.5            # (ḡ − g₀)² ∝ σ⁴ for a smooth model
    assert 0.6 < slopes["ReLU"][0] < 1.5      # ∝ σ for the glass
    assert 1.8 < slopes["Tanh"][1] < 2.2      # ((g₊ − g₋)/2)² ∝ σ² (Hessian term)


def test_rademacher_is_seeded_and_pm_one():
    a = rademacher(1000, generator=torch.Generator().manual_seed(5))
    b = rademacher(1000, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and set(a.tolist()) == {-1.0, 1.0}
    assert abs(float(a.mean())) < 0.1
    assert loglog_slope([1, 10, 100], [1, 100, 10000]) == 2.0 or np.isclose(loglog_slope([1, 10, 100], [1, 100, 1e4]), 2.0)


def test_gradient_variation_takes_given_directions_and_64_bit_seeds():
    """Directions drawn by the caller (a chapter's declared stream) give exactly the seeded default; a
    derived 64-bit seed is accepted; directions of the wrong size are refused."""
    import pytest

    from curvnb.seeds import cpu_generator

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g)
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)).double()
    P, sigmas, seed = 4 * 6 + 6 + 6 * 3 + 3, [1e-3, 1e-2], (7 << 32) | 5
    loss_fn = torch.nn.CrossEntropyLoss()
    default = gradient_variation(model, loss_fn, (x, y), sigmas, num_samples=3, seed=seed)
    gen = cpu_generator(seed)
    given = gradient_variation(model, loss_fn, (x, y), sigmas, directions=[
        rademacher(P, generator=gen, dtype=torch.float64) for _ in range(3)])
    assert default.keys() == given.keys()
    for key in default:
        np.testing.assert_array_equal(default[key], given[key])
    other = gradient_variation(model, loss_fn, (x, y), sigmas, num_samples=3, seed=(8 << 32) | 5)
    assert not np.array_equal(default["rho"], other["rho"])   # the chapter seed (high bits) matters
    with pytest.raises(ValueError, match="directions"):
        gradient_variation(model, loss_fn, (x, y), sigmas, directions=[torch.ones(P - 1, dtype=torch.float64)])
