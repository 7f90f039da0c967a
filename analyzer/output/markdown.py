"""`--format markdown`: a summary table plus per-run findings, for PR comments and job summaries.

Names are code spans (`names.markdown_code`), everything is one line (`names.clean`): a newline or a
backtick in a run name can split neither a heading nor a table row.
"""

from __future__ import annotations

from analyzer.output.common import checkpoint_text, display_path, first_advice, summary_line
from analyzer.output.failon import FailOn
from analyzer.output.names import markdown_cell, markdown_code, markdown_inline
from analyzer.report import Report

_ICON = {"overfitting": "🔴", "underfitting": "🟠", "healthy": "🟢", "inconclusive": "⚪", "diverged": "🟣"}


_cell = markdown_cell  # pipes and newlines would break the row
_md = markdown_inline


def render_markdown(report: Report, fail_on: FailOn) -> str:
    out = ["# offrl-analyze report", "", f"**{summary_line(report)}** (fail on: {fail_on.describe()})", ""]
    if report.runs:
        out += [
            "| Run | Framework | Algorithm | Verdict | Checkpoint | Evidence | Advice |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in report.runs:
            verdict = f"{_ICON.get(r.verdict, '')} {r.verdict}".strip()
            if fail_on.run_fails(r):
                verdict += " (fails)"
            run_cell = markdown_code(r.run.id).replace("|", "\\|")  # GFM: `\|` is `|` inside code too
            out.append(
                "| "
                + " | ".join(
                    [run_cell]
                    + [
                        _cell(x)
                        for x in (
                            r.run.framework,
                            r.run.metadata.algorithm or "-",
                            verdict,
                            checkpoint_text(r),
                            r.verdict_reason,
                            first_advice(r),
                        )
                    ]
                )
                + " |"
            )
        out.append("")
    for r in report.runs:
        out += [f"## {markdown_code(r.run.id)} — {r.verdict}", "", _md(r.verdict_reason), ""]
        if r.checkpoint is not None:
            out += [f"Checkpoint to keep: {_md(checkpoint_text(r))} — {_md(r.checkpoint.reason)}", ""]
        if r.findings:
            out += ["| Code | Level | Steps | Message |", "|---|---|---|---|"]
            for f in r.findings:
                steps = f"{f.steps[0]}–{f.steps[1]}" if f.steps else "-"
                out.append(f"| {_cell(f.code)} {_cell(f.name)} | {f.level} | {steps} | {_cell(f.message)} |")
            out.append("")
        if r.advice:
            out += ["Advice:", ""] + [f"- {_md(a)}" for a in r.advice] + [""]
        if r.run.issues:
            out += ["Ingest issues:", ""]
            out += [
                f"- {i.level}: {markdown_code(display_path(i.path))}: {_md(i.message)}" for i in r.run.issues
            ]
            out.append("")
    if report.errors:
        out += ["## Unreadable inputs", ""]
        out += [
            f"- {e.level}: {markdown_code(display_path(e.path))}: {_md(e.message)}" for e in report.errors
        ]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
