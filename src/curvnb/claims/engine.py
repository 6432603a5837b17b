"""The verdict engine: a claim's spec + its per-unit values → estimate, 95 % interval, verdict.

One rule for every claim (:func:`decide`): *reproduced* when the whole interval lies on the
claimed side of the threshold, *not reproduced* when it lies wholly on the other side,
*inconclusive* when it contains the threshold. Two-sided claims (``"two-sided"``, with δ fixed
before the run) are reproduced when the interval lies outside [t − δ, t + δ] and not reproduced
when it lies inside; agreement claims (``"agreement"``, ``"exact"``) the reverse. Deterministic
claims (one quantity, no interval) are reproduced or not reproduced, never inconclusive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from curvnb import stats
from curvnb.claims.records import KINDS, _plain

LEVEL = stats.LEVEL
VERDICTS3 = ("reproduced", "not reproduced", "inconclusive")
DIRECTIONS = ("greater", "less", "two-sided", "agreement", "exact")


def _median(x):
    return np.median(x, axis=-1)


def _mean(x):
    return np.mean(x, axis=-1)


@dataclass(frozen=True)
class Statistic:
    """How a statistic is computed: its design (what data it takes), its interval method, its
    estimator over the last axis, and (one-sample methods) how pairs reduce to per-unit values."""

    design: str                      # "deterministic" | "one-sample" | "paired" | "two-sample"
    method: str                      # default interval method (curvnb.stats.METHODS)
    estimator: Callable[..., Any] | None = None
    per_unit: Callable[..., Any] | None = None   # paired → one value per unit (a/b, a − b)


STATISTICS: dict[str, Statistic] = {
    "value": Statistic("deterministic", "deterministic"),
    "median": Statistic("one-sample", "order-statistic", _median),
    "mean": Statistic("one-sample", "student-t", _mean),
    "proportion": Statistic("one-sample", "clopper-pearson", _mean),
    "median_of_ratios": Statistic("paired", "order-statistic", _median, lambda a, b: a / b),
    "median_of_differences": Statistic("paired", "order-statistic", _median, lambda a, b: a - b),
    "mean_of_differences": Statistic("paired", "student-t", _mean, lambda a, b: a - b),
    "difference_of_means": Statistic("two-sample", "welch", lambda a, b: _mean(a) - _mean(b)),
    "ratio_of_medians": Statistic("two-sample", "bootstrap", lambda a, b: _median(a) / _median(b)),
    "ratio_of_medians_paired": Statistic("paired", "bootstrap", lambda a, b: _median(a) / _median(b)),
    "difference_of_medians": Statistic("two-sample", "bootstrap", lambda a, b: _median(a) - _median(b)),
    "difference_of_medians_paired": Statistic("paired", "bootstrap", lambda a, b: _median(a) - _median(b)),
}
_MEDIAN_LIKE = {"order-statistic"}   # methods whose units-to-decide use the median's normal approximation


@dataclass(frozen=True)
class ClaimSpec:
    """A claim, declared once before the run: what is tested, on which units, against what.

    ``direction``: ``"greater"``/``"less"`` than ``threshold``; ``"two-sided"`` (an effect of
    either sign larger than ``delta`` around ``threshold``); ``"agreement"`` (within ``delta`` of
    ``threshold``); ``"exact"`` (a deterministic value within the tolerance ``delta``).
    ``unit``: what one independent unit is (seed, network, run); ``physical_unit``: the value's
    unit (nats, accuracy points; empty when dimensionless). ``quantity``: the estimate in words
    for the table. ``function``/``design``: a custom statistic (``statistic="custom"``), vectorised
    over the last axis, always bootstrapped. ``changed``: the claim's anchor on the book's Changes
    page (``changes.html#<anchor>``) when its rule changed after a first run. ``labels``: the
    groups' names (``("GN", "Adam")``) shown with the per-unit values."""

    id: str
    statement: str
    statistic: str
    direction: str
    threshold: float = 0.0
    delta: float | None = None
    kind: str = "paper"
    source: str = ""
    unit: str = "seed"
    physical_unit: str = ""
    quantity: str = ""
    method: str | None = None
    function: Callable[..., Any] | None = field(default=None, compare=False)
    design: str | None = None
    changed: str = ""   # anchor on the book's Changes page when this claim's rule changed ("" otherwise)
    labels: tuple[str, ...] = ()   # names of the groups a, b for readers ("GN", "Adam")
    # a custom statistic of k groups' medians or proportions with method="simultaneous-…": bounds(lower,
    # upper) → the statistic's (lo, hi) over the box of the groups' simultaneous intervals
    bounds: Callable[..., Any] | None = field(default=None, compare=False)
    groups: int | None = None

    def __post_init__(self) -> None:
        bad = lambda msg: ValueError(f"claim {self.id!r}: {msg}")  # noqa: E731
        if not self.id or not self.statement:
            raise ValueError("a claim needs an id and a statement")
        if self.kind not in KINDS:
            raise bad(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.direction not in DIRECTIONS:
            raise bad(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not math.isfinite(float(self.threshold)):
            raise bad("threshold must be finite")
        needs_delta = self.direction in ("two-sided", "agreement", "exact")
        if needs_delta != (self.delta is not None) or (needs_delta and not float(self.delta) >= 0):
            raise bad(f"direction {self.direction!r} {'needs a delta >= 0' if needs_delta else 'takes no delta'}")
        if self.statistic == "custom":
            if self.function is None or self.design not in ("one-sample", "paired", "two-sample"):
                raise bad("a custom statistic needs function= and design= one-sample/paired/two-sample")
        elif self.statistic not in STATISTICS:
            raise bad(f"unknown statistic {self.statistic!r}; known: {sorted(STATISTICS)} or 'custom'")
        if self.direction == "exact" and self.definition.design != "deterministic":
            raise bad("'exact' is for deterministic values; use 'agreement' for a statistic")
        object.__setattr__(self, "labels", tuple(self.labels))
        allowed = (self.definition.method,) if self.definition.design == "deterministic" else (self.definition.method, "bootstrap")
        if self.method in stats.SIMULTANEOUS:
            if self.statistic != "custom" or self.bounds is None or not (self.groups or 0) >= 1:
                raise bad(f"method {self.method!r} needs statistic='custom', bounds= and groups=")
            allowed = stats.SIMULTANEOUS
        elif self.bounds is not None:
            raise bad("bounds= is for the simultaneous methods")
        if self.method is not None and self.method not in allowed:
            raise bad(f"method {self.method!r} does not fit statistic {self.statistic!r}")
        if self.definition.method == "clopper-pearson" and self.direction in ("greater", "less") \
                and not 0 < self.threshold < 1:
            raise bad("a proportion's threshold lies in (0, 1)")

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "ClaimSpec":
        """The spec an engine record was decided by (to re-decide pooled units; not ``custom``)."""
        if record.get("rule") != "engine" or record.get("statistic") == "custom":
            raise ValueError(f"claim {record.get('id')!r}: only engine records of a named statistic carry their spec")
        return cls(id=record["id"], statement=record["statement"], statistic=record["statistic"],
                   direction=record["direction"], threshold=record["threshold_value"], delta=record.get("delta"),
                   kind=record["kind"], source=record.get("source", ""), unit=record["unit"],
                   physical_unit=record.get("physical_unit", ""), quantity=record.get("quantity", ""),
                   method=None if record["method"] == STATISTICS[record["statistic"]].method else record["method"],
                   changed=record.get("changed", ""), labels=tuple(record.get("labels") or ()))

    @property
    def definition(self) -> Statistic:
        """How the statistic is computed (design, default interval method, estimator)."""
        if self.statistic == "custom":
            return Statistic(self.design, "bootstrap", self.function)
        return STATISTICS[self.statistic]

    @property
    def interval_method(self) -> str:
        return self.method or self.definition.method

    def min_units(self) -> int:
        """Units (per group) the interval method needs before it can decide (from the method)."""
        if self.interval_method == "clopper-pearson" and self.direction not in ("greater", "less"):
            return 1   # a band around a proportion: no all-success argument, any n can decide
        return stats.min_units(self.interval_method, threshold=self.threshold, direction=self.direction,
                               groups=self.groups or 1)


def decide(direction: str, threshold: float, delta: float | None, lo: float, hi: float) -> str:
    """The one rule: where the interval [lo, hi] lies relative to the threshold (or the band)."""
    if direction == "greater":
        return VERDICTS3[0] if lo > threshold else VERDICTS3[1] if hi < threshold else VERDICTS3[2]
    if direction == "less":
        return VERDICTS3[0] if hi < threshold else VERDICTS3[1] if lo > threshold else VERDICTS3[2]
    low, high = threshold - delta, threshold + delta
    outside, inside = (lo > high or hi < low), (low <= lo and hi <= high)
    if direction == "two-sided":
        return VERDICTS3[0] if outside else VERDICTS3[1] if inside else VERDICTS3[2]
    return VERDICTS3[0] if inside else VERDICTS3[1] if outside else VERDICTS3[2]   # agreement, exact


def _side(spec: ClaimSpec, estimate: float) -> str:
    """Where the point estimate lies: on the "claimed" side, the "other" side, or "on" the boundary."""
    if math.isnan(estimate):
        return "other"
    verdict = decide(spec.direction, spec.threshold, spec.delta, estimate, estimate)
    return {"reproduced": "claimed", "not reproduced": "other", "inconclusive": "on"}[verdict]


@dataclass(frozen=True)
class Result:
    """What the engine returns for one claim; ``record(profile)`` is its format-3 record."""

    spec: ClaimSpec
    estimate: float
    interval: tuple[float, float] | None
    verdict: str
    n_units: int
    values: dict[str, Any]
    side: str
    direction_found: str | None
    units_to_decide: int | None
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    # the interval's coverage in simulation at this unit count (curvnb.claims.coverage), when known
    simulated_coverage: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def passed(self) -> bool:
        return self.verdict == "reproduced"

    def record(self, profile: str) -> dict[str, Any]:
        s = self.spec
        return {"id": s.id, "statement": s.statement, "measured": _plain(self.estimate),
                "threshold": threshold_text(s), "passed": self.passed, "profile": profile,
                "kind": s.kind, "seeds": self.n_units, "source": s.source,
                "interval": None if self.interval is None else [_plain(v) for v in self.interval],
                "rule": "engine", "verdict": self.verdict, "statistic": s.statistic,
                "quantity": s.quantity, "estimate": _plain(self.estimate), "method": s.interval_method,
                "level": LEVEL, "n_units": self.n_units, "unit": s.unit, "physical_unit": s.physical_unit,
                "direction": s.direction, "threshold_value": float(s.threshold), "delta": s.delta,
                "side": self.side, "direction_found": self.direction_found,
                "units_to_decide": self.units_to_decide, "reason": self.reason,
                "values": _plain(self.values), "detail": _plain(self.detail), "changed": s.changed,
                "labels": list(s.labels),
                **({"function_sha256": function_sha256(s.function)} if s.statistic == "custom" else {}),
                **({"bounds_sha256": function_sha256(s.bounds)} if s.bounds is not None else {}),
                **({"simulated_coverage": self.simulated_coverage} if self.simulated_coverage else {})}


def function_sha256(function: Callable[..., Any]) -> str:
    """SHA-256 of a custom statistic's source (:func:`curvnb.cache.source_sha256`): a record keeps it,
    so pooled units are re-decided only by the function that decided them."""
    from curvnb.cache import source_sha256

    return source_sha256(function)


def threshold_text(spec: ClaimSpec) -> str:
    """The rule in a few words, e.g. "> 1", "outside 0 ± 0.5 accuracy points"."""
    t, unit = f"{spec.threshold:.4g}", f" {spec.physical_unit}" if spec.physical_unit else ""
    if spec.direction in ("greater", "less"):
        return f"{'>' if spec.direction == 'greater' else '<'} {t}{unit}"
    word = {"two-sided": "outside", "agreement": "within", "exact": "within"}[spec.direction]
    return f"{word} {t} ± {spec.delta:.4g}{unit}"


def _data(spec: ClaimSpec, data: tuple) -> tuple[list[np.ndarray], dict[str, Any]]:
    design = spec.definition.design
    groups = 1 if design == "one-sample" else 2 if design in ("paired", "two-sample") else 1
    if spec.statistic == "custom" and design != "one-sample":
        groups = len(data)
    if len(data) != groups:
        raise ValueError(f"claim {spec.id!r}: a {design} statistic takes {groups} group(s) of values, got {len(data)}")
    arrays = [np.asarray(d, dtype=float).ravel() for d in data]
    for a in arrays:
        if a.size < 1 or not np.all(np.isfinite(a)):
            raise ValueError(f"claim {spec.id!r}: values must be finite and non-empty (leave diverged units out "
                             f"of the statistic and report them in detail=); got {a.tolist()}")
    if design == "paired" and len({a.size for a in arrays}) != 1:
        raise ValueError(f"claim {spec.id!r}: paired values need one pair per unit (equal lengths)")
    if spec.interval_method == "clopper-pearson" and not np.all((arrays[0] == 0) | (arrays[0] == 1)):
        raise ValueError(f"claim {spec.id!r}: a proportion takes one 0/1 (or bool) value per unit")
    keys = ["x"] if groups == 1 else ["a", "b"] if groups == 2 else [f"g{i}" for i in range(groups)]
    return arrays, {"design": design, **{k: a.tolist() for k, a in zip(keys, arrays)}}


def evaluate(spec: ClaimSpec, *data: Any, seed: int | None = None, detail: dict[str, Any] | None = None) -> Result:
    """Evaluate ``spec`` on its data: one value (``"value"``), one array of per-unit values, or two
    arrays ``a, b`` (paired: same units in the same order). ``seed`` (from :mod:`curvnb.seeds`,
    the chapter's ``"bootstrap"`` stream) is required by bootstrap intervals. ``detail``: extra
    measured information shown folded in the table (never used for the verdict)."""
    detail = dict(detail or {})
    if spec.definition.design == "deterministic":
        if len(data) != 1 or np.ndim(data[0]) != 0:
            raise ValueError(f"claim {spec.id!r}: a deterministic claim takes one number")
        v = float(data[0])
        verdict = decide(spec.direction, spec.threshold, spec.delta, v, v) if math.isfinite(v) else "not reproduced"
        verdict = "not reproduced" if verdict == "inconclusive" else verdict
        return Result(spec, v, None, verdict, 1, {"design": "deterministic", "x": [v]}, _side(spec, v),
                      _found(spec, v), None, "" if math.isfinite(v) else "the value is not finite", detail)
    arrays, values = _data(spec, data)
    st, method = spec.definition, spec.interval_method
    with np.errstate(divide="ignore", invalid="ignore"):
        per_unit = [st.per_unit(*arrays)] if st.per_unit is not None else arrays
    if not np.all(np.isfinite(per_unit[0])):
        raise ValueError(f"claim {spec.id!r}: a per-unit {spec.statistic} is not finite (a zero denominator?)")
    n = min(a.size for a in arrays)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = float(st.estimator(*per_unit))
    need, reason = spec.min_units(), ""
    if method == "bootstrap" and seed is None:
        raise ValueError(f"claim {spec.id!r}: a bootstrap interval needs seed= (the chapter's 'bootstrap' stream)")
    if n < need:
        lo, hi = stats.UNBOUNDED
        reason = (f"{n} {_plural(spec.unit, n)} are too few for a 95 % {method} interval "
                  f"(it needs at least {need}): inconclusive by construction")
    elif method == "bootstrap":
        lo, hi = stats.bootstrap(arrays, bootstrap_statistic(spec), seed=seed, paired=st.design == "paired")
    elif method in stats.SIMULTANEOUS:
        if len(arrays) != spec.groups:
            raise ValueError(f"claim {spec.id!r}: declared {spec.groups} groups, got {len(arrays)}")
        lo, hi = (float(v) for v in spec.bounds(*stats.simultaneous_intervals(arrays, method)))
    elif method == "order-statistic":
        lo, hi = stats.quantile_interval(per_unit[0])
    elif method == "student-t":
        lo, hi = stats.t_interval(per_unit[0])
    elif method == "welch":
        lo, hi = stats.welch_interval(*arrays)
    else:   # clopper-pearson
        lo, hi = stats.clopper_pearson(int(arrays[0].sum()), n)
    if not reason and not (math.isfinite(lo) and math.isfinite(hi)):
        reason = "the interval is unbounded (e.g. a median of zero in a denominator)"
    verdict = decide(spec.direction, spec.threshold, spec.delta, lo, hi)
    interval = (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None
    todecide = _units_to_decide(spec, estimate, interval, per_unit, n, need) if verdict == "inconclusive" else None
    return Result(spec, estimate, interval, verdict, n, values, _side(spec, estimate), _found(spec, estimate),
                  todecide, reason, detail)


def bootstrap_statistic(spec: ClaimSpec) -> Callable[..., Any]:
    """The statistic the bootstrap resamples for ``spec``: its groups' arrays (units on the last axis)
    → the estimate, vectorised over leading axes (per-unit reductions applied first)."""
    st = spec.definition
    return st.estimator if st.per_unit is None else (lambda *g: st.estimator(st.per_unit(*g)))


def _found(spec: ClaimSpec, estimate: float) -> str | None:
    """For two-sided and agreement claims: the sign of the effect found (estimate vs threshold)."""
    if spec.direction not in ("two-sided", "agreement") or not math.isfinite(estimate) or estimate == spec.threshold:
        return None
    return "greater" if estimate > spec.threshold else "less"


def _units_to_decide(spec: ClaimSpec, estimate: float, interval: tuple[float, float] | None,
                     per_unit: list[np.ndarray], n: int, need: int) -> int | None:
    """Roughly how many units would decide the claim at the observed spread, the estimate held fixed.

    The interval's half-width shrinks as 1/√n for every method here, so n' = n · (h / g)² where h is
    the observed half-width and g the estimate's distance to the nearest decision boundary (the
    threshold, or t ± δ). Without an interval (too few units) h is approximated as normal: 1.96 ·
    s / √n for a mean, 1.96 · √(π/2) · s / √n for a median (s the per-unit values' standard
    deviation), 1.96 · √(p(1−p)/n) for a proportion. ``None`` when the estimate sits on a boundary."""
    bounds = [spec.threshold] if spec.delta is None else [spec.threshold - spec.delta, spec.threshold + spec.delta]
    gap = min(abs(estimate - b) for b in bounds) if math.isfinite(estimate) else 0.0
    if gap == 0.0:
        return None
    if interval is not None:
        half = (interval[1] - interval[0]) / 2
    elif len(per_unit) == 1 and n >= 2:
        x = per_unit[0]
        if spec.interval_method == "clopper-pearson":
            s = math.sqrt(max(estimate * (1 - estimate), 0.25 / n))
        else:
            s = float(np.std(x, ddof=1)) * (math.sqrt(math.pi / 2) if spec.interval_method in _MEDIAN_LIKE else 1.0)
        half = 1.96 * s / math.sqrt(n)
    else:
        return need
    return max(need, math.ceil(n * (half / gap) ** 2))


def _plural(unit: str, n: int) -> str:
    return unit if n == 1 or unit.endswith("s") else unit + "s"
