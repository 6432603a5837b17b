"""Claims: every claim a pre-registered test with three outcomes, declared once.

Declare each claim once, as data, before the run (its threshold lives only here)::

    from curvnb.claims import ClaimSpec, evaluate

    DEPTH = ClaimSpec(
        id="hessian-vanishes", kind="paper", source="Orvieto et al., Thm 1, Fig. 2",
        statement="At initialisation the Hessian's top eigenvalue shrinks with depth",
        statistic="ratio_of_medians_paired",   # median(a) / median(b), seeds resampled jointly
        direction="less", threshold=1.0, unit="seed",
        quantity="median λ_max, depth 64 / depth 8")

then evaluate it on one value per independent unit and report the results::

    result = evaluate(DEPTH, deep, shallow, seed=STREAMS.seed(ch.seed, "bootstrap", 0))
    ch.report([result, ...])          # format-3 records, claims table, scorecard

The verdict rule (:func:`decide`), one for all: *reproduced* when the whole 95 % interval lies on
the claimed side of ``threshold``, *not reproduced* when wholly on the other side, *inconclusive*
when it contains the threshold; ``"two-sided"`` claims (effect beyond ``threshold ± delta``) and
``"agreement"``/``"exact"`` claims (within ``threshold ± delta``) compare the interval with that
band. Deterministic claims (``statistic="value"``) are reproduced or not reproduced.

Statistics (:data:`STATISTICS`) and their interval methods: ``median``, ``median_of_ratios``,
``median_of_differences`` — exact order statistics (≥ 6 units); ``mean``, ``mean_of_differences``
— Student t (≥ 2); ``difference_of_means`` — Welch (≥ 2 per group); ``proportion`` — exact
binomial (units from the threshold: ``spec.min_units()``); ``ratio_of_medians``,
``difference_of_medians`` (and their ``_paired`` forms), ``custom`` — seeded bootstrap (≥ 8 per
group). Fewer units than ``spec.min_units()`` make a claim inconclusive by construction. Seeds come
from :mod:`curvnb.seeds`. Pre-engine :class:`Claim` objects still work (``rule: "legacy"``).
See ``ENGINE.md`` (coordination) for the conversion guide; records: :mod:`curvnb.claims.records`.
"""
from curvnb.claims.engine import (DIRECTIONS, LEVEL, STATISTICS, VERDICTS3, ClaimSpec, Result, Statistic,
                                  decide, evaluate, threshold_text)
from curvnb.claims.records import (CLAIM_KEYS, FORMAT, KINDS, RECORD_DEFAULTS, RECORD_KEYS, VERDICT_VALUES,
                                   Claim, _plain, read_claims, read_claims_file, write_claims)
from curvnb.claims.report import (COLOURS, KIND_NAMES, SMOKE_NOTE, VERDICTS, by_verdict, claims_table_html,
                                  count_sentence, counts, decision_note, format_estimate, format_interval,
                                  format_value, pooled_line, record_verdict, scorecard_markdown, scorecard_rows_html,
                                  tally, verdict,
                                  verdict_badge, what_we_found)

__all__ = ["DIRECTIONS", "LEVEL", "STATISTICS", "VERDICTS3", "ClaimSpec", "Result", "Statistic", "decide",
           "evaluate", "threshold_text", "CLAIM_KEYS", "FORMAT", "KINDS", "RECORD_DEFAULTS", "RECORD_KEYS",
           "VERDICT_VALUES", "Claim", "_plain", "read_claims", "read_claims_file", "write_claims", "COLOURS",
           "KIND_NAMES", "SMOKE_NOTE", "VERDICTS", "by_verdict", "claims_table_html", "count_sentence", "counts",
           "decision_note", "format_estimate", "format_interval", "format_value", "pooled_line", "record_verdict",
           "scorecard_markdown", "scorecard_rows_html", "tally", "verdict", "verdict_badge", "what_we_found"]
