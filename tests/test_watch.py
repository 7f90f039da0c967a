"""Watch mode on a log that grows between polls: the overfitting event fires once, at the peak."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from typer.testing import CliRunner

from analyzer.cli import app
from analyzer.model import Run
from analyzer.report import CheckpointPick, Report, RunResult
from analyzer.watch import WatchEvent, WatchState, watch

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "demo"


def _make_demo():
    spec = importlib.util.spec_from_file_location("make_demo", DEMO / "make_demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_growing_log_reports_overfitting_exactly_once_at_the_peak(tmp_path):
    demo = _make_demo()
    logs = tmp_path / "logs"
    run_dir = logs / "cql_seed1"
    demo.write_run(run_dir, "overfit", first=0, last=5000)  # still rising: no verdict yet
    stages = {1: (5100, 14000), 2: (14100, 20000)}  # Q peaks at 8000 and falls after

    def grow(i: int) -> None:
        if i in stages:
            lo, hi = stages[i]
            demo.write_run(run_dir, "overfit", first=lo, last=hi)

    events: list[WatchEvent] = []
    sleeps: list[float] = []
    watch([logs], 0.5, max_iterations=4, on_event=events.append, sleep=sleeps.append, between=grow)

    assert sleeps == [0.5, 0.5, 0.5]  # the loop waited between polls, never after the last
    assert [e.kind for e in events].count("new_run") == 1
    over = [e for e in events if e.kind == "overfitting"]
    assert len(over) == 1, events
    assert over[0].run == "cql_seed1"
    assert over[0].step == demo.PEAK_STEP
    assert over[0].checkpoint is not None and over[0].checkpoint.endswith(f"ckpt_{demo.PEAK_STEP}.pt")
    assert over[0].last_step is not None and over[0].last_step > demo.PEAK_STEP
    assert over[0].peak_step is not None and abs(over[0].peak_step - demo.PEAK_STEP) <= 1000  # smoothed peak
    assert over[0].line().startswith(f"OVERFITTING: cql_seed1: keep step {demo.PEAK_STEP} (")
    # the log directory holds only what the trainer wrote: watch never writes there
    assert {p.suffix for p in run_dir.iterdir()} <= {".json", ".pt", ".demo"}


def test_new_runs_are_announced_once(tmp_path):
    demo = _make_demo()
    logs = tmp_path / "logs"
    demo.write_run(logs / "a", "healthy", last=3000)

    events: list[WatchEvent] = []
    watch(
        [logs], 0, max_iterations=3, on_event=events.append, sleep=lambda s: None,
        between=lambda i: demo.write_run(logs / "b", "healthy", last=3000) if i == 1 else None,
    )  # fmt: skip
    assert [(e.kind, e.run) for e in events] == [("new_run", "a"), ("new_run", "b")]


def test_state_uses_the_checkpoint_pick():
    run = Run(id="r", path=Path("r"), framework="offrl")
    res = RunResult(
        run=run,
        verdict="overfitting",
        verdict_reason="peak",
        checkpoint=CheckpointPick(6000, "r/ckpt_6000.pt", "x"),
        peak_step=6100,
    )
    state = WatchState()
    first = state.update(Report(runs=[res]))
    assert [(e.kind, e.step) for e in first] == [("new_run", None), ("overfitting", 6000)]
    assert state.update(Report(runs=[res])) == []


def test_cli_watch_exits_0_on_ctrl_c(monkeypatch):
    import analyzer.watch

    calls = []

    def fake_watch(paths, interval, **kw):
        calls.append(interval)
        kw["on_event"](WatchEvent("new_run", "x", last_step=10))
        raise KeyboardInterrupt

    monkeypatch.setattr(analyzer.watch, "watch", fake_watch)
    r = CliRunner().invoke(app, ["--watch", str(DEMO), "--interval", "2"])
    assert r.exit_code == 0 and calls == [2.0]
    assert "new run: x (at step 10)" in r.stdout


def test_a_run_that_starts_to_diverge_is_announced_once_with_the_checkpoint_before_it():
    """The early warning a user wants most: stop a run whose critic blew up, keep the last sound checkpoint."""
    from analyzer.api import analyze_runs
    from fixtures.synthetic import make_curve

    sr = make_curve("diverging", seed=1)
    state = WatchState()
    first = state.update(analyze_runs([sr.run]))
    (ev,) = [e for e in first if e.kind == "diverged"]
    assert ev.step is not None and ev.line().startswith("DIVERGED: ") and f"keep step {ev.step}" in ev.line()
    assert not [e for e in state.update(analyze_runs([sr.run])) if e.kind == "diverged"]  # once per run


# ----------------------------------------------------------------------------------------------
# Follower: each poll reads only what is new, and reports what a fresh analysis would


def _json(report) -> dict:
    import json

    from analyzer.output.json_out import render_json

    return json.loads(render_json(report))


def test_follower_reports_what_a_fresh_analysis_reports_at_every_poll(tmp_path):
    from analyzer.api import analyze
    from analyzer.watch import Follower

    demo = _make_demo()
    logs = tmp_path / "logs"
    demo.write_run(logs / "growing", "overfit", first=0, last=4000)
    demo.write_run(logs / "idle_a", "healthy")
    demo.write_run(logs / "idle_b", "underfit")
    follower = Follower([logs])
    stages = [(4100, 9000), (9100, 14000), (14100, 20000)]
    f = logs / "growing" / demo.EVENT_NAME
    size = 0
    for k in range(len(stages) + 1):
        report, resets = follower.poll()
        assert _json(report) == _json(analyze([logs])) and resets == []
        if k == 0:
            assert follower.last.changed == 3
        else:  # only the growing run was read again, and only its new bytes (+ a 64-byte overlap check)
            assert follower.last.changed == 1 and follower.last.files_read == 1
            assert follower.last.bytes_read == f.stat().st_size - size + 64
        size = f.stat().st_size
        if k < len(stages):
            demo.write_run(logs / "growing", "overfit", first=stages[k][0], last=stages[k][1])
    idle, _ = follower.poll()
    assert follower.last.changed == 0 and follower.last.bytes_read == 0 and follower.last.files_read == 0
    assert {r.run.id: r.verdict for r in idle.runs}["growing"] == "overfitting"


def test_truncated_log_is_read_again_and_announced(tmp_path):
    demo = _make_demo()
    logs = tmp_path / "logs"
    demo.write_run(logs / "r", "healthy", last=8000)
    f = logs / "r" / demo.EVENT_NAME

    def cut(i: int) -> None:
        if i == 1:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])

    events: list[WatchEvent] = []
    watch([logs], 0, max_iterations=2, on_event=events.append, sleep=lambda s: None, between=cut)
    (again,) = [e for e in events if e.kind == "reread"]
    assert again.run == "r" and "truncated" in again.message
    assert again.line().startswith("read again from the start: r: ")


def test_first_poll_with_workers_then_only_new_bytes(tmp_path):
    """--watch --workers 2: the first poll's many runs are read by worker processes; a run that grows
    afterwards is read whole once by the watch itself, then only its new bytes."""
    from analyzer.api import analyze
    from analyzer.watch import Follower

    demo = _make_demo()
    logs = tmp_path / "logs"
    for k in range(8):
        demo.write_run(logs / f"r{k}", "healthy", last=4000)
    follower = Follower([logs], workers=2)
    report, _ = follower.poll()
    assert follower.last.changed == 8 and follower.last.bytes_read == 0  # read in the workers
    assert _json(report) == _json(analyze([logs]))
    f = logs / "r3" / demo.EVENT_NAME
    sizes = []
    for lo, hi in [(4100, 6000), (6100, 8000)]:
        demo.write_run(logs / "r3", "healthy", first=lo, last=hi)
        report, _ = follower.poll()
        assert follower.last.changed == 1 and _json(report) == _json(analyze([logs]))
        sizes.append((follower.last.bytes_read, f.stat().st_size))
    assert sizes[0][0] == sizes[0][1]  # whole, once
    assert sizes[1][0] == sizes[1][1] - sizes[0][1] + 64  # then only what was appended
