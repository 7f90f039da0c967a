"""Tail: a followed file reads as a full read of it at every size, fetching only the new bytes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from analyzer.ingest.csvlogs import read_csv_log
from analyzer.ingest.tail import Tail
from analyzer.tfevents import EventFileData, EventWriter, read_event_file

WALL0 = 1.7e9


def _same_events(a: EventFileData, b: EventFileData) -> None:
    assert sorted(a.scalars) == sorted(b.scalars)
    for tag in a.scalars:
        np.testing.assert_array_equal(a.scalars[tag].steps, b.scalars[tag].steps)
        np.testing.assert_array_equal(a.scalars[tag].values, b.scalars[tag].values)
    assert a.hparams == b.hparams


def _same_csv(a, b) -> None:
    assert sorted(a.tags) == sorted(b.tags)
    for tag in a.tags:
        np.testing.assert_array_equal(a.tags[tag].steps, b.tags[tag].steps)
        np.testing.assert_array_equal(a.tags[tag].values, b.tags[tag].values)
        assert (a.tags[tag].wall_time is None) == (b.tags[tag].wall_time is None)
    assert (a.layout, a.x_column, a.x_unit) == (b.layout, b.x_column, b.x_unit)


def _grow_events(f: Path, k: int, n: int = 400) -> None:
    steps = np.arange(k * n, (k + 1) * n)
    with EventWriter(f) as w:
        w.add_scalar_table(steps, {"q": np.sin(steps / 50.0), "td": np.cos(steps / 70.0)}, WALL0 + steps)


def test_growing_event_file_reads_only_new_bytes(tmp_path) -> None:
    f = tmp_path / "events.out.tfevents.1.host"
    tail = Tail()
    for k in range(6):
        _grow_events(f, k)
        before = tail.bytes_read
        got = tail.events(f)
        _same_events(got, read_event_file(f))
        size = f.stat().st_size
        if k:
            # the appended bytes (plus the 64-byte overlap check), never the whole file again
            assert tail.bytes_read - before < size / (k + 1) + 200
    assert len(tail.events(f).scalars["q"]) == 2400
    reads = tail.files_read
    tail.events(f)  # unchanged: no read at all
    assert tail.files_read == reads and tail.take_resets() == []


def test_partial_record_waits_for_the_rest(tmp_path) -> None:
    f = tmp_path / "events.out.tfevents.1.host"
    _grow_events(f, 0)
    data = f.read_bytes()
    f.write_bytes(data[:-10])  # the writer is in the middle of its last record
    tail = Tail()
    mid = tail.events(f)
    assert len(mid.scalars["td"]) == 399 and not mid.issues  # not "truncated": it is being written
    with open(f, "ab") as fh:
        fh.write(data[-10:])
    assert len(tail.events(f).scalars["td"]) == 400 and tail.take_resets() == []


def test_truncated_and_rotated_files_are_read_again_and_reported(tmp_path) -> None:
    f = tmp_path / "events.out.tfevents.1.host"
    _grow_events(f, 0)
    _grow_events(f, 1)
    tail = Tail()
    tail.events(f)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncated in place
    _same_events(tail.events(f), read_event_file(f))
    (reset,) = tail.take_resets()
    assert reset.path == str(f) and reset.reason.startswith("truncated")
    g = tmp_path / "events.out.tfevents.2.other"
    _grow_events(g, 5)
    _grow_events(g, 6)
    os.replace(g, f)  # rotated: a new file under the old name (a new inode)
    _same_events(tail.events(f), read_event_file(f))
    (reset,) = tail.take_resets()
    assert "rotated" in reset.reason or "rewritten" in reset.reason


def test_growing_csv_with_an_unfinished_line(tmp_path) -> None:
    f = tmp_path / "progress.csv"
    rows = [f"{s},{s * 0.5},{np.sin(s)}\n" for s in range(0, 3000, 10)]
    text = "step,loss,q\n" + "".join(rows)
    tail = Tail()
    cuts = [5, 12, 40, 41, 900, 901, 2000, 5000, len(text) - 3, len(text)]
    for c in cuts:
        f.write_text(text[:c])
        got = tail.csv(f, None)
        want = read_csv_log(f)
        if want.tags or got.tags:
            _same_csv(got, want)
    assert tail.csv(f, None).tags["q"].steps.shape[0] == len(rows)
    assert tail.take_resets() == []


def test_headerless_csv_grows_too(tmp_path) -> None:
    f = tmp_path / "critic_loss.csv"
    tail = Tail()
    lines = [f"{e},{e * 100},{1.0 / (e + 1)}\n" for e in range(200)]
    for k in range(1, 5):
        f.write_text("".join(lines[: k * 50]))
        _same_csv(tail.csv(f, "critic_loss"), read_csv_log(f, "critic_loss"))
    assert tail.csv(f, "critic_loss").layout == "d3rlpy_csv"


def test_csv_rewritten_with_other_rows_is_read_again(tmp_path) -> None:
    f = tmp_path / "progress.csv"
    f.write_text("step,loss\n0,1\n1,2\n")
    tail = Tail()
    tail.csv(f, None)
    f.write_text("step,loss\n0,9\n1,8\n2,7\n")  # longer, but its first rows changed
    got = tail.csv(f, None)
    np.testing.assert_array_equal(got.tags["loss"].values, [9, 8, 7])
    (reset,) = tail.take_resets()
    assert "rewritten" in reset.reason


def test_forgotten_files_free_their_state(tmp_path) -> None:
    f = tmp_path / "events.out.tfevents.1.host"
    _grow_events(f, 0)
    tail = Tail()
    tail.events(f)
    tail.keep_only(set())
    reads = tail.files_read
    tail.events(f)
    assert tail.files_read == reads + 1  # read again from the start: nothing was kept
