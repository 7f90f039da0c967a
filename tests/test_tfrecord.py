"""Event-file reader and writer: round trips, agreement with tbparse and protobuf, and damage handling.

Every file is generated here with its own truth (what was written), so each assertion can fail.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import crc32c
import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, tensor_pb2, types_pb2

from analyzer.tfevents import EventFileData, EventWriter, encode_record, read_event_file, scalar_event_bytes
from analyzer.tfevents.crc import TABLES

WALL0 = 1.7e9


# ------------------------------------------------------------------------------------------------
# helpers


def _one_file(d: Path) -> Path:
    files = [p for p in d.iterdir() if "tfevents" in p.name]
    assert len(files) == 1
    return files[0]


def _records(data: bytes) -> list[tuple[int, int]]:
    """(offset, data length) of every record, by a plain independent walk."""
    out, off = [], 0
    while off + 16 <= len(data):
        (n,) = struct.unpack_from("<Q", data, off)
        out.append((off, n))
        off += 16 + n
    assert off == len(data)
    return out


def _write_table(d: Path, n_steps: int = 300, tags: int = 3, seed: int = 0, **kw) -> tuple[Path, dict]:
    rng = np.random.default_rng(seed)
    steps = np.arange(n_steps) * 7
    cols = {f"offrl/t{i}": rng.standard_normal(n_steps) for i in range(tags)}
    walls = WALL0 + np.arange(n_steps) * 0.25
    with EventWriter(d, **kw) as w:
        w.add_scalar_table(steps, cols, walls)
    return _one_file(d), {"steps": steps, "cols": cols, "walls": walls}


def _assert_same(a: EventFileData, b: EventFileData) -> None:
    assert sorted(a.scalars) == sorted(b.scalars)
    for tag in a.scalars:
        np.testing.assert_array_equal(a.scalars[tag].steps, b.scalars[tag].steps)
        np.testing.assert_array_equal(a.scalars[tag].values, b.scalars[tag].values)
        np.testing.assert_array_equal(a.scalars[tag].wall_time, b.scalars[tag].wall_time)
    assert a.hparams == b.hparams
    assert a.records == b.records and a.scalars_read == b.scalars_read


def _tensor_event(tag: str, step: int, wall: float, value: float, how: str, metadata: bool = False) -> bytes:
    ev = event_pb2.Event(wall_time=wall, step=step)
    v = ev.summary.value.add(tag=tag)
    t = v.tensor
    t.tensor_shape.SetInParent()
    if how == "float_val":
        t.dtype = types_pb2.DT_FLOAT
        t.float_val.append(value)
    elif how == "double_val":
        t.dtype = types_pb2.DT_DOUBLE
        t.double_val.append(value)
    elif how == "content64":
        t.dtype = types_pb2.DT_DOUBLE
        t.tensor_content = struct.pack("<d", value)
    elif how == "int64":
        t.dtype = types_pb2.DT_INT64
        t.int64_val.append(int(value))
    elif how == "shape1":
        t.dtype = types_pb2.DT_FLOAT
        t.tensor_shape.dim.add(size=1)
        t.float_val.append(value)
    if metadata:
        v.metadata.plugin_data.plugin_name = "scalars"
    return ev.SerializeToString()


# ------------------------------------------------------------------------------------------------
# writer bytes and CRC


def test_vectorised_crc_matches_c_crc32c() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 8, 37, 200):
        mat = rng.integers(0, 256, (50, n), dtype=np.uint8)
        got = TABLES.rows(mat)
        assert [int(x) for x in got] == [crc32c.crc32c(r.tobytes()) for r in mat]


@pytest.mark.parametrize(
    "step, wall, value",
    [(5, 1.5, 2.5), (0, 1.5, -1.0), (300, 0.0, 0.0), (-3, 2.0, float("nan")), (2**40, 3.0, 1e30)],
)
def test_scalar_event_bytes_equal_protobuf(step: int, wall: float, value: float) -> None:
    ev = event_pb2.Event(wall_time=wall, step=step)
    ev.summary.value.add(tag="a/b", simple_value=value)
    assert scalar_event_bytes("a/b", value, step, wall) == ev.SerializeToString()
    for dtype, dt, fmt in (("float32", types_pb2.DT_FLOAT, "<f"), ("float64", types_pb2.DT_DOUBLE, "<d")):
        ev = event_pb2.Event(wall_time=wall, step=step)
        v = ev.summary.value.add(tag="a/b")
        v.tensor.dtype = dt
        v.tensor.tensor_shape.SetInParent()
        v.tensor.tensor_content = struct.pack(fmt, value)
        v.metadata.plugin_data.plugin_name = "scalars"
        got = scalar_event_bytes("a/b", value, step, wall, as_tensor=True, tensor_dtype=dtype, metadata=True)
        assert got == ev.SerializeToString()


def test_bulk_writer_equals_single_record_writer(tmp_path: Path) -> None:
    steps = np.array([0, 1, 127, 128, 16383, 16384, 2**21, -5])
    vals = np.array([0.5, np.nan, np.inf, -np.inf, 1e-3, 0.0, 3.0, 1e300])  # 1e300: float32 overflow -> inf
    walls = np.array([WALL0, 0.0, WALL0 + 1, WALL0 + 2, 0.0, WALL0, WALL0, WALL0])
    for tens in (False, True):
        a, b = (
            tmp_path / f"a{tens}" / "events.out.tfevents.1.x",
            tmp_path / f"b{tens}" / "events.out.tfevents.1.x",
        )
        with EventWriter(a, as_tensor=tens) as w:
            w.add_scalars_bulk("x/y", steps, vals, walls)
        with EventWriter(b, as_tensor=tens) as w:
            for s, v, t in zip(steps, vals, walls, strict=True):
                w.add_scalar("x/y", v, s, t)
        # identical apart from the file_version record's wall time
        ra, rb = a.read_bytes(), b.read_bytes()
        ha, hb = _records(ra)[1][0], _records(rb)[1][0]
        assert ra[ha:] == rb[hb:]
        back = read_event_file(a).scalars["x/y"].values
        assert back[-1] == np.inf and np.isnan(back[1])


def test_hparams_event_parses_with_tensorboard_protos(tmp_path: Path) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    f = tmp_path / "events.out.tfevents.1.h"
    with EventWriter(f) as w:
        w.add_hparams(
            {"lr": 1e-3, "algo": "cql", "det": False, "n": np.int64(3), "ratio": np.float32(0.5)}, 12.5
        )
    data = f.read_bytes()
    off, n = _records(data)[1]
    ev = event_pb2.Event.FromString(data[off + 12 : off + 12 + n])
    (v,) = ev.summary.value
    assert ev.wall_time == 12.5 and v.tag == "_hparams_/session_start_info"
    assert v.metadata.plugin_data.plugin_name == "hparams"
    ssi = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content).session_start_info
    assert ssi.start_time_secs == 12.5
    got = {k: getattr(x, x.WhichOneof("kind")) for k, x in ssi.hparams.items()}
    assert got == {"lr": 1e-3, "algo": "cql", "det": False, "n": 3.0, "ratio": 0.5}
    assert read_event_file(f).hparams == got


# ------------------------------------------------------------------------------------------------
# round trips and agreement with tbparse


def test_round_trip_simple_values_are_float32(tmp_path: Path) -> None:
    f, truth = _write_table(tmp_path, n_steps=2000, tags=4)
    r = read_event_file(f)
    assert r.issues == []
    assert sorted(r.scalars) == sorted(truth["cols"])
    for tag, vals in truth["cols"].items():
        td = r.scalars[tag]
        np.testing.assert_array_equal(td.steps, truth["steps"])
        np.testing.assert_array_equal(td.values, vals.astype(np.float32).astype(np.float64))
        np.testing.assert_array_equal(td.wall_time, truth["walls"])
    assert r.scalars_read == 2000 * 4
    assert r.records == 2000 * 4 + 1  # + file_version
    assert r.fast_records > 0.99 * 2000 * 4  # the vectorised path did the work


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_tensor_scalars(tmp_path: Path, dtype: str) -> None:
    f, truth = _write_table(tmp_path, n_steps=500, tags=2, as_tensor=True, tensor_dtype=dtype)
    r = read_event_file(f)
    assert r.issues == []
    for tag, vals in truth["cols"].items():
        want = vals.astype(np.float32).astype(np.float64) if dtype == "float32" else vals
        np.testing.assert_array_equal(r.scalars[tag].values, want)
        np.testing.assert_array_equal(r.scalars[tag].steps, truth["steps"])
    _assert_same(r, read_event_file(f, fast=False))


def _mixed_file(d: Path, int_tensors: bool = True) -> tuple[Path, dict[str, list[tuple[int, float]]]]:
    """Everything at once: interleaved tags at irregular rates, varint-width changes, zero walls,
    NaN/Inf, TF2 tensor scalars of every encoding, multi-value records, images, text, histograms,
    hparams. Returns the file and the expected (step, value) list per tag. `int_tensors=False`
    leaves out int64 tensors, which tbparse 0.0.9 cannot read (AttributeError on dtypes.int4)."""
    rng = np.random.default_rng(7)
    f = d / "events.out.tfevents.123.host"
    want: dict[str, list[tuple[int, float]]] = {}

    def note(tag: str, step: int, value: float) -> None:
        want.setdefault(tag, []).append((step, value))

    with EventWriter(f) as w:
        w.add_hparams({"lr": 3e-4, "algo": "cql", "deterministic": True, "layers": 3})
        for step in range(0, 20000, 37):
            wall = 0.0 if step % 999 == 0 else WALL0 + step
            for tag in ("loss/q", "loss/policy", "q/mean"):
                v = float(rng.standard_normal())
                if step % 1369 == 0:
                    v = [np.nan, np.inf, -np.inf][step % 3]
                w.add_scalar(tag, v, step, wall)
                note(tag, step, float(np.float32(v)))
            if step % 370 == 0:
                w.add_scalar("eval/return", step / 10, step, wall)
                note("eval/return", step, float(np.float32(step / 10)))
            if step % 185 == 0:
                how = ["float_val", "double_val", "content64", "int64", "shape1"][step // 185 % 5]
                how = "double_val" if how == "int64" and not int_tensors else how
                v = float(rng.standard_normal()) if how != "int64" else float(step)
                w.write_event(_tensor_event("brac/q_loss", step, WALL0 + step, v, how, metadata=step == 0))
                note("brac/q_loss", step, float(np.float32(v)) if how in ("float_val", "shape1") else v)
            if step % 740 == 0:  # two values in one record
                ev = event_pb2.Event(wall_time=WALL0 + step, step=step)
                ev.summary.value.add(tag="multi/a", simple_value=1.5)
                ev.summary.value.add(tag="multi/b", simple_value=-2.5)
                img = ev.summary.value.add(tag="img")
                img.image.height = 2
                img.image.encoded_image_string = b"\x89PNG" + bytes(50)
                w.write_event(ev.SerializeToString())
                note("multi/a", step, 1.5)
                note("multi/b", step, -2.5)
            if step % 1110 == 0:  # text tensor + histogram-plugin float tensor: not scalars
                ev = event_pb2.Event(wall_time=WALL0, step=step)
                v = ev.summary.value.add(tag="notes")
                v.metadata.plugin_data.plugin_name = "text"
                v.tensor.dtype = types_pb2.DT_STRING
                v.tensor.string_val.append(b"hello")
                h = ev.summary.value.add(tag="hist")
                h.metadata.plugin_data.plugin_name = "histograms"
                h.tensor.CopyFrom(
                    tensor_pb2.TensorProto(
                        dtype=types_pb2.DT_DOUBLE, tensor_content=struct.pack("<3d", 0, 1, 5)
                    )
                )
                h.tensor.tensor_shape.dim.add(size=1)
                h.tensor.tensor_shape.dim.add(size=3)
                w.write_event(ev.SerializeToString())
    return f, want


def test_mixed_file_fast_equals_slow_and_truth(tmp_path: Path) -> None:
    f, want = _mixed_file(tmp_path)
    fast, slow = read_event_file(f), read_event_file(f, fast=False)
    _assert_same(fast, slow)
    assert fast.fast_records > 1000 and slow.fast_records == 0
    assert fast.issues == [] and slow.issues == []
    assert sorted(fast.scalars) == sorted(want)
    for tag, pairs in want.items():
        steps, values = zip(*pairs, strict=True)
        np.testing.assert_array_equal(fast.scalars[tag].steps, steps)
        np.testing.assert_array_equal(fast.scalars[tag].values, values)
    assert fast.hparams == {"lr": 3e-4, "algo": "cql", "deterministic": True, "layers": 3.0}
    assert fast.skipped.get("text", 0) > 0 and fast.skipped.get("histograms", 0) > 0
    assert fast.skipped.get("image", 0) > 0
    # zero wall time (omitted on disk) reads back as 0.0, NaN/Inf kept as values
    assert fast.scalars["loss/q"].wall_time[0] == 0.0
    assert np.isnan(fast.scalars["loss/q"].values).any() and np.isinf(fast.scalars["loss/q"].values).any()


def test_many_equal_length_layouts_take_the_fast_path(tmp_path: Path) -> None:
    """300 same-length tags (more than one round of layouts) plus tags whose name length and step
    varint width trade off so that different layouts share a record length."""
    f = tmp_path / "events.out.tfevents.1.h"
    steps = np.arange(0, 400, 1) * 50  # varint width 1 -> 2 -> 3 bytes
    rng = np.random.default_rng(5)
    with EventWriter(f) as w:
        w.add_scalar_table(steps[:40], {f"t{i:03d}": rng.standard_normal(40) for i in range(300)}, WALL0)
        w.add_scalar_table(steps, {"ab": rng.standard_normal(400), "abc": rng.standard_normal(400)}, WALL0)
    fast, slow = read_event_file(f), read_event_file(f, fast=False)
    _assert_same(fast, slow)
    assert fast.scalars_read == 300 * 40 + 800 and fast.issues == []
    assert fast.fast_records >= 0.97 * fast.scalars_read


def test_equal_to_tbparse(tmp_path: Path) -> None:
    tbparse = pytest.importorskip("tbparse")
    f, _ = _mixed_file(tmp_path, int_tensors=False)
    ours = read_event_file(f)
    reader = tbparse.SummaryReader(str(f), pivot=False, extra_columns={"wall_time"})
    tensors = reader.tensors
    assert set(tensors["tag"]) == {"brac/q_loss", "hist"}  # tbparse lists non-text tensors too
    tensors = tensors[tensors["tag"] == "brac/q_loss"]
    n_tb = 0
    for frame in (reader.scalars, tensors):
        for tag, g in frame.groupby("tag"):
            td = ours.scalars[tag]
            np.testing.assert_array_equal(td.steps, g["step"].to_numpy())
            vals = [np.asarray(v, dtype=np.float64).reshape(-1) for v in g["value"]]  # shape [1] tensors too
            assert all(v.shape == (1,) for v in vals)
            np.testing.assert_array_equal(td.values, np.concatenate(vals))
            np.testing.assert_array_equal(td.wall_time, g["wall_time"].to_numpy())
            n_tb += len(g)
    assert n_tb == ours.scalars_read
    hp = dict(zip(reader.hparams["tag"], reader.hparams["value"], strict=True))
    assert hp == ours.hparams


def test_torch_summary_writer_file(tmp_path: Path) -> None:
    tb = pytest.importorskip("torch.utils.tensorboard")
    steps = np.arange(0, 3000, 3)
    with tb.SummaryWriter(str(tmp_path)) as w:
        for s in steps:
            w.add_scalar("train/loss", 1.0 / (s + 1), int(s), walltime=WALL0 + s)
            w.add_scalar("train/q", float(s) * 0.5, int(s), walltime=WALL0 + s)
        w.add_hparams({"lr": 0.01, "bs": 256}, {"hparam/score": 1.0}, run_name=".")
    files = sorted(tmp_path.rglob("*tfevents*"), key=lambda p: p.stat().st_size)
    assert len(files) == 2  # torch writes hparams to a second file
    hp = read_event_file(files[0])
    assert hp.issues == [] and hp.hparams == {"lr": 0.01, "bs": 256.0} and hp.skipped.get("hparams", 0) == 0
    r = read_event_file(files[1])
    assert r.issues == []
    np.testing.assert_array_equal(r.scalars["train/loss"].steps, steps)
    np.testing.assert_array_equal(
        r.scalars["train/loss"].values, (1.0 / (steps + 1)).astype(np.float32).astype(np.float64)
    )
    np.testing.assert_array_equal(r.scalars["train/q"].wall_time, WALL0 + steps)
    _assert_same(r, read_event_file(files[1], fast=False))
    assert r.fast_records >= 1990  # a few one-off layouts (step 0) go through protobuf


def test_trainer_file_with_histograms_images_text_takes_the_fast_path(tmp_path: Path) -> None:
    """What real training loops write between their scalars (issue 14 item 7): weight histograms,
    images, text and sparser eval tags, interleaved, through torch's SummaryWriter. Every scalar is
    read (same as protobuf), the non-scalar records are counted as skipped, and the vectorised path
    decodes nearly all scalar records although the record-length pattern breaks every 50 steps."""
    import torch

    tb = pytest.importorskip("torch.utils.tensorboard")
    gen = torch.Generator().manual_seed(0)
    train = ("loss/critic", "loss/actor", "loss/cql", "q/data", "q/policy", "alpha")
    steps = 1200
    with tb.SummaryWriter(str(tmp_path)) as w:
        w.add_text("config", "gamma: 0.99", 0)
        for s in range(steps):
            for k, t in enumerate(train):
                w.add_scalar(t, float(k) + 1.0 / (s + 1), s, walltime=WALL0 + s)
            if s % 50 == 0:
                w.add_histogram("weights/q0", torch.randn(64, 17, generator=gen), s, walltime=WALL0 + s)
            if s % 100 == 0:
                for t in ("eval/return", "eval/success"):
                    w.add_scalar(t, float(s), s, walltime=WALL0 + s)
                w.add_image("eval/frame", torch.rand(3, 8, 8, generator=gen), s, walltime=WALL0 + s)
    (f,) = tmp_path.glob("*tfevents*")
    fast, slow = read_event_file(f), read_event_file(f, fast=False)
    assert fast.issues == [] and fast.scalars_read == steps * len(train) + 2 * (steps // 100)
    _assert_same(fast, slow)
    np.testing.assert_array_equal(fast.scalars["q/data"].steps, np.arange(steps))
    np.testing.assert_array_equal(fast.scalars["eval/return"].steps, np.arange(0, steps, 100))
    assert fast.skipped.get("histo") == steps // 50 and fast.skipped.get("image") == steps // 100
    assert fast.fast_records >= 0.99 * fast.scalars_read


# ------------------------------------------------------------------------------------------------
# damage


def _corrupt(f: Path, pos: int) -> None:
    data = bytearray(f.read_bytes())
    data[pos] ^= 0x5A
    f.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["length", "header_crc", "data", "data_crc"])
def test_flipped_byte_loses_exactly_one_record(tmp_path: Path, where: str) -> None:
    f, truth = _write_table(tmp_path, n_steps=400, tags=3)
    recs = _records(f.read_bytes())
    k = 1 + 3 * 150 + 1  # record of tag t1 at step index 150
    off, n = recs[k]
    pos = {"length": off + 2, "header_crc": off + 9, "data": off + 12 + n // 2, "data_crc": off + 13 + n}[
        where
    ]
    _corrupt(f, pos)
    for check_fast in (True, False):
        r = read_event_file(f, fast=check_fast)
        assert len(r.issues) == 1
        issue = r.issues[0]
        assert (issue.offset, issue.records_lost, issue.level) == (off, 1, "warning")
        assert "CRC" in issue.message
        assert r.records == len(recs) - 1
        for i, (tag, vals) in enumerate(truth["cols"].items()):
            keep = np.ones(400, dtype=bool)
            if i == 1:
                keep[150] = False
            np.testing.assert_array_equal(r.scalars[tag].steps, truth["steps"][keep])
            np.testing.assert_array_equal(r.scalars[tag].values, vals[keep].astype(np.float32))


def test_damage_spanning_records_is_estimated(tmp_path: Path) -> None:
    f, truth = _write_table(tmp_path, n_steps=400, tags=3)
    recs = _records(f.read_bytes())
    data = bytearray(f.read_bytes())
    a, b = recs[100][0], recs[105][0]
    data[a:b] = bytes(np.random.default_rng(0).integers(0, 256, b - a, dtype=np.uint8))
    f.write_bytes(bytes(data))
    r = read_event_file(f)
    assert [(i.offset, i.records_lost) for i in r.issues] == [(a, 5)]
    assert f"resynchronised at byte {b}" in r.issues[0].message
    assert r.records == len(recs) - 5
    assert r.scalars_read == 1200 - 5


def test_inserted_bytes_resynchronise(tmp_path: Path) -> None:
    f, truth = _write_table(tmp_path, n_steps=200, tags=2)
    data = f.read_bytes()
    recs = _records(data)
    off = recs[50][0] + 20  # inside record 50's data: its CRC fails, then the walk is misaligned
    f.write_bytes(data[:off] + b"JUNKJUNK" + data[off:])
    r = read_event_file(f)
    assert r.scalars_read == 400 - 1
    assert [i.offset for i in r.issues][0] == recs[50][0]
    assert sum(i.records_lost or 0 for i in r.issues) <= 2


def test_damaged_first_record(tmp_path: Path) -> None:
    f, truth = _write_table(tmp_path, n_steps=100, tags=2)
    recs = _records(f.read_bytes())
    _corrupt(f, 3)  # the file_version record's length
    r = read_event_file(f)
    assert [(i.offset, i.records_lost) for i in r.issues] == [(0, 1)]
    assert f"resynchronised at byte {recs[1][0]}" in r.issues[0].message
    assert r.scalars_read == 200 and r.skipped == {}


def test_leading_garbage_then_records(tmp_path: Path) -> None:
    f, truth = _write_table(tmp_path, n_steps=100, tags=2)
    f.write_bytes(b"this is not a record header at all" + f.read_bytes())
    r = read_event_file(f)
    assert r.scalars_read == 200
    assert (
        len(r.issues) == 1 and r.issues[0].offset == 0 and "resynchronised at byte 34" in r.issues[0].message
    )


@pytest.mark.parametrize("cut", ["in_data", "in_header", "after_length"])
def test_truncated_file_keeps_everything_before(tmp_path: Path, cut: str) -> None:
    f, truth = _write_table(tmp_path, n_steps=300, tags=2)
    data = f.read_bytes()
    recs = _records(data)
    k = 1 + 2 * 200  # first record of step index 200
    off, n = recs[k]
    end = {"in_data": off + 12 + n // 2, "in_header": off + 5, "after_length": off + 10}[cut]
    f.write_bytes(data[:end])
    r = read_event_file(f)
    assert len(r.issues) == 1
    assert r.issues[0].offset == off and r.issues[0].message.startswith(f"truncated at byte {off}")
    for tag in truth["cols"]:
        np.testing.assert_array_equal(r.scalars[tag].steps, truth["steps"][:200])


def test_growing_file_readable_while_written(tmp_path: Path) -> None:
    f = tmp_path / "events.out.tfevents.1.h"
    w = EventWriter(f, flush_secs=1e9)
    w.add_scalars_bulk("a", np.arange(100), np.ones(100), WALL0)
    w.flush()
    w.add_scalars_bulk("a", np.arange(100, 150), np.ones(50), WALL0)  # buffered, not yet on disk
    assert len(read_event_file(f).scalars["a"]) == 100
    w.close()
    assert len(read_event_file(f).scalars["a"]) == 150
    with EventWriter(f) as w2:  # appending keeps one file_version record
        w2.add_scalar("a", 2.0, 150, WALL0)
    r = read_event_file(f)
    assert len(r.scalars["a"]) == 151 and r.skipped == {"file_version": 1} and r.issues == []


def test_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "events.out.tfevents.0.h"
    f.write_bytes(b"")
    r = read_event_file(f)
    assert r.scalars == {} and len(r.issues) == 1 and "empty" in r.issues[0].message


@pytest.mark.parametrize("content", ["text", "random", "tiny"])
def test_not_an_event_file(tmp_path: Path, content: str) -> None:
    f = tmp_path / "events.out.tfevents.0.h"
    data = {
        "text": b"step,loss\n0,1.5\n1,1.2\n" * 200,
        "random": np.random.default_rng(3).integers(0, 256, 100_000, dtype=np.uint8).tobytes(),
        "tiny": b"abc",
    }[content]
    f.write_bytes(data)
    r = read_event_file(f)
    assert r.scalars == {} and r.records == 0
    assert len(r.issues) == 1
    if content == "tiny":
        assert "truncated at byte 0" in r.issues[0].message
    else:
        assert r.issues[0].level == "error" and "not a TFRecord/event file" in r.issues[0].message


def test_tfrecord_of_non_events_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "events.out.tfevents.0.h"
    f.write_bytes(b"".join(encode_record(b"\xff\xff\xff" + bytes([i])) for i in range(20)))
    r = read_event_file(f)
    assert r.scalars == {} and any("not TensorBoard Event" in i.message for i in r.issues)


def test_unreadable_paths(tmp_path: Path) -> None:
    for p in (tmp_path, tmp_path / "missing.tfevents"):
        r = read_event_file(p)
        assert r.scalars == {} and len(r.issues) == 1 and r.issues[0].level == "error"
        assert "cannot read" in r.issues[0].message
    if os.geteuid() != 0:
        f = tmp_path / "events.out.tfevents.0.h"
        f.write_bytes(encode_record(b""))
        f.chmod(0)
        assert "cannot read" in read_event_file(f).issues[0].message


def test_check_crc_off_reads_same_clean_data(tmp_path: Path) -> None:
    f, _ = _write_table(tmp_path, n_steps=500, tags=3)
    _assert_same(read_event_file(f), read_event_file(f, check_crc=False))


@pytest.mark.parametrize("check_crc", [True, False])
def test_fuzzed_files_never_raise_and_paths_agree(tmp_path: Path, check_crc: bool) -> None:
    """Random byte flips, cuts and insertions: no exception, and with CRCs off (damage reaches the
    decoders) the fast path still agrees with protobuf record for record."""
    f, _ = _mixed_file(tmp_path)
    orig = f.read_bytes()
    for seed in range(25):
        rng = np.random.default_rng(seed)
        data = bytearray(orig)
        for _ in range(int(rng.integers(1, 6))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        if seed % 5 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        if seed % 7 == 0:
            pos = int(rng.integers(0, len(data) + 1))
            data[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8).tobytes()
        g = tmp_path / f"events.out.tfevents.fuzz{seed}"
        g.write_bytes(bytes(data))
        a, b = read_event_file(g, check_crc=check_crc), read_event_file(g, check_crc=check_crc, fast=False)
        _assert_same(a, b)
        assert [(i.offset, i.records_lost) for i in a.issues] == [
            (i.offset, i.records_lost) for i in b.issues
        ]
        if check_crc and bytes(data) != orig:
            assert a.issues  # damage is always reported when CRCs are checked
