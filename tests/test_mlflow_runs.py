"""MLflow tracking stores as a source: `offrl-analyze mlflow:<tracking URI> [--experiment NAME]`.

The stores are written here by MLflow itself (`mlflow.log_params`, `mlflow.log_metric(key, value,
step=)`, `MlflowClient.log_batch`, `mlflow.log_artifact`), once in a SQLite database (MLflow 3's
default store) and once in an `mlruns/` file store, then read back through the CLI. The curves are
fixtures/demo's (overfit, healthy, underfit: our trainer's tags and config.json), so the truth
comes from outside this reader: an MLflow run must get the verdict, checkpoint and values the same
run gets when read from its folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from analyzer.cli import app  # noqa: E402
from analyzer.ingest import load_runs  # noqa: E402
from analyzer.ingest.mlflow_runs import MlflowSource, _param_value  # noqa: E402
from analyzer.tfevents import read_event_file  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "fixtures" / "demo"
KINDS = ("overfit", "healthy", "underfit")
EXPECTED = {"overfit": "overfitting", "healthy": "healthy", "underfit": "underfitting"}


def _demo(kind: str) -> tuple[dict[str, dict[int, float]], dict[str, Any], list[Path]]:
    (ev,) = (DEMO / kind).glob("events.out.tfevents.*")
    data = read_event_file(ev)
    curves = {
        tag: dict(zip(map(int, td.steps), map(float, td.values), strict=True))
        for tag, td in data.scalars.items()
    }
    config = json.loads((DEMO / kind / "config.json").read_text())
    return curves, config, sorted((DEMO / kind).glob("ckpt_*.pt"))


def _log_store(uri: str, artifacts: Path) -> None:
    """Write the demo runs and the edge-case runs into the store at `uri` with MLflow's own API."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = mlflow.create_experiment("cql-sweep", artifact_location=artifacts.resolve().as_uri())
    for kind in KINDS:
        curves, config, ckpts = _demo(kind)
        with mlflow.start_run(experiment_id=exp, run_name=kind) as run:
            mlflow.log_params(config)  # lists and floats become strings: read back as what they were
            mlflow.set_tag("team", "offline-rl")
            now = int(time.time() * 1000)
            batch = [
                Metric(tag, v, now + step, step)
                for tag, pts in curves.items()
                if tag != "offrl/td_error"
                for step, v in pts.items()
            ]
            for i in range(0, len(batch), 1000):
                client.log_batch(run.info.run_id, metrics=batch[i : i + 1000])
            if kind == "overfit":  # one metric point by point, the way a training loop logs it
                for step, v in curves["offrl/td_error"].items():
                    mlflow.log_metric("offrl/td_error", v, step=step)
            else:
                td = curves["offrl/td_error"]
                client.log_batch(
                    run.info.run_id, metrics=[Metric("offrl/td_error", v, now + s, s) for s, v in td.items()]
                )
            for c in ckpts:
                mlflow.log_artifact(str(c), artifact_path="checkpoints")
    # edge cases: a restart that re-logs steps, a metric without steps, a custom tag name, status
    with mlflow.start_run(experiment_id=exp, run_name="edge") as run:
        mlflow.log_params(
            {"gamma": "0.97", "hidden_sizes": [64, 64], "lr": 3e-4, "use_bc": True, "note": "x"}
        )
        for step, v in [(0, 1.0), (10, 2.0), (20, 3.0)]:
            mlflow.log_metric("my_q", v, step=step)
        for step, v in [(10, 20.0), (20, 30.0), (30, 40.0)]:  # resumed from step 10
            mlflow.log_metric("my_q", v, step=step)
        for v in (5.0, 6.0):
            mlflow.log_metric("no_step", v)
        mlflow.set_tag("algorithm", "cql")
    mlflow.end_run()
    other = mlflow.create_experiment("other", artifact_location=(artifacts / "other").resolve().as_uri())
    for name in ("same", "same"):  # two runs with one name: ids stay distinct
        with mlflow.start_run(experiment_id=other, run_name=name):
            mlflow.log_metric("critic_loss", 1.0, step=1)
    run = client.create_run(other, run_name="crashed")
    client.log_metric(run.info.run_id, "critic_loss", 2.0, step=1)
    client.set_terminated(run.info.run_id, "FAILED")


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """{"sqlite": "mlflow:sqlite:///...", "file": "mlflow:/.../mlruns"} written by MLflow."""
    root = tmp_path_factory.mktemp("mlflow")
    before = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.7+ writes file stores only when asked
        mp.chdir(root)  # anything MLflow puts in the working directory stays in the temp folder
        try:
            _log_store(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts-sqlite")
            _log_store(f"file:{root / 'mlruns'}", root / "artifacts-file")
        finally:
            mlflow.end_run()
            mlflow.set_tracking_uri(before)
    return {"sqlite": f"mlflow:sqlite:///{root / 'mlflow.db'}", "file": f"mlflow:{root / 'mlruns'}"}


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, [*map(str, args)])


