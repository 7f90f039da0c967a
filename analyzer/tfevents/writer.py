"""Small, fast TensorBoard event-file writer (numpy + crc32c only; no protobuf runtime, TensorFlow or torch).

Why: the reference trainer and the benchmarks need event files that TensorBoard and tbparse read,
without pulling torch's SummaryWriter into the analyzer. Events are encoded by hand (the bytes
protobuf would produce, checked by tests), and `add_scalars_bulk` builds thousands of
records at once with numpy, so generating a 12M-scalar benchmark corpus takes seconds.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from analyzer.tfevents.crc import TABLES, mask_array, masked_crc32c

__all__ = ["EventWriter", "encode_record", "scalar_event_bytes"]

_COUNTER = itertools.count()
_HPARAMS_TAG = "_hparams_/session_start_info"


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int64 -> 10-byte two's complement, as protobuf does
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _field_bytes(key: int, payload: bytes) -> bytes:
    return bytes([key]) + _varint(len(payload)) + payload


def encode_record(data: bytes) -> bytes:
    """Frame `data` as one TFRecord: length, masked CRC of length, data, masked CRC of data."""
    head = struct.pack("<Q", len(data))
    return head + struct.pack("<I", masked_crc32c(head)) + data + struct.pack("<I", masked_crc32c(data))


def _pack_float(value: float, fmt: str) -> bytes:
    """Little-endian float bytes; beyond float32 range becomes +-inf (as numpy casts), never an error."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.array(value, dtype=fmt).tobytes()


def _scalar_metadata() -> bytes:
    """SummaryMetadata{plugin_data{plugin_name: "scalars"}} as TF2 writes on a tag's first event."""
    return _field_bytes(0x0A, _field_bytes(0x0A, b"scalars"))


def scalar_event_bytes(
    tag: str,
    value: float,
    step: int,
    wall_time: float,
    *,
    as_tensor: bool = False,
    tensor_dtype: str = "float32",
    metadata: bool = False,
) -> bytes:
    """Serialized `Event` holding one scalar, byte-identical to protobuf's own serialization."""
    tagb = tag.encode("utf-8")
    if as_tensor:
        dt, fmt = (1, "<f4") if tensor_dtype == "float32" else (2, "<f8")
        tensor = bytes([0x08, dt, 0x12, 0x00]) + _field_bytes(0x22, _pack_float(value, fmt))
        val = _field_bytes(0x0A, tagb) + _field_bytes(0x42, tensor)
        if metadata:
            val += _field_bytes(0x4A, _scalar_metadata())
    else:
        val = _field_bytes(0x0A, tagb) + b"\x15" + _pack_float(value, "<f4")
    return _event_prefix(wall_time, step) + _field_bytes(0x2A, _field_bytes(0x0A, val))


def _event_prefix(wall_time: float, step: int) -> bytes:
    out = b""
    packed = struct.pack("<d", wall_time)
    if packed != bytes(8):  # proto3 leaves +0.0 and 0 out
        out += b"\x09" + packed
    if step:
        out += b"\x10" + _varint(step)
    return out


def _varint_widths(steps: np.ndarray) -> np.ndarray:
    u = steps.astype(np.int64).view(np.uint64)
    width = np.ones(u.shape[0], dtype=np.int64)
    for k in range(1, 10):
        width += u >= np.uint64(1 << (7 * k))
    width[u == 0] = 0
    return width


