"""Claims files: records of format 3, read back in formats 1, 2 and 3.

Each executed chapter writes ``_build/claims/<chapter>.json``::

    {"format": 3, "run": {chapter, profile, seed, device, torch, curvnb, sources_sha256, date,
                          wall_time_s, config}, "claims": [record, ...]}

Every record has the format-1 keys ``id, statement, measured, threshold, passed, profile``, the
format-2 keys ``kind, seeds, interval, source``, and the format-3 keys ``rule`` (``"engine"``:
decided by :mod:`curvnb.claims.engine`; ``"legacy"``: a pre-engine :class:`Claim`, its verdict
taken from ``passed``) and ``verdict`` (reproduced / not reproduced / inconclusive). Engine
records add the test itself: ``statistic, quantity, estimate, method, level, n_units, unit,
physical_unit, direction, threshold_value, delta, side, direction_found, units_to_decide, reason,
values`` (the per-unit values, ``{"design", "x"}`` or ``{"design", "a", "b"}``, pairs kept in
order) and ``detail``. ``passed`` is ``verdict == "reproduced"``, for format-2 readers.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

CLAIM_KEYS = ("id", "statement", "measured", "threshold", "passed", "profile")
RECORD_KEYS = CLAIM_KEYS + ("kind", "seeds", "interval", "source")
KINDS = ("paper", "check", "finding")
VERDICT_VALUES = ("reproduced", "not reproduced", "inconclusive")
FORMAT = 3
RECORD_DEFAULTS = {"kind": "paper", "seeds": 1, "interval": None, "source": ""}


def _plain(value: Any) -> Any:
    """JSON-safe version of a measured value (NumPy scalars/arrays, tuples, non-finite floats)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Claim:
    """A pre-engine claim (``rule: "legacy"``): ``passed`` must be computed from ``measured``, never
    typed in. Studies move to :class:`curvnb.claims.ClaimSpec`; until then these are still written.

    A claim about a random quantity is evaluated over ``seeds`` independent seeds and carries
    ``interval``, a 95 % interval of its tested statistic (:mod:`curvnb.stats`)."""

    id: str
    statement: str
    measured: Any
    threshold: str
    passed: bool
    kind: str = "paper"
    seeds: int = 1
    interval: tuple[float, float] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not self.id or not self.statement:
            raise ValueError("a claim needs an id and a statement")
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, (int, np.integer)) or self.seeds < 1:
            raise ValueError(f"claim {self.id!r}: seeds must be a positive integer, got {self.seeds!r}")
        if self.interval is not None:
            lo, hi = (float(v) for v in self.interval)
            if not lo <= hi:  # also rejects NaN
                raise ValueError(f"claim {self.id!r}: interval must be (low, high) with low <= high")
            object.__setattr__(self, "interval", (lo, hi))
        elif self.seeds > 1:
            raise ValueError(f"claim {self.id!r}: a statistic over {self.seeds} seeds needs its interval")
        object.__setattr__(self, "seeds", int(self.seeds))
        object.__setattr__(self, "passed", bool(self.passed))
        object.__setattr__(self, "measured", _plain(self.measured))

    def record(self, profile: str) -> dict[str, Any]:
        return {"id": self.id, "statement": self.statement, "measured": self.measured,
                "threshold": self.threshold, "passed": self.passed, "profile": profile,
                "kind": self.kind, "seeds": self.seeds,
                "interval": None if self.interval is None else [_plain(v) for v in self.interval],
                "source": self.source, "rule": "legacy",
                "verdict": "reproduced" if self.passed else "not reproduced"}


def write_claims(path: Path, claims: Sequence[Any], profile: str,
                 run: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Atomically write the chapter's claims file (records + ``run`` metadata); returns the records.

    ``claims``: engine results (:func:`curvnb.claims.evaluate`) and/or legacy :class:`Claim` s —
    anything with ``id`` and ``record(profile)``. Duplicate ids are an error."""
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate claim ids: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
    records = [c.record(profile) for c in claims]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"format": FORMAT, "run": _plain(run or {}), "claims": records}, f, indent=2)
    os.replace(tmp, path)
    return records


def read_claims_file(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(run metadata, records)`` of one chapter's claims file, format 1, 2 or 3, validated.

    Records of formats 1 and 2 get ``rule: "legacy"`` and their verdict from ``passed``."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):  # format 1: a bare list of records, no run metadata
        run, records = {}, data
    elif isinstance(data, dict) and isinstance(data.get("claims"), list):
        run, records = data.get("run") or {}, data["claims"]
    else:
        raise ValueError(f"{path}: expected a list of claim records or an object with 'claims'")
    for r in records:
        missing = [k for k in CLAIM_KEYS if k not in r]
        if missing:
            raise ValueError(f"{path}: claim {r.get('id')!r} lacks keys {missing}")
        for key, default in RECORD_DEFAULTS.items():
            r.setdefault(key, default)
        r.setdefault("rule", "legacy")
        r.setdefault("verdict", "reproduced" if r["passed"] else "not reproduced")
        if r["verdict"] not in VERDICT_VALUES or bool(r["passed"]) != (r["verdict"] == "reproduced"):
            raise ValueError(f"{path}: claim {r['id']!r} has verdict {r['verdict']!r} and passed {r['passed']!r}")
    return run, records


def read_claims(path: Path) -> list[dict[str, Any]]:
    """Read and validate one chapter's claim records (either format)."""
    return read_claims_file(path)[1]


