"""Beyond the paper: Q divergence and a mis-set CQL alpha (too low: overestimation; too high: collapse)."""

from __future__ import annotations

import numpy as np

from analyzer.report import Finding
from analyzer.rules.base import Context, Param, fmt, rule
from analyzer.signal import finite, tail_level, tail_trend

#: critic signals whose growth by orders of magnitude means the critic diverged (the CQL Lagrange weight is
#: left out: its dual ascent may legitimately grow it by orders of magnitude)
_GROWTH_SIGNALS = ("critic_loss", "td_error", "temperature")


def orders(ratio: float) -> str:
    """A growth factor as a person reads it: `12x`, `3.4e5x` (never `12x` for 1e10)."""
    if not np.isfinite(ratio):
        return "infinitely"
    if ratio < 1000:
        return f"{ratio:.0f}x"
    exp = int(np.floor(np.log10(ratio)))
    mant = ratio / 10**exp
    return f"{mant:.1f}e{exp}x"


def _growth(steps: np.ndarray, values: np.ndarray) -> dict | None:
    """How far |x| rose above its early level: baseline = median |x| over the first quarter (first point
    left out: the first updates move every curve from its initialisation), peak = max |x| after it, onset =
    first step where |x| exceeds 10x the baseline. None with too few points or a zero baseline."""
    s, v = finite(steps, values)
    n = s.size
    if n < 8:
        return None
    a = np.abs(v)
    base = float(np.median(a[1 : max(2, n // 4)]))
    if not base > 0:
        return None
    i = int(np.argmax(a))
    over = np.flatnonzero(a > 10.0 * base)
    return {
        "baseline": base,
        "peak": float(v[i]),
        "peak_step": int(s[i]),
        "growth": float(a[i] / base),
        "tail_growth": float(np.median(a[3 * n // 4 :]) / base),
        "onset_step": int(s[over[0]]) if over.size else None,
    }


@rule(
    "DV001",
    "critic-divergence",
    "error",
    "The critic diverges: dataset Q far outside what the rewards allow, or a critic signal grows by orders of "
    "magnitude.",
    family="stability",
    params=(
        Param(
            "margin_fraction",
            0.5,
            "positive",
            "how far above the feasible maximum Q (as a fraction of the Q range) counts as divergence",
            "convention: function approximation overshoots a little; 50% of the whole range beyond "
            "a bound is not an estimation error any more",
        ),
        Param(
            "below_range_factor",
            10.0,
            "positive",
            "below the feasible minimum, divergence starts this many Q ranges beyond it (closer is "
            "over-conservatism, CQ003)",
            "real logs: diverged critics leave the range by 10^3-10^13x, an over-conservative CQL critic by "
            "less than one range (docs/validation.md, Real logs)",
        ),
        Param(
            "growth_factor",
            10.0,
            "positive",
            "without a known range: median |Q| over the last quarter vs the second quarter, still rising",
            "convention: an order of magnitude in half a run while still rising is exponential growth, "
            "not learning (a 1-exp rise gains far less after its first quarter)",
        ),
        Param(
            "signal_growth",
            1000.0,
            "positive",
            "any critic signal (dataset Q, critic loss, TD error, SAC temperature): its largest |value| vs its "
            "median over the first quarter of the run, and still at least a tenth of that at the end",
            "three orders of magnitude: learning moves a loss or a temperature by one or two; the real diverged "
            "runs grew by 10^4-10^23 (docs/validation.md, Real logs)",
        ),
    ),
    detects="(a) With reward range and horizon/gamma known: the smoothed dataset Q above Q_hi + m "
    "(m = `margin_fraction` x Q range) or below Q_lo - `below_range_factor` x Q range, Q_lo/Q_hi = "
    "r_min/r_max x H (or one step); for BRAC with a value penalty p per step (logged `value_penalty`, else "
    "`brac_beta` x `brac_divergence`) Q_lo - gamma x H x max p and Q_hi + gamma x H x max(-p): the penalty is "
    "part of every backup, so Q may leave the reward range by that much without diverging. (b) Without them: median |Q| of the last quarter >= `growth_factor` x "
    "that of the second quarter and still rising. (c) Any critic signal whose largest |value| is >= "
    "`signal_growth` x its early level and stays >= 10% of that growth to the end. The finding names the "
    "step the divergence started (first point beyond 10x the early level, or beyond the bound).",
    why="Q values no policy can attain, or losses/temperatures that explode, mean the Bellman backups are "
    "diverging (deadly triad, too small alpha, too large learning rate). Over/underfitting readings assume a "
    "critic that tracks its objective, so the run gets the verdict `diverged` and the checkpoint pick is the "
    "last one before the divergence started.",
    example="`DV001 critic-divergence: q_data grew 7.8e10x (from 387 early on to 3.0e13 at step 990001); it "
    "first passed 10x its early level at step 160001`",
    remediation="Deploy (or restart from) the last checkpoint before the divergence started. Raise CQL alpha "
    "(`offrl-train ... --cql-alpha 5`), lower the critic learning rate (`--q-lr 1e-4`), "
    "use a slower target update (`--tau 2e-3`), check the reward scale.",
)
def q_divergence(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    unit = a.run.x_unit
    if a.q is not None and a.q_smooth is not None:
        s, v = finite(a.q.steps, a.q_smooth)
        hit = _range_divergence(ctx, s, v) if s.size >= 4 else None
        if hit is not None:
            return [hit]
        hit = _q_growth(ctx, s, v) if s.size >= 4 else None
        if hit is not None:
            return [hit]
    limit = float(ctx.params["signal_growth"])
    found: list[tuple[int, str, dict]] = []
    for name in (a.q_name or "", *_GROWTH_SIGNALS):
        series = a.q if name == a.q_name else a.run.series.get(name)
        if not name or series is None:
            continue
        g = _growth(series.steps, series.values)
        if g is None or g["growth"] < limit or g["tail_growth"] < 0.1 * limit:
            continue
        found.append((g["onset_step"] if g["onset_step"] is not None else g["peak_step"], name, g))
    if not found:
        return []
    onset, name, g = min(found, key=lambda f: f[0])
    others = sorted({n for _, n, _ in found} - {name})
    also = f"; also {', '.join(others)}" if others else ""
    return [
        ctx.finding(
            f"{name} grew {orders(g['growth'])} (from {fmt(g['baseline'])} early on to {fmt(g['peak'])} at {unit} "
            f"{g['peak_step']}); it first passed 10x its early level at {unit} {onset}{also}: the critic diverged",
            evidence={
                **g,
                "signal": name,
                "signals": [n for _, n, _ in found],
                "first_step": onset,
                "mode": "signal",
            },
            steps=(onset, int(g["peak_step"])),
        )
    ]


#: run-config keys of a BRAC value-penalty weight (our trainer's `--brac-beta`), read when no `value_penalty` is logged
_PENALTY_WEIGHT_KEYS = ("brac_beta",)


def _window_values(ctx: Context, name: str) -> np.ndarray:
    """Finite values of a logged series over the steps the rules read (after a skipped warm start)."""
    series = ctx.run.series.get(name)
    if series is None:
        return np.zeros(0)
    s, v = finite(series.steps, series.values)
    after = ctx.analysis.read_after
    return v[s > after] if after is not None else v


def value_penalty_shift(ctx: Context) -> tuple[float, float, str] | None:
    """How far a BRAC value penalty lets dataset Q leave the reward-implied range: (below, above, source).

    Why: BRAC-vp backs up r + gamma (Q'(s', a') - p(s')), p the per-step value penalty (alpha x D(s') in Wu et al.;
    temp log pi - beta log pi_b in rlkit-style code, whose entropy part can make p negative). Every future step
    pays it, so Q may lie up to gamma x H x max p below r_min x H, and gamma x H x max(-p) above r_max x H, with no
    divergence at all. The term is read, in order of preference, from a logged `value_penalty` series (the exact
    term) or as weight x `brac_divergence` (the textbook alpha D; the weight from the run config, `brac_beta`).
    The largest value over the read window gives the loosest bound the logs support: a diverged critic leaves the
    range by orders of magnitude, a penalty by its size. None for non-BRAC runs, `brac_variant: pr` (no penalty in
    the backup) or when neither source is there.
    """
    a, e = ctx.analysis, ctx.analysis.eff
    if a.reg_name != "brac_divergence" or e.H is None:
        return None
    hp = ctx.run.metadata.hyperparameters
    if str(hp.get("brac_variant", "vp")).lower() == "pr":
        return None
    steps_ahead = e.H * (e.gamma if e.gamma is not None else 1.0)
    p = _window_values(ctx, "value_penalty")
    source = "logged value_penalty"
    if not p.size:
        weight = next((hp[k] for k in _PENALTY_WEIGHT_KEYS if isinstance(hp.get(k), int | float)), None)
        d = _window_values(ctx, "brac_divergence")
        if weight is None or not d.size:
            return None
        p = float(weight) * d
        source = f"{fmt(float(weight))} (brac_beta) x logged brac_divergence"
    below = steps_ahead * max(float(np.max(p)), 0.0)
    above = steps_ahead * max(float(-np.min(p)), 0.0)
    return below, above, f"{source}, x gamma x H = {fmt(steps_ahead)}"


def _range_divergence(ctx: Context, s: np.ndarray, v: np.ndarray) -> Finding | None:
    a, e = ctx.analysis, ctx.analysis.eff
    if e.q_lo is None or e.q_hi is None or not e.q_range:
        return None
    q_lo, q_hi, penalty = e.q_lo, e.q_hi, value_penalty_shift(ctx)
    if penalty is not None:
        q_lo, q_hi = q_lo - penalty[0], q_hi + penalty[1]
    m = float(ctx.params["margin_fraction"]) * e.q_range
    floor = q_lo - float(ctx.params["below_range_factor"]) * e.q_range
    hi_idx = np.flatnonzero(v > q_hi + m)
    lo_idx = np.flatnonzero(v < floor)
    if not (hi_idx.size or lo_idx.size):
        return None
    first = int(min(hi_idx[0] if hi_idx.size else s.size, lo_idx[0] if lo_idx.size else s.size))
    up = hi_idx.size and (not lo_idx.size or hi_idx[0] <= lo_idx[0])
    ext = float(np.max(v)) if up else float(np.min(v))
    bound, beyond = (q_hi, ext - q_hi) if up else (q_lo, q_lo - ext)
    side = (
        f"maximum {fmt(q_hi)} (+{fmt(m)} margin)"
        if up
        else f"minimum {fmt(q_lo)} (-{fmt(q_lo - floor)} margin)"
    )
    with_penalty = f" (value penalty included: {penalty[2]})" if penalty is not None else ""
    evidence: dict[str, object] = {
        "extreme": ext,
        "first_step": int(s[first]),
        "q_lo": q_lo,
        "q_hi": q_hi,
        "bound": bound,
        "ranges_beyond": beyond / e.q_range,
        "margin": m,
        "mode": "range",
    }
    if penalty is not None:
        evidence.update(penalty_below=penalty[0], penalty_above=penalty[1], penalty_source=penalty[2])
    return ctx.finding(
        f"{a.q_name} reaches {fmt(ext)}, {orders(beyond / e.q_range)} the Q range {fmt(e.q_range)} beyond the "
        f"feasible {side}{with_penalty}; first beyond it at {a.run.x_unit} {int(s[first])}: the critic diverged",
        evidence=evidence,
        steps=(int(s[first]), int(s[-1])),
    )


def _q_growth(ctx: Context, s: np.ndarray, v: np.ndarray) -> Finding | None:
    a, e = ctx.analysis, ctx.analysis.eff
    if e.q_lo is not None and e.q_hi is not None and e.q_range:
        return None  # the range test above is the sharper one when the range is known
    n = s.size
    q2 = np.median(np.abs(v[n // 4 : n // 2])) if n >= 8 else np.nan
    q4 = np.median(np.abs(v[3 * n // 4 :]))
    tr = tail_trend(s, v, 0.25)
    if not np.isfinite(q2) or q2 <= 0 or tr is None:
        return None
    growth = float(q4 / q2)
    rising = tr.slope * np.sign(v[-1]) > 0
    if growth < float(ctx.params["growth_factor"]) or not rising:
        return None
    over = np.flatnonzero(np.abs(v) > 10.0 * q2)
    onset = int(s[over[0]]) if over.size else int(s[n // 2])
    return ctx.finding(
        f"|{a.q_name}| grew {orders(growth)} from the second to the last quarter of the run and is still "
        f"growing (past 10x the second quarter's level at {a.run.x_unit} {onset}): the critic diverged (no reward "
        "range known to check against)",
        evidence={
            "growth": growth,
            "q_second_quarter": float(q2),
            "q_last_quarter": float(q4),
            "first_step": onset,
            "mode": "growth",
        },
        steps=(int(s[n // 4]), int(s[-1])),
    )


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
    ev: dict[str, float | None] = {
        "q_tail_level": level,
        "dataset_mc_return": mc,
        "shortfall": mc - level,
        "scale": scale,
    }
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


@rule(
    "CQ003",
    "q-below-rewards",
    "warning",
    "Over-conservatism: dataset Q settles far below what the logged rewards allow (CQL alpha too high).",
    family="stability",
    params=(
        Param(
            "margin_fraction",
            0.05,
            "fraction",
            "Q must end below the reward floor by at least this share of the Q range (or of the floor's "
            "magnitude plus the rise of Q, without a range), and by 3 smoothed-noise sigmas",
            "convention: ignore gaps smaller than 5% of what Q can span",
        ),
    ),
    detects="The tail level of the smoothed dataset Q is below the reward floor by the margin and not rising "
    "(the last half's trend is flat or down). Reward floor: the feasible minimum Q_lo (r_min x H, or r_min) "
    "and, when the logs give the data's mean reward and it is positive, that mean reward - the least a "
    "dataset whose average step earns it can be worth. CQL only; divergence (DV001) is read first.",
    why="CQL pushes Q down on actions outside the data and up on the data's; with alpha too high the push-down "
    "wins everywhere and dataset Q settles far below what the data earn. The official CQL code on D4RL "
    "halfcheetah-medium (min_q_weight 5) ends with dataset Q -137 while its logged rewards average +4 per "
    "step: Q falls for good after the warm start, the policy is fine, and the Q-peak reading would pick the "
    "first checkpoints after the switch (docs/validation.md, Real logs). That fall is conservatism, not "
    "overfitting, so the Q-peak rule does not apply.",
    example="`CQ003 q-below-rewards: q_data settles at -136, below the reward floor 3.95 (the logged mean "
    "reward) by 140 and still falling: CQL is over-conservative`",
    remediation="Lower CQL alpha (`offrl-train ... --cql-alpha 1`), or use CQL-Lagrange with a target gap "
    "(`--cql-target-gap 5`); the dataset-Q curve can be read for over/underfitting again once Q sits where "
    "the rewards put it.",
)
def q_below_rewards(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    e = a.eff
    if (
        a.q is None
        or a.q_smooth is None
        or (a.run.metadata.algorithm or "cql").lower() not in ("cql", "calql")
    ):
        return []
    floors: list[tuple[float, str]] = []
    if e.q_lo is not None:
        floors.append((e.q_lo, f"the feasible minimum {fmt(e.q_lo)}"))
    if e.reward_mean is not None and e.reward_mean > 0:
        floors.append(
            (e.reward_mean, f"{fmt(e.reward_mean)}, the mean logged reward ({e.reward_mean_source})")
        )
    if not floors:
        return []
    floor, what = max(floors, key=lambda f: f[0])
    level = tail_level(a.q.steps, a.q_smooth, a.tail_fraction)
    if not np.isfinite(level):
        return []
    s, v = finite(a.q.steps, a.q_smooth)
    scale = e.q_range if e.q_range else abs(floor) + float(np.ptp(v)) if v.size else 0.0
    margin = max(3.0 * a.q_sigma_smooth, float(ctx.params["margin_fraction"]) * scale)
    gap = floor - level
    tr = tail_trend(a.q.steps, a.q_smooth, 0.5)
    if gap < margin or tr is None or tr.slope > 0 and tr.relative > 0.05:
        return []
    trend = "still falling" if tr.slope < 0 else "flat"
    return [
        ctx.finding(
            f"{a.q_name} settles at {fmt(level)}, below the reward floor {what} by {fmt(gap)}, {trend}: CQL is "
            "over-conservative (alpha too high), so its dataset-Q curve is no overfitting signal",
            evidence={"q_tail_level": level, "floor": floor, "gap": gap, "margin": margin, "trend": trend},
            steps=(int(s[0]), int(s[-1])) if s.size else None,
        )
    ]
