"""`offrl-train sweep`: grid expansion and folder names from the sweep file, bad files (exit 2, one line),
local training that skips finished runs, refuses a folder started with other settings, and exits 1 when a run
fails. The Ray executor and a task killed mid-run: tests/test_cluster.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reference_trainer.sweep import SweepError, expand, load_sweep

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "sweeps"


def sweep_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    code = f"from reference_trainer.cli import main; main({['sweep', *args]!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    ("name", "runs", "axes"),
    [
        ("fig3_size.yaml", 12, {"dataset", "seed"}),
        ("fig4_regularize.yaml", 9, {"remedy", "seed"}),
        ("fig5_objects.yaml", 15, {"dataset", "seed"}),
        ("fig6_capacity.yaml", 9, {"capacity", "seed"}),
        ("smoke.yaml", 4, {"hidden", "seed"}),
    ],
)
def test_example_sweeps_expand_to_the_papers_grids(name, runs, axes):
    plan = expand(load_sweep(EXAMPLES / name))
    assert len(plan) == runs and len({r.name for r in plan}) == runs
    assert all(set(r.differs) == axes for r in plan)
    assert all(r.name == "__".join(f"{k}={v}" for k, v in r.differs.items()) for r in plan)
    assert all(Path(r.settings["dataset"]).is_absolute() and r.settings["threads"] == 1 for r in plan)


def test_variants_and_shared_settings_reach_each_run():
    plan = {r.name: r.settings for r in expand(load_sweep(EXAMPLES / "fig6_capacity.yaml"))}
    assert plan["capacity=h128__seed=1"]["hidden"] == 128 and "dr3" not in plan["capacity=h128__seed=1"]
    dr3 = plan["capacity=h256-dr3__seed=2"]
    assert dr3["hidden"] == 256 and dr3["dr3"] == 0.001 and dr3["seed"] == 2
    assert {s["seed"] for s in plan.values()} == {0, 1, 2}
    assert all(s["gamma"] == 0.9 and s["backup"] == "mean" for s in plan.values())
    reg = {r.name: r.settings for r in expand(load_sweep(EXAMPLES / "fig4_regularize.yaml"))}
    assert reg["remedy=vib-1e-3__seed=0"]["vib"] == 0.001 and "dropout" not in reg["remedy=vib-1e-3__seed=0"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "base: {dataset: d.npz}\ngrid: {widht: [1, 2]}\n",
            "grid axis 'widht' is not an offrl-train setting",
        ),
        ("base: {dataset: d.npz, hiden: 3}\n", "unknown offrl-train setting 'hiden'"),
        ("base: {dataset: d.npz, log-dir: x}\n", "'log-dir' is set by the sweep itself"),
        ("base: {dataset: d.npz}\ngrid: {seed: []}\n", "grid axis 'seed' has no values"),
        ("base: {dataset: d.npz}\ngrid: {dropout: [0.1, 0.10]}\n", "give the same name"),
        ("grid: {seed: [0, 1]}\n", "no dataset"),
        ("base: {dataset: d.npz, steps: -5}\n", "--steps must be > 0"),
        ("base: {dataset: d.npz}\nruns: 3\n", "unknown key(s) ['runs']"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("base: {dataset: d.npz\n", "not valid YAML"),
    ],
)
def test_bad_sweep_files_are_refused_with_the_reason(tmp_path, text, fragment):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SweepError) as err:
        expand(load_sweep(path))
    assert fragment in str(err.value)


def test_bad_sweep_file_on_the_command_line_is_one_line_exit_2(tmp_path):
    (tmp_path / "s.yaml").write_text("base: {dataset: d.npz}\ngrid: {widht: [1, 2]}\n")
    out = sweep_cli(str(tmp_path / "s.yaml"), "-o", str(tmp_path / "out"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("offrl-train sweep: error:") and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    missing = sweep_cli(str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "sweep file not found" in missing.stderr


def _dataset(path: Path, n: int = 200, horizon: int = 20) -> Path:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    np.savez(
        path,
        observations=obs,
        actions=np.tanh(rng.normal(size=(n, 2))).astype(np.float32),
        rewards=(rng.random(n) < 0.2).astype(np.float32),
        terminals=np.zeros(n, dtype=bool),
        timeouts=np.arange(n) % horizon == horizon - 1,
        next_observations=obs,
        metadata=np.array(json.dumps({"gamma": 0.9, "horizon": horizon, "reward_range": [0, 1]})),
    )
    return path


TINY = "base: {{steps: 20, ckpt-every: 10, log-every: 5, bc-steps: 5, depth: 1, batch-size: 16, n-actions: 2{extra}}}\n"


def test_local_sweep_trains_skips_finished_runs_and_refuses_other_settings(tmp_path):
    pytest.importorskip("torch")
    _dataset(tmp_path / "toy.npz")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(TINY.format(extra=", dataset: toy.npz") + "grid: {hidden: [8, 16]}\n")
    out = tmp_path / "out"
    first = sweep_cli(str(sweep), "-o", str(out), "-j", "2")
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in out.iterdir()) == [".sweep", "hidden=16", "hidden=8"]
    for name, width in (("hidden=8", 8), ("hidden=16", 16)):
        cfg = json.loads((out / name / "config.json").read_text())
        assert cfg["hidden"] == width and cfg["steps"] == 20
        assert (out / name / "checkpoints" / "ckpt_20.pt").is_file()
    plan = json.loads((out / ".sweep" / "plan.json").read_text())
    assert [r["name"] for r in plan["runs"]] == ["hidden=8", "hidden=16"]

    again = sweep_cli(str(sweep), "-o", str(out))
    assert again.returncode == 0 and "2 already done, 0 to train" in again.stderr

    sweep.write_text(TINY.format(extra=", dataset: toy.npz, l2: 0.1") + "grid: {hidden: [8, 16]}\n")
    other = sweep_cli(str(sweep), "-o", str(out))
    assert other.returncode == 2 and "started with other settings" in other.stderr


def test_a_failed_run_exits_1_and_the_others_still_train(tmp_path):
    pytest.importorskip("torch")
    _dataset(tmp_path / "toy.npz")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(TINY.format(extra="") + "grid: {dataset: [toy.npz, missing.npz]}\n")
    res = sweep_cli(str(sweep), "-o", str(tmp_path / "out"), "-j", "2")
    assert res.returncode == 1, res.stderr
    assert "failed dataset=missing" in res.stderr and "1 of 2 run(s) done; 1 failed" in res.stderr
    assert (tmp_path / "out" / "dataset=toy" / "checkpoints" / "ckpt_20.pt").is_file()
    assert "missing.npz" in (tmp_path / "out" / ".sweep" / "dataset=missing.log").read_text()


def test_resources_per_task_follow_the_settings(tmp_path):
    """A Ray task reserves the run's torch threads as CPUs and one GPU when it trains on CUDA."""
    from reference_trainer.sweep import SweepRun
    from robot_eval.loop.run import trial_gpus

    assert (
        SweepRun("a", {}, {"threads": 4, "device": "cuda:1"}).cpus,
        SweepRun("a", {}, {"device": "cuda"}).gpus,
    ) == (4, 1)
    assert (SweepRun("b", {}, {"device": "cpu"}).cpus, SweepRun("b", {}, {}).gpus) == (1, 0)
    (tmp_path / "spec.json").write_text(json.dumps({"train": {"device": "cuda", "steps": 10}}))
    assert trial_gpus(tmp_path) == 1
    (tmp_path / "spec.json").write_text(json.dumps({"train": {"steps": 10}}))
    assert trial_gpus(tmp_path) == 0 and trial_gpus(tmp_path / "missing") == 0
