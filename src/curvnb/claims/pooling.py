"""Pooled verdicts over chapter seeds (a sweep): the units of every chapter seed, one decision.

A statistical claim's record keeps the per-unit values its statistic was computed from
(``values``). Chapter seeds draw disjoint units (:mod:`curvnb.seeds`), so the units of several
chapter seeds of one configuration are one larger sample of the same experiment: :func:`pool_claim`
concatenates them (pairs stay pairs) and re-decides the claim with the engine's unchanged rule
(:func:`curvnb.claims.evaluate`, the spec read back from the record).

Only runs whose units are exchangeable pool: the same profile, configuration and *units code* (the
study's compute code and the curvnb modules it imports, ``units_sha256`` in the run record; prose,
figures, widgets and claims code may differ: the claim definition is checked on the records). Where the runs of a sweep disagree, the largest
group that agrees pools (the latest chapter seeds on a tie) and the others are left out, each with
the reason: typically the book's own run (chapter seed 0), made with older code. A claim is refused,
with the reason, where its records' specs differ, where it is deterministic (reported per seed,
never pooled), and, for a custom statistic (its function is not in the record), unless the study's
declared spec is the one the runs used (the source hash of its function, ``function_sha256``).
:func:`shared_unit_values` checks the premise on real records: no per-unit value of one chapter
seed appears among another's for the same claim.
"""
from __future__ import annotations

import importlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from curvnb.claims.engine import ClaimSpec, evaluate, function_sha256
from curvnb.seeds import declare_streams

STREAMS = declare_streams("pooling", {"bootstrap": ("test", 1)})


@dataclass(frozen=True)
class Run:
    """One chapter seed's run: its ``run`` metadata (profile, config, sources) and claim records."""

    seed: int
    meta: dict[str, Any]
    records: Sequence[dict[str, Any]]

    def record(self, claim_id: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r["id"] == claim_id), None)


def value_groups(values: dict[str, Any]) -> list[str]:
    """The value groups of a record, in the order the statistic takes them (g0, g1, …, g10: by number)."""
    numbered = [k for k in values if k[:1] == "g" and k[1:].isdigit()]
    return [k for k in ("x", "a", "b") if k in values] or sorted(numbered, key=lambda k: int(k[1:]))


def _config_key(meta: dict[str, Any]) -> tuple:
    """What must agree for two runs' units to be exchangeable: profile, configuration and the code
    that drew the units and computed their values (the whole source hash for runs recorded before
    ``units_sha256`` existed)."""
    return (meta.get("profile"), json.dumps(meta.get("config"), sort_keys=True, default=str),
            meta.get("units_sha256") or meta.get("sources_sha256"))


LEFT_OUT = "another profile, configuration or units code than the pooled chapter seeds"


def exchangeable(runs: Sequence[Run]) -> tuple[list[Run], list[Run]]:
    """``(pooled, left out)``: the largest group of ``runs`` that agree on :func:`_config_key` (on a
    tie, the group holding the highest chapter seed: the latest sweep), and the others."""
    if not runs:
        return [], []
    keys = {r.seed: _config_key(r.meta) for r in runs}
    counts = Counter(keys.values())
    best = max(counts, key=lambda k: (counts[k], max(s for s, key in keys.items() if key == k)))
    kept = sorted((r for r in runs if keys[r.seed] == best), key=lambda r: r.seed)
    return kept, sorted((r for r in runs if keys[r.seed] != best), key=lambda r: r.seed)


