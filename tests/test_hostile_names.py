"""Hostile run names (bytes that are not UTF-8, control characters, escape sequences, newlines) in every
output format: table, json, github, markdown, junit, sarif, the HTML report and the plots.

Issue 12 items 2, 3, 4, 13, 14. The reproducers run the command line on real folders; the property
tests run every renderer on names drawn by hypothesis, in memory and on disk.
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from analyzer.cli import app
from analyzer.model import IngestIssue, Run, RunMetadata, Series
from analyzer.output import FORMATS, render
from analyzer.output.failon import parse_fail_on
from analyzer.output.names import clean, escape_char, markdown_code, undecodable_only
from analyzer.report import CheckpointPick, Finding, Report, RunResult

REPO = Path(__file__).resolve().parents[1]
EVENT_FILE = REPO / "fixtures" / "demo" / "healthy" / "events.out.tfevents.1700000000.demo"
BAD_BYTES = b"bad\xff\xfe"  # not UTF-8
RED = b"\x1b[31mred\x1b[0m"  # a terminal escape sequence
NEWLINE = b"new\nline"
#: characters that must never reach a human-readable output raw: C0/C1 controls (LF and TAB aside,
#: where a format uses them itself), surrogates, U+2028/9, bidi overrides, XML-forbidden U+FFFE/F
_RAW_FORBIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069\ufffe\uffff]"
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("OFFRL_DEBUG", raising=False)


def make_runs(root: Path, *names: bytes) -> Path:
    """`root/<name>/` with one event file each, named by raw bytes (as a hostile tree would be)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        d = os.path.join(os.fsencode(root), name)
        os.mkdir(d)
        shutil.copyfile(EVENT_FILE, os.path.join(d, os.fsencode(EVENT_FILE.name)))
    return root


def invoke(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def shown(name: bytes) -> str:
    """How every human-readable format shows a run folder named `name`."""
    return clean(os.fsdecode(name))


# ---------------------------------------------------------------------------------------------- unit


def test_clean_escapes_only_what_cannot_be_shown():
    assert clean(os.fsdecode(BAD_BYTES)) == "bad\\xff\\xfe"  # as bytes.__repr__ writes them
    assert clean("\x1b[31mred") == "\\x1b[31mred"
    assert clean("a\nb\tc\rd") == "a\\x0ab\\x09c\\x0dd"
    assert clean("a\nb\tc\rd", keep_newlines=True) == "a\nb\tc\\x0dd"
    assert clean("abc\u202edef\u2028\ufffe\x85") == "abc\\u202edef\\u2028\\ufffe\\x85"
    # printable text, any script, is kept exactly
    for ok in ("run_1", "exp/seed=0", "café", "日本語", "a b", "α→β", "[red]x[/red]", "$x$"):
        assert clean(ok) == ok
    assert escape_char("\U000e0001") == "\\U000e0001"
    assert undecodable_only(os.fsdecode(b"a\x1b\xff")) == "a\x1b\\xff"


def test_markdown_code_span_survives_backticks_and_spaces():
    assert markdown_code("run") == "`run`"
    assert markdown_code("a`b") == "``a`b``"
    assert markdown_code("`x`") == "`` `x` ``"
    assert markdown_code("a``b") == "```a``b```"


# ---------------------------------------------------------------------------------------------- reproducers


@pytest.mark.parametrize("fmt", ["github", "markdown", "junit", "json", "sarif", "table"])
def test_non_utf8_run_name_does_not_kill_the_output(tmp_path, fmt):
    """Item 2: one folder name that is not UTF-8 made github/markdown/junit fail for every run."""
    root = make_runs(tmp_path / "t", b"ok", BAD_BYTES)
    out = tmp_path / f"out.{fmt}"
    # --fail-on info: every finding becomes an annotation (github), a failure (junit)
    r = invoke(root, "--format", fmt, "-o", out, "-q", "--fail-on", "info", "--exit-zero")
    assert r.exit_code == 0, r.output
    text = out.read_bytes().decode("utf-8")  # strict: the file is UTF-8
    if fmt == "json":
        ids = [run["run"] for run in json.loads(text)["runs"]]
        assert ids == ["bad\\xff\\xfe", "ok"]
    elif fmt == "sarif":
        results = json.loads(text)["runs"][0]["results"]
        assert any(x["message"]["text"].startswith("[bad\\xff\\xfe] ") for x in results)
        uris = {loc["physicalLocation"]["artifactLocation"]["uri"] for x in results for loc in x["locations"]}
        assert any("/t/bad%FF%FE/events.out" in u for u in uris), uris  # the bytes on disk, as a URI
    else:
        assert "bad\\xff\\xfe" in text and "ok" in text
    if fmt == "junit":
        names = [c.get("name") for c in ET.fromstring(text).iter("testcase")]
        assert names == ["bad\\xff\\xfe", "ok"]


def test_non_utf8_run_name_on_a_strict_utf8_stdout(tmp_path):
    """Item 2 as reported: `--format github` to a stdout that refuses surrogates."""
    import subprocess
    import sys

    root = make_runs(tmp_path / "t", b"ok", BAD_BYTES)
    # PYTHONPATH: this checkout's analyzer, whatever the cwd; PYTHONIOENCODING: a strict UTF-8 stdout
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(REPO)}
    env.pop("GITHUB_ACTIONS", None)
    for fmt in ("github",):  # markdown/junit/table: test_non_utf8_run_name_does_not_kill_the_output
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "analyzer",
                str(root),
                "--format",
                fmt,
                "--fail-on",
                "info",
                "--exit-zero",
            ],
            capture_output=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        assert b"bad\\xff\\xfe" in p.stdout and b"Traceback" not in p.stderr


