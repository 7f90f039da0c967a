"""Resolved training configuration: one dataclass that the CLI, YAML files and checkpoints share.

Why one flat dataclass: the same fields are read from `--config FILE`, overridden by flags,
saved as `<log_dir>/config.json` (which the analyzer reads for gamma, horizon, capacity...) and
stored in every checkpoint so `load_policy` can rebuild the actor without the CLI.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ALGOS = ("cql", "brac")
ENCODERS = ("mlp", "conv", "resnet")
PRECISIONS = ("fp32", "bf16")
BRAC_VARIANTS = ("vp", "pr")
BACKUPS = ("sample", "mean")

#: Used when neither the dataset metadata nor a flag gives them. gamma 0.99 is the authors'
#: default (examples/cql_workflow.py); horizon 40 is the pick-tray horizon of the COG tasks; a
#: reward range of [0, 1] is the sparse 0/1 success reward of the paper's tasks.
DEFAULT_GAMMA = 0.99
DEFAULT_HORIZON = 40
DEFAULT_REWARD_RANGE = (0.0, 1.0)
DEFAULT_BC_STEPS = 10_000  # authors: 10K steps of BC warm start (examples/cql_workflow.py)


class ConfigError(ValueError):
    """A bad flag or config file value; the CLI turns it into a message and exit code 2."""


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN/Inf loss and was stopped; the CLI prints one line and exits with code 1.

    Defined here (no torch import) so the CLI can catch it before torch is loaded.
    """


