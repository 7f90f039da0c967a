"""In-memory model of training runs: what ingestion produces and diagnosis consumes.

Measurement (ingestion) fills these dataclasses; judgment (rules) only reads them. Every series
says where it came from (source tags, files) and how much to trust it (`kind`), so that a verdict
can state what it stands on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

SeriesKind = Literal["logged", "derived", "proxy"]
XUnit = Literal["step", "epoch"]


@dataclass
class Series:
    """One scalar curve, sorted by step with unique steps.

    `kind`: `logged` when read as-is from a tag that means this metric; `derived` when computed
    from other logged tags (e.g. pure TD = critic loss - CQL term); `proxy` when a nearby quantity
    stands in (e.g. d3rlpy's Q(s, pi(s)) for dataset Q).
    """

    name: str
    steps: np.ndarray  # int64, strictly increasing
    values: np.ndarray  # float64, may contain NaN/Inf (rules report them)
    wall_time: np.ndarray | None = None  # float64 seconds since epoch, aligned with steps
    x_unit: XUnit = "step"
    sources: tuple[str, ...] = ()  # tag(s) / column(s) it was read or derived from
    files: tuple[str, ...] = ()
    kind: SeriesKind = "logged"
    note: str = ""  # e.g. how it was derived, or why it is only a proxy

    def __post_init__(self) -> None:
        self.steps = np.asarray(self.steps, dtype=np.int64)
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.wall_time is not None:
            self.wall_time = np.asarray(self.wall_time, dtype=np.float64)
        if self.steps.shape != self.values.shape or self.steps.ndim != 1:
            raise ValueError(
                f"series {self.name!r}: steps {self.steps.shape} and values {self.values.shape} differ"
            )

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    @property
    def source(self) -> str:
        """Human-readable origin, e.g. `trainer/QF1 Loss - trainer/min QF1 Loss (derived)`."""
        text = " , ".join(self.sources) if self.sources else self.name
        return text if self.kind == "logged" else f"{text} ({self.kind})"


@dataclass
class Capacity:
    """Capacity descriptors used to group runs that differ only in model size (Metric 3.2)."""

    widths: tuple[int, ...] | None = None  # hidden layer widths of the Q network
    depth: int | None = None
    encoder: str | None = None  # e.g. "mlp", "conv3", "resnet"

    def is_known(self) -> bool:
        return self.widths is not None or self.depth is not None or self.encoder is not None


@dataclass
class RunMetadata:
    """What the logs say about how the run was set up. None means "not found in the logs"."""

    algorithm: str | None = None  # "cql", "brac", "iql", ...
    gamma: float | None = None
    reward_range: tuple[float, float] | None = None  # (r_min, r_max) per step
    reward_mean: float | None = None  # mean per-step reward of the data, when the logs say it
    horizon: int | None = None  # episode horizon in environment steps
    capacity: Capacity = field(default_factory=Capacity)
    seed: int | None = None
    dataset_mc_return: float | None = None  # mean Monte-Carlo return of the dataset, if known
    checkpoint_interval: int | None = None  # in the run's x-axis unit
    warm_start: int | None = (
        None  # actor warm start (behaviour cloning) at the start of training, x-axis unit
    )
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # everything found, flattened
    sources: dict[str, str] = field(default_factory=dict)  # field name -> file/key it came from


@dataclass
class Checkpoint:
    step: int  # in the run's x-axis unit
    path: Path | None  # None: saved at that step, file not known (a live run's saves, analyzer/live.py)


@dataclass
class IngestIssue:
    """A problem met while reading logs: reported, never raised."""

    path: str
    message: str
    level: Literal["error", "warning", "info"] = "warning"
    offset: int | None = None  # byte offset of the damage, for binary files
    records_lost: int | None = None


@dataclass
class Run:
    id: str  # path relative to the scanned root, "/"-separated
    path: Path
    framework: str  # alias profile name, e.g. "d3rlpy", "rlkit", "offrl" (our trainer), "generic"
    metadata: RunMetadata = field(default_factory=RunMetadata)
    series: dict[str, Series] = field(default_factory=dict)  # canonical name -> series
    raw: dict[str, Series] = field(default_factory=dict)  # every tag as read, before aliasing
    checkpoints: list[Checkpoint] = field(default_factory=list)
    issues: list[IngestIssue] = field(default_factory=list)
    x_unit: XUnit = "step"

    def get(self, name: str) -> Series | None:
        return self.series.get(name)


@dataclass
class RawRun:
    """A run as the readers found it, before alias profiles give its tags canonical meaning.

    Discovery and the format readers (tfevents, CSV layouts) produce this; `profiles.resolve`
    turns it into a `Run`. Keeping the two apart lets a new log format reuse every profile and a
    new profile reuse every reader.
    """

    id: str
    path: Path
    layout: str  # reader that recognised it: "tfevents", "d3rlpy_csv", "progress_csv", "torchrl_csv", ...
    tags: dict[str, Series] = field(default_factory=dict)  # tag/column name -> series as read
    files: list[str] = field(default_factory=list)  # log files read
    config: dict[str, Any] = field(
        default_factory=dict
    )  # flattened "a.b.c" -> value from config files/hparams
    config_sources: dict[str, str] = field(default_factory=dict)  # flattened key -> file it came from
    checkpoints: list[Checkpoint] = field(default_factory=list)
    issues: list[IngestIssue] = field(default_factory=list)
    x_unit: XUnit = "step"
