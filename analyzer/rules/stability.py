"""Beyond the paper: Q divergence and a mis-set CQL alpha (too low: overestimation; too high: collapse)."""

from __future__ import annotations

import numpy as np

from analyzer.report import Finding
from analyzer.rules.base import Context, Param, fmt, rule
from analyzer.signal import finite, tail_level, tail_trend


@rule(
    "DV001",
    "q-divergence",
    "error",
    "Dataset Q leaves the feasible range by a wide margin, or grows explosively.",
    family="stability",
    params=(
        Param(
            "margin_fraction",
            0.5,
            "positive",
            "how far beyond the feasible Q bounds (as a fraction of the Q range) counts as divergence",
            "convention: function approximation overshoots a little; 50% of the whole range beyond "
            "a bound is not an estimation error any more",
        ),
        Param(
            "growth_factor",
            10.0,
            "positive",
            "without a known range: median |Q| over the last quarter vs the second quarter",
            "convention: an order of magnitude in half a run while still rising is exponential growth, "
            "not learning (a 1-exp rise gains far less after its first quarter)",
        ),
    ),
    detects="With reward range and horizon/gamma known: the smoothed dataset Q goes beyond "
    "[Q_lo - m, Q_hi + m], Q_lo/Q_hi = r_min/r_max x H (or one step), m = `margin_fraction` x range. "
    "Without them: median |Q| of the last quarter >= `growth_factor` x that of the second quarter and "
    "still rising.",
    why="Q values no policy can attain mean the Bellman backups are diverging (deadly triad, too small "
    "alpha, too large learning rate). Over/underfitting readings assume a critic that tracks its "
    "objective, so the verdict is inconclusive until this is fixed.",
    example="`DV001 q-divergence: q_data reaches 412 at step 180000, beyond the feasible maximum 30 (+15 margin)`",
    remediation="Raise CQL alpha (`offrl-train ... --cql-alpha 5`), lower the critic learning rate "
    "(`q_lr: 1e-4` in an `offrl-train --config` file), use a slower target update (tau 5e-3), check the reward scale.",
)
def q_divergence(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    if a.q is None or a.q_smooth is None:
        return []
    s, v = finite(a.q.steps, a.q_smooth)
    if s.size < 4:
        return []
    e = a.eff
    if e.q_lo is not None and e.q_hi is not None and e.q_range:
        m = float(ctx.params["margin_fraction"]) * e.q_range
        hi_idx = np.flatnonzero(v > e.q_hi + m)
        lo_idx = np.flatnonzero(v < e.q_lo - m)
        if hi_idx.size or lo_idx.size:
            first = int(min(hi_idx[0] if hi_idx.size else s.size, lo_idx[0] if lo_idx.size else s.size))
            ext = float(np.max(v)) if hi_idx.size else float(np.min(v))
            side = f"maximum {fmt(e.q_hi)}" if hi_idx.size else f"minimum {fmt(e.q_lo)}"
            return [
                ctx.finding(
                    f"{a.q_name} reaches {fmt(ext)} (first beyond the margin at {a.run.x_unit} {int(s[first])}), "
                    f"beyond the feasible {side} (+-{fmt(m)} margin): Q is diverging",
                    evidence={
                        "extreme": ext,
                        "first_step": int(s[first]),
                        "q_lo": e.q_lo,
                        "q_hi": e.q_hi,
                        "margin": m,
                        "mode": "range",
                    },
                    steps=(int(s[first]), int(s[-1])),
                )
            ]
        return []
    n = s.size
    q2 = np.median(np.abs(v[n // 4 : n // 2])) if n >= 8 else np.nan
    q4 = np.median(np.abs(v[3 * n // 4 :]))
    tr = tail_trend(s, v, 0.25)
    if not np.isfinite(q2) or q2 <= 0 or tr is None:
        return []
    growth = float(q4 / q2)
    rising = tr.slope * np.sign(v[-1]) > 0
    if growth >= float(ctx.params["growth_factor"]) and rising:
        return [
            ctx.finding(
                f"|{a.q_name}| grew {growth:.0f}x from the second to the last quarter of the run and is still "
                "growing: Q is diverging (no reward range known to check against)",
                evidence={
                    "growth": growth,
                    "q_second_quarter": float(q2),
                    "q_last_quarter": float(q4),
                    "mode": "growth",
                },
                steps=(int(s[n // 4]), int(s[-1])),
            )
        ]
    return []


@rule(
    "CQ001",
    "alpha-too-low",
    "warning",
    "Signs of Q overestimation: CQL alpha may be too low.",
    family="stability",
    params=(
        Param(
            "policy_gap_fraction",
            0.2,
            "fraction",
            "Q(s, pi(s)) above dataset Q by this fraction of the Q range counts as overestimation",
            "heuristic: CQL is meant to keep policy-action Q at or below dataset Q; a gap of 20% of the "
            "whole range at the end of training is large",
        ),
    ),
    detects="(a) the final smoothed dataset Q above the feasible maximum r_max x H (but not by the "
    "DV001 margin), or (b) final q_policy - q_data >= `policy_gap_fraction` x Q range. CQL only.",
    why="CQL's regularizer exists to stop OOD actions being overvalued; Q above what any policy can "
    "earn, or policy actions valued far above dataset actions, means it is too weak (paper Section 3: "
    "a large regularizer/overestimation goes with underfitting, not overfitting).",
    example="`CQ001 alpha-too-low: q_policy exceeds q_data by 9.1 (30% of the Q range 30) over the last 20%`",
    remediation="Raise alpha (`offrl-train ... --cql-alpha 5`, or CQL-Lagrange with a target gap) and re-check; "
    "if TD error is also large, treat as underfitting first.",
)
def alpha_too_low(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    e = a.eff
    if a.q is None or a.q_smooth is None or (a.run.metadata.algorithm or "cql").lower() == "brac":
        return []
    level = tail_level(a.q.steps, a.q_smooth, a.tail_fraction)
    out: list[Finding] = []
    if e.q_hi is not None and np.isfinite(level) and level > e.q_hi:
        out.append(
            ctx.finding(
                f"{a.q_name} ends at {fmt(level)}, above the feasible maximum {fmt(e.q_hi)} (r_max x H): "
                "Q is overestimated",
                evidence={"q_tail_level": level, "q_hi": e.q_hi, "mode": "above-max"},
            )
        )
    qp = a.run.series.get("q_policy")
    if qp is not None and a.q_name != "q_policy" and e.q_range:
        lp = tail_level(qp.steps, qp.values, a.tail_fraction)
        gap = lp - level
        thr = float(ctx.params["policy_gap_fraction"]) * e.q_range
        if np.isfinite(gap) and gap >= thr:
            out.append(
                ctx.finding(
                    f"q_policy exceeds {a.q_name} by {fmt(gap)} ({gap / e.q_range:.0%} of the Q range "
                    f"{fmt(e.q_range)}) over the last {a.tail_fraction:.0%}: policy actions overvalued",
                    evidence={
                        "q_policy_tail": lp,
                        "q_data_tail": level,
                        "gap": gap,
                        "threshold": thr,
                        "mode": "policy-gap",
                    },
                )
            )
    return out


@rule(
    "CQ002",
    "alpha-too-high",
    "warning",
    "Signs of Q collapse: CQL alpha may be too high (dataset Q far below the MC return, gap tiny).",
    family="stability",
    params=(
        Param(
            "collapse_fraction",
            0.25,
            "fraction",
            "dataset Q below the dataset MC return by this fraction of the Q range (or of |MC return|)",
            "heuristic: a quarter of the range below a lower bound CQL should respect (Theorem A.1)",
        ),
        Param(
            "tiny_gap_fraction",
            0.01,
            "fraction",
            "CQL gap at or below this fraction of the Q range counts as 'tiny' (policy ~ behaviour cloning)",
            "heuristic: the conservative term has squeezed OOD actions to dataset values",
        ),
    ),
    detects="Known `dataset_mc_return`: final dataset Q below it by `collapse_fraction` of the Q range "
    "and, when logged, the CQL gap at or below `tiny_gap_fraction` of the range. CQL only.",
    why="With a huge alpha the conservative term dominates: all Q values are pushed down together, "
    "the gap between OOD and dataset actions vanishes and the policy degenerates to behaviour cloning. "
    "Dataset Q far under the MC return is the visible sign (Theorem A.1 says it should not go below).",
    example="`CQ002 alpha-too-high: q_data ends at -3.2, 7.2 below the dataset MC return 4.0; cql_gap 0.05`",
    remediation="Lower alpha (`offrl-train ... --cql-alpha 0.5`), or use CQL-Lagrange with a target gap.",
)
def alpha_too_high(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    e = a.eff
    mc = e.dataset_mc_return
    if (
        a.q is None
        or a.q_smooth is None
        or mc is None
        or (a.run.metadata.algorithm or "cql").lower() == "brac"
    ):
        return []
    level = tail_level(a.q.steps, a.q_smooth, a.tail_fraction)
    scale = e.q_range if e.q_range else abs(mc)
    if not np.isfinite(level) or scale <= 0 or mc - level < float(ctx.params["collapse_fraction"]) * scale:
        return []
    ev = {"q_tail_level": level, "dataset_mc_return": mc, "shortfall": mc - level, "scale": scale}
    msg = f"{a.q_name} ends at {fmt(level)}, {fmt(mc - level)} below the dataset MC return {fmt(mc)}"
    if a.reg is not None and a.reg_name != "brac_divergence":
        g = tail_level(a.reg.steps, a.reg.values, a.tail_fraction)
        ev["gap_tail"] = g
        if not (np.isfinite(g) and g <= float(ctx.params["tiny_gap_fraction"]) * scale):
            return []
        msg += f"; {a.reg_name} {fmt(g)} is tiny"
    else:
        ev["gap_tail"] = None
        msg += " (no CQL gap logged to confirm)"
    return [ctx.finding(msg + ": Q collapsed, alpha too high", evidence=ev)]
