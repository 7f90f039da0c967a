"""Ingestion: find runs under paths, read their logs, and hand back `Run`s plus the paths that failed.

`load_runs` is the single entry point (the CLI and `analyzer.analyze()` call it). The pipeline is
discovery (names only) -> `read_raw_run` (event files, CSV layouts, configs, checkpoints,
restart merging) -> `profiles.resolve` (canonical metrics). Runs are independent, so
`workers > 1` reads them in a process pool. Nothing here raises on bad input: problems become
`IngestIssue`s, per run or, for paths that yielded no run at all, in the returned error list.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.ingest import cache, d3rlpy_pair, mlflow_runs, storage
from analyzer.ingest.cache import LogPart
from analyzer.ingest.configfiles import read_configs
from analyzer.ingest.csvlogs import CsvLog
from analyzer.ingest.discover import (
    CsvSource,
    EventSource,
    RunDir,
    companion_eval_dir,
    discover_runs,
    find_checkpoints,
)
from analyzer.ingest.follow import read_csv, read_events
from analyzer.ingest.merge import DUPLICATE_POLICIES, Merged, Segment, merge_segments
from analyzer.ingest.pool import run_in_pool
from analyzer.ingest.profiles import Profile, resolve
from analyzer.model import Checkpoint, IngestIssue, RawRun, Run, Series
from analyzer.tfevents import EventFileData

__all__ = [
    "DUPLICATE_POLICIES",
    "CsvSource",
    "EventSource",
    "RunDir",
    "RunPlan",
    "discover_runs",
    "load_runs",
    "plan_runs",
    "read_run",
    "read_raw_run",
]

_EVENT_TS_RE = re.compile(r"^events\.out\.tfevents\.(\d+(?:\.\d+)?)")
#: d3rlpy TensorBoard adapter run directory name: <experiment>_<YYYYmmddHHMMSS>
_D3RLPY_EXP_RE = re.compile(r"_\d{14}$")


# --------------------------------------------------------------------------------------------------
# Event files
# --------------------------------------------------------------------------------------------------


def _event_first_wall(path: Path, data: EventFileData) -> float:
    """Earliest wall time in the file; else the writer's creation time from the file name."""
    firsts = [
        float(td.wall_time[0])
        for td in data.scalars.values()
        if td.wall_time is not None and len(td.wall_time)
    ]
    if firsts:
        return min(firsts)
    m = _EVENT_TS_RE.match(path.name)
    return float(m.group(1)) if m else float("inf")


def _read_events(
    sources: Sequence[EventSource], issues: list[IngestIssue]
) -> tuple[dict[str, list[Segment]], list[tuple[str, dict]], list[str]]:
    """Event-file tags as write-ordered segments, hparams per file, and the files read."""
    if not sources:
        return {}, [], []
    loaded: list[tuple[float, str, EventSource, EventFileData]] = []
    for src in sources:
        try:
            data = read_events(src.path)  # local, a bucket's object, or only new bytes (follow.py)
        except Exception as exc:  # the reader promises not to raise; a bug there must not lose the run
            issues.append(
                IngestIssue(str(src.path), f"event file unreadable: {type(exc).__name__}: {exc}", "error")
            )
            continue
        issues.extend(data.issues)
        loaded.append((_event_first_wall(src.path, data), src.path.name, src, data))
    # restarts: files in order of (first wall time, name) -- docs/ingestion.md
    loaded.sort(key=lambda t: (t[0], t[1]))
    tags: dict[str, list[Segment]] = {}
    hparams: list[tuple[str, dict]] = []
    files: list[str] = []
    for _, _, src, data in loaded:
        files.append(str(src.path))
        if data.hparams:
            hparams.append((str(src.path), dict(data.hparams)))
        if src.hparams_only:
            continue
        for tag, td in data.scalars.items():
            seg = Segment(np.asarray(td.steps), np.asarray(td.values), td.wall_time, str(src.path))
            tags.setdefault(src.prefix + tag, []).append(seg)
    return tags, hparams, files


