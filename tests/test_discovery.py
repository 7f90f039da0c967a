"""Run discovery, layout grouping, configs, checkpoints, restarts across event files, and load_runs errors.

Event files are written with tensorboard's own writer (no TensorFlow, no torch), so the expected
values are the ones written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from analyzer.ingest import discover_runs, load_runs, read_raw_run
from analyzer.ingest.discover import find_checkpoints

pytest.importorskip("analyzer.tfevents")


def write_events(
    logdir: Path, points: dict[str, list[tuple[int, float]]], wall0: float = 1000.0, suffix: str = ""
) -> Path:
    """One event file in `logdir` holding `points` per tag; wall time = wall0 + index (write order)."""
    logdir.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(logdir))
    w = EventFileWriter(str(logdir), filename_suffix=suffix)
    i = 0
    rows = sorted(((s, tag, v) for tag, pts in points.items() for s, v in pts), key=lambda r: r[0])
    for step, tag, value in rows:
        summ = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
        w.add_event(Event(wall_time=wall0 + i, step=step, summary=summ))
        i += 1
    w.close()
    (new,) = set(os.listdir(logdir)) - before
    return logdir / new


def write_hparams(logdir: Path, hparams: dict) -> None:
    info = plugin_data_pb2.SessionStartInfo()
    for k, v in hparams.items():
        if isinstance(v, str):
            info.hparams[k].string_value = v
        else:
            info.hparams[k].number_value = v
    content = plugin_data_pb2.HParamsPluginData(version=0, session_start_info=info).SerializeToString()
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=content))
    w = EventFileWriter(str(logdir), filename_suffix=".hp")
    w.add_event(
        Event(
            wall_time=999.0,
            step=0,
            summary=Summary(value=[Summary.Value(tag="_hparams_/session_start_info", metadata=meta)]),
        )
    )
    w.close()


def put(path: Path, text: str | bytes = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def lin(steps, f=lambda s: s / 100.0):
    return [(s, f(s)) for s in steps]


@pytest.fixture()
def zoo(tmp_path: Path) -> Path:
    """One directory tree holding every supported layout, plus things that must be skipped."""
    root = tmp_path / "logs"
    # d3rlpy file adapter
    d3 = root / "d3rlpy_logs" / "CQL_20240101120000"
    put(d3 / "critic_loss.csv", "1,1000,0.5\n2,2000,0.4\n")
    put(d3 / "conservative_loss.csv", "1,1000,0.2\n2,2000,0.1\n")
    put(d3 / "q_func_grad.csv", "epoch,step,min,max,mean,std\n1,1000,0,1,0.5,0.1\n")
    put(d3 / "params.json", json.dumps({"gamma": 0.97, "config": {"batch_size": 256}}))
    put(d3 / "model_1000.d3", b"x")
    put(d3 / "model_2000.d3", b"x")
    # d3rlpy TensorBoard adapter for the same experiment: global_step is the epoch; the same
    # critic_loss as the CSV, plus the evaluator's return that this CSV folder lacks
    write_events(
        root / "tensorboard_logs" / "runs" / "CQL_20240101120000",
        {"metrics/critic_loss": [(1, 0.5), (2, 0.4)], "metrics/environment": [(1, 10.0), (2, 12.0)]},
    )
    # rlkit
    rl = root / "rlkit" / "cql-hopper_2024_01_01_00_00_00_0000--s-0"
    put(
        rl / "progress.csv",
        "Epoch,trainer/Num Q Updates,trainer/QF1 Loss\n0,1000,1.0\n1,2000,0.9\n2,3000,0.8\n",
    )
    put(rl / "variant.json", json.dumps({"trainer_kwargs": {"discount": 0.99, "min_q_weight": 5.0}}))
    put(rl / "itr_0.pkl", b"")
    put(rl / "itr_2.pkl", b"")
    # BRAC: <seed>/train + <seed>/eval/{main,max_q} -> one run
    br = root / "brac" / "hopper" / "n1000" / "brac_primal" / "0" / "1"
    write_events(br / "train", {"q_loss": lin(range(0, 500, 100)), "div_mean": lin(range(0, 500, 100))})
    write_events(br / "eval" / "main", {"episode_mean": lin([0, 250], lambda s: 10.0 + s)})
    write_events(br / "eval" / "max_q", {"episode_mean": lin([0, 250], lambda s: 20.0 + s)})
    # TorchRL CSV logger
    tr = root / "torchrl" / "cql_logging" / "cql_hopper_abc"
    put(tr / "scalars" / "loss_qvalue.csv", "0,2.0\n100,1.0\n")
    put(tr / "scalars" / "train" / "reward.csv", "0,0.5\n100,0.7\n")
    # OfflineRL-Kit: record/ csv + record/tb events + hyper_param.json -> one run
    ok = root / "offlinerlkit" / "hopper" / "cql" / "seed_0&timestamp_23-0101-000000"
    put(
        ok / "record" / "policy_training_progress.csv",
        "timestep,loss/critic1,eval/normalized_episode_reward\n1000,3.0,40.0\n2000,2.5,45.0\n",
    )
    put(ok / "record" / "hyper_param.json", json.dumps({"seed": 0, "cql_weight": 5.0}))
    write_events(ok / "record" / "tb", {"loss/critic1": [(1000, 3.0), (2000, 2.5)]})
    put(ok / "model" / "policy.pth", b"")
    # jaxrl: tb/<seed>/
    write_events(root / "jaxrl" / "tb" / "42", {"training/critic_loss": lin([1000, 2000, 3000])})
    # our trainer: progress.csv + event files with the same tags + checkpoints/ckpt_<step>.pt
    ours = root / "ours" / "run1"
    put(ours / "progress.csv", "step,offrl/q_data,offrl/td_error\n100,1.0,0.5\n200,2.0,0.25\n")
    write_events(ours, {"offrl/q_data": lin([100, 200]), "offrl/td_error": lin([100, 200])})
    put(ours / "config.json", json.dumps({"algo": "cql", "gamma": 0.99, "ckpt_every": 100}))
    put(ours / "checkpoints" / "ckpt_100.pt", b"")
    put(ours / "checkpoints" / "ckpt_200.pt", b"")
    put(ours / "checkpoints" / ".ckpt_300.pt.123.tmp", b"")
    # must be skipped: hidden dirs and event files inside checkpoint dirs
    write_events(root / ".trash" / "old", {"x": lin([1])})
    write_events(root / "ours" / "run1" / "checkpoints" / "tb", {"x": lin([1])})
    return root


def test_discovery_groups_each_layout_into_one_run(zoo):
    runs = {rd.id: rd for rd in discover_runs(zoo)}
    assert set(runs) == {
        "d3rlpy_logs/CQL_20240101120000",  # with tensorboard_logs/runs/CQL_20240101120000: one experiment
        "rlkit/cql-hopper_2024_01_01_00_00_00_0000--s-0",
        "brac/hopper/n1000/brac_primal/0/1",
        "torchrl/cql_logging/cql_hopper_abc",
        "offlinerlkit/hopper/cql/seed_0&timestamp_23-0101-000000",
        "jaxrl/tb/42",
        "ours/run1",
    }
    assert runs["brac/hopper/n1000/brac_primal/0/1"].kind == "brac"
    assert sorted(e.prefix for e in runs["brac/hopper/n1000/brac_primal/0/1"].event_files) == [
        "",
        "eval/main/",
        "eval/max_q/",
    ]
    assert runs["torchrl/cql_logging/cql_hopper_abc"].kind == "torchrl"
    d3 = runs["d3rlpy_logs/CQL_20240101120000"]
    assert d3.kind == "d3rlpy" and [e.path.parent.name for e in d3.event_files] == ["CQL_20240101120000"]
    assert "tensorboard_logs" in d3.event_files[0].path.parts
    assert runs["offlinerlkit/hopper/cql/seed_0&timestamp_23-0101-000000"].kind == "offlinerl_kit"


def test_load_runs_reads_every_layout(zoo):
    runs, errors = load_runs([zoo])
    assert errors == []
    by_id = {r.id: r for r in runs}
    d3 = by_id["d3rlpy_logs/CQL_20240101120000"]
    assert d3.raw["critic_loss"].steps.tolist() == [1000, 2000] and d3.x_unit == "step"
    assert "q_func_grad" not in d3.raw
    assert [c.step for c in d3.checkpoints] == [1000, 2000]
    # its TensorBoard twin: critic_loss already in the CSV (taken once), environment placed on the
    # step axis through the CSV's epoch -> step rows (epoch 1 ended at step 1000)
    assert "metrics/critic_loss" not in d3.raw and "metrics/environment" not in d3.raw
    assert d3.raw["environment"].steps.tolist() == [1000, 2000]
    assert d3.raw["environment"].values.tolist() == [10.0, 12.0]
    assert d3.series["eval_return"].steps.tolist() == [1000, 2000]
    assert not any(i.level != "info" for i in d3.issues), d3.issues

    rl = by_id["rlkit/cql-hopper_2024_01_01_00_00_00_0000--s-0"]
    assert rl.raw["trainer/QF1 Loss"].steps.tolist() == [1000, 2000, 3000] and rl.x_unit == "step"
    # itr_<epoch>.pkl placed on the gradient-step axis through the Epoch -> Num Q Updates rows
    assert [(c.step, c.path.name) for c in rl.checkpoints] == [(1000, "itr_0.pkl"), (3000, "itr_2.pkl")]

    br = by_id["brac/hopper/n1000/brac_primal/0/1"]
    assert br.raw["q_loss"].steps.tolist() == [0, 100, 200, 300, 400]
    assert br.raw["eval/main/episode_mean"].values.tolist() == [10.0, 260.0]
    assert br.raw["eval/max_q/episode_mean"].values.tolist() == [20.0, 270.0]

    trl = by_id["torchrl/cql_logging/cql_hopper_abc"]
    assert set(trl.raw) == {"loss_qvalue", "train/reward"}
    assert trl.raw["train/reward"].values.tolist() == [0.5, 0.7]

    ok = by_id["offlinerlkit/hopper/cql/seed_0&timestamp_23-0101-000000"]
    assert ok.raw["eval/normalized_episode_reward"].steps.tolist() == [1000, 2000]
    assert ok.raw["loss/critic1"].values.tolist() == [3.0, 2.5]

    jx = by_id["jaxrl/tb/42"]
    assert jx.raw["training/critic_loss"].steps.tolist() == [1000, 2000, 3000]

    ours = by_id["ours/run1"]
    assert ours.raw["offrl/q_data"].values.tolist() == [1.0, 2.0]
    assert [c.step for c in ours.checkpoints] == [100, 200]  # the .tmp file is not a checkpoint


def test_layout_and_config_recorded_on_raw_run(zoo):
    layouts = {}
    raws = {}
    for rd in discover_runs(zoo):
        raw = read_raw_run(rd)
        layouts[rd.id] = raw.layout
        raws[rd.id] = raw
    assert layouts == {
        "brac/hopper/n1000/brac_primal/0/1": "brac",
        "d3rlpy_logs/CQL_20240101120000": "d3rlpy_csv",
        "jaxrl/tb/42": "tfevents",
        "offlinerlkit/hopper/cql/seed_0&timestamp_23-0101-000000": "offlinerl_kit",
        "ours/run1": "progress_csv",
        "rlkit/cql-hopper_2024_01_01_00_00_00_0000--s-0": "progress_csv",
        "torchrl/cql_logging/cql_hopper_abc": "torchrl_csv",
    }
    rl = raws["rlkit/cql-hopper_2024_01_01_00_00_00_0000--s-0"]
    assert rl.config["trainer_kwargs.discount"] == 0.99
    assert rl.config_sources["trainer_kwargs.min_q_weight"].endswith("variant.json")
    # the merged d3rlpy run keeps the CSV folder's params.json
    d3 = raws["d3rlpy_logs/CQL_20240101120000"]
    assert d3.config["gamma"] == 0.97 and d3.config_sources["gamma"].endswith(
        "d3rlpy_logs/CQL_20240101120000/params.json"
    )
    # read alone, the TensorBoard folder is still a run of its own and finds that params.json
    (tb_rd,) = discover_runs(zoo / "tensorboard_logs" / "runs" / "CQL_20240101120000")
    tb = read_raw_run(tb_rd)
    assert tb.layout == "d3rlpy_tb" and tb.x_unit == "epoch"
    assert tb.tags["metrics/critic_loss"].steps.tolist() == [1, 2]
    assert tb.config["gamma"] == 0.97 and tb.config_sources["gamma"].endswith(
        "d3rlpy_logs/CQL_20240101120000/params.json"
    )
    ok = raws["offlinerlkit/hopper/cql/seed_0&timestamp_23-0101-000000"]
    assert ok.config["cql_weight"] == 5.0
    assert raws["ours/run1"].config["ckpt_every"] == 100


def test_tag_in_both_csv_and_events_uses_the_more_complete_copy(tmp_path):
    run = tmp_path / "run"
    put(run / "progress.csv", "step,offrl/q_data\n100,1.0\n200,2.0\n300,3.0\n")
    write_events(run, {"offrl/q_data": [(100, 1.0), (200, 2.0)]})  # event file lags behind the CSV
    raw = read_raw_run(discover_runs(run)[0])
    assert raw.tags["offrl/q_data"].steps.tolist() == [100, 200, 300]
    assert raw.tags["offrl/q_data"].files == (str(run / "progress.csv"),)
    assert any(
        "1 tag(s) in both event files and CSV with different point counts" in i.message for i in raw.issues
    )


def test_nothing_is_written_into_log_directories(zoo):
    def snapshot():
        out = {}
        for dirpath, dirnames, filenames in os.walk(zoo):
            for n in dirnames + filenames:
                st = os.stat(os.path.join(dirpath, n))
                out[os.path.join(dirpath, n)] = (st.st_size, st.st_mtime_ns)
        return out

    before = snapshot()
    load_runs([zoo])
    assert snapshot() == before


def test_workers_give_the_same_runs_and_errors(zoo):
    put(zoo / "broken" / "progress.csv", b"\x00\x01binary")
    serial, e1 = load_runs([zoo])
    parallel, e2 = load_runs([zoo], workers=2)
    assert [r.id for r in serial] == [r.id for r in parallel] and len(serial) == 7
    assert e1 == e2 and [e.path for e in e1] == [str(zoo / "broken")]
    for a, b in zip(serial, parallel, strict=True):
        assert set(a.raw) == set(b.raw)
        for tag in a.raw:
            assert np.array_equal(a.raw[tag].steps, b.raw[tag].steps)
            assert np.array_equal(a.raw[tag].values, b.raw[tag].values, equal_nan=True)


def test_many_runs_in_a_deep_tree(tmp_path):
    for i in range(120):
        put(tmp_path / f"sweep/lr{i % 4}/seed{i}/progress.csv", f"step,loss\n0,{i}\n10,{i + 1}\n")
    put(tmp_path / "sweep" / "README.md", "not a log")
    runs = discover_runs(tmp_path)
    assert len(runs) == 120
    assert runs[0].id == "sweep/lr0/seed0"


# --------------------------------------------------------------------------------------------------
# Restarts across event files
# --------------------------------------------------------------------------------------------------


def test_event_file_restart_keep_last_and_keep_first(tmp_path):
    run = tmp_path / "run"
    # first attempt logged to step 500, crashed; resumed from the step-300 checkpoint in a new file
    write_events(run, {"loss": lin(range(0, 600, 100), lambda s: float(s))}, wall0=1000.0, suffix=".a")
    write_events(run, {"loss": lin(range(300, 800, 100), lambda s: -float(s))}, wall0=5000.0, suffix=".b")
    runs, errors = load_runs([run])
    assert errors == []
    s = runs[0].raw["loss"]
    assert s.steps.tolist() == [0, 100, 200, 300, 400, 500, 600, 700]
    assert s.values.tolist() == [0, 100, 200, -300, -400, -500, -600, -700]
    assert len(s.files) == 2
    info = [i for i in runs[0].issues if i.message.startswith("restart/duplicate steps")]
    assert len(info) == 1 and "3 point(s) in 1 tag(s) superseded (keep-last" in info[0].message
    first, _ = load_runs([run], duplicate_policy="keep-first")
    assert first[0].raw["loss"].values.tolist() == [0, 100, 200, 300, 400, 500, -600, -700]


def test_event_files_are_ordered_by_first_wall_time_not_name(tmp_path):
    run = tmp_path / "run"
    # the file whose name sorts first was written LATER (its wall times are larger)
    write_events(run, {"loss": lin([0, 10], lambda s: 2.0)}, wall0=9000.0, suffix=".a_late")
    write_events(run, {"loss": lin([0, 10], lambda s: 1.0)}, wall0=1000.0, suffix=".b_early")
    runs, _ = load_runs([run])
    assert runs[0].raw["loss"].values.tolist() == [2.0, 2.0]  # keep-last = the later-written file


def test_hparams_from_event_files_are_config(tmp_path):
    run = tmp_path / "run"
    write_events(run, {"loss": lin([0, 1])})
    write_hparams(run, {"lr": 0.001, "algo": "cql"})
    raw = read_raw_run(discover_runs(run)[0])
    assert raw.config["lr"] == pytest.approx(0.001) and raw.config["algo"] == "cql"
    assert ".hp" in raw.config_sources["lr"]


# --------------------------------------------------------------------------------------------------
# Config files
# --------------------------------------------------------------------------------------------------


def test_config_files_flattened_with_sources_and_broken_files_reported(tmp_path):
    run = tmp_path / "run"
    put(run / "progress.csv", "step,loss\n0,1\n")
    put(
        run / "config.json",
        json.dumps({"gamma": 0.99, "net": {"hidden": [256, 256], "act": {"kind": "relu"}}}),
    )
    put(run / "config.yaml", "gamma: 0.5\nbatch_size: 512\n")  # gamma conflicts: config.json wins
    put(run / "variant.json", "{not json")
    raw = read_raw_run(discover_runs(run)[0])
    assert raw.config["net.hidden"] == [256, 256] and raw.config["net.act.kind"] == "relu"
    assert raw.config["gamma"] == 0.99 and raw.config["batch_size"] == 512
    assert raw.config_sources["batch_size"].endswith("config.yaml")
    msgs = {Path(i.path).name: i.message for i in raw.issues}
    assert msgs["variant.json"].startswith("invalid JSON: Expecting property name")
    assert msgs["config.yaml"] == "1 config key(s) differ from an earlier file and were ignored: gamma"


def test_broken_yaml_and_non_mapping_config(tmp_path):
    run = tmp_path / "run"
    put(run / "progress.csv", "step,loss\n0,1\n")
    put(run / "config.yaml", "a: [1, 2\n")
    put(run / "params.json", "[1, 2, 3]")
    raw = read_raw_run(discover_runs(run)[0])
    msgs = {Path(i.path).name: i.message for i in raw.issues}
    assert msgs["config.yaml"].startswith("invalid YAML")
    assert msgs["params.json"] == "config file is not a mapping (top level is list); ignored"
    assert raw.tags["loss"].values.tolist() == [1.0]


def test_yaml_python_tags_are_refused_not_executed(tmp_path):
    run = tmp_path / "run"
    put(run / "progress.csv", "step,loss\n0,1\n")
    put(run / "config.yaml", "x: !!python/object/apply:os.system ['echo pwned']\n")
    raw = read_raw_run(discover_runs(run)[0])
    assert "x" not in raw.config
    assert any(i.message.startswith("invalid YAML") for i in raw.issues)


def test_dataset_metadata_next_to_dataset(tmp_path):
    data = tmp_path / "data"
    put(data / "hopper.npz", b"")
    put(data / "metadata.json", json.dumps({"mc_return": 123.5, "horizon": 1000}))
    run = tmp_path / "run"
    put(run / "progress.csv", "step,loss\n0,1\n")
    put(run / "config.json", json.dumps({"dataset": str(data / "hopper.npz")}))
    raw = read_raw_run(discover_runs(run)[0])
    assert raw.config["dataset_metadata.mc_return"] == 123.5
    assert raw.config_sources["dataset_metadata.horizon"].endswith("data/metadata.json")


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def test_checkpoint_name_patterns(tmp_path):
    for name in [
        "model_3000.d3",
        "checkpoint_20000.pt",
        "itr_5.pkl",
        "params_7.pkl",
        "ckpt_100.pt",
        "step_200.pt",
        "checkpoints/ckpt_400.pt",
        "model_pkl/9.pt",
        "ckpt/step_500.pt",
        "notes.txt",
        "model_final.pt",
        "checkpoints/latest.pt",
    ]:
        put(tmp_path / name, b"")
    found = [
        (c.step, c.path.relative_to(tmp_path).as_posix(), c.epoch_unit) for c in find_checkpoints(tmp_path)
    ]
    assert found == [
        (5, "itr_5.pkl", True),
        (7, "params_7.pkl", True),
        (9, "model_pkl/9.pt", True),
        (100, "ckpt_100.pt", False),
        (200, "step_200.pt", False),
        (400, "checkpoints/ckpt_400.pt", False),
        (500, "ckpt/step_500.pt", False),
        (3000, "model_3000.d3", False),
        (20000, "checkpoint_20000.pt", False),
    ]


def test_epoch_checkpoints_without_step_table_are_reported(tmp_path):
    run = tmp_path / "run"
    put(run / "progress.csv", "step,loss\n0,1\n10,2\n")
    put(run / "itr_3.pkl", b"")
    raw = read_raw_run(discover_runs(run)[0])
    assert raw.checkpoints == []
    assert any("1 epoch-numbered checkpoint(s) could not be placed" in i.message for i in raw.issues)


# --------------------------------------------------------------------------------------------------
# Paths that yield no run, and single files
# --------------------------------------------------------------------------------------------------


def test_nonexistent_path(tmp_path):
    runs, errors = load_runs([tmp_path / "nope"])
    assert runs == []
    assert [(e.path, e.level, e.message) for e in errors] == [
        (str(tmp_path / "nope"), "error", "path does not exist")
    ]


def test_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    runs, errors = load_runs([tmp_path / "empty"])
    assert runs == [] and len(errors) == 1
    assert errors[0].message.startswith("no training logs found")


def test_directory_with_only_unusable_logs_names_file_and_reason(tmp_path):
    put(tmp_path / "bad" / "progress.csv", bytes(range(256)) * 8)
    put(tmp_path / "good" / "progress.csv", "step,loss\n0,1\n")
    runs, errors = load_runs([tmp_path])
    assert [r.id for r in runs] == ["good"]
    assert len(errors) == 1 and errors[0].path == str(tmp_path / "bad")
    assert errors[0].message.startswith("no usable training data: progress.csv: binary content")


def test_single_csv_file_is_a_run_with_configs_from_its_directory(tmp_path):
    put(tmp_path / "exp" / "progress.csv", "Epoch,trainer/QF1 Loss\n0,1.0\n1,0.5\n")
    put(tmp_path / "exp" / "variant.json", json.dumps({"seed": 3}))
    runs, errors = load_runs([tmp_path / "exp" / "progress.csv"])
    assert errors == [] and len(runs) == 1
    assert runs[0].id == "progress.csv" and runs[0].raw["trainer/QF1 Loss"].values.tolist() == [1.0, 0.5]
    raw = read_raw_run(discover_runs(tmp_path / "exp" / "progress.csv")[0])
    assert raw.config["seed"] == 3


def test_single_event_file_is_a_run(tmp_path):
    f = write_events(tmp_path / "r", {"loss": lin([0, 5])})
    runs, errors = load_runs([f])
    assert errors == [] and runs[0].raw["loss"].steps.tolist() == [0, 5]


def test_garbage_event_file_becomes_error_not_exception(tmp_path):
    put(tmp_path / "r" / "events.out.tfevents.123.host", b"\x00garbage" * 50)
    runs, errors = load_runs([tmp_path / "r"])
    assert runs == [] and len(errors) == 1
    assert errors[0].message.startswith("no usable training data: events.out.tfevents.123.host:")


def test_same_run_id_under_two_roots_is_disambiguated(tmp_path):
    put(tmp_path / "a" / "seed0" / "progress.csv", "step,loss\n0,1\n")
    put(tmp_path / "b" / "seed0" / "progress.csv", "step,loss\n0,2\n")
    runs, _ = load_runs([tmp_path / "a", tmp_path / "b"])
    assert sorted(r.id for r in runs) == ["a/seed0", "b/seed0"]


def test_unknown_duplicate_policy_is_a_usage_error(tmp_path):
    with pytest.raises(ValueError, match="duplicate_policy"):
        load_runs([tmp_path], duplicate_policy="newest")


def test_d3rlpy_tensorboard_hparams_subdir_belongs_to_the_run(tmp_path):
    exp = tmp_path / "tensorboard_logs" / "runs" / "CQL_20240101120000"
    write_events(exp, {"metrics/critic_loss": lin([1, 2, 3])})
    # add_hparams(name=<exp>) each epoch: hparams + an unprefixed copy of the metrics in <exp>/<exp>/
    write_hparams(exp / exp.name, {"batch_size": 256.0})
    write_events(exp / exp.name, {"critic_loss": lin([1])}, suffix=".copy")
    runs, errors = load_runs([tmp_path])
    assert errors == [] and [r.id for r in runs] == ["tensorboard_logs/runs/CQL_20240101120000"]
    raw = read_raw_run(discover_runs(tmp_path)[0])
    assert set(raw.tags) == {"metrics/critic_loss"} and raw.x_unit == "epoch" and raw.layout == "d3rlpy_tb"
    assert raw.config["batch_size"] == 256.0


# --------------------------------------------------------------------------------------------------
# Cache (off by default; lives in the user cache, never in log directories)
# --------------------------------------------------------------------------------------------------


def _age(path: Path, seconds: float = 3600.0) -> None:
    """Make every file under `path` look finished (older than cache.LIVE_SECONDS)."""
    old = os.stat(path).st_mtime - seconds
    for dirpath, _, filenames in os.walk(path):
        for n in filenames:
            os.utime(os.path.join(dirpath, n), (old, old))


def test_cache_serves_unchanged_runs_and_rereads_changed_ones(tmp_path, monkeypatch):
    import analyzer.ingest as ingest
    from analyzer.ingest import cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    run = tmp_path / "logs" / "run"
    put(run / "progress.csv", "step,loss\n0,1.0\n10,nan\n20,0.25\n")
    write_events(run, {"q": lin([0, 10])})
    _age(tmp_path / "logs")
    first, _ = load_runs([tmp_path / "logs"], use_cache=True)
    entries = list(cache.cache_dir().glob("*.npz"))
    assert len(entries) == 1 and str(entries[0]).startswith(str(tmp_path / "xdg" / "offrl-workflow"))

    real_read_logs = ingest._read_logs

    def must_not_read(*_a, **_k):
        raise AssertionError("log files re-read although unchanged")

    monkeypatch.setattr(ingest, "_read_logs", must_not_read)
    second, errors = load_runs([tmp_path / "logs"], use_cache=True)
    assert errors == []
    a, b = first[0].raw, second[0].raw
    assert set(a) == set(b) == {"loss", "q"}
    assert np.array_equal(a["loss"].values, b["loss"].values, equal_nan=True)
    assert b["q"].wall_time is not None and np.array_equal(a["q"].wall_time, b["q"].wall_time)
    assert b["loss"].files == a["loss"].files

    # the run changes: the entry no longer matches and the logs are read again
    monkeypatch.setattr(ingest, "_read_logs", real_read_logs)
    put(run / "progress.csv", "step,loss\n0,1.0\n10,nan\n20,0.25\n30,0.125\n")
    _age(tmp_path / "logs")
    third, _ = load_runs([tmp_path / "logs"], use_cache=True)
    assert third[0].raw["loss"].steps.tolist() == [0, 10, 20, 30]
    assert len(list(cache.cache_dir().glob("*.npz"))) == 1  # overwritten, not accumulated


def test_cache_skips_live_runs_and_survives_corrupt_entries(tmp_path, monkeypatch):
    from analyzer.ingest import cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    run = tmp_path / "run"
    put(run / "progress.csv", "step,loss\n0,1.0\n")
    load_runs([run], use_cache=True)
    assert not cache.cache_dir().exists() or not list(cache.cache_dir().glob("*.npz"))  # just written: live
    _age(run)
    load_runs([run], use_cache=True)
    (entry,) = cache.cache_dir().glob("*.npz")
    entry.write_bytes(b"not a zip file")
    runs, errors = load_runs([run], use_cache=True)
    assert errors == [] and runs[0].raw["loss"].values.tolist() == [1.0]


def test_csv_that_is_not_a_log_is_skipped_in_a_tree_but_reported_when_it_is_all_there_is(tmp_path):
    put(tmp_path / "tree" / "results" / "final_returns.csv", "seed,return\n0,10\n1,12\n")
    put(tmp_path / "tree" / "run" / "progress.csv", "step,loss\n0,1\n")
    runs, errors = load_runs([tmp_path / "tree"])
    assert [r.id for r in runs] == ["run"] and errors == []
    runs, errors = load_runs([tmp_path / "tree" / "results"])
    assert runs == [] and [e.message for e in errors] == [
        "no training logs found (no events.out.tfevents.* files or CSV training logs in this directory tree)"
    ]
    runs, errors = load_runs([tmp_path / "tree" / "results" / "final_returns.csv"])
    assert runs == [] and "final_returns.csv: no step column in header" in errors[0].message


def test_symlinked_runs_are_followed_once_and_cycles_are_not(tmp_path):
    put(tmp_path / "elsewhere" / "seed1" / "progress.csv", "step,loss\n0,1\n")
    root = tmp_path / "root"
    put(root / "seed0" / "progress.csv", "step,loss\n0,2\n")
    os.symlink(tmp_path / "elsewhere" / "seed1", root / "seed1")
    os.symlink(tmp_path / "elsewhere" / "seed1", root / "seed1_again")
    os.symlink(root, root / "seed0" / "loop")  # a cycle back to the root
    ids = [rd.id for rd in discover_runs(root)]
    assert ids == ["seed0", "seed1"]  # seed1_again points at the same target: followed once


def test_yaml_alias_bomb_is_refused_not_expanded(tmp_path):
    run = tmp_path / "run"
    put(run / "progress.csv", "step,loss\n0,1\n")
    lines = ["l0: &l0 {a: 1, b: 1}"]
    for k in range(1, 25):  # 2**24 leaves if flattened naively
        lines.append(f"l{k}: &l{k} {{a: *l{k - 1}, b: *l{k - 1}}}")
    put(run / "config.yaml", "\n".join(lines) + "\n")
    put(run / "config.json", json.dumps({"gamma": 0.9}))
    raw = read_raw_run(discover_runs(run)[0])
    assert raw.config == {"gamma": 0.9}
    msgs = {Path(i.path).name: i.message for i in raw.issues}
    assert msgs["config.yaml"] == "config ignored: more than 100000 keys after flattening"


def test_robot_eval_output_is_attached_to_its_run_not_a_run_of_its_own(tmp_path):
    from analyzer.tfevents import EventWriter

    run = tmp_path / "runs" / "cql-s0"
    with EventWriter(run) as w:
        for step in range(100, 1100, 100):
            w.add_scalar("offrl/q_data", step / 100.0, step)
    (run / "config.json").write_text(json.dumps({"algo": "cql", "gamma": 0.99}))
    out = tmp_path / "runs" / "cql-s0_eval"
    (out / "tb").mkdir(parents=True)
    (out / "eval.json").write_text(json.dumps({"run_dir": str(run), "scores": []}))
    (out / "eval.csv").write_text("step,success_rate,return_mean\n500,0.25,0.25\n1000,0.5,0.5\n")
    with EventWriter(out / "tb") as w:
        w.add_scalar("eval/success_rate", 0.25, 500)
        w.add_scalar("eval/success_rate", 0.5, 1000)
        w.add_scalar("eval/return", 0.25, 500)
        w.add_scalar("eval/return", 0.5, 1000)

    found = discover_runs(tmp_path / "runs")
    assert [r.id for r in found] == ["cql-s0"]
    runs, errors = load_runs([tmp_path / "runs"])
    assert errors == [] and len(runs) == 1
    success = runs[0].series["eval_success"]
    assert success.steps.tolist() == [500, 1000]
    assert success.values.tolist() == [0.25, 0.5]
    assert runs[0].series["eval_return"].values.tolist() == [0.25, 0.5]


def _companion(run: Path, sub: str, scores: dict[int, float]) -> Path:
    """A companion evaluation of `run` (docs/formats.md): `<run>_eval/eval.json` + event files in `sub`."""
    from analyzer.tfevents import EventWriter

    out = run.parent / f"{run.name}_eval"
    out.mkdir(parents=True)
    (out / "eval.json").write_text(json.dumps({"evaluator": "test"}))
    with EventWriter(out / sub) as w:
        for step, v in scores.items():
            w.add_scalar("eval/success_rate", v, step)
            w.add_scalar("eval/return", 10 * v, step)
    return out


def test_companion_eval_scores_any_framework_run(tmp_path):
    """The convention is the evaluator's: a run of a framework with no eval tags in its profile still
    gets eval_success / eval_return from `<run>_eval/`, wherever below it the event files are."""
    from analyzer.tfevents import EventWriter

    run = tmp_path / "runs" / "mine"
    with EventWriter(run) as w:
        for step in range(100, 1100, 100):
            w.add_scalar("my/critic_loss", 1.0 / step, step)
    _companion(run, "deep/scores", {500: 0.25, 1000: 0.75})

    assert [r.id for r in discover_runs(tmp_path / "runs")] == ["mine"]
    runs, errors = load_runs([tmp_path / "runs"])
    assert errors == [] and [r.id for r in runs] == ["mine"]
    s = runs[0].series["eval_success"]
    assert (s.steps.tolist(), s.values.tolist()) == ([500, 1000], [0.25, 0.75])
    assert "companion evaluation mine_eval/" in s.note
    assert runs[0].series["eval_return"].values.tolist() == [2.5, 7.5]


def test_a_runs_own_eval_tags_are_not_taken_for_a_companion(tmp_path):
    """Only tags read from files inside `<run>_eval/` follow the convention; without a manifest the
    folder is an ordinary run."""
    from analyzer.tfevents import EventWriter

    run = tmp_path / "runs" / "mine"
    with EventWriter(run) as w:
        for step in range(100, 1100, 100):
            w.add_scalar("my/critic_loss", 1.0 / step, step)
            w.add_scalar("eval/success_rate", 0.5, step)
    runs, _ = load_runs([run])
    assert "eval_success" not in runs[0].series

    other = tmp_path / "runs" / "mine_eval"  # no eval.json: not a companion, a run of its own
    with EventWriter(other) as w:
        w.add_scalar("my/critic_loss", 1.0, 100)
    assert [r.id for r in discover_runs(tmp_path / "runs")] == ["mine", "mine_eval"]


def test_scanning_inside_a_companion_finds_no_run(tmp_path):
    run = tmp_path / "mine"
    run.mkdir()
    comp = _companion(run, "tb", {500: 0.5})
    assert discover_runs(comp) == []
    assert discover_runs(comp / "tb") == []
