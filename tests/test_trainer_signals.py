"""Selection signals of the reference trainer (issue 16, item 1): each measure on a case whose answer is known, the
held-out split, the logged canonical tags, and training left exactly as it was."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from analyzer.ingest import load_runs  # noqa: E402
from analyzer.metrics import CANONICAL_NAMES  # noqa: E402
from reference_trainer.config import ConfigError, TrainConfig  # noqa: E402
from reference_trainer.cql import CQLAgent  # noqa: E402
from reference_trainer.data import (  # noqa: E402
    Batch,
    OfflineDataset,
    holdout_split,
    load_dataset,
    trajectory_ids,
)
from reference_trainer.signals import (  # noqa: E402
    HOLDOUT_SIGNALS,
    SIGNAL_SEED,
    TRAIN_SIGNALS,
    SignalProbe,
    policy_data_distance,
    soft_opc,
    srank,
    success_mask,
    weight_norm,
)
from reference_trainer.train import train  # noqa: E402

ALL_SIGNALS = (*TRAIN_SIGNALS, "soft_opc", *HOLDOUT_SIGNALS)
TINY = dict(hidden=16, depth=2, batch_size=32, n_actions=4, threads=1)


# ---------------------------------------------------------------------------- measures with a known answer
def _features_with_spectrum(sv: list[float], rows: int = 256, dim: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(rows, len(sv), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(dim, len(sv), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(sv, dtype=torch.float64)) @ v.T


@pytest.mark.parametrize(
    ("sv", "expected"),
    [
        ([1.0] * 5, 5),  # 5 equal directions: all 5 needed
        ([60.0, 30.0, 9.5, 0.5], 3),  # cumulative 0.6, 0.9, 0.995: 3 hold >= 99 %
        ([1.0, 1e-4, 1e-4], 1),  # one direction holds > 99.9 %
        ([1.0] * 12, 12),  # full rank
    ],
)
def test_srank_of_features_with_a_known_spectrum(sv, expected):
    assert srank(_features_with_spectrum(sv)) == expected
    assert srank(_features_with_spectrum(sv).float()) == expected  # as the critic gives them


def test_srank_of_zero_features_is_zero():
    assert srank(torch.zeros(256, 16)) == 0


def test_policy_distance_weight_norm_and_soft_opc_by_hand():
    a = torch.tensor([[0.0, 0.5], [1.0, -1.0]])
    b = torch.tensor([[0.5, 0.5], [0.0, -1.0]])
    assert float(policy_data_distance(a, b)) == pytest.approx((0.25 + 0 + 1 + 0) / 4)
    params = [torch.tensor([3.0, 0.0]), torch.tensor([[4.0]]), torch.tensor([12.0])]
    assert float(weight_norm(params)) == pytest.approx(13.0)  # sqrt(9 + 16 + 144)
    assert float(soft_opc(torch.tensor([2.0, 4.0]), torch.tensor([0.0, 1.0, 2.0, 5.0]))) == pytest.approx(1.0)


# ---------------------------------------------------------------------------- datasets
def _dataset(n_traj: int = 10, length: int = 8, obs_dim: int = 3, act_dim: int = 2, success: tuple[int, ...] = (),
             actions: np.ndarray | None = None, seed: int = 0) -> OfflineDataset:  # fmt: skip
    """`n_traj` trajectories of `length` steps (timeouts at the ends); the ones in `success` get reward 1 at their
    last step, all other rewards are 0. obs[:, 0] is the transition index, so a batch says where it came from."""
    rng = np.random.default_rng(seed)
    n = n_traj * length
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    obs[:, 0] = np.arange(n)
    rewards = np.zeros(n, dtype=np.float32)
    for t in success:
        rewards[t * length + length - 1] = 1.0
    timeouts = np.zeros(n, dtype=bool)
    timeouts[length - 1 :: length] = True
    act = actions if actions is not None else np.tanh(rng.normal(size=(n, act_dim))).astype(np.float32)
    t = torch.as_tensor
    return OfflineDataset(path=Path("mem.npz"), observations=t(obs), actions=t(act), rewards=t(rewards),
                          next_observations=t(obs + 0.1), dones=torch.zeros(n),
                          traj_ids=trajectory_ids(np.zeros(n, bool), timeouts))  # fmt: skip


def _agent(obs_dim: int = 3, act_dim: int = 2, **kw) -> CQLAgent:
    torch.manual_seed(0)
    cfg = TrainConfig(obs_shape=(obs_dim,), act_dim=act_dim, hidden=16, depth=2, n_actions=4, bc_steps=0,
                      gamma=0.9, **kw)  # fmt: skip
    return CQLAgent(cfg, torch.device("cpu"))


def test_policy_distance_is_zero_when_the_actor_outputs_the_data_action():
    agent = _agent()
    ds = _dataset()
    with torch.no_grad():
        ds.actions = torch.tanh(agent.actor(ds.observations)[0])
    values = SignalProbe(agent, ds).compute()
    assert values["policy_data_distance"] == 0.0
    shifted = _dataset()
    shifted.actions = (ds.actions + 0.1).clamp(-1, 1)
    # the whole 80-row dataset is the fixed batch
    expected = float(((shifted.actions - ds.actions) ** 2).mean())
    assert SignalProbe(agent, shifted).compute()["policy_data_distance"] == pytest.approx(expected, rel=1e-5)
    assert expected > 0.005


def test_weight_norm_is_the_l2_norm_of_critic_1():
    agent = _agent()
    with torch.no_grad():
        agent.critic_nets[1].out.weight.mul_(100.0)  # critic 2 does not count
    squares = [float((p.detach().double() ** 2).sum()) for p in agent.critic_nets[0].parameters()]
    by_hand = math.sqrt(sum(squares))
    assert SignalProbe(agent, _dataset()).compute()["critic_weight_norm"] == pytest.approx(by_hand, rel=1e-6)


def _constructed_q_agent() -> CQLAgent:
    """A critic 1 whose Q(s, a) = relu(s[1]): one hidden layer that copies s[1], output weight 1."""
    agent = _agent(obs_dim=3)
    c = agent.critic_nets[0]
    with torch.no_grad():
        for p in c.parameters():
            p.zero_()
        c.fc_obs.weight[0, 1] = 1.0
        c.hidden_layers[0].weight[0, 0] = 1.0
        c.out.weight[0, 0] = 1.0
    return agent


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_soft_opc_has_the_sign_of_the_constructed_q(sign):
    """Successful trajectories have Q = 2 + 2 * sign... i.e. Q 4 (sign +1) or 0 (sign -1); the others Q 2."""
    success = (1, 4, 7)
    ds = _dataset(success=success)
    q_success, q_other = 2.0 + 2.0 * sign, 2.0
    per_row = np.where(np.isin(ds.traj_ids, success), q_success, q_other).astype(np.float32)
    ds.observations[:, 1] = torch.as_tensor(per_row)
    values = SignalProbe(_constructed_q_agent(), ds).compute()
    share = len(success) / 10
    expected = q_success - (share * q_success + (1 - share) * q_other)  # whole dataset = fixed batch
    assert values["soft_opc"] == pytest.approx(expected, rel=1e-5)
    assert np.sign(values["soft_opc"]) == sign


def test_soft_opc_only_where_rewards_are_success_like():
    assert success_mask(_dataset(success=(0, 3))) is not None
    assert success_mask(_dataset()) is None  # no trajectory succeeds: nothing to contrast
    assert success_mask(_dataset(success=tuple(range(10)))) is None  # every one does
    dense = _dataset(success=(0, 3))
    dense.rewards = dense.rewards * 0.5  # rewards 0 / 0.5: not a success signal
    assert success_mask(dense) is None
    agent = _agent()
    assert "soft_opc" not in SignalProbe(agent, _dataset()).names
    assert "soft_opc" in SignalProbe(agent, _dataset(success=(2,))).names


def test_holdout_td_and_q_are_the_training_formulas_on_held_out_data():
    """With the mean backup (no noise), the held-out TD error and Q on a batch equal what an update logs for it."""
    agent = _agent(backup="mean")
    held = _dataset(n_traj=4, seed=1)
    values = SignalProbe(agent, _dataset(), held).compute()
    whole = Batch(held.observations, held.actions, held.rewards, held.next_observations, held.dones)
    _, metrics = agent.losses(whole, bc_phase=False)
    logged = dict(zip(agent.metric_names, metrics.tolist(), strict=True))
    assert values["td_error_holdout"] == pytest.approx(logged["td_error"], rel=1e-5)
    assert values["q_data_holdout"] == pytest.approx(logged["q_data"], rel=1e-5)
    assert set(HOLDOUT_SIGNALS) <= set(values)


def test_dr3_dot_is_the_remedy_term_on_the_fixed_batch():
    agent = _agent(backup="mean", dr3=1.0)
    ds = _dataset()
    values = SignalProbe(agent, ds).compute()
    whole = Batch(ds.observations, ds.actions, ds.rewards, ds.next_observations, ds.dones)
    _, metrics = agent.losses(whole, bc_phase=False)
    assert values["dr3_dot"] == pytest.approx(metrics[agent.metric_names.index("dr3_term")].item(), rel=1e-5)


def test_probe_leaves_the_global_rng_and_the_critic_mode_alone():
    agent = _agent(dropout=0.5)
    probe = SignalProbe(agent, _dataset(success=(1,)), _dataset(seed=2))
    state = torch.get_rng_state()
    first = probe.compute()
    assert torch.equal(torch.get_rng_state(), state)
    assert agent.critics.training
    assert probe.compute() == first  # fixed batches, fixed noise, dropout off: same weights, same values


# ---------------------------------------------------------------------------- the held-out split
def test_holdout_split_takes_whole_trajectories_fixed_by_seed():
    tid = trajectory_ids(np.zeros(100, bool), np.arange(100) % 10 == 9)  # 10 trajectories of 10
    train_idx, held = holdout_split(tid, 0.2, seed=7)
    assert len(held) == 20 and len(train_idx) == 80
    assert set(train_idx) | set(held) == set(range(100)) and not set(train_idx) & set(held)
    assert not set(tid[held]) & set(tid[train_idx])  # no trajectory on both sides
    again, held_again = holdout_split(tid, 0.2, seed=7)
    assert np.array_equal(held, held_again) and np.array_equal(train_idx, again)
    others = {tuple(holdout_split(tid, 0.2, seed=s)[1]) for s in range(8)}
    assert len(others) > 1  # the seed chooses
    assert len(holdout_split(tid, 0.0, seed=7)[1]) == 0


def test_holdout_split_of_one_trajectory_is_by_transition_and_keeps_both_sides():
    tid = np.zeros(50, dtype=np.int64)
    train_idx, held = holdout_split(tid, 0.1, seed=0)
    assert len(held) == 5 and len(train_idx) == 45
    train_idx, held = holdout_split(tid, 0.999, seed=0)
    assert len(train_idx) == 1  # never empty
    two = trajectory_ids(np.zeros(20, bool), np.arange(20) % 10 == 9)
    train_idx, held = holdout_split(two, 0.9, seed=0)
    assert len(train_idx) == 10 and len(held) == 10


def test_holdout_fraction_is_validated():
    with pytest.raises(ConfigError, match="--holdout-fraction"):
        TrainConfig(holdout_fraction=1.0).validate()
    with pytest.raises(ConfigError, match="--holdout-fraction"):
        TrainConfig(holdout_fraction=-0.1).validate()


# ---------------------------------------------------------------------------- whole runs
def _save(ds: OfflineDataset, path: Path) -> Path:
    n = ds.size
    ends = np.r_[ds.traj_ids[1:] != ds.traj_ids[:-1], True]
    np.savez(path, observations=ds.observations.numpy(), actions=ds.actions.numpy(), rewards=ds.rewards.numpy(),
             terminals=np.zeros(n, bool), timeouts=ends, next_observations=ds.next_observations.numpy())  # fmt: skip
    return path


@pytest.fixture(scope="module")
def success_data(tmp_path_factory) -> Path:
    ds = _dataset(n_traj=20, length=15, success=tuple(range(0, 20, 3)), seed=3)
    return _save(ds, tmp_path_factory.mktemp("sig") / "succ.npz")


def _run(data: Path, log_dir: Path, **kw) -> Path:
    cfg = TrainConfig(dataset=str(data), log_dir=str(log_dir), **{**TINY, **kw})
    return train(cfg, echo=lambda _m: None)


def _rows(log_dir: Path) -> list[dict[str, str]]:
    with (log_dir / "progress.csv").open() as f:
        return list(csv.DictReader(f))


def test_logs_carry_the_canonical_signal_tags_read_by_the_analyzer(tmp_path, success_data):
    log_dir = _run(success_data, tmp_path / "run", steps=40, log_every=10, ckpt_every=20, bc_steps=10,
                   holdout_fraction=0.2)  # fmt: skip
    rows = _rows(log_dir)
    assert all(n in CANONICAL_NAMES for n in ALL_SIGNALS)
    assert {f"offrl/{n}" for n in ALL_SIGNALS} <= set(rows[0])
    assert all(math.isfinite(float(r[f"offrl/{n}"])) for r in rows for n in ALL_SIGNALS)
    (run,), errors = load_runs([log_dir])
    assert errors == [] and run.framework == "offrl"
    for name in ALL_SIGNALS:
        s = run.series[name]
        assert s.kind == "logged" and s.steps.tolist() == [10, 20, 30, 40], name
    cfg = json.loads((log_dir / "config.json").read_text())
    assert cfg["holdout_fraction"] == 0.2 and cfg["holdout_size"] == 60  # 4 of 20 trajectories of 15
    assert cfg["dataset_size"] == 300


def test_without_holdout_only_the_training_signals_and_none_with_no_signals(tmp_path, success_data):
    log_dir = _run(success_data, tmp_path / "a", steps=10, log_every=5, ckpt_every=10, bc_steps=0)
    header = set(_rows(log_dir)[0])
    assert {f"offrl/{n}" for n in (*TRAIN_SIGNALS, "soft_opc")} <= header
    assert not {f"offrl/{n}" for n in HOLDOUT_SIGNALS} & header
    header = set(_rows(_run(success_data, tmp_path / "b", steps=10, log_every=5, ckpt_every=10, bc_steps=0,
                            no_signals=True))[0])  # fmt: skip
    assert not {f"offrl/{n}" for n in ALL_SIGNALS} & header


def test_held_out_transitions_never_reach_a_training_batch(tmp_path, success_data, monkeypatch):
    seen: list[np.ndarray] = []
    original = OfflineDataset.sample

    def spy(self, batch_size, generator=None):
        batch = original(self, batch_size, generator)
        seen.append(batch.obs[:, 0].numpy().astype(int))
        return batch

    monkeypatch.setattr(OfflineDataset, "sample", spy)
    _run(success_data, tmp_path / "run", algo="brac", steps=30, log_every=10, ckpt_every=30, bc_steps=20,
         holdout_fraction=0.25)  # fmt: skip
    used = np.unique(np.concatenate(seen))  # BRAC's behaviour fit and every RL step
    _, held = holdout_split(load_dataset(success_data).traj_ids, 0.25, SIGNAL_SEED)
    assert len(held) > 0 and not set(used) & set(held)
    assert len(used) > 150  # the spy saw the training data


def test_signals_do_not_change_training_bit_for_bit(tmp_path, success_data):
    """holdout_fraction 0: the training columns and the weights are those of a run without signals (main's trainer
    gave the same, checked when the signals were added: docs/trainer.md)."""
    kw = dict(steps=30, log_every=5, ckpt_every=30, bc_steps=10, dropout=0.1)
    with_signals = _run(success_data, tmp_path / "with", **kw)
    without = _run(success_data, tmp_path / "without", no_signals=True, **kw)
    a, b = _rows(with_signals), _rows(without)
    assert len(a) == len(b) == 6
    for ra, rb in zip(a, b, strict=True):
        assert {k: ra[k] for k in rb} == rb  # same strings: bit for bit
    wa = torch.load(with_signals / "checkpoints" / "ckpt_30.pt", weights_only=True)["train_state"]["agent"]
    wb = torch.load(without / "checkpoints" / "ckpt_30.pt", weights_only=True)["train_state"]["agent"]
    for part in ("actor", "critics", "targets"):
        for k, v in wa[part].items():
            assert torch.equal(v, wb[part][k]), (part, k)


def test_resume_of_a_run_from_before_the_signals_continues_without_them(tmp_path, success_data):
    log_dir = _run(success_data, tmp_path / "old", steps=20, log_every=5, ckpt_every=10, bc_steps=0,
                   no_signals=True)  # fmt: skip
    # make it look like a run of the trainer before the signals: no such keys in its checkpoints and config.json
    for ckpt in (log_dir / "checkpoints").glob("*.pt"):
        payload = torch.load(ckpt, weights_only=True)
        for key in ("no_signals", "holdout_fraction", "holdout_size"):
            del payload["config"][key]
        torch.save(payload, ckpt)
    (log_dir / "checkpoints" / "ckpt_20.pt").unlink()
    messages: list[str] = []
    cfg = TrainConfig(dataset=str(success_data), log_dir=str(log_dir), resume=True, steps=30, log_every=5,
                      ckpt_every=10, bc_steps=0, **TINY)  # fmt: skip
    train(cfg, echo=messages.append)
    assert any("without selection signals" in m for m in messages)
    rows = _rows(log_dir)
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20, 25, 30]
    assert not any(k.removeprefix("offrl/") in ALL_SIGNALS for k in rows[0])
    with pytest.raises(ConfigError, match="holdout_fraction"):
        _run(success_data, log_dir, resume=True, steps=40, log_every=5, ckpt_every=10, bc_steps=0,
             holdout_fraction=0.2)  # fmt: skip


def test_the_analyzer_judges_a_run_with_signals_like_the_same_run_without(tmp_path, success_data):
    """No rule reads the signals yet (issue 16 item 2): a run with them is judged exactly like the same run without."""
    from analyzer import analyze

    kw = dict(steps=40, log_every=4, ckpt_every=8, bc_steps=8, holdout_fraction=0.2)
    with_signals = _run(success_data, tmp_path / "with", **kw)
    without = _run(success_data, tmp_path / "without", no_signals=True, **kw)
    a, b = (analyze([d]).runs[0] for d in (with_signals, without))
    assert set(ALL_SIGNALS) <= set(a.run.series) and not set(ALL_SIGNALS) & set(b.run.series)
    assert (a.verdict, a.verdict_reason, a.peak_step) == (b.verdict, b.verdict_reason, b.peak_step)
    assert (a.checkpoint.step if a.checkpoint else None) == (b.checkpoint.step if b.checkpoint else None)
    strip = lambda r: [(f.code, f.level, f.message.replace("without", "with")) for f in r.findings]  # noqa: E731
    assert strip(a) == strip(b)
