"""Forward-pass scores of checkpoints: one pass of each checkpoint's networks over held-out transitions (issue 16, T2).

Why: the trainer's selection signals (reference_trainer/signals.py) are read on 256 transitions at log time; a
checkpoint can be scored after the fact, on every held-out transition, at the cost of one forward pass — a few
milliseconds per checkpoint, against thousands of gradient steps for FQE. These scores are what the `forward` tier of
`offrl-select` ranks on.

Which transitions: the run's own held-out split when it was trained with `--holdout-fraction` (the same trajectories,
chosen by SIGNAL_SEED), else a held-out dataset the caller passes (e.g. fresh trajectories of the same collector),
else — said in the result, never silently — the training data itself.

The scores (critic 1, eval mode, deterministic policy action tanh(mean)):
- the selection signals of `SignalProbe` on the held-out transitions (policy_data_distance, dr3_dot, srank,
  critic_weight_norm, soft_opc where rewards are success-like, td_error_holdout, q_data_holdout);
- `v_s0`: the critic's own value of the policy at the held-out initial states, mean Q(s0, pi(s0)) — FQE's read-out
  with the training critic in place of a fitted one;
- `policy_gain`: mean Q(s, pi(s)) - Q(s, a_data): how much better than the data the critic believes the policy is (a
  large value is the critic rewarding out-of-distribution actions).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reference_trainer.agent import ActorCriticAgent
from reference_trainer.checkpoint import read_checkpoint
from reference_trainer.config import TrainConfig
from reference_trainer.data import OfflineDataset, holdout_split, load_dataset
from reference_trainer.signals import SIGNAL_SEED, SignalProbe, policy_data_distance

#: Held-out transitions read per checkpoint: all of them up to this many (a fixed, seeded subset beyond it).
FORWARD_BATCH = 4096


@dataclass
class ForwardScores:
    """Scores per checkpoint step, and where they were read."""

    scores: dict[int, dict[str, float]]
    data: str  # "holdout split" | "held-out dataset <path>" | "training data"
    transitions: int
    cpu_seconds: float
    skipped: list[str] = field(default_factory=list)  # "<path>: <reason>" for unreadable checkpoints

    def to_dict(self) -> dict[str, object]:
        return {
            "scores": {str(s): v for s, v in sorted(self.scores.items())},
            "data": self.data,
            "transitions": self.transitions,
            "cpu_seconds": self.cpu_seconds,
            "skipped": self.skipped,
        }


def _agent(payload: dict[str, object]) -> ActorCriticAgent:
    from reference_trainer.train import make_agent  # the trainer's factory (CQL or BRAC from the config)

    cfg = TrainConfig.from_dict(payload["config"])  # type: ignore[arg-type]
    agent = make_agent(cfg, torch.device("cpu"))
    agent.load_state_dict(payload["train_state"]["agent"])  # type: ignore[index]
    return agent


def _starts(ds: OfflineDataset) -> torch.Tensor:
    """Index of the first transition of every trajectory in `ds` (traj_ids are contiguous runs)."""
    ids = ds.traj_ids
    if not len(ids):
        return torch.zeros(1, dtype=torch.long)
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return torch.as_tensor(first, dtype=torch.long)


def held_out_data(
    dataset: str | Path, config: dict[str, object], holdout_dataset: str | Path | None = None
) -> tuple[OfflineDataset, str]:
    """The transitions to score on (see the module docstring for the order of preference)."""
    cfg = TrainConfig.from_dict(config)
    gamma = cfg.gamma
    if holdout_dataset is not None:
        return load_dataset(holdout_dataset, gamma=gamma), f"held-out dataset {holdout_dataset}"
    ds = load_dataset(dataset, gamma=gamma)
    if cfg.holdout_fraction > 0.0:
        _, held = holdout_split(ds.traj_ids, cfg.holdout_fraction, SIGNAL_SEED)
        return ds.subset(held), "holdout split"
    return ds, "training data"


@torch.no_grad()
def _held_out(agent: ActorCriticAgent, probe: SignalProbe, ds: OfflineDataset) -> dict[str, float]:
    """The held-out readings on the probe's fixed batch (the probe itself reads `ds` as its training data, so its
    held-out signals would repeat the same passes): TD error, dataset Q, policy distance, policy gain; V(s0)."""
    critic = agent.critic_nets[0]
    fx = probe.train
    q_data = critic.forward_from(critic.encode(fx.obs), fx.batch.actions).q.float()
    y, _ = agent.backup_target(fx.next_obs, fx.batch.rewards, fx.batch.dones, fx.eps)
    pi = torch.tanh(agent.actor(fx.obs)[0])
    q_pi = critic.forward_from(critic.encode(fx.obs), pi).q.float()
    s0 = probe._obs(ds.observations[_starts(ds)])
    v0 = critic.forward_from(critic.encode(s0), torch.tanh(agent.actor(s0)[0])).q.float()
    return {
        "td_error_holdout": float((q_data - y.float()).pow(2).mean()),
        "q_data_holdout": float(q_data.mean()),
        "policy_data_distance_holdout": float(policy_data_distance(pi, fx.batch.actions)),
        "v_s0": float(v0.mean()),
        "policy_gain": float((q_pi - q_data).mean()),
    }


def forward_scores(
    checkpoints: Sequence[tuple[int, Path]],
    dataset: str | Path,
    holdout_dataset: str | Path | None = None,
    batch: int = FORWARD_BATCH,
    threads: int = 1,
) -> ForwardScores:
    """Score every (step, path) checkpoint on the held-out transitions. ValueError (with the path) when the dataset
    cannot be read; an unreadable checkpoint is skipped and named in `skipped`."""
    torch.set_num_threads(max(1, threads))
    t0 = time.process_time()
    scores: dict[int, dict[str, float]] = {}
    skipped: list[str] = []
    data: OfflineDataset | None = None
    where = ""
    for step, path in checkpoints:
        try:
            payload = read_checkpoint(Path(path))
            if data is None:
                data, where = held_out_data(dataset, payload["config"], holdout_dataset)
            agent = _agent(payload)
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            skipped.append(f"{path}: {exc}")
            continue
        for net in agent.critic_nets:
            net.eval()
        agent.actor.eval()
        probe = SignalProbe(agent, data, None, batch_size=batch)
        vals = {k: float(v) for k, v in probe.compute().items()}
        vals.update(_held_out(agent, probe, data))
        scores[int(step)] = vals
    return ForwardScores(scores, where, 0 if data is None else data.size, time.process_time() - t0, skipped)
