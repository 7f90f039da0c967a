"""`--executor ray` on a local Ray instance the tests start themselves (`ray.init(num_cpus=2)`).

What is checked: a 4-run training sweep trains every run once, and a run whose Ray task is killed
mid-training (its worker process SIGKILLed) is retried by Ray and resumes from its last checkpoint;
the closed loop's `smoke` preset gives the same files through Ray as locally; many-run analysis through
Ray gives the report the local pool gives. Ray is in the `test` extra; without it these tests skip.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cluster]')")
pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    """A private 2-CPU Ray instance; its workers (and the trainers they start) import this checkout."""
    if ray.is_initialized():
        ray.shutdown()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield ray
    ray.shutdown()


def _dataset(path: Path, n: int = 300, horizon: int = 30) -> Path:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    meta = {"gamma": 0.9, "horizon": horizon, "reward_range": [0.0, 1.0]}
    np.savez(
        path,
        observations=obs,
        actions=np.tanh(rng.normal(size=(n, 2))).astype(np.float32),
        rewards=(rng.random(n) < 0.2).astype(np.float32),
        terminals=np.zeros(n, dtype=bool),
        timeouts=np.arange(n) % horizon == horizon - 1,
        next_observations=obs + 0.05,
        metadata=np.array(json.dumps(meta)),
    )
    return path


SWEEP = """\
base:
  algo: cql
  steps: {steps}
  ckpt-every: 100
  log-every: 50
  bc-steps: 10
  depth: 1
  batch-size: 32
  n-actions: 2
datasets:
  toy: toy.npz
grid:
  dataset: [toy]
  hidden: [8, 16]
  seed: [0, 1]
"""


def _procs() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process (Linux /proc)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out[int(d.name)] = (ppid, cmd)
    return out


def _kill_task_of(marker: str, ready, deadline: float, stop: threading.Event | None = None) -> str | None:
    """SIGKILL the Ray worker (a `ray::` process) whose child has `marker` in its command line, once
    `ready(cmd)` says the child got far enough; returns the child's command line (None: none in time).

    `marker` names this test's own folder: the machine may run other trainers that are none of ours."""
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        procs = _procs()
        for _pid, (ppid, cmd) in procs.items():
            parent = procs.get(ppid, (0, ""))[1]
            if marker in cmd and parent.startswith("ray::") and ready(cmd):
                os.kill(ppid, signal.SIGKILL)  # the Ray worker running the task
                return cmd
        time.sleep(0.1)
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the task's worker through /proc (Linux)")
def test_sweep_on_ray_trains_every_run_once_and_resumes_a_killed_task(local_ray, tmp_path):
    from analyzer.api import analyze
    from reference_trainer.sweep import run_sweep

    _dataset(tmp_path / "toy.npz")
    (tmp_path / "sweep.yaml").write_text(SWEEP.format(steps=2000))
    out = tmp_path / "out"
    killed: list[str | None] = []

    def has_checkpoint(cmd: str) -> bool:
        run_dir = Path(cmd.split("--log-dir ", 1)[1].split()[0])
        # a finished checkpoint, not the temp file of one being written (killing the task then leaves nothing to
        # resume from, and the sweep rightly starts the run again without --resume)
        return (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("ckpt_*.pt"))

    stop = threading.Event()
    killer = threading.Thread(
        target=lambda: killed.append(
            _kill_task_of(f"--log-dir {out}{os.sep}", has_checkpoint, time.monotonic() + 300, stop)
        )
    )
    killer.start()
    log: list[str] = []
    try:
        runs = run_sweep(tmp_path / "sweep.yaml", out, executor="ray", log=log.append)
    finally:
        stop.set()
        killer.join()

    assert killed and killed[0] is not None, "no training process was caught mid-run"
    victim = Path(killed[0].split("--log-dir ", 1)[1].split()[0]).name
    assert sorted(r.name for r in runs) == sorted(f"hidden={h}__seed={s}" for h in (8, 16) for s in (0, 1))
    assert all(r.status == "trained" for r in runs), log
    for r in runs:  # every run complete: its last checkpoint is the last step
        assert (out / r.name / "checkpoints" / "ckpt_2000.pt").is_file()
    commands = [
        ln for ln in (out / ".sweep" / f"{victim}.log").read_text().splitlines() if ln.startswith("$ ")
    ]
    assert len(commands) == 2 and "--resume" in commands[1] and "--resume" not in commands[0]
    others = [r.name for r in runs if r.name != victim]
    for name in others:  # trained once each
        text = (out / ".sweep" / f"{name}.log").read_text()
        assert sum(ln.startswith("$ ") for ln in text.splitlines()) == 1
    # the resumed run's logs read as one run; the sweep folder is what the capacity comparison needs
    report = analyze([out])
    assert sorted(r.run.id for r in report.runs) == sorted(r.name for r in runs)
    caps = {r.run.id: r.run.metadata.capacity.widths for r in report.runs}
    assert caps["hidden=8__seed=0"] == (8,) and caps["hidden=16__seed=1"] == (16,)

    # a second call trains nothing
    again = run_sweep(tmp_path / "sweep.yaml", out, executor="ray", log=log.append)
    assert all(r.status == "done" for r in again)


