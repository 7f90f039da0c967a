"""Logs written by real libraries (fixtures/real/<library>/), checked against their TRUTH.json.

Each folder was written by the library itself (Tianshou 2.0.1, TorchRL 0.14.1, d3rlpy 2.8.1 ...)
through its generating script `make_<library>.py`, and its TRUTH.json was read back from those
files with the library's own tooling (tensorboard's EventAccumulator, pandas), never typed in. The
libraries are not needed here: only the committed files are read.

tests/test_profiles.py checks every TRUTH.json's `runs` entries (kinds, sources, values); this file
checks what those do not: the whole tag inventory as written (every tag, its point count and
first/last step), point counts and x-ranges of the resolved metrics, the CLI end to end, and the
size budget of the committed folders.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from analyzer.cli import app
from analyzer.ingest import discover_runs, read_raw_run
from analyzer.ingest.configfiles import namespace_repr
from analyzer.ingest.profiles import resolve
from analyzer.model import RawRun, Run

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
RUN_SIZE_BUDGET = 300_000  # bytes per committed run folder


def _truths() -> list[tuple[Path, dict[str, Any]]]:
    """TRUTH.json files that describe one library's real runs (they name the library)."""
    out = []
    for p in sorted(REAL.glob("**/TRUTH.json")):
        t = json.loads(p.read_text())
        if "library" in t:
            out.append((p.parent, t))
    return out


TRUTHS = _truths()
RUN_CASES = [
    pytest.param(folder, entry, id=f"{folder.relative_to(REAL).as_posix()}:{entry['path']}")
    for folder, truth in TRUTHS
    for entry in truth["runs"]
]


@cache
def _loaded(folder: Path) -> dict[Path, tuple[RawRun, Run]]:
    out = {}
    for rd in discover_runs(folder):
        raw = read_raw_run(rd)
        out[rd.path.resolve()] = (raw, resolve(raw))
    return out


def _run(folder: Path, entry: dict) -> tuple[RawRun, Run]:
    # `read_alone`: a d3rlpy TensorBoard folder is its own run only when given by itself (in its
    # parent it joins the CSV run of the same experiment, which lists it under `also_reads`)
    runs = _loaded(folder / entry["path"] if entry.get("read_alone") else folder)
    key = (folder / entry["path"]).resolve()
    assert key in runs, f"{entry['path']} not discovered; found {sorted(map(str, runs))}"
    return runs[key]


def test_real_library_fixtures_exist() -> None:
    """The libraries issue 11 asks for are all here (each with its generating script)."""
    names = {t["library"]["name"] for _, t in TRUTHS}
    assert {"tianshou", "torchrl", "d3rlpy"} <= names
    for folder, truth in TRUTHS:
        assert (folder / f"make_{folder.name}.py").is_file(), folder
        assert truth["library"]["version"], folder


@pytest.mark.parametrize(("folder", "entry"), RUN_CASES)
def test_run_folder_is_small(folder: Path, entry: dict) -> None:
    run_dir = folder / entry["path"]
    size = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    assert 0 < size < RUN_SIZE_BUDGET, (run_dir, size)


@pytest.mark.parametrize(("folder", "entry"), RUN_CASES)
def test_every_written_tag_is_read(folder: Path, entry: dict) -> None:
    """Every tag the library wrote comes back with its point count and first/last step."""
    raw, _ = _run(folder, entry)
    tags = entry.get("tags", {})
    assert tags, "TRUTH.json lists no tags for this run"
    for tag, spec in tags.items():
        got = raw.tags.get(tag)
        assert got is not None, f"{tag} not read; read: {sorted(raw.tags)}"
        assert len(got) == spec["points"], (tag, len(got), spec["points"])
        assert int(got.steps[0]) == spec["first_step"], (tag, got.steps[0])
        assert int(got.steps[-1]) == spec["last_step"], (tag, got.steps[-1])


