"""One d3rlpy experiment, one run: the CSV folder and the TensorBoard folder of an experiment merge.

The real files are fixtures/real/d3rlpy (written by d3rlpy 2.8.1 with both adapters); the edge
cases are laid out here in d3rlpy's own shapes (headerless `epoch,step,value` CSVs, `metrics/<name>`
event tags with global_step = epoch) with tensorboard's event writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_discovery import put, write_events, write_hparams

from analyzer.ingest import discover_runs, load_runs, read_raw_run

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "d3rlpy"
EXP = "CQL_20240101120000"


def _experiment(root: Path, csv_rows: dict[str, list[tuple[int, int, float]]], tb: dict) -> None:
    """d3rlpy's default roots: d3rlpy_logs/<exp>/ (CSV, params.json) + tensorboard_logs/runs/<exp>/."""
    run = root / "d3rlpy_logs" / EXP
    for name, rows in csv_rows.items():
        put(run / f"{name}.csv", "".join(f"{e},{s},{v}\n" for e, s, v in rows))
    put(run / "params.json", json.dumps({"config": {"type": "cql", "params": {"gamma": 0.9}}}))
    write_events(root / "tensorboard_logs" / "runs" / EXP, tb)


# --------------------------------------------------------------------------------------------------
# Real d3rlpy files


@pytest.mark.parametrize(
    ("root", "csv_rel", "tb_rel"),
    [
        (REAL, "csv/cql_tiny_20261125205945", "tensorboard/runs/cql_tiny_20261125205945"),
        *[
            (REAL / "actor_critic", f"d3rlpy_logs/{n}", f"tensorboard_logs/runs/{n}")
            for n in (
                "iql_pendulum_20261207092945",
                "td3_plus_bc_pendulum_20261207093141",
                "awac_pendulum_20261207093237",
            )
        ],
    ],
)
def test_real_experiment_is_one_run_on_the_step_axis(root: Path, csv_rel: str, tb_rel: str) -> None:
    runs, errors = load_runs([root])
    assert errors == []
    ids = [r.id for r in runs]
    assert csv_rel in ids and tb_rel not in ids  # the TensorBoard folder is no run of its own
    run = next(r for r in runs if r.id == csv_rel)
    assert run.x_unit == "step" and run.path == root / csv_rel
    tb_files = [f for f in _raw(root, csv_rel).files if (root / tb_rel) in Path(f).parents]
    assert tb_files, "the TensorBoard event files are read into the run"
    assert any("read as part of this run" in i.message for i in run.issues)
    assert not [i for i in run.issues if i.level != "info" and "TensorBoard" in i.message], run.issues
    # read alone, the TensorBoard folder is on the epoch axis; merged, every TensorBoard point sits
    # at the gradient step that ended its epoch, with the value the CSV holds there
    (alone,) = discover_runs(root / tb_rel)
    tb_raw = read_raw_run(alone)
    assert tb_raw.x_unit == "epoch"
    table = _epoch_table(root / csv_rel / "critic_loss.csv")
    for tag, s in tb_raw.tags.items():
        name = tag.removeprefix("metrics/")
        merged = run.raw[name]
        want_steps = [table[int(e)] for e in s.steps]
        assert merged.steps.tolist() == want_steps, name
        np.testing.assert_allclose(merged.values, s.values, rtol=1e-6, err_msg=name)  # TB is float32


def _raw(root: Path, run_id: str):  # noqa: ANN202
    (rd,) = [rd for rd in discover_runs(root) if rd.id == run_id]
    return read_raw_run(rd)


def _epoch_table(csv: Path) -> dict[int, int]:
    rows = [line.split(",") for line in csv.read_text().splitlines() if line]
    return {int(e): int(s) for e, s, _ in rows}


def test_real_merged_run_keeps_checkpoints_and_config_of_the_csv_folder() -> None:
    raw = _raw(REAL, "csv/cql_tiny_20261125205945")
    assert [c.step for c in raw.checkpoints] == [600, 1200, 1800, 2400, 3000]
    assert raw.config["config.params.gamma"] == 0.95
    assert raw.config_sources["config.params.gamma"].endswith("cql_tiny_20261125205945/params.json")
    assert raw.layout == "d3rlpy_csv"


# --------------------------------------------------------------------------------------------------
# Edge cases


def test_tensorboard_only_metric_joins_on_the_csv_step_axis(tmp_path: Path) -> None:
    _experiment(
        tmp_path,
        {"critic_loss": [(1, 100, 0.5), (2, 200, 0.4), (3, 300, 0.3)]},
        {"metrics/critic_loss": [(1, 0.5), (2, 0.4), (3, 0.3)], "metrics/environment": [(1, 7.0), (3, 9.0)]},
    )
    write_hparams(tmp_path / "tensorboard_logs" / "runs" / EXP / EXP, {"batch_size": 64.0})
    (run,), errors = load_runs([tmp_path])
    assert errors == [] and run.id == f"d3rlpy_logs/{EXP}"
    assert run.raw["environment"].steps.tolist() == [100, 300]
    assert run.raw["critic_loss"].files == (str(tmp_path / "d3rlpy_logs" / EXP / "critic_loss.csv"),)
    assert run.series["eval_return"].values.tolist() == [7.0, 9.0]
    assert run.metadata.hyperparameters["batch_size"] == 64.0  # add_hparams sub-run: still config
    assert run.metadata.gamma == 0.9  # params.json wins


