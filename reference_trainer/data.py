"""Load and validate a D4RL-style `.npz` dataset, and sample training batches from it.

Why validate up front: a NaN reward or a misaligned `next_observations` array silently ruins a
run hours later; here it stops the CLI with exit code 2 and a message naming the file and array.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

REQUIRED = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


class DatasetError(ValueError):
    """The dataset cannot be trained on; the message names the file and the reason."""


@dataclass
class Batch:
    obs: torch.Tensor  # float32 (B, obs_dim) or uint8 (B, H, W, 3)
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    dones: torch.Tensor  # float32 1.0 at true terminals (timeouts are not terminal)


@dataclass
class OfflineDataset:
    path: Path
    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    dones: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)
    mc_return_mean: float | None = None
    reward_min: float = 0.0
    reward_max: float = 0.0
    max_episode_length: int | None = None  # longest trajectory ended by a timeout, if any
    #: per transition, the index of its trajectory in the file (host array; `trajectory_ids`). Kept by `subset`,
    #: so a held-out split and the success labels of SoftOPC still know which transitions belong together.
    traj_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def size(self) -> int:
        return int(self.actions.shape[0])

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.observations.shape[1:])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def is_image(self) -> bool:
        return self.observations.dtype == torch.uint8

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """Uniform sampling with replacement from the global (or given) torch RNG."""
        idx = torch.randint(self.size, (batch_size,), generator=generator, device=self.actions.device)
        return Batch(
            obs=self.observations[idx],
            actions=self.actions[idx],
            rewards=self.rewards[idx],
            next_obs=self.next_observations[idx],
            dones=self.dones[idx],
        )

    def subset(self, idx: np.ndarray) -> OfflineDataset:
        """The transitions at `idx` (a copy); dataset-level statistics (metadata, MC return, reward range) stay those
        of the whole file, because they describe the task, not the part trained on."""
        t = torch.as_tensor(idx, dtype=torch.long, device=self.actions.device)
        return OfflineDataset(
            path=self.path,
            observations=self.observations[t],
            actions=self.actions[t],
            rewards=self.rewards[t],
            next_observations=self.next_observations[t],
            dones=self.dones[t],
            metadata=self.metadata,
            mc_return_mean=self.mc_return_mean,
            reward_min=self.reward_min,
            reward_max=self.reward_max,
            max_episode_length=self.max_episode_length,
            traj_ids=self.traj_ids[idx] if len(self.traj_ids) else self.traj_ids,
        )


def _parse_metadata(raw: np.ndarray, path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(str(raw.item() if raw.shape == () else raw))
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: 'metadata' is not a JSON string ({exc})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: 'metadata' JSON must be an object, got {type(meta).__name__}")
    return meta


def trajectory_starts(terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """Indices where a trajectory begins: 0 and every index after a terminal or timeout."""
    ends = np.flatnonzero(terminals | timeouts)
    starts = np.concatenate([[0], ends + 1])
    return starts[starts < len(terminals)]


def trajectory_ids(terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """Per transition, the index of its trajectory: a new trajectory starts after every terminal or timeout."""
    ends = (np.asarray(terminals, dtype=bool) | np.asarray(timeouts, dtype=bool)).astype(np.int64)
    return np.concatenate([[0], np.cumsum(ends)[:-1]]).astype(np.int64)


def holdout_split(traj_ids: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices), both sorted; a fixed function of (trajectories, fraction, seed).

    Why whole trajectories: transitions of one trajectory are nearly copies of each other, so a transition-level split
    would leave every held-out state's neighbours in the training data and the held-out error would not measure
    generalisation. Trajectories are drawn in a seeded random order until the held-out part is as close as possible
    to `fraction` of the transitions; a dataset that is a single trajectory is split by transitions instead. Both
    parts always keep at least one transition.
    """
    n = len(traj_ids)
    if fraction <= 0.0:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    if n < 2:
        raise ValueError(f"a held-out split needs at least 2 transitions, the dataset has {n}")
    rng = np.random.default_rng(seed)
    target = fraction * n
    n_traj = int(traj_ids.max()) + 1 if n else 0
    held = np.zeros(n, dtype=bool)
    if n_traj >= 2:
        order = rng.permutation(n_traj)
        sizes = np.bincount(traj_ids, minlength=n_traj)[order]
        # held-out size after taking the first k trajectories, k = 1 .. n_traj - 1
        cum = np.cumsum(sizes)[:-1]
        k = int(np.argmin(np.abs(cum - target))) + 1
        held[np.isin(traj_ids, order[:k])] = True
    else:
        k = min(max(1, round(target)), n - 1)
        held[rng.permutation(n)[:k]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def discounted_returns(
    rewards: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray, gamma: float
) -> np.ndarray:
    """Return-to-go of every transition within its own trajectory (no bootstrap past the end)."""
    out = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    ends = terminals | timeouts
    for i in range(len(rewards) - 1, -1, -1):
        if ends[i]:
            running = 0.0
        running = float(rewards[i]) + gamma * running
        out[i] = running
    return out


def load_dataset(path: str | Path, device: str = "cpu", gamma: float | None = None) -> OfflineDataset:
    """Read and check every array; raise DatasetError with a clear message on any problem.

    `gamma` None: the metadata's discount (else 0.99). A `gamma` that differs from the metadata's recomputes the
    dataset's MC return at that discount, because the stored one (and `mc_returns`) were computed at the collector's."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: dataset file not found")
    if path.is_dir():
        raise DatasetError(f"{path}: is a directory, expected a .npz file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing array(s) {', '.join(missing)} (need {', '.join(REQUIRED)})")
    obs, nobs, act = arrays["observations"], arrays["next_observations"], arrays["actions"]
    n = len(obs) if obs.ndim else 0
    if n == 0:
        raise DatasetError(f"{path}: dataset is empty")
    for key in REQUIRED + (("mc_returns",) if "mc_returns" in arrays else ()):
        if arrays[key].ndim == 0 or len(arrays[key]) != n:
            got = arrays[key].shape
            raise DatasetError(
                f"{path}: array {key!r} has shape {got}, expected {n} rows like 'observations'"
            )
    if act.ndim != 2:
        raise DatasetError(f"{path}: 'actions' must be 2-D (N, act_dim), got shape {act.shape}")
    if obs.shape != nobs.shape:
        raise DatasetError(f"{path}: 'observations' {obs.shape} and 'next_observations' {nobs.shape} differ")
    is_image = obs.dtype == np.uint8 and obs.ndim == 4
    if not is_image and obs.ndim != 2:
        raise DatasetError(
            f"{path}: 'observations' must be (N, obs_dim) float or (N, H, W, 3) uint8, got {obs.shape} {obs.dtype}"
        )
    if is_image and obs.shape[-1] != 3:
        raise DatasetError(f"{path}: image observations must have 3 channels last, got {obs.shape}")
    for key in ("observations", "next_observations", "actions", "rewards") + (
        ("mc_returns",) if "mc_returns" in arrays else ()
    ):
        arr = arrays[key]
        if arr.dtype.kind not in "fiub":
            raise DatasetError(f"{path}: array {key!r} has non-numeric dtype {arr.dtype}")
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr)
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise DatasetError(
                    f"{path}: array {key!r} contains NaN/Inf ({int(bad.sum())} values, first at row {row})"
                )
    if np.abs(act).max() > 1.0 + 1e-6:
        raise DatasetError(
            f"{path}: 'actions' must lie in [-1, 1], found max |a| = {float(np.abs(act).max()):.4g}"
        )
    meta = _parse_metadata(arrays["metadata"], path) if "metadata" in arrays else {}
    terminals = arrays["terminals"].astype(bool).reshape(n)
    timeouts = arrays["timeouts"].astype(bool).reshape(n)
    rewards = arrays["rewards"].astype(np.float32).reshape(n)

    meta_gamma = meta.get("gamma")
    stored_valid = gamma is None or (meta_gamma is not None and abs(float(meta_gamma) - gamma) < 1e-12)
    if gamma is None:
        gamma = float(meta_gamma) if meta_gamma is not None else 0.99
    if stored_valid and meta.get("mc_return_mean") is not None:
        mc_mean = float(meta["mc_return_mean"])
    else:
        starts = trajectory_starts(terminals, timeouts)
        rtg = (
            arrays["mc_returns"]
            if stored_valid and "mc_returns" in arrays
            else discounted_returns(rewards, terminals, timeouts, gamma)
        )
        mc_mean = float(np.mean(rtg[starts]))

    timeout_ends = np.flatnonzero(timeouts)
    max_len = None
    if len(timeout_ends):
        starts = trajectory_starts(terminals, timeouts)
        ends = np.searchsorted(starts, timeout_ends, side="right") - 1
        max_len = int((timeout_ends - starts[ends] + 1).max())

    def to_t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

    obs_dtype = torch.uint8 if is_image else torch.float32
    return OfflineDataset(
        path=path,
        observations=to_t(obs, obs_dtype),
        actions=to_t(act.astype(np.float32).clip(-1.0, 1.0), torch.float32),
        rewards=to_t(rewards, torch.float32),
        next_observations=to_t(nobs, obs_dtype),
        dones=to_t(terminals.astype(np.float32), torch.float32),
        metadata=meta,
        mc_return_mean=mc_mean,
        reward_min=float(rewards.min()),
        reward_max=float(rewards.max()),
        max_episode_length=max_len,
        traj_ids=trajectory_ids(terminals, timeouts),
    )
