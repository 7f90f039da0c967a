"""Cheap checkpoint-selection signals, measured at every log write on fixed batches (issue 16, item 1).

What and why (docs/trainer.md, "Selection signals"): the logs-only checkpoint pick reads dataset Q; these are the other
cheap readings the literature found informative, logged under canonical names (analyzer/metrics.py) so that the
analyzer can read them from any framework that logs them:

- `policy_data_distance`: mean squared distance of pi's deterministic action tanh(mean) from the dataset action,
  per action dimension (Kurenkov & Kolesnikov's best cheap signal);
- `dr3_dot`: DR3's feature dot product phi(s, a) . phi(s', a') (Kumar et al. 2021), a' the backup action;
- `srank`: effective rank of the penultimate features (Kumar et al. 2021, "Implicit under-parameterization"), delta 0.01;
- `critic_weight_norm`: L2 norm of all parameters of critic 1;
- `soft_opc`: SoftOPC (Irpan et al. 2019): mean Q on transitions of successful trajectories minus mean Q on all;
- `td_error_holdout`, `q_data_holdout`: the training TD error and dataset Q on a held-out split never trained on;
- `policy_data_distance_holdout`: `policy_data_distance` on the held-out split. Why both: BC fits the training
  transitions more closely than unseen ones, so the training-batch distance at the end of the warm start is lower
  than the held-out one and any ratio to it is inflated (docs/selection.md); `drift` and OF004 read this one first.

How they stay cheap and leave training untouched: every batch (and the policy noise of a sampled TD backup) is drawn
once, from generators of their own seeded with SIGNAL_SEED, never from the global RNG the training steps use; the
critics are read in eval mode (no dropout; the VIB uses its latent mean) under no_grad; images are not cropped. A run
with the signals computes exactly the same training steps as one without them. Values are for critic 1, like every
other logged metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reference_trainer.agent import ActorCriticAgent
from reference_trainer.data import Batch, OfflineDataset
from reference_trainer.networks import Critic, images_to_float
from reference_trainer.remedies import dr3_term

#: Transitions per fixed batch: Kumar et al. compute srank on a batch of this size; every signal uses it.
SIGNAL_BATCH = 256
#: srank's threshold: the smallest k whose top-k singular values hold 1 - delta of their sum (Kumar et al. 2021).
SRANK_DELTA = 0.01
#: Seed of the fixed batches and of the held-out split: a constant, not `--seed`, so that runs of every seed on one
#: dataset read their signals on the same transitions and hold out the same trajectories.
SIGNAL_SEED = 20_160_916

TRAIN_SIGNALS = ("policy_data_distance", "dr3_dot", "srank", "critic_weight_norm")
HOLDOUT_SIGNALS = ("td_error_holdout", "q_data_holdout", "policy_data_distance_holdout")


# ---------------------------------------------------------------------------- the measures (pure functions)
def srank(features: torch.Tensor, delta: float = SRANK_DELTA) -> int:
    """Effective rank of a (batch, dim) feature matrix: min k with sum_{i<=k} sigma_i >= (1 - delta) sum_i sigma_i.

    0 for an all-zero matrix (no direction carries any feature)."""
    sv = torch.linalg.svdvals(features.detach().double())
    total = float(sv.sum())
    if not total > 0.0:
        return 0
    cum = torch.cumsum(sv, 0) / total
    return int(torch.searchsorted(cum, torch.tensor(1.0 - delta, dtype=cum.dtype)).item()) + 1


def policy_data_distance(policy_actions: torch.Tensor, data_actions: torch.Tensor) -> torch.Tensor:
    """Mean over states and action dimensions of (pi(s) - a_data)^2: per-dimension MSE, comparable across |A|."""
    return (policy_actions.float() - data_actions.float()).pow(2).mean()


def weight_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of the concatenation of all `params`."""
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.detach().float()) for p in params])
    )


def soft_opc(q_success: torch.Tensor, q_all: torch.Tensor) -> torch.Tensor:
    """SoftOPC (Irpan et al. 2019): mean Q on transitions of successful trajectories minus mean Q on all."""
    return q_success.float().mean() - q_all.float().mean()


def success_mask(ds: OfflineDataset) -> np.ndarray | None:
    """Per transition: does its trajectory succeed? None when the rewards are not success-like.

    Success-like: every reward is 0 or 1 (the sparse success reward of the paper's tasks). A trajectory succeeds when
    its undiscounted return is > 0, i.e. it got the reward at least once; that is how the COG/robot_eval datasets
    mark success, and it needs no per-task knowledge. None as well when no trajectory, or every one, succeeds: then
    SoftOPC has nothing to contrast."""
    rewards = ds.rewards.detach().cpu().numpy()
    if not len(rewards) or not np.isin(rewards, (0.0, 1.0)).all() or len(ds.traj_ids) != len(rewards):
        return None
    returns = np.bincount(ds.traj_ids, weights=rewards)
    mask = returns[ds.traj_ids] > 0
    if mask.all() or not mask.any():
        return None
    return mask


