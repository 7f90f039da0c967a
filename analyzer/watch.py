"""`offrl-analyze --watch PATH`: follow growing logs and say when a run FIRST shows overfitting.

Why a loop of whole analyses instead of tailing files: the verdict depends on the whole curve
(a peak is only a peak once Q has fallen after it), so each poll re-reads the logs and re-runs the
diagnosis. Events are emitted once per run (new run, first overfitting, first divergence), so a long watch does not
repeat itself. `max_iterations`, `on_event` and `sleep` exist so tests drive the loop without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from analyzer.report import Report

EventKind = Literal["new_run", "overfitting", "diverged", "ingest_error"]


@dataclass(frozen=True)
class WatchEvent:
    kind: EventKind
    run: str  # run id (or the unreadable path for ingest errors)
    step: int | None = None  # overfitting: step of the checkpoint to keep (the peak when none was picked)
    peak_step: int | None = None  # overfitting: step of the dataset-Q peak
    last_step: int | None = None  # last logged step when the event was noticed
    checkpoint: str | None = None  # overfitting: the checkpoint file to keep, when one exists
    message: str = ""

    def line(self) -> str:
        """One human line, as printed by the CLI."""
        if self.kind == "new_run":
            return f"new run: {self.run}" + (
                f" (at step {self.last_step})" if self.last_step is not None else ""
            )
        if self.kind == "overfitting":
            keep = f"keep step {self.step}" + (f" ({self.checkpoint})" if self.checkpoint else "")
            peak = f", Q peak at step {self.peak_step}" if self.peak_step is not None else ""
            at = f", noticed at step {self.last_step}" if self.last_step is not None else ""
            return f"OVERFITTING: {self.run}: {keep}{peak}{at} — {self.message}"
        if self.kind == "diverged":
            keep = (
                f"keep step {self.step}" + (f" ({self.checkpoint})" if self.checkpoint else "")
                if self.step is not None
                else "no checkpoint before it"
            )
            at = f", noticed at step {self.last_step}" if self.last_step is not None else ""
            return f"DIVERGED: {self.run}: {keep}{at} — stop this run; {self.message}"
        return f"unreadable: {self.run}: {self.message}"


@dataclass
class WatchState:
    """What has already been announced, so each event fires once."""

    seen_runs: set[str] = field(default_factory=set)
    overfit_runs: set[str] = field(default_factory=set)
    diverged_runs: set[str] = field(default_factory=set)
    bad_paths: set[str] = field(default_factory=set)

    def update(self, report: Report) -> list[WatchEvent]:
        events: list[WatchEvent] = []
        for r in report.runs:
            run_id = r.run.id
            last = _last_step(r.run)
            if run_id not in self.seen_runs:
                self.seen_runs.add(run_id)
                events.append(WatchEvent("new_run", run_id, last_step=last))
            if r.verdict == "overfitting" and run_id not in self.overfit_runs:
                self.overfit_runs.add(run_id)
                step = r.checkpoint.step if r.checkpoint is not None else r.peak_step
                ckpt = r.checkpoint.path if r.checkpoint is not None else None
                events.append(
                    WatchEvent(
                        "overfitting",
                        run_id,
                        step=step,
                        peak_step=r.peak_step,
                        last_step=last,
                        checkpoint=ckpt,
                        message=r.verdict_reason,
                    )
                )
            if r.verdict == "diverged" and run_id not in self.diverged_runs:
                self.diverged_runs.add(run_id)
                events.append(
                    WatchEvent(
                        "diverged",
                        run_id,
                        step=r.checkpoint.step if r.checkpoint is not None else None,
                        last_step=last,
                        checkpoint=r.checkpoint.path if r.checkpoint is not None else None,
                        message=r.verdict_reason,
                    )
                )
        for e in report.errors:
            if e.path not in self.bad_paths:
                self.bad_paths.add(e.path)
                events.append(WatchEvent("ingest_error", e.path, message=e.message))
        return events


def _last_step(run: Any) -> int | None:
    steps = [int(s.steps[-1]) for s in run.series.values() if len(s)]
    return max(steps) if steps else None


def watch(
    paths: Sequence[str | Path],
    interval: float,
    *,
    rules: Any = None,
    workers: int = 1,
    max_iterations: int | None = None,
    on_event: Callable[[WatchEvent], None] = lambda e: print(e.line(), flush=True),
    analyze_fn: Callable[..., Report] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    between: Callable[[int], None] | None = None,
) -> WatchState:
    """Poll `paths` every `interval` seconds until interrupted (or `max_iterations` polls).

    `between(i)` is called after poll i (tests append to logs there); Ctrl-C propagates as
    KeyboardInterrupt, which the CLI turns into exit code 0.
    """
    if analyze_fn is None:
        from analyzer.api import analyze

        analyze_fn = analyze
    state = WatchState()
    paths = [Path(p) for p in paths]
    i = 0
    while max_iterations is None or i < max_iterations:
        report = analyze_fn(paths, rules, workers=workers)
        for event in state.update(report):
            on_event(event)
        i += 1
        if max_iterations is not None and i >= max_iterations:
            break
        if between is not None:
            between(i)
        sleep(interval)
    return state
