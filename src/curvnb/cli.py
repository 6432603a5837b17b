"""The ``curvnb`` command: ``list``, ``run`` and ``build``."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Sequence

from curvnb.config import DEVICES, PROFILES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="curvnb", description="Run and build the curvnb reproducibility book.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the chapters and what each profile costs")
    run = sub.add_parser("run", help="execute chapters with papermill into _build/executed/")
    run.add_argument("chapters", nargs="*", help="chapter ids (default: all)")
    run.add_argument("--profile", choices=PROFILES, default="quick")
    run.add_argument("--device", choices=DEVICES, default="auto")
    run.add_argument("--seed", type=int, default=0)
    build = sub.add_parser("build", help="build the HTML book from the executed chapters")
    build.add_argument("--strict", action="store_true", help="turn Sphinx warnings into errors")
    book = sub.add_parser("book", help="run every chapter (quick profile) and build the HTML book")
    book.add_argument("--profile", choices=PROFILES, default="quick")
    book.add_argument("--device", choices=DEVICES, default="auto")
    book.add_argument("--seed", type=int, default=0)
    return p


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
                              seed=args.seed)
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
        print("curvnb: interrupted; finished chapters are kept, the interrupted one is marked stale",
              file=sys.stderr)
        return 130
    print(f"total time {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
