"""How a log file is read: whole (local), in blocks (a bucket), or only its new bytes (`--watch`).

Why a module between ingestion and the readers: `read_raw_run` asks for "the data of this event
file / this CSV" and should not care where the file lives or whether it was read before. Here:

* a local file goes to the readers as before (the fast path);
* a `RemotePath` event file is fetched in blocks and fed to an `EventStream` (memory per file:
  one block plus the scalars), a remote CSV is fetched whole, like a local one;
* inside `following(tail)` (analyzer/watch.py), the `Tail` answers: it keeps, per file, the
  size/ETag/inode last seen, the reading state (an `EventStream`, the CSV rows parsed so far and
  the unfinished last line) and reads only the bytes appended since.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from analyzer.ingest.csvlogs import CsvLog, read_csv_log
from analyzer.ingest.storage import RemotePath, iter_blocks
from analyzer.model import IngestIssue
from analyzer.tfevents import EventFileData, EventStream, read_event_file

__all__ = ["Tail", "following", "read_csv", "read_events", "read_remote_events"]


class Tail(Protocol):
    """What answers for files while `following(tail)` is active (analyzer/ingest/tail.py)."""

    def events(self, path: Path) -> EventFileData: ...

    def csv(self, path: Path, tag: str | None) -> CsvLog: ...


#: The Tail of the `--watch` poll in progress (None: read every file in full).
_TAIL: contextvars.ContextVar[Tail | None] = contextvars.ContextVar("offrl_tail", default=None)


@contextlib.contextmanager
def following(tail: Tail) -> Iterator[Tail]:
    """Within the block, event files and CSVs are read through `tail` (only what is new)."""
    token = _TAIL.set(tail)
    try:
        yield tail
    finally:
        _TAIL.reset(token)


def read_events(path: Path) -> EventFileData:
    """Every scalar of one event file, wherever it is (never raises)."""
    tail = _TAIL.get()
    if tail is not None:
        return tail.events(path)
    if isinstance(path, RemotePath):
        return read_remote_events(path)
    return read_event_file(path)


def read_remote_events(path: RemotePath, stream: EventStream | None = None, start: int = 0) -> EventFileData:
    """A bucket's event file, one sequential pass in blocks (`storage.BLOCK`)."""
    stream = stream or EventStream(str(path))
    try:
        for block in iter_blocks(path):
            stream.feed(block)
    except OSError as exc:
        out = EventFileData(path=str(path))
        out.issues.append(IngestIssue(str(path), f"cannot read event file: {exc.strerror or exc}", "error"))
        return out
    return stream.finish()


def read_csv(path: Path, tag: str | None) -> CsvLog:
    """One CSV log, wherever it is (never raises)."""
    tail = _TAIL.get()
    if tail is not None:
        return tail.csv(path, tag)
    return read_csv_log(path, tag)
