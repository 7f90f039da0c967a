"""`offrl-analyze` end to end on fixtures/demo: exit codes, every format, errors as one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from analyzer import __version__
from analyzer.cli import app

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "demo"
SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("OFFRL_DEBUG", raising=False)


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("offrl-analyze: error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    for n in needles:
        assert n in err, err


# ---------------------------------------------------------------------------------------------- basics


def test_version_and_help():
    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"offrl-analyze {__version__}"
    r = invoke("-h")
    assert r.exit_code == 0 and "check" in r.stdout and "explain" in r.stdout
    r = invoke("check", "--help")
    assert r.exit_code == 0 and "--fail-on" in r.stdout and "--reward-range" in r.stdout


def test_default_table_lists_every_demo_run():
    r = invoke(DEMO, "--fail-on", "none")
    assert r.exit_code == 0, r.output
    for run_id in ("overfit", "healthy", "underfit", "nan"):
        assert run_id in r.stdout
    assert "ckpt_8000.pt" in r.stdout  # the checkpoint to keep for the overfitting run
    assert "4 runs: 1 overfitting, 1 underfitting, 1 healthy" in r.stdout


# ---------------------------------------------------------------------------------------------- exit codes


def test_exit_1_when_a_verdict_is_in_fail_on():
    assert invoke(DEMO, "--fail-on", "overfitting,underfitting", "-q").exit_code == 1
    assert invoke(DEMO / "overfit", "--fail-on", "overfitting", "-q").exit_code == 1
    assert invoke(DEMO / "underfit", "--fail-on", "underfitting", "-q").exit_code == 1


def test_exit_0_when_nothing_at_or_above_the_threshold():
    assert invoke(DEMO / "healthy", "--fail-on", "overfitting,underfitting", "-q").exit_code == 0
    assert invoke(DEMO / "overfit", "--fail-on", "underfitting", "-q").exit_code == 0
    assert invoke(DEMO, "--fail-on", "none", "-q").exit_code == 0


def test_exit_zero_forces_0_but_not_for_errors(tmp_path):
    assert invoke(DEMO, "--fail-on", "overfitting", "--exit-zero").exit_code == 0
    assert_one_line_error(invoke(tmp_path / "missing", "--exit-zero"), "missing", "no such file")


def test_level_gate_matches_the_findings():
    from analyzer.api import analyze

    report = analyze([DEMO])
    has_warning = any(f.level in ("warning", "error") for r in report.runs for f in r.findings)
    assert has_warning  # the demo has warning-or-worse findings (overfitting at least)
    assert invoke(DEMO, "--fail-on", "warning", "-q").exit_code == 1
    has_error = any(f.level == "error" for r in report.runs for f in r.findings) or any(
        i.level == "error" for r in report.runs for i in r.run.issues
    )
    assert invoke(DEMO, "-q").exit_code == (1 if has_error else 0)  # default --fail-on error


def test_bad_path_exits_2(tmp_path):
    assert_one_line_error(invoke(tmp_path / "nope"), "nope", "no such file or directory")


def test_no_readable_run_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke(tmp_path / "empty"), "no readable run")


def test_garbage_event_file_is_a_clear_message_not_a_crash(tmp_path):
    run = tmp_path / "bad"
    run.mkdir()
    (run / "events.out.tfevents.1.host").write_bytes(b"\x00\x01garbage" * 10)
    r = invoke(run, "--format", "json")
    assert "Traceback" not in r.output
    assert r.exit_code in (1, 2)
    assert "events.out.tfevents.1.host" in r.output  # the message names the file


def test_bad_rules_file_exits_2(tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("params:\n  OF001:\n    no_such_param: 3\n")
    assert_one_line_error(invoke(DEMO, "--rules", bad), "rules.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("params: [unclosed\n")
    assert_one_line_error(invoke(DEMO, "--rules", broken), "broken.yaml")
    assert_one_line_error(invoke(DEMO, "--rules", tmp_path / "absent.yaml"), "absent.yaml")


@pytest.mark.parametrize("value", ["3", "1,0", "a,b", "0,1,2", "nan,1"])
def test_bad_reward_range_exits_2(value):
    assert_one_line_error(invoke(DEMO, f"--reward-range={value}"), "--reward-range")


def test_other_usage_errors_exit_2():
    assert_one_line_error(invoke(DEMO, "--format", "xml"), "--format")
    assert_one_line_error(invoke(DEMO, "--fail-on", "sometimes"), "--fail-on")
    assert_one_line_error(invoke(DEMO, "--gamma", "1.5"), "--gamma")
    assert_one_line_error(invoke(DEMO, "--horizon", "0"), "--horizon")
    assert_one_line_error(invoke(DEMO, "--bogus"), "--bogus")
    assert_one_line_error(invoke(DEMO, "--workers", "0"), "--workers")
    assert_one_line_error(invoke(), "no PATH")


def test_internal_errors_are_one_line(monkeypatch):
    import analyzer.api

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(analyzer.api, "analyze", boom)
    assert_one_line_error(invoke(DEMO), "internal error", "kaboom")


def test_overrides_reach_the_rules():
    """--reward-range changes the underfitting test: a huge range makes the TD error small."""
    base = json.loads(invoke(DEMO / "underfit", "--format", "json", "--exit-zero").stdout)
    assert base["runs"][0]["verdict"] == "underfitting"
    wide = json.loads(
        invoke(DEMO / "underfit", "--format", "json", "--exit-zero", "--reward-range=0,1000").stdout
    )
    assert wide["runs"][0]["verdict"] != "underfitting"


# ---------------------------------------------------------------------------------------------- formats


def test_json_format_validates_and_carries_the_truth():
    r = invoke(DEMO, "--format", "json", "--fail-on", "none")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    jsonschema.validate(data, SCHEMA)
    by_id = {run["run"]: run for run in data["runs"]}
    assert by_id["overfit"]["verdict"] == "overfitting" and by_id["overfit"]["checkpoint"]["step"] == 8000
    assert by_id["healthy"]["verdict"] == "healthy"
    assert by_id["underfit"]["verdict"] == "underfitting"


def test_markdown_github_junit_sarif_formats(monkeypatch):
    monkeypatch.chdir(REPO)
    md = invoke("fixtures/demo", "--format", "markdown", "--fail-on", "overfitting")
    assert md.exit_code == 1 and md.stdout.startswith("# offrl-analyze report") and "`overfit`" in md.stdout

    gh = invoke("fixtures/demo", "--format", "github", "--fail-on", "overfitting")
    assert gh.exit_code == 1
    assert any(
        line.startswith("::error file=fixtures/demo/overfit/") and "overfitting" in line
        for line in gh.stdout.splitlines()
    )

    ju = invoke("fixtures/demo", "--format", "junit", "--fail-on", "overfitting,underfitting")
    assert ju.exit_code == 1
    suite = ET.fromstring(ju.stdout).find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "2"

    sa = invoke("fixtures/demo", "--format", "sarif", "--exit-zero")
    assert sa.exit_code == 0
    sarif = json.loads(sa.stdout)
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"]
    uris = {
        res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for res in sarif["runs"][0]["results"]
    }
    assert all(u.startswith("fixtures/demo/") for u in uris)


def test_github_is_default_inside_github_actions(monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    r = invoke(DEMO / "overfit", "--fail-on", "none")
    assert r.exit_code == 0 and any(line.startswith("::") for line in r.stdout.splitlines())


def test_output_file(tmp_path):
    out = tmp_path / "sub" / "report.json"
    r = invoke(DEMO, "--format", "json", "-o", out, "--fail-on", "overfitting")
    assert r.exit_code == 1
    assert r.stdout == ""
    assert json.loads(out.read_text())["schema_version"] == 1
    assert "4 runs" in r.stderr


def test_plot_and_report_directories(tmp_path):
    before = sorted((p.relative_to(DEMO), p.stat().st_mtime_ns) for p in DEMO.rglob("*"))
    r = invoke(
        DEMO / "overfit",
        DEMO / "healthy",
        "--plot",
        tmp_path / "plots",
        "--report",
        tmp_path / "site",
        "--fail-on",
        "none",
    )
    assert r.exit_code == 0, r.output
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert len(pngs) == 2 and all(p.endswith(".png") for p in pngs)
    html = (tmp_path / "site" / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert (
        sorted((p.relative_to(DEMO), p.stat().st_mtime_ns) for p in DEMO.rglob("*")) == before
    )  # logs untouched


def test_workers_give_the_same_report():
    one = json.loads(invoke(DEMO, "--format", "json", "--exit-zero", "--workers", "1").stdout)
    two = json.loads(invoke(DEMO, "--format", "json", "--exit-zero", "--workers", "2").stdout)
    assert one == two


# ---------------------------------------------------------------------------------------------- subcommands and dispatch


def test_rules_and_explain():
    from analyzer.rules import all_rules

    r = invoke("rules")
    assert r.exit_code == 0
    codes = [i.code for i in all_rules()]
    assert codes and all(c in r.stdout for c in codes)
    data = json.loads(invoke("rules", "--format", "json").stdout)
    assert [d["code"] for d in data] == codes
    r = invoke("explain", codes[0].lower())
    assert r.exit_code == 0 and codes[0] in r.stdout
    assert_one_line_error(invoke("explain", "ZZ999"), "ZZ999")


def test_a_directory_named_rules_can_be_analysed(tmp_path, monkeypatch):
    shutil.copytree(DEMO / "overfit", tmp_path / "rules" / "overfit")
    monkeypatch.chdir(tmp_path)
    for args in (["./rules"], ["rules/"], ["check", "rules"]):
        r = invoke(*args, "--format", "json", "--fail-on", "none")
        assert r.exit_code == 0, (args, r.output)
        assert json.loads(r.stdout)["runs"][0]["verdict"] == "overfitting"
    assert "OF001" in invoke("rules").stdout  # the bare word is still the subcommand


# ---------------------------------------------------------------------------------------------- installed entry points


def test_console_script_and_python_m(tmp_path):
    exe = shutil.which("offrl-analyze")
    assert exe, "console script not installed (pip install -e .)"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("GITHUB_ACTIONS", None)
    out = subprocess.run(
        [exe, str(DEMO), "--format", "json", "--fail-on", "overfitting"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 1, out.stderr
    assert {r["run"] for r in json.loads(out.stdout)["runs"]} == {"overfit", "healthy", "underfit", "nan"}
    out = subprocess.run(
        [sys.executable, "-m", "analyzer", str(tmp_path / "missing")], capture_output=True, text=True, env=env
    )
    assert (
        out.returncode == 2
        and out.stderr.startswith("offrl-analyze: error:")
        and "Traceback" not in out.stderr
    )


def test_progress_display_path_returns_the_same_report():
    """The progress bar (drawn only on a terminal) wraps the same engine call."""
    from analyzer.cli import run_analysis

    shown = run_analysis([DEMO], None, 1, True)
    plain = run_analysis([DEMO], None, 1, False)
    assert shown.to_dict() == plain.to_dict()


def test_quiet_suppresses_status_messages(tmp_path):
    loud = invoke(DEMO / "healthy", "--plot", tmp_path / "a", "--fail-on", "none")
    assert "wrote 1 plot(s)" in loud.stderr
    quiet = invoke(DEMO / "healthy", "--plot", tmp_path / "b", "--fail-on", "none", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert (tmp_path / "b" / "healthy.png").is_file()


def test_progress_is_called_once_per_run_per_stage():
    """The bar's callback: one "read" call per run directory (also with workers), one "diagnose" per run."""
    from analyzer.api import analyze

    for workers in (1, 2):
        calls: list[tuple[str, int, int, str]] = []
        report = analyze([DEMO], workers=workers, progress=lambda *a, _c=calls: _c.append(a))
        ids = sorted(r.run.id for r in report.runs)
        for stage in ("read", "diagnose"):
            mine = [c for c in calls if c[0] == stage]
            assert [c[1] for c in mine] == list(range(1, len(ids) + 1)), (workers, stage, calls)
            assert {c[2] for c in mine} == {len(ids)}
            assert sorted(c[3] for c in mine) == ids


