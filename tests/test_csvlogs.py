"""CSV log readers and restart merging: parsed values, chosen x-axes, and every bad-input case.

Each fixture is written here with its own truth (the values we put in are the values we expect
back), so a reader that drops, shifts or invents points fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from analyzer.ingest import csvlogs, read_raw_run
from analyzer.ingest.csvlogs import read_csv_log
from analyzer.ingest.discover import CsvSource, RunDir
from analyzer.ingest.merge import Segment, merge_segments, survivors


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _messages(log) -> list[str]:
    return [i.message for i in log.issues]


# --------------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------------


def test_d3rlpy_headerless_epoch_step_value(tmp_path):
    p = _write(tmp_path / "critic_loss.csv", "1,1000,0.5\n2,2000,0.25\n3,3000,0.125\n")
    log = read_csv_log(p)
    assert log.layout == "d3rlpy_csv" and log.x_unit == "step" and log.issues == []
    seg = log.tags["critic_loss"]
    assert seg.steps.tolist() == [1000, 2000, 3000]  # step column, not epoch
    assert seg.values.tolist() == [0.5, 0.25, 0.125]


def test_d3rlpy_gradient_file_is_ignored_not_an_error(tmp_path):
    p = _write(tmp_path / "q_func_grad.csv", "epoch,step,min,max,mean,std\n1,1000,0,1,0.5,0.1\n")
    log = read_csv_log(p)
    assert log.ignored and log.tags == {} and log.issues == []


def test_torchrl_headerless_step_value_uses_given_tag(tmp_path):
    p = _write(tmp_path / "scalars" / "train" / "q_loss.csv", "0,1.5\n100,1.25\n200,1.0\n")
    log = read_csv_log(p, tag="train/q_loss")
    assert log.layout == "torchrl_csv"
    assert log.tags["train/q_loss"].steps.tolist() == [0, 100, 200]
    assert log.tags["train/q_loss"].values.tolist() == [1.5, 1.25, 1.0]


def test_rlkit_progress_prefers_num_q_updates_and_keeps_epoch_as_tag(tmp_path):
    text = (
        "Epoch,trainer/Num Q Updates,trainer/QF1 Loss,evaluation/Average Returns,time/total (s)\n"
        "0,1000,1.5,10.0,3.2\n"
        "1,2000,1.25,,6.1\n"  # no evaluation this epoch: an empty cell is not a point
        "2,3000,1.0,12.5,9.0\n"
    )
    log = read_csv_log(_write(tmp_path / "progress.csv", text))
    assert log.layout == "progress_csv" and log.x_column == "trainer/Num Q Updates" and log.x_unit == "step"
    assert log.tags["trainer/QF1 Loss"].steps.tolist() == [1000, 2000, 3000]
    assert log.tags["evaluation/Average Returns"].steps.tolist() == [1000, 3000]
    assert log.tags["evaluation/Average Returns"].values.tolist() == [10.0, 12.5]
    assert log.tags["Epoch"].values.tolist() == [0.0, 1.0, 2.0]
    assert "trainer/Num Q Updates" not in log.tags
    epochs, steps = log.epoch_steps
    assert dict(zip(epochs.tolist(), steps.tolist(), strict=True)) == {0: 1000, 1: 2000, 2: 3000}


def test_rlkit_progress_without_step_counter_uses_epoch_axis(tmp_path):
    log = read_csv_log(_write(tmp_path / "progress.csv", "Epoch,trainer/QF1 Loss\n0,2.0\n1,1.0\n"))
    assert log.x_column == "Epoch" and log.x_unit == "epoch"
    assert log.tags["trainer/QF1 Loss"].steps.tolist() == [0, 1]


def test_step_column_beats_epoch_column(tmp_path):
    log = read_csv_log(_write(tmp_path / "log.csv", "epoch,step,loss\n1,500,0.5\n2,1000,0.4\n"))
    assert log.x_column == "step" and log.x_unit == "step" and log.layout == "wide_csv"
    assert log.tags["loss"].steps.tolist() == [500, 1000]
    assert log.tags["epoch"].values.tolist() == [1.0, 2.0]


def test_wandb_export_step_wall_time_sparse_and_text_columns(tmp_path):
    text = (
        "_step,_runtime,_timestamp,qf1_loss,d4rl_normalized_score,env_name\n"
        "0,1.5,1700000000.0,3.0,,hopper\n"
        "1000,20.0,1700000020.0,2.0,,hopper\n"
        "5000,90.0,1700000090.0,1.0,55.5,hopper\n"
    )
    log = read_csv_log(_write(tmp_path / "history.csv", text))
    assert log.layout == "wandb_csv" and log.x_column == "_step"
    assert "env_name" not in log.tags  # non-numeric column: dropped silently
    assert log.issues == []
    assert log.tags["qf1_loss"].steps.tolist() == [0, 1000, 5000]
    assert log.tags["qf1_loss"].wall_time.tolist() == [1700000000.0, 1700000020.0, 1700000090.0]
    assert log.tags["d4rl_normalized_score"].steps.tolist() == [5000]
    assert "_timestamp" not in log.tags and "_runtime" in log.tags


def test_long_csv_groups_rows_by_tag(tmp_path):
    text = "tag,step,value,wall_time\nloss,0,1.0,10.0\nq,0,5.0,10.0\nloss,10,0.5,11.0\nq,10,6.0,11.0\n"
    log = read_csv_log(_write(tmp_path / "scalars.csv", text))
    assert log.layout == "long_csv"
    assert log.tags["loss"].steps.tolist() == [0, 10] and log.tags["loss"].values.tolist() == [1.0, 0.5]
    assert log.tags["q"].values.tolist() == [5.0, 6.0]
    assert log.tags["q"].wall_time.tolist() == [10.0, 11.0]


def test_csv_without_step_column_is_not_a_training_log(tmp_path):
    log = read_csv_log(_write(tmp_path / "returns.csv", "seed,return\n0,10\n1,12\n"))
    assert log.ignored and log.tags == {}
    assert "no step column" in _messages(log)[0]


# --------------------------------------------------------------------------------------------------
# Bad input: exact outcome for each case, never an exception
# --------------------------------------------------------------------------------------------------


def test_empty_csv(tmp_path):
    log = read_csv_log(_write(tmp_path / "progress.csv", b""))
    assert log.tags == {} and _messages(log) == ["empty file (0 bytes)"]
    assert log.issues[0].path.endswith("progress.csv")


def test_header_only_csv(tmp_path):
    log = read_csv_log(_write(tmp_path / "progress.csv", "Epoch,trainer/QF1 Loss\n"))
    assert log.tags == {} and _messages(log) == ["header only, no data rows"]


def test_garbage_bytes_named_csv(tmp_path):
    rng = np.random.default_rng(0)
    log = read_csv_log(
        _write(tmp_path / "progress.csv", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    )
    assert log.tags == {} and log.issues[0].level == "error"
    assert _messages(log)[0].startswith("binary content")


def test_non_utf8_binary_without_nul_bytes(tmp_path):
    log = read_csv_log(_write(tmp_path / "x.csv", bytes(range(128, 256)) * 4))
    assert log.tags == {} and _messages(log)[0].startswith("binary content (not UTF-8")


def test_truncated_last_line_is_dropped(tmp_path):
    text = "step,loss,q\n0,1.0,5.0\n10,0.5,6.0\n20,0.2"  # writer cut mid-row: 2 of 3 fields
    log = read_csv_log(_write(tmp_path / "log.csv", text))
    assert log.tags["loss"].steps.tolist() == [0, 10]
    assert log.tags["q"].steps.tolist() == [0, 10]
    assert any("last line truncated" in m and "2 of 3 fields" in m for m in _messages(log))


def test_complete_last_line_without_newline_is_kept(tmp_path):
    log = read_csv_log(_write(tmp_path / "log.csv", "step,loss\n0,1.0\n10,0.5"))
    assert log.tags["loss"].values.tolist() == [1.0, 0.5] and log.issues == []


def test_nan_and_inf_strings_are_values_not_gaps(tmp_path):
    text = "step,loss,q\n0,nan,1.0\n1,inf,NaN\n2,-inf,-Infinity\n3,0.5,2.0\n"
    log = read_csv_log(_write(tmp_path / "log.csv", text))
    loss = log.tags["loss"].values
    assert log.tags["loss"].steps.tolist() == [0, 1, 2, 3]
    assert np.isnan(loss[0]) and loss[1] == np.inf and loss[2] == -np.inf and loss[3] == 0.5
    q = log.tags["q"].values
    assert q[0] == 1.0 and np.isnan(q[1]) and q[2] == -np.inf and q[3] == 2.0
    assert log.issues == []


def test_ragged_rows(tmp_path):
    text = "step,loss\n0,1.0\n10,0.5,99,98\n20,0.25\n30\n"
    log = read_csv_log(_write(tmp_path / "log.csv", text))
    # the over-long row is skipped with an issue; the short row has no loss value
    assert log.tags["loss"].steps.tolist() == [0, 20]
    assert log.tags["loss"].values.tolist() == [1.0, 0.25]
    assert any(m.startswith("ragged rows: skipped 1 line(s)") and "line 3" in m for m in _messages(log))


def test_text_cells_inside_numeric_column_are_dropped_with_issue(tmp_path):
    log = read_csv_log(_write(tmp_path / "log.csv", "step,loss\n0,1.0\n10,oops\n20,0.5\n"))
    assert log.tags["loss"].steps.tolist() == [0, 20]
    assert any("non-numeric cells dropped" in m and "loss (1)" in m for m in _messages(log))


def test_all_columns_non_numeric_is_an_error(tmp_path):
    log = read_csv_log(_write(tmp_path / "log.csv", "step,algo,env\n0,cql,hopper\n1,cql,hopper\n"))
    assert log.tags == {}
    assert [(i.level, i.message) for i in log.issues] == [("error", "all metric columns are non-numeric")]


def test_mislabelled_json_named_progress_csv(tmp_path):
    log = read_csv_log(_write(tmp_path / "progress.csv", json.dumps({"Epoch": [0, 1], "loss": [1, 2]})))
    assert log.tags == {} and _messages(log) == ["looks like JSON, not CSV (mislabelled file?)"]


def test_unreadable_file(tmp_path, monkeypatch):
    p = _write(tmp_path / "progress.csv", "step,loss\n0,1\n")

    def denied(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    from analyzer.ingest import storage

    monkeypatch.setattr(storage, "open", denied, raising=False)  # files are read by the storage layer
    log = read_csv_log(p)
    assert log.tags == {}
    assert [(i.level, i.message) for i in log.issues] == [("error", "cannot read file: Permission denied")]


def test_directory_named_csv_is_unreadable_not_a_crash(tmp_path):
    (tmp_path / "x.csv").mkdir()
    log = read_csv_log(tmp_path / "x.csv")
    assert log.tags == {} and _messages(log) == ["cannot read file: Is a directory"]


def test_headerless_with_unknown_width(tmp_path):
    log = read_csv_log(_write(tmp_path / "x.csv", "1,2,3,4\n5,6,7,8\n"))
    assert log.tags == {} and "headerless CSV with 4 columns" in _messages(log)[0]


# --------------------------------------------------------------------------------------------------
# Speed: 1M rows, vectorised (asserted by counting Python calls, not by timing)
# --------------------------------------------------------------------------------------------------


def _python_calls(fn) -> int:
    calls = 0

    def prof(_frame, event, _arg):
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def _wide_csv(path: Path, n: int) -> Path:
    import pandas as pd

    steps = np.arange(n, dtype=np.int64) * 10
    pd.DataFrame({"step": steps, "loss": (np.arange(n) % 1000) / 1000.0}).to_csv(path, index=False)
    return path


def test_million_row_csv_has_no_per_row_python_loop(tmp_path):
    small = _wide_csv(tmp_path / "small.csv", 1000)
    big = _wide_csv(tmp_path / "big.csv", 1_000_000)
    small_calls = _python_calls(lambda: read_csv_log(small))
    holder = {}
    big_calls = _python_calls(lambda: holder.setdefault("log", read_csv_log(big)))
    log = holder["log"]
    seg = log.tags["loss"]
    assert len(seg.steps) == 1_000_000 and seg.steps[-1] == 9_999_990
    assert seg.values[1234] == pytest.approx(0.234)
    # 1000x the rows must not mean (anywhere near) 1000x the Python function calls
    assert big_calls < 2 * small_calls + 2000, (small_calls, big_calls)


# --------------------------------------------------------------------------------------------------
# Restarts and duplicates
# --------------------------------------------------------------------------------------------------


def _seg(steps, values, name="f"):
    return Segment(np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=float), None, name)


def test_keep_last_duplicate_and_regression():
    first = _seg([0, 10, 20, 30, 40], [0, 1, 2, 3, 4], "run.1")
    restart = _seg([30, 40, 50], [30, 40, 50], "run.2")  # resumed from the step-30 checkpoint
    m = merge_segments([first, restart], "keep-last")
    assert m.steps.tolist() == [0, 10, 20, 30, 40, 50]
    assert m.values.tolist() == [0, 1, 2, 30, 40, 50]
    assert m.stats.superseded == 2 and m.stats.regressions == 1 and m.stats.files == ("run.1",)


def test_keep_last_restart_that_went_back_further_supersedes_everything_after():
    first = _seg([0, 10, 20, 30], [0, 1, 2, 3])
    restart = _seg([15, 25], [15, 25])  # nothing of the first attempt from step 15 on survives
    m = merge_segments([first, restart], "keep-last")
    assert m.steps.tolist() == [0, 10, 15, 25] and m.values.tolist() == [0, 1, 15, 25]


def test_keep_first_policy():
    first = _seg([0, 10, 20, 30], [0, 1, 2, 3])
    restart = _seg([20, 30, 40], [20, 30, 40])
    m = merge_segments([first, restart], "keep-first")
    assert m.steps.tolist() == [0, 10, 20, 30, 40] and m.values.tolist() == [0, 1, 2, 3, 40]
    assert m.stats.superseded == 2


def test_survivors_rejects_unknown_policy():
    with pytest.raises(ValueError, match="unknown duplicate policy"):
        survivors(np.array([1, 2]), "keep-best")


def test_csv_appended_after_resume_is_merged_with_info_issue(tmp_path):
    text = "step,loss\n0,1.0\n100,0.9\n200,0.8\n300,0.7\n200,0.75\n300,0.65\n400,0.6\n"
    _write(tmp_path / "run" / "progress.csv", text)
    rd = RunDir(tmp_path / "run", "run", csv_files=[CsvSource(tmp_path / "run" / "progress.csv")])
    raw = read_raw_run(rd)
    s = raw.tags["loss"]
    assert s.steps.tolist() == [0, 100, 200, 300, 400]
    assert s.values.tolist() == [1.0, 0.9, 0.75, 0.65, 0.6]
    info = [i for i in raw.issues if i.message.startswith("restart/duplicate steps")]
    assert len(info) == 1 and info[0].level == "info"
    assert "2 point(s) in 1 tag(s) superseded (keep-last; 1 step regression(s))" in info[0].message
    first = read_raw_run(rd, duplicate_policy="keep-first").tags["loss"]
    assert first.values.tolist() == [1.0, 0.9, 0.8, 0.7, 0.6]


def test_bom_crlf_and_spaces_after_commas(tmp_path):
    log = read_csv_log(_write(tmp_path / "a.csv", b"\xef\xbb\xbfstep,loss\r\n0,1.0\r\n10,0.5\r\n"))
    assert log.x_column == "step" and log.tags["loss"].values.tolist() == [1.0, 0.5] and log.issues == []
    log = read_csv_log(_write(tmp_path / "b.csv", "step, loss, q\n0, 1.0, nan\n10, 0.5, 2\n"))
    assert (
        set(log.tags) == {"loss", "q"}
        and log.tags["q"].values[1] == 2.0
        and np.isnan(log.tags["q"].values[0])
    )


def test_quoted_header_names_with_commas(tmp_path):
    log = read_csv_log(_write(tmp_path / "a.csv", '"step","loss, smoothed",q\n0,1.0,2\n1,0.5,3\n'))
    assert log.x_column == "step" and log.tags["loss, smoothed"].values.tolist() == [1.0, 0.5]


def test_non_finite_or_huge_steps_are_dropped_with_issue(tmp_path):
    log = read_csv_log(_write(tmp_path / "a.csv", "step,loss\n0,1\ninf,2\n1e300,3\n,4\n10,5\n"))
    assert log.tags["loss"].steps.tolist() == [0, 10] and log.tags["loss"].values.tolist() == [1.0, 5.0]
    assert "dropped 3 row(s) without a usable value in 'step'" in _messages(log)
    log = read_csv_log(_write(tmp_path / "b.csv", "0,1\nnan,2\n5,3\n"), tag="x")
    assert log.tags["x"].steps.tolist() == [0, 5]
