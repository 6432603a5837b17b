"""A zoo of tiny float64 curvature cases (model, loss, data) with dense reverse-mode references.

Each :class:`Case` builds a fresh model, loss and data; :func:`reference` gives the dense Hessian
and GGN of the loss over the whole data set (batches combined as :mod:`curvnb.curvature` does: for
a mean loss batch b weighted by n_b / N, for a sum by 1), computed in reverse mode only
(``torch.func.jacrev`` twice), independently of :mod:`curvnb.curvature`. :func:`finite_difference_check`
compares those references with central finite differences. Importable by other tests::

    from curvature_zoo import CASES, reference
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

DT = torch.float64
_SEED = 1234


# ----------------------------------------------------------------------------------- models
def mlp(d_in: int = 4, hidden: int = 5, d_out: int = 3, act: nn.Module | None = None, tail: nn.Module | None = None):
    layers = [nn.Linear(d_in, hidden), act if act is not None else nn.Tanh(), nn.Linear(hidden, d_out)]
    return nn.Sequential(*layers, *([tail] if tail is not None else []))


class InplaceData(nn.Module):
    """In-place ops on tensors that depend on the data only (folded into constants by a trace)."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x):
        z = x * 1.0                 # a data-only tensor ...
        z.mul_(0.5).add_(0.25)      # ... changed in place
        z.exp_()
        h = self.l1(z)
        h.mul_(2.0)                 # in place on a parameter-dependent tensor
        return self.l2(torch.tanh(h))


class InplaceAct(nn.Module):
    """In-place activations on parameter-dependent tensors."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(4, 5), nn.Linear(5, 4), nn.Linear(4, 3)
        self.a1, self.a2 = nn.LeakyReLU(0.1, inplace=True), nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.a1(self.l1(x))
        h = torch.tanh(self.l2(h))
        h = h + 0.5
        h.add_(0.1)
        return self.l3(self.a2(h))


class Tied(nn.Module):
    """One Linear applied twice (a shared module), and a decoder tied to the encoder's weight."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(4, 3)
        self.mid = nn.Linear(3, 3)
        self.dec_bias = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        h = torch.tanh(self.enc(x))
        h = torch.tanh(self.mid(h))
        h = torch.tanh(self.mid(h))                        # the same module twice
        return torch.nn.functional.linear(h, self.enc.weight.T, self.dec_bias)[:, :3]  # tied transpose


class Unused(nn.Module):
    """A trainable parameter that the forward pass never touches."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(4, 5), nn.Linear(5, 3)
        self.spare = nn.Linear(2, 2)

    def forward(self, x):
        return self.l2(torch.tanh(self.l1(x)))


class Detached(nn.Module):
    """A scale computed from a parameter and detached: a constant for the curvature.

    ``fixed_scale`` (set by the finite-difference check) holds the detached value at a given point,
    so finite differences see the same constant as autograd does."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(4, 5), nn.Linear(5, 3)
        self.fixed_scale: torch.Tensor | None = None

    def scale(self):
        return 1.0 + self.l1.weight.detach().pow(2).mean()

    def forward(self, x):
        s = self.scale() if self.fixed_scale is None else self.fixed_scale
        h = torch.tanh(self.l1(x) * s)
        return self.l2(h)


class EmbedBag(nn.Module):
    """Token indices -> Embedding -> mean over tokens -> Linear."""

    def __init__(self, vocab: int = 6, dim: int = 3, d_out: int = 3):
        super().__init__()
        self.emb, self.head = nn.Embedding(vocab, dim), nn.Linear(dim, d_out)

    def forward(self, x):
        return self.head(torch.tanh(self.emb(x)).mean(1))


class EmbedSeq(nn.Module):
    """Token indices (N, L) -> Embedding -> per-token Linear -> logits (N, C, L)."""

    def __init__(self, vocab: int = 5, dim: int = 3, classes: int = 3):
        super().__init__()
        self.emb, self.head = nn.Embedding(vocab, dim), nn.Linear(dim, classes)

    def forward(self, x):
        return self.head(torch.tanh(self.emb(x))).transpose(1, 2)


