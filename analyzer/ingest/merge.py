"""Restart and duplicate handling: turn several write-ordered segments of one tag into one Series.

Why this is its own module: restarts happen in every log format (a second event file after a
resume, a CSV appended to after a crash), and the rule for which value wins must be the same
everywhere. The rule, also in docs/ingestion.md:

* segments are concatenated in write order (files sorted by first wall time, then name; rows in
  file order);
* `keep-last` (default): a point survives iff its step is strictly smaller than every step written
  after it. A duplicate step keeps the last written value, and a restart that went back in time
  supersedes everything the earlier attempt wrote from that step on;
* `keep-first`: a point survives iff its step is strictly larger than every step written before
  it: the first attempt wins and a restart only contributes steps beyond what was already there.

Both are O(n) with numpy (a running min/max), no Python loop over points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DUPLICATE_POLICIES = ("keep-last", "keep-first")


@dataclass
class Segment:
    """One contiguous piece of a tag as written by one file (rows in file order)."""

    steps: np.ndarray
    values: np.ndarray
    wall_time: np.ndarray | None
    file: str


@dataclass
class MergeStats:
    """What merging threw away, so callers can report it (never silently)."""

    superseded: int = 0  # points dropped because a later (keep-last) / earlier (keep-first) point covers them
    regressions: int = 0  # places where the step went back in write order (restarts)
    files: tuple[str, ...] = ()  # files whose points were dropped


@dataclass
class Merged:
    steps: np.ndarray
    values: np.ndarray
    wall_time: np.ndarray | None
    files: tuple[str, ...]
    stats: MergeStats


def survivors(steps: np.ndarray, policy: str = "keep-last") -> np.ndarray:
    """Boolean mask of the points that survive `policy`, for steps given in write order.

    Compared as int64, never as float: distinct steps near +-2**63 (or any two steps above 2**53)
    round to the same float64 and would be merged as duplicates (issue 12, item 12).
    """
    if policy not in DUPLICATE_POLICIES:
        raise ValueError(f"unknown duplicate policy {policy!r}; use one of {', '.join(DUPLICATE_POLICIES)}")
    steps = np.asarray(steps, dtype=np.int64)
    n = steps.shape[0]
    keep = np.ones(n, dtype=bool)
    if n < 2:
        return keep
    if policy == "keep-last":
        # min over steps written strictly after each point; the last point always survives
        later_min = np.minimum.accumulate(steps[::-1])[::-1][1:]
        keep[:-1] = steps[:-1] < later_min
    else:  # keep-first: max over steps written strictly before each point; the first always survives
        earlier_max = np.maximum.accumulate(steps)[:-1]
        keep[1:] = steps[1:] > earlier_max
    return keep


def merge_segments(segments: Sequence[Segment], policy: str = "keep-last") -> Merged:
    """Concatenate write-ordered segments and resolve duplicate/regressing steps by `policy`.

    The result has strictly increasing unique steps. Wall time is kept only if every segment
    has it (a partial wall-time column would mislead speed estimates).
    """
    segs = [s for s in segments if s.steps.shape[0] > 0]
    if not segs:
        empty = np.zeros(0, dtype=np.int64)
        return Merged(empty, np.zeros(0), None, tuple(s.file for s in segments), MergeStats())
    steps = np.concatenate([np.asarray(s.steps, dtype=np.int64) for s in segs])
    values = np.concatenate([np.asarray(s.values, dtype=np.float64) for s in segs])
    has_wall = all(s.wall_time is not None for s in segs)
    wall = np.concatenate([np.asarray(s.wall_time, dtype=np.float64) for s in segs]) if has_wall else None
    file_idx = np.concatenate([np.full(s.steps.shape[0], i, dtype=np.int32) for i, s in enumerate(segs)])

    keep = survivors(steps, policy)
    n_drop = int(steps.shape[0] - keep.sum())
    regressions = int(np.count_nonzero(steps[1:] < steps[:-1]))  # no np.diff: it wraps near 2**63
    dropped_files: tuple[str, ...] = ()
    if n_drop:
        dropped_files = tuple(segs[i].file for i in np.unique(file_idx[~keep]))
    files_used = tuple(dict.fromkeys(s.file for s in segs))
    out_steps = steps[keep]
    out_values = values[keep]
    out_wall = wall[keep] if wall is not None else None
    # survivors are strictly increasing by construction; keep the invariant explicit and cheap
    if not np.all(out_steps[1:] > out_steps[:-1]):  # pragma: no cover - defensive
        order = np.argsort(out_steps, kind="stable")
        out_steps, out_values = out_steps[order], out_values[order]
        out_wall = out_wall[order] if out_wall is not None else None
    stats = MergeStats(superseded=n_drop, regressions=regressions, files=dropped_files)
    return Merged(out_steps, out_values, out_wall, files_used, stats)
