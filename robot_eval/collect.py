"""Roll out the noisy scripted policies and assemble a D4RL-style dataset (optionally over worker processes).

Trajectory i is seeded from `SeedSequence(seed).spawn(n)[i]` (env reset seed and noise RNG), so a dataset is
identical whatever the number of workers, and the first k trajectories of an n-trajectory dataset are the
k-trajectory dataset.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_eval.dataset import Dataset
from robot_eval.scripted import ScriptedPolicy
from robot_eval.tasks import TaskSpec

DEFAULT_GAMMA = 0.99  # COG / the paper's robotic experiments
DEFAULT_NOISE = 0.1  # COG's scripted-data noise


@dataclass
class Trajectory:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminated: bool
    success: bool
    object_type: str | None = None


def trajectory_seeds(seed: int, n: int) -> list[tuple[int, np.random.SeedSequence]]:
    """(env reset seed, noise seed sequence) for trajectories 0..n-1."""
    out = []
    for child in np.random.SeedSequence(seed).spawn(n):
        out.append((int(child.generate_state(1)[0]), child))
    return out


def rollout_scripted(
    env, noise: float, reset_seed: int, noise_seq: np.random.SeedSequence, family: str
) -> Trajectory:
    """One episode of the scripted policy on an already-built environment."""
    policy = ScriptedPolicy(family, noise, np.random.default_rng(noise_seq))
    obs, info = env.reset(seed=reset_seed)
    obs_l, act_l, rew_l, nxt_l = [], [], [], []
    terminated = truncated = False
    while not (terminated or truncated):
        a = policy(env)
        nxt, r, terminated, truncated, info = env.step(a)
        obs_l.append(obs)
        act_l.append(a)
        rew_l.append(r)
        nxt_l.append(nxt)
        obs = nxt
    rewards = np.asarray(rew_l, dtype=np.float32)
    return Trajectory(
        np.stack(obs_l),
        np.stack(act_l).astype(np.float32),
        rewards,
        np.stack(nxt_l),
        bool(terminated),
        bool(rewards.max() > 0),
        info.get("object_type"),
    )


class EnvCache:
    """One live environment per process, rebuilt when the task spec changes (a PyBullet client per
    episode would cost more than the episode). Collection and evaluation keep separate caches, so an
    evaluation never runs in an environment that collection has stepped."""

    def __init__(self) -> None:
        self._envs: dict[str, Any] = {}

    def get(self, spec: TaskSpec) -> Any:
        key = repr(spec)
        if key not in self._envs:
            for old in self._envs.values():
                old.close()
            self._envs.clear()
            self._envs[key] = spec.make()
        return self._envs[key]


_WORKER_ENV = EnvCache()


def _collect_chunk(
    spec: TaskSpec, noise: float, seeds: list[tuple[int, np.random.SeedSequence]]
) -> list[Trajectory]:
    env = _WORKER_ENV.get(spec)
    return [rollout_scripted(env, noise, s, seq, spec.family) for s, seq in seeds]


def discounted_returns_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma G_{t+1} within one trajectory; no bootstrap after a timeout (documented bias)."""
    out = np.zeros_like(rewards, dtype=np.float64)
    g = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = float(rewards[t]) + gamma * g
        out[t] = g
    return out.astype(np.float32)


def mp_context():
    import multiprocessing as mp

    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")


def collect(
    spec: TaskSpec,
    n_trajectories: int,
    noise: float = DEFAULT_NOISE,
    seed: int = 0,
    gamma: float = DEFAULT_GAMMA,
    workers: int = 1,
    on_progress: Callable[[int], None] | None = None,
    zero_rewards: bool = False,
) -> Dataset:
    """Collect `n_trajectories` scripted episodes into a Dataset with contract metadata."""
    if n_trajectories < 1:
        raise ValueError(f"n_trajectories must be >= 1, got {n_trajectories}")
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    seeds = trajectory_seeds(seed, n_trajectories)
    trajs: list[Trajectory] = []
    workers = max(1, min(int(workers), n_trajectories))
    if workers == 1:
        env = spec.make()
        try:
            for s, seq in seeds:
                trajs.append(rollout_scripted(env, noise, s, seq, spec.family))
                if on_progress:
                    on_progress(1)
        finally:
            env.close()
    else:
        chunk = max(1, min(25, math.ceil(n_trajectories / (4 * workers))))
        parts = [seeds[i : i + chunk] for i in range(0, n_trajectories, chunk)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp_context()) as pool:
            for result in pool.map(_collect_chunk, [spec] * len(parts), [noise] * len(parts), parts):
                trajs.extend(result)
                if on_progress:
                    on_progress(len(result))
    return assemble(trajs, spec, noise=noise, seed=seed, gamma=gamma, zero_rewards=zero_rewards)


def assemble(
    trajs: list[Trajectory], spec: TaskSpec, noise: float, seed: int, gamma: float, zero_rewards: bool = False
) -> Dataset:
    """Concatenate trajectories into contract arrays and metadata.

    `zero_rewards` reproduces COG's "prior data" (e.g. grasp-only segments relabelled with reward 0 for the
    pick-place task); `success_rate` still reports the scripted segment's own success.
    """
    if zero_rewards:
        for t in trajs:
            t.rewards = np.zeros_like(t.rewards)
    obs = np.concatenate([t.observations for t in trajs])
    lengths = [len(t.rewards) for t in trajs]
    terminals = np.zeros(len(obs), dtype=bool)
    timeouts = np.zeros(len(obs), dtype=bool)
    mc = []
    ends = np.cumsum(lengths) - 1
    for t, end in zip(trajs, ends, strict=True):
        (terminals if t.terminated else timeouts)[end] = True
        mc.append(discounted_returns_to_go(t.rewards, gamma))
    image = spec.image_size > 0
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    mc_returns = np.concatenate(mc)
    arrays = {
        "observations": obs.astype(np.uint8 if image else np.float32),
        "actions": np.concatenate([t.actions for t in trajs]).astype(np.float32),
        "rewards": np.concatenate([t.rewards for t in trajs]).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
        "next_observations": np.concatenate([t.next_observations for t in trajs]).astype(
            np.uint8 if image else np.float32
        ),
        "mc_returns": mc_returns,
    }
    successes = [t.success for t in trajs]  # computed at rollout time, before any relabelling
    meta: dict[str, Any] = {
        "task": spec.env_id,
        "env_kwargs": spec.kwargs,
        "segment": spec.kwargs.get("segment", "full"),
        "gamma": gamma,
        "horizon": spec.horizon,
        "reward_range": [0.0, 1.0],
        "success_rate": float(np.mean(successes)),
        "noise": noise,
        "seed": seed,
        "n_trajectories": len(trajs),
        "n_transitions": int(len(obs)),
        "mc_return_mean": float(mc_returns[starts].mean()),
        "undiscounted_return_mean": float(np.mean([t.rewards.sum() for t in trajs])),
        "obs_type": "image" if image else "state",
        "image_size": spec.image_size,
        "policy": "scripted",
        "producer": "robot_eval.collect",
        "rewards_zeroed": zero_rewards,
    }
    types = [t.object_type for t in trajs if t.object_type]
    if types:
        meta["object_types"] = sorted(set(types))
    return Dataset(arrays, meta)
