"""Data-parallel curvature on ``torch.distributed``: each rank holds a shard of the data.

Every operator of :mod:`curvnb.curvature` that takes ``process_group`` computes its products on the
local shard, weights them by the *global* batch sizes (n_b / N for a mean loss, N summed over all
ranks) and all-reduces them, so every rank holds the product of the loss over all the data. The
iterative solvers (Lanczos, Hutchinson, SLQ) then run the same arithmetic on every rank — their
random vectors are drawn on the CPU from the same seed — and return the same values everywhere.

Launch one process per device, e.g. ``torchrun --nproc_per_node=4 script.py`` with
``torch.distributed.init_process_group("nccl")`` (GPUs) or ``"gloo"`` (CPUs) in the script, and pass
``process_group=torch.distributed.group.WORLD`` (or a subgroup).
"""
from __future__ import annotations

from typing import Any

import torch


def _dist():
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("process_group was given but torch.distributed is not initialised: call "
                           "torch.distributed.init_process_group(...) first (e.g. under torchrun)")
    return dist


def all_reduce_sum(tensor: torch.Tensor, group: Any) -> torch.Tensor:
    """Sum ``tensor`` over the ranks of ``group`` in place (a no-op when ``group`` is None)."""
    if group is not None:
        _dist().all_reduce(tensor, group=group)
    return tensor


def global_sum(values: list[float], group: Any, device: torch.device | str = "cpu") -> list[float]:
    """The sums over ranks of a few numbers (float64), in one collective."""
    if group is None:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    all_reduce_sum(t, group)
    return t.tolist()


def agree(error: str | None, group: Any, device: torch.device | str = "cpu") -> None:
    """Raise ``ValueError(error)`` on every rank if any rank has an error (so no rank is left waiting
    in a later collective)."""
    if group is None:
        if error:
            raise ValueError(error)
        return
    count = global_sum([1.0 if error else 0.0], group, device)[0]
    if count:
        raise ValueError(error or f"{int(count)} other rank(s) refused their data shard (see their error)")


def all_gather_rows(rows: torch.Tensor, group: Any) -> torch.Tensor:
    """The row-wise concatenation, in rank order, of ``rows`` (n_r, ...) from every rank."""
    if group is None:
        return rows
    dist = _dist()
    world = dist.get_world_size(group)
    counts = torch.zeros(world, dtype=torch.int64, device=rows.device)
    counts[dist.get_rank(group)] = len(rows)
    all_reduce_sum(counts, group)
    padded = rows.new_zeros((int(counts.max()),) + tuple(rows.shape[1:]))
    padded[: len(rows)] = rows
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p[: int(c)] for p, c in zip(parts, counts)])
