"""`--report DIR`: one self-contained `index.html` (inline CSS, figures as base64 PNG, no external assets).

Why self-contained: the file is attached to CI artifacts, mailed, or opened offline on a robot lab
machine; it must render identically with no network and no sibling files.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from pathlib import Path

from analyzer import __version__
from analyzer.output.common import checkpoint_text, display_path, first_advice, summary_line
from analyzer.output.failon import FailOn
from analyzer.output.names import html_text
from analyzer.report import Report, RunResult

_CSS = """
:root { --red:#c62828; --orange:#ef6c00; --green:#2e7d32; --grey:#616161; --line:#e0e0e0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color:#212121;
       margin: 0; background:#fafafa; }
header { background:#263238; color:#fff; padding: 18px 32px; }
header h1 { margin:0; font-size: 20px; font-weight: 600; }
header p { margin: 4px 0 0; color:#cfd8dc; font-size: 13px; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 32px 48px; }
.summary { font-size: 15px; font-weight: 600; margin: 8px 0 16px; }
table { border-collapse: collapse; width: 100%; background:#fff; margin: 8px 0 16px; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 8px; text-align: left; vertical-align: top; }
th { background:#eceff1; font-weight: 600; font-size: 13px; }
td code, li code { font-size: 12px; background:#f1f3f4; padding: 1px 4px; border-radius: 3px; }
.badge { display:inline-block; padding: 1px 8px; border-radius: 10px; color:#fff; font-size: 12px; font-weight:600; }
.overfitting { background: var(--red); } .underfitting { background: var(--orange); }
.healthy { background: var(--green); } .inconclusive { background: var(--grey); }
.diverged { background: #6a1b9a; }
.fails { color: var(--red); font-weight: 600; font-size: 12px; margin-left: 4px; }
section.run { background:#fff; border:1px solid var(--line); border-radius: 6px; padding: 16px 20px; margin: 20px 0; }
section.run h2 { margin: 0 0 6px; font-size: 17px; }
section.run img { width: 100%; max-width: 1000px; height: auto; display:block; margin: 10px 0; }
.lvl-error { color: var(--red); font-weight:600; } .lvl-warning { color: var(--orange); font-weight:600; }
.lvl-info { color: #0277bd; }
.meta { color:#616161; font-size: 13px; }
a { color:#1565c0; text-decoration: none; }
.nowrap { white-space: nowrap; }
"""


def _e(text: object) -> str:
    """Every text of the page goes through here: escaped for HTML, one line, no control characters."""
    return html_text(text)


def _rich(text: object) -> str:
    """Escape, then show `inline code` (as the engine writes commands in advice) as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _anchor(result: RunResult, index: int) -> str:
    return f"run-{index}"


def _badge(verdict: str) -> str:
    return f'<span class="badge {_e(verdict)}">{_e(verdict)}</span>'


def _run_section(result: RunResult, index: int, png: bytes | None, fail_on: FailOn) -> str:
    run = result.run
    parts = [f'<section class="run" id="{_anchor(result, index)}">']
    fails = '<span class="fails">fails --fail-on</span>' if fail_on.run_fails(result) else ""
    parts.append(f"<h2><code>{_e(run.id)}</code> {_badge(result.verdict)}{fails}</h2>")
    meta = [
        f"framework {_e(run.framework)}",
        f"algorithm {_e(run.metadata.algorithm or '?')}",
        f"path <code>{_e(display_path(run.path))}</code>",
    ]
    parts.append(f'<p class="meta">{" · ".join(meta)}</p>')
    parts.append(f"<p><strong>Why:</strong> {_rich(result.verdict_reason)}</p>")
    if result.checkpoint is not None:
        parts.append(
            f"<p><strong>Checkpoint to keep:</strong> {_e(checkpoint_text(result))} — {_e(result.checkpoint.reason)}</p>"
        )
    if png is not None:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<img alt="curves of {_e(run.id)}" src="data:image/png;base64,{data}">')
    if result.findings:
        parts.append("<table><tr><th>Code</th><th>Level</th><th>Steps</th><th>Finding</th></tr>")
        for f in result.findings:
            steps = f"{f.steps[0]}–{f.steps[1]}" if f.steps else "–"
            parts.append(
                f"<tr><td><code>{_e(f.code)}</code> {_e(f.name)}</td><td class='lvl-{_e(f.level)}'>{_e(f.level)}</td>"
                f"<td>{_e(steps)}</td><td>{_e(f.message)}</td></tr>"
            )
        parts.append("</table>")
    if result.advice:
        parts.append(
            "<p><strong>Advice</strong></p><ul>"
            + "".join(f"<li>{_rich(a)}</li>" for a in result.advice)
            + "</ul>"
        )
    if run.issues:
        parts.append(
            "<p><strong>Ingest issues</strong></p><ul>"
            + "".join(
                f"<li class='lvl-{_e(i.level)}'>{_e(i.level)}: <code>{_e(display_path(i.path))}</code> {_e(i.message)}</li>"
                for i in run.issues
            )
            + "</ul>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def render_html(report: Report, fail_on: FailOn, *, figures: bool = True) -> str:
    """The whole report as one HTML string; `figures=False` skips matplotlib (fast previews, tests)."""
    pngs: list[bytes | None] = [None] * len(report.runs)
    if figures:
        from analyzer.output.plots import plot_png

        pngs = [plot_png(r) for r in report.runs]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>offrl-analyze report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>offrl-analyze report</h1><p>offrl-analyze {__version__} · generated {now} · fail on: {_e(fail_on.describe())}</p></header>",
        "<main>",
        f'<p class="summary">{_e(summary_line(report))}</p>',
    ]
    if report.runs:
        out.append(
            "<table><tr><th>Run</th><th>Framework</th><th>Algorithm</th><th>Verdict</th><th>Checkpoint</th><th>Evidence</th><th>Advice</th></tr>"
        )
        for i, r in enumerate(report.runs):
            fails = '<span class="fails">✗</span>' if fail_on.run_fails(r) else ""
            out.append(
                f'<tr><td><a href="#{_anchor(r, i)}"><code>{_e(r.run.id)}</code></a></td><td>{_e(r.run.framework)}</td>'
                f"<td>{_e(r.run.metadata.algorithm or '-')}</td><td class='nowrap'>{_badge(r.verdict)}{fails}</td>"
                f"<td>{_e(checkpoint_text(r))}</td><td>{_rich(r.verdict_reason)}</td><td>{_rich(first_advice(r))}</td></tr>"
            )
        out.append("</table>")
    if report.errors:
        out.append("<h2>Unreadable inputs</h2><ul>")
        out += [
            f"<li class='lvl-{_e(e.level)}'><code>{_e(display_path(e.path))}</code>: {_e(e.message)}</li>"
            for e in report.errors
        ]
        out.append("</ul>")
    for i, (r, png) in enumerate(zip(report.runs, pngs, strict=True)):
        out.append(_run_section(r, i, png, fail_on))
    out += ["</main></body></html>", ""]
    return "\n".join(out)


def write_report(report: Report, out_dir: str | Path, fail_on: FailOn) -> Path:
    """Write `out_dir/index.html` (directory created if missing); returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    index.write_text(render_html(report, fail_on), encoding="utf-8")
    return index
