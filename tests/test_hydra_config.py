"""Hydra run metadata: `.hydra/config.yaml` and `.hydra/overrides.yaml` are the run's config.

fixtures/hydra was written by hydra-core 1.3.8 itself (fixtures/hydra/make_hydra.py): a Hydra app with
TorchRL's CQL config groups, run with `loss.gamma=0.95 model.hidden_sizes=[64,64] env.seed=3
+experiment=sweep_a`, logging TorchRL-CSV-style curves into `<output>/cql_logging/<exp>/` as
TorchRL's offline CQL script does. The expected values are those overrides.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from analyzer.ingest import discover_runs, load_runs, read_raw_run
from analyzer.ingest.hydra_config import overrides_mapping, resolve_interpolations
from analyzer.model import IngestIssue

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hydra"
OUTPUT = FIXTURE / "outputs" / "2026-12-07" / "10-00-00"


def _only_run(root: Path):  # noqa: ANN202
    runs, errors = load_runs([root])
    assert errors == [] and len(runs) == 1, (errors, [r.id for r in runs])
    return runs[0]


def test_hydra_job_config_is_the_run_metadata() -> None:
    run = _only_run(FIXTURE)
    assert run.id.startswith("outputs/2026-12-07/10-00-00/cql_logging/CQL-offline_")
    assert run.framework == "torchrl"  # the logs' own layout decides the framework
    md = run.metadata
    # the command-line overrides, as Hydra composed them into .hydra/config.yaml
    assert md.gamma == 0.95 and md.seed == 3 and md.capacity.widths == (64, 64)
    assert md.warm_start == 1000  # optim.policy_eval_start
    assert md.sources["gamma"] == f"{OUTPUT / '.hydra' / 'config.yaml'}:loss.gamma"
    hp = md.hyperparameters
    assert hp["logger.exp_name"] == "cql_pendulum-medium"  # ${replay_buffer.dataset} resolved
    assert hp["experiment"] == "sweep_a" and hp["loss.with_lagrange"] is True
    assert not any("hydra.run" in k or k.startswith("hydra.") for k in hp)  # Hydra's own settings
    assert not [i for i in run.issues if i.level != "info"], run.issues


def test_overrides_alone_when_config_yaml_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "fx"
    shutil.copytree(FIXTURE / "outputs", root / "outputs")
    out = root / "outputs" / "2026-12-07" / "10-00-00"
    (out / ".hydra" / "config.yaml").unlink()
    md = _only_run(root).metadata
    assert md.gamma == 0.95 and md.seed == 3 and md.capacity.widths == (64, 64)
    assert md.sources["gamma"].endswith(".hydra/overrides.yaml:loss.gamma")
    assert md.hyperparameters["experiment"] == "sweep_a"


def test_broken_config_yaml_is_a_warning_and_overrides_still_count(tmp_path: Path) -> None:
    root = tmp_path / "fx"
    shutil.copytree(FIXTURE / "outputs", root / "outputs")
    cfg = root / "outputs" / "2026-12-07" / "10-00-00" / ".hydra" / "config.yaml"
    cfg.write_text("loss: {gamma: [unclosed\n")
    run = _only_run(root)
    assert run.metadata.gamma == 0.95
    assert any(i.path == str(cfg) and "invalid YAML" in i.message for i in run.issues)


def _hydra_job(out: Path, config: str, overrides: str = "[]\n") -> None:
    (out / ".hydra").mkdir(parents=True, exist_ok=True)
    (out / ".hydra" / "config.yaml").write_text(config)
    (out / ".hydra" / "overrides.yaml").write_text(overrides)


def test_logs_in_the_output_folder_itself_and_how_far_up_hydra_is_looked_for(tmp_path: Path) -> None:
    progress = "step,offrl/q_data,offrl/td_error\n100,1.0,0.5\n200,2.0,0.25\n"
    # logs written straight into the Hydra output folder (SummaryWriter(log_dir=".") style)
    here = tmp_path / "here"
    _hydra_job(here, "agent:\n  discount: 0.9\nseed: 7\n")
    (here / "progress.csv").write_text(progress)
    raw = read_raw_run(discover_runs(here)[0])
    assert raw.config["agent.discount"] == 0.9 and raw.config["seed"] == 7
    # two folders down: found; three: not (another job's .hydra is not this run's)
    far = tmp_path / "far"
    _hydra_job(far, "gamma: 0.8\n")
    for rel in ("a/b", "a/b/c"):
        (far / rel).mkdir(parents=True)
        (far / rel / "progress.csv").write_text(progress)
    by_id = {rd.id: read_raw_run(rd) for rd in discover_runs(far)}
    assert by_id["a/b"].config.get("gamma") == 0.8
    assert "gamma" not in by_id["a/b/c"].config
    # the nearest .hydra wins (a job below another job's folder)
    _hydra_job(far / "a", "gamma: 0.7\n")
    by_id = {rd.id: read_raw_run(rd) for rd in discover_runs(far)}
    assert by_id["a/b"].config["gamma"] == 0.7 and by_id["a/b/c"].config["gamma"] == 0.7


def test_a_config_file_in_the_run_folder_comes_first(tmp_path: Path) -> None:
    run = tmp_path / "job"
    _hydra_job(run, "gamma: 0.8\nbatch_size: 64\n")
    (run / "config.json").write_text('{"gamma": 0.99}')
    (run / "progress.csv").write_text("step,offrl/q_data\n1,1.0\n2,2.0\n")
    raw = read_raw_run(discover_runs(run)[0])
    assert raw.config["gamma"] == 0.99 and raw.config_sources["gamma"].endswith("config.json")
    assert raw.config["batch_size"] == 64
    assert any("differ from an earlier file" in i.message and "gamma" in i.message for i in raw.issues)


def test_interpolations_resolve_within_the_file() -> None:
    flat = {
        "data.name": "hopper",
        "loss.gamma": 0.99,
        "algo.gamma": "${loss.gamma}",  # whole reference: the value and its type
        "logger.exp": "cql_${data.name}_${algo.gamma}",  # chain inside text
        "env.key": "${oc.env:HOME}",  # a resolver: left as written
        "rel": "${.sibling}",  # relative: left as written
        "cycle.a": "${cycle.b}",
        "cycle.b": "${cycle.a}",
        "missing": "x_${nope.key}",
        "widths": [64, 64],
        "net.widths": "${widths}",
    }
    resolve_interpolations(flat)
    assert flat["algo.gamma"] == 0.99 and flat["logger.exp"] == "cql_hopper_0.99"
    assert flat["env.key"] == "${oc.env:HOME}" and flat["rel"] == "${.sibling}"
    assert flat["cycle.a"].startswith("${cycle.") and flat["cycle.b"].startswith("${cycle.")  # no loop
    assert flat["missing"] == "x_${nope.key}" and flat["net.widths"] == [64, 64]


def test_override_entries_read_as_hydra_reads_them() -> None:
    issues: list[IngestIssue] = []
    got = overrides_mapping(
        [
            "loss.gamma=0.95",
            "++optim.lr=1e-3",
            "+experiment=sweep_a",
            "model.hidden_sizes=[64,64]",
            "optim.gradient_steps=100_000",
            "env.task=null",
            "flag=true",
            "db@backup=mysql",
            "~logger.video",
            "seed=choice(1,2,3)",
            "hydra.run.dir=outputs/x",
            42,
        ],
        "overrides.yaml",
        issues,
    )
    assert got == {
        "loss.gamma": 0.95,
        "optim.lr": 1e-3,
        "experiment": "sweep_a",
        "model.hidden_sizes": [64, 64],
        "optim.gradient_steps": 100000,
        "env.task": None,
        "flag": True,
        "db": "mysql",
    }
    assert len(issues) == 1 and "3 Hydra override(s)" in issues[0].message
    assert overrides_mapping({"a": 1}, "o.yaml", issues) == {} and "not a list" in issues[-1].message


def test_hydra_folder_is_never_a_run_of_its_own(tmp_path: Path) -> None:
    _hydra_job(tmp_path / "job", "gamma: 0.9\n", "- gamma=0.9\n")
    (tmp_path / "job" / ".hydra" / "events.out.tfevents.1.x").write_bytes(b"")
    assert discover_runs(tmp_path) == []
