"""Data-quality rules: what the diagnosis stands on (missing metrics, too few points, proxies, NaN)."""

from __future__ import annotations

import numpy as np

from analyzer.report import Finding
from analyzer.rules.base import MIN_POINTS_AFTER_WARM_START, Context, Param, rule

KEY_METRICS = ("q_data", "td_error")


@rule(
    "DQ001",
    "metric-missing",
    "warning",
    "A metric the workflow needs is not in the logs, so the check that uses it cannot run.",
    family="data",
    detects="No dataset-Q series (nor a q_target/q_policy proxy), no TD error, or no regularizer "
    "(CQL gap/term, BRAC divergence) among the run's canonical metrics.",
    why="Metric 3.1 (overfitting) reads the dataset-Q curve and Metric 3.2 (underfitting) reads the TD "
    "error and the regularizer; without them the verdict can only be inconclusive, and saying so "
    "beats guessing.",
    example="`DQ001 metric-missing: no dataset Q (q_data, q_target or q_policy): overfitting check "
    "(OF001) inconclusive`",
    remediation="Log the metric (the reference trainer logs `offrl/q_data`, `offrl/td_error`, "
    "`offrl/cql_gap`), or map your tag to it in the rules file: `mappings: {q_data: 'my/tag'}`.",
)
def metric_missing(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    out: list[Finding] = []
    if a.q is None:
        out.append(
            ctx.finding(
                "no dataset Q (q_data, q_target or q_policy): overfitting check (OF001) and checkpoint "
                "selection inconclusive; map your tag with `mappings: {q_data: <tag>}`",
                evidence={"missing": "q_data", "disables": ["OF001", "OF002", "checkpoint selection"]},
            )
        )
    if a.td is None:
        out.append(
            ctx.finding(
                "no TD error (td_error): underfitting check (UF001) inconclusive; map your tag with "
                "`mappings: {td_error: <tag>}` (rlkit: pure TD = QF1 Loss - min QF1 Loss)",
                evidence={"missing": "td_error", "disables": ["UF001", "UF003"]},
            )
        )
    if a.reg is None:
        out.append(
            ctx.finding(
                "no regularizer metric (cql_gap, cql_term or brac_divergence): regularizer checks (UF002) "
                "skipped and overfitting evidence is weaker",
                evidence={"missing": "regularizer", "disables": ["UF002"]},
                level="info",
            )
        )
    return out


@rule(
    "DQ002",
    "too-few-points",
    "warning",
    "The dataset-Q curve has too few finite points to judge its shape.",
    family="data",
    params=(
        Param(
            "min_points",
            20,
            "int",
            "fewest finite dataset-Q points for the shape checks",
            "convention: the change-point search needs >= 2 segments of min_size 5 plus a smoothing "
            "warm-up; below ~20 points a rise-peak-decline cannot be told from noise",
        ),
    ),
    detects="Fewer than `min_points` finite dataset-Q points.",
    why="A peak and a sustained decline (Metric 3.1) need enough points on both sides of the peak; "
    "with a handful of points every shape fits the noise.",
    example="`DQ002 too-few-points: dataset Q has 8 finite points (< 20): verdict inconclusive`",
    remediation="Log the dataset Q more often (e.g. every epoch or every 1000 gradient steps), or "
    "train longer before diagnosing.",
)
def too_few_points(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    if a.q is None:
        return []
    n = int(np.isfinite(a.q.values).sum())
    if n >= int(ctx.params["min_points"]):
        return []
    return [
        ctx.finding(
            f"{a.q_name} has {n} finite points (< {ctx.params['min_points']}): shape checks inconclusive",
            evidence={"points": n, "min_points": ctx.params["min_points"], "metric": a.q_name},
        )
    ]


@rule(
    "DQ003",
    "proxy-metric",
    "info",
    "The dataset Q is read through a proxy (TD target or policy-action Q), not logged directly.",
    family="data",
    detects="The series used as dataset Q is `q_target` or `q_policy`, or a `q_data` series that "
    "ingestion marked as a proxy.",
    why="Metric 3.1 is about E_D[Q(s,a)] on dataset actions. The TD target r + gamma Q'(s',a') over "
    "dataset transitions tracks it closely when TD error is small; Q(s, pi(s)) tracks it only "
    "as well as pi stays near the data, so its peak can sit elsewhere. Verdicts built on a proxy "
    "say so.",
    example="`DQ003 proxy-metric: dataset Q read from q_policy (offrl/q_policy): Q(s, pi(s)) stands in "
    "for E_D[Q(s,a)]`",
    remediation="Log the mean Q over dataset (s, a) pairs (`offrl/q_data` in the reference trainer; "
    "d3rlpy/rlkit users can add it to their critic update).",
)
def proxy_metric(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    if a.q is None or not a.q_is_proxy:
        return []
    what = {
        "q_target": "the TD target r + gamma Q'(s', a') stands in for E_D[Q(s,a)]",
        "q_policy": "Q(s, pi(s)) stands in for E_D[Q(s,a)]",
    }.get(a.q_name or "", a.q.note or "a proxy stands in for E_D[Q(s,a)]")
    return [
        ctx.finding(
            f"dataset Q read from {a.q_name} ({a.q.source}): {what}",
            evidence={"metric": a.q_name, "source": a.q.source, "kind": a.q.kind},
        )
    ]


@rule(
    "DQ004",
    "warm-start-skipped",
    "info",
    "The rules read the run after the actor's behaviour-cloning warm start.",
    family="data",
    detects="The run's config names a BC warm start (`bc_steps`, `policy_eval_start`, or `warm_start` in a "
    "`runs:` override) and setting `analysis.skip_warm_start` is on: dataset Q, TD error and the regularizer "
    "are read from the first logged step after it (when at least 20 dataset-Q points remain; else the whole "
    "run is read and this finding says so).",
    why="During the warm start the actor imitates the data and ignores Q, so the critic's curve there is a "
    "transient of that phase: with CQL, dataset Q can dip below its feasible range and TD error grow, then "
    "both recover when the actor starts following Q. Metric 3.1 reads the trend of the training that follows; "
    "a dip counted as 'the rise before the peak' or as divergence would hide it (docs/closed_loop.md).",
    example="`DQ004 warm-start-skipped: rules read steps after 4000 (BC warm start, config.json:bc_steps); "
    "dataset Q there ranged -7.1 to 0.5`",
    remediation="Nothing to fix. To read the whole run, set `analysis: {skip_warm_start: false}` in a rules "
    "file, or `runs: [{match: '*', warm_start: 0}]`.",
)
def warm_start_skipped(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    e = a.eff
    if not e.warm_start:
        return []
    src = e.warm_start_source or "config"
    full = a.run.series.get(a.q_name or "")
    if full is not None and len(full) and int(full.steps[-1]) <= e.warm_start:
        return [
            ctx.finding(
                f"the run ended at {a.run.x_unit} {int(full.steps[-1])}, inside its BC warm start of {e.warm_start} "
                f"({src}): the actor only imitated the data and no conservative Q-maximising update happened, "
                "so there is nothing to judge yet",
                evidence={
                    "warm_start": e.warm_start,
                    "source": src,
                    "skipped": False,
                    "ended_in_warm_start": True,
                },
                level="warning",
            )
        ]
    if a.read_after is None:
        if a.q is None:
            return []
        return [
            ctx.finding(
                f"BC warm start of {e.warm_start} ({src}) not skipped: fewer than {MIN_POINTS_AFTER_WARM_START} "
                "dataset-Q points after it, "
                "so the rules read the whole run",
                evidence={"warm_start": e.warm_start, "source": src, "skipped": False},
            )
        ]
    extra = ""
    ev: dict = {"warm_start": e.warm_start, "source": src, "skipped": True}
    if full is not None:
        inside = full.values[(full.steps <= a.read_after) & np.isfinite(full.values)]
        if inside.size:
            lo, hi = float(inside.min()), float(inside.max())
            extra = f"; {a.q_name} there ranged {lo:.3g} to {hi:.3g}"
            ev.update({"q_min_in_warm_start": lo, "q_max_in_warm_start": hi})
    unit = a.run.x_unit
    return [
        ctx.finding(
            f"rules read {unit}s after {a.read_after} (BC warm start, {src}){extra}",
            evidence=ev,
            steps=(int(full.steps[0]) if full is not None and len(full) else 0, int(a.read_after)),
        )
    ]


#: rollout scores, not training metrics: NaN there means "not evaluated at that step"
_EVAL_METRICS = ("eval_return", "eval_success")


@rule(
    "NF001",
    "non-finite-values",
    "error",
    "NaN or Inf in training metrics (with the first bad step).",
    family="stability",
    detects="Any NaN/Inf in a canonical training metric. Error when the values stay non-finite to the end of "
    "the run or include +-Inf (training broke); a warning for NaN gaps the run recovers from "
    "(a logger hiccup), which smoothing skips. NaN/empty evaluation columns (eval_return, eval_success) are "
    "reported as 'not evaluated' (info): loggers write a row per update and leave the evaluation cell empty.",
    why="A critic that produced NaN/Inf has stopped learning; its curves after that step carry no "
    "information about over- or underfitting, so a verdict on them would be invented.",
    example="`NF001 non-finite-values: q_data non-finite from step 143000 to the end (57 of 200 points; "
    "first value inf)`",
    remediation="Restart from the last finite checkpoint with a lower critic learning rate "
    "(`offrl-train ... --q-lr 1e-4`), gradient clipping, or a larger CQL alpha "
    "(`offrl-train ... --cql-alpha 5`); check the data for NaN rewards/observations.",
)
def non_finite(ctx: Context) -> list[Finding]:
    out: list[Finding] = []
    for name, s in sorted(ctx.run.series.items()):
        bad = ~np.isfinite(s.values)
        if not bad.any():
            continue
        if name in _EVAL_METRICS:
            what = "in every row" if bad.all() else f"at {int(bad.sum())} of {len(s)} steps"
            out.append(
                ctx.finding(
                    f"{name} is empty/NaN {what}: read as 'not evaluated there', not as a training failure",
                    evidence={
                        "metric": name,
                        "bad_points": int(bad.sum()),
                        "points": len(s),
                        "evaluation": True,
                    },
                    level="info",
                )
            )
            continue
        idx = np.flatnonzero(bad)
        first = int(idx[0])
        inf = bool(np.isinf(s.values).any())
        persistent = bool(bad[-1])
        level = "error" if (persistent or inf) else "warning"
        tail = "to the end" if persistent else "in gaps the run recovers from"
        first_val = s.values[first]
        out.append(
            ctx.finding(
                f"{name} non-finite from step {int(s.steps[first])} {tail} ({int(bad.sum())} of {len(s)} "
                f"points; first value {first_val})",
                evidence={
                    "metric": name,
                    "first_bad_step": int(s.steps[first]),
                    "bad_points": int(bad.sum()),
                    "points": len(s),
                    "has_inf": inf,
                    "persistent": persistent,
                    "first_value": str(first_val),
                },
                steps=(int(s.steps[first]), int(s.steps[-1])),
                level=level,  # type: ignore[arg-type]
            )
        )
    return out
