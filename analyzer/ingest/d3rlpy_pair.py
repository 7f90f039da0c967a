"""One d3rlpy experiment, one run: its FileAdapter CSV folder and TensorboardAdapter folder, merged.

Why: d3rlpy's default loggers write the same experiment twice, `d3rlpy_logs/<exp>/` (one headerless
`epoch,step,value` CSV per metric, `params.json`, `model_<step>.d3`) and
`tensorboard_logs/runs/<exp>/` (`metrics/<name>` scalars with global_step = epoch, add_hparams
sub-runs). Read as two runs, the TensorBoard one has no checkpoints and no config of its own and
the report lists the experiment twice. Merged, the run lives at the CSV folder (config,
checkpoints, the gradient-step axis) and the TensorBoard files add what the CSVs lack.

Two halves, kept apart like the rest of ingestion:

* `pair_runs` (discovery: names and one stat per candidate): a TensorBoard run `<base>/<a>/runs/<exp>`
  and a CSV run `<base>/<b>/<exp>` holding `params.json` pair when the experiment name and `<base>`
  match and neither has another candidate. The pair becomes one `RunDir` of kind "d3rlpy".
* `onto_step_axis` (reading): TensorBoard `metrics/<name>` tags lose the prefix and move from the
  epoch axis to the CSVs' step axis through their epoch -> step rows. A metric the CSVs already hold
  with at least as many points is not taken twice (its TensorBoard copy is compared with it and a
  disagreement reported); the rest join the run. Points on an epoch no CSV row names cannot be
  placed and are dropped, with an issue.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from analyzer.ingest.merge import Segment, merge_segments
from analyzer.model import IngestIssue

if TYPE_CHECKING:  # discover.py imports this module: no runtime import back
    from analyzer.ingest.csvlogs import CsvLog
    from analyzer.ingest.discover import RunDir

__all__ = ["KIND", "TB_PREFIX", "onto_step_axis", "pair_runs"]

KIND = "d3rlpy"
#: d3rlpy's TensorboardAdapter writes every metric as `metrics/<name>`
TB_PREFIX = "metrics/"
#: TensorBoard stores float32: a copy that differs from the CSV's float64 by more than this disagrees
_RTOL, _ATOL = 1e-5, 1e-6


# --------------------------------------------------------------------------------------------------
# Discovery


def _tb_key(rd: RunDir) -> tuple[Path, str] | None:
    """(<base>, <exp>) for a TensorBoard-only run at <base>/<root>/runs/<exp>."""
    p = rd.path
    if rd.kind != "dir" or rd.csv_files or not rd.event_files or p.parent.name != "runs":
        return None
    if len(p.parents) < 3:
        return None
    return p.parents[2], p.name


def _csv_key(rd: RunDir) -> tuple[Path, str] | None:
    """(<base>, <exp>) for a CSV-only run at <base>/<root>/<exp> that holds d3rlpy's params.json."""
    p = rd.path
    if rd.kind != "dir" or rd.event_files or not rd.csv_files or len(p.parents) < 2:
        return None
    try:
        if not (p / "params.json").is_file():
            return None
    except OSError:
        return None
    return p.parents[1], p.name


def pair_runs(runs: Sequence[RunDir]) -> list[RunDir]:
    """Merge each d3rlpy TensorBoard run into its CSV twin; every other run is returned unchanged."""
    tbs: dict[tuple[Path, str], list[RunDir]] = {}
    csvs: dict[tuple[Path, str], list[RunDir]] = {}
    for rd in runs:
        key = _tb_key(rd)
        if key is not None:
            tbs.setdefault(key, []).append(rd)
            continue
        key = _csv_key(rd)
        if key is not None:
            csvs.setdefault(key, []).append(rd)
    absorbed: set[int] = set()
    for key, tb_runs in tbs.items():
        csv_runs = csvs.get(key, [])
        if len(tb_runs) != 1 or len(csv_runs) != 1:
            continue  # ambiguous or unpaired: leave both as they are
        tb, csv = tb_runs[0], csv_runs[0]
        csv.kind = KIND
        csv.event_files.extend(tb.event_files)
        absorbed.add(id(tb))
    return [rd for rd in runs if id(rd) not in absorbed]


# --------------------------------------------------------------------------------------------------
# Reading


def _epoch_table(csv_logs: Sequence[CsvLog]) -> dict[int, int]:
    """epoch -> step at that epoch's end, from every CSV's rows (the last row of an epoch wins)."""
    table: dict[int, int] = {}
    for log in csv_logs:
        if log.epoch_steps is None:
            continue
        for ep, st in zip(log.epoch_steps[0].tolist(), log.epoch_steps[1].tolist(), strict=True):
            table[int(ep)] = int(st)
    return table


