"""The shared training loop: any ``torch.optim`` optimizer, a schedule of probes, resumable.

``train(model, optimizer, loss_fn, (x, y), steps=..., batch_size=..., probe_every=..., probes=...)``
runs ``steps`` optimizer steps on mini-batches drawn without replacement from a seeded
per-epoch permutation (a partial batch at the end of an epoch is dropped, so ``batch_size = N``
is full-batch gradient descent). Every ``probe_every`` steps, and after the last step, it
records the loss and accuracy on a fixed *probe subset* of the training data plus every
requested probe ``fn(model) -> value`` (a float, or a dict / list of floats, e.g. several
curvature numbers computed from one expensive pass).

Probes run with the model in eval mode and inside :func:`torch.random.fork_rng`, so a probe
that draws random numbers does not change the training trajectory. With ``checkpoint=path``
the model, optimizer, scheduler, sampler and RNG states and the history are saved atomically
(temporary file + rename); a later call with the same arguments continues where the saved
run stopped, and the result equals an uninterrupted run exactly. A non-finite loss stops the
run with ``history["diverged"] = True`` instead of raising.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from curvnb.seeds import cpu_generator

__all__ = ["train", "evaluate", "BatchSampler"]

Probe = Callable[[nn.Module], Any]
StepFn = Callable[[nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor], float]

_CHECKPOINT_VERSION = 1


class BatchSampler:
    """Mini-batch indices from a seeded permutation per epoch; its state can be saved and restored.

    ``next()`` returns the next ``batch_size`` indices; when fewer than ``batch_size`` remain
    in the current permutation a fresh one is drawn (drop-last), so every batch is full."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if not 0 < batch_size <= n:
            raise ValueError(f"batch_size must be in [1, {n}] (the number of training examples), got {batch_size}")
        self.n, self.batch_size = n, batch_size
        self.generator = cpu_generator(int(seed))
        self.perm = torch.randperm(n, generator=self.generator)
        self.pos = 0
        self.epoch = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator)
            self.pos = 0
            self.epoch += 1
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm.clone(), "pos": self.pos,
                "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.perm, self.pos, self.epoch = state["perm"].clone(), int(state["pos"]), int(state["epoch"])


def _is_classification(outputs: torch.Tensor, targets: torch.Tensor) -> bool:
    return (not torch.is_floating_point(targets) and outputs.ndim == targets.ndim + 1
            and outputs.shape[-1] > 1)


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: Callable, data: tuple[torch.Tensor, torch.Tensor],
             batch_size: int = 1024) -> dict[str, float]:
    """Mean loss (and accuracy, for integer class targets) of ``model`` on ``data`` in eval mode.

    ``loss_fn`` must have mean reduction; chunks are weighted by their size. The model's
    train/eval mode is restored afterwards."""
    x, y = data
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"data must be a non-empty (x, y) pair of equal length, got {len(x)} and {len(y)}")
    was_training = model.training
    model.eval()
    total, correct, classify = 0.0, 0, None
    try:
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            out = model(xb)
            total += float(loss_fn(out, yb)) * len(xb)
            if classify is None:
                classify = _is_classification(out, yb)
            if classify:
                correct += int((out.argmax(-1) == yb).sum())
    finally:
        model.train(was_training)
    result = {"loss": total / len(x)}
    if classify:
        result["accuracy"] = correct / len(x)
    return result


def _always(step: int) -> bool:
    return True


def _default_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
                  xb: torch.Tensor, yb: torch.Tensor) -> float:
    """One closure-based ``optimizer.step`` (works for SGD, Adam, LBFGS, ...); returns the batch loss."""
    seen: list[torch.Tensor] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        seen.append(loss.detach())
        return loss

    optimizer.step(closure)
    return float(seen[0])  # the loss at the parameters the step started from