# --------------------------------------------------------------------------------------------------
# W&B run files
# --------------------------------------------------------------------------------------------------


def _read_wandb(
    paths: Sequence[Path], issues: list[IngestIssue]
) -> tuple[dict[str, list[Segment]], list[tuple[str, dict]], list[str]]:
    """History keys of `run-<id>.wandb` files as segments, their configs, and the files read.

    The reader module imports wandb's protobuf definitions only here, when a W&B run was found.
    """
    if not paths:
        return {}, [], []
    from analyzer.ingest.wandb_run import read_wandb_run

    tags: dict[str, list[Segment]] = {}
    configs: list[tuple[str, dict]] = []
    files: list[str] = []
    for path in paths:
        try:
            data = read_wandb_run(path)
        except Exception as exc:  # the reader promises not to raise; a bug there must not lose the run
            issues.append(
                IngestIssue(str(path), f"W&B run file unreadable: {type(exc).__name__}: {exc}", "error")
            )
            continue
        issues.extend(data.issues)
        files.append(str(path))
        if data.config:
            configs.append((str(path), dict(data.config)))
        for key, sc in data.scalars.items():
            tags.setdefault(key, []).append(Segment(sc.steps, sc.values, sc.wall_time, str(path)))
    return tags, configs, files


# --------------------------------------------------------------------------------------------------
# CSV files
# --------------------------------------------------------------------------------------------------


def _csv_first_wall(log: CsvLog) -> float:
    firsts = [
        float(s.wall_time[0]) for s in log.tags.values() if s.wall_time is not None and len(s.wall_time)
    ]
    return min(firsts) if firsts else float("inf")


def _read_csvs(sources: Sequence[CsvSource], issues: list[IngestIssue]) -> list[CsvLog]:
    logs: list[CsvLog] = []
    for src in sources:
        log = read_csv(src.path, src.tag)
        issues.extend(log.issues)
        if log.tags:
            logs.append(log)
    logs.sort(key=lambda lg: (_csv_first_wall(lg), lg.path.name))
    return logs


# --------------------------------------------------------------------------------------------------
# Assembling a RawRun
# --------------------------------------------------------------------------------------------------


def _is_d3rlpy_tb(rd: RunDir, tags: Mapping[str, Any]) -> bool:
    """d3rlpy's TensorboardAdapter: tensorboard_logs/runs/<exp>_<timestamp>/ with metrics/<name> tags."""
    if rd.kind != "dir" or not tags or not all(t.startswith("metrics/") for t in tags):
        return False
    return rd.path.parent.name == "runs" or bool(_D3RLPY_EXP_RE.search(rd.path.name))


def _layout(rd: RunDir, csv_logs: list[CsvLog], event_tags: Mapping[str, Any], d3rlpy_tb: bool) -> str:
    if rd.kind in ("brac", "offlinerl_kit"):
        return rd.kind
    if rd.wandb_files and not csv_logs:
        return "wandb_run"
    if csv_logs:
        counts = Counter(lg.layout for lg in csv_logs)
        layout = counts.most_common(1)[0][0]
        if layout == "wide_csv" and any(lg.x_column == "learner_steps" for lg in csv_logs):
            return "acme_csv"
        return layout
    if d3rlpy_tb:
        return "d3rlpy_tb"
    return "tfevents" if event_tags else "none"


def _extra_config_files(rd: RunDir, d3rlpy_tb: bool) -> list[Path]:
    """Documented places outside the run directory where a layout keeps its config."""
    extra: list[Path] = []
    if rd.kind == "offlinerl_kit":
        extra.append(rd.path / "record" / "hyper_param.json")
    if rd.kind == "torchrl":
        # CSVLogger.log_hparams writes sorted `key: value` lines (YAML) to texts/hparams0.txt
        extra.append(rd.path / "texts" / "hparams0.txt")
    if d3rlpy_tb and len(rd.path.parents) >= 3:
        # tensorboard_logs/runs/<exp>/ pairs with d3rlpy_logs/<exp>/params.json (same experiment name)
        extra.append(rd.path.parents[2] / "d3rlpy_logs" / rd.path.name / "params.json")
    return extra