class EventWriter:
    """Writes scalars and hparams to one `events.out.tfevents.*` file.

    `path_or_dir`: a directory (created; a new file named like TensorBoard's is made in it) or the
    path of an event file (appended to). Data reaches the file on `flush()`, on `close()`, when
    more than `max_buffer` bytes are pending, or when `flush_secs` have passed since the last
    flush, so a growing log can be read while training runs.
    """

    def __init__(
        self,
        path_or_dir: str | os.PathLike[str],
        *,
        filename_suffix: str = "",
        as_tensor: bool = False,
        tensor_dtype: str = "float32",
        flush_secs: float = 2.0,
        max_buffer: int = 1 << 20,
    ) -> None:
        if tensor_dtype not in ("float32", "float64"):
            raise ValueError(f"tensor_dtype must be 'float32' or 'float64', not {tensor_dtype!r}")
        p = Path(path_or_dir)
        if "tfevents" in p.name and not p.is_dir():
            p.parent.mkdir(parents=True, exist_ok=True)
            self.path = p
        else:
            p.mkdir(parents=True, exist_ok=True)
            name = (
                f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
                f".{os.getpid()}.{next(_COUNTER)}{filename_suffix}"
            )
            self.path = p / name
        self.as_tensor = as_tensor
        self.tensor_dtype = tensor_dtype
        self.flush_secs = flush_secs
        self.max_buffer = max_buffer
        self._fh: Any = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._last_flush = time.monotonic()
        self._tags_seen: set[str] = set()
        if self._fh.tell() == 0:
            self.write_event(_event_prefix(time.time(), 0) + _field_bytes(0x1A, b"brain.Event:2"))
            self.flush()

    # -- raw ------------------------------------------------------------------------------------
    def write_event(self, data: bytes) -> None:
        """Append one serialized Event (framing and CRCs added here)."""
        self._push(encode_record(data))

    def _push(self, rec: bytes) -> None:
        if self._fh is None:
            raise ValueError(f"EventWriter for {self.path} is closed")
        self._pending.append(rec)
        self._pending_bytes += len(rec)
        if self._pending_bytes >= self.max_buffer or time.monotonic() - self._last_flush >= self.flush_secs:
            self.flush()

    # -- scalars --------------------------------------------------------------------------------
    def _metadata_first(self, tag: str, as_tensor: bool) -> bool:
        if as_tensor and tag not in self._tags_seen:
            self._tags_seen.add(tag)
            return True
        return False

    def add_scalar(
        self,
        tag: str,
        value: float,
        step: int,
        wall_time: float | None = None,
        *,
        as_tensor: bool | None = None,
    ) -> None:
        """Log one scalar. `simple_value` is float32 on disk; tensors use `tensor_dtype`."""
        tens = self.as_tensor if as_tensor is None else as_tensor
        wall = time.time() if wall_time is None else float(wall_time)
        data = scalar_event_bytes(
            tag,
            float(value),
            int(step),
            wall,
            as_tensor=tens,
            tensor_dtype=self.tensor_dtype,
            metadata=self._metadata_first(tag, tens),
        )
        self.write_event(data)

    def add_scalars(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        """Log several tags at one step (one record per tag, like TensorBoard writers)."""
        wall = time.time() if wall_time is None else wall_time
        for tag, v in values.items():
            self.add_scalar(tag, v, step, wall)

    def add_scalars_bulk(
        self,
        tag: str,
        steps: Any,
        values: Any,
        wall_times: Any = None,
        *,
        as_tensor: bool | None = None,
    ) -> None:
        """Log a whole curve of one tag at once; records are built with numpy, in the given order."""
        tens = self.as_tensor if as_tensor is None else as_tensor
        steps = np.asarray(steps, dtype=np.int64).ravel()
        values = np.asarray(values, dtype=np.float64).ravel()
        n = steps.shape[0]
        if values.shape[0] != n:
            raise ValueError(f"steps ({n}) and values ({values.shape[0]}) differ in length")
        if wall_times is None:
            walls = np.full(n, time.time())
        else:
            walls = np.broadcast_to(np.asarray(wall_times, dtype=np.float64), (n,)).copy()
        if not n:
            return
        start = 0
        if tens and tag not in self._tags_seen:  # the tag's first record carries plugin metadata
            self.add_scalar(tag, values[0], steps[0], walls[0], as_tensor=tens)
            start = 1
            if n == 1:
                return
        idx = np.zeros(n - start, dtype=np.int64)
        self._push(self._bulk_records([tag], idx, steps[start:], values[start:], walls[start:], tens))

    def add_scalar_table(
        self, steps: Any, columns: dict[str, Any], wall_times: Any = None, *, as_tensor: bool | None = None
    ) -> None:
        """Log several tags over many steps: for each step one record per tag, interleaved as a
        trainer logging every tag each step would write them. NaN values are written as NaN."""
        tens = self.as_tensor if as_tensor is None else as_tensor
        steps = np.asarray(steps, dtype=np.int64).ravel()
        n, tags = steps.shape[0], list(columns)
        if not n or not tags:
            return
        vals = np.stack([np.asarray(columns[t], dtype=np.float64).ravel() for t in tags], axis=1)
        if vals.shape[0] != n:
            raise ValueError(f"columns have {vals.shape[0]} rows, steps has {n}")
        if wall_times is None:
            walls = np.full(n, time.time())
        else:
            walls = np.broadcast_to(np.asarray(wall_times, dtype=np.float64), (n,)).copy()
        k = len(tags)
        first = 0
        if tens and not self._tags_seen.issuperset(tags):  # first row carries plugin metadata
            for t, v in zip(tags, vals[0], strict=True):
                self.add_scalar(t, v, steps[0], walls[0], as_tensor=tens)
            first = 1
        if first >= n:
            return
        m = n - first
        self._push(
            self._bulk_records(
                tags,
                np.tile(np.arange(k), m),
                np.repeat(steps[first:], k),
                vals[first:].ravel(),
                np.repeat(walls[first:], k),
                tens,
            )
        )

    def _bulk_records(
        self,
        tags: list[str],
        tag_idx: np.ndarray,
        steps: np.ndarray,
        values: np.ndarray,
        walls: np.ndarray,
        tens: bool,
    ) -> bytes:
        """Records for (tag, step, value, wall) rows in the given order, built group by group."""
        n = steps.shape[0]
        width = 8 if tens and self.tensor_dtype == "float64" else 4
        with np.errstate(over="ignore", invalid="ignore"):
            vbytes = values.astype("<f8" if width == 8 else "<f4").view(np.uint8).reshape(n, width)
        wbytes = walls.astype("<f8").view(np.uint8).reshape(n, 8)
        wall_on = (walls.view(np.uint64) != 0).astype(np.int64)
        key = (tag_idx * 2 + wall_on) * 16 + _varint_widths(steps)
        sizes = np.zeros(n, dtype=np.int64)
        groups = []
        for k in np.unique(key):
            rows = np.flatnonzero(key == k)
            i0 = int(rows[0])
            tmpl = scalar_event_bytes(
                tags[int(k // 32)],
                0.0,
                int(steps[i0]),
                float(walls[i0]),
                as_tensor=tens,
                tensor_dtype=self.tensor_dtype,
            )
            sizes[rows] = len(tmpl) + 16
            groups.append((rows, tmpl, bool(k // 16 % 2), int(k % 16)))
        ends = np.cumsum(sizes)
        out = np.empty(int(ends[-1]), dtype=np.uint8)
        starts = ends - sizes
        u = steps.view(np.uint64)
        for rows, tmpl, has_wall, sw in groups:
            m, L = rows.shape[0], len(tmpl)
            mat = np.tile(np.frombuffer(tmpl, dtype=np.uint8), (m, 1))
            pos = 0
            if has_wall:
                mat[:, 1:9] = wbytes[rows]
                pos = 9
            if sw:
                su = u[rows]
                for i in range(sw):
                    b = (su >> np.uint64(7 * i)) & np.uint64(0x7F)
                    if i < sw - 1:
                        b |= np.uint64(0x80)
                    mat[:, pos + 1 + i] = b.astype(np.uint8)
            mat[:, L - width :] = vbytes[rows]
            head = struct.pack("<Q", L)
            head += struct.pack("<I", masked_crc32c(head))
            rec = np.empty((m, L + 16), dtype=np.uint8)
            rec[:, :12] = np.frombuffer(head, dtype=np.uint8)
            rec[:, 12 : 12 + L] = mat
            rec[:, 12 + L :] = mask_array(TABLES.rows(mat)).astype("<u4").view(np.uint8).reshape(m, 4)
            out[starts[rows][:, None] + np.arange(L + 16)] = rec
        return out.tobytes()

    # -- hparams --------------------------------------------------------------------------------
    def add_hparams(self, hparams: dict[str, Any], wall_time: float | None = None) -> None:
        """Record hyperparameters as the hparams plugin's session_start_info (what tbparse reads).

        Numbers are stored as doubles (ints come back as floats), bools as bools, the rest as text.
        Encoded by hand (checked against tensorboard's protos in tests), so the writer needs no
        tensorboard import.
        """
        wall = time.time() if wall_time is None else float(wall_time)
        entries = b""
        for name, v in hparams.items():
            if isinstance(v, bool | np.bool_):
                val = b"\x20" + (b"\x01" if v else b"\x00")  # google.protobuf.Value.bool_value
            elif isinstance(v, int | float | np.integer | np.floating):
                val = b"\x11" + struct.pack("<d", float(v))  # number_value
            else:
                val = _field_bytes(0x1A, str(v).encode("utf-8"))  # string_value
            entries += _field_bytes(
                0x0A, _field_bytes(0x0A, str(name).encode("utf-8")) + _field_bytes(0x12, val)
            )
        session_start = entries + b"\x29" + struct.pack("<d", wall)  # hparams map, start_time_secs
        plugin_data = _field_bytes(0x1A, session_start)  # HParamsPluginData.session_start_info (version 0)
        metadata = _field_bytes(0x0A, _field_bytes(0x0A, b"hparams") + _field_bytes(0x12, plugin_data))
        value = _field_bytes(0x0A, _HPARAMS_TAG.encode()) + _field_bytes(0x4A, metadata)
        self.write_event(_event_prefix(wall, 0) + _field_bytes(0x2A, _field_bytes(0x0A, value)))

    # -- lifecycle ------------------------------------------------------------------------------
    def flush(self) -> None:
        if self._fh is None:
            return
        if self._pending:
            self._fh.write(b"".join(self._pending))
            self._pending.clear()
            self._pending_bytes = 0
        self._fh.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._fh is None:
            return
        self.flush()
        self._fh.close()
        self._fh = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
