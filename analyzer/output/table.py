"""Default output: one table row per run, ingest problems per run, a summary line; `-v` adds detail.

Why this shape: a terminal of 100-120 columns must show every run's verdict, checkpoint, key
numbers and first action without wrapping into a wall of text; the full sentences stay in the
json/markdown/html outputs and under the table with `--verbose`.
Every cell is a rich `Text`, never markup, so `[lo, hi]` or `[BRAC: ...]` in a message prints as is,
and every text from the logs passes `names.terminal` (`_t`): escape sequences, control characters and
undecodable bytes in a run name are shown escaped, never sent to the terminal.
"""

from __future__ import annotations

import io
from collections import defaultdict

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from analyzer.model import IngestIssue
from analyzer.output.brief import (
    checkpoint_cell,
    clip,
    short_advice,
    short_evidence,
    short_run_id,
    short_run_ids,
)
from analyzer.output.common import display_path, summary_line
from analyzer.output.failon import FailOn
from analyzer.output.names import terminal as _t
from analyzer.report import Report, RunResult

VERDICT_STYLE = {
    "overfitting": "bold red",
    "underfitting": "bold yellow",
    "healthy": "green",
    "inconclusive": "dim",
    "diverged": "bold magenta",
}
LEVEL_STYLE = {"error": "red", "warning": "yellow", "info": "cyan"}
MAX_ERROR_LINES = 5  # unreadable paths listed under the table; the rest are counted


def run_id_width(console_width: int) -> int:
    """Room for the Run column: a quarter of the terminal, between 16 and 44 characters."""
    return max(16, min(44, console_width // 4))


def build_table(report: Report, fail_on: FailOn, width: int = 120) -> Table:
    """Run | Verdict | Checkpoint | Evidence (and, on the row's second line, the first action).

    Framework/algorithm get their own column only from 150 columns on (else they are in `-v`).
    """
    id_w = run_id_width(width)
    short = short_run_ids([_t(r.run.id) for r in report.runs], id_w)
    show_log = width >= 150
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False, expand=False)
    table.add_column("Run", no_wrap=True, max_width=id_w)
    if show_log:
        table.add_column("Log", no_wrap=True, style="dim")
    table.add_column("Verdict", no_wrap=True)
    table.add_column("Checkpoint", no_wrap=True, overflow="ellipsis", max_width=26)
    table.add_column("Evidence / first action", overflow="fold")
    for r in report.runs:
        verdict = Text(r.verdict, style=VERDICT_STYLE.get(r.verdict, ""))
        if fail_on.run_fails(r):
            verdict.append(" ✗", style="bold red")
        algo = r.run.metadata.algorithm
        log = [Text(_t(f"{r.run.framework}/{algo}" if algo else r.run.framework))] if show_log else []
        cell = Text(_t(short_evidence(r)))
        cell.append("\n→ ", style="cyan")
        cell.append(_t(short_advice(r)), style="cyan")
        table.add_row(Text(short[_t(r.run.id)]), *log, verdict, Text(_t(checkpoint_cell(r))), cell)
    return table


def issue_lines(report: Report, width: int = 120) -> list[Text]:
    """One line per run with ingest problems (count + first message), then unreadable paths."""
    per_run: dict[str, list[IngestIssue]] = defaultdict(list)
    for r in report.runs:
        for i in r.run.issues:
            if i.level != "info":
                per_run[r.run.id].append(i)
    lines = []
    for run_id, issues in per_run.items():
        worst = "error" if any(i.level == "error" for i in issues) else "warning"
        line = Text()
        line.append(f"{worst}: ", style=LEVEL_STYLE[worst])
        line.append(short_run_id(_t(run_id), run_id_width(width)), style="bold")
        n = len(issues)
        first = issues[0]
        head = f": {n} ingest problem{'s' if n != 1 else ''}; first: " if n > 1 else ": "
        line.append(clip(_t(f"{head}{_where(first)}{first.message}"), max(40, width - len(line) - 1)))
        lines.append(line)
    for e in report.errors[:MAX_ERROR_LINES]:
        line = Text()
        line.append(f"{e.level}: ", style=LEVEL_STYLE.get(e.level, ""))
        line.append(clip(_t(f"{display_path(e.path)}: {e.message}"), max(40, width - len(line) - 1)))
        lines.append(line)
    if len(report.errors) > MAX_ERROR_LINES:
        more = len(report.errors) - MAX_ERROR_LINES
        lines.append(Text(f"... and {more} more unreadable path(s) (all in --format json)", style="dim"))
    return lines


def _where(issue: IngestIssue) -> str:
    """The file inside the run, when the issue names one (the run id already says which run)."""
    name = display_path(issue.path).rsplit("/", 1)[-1]
    return f"{name}: " if name else ""


def detail_lines(result: RunResult) -> list[Text]:
    """`--verbose`: everything about one run - reason, checkpoint, each finding, all advice."""
    r = result
    head = Text()
    head.append(_t(r.run.id), style="bold")
    head.append(" — ")
    head.append(r.verdict, style=VERDICT_STYLE.get(r.verdict, ""))
    algo = r.run.metadata.algorithm
    head.append(
        _t(f"  ({r.run.framework}{'/' + algo if algo else ''}, {display_path(r.run.path)})"), style="dim"
    )
    out = [head, Text(_t(f"why: {r.verdict_reason}")), Text(_t(f"metrics: {metrics_line(r)}"))]
    if r.checkpoint is not None:
        where = display_path(r.checkpoint.path) if r.checkpoint.path else "no file"
        out.append(
            Text(_t(f"checkpoint: {r.run.x_unit} {r.checkpoint.step} ({where}): {r.checkpoint.reason}"))
        )
    for f in r.findings:
        line = Text()
        line.append(f"{f.code} {f.level:<7}", style=LEVEL_STYLE.get(f.level, ""))
        line.append(_t(f" {f.message}"))
        out.append(line)
    for i, a in enumerate(r.advice, 1):
        out.append(Text(_t(f"advice {i}: {a}")))
    for issue in r.run.issues:
        line = Text()
        line.append(f"{issue.level}: ", style=LEVEL_STYLE.get(issue.level, ""))
        line.append(_t(f"{display_path(issue.path)}: {issue.message}"))
        out.append(line)
    return out


def metrics_line(r: RunResult) -> str:
    """Which canonical metrics were resolved, from which tags, and how far to trust them."""
    if not r.run.series:
        return "none resolved"
    return "; ".join(f"{name} <- {s.source} [{len(s)} points]" for name, s in r.run.series.items())


def print_report(console: Console, report: Report, fail_on: FailOn, *, verbose: bool = False) -> None:
    width = console.width
    if report.runs:
        console.print(build_table(report, fail_on, width))
    if verbose:
        for r in report.runs:
            head, *rest = detail_lines(r)
            console.print(head)
            for line in rest:  # indented; wrapped lines keep the indent
                console.print(Padding(line, (0, 0, 0, 4)))
            console.print()
    for line in issue_lines(report, width):
        console.print(line, overflow="ellipsis", no_wrap=True)
    failing = sum(1 for r in report.runs if fail_on.run_fails(r))
    summary = Text(summary_line(report), style="bold")
    if failing:
        summary.append(f" — {failing} failing on {fail_on.describe()}", style="bold red")
    console.print(summary)


def render_table(
    report: Report, fail_on: FailOn, *, color: bool = False, width: int | None = None, verbose: bool = False
) -> str:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=width or 160, soft_wrap=False)
    print_report(console, report, fail_on, verbose=verbose)
    return buf.getvalue()
