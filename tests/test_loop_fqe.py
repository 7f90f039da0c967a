"""FQE on a dataset whose true value is known for every policy: constant reward r, no terminals, discount gamma
-> Q^pi = r / (1 - gamma) for any pi (timeouts bootstrap, as in the trainer)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _dataset(path, n_traj=8, horizon=10, reward=0.5, gamma=0.5):
    rng = np.random.default_rng(0)
    n = n_traj * horizon
    obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[horizon - 1 :: horizon] = True
    np.savez(
        path,
        observations=obs[:-1],
        next_observations=obs[1:],
        actions=rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        rewards=np.full(n, reward, np.float32),
        terminals=np.zeros(n, bool),
        timeouts=timeouts,
        metadata=np.array(json.dumps({"gamma": gamma, "horizon": horizon, "reward_range": [0, 1]})),
    )


def test_fqe_recovers_known_value_for_every_checkpoint(tmp_path):
    from reference_trainer.cli import main as train_main
    from reference_trainer.fqe import FQEConfig, fit_fqe

    data = tmp_path / "d.npz"
    _dataset(data)
    run = tmp_path / "run"
    args = [
        "--dataset",
        str(data),
        "--log-dir",
        str(run),
        "--steps",
        "4",
        "--ckpt-every",
        "2",
        "--log-every",
        "2",
    ]
    args += ["--hidden", "8", "--depth", "1", "--bc-steps", "1", "--batch-size", "8", "--n-actions", "2"]
    try:
        train_main(args)
    except SystemExit as exc:  # typer apps may exit explicitly
        assert exc.code in (0, None)
    ckpts = sorted((run / "checkpoints").glob("ckpt_*.pt"))
    assert len(ckpts) == 2
    res = fit_fqe(ckpts, data, FQEConfig(steps=1500, hidden=32, batch_size=64, lr=3e-3, tau=0.05))
    assert [r.step for r in res] == [2, 4]
    for r in res:
        assert r.v_s0 == pytest.approx(1.0, abs=0.1)  # 0.5 / (1 - 0.5)
        assert r.td_error < 0.01
    # a run that overrode the discount is evaluated at its own: 0.5 / (1 - 0.75) = 2
    (r,) = fit_fqe(
        ckpts[:1], data, FQEConfig(steps=1500, hidden=32, batch_size=64, lr=3e-3, tau=0.05, gamma=0.75)
    )
    assert r.v_s0 == pytest.approx(2.0, abs=0.2)
    assert fit_fqe([], data) == []
    with pytest.raises(ValueError):
        fit_fqe([tmp_path / "missing.pt"], data, FQEConfig(steps=1))
