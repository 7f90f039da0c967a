"""Checkpoint selection (analyzer/selection.py): the table, the selectors, the drift alarm and the confidence bins.

Synthetic tables carry their own truth (the step where the policy leaves the data is built in); the corpus tests read
real closed-loop trials (results/closed_loop/trials: the trainer's logs and forward passes, success rolled out) and
check the selector against the rolled-out success recorded beside them.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from analyzer.model import Checkpoint, Run, RunMetadata, Series
from analyzer.selection import (
    CLEAR_DRIFT,
    DRIFT_TOLERANCE,
    SELECTORS,
    CheckpointTable,
    candidate_steps,
    confidence_basis,
    drift_alarm,
    select,
    select_drift,
    select_qpeak,
    table_from_run,
    value_at,
)

CORPUS = Path(__file__).resolve().parents[1] / "results" / "closed_loop" / "trials"


def _table(distance: list[float], q: list[float] | None = None, warm_start: int = 2000) -> CheckpointTable:
    steps = np.arange(1, len(distance) + 1, dtype=np.int64) * 1000
    values = {"policy_data_distance": np.array(distance, dtype=float)}
    if q is not None:
        values["q_data"] = np.array(q, dtype=float)
    return CheckpointTable("run", steps, values, {k: "logs" for k in values}, warm_start)


def test_value_at_averages_the_last_points_at_or_before_each_step():
    steps = np.arange(100, 1100, 100)
    vals = np.arange(10, dtype=float)  # 0 at step 100 ... 9 at step 1000
    vals[3] = math.nan  # step 400 not finite: skipped, not averaged as 0
    out = value_at(steps, vals, [50, 300, 500, 1000], window=3)
    assert math.isnan(out[0])  # nothing logged yet
    assert out[1] == pytest.approx((0 + 1 + 2) / 3)
    assert out[2] == pytest.approx((1 + 2 + 4) / 3)  # 400 skipped
    assert out[3] == pytest.approx((7 + 8 + 9) / 3)


def test_drift_picks_the_latest_checkpoint_still_close_to_the_data():
    # BC warm start brings the distance down to 0.08; the policy stays within 1.75x until step 5000, then leaves
    t = _table([0.13, 0.08, 0.11, 0.12, 0.13, 0.19, 0.20, 0.20])
    r = select_drift(t)
    assert r is not None
    assert int(t.steps[r.order[0]]) == 5000
    assert [int(t.steps[i]) for i in r.order[:4]] == [5000, 4000, 3000, 2000]  # close ones, latest first
    assert "drifted from the data after step 5000" in r.reasons[1]
    assert sorted(r.order) == list(range(8))  # every checkpoint ranked


def test_drift_tolerance_is_the_boundary():
    lowest = 0.1
    t = _table([0.2, lowest, lowest * (1 + DRIFT_TOLERANCE), lowest * (1 + DRIFT_TOLERANCE) * 1.01])
    r = select_drift(t)
    assert r is not None and int(t.steps[r.order[0]]) == 3000


def test_qpeak_reads_only_after_the_warm_start():
    t = _table([0.1] * 6, q=[9.0, 8.0, 1.0, 3.0, 2.0, 1.5], warm_start=2000)
    r = select_qpeak(t)
    assert r is not None and int(t.steps[r.order[0]]) == 4000


def test_select_falls_back_in_order_and_explains_missing_inputs():
    no_distance = CheckpointTable("r", np.array([1000, 2000]), {"q_data": np.array([1.0, 2.0])}, {}, 0)
    assert select(no_distance).method == "qpeak"
    with pytest.raises(ValueError, match="needs policy_data_distance"):
        select(no_distance, "drift")
    with pytest.raises(ValueError, match="unknown selector"):
        select(no_distance, "nope")
    assert set(SELECTORS) == {"drift", "qpeak", "last"}


def test_shortlist_when_confidence_is_low_and_one_pick_when_high():
    t = _table([0.13, 0.08, 0.11, 0.12, 0.13, 0.19, 0.20, 0.20])
    basis = confidence_basis(t, "drift")
    assert basis == "drift/drifted"  # 0.20 >= 2 x 0.08
    low = select(t, "drift", confidence={basis: 0.3})
    assert low.shortlist == [5000, 4000, 3000] and low.confidence == 0.3
    high = select(t, "drift", confidence={basis: 0.9})
    assert high.shortlist == [5000]
    unknown = select(t, "drift", confidence={})
    assert unknown.confidence is None and len(unknown.shortlist) == 3


def test_confidence_basis_stayed_close():
    t = _table([0.13, 0.08, 0.10, 0.11, 0.12])
    assert max(t.values["policy_data_distance"][2:]) < CLEAR_DRIFT * 0.08
    assert confidence_basis(t, "drift") == "drift/stayed close"
    assert confidence_basis(t, "qpeak") == "qpeak"


def test_drift_alarm_is_causal_and_waits_for_the_warm_start():
    steps = np.arange(100, 2100, 100)
    d = np.full(len(steps), 0.08)
    d[:3] = [0.3, 0.2, 0.1]  # BC still converging: falling, no alarm
    d[4] = 0.5  # a spike inside the warm start (<= 1000): not an alarm
    d[12] = 0.15  # 1300: 1.875 x 0.08 > 1.75x
    a = drift_alarm(steps, d, warm_start=1000)
    assert a is not None and a.step == 1300 and a.lowest == pytest.approx(0.08)
    # the alarm only used data up to its step: the same answer on the truncated series
    b = drift_alarm(steps[:13], d[:13], warm_start=1000)
    assert b == a
    assert drift_alarm(steps, np.full(len(steps), 0.08), warm_start=1000) is None


def test_drift_alarm_rebased_after_the_switch_ignores_the_transient():
    steps = np.arange(100, 3100, 100)
    d = np.full(len(steps), 0.08)
    d[10:] = 0.2  # the switch (after 1000): 2.5x the BC minimum, and it stays there
    d[11] = 0.4  # the transient right after the switch
    assert drift_alarm(steps, d, warm_start=1000).step == 1100  # the default fires at the switch
    assert drift_alarm(steps, d, warm_start=1000, rebase_after=300) is None  # settled at 0.2: no drift
    d[25] = 0.5  # 2600: 2.5x the post-switch level
    a = drift_alarm(steps, d, warm_start=1000, rebase_after=300)
    assert a is not None and a.step == 2600 and a.lowest == pytest.approx(0.2) and a.lowest_step == 1300


def test_table_from_run_uses_checkpoint_files_and_warm_start():
    steps = np.arange(100, 3100, 100, dtype=np.int64)
    run = Run(
        id="r",
        path=Path("."),
        framework="offrl",
        metadata=RunMetadata(warm_start=1000, checkpoint_interval=1000),
        series={"q_data": Series("q_data", steps, steps.astype(float) / 100)},
        checkpoints=[Checkpoint(s, None) for s in (1000, 2000, 3000)],
    )
    assert candidate_steps(run) == [1000, 2000, 3000]
    t = table_from_run(run)
    assert t.warm_start == 1000 and list(t.steps) == [1000, 2000, 3000]
    assert t.values["q_data"][1] == pytest.approx(np.mean([16, 17, 18, 19, 20]) / 1)
    run.checkpoints = []
    assert candidate_steps(run) == [1000, 2000, 3000]  # from the declared interval


def _corpus_trials() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p.parent for p in CORPUS.glob("*/forward.json"))


@pytest.mark.skipif(not _corpus_trials(), reason="closed-loop corpus not present")
def test_drift_on_real_trials_picks_near_the_best_where_the_policy_clearly_left_the_data():
    """Real trials whose forward-pass distance doubled after the warm start (the `drift/drifted` bin): the
    selector's pick is compared with the success rolled out at every checkpoint (the truth beside the logs)."""
    from analyzer.api import analyze

    checked = hits = 0
    for tdir in _corpus_trials():
        result = json.loads((tdir / "result.json").read_text())
        success = {int(k): v for k, v in result["success"].items()}
        if max(success.values()) == min(success.values()):
            continue
        run = analyze(tdir / "run").runs[0].run
        fw = json.loads((tdir / "forward.json").read_text())["scores"]
        t = table_from_run(run, sorted(success)).merge(
            {int(k): v for k, v in fw.items()}, "forward pass", prefix="forward:"
        )
        if confidence_basis(t, "drift") != "drift/drifted" or "n50_" not in tdir.name:
            continue
        pick = select(t, "drift").pick
        checked += 1
        hits += int(max(success.values()) - success[pick] <= 0.1 + 1e-9)
    assert checked >= 3
    assert hits / checked >= 0.6


