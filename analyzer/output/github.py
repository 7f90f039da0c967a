"""`--format github`: GitHub Actions workflow commands, so findings show up as annotations.

Syntax and escaping follow GitHub's "Workflow commands" documentation: `::warning file=F,title=T::msg`,
with `%`, CR and LF escaped in the message, and additionally `:` and `,` in property values
(analyzer.output.names: every value is also one line with no control character, so a run name
can neither end a command early nor start a new one).
"""

from __future__ import annotations

from analyzer.output.common import display_path, log_file, summary_line
from analyzer.output.failon import FailOn
from analyzer.output.names import clean, github_data, github_property
from analyzer.report import Report

_COMMAND = {"error": "error", "warning": "warning", "info": "notice"}


def annotation(level: str, file: str, title: str, message: str) -> str:
    cmd = _COMMAND.get(level, "warning")
    return f"::{cmd} file={github_property(file)},title={github_property(title)}::{github_data(message)}"


def render_github(report: Report, fail_on: FailOn) -> str:
    lines: list[str] = []
    for r in report.runs:
        file = log_file(r)
        for f in r.findings:
            if f.level == "info" and not fail_on.level_fails("info"):
                continue  # "no problem by this test" notes would drown the real annotations
            where = f" (steps {f.steps[0]}-{f.steps[1]})" if f.steps else ""
            lines.append(annotation(f.level, file, f"{f.code} {f.name} [{r.run.id}]", f.message + where))
        if r.verdict in ("overfitting", "underfitting") or fail_on.run_fails(r):
            # The verdict itself is what a reviewer acts on; its level follows the fail gate.
            level = "error" if fail_on.run_fails(r) else "warning"
            keep = (
                f" Keep checkpoint step {r.checkpoint.step}."
                if r.checkpoint and r.verdict == "overfitting"
                else ""
            )
            lines.append(annotation(level, file, f"{r.verdict} [{r.run.id}]", r.verdict_reason + keep))
        for i in r.run.issues:
            lines.append(annotation(i.level, display_path(i.path), f"ingest [{r.run.id}]", i.message))
    for e in report.errors:
        lines.append(annotation(e.level, display_path(e.path), "ingest", e.message))
    lines.append(clean(summary_line(report)))
    return "\n".join(lines) + "\n"
