"""Checkpoint selection beyond the paper's Q-peak rule: rankings, shortlists and a confidence (issue 16).

Why a module of its own: the verdict rules answer "what went wrong"; selection answers "which checkpoint do I deploy,
and how sure is that" — and it can use more than the logs (a forward pass per checkpoint, or FQE on a few). This
module is the logs-and-numbers half: it reads every signal at every checkpoint into a `CheckpointTable`, and the
selectors rank the table. It imports no torch: the forward-pass and FQE tiers (reference_trainer/select.py) compute
their scores elsewhere and merge them into the table with `CheckpointTable.merge`.

The selectors (`SELECTORS`, one table like the rule registry; docs/selection.md lists them with their evidence):

- `qpeak`: the paper's Metric 3.1 / Guideline 3.1 reading — highest dataset Q after the warm start.
- `drift`: the latest checkpoint whose policy is still close to the data: policy_data_distance (the mean squared
  distance of pi(s) from the dataset action) at most (1 + `tolerance`) x its lowest value in the run. Why: in the
  closed loop, success collapses when the policy walks away from the data after the warm-start switch, while
  dataset Q keeps rising (the critic rewards the out-of-distribution actions); the distance shows that walk the
  moment it starts. `tolerance` was chosen on development seeds only (docs/selection.md).
- `last`: the final checkpoint, the baseline every selector must beat.

A `Selection` is the ranked checkpoints with the pick first, a shortlist (what to roll out or hand to FQE when the
confidence is low) and the reasons. The confidence is the calibrated probability that the pick's success is within
0.1 of the best checkpoint's (`confidence`, fitted on development runs; its reliability on held-out runs is in the
docs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from analyzer.model import Run

#: Logged points averaged into one checkpoint's value (those at or before its step): one log point is one noisy
#: minibatch; five are what TensorBoard's smoothing would show at that step, without reading the future.
WINDOW = 5
#: `drift`'s tolerance: a checkpoint is "close to the data" while its policy_data_distance is at most
#: (1 + DRIFT_TOLERANCE) x the run's lowest. Chosen on the development seeds (0, 1) from 0.1-1.0.
DRIFT_TOLERANCE = 0.75
#: Shortlist length: what T3 hands to FQE (issue 16: FQE on <= 3 checkpoints).
SHORTLIST = 3


@dataclass(frozen=True)
class CheckpointTable:
    """Every signal's value at every candidate checkpoint of one run.

    `values[name][i]` is the signal at `steps[i]` (NaN where unknown); `sources[name]` says where it came from
    ("logs", "forward pass", "FQE", ...), so that a ranking can say which tier it used."""

    run_id: str
    steps: np.ndarray  # int64, ascending
    values: dict[str, np.ndarray]
    sources: dict[str, str] = field(default_factory=dict)
    warm_start: int = 0  # steps <= this are the BC warm start (0: none)

    def get(self, name: str) -> np.ndarray | None:
        v = self.values.get(name)
        return v if v is not None and np.isfinite(v).any() else None

    def merge(
        self, scores: Mapping[int, Mapping[str, float]], source: str, prefix: str = ""
    ) -> CheckpointTable:
        """A copy with per-step scores added (e.g. forward-pass scores under prefix "forward:")."""
        names = sorted({k for row in scores.values() for k in row})
        values = dict(self.values)
        sources = dict(self.sources)
        for name in names:
            values[prefix + name] = np.array(
                [float(scores.get(int(s), {}).get(name, math.nan)) for s in self.steps], dtype=np.float64
            )
            sources[prefix + name] = source
        return replace(self, values=values, sources=sources)


def candidate_steps(run: Run) -> list[int]:
    """The checkpoints a selector chooses among: the checkpoint files, else multiples of the declared checkpoint
    interval up to the last logged step, else every logged step of dataset Q."""
    if run.checkpoints:
        return sorted({int(c.step) for c in run.checkpoints})
    last = max((int(s.steps[-1]) for s in run.series.values() if len(s.steps)), default=0)
    every = run.metadata.checkpoint_interval
    if every and every > 0 and last >= every:
        return list(range(int(every), last + 1, int(every)))
    q = run.series.get("q_data")
    return [int(s) for s in q.steps] if q is not None else []


def value_at(
    steps: np.ndarray, values: np.ndarray, at: Sequence[int] | np.ndarray, window: int = WINDOW
) -> np.ndarray:
    """Mean of the last `window` finite logged values at or before each step of `at` (NaN where none)."""
    finite = np.isfinite(values)
    s, v = steps[finite], values[finite]
    out = np.full(len(at), math.nan)
    if not len(s):
        return out
    ends = np.searchsorted(s, np.asarray(at, dtype=np.int64), side="right")
    csum = np.concatenate([[0.0], np.cumsum(v)])
    for i, end in enumerate(ends):
        start = max(0, end - window)
        if end > start:
            out[i] = (csum[end] - csum[start]) / (end - start)
    return out


def table_from_run(
    run: Run, steps: Sequence[int] | None = None, warm_start: int | None = None
) -> CheckpointTable:
    """Every canonical series of `run` read at its candidate checkpoints (`value_at`)."""
    at = np.asarray(sorted(steps) if steps is not None else candidate_steps(run), dtype=np.int64)
    values = {name: value_at(s.steps, s.values, at) for name, s in run.series.items()}
    ws = warm_start if warm_start is not None else (run.metadata.warm_start or 0)
    return CheckpointTable(run.id, at, values, {name: "logs" for name in values}, int(ws or 0))


# ---------------------------------------------------------------------------- selectors
@dataclass(frozen=True)
class Ranking:
    """A selector's answer on one table: checkpoint indices best first, and why."""

    order: list[int]
    reasons: list[str]