def test_longer_tensorboard_copy_wins_and_unknown_epochs_are_reported(tmp_path: Path) -> None:
    # critic_loss.csv stops after epoch 2 (killed mid-write); alpha.csv names epoch 3's step
    _experiment(
        tmp_path,
        {
            "critic_loss": [(1, 100, 0.5), (2, 200, 0.4)],
            "alpha": [(1, 100, 1.0), (2, 200, 1.0), (3, 300, 1.0)],
        },
        {"metrics/critic_loss": [(1, 0.5), (2, 0.4), (3, 0.3), (4, 0.2)]},
    )
    (run,), _ = load_runs([tmp_path])
    s = run.raw["critic_loss"]
    assert s.steps.tolist() == [100, 200, 300]  # epoch 4: no CSV row says where it ended
    np.testing.assert_allclose(s.values, [0.5, 0.4, 0.3], rtol=1e-6)
    msgs = [i.message for i in run.issues]
    assert any("1 TensorBoard point(s) on epochs no CSV row names" in m for m in msgs), msgs
    assert any("different point counts" in m and "critic_loss" in m for m in msgs), msgs


def test_disagreeing_copies_are_reported_and_the_csv_kept_on_a_tie(tmp_path: Path) -> None:
    _experiment(
        tmp_path,
        {"critic_loss": [(1, 100, 0.5), (2, 200, 0.4)]},
        {"metrics/critic_loss": [(1, 0.5), (2, 9.0)]},
    )
    (run,), _ = load_runs([tmp_path])
    assert run.raw["critic_loss"].values.tolist() == [0.5, 0.4]
    bad = [i for i in run.issues if "differ between the d3rlpy CSV and TensorBoard" in i.message]
    assert len(bad) == 1 and bad[0].level == "warning" and "critic_loss" in bad[0].message


def test_tags_without_the_metrics_prefix_are_not_mixed_in(tmp_path: Path) -> None:
    _experiment(
        tmp_path,
        {"critic_loss": [(1, 100, 0.5), (2, 200, 0.4)]},
        {"metrics/critic_loss": [(1, 0.5), (2, 0.4)], "custom/q": [(1, 3.0), (2, 4.0)]},
    )
    (run,), _ = load_runs([tmp_path])
    assert "custom/q" not in run.raw and "q" not in run.raw
    assert any("without d3rlpy's metrics/ prefix (custom/q)" in i.message for i in run.issues)


def test_no_pair_without_params_json_or_when_ambiguous(tmp_path: Path) -> None:
    # a TensorBoard runs/<name> next to a CSV folder of that name without params.json: not d3rlpy
    a = tmp_path / "a"
    put(a / "csv_logs" / EXP / "critic_loss.csv", "1,100,0.5\n2,200,0.4\n")
    write_events(a / "tb" / "runs" / EXP, {"metrics/critic_loss": [(1, 0.5), (2, 0.4)]})
    assert {rd.id for rd in discover_runs(a)} == {f"csv_logs/{EXP}", f"tb/runs/{EXP}"}
    # two CSV folders of that experiment name under the same base: which one is the twin is unknown
    b = tmp_path / "b"
    _experiment(b, {"critic_loss": [(1, 100, 0.5)]}, {"metrics/critic_loss": [(1, 0.5)]})
    put(b / "copy" / EXP / "critic_loss.csv", "1,100,0.5\n")
    put(b / "copy" / EXP / "params.json", "{}")
    rds = discover_runs(b)
    assert {rd.id for rd in rds} == {f"d3rlpy_logs/{EXP}", f"copy/{EXP}", f"tensorboard_logs/runs/{EXP}"}
    assert all(rd.kind == "dir" for rd in rds)
    # different bases: not the same experiment
    c = tmp_path / "c"
    put(c / "x" / "d3rlpy_logs" / EXP / "critic_loss.csv", "1,100,0.5\n")
    put(c / "x" / "d3rlpy_logs" / EXP / "params.json", "{}")
    write_events(c / "y" / "tensorboard_logs" / "runs" / EXP, {"metrics/critic_loss": [(1, 0.5)]})
    assert len(discover_runs(c)) == 2


def test_workers_and_cache_give_the_same_merged_run(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import os
    import time

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    logs = tmp_path / "logs"
    _experiment(
        logs,
        {"critic_loss": [(1, 100, 0.5), (2, 200, 0.4)]},
        {"metrics/critic_loss": [(1, 0.5), (2, 0.4)], "metrics/environment": [(1, 7.0), (2, 9.0)]},
    )
    old = time.time() - 3600  # not a live run: the cache stores it
    for p in logs.rglob("*"):
        os.utime(p, (old, old))
    (plain,), _ = load_runs([logs])
    (stored,), _ = load_runs([logs], use_cache=True)
    (cached,), _ = load_runs([logs], use_cache=True)
    (par,), _ = load_runs([logs, tmp_path / "missing"], workers=2)
    assert any((tmp_path / "cache").rglob("*.npz"))
    for other in (stored, cached, par):
        assert sorted(other.raw) == sorted(plain.raw) == ["critic_loss", "environment"]
        assert other.raw["environment"].steps.tolist() == [100, 200]
