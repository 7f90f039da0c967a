"""Overfitting rules (paper Metric 3.1 and the Theorem A.1 reading of a low dataset Q)."""

from __future__ import annotations

import numpy as np

from analyzer.report import Finding
from analyzer.rules.base import Analysis, Context, Param, fmt, rule
from analyzer.rules.evidence import OF001Evidence
from analyzer.selection import DRIFT_TOLERANCE, drift_alarm
from analyzer.signal import tail_level, tail_trend


@rule(
    "OF001",
    "q-peak-decline",
    "warning",
    "Dataset Q rises, peaks, then declines significantly and for good (Metric 3.1: overfitting).",
    family="overfitting",
    params=(
        Param(
            "min_drop_fraction",
            0.2,
            "fraction",
            "drop from the peak to the final level, as a fraction of the rise before the peak",
            "paper Fig. 3/9: overfitting runs lose 30-90% of their rise; 0.2 keeps a margin below "
            "that and above plateau wobble (validated in docs/validation.md)",
        ),
        Param(
            "min_drop_noise",
            3.0,
            "positive",
            "drop must also exceed this many noise standard deviations of the smoothed dataset Q "
            "(raw robust sigma x the smoother's measured gain)",
            "3-sigma convention on the curve the drop is measured on; the smoothed maximum of a noisy "
            "plateau sits ~1.5-2.5 of these sigmas above its median (validation: docs/validation.md)",
        ),
        Param(
            "max_switch_share",
            0.5,
            "fraction",
            "after a warm start: the largest share of the peak's height above the last warm-start point that "
            "may have come in the first logging interval after the switch",
            "real logs (docs/validation.md, Real logs): official-CQL runs on D4RL log every 10k steps, and "
            "73% of halfcheetah-medium-expert's post-switch rise is one interval; the 'peak' 70k steps later "
            "is that jump's overshoot (eval there 135 vs 3,019 at the end), while our closed-loop runs, logged "
            "every 100 steps, rise gradually (share < 10%) to peaks that are the right pick",
        ),
        Param(
            "overshoot_window",
            0.2,
            "fraction",
            "and the peak comes within this share of the run after the switch (an overshoot follows its step "
            "within a few critic time constants; a peak long after it had a rise of its own)",
            "real logs: the rlkit overshoot peaks at 7% of the post-switch run; our closed-loop peaks come at "
            "25-40% of it after a gradual rise",
        ),
        Param(
            "min_after_fraction",
            0.1,
            "fraction",
            "the decline must last at least this share of the run (by step) after the peak",
            "convention: a decline in the last 10% of a run cannot be told from a dip",
        ),
        Param(
            "min_after_points",
            5,
            "int",
            "and at least this many logged points after the peak",
            "same minimum segment size as the change-point search",
        ),
        Param(
            "max_recovery",
            0.5,
            "fraction",
            "largest share of the drop the curve may win back by the end and still count as sustained",
            "convention: a curve that regains more than half of its dip is a dip, not a decline",
        ),
    ),
    detects="On the smoothed dataset-Q curve (zero-phase EMA): the maximum is preceded by a rise, "
    "followed by a drop to the final level of at least `min_drop_fraction` of the rise and "
    "`min_drop_noise` smoothed-noise sigmas, lasting `min_after_fraction` of the run, with at most "
    "`max_recovery` of the drop regained at the end. Supporting evidence (reported, not required): "
    "the regularizer is low or falling and the TD error is low (paper Section 3, Fig. 4).",
    why="Metric 3.1: 'a low average data Q-value that decreases with more gradient steps indicates "
    "that the offline RL algorithm is overfitting'. CQL pushes down Q on actions from mu(a|s); once "
    "the policy is better than the behaviour policy by the learned Q, dataset Q falls (Theorem A.1).",
    example="`OF001 q-peak-decline: q_data peaked at 7.9 at step 61000, then fell to 3.2 (drop 4.7 = 59% "
    "of the rise 7.9; 40x smoothed-noise sigma 0.12) over the last 70% of the run`",
    remediation="Deploy the checkpoint at the peak (Guideline 3.1). Then add capacity-decreasing "
    "regularization (Guideline 4.1): dropout 0.1-0.3 (`offrl-train ... --dropout 0.2`), VIB "
    "beta ~1e-3 (`--vib 1e-3`), l2 1e-4 (`--l2 1e-4`), or train fewer gradient steps.",
)
def q_peak_decline(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    p = a.peak
    if a.q is None or p is None or a.q_smooth is None:
        return []
    if int(np.isfinite(a.q.values).sum()) < 2 * int(ctx.params["min_after_points"]) + 1:
        return []
    sigma = a.q_sigma_smooth
    thr_noise = float(ctx.params["min_drop_noise"]) * sigma
    drop_fraction = p.drop / p.rise if p.rise > 0 else 0.0
    ev: OF001Evidence = {
        "metric": a.q_name,
        "peak_step": p.step,
        "peak_value": p.value,
        "rise": p.rise,
        "final_level": p.end_value,
        "drop": p.drop,
        "drop_fraction_of_rise": drop_fraction,
        "noise_sigma_smoothed": sigma,
        "noise_sigma_raw": a.q_sigma,
        "drop_in_sigmas": p.drop / sigma if sigma > 0 else None,
        "after_fraction": p.after_fraction,
        "after_points": p.after_points,
        "recovery": p.recovery,
        "x_unit": a.run.x_unit,
    }
    eps = 1e-9 * max(1.0, abs(p.value))  # floating-point noise on a constant curve is no rise/drop
    if p.rise < thr_noise or p.rise <= eps or p.drop <= eps:
        return []  # no rise: Metric 3.1's non-monotonic trend is absent
    significant = p.drop >= float(ctx.params["min_drop_fraction"]) * p.rise and p.drop >= thr_noise
    if not significant:
        return []
    overshoot = _switch_overshoot(
        a,
        p.step,
        p.value,
        float(ctx.params["max_switch_share"]),
        float(ctx.params["overshoot_window"]),
        thr_noise,
    )
    if overshoot is not None:
        ev.update(overshoot)
        ev["sustained"] = False
        unit = a.run.x_unit
        return [
            ctx.finding(
                f"{a.q_name} peaked at {unit} {p.step}, but {overshoot['switch_share']:.0%} of its rise since the "
                f"warm start ended ({unit} {overshoot['switch_step']}) came in one logging interval: the peak is "
                "the overshoot of the switch from imitation to Q-maximisation, not overfitting",
                evidence=ev,
                level="info",
            )
        ]
    sustained = (
        p.after_fraction >= float(ctx.params["min_after_fraction"])
        and p.after_points >= int(ctx.params["min_after_points"])
        and p.recovery <= float(ctx.params["max_recovery"])
    )
    unit = a.run.x_unit
    if not sustained:
        why = (
            f"regained {p.recovery:.0%} of the drop"
            if p.recovery > float(ctx.params["max_recovery"])
            else f"only {p.after_fraction:.0%} of the run / {p.after_points} points after the peak"
        )
        ev["sustained"] = False
        return [
            ctx.finding(
                f"{a.q_name} dipped after a peak at {unit} {p.step} but the decline is not sustained ({why}): "
                "not counted as overfitting",
                evidence=ev,
                level="info",
            )
        ]
    ev["sustained"] = True
    support: list[str] = []
    tf = a.tail_fraction
    if a.reg is not None:
        tr = tail_trend(a.reg.steps, a.reg.values, 0.5)
        if tr is not None:
            ev["regularizer"] = a.reg_name
            ev["regularizer_tail_level"] = tr.level
            ev["regularizer_relative_change_last_half"] = tr.relative
            if tr.relative < 0:
                support.append(f"{a.reg_name} falling ({tr.relative:+.0%} over the last half)")
    if a.td is not None:
        td_level = tail_level(a.td.steps, a.td.values, tf)
        ev["td_error_tail_level"] = td_level
        if a.eff.H is not None and a.eff.q_range and np.isfinite(td_level):
            rel = np.sqrt(max(td_level, 0.0)) * a.eff.H / a.eff.q_range
            ev["td_rms_error_over_q_range"] = rel
            if rel < 0.5:
                support.append(f"TD error low (rms x H = {rel:.0%} of the Q range)")
    ev["supporting"] = support
    msg = (
        f"{a.q_name} peaked at {fmt(p.value)} at {unit} {p.step}, then fell to {fmt(p.end_value)} "
        f"(drop {fmt(p.drop)} = {drop_fraction:.0%} of the rise {fmt(p.rise)}; "
        f"{p.drop / sigma:.0f}x smoothed-noise sigma {fmt(sigma)}) over the last {p.after_fraction:.0%} of the run"
        if sigma > 0
        else f"{a.q_name} peaked at {fmt(p.value)} at {unit} {p.step}, then fell to {fmt(p.end_value)} "
        f"(drop {fmt(p.drop)} = {drop_fraction:.0%} of the rise {fmt(p.rise)}) over the last "
        f"{p.after_fraction:.0%} of the run"
    )
    if support:
        msg += "; supporting: " + ", ".join(support)
    return [ctx.finding(msg, evidence=ev, steps=(p.step, int(a.q.steps[-1])))]


def _switch_overshoot(
    a: Analysis, peak_step: int, peak_value: float, max_share: float, window: float, noise: float
) -> OF001Evidence | None:
    """Evidence that the dataset-Q peak is the overshoot of a warm-start switch, or None.

    When the actor switches from behaviour cloning to maximising Q, the critic re-fits to the new policy;
    with sparse logging that re-fit is one abrupt step of dataset Q, after which the curve overshoots and
    settles. A peak whose height above the warm-start level came mostly in that step is the settling of a
    regime change, not Metric 3.1's gradual rise and fall.
    """
    if a.switch is None:
        return None
    step, before, first = a.switch
    total = peak_value - before
    jump = first - before
    if total <= 0 or jump <= max(noise, 0.0) or jump < max_share * total:
        return None
    if a.q is None or peak_step - step > window * (int(a.q.steps[-1]) - step):
        return None  # a peak long after the switch followed a rise of its own: read it as Metric 3.1's
    return {
        "switch_step": step,
        "switch_jump": jump,
        "rise_since_switch": total,
        "switch_share": jump / total,
    }


@rule(
    "OF002",
    "q-below-mc-return",
    "warning",
    "Dataset Q ends below the dataset's Monte-Carlo return (Theorem A.1 reading).",
    family="overfitting",
    params=(
        Param(
            "margin_noise",
            2.0,
            "positive",
            "Q must sit below the MC return by at least this many noise sigmas",
            "2-sigma convention on the tail median",
        ),
        Param(
            "margin_fraction",
            0.05,
            "fraction",
            "and by at least this fraction of the feasible Q range (or of |MC return| without one)",
            "convention: ignore gaps smaller than 5% of what Q can span",
        ),
    ),
    detects="Known `dataset_mc_return` (same discounting as Q) and a final smoothed dataset Q below it "
    "by `margin_noise` sigmas and `margin_fraction` of the Q range. CQL only (BRAC has no such bound).",
    why="Paper Section 3 and Theorem A.1: CQL's objective also maximizes dataset Q, so in principle it "
    "should not learn dataset Q values below the dataset's Monte-Carlo return; Q can only fall when "
    "the learned policy beats the behaviour policy under the learned Q. Dataset Q below the MC return "
    "means Q on mu-sampled actions is pushed down hard (over-minimization) - the mechanism of "
    "overfitting, and with a large alpha, of collapse (CQ002).",
    example="`OF002 q-below-mc-return: q_data ends at 2.1, below the dataset MC return 4.0 by 1.9 (6x sigma)`",
    remediation="Read with OF001: together they confirm overfitting (pick the peak checkpoint, add "
    "dropout/VIB). Without a decline, check CQ002 (alpha too high). Make sure the MC return uses the "
    "same gamma and reward scale as training.",
)
def q_below_mc_return(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    mc = a.eff.dataset_mc_return
    if a.q is None or a.q_smooth is None or mc is None:
        return []
    if (a.run.metadata.algorithm or "cql").lower() == "brac":
        return []
    level = tail_level(a.q.steps, a.q_smooth, a.tail_fraction)
    if not np.isfinite(level):
        return []
    scale = a.eff.q_range if a.eff.q_range else abs(mc)
    margin = max(float(ctx.params["margin_noise"]) * a.q_sigma, float(ctx.params["margin_fraction"]) * scale)
    gap = mc - level
    if gap < margin:
        return []
    return [
        ctx.finding(
            f"{a.q_name} ends at {fmt(level)}, below the dataset Monte-Carlo return {fmt(mc)} by {fmt(gap)} "
            f"(margin {fmt(margin)}): CQL should not learn dataset Q below the MC return (Theorem A.1), so Q "
            "is being over-minimized",
            evidence={"q_tail_level": level, "dataset_mc_return": mc, "gap": gap, "margin": margin},
            steps=(int(a.q.steps[0]), int(a.q.steps[-1])),
        )
    ]


@rule(
    "OF003",
    "q-falls-from-start",
    "warning",
    "Dataset Q never rises: it falls from the start of the run, significantly and for good.",
    family="overfitting",
    params=(
        Param(
            "min_drop_noise",
            3.0,
            "positive",
            "the fall from the first smoothed value to the final level, in smoothed-noise sigmas",
            "same 3-sigma convention as OF001",
        ),
        Param(
            "min_drop_fraction",
            0.1,
            "fraction",
            "and at least this fraction of the largest |dataset Q| seen (scale-free size of the fall)",
            "heuristic: a 10% fall of the Q scale is visible on any plot; smaller falls are wobble",
        ),
    ),
    detects="The smoothed dataset Q has no rise before its maximum (OF001 does not apply) and ends at least "
    "`min_drop_noise` smoothed-noise sigmas and `min_drop_fraction` of its scale below its first value. Not "
    "when the rewards are negative (r_max <= 0 or a negative logged mean reward) and Q ends inside the feasible "
    "range: a critic initialised near 0 falls to a negative true value by learning; nor when Q jumped up at a "
    "warm-start switch and ends above its level before the switch: that is the jump's overshoot settling.",
    why="OF001 needs a rise before the decline, so a curve that only falls would otherwise read as 'held'. "
    "Metric 3.1 calls 'a low average data Q-value that decreases with more gradient steps' overfitting, "
    "but with no peak Guideline 3.1's pick has nothing to stand on; in our closed loop (docs/closed_loop.md) "
    "this shape came with CQL runs whose policy collapsed. Reported so the run is not called healthy.",
    example="`OF003 q-falls-from-start: q_data fell from 0.14 to -29.8 without rising first (212 smoothed-noise "
    "sigmas)`",
    remediation="Check CQL alpha (CQ002: too high pushes dataset Q down), the reward scale and the warm start; "
    "evaluate the earliest checkpoints if you can. Capacity-decreasing regularization (Guideline 4.1) if the "
    "fall is overfitting.",
)
def q_falls_from_start(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    p = a.peak
    if a.q is None or p is None or a.q_smooth is None:
        return []
    s, v = a.q.steps, a.q_smooth
    finite = np.isfinite(v)
    if int(finite.sum()) < 5:
        return []
    sigma = a.q_sigma_smooth
    if p.rise > float(ctx.params["min_drop_noise"]) * sigma and p.rise > 0:
        return []  # it rose first: OF001's reading applies
    first = float(v[finite][0])
    fall = first - p.end_value
    e = a.eff
    negative = (e.reward_range is not None and e.reward_range[1] <= 0) or (
        e.reward_mean is not None and e.reward_mean < 0
    )
    if negative and (e.q_lo is None or p.end_value >= e.q_lo - 0.5 * (e.q_range or 0.0)):
        return []  # rewards are negative: Q falling from its ~0 initialisation to a negative value is learning
    if a.switch is not None and a.switch[2] > a.switch[1] and p.end_value >= a.switch[1]:
        return []  # Q jumped at the warm-start switch and settles back, still above its level before it
    scale = float(np.nanmax(np.abs(v[finite])))
    big = (
        fall >= float(ctx.params["min_drop_noise"]) * sigma
        and fall >= float(ctx.params["min_drop_fraction"]) * scale
    )
    if not (fall > 0 and big):
        return []
    ev = {
        "metric": a.q_name,
        "first_value": first,
        "final_level": p.end_value,
        "fall": fall,
        "fall_in_sigmas": fall / sigma if sigma > 0 else None,
        "noise_sigma_smoothed": sigma,
    }
    return [
        ctx.finding(
            f"{a.q_name} fell from {fmt(first)} to {fmt(p.end_value)} without rising first"
            + (f" ({fall / sigma:.0f} smoothed-noise sigmas)" if sigma > 0 else ""),
            evidence=ev,
            steps=(int(s[finite][0]), int(s[finite][-1])),
        )
    ]


@rule(
    "OF004",
    "policy-left-data",
    "warning",
    "The policy walked away from the dataset's actions after the warm start (collapse early warning).",
    family="overfitting",
    params=(
        Param(
            "tolerance",
            DRIFT_TOLERANCE,
            "positive",
            "the alarm fires when policy_data_distance exceeds (1 + tolerance) x its lowest value so far",
            "closed loop (docs/selection.md): chosen on development seeds from 0.1-1.0; the policy's BC distance "
            "rises by 1.4-1.7x when CQL takes over and by 2-2.7x where success collapses",
        ),
    ),
    detects="The run logs `policy_data_distance_holdout` or `policy_data_distance` (the held-out reading first; the mean squared distance of the policy's action from the "
    "dataset action; our trainer, or any framework logging it under that name) and, after the BC warm start, "
    "it rises above (1 + `tolerance`) x the lowest value it had reached. Read causally: the step named is the "
    "first logged point at which the alarm could have been raised.",
    why="In the closed loop, success collapses when the policy leaves the data after the warm-start switch — "
    "while dataset Q keeps rising, because the critic values the new out-of-distribution actions. The "
    "distance shows the walk as it starts; the checkpoint before it is `offrl-select`'s `drift` pick "
    "(held-out regret and recall of this warning in docs/selection.md).",
    example="`OF004 policy-left-data: policy_data_distance 0.19 at step 4300 is 2.4x its lowest (0.08 at step "
    "4000): the policy is leaving the data; deploy a checkpoint at or before step 4000 (offrl-select --method "
    "drift)`",
    remediation="Deploy a checkpoint from before the alarm (`offrl-select RUN`); to keep the policy near the "
    "data, raise CQL's alpha / BRAC's penalty or lower the policy learning rate.",
)
def policy_left_data(ctx: Context) -> list[Finding]:
    run = ctx.run
    # the held-out reading first: BC fits training states closest, so ratios to the training-batch minimum are inflated
    name = (
        "policy_data_distance_holdout"
        if run.series.get("policy_data_distance_holdout")
        else "policy_data_distance"
    )
    d = run.series.get(name)
    if d is None or not len(d):
        return []
    ws = ctx.analysis.eff.warm_start or 0
    alarm = drift_alarm(d.steps, d.values, int(ws), float(ctx.params["tolerance"]))
    if alarm is None:
        return []
    unit = run.x_unit
    before = [int(c.step) for c in run.checkpoints if c.step < alarm.step]
    keep = before[-1] if before else None
    where = (
        f"deploy a checkpoint at or before {unit} {keep}" if keep is not None else "no checkpoint precedes it"
    )
    return [
        ctx.finding(
            f"{name} {alarm.distance:.3g} at {unit} {alarm.step} is "
            f"{alarm.distance / alarm.lowest:.2g}x its lowest ({alarm.lowest:.3g} at {unit} {alarm.lowest_step}): "
            f"the policy is leaving the data; {where} (offrl-select --method drift)",
            evidence={
                "metric": name,
                "alarm_step": alarm.step,
                "keep_step": keep,
                "distance": alarm.distance,
                "lowest": alarm.lowest,
                "lowest_step": alarm.lowest_step,
                "ratio": alarm.distance / alarm.lowest if alarm.lowest > 0 else float("inf"),
            },
            steps=(alarm.lowest_step, alarm.step),
        )
    ]
