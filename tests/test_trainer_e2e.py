"""End-to-end: tiny CQL and BRAC runs whose logs the analyzer reads with no configuration,
remedy flags that visibly change what is logged, and load_policy on the checkpoints."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from analyzer.ingest import load_runs  # noqa: E402
from reference_trainer.config import TrainConfig  # noqa: E402
from reference_trainer.policy import load_policy  # noqa: E402
from reference_trainer.train import train  # noqa: E402

TINY = dict(hidden=16, depth=2, batch_size=32, n_actions=4, threads=1)


def make_dataset(path: Path, n: int = 600, obs_dim: int = 4, act_dim: int = 2, meta: dict | None = None,
                 image_size: int = 0, horizon: int = 30) -> Path:  # fmt: skip
    """A small dataset whose metadata carries its own truth (gamma, horizon, reward range)."""
    rng = np.random.default_rng(0)
    if image_size:
        obs = rng.integers(0, 256, size=(n, image_size, image_size, 3), dtype=np.uint8)
        nobs = np.roll(obs, -1, axis=0)
    else:
        obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
        nobs = (obs + 0.05 * rng.normal(size=obs.shape)).astype(np.float32)
    act = np.tanh(rng.normal(size=(n, act_dim))).astype(np.float32)
    rewards = (rng.random(n) < 0.2).astype(np.float32)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[horizon - 1 :: horizon] = True
    arrays = dict(observations=obs, actions=act, rewards=rewards, terminals=np.zeros(n, dtype=bool),
                  timeouts=timeouts, next_observations=nobs)  # fmt: skip
    if meta is not None:
        arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    meta = {"task": "toy", "gamma": 0.95, "horizon": 30, "reward_range": [0.0, 1.0], "mc_return_mean": 1.25}
    return make_dataset(tmp_path_factory.mktemp("data") / "toy.npz", meta=meta)


def run(dataset: Path, log_dir: Path, **kw) -> Path:
    cfg = TrainConfig(dataset=str(dataset), log_dir=str(log_dir), **{**TINY, **kw})
    return train(cfg, echo=lambda _m: None)


@pytest.mark.parametrize("algo", ["cql", "brac"])
def test_run_is_read_by_the_analyzer_without_config(tmp_path, dataset, algo):
    log_dir = run(dataset, tmp_path / algo, algo=algo, steps=120, log_every=20, ckpt_every=40, bc_steps=30)
    runs, errors = load_runs([log_dir])
    assert errors == [] and len(runs) == 1
    r = runs[0]
    assert r.framework == "offrl"
    assert r.metadata.algorithm == algo
    assert r.metadata.gamma == pytest.approx(0.95)
    assert r.metadata.horizon == 30
    assert r.metadata.reward_range == (0.0, 1.0)
    assert r.metadata.dataset_mc_return == pytest.approx(1.25)
    assert r.metadata.capacity.depth == 2
    assert [c.step for c in r.checkpoints] == [40, 80, 120]
    expected = {"q_data", "q_policy", "q_target", "td_error", "temperature", "critic_loss", "policy_loss"}
    expected |= {"cql_gap", "cql_term", "alpha"} if algo == "cql" else {"brac_divergence"}
    assert expected <= set(r.series)
    for name in expected:
        s = r.series[name]
        assert s.steps.tolist() == [20, 40, 60, 80, 100, 120], name
        assert np.isfinite(s.values).all(), name
    # the event file and the CSV carry the same window averages
    rows = read_csv(log_dir / "progress.csv")
    assert [int(row["step"]) for row in rows] == [20, 40, 60, 80, 100, 120]
    np.testing.assert_allclose(
        [float(row["offrl/td_error"]) for row in rows], r.series["td_error"].values, rtol=1e-6
    )
    cfg = json.loads((log_dir / "config.json").read_text())
    assert cfg["algo"] == algo and cfg["dataset_size"] == 600 and cfg["obs_dim"] == 4 and cfg["act_dim"] == 2
    assert cfg["task"] == "toy" and Path(cfg["dataset"]).is_absolute()


def test_logged_values_are_window_averages(tmp_path, dataset):
    """Logging every step and every 4 steps: the 4-step rows are the mean of the 1-step rows."""
    every1 = read_csv(
        run(dataset, tmp_path / "a", steps=8, log_every=1, ckpt_every=8, bc_steps=0) / "progress.csv"
    )
    every4 = read_csv(
        run(dataset, tmp_path / "b", steps=8, log_every=4, ckpt_every=8, bc_steps=0) / "progress.csv"
    )
    for k, row in enumerate(every4):
        window = every1[4 * k : 4 * k + 4]
        assert float(row["offrl/q_data"]) == pytest.approx(
            np.mean([float(w["offrl/q_data"]) for w in window]), rel=1e-5
        )


def _last(log_dir: Path) -> dict[str, float]:
    row = read_csv(log_dir / "progress.csv")[-1]
    return {k.removeprefix("offrl/"): float(v) for k, v in row.items() if k != "step"}


def test_remedy_flags_change_logged_terms(tmp_path, dataset):
    common = dict(steps=30, log_every=10, ckpt_every=30, bc_steps=0, seed=3)
    base = _last(run(dataset, tmp_path / "base", **common))
    assert "dr3_term" not in base and "vib_term" not in base
    dropout = _last(run(dataset, tmp_path / "dropout", dropout=0.3, **common))
    l2 = _last(run(dataset, tmp_path / "l2", l2=1.0, **common))
    l1 = _last(run(dataset, tmp_path / "l1", l1=1.0, **common))
    vib = _last(run(dataset, tmp_path / "vib", vib=0.1, **common))
    dr3 = _last(run(dataset, tmp_path / "dr3", dr3=0.1, **common))
    for name, other in (("dropout", dropout), ("l2", l2), ("l1", l1)):
        assert other["q_data"] != pytest.approx(base["q_data"], rel=1e-6), name
    assert vib["vib_term"] > 0 and "dr3_term" not in vib
    assert dr3["dr3_term"] > 0 and "vib_term" not in dr3
    # the weighted remedy terms are inside the logged critic loss
    assert vib["critic_loss"] == pytest.approx(
        vib["td_error"] + vib["cql_term"] + 0.1 * vib["vib_term"], rel=1e-4
    )
    assert dr3["critic_loss"] == pytest.approx(
        dr3["td_error"] + dr3["cql_term"] + 0.1 * dr3["dr3_term"], rel=1e-4
    )
    cfg = json.loads((tmp_path / "dr3" / "config.json").read_text())
    assert cfg["remedies"] == ["dr3"]


def test_load_policy_state(tmp_path, dataset):
    log_dir = run(dataset, tmp_path / "p", steps=20, log_every=10, ckpt_every=10, bc_steps=0)
    policy = load_policy(log_dir / "checkpoints" / "ckpt_20.pt")
    assert policy.step == 20
    rng = np.random.default_rng(0)
    for obs in [rng.normal(size=4).astype(np.float32), np.full(4, 1e6, dtype=np.float32), np.zeros(4)]:
        a = policy(obs)
        assert a.shape == (2,) and a.dtype == np.float32
        assert np.all(np.abs(a) <= 1.0)
    np.testing.assert_array_equal(policy(obs), policy(obs))  # deterministic
    with pytest.raises(ValueError, match="shape"):
        policy(np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match="not found"):
        load_policy(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="unreadable"):
        load_policy(bad)


@pytest.mark.parametrize("encoder", ["conv", "resnet"])
def test_image_dataset_with_encoder_and_policy(tmp_path, encoder):
    ds = make_dataset(tmp_path / "img.npz", n=64, image_size=12, horizon=16)
    log_dir = run(ds, tmp_path / "img", steps=4, log_every=2, ckpt_every=4, bc_steps=0, encoder=encoder, batch_size=8,
                  dropout=0.1)  # fmt: skip
    cfg = json.loads((log_dir / "config.json").read_text())
    assert cfg["obs_type"] == "image" and cfg["obs_shape"] == [12, 12, 3] and cfg["horizon"] == 16
    policy = load_policy(log_dir / "checkpoints" / "ckpt_4.pt")
    a = policy(np.zeros((12, 12, 3), dtype=np.uint8))
    assert a.shape == (2,) and np.all(np.abs(a) <= 1.0)
    rows = read_csv(log_dir / "progress.csv")
    assert [int(r["step"]) for r in rows] == [2, 4]


def test_plain_npz_takes_metadata_from_flags_or_data(tmp_path):
    ds = make_dataset(tmp_path / "plain.npz", horizon=25)
    log_dir = run(ds, tmp_path / "plain", steps=2, log_every=1, ckpt_every=2, bc_steps=0, gamma=0.9)
    cfg = json.loads((log_dir / "config.json").read_text())
    assert cfg["gamma"] == 0.9  # flag
    assert cfg["horizon"] == 25  # longest timeout-ended trajectory
    rewards = np.load(ds)["rewards"]
    assert cfg["reward_range"] == [float(rewards.min()), float(rewards.max())]
    assert cfg["task"] is None


def test_gamma_flag_overrides_metadata_and_recomputes_the_mc_return(tmp_path):
    """The stored MC return was computed at the collector's discount; a run at another discount must not report it."""
    ds = make_dataset(
        tmp_path / "m.npz", horizon=30, meta={"gamma": 0.99, "horizon": 30, "mc_return_mean": 123.0}
    )
    from reference_trainer.data import discounted_returns, load_dataset, trajectory_starts

    assert load_dataset(ds).mc_return_mean == 123.0  # metadata's discount: the stored value
    assert load_dataset(ds, gamma=0.99).mc_return_mean == 123.0
    with np.load(ds) as z:
        starts = trajectory_starts(z["terminals"], z["timeouts"])
        truth = float(np.mean(discounted_returns(z["rewards"], z["terminals"], z["timeouts"], 0.9)[starts]))
    log_dir = run(ds, tmp_path / "g", steps=2, log_every=1, ckpt_every=2, bc_steps=0, gamma=0.9)
    cfg = json.loads((log_dir / "config.json").read_text())
    assert cfg["gamma"] == 0.9
    assert cfg["dataset_mc_return"] == pytest.approx(truth)
    assert truth < 123.0


