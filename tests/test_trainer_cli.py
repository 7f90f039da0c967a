"""offrl-train's command line: clear exit-2 errors on bad input, YAML config + flag precedence,
and resume after SIGKILL giving the same logs and weights as an uninterrupted run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from reference_trainer.cli import app  # noqa: E402

TINY = [
    "--hidden",
    "16",
    "--depth",
    "2",
    "--batch-size",
    "32",
    "--n-actions",
    "4",
    "--threads",
    "1",
    "--bc-steps",
    "0",
]


def write_npz(path: Path, n: int = 200, **override) -> Path:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    arrays = dict(observations=obs, actions=np.tanh(rng.normal(size=(n, 2))).astype(np.float32),
                  rewards=rng.random(n).astype(np.float32), terminals=np.zeros(n, dtype=bool),
                  timeouts=np.zeros(n, dtype=bool), next_observations=obs.copy())  # fmt: skip
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def invoke(args: list[str]):
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "dataset file not found"),
        ("no_rewards", "missing array(s) rewards"),
        ("short_actions", "array 'actions' has shape (199, 2), expected 200 rows"),
        ("nan_obs", "array 'observations' contains NaN/Inf (1 values, first at row 7)"),
        ("garbage", "not a readable .npz file"),
        ("actions_out_of_range", "'actions' must lie in [-1, 1]"),
    ],
)
def test_bad_datasets_exit_2_naming_file_and_reason(tmp_path, case, message):
    path = tmp_path / f"{case}.npz"
    if case == "no_rewards":
        write_npz(path, rewards=None)
    elif case == "short_actions":
        write_npz(path, actions=np.zeros((199, 2), dtype=np.float32))
    elif case == "nan_obs":
        obs = np.zeros((200, 3), dtype=np.float32)
        obs[7, 1] = np.nan
        write_npz(path, observations=obs)
    elif case == "garbage":
        path.write_text("hello")
    elif case == "actions_out_of_range":
        write_npz(path, actions=np.full((200, 2), 3.0, dtype=np.float32))
    res = invoke(["--dataset", str(path), "--log-dir", str(tmp_path / "run"), "--steps", "2", *TINY])
    assert res.exit_code == 2, res.output
    assert str(path) in res.output and message in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--algo", "sac"], "--algo must be one of"),
        (["--steps", "0"], "--steps must be > 0"),
        (["--dropout", "1.5"], "--dropout must be in [0, 1)"),
        (["--reward-range", "1,0"], "LO <= HI"),
        (["--encoder", "conv"], "needs image observations"),
        (["--no-such-flag", "1"], "No such option"),
    ],
)
def test_bad_flags_exit_2(tmp_path, args, message):
    ds = write_npz(tmp_path / "ok.npz")
    res = invoke(["--dataset", str(ds), "--log-dir", str(tmp_path / "run"), "--steps", "2", *TINY, *args])
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_yaml_config_with_flag_override_and_existing_run_guard(tmp_path):
    ds = write_npz(tmp_path / "ok.npz")
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        f"algo: brac\ndataset: {ds}\nsteps: 4\nlog-every: 2\nckpt_every: 4\nhidden: 8\nhorizon: 17\n"
    )
    log_dir = tmp_path / "run"
    res = invoke(
        [
            "--config",
            str(cfg_file),
            "--log-dir",
            str(log_dir),
            "--hidden",
            "12",
            "--bc-steps",
            "3",
            "--threads",
            "1",
            "--batch-size",  # the default 256 is more than the 200 rows: refused (issue 12, item 8)
            "32",
        ]
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((log_dir / "config.json").read_text())
    assert (
        saved["algo"] == "brac" and saved["hidden"] == 12 and saved["horizon"] == 17 and saved["steps"] == 4
    )
    assert saved["reward_range"] is not None and saved["gamma"] == 0.99
    again = invoke(["--config", str(cfg_file), "--log-dir", str(log_dir)])
    assert again.exit_code == 2 and "already holds a run" in again.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    res = invoke(["--config", str(bad)])
    assert res.exit_code == 2 and "unknown key 'stepz'" in res.output


def _steps(csv_path: Path) -> list[int]:
    with csv_path.open() as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    ds = write_npz(tmp_path / "ok.npz", n=500)
    common = ["--dataset", str(ds), "--steps", "240", "--ckpt-every", "30", "--log-every", "15", "--seed", "5",
              "--hidden", "16", "--depth", "2", "--batch-size", "32", "--n-actions", "4", "--threads", "1",
              "--bc-steps", "20"]  # fmt: skip
    cmd = [sys.executable, "-m", "reference_trainer.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed_dir, full_dir = tmp_path / "killed", tmp_path / "full"
    proc = subprocess.Popen([*cmd, *common, "--log-dir", str(killed_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    second = killed_dir / "checkpoints" / "ckpt_60.pt"
    deadline = time.monotonic() + 120
    while not second.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed_dir / "checkpoints" / "ckpt_240.pt").exists()

    resumed = subprocess.run([*cmd, *common, "--log-dir", str(killed_dir), "--resume"], env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    full = subprocess.run(
        [*cmd, *common, "--log-dir", str(full_dir)], env=env, capture_output=True, text=True, timeout=300
    )
    assert full.returncode == 0, full.stderr

    # logs: continuous, duplicate-free, identical to the uninterrupted run
    assert _steps(killed_dir / "progress.csv") == list(range(15, 241, 15))
    assert (killed_dir / "progress.csv").read_text() == (full_dir / "progress.csv").read_text()
    from analyzer.ingest import load_runs

    (run_k,), _ = load_runs([killed_dir])
    (run_f,), _ = load_runs([full_dir])
    for name in ("q_data", "td_error", "cql_gap"):
        assert run_k.series[name].steps.tolist() == list(range(15, 241, 15))
        np.testing.assert_array_equal(run_k.series[name].values, run_f.series[name].values)
    assert not [i for i in run_k.issues if i.level == "error"]
    # weights: bitwise identical at the end
    a = torch.load(killed_dir / "checkpoints" / "ckpt_240.pt", weights_only=True)
    b = torch.load(full_dir / "checkpoints" / "ckpt_240.pt", weights_only=True)
    for part in ("actor", "critics", "targets"):
        sa, sb = a["train_state"]["agent"][part], b["train_state"]["agent"][part]
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (part, k)


def test_resume_skips_a_corrupt_latest_checkpoint(tmp_path):
    ds = write_npz(tmp_path / "ok.npz")
    args = ["--dataset", str(ds), "--log-dir", str(tmp_path / "run"), "--steps", "40", "--ckpt-every", "10",
            "--log-every", "5", *TINY]  # fmt: skip
    assert invoke(args).exit_code == 0
    csv_before = (tmp_path / "run" / "progress.csv").read_text()
    last = tmp_path / "run" / "checkpoints" / "ckpt_40.pt"
    reference = torch.load(last, weights_only=True)["actor"]
    last.write_bytes(last.read_bytes()[:100])  # torn file, as a crash of a non-atomic writer would leave
    res = invoke([*args, "--resume"])
    assert res.exit_code == 0, res.output
    assert "skipping" in res.output and "ckpt_40.pt" in res.output and "resuming from" in res.output
    assert "(step 30)" in res.output
    assert (tmp_path / "run" / "progress.csv").read_text() == csv_before
    redone = torch.load(last, weights_only=True)["actor"]
    assert all(torch.equal(reference[k], redone[k]) for k in reference)


def test_resume_without_checkpoint_starts_over_cleanly(tmp_path):
    ds = write_npz(tmp_path / "ok.npz")
    log_dir = tmp_path / "run"
    log_dir.mkdir()
    (log_dir / "progress.csv").write_text(
        "step,offrl/q_data\n1,9.0\n"
    )  # left by a run killed before its first checkpoint
    res = invoke(
        [
            "--dataset",
            str(ds),
            "--log-dir",
            str(log_dir),
            "--steps",
            "4",
            "--log-every",
            "2",
            "--resume",
            *TINY,
        ]
    )
    assert res.exit_code == 0, res.output
    assert "starting from step 0" in res.output
    assert _steps(log_dir / "progress.csv") == [2, 4]


# ---------------------------------------------------------------------------------------------- one source
def _capture_train(monkeypatch) -> list:
    """Replace the training loop by one that records the resolved TrainConfig."""
    import reference_trainer.train as train_mod

    seen: list = []

    def fake_train(cfg, echo=None):
        seen.append(cfg)
        return Path(cfg.log_dir)

    monkeypatch.setattr(train_mod, "train", fake_train)
    return seen


def test_every_trainconfig_knob_is_a_flag_and_nothing_else_is():
    """The flags are generated from TrainConfig: each knob has one (policy_lr, q_lr and tau had none and the
    closed loop passed them through a YAML file), the fields the trainer fills from the dataset have none."""
    import dataclasses

    from reference_trainer.config import TrainConfig, flag_fields

    res = invoke(["--help"])
    assert res.exit_code == 0
    flags = {f.name for f in flag_fields()}
    for f in dataclasses.fields(TrainConfig):
        spelled = "--" + f.name.replace("_", "-")
        assert (spelled in res.output) == (f.name in flags), f.name
    assert {"policy_lr", "q_lr", "tau", "vib_latent", "crop_pad"} <= flags
    assert not flags & {"obs_shape", "act_dim", "dataset_size", "remedies", "task", "obs_type"}


def test_new_flags_reach_the_config_and_win_over_the_yaml_file(tmp_path, monkeypatch):
    seen = _capture_train(monkeypatch)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("policy-lr: 0.002\nq_lr: 0.004\ntau: 0.01\ndataset: d.npz\n")
    res = invoke(["--config", str(cfg_file), "--q-lr", "0.0005", "--crop-pad", "2"])
    assert res.exit_code == 0, res.output
    (cfg,) = seen
    assert (cfg.policy_lr, cfg.q_lr, cfg.tau, cfg.crop_pad) == (0.002, 0.0005, 0.01, 2)
    assert "done: logs and checkpoints in runs/offrl" in res.stderr


@pytest.mark.parametrize(
    "exc, code, needle",
    [
        ("nan", 1, "offrl-train: error: loss is NaN"),
        ("oserror", 2, "offrl-train: error: /ro/run: Permission denied"),
        ("interrupt", 130, "offrl-train: interrupted; continue from the last checkpoint with --resume"),
        ("bug", 2, "offrl-train: error: internal error: RuntimeError: kaboom"),
    ],
)
def test_exit_codes_follow_the_shared_conventions(tmp_path, monkeypatch, exc, code, needle):
    """analyzer/cli_errors.py: 1 the run failed, 2 bad input or internal error, 130 interrupted; one line."""
    import reference_trainer.train as train_mod
    from reference_trainer.config import NonFiniteLoss

    monkeypatch.delenv("OFFRL_DEBUG", raising=False)
    raised = {
        "nan": NonFiniteLoss("loss is NaN at step 7"),
        "oserror": PermissionError(13, "Permission denied", "/ro/run"),
        "interrupt": KeyboardInterrupt(),
        "bug": RuntimeError("kaboom"),
    }[exc]

    def fake_train(cfg, echo=None):
        raise raised

    monkeypatch.setattr(train_mod, "train", fake_train)
    res = invoke(["--dataset", "d.npz"])
    assert res.exit_code == code, res.output
    err = res.stderr.strip().splitlines()
    assert err[-1].startswith(needle) and "Traceback" not in res.output
