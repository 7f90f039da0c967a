"""Live diagnosis inside a training loop: `observe(step, metrics) -> verdict so far`, to stop at the Q peak.

Why the same pipeline as the files: a verdict in the loop must mean what `offrl-analyze` says of the
same curve afterwards, so the monitor keeps the logged values as a RawRun and runs the ordinary
profile resolution and diagnosis on it (analyzer.ingest.profiles, analyzer.diagnose). As with
`--watch` (analyzer/watch.py, whose once-only events it reuses), the verdict depends on the whole
curve - a peak is only a peak once Q has fallen after it - so each diagnosis reads everything seen so
far; `every` spaces them out for loops that report very often.

    monitor = LiveMonitor(config={"gamma": 0.99, "horizon": 200, "reward_range": [0, 1]})
    for step in range(n_steps):
        ...
        if step % 1000 == 0:
            now = monitor.observe(step, {"q_data": q_mean, "td_error": td, "cql_gap": gap})
            save_checkpoint(step)
            monitor.checkpoint(step, f"ckpt_{step}.pt")
            if now.should_stop:               # overfitting (or divergence) is established
                break
    keep = now.keep_step                      # the checkpoint to deploy (Guideline 3.1)

Metric names are the loop's own: a known framework's tags (resolved by its profile, detected or
forced with `framework=`), canonical names (`q_data`, `td_error`, ...), or anything mapped with
`mappings=` as in a rules file. analyzer/integrations/d3rlpy.py wraps this for d3rlpy's `fit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.config import RulesConfig, RunOverride, default_config, load_config
from analyzer.diagnose import diagnose_run
from analyzer.ingest.configfiles import flatten
from analyzer.ingest.profiles import resolve
from analyzer.model import Checkpoint, IngestIssue, RawRun, Series
from analyzer.report import Report, RunResult
from analyzer.watch import WatchEvent, WatchState

__all__ = ["LiveMonitor", "LiveVerdict"]

#: verdicts after which training is better stopped: the best checkpoint lies behind
STOP_ON = ("overfitting", "diverged")


@dataclass(frozen=True)
class LiveVerdict:
    """The diagnosis of everything observed so far."""

    step: int  # last observed step
    verdict: str  # overfitting | underfitting | healthy | inconclusive | diverged
    reason: str
    should_stop: bool  # the verdict is one of `stop_on`: the best checkpoint is behind
    keep_step: int | None  # the checkpoint to keep (Guideline 3.1), or the latest one
    keep_path: str | None  # its file, when `checkpoint()` named one
    peak_step: int | None  # dataset-Q peak (overfitting only)
    events: tuple[WatchEvent, ...] = ()  # what changed with this observation (each fires once)
    result: RunResult | None = field(default=None, repr=False, compare=False)  # the full diagnosis

    def line(self) -> str:
        keep = f"; keep step {self.keep_step}" if self.keep_step is not None else ""
        return f"step {self.step}: {self.verdict}{keep} - {self.reason}"


class LiveMonitor:
    """Collects one run's metrics as they are logged and diagnoses them (see the module docstring).

    `framework`: a profile name to read the metrics with (default: detected from their names, as for
    files). `config`: the run's hyperparameters (nested or flattened; gamma, horizon, reward_range,
    algorithm, n_critics ... are read from it as from a config file). `rules`: a rules file path or
    RulesConfig (thresholds, `runs:` overrides match `run_id`). `every`: diagnose every N-th
    observation (the others return the previous verdict with the new step). `stop_on`: verdicts that
    set `should_stop`.
    """

    def __init__(
        self,
        run_id: str = "live",
        *,
        framework: str | None = None,
        config: Mapping[str, Any] | None = None,
        mappings: Mapping[str, Any] | None = None,
        rules: str | Path | RulesConfig | None = None,
        every: int = 1,
        stop_on: tuple[str, ...] = STOP_ON,
        path: str | Path | None = None,
    ) -> None:
        self.run_id = run_id
        self.cfg = (
            rules if isinstance(rules, RulesConfig) else (load_config(rules) if rules else default_config())
        )
        self.mappings: dict[str, Any] = {**self.cfg.load_mappings(), **dict(mappings or {})}
        if framework is not None:
            self.mappings["framework"] = framework
        self.every = max(1, int(every))
        self.stop_on = tuple(stop_on)
        self.path = Path(path) if path is not None else Path(run_id)
        self._config: dict[str, Any] = {}
        self._points: dict[str, dict[int, float]] = {}
        self._checkpoints: dict[int, str | None] = {}
        self._issues: list[IngestIssue] = []
        self._refused: set[str] = set()
        self._observed = 0
        self._state = WatchState()
        self.last: LiveVerdict | None = None
        if config:
            self.set_config(config)

    # ---- input ------------------------------------------------------------------------------

    def set_config(self, config: Mapping[str, Any]) -> None:
        """The run's hyperparameters (merged over earlier ones); nested mappings are flattened."""
        try:
            self._config.update(flatten(dict(config)))
        except Exception as exc:  # noqa: BLE001 - a config we cannot read costs metadata, not the run
            self._issues.append(
                IngestIssue(str(self.path), f"config not read: {type(exc).__name__}", "warning")
            )

    def checkpoint(self, step: int, path: str | Path | None = None) -> None:
        """A checkpoint was saved at `step` (the pick is then one of these, as with checkpoint files)."""
        self._checkpoints[int(step)] = str(path) if path is not None else None

    def observe(self, step: int, metrics: Mapping[str, Any]) -> LiveVerdict:
        """Record `metrics` logged at `step` and return the verdict so far. Never raises on odd values:
        a value that is not a number is left out (said once in the run's issues); NaN/Inf are kept,
        since the rules report them. A step logged again replaces the earlier values (keep-last)."""
        step = int(step)
        for name, value in metrics.items():
            f = _number(value)
            if f is None:
                if name not in self._refused:
                    self._refused.add(name)
                    why = f"metric {name!r}: {type(value).__name__} value is not a number; left out"
                    self._issues.append(IngestIssue(str(self.path), why, "warning"))
                continue
            self._points.setdefault(str(name), {})[step] = f
        self._observed += 1
        if self.last is not None and (self._observed - 1) % self.every:
            self.last = _replace_step(self.last, step)
            return self.last
        self.last = self._diagnose(step)
        return self.last

    # ---- output -----------------------------------------------------------------------------

    @property
    def should_stop(self) -> bool:
        return self.last is not None and self.last.should_stop

    def raw_run(self) -> RawRun:
        """What has been observed, as a reader would have produced it from log files."""
        tags = {}
        for name, points in self._points.items():
            steps = np.fromiter(sorted(points), dtype=np.int64, count=len(points))
            values = np.array([points[int(s)] for s in steps], dtype=float)
            tags[name] = Series(name, steps, values, sources=(name,))
        return RawRun(
            id=self.run_id,
            path=self.path,
            layout="live",
            tags=tags,
            config=dict(self._config),
            config_sources={k: "live config" for k in self._config},
            checkpoints=[
                Checkpoint(step=s, path=Path(p) if p else None) for s, p in sorted(self._checkpoints.items())
            ],
            issues=list(self._issues),
        )

    def diagnose(self) -> RunResult:
        """The full diagnosis of everything observed (what `offrl-analyze` would say of these logs)."""
        run = resolve(self.raw_run(), self.mappings or None)
        return diagnose_run(
            run, self.cfg, self.cfg.run_override(self.run_id) if self.cfg.runs else RunOverride()
        )

    def _diagnose(self, step: int) -> LiveVerdict:
        result = self.diagnose()
        events = tuple(self._state.update(Report(runs=[result])))
        pick = result.checkpoint
        return LiveVerdict(
            step=step,
            verdict=result.verdict,
            reason=result.verdict_reason,
            should_stop=result.verdict in self.stop_on,
            keep_step=pick.step if pick is not None else None,
            keep_path=pick.path if pick is not None else None,
            peak_step=result.peak_step,
            events=events,
            result=result,
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        f = float(value)  # ints, floats, numpy scalars, 0-d arrays and tensors with __float__
    except (TypeError, ValueError, OverflowError):
        return None
    return f


def _replace_step(v: LiveVerdict, step: int) -> LiveVerdict:
    return LiveVerdict(
        step=step,
        verdict=v.verdict,
        reason=v.reason,
        should_stop=v.should_stop,
        keep_step=v.keep_step,
        keep_path=v.keep_path,
        peak_step=v.peak_step,
        events=(),
        result=v.result,
    )
