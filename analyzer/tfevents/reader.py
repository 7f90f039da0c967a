"""Fast, loud reader for TensorBoard event files (TFRecord framing around `Event` protos).

Why not tbparse / EventAccumulator: they decode every record through protobuf and a pure-Python
CRC (~20 us per scalar) and silently stop at the first damaged record. Here:

* records are split by their length headers with vectorised *predict-and-verify* (a writer that
  logs the same tags every step produces a periodic sequence of record lengths, so thousands of
  record offsets are predicted at once and checked with one numpy gather);
* CRC32C is checked for every record: header CRCs for all records at once and data CRCs per
  record length, both with per-position lookup tables (CRC is affine in the input bits, so a
  fixed-length CRC is an XOR of one table lookup per byte position) — no Python per record;
* records written by one writer for one tag share a byte layout, so records are grouped by
  length and by their bytes outside the variable fields (wall time, step varint, value); each
  group's layout is learned once from one record and all members are decoded at fixed offsets;
* anything unusual (multi-value summaries, hparams, images, odd tensors) goes through protobuf,
  and both paths give identical results (tests check it);
* damage never raises: a bad CRC is skipped and reading resynchronises at the next offset whose
  header CRC and data CRC validate; truncation, empty and non-TFRecord files become `IngestIssue`s.

Values come back as float64. `simple_value` is a float32 on disk, so such values are the float64 of
that float32 (e.g. 0.1 reads back as 0.10000000149011612), exactly what TensorBoard shows.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from analyzer.model import IngestIssue
from analyzer.tfevents.crc import TABLES, mask_array, masked_crc32c

__all__ = ["READ_BLOCK", "EventFileData", "EventStream", "TagData", "read_event_file"]

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")

# Tuning knobs (performance only; results do not depend on them).
_WALK = 32  # records walked in Python before trying to predict the length pattern again ...
_MAX_WALK = 256  # ... doubled while no pattern shows, up to this
_MIN_TAIL = 24  # a pattern must repeat over at least this many recent records (and twice)
_MAX_PERIOD = 128  # longest repeating pattern of record lengths that prediction looks for
_MAX_BATCH = 1 << 16  # most record offsets predicted in one numpy step
_FAST_MAX_LEN = 1024  # longer records (images, histograms) go through protobuf
_FAST_MIN_GROUP = 8  # smaller same-length groups are not worth a vectorised pass
_CHUNK_BYTES = 1 << 22  # bytes per row block when gathering same-length records into a matrix
_MAX_ROUNDS = 8  # layout-learning rounds per same-length block before leftovers go to protobuf
_MAX_KEYS = 256  # distinct layouts handled per round
_MAX_MISSES = 8  # layouts of another shape tolerated per round before leaving them to the next
_DIRECT_KEYS = 16  # layouts per block told apart by direct comparison before hashing the rest


@dataclass
class TagData:
    """One tag's scalars in file order (duplicates and restarts are resolved elsewhere)."""

    steps: np.ndarray  # int64
    values: np.ndarray  # float64; float32-typed values are widened exactly
    wall_time: np.ndarray  # float64 seconds since epoch

    def __len__(self) -> int:
        return int(self.steps.shape[0])


@dataclass
class EventFileData:
    """Everything read from one event file, plus what went wrong while reading it."""

    path: str
    scalars: dict[str, TagData] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    records: int = 0  # TFRecord records with valid CRCs
    scalars_read: int = 0
    issues: list[IngestIssue] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # non-scalar values by kind (debug counter)
    fast_records: int = 0  # records decoded by the vectorised path (debug counter)


def _unaligned(u8: np.ndarray, width: int) -> np.ndarray:
    """Little-endian unsigned ints of `width` bytes starting at every byte offset of `u8` (a view).

    Why: gathering `view[offs]` is one 1-D gather, about twice as fast as gathering rows of a
    sliding window and reinterpreting them (numpy handles the unaligned loads)."""
    n = u8.shape[0] - width + 1
    if n <= 0:
        return np.zeros(0, dtype=f"<u{width}")
    return np.ndarray((n,), dtype=f"<u{width}", buffer=u8, strides=(1,))


def _u32_at(u8: np.ndarray, offs: np.ndarray) -> np.ndarray:
    return _unaligned(u8, 4)[offs]