def test_same_seed_same_logs_other_seed_other_logs(tmp_path, dataset):
    common = dict(steps=10, log_every=5, ckpt_every=10, bc_steps=2, algo="brac")
    a = (run(dataset, tmp_path / "a", seed=1, **common) / "progress.csv").read_text()
    b = (run(dataset, tmp_path / "b", seed=1, **common) / "progress.csv").read_text()
    c = (run(dataset, tmp_path / "c", seed=2, **common) / "progress.csv").read_text()
    assert a == b
    assert a != c


def test_brac_policy_regularization_variant(tmp_path, dataset):
    log_dir = run(dataset, tmp_path / "pr", algo="brac", brac_variant="pr", steps=20, log_every=10, ckpt_every=20,
                  bc_steps=20, precision="bf16")  # fmt: skip
    last = _last(log_dir)
    assert np.isfinite(last["brac_divergence"]) and "cql_gap" not in last
    assert json.loads((log_dir / "config.json").read_text())["brac_variant"] == "pr"


@pytest.mark.parametrize("algo", ["cql", "brac"])
def test_policy_learns_the_best_action_of_a_bandit(tmp_path, algo):
    """One-step episodes, uniform data, reward -(a - 0.5)^2: the policy must move from ~0 towards 0.5."""
    rng = np.random.default_rng(0)
    n = 2000
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    arrays = dict(observations=obs, actions=act, rewards=(-((act[:, 0] - 0.5) ** 2)).astype(np.float32),
                  terminals=np.ones(n, dtype=bool), timeouts=np.zeros(n, dtype=bool), next_observations=obs)  # fmt: skip
    np.savez(tmp_path / "bandit.npz", **arrays)
    log_dir = run(tmp_path / "bandit.npz", tmp_path / "run", algo=algo, steps=800, log_every=100, ckpt_every=800,
                  bc_steps=50, hidden=32, batch_size=64)  # fmt: skip
    policy = load_policy(log_dir / "checkpoints" / "ckpt_800.pt")
    chosen = np.array([policy(o)[0] for o in obs[:50]])
    assert chosen.mean() > 0.2, chosen.mean()
    assert np.all(chosen < 0.95)
