"""Rebuild a deterministic policy from a checkpoint: the contract robot_eval relies on.

`load_policy(path)` reads only the actor weights and the resolved config stored in the
checkpoint, so evaluation needs neither the dataset nor the training code's CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reference_trainer.agent import build_actor
from reference_trainer.checkpoint import read_checkpoint
from reference_trainer.config import TrainConfig
from reference_trainer.networks import Actor, images_to_float


@dataclass
class Policy:
    """Deterministic action tanh(mean) for one observation; `step` is the checkpoint's training step."""

    actor: Actor
    step: int
    config: dict[str, Any]
    device: torch.device

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(self.config["obs_shape"])

    @property
    def act_dim(self) -> int:
        return int(self.config["act_dim"])

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """obs: (obs_dim,) float or (H, W, 3) uint8 -> action (act_dim,) float32 in [-1, 1]."""
        arr = np.asarray(obs)
        if arr.shape != self.obs_shape:
            raise ValueError(f"observation shape {arr.shape} does not match the policy's {self.obs_shape}")
        if len(self.obs_shape) == 3:
            x = images_to_float(torch.as_tensor(arr, dtype=torch.uint8, device=self.device).unsqueeze(0))
        else:
            x = torch.as_tensor(arr, dtype=torch.float32, device=self.device).unsqueeze(0)
        action = self.actor.act(x)[0].float().cpu().numpy()
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def load_policy(path: str | Path, device: str = "cpu") -> Policy:
    """Load `ckpt_<step>.pt`; ValueError with the path and reason if it is missing or unusable."""
    path = Path(path)
    payload = read_checkpoint(path, device=device)
    try:
        cfg = TrainConfig.from_dict(payload["config"])
        actor = build_actor(cfg).to(device)
        actor.load_state_dict(payload["actor"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot rebuild the actor ({type(exc).__name__}: {exc})") from None
    actor.eval()
    return Policy(
        actor=actor, step=int(payload.get("step", 0)), config=cfg.to_json_dict(), device=torch.device(device)
    )
