"""Data-parallel curvature: 2 CPU processes on gloo, each holding a shard of the data (unequal sizes),
give the single-process results over all the data (float64, 1e-6) and the same values on both ranks."""
from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from curvnb.curvature import (CurvatureOperator, ggn_vp, gradient_covariance_eigenvalues, gradient_covariance_trace,
                              hessian_eigenvalues, hessian_trace, hvp, loss_and_grad, slq_nodes)

DT = torch.float64
WORLD = 2


def problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(DT)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 5, generator=g, dtype=DT), torch.randint(0, 3, (30,), generator=g)
    P = sum(p.numel() for p in model.parameters())
    v = torch.randn(P, generator=g, dtype=DT)
    V = torch.randn(P, 2, generator=g, dtype=DT)
    return model, x, y, v, V


def shard(x, y, rank):
    """Rank 0: two batches (7 + 6 examples); rank 1: one batch of 17."""
    if rank == 0:
        return [(x[:7], y[:7]), (x[7:13], y[7:13])]
    return [(x[13:], y[13:])]


def measure(model, x_or_batches, loss, v, V, group=None):
    data = x_or_batches
    op = CurvatureOperator(model, loss, data, process_group=group)
    return {
        "hvp": hvp(model, loss, data, v, process_group=group),
        "ggn_vp": ggn_vp(model, loss, data, v, process_group=group),
        "operator": op @ v,
        "matmat_batched": op.matmat(V, batched=True),
        "ggn_operator": CurvatureOperator(model, loss, data, kind="ggn", process_group=group) @ v,
        "sum_hvp": hvp(model, nn.CrossEntropyLoss(reduction="sum"), data, v, process_group=group),
        "eigenvalues": hessian_eigenvalues(model, loss, data, k=3, tol=1e-10, process_group=group).eigenvalues,
        "block_eigenvalues": hessian_eigenvalues(model, loss, data, k=3, tol=1e-10, block_size=3,
                                                 process_group=group).eigenvalues,
        "trace": torch.tensor(hessian_trace(model, loss, data, num_samples=4, seed=3, process_group=group)),
        "slq_nodes": torch.as_tensor(slq_nodes(op, num_runs=2, num_steps=8, seed=1)[0]),
        "loss_grad": torch.cat([torch.tensor([loss_and_grad(model, loss, data, process_group=group)[0]]),
                                loss_and_grad(model, loss, data, process_group=group)[1]]),
        "cov_gram": gradient_covariance_eigenvalues(model, loss, data, k=4, process_group=group),
        "cov_lanczos": gradient_covariance_eigenvalues(model, loss, data, k=3, method="lanczos", tol=1e-10,
                                                       process_group=group),
        "cov_trace": torch.tensor(gradient_covariance_trace(model, loss, data, process_group=group)),
    }


def worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=120))
    try:
        model, x, y, v, V = problem()
        out = measure(model, shard(x, y, rank), nn.CrossEntropyLoss(), v, V, group=dist.group.WORLD)
        # a refusal on one rank only (an ignored target in rank 1's shard) must raise on every rank
        y_bad = y.clone()
        if rank == 1:
            y_bad[20] = -100
        try:
            hvp(model, nn.CrossEntropyLoss(), shard(x, y_bad, rank), v, process_group=dist.group.WORLD)
            out["refusal"] = "none"
        except ValueError as exc:
            out["refusal"] = str(exc)
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_gloo_processes_equal_single_process(tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.start_processes(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 300
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the distributed workers did not finish in 300 s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    model, x, y, v, V = problem()
    single = measure(model, [(x, y)], nn.CrossEntropyLoss(), v, V)
    for key, ref in single.items():
        for r, out in enumerate(ranks):
            err = float((out[key] - ref).norm() / ref.norm())
            assert err < 1e-6, (key, r, err)
    for key in ("eigenvalues", "block_eigenvalues", "trace", "slq_nodes", "cov_lanczos"):
        assert torch.equal(ranks[0][key], ranks[1][key]), key   # every rank gets the same values
    assert all("ignore_index" in out["refusal"] or "other rank" in out["refusal"] for out in ranks), \
        [out["refusal"] for out in ranks]