# ---------------------------------------------------------------------------- the probe
@dataclass
class _Fixed:
    """One fixed batch with its (uncropped) observations ready for the networks and its backup noise."""

    batch: Batch
    obs: torch.Tensor
    next_obs: torch.Tensor
    eps: torch.Tensor


def _draw(ds: OfflineDataset, rows: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Up to `size` of `rows` without replacement, sorted (so the batch does not depend on the draw order)."""
    if len(rows) <= size:
        return rows
    return np.sort(rng.choice(rows, size=size, replace=False))


class SignalProbe:
    """Computes the selection signals of one agent on batches fixed at construction.

    `train_ds`: the data trained on (policy distance, DR3 dot, srank, SoftOPC); `holdout_ds`: the held-out split, or
    None (then the held-out signals are not logged). `names` is what `compute` returns, fixed for the whole run, so
    the CSV header never changes; SoftOPC is in it only when the training data is success-like (`success_mask`)."""

    def __init__(
        self,
        agent: ActorCriticAgent,
        train_ds: OfflineDataset,
        holdout_ds: OfflineDataset | None = None,
        batch_size: int = SIGNAL_BATCH,
        seed: int = SIGNAL_SEED,
    ) -> None:
        self.agent = agent
        rng = np.random.default_rng(seed)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        self.train = self._fix(train_ds, _draw(train_ds, np.arange(train_ds.size), rng, batch_size), gen)
        mask = success_mask(train_ds)
        self.success = (
            None
            if mask is None
            else self._fix(train_ds, _draw(train_ds, np.flatnonzero(mask), rng, batch_size), gen)
        )
        self.holdout = (
            None
            if holdout_ds is None or holdout_ds.size == 0
            else self._fix(holdout_ds, _draw(holdout_ds, np.arange(holdout_ds.size), rng, batch_size), gen)
        )
        names = list(TRAIN_SIGNALS)
        if self.success is not None:
            names.append("soft_opc")
        if self.holdout is not None:
            names += HOLDOUT_SIGNALS
        self.names: tuple[str, ...] = tuple(names)

    def _fix(self, ds: OfflineDataset, rows: np.ndarray, gen: torch.Generator) -> _Fixed:
        t = torch.as_tensor(rows, dtype=torch.long, device=ds.actions.device)
        batch = Batch(
            obs=ds.observations[t],
            actions=ds.actions[t],
            rewards=ds.rewards[t],
            next_obs=ds.next_observations[t],
            dones=ds.dones[t],
        )
        eps = torch.randn(len(rows), ds.act_dim, generator=gen).to(ds.actions.device)
        return _Fixed(batch, self._obs(batch.obs), self._obs(batch.next_obs), eps)

    def _obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as the networks read them, without the random-crop augmentation (no RNG, no jitter)."""
        return images_to_float(obs) if self.agent.is_image else obs

    @torch.no_grad()
    def compute(self) -> dict[str, float]:
        """The signals for the agent's current weights (one host read)."""
        agent = self.agent
        critic = agent.critic_nets[0]
        was_training = agent.critics.training
        agent.critics.eval()
        try:
            values = self._values(agent, critic)
        finally:
            agent.critics.train(was_training)
        stacked = torch.stack([v.float().reshape(()) for v in values]).tolist()
        return dict(zip(self.names, stacked, strict=True))

    def _values(self, agent: ActorCriticAgent, critic: Critic) -> list[torch.Tensor]:
        fx = self.train
        out = critic.forward_from(critic.encode(fx.obs), fx.batch.actions)
        _, a_next = agent.backup_target(fx.next_obs, fx.batch.rewards, fx.batch.dones, fx.eps)
        next_feat = critic.forward_from(critic.encode(fx.next_obs), a_next).features
        features = out.features.float()
        rank = srank(features) if bool(torch.isfinite(features).all()) else float("nan")
        values = [
            policy_data_distance(torch.tanh(agent.actor(fx.obs)[0]), fx.batch.actions),
            dr3_term(out.features, next_feat),
            torch.tensor(float(rank)),
            weight_norm(list(critic.parameters())),
        ]
        if self.success is not None:
            q_success = critic.forward_from(critic.encode(self.success.obs), self.success.batch.actions).q
            values.append(soft_opc(q_success, out.q))
        if self.holdout is not None:
            ho = self.holdout
            q = critic.forward_from(critic.encode(ho.obs), ho.batch.actions).q
            y, _ = agent.backup_target(ho.next_obs, ho.batch.rewards, ho.batch.dones, ho.eps)
            pi_ho = torch.tanh(agent.actor(ho.obs)[0])
            values += [(q - y).pow(2).mean(), q.mean(), policy_data_distance(pi_ho, ho.batch.actions)]
        return values