def test_verbose_prints_findings_and_all_advice():
    plain = invoke(DEMO / "overfit", "--fail-on", "none")
    verbose = invoke(DEMO / "overfit", "--fail-on", "none", "-v")
    assert plain.exit_code == verbose.exit_code == 0
    assert "OF001 warning" not in plain.stdout and "OF001 warning" in verbose.stdout
    flat = " ".join(verbose.stdout.split())
    assert "advice 4:" in flat and "--steps 8000" in flat  # the peak step (demo truth), not a placeholder
    assert "keep ckpt_8000.pt; add --vib 1e-3" in plain.stdout


def test_table_width_follows_columns_when_not_a_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    r = invoke(REPO / "fixtures", "--fail-on", "none")
    assert r.exit_code == 0
    assert max(len(line) for line in r.stdout.splitlines()) <= 100


def test_missing_metadata_advice_is_copyable(tmp_path):
    """The rules-file entry the advice prints is valid YAML and, filled in, makes UF001 run."""
    import re

    real = REPO / "fixtures" / "real" / "d3rlpy"
    out = json.loads(invoke(real, "--format", "json", "--fail-on", "none").stdout)
    # the CQL runs; actor_critic/ holds d3rlpy's IQL/TD3+BC/AWAC runs (tests/test_real_libraries.py)
    out["runs"] = [r for r in out["runs"] if not r["run"].startswith("actor_critic/")]
    # CQL (its csv/ and tensorboard/ folders are one experiment, one run) and DiscreteCQL
    assert len(out["runs"]) == 2
    for run in out["runs"]:  # deep enough for the shape checks: no "too few points" anywhere
        assert run["metrics"]["q_data"]["points"] >= 40 and run["metrics"]["q_data"]["kind"] == "proxy"
        assert not any(f["code"] == "DQ002" for f in run["findings"]), run["run"]
    (cql,) = [r for r in out["runs"] if r["run"].startswith("csv/cql_tiny_")]
    assert cql["verdict"] == "inconclusive"
    assert any(f["code"] == "DQ003" for f in cql["findings"])  # proxy-only dataset Q is stated
    hint = next(a for a in cql["advice"] if a.startswith("Provide the missing metadata"))
    flags = re.search(r"re-run with `([^`]*)`", hint).group(1)
    entry = re.search(r"`(runs: \[.*\])`", hint).group(1)
    assert "<" not in hint and "LO" not in hint
    rules = tmp_path / "rules.yaml"
    rules.write_text(entry + "\n")
    for extra in (["--rules", rules], flags.split()):
        again = json.loads(invoke(real, "--format", "json", "--fail-on", "none", *extra).stdout)
        (cql2,) = [r for r in again["runs"] if r["run"] == cql["run"]]
        uf = [f for f in cql2["findings"] if f["code"] == "UF001"]
        assert uf and not uf[0]["evidence"].get("inconclusive"), (extra, uf)
        assert cql2["verdict"] != "inconclusive"


def test_verbose_lists_framework_and_how_each_metric_was_resolved():
    result = invoke(str(REPO / "fixtures" / "formats" / "d3rlpy" / "d3rlpy_logs"), "-v", "--exit-zero")
    assert result.exit_code == 0
    out = " ".join(result.output.split())  # undo rich's wrapping
    assert "d3rlpy/cql" in out
    assert "q_data <- value_scale (proxy)" in out
    assert "td_error <- critic_loss , conservative_loss (derived)" in out
