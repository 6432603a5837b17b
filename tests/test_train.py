"""The shared training loop: probes, determinism, exact resume from a checkpoint, divergence."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from curvnb.train import BatchSampler, evaluate, train


def _problem(seed: int = 0, n: int = 96):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


def _model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 3)).double()


def _norm_probe(model: nn.Module) -> float:
    return float(sum(p.detach().pow(2).sum() for p in model.parameters()))


def _noisy_probe(model: nn.Module) -> float:
    # draws from the global RNG: must not perturb the training trajectory
    return float(torch.randn(3).sum())


def test_history_layout_and_probe_grid():
    x, y = _problem()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    h = train(model, opt, nn.CrossEntropyLoss(), (x, y), steps=23, batch_size=16, probe_every=5,
              probes={"norm": _norm_probe, "pair": lambda m: {"a": 1.0, "b": 2.0}}, seed=0, progress=False)
    assert h["step"] == [0, 5, 10, 15, 20, 23]
    model2 = _model()
    h2 = train(model2, torch.optim.SGD(model2.parameters(), lr=0.1), nn.CrossEntropyLoss(), (x, y), steps=12, batch_size=16, probe_every=5,
               seed=0, progress=False, probe_at=(1, 2, 5))
    assert h2["step"] == [0, 1, 2, 5, 10, 12]
    for key in ("loss", "accuracy", "lr", "norm", "pair"):
        assert len(h[key]) == len(h["step"]), key
    assert len(h["step_loss"]) == 23 and h["steps_done"] == 23
    assert h["diverged"] is False and h["diverged_at"] is None
    assert h["pair"][0] == {"a": 1.0, "b": 2.0}
    assert all(0.0 <= a <= 1.0 for a in h["accuracy"])
    assert h["loss"][-1] < h["loss"][0]  # it learns
    # the recorded loss is the probe subset's loss (here: all 96 examples, since probe_size > N)
    assert math.isclose(h["loss"][-1], evaluate(model, nn.CrossEntropyLoss(), (x, y))["loss"], rel_tol=1e-12)


def test_probe_when_skips_a_probe_off_its_schedule():
    x, y = _problem()
    calls = []

    def counted(model):
        calls.append(1)
        return _norm_probe(model)

    model = _model()
    h = train(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), (x, y), steps=12,
              batch_size=16, probe_every=3, probes={"norm": _norm_probe, "early": counted},
              probe_when={"early": lambda step: step <= 4}, seed=0, progress=False)
    assert h["step"] == [0, 3, 6, 9, 12]
    assert [v is None for v in h["early"]] == [False, False, True, True, True] and len(calls) == 2
    assert h["early"][:2] == h["norm"][:2] and all(v is not None for v in h["norm"])
    with pytest.raises(ValueError, match="probe_when"):
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), (x, y), steps=2,
              batch_size=16, probe_every=1, probes={"norm": _norm_probe}, probe_when={"nope": bool},
              progress=False)


def test_sampler_epochs_cover_data_and_drop_last():
    s = BatchSampler(10, 4, seed=3)
    first_epoch = torch.cat([s.next(), s.next()])
    assert len(set(first_epoch.tolist())) == 8
    s.next()  # only 2 left in the epoch: a new permutation starts
    assert s.epoch == 1 and s.pos == 4
    with pytest.raises(ValueError, match="batch_size"):
        BatchSampler(10, 11, seed=0)


def test_same_seed_same_run_and_probes_do_not_perturb_training():
    x, y = _problem()
    runs = []
    for probes in ({}, {"noise": _noisy_probe}):
        model = _model(dropout=0.2)  # dropout uses the global RNG during training
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        torch.manual_seed(123)
        runs.append(train(model, opt, nn.CrossEntropyLoss(), (x, y), steps=15, batch_size=8, probe_every=2,
                          probes=probes, seed=1, progress=False))
    assert runs[0]["step_loss"] == runs[1]["step_loss"]
    assert runs[0]["loss"] == runs[1]["loss"]


@pytest.mark.parametrize("opt_name", ["sgd_momentum", "adam"])
def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path, opt_name):
    x, y = _problem()
    loss_fn = nn.CrossEntropyLoss()

    def make():
        model = _model(dropout=0.1)
        if opt_name == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)
        return model, opt, sched

    kwargs = dict(batch_size=12, probe_every=3, probe_at=(1,), probes={"norm": _norm_probe, "noise": _noisy_probe},
                  seed=5, progress=False)
    model, opt, sched = make()
    torch.manual_seed(7)
    full = train(model, opt, loss_fn, (x, y), steps=20, scheduler=sched, **kwargs)
    full_params = [p.detach().clone() for p in model.parameters()]

    ckpt = tmp_path / "run.pt"
    model, opt, sched = make()
    torch.manual_seed(7)
    first = train(model, opt, loss_fn, (x, y), steps=10, scheduler=sched, checkpoint=ckpt, **kwargs)
    assert first["step"][-1] == 10 and ckpt.exists()
    # a fresh process would rebuild everything from scratch: new model, optimizer, RNG state
    model, opt, sched = make()
    torch.manual_seed(999)
    resumed = train(model, opt, loss_fn, (x, y), steps=20, scheduler=sched, checkpoint=ckpt, **kwargs)
    assert resumed["resumed_from"] == 10
    assert resumed["step"] == full["step"] == [0, 1, 3, 6, 9, 12, 15, 18, 20]  # the extra step-10 probe of the first part is dropped
    assert resumed["step_loss"] == full["step_loss"]
    for key in ("loss", "accuracy", "norm", "lr"):
        assert resumed[key] == full[key], key
    for p, q in zip(model.parameters(), full_params):
        assert torch.equal(p.detach(), q)
    assert not list(tmp_path.glob("*.tmp"))  # atomic save leaves no temporary files


def test_mismatched_checkpoint_is_not_continued(tmp_path):
    x, y = _problem()
    ckpt = tmp_path / "run.pt"
    model = _model()
    train(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), (x, y), steps=4,
          batch_size=8, probe_every=2, seed=0, checkpoint=ckpt, progress=False)
    model = _model()
    with pytest.warns(UserWarning, match="different run"):
        h = train(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), (x, y), steps=4,
                  batch_size=16, probe_every=2, seed=0, checkpoint=ckpt, progress=False)
    assert h["resumed_from"] is None and h["steps_done"] == 4


def test_divergence_is_recorded_not_raised():
    x, _ = _problem()
    y = x.sum(1, keepdim=True)  # regression: GD far above 2/λ_max blows up to inf, then NaN
    torch.manual_seed(0)
    model = nn.Linear(5, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=100.0)
    h = train(model, opt, nn.MSELoss(), (x, y), steps=500, batch_size=96, probe_every=5, seed=0,
              progress=False)
    assert "accuracy" not in h  # not a classification problem
    assert h["diverged"] is True
    assert h["diverged_at"] is not None and h["steps_done"] == h["diverged_at"] < 500
    assert not math.isfinite(h["step_loss"][-1])


def test_custom_step_fn_and_full_batch_gd_is_deterministic():
    x, y = _problem()
    calls = []

    def step_fn(model, opt, xb, yb):
        calls.append(len(xb))
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.item()

    model = _model()
    h = train(model, torch.optim.SGD(model.parameters(), lr=0.05), nn.CrossEntropyLoss(), (x, y), steps=6,
              batch_size=len(x), probe_every=3, seed=0, step_fn=step_fn, progress=False)
    assert calls == [len(x)] * 6
    # full-batch GD: the batch order (and so the seed) does not matter
    model2 = _model()
    h2 = train(model2, torch.optim.SGD(model2.parameters(), lr=0.05), nn.CrossEntropyLoss(), (x, y), steps=6,
               batch_size=len(x), probe_every=3, seed=42, progress=False)
    assert all(math.isclose(a, b, rel_tol=1e-10) for a, b in zip(h["step_loss"], h2["step_loss"]))


def test_bad_arguments_raise_clear_errors():
    x, y = _problem()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="probe_every"):
        train(model, opt, nn.CrossEntropyLoss(), (x, y), steps=2, batch_size=8, probe_every=0, progress=False)
    with pytest.raises(ValueError, match="reserved"):
        train(model, opt, nn.CrossEntropyLoss(), (x, y), steps=2, batch_size=8, probe_every=1,
              probes={"loss": _norm_probe}, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        train(model, opt, nn.CrossEntropyLoss(), (x, y), steps=2, batch_size=0, probe_every=1, progress=False)
