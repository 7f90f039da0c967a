"""W&B run files (`run-<id>.wandb`): framing, records, damage, and the analyzer on real runs.

Truth comes from outside the reader: fixtures/real/corl/TRUTH.json was recorded from what CORL's
cql.py handed to `wandb.log` while it ran (make_corl.py), and the live-run test logs known values
through wandb itself. Framing tests build files with an independent writer of the same format.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.ingest import discover_runs, load_runs
from analyzer.ingest import wandb_run as wr

ROOT = Path(__file__).resolve().parents[1]
CORL = ROOT / "fixtures" / "real" / "corl"
TRUTH = json.loads((CORL / "TRUTH.json").read_text())
RUN_FILE = CORL / TRUTH["run_file"]

try:
    import wandb  # noqa: F401

    _NO_WANDB = wr.wandb_problem()
except ImportError:
    _NO_WANDB = "wandb is not installed"
needs_wandb = pytest.mark.skipif(
    _NO_WANDB is not None, reason=f"decoding W&B records needs wandb: {_NO_WANDB}"
)


# --------------------------------------------------------------------------------------------------
# An independent writer of the format (LevelDB log framing, wandb's header and CRC), for framing tests


def _chunk(kind: int, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(bytes([kind])))
    return struct.pack("<IHB", crc, len(data), kind) + data


def frame(records: list[bytes]) -> bytes:
    out = bytearray(b":W&B" + struct.pack("<HB", 0xBEE1, 0))
    for rec in records:
        rest, first = rec, True
        while True:
            left = wr.BLOCK - len(out) % wr.BLOCK
            if left < 7:
                out += bytes(left)
                continue
            room = left - 7
            piece, rest = rest[:room], rest[room:]
            if first and not rest:
                kind = wr.FULL
            elif first:
                kind = wr.FIRST
            elif rest:
                kind = wr.MIDDLE
            else:
                kind = wr.LAST
            out += _chunk(kind, piece)
            first = False
            if not rest:
                break
    return bytes(out)


def _records(buf: bytes) -> tuple[list[tuple[int, bytes]], list]:
    damage: list = []
    return list(wr.iter_records(buf, damage)), damage


# --------------------------------------------------------------------------------------------------
# Framing (no wandb needed)


def test_framing_reassembles_records_across_blocks() -> None:
    recs = [b"a" * 10, bytes(range(256)) * 300, b"", b"z" * (wr.BLOCK * 2 + 5), b"tail"]
    got, damage = _records(frame(recs))
    assert damage == []
    assert [r for _, r in got] == recs


def test_framing_of_the_real_corl_file_checks_out() -> None:
    buf = RUN_FILE.read_bytes()
    assert buf[:4] == b":W&B"
    got, damage = _records(buf)
    assert damage == []
    assert len(got) > TRUTH["keys"]["average_qf1"]["points"]  # history rows plus run, config, stats ...
    assert got[0][0] == 7  # the first record follows the 7-byte file header


def test_flipped_byte_is_reported_at_its_record_and_reading_resumes_next_block() -> None:
    recs = [bytes([k % 251]) * 1000 for k in range(100)]  # ~3 blocks
    buf = bytearray(frame(recs))
    good, _ = _records(bytes(buf))
    victim_at = good[40][0]
    buf[victim_at + 7 + 500] ^= 0xFF
    got, damage = _records(bytes(buf))
    # one finding, also when the next block starts with the tail of a record that began before it
    assert len(damage) == 1 and damage[0].offset == victim_at
    assert "CRC mismatch" in damage[0].message and str(victim_at) in damage[0].message
    next_block = (victim_at // wr.BLOCK + 1) * wr.BLOCK
    assert all(off < victim_at or off >= next_block for off, _ in got)
    lost = len(recs) - len(got)
    assert 1 <= lost <= wr.BLOCK // 1000 + 1
    assert all(recs[good.index((off, data))] == data for off, data in got)


def test_truncation_keeps_every_record_before_the_cut() -> None:
    recs = [bytes([k]) * 700 for k in range(60)]
    full = frame(recs)
    good, _ = _records(full)
    cut = good[30][0] + 100  # inside record 30
    got, damage = _records(full[:cut])
    assert [d for _, d in got] == recs[:30]
    assert len(damage) == 1 and damage[0].offset == good[30][0] and "truncated" in damage[0].message


def test_fragment_without_its_first_part_is_dropped_not_misread() -> None:
    big = b"x" * (wr.BLOCK + 100)  # FIRST in block 0, LAST in block 1
    buf = bytearray(frame([big, b"after"]))
    buf[20] ^= 0x01  # damage the FIRST fragment's data
    got, damage = _records(bytes(buf))
    assert [d for _, d in got] == [b"after"]
    # one finding: the LAST fragment at the start of the next block belongs to the damaged record
    assert len(damage) == 1 and "CRC mismatch" in damage[0].message and damage[0].lost == 2


def test_stray_fragment_is_reported_with_its_offset() -> None:
    header = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
    buf = header + _chunk(wr.LAST, b"orphan tail") + _chunk(wr.FULL, b"ok")
    got, damage = _records(buf)
    assert [d for _, d in got] == [b"ok"]
    assert len(damage) == 1 and damage[0].offset == 7 and "without its first part" in damage[0].message


# --------------------------------------------------------------------------------------------------
# The committed CORL run against TRUTH.json


@needs_wandb
def test_corl_fixture_values_match_what_corl_logged() -> None:
    data = wr.read_wandb_run(RUN_FILE)
    assert data.issues == []
    assert set(data.scalars) == set(TRUTH["keys"])
    for key, spec in TRUTH["keys"].items():
        s = data.scalars[key]
        assert len(s.steps) == spec["points"], key
        assert (int(s.steps[0]), int(s.steps[-1])) == (spec["first_step"], spec["last_step"]), key
        assert (float(s.values[0]), float(s.values[-1])) == (spec["first_value"], spec["last_value"]), key
        if "values" in spec:  # full series: exact (wandb writes shortest-repr JSON numbers)
            assert s.steps.tolist() == spec["steps"]
            assert s.values.tolist() == spec["values"]
        assert s.wall_time is not None and np.all(np.diff(s.wall_time) >= 0)
    assert data.history_rows == TRUTH["keys"]["average_qf1"]["points"]
    assert data.config == TRUTH["config"]  # -inf/inf clip bounds included
    assert data.run["producer"].startswith(TRUTH["wandb_version"])
    assert data.exit_code == 0


@needs_wandb
def test_analyzer_detects_corl_and_resolves_its_roles() -> None:
    runs, errors = load_runs([CORL])
    assert errors == [] and len(runs) == 1
    run = runs[0]
    assert run.id == TRUTH["run_folder"]
    assert run.framework == "corl"
    roles = TRUTH["roles"]
    expect = {
        "q_data": roles["dataset_q"],
        "td_error": roles["td_error"],
        "cql_term": roles["cql_term"],
        "cql_gap": roles["cql_gap"],
        "eval_return": roles["eval"],
        "temperature": roles["temperature"],
    }
    for canonical, key in expect.items():
        s = run.get(canonical)
        assert s is not None and s.sources == (key,), (canonical, s)
        assert s.values.tolist() == TRUTH["keys"][key].get("values", s.values.tolist())
    assert run.get("eval_return").steps.tolist() == TRUTH["keys"]["d4rl_normalized_score"]["steps"]
    md = run.metadata
    assert md.gamma == TRUTH["config"]["discount"]
    assert md.sources["gamma"].endswith(".wandb:discount")
    assert md.seed == TRUTH["config"]["seed"] and md.algorithm == "cql"


@needs_wandb
def test_cli_reads_the_corl_run() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "analyzer", str(CORL), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode in (0, 1), out.stderr
    report = json.loads(out.stdout)
    (run,) = report["runs"]
    assert run["framework"] == "corl" and run["algorithm"] == "cql"
    assert run["metrics"]["q_data"]["source"] == "average_qf1"
    assert run["metrics"]["td_error"]["source"] == "qf1_loss"


# --------------------------------------------------------------------------------------------------
# Damaged copies of the real file


def _copy_run(tmp_path: Path) -> Path:
    dest = tmp_path / "wandb" / RUN_FILE.parent.name
    shutil.copytree(RUN_FILE.parent, dest)
    return dest / RUN_FILE.name


def _truth_at(key: str) -> dict[int, float]:
    spec = TRUTH["keys"][key]
    return dict(zip(spec["steps"], spec["values"], strict=True))


@needs_wandb
def test_truncated_file_gives_a_finding_with_offset_and_the_rows_before(tmp_path: Path) -> None:
    path = _copy_run(tmp_path)
    buf = path.read_bytes()
    path.write_bytes(buf[: len(buf) * 3 // 5 + 11])
    data = wr.read_wandb_run(path)
    trunc = [i for i in data.issues if "truncated" in i.message]
    assert len(trunc) == 1 and trunc[0].offset is not None and 0 < trunc[0].offset < len(buf) * 3 // 5 + 11
    q = data.scalars["average_qf1"]
    truth = _truth_at("average_qf1")
    assert 50 < len(q.steps) < 250
    assert q.steps.tolist() == sorted(truth)[: len(q.steps)]
    assert all(truth[int(s)] == v for s, v in zip(q.steps, q.values, strict=True))
    runs, errors = load_runs([tmp_path])  # the analyzer keeps the run and reports the damage
    assert errors == [] and len(runs) == 1
    assert any(i.offset == trunc[0].offset for i in runs[0].issues)


@needs_wandb
def test_flipped_byte_in_the_real_file_loses_one_block_at_most(tmp_path: Path) -> None:
    path = _copy_run(tmp_path)
    buf = bytearray(path.read_bytes())
    records, _ = _records(bytes(buf))
    victim = records[len(records) // 2][0]
    buf[victim + 7 + 3] ^= 0x5A
    path.write_bytes(bytes(buf))
    data = wr.read_wandb_run(path)
    bad = [i for i in data.issues if "CRC mismatch" in i.message]
    assert len(bad) == 1 and bad[0].offset == victim and bad[0].level == "warning"
    truth = _truth_at("average_qf1")
    q = data.scalars["average_qf1"]
    assert 250 - wr.BLOCK // 1000 <= len(q.steps) < 250  # rows are ~1.9 KB: one block holds < 33
    assert all(truth[int(s)] == v for s, v in zip(q.steps, q.values, strict=True))


@pytest.mark.parametrize(
    ("content", "level", "text"),
    [
        (b"", "warning", "empty W&B run file"),
        (b":W&", "error", "shorter than the 7-byte header"),
        (b"PK\x03\x04 not a wandb file at all", "error", "no ':W&B' header"),
        (b":W&B" + struct.pack("<HB", 0xBEE1, 9), "error", "format version 9"),
    ],
)
def test_not_a_run_file_is_one_issue(tmp_path: Path, content: bytes, level: str, text: str) -> None:
    path = tmp_path / "run-abc.wandb"
    path.write_bytes(content)
    data = wr.read_wandb_run(path)
    assert len(data.issues) == 1 and data.issues[0].level == level and text in data.issues[0].message
    assert data.scalars == {}


@needs_wandb
def test_valid_frames_that_are_not_records_are_counted(tmp_path: Path) -> None:
    good = RUN_FILE.read_bytes()
    records, _ = _records(good)
    junk = b"\xff\xff\xff\xff\x0f"  # a varint that never ends: no protobuf parses it
    path = tmp_path / "run-x.wandb"
    path.write_bytes(frame([d for _, d in records[:50]] + [junk] + [d for _, d in records[50:]]))
    data = wr.read_wandb_run(path)
    (issue,) = [i for i in data.issues if "not wandb Records" in i.message]
    assert issue.records_lost == 1 and issue.offset is not None
    assert data.scalars["average_qf1"].values.tolist() == TRUTH["keys"]["average_qf1"]["values"]


# --------------------------------------------------------------------------------------------------
# wandb missing or outside the tested range: one line that says what to do


def test_missing_wandb_is_one_ingest_error_with_the_install_line(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(wr, "installed_wandb_version", lambda: None)
    data = wr.read_wandb_run(RUN_FILE)
    (issue,) = data.issues
    assert issue.level == "error" and 'pip install "offrl-workflow[wandb]"' in issue.message
    shutil.copytree(RUN_FILE.parent, tmp_path / "wandb" / RUN_FILE.parent.name)
    runs, errors = load_runs([tmp_path])
    assert runs == [] and len(errors) == 1
    assert 'pip install "offrl-workflow[wandb]"' in errors[0].message


def test_untested_wandb_version_is_refused_with_the_range(monkeypatch) -> None:
    monkeypatch.setattr(wr, "installed_wandb_version", lambda: "0.12.21")
    (issue,) = wr.read_wandb_run(RUN_FILE).issues
    assert "wandb 0.12.21 is installed" in issue.message and wr.tested_range() in issue.message
    assert 'pip install "offrl-workflow[wandb]"' in issue.message


def test_cli_without_importable_wandb_says_what_to_do_and_no_traceback() -> None:
    code = (
        "import sys; sys.modules['wandb'] = None\n"  # import wandb now fails, as if absent
        "from analyzer.cli import main\n"
        f"sys.argv = ['offrl-analyze', {str(CORL)!r}]\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert 'pip install "offrl-workflow[wandb]"' in text
    assert "Traceback" not in text


def test_core_analyzer_never_imports_wandb() -> None:
    code = (
        "import sys\n"
        "from analyzer.ingest import load_runs\n"
        f"runs, errs = load_runs([{str(ROOT / 'fixtures' / 'real' / 'd3rlpy')!r}])\n"
        "assert runs\n"
        "print('wandb' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, timeout=120
    )
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------------
# A real offline run made here with wandb itself


_LOGGER = """
import math, sys, wandb
run = wandb.init(
    mode="offline", dir=sys.argv[1], project="offrl-test",
    config={"discount": 0.97, "cql_alpha": 5.0, "cql_n_actions": 10, "eval_freq": 50, "seed": 3},
)
for t in range(1, 201):
    wandb.log(
        {
            "average_qf1": 20.0 * math.sin(t / 40.0),
            "average_target_q": 19.0 * math.sin(t / 40.0),
            "qf1_loss": 1.0 / t,
            "cql_min_qf1_loss": 5.0 * (0.5 + 1.0 / t),
            "cql_qf1_diff": 0.5 + 1.0 / t,
            "alpha": 0.2,
            "policy_loss": -float(t),
        },
        step=t,
    )
    if t % 50 == 0:
        wandb.log({"d4rl_normalized_score": t / 4.0, "caption": f"eval at {t}"}, step=t)
