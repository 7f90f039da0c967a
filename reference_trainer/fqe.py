"""Fitted Q Evaluation (FQE) of reference-trainer checkpoints: an off-policy estimate of each policy's value.

FQE (Le et al. 2019; the strongest simple baseline in DOPE, Fu et al. 2021) fits Q^pi of a *fixed* policy pi on the
offline dataset by TD regression on (s, a, r, s', pi(s')), then reports V(s0) = mean_s0 Q(s0, pi(s0)) over the
dataset's initial states. It is the natural competitor of the workflow's log-only checkpoint pick: it needs the data
and extra compute per checkpoint, the workflow needs neither.

Why one *ensemble* instead of K separate fits: every checkpoint of a run is evaluated on the same minibatches with
K independent Q networks stored as stacked weight tensors, so one batched matmul per layer trains all K at once
(K small MLPs are dominated by per-call overhead on a CPU; measured in benchmarks/closed_loop.py). The K networks share
nothing but the minibatch indices (common random numbers), so the result is the same as K separate fits with the
same sampling seed.

Conventions follow the trainer: deterministic policy action tanh(mean); `terminals` stop bootstrapping, `timeouts` do
not; gamma from the dataset metadata. Any deterministic policy can be evaluated (`fit_fqe_policies`: a callable from an
observation batch to actions in [-1, 1], e.g. another framework's policy through reference_trainer/policy_hooks.py);
`fit_fqe` is the same for reference-trainer checkpoint files. State observations only (an image Q network per checkpoint is out of a CPU
budget): image datasets raise ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reference_trainer.data import OfflineDataset, load_dataset, trajectory_starts
from reference_trainer.policy import load_policy


@dataclass(frozen=True)
class FQEConfig:
    """Defaults: 2x64 critics (the loop's small-net preset), lr 1e-3 and Polyak tau 0.01 so that values propagate
    over a ~100-step effective horizon within a few thousand steps (tau 5e-3 of the trainer is slower)."""

    steps: int = 2000
    hidden: int = 64
    depth: int = 2
    batch_size: int = 256
    lr: float = 1e-3
    tau: float = 0.01
    seed: int = 0
    threads: int = 1
    gamma: float | None = None  # None: the dataset metadata's (pass the trained run's when it overrode it)


@dataclass(frozen=True)
class FQEResult:
    path: str
    step: int
    v_s0: float  # mean Q(s0, pi(s0)) over dataset initial states
    td_error: float  # mean squared TD error over the last 10% of steps (fit quality)


class _Ensemble(torch.nn.Module):
    """K independent MLPs (in -> hidden x depth -> 1) as stacked weights: x (K, B, in) -> (K, B)."""

    def __init__(self, k: int, d_in: int, hidden: int, depth: int) -> None:
        super().__init__()
        dims = [d_in] + [hidden] * depth + [1]
        self.w = torch.nn.ParameterList()
        self.b = torch.nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            bound = 1.0 / math.sqrt(a)  # nn.Linear's default init
            self.w.append(torch.nn.Parameter(torch.empty(k, a, b).uniform_(-bound, bound)))
            self.b.append(torch.nn.Parameter(torch.empty(k, 1, b).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.w)
        for i, (w, b) in enumerate(zip(self.w, self.b, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < n - 1:
                x = torch.relu(x)
        return x.squeeze(-1)


#: A deterministic policy: (N, obs_dim) float observations -> (N, act_dim) actions in [-1, 1].
PolicyFn = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def _actions(policies: Sequence[PolicyFn], obs: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """(K, N, act_dim) deterministic actions of every policy on `obs`."""
    out = []
    for p in policies:
        out.append(torch.cat([p(obs[i : i + chunk]).float() for i in range(0, len(obs), chunk)]))
    return torch.stack(out)


def _dataset(dataset: str | Path, cfg: FQEConfig) -> OfflineDataset:
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    ds = load_dataset(dataset, gamma=cfg.gamma)
    if ds.is_image:
        raise ValueError(f"{dataset}: FQE is implemented for state observations only")
    return ds


def fit_fqe(
    checkpoints: Sequence[str | Path], dataset: str | Path, cfg: FQEConfig | None = None
) -> list[FQEResult]:
    """Fit one FQE critic per checkpoint on `dataset`; results in the order given. Raises ValueError (with the path)
    for an unreadable checkpoint or dataset, or an image dataset."""
    cfg = cfg or FQEConfig()
    if not checkpoints:
        return []
    ds = _dataset(dataset, cfg)  # seeds torch first: the same fit as before fit_fqe_policies existed
    policies = [load_policy(p) for p in checkpoints]
    entries: list[tuple[int, str, PolicyFn]] = [
        (int(pol.step), str(path), pol.actor.act) for path, pol in zip(checkpoints, policies, strict=True)
    ]
    return _fit(entries, ds, cfg)


def fit_fqe_policies(
    policies: Sequence[tuple[int, str, PolicyFn]], dataset: str | Path, cfg: FQEConfig | None = None
) -> list[FQEResult]:
    """Fit one FQE critic per (step, name, policy) on `dataset` (policies from any framework); results in the order
    given. Raises ValueError (with the path) for an unreadable or image dataset."""
    cfg = cfg or FQEConfig()
    if not policies:
        return []
    return _fit(list(policies), _dataset(dataset, cfg), cfg)


def _fit(policies: list[tuple[int, str, PolicyFn]], ds: OfflineDataset, cfg: FQEConfig) -> list[FQEResult]:
    fns = [fn for _, _, fn in policies]
    gamma = cfg.gamma if cfg.gamma is not None else float(ds.metadata.get("gamma", 0.99))
    with np.load(ds.path, allow_pickle=False) as npz:
        starts = trajectory_starts(npz["terminals"].astype(bool), npz["timeouts"].astype(bool))
    obs, act, rew, nobs, done = ds.observations, ds.actions, ds.rewards, ds.next_observations, ds.dones
    k, n = len(fns), ds.size
    next_a = _actions(fns, nobs)  # (K, N, A): pi_k(s') for every transition, computed once
    s0 = obs[torch.as_tensor(starts, dtype=torch.long)]
    a0 = _actions(fns, s0)
    d_in = obs.shape[1] + act.shape[1]
    q = _Ensemble(k, d_in, cfg.hidden, cfg.depth)
    q_targ = _Ensemble(k, d_in, cfg.hidden, cfg.depth)
    q_targ.load_state_dict(q.state_dict())
    for p in q_targ.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    tail = max(1, cfg.steps // 10)
    td_tail = torch.zeros(k)
    for step in range(cfg.steps):
        idx = torch.randint(n, (cfg.batch_size,), generator=gen)
        x = torch.cat([obs[idx].expand(k, -1, -1), act[idx].expand(k, -1, -1)], dim=-1)
        with torch.no_grad():
            xn = torch.cat([nobs[idx].expand(k, -1, -1), next_a[:, idx]], dim=-1)
            target = rew[idx] + gamma * (1.0 - done[idx]) * q_targ(xn)
        err = ((q(x) - target) ** 2).mean(dim=1)  # (K,)
        opt.zero_grad(set_to_none=True)
        err.sum().backward()
        opt.step()
        with torch.no_grad():
            for p, pt in zip(q.parameters(), q_targ.parameters(), strict=True):
                pt.lerp_(p, cfg.tau)
            if step >= cfg.steps - tail:
                td_tail += err.detach()
    with torch.no_grad():
        v0 = q(torch.cat([s0.expand(k, -1, -1), a0], dim=-1)).mean(dim=1)
    return [
        FQEResult(name, int(step), float(v0[i]), float(td_tail[i] / tail))
        for i, (step, name, _) in enumerate(policies)
    ]