def declared_spec(runs: Sequence[Run], claim_id: str) -> ClaimSpec | None:
    """The study's own declared spec of a custom-statistic claim (its function is code, not in the
    record), when it is the one every run's record was decided by: the same direction, threshold and
    design, and a function of the same source (``function_sha256``)."""
    chapter = runs[0].meta.get("chapter") if runs else None
    if not chapter:
        return None
    try:
        study = importlib.import_module(f"curvnb.studies.{chapter}")
    except ModuleNotFoundError:
        return None
    spec = next((s for s in getattr(study, "SPECS", ()) if s.id == claim_id), None)
    if spec is None or spec.statistic != "custom":
        return None
    declared = function_sha256(spec.function)
    for run in runs:
        rec = run.record(claim_id)
        if (rec is None or rec.get("function_sha256") != declared or spec.interval_method != rec.get("method")
                or rec.get("bounds_sha256") != (function_sha256(spec.bounds) if spec.bounds is not None else None)
                or spec.direction != rec.get("direction") or spec.threshold != rec.get("threshold_value")
                or spec.design != (rec.get("values") or {}).get("design")):
            return None
    return spec


def _spec(runs: Sequence[Run], claim_id: str) -> ClaimSpec | None:
    """The spec the records of ``claim_id`` were decided by, as one spec (``None``: they differ, or a
    custom statistic's function cannot be found)."""
    records = [r.record(claim_id) for r in runs]
    if records[0].get("statistic") == "custom":
        return declared_spec(runs, claim_id)
    specs = {ClaimSpec.from_record(rec) for rec in records}
    return specs.pop() if len(specs) == 1 else None


def why_not_pooled(runs: Sequence[Run], claim_id: str) -> str | None:
    """Why the units of ``claim_id`` over ``runs`` cannot be pooled (``None``: they can), after
    leaving out the runs not :func:`exchangeable` with the others."""
    return _why_not(exchangeable(runs)[0], claim_id)


def _why_not(runs: Sequence[Run], claim_id: str) -> str | None:
    """:func:`why_not_pooled` for runs already :func:`exchangeable`."""
    records = [r.record(claim_id) for r in runs]
    if any(rec is None for rec in records):
        return "not every chapter seed reports this claim"
    if len(runs) < 2:
        return "fewer than two chapter seeds with the same profile, configuration and units code: nothing to pool"
    if any(rec.get("rule") != "engine" for rec in records):
        return "a pre-engine record keeps no units"
    if records[0].get("statistic") == "value":
        return "a deterministic claim: reported per chapter seed, not pooled"
    if _spec(runs, claim_id) is None:
        if records[0].get("statistic") == "custom":
            return ("a custom statistic whose function is not the study's declared one (changed since these runs, "
                    "or not found): its units cannot be re-decided")
        return "the records' specs differ (statistic, threshold, direction or unit)"
    if any(not rec.get("values") or rec["values"].get("design") != records[0]["values"].get("design")
           for rec in records):
        return "a record keeps no per-unit values"
    return None


def pool_claim(runs: Sequence[Run], claim_id: str) -> dict[str, Any]:
    """The pooled record of ``claim_id`` over ``runs`` (in chapter-seed order): the engine's record on
    the concatenated units, plus ``pooled``: the chapter seeds, their units each, and the interval
    and verdict after each added chapter seed (the narrowing), and the runs left out as not
    :func:`exchangeable` with the others (``left_out``: [seed, reason]). Raises ``ValueError`` with
    the reason when the units cannot be pooled (:func:`why_not_pooled`)."""
    runs, left_out = exchangeable(runs)
    reason = _why_not(runs, claim_id)
    if reason is not None:
        raise ValueError(f"claim {claim_id!r} cannot be pooled: {reason}")
    records = [r.record(claim_id) for r in runs]
    spec = _spec(runs, claim_id)
    keys = value_groups(records[0]["values"])
    seed = STREAMS.seed(0, "bootstrap", 0)   # a pooled decision is a function of its units alone

    def decide(upto: int):
        data = [np.concatenate([np.asarray(rec["values"][k], dtype=float) for rec in records[:upto]]) for k in keys]
        return evaluate(spec, *data, seed=seed)

    results = [decide(k) for k in range(1, len(runs) + 1)]   # the last one is the pooled decision
    narrowing = [{"chapter_seeds": k, "n_units": res.n_units, "estimate": res.estimate,
                  "interval": None if res.interval is None else list(res.interval), "verdict": res.verdict}
                 for k, res in enumerate(results, start=1)]
    pooled = results[-1].record(runs[0].meta.get("profile", records[0].get("profile", "")))
    pooled["pooled"] = {"chapter_seeds": [r.seed for r in runs],
                        "units_per_seed": [int(rec["n_units"]) for rec in records],
                        "verdicts_per_seed": [rec["verdict"] for rec in records],
                        "left_out": [[r.seed, LEFT_OUT] for r in left_out],
                        "narrowing": narrowing}
    return pooled