def _on_steps(seg: Segment, epochs: np.ndarray, steps: np.ndarray) -> tuple[Segment, int]:
    """`seg` with its epoch x-values replaced by steps; points on unknown epochs dropped (counted)."""
    x = np.asarray(seg.steps, dtype=np.int64)
    at = np.searchsorted(epochs, x)
    at_c = np.minimum(at, max(epochs.shape[0] - 1, 0))
    known = (at < epochs.shape[0]) & (epochs[at_c] == x) if epochs.shape[0] else np.zeros_like(x, bool)
    wall = seg.wall_time[known] if seg.wall_time is not None else None
    placed = Segment(steps[at_c[known]], np.asarray(seg.values)[known], wall, seg.file)
    return placed, int((~known).sum())


def _disagreements(csv: Segment, tb: Segment) -> int:
    """Steps where both copies have a value and the values differ beyond float32 rounding."""
    common, ci, ti = np.intersect1d(csv.steps, tb.steps, assume_unique=True, return_indices=True)
    if common.shape[0] == 0:
        return 0
    a = np.asarray(csv.values, dtype=np.float64)[ci]
    b = np.asarray(tb.values, dtype=np.float64)[ti]
    same = np.isclose(a, b, rtol=_RTOL, atol=_ATOL) | (np.isnan(a) & np.isnan(b))
    return int((~same).sum())


def onto_step_axis(
    run_path: Path,
    event_tags: Mapping[str, list[Segment]],
    csv_logs: Sequence[CsvLog],
    policy: str,
    issues: list[IngestIssue],
) -> dict[str, list[Segment]]:
    """The TensorBoard tags of a paired d3rlpy run, renamed and on the CSVs' step axis.

    Returns only the tags the run should still take from the event files; duplicates the CSVs
    already cover are left out (and checked against them), everything dropped is reported.
    """
    table = _epoch_table(csv_logs)
    order = sorted(table)
    epochs = np.asarray(order, dtype=np.int64)
    steps = np.asarray([table[e] for e in order], dtype=np.int64)
    csv_tags: dict[str, Segment] = {}
    for log in csv_logs:
        for tag, seg in log.tags.items():
            csv_tags.setdefault(tag, seg)
    # the CSVs of one metric merged as ingestion will (restarts append a second file)
    csv_merged = {
        tag: merge_segments([lg.tags[tag] for lg in csv_logs if tag in lg.tags], policy) for tag in csv_tags
    }
    out: dict[str, list[Segment]] = {}
    covered: list[str] = []
    disagree: list[str] = []
    other: list[str] = []
    unplaced = 0
    for tag, segs in event_tags.items():
        if not tag.startswith(TB_PREFIX):
            other.append(tag)  # not d3rlpy's adapter: its x-axis is unknown, so it is not mixed in
            continue
        name = tag[len(TB_PREFIX) :]
        merged = merge_segments(segs, policy)
        tb_seg, lost = _on_steps(
            Segment(merged.steps, merged.values, merged.wall_time, merged.files[0] if merged.files else ""),
            epochs,
            steps,
        )
        unplaced += lost
        if tb_seg.steps.shape[0] == 0:
            continue
        csv_copy = csv_merged.get(name)
        if csv_copy is not None:
            csv_seg = Segment(csv_copy.steps, csv_copy.values, None, "")
            if _disagreements(csv_seg, tb_seg):
                disagree.append(name)
            if csv_copy.steps.shape[0] >= tb_seg.steps.shape[0]:
                covered.append(name)
                continue
        out[name] = [tb_seg]
    tb_dirs = sorted(
        {os.path.dirname(s.file) for segs in event_tags.values() for s in segs if s.file}
    )  # URLs too
    where = tb_dirs[0] if len(tb_dirs) == 1 else f"{len(tb_dirs)} TensorBoard folders"
    issues.append(
        IngestIssue(
            str(run_path),
            f"d3rlpy TensorBoard run {where} read as part of this run (same experiment): "
            f"{len(covered)} metric(s) already in the CSV files, {len(out)} taken from TensorBoard "
            "(global_step = epoch, placed on the CSV step axis through its epoch -> step rows)",
            "info",
        )
    )
    if unplaced:
        issues.append(
            IngestIssue(
                str(run_path),
                f"{unplaced} TensorBoard point(s) on epochs no CSV row names could not be placed on the "
                "step axis and were dropped",
            )
        )
    if disagree:
        shown = ", ".join(disagree[:5]) + (", ..." if len(disagree) > 5 else "")
        issues.append(
            IngestIssue(
                str(run_path),
                f"{len(disagree)} metric(s) differ between the d3rlpy CSV and TensorBoard copies of one "
                f"experiment ({shown}); the copy with more points is used (the CSV on a tie)",
            )
        )
    if other:
        shown = ", ".join(sorted(other)[:5]) + (", ..." if len(other) > 5 else "")
        issues.append(
            IngestIssue(
                str(run_path),
                f"{len(other)} TensorBoard tag(s) without d3rlpy's metrics/ prefix ({shown}) have no known "
                "epoch -> step mapping and were not read",
            )
        )
    return out
