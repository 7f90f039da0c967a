"""Diagnosis results and their JSON contract (schema_version 1).

The diagnosis engine fills these; the CLI renders them. `Report.to_dict()` is the stable,
documented contract (docs/json-schema.md, docs/report.schema.json) that other tools depend on:
add fields freely, never rename or remove one without bumping SCHEMA_VERSION.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from analyzer.model import IngestIssue, Run

SCHEMA_VERSION = 1

Verdict = Literal["overfitting", "underfitting", "healthy", "inconclusive", "diverged"]
Level = Literal["error", "warning", "info"]
VERDICTS: tuple[str, ...] = ("overfitting", "underfitting", "healthy", "inconclusive", "diverged")
LEVELS: tuple[str, ...] = ("info", "warning", "error")  # ascending severity


@dataclass
class Finding:
    code: str  # e.g. "OF001"
    name: str  # e.g. "q-peak-decline"
    level: Level
    message: str
    steps: tuple[int, int] | None = None  # span of the run the finding is about
    evidence: dict[str, Any] = field(default_factory=dict)  # the numbers behind it (JSON-safe)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "level": self.level,
            "message": self.message,
            "steps": list(self.steps) if self.steps is not None else None,
            "evidence": _jsonable(self.evidence),
        }


@dataclass
class CheckpointPick:
    step: int
    path: str | None  # None when no checkpoint file exists at that step (declared interval only)
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"step": int(self.step), "path": self.path, "reason": self.reason}


@dataclass
class RunResult:
    run: Run
    verdict: Verdict
    verdict_reason: str  # one line: the evidence a person reads first
    checkpoint: CheckpointPick | None = None
    findings: list[Finding] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    smoothed: dict[str, np.ndarray] = field(default_factory=dict)  # canonical name -> smoothed values
    change_points: list[int] = field(default_factory=list)  # steps where dataset-Q changes phase
    peak_step: int | None = None

    def frame(self) -> Any:
        """Long pandas DataFrame of every metric: columns step, metric, raw, smoothed (display smoother).

        For notebooks: `res.frame().pivot(index="step", columns="metric", values="smoothed")`.
        """
        import pandas as pd

        parts = []
        for name, s in self.run.series.items():
            sm = self.smoothed.get(name)
            parts.append(
                pd.DataFrame(
                    {
                        "step": s.steps,
                        "metric": name,
                        "raw": s.values,
                        "smoothed": sm if sm is not None and len(sm) == len(s) else np.full(len(s), np.nan),
                    }
                )
            )
        if not parts:
            return pd.DataFrame({"step": [], "metric": [], "raw": [], "smoothed": []})
        return pd.concat(parts, ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        run = self.run
        return {
            "run": run.id,
            "path": str(run.path),
            "framework": run.framework,
            "algorithm": run.metadata.algorithm,
            "x_unit": run.x_unit,
            "verdict": self.verdict,
            "verdict_reason": self.verdict_reason,
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
            "peak_step": self.peak_step,
            "change_points": [int(s) for s in self.change_points],
            "metrics": {
                name: {"source": s.source, "kind": s.kind, "points": len(s), "sources": list(s.sources)}
                for name, s in run.series.items()
            },
            "findings": [f.to_dict() for f in self.findings],
            "advice": list(self.advice),
            "ingest_issues": [_issue_dict(i) for i in run.issues],
        }


@dataclass
class Report:
    runs: list[RunResult] = field(default_factory=list)
    errors: list[IngestIssue] = field(default_factory=list)  # paths that yielded no run

    def frame(self) -> Any:
        """All runs' `RunResult.frame()` stacked, with a `run` column."""
        import pandas as pd

        parts = [r.frame().assign(run=r.run.id) for r in self.runs]
        if not parts:
            return pd.DataFrame({"run": [], "step": [], "metric": [], "raw": [], "smoothed": []})
        return pd.concat(parts, ignore_index=True)[["run", "step", "metric", "raw", "smoothed"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "runs": [r.to_dict() for r in self.runs],
            "errors": [_issue_dict(e) for e in self.errors],
        }


def _issue_dict(issue: IngestIssue) -> dict[str, Any]:
    out: dict[str, Any] = {"path": issue.path, "message": issue.message, "level": issue.level}
    if issue.offset is not None:
        out["offset"] = issue.offset
    if issue.records_lost is not None:
        out["records_lost"] = issue.records_lost
    return out


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into plain JSON types; NaN/Inf become None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if np.isfinite(f) else None
    return value
