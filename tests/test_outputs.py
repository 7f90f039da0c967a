"""Renderers on hand-built reports (known truth), plus golden files on fixtures/demo.

Golden files: tests/golden/demo.<format>; regenerate with `UPDATE_GOLDEN=1 pytest tests/test_outputs.py`
after checking the diff is intended. Paths and the version are normalised before comparing.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from analyzer import __version__
from analyzer.model import IngestIssue, Run, RunMetadata, Series
from analyzer.output import FORMATS, render
from analyzer.output.failon import FailOn, FailOnError, parse_fail_on
from analyzer.report import CheckpointPick, Finding, Report, RunResult

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())
GOLDEN = Path(__file__).resolve().parent / "golden"
DEMO = REPO / "fixtures" / "demo"

# Minimal structural schema for SARIF 2.1.0 (the parts code-scanning consumers require).
SARIF_MIN_SCHEMA = {
    "type": "object",
    "required": ["version", "runs", "$schema"],
    "properties": {
        "version": {"const": "2.1.0"},
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["tool", "results"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name", "rules"],
                                "properties": {
                                    "rules": {
                                        "type": "array",
                                        "items": {"type": "object", "required": ["id", "shortDescription"]},
                                    }
                                },
                            }
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["ruleId", "level", "message", "locations"],
                            "properties": {
                                "level": {"enum": ["none", "note", "warning", "error"]},
                                "message": {"type": "object", "required": ["text"]},
                                "locations": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["physicalLocation"],
                                        "properties": {
                                            "physicalLocation": {
                                                "type": "object",
                                                "required": ["artifactLocation"],
                                                "properties": {
                                                    "artifactLocation": {
                                                        "type": "object",
                                                        "required": ["uri"],
                                                    }
                                                },
                                            }
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def _series(name, steps, values, files=()):
    return Series(name, steps, values, files=tuple(files), sources=(f"offrl/{name}",))


def make_report(root: Path) -> Report:
    """Two runs with known truth (overfit peaks at 8000; underfit has an error finding) + one bad file."""
    steps = np.arange(0, 20_001, 100)
    x = steps / 8000
    q_smooth = 15 * x * np.exp(1 - x)
    ev = str(root / "overfit" / "events.out.tfevents.1")
    over = Run(
        id="overfit",
        path=root / "overfit",
        framework="offrl",
        metadata=RunMetadata(algorithm="cql", gamma=0.99, horizon=40, reward_range=(0.0, 1.0)),
        series={
            "q_data": _series("q_data", steps, q_smooth + 0.1 * np.sin(steps), [ev]),
            "td_error": _series("td_error", steps, 0.01 + 0.05 * np.exp(-steps / 3000), [ev]),
            "cql_gap": _series("cql_gap", steps, 1 + steps / 5000, [ev]),
        },
    )
    r_over = RunResult(
        run=over,
        verdict="overfitting",
        verdict_reason="dataset Q peaked at step 8000 and fell 44% by step 20000",
        checkpoint=CheckpointPick(
            8000, str(root / "overfit" / "ckpt_8000.pt"), "last checkpoint at or before the peak"
        ),
        findings=[
            Finding(
                "OF001",
                "q-peak-decline",
                "warning",
                "Q rose, then fell 44%, after step 8000",
                (8000, 20000),
                {"drop": 0.44},
            )
        ],
        advice=["Keep ckpt_8000.pt; then add a VIB bottleneck or dropout", "Stop training at the peak"],
        smoothed={"q_data": q_smooth},
        change_points=[2000, 8000],
        peak_step=8000,
    )
    td = np.full(steps.shape, 6.0)
    td[50] = np.nan  # a hole in the curve must not break plots
    ev2 = str(root / "underfit" / "events.out.tfevents.1")
    under = Run(
        id="group/underfit",
        path=root / "underfit",
        framework="offrl",
        metadata=RunMetadata(algorithm="cql"),
        series={
            "q_data": _series("q_data", steps, 2 * (1 - np.exp(-steps / 5000)), [ev2]),
            "td_error": _series("td_error", steps, td, [ev2]),
        },
        issues=[IngestIssue(ev2, "truncated record at end", "warning", offset=1234, records_lost=1)],
    )
    r_under = RunResult(
        run=under,
        verdict="underfitting",
        verdict_reason="TD error x horizon = 240 >= reward range x horizon = 40",
        findings=[
            Finding(
                "UF001",
                "td-above-range",
                "error",
                "scaled TD 240: 100% above range,\nnot decreasing",  # %, comma, newline: escaping tests
                (0, 20000),
                {"td_threshold": 1.0, "scaled": 240.0, "bad": float("nan")},
            )
        ],
        advice=["Increase capacity or add DR3"],
    )
    return Report(
        runs=[r_over, r_under],
        errors=[IngestIssue(str(root / "broken" / "events.out.tfevents.2"), "not a TFRecord file", "error")],
    )


@pytest.fixture
def report(tmp_path, monkeypatch) -> Report:
    monkeypatch.chdir(tmp_path)
    return make_report(tmp_path / "logs")


# ---------------------------------------------------------------------------------------------- fail-on


def test_parse_fail_on_verdicts_levels_and_errors():
    assert parse_fail_on("overfitting,underfitting") == FailOn(
        frozenset({"overfitting", "underfitting"}), None
    )
    assert parse_fail_on("warning") == FailOn(frozenset(), "warning")
    assert parse_fail_on("error, Overfitting, info").min_level == "info"  # lowest listed level wins
    assert parse_fail_on("none") == FailOn()
    for bad in ("", "overfit", "warning,bogus"):
        with pytest.raises(FailOnError):
            parse_fail_on(bad)


def test_fail_on_decides_per_run(report):
    over, under = report.runs
    assert not parse_fail_on("error").run_fails(over) and parse_fail_on("error").run_fails(under)
    assert parse_fail_on("warning").run_fails(over)
    assert parse_fail_on("overfitting").run_fails(over) and not parse_fail_on("overfitting").run_fails(under)
    assert not parse_fail_on("none").report_fails(report)
    # an unreadable file alone trips an error gate
    only_errors = Report(runs=[over], errors=report.errors)
    assert parse_fail_on("error").report_fails(only_errors)


# ---------------------------------------------------------------------------------------------- formats


def test_json_is_the_contract_and_validates(report):
    data = json.loads(render("json", report, parse_fail_on("error")))
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(data, SCHEMA)
    assert data == json.loads(json.dumps(report.to_dict()))
    assert data["runs"][1]["findings"][0]["evidence"]["bad"] is None  # NaN -> null, strict JSON
    assert data["runs"][0]["checkpoint"]["step"] == 8000


def test_schema_rejects_a_broken_report(report):
    data = report.to_dict()
    data["runs"][0]["verdict"] = "great"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(json.dumps(data)), SCHEMA)


def test_table_lists_runs_verdicts_checkpoint_and_summary(report):
    text = render("table", report, parse_fail_on("error"), width=220)
    for needle in (
        "overfit",
        "group/underfit",
        "overfitting",
        "underfitting",
        "8000 (ckpt_8000.pt)",
        "keep ckpt_8000.pt; add --vib 1e-3",  # the first concrete action, from the verdict and pick
    ):
        assert needle in text
    assert "2 runs: 1 overfitting, 1 underfitting, 0 healthy, 0 inconclusive; 1 ingest problem" in text
    assert "1 failing" in text
    assert "not a TFRecord file" in text
    assert "\x1b[" not in text  # no colour codes unless asked


@pytest.mark.parametrize("width", [100, 120])
def test_table_fits_the_terminal_and_keeps_full_text_for_verbose(report, width):
    """Every line fits; one evidence line per run; full sentences only with verbose (as printed, no markup)."""
    over = report.runs[0]
    over.findings[
        0
    ].message = "needs `runs: [{match: '<glob>', reward_range: [lo, hi]}]`"  # rich markup lookalike
    over.verdict_reason = "Q fell after step 8000; supporting: cql_gap falling (-34% over the last half)"
    text = render("table", report, parse_fail_on("error"), width=width)
    assert all(len(line) <= width for line in text.splitlines())
    assert "Q fell after step 8000" in text  # no known evidence numbers: the reason's first clause
    assert "supporting" not in text and "reward_range: [lo, hi]" not in text
    verbose = render("table", report, parse_fail_on("error"), width=width, verbose=True)
    flat = " ".join(verbose.split())
    assert "reward_range: [lo, hi]}]" in flat  # printed verbatim, not eaten as a style tag
    assert over.verdict_reason in flat
    for advice in over.advice:  # every piece of advice, not only the first
        assert advice in flat
    assert "OF001 warning" in flat


def test_short_texts_are_short_and_derived_from_the_evidence():
    from analyzer.output.brief import ADVICE_MAX, checkpoint_cell, short_advice, short_evidence

    steps = np.arange(0, 20_001, 1000)
    run = Run(
        id="r", path=Path("r"), framework="d3rlpy", series={"q_data": _series("q_data", steps, steps * 0.0)}
    )
    run.series["q_data"].kind = "proxy"
    of = Finding(
        "OF001",
        "q-peak-decline",
        "warning",
        "long sentence",
        evidence={
            "peak_value": 14.93,
            "peak_step": 8800,
            "final_level": 9.058,
            "drop_fraction_of_rise": 0.43,
        },
    )
    res = RunResult(run, "overfitting", "long reason", CheckpointPick(8000, "/x/model_8000.d3", "why"), [of])
    assert short_evidence(res) == "proxy Q peak 14.9 @8800 -> 9.06, -43% of rise"
    assert short_advice(res) == "keep model_8000.d3; regularize Q (dropout/VIB)"  # not offrl-train flags
    assert checkpoint_cell(res) == "8000 (model_8000.d3)"
    res.run.framework = "offrl"
    assert short_advice(res) == "keep model_8000.d3; add --vib 1e-3"
    res.checkpoint = None
    res.peak_step = 8800
    assert short_advice(res) == "stop at step 8800; add --vib 1e-3"
    res.advice = ["x" * 200]
    res.verdict = "inconclusive"  # no rule-specific text: the engine's advice, clipped
    assert len(short_advice(res)) == ADVICE_MAX and short_advice(res).endswith("…")


def test_run_ids_shorten_from_the_left_and_stay_distinct():
    from analyzer.output.brief import short_run_id, short_run_ids

    assert short_run_id("demo/overfit", 20) == "demo/overfit"
    long = "formats/rlkit/cql-workflow-pickplace/cql_workflow_pickplace_2026_11_25--s-3"
    assert short_run_id(long, 20) == "…_2026_11_25--s-3"[-20:] or short_run_id(long, 20).endswith("--s-3")
    assert len(short_run_id(long, 20)) == 20 and short_run_id(long, 20).startswith("…")
    ids = ["real/d3rlpy/csv/cql_tiny_20261125205945", "real/d3rlpy/tensorboard/runs/cql_tiny_20261125205945"]
    short = short_run_ids(ids, 24)
    assert len(set(short.values())) == 2
    assert short[ids[0]].startswith("csv/") and short[ids[1]].startswith("tensorboard")
    assert all(len(v) <= 24 for v in short.values())


def test_run_ids_of_a_sweep_show_the_folder_that_tells_them_apart():
    """rlkit writes <env>/<seed>/<env>/<date>--s-0: the environment, not the date, must be visible."""
    from analyzer.output.brief import short_run_ids

    envs = ("hopper-medium-v0", "walker2d-medium-v0", "halfcheetah-medium-expert-v0")
    ids = [f"d4rl/CQL_runs/{e}/0/{e}/0_2020_12_23_12_38_1{i}_0000--s-0" for i, e in enumerate(envs)]
    short = short_run_ids(ids, 40)
    for rid, env in zip(ids, envs, strict=True):
        assert short[rid].startswith(env + "/"), short[rid]
        assert short[rid].endswith("--s-0") and len(short[rid]) <= 40
    one = short_run_ids(["cs285/hw5_expl_q2_cql_PointmassMedium-v0_06-11-2022_23-29-17"], 30)
    assert next(iter(one.values())).startswith("hw5_expl_q2_cql")  # the name's start survives


def test_ingest_problems_are_one_line_per_run(report):
    run = report.runs[1].run
    run.issues += [IngestIssue(str(run.path / f"events.{k}"), f"problem {k}", "warning") for k in range(3)]
    report.errors += [IngestIssue(f"/elsewhere/bad{k}", "not a log", "error") for k in range(7)]
    text = render("table", report, parse_fail_on("none"), width=120)
    lines = [line for line in text.splitlines() if "group/underfit" in line and "ingest problem" in line]
    assert len(lines) == 1 and "4 ingest problems; first: events.out.tfevents.1: truncated record" in lines[0]
    assert "problem 2" not in text  # the rest are in --format json / -v
    assert sum("not a log" in line for line in text.splitlines()) == 4  # + "not a TFRecord file": 5 shown
    assert "... and 3 more unreadable path(s)" in text


def test_markdown_has_table_rows_and_escapes_pipes(report):
    report.runs[0].advice[0] = "use a | b"
    text = render("markdown", report, parse_fail_on("underfitting"))
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    assert "use a \\| b" in text
    assert "underfitting (fails)" in text and "overfitting (fails)" not in text
    assert "not a TFRecord file" in text


def test_github_annotations_are_escaped_and_point_at_log_files(report):
    lines = render("github", report, parse_fail_on("error")).splitlines()
    cmds = [line for line in lines if line.startswith("::")]
    assert all(re.match(r"^::(error|warning|notice) file=[^,]+,title=[^:]+::", c) for c in cmds)
    uf = next(c for c in cmds if "UF001" in c)
    assert uf.startswith("::error file=logs/underfit/events.out.tfevents.1,")
    assert "100%25 above range%2C" not in uf and "100%25 above range,%0Anot decreasing" in uf
    of = next(c for c in cmds if "OF001" in c)
    assert of.startswith("::warning ")
    # the overfitting verdict is annotated too, with the checkpoint to keep
    assert any("title=overfitting [overfit]" in c and "Keep checkpoint step 8000" in c for c in cmds)
    assert any(c.startswith("::error file=logs/broken/") for c in cmds)
    assert lines[-1].startswith("2 runs:")


@pytest.mark.parametrize(
    ("fail_on", "failures"), [("error", 1), ("overfitting,underfitting", 2), ("none", 0), ("warning", 2)]
)
def test_junit_counts_match(report, fail_on, failures):
    root = ET.fromstring(render("junit", report, parse_fail_on(fail_on)))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == 3
    assert int(suite.get("failures")) == failures == sum(1 for c in cases if c.find("failure") is not None)
    assert int(suite.get("errors")) == 1 == sum(1 for c in cases if c.find("error") is not None)
    assert [c.get("name") for c in cases[:2]] == ["overfit", "group/underfit"]


def test_sarif_structure_rules_and_locations(report):
    data = json.loads(render("sarif", report, parse_fail_on("error")))
    jsonschema.validate(data, SARIF_MIN_SCHEMA)
    run = data["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids))
    results = run["results"]
    for res in results:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
    by_rule = {r["ruleId"]: r for r in results}
    assert by_rule["UF001"]["level"] == "error" and by_rule["OF001"]["level"] == "warning"
    assert (
        by_rule["OF001"]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        == "logs/overfit/events.out.tfevents.1"
    )
    assert sum(r["ruleId"] == "INGEST" for r in results) == 2  # one in-run issue + one unreadable file
    assert run["tool"]["driver"]["version"] == __version__


def test_sarif_lists_every_registered_rule(report):
    from analyzer import rules as config

    data = json.loads(render("sarif", report, parse_fail_on("error")))
    ids = {r["id"] for r in data["runs"][0]["tool"]["driver"]["rules"]}
    assert {info.code for info in config.all_rules()} <= ids


def test_unknown_format_is_rejected(report):
    with pytest.raises(ValueError):
        render("xml", report, parse_fail_on("error"))


# ---------------------------------------------------------------------------------------------- pictures


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plots_one_png_per_run_with_fixed_size(report, tmp_path):
    from analyzer.output.plots import DPI, HEIGHT_IN, WIDTH_IN, write_plots

    paths = write_plots(report, tmp_path / "plots")
    assert [p.name for p in paths] == ["overfit.png", "group__underfit.png"]
    for p in paths:
        assert _png_size(p.read_bytes()) == (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))


def test_plot_of_a_run_with_no_series_still_renders(tmp_path):
    from analyzer.output.plots import plot_png

    empty = RunResult(
        run=Run(id="empty", path=tmp_path, framework="generic"),
        verdict="inconclusive",
        verdict_reason="no metrics",
    )
    assert _png_size(plot_png(empty))[0] > 0


def test_plot_draws_rollout_success_when_the_run_has_it(report):
    from analyzer.output.plots import render_figure

    result = copy.deepcopy(report.runs[0])
    result.run.series["eval_success"] = Series("eval_success", [1000, 2000], [0.2, 0.6])
    fig = render_figure(result)
    labels = [line.get_label() for ax in fig.axes for line in ax.get_lines()]
    assert "success rate (rollouts)" in labels
    assert "success rate (rollouts)" not in [
        line.get_label() for ax in render_figure(report.runs[0]).axes for line in ax.get_lines()
    ]


def test_td_threshold_comes_from_the_finding_evidence(report):
    from analyzer.output.plots import td_threshold

    assert td_threshold(report.runs[1])[0] == 1.0
    assert td_threshold(report.runs[0]) is None  # no threshold in evidence: no band is invented


def test_html_report_is_self_contained_and_lists_every_run(report, tmp_path):
    from analyzer.output.html_report import write_report

    index = write_report(report, tmp_path / "site", parse_fail_on("error"))
    assert index == tmp_path / "site" / "index.html"
    text = index.read_text()
    for r in report.runs:
        assert r.run.id in text and r.verdict_reason.replace(">", "&gt;") in text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == len(report.runs)
    assert all(_png_size(base64.b64decode(i))[0] == 1000 for i in images)
    assert not re.search(r'(src|href)="(https?:)?//', text)  # no external assets
    assert "<script" not in text and "<link" not in text
    assert "not a TFRecord file" in text


# ---------------------------------------------------------------------------------------------- golden files


def _normalise(text: str) -> str:
    text = text.replace(str(DEMO), "<DEMO>").replace(DEMO.relative_to(REPO).as_posix(), "<DEMO>")
    text = text.replace(f'"version": "{__version__}"', '"version": "<VERSION>"')
    return text


@pytest.fixture(scope="module")
def demo_report():
    from analyzer.api import analyze

    return analyze([DEMO])


def _engine_text_frozen(report: Report) -> Report:
    """A copy whose engine-written prose is replaced by placeholders.

    Why: the golden files pin what the renderers do (layout, escaping, structure) and the demo's
    truth (verdicts, rule codes, levels, steps, checkpoints), not the diagnosis engine's wording or
    its evidence numbers, which it may refine without changing any result.
    """
    frozen = copy.deepcopy(report)
    for r in frozen.runs:
        r.verdict_reason = f"<{r.verdict} reason>"
        r.advice = [f"<advice {i + 1}>" for i in range(len(r.advice))]
        if r.checkpoint is not None:
            r.checkpoint.reason = "<pick reason>"
        for f in r.findings:
            f.message = f"<{f.code} message, 100% & <b>, a|b>"  # exercises each format's escaping
            f.evidence = {}
        r.peak_step = None if r.peak_step is None else 0
        r.change_points = []
    return frozen


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "table"])
def test_golden_demo(fmt, demo_report, monkeypatch):
    monkeypatch.chdir(REPO)
    text = _normalise(
        render(fmt, _engine_text_frozen(demo_report), parse_fail_on("overfitting,underfitting"))
    )
    ext = {"json": "json", "markdown": "md", "github": "txt", "junit": "xml", "sarif": "sarif"}[fmt]
    golden = GOLDEN / f"demo.{fmt}.{ext}"
    if os.environ.get("UPDATE_GOLDEN") == "1" or not golden.exists():
        if os.environ.get("UPDATE_GOLDEN") != "1":
            pytest.fail(f"{golden} missing; run UPDATE_GOLDEN=1 pytest {__file__}")
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


def test_golden_demo_table(demo_report, monkeypatch):
    """The terminal table at 120 columns, `-v` detail included (layout, wrapping, ingest lines)."""
    monkeypatch.chdir(REPO)
    frozen = _engine_text_frozen(demo_report)
    text = _normalise(
        render("table", frozen, parse_fail_on("overfitting,underfitting"), width=120, verbose=True)
    )
    text = "\n".join(line.rstrip() for line in text.splitlines()) + "\n"  # rich pads lines to the width
    golden = GOLDEN / "demo.table.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing; run UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == golden.read_text()


def test_demo_truth(demo_report):
    """The demo runs' known curves give known verdicts (see fixtures/demo/make_demo.py)."""
    by_id = {r.run.id: r for r in demo_report.runs}
    assert set(by_id) == {"overfit", "healthy", "underfit", "nan"}
    assert by_id["overfit"].verdict == "overfitting"
    assert by_id["overfit"].checkpoint is not None and by_id["overfit"].checkpoint.step == 8000
    assert by_id["overfit"].checkpoint.path.endswith("ckpt_8000.pt")
    assert by_id["healthy"].verdict == "healthy"
    assert by_id["underfit"].verdict == "underfitting"
    assert by_id["nan"].verdict != "healthy" and by_id["nan"].findings
