"""Coverage of the engine's intervals for composite statistics, by simulation, at the unit counts a
chapter uses.

The generic interval methods are checked on known distributions in the test suite
(``tests/test_stats.py``). A chapter's composite statistics — ratios and differences of medians
(percentile bootstrap), its own ``statistic="custom"`` functions (a slope or a span of several
groups' medians: bootstrap, or the range over simultaneous exact intervals) — are checked here, on
the data they were decided on:

- the *population* is the chapter's own units of one claim (its record's per-unit values);
- each repetition draws ``n`` units from it with replacement (rows of groups together for a paired
  design; each group on its own for a two-sample design), as the chapter drew its units from the
  world, and computes the engine's interval on them (the bootstrap with 1,000 resamples, the exact
  methods through :func:`curvnb.claims.evaluate` itself);
- the truth is the statistic of the population itself, so the fraction of repetitions whose
  interval contains it is the interval's coverage in a world whose answer is known.

``python -m curvnb.claims.coverage`` runs it for every such claim of the book's quick run
(``_build/claims``) and writes ``benchmarks/results/coverage.{json,md}``; ``make coverage`` does
the same. A chapter's claims table shows each such claim's simulated coverage beside its interval
(and says so where it falls below nominal); the test suite checks that the stored results are those
of the statistics and profiles that now exist, so an edited statistic or profile needs a new simulation.
"""
from __future__ import annotations

import datetime
import hashlib
import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from curvnb import stats
from curvnb.claims.engine import ClaimSpec, bootstrap_statistic, evaluate, function_sha256
from curvnb.claims.pooling import value_groups
from curvnb.seeds import declare_streams

REPETITIONS = 4000   # the stored simulation: Monte Carlo s.e. ≈ 0.35 points at 95 %
# The engine resamples 4,000 times (stats.bootstrap's default); the simulation 1,000 times per
# repetition, which only adds noise to each interval's ends (coverage moves by well under a point) and
# keeps a 200-unit, 12-group claim at about a minute.
RESAMPLES = 1000
CHUNK_ELEMENTS = 2 * 10**7   # resampled values held at once (~160 MB of float64)
FLOOR = 0.93          # accepted: at least nominal − 2 points (below it, an interval claims more than it has)
CONSERVATIVE = 0.975  # above it the interval is conservative: verdicts harder to reach, never misleading
SIMULATED = ("bootstrap",) + stats.SIMULTANEOUS   # the methods of composite statistics, checked here
STREAMS = declare_streams("coverage", {"units": ("test", 1024)})
RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"


def simulated(spec: ClaimSpec) -> bool:
    """Whether ``spec``'s interval is one this module checks (a composite statistic's)."""
    return spec.interval_method in SIMULATED


def acceptable(coverage: float) -> bool:
    """At least nominal − 2 points: the interval does not claim more confidence than it has."""
    return coverage >= FLOOR


def stored(path: Path | None = None) -> dict[str, Any]:
    """The stored simulation results (``{}`` when none were written)."""
    path = path or RESULTS / "coverage.json"
    return json.loads(path.read_text()) if path.exists() else {}


