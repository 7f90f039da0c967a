"""BRAC (Wu et al. 2019) as in the authors' rlkit fork: SAC + a KL penalty towards a BC policy.

Before RL, a behaviour policy pi_b is fitted to the dataset actions by maximum likelihood
(`fit_behaviour`, `bc_steps` gradient steps, not counted in the training steps, not logged).
Then each step, read top to bottom:
  1. actor on s (with grad) and s' (no grad); log pi_b of those actions under the frozen pi_b;
  2. target r + gamma (1 - done) v(s'), where for the value-penalty variant (`vp`)
     v = min_j Q'_j(s', a') + beta log pi_b(a'|s') - temp log pi(a'|s'), and for the policy-
     regularisation variant (`pr`) v = min_j Q'_j(s', a');
  3. critics: Bellman MSE (+ remedies);
  4. actor: temp log pi(a|s) - beta log pi_b(a|s) - Q(s, a), a ~ pi(s) (both variants);
  5. logged divergence: sampled KL(pi || pi_b) with N actions per state, and `value_penalty`, the mean of
     what step 2 subtracts from Q'(s', a') (temp log pi(a'|s') - beta log pi_b(a'|s') for `vp`, 0 for `pr`).

Why `value_penalty` is logged: the backup adds it to every future step, so dataset Q may legitimately leave the
reward-implied range [r_min, r_max] x H by up to gamma x H x the penalty, either way (with beta > temp and a tight
pi_b the "penalty" is a bonus: beta log pi_b(a') is large and positive). The sampled KL alone does not bound it
(the entropy part (beta - temp) E[log pi] is not in it), and the analyzer's divergence check (DV001) needs the
actual term to widen the feasible range (docs/rules/DV001.md).
"""

from __future__ import annotations

from typing import Any

import torch

from reference_trainer.agent import ActorCriticAgent, build_actor
from reference_trainer.data import Batch, OfflineDataset
from reference_trainer.networks import (
    gaussian_log_prob,
    sample_tanh_gaussian,
    tanh_gaussian_log_prob,
    tanh_log_det,
)
from reference_trainer.remedies import dr3_term, sampled_kl

BRAC_METRICS = (
    "q_data",
    "q_policy",
    "q_target",
    "td_error",
    "temperature",
    "critic_loss",
    "policy_loss",
    "brac_divergence",
    "value_penalty",
)

#: pi_b's log-std floor: a BC fit to near-deterministic scripted actions would otherwise shrink
#: sigma until log pi_b explodes and dominates every penalty (rlkit clamps at -20; -5 keeps it sane).
BEHAVIOUR_LOG_STD_MIN = -5.0
BEHAVIOUR_LR = 3e-4


