"""Scalar TensorBoard events for evaluation results.

Uses the analyzer's dependency-free writer when it exists (`analyzer.ingest.tfwriter.EventWriter`), otherwise
tensorboard's own EventFileWriter (tensorboard is a core dependency).
"""

from __future__ import annotations

import time
from pathlib import Path


class ScalarWriter:
    """`add(tag, value, step)` then `close()`; one event file in `folder`."""

    def __init__(self, folder: Path, prefer_analyzer: bool = True) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._impl = None
        try:
            if not prefer_analyzer:
                raise ImportError("tensorboard writer requested")
            from analyzer.ingest.tfwriter import EventWriter  # type: ignore[import-not-found]

            self._impl = EventWriter(folder, filename_suffix=".offrl-eval")
            self._kind = "analyzer"
        except (ImportError, AttributeError, TypeError):
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self._impl = EventFileWriter(str(folder), filename_suffix=".offrl-eval")
            self._kind = "tensorboard"

    def add(self, tag: str, value: float, step: int) -> None:
        if self._kind == "analyzer":
            self._impl.add_scalar(tag, float(value), int(step))
            return
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
        self._impl.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def close(self) -> None:
        if self._impl is not None:
            if hasattr(self._impl, "flush"):
                self._impl.flush()
            self._impl.close()
            self._impl = None