class ConvSeq(nn.Module):
    """(N, 2, L) -> Conv1d (dilation) -> tanh -> Conv1d 1x1 -> logits (N, C, L)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.c1 = nn.Conv1d(2, 3, 3, padding=2, dilation=2)
        self.c2 = nn.Conv1d(3, classes, 1)

    def forward(self, x):
        return self.c2(torch.tanh(self.c1(x)))


def cnn_a(d_out: int = 3, tail: nn.Module | None = None, inplace: bool = False):
    """Stride, dilation, max pooling."""
    act = nn.ReLU(inplace=True) if inplace else nn.Tanh()
    layers = [nn.Conv2d(1, 2, 3, stride=2, padding=1), act, nn.Conv2d(2, 2, 3, dilation=2, padding=2),
              nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 2 * 2, d_out)]
    return nn.Sequential(*layers, *([tail] if tail is not None else []))


def cnn_b(d_out: int = 3):
    """Groups, transpose convolution, average pooling."""
    return nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Tanh(), nn.ConvTranspose2d(4, 2, 2, stride=2),
                         nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(2 * 2 * 2, d_out))


def cnn_bn(d_out: int = 3):
    return nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(),
                         nn.Linear(2 * 3 * 3, d_out))


def bn_mlp():
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3))


def ln_mlp():
    return nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3))


# ----------------------------------------------------------------------------------- data
def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def features(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(n, *shape, generator=_g(seed), dtype=DT)


def targets(kind: str, n: int, seed: int, classes: int = 3, length: int | None = None) -> torch.Tensor:
    g = _g(seed + 17)
    if kind == "index":
        return torch.randint(0, classes, (n,) if length is None else (n, length), generator=g)
    if kind == "probs":
        return torch.softmax(torch.randn(n, classes, generator=g, dtype=DT), -1)
    if kind == "binary":
        return torch.rand(n, classes, generator=g, dtype=DT)
    if kind == "real":
        return torch.randn(n, classes, generator=g, dtype=DT)
    raise ValueError(kind)


def split(x: torch.Tensor, y: torch.Tensor, layout: str) -> Any:
    """``batch``: one (x, y); ``list``: two batches of unequal sizes; ``loader``: a DataLoader with a
    ragged last batch (two batches for n ≤ 8: each batch costs the traced paths one trace)."""
    if layout == "batch":
        return (x, y)
    if layout == "list":
        cuts = [0, 5, len(x)]
        return [(x[a:b], y[a:b]) for a, b in zip(cuts, cuts[1:])]
    if layout == "loader":
        return DataLoader(TensorDataset(x, y), batch_size=4, shuffle=False)
    raise ValueError(layout)


# ----------------------------------------------------------------------------------- losses
def plain_sum_squares(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A plain callable returning the SUM over examples (no ``.reduction`` attribute)."""
    return 0.5 * ((out - y) ** 2).sum()


def plain_mean_logcosh(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A plain callable returning the MEAN over examples of a smooth robust loss."""
    return torch.log(torch.cosh(out - y)).sum(-1).mean()


# ----------------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One zoo case. ``build()`` -> (model, loss_fn, data, kwargs) with fresh objects every call;
    ``kwargs`` (e.g. ``reduction``) go to every entry point. ``refusal``: a regex the ValueError of every
    entry point must match (the case is meant to be refused), else None."""

    name: str
    model: Callable[[], nn.Module]
    loss: Callable[[], Callable]
    x: Callable[[int], torch.Tensor]           # n -> inputs
    y: Callable[[int], torch.Tensor]           # n -> targets
    n: int = 8
    layout: str = "batch"
    train: bool = False                        # model.train() (BatchNorm batch statistics) vs eval()
    kwargs: dict = field(default_factory=dict)
    refusal: str | None = None
    tags: frozenset = frozenset()              # e.g. "conv", "mse", "unused", "inplace-data"

    def build(self):
        torch.manual_seed(_SEED)
        model = self.model().to(DT)
        for m in model.modules():  # non-trivial running statistics for eval-mode BatchNorm
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                g = _g(5)
                m.running_mean.copy_(0.3 * torch.randn(m.num_features, generator=g, dtype=DT))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g, dtype=DT))
        model.train(self.train)
        return model, self.loss(), split(self.x(self.n), self.y(self.n), self.layout), dict(self.kwargs)