def rank_order(score: np.ndarray, mask: np.ndarray | None = None) -> list[int]:
    """Indices by descending score (ties: the later checkpoint first); masked-out and NaN scores go last, latest
    first, so that every checkpoint is ranked."""
    n = len(score)
    ok = np.isfinite(score) & (mask if mask is not None else np.ones(n, dtype=bool))
    ranked = sorted(np.flatnonzero(ok), key=lambda i: (-score[i], -i))
    rest = sorted(np.flatnonzero(~ok), key=lambda i: -i)
    return [int(i) for i in [*ranked, *rest]]


def _q_name(t: CheckpointTable) -> str | None:
    for name in ("q_data", "q_target", "q_policy"):
        if t.get(name) is not None:
            return name
    return None


def select_qpeak(t: CheckpointTable, **_: float) -> Ranking | None:
    """Highest dataset Q after the warm start (Metric 3.1's peak, Guideline 3.1)."""
    name = _q_name(t)
    if name is None:
        return None
    q = t.values[name]
    after = t.steps > t.warm_start
    if not after.any():
        after = np.ones(len(q), dtype=bool)
    order = rank_order(q, after)
    i = order[0]
    return Ranking(order, [f"highest {name} after the warm start: {q[i]:.3g} at step {t.steps[i]}"])


def _distance(t: CheckpointTable) -> tuple[str, np.ndarray] | None:
    """The policy's distance from the data, best reading first: the forward pass's (every held-out transition), the
    logged held-out one, the logged training-batch one (inflated ratios: BC fits training states closest)."""
    for name in ("forward:policy_data_distance", "policy_data_distance_holdout", "policy_data_distance"):
        d = t.get(name)
        if d is not None:
            return name, d
    return None


