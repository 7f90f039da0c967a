"""Reader for Weights & Biases run files (`wandb/run-*/run-<id>.wandb`, `wandb/offline-run-*/...`).

Why read the binary file: an offline run (compute nodes without network, `WANDB_MODE=offline`) of
wandb 0.2x/0.3x keeps its history, config and summary only inside `run-<id>.wandb`; there is no
history JSON or summary file next to it, and the SDK no longer ships a Python reader for it. The
file is a record log in LevelDB's framing:

* a 7-byte file header: b":W&B", magic 0xBEE1 (uint16 little endian), version 0;
* 32 KiB blocks counted from the start of the file (the header sits in the first block); a block
  tail shorter than a record header (7 bytes) is zero padding;
* each record chunk: CRC (uint32 LE), length (uint16 LE), type (1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST),
  then `length` bytes. Unlike LevelDB and TFRecord, the CRC is the *unmasked* IEEE CRC-32 (zlib)
  of the type byte followed by the data (read from files wandb 0.31 wrote; every chunk checks);
* the assembled record is a `wandb_internal_pb2.Record` (history, config, summary, run, ...); history
  rows, the run record and config records are read (summary records only repeat the last row).

The framing is checked here without wandb (so a damaged file is reported with its byte offset);
only decoding the records needs wandb's protobuf module, imported lazily when a run file is read,
within a tested version range (`TESTED_WANDB`). Outside it, or without wandb, the run yields one
ingest issue saying what to install, never a traceback. Damage never raises: a chunk with a bad
CRC, a bad length or an unknown type drops the rest of its 32 KiB block (LevelDB's own recovery:
records never straddle a block except as FIRST/MIDDLE/LAST fragments) and reading resumes at the
next block; a file cut mid-record (a live or killed run) keeps every record before the cut.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.model import IngestIssue

__all__ = [
    "INSTALL_HINT",
    "TESTED_WANDB",
    "WandbRunData",
    "installed_wandb_version",
    "iter_records",
    "read_wandb_run",
    "tested_range",
    "wandb_problem",
]

HEADER = struct.Struct("<4sHB")
IDENT = b":W&B"
MAGIC = 0xBEE1
VERSION = 0
BLOCK = 32768
CHUNK = struct.Struct("<IHB")  # crc, length, type
CHUNK_LEN = CHUNK.size  # 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
#: wandb releases whose protobuf module this reader was tested with (lower inclusive, upper exclusive):
#: 0.20.1, 0.22.3 and 0.31.0, each reading files written by each of them. Keep in step with the
#: `wandb` extra in pyproject.toml.
TESTED_WANDB = ((0, 20), (0, 32))
INSTALL_HINT = 'pip install "offrl-workflow[wandb]"'
#: history keys wandb adds to every row: the x-axis, wall time and run time (not training curves)
_STEP_KEY, _TIME_KEY = "_step", "_timestamp"
_INTERNAL_KEYS = frozenset({"_step", "_timestamp", "_runtime"})
#: CRC-32 of each chunk type byte: the running CRC a chunk's data continues from
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}


@dataclass
class WandbScalars:
    """One history key's numeric points in file order."""

    steps: np.ndarray  # int64
    values: np.ndarray  # float64
    wall_time: np.ndarray | None  # float64 seconds, from the row's `_timestamp`


@dataclass
class WandbRunData:
    """Everything read from one `.wandb` file, plus what went wrong while reading it."""

    path: str
    scalars: dict[str, WandbScalars] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    #: run identity: run_id, project, entity, display_name, group, job_type, producer (wandb version)
    run: dict[str, Any] = field(default_factory=dict)
    records: int = 0  # records decoded
    history_rows: int = 0
    exit_code: int | None = None
    issues: list[IngestIssue] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# wandb's protobuf module: lazy, version-checked


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for p in re.split(r"[.+-]", text)[:3]:
        m = re.match(r"\d+", p)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def installed_wandb_version() -> str | None:
    """The installed wandb distribution's version, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wandb")
    except PackageNotFoundError:
        return None


def tested_range() -> str:
    lo, hi = TESTED_WANDB
    return f">={'.'.join(map(str, lo))},<{'.'.join(map(str, hi))}"


def wandb_problem() -> str | None:
    """Why wandb's protobuf module cannot be used here (one line that says what to do), or None."""
    lo, hi = TESTED_WANDB
    rng = tested_range()
    installed = installed_wandb_version()
    if installed is None:
        return f"reading W&B run files needs the wandb package (wandb{rng}): {INSTALL_HINT}"
    v = _version_tuple(installed)
    if not (lo <= v[: len(lo)] < hi):
        return (
            f"wandb {installed} is installed; this reader is tested with wandb{rng}: {INSTALL_HINT} "
            f'(or pip install "wandb{rng}")'
        )
    try:
        from wandb.proto import wandb_internal_pb2  # noqa: F401
    except Exception as exc:  # broken install, protobuf clash: still one line, no traceback
        return f"wandb's protobuf module failed to import ({type(exc).__name__}: {exc}): {INSTALL_HINT}"
    return None