def tanh_log_prob_from_u(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log density of a = tanh(u) under a tanh-Gaussian, given the pre-tanh u (no atanh needed)."""
    return gaussian_log_prob(u, mean, log_std) - tanh_log_det(u)


class BRACAgent(ActorCriticAgent):
    def __init__(self, cfg: Any, device: torch.device) -> None:
        super().__init__(cfg, device)
        self.behaviour = build_actor(cfg, log_std_min=BEHAVIOUR_LOG_STD_MIN).to(device).requires_grad_(False)
        self.metric_names = self.with_remedy_metrics(BRAC_METRICS)
        self.optimizer = self.make_optimizer()

    def modules(self) -> dict[str, torch.nn.Module]:
        mods = super().modules()
        mods["behaviour"] = self.behaviour
        return mods

    def fit_behaviour(self, dataset: OfflineDataset, steps: int) -> float:
        """Maximum-likelihood BC of pi_b; returns the final batch negative log-likelihood."""
        self.behaviour.requires_grad_(True)
        opt = torch.optim.Adam(self.behaviour.parameters(), lr=BEHAVIOUR_LR)
        nll = torch.zeros(())
        for _ in range(steps):
            batch = dataset.sample(self.cfg.batch_size)
            mean, log_std = self.behaviour(self.prepare_obs(batch.obs))
            nll = -tanh_gaussian_log_prob(batch.actions, mean, log_std).mean()
            opt.zero_grad(set_to_none=True)
            nll.backward()
            opt.step()
        self.behaviour.requires_grad_(False)  # frozen during RL
        return float(nll.detach())

    @torch.no_grad()
    def backup_target(
        self, next_obs: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 2 of `update` with the noise given: a' = tanh(mean + std * eps), plus the value penalty for `vp`."""
        next_mean, next_log_std = self.actor(next_obs)
        u_next = next_mean + torch.exp(next_log_std) * eps
        a_next = torch.tanh(u_next)
        v = self.target_q(next_obs, a_next)
        if self.cfg.brac_variant == "vp":
            logp_next = tanh_log_prob_from_u(u_next, next_mean, next_log_std)
            nb_mean, nb_log_std = self.behaviour(next_obs)
            logb_next = tanh_log_prob_from_u(u_next, nb_mean, nb_log_std)
            v = v + self.cfg.brac_beta * logb_next - self.log_temp.exp() * logp_next
        return rewards + self.gamma * (1.0 - dones) * v, a_next

    def update(self, batch: Batch, step: int) -> torch.Tensor:
        cfg, beta = self.cfg, self.cfg.brac_beta
        obs, next_obs = self.prepare_obs(batch.obs), self.prepare_obs(batch.next_obs)
        temp = self.log_temp.exp()

        # 1. policy and behaviour log-probabilities
        mean, log_std = self.actor(obs)
        a_pi, logp_pi, u_pi = sample_tanh_gaussian(mean, log_std)
        with torch.no_grad():
            b_mean, b_log_std = self.behaviour(obs)
            next_mean, next_log_std = self.actor(next_obs)
            a_next, logp_next, u_next = sample_tanh_gaussian(next_mean, next_log_std)
            # 2. target
            v = self.target_q(next_obs, a_next)
            value_penalty = torch.zeros((), device=self.device)
            if cfg.brac_variant == "vp":
                nb_mean, nb_log_std = self.behaviour(next_obs)
                logb_next = tanh_log_prob_from_u(u_next, nb_mean, nb_log_std)
                p_next = temp.detach() * logp_next - beta * logb_next
                v = v - p_next
                value_penalty = p_next.mean()
            y = batch.rewards + self.gamma * (1.0 - batch.dones) * v
            # 5. divergence estimate with N samples per state
            _, logp_s, u_s = sample_tanh_gaussian(mean.detach(), log_std.detach(), cfg.n_actions)
            logb_s = tanh_log_prob_from_u(u_s, b_mean.unsqueeze(1), b_log_std.unsqueeze(1))
            divergence = sampled_kl(logp_s, logb_s)

        # 3. critics
        critic_loss = torch.zeros((), device=self.device)
        q_pis, per_critic = [], []
        for critic in self.critic_nets:
            h, ws = critic.encode(obs), critic.weights()
            out = critic.forward_from(h, batch.actions, ws)
            td = (out.q - y).pow(2).mean()
            loss = td
            dr3 = vib = None
            if cfg.dr3 > 0:
                with torch.no_grad():
                    next_feat = critic.forward_from(critic.encode(next_obs), a_next).features
                dr3 = dr3_term(out.features, next_feat)
                loss = loss + cfg.dr3 * dr3
            if cfg.vib > 0:
                assert out.vib_kl is not None  # set whenever the critic has a VIB (cfg.vib > 0)
                vib = out.vib_kl.mean()
                loss = loss + cfg.vib * vib
            critic_loss = critic_loss + loss
            per_critic.append((out.q, td, loss, dr3, vib))
            q_pis.append(critic.forward_from(h.detach(), a_pi, ws, detach=True).q)
        penalty = self.remedy_penalty()
        if penalty is not None:
            critic_loss = critic_loss + penalty

        # 4. actor and temperature
        logb_pi = tanh_log_prob_from_u(u_pi, b_mean, b_log_std)
        q_pi = torch.minimum(q_pis[0], q_pis[1])
        policy_loss = (temp.detach() * logp_pi - beta * logb_pi - q_pi).mean()
        temp_loss = -(self.log_temp * (logp_pi.detach() + self.target_entropy)).mean()

        self.optimizer.zero_grad(set_to_none=True)
        (critic_loss + policy_loss + temp_loss).backward()
        self.optimizer.step()
        self.soft_update()

        q1, td1, loss1, dr3_1, vib1 = per_critic[0]
        values = [
            q1.mean(),
            q_pis[0].mean(),
            y.mean(),
            td1,
            temp,
            loss1,
            policy_loss,
            divergence,
            value_penalty,
        ]
        if dr3_1 is not None:
            values.append(dr3_1)
        if vib1 is not None:
            values.append(vib1)
        return torch.stack(values).detach()
