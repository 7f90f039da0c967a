"""The training loop: set up, (resume,) then `steps` gradient steps with logging and checkpoints.

Read top to bottom: resolve the config against the dataset, build the agent, restore the
latest checkpoint when resuming, then loop: sample -> update -> accumulate metrics -> write
the window average every `log_every` steps -> checkpoint every `ckpt_every` steps.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reference_trainer.agent import ActorCriticAgent
from reference_trainer.brac import BRACAgent
from reference_trainer.checkpoint import (
    FORMAT_VERSION,
    checkpoint_path,
    latest_valid,
    list_checkpoints,
    remove_stale_tmp,
    rng_state,
    save_atomic,
    set_rng_state,
)
from reference_trainer.config import (
    DEFAULT_GAMMA,
    DEFAULT_HORIZON,
    ConfigError,
    NonFiniteLoss,
    TrainConfig,
    default_threads,
    save_config_json,
)
from reference_trainer.cql import CQLAgent
from reference_trainer.data import OfflineDataset, holdout_split, load_dataset
from reference_trainer.limits import check_batch_size
from reference_trainer.logger import MetricLogger
from reference_trainer.signals import SIGNAL_SEED, SignalProbe

#: Fields that must match between a checkpoint and the resuming command (the rest, e.g. steps,
#: log_dir or threads, may change).
_RESUME_FIXED = ("algo", "hidden", "depth", "encoder", "batch_size", "n_actions", "dropout", "vib", "l1", "l2", "dr3",
                 "precision", "cql_alpha", "cql_target_gap", "brac_variant", "seed", "log_every", "holdout_fraction",
                 "no_signals")  # fmt: skip
#: What a checkpoint written before a field existed stands for: the field's default.
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def resolve_against_dataset(cfg: TrainConfig, ds: OfflineDataset) -> None:
    """Fill metadata: flag > dataset metadata > derived from the data > documented default."""
    meta = ds.metadata
    if cfg.gamma is None:
        cfg.gamma = float(meta.get("gamma", DEFAULT_GAMMA))
    if cfg.horizon is None:
        cfg.horizon = (
            int(meta["horizon"]) if meta.get("horizon") else (ds.max_episode_length or DEFAULT_HORIZON)
        )
    if cfg.reward_range is None:
        rr = meta.get("reward_range")
        cfg.reward_range = (float(rr[0]), float(rr[1])) if rr else (ds.reward_min, ds.reward_max)
    cfg.dataset = str(Path(cfg.dataset).resolve())  # robot_eval finds the task through it from any cwd
    cfg.obs_shape = ds.obs_shape
    cfg.act_dim = ds.act_dim
    cfg.dataset_size = ds.size
    cfg.dataset_mc_return = ds.mc_return_mean
    cfg.obs_type = "image" if ds.is_image else "state"
    cfg.task = meta.get("task")
    cfg.remedies = cfg.active_remedies()
    if ds.is_image and cfg.encoder == "mlp":
        raise ConfigError(f"{ds.path}: image observations need --encoder conv or resnet")
    if not ds.is_image and cfg.encoder != "mlp":
        raise ConfigError(
            f"{ds.path}: --encoder {cfg.encoder} needs image observations; this dataset is state-based"
        )


def split_holdout(cfg: TrainConfig, ds: OfflineDataset) -> tuple[OfflineDataset, OfflineDataset | None]:
    """(data to train on, held-out split or None): `holdout_fraction` of the transitions, whole trajectories, chosen
    by SIGNAL_SEED (data.holdout_split). With fraction 0 the dataset is returned as loaded, untouched."""
    if cfg.holdout_fraction <= 0.0:
        return ds, None
    try:
        train_idx, held_idx = holdout_split(ds.traj_ids, cfg.holdout_fraction, SIGNAL_SEED)
    except ValueError as exc:
        raise ConfigError(f"{ds.path}: --holdout-fraction {cfg.holdout_fraction}: {exc}") from None
    cfg.holdout_size = len(held_idx)
    return ds.subset(train_idx), ds.subset(held_idx)


def make_agent(cfg: TrainConfig, device: torch.device) -> ActorCriticAgent:
    return CQLAgent(cfg, device) if cfg.algo == "cql" else BRACAgent(cfg, device)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _checkpoint_payload(
    agent: ActorCriticAgent, cfg: TrainConfig, step: int, logger: MetricLogger
) -> dict[str, Any]:
    state = agent.state_dict()
    return {
        "format_version": FORMAT_VERSION,
        "step": step,
        "config": cfg.to_json_dict(),
        "actor": state["actor"],  # what load_policy needs
        "train_state": {
            "agent": state,
            "optimizer": agent.optimizer.state_dict(),
            "rng": rng_state(),
            "logger": logger.state(),
        },
    }


def train(cfg: TrainConfig, echo: Callable[[str], None] = print) -> Path:
    """Run training as configured; returns the log directory. Raises ConfigError / DatasetError on bad input."""
    cfg.validate()
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: CUDA is not available")
    device = torch.device(cfg.device)
    cfg.threads = cfg.threads or default_threads()
    torch.set_num_threads(cfg.threads)
    log_dir = Path(cfg.log_dir)
    existing = list_checkpoints(log_dir)
    if not cfg.resume and (existing or (log_dir / "progress.csv").exists()):
        raise ConfigError(
            f"{log_dir}: already holds a run; pass --resume to continue it or choose another --log-dir"
        )

    ds = load_dataset(cfg.dataset, device=cfg.device, gamma=cfg.gamma)
    resolve_against_dataset(cfg, ds)
    ds, holdout = split_holdout(cfg, ds)
    check_batch_size(cfg, ds.size, str(ds.path), device)  # before any memory is spent on the agent
    seed_everything(cfg.seed)
    agent = make_agent(cfg, device)

    if cfg.resume:
        removed = remove_stale_tmp(log_dir)
        if removed:
            echo(
                f"removed {len(removed)} unfinished checkpoint write(s): {', '.join(p.name for p in removed)}"
            )
    start_step, logger_state = 0, None
    found = latest_valid(log_dir) if cfg.resume else None
    if cfg.resume and found is None:
        echo(f"no usable checkpoint in {log_dir / 'checkpoints'}; starting from step 0")
        # drop whatever an attempt that died before its first checkpoint logged
        logger_state = {"files": {}, "acc": torch.zeros(len(agent.metric_names)), "count": 0}
    if found is not None:
        payload, path, skipped = found
        for reason in skipped:
            echo(f"skipping {reason}")
        old = dict(payload["config"])
        # a checkpoint written before the signals existed: its logs have no signal columns, so none are added
        if "no_signals" not in old:
            old["no_signals"] = True
            if not cfg.no_signals:
                cfg.no_signals = True
                echo(f"{path}: run started without selection signals; it continues without them")
        new = cfg.to_json_dict()
        changed = [k for k in _RESUME_FIXED if old.get(k, _DEFAULTS.get(k)) != new.get(k)]
        if changed:
            raise ConfigError(f"{path}: cannot resume with changed {', '.join(changed)}")
        ts = payload["train_state"]
        agent.load_state_dict(ts["agent"])
        agent.optimizer.load_state_dict(ts["optimizer"])
        set_rng_state(ts["rng"])
        start_step, logger_state = int(payload["step"]), ts["logger"]
        echo(f"resuming from {path} (step {start_step})")
    elif isinstance(agent, BRACAgent):
        nll = agent.fit_behaviour(ds, cfg.bc_steps_resolved)
        echo(f"behaviour policy fitted: {cfg.bc_steps_resolved} BC steps, final NLL {nll:.3f}")
    save_config_json(cfg, log_dir)

    # built after the resume check (which may turn the signals off); draws nothing from the global RNG
    probe = None if cfg.no_signals else SignalProbe(agent, ds, holdout)
    logger = MetricLogger(
        log_dir,
        agent.metric_names,
        device,
        resume_state=logger_state,
        start_step=start_step,
        point_names=probe.names if probe is not None else (),
    )
    t0, last = time.perf_counter(), start_step
    guard = _FiniteGuard(log_dir, start_step, found[1] if found is not None else None)
    try:
        for step in range(start_step + 1, cfg.steps + 1):
            batch = ds.sample(cfg.batch_size)
            logger.accumulate(agent.update(batch, step))
            if step % cfg.log_every == 0 or step == cfg.steps:
                # signals: on this step's weights (those of its checkpoint); the guard checks training losses only.
                # The window with the NaN is logged: the analyzer should see it.
                points = probe.compute() if probe is not None else None
                means = logger.write(step, points)
                guard.check({k: v for k, v in means.items() if k in logger.names}, step)
                rate = (step - last) / max(time.perf_counter() - t0, 1e-9)
                t0, last = time.perf_counter(), step
                shown = ", ".join(f"{k}={means[k]:.4g}" for k in ("q_data", "td_error") if k in means)
                echo(f"step {step}/{cfg.steps}  {shown}  ({rate:.1f} steps/s)")
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                guard.check_window(logger, step)  # never save weights a NaN step has touched
                path = checkpoint_path(log_dir, step)
                save_atomic(_checkpoint_payload(agent, cfg, step, logger), path)
                guard.saved(path, step)
    finally:
        logger.close()
    return log_dir


class _FiniteGuard:
    """Stops training at the first non-finite metric (issue 12, item 19).

    Why checked only where the host reads values anyway (each log write) and before each checkpoint:
    one `.item()` per step would cost more than the step for small networks. The logger's window sums
    carry any NaN/Inf of a step forward (NaN + x = NaN), so nothing slips through between checks, and a
    checkpoint is written only when every step since the last check was finite: the newest checkpoint
    on disk is always the last finite one.
    """

    def __init__(self, log_dir: Path, start_step: int, last_ckpt: Path | None) -> None:
        self.log_dir = log_dir
        self.checked = start_step  # every step up to here was finite
        self.last_ckpt = last_ckpt

    def saved(self, path: Path, step: int) -> None:
        self.last_ckpt, self.checked = path, step

    def check(self, means: dict[str, float], step: int) -> None:
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if bad:
            self._stop(step, {k: means[k] for k in bad})
        self.checked = step

    def check_window(self, logger: MetricLogger, step: int) -> None:
        if logger.count == 0:
            return
        sums = logger.acc.tolist()
        bad = {n: v for n, v in zip(logger.names, sums, strict=True) if not math.isfinite(v)}
        if bad:
            self._stop(step, bad)

    def _stop(self, step: int, bad: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v}" for k, v in list(bad.items())[:4])
        kept = (
            f"the last finite checkpoint is {self.last_ckpt}"
            if self.last_ckpt is not None
            else "no checkpoint was written"
        )
        raise NonFiniteLoss(
            f"non-finite loss between steps {self.checked + 1} and {step} ({shown}); training stopped, "
            f"{kept} (lower the learning rates or check the dataset's value ranges)"
        )