def _x(shape, seed=1):
    return lambda n: features(n, shape, seed)


def _tokens(vocab, length, seed=1):
    return lambda n: torch.randint(0, vocab, (n, length), generator=_g(seed))


def _y(kind, classes=3, length=None, seed=1):
    return lambda n: targets(kind, n, seed, classes, length)


def _y_ignore(ignore=-100, seed=1):
    def make(n):
        y = targets("index", n, seed)
        y[::3] = ignore
        return y
    return make


def _y_seq_ignore(length=5, seed=1):
    def make(n):
        y = targets("index", n, seed, length=length)
        y[:, 1] = -100
        y[0, 3] = -100
        return y
    return make


CLASS_WEIGHT = lambda: torch.tensor([0.5, 1.0, 2.0], dtype=DT)  # noqa: E731
X4 = _x((4,))
IMG1 = _x((1, 7, 7))
IMG2 = _x((2, 4, 4))

CASES: list[Case] = [
    # --- MLP: every loss
    Case("mlp-ce-batch", mlp, nn.CrossEntropyLoss, X4, _y("index")),
    Case("mlp-ce-list", mlp, nn.CrossEntropyLoss, X4, _y("index"), layout="list"),
    Case("mlp-ce-loader", mlp, nn.CrossEntropyLoss, X4, _y("index"), n=7, layout="loader"),
    Case("mlp-ce-sum-list", mlp, lambda: nn.CrossEntropyLoss(reduction="sum"), X4, _y("index"), layout="list"),
    Case("mlp-ce-soft", mlp, nn.CrossEntropyLoss, X4, _y("probs"), layout="list"),
    Case("mlp-ce-smooth", mlp, lambda: nn.CrossEntropyLoss(label_smoothing=0.1), X4, _y("index"), n=7,
         layout="loader"),
    Case("mlp-ce-weight", mlp, lambda: nn.CrossEntropyLoss(weight=CLASS_WEIGHT()), X4, _y("index")),
    Case("mlp-ce-weight-list", mlp, lambda: nn.CrossEntropyLoss(weight=CLASS_WEIGHT()), X4, _y("index"),
         layout="list", refusal="class-weighted"),
    Case("mlp-ce-weight-sum-list", mlp, lambda: nn.CrossEntropyLoss(weight=CLASS_WEIGHT(), reduction="sum"),
         X4, _y("index"), layout="list"),
    Case("mlp-ce-ignore", mlp, nn.CrossEntropyLoss, X4, _y_ignore()),
    Case("mlp-ce-ignore-list", mlp, nn.CrossEntropyLoss, X4, _y_ignore(), layout="list", refusal="ignore_index"),
    Case("mlp-ce-ignore-sum-loader", mlp, lambda: nn.CrossEntropyLoss(ignore_index=1, reduction="sum"), X4,
         _y("index"), n=7, layout="loader"),
    Case("mlp-nll", lambda: mlp(tail=nn.LogSoftmax(-1)), nn.NLLLoss, X4, _y("index"), layout="list",
         tags=frozenset({"zero-ggn"})),
    Case("mlp-kldiv", lambda: mlp(tail=nn.LogSoftmax(-1)), lambda: nn.KLDivLoss(reduction="batchmean"), X4,
         _y("probs"), n=7, layout="loader", tags=frozenset({"zero-ggn"})),
    Case("mlp-bce", lambda: mlp(tail=nn.Sigmoid()), nn.BCELoss, X4, _y("binary")),
    Case("mlp-bcelogits", mlp, lambda: nn.BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 2.0, 0.5], dtype=DT)),
         X4, _y("binary"), layout="list"),
    Case("mlp-mse-mean", mlp, nn.MSELoss, X4, _y("real"), tags=frozenset({"mse", "mse-mean"})),
    Case("mlp-mse-sum-list", mlp, lambda: nn.MSELoss(reduction="sum"), X4, _y("real"), layout="list",
         tags=frozenset({"mse"})),
    Case("mlp-mse-mean-loader", mlp, nn.MSELoss, X4, _y("real"), n=7, layout="loader",
         tags=frozenset({"mse", "mse-mean"})),
    Case("mlp-huber", mlp, lambda: nn.HuberLoss(delta=0.5), X4, _y("real"), tags=frozenset({"huber"})),
    Case("mlp-smoothl1-list", mlp, lambda: nn.SmoothL1Loss(beta=0.5), X4, _y("real"), layout="list",
         tags=frozenset({"huber"})),
    Case("mlp-callable-sum", mlp, lambda: plain_sum_squares, X4, _y("real"), layout="list",
         kwargs={"reduction": "sum"}),
    Case("mlp-callable-mean", mlp, lambda: plain_mean_logcosh, X4, _y("real"), n=7, layout="loader",
         kwargs={"reduction": "mean"}),
    Case("mlp-callable-no-reduction", mlp, lambda: plain_sum_squares, X4, _y("real"), refusal="reduction",
         tags=frozenset({"defect6"})),
    # --- MLP: structure
    Case("inplace-act-ce", InplaceAct, nn.CrossEntropyLoss, X4, _y("index"), layout="list"),
    Case("inplace-data-ce", InplaceData, nn.CrossEntropyLoss, X4, _y("index"), tags=frozenset({"inplace-data"})),
    Case("inplace-data-bcelogits", InplaceData, nn.BCEWithLogitsLoss, X4, _y("binary"), layout="list",
         tags=frozenset({"inplace-data"})),
    Case("frozen-ce", lambda: _frozen(mlp()), nn.CrossEntropyLoss, X4, _y("index"), layout="list"),
    Case("unused-ce", Unused, nn.CrossEntropyLoss, X4, _y("index"), tags=frozenset({"unused"})),
    Case("unused-bcelogits-loader", Unused, nn.BCEWithLogitsLoss, X4, _y("binary"), n=7, layout="loader",
         tags=frozenset({"unused"})),
    Case("tied-ce", Tied, nn.CrossEntropyLoss, X4, _y("index"), layout="list"),
    Case("detach-ce", Detached, nn.CrossEntropyLoss, X4, _y("index")),
    Case("layernorm-ce", ln_mlp, nn.CrossEntropyLoss, X4, _y("index"), layout="list"),
    Case("batchnorm-eval-ce", bn_mlp, nn.CrossEntropyLoss, X4, _y("index"), layout="list"),
    Case("batchnorm-train-ce", bn_mlp, nn.CrossEntropyLoss, X4, _y("index"), train=True),
    Case("batchnorm-train-ce-list", bn_mlp, nn.CrossEntropyLoss, X4, _y("index"), train=True, layout="list"),
    Case("batchnorm-train-mse-sum", bn_mlp, lambda: nn.MSELoss(reduction="sum"), X4, _y("real"), train=True,
         tags=frozenset({"mse"})),
    Case("embedding-ce", EmbedBag, nn.CrossEntropyLoss, _tokens(6, 4), _y("index"), layout="list"),
    Case("embedding-seq-ce", EmbedSeq, nn.CrossEntropyLoss, _tokens(5, 5), _y("index", length=5), n=6),
    Case("embedding-seq-ce-ignore", EmbedSeq, nn.CrossEntropyLoss, _tokens(5, 5), _y_seq_ignore(), n=6),
    # --- convolutions
    Case("cnn-ce", cnn_a, nn.CrossEntropyLoss, IMG1, _y("index"), n=6, tags=frozenset({"conv"})),
    Case("cnn-ce-loader", cnn_a, nn.CrossEntropyLoss, IMG1, _y("index"), n=7, layout="loader",
         tags=frozenset({"conv"})),
    Case("cnn-bcelogits", cnn_a, nn.BCEWithLogitsLoss, IMG1, _y("binary"), n=6, tags=frozenset({"conv"})),
    Case("cnn-mse-mean", cnn_a, nn.MSELoss, IMG1, _y("real"), n=6, tags=frozenset({"conv", "mse", "mse-mean"})),
    Case("cnn-mse-sum-list", cnn_a, lambda: nn.MSELoss(reduction="sum"), IMG1, _y("real"), layout="list",
         tags=frozenset({"conv", "mse"})),
    Case("cnn-inplace-relu-ce", lambda: cnn_a(inplace=True), nn.CrossEntropyLoss, IMG1, _y("index"), n=6,
         tags=frozenset({"conv"})),
    Case("cnn-nll", lambda: cnn_a(tail=nn.LogSoftmax(-1)), nn.NLLLoss, IMG1, _y("index"), n=6,
         tags=frozenset({"conv", "zero-ggn"})),
    Case("cnn-groups-transpose-ce", cnn_b, nn.CrossEntropyLoss, IMG2, _y("index"), n=6, tags=frozenset({"conv"})),
    Case("cnn-groups-transpose-huber-list", cnn_b, lambda: nn.HuberLoss(delta=0.5), IMG2, _y("real"),
         layout="list", tags=frozenset({"conv", "huber"})),
    Case("cnn-batchnorm-train-ce", cnn_bn, nn.CrossEntropyLoss, IMG1, _y("index"), n=6, train=True,
         tags=frozenset({"conv"})),
    Case("cnn-batchnorm-eval-ce-list", cnn_bn, nn.CrossEntropyLoss, IMG1, _y("index"), layout="list",
         tags=frozenset({"conv"})),
    Case("conv1d-seq-ce", ConvSeq, nn.CrossEntropyLoss, _x((2, 5)), _y("index", length=5), n=5,
         tags=frozenset({"conv"})),
]