def _checkpoints(
    rd: RunDir, x_unit: str, table: tuple[np.ndarray, np.ndarray] | None, issues: list[IngestIssue]
) -> list[Checkpoint]:
    """Checkpoints in the run's x-axis unit; epoch-numbered files are mapped to steps when the log allows."""
    files = find_checkpoints(rd.config_dir)
    if not files:
        return []
    lookup: dict[int, int] = {}
    if table is not None:
        for ep, st in zip(table[0].tolist(), table[1].tolist(), strict=True):
            lookup[int(ep)] = int(st)  # last row of an epoch wins: the counter at the end of that epoch
    out: list[Checkpoint] = []
    unmapped: list[str] = []
    for cf in files:
        step = cf.step
        if cf.epoch_unit and x_unit == "step":
            if cf.step in lookup:
                step = lookup[cf.step]
            else:
                unmapped.append(cf.path.name)
                continue
        out.append(Checkpoint(step=step, path=cf.path))
    if unmapped:
        shown = ", ".join(unmapped[:5]) + (", ..." if len(unmapped) > 5 else "")
        issues.append(
            IngestIssue(
                str(rd.config_dir),
                f"{len(unmapped)} epoch-numbered checkpoint(s) could not be placed on the step axis "
                f"(no epoch->step row in the log): {shown}",
                "info",
            )
        )
    out.sort(key=lambda c: (c.step, str(c.path)))
    return out


class _MergeReport:
    """Totals of what restart/duplicate merging dropped across a run's tags, for one info issue."""

    def __init__(self) -> None:
        self.superseded = 0
        self.regressions = 0
        self.tags: list[str] = []
        self.files: set[str] = set()

    def add(self, tag: str, merged: Merged) -> None:
        if merged.stats.superseded:
            self.superseded += merged.stats.superseded
            self.regressions += merged.stats.regressions
            self.tags.append(tag)
            self.files.update(merged.stats.files)

    def message(self, policy: str) -> str:
        shown = ", ".join(sorted(Path(f).name for f in self.files)[:3])
        return (
            f"restart/duplicate steps: {self.superseded} point(s) in {len(self.tags)} tag(s) superseded "
            f"({policy}; {self.regressions} step regression(s)); dropped points were written by: {shown}"
        )


def _dedupe(issues: list[IngestIssue]) -> list[IngestIssue]:
    seen: set[tuple[str, str, str]] = set()
    out: list[IngestIssue] = []
    for i in issues:
        key = (i.path, i.message, i.level)
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out


