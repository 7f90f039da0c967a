"""Refuse batch sizes that cannot work before the first step, instead of being killed by the OOM killer.

Why: `--batch-size 100000000` on a 600-row dataset grew to 22 GB and died with no error line
(issue 12, item 8). Two checks, both before the agent is built:

* a batch larger than the dataset is refused: sampling with replacement would repeat every
  transition many times per step, and such a size is almost always a typo;
* a batch whose activations cannot fit in the memory available is refused. The estimate is a
  *lower bound* (the hidden activations autograd must keep for the backward pass of the two
  critics, plus the hidden-to-hidden weights with their gradients and Adam moments), so a batch
  that could fit is never refused: measured on CPU (hidden 256 x depth 3, 10 actions), the real
  peak of one step is 1.7x (CQL) to 3x (BRAC) the activation bound.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from reference_trainer.config import ConfigError, TrainConfig

#: Bytes per float32 activation.
_FLOAT = 4


def activation_bytes_lower_bound(cfg: TrainConfig) -> int:
    """Bytes the two critics' hidden activations need for one batch, at least.

    CQL evaluates each state with 1 + 3N actions (dataset, N uniform, N from pi(s), N from
    pi(s')) in one pass; BRAC with the dataset action and one policy action. Images add the
    float copy of every observation and next observation.
    """
    rows = 1 + 3 * cfg.n_actions if cfg.algo == "cql" else 2
    per_state = 2 * cfg.depth * rows * cfg.hidden * _FLOAT
    if len(cfg.obs_shape) == 3:
        per_state += 2 * math.prod(cfg.obs_shape) * _FLOAT
    return cfg.batch_size * per_state


def parameter_bytes_lower_bound(cfg: TrainConfig) -> int:
    """Bytes of the hidden-to-hidden weights alone: 2 critics and the actor with a gradient and Adam's
    two moments each (x4), plus 2 target critics (x1)."""
    weights = max(0, cfg.depth - 1) * cfg.hidden * cfg.hidden
    return (3 * 4 + 2) * weights * _FLOAT


def _cgroup_bytes_left() -> int | None:
    """Memory left under this process's cgroup v2 limit, if it has one."""
    try:
        rel = Path("/proc/self/cgroup").read_text().strip().split("\n")[0].split("::", 1)[1]
        base = Path("/sys/fs/cgroup") / rel.lstrip("/")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text().strip()))
    except (OSError, IndexError, ValueError):
        return None


def available_memory(device: torch.device) -> int | None:
    """Bytes free for tensors on `device`: CUDA free memory; on CPU MemAvailable (and the cgroup limit)."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    free: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not free and hasattr(os, "sysconf"):
        try:
            free.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    cg = _cgroup_bytes_left()
    if cg is not None:
        free.append(cg)
    return min(free) if free else None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_batch_size(cfg: TrainConfig, dataset_size: int, dataset: str, device: torch.device) -> None:
    """ConfigError (exit 2, one line) when `cfg.batch_size` cannot be trained with; see the module doc."""
    if cfg.batch_size > dataset_size:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is larger than the dataset ({dataset_size} transitions in "
            f"{dataset}); use at most {dataset_size}"
        )
    params = parameter_bytes_lower_bound(cfg)
    need = activation_bytes_lower_bound(cfg) + params
    free = available_memory(device)
    if free is not None and need > free:
        what = f"({cfg.algo}, hidden {cfg.hidden} x depth {cfg.depth})"
        if params >= free:
            raise ConfigError(
                f"--hidden {cfg.hidden} x --depth {cfg.depth} needs at least {_gib(params)} of {device.type} "
                f"memory for the networks alone; {_gib(free)} is available"
            )
        per_sample = (need - params) / cfg.batch_size
        fits = max(1, int((free - params) // per_sample))
        raise ConfigError(
            f"--batch-size {cfg.batch_size} needs at least {_gib(need)} of {device.type} memory "
            f"{what}; {_gib(free)} is available: use at most about {fits}"
        )