def _frozen(model: nn.Module) -> nn.Module:
    model[0].bias.requires_grad_(False)
    model[2].weight.requires_grad_(False)
    return model


CASES_BY_NAME = {c.name: c for c in CASES}
assert len(CASES_BY_NAME) == len(CASES), "duplicate case names"


# ----------------------------------------------------------------------------------- references
def _batches(data: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, tuple):
        return [data]
    return [(b[0], b[1]) for b in data]


class FlatLoss:
    """The loss over the whole data set as a function of one flat parameter vector (trainable
    parameters in ``model.parameters()`` order), built on ``torch.func.functional_call`` alone."""

    def __init__(self, model: nn.Module, loss_fn: Callable, data: Any, reduction: str | None = None):
        self.model, self.loss_fn = model, loss_fn
        self.batches = _batches(data)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.theta0 = torch.cat([p.detach().reshape(-1) for _, p in named])
        self.fixed = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        r = reduction or getattr(loss_fn, "reduction", "mean")
        r = "mean" if r == "batchmean" else r
        n = sum(len(x) for x, _ in self.batches)
        self.weights = [1.0 if r == "sum" else len(x) / n for x, _ in self.batches]

    def params(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for name, shape in zip(self.names, self.shapes):
            k = shape.numel()
            out[name] = theta[i:i + k].reshape(shape)
            i += k
        out.update(self.fixed)
        out.update({n: b.clone() for n, b in self.model.named_buffers()})  # never update the model's stats
        return out

    def output(self, theta: torch.Tensor, b: int) -> torch.Tensor:
        return torch.func.functional_call(self.model, self.params(theta), (self.batches[b][0],))

    def batch_loss(self, out: torch.Tensor, b: int) -> torch.Tensor:
        return self.loss_fn(out, self.batches[b][1]).reshape(())

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return sum(w * self.batch_loss(self.output(theta, b), b) for b, w in enumerate(self.weights))

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        theta = theta.detach().requires_grad_()
        return torch.autograd.grad(self(theta), theta)[0]

    def hessian(self) -> torch.Tensor:
        """Reverse over reverse with ``torch.autograd`` (not ``torch.func.jacrev`` twice: through
        LayerNorm and BatchNorm in train mode that gives an asymmetric Hessian, 5 % off, torch 2.13)."""
        return torch.autograd.functional.hessian(self, self.theta0, vectorize=True)

    def ggn_parts(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch b's output Jacobian J (O, P) and the loss Hessian in the outputs H_out (O, O)."""
        out = self.output(self.theta0, b).detach()
        J = torch.autograd.functional.jacobian(lambda t: self.output(t, b).reshape(-1), self.theta0, vectorize=True)
        H = torch.autograd.functional.hessian(lambda o: self.batch_loss(o.reshape(out.shape), b), out.reshape(-1),
                                              vectorize=True)
        return J, H

    def ggn(self) -> torch.Tensor:
        G = torch.zeros(len(self.theta0), len(self.theta0), dtype=self.theta0.dtype)
        for b, w in enumerate(self.weights):
            J, H = self.ggn_parts(b)
            G += w * J.T @ H @ J
        return G


@dataclass
class Reference:
    loss: float
    grad: torch.Tensor
    hessian: torch.Tensor
    ggn: torch.Tensor
    flat: FlatLoss
    hessian_asymmetry: float = 0.0  # of the raw reverse-over-reverse Hessian (before symmetrising)


_REFERENCES: dict[str, Reference] = {}


def reference(case: Case) -> Reference:
    """Dense reverse-mode references for ``case`` (cached per case)."""
    if case.name not in _REFERENCES:
        model, loss_fn, data, kwargs = case.build()
        f = FlatLoss(model, loss_fn, data, kwargs.get("reduction"))
        H, G = f.hessian(), f.ggn()
        _REFERENCES[case.name] = Reference(float(f(f.theta0)), f.grad(f.theta0), 0.5 * (H + H.T), 0.5 * (G + G.T), f,
                                           float((H - H.T).norm() / H.norm()))
    return _REFERENCES[case.name]


def _freeze_detached(model: nn.Module) -> None:
    """Hold detached values constant at the current point, as autograd sees them."""
    for m in model.modules():
        if isinstance(m, Detached):
            m.fixed_scale = m.scale()


def finite_difference_check(case: Case, h: float = 1e-5, num_directions: int = 3) -> dict[str, float]:
    """Relative errors of the references against central finite differences along random directions
    u, w: the gradient (loss values), H u (gradients), and the GGN's bilinear forms wᵀ G u from J u, J w
    (outputs) and H_out J u (output gradients); also the asymmetry of the raw reverse-over-reverse Hessian.
    Detached values are held at the current point, as autograd sees them."""
    ref = reference(case)
    model, loss_fn, data, kwargs = case.build()
    _freeze_detached(model)
    f = FlatLoss(model, loss_fn, data, kwargs.get("reduction"))
    t0, P = f.theta0, len(f.theta0)
    U = torch.randn(num_directions, P, generator=_g(3), dtype=DT)
    W = torch.randn(num_directions, P, generator=_g(4), dtype=DT)
    errors = {}
    fd = torch.stack([(f(t0 + h * u) - f(t0 - h * u)) / (2 * h) for u in U])
    errors["grad"] = float((fd - U @ ref.grad).norm() / (U @ ref.grad).norm())
    HU = torch.stack([(f.grad(t0 + h * u) - f.grad(t0 - h * u)) / (2 * h) for u in U])
    errors["hessian"] = float((HU - U @ ref.hessian).norm() / (U @ ref.hessian).norm())
    errors["hessian_asymmetry"] = ref.hessian_asymmetry
    forms = torch.zeros(num_directions, num_directions, dtype=DT)
    for b, w in enumerate(f.weights):
        out = f.output(t0, b).detach()
        jvp = lambda d: (f.output(t0 + h * d, b) - f.output(t0 - h * d, b)) / (2 * h)  # noqa: E731
        def go(o, b=b):
            o = o.detach().requires_grad_()
            return torch.autograd.grad(f.batch_loss(o, b), o)[0]
        for i, u in enumerate(U):
            ju = jvp(u)
            hju = (go(out + h * ju) - go(out - h * ju)) / (2 * h)
            for j, wv in enumerate(W):
                forms[j, i] += w * (jvp(wv) * hju).sum()
    exact = W @ ref.ggn @ U.T
    scale = max(float(exact.norm()), float((W @ ref.hessian @ U.T).norm()))
    errors["ggn"] = float((forms - exact).norm() / scale)
    return errors