def select_drift(t: CheckpointTable, tolerance: float = DRIFT_TOLERANCE, **_: float) -> Ranking | None:
    """Latest checkpoint with policy_data_distance <= (1 + tolerance) x its lowest in the run (module docstring).

    Ranking: the close-to-data checkpoints latest first, then the rest by ascending distance."""
    found = _distance(t)
    if found is None:
        return None
    name, d = found
    finite = np.isfinite(d)
    lowest = float(np.min(d[finite]))
    limit = (1.0 + tolerance) * lowest
    close = finite & (d <= limit)
    close_idx = [int(i) for i in np.flatnonzero(close)][::-1]
    # the close ones lead, latest first; then the rest by ascending distance (rank_order ranks all, so skip them)
    order = close_idx + [i for i in rank_order(-d, finite & ~close) if not close[i]]
    i = order[0]
    later = [int(j) for j in np.flatnonzero(finite & ~close) if j > i]
    why = (
        f"latest checkpoint whose policy is within {1 + tolerance:.2f}x of its closest approach to the data "
        f"({name} {d[i]:.3g} <= {limit:.3g}, lowest {lowest:.3g} at step {t.steps[int(np.nanargmin(d))]})"
    )
    reasons = [why]
    if later:
        reasons.append(
            f"the policy drifted from the data after step {t.steps[i]}: {name} {d[later[0]]:.3g} at step "
            f"{t.steps[later[0]]}"
        )
    return Ranking(order, reasons)


def select_last(t: CheckpointTable, **_: float) -> Ranking | None:
    """The final checkpoint (the baseline)."""
    if not len(t.steps):
        return None
    return Ranking(list(range(len(t.steps)))[::-1], ["the final checkpoint"])


@dataclass(frozen=True)
class SelectorSpec:
    name: str
    select: Callable[..., Ranking | None]
    needs: str  # what the table must hold, for messages
    summary: str


SELECTORS: dict[str, SelectorSpec] = {
    s.name: s
    for s in (
        SelectorSpec("drift", select_drift, "policy_data_distance (logged, or --forward)",
                     "latest checkpoint still close to the data (policy_data_distance)"),
        SelectorSpec("qpeak", select_qpeak, "dataset Q (q_data)",
                     "the paper's Metric 3.1: highest dataset Q after the warm start"),
        SelectorSpec("last", select_last, "checkpoints", "the final checkpoint"),
    )
}  # fmt: skip
#: Tried in this order when no selector is named: the first whose inputs the table holds answers.
DEFAULT_ORDER = ("drift", "qpeak", "last")


# ---------------------------------------------------------------------------- confidence
#: "The policy clearly left the data": its distance at some checkpoint after the warm start reached this multiple of
#: its lowest. A round number (doubled), fixed before the held-out runs were scored.
CLEAR_DRIFT = 2.0
#: Confidence that the pick is within 0.1 success of the best checkpoint: the Laplace-smoothed share of development
#: runs where that held, per method and basis (`confidence_basis`). Fitted by `python benchmarks/selection.py` on
#: the development seeds; its reliability on held-out runs is in docs/selection.md. Development runs (seeds 0-1 of
#: the round-2 closed loop, 12 scorable): drift 5 of 7 where the policy clearly left the data, 3 of 5 where it
#: stayed close; Q-peak and the last checkpoint 2 of 12 each.
CONFIDENCE: dict[str, float] = {
    "drift/drifted": (5 + 1) / (7 + 2),
    "drift/stayed close": (3 + 1) / (5 + 2),
    "qpeak": (2 + 1) / (12 + 2),
    "last": (2 + 1) / (12 + 2),
}
#: Below this confidence the answer is a shortlist to roll out (or hand to FQE), not one checkpoint.
SHORTLIST_BELOW = 0.6


def confidence_basis(t: CheckpointTable, method: str) -> str:
    """The bin a pick's confidence is read from: for `drift`, whether the policy clearly left the data at some
    point after the warm start (then the checkpoint before it is a sharper answer) or stayed close all run."""
    if method != "drift":
        return method
    found = _distance(t)
    if found is None:
        return "drift/no distance"
    _, d = found
    after = (t.steps > t.warm_start) & np.isfinite(d)
    lowest = float(np.nanmin(d))
    drifted = bool(after.any() and lowest > 0 and np.max(d[after]) >= CLEAR_DRIFT * lowest)
    return "drift/drifted" if drifted else "drift/stayed close"


