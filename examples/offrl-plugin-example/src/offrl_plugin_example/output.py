"""`--format tsv`: one tab-separated line per run (id, framework, verdict, step to keep)."""

from __future__ import annotations

from typing import Any


class TsvOutput:
    name = "tsv"

    def render(self, report: Any, fail_on: Any) -> str:
        lines = ["run\tframework\tverdict\tcheckpoint_step"]
        for r in report.runs:
            step = r.checkpoint.step if r.checkpoint is not None else ""
            lines.append(f"{r.run.id}\t{r.run.framework}\t{r.verdict}\t{step}")
        return "\n".join(lines) + "\n"