@pytest.mark.parametrize(("folder", "entry"), RUN_CASES)
def test_resolved_metrics_match_truth(folder: Path, entry: dict) -> None:
    _, run = _run(folder, entry)
    assert run.framework == entry["framework"]
    expected = set(entry["metrics"])
    assert expected <= set(run.series), sorted(run.series)
    for name in entry.get("absent", []):
        assert name not in run.series, (name, run.series[name].source)
    for name, n in entry.get("points", {}).items():
        assert len(run.series[name]) == n, (name, len(run.series[name]), n)
    for name, (first, last) in entry.get("first_last_step", {}).items():
        s = run.series[name]
        assert (int(s.steps[0]), int(s.steps[-1])) == (first, last), (name, s.steps[0], s.steps[-1])
    for name, spec in entry["metrics"].items():
        for step, value in spec.get("values", []):
            s = run.series[name]
            i = np.nonzero(s.steps == step)[0]
            assert i.size == 1, (name, step)
            assert math.isclose(float(s.values[i[0]]), value, rel_tol=1e-5, abs_tol=1e-4), (name, step)


@pytest.mark.parametrize(
    ("folder", "truth"), [pytest.param(f, t, id=f.relative_to(REAL).as_posix()) for f, t in TRUTHS]
)
def test_cli_reads_the_library_folder(folder: Path, truth: dict) -> None:
    """`offrl-analyze fixtures/real/<library>` finds every run, names the framework, resolves the metrics."""
    result = CliRunner().invoke(app, [str(folder), "--format", "json", "-q", "--exit-zero"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    by_path = {Path(r["path"]).resolve(): r for r in report["runs"]}
    entries = [e for e in truth["runs"] if not e.get("read_alone")]
    assert len(by_path) == len(entries), sorted(map(str, by_path))
    for entry in entries:
        r = by_path[(folder / entry["path"]).resolve()]
        assert r["framework"] == entry["framework"]
        assert set(entry["metrics"]) <= set(r["metrics"]), sorted(r["metrics"])
        for name, n in entry.get("points", {}).items():
            assert r["metrics"][name]["points"] == n, name
        assert r["verdict"] in ("overfitting", "underfitting", "healthy", "inconclusive", "diverged")


# --------------------------------------------------------------------------------------------------
# Library-specific facts the generic checks would not catch
# --------------------------------------------------------------------------------------------------


def _tianshou() -> tuple[dict, RawRun, Run]:
    (folder, truth) = next((f, t) for f, t in TRUTHS if t["library"]["name"] == "tianshou")
    entry = truth["runs"][0]
    raw, run = _run(folder, entry)
    return truth, raw, run


def test_tianshou_eval_moves_from_env_step_to_update_step() -> None:
    """test/* is logged at env_step = update step x batch_size; eval_return must share the update axis."""
    truth, raw, run = _tianshou()
    test_steps = raw.tags["test/returns_stat/mean"].steps
    ev = run.series["eval_return"]
    batch = int(run.metadata.hyperparameters["batch_size"])
    assert test_steps[-1] == batch * ev.steps[-1]
    # after the mapping the last evaluation sits at the end of training, not 256x past it
    assert ev.steps[-1] == run.series["critic_loss"].steps[-1] + 1
    assert "env_step" in ev.note


def test_tianshou_td_is_exact_mean_of_critic_mse() -> None:
    """(critic1 + critic2) / 2 + cql_alpha_loss: the CQL terms cancel exactly (same update)."""
    _, raw, run = _tianshou()
    c1 = raw.tags["update/critic1_loss"].values
    c2 = raw.tags["update/critic2_loss"].values
    la = raw.tags["update/cql_alpha_loss"].values
    np.testing.assert_allclose(run.series["td_error"].values, (c1 + c2) / 2 + la)
    assert np.all(run.series["td_error"].values >= 0)  # a mean of squared errors
    np.testing.assert_allclose(run.series["cql_term"].values, -la)


def test_tianshou_args_text_summary_is_the_config() -> None:
    """The example's `writer.add_text("args", str(args))` is the only config Tianshou leaves."""
    truth, raw, run = _tianshou()
    assert "args/text_summary" in truth["text_summaries"]
    assert run.metadata.gamma == truth["gamma"]
    assert "events.out.tfevents" in run.metadata.sources["gamma"]
    assert raw.config["lagrange_threshold"] == 10.0


def test_namespace_repr_keeps_literals_only() -> None:
    text = (
        "Namespace(task='Pendulum-v1', gamma=0.99, hidden_sizes=[64, 64], shape=(3,), flag=True, "
        "none=None, alpha=AutoAlpha(), max_action=np.float32(2.0), obj=<object at 0x1>)"
    )
    assert namespace_repr(text) == {}  # `<object ...>` makes it unparsable: nothing is guessed
    text = text.replace(", obj=<object at 0x1>", "")
    assert namespace_repr(text) == {
        "task": "Pendulum-v1",
        "gamma": 0.99,
        "hidden_sizes": [64, 64],
        "shape": [3],
        "flag": True,
        "none": None,
        "max_action": 2.0,
    }
    assert namespace_repr("gamma=0.99") == {}
    assert namespace_repr("Namespace(__import__('os').system('x'))") == {}
    assert namespace_repr("Namespace(x=__import__('os'))") == {}


def _torchrl() -> tuple[dict[str, tuple[RawRun, Run]], dict]:
    (folder, truth) = next((f, t) for f, t in TRUTHS if t["library"]["name"] == "torchrl")
    runs = {e["path"].split("/")[0]: _run(folder, e) for e in truth["runs"]}
    return runs, truth


def test_torchrl_csv_and_tensorboard_loggers_agree() -> None:
    """One training loop wrote both loggers: same keys (less none), same steps, same values."""
    runs, _ = _torchrl()
    (csv_raw, csv_run), (tb_raw, tb_run) = runs["csv"], runs["tensorboard"]
    assert set(csv_raw.tags) == set(tb_raw.tags)
    for name, s in csv_run.series.items():
        t = tb_run.series[name]
        np.testing.assert_array_equal(s.steps, t.steps)
        np.testing.assert_allclose(s.values, t.values, rtol=1e-6)  # TB stores float32


def test_torchrl_critic_loss_is_td_plus_cql() -> None:
    """q_loss (the critic loss the example optimises) = loss_qvalue + loss_cql; TD and CQL per critic = / 2."""
    runs, _ = _torchrl()
    raw, run = runs["csv"]
    np.testing.assert_allclose(
        raw.tags["q_loss"].values,
        raw.tags["loss_qvalue"].values + raw.tags["loss_cql"].values,
        rtol=1e-5,
    )
    np.testing.assert_allclose(run.series["td_error"].values, raw.tags["loss_qvalue"].values / 2)
    assert run.series["critic_loss"].sources == ("q_loss",)


def test_torchrl_hparams_are_config_not_runs() -> None:
    """log_hparams: CSV texts/hparams0.txt and the TensorBoard `<time.time()>/` sub-run are config."""
    runs, truth = _torchrl()
    assert len(truth["layout"]["hparams_subdirs"]) == 1
    for kind, (_raw, run) in runs.items():
        assert run.metadata.gamma == truth["gamma"]
        src = run.metadata.sources["gamma"]
        assert ("hparams0.txt" in src) if kind == "csv" else ("events.out.tfevents" in src), src
        assert run.metadata.warm_start == truth["config"]["optim.policy_eval_start"]
    folder = next(f for f, t in TRUTHS if t["library"]["name"] == "torchrl")
    assert len(_loaded(folder)) == 2  # the hparams sub-folder is not a run of its own


def test_d3rlpy_pure_td_critics_give_td_error_without_a_cql_term() -> None:
    """IQL (q_loss), TD3+BC and AWAC (critic_loss) critics are pure TD: TD = loss / n_critics, no refusal."""
    folder, truth = next((f, t) for f, t in TRUTHS if t["library"]["name"] == "d3rlpy")
    seen = set()
    for entry in truth["runs"]:
        raw, run = _run(folder, entry)
        algo = entry["metadata"]["algorithm"]
        seen.add(algo)
        assert run.metadata.algorithm == algo
        assert not any("cannot be isolated" in i.message for i in run.issues), run.issues
        prefix = "metrics/" if entry["x_unit"] == "epoch" else ""
        td_tag = prefix + ("q_loss" if algo == "iql" else "critic_loss")
        assert run.series["td_error"].sources == (td_tag,)
        np.testing.assert_allclose(run.series["td_error"].values, raw.tags[td_tag].values / 2)
        if algo == "iql":  # d3rlpy's IQL critic_loss = q_loss + v_loss
            np.testing.assert_allclose(
                raw.tags[prefix + "critic_loss"].values,
                raw.tags[prefix + "q_loss"].values + raw.tags[prefix + "v_loss"].values,
                rtol=1e-5,
            )
        if (
            entry["x_unit"] == "epoch"
        ):  # TensorBoard run: config from the paired d3rlpy_logs/<exp>/params.json
            assert "d3rlpy_logs" in run.metadata.sources["algorithm"], run.metadata.sources
    assert seen == {"iql", "td3bc", "awac"}