def _read_logs(rd: RunDir, duplicate_policy: str) -> LogPart:
    """The log-file half of a RawRun (the expensive, cacheable part): merged tags, layout, x-axis."""
    issues: list[IngestIssue] = []
    event_tags, hparams, event_files = _read_events(rd.event_files, issues)
    csv_logs = _read_csvs(rd.csv_files, issues)
    if rd.kind == d3rlpy_pair.KIND:  # a d3rlpy experiment's TensorBoard twin, onto the CSV step axis
        event_tags = d3rlpy_pair.onto_step_axis(rd.path, event_tags, csv_logs, duplicate_policy, issues)
    d3rlpy_tb = _is_d3rlpy_tb(rd, event_tags)
    wandb_tags, wandb_configs, wandb_files = _read_wandb(rd.wandb_files, issues)
    for tag, segs in wandb_tags.items():  # W&B history is on the step axis, like event files
        event_tags.setdefault(tag, []).extend(segs)
    hparams.extend(wandb_configs)
    event_files.extend(wandb_files)

    x_units = {lg.x_unit for lg in csv_logs}
    if d3rlpy_tb:
        x_unit = "epoch"  # d3rlpy's TensorboardAdapter logs global_step = epoch
    elif csv_logs and not event_tags:
        x_unit = "epoch" if x_units == {"epoch"} else "step"
    else:
        x_unit = "step"
    if len(x_units) > 1 or (event_tags and "epoch" in x_units):
        issues.append(
            IngestIssue(
                str(rd.path),
                "log files disagree on the x-axis (some count epochs, some steps); "
                f"the run is read on the {x_unit} axis",
            )
        )

    csv_segments: dict[str, list[Segment]] = {}
    for log in csv_logs:
        for tag, seg in log.tags.items():
            csv_segments.setdefault(tag, []).append(seg)
    tags: dict[str, Series] = {}
    stats = _MergeReport()
    differing: list[str] = []
    for tag in list(event_tags) + [t for t in csv_segments if t not in event_tags]:
        candidates = [segs for segs in (event_tags.get(tag), csv_segments.get(tag)) if segs]
        merged_all = [merge_segments(segs, duplicate_policy) for segs in candidates]
        # a tag both in event files and CSV (trainers often write both): the more complete copy wins,
        # event files on a tie (they carry wall times)
        merged = max(merged_all, key=lambda m: m.steps.shape[0])
        if len(merged_all) == 2 and merged_all[0].steps.shape[0] != merged_all[1].steps.shape[0]:
            differing.append(tag)
        if merged.steps.shape[0] == 0:
            continue
        stats.add(tag, merged)
        tags[tag] = Series(
            name=tag,
            steps=merged.steps,
            values=merged.values,
            wall_time=merged.wall_time,
            x_unit=x_unit,  # type: ignore[arg-type]
            sources=(tag,),
            files=merged.files,
        )
    if differing:
        shown = ", ".join(differing[:3]) + (", ..." if len(differing) > 3 else "")
        issues.append(
            IngestIssue(
                str(rd.path),
                f"{len(differing)} tag(s) in both event files and CSV with different point counts "
                f"({shown}); the copy with more points was used",
                "info",
            )
        )
    if stats.superseded:
        issues.append(IngestIssue(str(rd.path), stats.message(duplicate_policy), "info"))

    return LogPart(
        tags=tags,
        files=event_files + [str(lg.path) for lg in csv_logs],
        issues=issues,
        layout=_layout(rd, csv_logs, event_tags, d3rlpy_tb),
        x_unit=x_unit,
        d3rlpy_tb=d3rlpy_tb,
        hparams=hparams,
        epoch_steps=next((lg.epoch_steps for lg in csv_logs if lg.epoch_steps is not None), None),
    )