def _record_class() -> Any:
    from wandb.proto import wandb_internal_pb2

    return wandb_internal_pb2.Record  # type: ignore[attr-defined]  # generated protobuf module


# --------------------------------------------------------------------------------------------------
# Framing


@dataclass
class _Damage:
    offset: int
    message: str
    lost: int | None = None
    resumed_at: int | None = None  # where reading went on after skipping


def iter_records(buf: bytes, damage: list[_Damage]) -> Iterator[tuple[int, bytes]]:
    """Yield (offset of the record's first chunk, record bytes) from a whole `.wandb` file.

    The file header must already have been checked. Problems are appended to `damage`; they never
    raise. Why a generator: records are decoded as they are assembled, so a huge file's record
    bytes are never all held at once on top of the file buffer.
    """
    end = len(buf)
    off = HEADER.size
    pending: list[bytes] = []
    pending_at = -1
    unpack = CHUNK.unpack_from
    crc32 = zlib.crc32
    while off < end:
        left = BLOCK - off % BLOCK
        if left < CHUNK_LEN:
            off += left  # block trailer: zero padding
            continue
        if end - off < CHUNK_LEN:
            damage.append(
                _Damage(off, f"truncated at byte {off}: {end - off} byte(s) of a record header, file ends", 1)
            )
            break
        crc, length, kind = unpack(buf, off)
        data_at = off + CHUNK_LEN
        if kind == 0 and length == 0 and crc == 0:
            # zeros: LevelDB's preallocated/padded space; the rest of the block is unused
            if any(buf[off : min(end, off + left)]):
                damage.append(_Damage(off, f"zero record header at byte {off} before non-zero bytes; "
                                      f"skipped to the next block at byte {off + left}"))  # fmt: skip
            off += left
            continue
        bad = ""
        if kind not in _TYPE_CRC:
            bad = f"unknown record type {kind}"
        elif CHUNK_LEN + length > left:
            bad = f"record length {length} crosses the 32 KiB block boundary"
        elif data_at + length > end:
            claim = f"record claims {length} bytes at byte {data_at}"
            damage.append(_Damage(off, f"truncated at byte {off}: {claim}, file ends at byte {end}", 1))
            pending = []
            break
        elif crc32(buf[data_at : data_at + length], _TYPE_CRC[kind]) != crc:
            bad = "CRC mismatch"
        if bad:
            nxt = min(end, off + left)
            lost = 1 + (1 if pending else 0)
            damage.append(
                _Damage(
                    off,
                    f"damaged record at byte {off} ({bad}); skipped to the next block at byte {nxt} "
                    f"({nxt - off} bytes)",
                    lost,
                    resumed_at=nxt,
                )
            )
            pending = []
            off = nxt
            continue
        data = buf[data_at : data_at + length]
        if kind == FULL:
            if pending:
                damage.append(
                    _Damage(pending_at, f"record at byte {pending_at} has no last fragment; dropped", 1)
                )
                pending = []
            yield off, data
        elif kind == FIRST:
            if pending:
                damage.append(
                    _Damage(pending_at, f"record at byte {pending_at} has no last fragment; dropped", 1)
                )
            pending, pending_at = [data], off
        elif not pending:
            # MIDDLE/LAST without FIRST: the tail of a record whose head was in a damaged block
            if damage and damage[-1].resumed_at == off:
                damage[-1].lost = (damage[-1].lost or 0) + 1  # same damage: its record's tail
            else:
                damage.append(
                    _Damage(off, f"record fragment at byte {off} without its first part; dropped", 1)
                )
        elif kind == MIDDLE:
            pending.append(data)
        else:
            pending.append(data)
            yield pending_at, b"".join(pending)
            pending = []
        off = data_at + length
    if pending:
        damage.append(_Damage(pending_at, f"truncated: record at byte {pending_at} has no last fragment", 1))


