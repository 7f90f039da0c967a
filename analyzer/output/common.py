"""Small helpers shared by the renderers: display paths, counts, the summary line."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from analyzer.ingest.storage import is_url
from analyzer.report import VERDICTS, Report, RunResult


def display_path(path: str | os.PathLike[str]) -> str:
    """Path relative to the working directory when inside it ("/"-separated), else absolute; a URL
    (a run in a bucket, analyzer/ingest/storage.py) as it is.

    Why: CI annotations and SARIF locations must be repository-relative to attach to files.
    """
    if is_url(path):
        return str(path)
    p = Path(path)
    try:
        rel = p.resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        return p.as_posix()
    return rel.as_posix() or "."


def log_file(result: RunResult) -> str:
    """The log file a run's findings point at: the first file its dataset-Q (or any) series came from."""
    run = result.run
    preferred = [run.series.get("q_data"), *run.series.values(), *run.raw.values()]
    for series in preferred:
        if series is not None and series.files:
            return display_path(series.files[0])
    return display_path(run.path)


def verdict_counts(report: Report) -> Counter[str]:
    return Counter(r.verdict for r in report.runs)


def ingest_problem_count(report: Report) -> int:
    """Files that yielded no run plus error-level issues inside runs that were read."""
    return len(report.errors) + sum(1 for r in report.runs for i in r.run.issues if i.level == "error")


def summary_line(report: Report) -> str:
    """E.g. `4 runs: 1 overfitting, 1 underfitting, 1 healthy, 1 inconclusive; 1 ingest problem`."""
    n = len(report.runs)
    counts = verdict_counts(report)
    # `diverged` (added in report schema 1.1) is listed when it occurs, so existing summaries read as before
    parts = [f"{counts.get(v, 0)} {v}" for v in VERDICTS if v != "diverged" or counts.get(v)]
    text = f"{n} run{'s' if n != 1 else ''}: " + ", ".join(parts)
    problems = ingest_problem_count(report)
    if problems:
        text += f"; {problems} ingest problem{'s' if problems != 1 else ''}"
    return text


def checkpoint_text(result: RunResult) -> str:
    """`step 8000 (ckpt_8000.pt)`, or `step 8000 (no file)`, or `-`."""
    pick = result.checkpoint
    if pick is None:
        return "-"
    name = Path(pick.path).name if pick.path else "no file"
    return f"step {pick.step} ({name})"


def first_advice(result: RunResult) -> str:
    return result.advice[0] if result.advice else "-"
