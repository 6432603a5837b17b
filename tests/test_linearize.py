"""The traced linearisation with fused convolution tangents: exact against dense Hessians, and it
fuses exactly the sums it should (the non-first convolutions of ordinary geometry)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from curvnb.curvature import CurvatureOperator, dense_hessian, flatten
import torch.autograd.forward_ad as fwAD
from torch.fx.experimental.proxy_tensor import make_fx

from curvnb.curvature.linearize import drop_zero_terms, linearize

DT = torch.float64
LOSS = nn.CrossEntropyLoss()


def net(*convs: nn.Module, flat: int, image: tuple[int, ...]) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    layers = []
    for c in convs:
        layers += [c, nn.Tanh()]
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, 3)).to(DT)
    g = torch.Generator().manual_seed(1)
    return model, (torch.randn(6, *image, generator=g, dtype=DT), torch.randint(0, 3, (6,), generator=g))


# (model, number of fused sums): one per convolution whose input gradient the Hessian needs
# (all but the first), unless it is grouped or transposed (left as torch traces it)
CASES = {
    "conv2d stride/padding/dilation": (lambda: net(nn.Conv2d(2, 3, 3), nn.Conv2d(3, 4, 3, stride=2, padding=1),
                                                   nn.Conv2d(4, 2, 2, dilation=2), flat=2 * 2 * 2,
                                                   image=(2, 9, 9)), 2),
    "conv1d": (lambda: net(nn.Conv1d(1, 3, 3), nn.Conv1d(3, 2, 3, stride=2), flat=2 * 4, image=(1, 11)), 1),
    "conv3d": (lambda: net(nn.Conv3d(1, 2, 2), nn.Conv3d(2, 2, 2, bias=False), flat=2 * 3 ** 3,
                           image=(1, 5, 5, 5)), 1),
    "grouped (not fused)": (lambda: net(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 3, groups=2), flat=4 * 3 * 3,
                                        image=(2, 7, 7)), 0),
    "transposed (not fused)": (lambda: net(nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 2, 3, stride=2),
                                           flat=2 * 11 * 11, image=(1, 7, 7)), 0),
}


def gradient_of_loss(model, x, y):
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach() for p in model.parameters())
    loss = lambda ps: LOSS(torch.func.functional_call(model, dict(zip(names, ps)), (x,)), y)  # noqa: E731
    return torch.func.grad(loss), params


@pytest.mark.parametrize("case", list(CASES))
def test_fused_linearization_is_the_hessian(case):
    build, expected_fused = CASES[case]
    model, (x, y) = build()
    grad, params = gradient_of_loss(model, x, y)
    jvp_fn, fused = linearize(grad, params)
    assert fused == expected_fused
    H = dense_hessian(model, LOSS, (x, y))
    V = torch.randn(H.shape[0], 3, dtype=DT, generator=torch.Generator().manual_seed(2))
    for j in range(3):
        vs = [c.view_as(p) for c, p in zip(torch.split(V[:, j], [p.numel() for p in params]), params)]
        hv = flatten(jvp_fn(tuple(vs)))
        assert torch.linalg.norm(hv - H @ V[:, j]) <= 1e-10 * torch.linalg.norm(H @ V[:, j])
    # the operator's linearize method runs this program, one vector or a batch of them at once
    op = CurvatureOperator(model, LOSS, (x, y), method="linearize")
    assert torch.allclose(op.matmat(V, batched=True), H @ V, rtol=0, atol=1e-10 * H.abs().max())


def test_unfused_trace_and_torch_func_linearize_agree_with_fused():
    model, (x, y) = CASES["conv2d stride/padding/dilation"][0]()
    grad, params = gradient_of_loss(model, x, y)
    vs = tuple(torch.randn_like(p) for p in params)
    fused_fn, n_fused = linearize(grad, params)
    plain_fn, n_plain = linearize(grad, params, fuse=False)
    _, torch_fn = torch.func.linearize(grad, params)
    assert (n_fused, n_plain) == (2, 0)
    a, b, c = (flatten(f(vs)) for f in (fused_fn, plain_fn, torch_fn))
    assert torch.allclose(a, b, rtol=0, atol=1e-12) and torch.allclose(b, c, rtol=0, atol=1e-12)


def test_pytree_outputs_and_tangents_that_do_not_reach_an_output():
    def f(a, b):
        return {"both": a.sin() * b, "a only": a ** 2, "constant": torch.ones(2, dtype=DT)}

    a, b = torch.randn(3, dtype=DT), torch.randn(3, dtype=DT)
    jvp_fn, fused = linearize(f, a, b)
    ta, tb = torch.randn(3, dtype=DT), torch.randn(3, dtype=DT)
    out = jvp_fn(ta, tb)
    assert fused == 0 and set(out) == {"both", "a only", "constant"}
    assert torch.allclose(out["both"], a.cos() * ta * b + a.sin() * tb)
    assert torch.allclose(out["a only"], 2 * a * ta)
    assert torch.equal(out["constant"], torch.zeros(2, dtype=DT))


def traced_tangent_program(grad, params):
    def program(tangents):
        with fwAD.dual_level():
            out = grad(tuple(fwAD.make_dual(p, t) for p, t in zip(params, tangents)))
            return [fwAD.unpack_dual(o).tangent for o in out]
    return make_fx(program)(tuple(torch.randn_like(p) for p in params))


@pytest.mark.parametrize("case", ["conv2d stride/padding/dilation", "transposed (not fused)"])
def test_terms_of_the_datas_zero_tangent_are_dropped_exactly(case):
    # the data is not differentiated: its zero tangent enters the first convolution's forward tangent
    # and its weight-gradient tangent as two added zeros, which the program no longer adds
    model, (x, y) = CASES[case][0]()
    grad, params = gradient_of_loss(model, x, y)
    gm = traced_tangent_program(grad, params)
    adds = sum(n.target is torch.ops.aten.add.Tensor for n in gm.graph.nodes)
    vs = tuple(torch.randn_like(p) for p in params)
    before = gm(vs)
    assert drop_zero_terms(gm) == 2
    assert sum(n.target is torch.ops.aten.add.Tensor for n in gm.graph.nodes) == adds - 2
    assert all(torch.equal(a, b) for a, b in zip(gm(vs), before))  # dropping a zero changes no bit
    assert drop_zero_terms(gm) == 0


def test_a_zero_buffer_filled_in_place_is_not_taken_for_zero():
    class Padded(nn.Module):  # builds its features in a zero buffer written in place
        def __init__(self):
            super().__init__()
            self.inner, self.out = nn.Linear(4, 3), nn.Linear(5, 3)

        def forward(self, x):
            h = torch.zeros(x.shape[0], 5, dtype=x.dtype)
            h[:, :3] = self.inner(x[:, :4]).tanh()
            return self.out(h + x[:, :5].sin())

    torch.manual_seed(0)
    model = Padded().to(DT)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 6, generator=g, dtype=DT), torch.randint(0, 3, (6,), generator=g)
    grad, params = gradient_of_loss(model, x, y)
    assert drop_zero_terms(traced_tangent_program(grad, params)) == 0
    H = dense_hessian(model, LOSS, (x, y))
    v = torch.randn(H.shape[0], dtype=DT, generator=g)
    vs = tuple(c.view_as(p) for c, p in zip(torch.split(v, [p.numel() for p in params]), params))
    # torch.func.linearize's own trace of this program is wrong (its constant folding loses the write
    # into the buffer's view); curvnb's traces it functionalised (the write becomes out of place) and
    # is exact, identically on every call
    _, torch_fn = torch.func.linearize(grad, params)
    assert torch.linalg.norm(flatten(torch_fn(vs)) - H @ v) > 1e-3 * torch.linalg.norm(H @ v)
    jvp_fn, _ = linearize(grad, params)
    first = flatten(jvp_fn(vs))
    assert torch.linalg.norm(first - H @ v) <= 1e-10 * torch.linalg.norm(H @ v)
    assert all(torch.equal(flatten(jvp_fn(vs)), first) for _ in range(3))
    hv = CurvatureOperator(model, LOSS, (x, y), method="linearize") @ v
    assert torch.linalg.norm(hv - H @ v) <= 1e-10 * torch.linalg.norm(H @ v)
    G = dense_hessian(model, LOSS, (x, y), kind="ggn", method="rebuild")
    gv = CurvatureOperator(model, LOSS, (x, y), kind="ggn") @ v
    assert torch.linalg.norm(gv - G @ v) <= 1e-10 * torch.linalg.norm(G @ v)
