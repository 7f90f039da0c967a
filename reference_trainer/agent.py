"""What CQL and BRAC share: SAC-style actor, twin critics with target copies, temperature, optimizer.

Why one Adam with parameter groups: actor, critics, temperature (and CQL's Lagrange alpha) are
updated from the same batch, so one backward pass and one fused optimizer step per training
step keep the Python overhead per step small (it dominates for 2x64 networks).
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
from torch import nn

from reference_trainer.config import TrainConfig
from reference_trainer.data import Batch
from reference_trainer.networks import Actor, Critic, images_to_float, random_crop
from reference_trainer.remedies import l1_penalty


def build_actor(cfg: TrainConfig, log_std_min: float | None = None) -> Actor:
    """The policy network; the actor uses the critic's width and depth (one capacity knob)."""
    kwargs: dict[str, Any] = {} if log_std_min is None else {"log_std_min": log_std_min}
    return Actor(tuple(cfg.obs_shape), cfg.act_dim, cfg.hidden, cfg.depth, cfg.encoder, **kwargs)


class ActorCriticAgent:
    """Networks + optimizer; subclasses implement `update(batch, step) -> metrics tensor`."""

    metric_names: tuple[str, ...] = ()
    #: made by the algorithm's __init__ (`self.make_optimizer()`), once its own parameters exist
    optimizer: torch.optim.Optimizer

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.actor = build_actor(cfg).to(device)
        vib_latent = cfg.vib_latent if cfg.vib > 0 else 0
        self.critics = nn.ModuleList(
            [
                Critic(
                    tuple(cfg.obs_shape),
                    cfg.act_dim,
                    cfg.hidden,
                    cfg.depth,
                    cfg.encoder,
                    cfg.dropout,
                    vib_latent,
                )
                for _ in range(2)
            ]
        ).to(device)
        self.targets = copy.deepcopy(self.critics).eval()  # eval: no dropout, VIB uses the latent mean
        for p in self.targets.parameters():
            p.requires_grad_(False)
        #: the critics as their class (nn.ModuleList yields nn.Module): what the update loops call
        self.critic_nets = cast(list[Critic], list(self.critics))
        if cfg.precision == "bf16":
            for c in [*self.critic_nets, *cast(list[Critic], list(self.targets))]:
                c.compute_dtype = torch.bfloat16
        self.log_temp = torch.zeros((), device=device, requires_grad=True)
        self.target_entropy = -float(cfg.act_dim)  # SAC's heuristic, as in rlkit
        self.gamma = float(cfg.gamma if cfg.gamma is not None else 0.99)
        self.is_image = len(cfg.obs_shape) == 3
        self._critic_params: list[torch.Tensor] = list(self.critics.parameters())
        self._target_params: list[torch.Tensor] = list(self.targets.parameters())

    def with_remedy_metrics(self, base: tuple[str, ...]) -> tuple[str, ...]:
        """The algorithm's metric names plus the DR3 / VIB terms when those remedies are on."""
        extra = (["dr3_term"] if self.cfg.dr3 > 0 else []) + (["vib_term"] if self.cfg.vib > 0 else [])
        return tuple(base) + tuple(extra)

    def param_groups(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        return [
            {
                "params": [*self.actor.parameters(), self.log_temp],
                "lr": cfg.policy_lr,
            },  # temperature: policy lr
            {"params": self._critic_params, "lr": cfg.q_lr, "weight_decay": cfg.l2},  # L2 = Adam weight decay
        ]

    def make_optimizer(self) -> torch.optim.Optimizer:
        fused = self.device.type in ("cpu", "cuda")
        return torch.optim.Adam(self.param_groups(), fused=fused)

    def prepare_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Images: random-crop augmentation then float NCHW in [0, 1]; states pass through."""
        if not self.is_image:
            return obs
        return images_to_float(random_crop(obs, self.cfg.crop_pad))

    def remedy_penalty(self) -> torch.Tensor | None:
        """Parameter-level penalties added once to the critic loss (L1; L2 is Adam weight decay)."""
        if self.cfg.l1 > 0:
            return self.cfg.l1 * l1_penalty(self._critic_params)
        return None

    @torch.no_grad()
    def soft_update(self) -> None:
        torch._foreach_lerp_(self._target_params, self._critic_params, self.cfg.tau)

    @torch.no_grad()
    def target_q(self, next_obs: torch.Tensor, next_actions: torch.Tensor) -> torch.Tensor:
        q1 = self.targets[0](next_obs, next_actions)
        q2 = self.targets[1](next_obs, next_actions)
        return torch.minimum(q1, q2)

    def update(self, batch: Batch, step: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def backup_target(
        self, next_obs: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        """(TD target y, backup action a') as `update` computes them, with the policy noise `eps` (B, A) given.

        Why the noise is an argument: the selection signals (signals.py) evaluate the target on fixed batches with
        fixed noise, so that they move only with the weights and never draw from the global RNG that training uses.
        `next_obs` is already prepared (`prepare_obs` or, for the signals, uncropped images as floats)."""
        raise NotImplementedError

    # ---- checkpointing ------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critics": self.critics, "targets": self.targets}

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"log_temp": self.log_temp}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: m.state_dict() for name, m in self.modules().items()}
        state.update({k: v.detach().clone() for k, v in self.extra_tensors().items()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(state[name])
        with torch.no_grad():
            for key, tensor in self.extra_tensors().items():
                tensor.copy_(state[key])
