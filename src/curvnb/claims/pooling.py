"""Pooled verdicts over chapter seeds (a sweep): the units of every chapter seed, one decision.

A statistical claim's record keeps the per-unit values its statistic was computed from
(``values``). Chapter seeds draw disjoint units (:mod:`curvnb.seeds`), so the units of several
chapter seeds of one configuration are one larger sample of the same experiment: :func:`pool_claim`
concatenates them (pairs stay pairs) and re-decides the claim with the engine's unchanged rule
(:func:`curvnb.claims.evaluate`, the spec read back from the record).

Pooling is refused, with the reason, where the units are not exchangeable: runs of another profile,
configuration or source version, records whose spec differs, custom statistics (their function is
not in the record), and deterministic claims (reported per seed, never pooled).
:func:`shared_unit_values` checks the premise on real records: no per-unit value of one chapter
seed appears among another's for the same claim.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from curvnb.claims.engine import ClaimSpec, evaluate
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


def _groups(values: dict[str, Any]) -> list[str]:
    return [k for k in ("x", "a", "b") if k in values] or sorted(k for k in values if k.startswith("g"))


def _config_key(meta: dict[str, Any]) -> tuple:
    return (meta.get("profile"), json.dumps(meta.get("config"), sort_keys=True, default=str),
            meta.get("sources_sha256"))


def why_not_pooled(runs: Sequence[Run], claim_id: str) -> str | None:
    """Why the units of ``claim_id`` over ``runs`` cannot be pooled (``None``: they can)."""
    records = [r.record(claim_id) for r in runs]
    if any(rec is None for rec in records):
        return "not every chapter seed reports this claim"
    if len(runs) < 2:
        return "one chapter seed: nothing to pool"
    if len({_config_key(r.meta) for r in runs}) > 1:
        return "the runs differ in profile, configuration or source version: their units are not exchangeable"
    if any(rec.get("rule") != "engine" for rec in records):
        return "a pre-engine record keeps no units"
    if records[0].get("statistic") == "value":
        return "a deterministic claim: reported per chapter seed, not pooled"
    if records[0].get("statistic") == "custom":
        return "a custom statistic: its function is not in the record, so pooled units cannot be re-decided"
    specs = {ClaimSpec.from_record(rec) for rec in records}
    if len(specs) > 1:
        return "the records' specs differ (statistic, threshold, direction or unit)"
    if any(not rec.get("values") or rec["values"].get("design") != records[0]["values"].get("design")
           for rec in records):
        return "a record keeps no per-unit values"
    return None


def pool_claim(runs: Sequence[Run], claim_id: str) -> dict[str, Any]:
    """The pooled record of ``claim_id`` over ``runs`` (in chapter-seed order): the engine's record on
    the concatenated units, plus ``pooled``: the chapter seeds, their units each, and the interval
    and verdict after each added chapter seed (the narrowing). Raises ``ValueError`` with the reason
    when the units are not exchangeable (:func:`why_not_pooled`)."""
    runs = sorted(runs, key=lambda r: r.seed)
    reason = why_not_pooled(runs, claim_id)
    if reason is not None:
        raise ValueError(f"claim {claim_id!r} cannot be pooled: {reason}")
    records = [r.record(claim_id) for r in runs]
    spec = ClaimSpec.from_record(records[0])
    keys = _groups(records[0]["values"])
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


def shared_unit_values(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Per-unit values that one chapter seed shares with another for the same claim: evidence that
    two chapter seeds ran the same unit. A value every unit of every run has (a constant of the
    configuration) and the 0/1 outcomes of proportions are not evidence and are skipped."""
    found = []
    ids = {rec["id"] for run in runs for rec in run.records}
    for cid in sorted(ids):
        per_seed = {}
        for run in runs:
            rec = run.record(cid)
            if rec is None or rec.get("rule") != "engine" or rec.get("method") == "clopper-pearson":
                continue
            values = rec.get("values") or {}
            if values.get("design") in (None, "deterministic"):
                continue
            per_seed[run.seed] = {k: set(map(float, values[k])) for k in _groups(values)}
        for key in {k for groups in per_seed.values() for k in groups}:
            everywhere = set.intersection(*[g.get(key, set()) for g in per_seed.values()]) if per_seed else set()
            constant = {v for v in everywhere
                        if all(g.get(key) == {v} for g in per_seed.values())}
            seeds = sorted(per_seed)
            for i, s in enumerate(seeds):
                for t in seeds[i + 1:]:
                    shared = (per_seed[s].get(key, set()) & per_seed[t].get(key, set())) - constant
                    if shared:
                        found.append({"claim": cid, "group": key, "seeds": (s, t), "values": sorted(shared)})
    return found