def test_non_utf8_run_name_in_plots_and_report(tmp_path):
    """Item 3: the same name broke --plot (matplotlib TypeError) and --report (no index.html)."""
    root = make_runs(tmp_path / "t", b"ok", BAD_BYTES, b"cost$x^2$")
    plots, report = tmp_path / "plots", tmp_path / "report"
    r = invoke(root, "--plot", plots, "--report", report, "-q", "--fail-on", "none")
    assert r.exit_code == 0, r.output
    pngs = sorted(p.name for p in plots.iterdir())
    assert len(pngs) == 3 and all(p.endswith(".png") for p in pngs)
    assert all((plots / p).read_bytes().startswith(b"\x89PNG") for p in pngs)
    page = (report / "index.html").read_text(encoding="utf-8")
    assert "bad\\xff\\xfe" in page and "cost$x^2$" in page
    assert page.count('<section class="run"') == 3


def test_junit_is_well_formed_with_an_escape_sequence_in_a_run_name(tmp_path):
    """Item 4: `mkdir $'t/\\e[31mred\\e[0m'`; `--format junit -o r.xml` gave XML that does not parse."""
    root = make_runs(tmp_path / "t", RED, b"ok")
    out = tmp_path / "r.xml"
    r = invoke(root, "--format", "junit", "-o", out, "-q", "--fail-on", "none")
    assert r.exit_code == 0, r.output
    tree = ET.parse(out)  # raises if not well-formed
    names = sorted(c.get("name") for c in tree.iter("testcase"))
    assert names == ["\\x1b[31mred\\x1b[0m", "ok"]


@pytest.mark.parametrize("fmt", ["table", "github"])
def test_escape_codes_in_run_names_never_reach_the_terminal_raw(tmp_path, fmt):
    """Item 13: terminal escape codes in run names reached the table and github output raw."""
    root = make_runs(tmp_path / "t", RED, b"ok")
    r = invoke(root, "--format", fmt, "--fail-on", "info", "--exit-zero")  # info: annotate every finding
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.stdout
    assert "\\x1b[31mred\\x1b[0m" in r.stdout


