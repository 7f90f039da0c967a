"""Per-file reading state for `--watch`: each poll reads only the bytes appended since the last one.

Why: a live run's event file grows by a few KB between polls while the file is MBs; re-reading it
whole every poll made the cost of a watch grow with the run. Here each file keeps

* what identified its last version (`FileStat`: size, mtime, inode locally, ETag in a bucket)
  and its last 64 bytes;
* for an event file, the `EventStream` (offset reached, the unfinished last record, the scalars);
* for a CSV, the rows parsed from complete lines, the unfinished last line, and the header.

An unchanged file costs one `stat` (in a bucket: nothing, the poll's listing has its size and ETag).
A file that grew is read from where it stopped (the 64 bytes before are read again and must match:
the file was appended to, not rewritten). A file that shrank, changed inode, or whose old bytes
changed was rotated, truncated or rewritten: it is read again from the start and listed in
`resets`, which analyzer/watch.py reports. Results equal a full read of the file at that size (tests
check it), except that a record or line still being written is left for the next poll instead of
being reported as truncated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analyzer.ingest.csvlogs import _NON_SPACE, CsvLog, _first_line, _is_number, _text_problem, read_csv_bytes
from analyzer.ingest.merge import Segment
from analyzer.ingest.storage import BLOCK, FileStat, RemotePath, read_range, stat
from analyzer.model import IngestIssue
from analyzer.tfevents import EventFileData, EventStream
from analyzer.tfevents.reader import READ_BLOCK

__all__ = ["Reset", "Tail"]

#: Bytes before the old end of a file read again to check that it was only appended to.
OVERLAP = 64


@dataclass(frozen=True)
class Reset:
    """A file read again from its start: `reason` says why (rotated, truncated, rewritten)."""

    path: str
    reason: str


@dataclass
class _EventState:
    stat: FileStat
    stream: EventStream
    tail: bytes  # the last OVERLAP bytes fed
    data: EventFileData


@dataclass
class _CsvState:
    stat: FileStat
    size: int  # bytes consumed (rows + the unfinished line)
    tail: bytes
    data: CsvLog
    header: bytes | None = None  # None: headerless (d3rlpy / TorchRL) or not read incrementally
    incremental: bool = False
    rows: CsvLog | None = None  # parsed complete lines
    pending: bytes = b""  # the unfinished last line


@dataclass
class Tail:
    """Reading state of every file followed; `events` and `csv` answer for analyzer.ingest.follow."""

    _events: dict[str, _EventState] = field(default_factory=dict)
    _csvs: dict[tuple[str, str | None], _CsvState] = field(default_factory=dict)
    resets: list[Reset] = field(default_factory=list)
    bytes_read: int = 0  # bytes fetched from files (benchmarks/watch.py reports it)
    files_read: int = 0  # files that had new bytes (or were read for the first time)
    seconds: float = 0.0  # spent answering for files (stat, fetch, parse)

    # ---------------------------------------------------------------------------------------------
    # bookkeeping

    def take_resets(self) -> list[Reset]:
        out, self.resets = self.resets, []
        return out

    def keep_only(self, paths: set[str]) -> None:
        """Forget files not in `paths` (runs that disappeared), so memory follows what is watched."""
        for k in [k for k in self._events if k not in paths]:
            del self._events[k]
        for ck in [ck for ck in self._csvs if ck[0] not in paths]:
            del self._csvs[ck]

    def _read(self, path: Path, start: int, end: int) -> bytes:
        data = read_range(path, start, end)
        self.bytes_read += len(data)
        return data

    def _change(self, old: FileStat, new: FileStat) -> str | None:
        """None when the file can only have been appended to; else why it must be read again."""
        if old.ino is not None and new.ino is not None and old.ino != new.ino:
            return "replaced by a new file (rotated)"
        if new.size < old.size:
            return f"truncated ({old.size} -> {new.size} bytes)"
        if new.size == old.size:
            return "rewritten in place (same size, new modification time or ETag)"
        return None

    # ---------------------------------------------------------------------------------------------
    # event files

    def events(self, path: Path) -> EventFileData:
        t0 = time.perf_counter()
        try:
            return self._events_of(path)
        finally:
            self.seconds += time.perf_counter() - t0

    def csv(self, path: Path, tag: str | None) -> CsvLog:
        t0 = time.perf_counter()
        try:
            return self._csv_of(path, tag)
        finally:
            self.seconds += time.perf_counter() - t0

    def _events_of(self, path: Path) -> EventFileData:
        key = str(path)
        try:
            st = stat(path)
        except OSError as exc:
            self._events.pop(key, None)
            out = EventFileData(path=key)
            out.issues.append(IngestIssue(key, f"cannot read event file: {exc.strerror or exc}", "error"))
            return out
        state = self._events.get(key)
        if state is not None and state.stat == st:
            return state.data
        try:
            if state is not None:
                why = self._change(state.stat, st)
                if why is None:
                    start = state.stream.offset - len(state.tail)
                    head = self._read(path, start, min(st.size, start + len(state.tail)))
                    if head == state.tail:
                        self.files_read += 1
                        state.tail = self._feed(state.stream, path, state.stream.offset, st.size, state.tail)
                        state.stat = st
                        state.data = state.stream.result()
                        return state.data
                    why = "rewritten (its earlier bytes changed)"
                self.resets.append(Reset(key, why))
            self._events.pop(key, None)
            self.files_read += 1
            if st.size == 0:  # an empty file is reported as a full read reports it, and looked at again
                return EventStream(key).finish()
            stream = EventStream(key)
            tail = self._feed(stream, path, 0, st.size, b"")
        except OSError as exc:
            self._events.pop(key, None)
            out = EventFileData(path=key)
            out.issues.append(IngestIssue(key, f"cannot read event file: {exc.strerror or exc}", "error"))
            return out
        state = _EventState(st, stream, tail, stream.result())
        self._events[key] = state
        return state.data

    def _feed(self, stream: EventStream, path: Path, start: int, end: int, tail: bytes) -> bytes:
        """Feed bytes [start, end) of the file block by block (memory: one block); the new last bytes."""
        block = BLOCK if isinstance(path, RemotePath) else READ_BLOCK
        for a in range(start, end, block):
            data = self._read(path, a, min(a + block, end))
            if not data:
                break
            stream.feed(data)
            tail = (tail + data)[-OVERLAP:]
        return tail

    # ---------------------------------------------------------------------------------------------
    # CSV files

    def _csv_of(self, path: Path, tag: str | None) -> CsvLog:
        key = (str(path), tag)
        try:
            st = stat(path)
        except OSError as exc:
            self._csvs.pop(key, None)
            log = CsvLog(path=path, layout="")
            log.issues.append(IngestIssue(str(path), f"cannot read file: {exc.strerror or exc}", "error"))
            return log
        state = self._csvs.get(key)
        if state is not None and state.stat == st:
            return state.data
        try:
            if state is not None:
                why = self._change(state.stat, st)
                if why is None and state.incremental:
                    new = self._read(path, state.size - len(state.tail), st.size)
                    if new[: len(state.tail)] == state.tail and len(new) >= len(state.tail):
                        self.files_read += 1
                        self._append(state, path, tag, new[len(state.tail) :], st)
                        return state.data
                    why = "rewritten (its earlier bytes changed)"
                if why is not None:
                    self.resets.append(Reset(str(path), why))
            data = self._read(path, 0, st.size)
        except OSError as exc:
            self._csvs.pop(key, None)
            log = CsvLog(path=path, layout="")
            log.issues.append(IngestIssue(str(path), f"cannot read file: {exc.strerror or exc}", "error"))
            return log
        self.files_read += 1
        state = self._start_csv(path, tag, data, st)
        self._csvs[key] = state
        return state.data

    def _start_csv(self, path: Path, tag: str | None, data: bytes, st: FileStat) -> _CsvState:
        """Read a CSV from its start and decide whether later growth can be read line by line."""
        state = _CsvState(st, len(data), data[-OVERLAP:], read_csv_bytes(data, path, tag))
        if _text_problem(data) or _lone_cr(data):
            return state  # empty, binary, JSON or old Mac line ends: read whole again when it changes
        first = _first_line(data).decode("utf-8", errors="replace").strip().lstrip("\ufeff")
        headerless = all(_is_number(f.strip().strip('"')) for f in first.split(","))
        if headerless:
            header, body = b"", data
        else:
            m = _NON_SPACE.search(data)
            nl = data.find(b"\n", m.start() if m else 0)
            if nl < 0:
                return state  # the header line itself is not finished yet
            header, body = data[: nl + 1], data[nl + 1 :]
        cut = body.rfind(b"\n")
        complete, pending = (body[: cut + 1], body[cut + 1 :]) if cut >= 0 else (b"", body)
        rows = read_csv_bytes(header + complete, path, tag) if complete.strip() else None
        if rows is not None and (rows.ignored or (rows.tags and rows.x_column is None)):
            return state  # not a training log, or rows numbered by position: whole file again
        state.incremental = True
        state.header = header
        state.rows = rows
        state.pending = pending
        state.data = self._with_pending(state, path, tag)
        return state

    def _append(self, state: _CsvState, path: Path, tag: str | None, new: bytes, st: FileStat) -> None:
        buf = state.pending + new
        cut = buf.rfind(b"\n")
        complete, pending = (buf[: cut + 1], buf[cut + 1 :]) if cut >= 0 else (b"", buf)
        if complete.strip():
            more = read_csv_bytes((state.header or b"") + complete, path, tag)
            state.rows = more if state.rows is None else _concat(state.rows, more)
        state.pending = pending
        state.size = st.size
        state.tail = (state.tail + new)[-OVERLAP:]
        state.stat = st
        state.data = self._with_pending(state, path, tag)

    @staticmethod
    def _with_pending(state: _CsvState, path: Path, tag: str | None) -> CsvLog:
        """The rows, plus the unfinished last line read as a full read would (kept if it is whole)."""
        last = (
            read_csv_bytes((state.header or b"") + state.pending, path, tag)
            if state.pending.strip()
            else None
        )
        if state.rows is None:
            return last if last is not None else CsvLog(path=path, layout="")
        if last is None or not last.tags:
            return state.rows
        return _concat(state.rows, last)


def _lone_cr(data: bytes) -> bool:
    n = data.count(b"\r")
    return n > 0 and n != data.count(b"\r\n")


def _concat(a: CsvLog, b: CsvLog) -> CsvLog:
    """Rows of `a` followed by rows of `b` (two pieces of one file)."""
    out = CsvLog(path=a.path, layout=a.layout or b.layout, x_column=a.x_column or b.x_column, x_unit=a.x_unit)
    for name in list(a.tags) + [t for t in b.tags if t not in a.tags]:
        sa, sb = a.tags.get(name), b.tags.get(name)
        if sa is None or sb is None:
            out.tags[name] = sa or sb  # type: ignore[assignment]
            continue
        wall = (
            np.concatenate([sa.wall_time, sb.wall_time])
            if sa.wall_time is not None and sb.wall_time is not None
            else None
        )
        out.tags[name] = Segment(
            np.concatenate([sa.steps, sb.steps]), np.concatenate([sa.values, sb.values]), wall, sa.file
        )
    if a.epoch_steps is not None and b.epoch_steps is not None:
        out.epoch_steps = (
            np.concatenate([a.epoch_steps[0], b.epoch_steps[0]]),
            np.concatenate([a.epoch_steps[1], b.epoch_steps[1]]),
        )
    else:
        out.epoch_steps = a.epoch_steps if a.epoch_steps is not None else b.epoch_steps
    out.issues = a.issues + [i for i in b.issues if i not in a.issues]
    return out