def simulated_coverage(chapter: str, spec: ClaimSpec, profile: str,
                       results: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The stored coverage of ``spec``'s interval in ``chapter`` at ``profile``'s unit count, when it was
    simulated for this statistic and this profile (``None`` otherwise)."""
    results = stored() if results is None else results
    for r in results.get("claims", ()):
        if (r["chapter"] == chapter and r["id"] == spec.id and r.get("coverage") is not None
                and r["profile"] == profile and r["spec_sha256"] == spec_sha256(spec)
                and r["profile_sha256"] == profile_sha256(chapter, profile)):
            return {"coverage": r["coverage"], "n_units": r["n_units"], "repetitions": r["repetitions"],
                    "accepted": acceptable(r["coverage"])}
    return None


def population_coverage(spec: ClaimSpec, population: Sequence[Sequence[float]], n_units: int | None = None, *,
                        repetitions: int = REPETITIONS, resamples: int = RESAMPLES,
                        seed: int = 0) -> dict[str, Any]:
    """Coverage of ``spec``'s interval when ``n_units`` units are drawn from ``population``.

    ``population``: one array per group (the spec's groups; equal lengths for a paired design, whose
    units are drawn together). ``n_units`` defaults to the population's size (the chapter's own
    count). Returns the coverage, its Monte Carlo standard error, the truth and the median width."""
    if not simulated(spec):
        raise ValueError(f"claim {spec.id!r}: its interval is {spec.interval_method!r}, not one of {SIMULATED}")
    groups = [np.asarray(g, dtype=float).ravel() for g in population]
    paired = spec.definition.design == "paired"
    if paired and len({g.size for g in groups}) != 1:
        raise ValueError(f"claim {spec.id!r}: a paired population needs one value per group for each unit")
    n = int(n_units or min(g.size for g in groups))
    if n < spec.min_units():
        raise ValueError(f"claim {spec.id!r}: {n} units are fewer than its interval needs ({spec.min_units()})")
    statistic = bootstrap_statistic(spec)
    with np.errstate(divide="ignore", invalid="ignore"):
        truth = float(statistic(*groups))
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_ELEMENTS // (resamples * n * len(groups)))
    covered, widths = [], []

    def draw(reps: int | None) -> list[np.ndarray]:   # n units per repetition, rows together when paired
        shape = (n,) if reps is None else (reps, n)
        index = rng.integers(0, groups[0].size, shape) if paired else None
        return [g[index if paired else rng.integers(0, g.size, shape)] for g in groups]

    if spec.interval_method == "bootstrap":   # vectorised over repetitions, in chunks that fit in memory
        for start in range(0, repetitions, chunk):
            lo, hi = stats.bootstrap(draw(min(chunk, repetitions - start)), statistic,
                                     seed=int(rng.integers(2**63)), paired=paired, resamples=resamples)
            covered.append((lo <= truth) & (truth <= hi))
            widths.append(hi - lo)
    else:   # the exact methods: the engine itself, one repetition at a time
        for _ in range(repetitions):
            lo, hi = evaluate(spec, *draw(None)).interval or (-math.inf, math.inf)
            covered.append(np.array([lo <= truth <= hi]))
            widths.append(np.array([hi - lo]))
    hits = np.concatenate(covered)
    rate = float(hits.mean())
    return {"id": spec.id, "coverage": rate, "standard_error": math.sqrt(max(rate * (1 - rate), 1e-12) / hits.size),
            "repetitions": int(hits.size), "resamples": int(resamples), "n_units": n, "groups": len(groups),
            "design": spec.definition.design, "method": spec.interval_method, "truth": truth,
            "median_width": float(np.median(np.concatenate(widths))),
            "accepted": acceptable(rate)}


def spec_sha256(spec: ClaimSpec) -> str:
    """What a coverage result depends on in the spec: statistic, design, method and (custom) its function."""
    parts = [spec.statistic, spec.definition.design, spec.interval_method,
             function_sha256(spec.function) if spec.function is not None else "",
             function_sha256(spec.bounds) if spec.bounds is not None else ""]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def profile_sha256(chapter: str, profile: str = "quick") -> str:
    """A hash of the chapter's profile configuration (its unit counts among it)."""
    compute = importlib.import_module(f"curvnb.studies.{chapter}")
    return hashlib.sha256(repr(compute.PROFILES[profile]).encode()).hexdigest()


def _population(record: dict[str, Any]) -> list[list[float]]:
    return [record["values"][k] for k in value_groups(record["values"])]