def test_table_verbose_shows_hostile_tags_escaped(tmp_path):
    root = make_runs(tmp_path / "t", RED)
    r = invoke(root, "-v", "--fail-on", "none")
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.stdout and "\\x1b[31mred" in r.stdout


def test_newline_in_a_run_name_keeps_the_markdown_heading_whole(tmp_path):
    """Item 14: a newline in a run name split a markdown heading (cells were escaped, headings not)."""
    root = make_runs(tmp_path / "t", NEWLINE, b"ok")
    r = invoke(root, "--format", "markdown", "--fail-on", "none")
    assert r.exit_code == 0, r.output
    headings = [line for line in r.stdout.splitlines() if line.startswith("## ")]
    assert headings == ["## `new\\x0aline` — inconclusive", "## `ok` — inconclusive"]
    assert not any(line.startswith("line") for line in r.stdout.splitlines())


# ---------------------------------------------------------------------------------------------- properties


def _fs_names() -> st.SearchStrategy[bytes]:
    """Valid single path components as raw bytes: anything but `/` and NUL, not hidden, not `.`/`..`."""
    nasty = st.sampled_from(
        [b"\x1b[2J", b"\x1b]0;title\x07", b"\n", b"\r", b"\t", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x85"]
        + [c.encode() for c in ("\u202e", "\u2028", "\ufffe", "%", ":", ",", "|", "`", "$", "<", "&", "#")]
        + [b"::error::x", b"<script>", b"]]>", b"%0A", b"\\", b" ", b"\xe6\x97\xa5"]
    )
    pieces = st.lists(st.one_of(nasty, st.binary(min_size=1, max_size=6)), min_size=1, max_size=5)
    return pieces.map(lambda ps: b"x" + b"".join(ps).replace(b"/", b"_").replace(b"\x00", b"_")[:60])


def _series(name: str, n: int, files: tuple[str, ...], tag: str) -> Series:
    steps = np.arange(0, 100 * n, 100, dtype=np.int64)
    vals = np.sin(steps / 1500.0) + steps / 4000.0
    return Series(name, steps, vals, files=files, sources=(tag,))


def hostile_report(root: Path, name: str) -> Report:
    """Two runs, `ok` and `name`; the hostile one carries the name in every field a renderer shows."""
    results = []
    for rid in ("ok", name):
        ev = str(root / rid / "events.out.tfevents.1")
        run = Run(
            id=rid,
            path=root / rid,
            framework="offrl",
            metadata=RunMetadata(algorithm=rid),  # algorithm comes from the run's own config file
            series={
                "q_data": _series("q_data", 60, (ev,), f"{rid}/q"),
                "td_error": _series("td_error", 60, (ev,), f"{rid}/td"),
            },
            issues=[IngestIssue(ev, f"truncated record in {rid}", "warning", offset=12)],
        )
        results.append(
            RunResult(
                run=run,
                verdict="overfitting",
                verdict_reason=f"dataset Q of {rid} peaked at step 2000",
                checkpoint=CheckpointPick(2000, str(root / rid / f"ckpt_{rid}.pt"), f"kept for {rid}"),
                findings=[Finding("OF001", "q-peak-decline", "error", f"Q of {rid} fell", (2000, 5900))],
                advice=[f"keep ckpt_{rid}.pt", "add --vib 1e-3"],
                peak_step=2000,
                change_points=[2000],
            )
        )
    return Report(
        runs=results, errors=[IngestIssue(str(root / name / "x.csv"), f"unreadable {name}", "error")]
    )


class _Html(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections = 0
        self.texts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.sections += 1

    def handle_data(self, data):
        self.texts.append(data)


def check_every_format(report: Report, name: str) -> None:
    """The invariants every renderer keeps for any run name (one function, used by all properties)."""
    fail_on = parse_fail_on("error")
    want = clean(name)
    for fmt in FORMATS:
        text = render(fmt, report, fail_on, width=160)
        text.encode("utf-8")  # strict: no lone surrogates left
        if fmt in ("json", "sarif"):
            doc = json.loads(text)
            if fmt == "json":
                assert [r["run"] for r in doc["runs"]] == ["ok", undecodable_only(name)]
            else:
                texts = [r["message"]["text"] for r in doc["runs"][0]["results"]]
                assert any(undecodable_only(name) in t for t in texts)
                uris = [
                    loc["physicalLocation"]["artifactLocation"]["uri"]
                    for r in doc["runs"][0]["results"]
                    for loc in r["locations"]
                ]
                assert all(re.fullmatch(r"[A-Za-z0-9_.~/%-]+", u) for u in uris), uris
            continue
        assert not _RAW_FORBIDDEN.search(text), (fmt, text)
        if fmt == "junit":
            root = ET.fromstring(text)
            assert [c.get("name") for c in root.iter("testcase")][:2] == ["ok", want]
        elif fmt == "github":
            lines = text.splitlines()
            cmd = re.compile(r"^::(error|warning|notice) file=[^,:]*,title=[^,:]*::")
            assert all(cmd.match(line) for line in lines[:-1]), lines
            assert lines[-1].startswith("2 runs:")
            assert len(lines) == 2 * 3 + 1 + 1  # per run: finding, verdict, ingest issue; the error; summary
        elif fmt == "markdown":
            headings = [line for line in text.splitlines() if line.startswith("## ")]
            assert headings[:2] == ["## `ok` — overfitting", f"## {markdown_code(name)} — overfitting"]
            rows = [line for line in text.splitlines() if line.startswith("| `") or line.startswith("| ``")]
            assert len(rows) == 2
        elif fmt == "table":
            assert "\x1b" not in text
            if want.isascii() and len(want) <= 30:
                assert want in text
    from analyzer.output.html_report import render_html

    page = render_html(report, fail_on, figures=False)
    page.encode("utf-8")
    assert not _RAW_FORBIDDEN.search(page)
    parser = _Html()
    parser.feed(page)
    assert parser.sections == 2
    assert want in "".join(parser.texts)


_FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FAST
@given(raw=_fs_names())
def test_any_name_from_disk_renders_safely_in_every_format(tmp_path, raw):
    check_every_format(hostile_report(tmp_path, os.fsdecode(raw)), os.fsdecode(raw))


@_FAST
@given(name=st.text(min_size=1, max_size=40))
def test_any_unicode_name_renders_safely_in_every_format(tmp_path, name):
    check_every_format(hostile_report(tmp_path, name), name)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=_fs_names())
def test_any_name_renders_in_the_plots(tmp_path, raw):
    from analyzer.output.plots import plot_png

    report = hostile_report(tmp_path, os.fsdecode(raw))
    png = plot_png(report.runs[1])
    assert png.startswith(b"\x89PNG")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=_fs_names())
def test_any_run_folder_name_end_to_end(tmp_path_factory, raw):
    """Real folders: discovery (os.fsdecode), reading, diagnosis and every format."""
    from analyzer.api import analyze

    root = make_runs(tmp_path_factory.mktemp("names"), b"ok", raw)
    report = analyze([root])
    name = os.fsdecode(raw)
    assert sorted(r.run.id for r in report.runs) == sorted(["ok", name])
    fail_on = parse_fail_on("error")
    for fmt in FORMATS:
        text = render(fmt, report, fail_on, width=160)
        text.encode("utf-8")
        if fmt == "junit":
            assert sorted(c.get("name") for c in ET.fromstring(text).iter("testcase")) == sorted(
                ["ok", clean(name)]
            )
        elif fmt in ("json", "sarif"):
            json.loads(text)
        else:
            assert not _RAW_FORBIDDEN.search(text), (fmt, text)