def read_raw_run(rd: RunDir, duplicate_policy: str = "keep-last", use_cache: bool = False) -> RawRun:
    """Read every log file of one discovered run into a RawRun (tags as logged, merged across restarts).

    With `use_cache`, the log-file part is loaded from / stored in the user cache (cache.py) when
    the log files' sizes and mtimes are unchanged; configs and checkpoints are always read fresh.
    """
    if duplicate_policy not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicate_policy must be one of {DUPLICATE_POLICIES}, not {duplicate_policy!r}")
    part = cache.load(rd, duplicate_policy) if use_cache else None
    if part is None:
        part = _read_logs(rd, duplicate_policy)
        if use_cache:
            cache.store(rd, duplicate_policy, part)
    issues = list(part.issues)
    cfg = read_configs(rd.config_dir, _extra_config_files(rd, part.d3rlpy_tb), part.hparams)
    issues.extend(cfg.issues)
    checkpoints = _checkpoints(rd, part.x_unit, part.epoch_steps, issues)
    return RawRun(
        id=rd.id,
        path=rd.path,
        layout=part.layout,
        tags=part.tags,
        files=list(part.files),
        config=cfg.config,
        config_sources=cfg.sources,
        checkpoints=checkpoints,
        issues=_dedupe(issues),
        x_unit=part.x_unit,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------------------------------
# RawRun -> Run
# --------------------------------------------------------------------------------------------------


_NO_LOGS = (
    "no training logs found (no events.out.tfevents.* files or CSV training logs in this directory tree)"
)


def _no_run_message(raw: RawRun) -> str:
    reasons = [f"{Path(i.path).name}: {i.message}" for i in raw.issues if i.level in ("error", "warning")]
    reasons = reasons or [f"{Path(i.path).name}: {i.message}" for i in raw.issues]
    if not reasons:
        return "no readable training logs (no event-file scalars or CSV rows)"
    shown = "; ".join(reasons[:6]) + (f"; ... ({len(reasons) - 6} more)" if len(reasons) > 6 else "")
    return f"no usable training data: {shown}"


#: Tags of a companion evaluation (`<run>_eval/`, docs/formats.md) -> the canonical metric each is.
COMPANION_TAGS = {"eval_success": "eval/success_rate", "eval_return": "eval/return"}


def fill_companion_metrics(run: Run) -> Run:
    """Give the run its companion evaluation's scores, whatever framework wrote the run.

    Why here and not in a profile: the convention is the evaluator's, not the trainer's, so it
    holds for every framework. A metric the run's own logs (or a rules-file mapping) already
    give is left alone; only a tag read from files inside `<run>_eval/` is used.
    """
    comp = str(companion_eval_dir(run.path)) + os.sep
    for name, tag in COMPANION_TAGS.items():
        s = run.raw.get(tag)
        if name in run.series or s is None or not s.files:
            continue
        if all(f.startswith(comp) for f in s.files):
            note = f"companion evaluation {Path(comp).name}/ (docs/formats.md)"
            run.series[name] = dataclasses.replace(s, name=name, kind="logged", note=note)
    return run


def _load_one(
    rd: RunDir,
    mappings: Mapping[str, Any] | None,
    duplicate_policy: str,
    use_cache: bool = False,
    profiles: Mapping[str, Profile] | None = None,
) -> tuple[Run | None, list[IngestIssue]]:
    """Read and resolve one run; a run with no data becomes an error, and nothing escapes as an exception."""
    try:
        raw = read_raw_run(rd, duplicate_policy, use_cache)
    except Exception as exc:  # last line of defence: one broken run must not take the others down
        return None, [
            IngestIssue(
                str(rd.path), f"internal error while reading run: {type(exc).__name__}: {exc}", "error"
            )
        ]
    if not raw.tags:
        if rd.kind == "dir" and not rd.event_files and all(i.level == "info" for i in raw.issues):
            return None, []  # only CSVs that are not training logs (e.g. a results table): not a run
        return None, [IngestIssue(str(rd.path), _no_run_message(raw), "error")]
    try:
        return fill_companion_metrics(resolve(raw, dict(mappings) if mappings else None, profiles)), []
    except Exception as exc:
        return None, [
            IngestIssue(
                str(rd.path), f"internal error while resolving metrics: {type(exc).__name__}: {exc}", "error"
            )
        ]


def _root_index(groups: list[tuple[Path, list[RunDir]]]) -> list[int]:
    return [k for k, (_, rds) in enumerate(groups) for _ in rds]


def _unique_ids(groups: list[tuple[Path, list[RunDir]]]) -> list[RunDir]:
    """Flatten runs of several roots; an id seen twice is prefixed with its root's name."""
    counts = Counter(rd.id for _, rds in groups for rd in rds)
    out: list[RunDir] = []
    used: set[str] = set()
    for root, rds in groups:
        for rd in rds:
            rid = rd.id
            if counts[rid] > 1:
                rid = f"{root.resolve().name}/{rid}" if rd.path != root else rid
            base, n = rid, 2
            while rid in used:
                rid, n = f"{base}#{n}", n + 1
            used.add(rid)
            rd.id = rid
            out.append(rd)
    return out


@dataclasses.dataclass
class RunPlan:
    """What the paths given hold, before the run directories are read.

    Why separate from reading: `load_runs` reads the plan's jobs in a local pool, and analyzer.batch
    reads *and diagnoses* them in the same workers (or Ray tasks); both turn the per-job results
    into runs and errors the same way (`root_errors`, `read_in_process`).
    """

    jobs: list[RunDir]  # run directories to read, with their final (unique) ids
    groups: list[tuple[Path, list[RunDir]]]  # each searched root and the run directories under it
    errors: list[IngestIssue]  # paths that could not be searched, reader-plugin errors
    plugin_runs: list[Run]  # read by a reader plugin (analyzer.plugins) while planning, in this process
    tracking: list[mlflow_runs.MlflowSource]  # `mlflow:<uri>` sources: read in this process

    def root_errors(self, yielded_by_job: Sequence[bool]) -> list[IngestIssue]:
        """`no training logs` for each root none of whose jobs produced a run or an error."""
        done = {k for k, y in zip(_root_index(self.groups), yielded_by_job, strict=True) if y}
        return [
            IngestIssue(str(root), _NO_LOGS, "error")
            for k, (root, _) in enumerate(self.groups)
            if k not in done
        ]

    def read_in_process(
        self,
        taken: set[str],
        mappings: Mapping[str, Any] | None = None,
        duplicate_policy: str = "keep-last",
        profiles: Mapping[str, Profile] | None = None,
    ) -> tuple[list[Run], list[IngestIssue]]:
        """The MLflow stores' runs (read now: one client per store) and the plugins' runs, with ids made
        unique against `taken` (the ids of the runs read from the jobs; updated)."""
        runs = list(self.plugin_runs)
        errors: list[IngestIssue] = []
        for source in self.tracking:
            found, errs = mlflow_runs.load_source(source, mappings, duplicate_policy, profiles)
            runs.extend(found)
            errors.extend(errs)
        for run in runs:
            base, n = run.id, 2
            while run.id in taken:
                run.id, n = f"{base}#{n}", n + 1
            taken.add(run.id)
        return runs, errors


def plan_runs(
    paths: Sequence[str | Path | mlflow_runs.MlflowSource],
    *,
    mappings: Mapping[str, Any] | None = None,
    profiles: Mapping[str, Profile] | None = None,
) -> RunPlan:
    """Discover the run directories under `paths` (reader plugins read the paths they claim now)."""
    if isinstance(paths, (str, Path, storage.RemotePath, mlflow_runs.MlflowSource)):
        paths = [paths]  # one path, not a sequence of characters
    errors: list[IngestIssue] = []
    groups: list[tuple[Path, list[RunDir]]] = []
    plugin_runs: list[Run] = []
    tracking: list[mlflow_runs.MlflowSource] = []
    for p in paths:
        source = mlflow_runs.parse_source(p)
        if source is not None:
            tracking.append(source)
            continue
        assert not isinstance(p, mlflow_runs.MlflowSource)  # for mypy: parse_source took those
        try:
            path = storage.as_path(p)  # a URL (s3://, gs://, ...) is read through fsspec (storage.py)
            exists = path.exists()
        except OSError as exc:
            errors.append(IngestIssue(str(p), f"cannot access path: {exc.strerror or exc}", "error"))
            continue
        if not exists:
            errors.append(IngestIssue(str(path), "path does not exist", "error"))
            continue
        claimed = read_with_plugin(path, mappings, profiles)
        if claimed is not None:
            plugin_runs.extend(claimed[0])
            errors.extend(claimed[1])
            continue
        rds = discover_runs(path, issues=errors)  # unreadable sub-directories are errors, not skipped
        if not rds:
            errors.append(IngestIssue(str(path), _NO_LOGS, "error"))
            continue
        groups.append((path, rds))
    return RunPlan(_unique_ids(groups), groups, errors, plugin_runs, tracking)


#: Read one planned run directory: `(run or None, errors)`, never raises. Called with keywords
#: (`mappings=`, `duplicate_policy=`, `use_cache=`, `profiles=`) by analyzer.batch's workers.
read_run = _load_one


def load_runs(
    paths: Sequence[str | Path | mlflow_runs.MlflowSource],
    *,
    mappings: dict | None = None,
    profiles: Mapping[str, Profile] | None = None,
    duplicate_policy: str = "keep-last",
    workers: int = 1,
    use_cache: bool = False,
    on_run: Callable[[int, int, str], None] | None = None,
) -> tuple[list[Run], list[IngestIssue]]:
    """Discover and read every run under `paths`: (runs sorted by id, paths that yielded no run).

    `on_run(done, total, run_id)` is called after each run directory is read (for progress bars;
    with workers, in submission order as results arrive).

    `profiles`: the profiles frameworks are detected among (default: the installed ones; a rules
    file's `profiles:` are added with `profiles.profile_set`).
    `duplicate_policy`: "keep-last" (default) or "keep-first", see docs/ingestion.md.
    `workers > 1` reads runs in a process pool of at most min(workers, CPUs, runs) processes that
    end with this process (pool.py). `use_cache` loads unchanged runs' log data from the
    user cache (cache.py; off by default, docs/ingestion.md "Caching").
    A path `mlflow:<tracking URI>` (or an `MlflowSource`) reads the runs of an MLflow store
    (mlflow_runs.py; needs the `mlflow` extra).
    """
    if duplicate_policy not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicate_policy must be one of {DUPLICATE_POLICIES}, not {duplicate_policy!r}")
    plan = plan_runs(paths, mappings=mappings, profiles=profiles)
    jobs = plan.jobs

    def progress(index: int, _result: object) -> None:
        if on_run is not None:
            on_run(index + 1, len(jobs), jobs[index].id)

    # workers are capped by CPUs and runs, and end with this process (pool.py)
    results = run_in_pool(
        _load_one, [(rd, mappings, duplicate_policy, use_cache, profiles) for rd in jobs], workers, progress
    )
    runs: list[Run] = []
    errors = list(plan.errors)
    for run, errs in results:
        errors.extend(errs)
        if run is not None:
            runs.append(run)
    errors.extend(plan.root_errors([run is not None or bool(errs) for run, errs in results]))
    more, errs = plan.read_in_process({r.id for r in runs}, mappings, duplicate_policy, profiles)
    runs.extend(more)
    errors.extend(errs)
    runs.sort(key=lambda r: r.id)
    return runs, errors


def read_with_plugin(
    path: Path, mappings: Mapping[str, Any] | None, profiles: Mapping[str, Profile] | None
) -> tuple[list[Run], list[IngestIssue]] | None:
    """Runs of `path` read by the first reader plugin that claims it; None when none does.

    A plugin that raises (in `claims` or `read`) or returns something else than RawRuns costs its
    path an error naming the plugin, never the analysis."""
    from analyzer.plugins import plugin_readers

    for reader in plugin_readers():
        try:
            if not reader.claims(path):
                continue
            raws = list(reader.read(path))
            if not all(isinstance(r, RawRun) for r in raws):
                raise TypeError("read() must return RawRun objects")
        except Exception as exc:  # noqa: BLE001 - a plugin's bug is reported with its name
            why = f"reader plugin {reader.name!r} failed: {type(exc).__name__}: {exc}"
            return [], [IngestIssue(str(path), why, "error")]
        runs: list[Run] = []
        errs: list[IngestIssue] = []
        for raw in raws:
            if not raw.tags:
                errs.append(
                    IngestIssue(
                        str(raw.path), f"reader plugin {reader.name!r}: {_no_run_message(raw)}", "error"
                    )
                )
                continue
            try:
                runs.append(
                    fill_companion_metrics(resolve(raw, dict(mappings) if mappings else None, profiles))
                )
            except Exception as exc:  # noqa: BLE001 - as in _load_one
                errs.append(
                    IngestIssue(
                        str(raw.path),
                        f"internal error while resolving metrics: {type(exc).__name__}: {exc}",
                        "error",
                    )
                )
        if not runs and not errs:
            errs.append(IngestIssue(str(path), f"reader plugin {reader.name!r} found no run", "error"))
        return runs, errs
    return None
