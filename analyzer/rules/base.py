"""Rule plumbing: parameter specs, rule specs, the shared analysis a rule reads, and the registry.

A rule is a small function `check(ctx) -> list[Finding]` plus metadata (code, name, level,
parameters with defaults and where each default comes from, documentation text). The metadata
is the single source for rules/default.yaml, `offrl-analyze rules`, and docs/rules/<CODE>.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analyzer.model import Run, Series
from analyzer.report import Finding, Level
from analyzer.signal import Peak, Phase


@dataclass(frozen=True)
class Param:
    """One tunable threshold. `kind` drives validation of user values (analyzer.config)."""

    name: str
    default: Any
    kind: str  # "fraction" (0,1], "positive" (>0), "nonneg" (>=0), "int" (>=1), "number", "choice", "bool"
    help: str
    source: str  # where the default comes from (paper section, measurement, convention)
    choices: tuple[str, ...] = ()


#: fewest finite dataset-Q points the part after a BC warm start must keep to be read instead of the whole run
#: (DQ002's default `min_points`); used by diagnose and reported by DQ004
MIN_POINTS_AFTER_WARM_START = 20


@dataclass
class Effective:
    """Run metadata after rules-file/CLI overrides, plus the ranges derived from it."""

    gamma: float | None
    reward_range: tuple[float, float] | None
    horizon: int | None
    dataset_mc_return: float | None
    checkpoint_interval: int | None
    H: float | None  # effective horizon min(horizon, 1/(1-gamma))
    H_source: str  # how H was obtained, for messages
    q_range: float | None  # (r_max - r_min) * H
    q_lo: float | None  # feasible dataset-Q bounds
    q_hi: float | None
    missing: tuple[str, ...]  # metadata needed for the range checks and not known
    warm_start: int | None = None  # BC warm-start length (x-axis unit) after overrides; 0/None: none
    warm_start_source: str = ""
    reward_mean: float | None = None  # mean per-step reward of the data, from the logs (no override)
    reward_mean_source: str = ""


@dataclass
class Analysis:
    """Signal-analysis results shared by all rules of one run (computed once in diagnose)."""

    run: Run
    eff: Effective
    q: Series | None  # dataset Q or its proxy
    q_name: str | None  # canonical name actually used ("q_data", "q_target", "q_policy")
    q_is_proxy: bool
    q_smooth: np.ndarray | None  # analysis smoother (zero-phase), aligned with q.steps
    q_sigma: float  # robust noise level of raw dataset Q
    q_sigma_smooth: float  # noise level of the analysis-smoothed dataset Q (q_sigma x smoother gain)
    peak: Peak | None
    change_points: list[int]
    phases: list[Phase]
    reg: Series | None  # the regularizer: cql_gap, cql_term/alpha, or brac_divergence
    reg_name: str | None
    td: Series | None
    smoothed: dict[str, np.ndarray]  # display smoother (TensorBoard EMA) per canonical metric
    tail_fraction: float
    precedence: str = "overfitting-first"  # setting verdict.precedence (decide_verdict)
    nonfinite: dict[str, int] = field(default_factory=dict)  # metric -> first non-finite step
    read_after: int | None = None  # q/td/reg above hold only steps > this (the warm start was skipped)
    #: dataset Q across the warm-start switch: (last step before it, Q there, Q at the first point after it)
    switch: tuple[int, float, float] | None = None


class _Reporting:
    """`finding(...)`: one rule's finding with its code, name and level filled in (per-run and group rules)."""

    spec: RuleSpec
    level: Level

    def finding(
        self,
        message: str,
        *,
        evidence: Mapping[str, object] | None = None,
        steps: tuple[int, int] | None = None,
        level: Level | None = None,
    ) -> Finding:
        return Finding(
            code=self.spec.code,
            name=self.spec.name,
            level=level or self.level,
            message=message,
            steps=(int(steps[0]), int(steps[1])) if steps else None,
            evidence=dict(evidence or {}),
        )


@dataclass
class Context(_Reporting):
    """What a rule's check receives: the analysis plus its own resolved parameters and level."""

    analysis: Analysis
    params: dict[str, Any]
    spec: RuleSpec
    level: Level

    @property
    def run(self) -> Run:
        return self.analysis.run

    def inconclusive(self, reason: str, **evidence: Any) -> Finding:
        """A check that could not run: always says why (and how to fix it, when a person can)."""
        ev = {"inconclusive": True, "reason": reason, **evidence}
        return self.finding(f"inconclusive: {reason}", evidence=ev, level="info")


Check = Callable[[Context], list[Finding]]


@dataclass
class GroupContext(_Reporting):
    """What a group-scope rule receives: every run of the analysis, after their own rules ran.

    Why a scope of its own: some readings need several runs (Metric 3.2 compares a run with a larger
    model trained the same way); they run once per analysis, after the per-run verdicts, and their
    findings join the runs they are about (whose verdicts are then decided again).
    """

    analyses: list[Analysis]
    #: run id -> verdict from the run's own rules (before any group-scope finding)
    verdicts: dict[str, str]
    #: run id -> the rules file's `runs: [{capacity_group: ...}]` name, where one is declared
    declared_groups: dict[str, str]
    params: dict[str, Any]
    spec: RuleSpec
    level: Level

    @property
    def runs(self) -> list[Run]:
        return [a.run for a in self.analyses]


#: findings per run id (only runs the rule has something to say about)
GroupCheck = Callable[[GroupContext], dict[str, list[Finding]]]


@dataclass
class RuleSpec:
    code: str
    name: str
    level: Level
    summary: str
    params: tuple[Param, ...]
    detects: str
    why: str
    example: str
    remediation: str
    check: Check | None  # per-run check; None for group-scope rules
    family: str
    #: "run" (one run at a time, `check`) or "group" (all runs of an analysis at once, `group_check`)
    scope: str = "run"
    group_check: GroupCheck | None = None

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


REGISTRY: dict[str, RuleSpec] = {}


def rule(
    code: str,
    name: str,
    level: Level,
    summary: str,
    *,
    params: tuple[Param, ...] = (),
    detects: str,
    why: str,
    example: str,
    remediation: str,
    family: str,
) -> Callable[[Check], Check]:
    """Register a check function under `code` (decorator)."""

    def deco(fn: Check) -> Check:
        if code in REGISTRY:
            raise ValueError(f"rule code {code} registered twice")
        REGISTRY[code] = RuleSpec(
            code, name, level, summary, params, detects, why, example, remediation, fn, family
        )
        return fn

    return deco


def group_rule(
    code: str,
    name: str,
    level: Level,
    summary: str,
    *,
    params: tuple[Param, ...] = (),
    detects: str,
    why: str,
    example: str,
    remediation: str,
    family: str,
) -> Callable[[GroupCheck], GroupCheck]:
    """Register a group-scope check (all runs of an analysis at once) under `code` (decorator)."""

    def deco(fn: GroupCheck) -> GroupCheck:
        register_spec(
            RuleSpec(
                code,
                name,
                level,
                summary,
                params,
                detects,
                why,
                example,
                remediation,
                None,
                family,
                "group",
                fn,
            )
        )
        return fn

    return deco


def register_spec(spec: RuleSpec) -> None:
    if spec.code in REGISTRY:
        raise ValueError(f"rule code {spec.code} registered twice")
    REGISTRY[spec.code] = spec


def fmt(x: float | None, digits: int = 3) -> str:
    """Compact number for messages."""
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}"
