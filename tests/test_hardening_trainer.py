"""offrl-train and offrl-eval on hostile input (issue 12, items 8, 19, 20, 21, 22).

Tiny datasets and networks, a few steps each: every run here takes well under a second of
training. Each test failed before its fix.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from reference_trainer import limits  # noqa: E402
from reference_trainer.cli import app  # noqa: E402
from reference_trainer.config import ConfigError, TrainConfig, resolve_config, save_config_json  # noqa: E402
from reference_trainer.cql import CQLAgent  # noqa: E402

TINY = ["--hidden", "16", "--depth", "2", "--batch-size", "16", "--n-actions", "2", "--threads", "1",
        "--bc-steps", "0"]  # fmt: skip


def write_npz(path: Path, n: int = 120, reward_scale: float = 1.0, obs_scale: float = 1.0) -> Path:
    rng = np.random.default_rng(0)
    obs = (rng.normal(size=(n, 3)) * obs_scale).astype(np.float32)
    np.savez(
        path,
        observations=obs,
        actions=np.tanh(rng.normal(size=(n, 2))).astype(np.float32),
        rewards=(rng.random(n) * reward_scale).astype(np.float32),
        terminals=np.zeros(n, dtype=bool),
        timeouts=np.zeros(n, dtype=bool),
        next_observations=obs.copy(),
    )
    return path


def train(args: list[str]):
    return CliRunner().invoke(app, args)


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("offrl-train: error:")]


# --------------------------------------------------------------------------------------------------
# Item 8: impossible batch sizes are refused up front
# --------------------------------------------------------------------------------------------------


def test_batch_larger_than_the_dataset_is_refused_up_front(tmp_path):
    """Audit reproducer: --batch-size 100000000 on a 600-row dataset grew to 22 GB and was OOM-killed."""
    ds = write_npz(tmp_path / "d.npz", n=600)
    res = train(["--dataset", str(ds), "--log-dir", str(tmp_path / "run"), "--steps", "2", *TINY,
                 "--batch-size", "100000000"])  # fmt: skip
    assert res.exit_code == 2, res.output
    (line,) = _error_lines(res.output)
    assert "--batch-size 100000000 is larger than the dataset (600 transitions" in line and str(ds) in line
    assert "Traceback" not in res.output and not (tmp_path / "run" / "checkpoints").exists()


def test_batch_beyond_memory_is_refused_up_front(tmp_path, monkeypatch):
    ds = write_npz(tmp_path / "d.npz", n=600)
    monkeypatch.setattr(limits, "available_memory", lambda device: 64 * 2**20)  # a 64 MiB machine
    args = ["--dataset", str(ds), "--log-dir", str(tmp_path / "run"), "--steps", "2", "--hidden", "256",
            "--depth", "3", "--n-actions", "10", "--threads", "1", "--bc-steps", "0"]  # fmt: skip
    # 2 critics x 3 layers x 31 action rows x 256 units x 4 B = 190 KiB per sample: 500 samples > 64 MiB
    res = train([*args, "--batch-size", "500"])
    assert res.exit_code == 2, res.output
    (line,) = _error_lines(res.output)
    assert "--batch-size 500 needs at least" in line and "use at most about" in line
    fits = int(line.rsplit("about", 1)[1])
    assert 0 < fits < 500
    cfg = TrainConfig(batch_size=fits, hidden=256, depth=3, n_actions=10)
    assert limits.activation_bytes_lower_bound(cfg) + limits.parameter_bytes_lower_bound(cfg) <= 64 * 2**20
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert train([*args, "--batch-size", str(fits)]).exit_code == 0  # the suggested size trains


# --------------------------------------------------------------------------------------------------
# Item 20: every float flag must be finite; config.json is strict JSON
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_cql_alpha_inf_is_refused_like_nan(tmp_path, value):
    ds = write_npz(tmp_path / "d.npz")
    res = train(["--dataset", str(ds), "--log-dir", str(tmp_path / "run"), "--steps", "2", *TINY,
                 "--cql-alpha", value])  # fmt: skip
    assert res.exit_code == 2, res.output
    (line,) = _error_lines(res.output)
    assert "--cql-alpha must be a finite number" in line
    assert not (tmp_path / "run" / "config.json").exists()


_FLOAT_FLAGS = ["cql_alpha", "cql_target_gap", "brac_beta", "dropout", "vib", "l1", "l2", "dr3", "gamma",
                "tau", "policy_lr", "q_lr"]  # fmt: skip


@given(
    flag=st.sampled_from(_FLOAT_FLAGS + ["reward_range"]),
    value=st.floats(allow_nan=True, allow_infinity=True),
    other=st.floats(allow_nan=True, allow_infinity=True),
)
@settings(max_examples=150, deadline=None)
def test_float_flags_are_finite_or_refused_and_config_json_is_strict(flag, value, other):
    given_value = (value, other) if flag == "reward_range" else value
    try:
        cfg = resolve_config({}, {flag: given_value})
    except ConfigError as exc:
        if not all(math.isfinite(v) for v in np.atleast_1d(given_value)):
            assert str(exc) == f"--{flag.replace('_', '-')} must be a finite number, got " + str(
                next(v for v in np.atleast_1d(given_value) if not math.isfinite(v))
            )
        return
    text = json.dumps(cfg.to_json_dict(), allow_nan=False)  # raises on Infinity/NaN
    assert json.loads(text)[flag] == (list(given_value) if flag == "reward_range" else value)


def test_config_json_never_holds_infinity_or_nan(tmp_path):
    cfg = TrainConfig(dataset="x.npz")
    cfg.dataset_mc_return = math.inf  # e.g. an overflowed discounted return
    text = save_config_json(cfg, tmp_path).read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert (
        json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))["dataset_mc_return"]
        is None
    )


# --------------------------------------------------------------------------------------------------
# Item 19: NaN guard
# --------------------------------------------------------------------------------------------------


def test_extreme_dataset_values_stop_training_with_one_line_and_exit_1(tmp_path):
    """Audit reproducer: losses NaN from the first steps, yet training ran to the end and exited 0."""
    ds = write_npz(tmp_path / "d.npz", reward_scale=3e38, obs_scale=1e30)
    run = tmp_path / "run"
    res = train(["--dataset", str(ds), "--log-dir", str(run), "--steps", "40", "--ckpt-every", "5",
                 "--log-every", "5", *TINY])  # fmt: skip
    assert res.exit_code == 1, res.output
    (line,) = _error_lines(res.output)
    assert "non-finite loss between steps 1 and 5" in line and "no checkpoint was written" in line
    assert "Traceback" not in res.output
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").glob("ckpt_*.pt"))


def test_nan_mid_run_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    real_update = CQLAgent.update

    def update(self, batch, step):  # the losses turn NaN at step 13 (and stay NaN)
        metrics = real_update(self, batch, step)
        return metrics * float("nan") if step >= 13 else metrics

    monkeypatch.setattr(CQLAgent, "update", update)
    ds = write_npz(tmp_path / "d.npz")
    run = tmp_path / "run"
    res = train(["--dataset", str(ds), "--log-dir", str(run), "--steps", "30", "--ckpt-every", "5",
                 "--log-every", "4", *TINY])  # fmt: skip
    assert res.exit_code == 1, res.output
    (line,) = _error_lines(res.output)
    # log at 12 was finite; the check before the step-15 checkpoint sees steps 13-15
    assert (
        "between steps 13 and 15" in line
        and f"last finite checkpoint is {run / 'checkpoints' / 'ckpt_10.pt'}" in line
    )
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt_*.pt")) == ["ckpt_10.pt", "ckpt_5.pt"]
    for p in (run / "checkpoints").glob("ckpt_*.pt"):
        state = torch.load(p, weights_only=True)["actor"]
        assert all(torch.isfinite(t).all() for t in state.values())


# --------------------------------------------------------------------------------------------------
# Item 21: --resume removes the temp files of interrupted checkpoint writes
# --------------------------------------------------------------------------------------------------


def test_resume_removes_stale_checkpoint_temp_files(tmp_path):
    ds = write_npz(tmp_path / "d.npz")
    run = tmp_path / "run"
    args = ["--dataset", str(ds), "--log-dir", str(run), "--ckpt-every", "5", "--log-every", "5", *TINY]
    assert train([*args, "--steps", "10"]).exit_code == 0
    ckpts = run / "checkpoints"
    stale = [
        ckpts / ".ckpt_15.pt.4242.tmp",
        ckpts / ".ckpt_10.pt.77.tmp",
    ]  # as a SIGKILL mid-write leaves them
    for p in stale:
        p.write_bytes(b"PK\x03\x04 half a zip")
    (ckpts / "notes.txt").write_text("mine")
    res = train([*args, "--steps", "15", "--resume"])
    assert res.exit_code == 0, res.output
    assert "removed 2 unfinished checkpoint write(s)" in res.output
    assert not any(p.exists() for p in stale) and (ckpts / "notes.txt").exists()
    assert sorted(p.name for p in ckpts.glob("ckpt_*.pt")) == ["ckpt_10.pt", "ckpt_15.pt", "ckpt_5.pt"]


# --------------------------------------------------------------------------------------------------
# Item 22: offrl-eval checkpoints with an unreadable checkpoint
# --------------------------------------------------------------------------------------------------


def test_eval_with_unreadable_checkpoints_exits_1_with_one_line_each(tmp_path, capsys):
    pytest.importorskip("pybullet")
    from robot_eval.cli import main as eval_main
    from robot_eval.collect import collect
    from robot_eval.dataset import save_dataset
    from robot_eval.tasks import task_spec

    ds = save_dataset(tmp_path / "pp.npz", collect(task_spec("pickplace"), 2, noise=0.1, seed=0))
    run = tmp_path / "run"
    res = train(["--dataset", str(ds), "--log-dir", str(run), "--steps", "10", "--ckpt-every", "5",
                 "--log-every", "5", *TINY])  # fmt: skip
    assert res.exit_code == 0, res.output
    ckpts = run / "checkpoints"
    torn = ckpts / "ckpt_5.pt"
    torn.write_bytes(torn.read_bytes()[:1000])  # a torn copy
    with (ckpts / "ckpt_7.pt").open("wb") as f:  # a pickle that is not a tensor checkpoint
        pickle.dump({"payload": object.__name__}, f, protocol=4)
    capsys.readouterr()
    rc = eval_main(["checkpoints", str(run), "-n", "1", "-q", "--format", "json"])
    out, err = capsys.readouterr()
    assert rc == 1
    payload = json.loads(out)
    assert [s["step"] for s in payload["scores"]] == [10]  # the readable one is still scored
    assert Path(payload["files"]["csv"]).is_file()
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("offrl-eval: error: ") for line in lines)
    assert str(torn) in lines[0] and "truncated or corrupt" in lines[0]
    assert str(ckpts / "ckpt_7.pt") in lines[1] and "safe loader" in lines[1]
    for line in lines:
        assert line.count(str(ckpts)) == 1 and len(line) < 300
        assert "PyTorch 2.6" not in line and "weights_only" not in line and "miniz" not in line