def pool_runs(runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
    """Per claim id (in the first run's order): ``{"record": pooled record}`` or ``{"reason": why not}``."""
    ids = [rec["id"] for rec in sorted(runs, key=lambda r: r.seed)[0].records] if runs else []
    out = {}
    for cid in ids:
        reason = why_not_pooled(runs, cid)
        out[cid] = {"reason": reason} if reason else {"record": pool_claim(runs, cid)}
    return out


def _on_small_lattice(numbers: np.ndarray, max_denominator: int = 10**5) -> bool:
    """Whether every value is a fraction p/q with q ≤ ``max_denominator``, to 4 units in the last place.

    Such values take finitely many values, so two independent units can coincide: a Spearman
    correlation of n untied points is a multiple of 6/(n(n² − 1)) (n ≤ 49 here), an accuracy a
    multiple of 1/N. A continuous float64 value v lies that close to such a fraction with probability
    about 5e-6·max(1, |v|) (≈ 3e9 fractions per unit length, each within 4 ulp), so a claim whose
    every value does is discrete."""
    from fractions import Fraction

    if not len(numbers):
        return False
    if np.all(numbers == np.round(numbers)):   # integers (q = 1): the common case, vectorised
        return True
    return all(
        abs(v - float(Fraction(float(v)).limit_denominator(max_denominator))) <= 4 * np.spacing(abs(float(v)))
        for v in numbers)


def shared_unit_values(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Units that one chapter seed shares with another for the same claim: evidence that two chapter
    seeds ran the same unit. A unit is the tuple of its values over the record's groups (a pair, for
    a paired design). Discrete measurements are skipped, since equal values are expected there:
    0/1 outcomes (proportions), integer counts, values that repeat within one chapter seed (an
    accuracy on a finite test set), and values that are all small fractions (a rank correlation of a
    few points, a count over a fixed total); so are constants of the configuration (one value everywhere)."""
    found = []
    ids = {rec["id"] for run in runs for rec in run.records}
    for cid in sorted(ids):
        per_seed: dict[int, list[tuple[float, ...]]] = {}
        for run in runs:
            rec = run.record(cid)
            if rec is None or rec.get("rule") != "engine" or rec.get("method") == "clopper-pearson":
                continue
            values = rec.get("values") or {}
            keys = value_groups(values)
            if values.get("design") in (None, "deterministic") or not keys:
                continue
            columns = [np.asarray(values[k], dtype=float).ravel() for k in keys]
            if len({len(c) for c in columns}) == 1:   # paired or one-sample: one tuple per unit
                per_seed[run.seed] = [tuple(u) for u in zip(*columns)]
            else:                                      # independent groups: each value its own unit
                per_seed[run.seed] = [(k, float(v)) for k, c in zip(keys, columns) for v in c]
        units = [u for seed_units in per_seed.values() for u in seed_units]
        numbers = np.array([v for u in units for v in u if isinstance(v, float)])
        discrete = any(len(set(seed_units)) < len(seed_units) for seed_units in per_seed.values()) or \
            _on_small_lattice(numbers)
        if discrete or len(set(units)) == 1:
            continue
        seeds = sorted(per_seed)
        for i, s in enumerate(seeds):
            for t in seeds[i + 1:]:
                shared = set(per_seed[s]) & set(per_seed[t])
                if shared:
                    found.append({"claim": cid, "seeds": (s, t), "values": sorted(shared)})
    return found