wandb.config.update({"max_path_length": 200})
run.finish()
"""


@needs_wandb
def test_real_offline_run_written_by_wandb_reads_back(tmp_path: Path) -> None:
    env = dict(os.environ)
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "XDG_CACHE_HOME"):
        env[var] = str(tmp_path / "home")
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_CONSOLE="off")
    logs = tmp_path / "logs"
    logs.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _LOGGER, str(logs)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rds = discover_runs(logs)
    assert [rd.kind for rd in rds] == ["wandb"]  # wandb/latest-run (a symlink) is not a second run
    assert rds[0].id.startswith("wandb/offline-run-")
    runs, errors = load_runs([logs])
    assert errors == [] and len(runs) == 1
    run = runs[0]
    assert run.framework == "corl"
    steps = np.arange(1, 201)
    q = run.get("q_data")
    assert q.steps.tolist() == steps.tolist()
    assert q.values.tolist() == [20.0 * math.sin(t / 40.0) for t in steps]
    assert run.get("td_error").values.tolist() == [1.0 / t for t in steps]
    assert run.get("cql_term").values.tolist() == [5.0 * (0.5 + 1.0 / t) for t in steps]
    ev = run.get("eval_return")
    assert ev.steps.tolist() == [50, 100, 150, 200] and ev.values.tolist() == [12.5, 25.0, 37.5, 50.0]
    assert run.metadata.gamma == 0.97 and run.metadata.sources["gamma"].endswith(".wandb:discount")
    assert run.metadata.horizon == 200  # from wandb.config.update after init (a config record)
    assert run.metadata.seed == 3
    alpha = run.get("alpha")  # effective CQL weight: constant cql_alpha from the config
    assert alpha is not None and set(alpha.values.tolist()) == {5.0}
    media = [i for i in run.issues if "non-numeric" in i.message]
    assert media and "caption" in media[0].message and "caption" not in run.raw
    assert not math.isnan(q.wall_time[0])


# --------------------------------------------------------------------------------------------------
# Random damage: never an exception, never a wrong value (every byte that is read is CRC-checked)

_FIXTURE_BYTES = RUN_FILE.read_bytes()


@needs_wandb
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flips=st.lists(st.tuples(st.integers(0, len(_FIXTURE_BYTES) - 1), st.integers(1, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, len(_FIXTURE_BYTES))),
)
def test_random_damage_never_raises_nor_misreads(tmp_path: Path, flips: list, cut: int | None) -> None:
    buf = bytearray(_FIXTURE_BYTES)
    for at, mask in flips:
        buf[at] ^= mask
    path = tmp_path / "run-fuzz.wandb"
    path.write_bytes(bytes(buf[:cut] if cut is not None else buf))
    data = wr.read_wandb_run(path)
    for key in ("average_qf1", "qf1_loss", "cql_min_qf1_loss", "d4rl_normalized_score"):
        s = data.scalars.get(key)
        if s is None:
            continue
        truth = _truth_at(key)
        assert all(truth.get(int(st_)) == v for st_, v in zip(s.steps, s.values, strict=True)), key
    end = len(_FIXTURE_BYTES) if cut is None else cut
    # every byte but a block's zero trailer (< 7 bytes) is a header field or CRC-covered: damage shows
    seen = [
        at
        for at in sorted({at for at, _ in flips})
        if at < end and buf[at] != _FIXTURE_BYTES[at] and wr.BLOCK - at % wr.BLOCK >= 7
    ]
    if seen:
        assert data.issues, f"flips at {seen} went unnoticed"
