"""Reading *and* diagnosing many runs in the same workers; the cross-run rules stay in the parent.

Why: with only ingestion in the worker pool, every Run (all its arrays) was pickled back to the
parent and diagnosed there one after the other, so a second worker could at best shave the
ingestion third off the wall time (docs/performance.md). Here each worker reads a run and runs its
own rules (signals, per-run findings, verdict, pick, advice) and sends back the finished RunResult;
the parent only runs what needs every run at once - the capacity comparison (UF003, Metric 3.2's
second form) - on those results (analyzer.api.compare_runs) and assembles the Report.

The unit of work is one planned run directory (analyzer.ingest.plan_runs); `diagnose_chunk` runs a
list of them, which is what a Ray task gets (analyzer.executor) for trees too big for one machine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.config import RulesConfig, load_profile_file
from analyzer.diagnose import analyze_signals, finish, run_rules
from analyzer.ingest import RunDir, RunPlan, load_runs, plan_runs, read_run
from analyzer.ingest.profiles import Profile, profile_set
from analyzer.model import IngestIssue, Run
from analyzer.report import RunResult
from analyzer.rules.base import Analysis

__all__ = [
    "DirResult",
    "ReadOptions",
    "diagnose_alone",
    "diagnose_chunk",
    "diagnose_dir",
    "diagnose_paths",
    "profiles_for",
    "remap",
]

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ReadOptions:
    """How workers read a run (the keywords of analyzer.ingest.read_run), shipped to every worker."""

    mappings: dict[str, Any] | None = None
    duplicate_policy: str = "keep-last"
    use_cache: bool = False
    profiles: Mapping[str, Profile] | None = None  # None: the installed profiles

    def kwargs(self) -> dict[str, Any]:
        return {
            "mappings": self.mappings,
            "duplicate_policy": self.duplicate_policy,
            "use_cache": self.use_cache,
            "profiles": self.profiles,
        }


@dataclass
class DirResult:
    """What a worker sends back for one run directory: the run's analysis and result (or None), errors.

    The analysis comes back too because the group-scope rules (analyzer.rules.base.GroupContext) read
    every run's analysis; it shares its run and smoothed curves with the result, so pickle sends those once.
    """

    done: tuple[Analysis, RunResult] | None
    errors: list[IngestIssue]


def profiles_for(cfg: RulesConfig) -> dict[str, Profile] | None:
    """The installed profiles plus the rules file's `profiles:` files (None: just the installed ones)."""
    if not cfg.profiles:
        return None
    return profile_set([load_profile_file(p) for p in cfg.profiles])


def diagnose_alone(run: Run, cfg: RulesConfig) -> tuple[Analysis, RunResult]:
    """One run by its own rules (signals, findings, verdict, pick, advice): all but the group-scope rules."""
    a = analyze_signals(run, cfg, cfg.run_override(run.id))
    return a, finish(a, run_rules(a, cfg), cfg)


def remap(run: Run, cfg: RulesConfig, profiles: Mapping[str, Profile] | None = None) -> Run:
    """Re-read a run read in this process (MLflow store, reader plugin) whose `runs:` entry carries its
    own tag mappings (they win over global ones)."""
    own = cfg.run_override(run.id).mappings
    if not own:
        return run
    from analyzer.ingest.mlflow_runs import source_of

    try:  # a run from an MLflow store is read again from there, by its run id
        again, _ = load_runs(
            [source_of(run) or run.path], mappings={**cfg.load_mappings(), **own}, profiles=profiles
        )
    except Exception as exc:  # noqa: BLE001 - keep the first reading, report why
        run.issues.append(IngestIssue(str(run.path), f"per-run mappings not applied: {exc}", "warning"))
        return run
    if len(again) != 1:
        run.issues.append(
            IngestIssue(
                str(run.path), f"per-run mappings not applied: re-reading found {len(again)} runs", "warning"
            )
        )
        return run
    again[0].id = run.id
    return again[0]


def _remap(run: Run, rd: RunDir, cfg: RulesConfig, opts: ReadOptions) -> Run:
    """Re-read a run whose `runs:` entry carries its own tag mappings (they win over global ones)."""
    own = cfg.run_override(run.id).mappings
    if not own:
        return run
    kw = {**opts.kwargs(), "mappings": {**(opts.mappings or {}), **own}}
    try:
        again, errs = read_run(rd, **kw)
    except Exception as exc:  # noqa: BLE001 - keep the first reading, report why
        run.issues.append(IngestIssue(str(run.path), f"per-run mappings not applied: {exc}", "warning"))
        return run
    if again is None:
        why = "; ".join(e.message for e in errs) or "re-reading found no run"
        run.issues.append(IngestIssue(str(run.path), f"per-run mappings not applied: {why}", "warning"))
        return run
    again.id = run.id
    return again


