"""Closed-loop orchestration: scoring of finished trials from hand-made results (fast), the CLI's bad input (fast),
and one real end-to-end trial with the `smoke` preset (slow)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from robot_eval.cli import main as eval_main
from robot_eval.loop.report import build_rows, verdict_accuracy, write_report
from robot_eval.loop.scenarios import PRESETS, trials_for


def _result(
    trial, success: dict[int, float], pick: int, verdict: str, td: dict[int, float], fqe: dict[int, float]
):
    spec = trial.to_dict()
    spec["dataset_path"] = f"/nonexistent/{trial.data.name}.npz"
    q = {str(s): 1.0 for s in td}
    return {
        "spec": spec,
        "timing": {"train": 10.0, "evaluate": 2.0, "analyze": 0.5, "fqe": 1.0},
        "success": {str(k): v for k, v in success.items()},
        "analysis": {"verdict": verdict, "pick_step": pick, "peak_step": pick},
        "analysis_nodv": {"verdict": verdict, "pick_step": pick, "peak_step": pick},
        "fqe": {str(k): v for k, v in fqe.items()},
        "logs": {"q_data": q, "td_error": {str(k): v for k, v in td.items()}},
    }


def _write(out: Path, results) -> None:
    for r in results:
        d = out / "trials" / r["spec"]["key"]
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(r))


def test_trials_dedupe_shared_runs():
    ts = trials_for("all", "quick")
    keys = [t.key for t in ts]
    # the 50-trajectory CQL run is both `size` and the unregularized arm of `regularize`
    small = [t for t in ts if t.scenario == "size" and t.variant == "50 traj"][0]
    plain = [t for t in ts if t.scenario == "regularize" and t.variant == "CQL"][0]
    assert small.key == plain.key
    assert len(set(keys)) < len(keys)
    with pytest.raises(KeyError):
        trials_for("nope", "quick")


def test_scores_and_tables_from_known_curves(tmp_path):
    p = PRESETS["quick"]
    size = {t.variant + str(t.seed): t for t in trials_for("size", p)}
    cap = {t.variant + str(t.seed): t for t in trials_for("capacity", p)}
    over = {1: 0.2, 2: 0.8, 3: 0.6, 4: 0.2, 5: 0.0}  # overfits; workflow picks 2 = the best
    flat = {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8, 5: 0.8}  # no overfitting; workflow picks the last
    td = {1: 3.0, 2: 2.0, 3: 1.0, 4: 0.5, 5: 0.2}
    results = [
        _result(size["50 traj0"], over, 2, "overfitting", td, {s: -s for s in over}),  # FQE picks step 1
        _result(size["500 traj0"], flat, 5, "healthy", td, {s: s for s in flat}),
        _result(
            cap["base (half width)0"], {1: 0.0, 2: 0.1, 3: 0.0, 4: 0.1, 5: 0.1}, 5, "underfitting", td, {}
        ),
        _result(cap["bigger0"], {1: 0.2, 2: 0.6, 3: 0.7, 4: 0.8, 5: 0.8}, 5, "healthy", td, {}),
    ]
    _write(tmp_path, results)
    rows = build_rows(results)
    by = {(r["scenario"], r["variant"]): r for r in rows}
    r50 = by[("size", "50 traj")]
    assert r50["workflow_regret"] == 0.0 and r50["workflow_frac"] == 1.0
    assert r50["workflow_gain"] == pytest.approx(0.8)
    assert r50["last_regret"] == pytest.approx(1.0) and r50["lowest_td_pick"] == 5
    assert r50["fqe_pick"] == 1 and r50["fqe_regret"] == pytest.approx(0.75)
    assert r50["label_overfit"] is True
    # the same run also belongs to `regularize` (shared trial)
    assert ("regularize", "CQL") in by
    assert by[("size", "500 traj")]["label_overfit"] is False
    assert by[("capacity", "base (half width)")]["label_underfit"] is True
    acc = {a["label"]: a for a in verdict_accuracy(rows) if a["reading"] == "defaults"}
    assert acc["overfitting"]["tp"] == 1 and acc["overfitting"]["fp"] == 0
    assert acc["underfitting"]["tp"] == 1 and acc["underfitting"]["accuracy"] == 1.0

    res = write_report(
        tmp_path, tmp_path / "tables", tmp_path / "figs", {}, command="test", log=lambda m: None
    )
    assert res["runs"] == 4
    with (tmp_path / "tables" / "summary.csv").open() as fh:
        summary = {(r["scope"], r["method"]): r for r in csv.DictReader(fh)}
    assert float(summary[("size", "workflow")]["regret_mean"]) == 0.0  # both size runs: picks are the best
    assert int(summary[("all", "workflow")]["runs"]) == 4  # the shared run counted once overall
    assert (
        "| workflow (offrl-analyze defaults, logs only) |" in (tmp_path / "tables" / "summary.md").read_text()
    )
    assert (tmp_path / "figs" / "loop-size.png").stat().st_size > 1000
    assert (tmp_path / "figs" / "loop-regret.png").exists()
    assert math.isfinite(float(summary[("all", "random")]["regret_mean"]))


def test_cli_bad_input_exits_2(tmp_path, capsys):
    assert eval_main(["loop", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown scenario" in capsys.readouterr().err
    assert eval_main(["loop", "size", "--jobs", "0", "--out", str(tmp_path)]) == 2
    assert eval_main(["loop", "size", "--seeds", "a,b", "--out", str(tmp_path)]) == 2
    assert eval_main(["loop", "size", "--score-only", "--out", str(tmp_path / "missing")]) == 2
    assert "no trials/ folder" in capsys.readouterr().err
    assert eval_main(["loop", "size", "--reanalyze", "--out", str(tmp_path)]) == 2
    assert "--score-only" in capsys.readouterr().err


def test_reanalyze_replaces_stored_verdicts_with_the_current_analyzers(tmp_path):
    """A finished trial whose logs are a known overfitting curve after a warm-start dip; its stored analysis is
    stale. `--score-only --reanalyze` must re-read the logs (not retrain) and store the new answer."""
    from fixtures.synthetic import make_curve

    trial = trials_for("size", "quick")[0]
    sr = make_curve("overfitting", seed=2, noise=0.02, n_points=120, log_interval=100)
    q, td = sr.run.series["q_data"], sr.run.series["td_error"]
    qv = q.values.copy()
    # warm-start dip far below the feasible range that recovers by the switch (a step of 60 at the switch would
    # read as the switch's overshoot, OF001 max_switch_share)
    qv[:30] = qv[30] - 60.0 * np.sin(np.linspace(0, np.pi, 30))
    run = tmp_path / "trials" / trial.key / "run"
    run.mkdir(parents=True)
    lines = ["step,offrl/q_data,offrl/td_error"] + [
        f"{int(st)},{a},{b}" for st, a, b in zip(q.steps, qv, td.values, strict=True)
    ]
    (run / "progress.csv").write_text("\n".join(lines) + "\n")
    md = sr.run.metadata
    cfg = {"algo": "cql", "gamma": md.gamma, "horizon": md.horizon, "reward_range": list(md.reward_range)}
    (run / "config.json").write_text(json.dumps({**cfg, "bc_steps": int(q.steps[29])}))
    r = _result(trial, {1000: 0.5, 6000: 0.9, 12000: 0.1}, 12000, "stale", {1000: 1.0}, {})
    (run.parent / "result.json").write_text(json.dumps(r))
    before = {p: p.read_bytes() for p in run.parent.rglob("*") if p.is_file()}
    assert eval_main(["loop", "size", "--score-only", "--reanalyze", "--out", str(tmp_path)]) == 0
    with (tmp_path / "tables" / "runs.csv").open() as fh:
        row = next(csv.DictReader(fh))
    assert row["verdict"] == "overfitting"  # not the stored "stale"
    # the re-analysis is scored, never stored: the trial folder is byte-for-byte what it was
    assert {p: p.read_bytes() for p in run.parent.rglob("*") if p.is_file()} == before

    from robot_eval.loop.report import load_results

    new = load_results(tmp_path, reanalyze=True)[0]
    assert any(f.startswith("DQ004") for f in new["analysis"]["findings"])
    assert new["analysis_nodv"]["verdict"] == "overfitting"
    assert new["success"] == r["success"]  # nothing else touched


@pytest.mark.slow
def test_smoke_end_to_end_and_resume(tmp_path, capsys):
    """Collect -> train -> evaluate -> analyze -> FQE -> score for one tiny trial; a second call skips it."""
    pytest.importorskip("torch")
    pytest.importorskip("pybullet")
    out = tmp_path / "loop"
    assert (
        eval_main(["loop", "size", "--preset", "smoke", "--jobs", "1", "--out", str(out), "--format", "json"])
        == 0
    )
    trial = next((out / "trials").iterdir())
    result = json.loads((trial / "result.json").read_text())
    assert set(result["success"]) == {"10", "20", "30", "40"}
    assert result["analysis"]["verdict"] in {"overfitting", "underfitting", "healthy", "inconclusive"}
    assert set(result["fqe"]) == set(result["success"])
    # the forward-pass tier: every checkpoint scored once, on the training data (the smoke run has no held-out split)
    assert set(result["forward"]) == set(result["success"])
    assert json.loads((trial / "forward.json").read_text())["data"] == "training data"
    assert all(math.isfinite(v["policy_data_distance"]) for v in result["forward"].values())
    assert (out / "tables" / "runs.csv").exists() and (out / "figures" / "loop-size.png").exists()
    mtime = (trial / "result.json").stat().st_mtime
    capsys.readouterr()
    assert eval_main(["loop", "size", "--preset", "smoke", "--jobs", "1", "--out", str(out)]) == 0
    assert "1 already finished, 0 to run" in capsys.readouterr().err
    assert (trial / "result.json").stat().st_mtime == mtime
