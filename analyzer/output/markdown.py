"""`--format markdown`: a summary table plus per-run findings, for PR comments and job summaries."""

from __future__ import annotations

from analyzer.output.common import checkpoint_text, display_path, first_advice, summary_line
from analyzer.output.failon import FailOn
from analyzer.report import Report

_ICON = {"overfitting": "🔴", "underfitting": "🟠", "healthy": "🟢", "inconclusive": "⚪"}


def _cell(text: object) -> str:
    """Escape a value for a markdown table cell (pipes and newlines would break the row)."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


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
            out.append(
                "| "
                + " | ".join(
                    _cell(x)
                    for x in (
                        f"`{r.run.id}`",
                        r.run.framework,
                        r.run.metadata.algorithm or "-",
                        verdict,
                        checkpoint_text(r),
                        r.verdict_reason,
                        first_advice(r),
                    )
                )
                + " |"
            )
        out.append("")
    for r in report.runs:
        out += [f"## `{r.run.id}` — {r.verdict}", "", r.verdict_reason, ""]
        if r.checkpoint is not None:
            out += [f"Checkpoint to keep: {checkpoint_text(r)} — {r.checkpoint.reason}", ""]
        if r.findings:
            out += ["| Code | Level | Steps | Message |", "|---|---|---|---|"]
            for f in r.findings:
                steps = f"{f.steps[0]}–{f.steps[1]}" if f.steps else "-"
                out.append(f"| {_cell(f.code)} {_cell(f.name)} | {f.level} | {steps} | {_cell(f.message)} |")
            out.append("")
        if r.advice:
            out += ["Advice:", ""] + [f"- {a}" for a in r.advice] + [""]
        if r.run.issues:
            out += ["Ingest issues:", ""]
            out += [f"- {i.level}: `{display_path(i.path)}`: {i.message}" for i in r.run.issues]
            out.append("")
    if report.errors:
        out += ["## Unreadable inputs", ""]
        out += [f"- {e.level}: `{display_path(e.path)}`: {e.message}" for e in report.errors]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
