"""EventStream: an event file fed in pieces reads exactly as the whole file, damage included.

Why it matters: buckets are read block by block and `--watch` feeds only appended bytes; a piece
boundary inside a record, a header or a damaged stretch must change nothing in what is reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tfrecord import _mixed_file

from analyzer.tfevents import EventFileData, EventStream, EventWriter, read_event_file

WALL0 = 1.7e9


def _issues(d: EventFileData) -> list[tuple]:
    return [(i.message, i.level, i.offset, i.records_lost) for i in d.issues]


def _same(a: EventFileData, b: EventFileData) -> None:
    assert sorted(a.scalars) == sorted(b.scalars)
    for tag in a.scalars:
        np.testing.assert_array_equal(a.scalars[tag].steps, b.scalars[tag].steps)
        np.testing.assert_array_equal(a.scalars[tag].values, b.scalars[tag].values)
        np.testing.assert_array_equal(a.scalars[tag].wall_time, b.scalars[tag].wall_time)
    assert a.hparams == b.hparams
    assert (a.records, a.scalars_read, a.skipped) == (b.records, b.scalars_read, b.skipped)
    assert _issues(a) == _issues(b)


def _fed(path: str, data: bytes, cuts: list[int], **kw) -> EventFileData:
    stream = EventStream(path, **kw)
    last = 0
    for c in sorted(set(cuts)):
        stream.feed(data[last:c])
        last = c
    stream.feed(data[last:])
    return stream.finish()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, bytes]:
    f, _ = _mixed_file(tmp_path_factory.mktemp("mixed"))
    return f, f.read_bytes()


def _damaged(orig: bytes, seed: int) -> bytes:
    """Flipped bytes, a cut end, inserted garbage: the damage kinds the reader reports."""
    rng = np.random.default_rng(seed)
    data = bytearray(orig)
    for _ in range(int(rng.integers(0, 5))):
        data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
    if seed % 3 == 0:
        data = data[: int(rng.integers(0, len(data)))]
    if seed % 4 == 0:
        pos = int(rng.integers(0, len(data) + 1))
        data[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
    return bytes(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 1 << 20), max_size=12))
def test_any_split_of_a_damaged_file_reads_as_the_whole_file(tmp_path, mixed, seed, cuts) -> None:
    _, orig = mixed
    data = _damaged(orig, seed)
    f = tmp_path / f"events.out.tfevents.{seed}"
    f.write_bytes(data)
    whole = read_event_file(f)
    cuts = [c % (len(data) + 1) for c in cuts]
    _same(_fed(str(f), data, cuts), whole)


@pytest.mark.parametrize("piece", [1, 7, 16, 4096])
def test_tiny_pieces_read_as_the_whole_file(mixed, piece) -> None:
    f, data = mixed
    data = data[:60_000] if piece == 1 else data  # byte by byte: a shorter file keeps it quick
    g = f.parent / f"events.out.tfevents.piece{piece}"
    g.write_bytes(data)
    _same(_fed(str(g), data, list(range(piece, len(data), piece))), read_event_file(g))


def test_a_record_cut_at_the_end_waits_until_finish(tmp_path) -> None:
    """Between feeds a torn last record is a live writer's unfinished write, not damage."""
    f = tmp_path / "events.out.tfevents.1.x"
    with EventWriter(f) as w:
        for step in range(100):
            w.add_scalar("q", float(step), step, WALL0 + step)
    data = f.read_bytes()
    stream = EventStream("f")
    stream.feed(data[:-5])
    mid = stream.result()
    assert mid.issues == [] and len(mid.scalars["q"]) == 99 and stream.pending_bytes > 0
    stream.feed(data[-5:])
    assert len(stream.result().scalars["q"]) == 100 and stream.pending_bytes == 0
    cut = EventStream("f")
    cut.feed(data[:-5])
    end = cut.finish()
    (issue,) = end.issues
    assert issue.message.startswith("truncated at byte") and issue.message.endswith(
        f"file ends at byte {len(data) - 5}"
    )
    assert len(end.scalars["q"]) == 99


def test_result_can_be_asked_again_as_the_file_grows(tmp_path) -> None:
    """Appending (as --watch does) gives each time what a fresh read of the file so far gives."""
    f = tmp_path / "events.out.tfevents.1.grow"
    stream = EventStream(str(f))
    fed = 0
    rng = np.random.default_rng(0)
    for k in range(5):
        with EventWriter(f) as w:  # an existing file path is appended to
            steps = np.arange(k * 500, (k + 1) * 500)
            w.add_scalar_table(
                steps, {"a": rng.standard_normal(500), "b": rng.standard_normal(500)}, WALL0 + steps
            )
            if k == 2:
                w.add_hparams({"lr": 1e-3})
        data = f.read_bytes()
        stream.feed(data[fed:])
        fed = len(data)
        _same(stream.result(), read_event_file(f))
    assert len(stream.result().scalars["a"]) == 2500


def test_large_files_are_read_in_blocks(tmp_path, monkeypatch) -> None:
    """A file larger than READ_BLOCK is read block by block with the same result."""
    import analyzer.tfevents.reader as reader

    f, _ = _mixed_file(tmp_path)
    whole = read_event_file(f)
    monkeypatch.setattr(reader, "READ_BLOCK", 4099)
    _same(read_event_file(f), whole)


def test_finished_stream_refuses_more_bytes() -> None:
    s = EventStream("x")
    s.finish()
    with pytest.raises(ValueError):
        s.feed(b"abc")
    assert [i.message for i in s.result().issues] == ["empty event file (no records)"]


def test_a_stream_fed_many_times_keeps_few_blocks(tmp_path) -> None:
    """--watch feeds a stream at every poll; its blocks are merged and the result stays exact."""
    f = tmp_path / "events.out.tfevents.1.many"
    stream = EventStream(str(f))
    fed = 0
    for k in range(100):
        with EventWriter(f) as w:
            steps = np.arange(k * 10, (k + 1) * 10)
            w.add_scalar_table(steps, {"a": np.sin(steps / 7.0), "b": np.cos(steps / 9.0)}, WALL0 + steps)
        data = f.read_bytes()
        stream.feed(data[fed:])
        fed = len(data)
    assert max(len(p) for p in stream._col.parts.values()) <= 33
    _same(stream.result(), read_event_file(f))