@dataclass
class Selection:
    """One run's answer: the pick first in `ranked`, the shortlist, the confidence and the reasons."""

    run_id: str
    method: str
    ranked: list[int]  # checkpoint steps, best first
    shortlist: list[int]
    confidence: float | None
    confidence_basis: str
    reasons: list[str]
    inputs: dict[str, str]  # signal -> where it came from, for the signals the method read

    @property
    def pick(self) -> int | None:
        return self.ranked[0] if self.ranked else None

    def to_dict(self) -> dict[str, object]:
        return {
            "run": self.run_id,
            "method": self.method,
            "pick": self.pick,
            "shortlist": self.shortlist,
            "confidence": self.confidence,
            "confidence_basis": self.confidence_basis,
            "ranked": self.ranked,
            "reasons": self.reasons,
            "inputs": self.inputs,
        }


def select(
    t: CheckpointTable,
    method: str | None = None,
    shortlist: int = SHORTLIST,
    confidence: Mapping[str, float] | None = None,
) -> Selection:
    """Rank the table's checkpoints with `method` (or the first of DEFAULT_ORDER whose inputs exist).

    ValueError for an unknown method or one whose inputs the table lacks (the message names what is missing)."""
    if method is not None and method not in SELECTORS:
        raise ValueError(f"unknown selector {method!r} (choose from {', '.join(SELECTORS)})")
    names = (method,) if method else DEFAULT_ORDER
    for name in names:
        ranking = SELECTORS[name].select(t)
        if ranking is not None:
            break
    else:
        raise ValueError(
            f"{t.run_id}: selector {method!r} needs {SELECTORS[str(method)].needs}; the run has none"
        )
    steps = [int(t.steps[i]) for i in ranking.order]
    basis = confidence_basis(t, name)
    conf = (CONFIDENCE if confidence is None else confidence).get(basis)
    short = steps[:shortlist] if conf is None or conf < SHORTLIST_BELOW else steps[:1]
    used = {
        k: v
        for k, v in t.sources.items()
        if (name == "drift" and k.endswith("policy_data_distance")) or (name == "qpeak" and k == _q_name(t))
    }
    return Selection(t.run_id, name, steps, short, conf, basis, ranking.reasons, used)


# ---------------------------------------------------------------------------- collapse early warning
@dataclass(frozen=True)
class DriftAlarm:
    """The first step at which the policy left the data: policy_data_distance above (1 + tolerance) x its lowest
    value so far (after the warm start, read causally: nothing after `step` was needed to raise it)."""

    step: int
    distance: float
    lowest: float
    lowest_step: int


def drift_alarm(
    steps: np.ndarray,
    distance: np.ndarray,
    warm_start: int = 0,
    tolerance: float = DRIFT_TOLERANCE,
    rebase_after: int | None = None,
) -> DriftAlarm | None:
    """The collapse early warning of `drift`, raised as a run is logged (analyzer/live.py can call it per point).

    The running minimum includes the warm start (the BC policy is the closest the policy gets to the data); the
    alarm is only raised after it, where the policy starts optimising the critic. None when it never fires.

    `rebase_after` (steps): the variant that treats the switch as a known transient: nothing is read until that many
    steps after the warm start, and the minimum is the policy's own after that. Measured, not adopted: in the
    closed loop it trades recall for false alarms without separating them (docs/selection.md)."""
    lowest, lowest_step = math.inf, -1
    start = None if rebase_after is None else warm_start + rebase_after
    for s, d in zip(np.asarray(steps, dtype=np.int64), np.asarray(distance, dtype=np.float64), strict=True):
        if not math.isfinite(d) or (start is not None and s < start):
            continue
        if s > warm_start and lowest < math.inf and d > (1.0 + tolerance) * lowest:
            return DriftAlarm(int(s), float(d), float(lowest), int(lowest_step))
        if d < lowest:
            lowest, lowest_step = float(d), int(s)
    return None