def default_threads() -> int:
    """1 torch thread on machines with <= 2 cores, else half the cores (at most 8).

    Why: on a 2-core machine shared with another busy process, 2 intra-op threads ran several
    times slower than 1 (the second thread waits on a preempted core at every GEMM barrier).
    The default does not look at the current load so that a run is reproducible.
    """
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(8, cores // 2)


def knob(default: Any, help: str, *, metavar: str | None = None) -> Any:
    """A TrainConfig field that is also a flag (`--name-with-dashes`), a YAML key and a config.json key.

    `help` is the flag's help text (offrl-train --help); the default is appended to it there."""
    return field(default=default, metadata={"help": help, "metavar": metavar, "flag": True})


def from_dataset(default: Any = None, *, default_factory: Any = None) -> Any:
    """A TrainConfig field the trainer fills in from the dataset: saved in config.json, never a flag."""
    meta = {"flag": False}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every knob of a training run: the one source of offrl-train's flags, the `--config` YAML keys
    and config.json (CORL-style; reference_trainer/cli.py builds the flags from these fields)."""

    algo: str = knob("cql", "cql | brac")
    dataset: str = knob("", "D4RL-style .npz dataset (required)", metavar="PATH")
    steps: int = knob(100_000, "gradient steps")
    ckpt_every: int = knob(5_000, "checkpoint interval in steps")
    log_every: int = knob(1_000, "logging window in steps")
    log_dir: str = knob("runs/offrl", "run directory", metavar="DIR")
    seed: int = knob(0, "seed of torch, numpy and random")
    device: str = knob("cpu", "cpu | cuda[:N]")
    resume: bool = knob(False, "continue from the latest valid checkpoint in --log-dir")
    precision: str = knob("fp32", "fp32 | bf16 (bf16 hidden layers, fp32 Q head and losses)")
    threads: int = knob(0, "torch threads; 0 = 1 on <= 2 cores, else cores/2 up to 8")
    # dataset metadata (None = from the dataset, else documented defaults)
    gamma: float | None = knob(None, "discount when the dataset metadata lacks it (else 0.99)")
    horizon: int | None = knob(None, "episode horizon when the metadata lacks it")
    reward_range: tuple[float, float] | None = knob(
        None, "per-step reward range when the metadata lacks it", metavar="LO,HI"
    )
    # optimisation (authors' defaults, examples/cql_workflow.py)
    batch_size: int = knob(256, "transitions per gradient step")
    tau: float = knob(5e-3, "Polyak averaging rate of the target critics")
    policy_lr: float = knob(1e-4, "Adam learning rate of the actor and the entropy temperature")
    q_lr: float = knob(3e-4, "Adam learning rate of the critics")
    n_actions: int = knob(10, "sampled actions per source in the CQL logsumexp")
    bc_steps: int | None = knob(
        None, "CQL actor warm start / BRAC behaviour fit, in steps (else 10000, the authors' default)"
    )
    # CQL
    cql_alpha: float = knob(1.0, "fixed CQL alpha (min_q_weight)")
    cql_target_gap: float | None = knob(None, "Lagrangian alpha with this target gap (CQL paper's tau)")
    backup: str = knob(
        "sample", "CQL TD backup action: sample (authors' code) | mean (tanh of pi's mean); docs/trainer.md"
    )
    # BRAC
    brac_variant: str = knob("vp", "vp (value penalty) | pr (policy regularization)")
    brac_beta: float = knob(1.0, "BRAC divergence weight")
    # capacity
    hidden: int = knob(256, "hidden width")
    depth: int = knob(3, "hidden layers")
    encoder: str = knob("mlp", "mlp | conv | resnet (image datasets)")
    # remedies (Guidelines 4.1 / 4.2)
    dropout: float = knob(0.0, "dropout probability in the Q networks")
    vib: float = knob(0.0, "variational information bottleneck weight beta")
    vib_latent: int = knob(16, "latent size of the information bottleneck")
    l1: float = knob(0.0, "L1 weight: sum of mean |theta| of the Q networks")
    l2: float = knob(0.0, "L2 weight (Adam weight decay on the Q networks)")
    dr3: float = knob(0.0, "DR3 feature dot-product weight")
    crop_pad: int = knob(4, "random-crop augmentation padding for image observations (authors: 4)")
    # checkpoint-selection signals (reference_trainer/signals.py, docs/trainer.md "Selection signals")
    holdout_fraction: float = knob(
        0.0, "share of the transitions (whole trajectories) never trained on, for the held-out signals"
    )
    no_signals: bool = knob(False, "log the training metrics only, not the selection signals")
    # filled in by the trainer from the dataset
    obs_shape: tuple[int, ...] = from_dataset(())
    act_dim: int = from_dataset(0)
    dataset_size: int = from_dataset(0)
    holdout_size: int = from_dataset(0)  # transitions held out of training; dataset_size counts them too
    dataset_mc_return: float | None = from_dataset(None)
    obs_type: str = from_dataset("state")
    task: str | None = from_dataset(None)
    remedies: list[str] = from_dataset(default_factory=list)

    # ---- derived -------------------------------------------------------------------------
    @property
    def bc_steps_resolved(self) -> int:
        return DEFAULT_BC_STEPS if self.bc_steps is None else int(self.bc_steps)

    @property
    def obs_dim(self) -> int:
        return int(self.obs_shape[0]) if len(self.obs_shape) == 1 else 0

    def active_remedies(self) -> list[str]:
        """Names of the remedies switched on, as the analyzer and humans read them."""
        names = []
        for name in ("dropout", "vib", "l1", "l2", "dr3"):
            if getattr(self, name) > 0:
                names.append(name)
        if self.encoder == "resnet":
            names.append("resnet")
        return names

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        self._check_finite()
        checks: list[tuple[bool, str]] = [
            (self.algo in ALGOS, f"--algo must be one of {ALGOS}, got {self.algo!r}"),
            (self.encoder in ENCODERS, f"--encoder must be one of {ENCODERS}, got {self.encoder!r}"),
            (
                self.precision in PRECISIONS,
                f"--precision must be one of {PRECISIONS}, got {self.precision!r}",
            ),
            (self.brac_variant in BRAC_VARIANTS, f"--brac-variant must be one of {BRAC_VARIANTS}"),
            (self.backup in BACKUPS, f"--backup must be one of {BACKUPS}, got {self.backup!r}"),
            (self.steps > 0, f"--steps must be > 0, got {self.steps}"),
            (self.ckpt_every > 0, f"--ckpt-every must be > 0, got {self.ckpt_every}"),
            (self.log_every > 0, f"--log-every must be > 0, got {self.log_every}"),
            (self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}"),
            (self.n_actions > 0, f"n_actions must be > 0, got {self.n_actions}"),
            (self.hidden > 0, f"--hidden must be > 0, got {self.hidden}"),
            (self.depth >= 1, f"--depth must be >= 1, got {self.depth}"),
            (0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}"),
            (
                self.vib >= 0 and self.l1 >= 0 and self.l2 >= 0 and self.dr3 >= 0,
                "remedy weights must be >= 0",
            ),
            (
                0.0 <= self.holdout_fraction < 1.0,
                f"--holdout-fraction must be in [0, 1), got {self.holdout_fraction}",
            ),
            (self.bc_steps is None or self.bc_steps >= 0, f"--bc-steps must be >= 0, got {self.bc_steps}"),
            (self.threads >= 0, f"--threads must be >= 0, got {self.threads}"),
            (self.gamma is None or 0.0 <= self.gamma < 1.0, f"--gamma must be in [0, 1), got {self.gamma}"),
            (self.horizon is None or self.horizon > 0, f"--horizon must be > 0, got {self.horizon}"),
            (self.cql_alpha >= 0, f"--cql-alpha must be >= 0, got {self.cql_alpha}"),
            (0.0 < self.tau <= 1.0, f"tau must be in (0, 1], got {self.tau}"),
            (
                self.device == "cpu" or self.device.startswith("cuda"),
                f"--device must be cpu or cuda[:N], got {self.device!r}",
            ),
        ]
        if self.reward_range is not None:
            lo_hi = tuple(self.reward_range)
            checks.append(
                (
                    len(lo_hi) == 2 and lo_hi[0] <= lo_hi[1],
                    f"--reward-range must be LO,HI with LO <= HI, got {lo_hi}",
                )
            )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def _check_finite(self) -> None:
        """Every float knob must be a finite number: `--cql-alpha inf` used to be clamped to 1e6 in silence
        and written as `Infinity` into config.json, which strict JSON parsers reject (issue 12, item 20).
        Runs before the range checks, so the message says "finite" rather than a misleading range."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            items = value if f.name == "reward_range" and value is not None else (value,)
            for v in items:
                if isinstance(v, float) and not math.isfinite(v):
                    raise ConfigError(f"--{f.name.replace('_', '-')} must be a finite number, got {v}")

    def to_json_dict(self) -> dict[str, Any]:
        """config.json content: every field plus the keys the analyzer reads (hidden, depth, encoder...)."""
        data = dataclasses.asdict(self)
        data["obs_shape"] = list(self.obs_shape)
        data["obs_dim"] = self.obs_dim
        data["reward_range"] = list(self.reward_range) if self.reward_range is not None else None
        data["remedies"] = self.active_remedies()
        data["hidden_sizes"] = [self.hidden] * self.depth
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from config.json / a checkpoint; unknown keys (e.g. obs_dim) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if kwargs.get("reward_range") is not None:
            kwargs["reward_range"] = tuple(float(x) for x in kwargs["reward_range"])
        if "obs_shape" in kwargs:
            kwargs["obs_shape"] = tuple(int(x) for x in kwargs["obs_shape"])
        return cls(**kwargs)


def flag_fields() -> tuple[dataclasses.Field, ...]:
    """The TrainConfig fields that are flags (all but those the trainer fills in from the dataset)."""
    return tuple(f for f in dataclasses.fields(TrainConfig) if f.metadata.get("flag", False))


def _flag_to_field(key: str) -> str:
    return key.strip().lstrip("-").replace("-", "_")


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose keys mirror the CLI flags (`ckpt-every` or `ckpt_every`)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of flag: value, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = _flag_to_field(str(key))
        if name not in names:
            raise ConfigError(f"{path}: unknown key {key!r}")
        out[name] = value
    return out


def resolve_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> TrainConfig:
    """Defaults < config file < flags given on the command line (flags with value None are 'not given')."""
    merged = dict(file_values)
    merged.update({k: v for k, v in flag_values.items() if v is not None})
    cfg = TrainConfig()
    for key, value in merged.items():
        default = getattr(cfg, key)
        try:
            value = _coerce(key, value, default)
        except (TypeError, ValueError):
            raise ConfigError(f"bad value for {key}: {value!r}") from None
        setattr(cfg, key, value)
    cfg.validate()
    return cfg


def _coerce(key: str, value: Any, default: Any) -> Any:
    if key == "reward_range":
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        lo, hi = (float(v) for v in value)
        return (lo, hi)
    if value is None:
        return None
    if isinstance(default, bool):
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return bool(value)
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(key)
        return int(value)
    if isinstance(default, float):
        return float(value)
    if key in ("gamma", "cql_target_gap"):
        return float(value)
    if key in ("horizon", "bc_steps"):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(key)
        return int(value)
    return value


def save_config_json(cfg: TrainConfig, log_dir: Path) -> Path:
    """Write `<log_dir>/config.json` atomically (the analyzer may be reading the folder)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "config.json"
    tmp = path.with_suffix(".json.tmp")
    # strict JSON: a non-finite number (e.g. an overflowed dataset MC return) is written as null, never as
    # Infinity/NaN, which other JSON parsers refuse
    tmp.write_text(json.dumps(_finite_or_null(cfg.to_json_dict()), indent=2, sort_keys=True, allow_nan=False))
    os.replace(tmp, path)
    return path


def _finite_or_null(value: Any) -> Any:
    """`value` with every non-finite float (nested in dicts/lists/tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value
