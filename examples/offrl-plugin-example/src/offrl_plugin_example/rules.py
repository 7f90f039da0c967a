"""EX001 few-evaluations: registered on import (the `offrl_workflow.rules` entry point names this module)."""

from __future__ import annotations

import numpy as np

from analyzer.report import Finding
from analyzer.rules.base import Context, Param, rule


@rule(
    "EX001",
    "few-evaluations",
    "info",
    "Fewer evaluation returns than checkpoints worth comparing: a pick cannot be checked against rollouts.",
    params=(
        Param(
            "min_points",
            3,
            "int",
            "fewest finite eval_return points that let a person compare the picked checkpoint with others",
            "convention of this example: the peak, one before and one after it",
        ),
    ),
    detects="The run logs eval_return at fewer than `min_points` steps (or not at all).",
    why="Offline RL picks checkpoints without rollouts; a few evaluations are the only way to check a pick.",
    example="`EX001 few-evaluations: eval_return at 1 step (fewer than 3)`",
    remediation="Evaluate a handful of checkpoints (e.g. every 10% of training) and log eval/avg_return.",
    family="example",
)
def few_evaluations(ctx: Context) -> list[Finding]:
    s = ctx.run.series.get("eval_return")
    n = int(np.isfinite(s.values).sum()) if s is not None else 0
    need = int(ctx.params["min_points"])
    if n >= need:
        return []
    return [
        ctx.finding(
            f"eval_return at {n} step{'s' if n != 1 else ''} (fewer than {need})",
            evidence={"points": n, "min_points": need},
        )
    ]