def test_analysis_on_ray_gives_the_local_report(local_ray, tmp_path):
    from analyzer.api import analyze
    from fixtures.synthetic import capacity_family
    from tests.test_batch import write_run

    for sr in capacity_family(underfit=True, seed=1):
        width = sr.run.metadata.capacity.widths[0]
        write_run(sr.run, tmp_path / f"w{width}", width)
    calls: list[tuple] = []
    on_ray = analyze([tmp_path], executor="ray", progress=lambda *a: calls.append(a))
    local = analyze([tmp_path], workers=1)
    assert on_ray.to_dict() == local.to_dict()
    assert sum(f.code == "UF003" for r in on_ray.runs for f in r.findings) == 2
    assert [c[1] for c in calls if c[0] == "diagnose"] == [1, 2, 3]


def test_loop_smoke_preset_on_ray(local_ray, tmp_path, capsys):
    """`offrl-eval loop size --preset smoke --executor ray`: one trial as a Ray task, scored as locally."""
    pytest.importorskip("pybullet")
    from robot_eval.cli import main as eval_main

    out = tmp_path / "loop"
    args = ["loop", "size", "--preset", "smoke", "--executor", "ray", "--out", str(out)]
    assert eval_main([*args, "--format", "json"]) == 0
    trial = next((out / "trials").iterdir())
    result = json.loads((trial / "result.json").read_text())
    assert set(result["success"]) == {"10", "20", "30", "40"}
    assert set(result["fqe"]) == set(result["success"])
    assert (out / "tables" / "runs.csv").exists()
    capsys.readouterr()
    assert eval_main(args) == 0  # resumable: a second call runs nothing
    assert "1 already finished, 0 to run" in capsys.readouterr().err


def test_datasets_collected_as_ray_tasks_are_the_local_ones(local_ray, tmp_path):
    pytest.importorskip("pybullet")
    from robot_eval.loop.run import collect_datasets
    from robot_eval.loop.scenarios import DataSpec

    specs = [DataSpec(trajectories=5), DataSpec(trajectories=4, n_objects=2, seed=3)]
    on_ray = collect_datasets(specs, tmp_path / "ray", executor="ray", log=lambda _m: None)
    local = collect_datasets(specs, tmp_path / "local", jobs=1, log=lambda _m: None)
    assert list(on_ray) == list(local) == [d.name for d in specs]
    for name in on_ray:
        a, b = np.load(on_ray[name][0]), np.load(local[name][0])
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    again = collect_datasets(specs, tmp_path / "ray", executor="ray", log=lambda _m: None)
    assert again == on_ray  # collected once: the second call reads the recorded collection times


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the task's worker through /proc (Linux)")
def test_loop_trial_killed_after_training_resumes_without_training_again(local_ray, tmp_path):
    """The smoke trial's Ray worker is SIGKILLed once training is done; Ray runs the task again and the trial
    continues from its files: the trainer ran once (train.log), and the result is complete."""
    pytest.importorskip("pybullet")
    from robot_eval.loop.run import run_loop

    out = tmp_path / "loop"

    def trained(cmd: str) -> bool:
        tdir = Path(cmd.split("robot_eval.loop.trial ", 1)[1].split()[0])
        try:
            return (
                "train" in json.loads((tdir / "timing.json").read_text())
                and not (tdir / "eval.json").exists()
            )
        except (OSError, ValueError):
            return False

    killed: list[str | None] = []
    stop = threading.Event()
    killer = threading.Thread(
        target=lambda: killed.append(
            _kill_task_of(f"robot_eval.loop.trial {out}{os.sep}", trained, time.monotonic() + 600, stop)
        )
    )
    killer.start()
    try:
        summary = run_loop("size", "smoke", out, executor="ray", log=lambda _m: None)
    finally:
        stop.set()
        killer.join()
    assert killed and killed[0] is not None, "the trial was not caught between training and evaluation"
    assert summary["failed"] == []
    trial = next((out / "trials").iterdir())
    result = json.loads((trial / "result.json").read_text())
    assert set(result["success"]) == {"10", "20", "30", "40"} and set(result["fqe"]) == set(result["success"])
    assert (trial / "train.log").read_text().count("done: logs and checkpoints") == 1