def _share_axes(run: Any) -> None:
    """Let series logged on the same steps (and wall times) share one array object.

    Why: a result travels back to the parent pickled, and pickle writes an array once per object, not
    per content; a trainer logs all its tags at the same steps, so this drops most of the step and
    wall-time bytes (a third of a typical result) without changing any value.
    """
    seen: list[np.ndarray] = []

    def canonical(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        for b in seen:
            if b is a or (b.dtype == a.dtype and b.shape == a.shape and np.array_equal(b, a)):
                return b
        seen.append(a)
        return a

    for s in [*run.series.values(), *run.raw.values()]:
        s.steps = canonical(s.steps)
        s.wall_time = canonical(s.wall_time)


def diagnose_dir(rd: RunDir, cfg: RulesConfig, opts: ReadOptions) -> DirResult:
    """Read one run directory and run its own rules. Never raises: a failure is an error entry."""
    run, errors = read_run(rd, **opts.kwargs())
    if run is None:
        return DirResult(None, errors)
    run = _remap(run, rd, cfg, opts)
    try:
        done = diagnose_alone(run, cfg)
        _share_axes(run)
        return DirResult(done, errors)
    except Exception as exc:  # one run's broken analysis must not take the others down
        msg = f"internal error while diagnosing run: {type(exc).__name__}: {exc}"
        return DirResult(None, [*errors, IngestIssue(str(rd.path), msg, "error")])


def diagnose_chunk(rds: Sequence[RunDir], cfg: RulesConfig, opts: ReadOptions) -> list[DirResult]:
    """`diagnose_dir` over several run directories: one task's worth of work for a remote worker."""
    return [diagnose_dir(rd, cfg, opts) for rd in rds]


def diagnose_paths(
    paths: Sequence[str | Path],
    cfg: RulesConfig,
    *,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    progress: Callable[[str, int, int, str], None] | None = None,
    duplicate_policy: str = "keep-last",
    use_cache: bool = False,
) -> tuple[list[tuple[Analysis, RunResult]], list[IngestIssue]]:
    """Every run under `paths`, read and diagnosed on its own: ((analysis, result) by run id, errors).

    `executor="local"`: a process pool of at most min(workers, CPUs, runs) processes (pool.py);
    `executor="ray"`: Ray tasks of many runs each on the cluster at `address` (analyzer.executor,
    imported only then). Runs of MLflow stores and reader plugins are read and diagnosed in this
    process. `progress("read", done, jobs, id)` after each run directory comes back and
    `progress("diagnose", done, jobs, id)` after each one that held a run (both advance together).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
    opts = ReadOptions(cfg.load_mappings() or None, duplicate_policy, use_cache, profiles_for(cfg))
    plan: RunPlan = plan_runs(paths, mappings=opts.mappings, profiles=opts.profiles)
    jobs = plan.jobs
    count = {"read": 0, "diagnose": 0}

    def on_result(index: int, res: DirResult) -> None:
        if progress is None:
            return
        count["read"] += 1  # results may arrive out of order (Ray): count arrivals
        progress("read", count["read"], len(jobs), jobs[index].id)
        if res.done is not None:
            count["diagnose"] += 1
            progress("diagnose", count["diagnose"], len(jobs), jobs[index].id)

    if executor == "ray" and jobs:
        from analyzer.executor import ray_map_chunks

        out: list[DirResult] = ray_map_chunks(
            diagnose_chunk, jobs, (cfg, opts), address=address, on_result=on_result
        )
    else:
        from analyzer.ingest.pool import run_in_pool

        out = run_in_pool(diagnose_dir, [(rd, cfg, opts) for rd in jobs], workers, on_result)
    done: list[tuple[Analysis, RunResult]] = []
    errors = list(plan.errors)
    for r in out:
        errors.extend(r.errors)
        if r.done is not None:
            done.append(r.done)
    errors.extend(plan.root_errors([r.done is not None or bool(r.errors) for r in out]))
    taken = {a.run.id for a, _ in done}
    more, errs = plan.read_in_process(taken, opts.mappings, duplicate_policy, opts.profiles)
    errors.extend(errs)
    for run in more:
        done.append(diagnose_alone(remap(run, cfg, opts.profiles), cfg))
    done.sort(key=lambda d: d[0].run.id)
    return done, errors