def _run_with_distance(distance: np.ndarray, warm_start: int) -> Run:
    steps = np.arange(100, 100 * (len(distance) + 1), 100, dtype=np.int64)
    q = np.concatenate([np.linspace(-2, 0, len(steps) // 3), np.linspace(0, 4, len(steps) - len(steps) // 3)])
    return Run(
        id="r",
        path=Path("."),
        framework="offrl",
        metadata=RunMetadata(warm_start=warm_start, gamma=0.9, reward_range=(0.0, 1.0), horizon=40),
        series={
            "q_data": Series("q_data", steps, q),
            "td_error": Series("td_error", steps, np.full(len(steps), 0.5)),
            "policy_data_distance": Series("policy_data_distance", steps, distance),
        },
        checkpoints=[Checkpoint(int(s), None) for s in steps if s % 1000 == 0],
    )


def test_of004_warns_when_the_policy_leaves_the_data_and_names_the_checkpoint_before():
    from analyzer.api import analyze_runs

    d = np.concatenate([np.linspace(0.15, 0.08, 20), np.full(10, 0.09), np.full(30, 0.2)])  # leaves at 3100
    res = analyze_runs([_run_with_distance(d, warm_start=2000)]).runs[0]
    of4 = [f for f in res.findings if f.code == "OF004"]
    assert len(of4) == 1
    assert of4[0].evidence["alarm_step"] == 3100 and of4[0].evidence["lowest"] == pytest.approx(0.08)
    assert "at or before step 3000" in of4[0].message
    # stays close all run: no warning; no distance logged: no warning
    calm = analyze_runs([_run_with_distance(np.full(60, 0.09), warm_start=2000)]).runs[0]
    assert not [f for f in calm.findings if f.code == "OF004"]
    run = _run_with_distance(d, warm_start=2000)
    del run.series["policy_data_distance"]
    assert not [f for f in analyze_runs([run]).runs[0].findings if f.code == "OF004"]


@pytest.mark.skipif(not _corpus_trials(), reason="closed-loop corpus not present")
def test_confidence_table_is_the_fit_on_the_development_seeds():
    """analyzer.selection.CONFIDENCE must be what benchmarks/selection.py fits on seeds 0-1 of the corpus."""
    import importlib.util

    from analyzer.selection import CONFIDENCE

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "selection.py"
    spec = importlib.util.spec_from_file_location("selection_benchmark", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    trials = [t for d in sorted(CORPUS.iterdir()) if d.is_dir() and (t := bench.load_trial(d)) is not None]
    dev = [t for t in trials if t.seed in (0, 1) and t.success.max() > t.success.min()]
    fitted = bench.fit_confidence(dev)
    assert {k: v["p"] for k, v in fitted.items()} == pytest.approx(CONFIDENCE)


def test_watch_announces_once_when_the_policy_leaves_the_data():
    from analyzer.api import analyze_runs
    from analyzer.watch import WatchState

    d = np.concatenate([np.linspace(0.15, 0.08, 20), np.full(10, 0.09), np.full(30, 0.2)])
    state = WatchState()
    events = state.update(analyze_runs([_run_with_distance(d, warm_start=2000)]))
    left = [e for e in events if e.kind == "left_data"]
    assert len(left) == 1 and left[0].step == 3000
    assert left[0].line().startswith("LEFT THE DATA: r: keep step 3000")
    again = state.update(analyze_runs([_run_with_distance(d, warm_start=2000)]))
    assert not [e for e in again if e.kind == "left_data"]
