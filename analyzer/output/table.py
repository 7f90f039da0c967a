"""Default output: a rich table per report, plus a summary line — readable in a terminal at a glance."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from analyzer.output.common import checkpoint_text, display_path, first_advice, summary_line
from analyzer.output.failon import FailOn
from analyzer.report import Report

VERDICT_STYLE = {
    "overfitting": "bold red",
    "underfitting": "bold yellow",
    "healthy": "green",
    "inconclusive": "dim",
}
LEVEL_STYLE = {"error": "red", "warning": "yellow", "info": "cyan"}


def build_table(report: Report, fail_on: FailOn) -> Table:
    table = Table(title=None, show_lines=False, header_style="bold", expand=False)
    table.add_column("Run", overflow="fold", ratio=2)
    table.add_column("Framework")
    table.add_column("Algo")
    table.add_column("Verdict")
    table.add_column("Checkpoint", overflow="fold")
    table.add_column("Evidence", overflow="fold", ratio=3)
    table.add_column("Advice", overflow="fold", ratio=3)
    for r in report.runs:
        verdict = Text(r.verdict, style=VERDICT_STYLE.get(r.verdict, ""))
        if fail_on.run_fails(r):
            verdict.append(" ✗", style="bold red")
        table.add_row(
            r.run.id,
            r.run.framework,
            r.run.metadata.algorithm or "-",
            verdict,
            checkpoint_text(r),
            r.verdict_reason,
            first_advice(r),
        )
    return table


def print_report(console: Console, report: Report, fail_on: FailOn) -> None:
    if report.runs:
        console.print(build_table(report, fail_on))
    problems = [(r.run.id, i) for r in report.runs for i in r.run.issues if i.level != "info"]
    problems += [(None, e) for e in report.errors]
    for run_id, issue in problems:
        line = Text()
        line.append(f"{issue.level}: ", style=LEVEL_STYLE.get(issue.level, ""))
        line.append(f"{display_path(issue.path)}: {issue.message}")
        if run_id:
            line.append(f" [{run_id}]", style="dim")
        console.print(line)
    failing = sum(1 for r in report.runs if fail_on.run_fails(r))
    summary = Text(summary_line(report), style="bold")
    if failing:
        summary.append(f" — {failing} failing on {fail_on.describe()}", style="bold red")
    console.print(summary)


def render_table(report: Report, fail_on: FailOn, *, color: bool = False, width: int | None = None) -> str:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, no_color=not color, width=width or 160, soft_wrap=False)
    print_report(console, report, fail_on)
    return buf.getvalue()
