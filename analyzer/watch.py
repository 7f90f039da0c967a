"""`offrl-analyze --watch PATH`: follow growing logs and say when a run FIRST shows overfitting.

Why the diagnosis is redone on the whole curve: the verdict depends on all of it (a peak is only a
peak once Q has fallen after it). What is cheap is everything around that (`Follower`): each poll
lists the folders (a bucket: one listing), compares every run's files with what they were (size,
mtime, inode; a bucket's ETag), and for a run that changed reads only the bytes appended since the
last poll (analyzer/ingest/tail.py) and diagnoses that run again. Unchanged runs keep their result;
cross-run rules are rerun over all results. A rotated or truncated file is read again from its
start and announced. Events are emitted once per run (new run, first overfitting, first
divergence, first time the policy leaves the data: OF004, the collapse early warning), so a long watch does not
repeat itself. `max_iterations`, `on_event` and `sleep` exist
so tests drive the loop without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from analyzer.report import Report

EventKind = Literal["new_run", "overfitting", "diverged", "left_data", "ingest_error", "reread"]


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
        if self.kind == "left_data":
            keep = f"keep step {self.step}" if self.step is not None else "no checkpoint before it"
            at = f", noticed at step {self.last_step}" if self.last_step is not None else ""
            return f"LEFT THE DATA: {self.run}: {keep}{at} — {self.message}"
        if self.kind == "reread":
            return f"read again from the start: {self.run}: {self.message}"
        return f"unreadable: {self.run}: {self.message}"


@dataclass
class WatchState:
    """What has already been announced, so each event fires once."""

    seen_runs: set[str] = field(default_factory=set)
    overfit_runs: set[str] = field(default_factory=set)
    diverged_runs: set[str] = field(default_factory=set)
    left_data_runs: set[str] = field(default_factory=set)
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
            left = [f for f in r.findings if f.code == "OF004"]
            if left and run_id not in self.left_data_runs:
                self.left_data_runs.add(run_id)
                keep = left[0].evidence.get("keep_step")  # OF004 names the last checkpoint before its alarm
                events.append(
                    WatchEvent(
                        "left_data", run_id, step=int(keep) if keep is not None else None, last_step=last,
                        message=left[0].message,
                    )
                )  # fmt: skip
        for e in report.errors:
            if e.path not in self.bad_paths:
                self.bad_paths.add(e.path)
                events.append(WatchEvent("ingest_error", e.path, message=e.message))
        return events


def _last_step(run: Any) -> int | None:
    steps = [int(s.steps[-1]) for s in run.series.values() if len(s)]
    return max(steps) if steps else None


@dataclass
class PollStats:
    """What one poll did (benchmarks/watch.py, `Follower.last`)."""

    runs: int = 0
    changed: int = 0  # runs read and diagnosed again
    files_read: int = 0  # files with new bytes (or read for the first time)
    bytes_read: int = 0
    seconds: float = 0.0
    read_seconds: float = 0.0  # of which reading log files (the rest: listing, stats, diagnosis)


#: Runs to read in one poll from which `workers > 1` reads them in worker processes (a first poll).
_POOL_MIN_RUNS = 8


@dataclass
class _Known:
    fingerprint: tuple[Any, ...]
    result: Any  # analyzer.batch.DirResult


class Follower:
    """A watch's state across polls: per-file reading state (a Tail) and each run's last result.

    `poll()` returns the Report a fresh `analyze(paths, rules)` would (same planning, reading and
    diagnosis functions: analyzer.batch), at a cost that grows with what changed since the last
    poll, not with what is there. Runs are read in this process (the Tail's state lives here), except
    when `workers > 1` and a poll has many runs to read (the first): worker processes read those whole.
    """

    def __init__(self, paths: Sequence[Any], rules: Any = None, workers: int = 1) -> None:
        from analyzer.api import _config
        from analyzer.batch import ReadOptions, profiles_for
        from analyzer.ingest.storage import as_path
        from analyzer.ingest.tail import Tail

        self.paths = [as_path(p) for p in paths]
        self.cfg = _config(rules)
        self.opts = ReadOptions(self.cfg.load_mappings() or None, "keep-last", False, profiles_for(self.cfg))
        self.tail = Tail()
        self.known: dict[str, _Known] = {}
        self.last = PollStats()
        self.workers = workers

    @staticmethod
    def _fingerprint(rd: Any) -> tuple[tuple[Any, ...], tuple[str, ...]]:
        """What a run's result depends on: its log files' versions, checkpoint names, config files."""
        from analyzer.ingest.configfiles import CONFIG_NAMES
        from analyzer.ingest.discover import find_checkpoints
        from analyzer.ingest.storage import stat

        files = [e.path for e in rd.event_files] + [c.path for c in rd.csv_files] + list(rd.wandb_files)
        rows: list[Any] = []
        for path in files:
            try:
                rows.append((str(path), stat(path)))
            except OSError:
                rows.append((str(path), None))
        configs: list[Any] = []
        for name in CONFIG_NAMES:
            try:
                configs.append((name, stat(rd.config_dir / name)))
            except OSError:
                continue
        ckpts = tuple(str(c.path) for c in find_checkpoints(rd.config_dir))
        return (rd.kind, tuple(rows), ckpts, tuple(configs)), tuple(str(p) for p in files)

    def poll(self) -> tuple[Report, list[WatchEvent]]:
        """One look at the paths: the full report, and the files that had to be read from the start."""
        from analyzer.api import _report
        from analyzer.batch import diagnose_alone, diagnose_dir, remap
        from analyzer.ingest import plan_runs
        from analyzer.ingest.follow import following
        from analyzer.ingest.storage import RemotePath

        t0 = time.perf_counter()
        bytes0, files0, read0 = self.tail.bytes_read, self.tail.files_read, self.tail.seconds
        for p in self.paths:
            if isinstance(p, RemotePath):
                p.refresh()  # this poll's listing: new objects, new sizes and ETags
        cfg, opts = self.cfg, self.opts
        plan = plan_runs(self.paths, mappings=opts.mappings, profiles=opts.profiles)
        known: dict[str, _Known] = {}
        owner: dict[str, str] = {}
        out: list[Any] = []
        stale: list[tuple[int, Any, tuple[Any, ...]]] = []
        for rd in plan.jobs:
            fp, files = self._fingerprint(rd)
            owner.update(dict.fromkeys(files, rd.id))
            old = self.known.get(rd.id)
            if old is None or old.fingerprint != fp:
                stale.append((len(out), rd, fp))
            out.append(old.result if old is not None else None)
            if old is not None:
                known[rd.id] = old
        changed = len(stale)
        if self.workers > 1 and len(stale) >= _POOL_MIN_RUNS:
            # many runs to read (the first poll): worker processes read them in full; the Tail has no
            # state for them, so a run that changes later is read whole once more, then incrementally
            from analyzer.ingest.pool import run_in_pool

            results = run_in_pool(diagnose_dir, [(rd, cfg, opts) for _, rd, _ in stale], self.workers)
        else:
            results = []
            for _, rd, _ in stale:
                with following(self.tail):  # only bytes appended since the last poll are read
                    results.append(diagnose_dir(rd, cfg, opts))
        for (i, rd, fp), res in zip(stale, results, strict=True):
            known[rd.id] = _Known(fp, res)
            out[i] = res
        self.known = known
        self.tail.keep_only(set(owner))
        done = []
        errors = list(plan.errors)
        for r in out:
            errors.extend(r.errors)
            if r.done is not None:
                done.append(r.done)
        errors.extend(plan.root_errors([r.done is not None or bool(r.errors) for r in out]))
        more, errs = plan.read_in_process(
            {a.run.id for a, _ in done}, opts.mappings, "keep-last", opts.profiles
        )
        errors.extend(errs)
        done.extend(diagnose_alone(remap(run, cfg, opts.profiles), cfg) for run in more)
        done.sort(key=lambda d: d[0].run.id)
        resets = [
            WatchEvent("reread", owner.get(r.path, r.path), message=f"{r.path}: {r.reason}")
            for r in self.tail.take_resets()
        ]
        self.last = PollStats(
            runs=len(plan.jobs) + len(more),
            changed=changed,
            files_read=self.tail.files_read - files0,
            bytes_read=self.tail.bytes_read - bytes0,
            seconds=time.perf_counter() - t0,
            read_seconds=self.tail.seconds - read0,
        )
        return _report(done, cfg, errors), resets


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
    """Poll `paths` (folders, files, bucket URLs) every `interval` seconds until interrupted (or
    `max_iterations` polls).

    Each poll is a `Follower.poll` (only new bytes are read, only changed runs diagnosed). With
    `analyze_fn`, each poll is `analyze_fn(paths, rules, workers=workers)` instead (the old full
    re-read; benchmarks/watch.py compares the two). `between(i)` is called after poll i (tests
    append to logs there); Ctrl-C propagates as KeyboardInterrupt, which the CLI turns into exit 0.
    """
    state = WatchState()
    follower = Follower(paths, rules, workers) if analyze_fn is None else None
    i = 0
    while max_iterations is None or i < max_iterations:
        if follower is not None:
            report, resets = follower.poll()
        else:
            report, resets = analyze_fn(list(paths), rules, workers=workers), []  # type: ignore[misc]
        for event in resets + state.update(report):
            on_event(event)
        i += 1
        if max_iterations is not None and i >= max_iterations:
            break
        if between is not None:
            between(i)
        sleep(interval)
    return state