def _json(*args: str) -> dict:
    result = _cli(*args, "--format", "json", "-q", "--fail-on", "none")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def local_reports() -> dict[str, dict]:
    """The demo runs read from their folders: what each MLflow copy must match."""
    return {kind: _json(DEMO / kind)["runs"][0] for kind in KINDS}


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_store_runs_get_the_verdicts_of_the_same_runs_on_disk(
    stores: dict[str, str], local_reports: dict[str, dict], kind: str
) -> None:
    report = _json(stores[kind], "--experiment", "cql-sweep")
    by_id = {r["run"]: r for r in report["runs"]}
    assert set(by_id) == {f"cql-sweep/{k}" for k in (*KINDS, "edge")}
    for k in KINDS:
        got, want = by_id[f"cql-sweep/{k}"], local_reports[k]
        assert got["verdict"] == want["verdict"] == EXPECTED[k], (k, got["verdict_reason"])
        assert got["framework"] == want["framework"] == "offrl"
        assert got["algorithm"] == "cql"
        assert got["checkpoint"]["step"] == want["checkpoint"]["step"], k  # ckpt_<step>.pt artifacts
        assert got["peak_step"] == want["peak_step"]
        for name, m in want["metrics"].items():
            assert got["metrics"][name]["points"] == m["points"], (k, name)
    assert by_id["cql-sweep/overfit"]["checkpoint"]["step"] == 8000  # tests/test_cli.py's demo truth


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_values_params_and_tags_read_back(stores: dict[str, str], kind: str) -> None:
    runs, errors = load_runs([MlflowSource(stores[kind][len("mlflow:") :], ("cql-sweep",))])
    assert errors == []
    by_id = {r.id: r for r in runs}
    curves, config, ckpts = _demo("overfit")
    run = by_id["cql-sweep/overfit"]
    for tag, pts in curves.items():
        s = run.raw[tag]
        assert s.steps.tolist() == sorted(pts)
        np.testing.assert_allclose(s.values, [pts[k] for k in sorted(pts)], rtol=1e-6)
        assert s.wall_time is not None and np.all(s.wall_time > 1e9)
    md = run.metadata
    assert (md.gamma, md.horizon, md.reward_range, md.seed) == (0.99, 40, (0.0, 1.0), config["seed"])
    assert md.hyperparameters["tags.team"] == "offline-rl"
    assert [c.step for c in run.checkpoints] == sorted(int(p.stem.split("_")[1]) for p in ckpts)
    assert all(c.path.is_file() for c in run.checkpoints)

    edge = by_id["cql-sweep/edge"]
    # the resumed run's re-logged steps keep the last value (as for event-file restarts)
    assert edge.raw["my_q"].steps.tolist() == [0, 10, 20, 30]
    assert edge.raw["my_q"].values.tolist() == [1.0, 20.0, 30.0, 40.0]
    assert edge.raw["no_step"].values.tolist() == [6.0]
    assert any("'no_step': 2 values logged at one step" in i.message for i in edge.issues)
    hp = edge.metadata.hyperparameters
    assert hp["gamma"] == 0.97 and hp["hidden_sizes"] == [64, 64] and hp["lr"] == 3e-4
    assert hp["use_bc"] is True and hp["note"] == "x" and hp["tags.algorithm"] == "cql"
    assert edge.metadata.gamma == 0.97 and edge.metadata.capacity.widths == (64, 64)


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_all_experiments_names_and_status(stores: dict[str, str], kind: str) -> None:
    runs, errors = load_runs([stores[kind]])  # no --experiment: every experiment
    assert errors == []
    ids = sorted(r.id for r in runs)
    same = [i for i in ids if i.startswith("other/same-")]
    assert len(same) == 2 and len(set(same)) == 2  # one name twice: the run id tells them apart
    crashed = next(r for r in runs if r.id == "other/crashed")
    assert any("MLflow run ended FAILED" in i.message for i in crashed.issues)
    assert {i.split("/")[0] for i in ids} == {"cql-sweep", "other"}  # Default has no runs


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p)] = (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        else:
            out[str(p)] = (0, 0, "dir")
    return out


def test_reading_never_writes_into_the_stores(stores: dict[str, str]) -> None:
    root = Path(stores["sqlite"].split("sqlite:///", 1)[1]).parent
    before = _snapshot(root)
    for src in stores.values():
        assert _cli(src, "-q", "--fail-on", "none").exit_code == 0
    assert _snapshot(root) == before


def test_per_run_mappings_reread_the_run_from_its_store(stores: dict[str, str], tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("runs:\n  - match: 'cql-sweep/edge'\n    mappings: {q_data: my_q}\n")
    report = _json(stores["sqlite"], "--experiment", "cql-sweep", "--rules", rules)
    edge = next(r for r in report["runs"] if r["run"] == "cql-sweep/edge")
    assert edge["metrics"]["q_data"]["sources"] == ["my_q"] and edge["metrics"]["q_data"]["points"] == 4


# --------------------------------------------------------------------------------------------------
# Errors: one line, exit 2, nothing created


def test_missing_or_foreign_stores_exit_2_and_create_nothing(tmp_path: Path) -> None:
    cases = []
    cases.append((f"mlflow:sqlite:///{tmp_path / 'none.db'}", "MLflow database does not exist"))
    foreign = tmp_path / "app.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    cases.append((f"mlflow:sqlite:///{foreign}", "not an MLflow tracking database"))
    (tmp_path / "mlruns").mkdir()
    cases.append((f"mlflow:{tmp_path / 'mlruns'}", "without its .trash/ folder"))
    cases.append((f"mlflow:{tmp_path / 'nothing'}", "no such MLflow store folder"))
    cases.append(("mlflow:sqlite://", "no database file in the URI"))
    cases.append(("mlflow:sqlite:mlflow.db", "written sqlite:///path/to/mlflow.db"))
    before = _snapshot(tmp_path)
    for src, text in cases:
        result = _cli(src)
        assert result.exit_code == 2, (src, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and text in lines[0], (src, result.output)
    assert _snapshot(tmp_path) == before  # no tables, no .trash/, no database file made


def test_unknown_experiment_and_misused_options(stores: dict[str, str], tmp_path: Path) -> None:
    result = _cli(stores["sqlite"], "--experiment", "nope", "-q")
    assert result.exit_code == 2
    assert "no experiment named 'nope' (experiments: Default, cql-sweep, other)" in result.output
    result = _cli(tmp_path, "--experiment", "cql-sweep")
    assert result.exit_code == 2 and "--experiment selects runs of an mlflow: source" in result.output
    result = _cli(stores["file"], "--watch")
    assert result.exit_code == 2 and "--watch follows local folders" in result.output


def test_without_mlflow_one_line_says_what_to_install(stores: dict[str, str], monkeypatch) -> None:  # noqa: ANN001
    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import mlflow` raises ImportError
    monkeypatch.setitem(sys.modules, "mlflow", None)
    result = _cli(stores["sqlite"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        'offrl-analyze: error: reading MLflow runs needs the mlflow package: pip install "offrl-workflow[mlflow]"'
    ]


def test_param_strings_read_back_as_logged() -> None:
    assert _param_value("0.99") == 0.99 and _param_value("1e-3") == 1e-3 and _param_value("7") == 7
    assert _param_value("[256, 256]") == [256, 256] and _param_value("(1, 2)") == [1, 2]
    assert _param_value("{'a': 1}") == {"a": 1} and _param_value("True") is True
    assert _param_value("None") is None and _param_value("cql") == "cql"
    assert _param_value("[__import__('os')]") == "[__import__('os')]"  # never evaluated
    assert np.isnan(_param_value("nan")) and _param_value("-inf") == -np.inf
    assert _param_value("x" * 7000) == "x" * 7000


def test_core_import_does_not_load_mlflow() -> None:
    import subprocess

    code = "import analyzer.ingest, analyzer.cli, sys; print('mlflow' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "False"