def _fingerprint(model: nn.Module, n: int, batch_size: int, probe_every: int, seed: int,
                 probes: Mapping[str, Probe], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """What must agree for a checkpoint to be continued (``steps`` may differ: it can grow)."""
    return {"version": _CHECKPOINT_VERSION, "n": n, "batch_size": batch_size, "probe_every": probe_every,
            "seed": int(seed), "probes": sorted(probes),
            "params": [tuple(p.shape) for p in model.parameters()],
            "optimizer": type(optimizer).__name__}


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rng_state() -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
          train_data: tuple[torch.Tensor, torch.Tensor], *, steps: int, batch_size: int,
          probe_every: int, probes: Mapping[str, Probe] | None = None, seed: int = 0,
          step_fn: StepFn | None = None, checkpoint: str | Path | None = None,
          checkpoint_every: int | None = None, progress: bool = True,
          probe_data: tuple[torch.Tensor, torch.Tensor] | None = None, probe_size: int = 1024,
          scheduler: Any = None, probe_at: Sequence[int] = (), description: str = "train",
          probe_when: Mapping[str, Callable[[int], bool]] | None = None) -> dict[str, Any]:
    """Train ``model`` for ``steps`` optimizer steps, probing every ``probe_every`` steps.

    Args:
        train_data: ``(x, y)`` tensors on the model's device.
        batch_size: mini-batch size ``S`` (``S = N``: full-batch GD).
        probes: ``{name: fn(model) -> float | dict | list}``, evaluated at step 0, every
            ``probe_every`` steps and after the last step (model in eval mode, RNG forked).
        seed: seeds the batch order (global torch RNG is saved/restored through checkpoints).
        step_fn: ``step_fn(model, optimizer, xb, yb) -> float`` replaces the default
            closure-based step (for optimizers with unusual step calls); returns the batch loss.
        checkpoint: file path; saved every ``checkpoint_every`` steps (default: at every
            probe) and at the end. If it exists and matches this run, training continues from it.
        probe_data: where ``loss``/``accuracy`` are measured; default a fixed, seeded subset of
            ``probe_size`` training examples.
        scheduler: optional ``torch.optim.lr_scheduler`` stepped after every optimizer step.
        probe_at: extra steps to probe besides the ``probe_every`` grid (e.g. denser early on).
        probe_when: ``{name: predicate(step) -> bool}`` for probes that should not run at every
            probe step (e.g. an expensive probe only early on); where the predicate is false the
            probe is not called and its entry is ``None``. Probes not named here run at every probe.

    Returns:
        ``history`` with lists ``step``, ``loss``, ``accuracy`` (classification), one list per
        probe, ``lr`` (first param group) aligned with ``step``; ``step_loss`` (the mini-batch loss
        of every step taken); ``diverged`` (bool), ``diverged_at`` (step or None),
        ``steps_done``, ``seconds`` (wall time of this call) and ``resumed_from`` (step or None).
    """
    from tqdm.auto import tqdm

    probes = dict(probes or {})
    probe_when = dict(probe_when or {})
    unknown = set(probe_when) - set(probes)
    if unknown:
        raise ValueError(f"probe_when names {sorted(unknown)} that are not probes; probes are {sorted(probes)}")
    reserved = {"step", "loss", "accuracy", "lr", "step_loss", "diverged", "diverged_at",
                "steps_done", "seconds", "resumed_from"}
    clash = reserved & set(probes)
    if clash:
        raise ValueError(f"probe names {sorted(clash)} are reserved; reserved names are {sorted(reserved)}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not isinstance(probe_every, int) or probe_every < 1:
        raise ValueError(f"probe_every must be a positive integer, got {probe_every!r}")
    x, y = train_data
    n = len(x)
    if len(y) != n or n == 0:
        raise ValueError(f"train_data must be a non-empty (x, y) pair of equal length, got {len(x)} and {len(y)}")
    sampler = BatchSampler(n, batch_size, seed)
    if probe_data is None:
        g = cpu_generator(int(seed) + 1)
        idx = torch.randperm(n, generator=g)[:min(probe_size, n)].to(x.device)
        probe_data = (x[idx], y[idx])
    checkpoint_every = checkpoint_every or probe_every
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    extra = {int(s) for s in probe_at}
    fingerprint = _fingerprint(model, n, batch_size, probe_every, seed, probes, optimizer)
    fingerprint["probe_at"] = sorted(extra)

    history: dict[str, Any] = {"step": [], "loss": [], "lr": [], **{k: [] for k in probes}, "step_loss": []}
    start_step, resumed_from = 0, None
    if ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state.get("fingerprint") != fingerprint:
            warnings.warn(f"checkpoint {ckpt_path} belongs to a different run; starting from scratch", stacklevel=2)
        elif state["step"] > steps:
            warnings.warn(f"checkpoint {ckpt_path} is at step {state['step']} > steps={steps}; starting from scratch",
                          stacklevel=2)
        else:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler") is not None:
                scheduler.load_state_dict(state["scheduler"])
            sampler.load_state_dict(state["sampler"])
            _set_rng_state(state["rng"])
            history = state["history"]
            start_step = resumed_from = int(state["step"])
            # A run that ended off the probe grid probed its last step; drop that extra
            # record unless it is also the last step of this run, so the grid matches.
            while (history["step"] and history["step"][-1] % probe_every != 0
                   and history["step"][-1] not in extra and history["step"][-1] != steps):
                for key in ("step", "loss", "accuracy", "lr", *probes):
                    if key in history:
                        history[key].pop()
            if history.get("diverged"):
                history["seconds"] = 0.0
                history["resumed_from"] = resumed_from
                return history

    def save(step: int) -> None:
        if ckpt_path is None:
            return
        _atomic_save({"fingerprint": fingerprint, "step": step, "model": model.state_dict(),
                      "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict() if scheduler is not None else None,
                      "sampler": sampler.state_dict(), "rng": _rng_state(), "history": history}, ckpt_path)

    def probe(step: int) -> None:
        if history["step"] and history["step"][-1] == step:
            return
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            metrics = evaluate(model, loss_fn, probe_data)
            was_training = model.training
            model.eval()  # curvature of the loss as evaluated (batch norm in inference mode)
            try:
                values = {name: fn(model) if probe_when.get(name, _always)(step) else None
                          for name, fn in probes.items()}
            finally:
                model.train(was_training)
        history["step"].append(step)
        history["loss"].append(metrics["loss"])
        if "accuracy" in metrics:
            history.setdefault("accuracy", []).append(metrics["accuracy"])
        history["lr"].append(float(optimizer.param_groups[0]["lr"]))
        for name, value in values.items():
            history[name].append(value)

    tic = time.perf_counter()
    history.setdefault("diverged", False)
    history.setdefault("diverged_at", None)
    model.train()
    if start_step == 0:
        probe(0)
    bar = tqdm(total=steps, initial=start_step, disable=not progress, leave=False, desc=description)
    step = start_step
    try:
        while step < steps:
            idx = sampler.next().to(x.device)
            xb, yb = x[idx], y[idx]
            if step_fn is None:
                loss = _default_step(model, optimizer, loss_fn, xb, yb)
            else:
                loss = float(step_fn(model, optimizer, xb, yb))
            step += 1
            history["step_loss"].append(loss)
            if scheduler is not None:
                scheduler.step()
            if not math.isfinite(loss):
                history["diverged"], history["diverged_at"] = True, step
                break
            if step % probe_every == 0 or step == steps or step in extra:
                probe(step)
                bar.set_postfix(loss=f"{history['loss'][-1]:.3g}", refresh=False)
            if step % checkpoint_every == 0 or step == steps:
                save(step)
            bar.update(1)
    finally:
        bar.close()
    if history["diverged"]:
        save(step)
    history["steps_done"] = step
    history["seconds"] = time.perf_counter() - tic
    history["resumed_from"] = resumed_from
    return history
