"""The ``curvnb`` command: ``list``, ``run``, ``build``, ``book`` and ``sweep``."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Sequence

from curvnb.config import DEVICES, PROFILES


JOBS_HELP = ("chapters run at once (default: 2 on a CPU machine with two or more cores, 1 on a GPU); "
             "the longest start first")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="curvnb", description="Run and build the curvnb reproducibility book.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the chapters and what each profile costs")
    run = sub.add_parser("run", help="execute chapters with papermill into _build/executed/")
    run.add_argument("chapters", nargs="*", help="chapter ids (default: all)")
    run.add_argument("--profile", choices=PROFILES, default="quick",
                     help="quick (default: minutes on a CPU), full (paper scale, for a GPU) or smoke "
                          "(the tests' run: tiny sizes, seconds, no evidence)")
    run.add_argument("--device", choices=DEVICES, default="auto")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--jobs", type=int, metavar="J", help=JOBS_HELP)
    build = sub.add_parser("build", help="build the HTML book from the executed chapters")
    build.add_argument("--strict", action="store_true", help="turn Sphinx warnings into errors")
    book = sub.add_parser("book", help="run every chapter (quick profile) and build the HTML book")
    book.add_argument("--profile", choices=PROFILES, default="quick")
    book.add_argument("--device", choices=DEVICES, default="auto")
    book.add_argument("--seed", type=int, default=0)
    book.add_argument("--jobs", type=int, metavar="J", help=JOBS_HELP)
    sweep = sub.add_parser("sweep", help="run chapters × seeds × profiles as tasks (process pool or Ray) "
                           "into _build/sweeps/; completed tasks are not rerun")
    sweep.add_argument("chapters", nargs="*", help="chapter ids (default: all)")
    seeds = sweep.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="the seeds to run")
    seeds.add_argument("--num-seeds", type=int, metavar="N", help="run seeds 0 … N-1 (default: 3)")
    sweep.add_argument("--profile", choices=PROFILES, action="append",
                       help="quick (default), full, or smoke (a test run: tiny sizes, no evidence); "
                            "repeat it for several")
    sweep.add_argument("--device", choices=DEVICES, default="auto")
    sweep.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: a process pool on this machine; ray: a local Ray cluster, or --address")
    sweep.add_argument("--address", help="join the Ray cluster at this address (e.g. auto); implies --engine ray")
    sweep.add_argument("--gpus-per-task", type=float, default=0, metavar="G", help="GPUs per task (Ray)")
    sweep.add_argument("--max-parallel", type=int, metavar="K",
                       help="at most K tasks at once (default: local, half the CPUs or 1 on CUDA; "
                            "ray, as many as the cluster's resources allow)")
    return p


def _sweep(args: argparse.Namespace) -> None:
    """``curvnb sweep``: every expected failure becomes a ``ValueError`` (one line, exit 2)."""
    from curvnb.sweep import run_sweep

    if args.num_seeds is not None and args.num_seeds < 1:
        raise ValueError(f"--num-seeds must be at least 1, got {args.num_seeds}")
    seeds = args.seeds if args.seeds is not None else range(args.num_seeds or 3)
    engine = "ray" if args.address else args.engine
    report = run_sweep(args.chapters, seeds, args.profile or ["quick"], device=args.device, engine=engine,
                       address=args.address, gpus_per_task=args.gpus_per_task, max_parallel=args.max_parallel)
    if report.failed:
        names = ", ".join(f"{t.chapter} seed {t.seed} ({t.profile})" for t in report.failed)
        raise ValueError(f"{len(report.failed)} sweep task(s) failed after a retry: {names}; the other results "
                         "are kept, and running the same command again reruns only what is missing")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; every expected failure is one line on stderr and exit code 2."""
    args = _parser().parse_args(argv)
    from curvnb import book
    from curvnb.paths import require_project_root

    start = time.perf_counter()
    try:
        # Every command works on the book's repository: find it (or say how to set it) first, and
        # pin it so the kernels papermill starts agree.
        os.environ["CURVNB_ROOT"] = str(require_project_root())
        if args.command == "list":
            found = book.chapters()
            width = max((len(c.id) for c in found), default=10)
            for c in found:
                costs = "; ".join(f"{k}: {v}" for k, v in c.cost.items()) or "cost not stated"
                print(f"{c.id:<{width}}  {c.title}\n{'':<{width}}  {costs}")
            return 0
        if args.command in ("run", "book"):
            book.run_chapters(getattr(args, "chapters", None), profile=args.profile, device=args.device,
                              seed=args.seed, jobs=args.jobs)
        if args.command == "sweep":
            _sweep(args)
        if args.command in ("build", "book"):
            index = book.build_book(strict=getattr(args, "strict", False))
            print(f"open {index}")
    except (ValueError, FileNotFoundError, book.ChapterFailed) as exc:
        print(f"curvnb: error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"curvnb: error: the HTML build failed ({exc.cmd[0]} exited with {exc.returncode}); "
              "its messages are above", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command == "sweep":
            print("curvnb: interrupted; completed sweep tasks are kept: run the same command to resume",
                  file=sys.stderr)
        else:
            print("curvnb: interrupted; finished chapters are kept, interrupted ones are marked stale",
                  file=sys.stderr)
        return 130
    print(f"total time {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