def _headers_ok(u8: np.ndarray, offs: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Whether each record's 8-byte length header has a matching masked CRC.

    `lens` are the lengths read from those headers, so the header bytes are known without reading
    them again, and records of one length share one header CRC: it is computed once per length."""
    if lens.shape[0] and lens.max() < 1 << 16:  # the usual case: a table indexed by length
        ulens = np.flatnonzero(np.bincount(lens))
        table = np.zeros(int(ulens[-1]) + 1, dtype=np.uint32)
        table[ulens] = mask_array(TABLES.rows(ulens.astype("<u8").view(np.uint8).reshape(-1, 8)))
        expected = table[lens]
    else:
        ulens, inverse = np.unique(lens, return_inverse=True)
        expected = mask_array(TABLES.rows(ulens.astype("<u8").view(np.uint8).reshape(-1, 8)))[inverse]
    return expected == _u32_at(u8, offs + 8)


# --------------------------------------------------------------------------------------------
# Record splitting


def _period(lens: list[int]) -> np.ndarray | None:
    """Shortest period of the recent record lengths (the pattern to predict), if any.

    Only the tail has to repeat (at least twice and over `_MIN_TAIL` records): right after an
    irregular record (a histogram, an image between the scalars of a training loop) the pattern is
    back within a few steps, and a wrong guess costs one failed verification, never a wrong offset.
    """
    a = np.asarray(lens[-2 * _MAX_PERIOD :], dtype=np.int64)
    n = a.shape[0]
    last = a[-1]
    for p in np.flatnonzero(a[-2::-1][: min(_MAX_PERIOD, n // 2)] == last) + 1:
        t = a[-min(n, max(2 * p, _MIN_TAIL)) :]
        if (t[p:] == t[:-p]).all():
            return a[-p:]
    return None


def _split(
    buf: bytes, u8: np.ndarray, start: int, end: int
) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Record offsets and lengths from `start` by following length headers (not yet CRC-checked).

    Returns (offset arrays, length arrays, stop) where `stop` is where following stopped: `end`, or
    the offset of a record that does not fit in the file.
    """
    unpack = _U64.unpack_from
    offs: list[np.ndarray] = []
    lens: list[np.ndarray] = []
    len_win = _unaligned(u8, 8) if u8.shape[0] >= 8 else None
    off = start
    batch = 512
    walk = _WALK
    recent: list[int] = []  # lengths of the latest records walked, for _period
    while True:
        wo: list[int] = []
        wl: list[int] = []
        stopped = False
        for _ in range(walk):
            if end - off < 16:
                stopped = True
                break
            (n,) = unpack(buf, off)
            if n > end - off - 16:
                stopped = True
                break
            wo.append(off)
            wl.append(n)
            off += 16 + n
        if wo:
            offs.append(np.array(wo, dtype=np.int64))
            lens.append(np.array(wl, dtype=np.int64))
        if stopped:
            return offs, lens, off
        recent = (recent + wl)[-2 * _MAX_PERIOD :]
        pat = _period(recent)
        walk = _WALK if pat is not None else min(2 * walk, _MAX_WALK)
        while pat is not None and len_win is not None:
            p = pat.shape[0]
            plens = np.tile(pat, -(-batch // p))[:batch]
            sizes = plens + 16
            ends = off + np.cumsum(sizes)
            poffs = ends - sizes
            fit = int(np.searchsorted(ends, end, side="right"))
            if fit < batch:
                poffs, plens, ends = poffs[:fit], plens[:fit], ends[:fit]
            if not fit:
                break
            good = len_win[poffs] == plens.astype(np.uint64)
            k = fit if good.all() else int(np.argmin(good))
            if k:
                offs.append(poffs[:k])
                lens.append(plens[:k])
                off = int(ends[k - 1])
                pat = np.roll(pat, -(k % p))
                recent = (recent + plens[max(0, k - 2 * _MAX_PERIOD) : k].tolist())[-2 * _MAX_PERIOD :]
            if k < batch:
                batch = 512
                break
            batch = min(2 * batch, _MAX_BATCH)
        if end - off < 16:
            return offs, lens, off


def _resync(
    buf: bytes, u8: np.ndarray, start: int, end: int, allow_truncated: bool, final: bool = True
) -> tuple[int | None, int | None]:
    """(first offset >= start holding a record whose header CRC and data CRC validate, None).

    With `allow_truncated`, a valid header whose record runs past the end also counts (a torn
    last write); not when nothing valid was seen yet, so a 2^-32 header-CRC coincidence in a
    random file cannot make it look like an event file. Not `final` (more bytes will come):
    (None, offset) where the search must go on once they have arrived.
    """
    chunk = 1 << 16
    a = start
    while a + 12 <= end:
        b = min(a + chunk, end - 11)
        crc = mask_array(TABLES.windows(u8, a, b, 8))
        stored = (
            u8[a + 8 : b + 8].astype(np.uint32)
            | (u8[a + 9 : b + 9].astype(np.uint32) << np.uint32(8))
            | (u8[a + 10 : b + 10].astype(np.uint32) << np.uint32(16))
            | (u8[a + 11 : b + 11].astype(np.uint32) << np.uint32(24))
        )
        for c in np.flatnonzero(crc == stored):
            p = a + int(c)
            (n,) = _U64.unpack_from(buf, p)
            if p + 16 + n > end:
                if not final:
                    return None, p  # decided once the record's bytes are there
                if allow_truncated:
                    return p, None  # reported as truncation by the caller
                continue
            if masked_crc32c(memoryview(buf)[p + 12 : p + 12 + n]) == _U32.unpack_from(buf, p + 12 + n)[0]:
                return p, None
        a = b
    if not final:
        return None, max(start, end - 11)
    return None, None


# --------------------------------------------------------------------------------------------
# Protobuf wire layout of one-scalar records


def _varint(b: bytes, i: int, end: int) -> tuple[int, int] | None:
    v = 0
    shift = 0
    while i < end and shift < 70:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, i
        shift += 7
    return None


def _fields(b: bytes, i: int, end: int) -> dict[int, tuple[int, int, int]] | None:
    """field number -> (wire type, value start, value end); None if malformed or a field repeats."""
    out: dict[int, tuple[int, int, int]] = {}
    while i < end:
        r = _varint(b, i, end)
        if r is None:
            return None
        key, j = r
        num, wt = key >> 3, key & 7
        if wt == 0:
            r = _varint(b, j, end)
            if r is None:
                return None
            vs, ve = j, r[1]
        elif wt == 1:
            vs, ve = j, j + 8
        elif wt == 5:
            vs, ve = j, j + 4
        elif wt == 2:
            r = _varint(b, j, end)
            if r is None:
                return None
            vs, ve = r[1], r[1] + r[0]
        else:
            return None
        if num == 0 or ve > end or num in out:
            return None
        out[num] = (wt, vs, ve)
        i = ve
    return out


@dataclass(frozen=True)
class _Layout:
    """Byte layout of a one-scalar Event record; everything outside `var` is identical in the group."""

    tag: str
    tensor: bool
    plugin: str | None
    wall: int | None  # offset of the float64 wall time
    step: tuple[int, int] | None  # [start, end) of the step varint
    value: int
    width: int  # 4 (float32) or 8 (float64)
    var: tuple[int, ...]  # byte positions that may differ between records of the group


def _layout(b: bytes) -> _Layout | None:
    """Learn the layout of a record, or None if it is not a plain one-scalar record."""
    top = _fields(b, 0, len(b))
    if top is None or 5 not in top or set(top) - {1, 2, 5}:
        return None
    wall = step = None
    if 1 in top:
        if top[1][0] != 1:
            return None
        wall = top[1][1]
    if 2 in top:
        if top[2][0] != 0:
            return None
        step = (top[2][1], top[2][2])
    wt, s, e = top[5]
    summ = _fields(b, s, e) if wt == 2 else None
    if summ is None or set(summ) != {1} or summ[1][0] != 2:
        return None
    val = _fields(b, summ[1][1], summ[1][2])
    if val is None or 1 not in val or val[1][0] != 2 or set(val) - {1, 2, 8, 9}:
        return None
    try:
        tag = b[val[1][1] : val[1][2]].decode("utf-8")
    except UnicodeDecodeError:
        return None
    plugin = None
    if 9 in val:
        if val[9][0] != 2:
            return None
        from tensorboard.compat.proto import summary_pb2

        try:
            md = summary_pb2.SummaryMetadata.FromString(b[val[9][1] : val[9][2]])
        except Exception:
            return None
        plugin = md.plugin_data.plugin_name
        if plugin not in ("", "scalars"):
            return None
    if (2 in val) == (8 in val):
        return None
    if 2 in val:
        if val[2][0] != 5:
            return None
        tensor, vpos, width = False, val[2][1], 4
    else:
        if val[8][0] != 2:
            return None
        t = _fields(b, val[8][1], val[8][2])
        if t is None or set(t) - {1, 2, 4, 5, 6} or 1 not in t or t[1][0] != 0:
            return None
        dtype = _varint(b, t[1][1], t[1][2])
        if dtype is None or dtype[0] not in (1, 2):
            return None
        width = 4 if dtype[0] == 1 else 8
        if 2 in t and (t[2][0] != 2 or t[2][2] != t[2][1]):
            return None  # only shape [] (an empty TensorShapeProto)
        sources = [k for k in (4, 5, 6) if k in t]
        if len(sources) != 1:
            return None
        k = sources[0]
        wt, vs, ve = t[k]
        if k == 5 and width != 4 or k == 6 and width != 8:
            return None
        if not (wt == 2 and ve - vs == width or wt == (5 if width == 4 else 1) and k != 4):
            return None
        tensor, vpos = True, vs
    var = set(range(vpos, vpos + width))
    if wall is not None:
        var.update(range(wall, wall + 8))
    if step is not None:
        var.update(range(*step))
    return _Layout(tag, tensor, plugin, wall, step, vpos, width, tuple(sorted(var)))


def _words(mat: np.ndarray) -> np.ndarray:
    """Rows of a (m, L) uint8 matrix as (m, ceil(L/8)) little-endian uint64 words, zero-padded."""
    m, n = mat.shape
    w = -(-n // 8)
    padded = np.zeros((m, w * 8), dtype=np.uint8)
    padded[:, :n] = mat
    return padded.view("<u8")


def _hash_words(words: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row (collisions are checked by the caller)."""
    h = np.full(words.shape[0], 0xCBF29CE484222325, dtype=np.uint64)
    mul = np.uint64(0x100000001B3)
    for j in range(words.shape[1]):
        h = (h ^ words[:, j]) * mul
        h ^= h >> np.uint64(29)
    return h


# --------------------------------------------------------------------------------------------
# Decoding


class _Collector:
    """Scalars found, keyed by tag, with the record order needed to restore file order."""

    def __init__(self) -> None:
        self.parts: dict[
            str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]]
        ] = {}
        self.slow: dict[str, list[tuple[int, int, int, float, float, bool]]] = {}
        self.plugins: dict[str, set[str]] = {}
        self.hparams: dict[str, Any] = {}
        self.skipped: dict[str, int] = {}
        self.fast = 0
        #: index of the first record of the block being decoded (records of earlier blocks of a
        #: stream come first): record indices stored here are file-wide, so order survives blocks
        self.rec_base = 0

    def declare(self, tag: str, plugin: str | None) -> None:
        if plugin is not None:
            self.plugins.setdefault(tag, set()).add(plugin)

    def skip(self, kind: str, n: int = 1) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + n

    def add_fast(self, lay: _Layout, rec: np.ndarray, data: np.ndarray, sel: np.ndarray | None) -> None:
        """Decode rows `sel` (None: all) of a same-layout record matrix at the layout's offsets."""

        def cols(a: int, b: int) -> np.ndarray:
            return np.ascontiguousarray(data[:, a:b] if sel is None else data[sel, a:b])

        m = rec.shape[0]
        wall = cols(lay.wall, lay.wall + 8).view("<f8").ravel() if lay.wall is not None else np.zeros(m)
        if lay.step is not None:
            raw = cols(*lay.step)
            step = np.zeros(m, dtype=np.uint64)
            for i in range(raw.shape[1]):
                step |= (raw[:, i] & 0x7F).astype(np.uint64) << np.uint64(7 * i)
            step = step.view(np.int64)
        else:
            step = np.zeros(m, dtype=np.int64)
        value = cols(lay.value, lay.value + lay.width).view("<f4" if lay.width == 4 else "<f8").ravel()
        self.declare(lay.tag, lay.plugin)
        if self.rec_base:
            rec = rec + self.rec_base
        sub = np.zeros(m, dtype=np.int64)
        with np.errstate(invalid="ignore"):  # signalling-NaN payloads stay NaN, silently
            value = value.astype(np.float64)
        self.parts.setdefault(lay.tag, []).append((rec, sub, step, value, wall, lay.tensor))
        self.fast += m

    def compact(self, limit: int = 32) -> None:
        """Merge a tag's blocks into one per kind once there are more than `limit` of them.

        Why: a stream fed for days (`--watch`) adds a few blocks per tag at every feed."""
        for tag, parts in self.parts.items():
            if len(parts) <= limit:
                continue
            merged = []
            for flag in (False, True):
                ps = [p for p in parts if p[5] == flag]
                if ps:
                    rec, sub, step, value, wall = (np.concatenate([p[i] for p in ps]) for i in range(5))
                    order = np.lexsort((sub, rec))
                    merged.append((rec[order], sub[order], step[order], value[order], wall[order], flag))
            self.parts[tag] = merged

    def add_slow(self, rec: int, data: bytes) -> bool:
        """Decode one record through protobuf; False if it is not an Event."""
        from google.protobuf.message import DecodeError
        from tensorboard.compat.proto import event_pb2

        try:
            ev = event_pb2.Event.FromString(data)
        except (DecodeError, RuntimeError, ValueError, RecursionError, MemoryError):
            return False
        if not ev.HasField("summary"):
            self.skip(ev.WhichOneof("what") or "empty_event")
            return True
        rec += self.rec_base
        for i, v in enumerate(ev.summary.value):
            plugin = v.metadata.plugin_data.plugin_name if v.HasField("metadata") else None
            self.declare(v.tag, plugin)
            kind = v.WhichOneof("value")
            if plugin == "hparams":
                self._hparams(v.metadata.plugin_data.content)
            elif plugin == "text":
                self._text_config(v.tensor)
            elif kind == "simple_value":
                self.slow.setdefault(v.tag, []).append((rec, i, ev.step, v.simple_value, ev.wall_time, False))
            elif kind == "tensor":
                x = _tensor_scalar(v.tensor)
                if x is None:
                    self.skip(plugin or "tensor")
                else:
                    self.slow.setdefault(v.tag, []).append((rec, i, ev.step, x, ev.wall_time, True))
            else:
                self.skip(plugin or kind or "empty_value")
        return True

    def _text_config(self, tensor: Any) -> None:
        """An argparse Namespace logged as text (`add_text("args", str(args))`) -> hparams.

        Keys already set by an hparams summary win; other text summaries are skipped."""
        from analyzer.ingest.configfiles import namespace_repr

        if len(tensor.string_val) != 1:
            self.skip("text")
            return
        params = namespace_repr(tensor.string_val[0].decode("utf-8", errors="replace"))
        if not params:
            self.skip("text")
        for key, value in params.items():
            self.hparams.setdefault(key, value)

    def _hparams(self, content: bytes) -> None:
        from tensorboard.plugins.hparams import plugin_data_pb2

        try:
            pd = plugin_data_pb2.HParamsPluginData.FromString(content)
        except Exception:
            self.skip("hparams_undecodable")
            return
        if pd.WhichOneof("data") != "session_start_info":
            return
        for name, val in pd.session_start_info.hparams.items():
            kind = val.WhichOneof("kind")
            if kind == "number_value":
                self.hparams[name] = val.number_value
            elif kind == "string_value":
                self.hparams[name] = val.string_value
            elif kind == "bool_value":
                self.hparams[name] = val.bool_value
            elif kind is not None:
                self.hparams[name] = None

    def result(self) -> tuple[dict[str, TagData], int, dict[str, int]]:
        """Per-tag scalars in record order, their count, and non-scalar counts found only now.

        Does not change the collector: a stream asks again after more records were added."""
        out: dict[str, TagData] = {}
        total = 0
        extra: dict[str, int] = {}
        for tag in sorted(set(self.parts) | set(self.slow)):
            tensors_ok = self.plugins.get(tag, set()) <= {"", "scalars"}
            parts = [p for p in self.parts.get(tag, []) if tensors_ok or not p[5]]
            skipped = sum(p[0].shape[0] for p in self.parts.get(tag, [])) - sum(p[0].shape[0] for p in parts)
            rows = [r for r in self.slow.get(tag, []) if tensors_ok or not r[5]]
            skipped += len(self.slow.get(tag, [])) - len(rows)
            if skipped:
                extra["tensor_non_scalar_plugin"] = extra.get("tensor_non_scalar_plugin", 0) + skipped
            if rows:
                cols = list(zip(*rows, strict=True))
                parts.append(
                    (
                        np.array(cols[0], dtype=np.int64),
                        np.array(cols[1], dtype=np.int64),
                        np.array(cols[2], dtype=np.int64),
                        np.array(cols[3], dtype=np.float64),
                        np.array(cols[4], dtype=np.float64),
                        False,
                    )
                )
            if not parts:
                continue
            if len(parts) == 1:  # one block: already in record order
                _, _, step, value, wall, _ = parts[0]
            else:
                rec, sub, step, value, wall = (np.concatenate([p[i] for p in parts]) for i in range(5))
                order = np.lexsort((sub, rec))
                step, value, wall = step[order], value[order], wall[order]
            out[tag] = TagData(steps=step, values=value, wall_time=wall)
            total += step.shape[0]
        return out, total, extra


def _tensor_scalar(t: Any) -> float | None:
    """The value of a one-element numeric TensorProto, else None (strings, histograms, images)."""
    from tensorboard.compat.proto import types_pb2

    dims = [d.size for d in t.tensor_shape.dim]
    if any(d != 1 for d in dims):
        return None
    np_types = {
        types_pb2.DT_FLOAT: "<f4",
        types_pb2.DT_DOUBLE: "<f8",
        types_pb2.DT_HALF: "<f2",
        types_pb2.DT_INT32: "<i4",
        types_pb2.DT_INT64: "<i8",
    }
    dt = np_types.get(t.dtype)
    if dt is None:
        return None
    if t.tensor_content:
        if len(t.tensor_content) != np.dtype(dt).itemsize:
            return None
        return float(np.frombuffer(t.tensor_content, dtype=dt)[0])
    if t.dtype == types_pb2.DT_FLOAT:
        vals: Any = t.float_val
    elif t.dtype == types_pb2.DT_DOUBLE:
        vals = t.double_val
    elif t.dtype == types_pb2.DT_HALF:
        vals = np.array(list(t.half_val), dtype=np.uint16).view("<f2")
    elif t.dtype == types_pb2.DT_INT32:
        vals = t.int_val
    else:
        vals = t.int64_val
    return float(vals[0]) if len(vals) == 1 else None


def _decode(
    col: _Collector,
    buf: bytes,
    u8: np.ndarray,
    offs: np.ndarray,
    lens: np.ndarray,
    check_crc: bool,
    fast: bool = True,
) -> tuple[list[int], list[int]]:
    """Decode records (offsets of CRC-valid headers) into `col`.

    Returns the indices (into `offs`) of the records whose data CRC failed and of those that are
    not Event protos; the caller reports them at their file offsets."""
    bad_crc: list[int] = []
    not_event: list[int] = []
    slow: list[int] = []
    # lengths below 65536 sort as uint16: numpy's stable sort is then a radix sort (same order)
    order = np.argsort(lens.astype(np.uint16) if lens.max() < 65536 else lens, kind="stable")
    sorted_lens = lens[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_lens[1:] != sorted_lens[:-1])))
    uniq = sorted_lens[starts]
    bounds = list(starts) + [order.shape[0]]
    mv = memoryview(buf)
    for gi, n in enumerate(uniq.tolist()):
        idx = order[bounds[gi] : bounds[gi + 1]]
        if not fast or n > _FAST_MAX_LEN or idx.shape[0] < _FAST_MIN_GROUP or n == 0:
            slow.extend(idx.tolist())
            continue
        win = sliding_window_view(u8, n)
        step = max(1, _CHUNK_BYTES // n)
        for a in range(0, idx.shape[0], step):
            rec = idx[a : a + step]
            data = win[offs[rec] + 12]
            if check_crc:
                ok = mask_array(TABLES.rows(data)) == _u32_at(u8, offs[rec] + 12 + n)
                if not ok.all():
                    bad_crc.extend(rec[~ok].tolist())
                    rec, data = rec[ok], data[ok]
            _decode_block(col, rec, data, slow)
    slow.sort()
    for r in slow:
        o, n = int(offs[r]), int(lens[r])
        data = mv[o + 12 : o + 12 + n]
        if check_crc and masked_crc32c(data) != _U32.unpack_from(buf, o + 12 + n)[0]:
            bad_crc.append(r)
            continue
        if not col.add_slow(r, bytes(data)):
            not_event.append(r)
    return sorted(bad_crc), not_event


def _decode_block(col: _Collector, rec: np.ndarray, data: np.ndarray, slow: list[int]) -> None:
    """Decode a block of same-length records by learning each layout once (see module doc).

    Rows are compared as 64-bit words with the layout's variable bytes masked out: rows whose
    masked words equal those of a row with a known layout parse identically, field for field.
    Each round learns the layout of its middle row rather than its first: the first record of a
    block is often the one odd record (at step 0, whose step field proto3 leaves out), and a
    layout no other row shares would cost a whole round.
    """
    n = data.shape[1]
    words_all = _words(data)
    left = np.arange(rec.shape[0])
    for _ in range(_MAX_ROUNDS):
        if not left.shape[0]:
            return
        src = left.shape[0] // 2  # the row (index into `left`) whose layout this round learns
        lay = _layout(data[left[src]].tobytes())
        if lay is None:
            slow.append(int(rec[left[src]]))
            left = np.delete(left, src)
            continue
        everything = left.shape[0] == rec.shape[0]
        sub = data if everything else data[left]
        fits = np.ones(left.shape[0], dtype=bool)
        if lay.step is not None:  # the step varint must keep its width: same structure
            s, e = lay.step
            for c in range(s, e - 1):
                fits &= sub[:, c] >= 0x80
            fits &= sub[:, e - 1] < 0x80
        keep = np.full(n, 0xFF, dtype=np.uint8)
        keep[list(lay.var)] = 0
        mask = _words(keep[None, :])[0]
        sub_words = words_all if everything else words_all[left]
        if fits.all():
            cand = np.arange(left.shape[0])
            words = sub_words & mask
        else:
            cand = np.flatnonzero(fits)
            words = sub_words[cand] & mask
        src_c = int(np.searchsorted(cand, src))  # `src` always fits its own layout
        done = np.zeros(left.shape[0], dtype=bool)
        # The source row's group first (guaranteed progress), then the others by size; rows whose
        # layout differs wait for a later round with their own variable positions.
        misses = 0
        for gi, (members, exact) in enumerate(_groups(words, src_c)):
            rep = src_c if gi == 0 else int(members[0])
            this = lay if gi == 0 else _layout(sub[cand[rep]].tobytes())
            if this is None or this.var != lay.var:
                misses += 1
                if misses > _MAX_MISSES:
                    break
                continue
            if exact:
                same = np.ones(members.shape[0], dtype=bool)
            else:
                same = (words[members] == words[rep]).all(axis=1)  # hash collisions stay behind
            if members.shape[0] == left.shape[0] and same.all():
                col.add_fast(this, rec[left], sub, None)
                done[:] = True
            else:
                rows = cand[members[same]]
                col.add_fast(this, rec[left[rows]], sub, rows)
                done[rows] = True
        left = left[~done]
    slow.extend(rec[left].tolist())


def _groups(words: np.ndarray, first: int = 0) -> list[tuple[np.ndarray, bool]]:
    """Row indices of `words` grouped by equal rows, each with whether the grouping is exact.

    Row `first`'s group comes first, then the others by size (at most `_MAX_KEYS`), members in
    ascending row order; rows in no returned group wait for the caller's next round. Why not
    always hash and sort: a training loop's same-length records belong to a handful of tags, and
    picking each group out with one exact comparison per 64-bit column is several times cheaper
    than hashing and sorting. Past `_DIRECT_KEYS` groups the rest is grouped by a hash (inexact:
    the caller re-checks those members against their first row).
    """
    m, w = words.shape
    taken = np.zeros(m, dtype=bool)
    out: list[tuple[np.ndarray, bool]] = []
    at = first
    while len(out) < _DIRECT_KEYS:
        eq = words[:, 0] == words[at, 0]
        for j in range(1, w):
            eq &= words[:, j] == words[at, j]
        out.append((np.flatnonzero(eq), True))
        taken |= eq
        at = int(np.argmin(taken))
        if taken[at]:  # every row has its group
            return _by_size(out)
        if len(out) == 2 and out[0][0].shape[0] == 1 and out[1][0].shape[0] == 1:
            return out  # unique rows under this mask: the next round uses another row's layout
    rest = np.flatnonzero(~taken)
    h = _hash_words(words[rest])
    perm = np.argsort(h, kind="stable")  # members of each hash group in ascending row order
    hs = h[perm]
    starts = np.flatnonzero(np.concatenate(([True], hs[1:] != hs[:-1])))
    counts = np.diff(np.append(starts, hs.shape[0]))
    top = np.argsort(-counts, kind="stable")[: max(0, _MAX_KEYS - len(out))]
    out.extend((rest[perm[starts[u] : starts[u] + counts[u]]], False) for u in top.tolist())
    return _by_size(out)


def _by_size(groups: list[tuple[np.ndarray, bool]]) -> list[tuple[np.ndarray, bool]]:
    first, others = groups[0], groups[1:]
    others.sort(key=lambda g: -g[0].shape[0])  # stable: equal sizes keep first-row order
    return [first, *others][:_MAX_KEYS]


# --------------------------------------------------------------------------------------------
# Public entry points

#: Bytes read from a file at a time. A file up to this size is read in one piece, exactly as if it
#: were read whole; a larger one block by block, so memory per file is one block plus the scalars.
READ_BLOCK = 64 << 20
#: Record lengths remembered for the "~N record(s)" estimate of a damaged stretch.
_RECENT_LENS = 4096


class EventStream:
    """One event file read as its bytes arrive: `feed` the next bytes, `result()` at any time.

    Why: a file in a bucket is read block by block (bounded memory, one sequential pass) and
    `--watch` reads only the bytes appended since its last poll. Between feeds the stream keeps
    the file offset reached, the bytes of a record not complete yet (or of a damaged stretch still
    being resynchronised) and the scalars decoded so far. Feeding a file in pieces of any size
    gives what reading it whole gives (tests check it): a record cut at the end of the bytes fed
    is a truncation only once `finish()` says no more bytes will come.
    """

    def __init__(self, path: str, *, check_crc: bool = True, fast: bool = True) -> None:
        self.path = path
        self.check_crc = check_crc
        self.fast = fast
        self.offset = 0  # bytes fed so far: the file offset of the next byte to feed
        self.finished = False
        self._pending = b""  # fed but not consumed: a partial record or bytes still to resynchronise
        self._col = _Collector()
        self._records = 0  # records split so far (valid header CRCs)
        self._ok = 0  # records whose data CRC is valid too
        self._recent = np.zeros(0, dtype=np.int64)
        self._issues: list[IngestIssue] = []
        #: damage being resynchronised: (file offset of the damaged record, whether any record came
        #: before it, median record length before it)
        self._damage: tuple[int, bool, float | None] | None = None
        self._not_event = 0
        self._first_not_event: int | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes fed but not yet part of a complete record (a live writer's unfinished record)."""
        return len(self._pending)

    def feed(self, data: bytes, final: bool = False) -> None:
        """Consume the next bytes of the file (`final`: and nothing comes after them)."""
        if self.finished:
            raise ValueError(f"{self.path}: event stream already finished")
        data = data if isinstance(data, bytes) else bytes(data)
        buf = self._pending + data if self._pending else data
        base = self.offset - len(self._pending)
        self.offset += len(data)
        end = len(buf)
        u8 = np.frombuffer(buf, dtype=np.uint8)
        offs_all: list[np.ndarray] = []
        lens_all: list[np.ndarray] = []
        split = 0  # records split in this call
        pos = 0
        while True:
            if self._damage is not None:
                pos, resolved = self._resynchronise(buf, u8, pos, end, base, final)
                if not resolved or pos >= end:
                    break
            if pos >= end:
                break
            offs_l, lens_l, stop = _split(buf, u8, pos, end)
            offs = np.concatenate(offs_l) if offs_l else np.zeros(0, dtype=np.int64)
            lens = np.concatenate(lens_l) if lens_l else np.zeros(0, dtype=np.int64)
            if self.check_crc and offs.shape[0]:
                ok = _headers_ok(u8, offs, lens)
                if not ok.all():
                    k = int(np.argmin(ok))
                    stop, offs, lens = int(offs[k]), offs[:k], lens[:k]
            offs_all.append(offs)
            lens_all.append(lens)
            split += offs.shape[0]
            if lens.shape[0]:
                self._recent = np.concatenate([self._recent, lens[-_RECENT_LENS:]])[-_RECENT_LENS:]
            if stop >= end:
                pos = end
                break
            header_ok = (
                end - stop >= 12 and masked_crc32c(buf[stop : stop + 8]) == _U32.unpack_from(buf, stop + 8)[0]
            )
            if header_ok or end - stop < 12:
                if not final:
                    pos = stop  # an incomplete record: wait for the rest
                    break
                (n,) = _U64.unpack_from(buf, stop) if end - stop >= 8 else (None,)
                claim = f": record claims {n} data bytes" if header_ok else ""
                self._issues.append(
                    IngestIssue(
                        self.path,
                        f"truncated at byte {base + stop}{claim}, file ends at byte {base + end}",
                        "warning",
                        base + stop,
                        1,
                    )
                )
                pos = end
                break
            median = float(np.median(self._recent)) if self._recent.shape[0] else None
            self._damage = (base + stop, self._records + split > 0, median)
            pos = stop + 1
        if split:
            offs = np.concatenate(offs_all)
            lens = np.concatenate(lens_all)
            self._col.rec_base = self._records
            bad, not_event = _decode(self._col, buf, u8, offs, lens, self.check_crc, self.fast)
            self._issues.extend(
                IngestIssue(
                    self.path,
                    f"data CRC mismatch in record at byte {base + int(offs[r])}; record skipped",
                    "warning",
                    base + int(offs[r]),
                    1,
                )
                for r in bad
            )
            if not_event:
                first = base + int(offs[min(not_event)])
                self._not_event += len(not_event)
                if self._first_not_event is None:
                    self._first_not_event = first
            self._records += split
            self._ok += split - len(bad)
            self._col.compact()
        self._pending = buf[pos:] if pos < end else b""
        if final:
            self.finished = True
            if self.offset == 0:
                self._issues.append(IngestIssue(self.path, "empty event file (no records)", "warning", 0, 0))

    def finish(self) -> EventFileData:
        """No more bytes: report a cut last record or unresolved damage, and return everything read."""
        if not self.finished:
            self.feed(b"", final=True)
        return self.result()

    def _resynchronise(
        self, buf: bytes, u8: np.ndarray, pos: int, end: int, base: int, final: bool
    ) -> tuple[int, bool]:
        """Look for the next valid record after damage: (where to go on, whether it was settled)."""
        assert self._damage is not None
        stop, any_before, median = self._damage
        found, wait = _resync(buf, u8, pos, end, any_before, final)
        if wait is not None:
            return wait, False
        self._damage = None
        file_end = base + end
        nxt = None if found is None else base + found
        if nxt is None and not any_before and stop == 0:
            self._issues.append(
                IngestIssue(self.path, "not a TFRecord/event file: no valid record found", "error", 0, None)
            )
            return end, True
        if median is not None:
            typical = median + 16
        elif found is not None and found + 8 <= end:
            typical = float(_U64.unpack_from(buf, found)[0]) + 16
        else:
            typical = float(file_end - stop)
        gap = (nxt if nxt is not None else file_end) - stop
        lost = max(1, round(gap / typical))
        if nxt is None:
            msg = f"damaged record at byte {stop} (bad header CRC); no valid record after it, {gap} bytes unread"
            self._issues.append(IngestIssue(self.path, msg, "warning", stop, lost))
            return end, True
        msg = (
            f"damaged record at byte {stop} (bad header CRC); resynchronised at byte {nxt}, "
            f"skipping {gap} bytes (~{lost} record(s))"
        )
        self._issues.append(IngestIssue(self.path, msg, "warning", stop, lost))
        return int(found), True  # type: ignore[arg-type]

    def result(self) -> EventFileData:
        """Everything decoded so far (the stream can go on being fed afterwards)."""
        out = EventFileData(path=self.path)
        issues = list(self._issues)
        if self._not_event:
            first = self._first_not_event
            issues.append(
                IngestIssue(
                    self.path,
                    f"{self._not_event} record(s) are not TensorBoard Event protos (first at byte {first}); skipped",
                    "warning",
                    first,
                    self._not_event,
                )
            )
        if self._records:
            out.scalars, out.scalars_read, extra = self._col.result()
            out.hparams = dict(self._col.hparams)
            out.skipped = dict(self._col.skipped)
            for kind, n in extra.items():
                out.skipped[kind] = out.skipped.get(kind, 0) + n
            out.fast_records = self._col.fast
        out.records = self._ok
        issues.sort(key=lambda i: -1 if i.offset is None else i.offset)
        out.issues = issues
        return out


def read_event_file(
    path: str | os.PathLike[str], *, check_crc: bool = True, fast: bool = True
) -> EventFileData:
    """Read every scalar (and hparams) of one event file; damage becomes issues, never exceptions.

    `check_crc=False` skips the per-record CRC checks (about a third faster); damage is then only
    noticed when a length header points outside the file (resynchronisation still uses CRCs).
    `fast=False` decodes every record through protobuf (the reference the fast path is tested against).
    A file up to READ_BLOCK bytes is read in one piece; a larger one in blocks (EventStream).
    """
    path = str(path)
    stream = EventStream(path, check_crc=check_crc, fast=fast)
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size <= READ_BLOCK:
                stream.feed(fh.read())  # the usual case: one read, one pass
            while block := fh.read(READ_BLOCK):
                stream.feed(block)
    except OSError as exc:
        out = EventFileData(path=path)
        out.issues.append(IngestIssue(path, f"cannot read event file: {exc.strerror or exc}", "error"))
        return out
    return stream.finish()