# --------------------------------------------------------------------------------------------------
# Values


def _number(text: str) -> float | None:
    """A history value as float, or None when it is not a number (strings, media, histograms)."""
    try:
        return float(text)  # also "NaN", "Infinity", "-Infinity" as wandb writes them
    except ValueError:
        pass
    try:
        v = json.loads(text)
    except ValueError:
        return None
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _item_key(item: Any) -> str:
    """A history/config item's name: `key`, or its `nested_key` path joined by "." (wandb's own display)."""
    if item.key:
        return str(item.key)
    return ".".join(str(k) for k in item.nested_key)


def _path(item: Any) -> tuple[str, ...]:
    return (str(item.key),) if item.key else tuple(str(k) for k in item.nested_key)


def _set_path(target: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    if not keys:
        return
    node = target
    for k in keys[:-1]:
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            nxt = node[k] = {}
        node = nxt
    node[keys[-1]] = value


def _set_nested(target: dict[str, Any], item: Any, value: Any) -> None:
    _set_path(target, _path(item), value)


def _del_nested(target: dict[str, Any], item: Any) -> None:
    keys = _path(item)
    node: Any = target
    for k in keys[:-1]:
        node = node.get(k) if isinstance(node, dict) else None
    if isinstance(node, dict) and keys:
        node.pop(keys[-1], None)


def _apply_config(config: dict[str, Any], cfg: Any) -> None:
    for item in cfg.update:
        _set_nested(config, item, _json(item.value_json))
    for item in cfg.remove:
        _del_nested(config, item)


# --------------------------------------------------------------------------------------------------
# Reading


class _History:
    """Per-key point lists, filled row by row (a row: one committed `wandb.log` step)."""

    def __init__(self) -> None:
        self.points: dict[str, tuple[list[int], list[float], list[float]]] = {}
        self.non_numeric: dict[str, int] = {}
        self.rows = 0
        self.no_step = 0

    def add(self, history: Any) -> None:
        step: int | None = None
        wall = math.nan
        values: list[tuple[str, float]] = []
        for item in history.item:
            key = _item_key(item)
            if key == _STEP_KEY:
                v = _number(item.value_json)
                if v is not None and math.isfinite(v):
                    step = int(v)
                continue
            if key == _TIME_KEY:
                v = _number(item.value_json)
                wall = v if v is not None else math.nan
                continue
            if key in _INTERNAL_KEYS or key.startswith("_wandb"):
                continue
            v = _number(item.value_json)
            if v is None:
                self.non_numeric[key] = self.non_numeric.get(key, 0) + 1
                continue
            values.append((key, v))
        if step is None and history.HasField("step"):
            step = int(history.step.num)
        if step is None:
            self.no_step += 1
            return
        self.rows += 1
        for key, v in values:
            pts = self.points.get(key)
            if pts is None:
                pts = self.points[key] = ([], [], [])
            pts[0].append(step)
            pts[1].append(v)
            pts[2].append(wall)


def _issue(path: str, message: str, level: str = "warning", offset: int | None = None,
           lost: int | None = None) -> IngestIssue:  # fmt: skip
    return IngestIssue(path, message, level, offset, lost)  # type: ignore[arg-type]


def _check_header(buf: bytes) -> str | None:
    if len(buf) == 0:
        return "empty W&B run file (0 bytes)"
    if len(buf) < HEADER.size:
        return f"not a W&B run file: {len(buf)} byte(s), shorter than the 7-byte header"
    ident, magic, version = HEADER.unpack_from(buf, 0)
    if ident != IDENT or magic != MAGIC:
        return "not a W&B run file: no ':W&B' header"
    if version != VERSION:
        return f"W&B run file format version {version} is not supported (this reader knows version {VERSION})"
    return None


def read_wandb_run(path: str | Path) -> WandbRunData:
    """Read one `run-<id>.wandb` file; never raises on bad data or a missing/unsupported wandb."""
    import analyzer.ingest.storage as storage

    path = storage.as_path(path)
    spath = str(path)
    out = WandbRunData(path=spath)
    try:
        buf = storage.read_bytes(path)  # local or a RemotePath (storage.py)
    except OSError as exc:
        out.issues.append(_issue(spath, f"cannot read W&B run file: {exc.strerror or exc}", "error"))
        return out
    problem = _check_header(buf)
    if problem is not None:
        level = "warning" if problem.startswith("empty") else "error"
        out.issues.append(_issue(spath, problem, level, 0))
        return out
    problem = wandb_problem()
    if problem is not None:
        out.issues.append(_issue(spath, problem, "error"))
        return out
    try:
        from google.protobuf.message import DecodeError

        record_cls = _record_class()
    except Exception as exc:
        out.issues.append(_issue(spath, f"wandb's protobuf module unusable ({exc}): {INSTALL_HINT}", "error"))
        return out

    damage: list[_Damage] = []
    history = _History()
    undecodable: list[int] = []
    for offset, data in iter_records(buf, damage):
        try:
            rec = record_cls.FromString(data)
        except (DecodeError, ValueError, RuntimeError):
            undecodable.append(offset)
            continue
        out.records += 1
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.add(rec.history)
        elif kind == "run":
            _read_run_record(rec.run, out)
        elif kind == "config":
            _apply_config(out.config, rec.config)
        # `summary` records (one per logged step, the last value of each key) repeat the history's
        # last row: not read (they cost a third of the reading time)
        elif kind == "header":
            producer = rec.header.version_info.producer
            if producer:
                out.run["producer"] = str(producer)
        elif kind == "exit":
            out.exit_code = int(rec.exit.exit_code)

    for d in damage:
        out.issues.append(_issue(spath, d.message, "warning", d.offset, d.lost))
    if undecodable:
        out.issues.append(
            _issue(
                spath,
                f"{len(undecodable)} record(s) with valid CRCs are not wandb Records (first at byte "
                f"{undecodable[0]}); skipped",
                "warning",
                undecodable[0],
                len(undecodable),
            )
        )
    if out.records == 0 and not damage:
        out.issues.append(_issue(spath, "W&B run file holds no records", "warning", HEADER.size))
    if history.no_step:
        out.issues.append(
            _issue(spath, f"{history.no_step} history row(s) without a step (_step) were skipped", "warning")
        )
    if history.non_numeric:
        shown = ", ".join(sorted(history.non_numeric)[:5]) + (", ..." if len(history.non_numeric) > 5 else "")
        out.issues.append(
            _issue(
                spath,
                f"{len(history.non_numeric)} history key(s) hold non-numeric values (media, tables, text) "
                f"and were not read as curves: {shown}",
                "info",
            )
        )
    producer = _version_tuple(out.run.get("producer", ""))
    if producer and producer[:2] >= TESTED_WANDB[1]:
        out.issues.append(
            _issue(
                spath,
                f"written by wandb {out.run['producer'].split('+')[0]}, newer than the versions this reader "
                f"was tested with (wandb{tested_range()}); fields added since may be missed",
                "info",
            )
        )
    if out.exit_code not in (None, 0):
        out.issues.append(_issue(spath, f"the run exited with code {out.exit_code}", "info"))
    out.history_rows = history.rows
    for key, (steps, values, walls) in history.points.items():
        wall = np.asarray(walls, dtype=np.float64)
        out.scalars[key] = WandbScalars(
            steps=np.asarray(steps, dtype=np.int64),
            values=np.asarray(values, dtype=np.float64),
            wall_time=None if np.isnan(wall).any() else wall,
        )
    out.config.pop("_wandb", None)
    return out


def _read_run_record(run: Any, out: WandbRunData) -> None:
    for name in ("run_id", "project", "entity", "display_name", "run_group", "job_type"):
        value = getattr(run, name, "")
        if value:
            out.run[name] = str(value)
    if run.HasField("config"):
        _apply_config(out.config, run.config)
