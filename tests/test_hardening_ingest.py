"""Hostile inputs to the readers (issue 12, items 6, 12, 16, 17, 18): findings, never a traceback.

Each reproducer from the audit has a test that failed before the fix; each class of input
(event files, CSV, run configs) also has a property-based test that writes inputs with their
own truth and checks what comes back. Example counts stay small: the whole file runs in seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.config import ConfigError, default_config, load_config
from analyzer.ingest import discover_runs, load_runs, read_raw_run
from analyzer.ingest.configfiles import read_configs
from analyzer.ingest.csvlogs import read_csv_log
from analyzer.ingest.merge import Segment, merge_segments, survivors
from analyzer.tfevents import EventWriter

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ROOT = Path(__file__).resolve().parent.parent
DEMO_EVENTS = ROOT / "fixtures" / "demo" / "overfit"


def _csv_run(run: Path, rows: int = 40) -> Path:
    """A small readable run (CSV: step, loss, q_data) in `run`."""
    run.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{10 * i},{1.0 / (i + 1)},{0.1 * i}\n" for i in range(rows))
    (run / "progress.csv").write_text("step,loss,q_data\n" + body)
    return run


def _no_internal_errors(runs, errors) -> None:
    messages = [i.message for r in runs for i in r.issues] + [e.message for e in errors]
    assert not [m for m in messages if "internal error" in m], messages


def _keep_last_reference(steps: list[int]) -> list[bool]:
    """keep-last in plain Python integers: a point survives iff its step is below every later step."""
    out, later_min = [], None
    for s in reversed(steps):
        out.append(later_min is None or s < later_min)
        later_min = s if later_min is None else min(later_min, s)
    return out[::-1]


# --------------------------------------------------------------------------------------------------
# Item 12: steps near +-2**63 stay int64 end to end
# --------------------------------------------------------------------------------------------------


def test_distinct_steps_near_2_63_are_not_merged_as_duplicates(tmp_path):
    """Audit reproducer: 600 distinct steps just below 2**63 in one event file (597 were dropped)."""
    base = INT64_MAX - 599
    steps = np.arange(base, base + 600, dtype=np.int64)  # base + 599 == INT64_MAX, no overflow
    with EventWriter(tmp_path / "run") as w:
        w.add_scalar_table(steps, {"loss": np.linspace(1.0, 0.0, 600)}, wall_times=1000.0 + np.arange(600))
    raw = read_raw_run(discover_runs(tmp_path)[0])
    assert raw.tags["loss"].steps.dtype == np.int64
    assert raw.tags["loss"].steps.tolist() == steps.tolist()
    assert not [i for i in raw.issues if "restart/duplicate" in i.message]


def test_checkpoint_step_near_2_63_is_picked_exactly(tmp_path):
    """The demo overfitting run shifted to steps near 2**63: peak and checkpoint are the exact steps."""
    from analyzer import analyze
    from fixtures.demo import make_demo

    off = INT64_MAX - 30_000
    run = tmp_path / "big" / "overfit"
    run.mkdir(parents=True)
    (run / "config.json").write_text(
        json.dumps({"algo": "cql", "gamma": 0.99, "horizon": 40, "reward_range": [0, 1]})
    )
    data = make_demo.curves("overfit")
    with EventWriter(run / make_demo.EVENT_NAME) as w:
        w.add_scalar_table(
            make_demo.STEPS.astype(np.int64) + off,
            {f"offrl/{k}": v for k, v in data.items()},
            wall_times=make_demo.WALL0 + make_demo.STEPS * 0.05,
        )
    for s in range(2000, 20_001, 2000):
        (run / f"ckpt_{s + off}.pt").write_bytes(b"")
    (result,) = analyze(tmp_path / "big").runs
    assert result.verdict == "overfitting"
    assert result.checkpoint is not None and result.checkpoint.step == off + make_demo.PEAK_STEP
    assert not [i for i in result.run.issues if "restart/duplicate" in i.message]


def test_csv_steps_near_both_ends_of_int64_are_exact(tmp_path):
    """CSV step columns beyond 2**53 are re-read as text, also when one empty cell made them floats."""
    top = [INT64_MAX - 2, INT64_MAX - 1, INT64_MAX]
    bottom = [INT64_MIN, INT64_MIN + 1]
    text = "step,loss\n" + "".join(f"{s},{k}\n" for k, s in enumerate(bottom + top)) + ",7\n"
    text += f"{INT64_MAX + 1},8\n{INT64_MIN - 1},9\n"  # outside int64: not a step, dropped with a warning
    (tmp_path / "wide.csv").write_text(text)
    log = read_csv_log(tmp_path / "wide.csv")
    assert log.tags["loss"].steps.dtype == np.int64
    assert log.tags["loss"].steps.tolist() == bottom + top
    assert log.tags["loss"].values.tolist() == [0, 1, 2, 3, 4]
    assert any("dropped 3 row(s)" in i.message for i in log.issues)
    # headerless (d3rlpy epoch,step,value) and long layouts take the same path
    (tmp_path / "d3.csv").write_text("".join(f"{k},{s},{k}\n" for k, s in enumerate(top)))
    assert read_csv_log(tmp_path / "d3.csv").tags["d3"].steps.tolist() == top
    (tmp_path / "long.csv").write_text("tag,step,value\n" + "".join(f"q,{s},1\n" for s in top) + "q,,1\n")
    assert read_csv_log(tmp_path / "long.csv").tags["q"].steps.tolist() == top


@given(st.lists(st.integers(INT64_MIN, INT64_MAX) | st.sampled_from([INT64_MIN, INT64_MAX, 0]), max_size=60))
@settings(max_examples=200, deadline=None)
def test_merge_keeps_int64_steps_exact(steps):
    """keep-last/keep-first over arbitrary int64 steps agree with plain Python integers."""
    arr = np.array(steps, dtype=np.int64)
    assert survivors(arr, "keep-last").tolist() == _keep_last_reference(steps)
    first = [all(s > t for t in steps[:i]) for i, s in enumerate(steps)]
    assert survivors(arr, "keep-first").tolist() == first
    merged = merge_segments([Segment(arr, np.arange(len(steps), dtype=float), None, "f")])
    kept = [s for s, k in zip(steps, _keep_last_reference(steps), strict=True) if k]
    assert merged.steps.tolist() == kept
    assert merged.stats.regressions == sum(b < a for a, b in zip(steps, steps[1:], strict=False))


# --------------------------------------------------------------------------------------------------
# Event files: random corruption, truncation, huge or negative steps -> findings, never a traceback
# --------------------------------------------------------------------------------------------------

_STEPS = (
    st.integers(INT64_MIN, INT64_MAX)
    | st.integers(-5, 5)
    | st.integers(INT64_MAX - 64, INT64_MAX)  # neighbours that one float64 cannot tell apart
    | st.integers(INT64_MIN, INT64_MIN + 64)
)


@given(
    steps=st.lists(_STEPS, min_size=1, max_size=30),
    cut=st.one_of(st.none(), st.integers(0, 4000)),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4),
)
@PROPERTY
def test_event_files_with_hostile_steps_and_damage_never_raise(tmp_path_factory, steps, cut, flips):
    d = tmp_path_factory.mktemp("ev")
    with EventWriter(d / "run") as w:
        for k, s in enumerate(steps):
            w.add_scalar("loss", float(k), s, wall_time=1000.0 + k)
    (path,) = (d / "run").iterdir()
    data = bytearray(path.read_bytes())
    intact = cut is None and not flips
    if cut is not None:
        data = data[: min(cut, len(data))]
    for pos, x in flips:
        if data:
            data[pos % len(data)] ^= x
    path.write_bytes(bytes(data))
    runs, errors = load_runs([d])  # must not raise
    _no_internal_errors(runs, errors)
    if intact:
        (run,) = runs
        kept = [s for s, k in zip(steps, _keep_last_reference(steps), strict=True) if k]
        assert run.raw["loss"].steps.tolist() == kept
    else:
        assert runs or errors  # damage is reported: a run with issues, or an error naming the path
        for r in runs:
            assert r.raw["loss"].steps.dtype == np.int64


# --------------------------------------------------------------------------------------------------
# Item 17 + CSV property: line endings, quoting, huge numbers, NaN text, empty columns
# --------------------------------------------------------------------------------------------------


def test_csv_with_old_mac_line_endings_is_read(tmp_path):
    """Audit reproducer: a `\\r`-only CSV with 201 rows was read as "header only"."""
    rows = [(i * 5, 0.5 * i) for i in range(201)]
    body = "step,loss\r" + "".join(f"{s},{v}\r" for s, v in rows)
    (tmp_path / "progress.csv").write_bytes(body.encode())
    log = read_csv_log(tmp_path / "progress.csv")
    assert log.tags["loss"].steps.tolist() == [s for s, _ in rows]
    assert log.tags["loss"].values.tolist() == [v for _, v in rows]
    (tmp_path / "q.csv").write_bytes("".join(f"{s},{v}\r" for s, v in rows).encode())  # headerless too
    assert read_csv_log(tmp_path / "q.csv", "q").tags["q"].steps.tolist() == [s for s, _ in rows]


_NAN_TEXT = ["nan", "NaN", "inf", "-inf"]
_CELL = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-(10**30), 10**30),
    st.sampled_from(_NAN_TEXT),
    st.just(""),
)
_STEP_CELL = st.one_of(
    st.integers(INT64_MIN, INT64_MAX),
    st.integers(0, 10**6),
    st.sampled_from([INT64_MAX + 1, INT64_MIN - 1, 10**40]),  # out of int64: dropped
    st.just(""),
)


def _cell_value(c) -> float | None:
    """What the reader must return for a cell: None = missing (not a point)."""
    if c == "":
        return None
    return float(c) if isinstance(c, str) else float(c)


@given(
    rows=st.lists(st.tuples(_STEP_CELL, _CELL, st.just("")), min_size=1, max_size=25),
    endings=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1, max_size=3),
    quote=st.booleans(),
)
@PROPERTY
def test_csv_property_values_come_back_as_written(tmp_path_factory, rows, endings, quote):
    """Random line endings (mixed), quoted cells, huge numbers, NaN text and an all-empty column."""
    d = tmp_path_factory.mktemp("csv")

    def fmt(c) -> str:
        text = repr(c) if isinstance(c, float) else str(c)
        return f'"{text}"' if quote and text else text

    lines = ["step,loss,empty"] + [",".join(fmt(c) for c in row) for row in rows]
    text = "".join(line + endings[i % len(endings)] for i, line in enumerate(lines))
    (d / "log.csv").write_bytes(text.encode())
    log = read_csv_log(d / "log.csv")  # must not raise
    assert "empty" not in log.tags
    want = [
        (s, _cell_value(v))
        for s, v, _ in rows
        if s != "" and INT64_MIN <= s <= INT64_MAX and _cell_value(v) is not None
    ]
    if not want:
        assert "loss" not in log.tags and log.issues
        return
    got = log.tags["loss"]
    assert got.steps.dtype == np.int64 and got.steps.tolist() == [s for s, _ in want]
    np.testing.assert_allclose(got.values, [v for _, v in want], rtol=1e-15, equal_nan=True)


def test_csv_value_with_5000_digits_is_a_number_not_a_crash(tmp_path):
    (tmp_path / "p.csv").write_text(f"step,loss\n0,1\n1,{'9' * 5000}\n2,3\n")
    log = read_csv_log(tmp_path / "p.csv")
    assert log.tags["loss"].steps.tolist()[0] == 0 and log.tags["loss"].values[0] == 1.0


# --------------------------------------------------------------------------------------------------
# Item 6: a huge integer in a run's config is a warning, the rest is read
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["config.json", "config.yaml"])
def test_5000_digit_integer_in_config_is_a_warning_and_reading_goes_on(tmp_path, name):
    run = _csv_run(tmp_path / "run")
    huge = "9" * 5000
    if name.endswith(".json"):
        (run / name).write_text(f'{{"seed": {huge}, "gamma": 0.98, "horizon": 50, "note": -{huge}}}')
    else:
        (run / name).write_text(f"seed: {huge}\ngamma: 0.98\nhorizon: 50\nnote: -{huge}\n")
    runs, errors = load_runs([tmp_path])
    assert errors == []
    (r,) = runs
    assert r.metadata.gamma == 0.98 and r.metadata.horizon == 50  # the rest of the file is used
    warn = [i for i in r.issues if "more than 4300 digits" in i.message]
    assert len(warn) == 1 and warn[0].level == "warning" and warn[0].path.endswith(name)
    assert warn[0].message.startswith("2 integer(s)")


# --------------------------------------------------------------------------------------------------
# Item 18: run-config metadata goes through the CLI's and the rules file's validation
# --------------------------------------------------------------------------------------------------


def test_horizon_1e20_in_run_config_is_refused_with_file_and_key(tmp_path):
    run = _csv_run(tmp_path / "run")
    (run / "config.json").write_text('{"horizon": 1e20, "gamma": 0.99, "reward_range": [0, 1]}')
    (r,) = load_runs([tmp_path])[0]
    assert r.metadata.horizon is None and r.metadata.gamma == 0.99 and r.metadata.reward_range == (0.0, 1.0)
    (issue,) = [i for i in r.issues if i.message.startswith("horizon:")]
    assert issue.path == str(run / "config.json") and issue.level == "warning"
    assert "expected an integer >= 1" in issue.message and "ignored" in issue.message


def test_gamma_one_in_run_config_no_longer_divides_by_zero(tmp_path):
    """gamma 1.0 from a config used to reach H = 1/(1-gamma): ZeroDivisionError for the whole CLI."""
    from analyzer import analyze

    run = _csv_run(tmp_path / "run")
    (run / "config.json").write_text('{"gamma": 1.0, "reward_range": [0, 1]}')
    (result,) = analyze(tmp_path).runs
    assert result.run.metadata.gamma is None
    assert any(i.message.startswith("gamma: expected a discount in [0, 1)") for i in result.run.issues)


_META_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**3), 10**12),
    st.sampled_from([0, 1, 10**9, 10**9 + 1, 10**20, 10**400, 0.5, 1.0, 200.0, 0.99, -1]),
)


def _accepted(fn) -> tuple[bool, object]:
    try:
        return True, fn()
    except ConfigError:
        return False, None


@given(
    key=st.sampled_from(["gamma", "horizon", "reward_range"]),
    value=_META_VALUE | st.lists(_META_VALUE, min_size=2, max_size=2),
)
@PROPERTY
def test_cli_rules_file_and_run_config_accept_the_same_metadata(tmp_path_factory, key, value):
    """One validation for three sources: a value is accepted by all of them or by none."""
    d = tmp_path_factory.mktemp("meta")
    cli_ok, cli_val = _accepted(lambda: getattr(default_config().with_overrides(**{key: value}).cli, key))
    rules = d / "rules.yaml"
    rules.write_text(yaml.safe_dump({"runs": [{"match": "*", key: value}]}))
    rules_ok, rules_val = _accepted(lambda: getattr(load_config(rules).runs[0], key))
    run = _csv_run(d / "logs" / "run", rows=5)
    (run / "config.json").write_text(json.dumps({key: value}))
    (r,) = load_runs([d / "logs"])[0]
    run_val = getattr(r.metadata, key)
    refused = [i for i in r.issues if i.message.startswith(f"{key}:")]
    assert cli_ok == rules_ok == (run_val is not None), (cli_ok, rules_ok, run_val, refused)
    assert cli_val == rules_val == run_val
    assert bool(refused) == (not cli_ok)
    for i in refused:
        assert i.path == str(run / "config.json")


# --------------------------------------------------------------------------------------------------
# Run configs: random JSON/YAML values (huge ints, inf, nesting) -> read, never a traceback
# --------------------------------------------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        "gamma",
        "horizon",
        "reward_range",
        "seed",
        "hidden",
        "depth",
        "ckpt_every",
        "bc_steps",
        "algo",
        "x",
        "dataset",
    ]
)
_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
_JSONISH = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)


@given(doc=st.dictionaries(_KEYS, _JSONISH, max_size=6), as_yaml=st.booleans(), huge=st.booleans())
@PROPERTY
def test_random_run_configs_never_lose_the_run(tmp_path_factory, doc, as_yaml, huge):
    d = tmp_path_factory.mktemp("cfg")
    run = _csv_run(d / "logs" / "run", rows=5)
    if as_yaml:
        text = yaml.safe_dump(doc)
        if huge:
            text += f"huge: {'7' * 5000}\n"
        (run / "config.yaml").write_text(text)
    else:
        text = json.dumps(doc)  # inf/nan as Infinity/NaN, as Python writers do
        if huge:
            text = text[:-1] + ("," if doc else "") + f'"huge": {"7" * 5000}}}'
        (run / "config.json").write_text(text)
    runs, errors = load_runs([d / "logs"])
    _no_internal_errors(runs, errors)
    (r,) = runs
    assert "loss" in r.raw  # the run is never dropped for its config
    md = r.metadata
    assert md.gamma is None or 0 <= md.gamma < 1
    assert md.horizon is None or 1 <= md.horizon <= 10**9
    assert md.reward_range is None or all(math.isfinite(x) for x in md.reward_range)
    cfg = read_configs(run)
    assert cfg.config.get("huge", math.inf) == math.inf


# --------------------------------------------------------------------------------------------------
# Item 16: a cache entry with an unexpected header key is a miss, not a lost run
# --------------------------------------------------------------------------------------------------


def test_cache_entry_with_unexpected_issue_key_is_a_miss(tmp_path, monkeypatch):
    import os

    from analyzer.ingest import cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "progress.csv").write_text("step,loss\n0,1.0\n10,oops\n20,0.25\n")  # one issue in the entry
    old = os.stat(run / "progress.csv").st_mtime - 3600
    os.utime(run / "progress.csv", (old, old))
    first, _ = load_runs([run], use_cache=True)
    (entry,) = cache.cache_dir().glob("*.npz")
    with np.load(entry, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays["header"]))
    assert header["issues"], "the fixture must put an issue into the entry"
    header["issues"][0]["from_a_newer_version"] = 1
    arrays["header"] = np.array(json.dumps(header))
    with open(entry, "wb") as fh:
        np.savez(fh, **arrays)
    assert cache.load(discover_runs(run)[0], "keep-last") is None
    runs, errors = load_runs([run], use_cache=True)
    assert errors == [] and runs[0].raw["loss"].values.tolist() == [1.0, 0.25]
    assert [i.message for i in runs[0].issues] == [i.message for i in first[0].issues]


def test_config_file_over_the_size_limit_is_an_issue_not_a_crash(tmp_path):
    """A config.json above the reader's limit is skipped with a reason (mypy found this path returned
    two values where three are unpacked, so it raised instead)."""
    from analyzer.ingest import configfiles

    with open(tmp_path / "config.json", "wb") as f:
        f.truncate(configfiles._MAX_CONFIG_BYTES + 1)  # sparse: no 16 MB written
    res = read_configs(tmp_path)
    assert any("config file too large" in i.message for i in res.issues)
    assert res.config == {}
