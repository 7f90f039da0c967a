"""Scalar logging: window averages accumulated on-device, written to TensorBoard events and CSV.

Why accumulate on-device: reading a loss with `.item()` every step forces a host sync and
costs more than the step itself for small networks. Each step adds one stacked tensor; the
host reads it once per logging interval.

Why record file sizes in checkpoints: on `--resume`, both files are cut back to their size at
the checkpoint, so the logs continue from the checkpoint step with no duplicated steps.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import torch

from analyzer.metrics import trainer_tag
from analyzer.tfevents import EventWriter

EVENT_GLOB = "events.out.tfevents.*"


class MetricLogger:
    """Averages `names` over each logging window; writes `progress.csv` and event files in `log_dir`."""

    def __init__(
        self,
        log_dir: Path,
        names: tuple[str, ...],
        device: torch.device,
        resume_state: dict[str, Any] | None = None,
        start_step: int = 0,
        point_names: tuple[str, ...] = (),
    ) -> None:
        self.log_dir = log_dir
        self.names = names
        self.point_names = point_names
        self.tags = [trainer_tag(n) for n in (*names, *point_names)]
        self.csv_path = log_dir / "progress.csv"
        self.acc = torch.zeros(len(names), device=device)
        self.count = 0
        header = ",".join(["step", *self.tags]) + "\n"
        if resume_state is not None:
            self._restore_files(resume_state["files"])
            self.acc.copy_(resume_state["acc"].to(device))
            self.count = int(resume_state["count"])
        if not self.csv_path.exists() or self.csv_path.stat().st_size == 0:
            self.csv_path.write_text(header)
        else:
            with self.csv_path.open() as f:
                existing = f.readline()
            if existing != header:
                raise ValueError(f"{self.csv_path}: existing header differs from this run's metrics")
        self._csv = self.csv_path.open("a", newline="")
        self._events = EventWriter(log_dir, filename_suffix=f".{os.getpid()}.s{start_step}")

    def _restore_files(self, sizes: dict[str, int]) -> None:
        """Cut every log file back to its size at the checkpoint; drop event files made after it."""
        for path in [self.csv_path, *self.log_dir.glob(EVENT_GLOB)]:
            if not path.is_file():
                continue
            size = sizes.get(path.name)
            if size is None:
                path.unlink()
            elif path.stat().st_size > size:
                with path.open("r+b") as f:
                    f.truncate(size)

    def accumulate(self, values: torch.Tensor) -> None:
        self.acc.add_(values)
        self.count += 1

    def write(self, step: int, points: dict[str, float] | None = None) -> dict[str, float]:
        """Average of the window ending at `step` (the only host sync of the interval), then the point values.

        `points` must hold every name of `point_names` (the CSV has a fixed header)."""
        if self.count == 0:
            return {}
        means = (self.acc / self.count).tolist()
        if self.point_names:
            assert points is not None, "point values missing"
            means += [points[n] for n in self.point_names]
        self.acc.zero_()
        self.count = 0
        row = io.StringIO()
        csv.writer(row, lineterminator="\n").writerow([step, *(repr(float(v)) for v in means)])
        self._csv.write(row.getvalue())
        self._csv.flush()
        for tag, value in zip(self.tags, means, strict=True):
            self._events.add_scalar(tag, float(value), step)
        self._events.flush()
        return dict(zip((*self.names, *self.point_names), means, strict=True))

    def state(self) -> dict[str, Any]:
        """What a checkpoint needs to resume logging exactly: window sums and file sizes."""
        self._csv.flush()
        self._events.flush()
        files = {
            p.name: p.stat().st_size for p in [self.csv_path, *self.log_dir.glob(EVENT_GLOB)] if p.is_file()
        }
        return {"acc": self.acc.detach().cpu().clone(), "count": self.count, "files": files}

    def close(self) -> None:
        self._csv.close()
        self._events.close()
