"""Typed evidence: the keys of a finding's `evidence` that the verdict, pick and advice logic read.

Why: analyzer/diagnose.py decides the verdict from other rules' evidence ("is OF001 sustained?",
"where did NF001 first see a NaN?"). Read by string keys, a rule renaming a key would silently turn a
verdict into another (`.get` returns None). Here each such rule's evidence has a TypedDict: the
verdict code reads through `evidence_of(finding, OF001Evidence)` and mypy (run by the suite) checks
every key it reads is declared; the producing rules build the same TypedDicts; and
tests/test_evidence.py checks on real findings that every declared key is emitted with its declared
type. TypedDicts are plain dicts at run time, so the JSON output is unchanged.

`total=False` throughout: a rule that could not run emits only `inconclusive` and `reason` (plus
what it missed), and informational findings of a rule carry fewer keys than its firing ones.
"""

from __future__ import annotations

from typing import Any, TypedDict, TypeVar, cast

from analyzer.report import Finding

__all__ = [
    "EVIDENCE",
    "DQ004Evidence",
    "DV001Evidence",
    "InconclusiveEvidence",
    "NF001Evidence",
    "OF001Evidence",
    "UF001Evidence",
    "UF002Evidence",
    "UF003Evidence",
    "evidence_of",
]


class InconclusiveEvidence(TypedDict, total=False):
    """Any rule that could not run (`Context.inconclusive`): why, and what was missing."""

    inconclusive: bool
    reason: str
    missing: list[str]


class NF001Evidence(InconclusiveEvidence, total=False):
    metric: str
    first_bad_step: int
    bad_points: int
    points: int
    has_inf: bool
    persistent: bool
    first_value: str
    evaluation: bool  # an evaluation column left empty: "not evaluated", not a failure


class DV001Evidence(InconclusiveEvidence, total=False):
    mode: str  # "range" (beyond the feasible Q bounds) | "growth" (|Q| without bounds) | "signal"
    first_step: int  # where the divergence started: the pick is the last checkpoint before it
    # mode range
    extreme: float
    q_lo: float
    q_hi: float
    bound: float
    ranges_beyond: float
    margin: float
    # BRAC value penalty (when it widened q_lo / q_hi): gamma x H x max p below, x max(-p) above, and its source
    penalty_below: float
    penalty_above: float
    penalty_source: str
    # mode growth
    growth: float
    q_second_quarter: float
    q_last_quarter: float
    # mode signal: the first critic signal to grow by orders of magnitude
    signal: str
    signals: list[str]
    baseline: float
    peak: float
    peak_step: int
    tail_growth: float
    onset_step: int | None


class UF001Evidence(InconclusiveEvidence, total=False):
    td_error_tail: float
    td_reading: str
    H: float
    H_source: str
    scaled_error: float
    scaled_error_mse: float
    scaled_error_rms: float
    q_range: float
    reward_range: list[float]
    ratio: float
    min_ratio: float
    td_relative_change_last_half: float | None
    underfitting: bool


class UF002Evidence(InconclusiveEvidence, total=False):
    regularizer: str | None
    source: str
    tail_level: float
    threshold: float
    relative_change_last_half: float
    head_level: float
    relative_change_whole_run: float
    flat: bool


class UF003Evidence(InconclusiveEvidence, total=False):
    metric: str
    this_run: dict[str, Any]
    larger_run: dict[str, Any]
    reduction: float
    min_reduction: float
    group_size: int


class OF001Evidence(InconclusiveEvidence, total=False):
    metric: str | None
    peak_step: int
    peak_value: float
    rise: float
    final_level: float
    drop: float
    drop_fraction_of_rise: float
    noise_sigma_smoothed: float
    noise_sigma_raw: float
    drop_in_sigmas: float | None
    after_fraction: float
    after_points: int
    recovery: float
    x_unit: str
    sustained: bool
    # the switch from a BC warm start explains the peak (then `sustained` is False)
    switch_step: int
    switch_share: float
    switch_jump: float
    rise_since_switch: float
    # what else points the same way, for the message
    regularizer: str | None
    regularizer_tail_level: float
    regularizer_relative_change_last_half: float
    td_error_tail_level: float
    td_rms_error_over_q_range: float
    supporting: list[str]


class DQ004Evidence(InconclusiveEvidence, total=False):
    warm_start: int
    source: str
    skipped: bool
    ended_in_warm_start: bool
    q_min_in_warm_start: float
    q_max_in_warm_start: float


#: rule code -> its evidence type (what `evidence_of` checks, and tests/test_evidence.py walks)
EVIDENCE: dict[str, type] = {
    "NF001": NF001Evidence,
    "DV001": DV001Evidence,
    "UF001": UF001Evidence,
    "UF002": UF002Evidence,
    "UF003": UF003Evidence,
    "OF001": OF001Evidence,
    "DQ004": DQ004Evidence,
}

E = TypeVar("E")


def evidence_of(finding: Finding, kind: type[E]) -> E:
    """`finding.evidence` as `kind` (the evidence type of the finding's rule; ValueError otherwise)."""
    if EVIDENCE.get(finding.code) is not kind:
        raise ValueError(f"{finding.code} evidence is not {getattr(kind, '__name__', kind)}")
    return cast(E, finding.evidence)