def chapter_coverage(chapter: str, records: Sequence[dict[str, Any]], *, repetitions: int = REPETITIONS,
                     progress: bool = True) -> list[dict[str, Any]]:
    """Coverage of every bootstrapped claim of one chapter's records, each on its own units as the
    population (``coverage: None`` with a reason where the units are too few to decide)."""
    study = importlib.import_module(f"curvnb.studies.{chapter}")
    specs = {s.id: s for s in getattr(study, "SPECS", ())}
    out = []
    for i, record in enumerate(records):
        spec = specs.get(record["id"])
        if spec is None or record.get("rule") != "engine" or not simulated(spec):
            continue
        keys = {"chapter": chapter, "id": spec.id, "spec_sha256": spec_sha256(spec),
                "profile": record.get("profile", "quick"), "profile_sha256": profile_sha256(chapter)}
        if record.get("n_units", 0) < spec.min_units():
            out.append({**keys, "coverage": None, "n_units": record.get("n_units", 0), "method": spec.interval_method,
                        "reason": f"{record.get('n_units', 0)} units, fewer than the {spec.min_units()} its interval "
                                  "needs: inconclusive by construction, nothing to cover"})
            continue
        if spec.function is not None and record.get("function_sha256") not in (None, function_sha256(spec.function)):
            raise ValueError(f"{chapter}/{spec.id}: the record was decided by another function than the declared "
                             "one: re-run the chapter first")
        if progress:
            print(f"{chapter}/{spec.id}: {record['n_units']} units ...", file=sys.stderr, flush=True)
        res = population_coverage(spec, _population(record), repetitions=repetitions,
                                  seed=STREAMS.seed(0, "units", i))
        out.append({**keys, **res})
    return out


def render_markdown(results: dict[str, Any]) -> str:
    """The coverage table (``benchmarks/results/coverage.md``) from the JSON results."""
    lines = [f"*Simulated {results['date']}: {results['repetitions']} repetitions per claim, each a fresh draw of "
             "the claim's own units (with replacement) from the units the book's quick run decided it on, with "
             f"the engine's percentile-bootstrap interval ({results['resamples']} resamples each; the engine uses "
             f"4,000), or the engine's simultaneous exact intervals. Accepted: at least {FLOOR:.0%} (nominal 95 %); "
             f"above {CONSERVATIVE:.1%} the interval is conservative. Below the floor the chapter's claims table says "
             "so beside the verdict. With few units the simulated world is only the observed values (at 8 units, "
             "8 values with many ties in every draw), harsher for a median's bootstrap than a continuous "
             "distribution (93–97.5 % at 8 units in `tests/test_stats.py`). "
             "Command: `python -m curvnb.claims.coverage`.*",
             "",
             "| chapter | claim | units | groups | interval | coverage | ± s.e. | median width | accepted |",
             "|---|---|---:|---:|---|---:|---:|---:|---|"]
    for r in results["claims"]:
        if r["coverage"] is None:
            lines.append(f"| {r['chapter']} | {r['id']} | {r['n_units']} | | {r['method']} | — | | | {r['reason']} |")
            continue
        accepted = ("no: below nominal" if not r["accepted"] else
                    "yes, conservative" if r["coverage"] > CONSERVATIVE else "yes")
        lines.append(f"| {r['chapter']} | {r['id']} | {r['n_units']} | {r['groups']} | {r['method']} | "
                     f"{r['coverage']:.1%} | {r['standard_error']:.1%} | {r['median_width']:.3g} | {accepted} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    from curvnb.claims.records import read_claims
    from curvnb.paths import build_dir

    parser = argparse.ArgumentParser(prog="python -m curvnb.claims.coverage", description=__doc__.split("\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter ids (default: every chapter with a claims file)")
    parser.add_argument("--repetitions", type=int, default=REPETITIONS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    claims_dir = build_dir() / "claims"
    chapters = args.chapters or sorted(p.stem for p in claims_dir.glob("*.json"))
    found = []
    for chapter in chapters:
        path = claims_dir / f"{chapter}.json"
        if not path.exists():
            raise SystemExit(f"no claims file for {chapter!r} at {path}: run `curvnb run {chapter}` first")
        found += chapter_coverage(chapter, read_claims(path), repetitions=args.repetitions)
    results = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "repetitions": args.repetitions, "resamples": RESAMPLES, "floor": FLOOR, "claims": found}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coverage.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "coverage.md").write_text(render_markdown(results))
    print(render_markdown(results))


if __name__ == "__main__":
    main()
