"""Conservative Q-Learning (CQL(H), Kumar et al. 2020) on a SAC-style actor-critic.

One `update` = one gradient step, read top to bottom:
  1. actor on s (with grad) and on s' (no grad); N sampled actions per state drawn from those
     two distributions, plus N uniform random actions - no autograd graph for any of them;
  2. TD target with the target critics: r + gamma (1 - done) min_j Q'_j(s', a'), a' ~ pi(s')
     (deterministic backup: no entropy bonus, the authors' default);
  3. each critic evaluates the dataset action and the 3N sampled actions in one pass (the
     observation part of its first layer is computed once per state);
  4. CQL(H): alpha * (E_s[logsumexp_a Q(s, a)] - E_D[Q(s, a)]), with the importance weights of
     the CQL code; alpha fixed, or Lagrangian when a target gap is given;
  5. actor loss (or the BC warm-start loss for the first `bc_steps`), temperature loss;
  6. one backward, one optimizer step, Polyak update of the targets.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from reference_trainer.agent import ActorCriticAgent
from reference_trainer.data import Batch
from reference_trainer.networks import sample_tanh_gaussian, tanh_gaussian_log_prob
from reference_trainer.remedies import cql_logsumexp, dr3_term

CQL_METRICS = (
    "q_data",
    "q_policy",
    "q_target",
    "td_error",
    "cql_gap",
    "cql_term",
    "alpha",
    "temperature",
    "critic_loss",
    "policy_loss",
)


class CQLAgent(ActorCriticAgent):
    def __init__(self, cfg: Any, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.lagrange = cfg.cql_target_gap is not None
        #: the Lagrange target (read only when self.lagrange)
        self.target_gap = float(cfg.cql_target_gap) if cfg.cql_target_gap is not None else 0.0
        # Lagrange multiplier in log space, initialised at the fixed alpha (min_q_weight)
        init = math.log(max(cfg.cql_alpha, 1e-6))
        self.log_alpha = torch.full((), init, device=device, requires_grad=self.lagrange)
        self.metric_names = self.with_remedy_metrics(CQL_METRICS)
        self.bc_steps = cfg.bc_steps_resolved
        self.optimizer = self.make_optimizer()

    def param_groups(self) -> list[dict[str, Any]]:
        groups = super().param_groups()
        if self.lagrange:
            groups.append({"params": [self.log_alpha], "lr": self.cfg.q_lr})
        return groups

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"log_temp": self.log_temp, "log_alpha": self.log_alpha}

    @torch.no_grad()
    def backup_target(
        self, next_obs: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 2 of `losses` with the noise given: a' = tanh(mean) (`backup mean`) or tanh(mean + std * eps)."""
        next_mean, next_log_std = self.actor(next_obs)
        if self.cfg.backup == "mean":
            a_backup = torch.tanh(next_mean)
        else:
            a_backup = torch.tanh(next_mean + torch.exp(next_log_std) * eps)
        y = rewards + self.gamma * (1.0 - dones) * self.target_q(next_obs, a_backup)
        return y, a_backup

    def update(self, batch: Batch, step: int) -> torch.Tensor:
        """One gradient step; returns the detached metrics in `metric_names` order."""
        total, metrics = self.losses(batch, bc_phase=step <= self.bc_steps)
        # 6. one backward, one optimizer step, Polyak averaging
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.soft_update()
        return metrics

    def losses(self, batch: Batch, bc_phase: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of all losses (critics, actor, temperature[, alpha]) and the detached metrics."""
        cfg, n, act_dim = self.cfg, self.cfg.n_actions, self.cfg.act_dim
        obs, next_obs = self.prepare_obs(batch.obs), self.prepare_obs(batch.next_obs)
        bsz = batch.actions.shape[0]

        # 1. policy samples: the actor runs once per state
        mean, log_std = self.actor(obs)
        a_pi, logp_pi, _ = sample_tanh_gaussian(mean, log_std)
        with torch.no_grad():
            next_mean, next_log_std = self.actor(next_obs)
            # N actions from pi(s) and N from pi(s') in one draw
            both_mean = torch.cat([mean.detach(), next_mean])
            both_log_std = torch.cat([log_std.detach(), next_log_std])
            a_both, logp_both, _ = sample_tanh_gaussian(both_mean, both_log_std, n)
            a_cur, a_next = a_both[:bsz], a_both[bsz:]
            logp_cur, logp_next = logp_both[:bsz], logp_both[bsz:]
            a_rand = torch.rand(bsz, n, act_dim, device=self.device).mul_(2.0).sub_(1.0)
            # 2. TD target: the first of the N next-state samples (authors' code), or pi's mean action,
            #    which kept the critic from collapsing the policy after the BC warm start (docs/trainer.md)
            a_backup = torch.tanh(next_mean) if self.cfg.backup == "mean" else a_next[:, 0]
            q_next = self.target_q(next_obs, a_backup)
            y = batch.rewards + self.gamma * (1.0 - batch.dones) * q_next

        alpha = self.log_alpha.exp().clamp(0.0, 1e6)
        alpha_d = alpha.detach()
        temp = self.log_temp.exp()
        all_actions = torch.cat([batch.actions.unsqueeze(1), a_rand, a_cur, a_next], dim=1)  # (B, 1+3N, A)

        critic_loss = torch.zeros((), device=self.device)
        q_pis, gaps, per_critic = [], [], []
        for critic in self.critic_nets:
            # 3. one pass over dataset + sampled actions
            h, ws = critic.encode(obs), critic.weights()
            out = critic.forward_from(h, all_actions, ws)
            q_data = out.q[:, 0]
            td = (q_data - y).pow(2).mean()  # Bellman MSE alone
            # 4. CQL(H)
            lse = cql_logsumexp(
                out.q[:, 1 : n + 1],
                out.q[:, n + 1 : 2 * n + 1],
                logp_cur,
                out.q[:, 2 * n + 1 :],
                logp_next,
                act_dim,
            )
            gap = lse.mean() - q_data.mean()
            loss = td + alpha_d * ((gap - self.target_gap) if self.lagrange else gap)
            dr3 = vib = None
            if cfg.dr3 > 0:
                with torch.no_grad():
                    next_feat = critic.forward_from(critic.encode(next_obs), a_backup).features
                dr3 = dr3_term(out.features[:, 0], next_feat)
                loss = loss + cfg.dr3 * dr3
            if cfg.vib > 0:
                assert out.vib_kl is not None  # set whenever the critic has a VIB (cfg.vib > 0)
                vib = out.vib_kl[:, 0].mean()
                loss = loss + cfg.vib * vib
            critic_loss = critic_loss + loss
            gaps.append(gap)
            per_critic.append((q_data, td, gap, loss, dr3, vib))
            # 5a. Q(s, a_pi) with detached critic weights: gradients reach the actor only
            q_pis.append(critic.forward_from(h.detach(), a_pi, ws, detach=True).q)
        penalty = self.remedy_penalty()
        if penalty is not None:
            critic_loss = critic_loss + penalty

        # 5b. actor: BC warm start first (as in the CQL code), then max Q - temp * log pi
        q_pi = torch.minimum(q_pis[0], q_pis[1])
        if bc_phase:
            policy_loss = (
                temp.detach() * logp_pi - tanh_gaussian_log_prob(batch.actions, mean, log_std)
            ).mean()
        else:
            policy_loss = (temp.detach() * logp_pi - q_pi).mean()
        temp_loss = -(self.log_temp * (logp_pi.detach() + self.target_entropy)).mean()
        total = critic_loss + policy_loss + temp_loss
        if self.lagrange:
            mean_gap = 0.5 * (gaps[0] + gaps[1]).detach()
            total = total - alpha * (mean_gap - self.target_gap)

        q_data1, td1, gap1, loss1, dr3_1, vib1 = per_critic[0]
        values = [
            q_data1.mean(),
            q_pis[0].mean(),
            y.mean(),
            td1,
            gap1,
            alpha_d * gap1,
            alpha_d,
            temp,
            loss1,
            policy_loss,
        ]
        if dr3_1 is not None:
            values.append(dr3_1)
        if vib1 is not None:
            values.append(vib1)
        return total, torch.stack(values).detach()
