"""Per-run diagnosis: shared signal analysis, rules, verdict, checkpoint pick (Guideline 3.1), advice.

Verdict precedence (docs/diagnosis.md "Verdict logic"):
 1. broken curves - non-finite dataset Q / TD error to the end (NF001 error) -> inconclusive; divergence of
    any critic signal (DV001) -> diverged: the workflow's readings assume a critic that tracks its objective;
 2. underfitting - UF001 (TD x H spans the Q range), UF003 (more capacity fits better), or UF002
    (regularizer large and flat) when Q shows no peak-decline. Underfitting beats overfitting: when
    the critic cannot fit the Bellman objective, the dataset-Q curve is inside its own error bars
    and a decline in it is no evidence (Section 3: underfitting is checked when Q does not fall,
    and a large regularizer means Q is *not* expected to fall);
 3. overfitting - OF001 (sustained, significant peak-decline of dataset Q);
 4. inconclusive - no usable dataset Q / too few points / underfitting not checkable;
 5. healthy - Q rose without a sustained decline and the underfitting test ran and passed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from analyzer.config import RulesConfig, RunOverride, default_config
from analyzer.model import Run, Series
from analyzer.report import CheckpointPick, Finding, RunResult
from analyzer.rules import ordered_specs
from analyzer.rules.base import MIN_POINTS_AFTER_WARM_START, Analysis, Context, Effective, fmt
from analyzer.rules.evidence import (
    DQ004Evidence,
    DV001Evidence,
    NF001Evidence,
    OF001Evidence,
    UF001Evidence,
    UF002Evidence,
    UF003Evidence,
    evidence_of,
)
from analyzer.signal import (
    find_peak,
    find_peak_at,
    jump_end,
    level_shift,
    noise_sigma,
    phases,
    refine_peak,
    segment,
    smooth,
    smoothed_noise_gain,
)

Q_CANDIDATES = ("q_data", "q_target", "q_policy")  # q_target first: over dataset transitions it tracks E_D[Q]


# ----------------------------------------------------------------------------------------------
# analysis


def effective_metadata(run: Run, ov: RunOverride | None = None) -> Effective:
    """Metadata after overrides (rules file `runs:`, CLI flags win over the logs) and derived ranges."""
    md = run.metadata
    ov = ov or RunOverride()
    gamma = ov.gamma if ov.gamma is not None else md.gamma
    rr = ov.reward_range if ov.reward_range is not None else md.reward_range
    horizon = ov.horizon if ov.horizon is not None else md.horizon
    mc = ov.dataset_mc_return if ov.dataset_mc_return is not None else md.dataset_mc_return
    ci = ov.checkpoint_interval if ov.checkpoint_interval is not None else md.checkpoint_interval
    ws: int | None
    if ov.warm_start is not None:
        ws, ws_src = ov.warm_start, "rules file runs: warm_start"
    else:
        ws, ws_src = md.warm_start, md.sources.get("warm_start", "")
    H: float | None
    if horizon is not None and gamma is not None:
        g_h = 1.0 / (1.0 - gamma) if gamma < 1 else float("inf")
        H = float(min(horizon, g_h))
        src = f"H = min(horizon {horizon}, 1/(1-gamma) {fmt(g_h)})"
    elif horizon is not None:
        H, src = float(horizon), f"H = horizon {horizon} (gamma unknown)"
    elif gamma is not None:
        H, src = 1.0 / (1.0 - gamma), f"H = 1/(1-gamma) = {fmt(1.0 / (1.0 - gamma))} (horizon unknown)"
    else:
        H, src = None, "unknown"
    missing = []
    if rr is None:
        missing.append("reward_range")
    if H is None:
        missing.append("horizon or gamma")
    q_range = q_lo = q_hi = None
    if rr is not None and H is not None:
        lo, hi = float(rr[0]), float(rr[1])
        q_range = (hi - lo) * H
        q_lo, q_hi = min(lo, lo * H), max(hi, hi * H)
    return Effective(
        gamma=gamma,
        reward_range=(float(rr[0]), float(rr[1])) if rr is not None else None,
        horizon=horizon,
        dataset_mc_return=mc,
        checkpoint_interval=ci,
        H=H,
        H_source=src,
        q_range=q_range,
        q_lo=q_lo,
        q_hi=q_hi,
        missing=tuple(missing),
        warm_start=ws,
        warm_start_source=ws_src,
        reward_mean=md.reward_mean,
        reward_mean_source=md.sources.get("reward_mean", ""),
    )


def _pick_q(run: Run) -> tuple[Series | None, str | None, bool]:
    for name in Q_CANDIDATES:
        s = run.series.get(name)
        if s is not None and len(s) > 0 and np.isfinite(s.values).any():
            return s, name, name != "q_data" or s.kind == "proxy"
    return None, None, False


def _pick_regularizer(run: Run) -> tuple[Series | None, str | None]:
    algo = (run.metadata.algorithm or "").lower()
    brac = run.series.get("brac_divergence")
    if brac is not None and (
        algo == "brac" or ("cql_gap" not in run.series and "cql_term" not in run.series)
    ):
        return brac, "brac_divergence"
    gap = run.series.get("cql_gap")
    if gap is not None:
        return gap, "cql_gap"
    term, alpha = run.series.get("cql_term"), run.series.get("alpha")
    if term is not None and alpha is not None:
        common, it, ia = np.intersect1d(term.steps, alpha.steps, return_indices=True)
        if common.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                vals = term.values[it] / alpha.values[ia]
            vals = np.where(alpha.values[ia] > 0, vals, np.nan)
            return (
                Series(
                    "cql_gap",
                    common,
                    vals,
                    x_unit=term.x_unit,
                    sources=(*term.sources, *alpha.sources),
                    files=term.files,
                    kind="derived",
                    note="cql_term / alpha",
                ),
                "cql_gap",
            )
    if term is not None:
        return term, "cql_term"
    return None, None


def analyze_signals(run: Run, config: RulesConfig, ov: RunOverride | None = None) -> Analysis:
    """Everything rules share, computed once: chosen series, smoothing, noise, change points, peak."""
    cfg = config
    st = cfg.settings
    eff = effective_metadata(run, ov)
    q, q_name, q_proxy = _pick_q(run)
    reg, reg_name = _pick_regularizer(run)
    td = run.series.get("td_error")
    read_after = None
    switch = None
    if st.analysis.skip_warm_start:
        if eff.warm_start is None:  # 0 means "none" said explicitly (config or rules file): nothing to detect
            eff = _detected_switch(run, eff)
        if eff.warm_start:
            switch = _switch_levels(eff.warm_start, q)
            q, reg, td, read_after = _after_warm_start(eff.warm_start, q, reg, td)
    if td is not None and not np.isfinite(td.values).any():
        td = None
    method = st.smoothing.method
    weight = st.smoothing.weight
    window = st.smoothing.window
    smoothed = {name: smooth(s.values, method, weight, window) for name, s in run.series.items()}
    q_smooth = peak = None
    sigma = sigma_s = 0.0
    cps: list[int] = []
    phs = []
    if q is not None:
        am, aw = st.smoothing.analysis_method, st.smoothing.analysis_weight
        q_smooth = smooth(q.values, am, aw, window)
        sigma = noise_sigma(q.values)
        sigma_s = sigma * smoothed_noise_gain(am, aw, window)
        tol = st.analysis.peak_tolerance * sigma_s
        peak = find_peak(q.steps, q_smooth, st.analysis.tail_fraction / 2, tol)
        if peak is not None and st.analysis.peak_refine == "hinge":
            n_fin = int(np.isfinite(q.values).sum())
            hw = max(3, int(round(st.analysis.peak_window * n_fin)))
            step = refine_peak(q.steps, q.values, peak.step, hw)
            if step != peak.step:
                peak = find_peak_at(q.steps, q_smooth, step, st.analysis.tail_fraction / 2)
        try:
            cps = segment(
                q.steps,
                q.values,
                method=am,
                weight=aw,
                window=window,
                algorithm=st.changepoints.algorithm,
                cost=st.changepoints.cost,
                penalty_scale=st.changepoints.penalty_scale,
                max_points=st.changepoints.max_points,
                min_size=st.changepoints.min_size,
            )
        except Exception:  # ruptures can reject degenerate signals; phases are reporting only
            cps = []
        phs = phases(q.steps, q_smooth, cps, 2.0 * sigma)
    return Analysis(
        run=run,
        eff=eff,
        q=q,
        q_name=q_name,
        q_is_proxy=q_proxy,
        q_smooth=q_smooth,
        q_sigma=sigma,
        q_sigma_smooth=sigma_s,
        peak=peak,
        change_points=cps,
        phases=phs,
        reg=reg,
        reg_name=reg_name,
        td=td,
        smoothed=smoothed,
        tail_fraction=st.analysis.tail_fraction,
        precedence=st.verdict.precedence,
        read_after=read_after,
        switch=switch if read_after is not None else None,
    )


#: critic signals whose level shift marks a regime switch nobody named (first found wins)
_SWITCH_SIGNALS = ("critic_loss", "td_error", "temperature")


def _detected_switch(run: Run, eff: Effective) -> Effective:
    """A warm start the config does not name, found as a level shift of the critic loss (or TD error,
    or SAC temperature) in the first half of the run: when the actor stops imitating the data and starts
    following Q, the critic's targets change and its loss moves to a new level within a logging interval
    or two (the official CQL code's policy_eval_start shows it as a 2-3x step of QF1 Loss)."""
    for name in _SWITCH_SIGNALS:
        s = run.series.get(name)
        if s is None or len(s) < 12:
            continue
        hit = level_shift(s.steps, s.values)
        if hit is None:
            continue
        step, ratio = hit
        before = s.steps[s.steps < step]
        if not before.size:
            continue
        return dataclasses.replace(
            eff,
            warm_start=int(before[-1]),
            warm_start_source=f"detected from the curves: {name} changed level {ratio:.1f}x at {run.x_unit} {step}",
        )
    return eff


def _switch_levels(ws: int, q: Series | None) -> tuple[int, float, float] | None:
    """Dataset Q across the warm-start switch: (step before the jump, Q there, Q after it), or None.

    The jump is the larger rise of the two logging intervals that follow the last point at or before `ws`:
    trainers count steps from 0 or 1 and log before or after the update, so the point logged "at" the end of
    the warm start may still be the imitation phase (rlkit logs step 40001 with policy_eval_start 40000).
    """
    if q is None:
        return None
    ok = np.isfinite(q.values)
    before = np.flatnonzero(ok & (q.steps <= ws))
    after = np.flatnonzero(ok & (q.steps > ws))[:2]
    if not before.size or not after.size:
        return None
    idx = [int(before[-1]), *map(int, after)]
    rises = [q.values[idx[k + 1]] - q.values[idx[k]] for k in range(len(idx) - 1)]
    k = int(np.argmax(rises))
    return int(q.steps[idx[k]]), float(q.values[idx[k]]), float(q.values[idx[k + 1]])


def _after_warm_start(
    ws: int, q: Series | None, reg: Series | None, td: Series | None
) -> tuple[Series | None, Series | None, Series | None, int | None]:
    """The curves the rules read, cut to steps > ws; unchanged (and None) when too little would remain to read
    a trend (DQ002's default minimum), so a short run is judged whole rather than not at all.

    When dataset Q jumps across the switch (many noise sigmas per logging interval, as with sparse logging),
    reading starts at the top of the jump: the jump is the regime change, not a rise Metric 3.1 can read.
    """
    if q is None or int(np.isfinite(q.values[q.steps > ws]).sum()) < MIN_POINTS_AFTER_WARM_START:
        return q, reg, td, None
    keep = q.steps > ws
    prior = np.flatnonzero(~keep & np.isfinite(q.values))
    if prior.size:
        after = q.values[keep]
        seq = np.concatenate(([q.values[prior[-1]]], after))
        j = jump_end(seq, noise_sigma(after))
        if j > 1:
            ws = int(q.steps[keep][j - 2])

    def cut(s: Series | None) -> Series | None:
        if s is None:
            return None
        keep = s.steps > ws
        if not keep.any():
            return None
        wt = s.wall_time[keep] if s.wall_time is not None else None
        return dataclasses.replace(s, steps=s.steps[keep], values=s.values[keep], wall_time=wt)

    return cut(q), cut(reg), cut(td), ws


def run_rules(analysis: Analysis, config: RulesConfig) -> list[Finding]:
    """Every enabled per-run rule, in registry order; a crashing rule becomes a finding, not a traceback."""
    out: list[Finding] = []
    for spec in ordered_specs():
        if spec.scope != "run" or spec.check is None or not config.enabled(spec.code):
            continue
        level = config.level_for(spec.code)
        ctx = Context(analysis, config.params_for(spec.code), spec, level)  # type: ignore[arg-type]
        try:
            found = spec.check(ctx)
        except Exception as exc:  # noqa: BLE001 - a rule bug must not hide the other findings
            found = [ctx.inconclusive(f"rule failed on this run: {type(exc).__name__}: {exc}")]
        if spec.code in config.levels:
            for f in found:
                if not f.evidence.get("inconclusive") and f.level != "info":
                    f.level = level  # type: ignore[assignment]
        out.extend(found)
    return out


# ----------------------------------------------------------------------------------------------
# verdict


def _get(findings: list[Finding], code: str) -> list[Finding]:
    return [f for f in findings if f.code == code]


def decide_verdict(a: Analysis, findings: list[Finding]) -> tuple[str, str]:
    """(verdict, one-line reason with evidence numbers). Pure: re-run after cross-run findings."""
    key = {a.q_name or "q_data", "q_data", "td_error"}
    nf = [(f.level, evidence_of(f, NF001Evidence)) for f in _get(findings, "NF001")]
    broken = [ev for level, ev in nf if ev.get("metric") in key and level == "error"]
    broken = broken or [
        ev for _, ev in nf if ev.get("metric") in key and (ev.get("persistent") or ev.get("has_inf"))
    ]
    if broken:
        ev_nf = broken[0]
        return "inconclusive", (
            f"{ev_nf['metric']} becomes non-finite at {a.run.x_unit} {ev_nf['first_bad_step']}: "
            "training broke, so its curves cannot show over- or underfitting"
        )
    div = _get(findings, "DV001")
    if div:
        return "diverged", f"{div[0].message}; over- and underfitting cannot be read from a diverging critic"

    uf001 = [f for f in _get(findings, "UF001") if evidence_of(f, UF001Evidence).get("underfitting")]
    uf003 = [f for f in _get(findings, "UF003") if not evidence_of(f, UF003Evidence).get("inconclusive")]
    uf002 = [f for f in _get(findings, "UF002") if not evidence_of(f, UF002Evidence).get("inconclusive")]
    of = [f for f in _get(findings, "OF001") if evidence_of(f, OF001Evidence).get("sustained")]
    proxy = f" (dataset Q read from a proxy: {a.q.source})" if a.q_is_proxy and a.q is not None else ""
    brac_note = (
        " [BRAC: brac_divergence in the regularizer's place]" if a.reg_name == "brac_divergence" else ""
    )

    uf = uf001 or uf003 or (uf002 if not of else [])
    if uf and (not of or a.precedence == "underfitting-first"):
        src = uf[0]
        reason = f"{src.code}: {src.message}"
        if of:
            reason += (
                f"; dataset Q also declined after {a.run.x_unit} {evidence_of(of[0], OF001Evidence)['peak_step']}, "
                "read with caution"
            )
        return "underfitting", reason + proxy + brac_note

    if a.q is None:
        return (
            "inconclusive",
            "no dataset-Q metric (q_data, q_target or q_policy): overfitting cannot be checked",
        )
    ended = [f for f in _get(findings, "DQ004") if evidence_of(f, DQ004Evidence).get("ended_in_warm_start")]
    if ended:
        return "inconclusive", ended[0].message
    low = _get(findings, "CQ003")
    if low:
        return "inconclusive", f"CQ003: {low[0].message}{proxy}"
    if _get(findings, "DQ002"):
        return "inconclusive", _get(findings, "DQ002")[0].message
    if of:
        f = of[0]
        also = f"; {uf[0].code} also fires ({uf[0].message}), read with caution" if uf else ""
        return "overfitting", f"{f.code}: {f.message}{also}{proxy}{brac_note}"
    falls = _get(findings, "OF003")
    if falls:
        return (
            "inconclusive",
            f"{falls[0].code}: {falls[0].message}: dataset Q has no peak to pick at, and a falling Q is not "
            f"healthy{proxy}{brac_note}",
        )

    p = a.peak
    q_txt = (
        f"{a.q_name} rose by {fmt(p.rise)} and held (final level {fmt(p.end_value)} vs max {fmt(p.value)})"
        if p is not None
        else f"{a.q_name} shows no peak-decline"
    )
    uf1 = [evidence_of(f, UF001Evidence) for f in _get(findings, "UF001")]
    uf_info = [ev for ev in uf1 if not ev.get("inconclusive")]
    if not uf_info:
        inc = [ev for ev in uf1 if ev.get("inconclusive")]
        why = inc[0]["reason"] if inc else "rule UF001 is disabled in the rules file"
        return (
            "inconclusive",
            f"no overfitting sign ({q_txt}), but underfitting cannot be checked: {why}{proxy}",
        )
    ev = uf_info[0]
    return "healthy", (
        f"{q_txt}; TD error x H = {fmt(ev['scaled_error'])} is {ev['ratio']:.0%} of the Q range "
        f"{fmt(ev['q_range'])}{proxy}{brac_note}"
    )


# ----------------------------------------------------------------------------------------------
# checkpoint pick (Guideline 3.1)


def _candidates(run: Run, eff: Effective) -> tuple[list[tuple[int, str | None]], str]:
    if run.checkpoints:
        cands = sorted((int(c.step), str(c.path) if c.path is not None else None) for c in run.checkpoints)
        if all(p is None for _, p in cands):
            return cands, "checkpoints saved by the training loop"
        return cands, "checkpoint files"
    ci = eff.checkpoint_interval
    if ci:
        last = max((int(s.steps[-1]) for s in run.series.values() if len(s)), default=0)
        return [(k, None) for k in range(ci, last + 1, ci)], f"declared checkpoint_interval {ci}"
    q, _, _ = _pick_q(run)
    q = q or next(
        (s for n in ("critic_loss", "td_error") if (s := run.series.get(n)) is not None and len(s)), None
    )
    if q is not None:
        # No checkpoint files next to the logs (rlkit keeps snapshots elsewhere, or none): the pick is still a
        # step the user can act on - the snapshot saved there, or where to stop training next time.
        steps = q.steps[np.isfinite(q.values)]
        return [(int(k), None) for k in steps], "logged steps (no checkpoint files found next to the logs)"
    return [], ""


def _smoothed_q_at(a: Analysis, step: int) -> float:
    """Analysis-smoothed dataset Q at `step` (linear between logged points); NaN when unknown."""
    if a.q is None or a.q_smooth is None:
        return float("nan")
    m = np.isfinite(a.q_smooth)
    if not m.any():
        return float("nan")
    return float(np.interp(step, a.q.steps[m], a.q_smooth[m]))


def diverged_at(findings: list[Finding]) -> int | None:
    """Step at which the critic started to diverge (DV001), if it did."""
    evs = [evidence_of(f, DV001Evidence) for f in _get(findings, "DV001")]
    steps = [int(ev["first_step"]) for ev in evs if ev.get("first_step") is not None]
    return min(steps) if steps else None


def broken_at(findings: list[Finding]) -> int | None:
    """First step at which a training metric went NaN/Inf for good (NF001 at error level), if any."""
    errs = [evidence_of(f, NF001Evidence) for f in _get(findings, "NF001") if f.level == "error"]
    steps = [int(ev["first_bad_step"]) for ev in errs if ev.get("first_bad_step") is not None]
    return min(steps) if steps else None


def pick_checkpoint(
    a: Analysis,
    verdict: str,
    pick: str = "higher-q-around-peak",
    broken_step: int | None = None,
    diverged_step: int | None = None,
) -> CheckpointPick | None:
    """Guideline 3.1 for overfitting; the latest checkpoint otherwise (with the reason why).

    `higher-q-around-peak` (default): of the last checkpoint at or before the peak step and the
    first one after it, the one where the smoothed dataset Q is higher. Why: the peak step is
    uncertain by several logged points on flat tops (docs/validation.md), and with sparse
    checkpoints always stepping back to the one before it gives away up to a checkpoint interval of
    rise; comparing the two neighbours on the curve itself cuts the Q lost on synthetic runs with a
    checkpoint every 5-10 points by 40-85% and changes nothing when every point has one (measured,
    docs/validation.md). `at-or-before-peak`: the literal reading of Guideline 3.1.
    """
    run = a.run
    unit = run.x_unit
    cands, origin = _candidates(run, a.eff)
    if not cands:
        return None
    latest = cands[-1]
    if broken_step is not None:
        # A checkpoint written at or after the first non-finite log entry may already hold NaN weights.
        sound = [c for c in cands if c[0] < broken_step]
        if not sound:
            return None
        c = sound[-1]
        why = (
            f"training broke (non-finite values from {unit} {broken_step}): the last checkpoint before that, "
            "a restart point rather than a recommendation"
        )
        return CheckpointPick(c[0], c[1], f"{why}; x-axis unit: {unit}; from {origin}")
    if verdict == "diverged" and diverged_step is not None:
        sound = [c for c in cands if c[0] < diverged_step]
        if not sound:
            return None
        c = sound[-1]
        why = f"the critic diverged from {unit} {diverged_step}: the last checkpoint before that"
        return CheckpointPick(c[0], c[1], f"{why}; x-axis unit: {unit}; from {origin}")
    if verdict == "overfitting" and a.peak is not None:
        pk = a.peak.step
        before = [c for c in cands if c[0] <= pk]
        after = [c for c in cands if c[0] > pk]
        if pick == "next-after-peak" and after:
            c = after[0]
            why = (
                f"first checkpoint after the dataset-Q peak at {unit} {pk} (pick: next-after-peak; the actor "
                "lags the critic, as in the paper's WidowX run)"
            )
        elif pick == "higher-q-around-peak" and before and after:
            q0, q1 = _smoothed_q_at(a, before[-1][0]), _smoothed_q_at(a, after[0][0])
            if q1 > q0:
                c = after[0]
                why = (
                    f"checkpoint nearest the dataset-Q peak at {unit} {pk} with the higher smoothed Q "
                    f"({fmt(q1)} vs {fmt(q0)} at {unit} {before[-1][0]}, the one before the peak; Guideline 3.1)"
                )
            else:
                c = before[-1]
                why = f"latest checkpoint at or before the dataset-Q peak at {unit} {pk} (Guideline 3.1)"
        elif before:
            c = before[-1]
            why = f"latest checkpoint at or before the dataset-Q peak at {unit} {pk} (Guideline 3.1)"
        else:
            c = after[0]
            why = f"no checkpoint at or before the dataset-Q peak at {unit} {pk}; the first one after it"
        return CheckpointPick(c[0], c[1], f"{why}; x-axis unit: {unit}; from {origin}")
    if verdict == "healthy":
        why = "healthy: dataset Q did not decline, so the latest checkpoint"
    elif verdict == "underfitting":
        why = (
            "underfitting: the latest checkpoint, but picking a checkpoint cannot fix underfitting - "
            "retrain with more capacity"
        )
    else:
        why = "inconclusive verdict: the latest checkpoint, not a recommendation"
    return CheckpointPick(latest[0], latest[1], f"{why}; x-axis unit: {unit}; from {origin}")


# ----------------------------------------------------------------------------------------------
# advice (Guidelines 4.1 / 4.2)

ADVICE: dict[str, list[str]] = {
    "overfitting": [
        "Deploy the checkpoint at the dataset-Q peak (Guideline 3.1), or stop training there (early stopping).",
        "Add capacity-decreasing regularization to the Q network (Guideline 4.1): dropout p 0.1-0.3 "
        "(`offrl-train ... --dropout 0.2`), or a variational information bottleneck beta ~1e-3 (`--vib 1e-3`).",
        "Or weight regularization: l2 1e-4 (`--l2 1e-4`) or l1 (`--l1 1e-4`); or train fewer gradient "
        "steps (`--steps {peak}`).",
        "More (or more diverse) data also helps: the paper's overfitting cases are the 50-100 trajectory datasets.",
    ],
    "underfitting": [
        "Increase capacity (Guideline 4.2): a wider/deeper Q network (`offrl-train ... --hidden 512 --depth 4`) "
        "or a ResNet encoder for image inputs (`--encoder resnet`).",
        "Add the DR3 capacity-increasing regularizer, beta ~1e-3 to 3e-2 (`--dr3 1e-3`).",
        "Checkpoint selection cannot fix underfitting; confirm with a same-setup run at higher capacity (Metric 3.2).",
    ],
    "healthy": [
        "No over- or underfitting sign: the latest checkpoint is a reasonable choice; training longer is safe "
        "while dataset Q keeps rising or holding.",
    ],
    "inconclusive": [],
    "diverged": [
        "The critic diverged: deploy (or restart from) the last checkpoint before the divergence started; "
        "later checkpoints hold a critic, and usually a policy, that no longer track the data.",
    ],
}


def advise(verdict: str, findings: list[Finding], a: Analysis) -> list[str]:
    peak = str(a.peak.step) if a.peak is not None else "N"
    out = [text.replace("{peak}", peak) for text in ADVICE.get(verdict, [])]
    codes = {f.code for f in findings if f.level != "info" or f.evidence.get("inconclusive")}
    if a.reg_name == "brac_divergence" and verdict in ("overfitting", "underfitting"):
        out.append("BRAC: the same remedies apply to its Q network; the divergence weight is `--brac-beta`.")
    if "NF001" in codes:
        out.append(
            "Non-finite values: restart from the last finite checkpoint with a lower Q learning rate "
            "(`offrl-train ... --q-lr 1e-4`) or a larger CQL alpha (`--cql-alpha 5`)."
        )
    if "DV001" in codes or "CQ001" in codes:
        out.append(
            "Q overestimation/divergence: raise CQL alpha (`offrl-train ... --cql-alpha 5`) or use "
            "CQL-Lagrange (`--cql-target-gap 5`); check the reward scale."
        )
    if "CQ002" in codes or "CQ003" in codes:
        out.append(
            "Over-conservative critic (Q collapsed below what the data earn): lower CQL alpha "
            "(`offrl-train ... --cql-alpha 0.5`) or use CQL-Lagrange (`--cql-target-gap 5`)."
        )
    if "DQ001" in codes:
        out.append(
            "Log the missing metrics or map them: `mappings: {q_data: <tag>, td_error: <tag>}` in a rules file."
        )
    missing = [m for f in _get(findings, "UF001") for m in evidence_of(f, UF001Evidence).get("missing", [])]
    if missing:
        out.append(_metadata_advice(a.run.id, missing))
    if "DQ002" in codes:
        out.append("Log dataset Q more often or train longer before diagnosing (too few points).")
    if "DQ003" in {f.code for f in findings}:
        out.append(
            "Log the dataset-Q mean E_D[Q(s,a)] directly (`offrl/q_data`) for a verdict that needs no proxy."
        )
    return out


def _metadata_advice(run_id: str, missing: list[str]) -> str:
    """Copyable flags and rules-file entry for exactly the missing fields (valid CLI and YAML as printed).

    The numbers are examples the message labels as such: the tool cannot know the environment's.
    """
    flags, yaml = [], []
    if "reward_range" in missing:
        flags.append("--reward-range 0,1")
        yaml.append("reward_range: [0, 1]")
    if any(m != "reward_range" for m in missing):
        flags += ["--horizon 200", "--gamma 0.99"] if "horizon or gamma" in missing else []
        flags += ["--horizon 200"] if "horizon" in missing else []
        flags += ["--gamma 0.99"] if "gamma" in missing else []
        yaml += [f.replace("--", "").replace(" ", ": ") for f in flags if not f.startswith("--reward")]
    glob = "".join(f"[{c}]" if c in "[]*?" else c for c in run_id).replace("'", "''")  # literal run id
    return (
        f"Provide the missing metadata with your environment's values (shown: examples for 0/1 rewards, "
        f"200-step episodes, gamma 0.99): re-run with `{' '.join(flags)}`, or in a rules file "
        f"(`--rules FILE`) `runs: [{{match: '{glob}', {', '.join(yaml)}}}]`."
    )


# ----------------------------------------------------------------------------------------------
# entry point


def diagnose_run(
    run: Run, config: RulesConfig | None = None, override: RunOverride | None = None
) -> RunResult:
    """Diagnose one run: analysis, rules, verdict, checkpoint pick, advice. Never raises on bad data."""
    cfg = config or default_config()
    ov = override if override is not None else cfg.run_override(run.id)
    a = analyze_signals(run, cfg, ov)
    findings = run_rules(a, cfg)
    return finish(a, findings, cfg)


def finish(a: Analysis, findings: list[Finding], cfg: RulesConfig) -> RunResult:
    """Verdict, pick and advice from an analysis and its findings (re-run after cross-run rules)."""
    verdict, reason = decide_verdict(a, findings)
    pick = pick_checkpoint(
        a, verdict, cfg.settings.checkpoint.pick, broken_at(findings), diverged_at(findings)
    )
    smoothed = dict(a.smoothed)
    peak_step = a.peak.step if (a.peak is not None and verdict == "overfitting") else None
    res = RunResult(
        run=a.run,
        verdict=verdict,  # type: ignore[arg-type]
        verdict_reason=reason,
        checkpoint=pick,
        findings=findings,
        advice=advise(verdict, findings, a),
        smoothed=smoothed,
        change_points=list(a.change_points),
        peak_step=peak_step,
    )
    return res


def summary(res: RunResult) -> dict[str, Any]:
    """Small dict for benchmarks/tests: verdict, peak, pick, codes."""
    return {
        "verdict": res.verdict,
        "peak_step": res.peak_step,
        "checkpoint": res.checkpoint.step if res.checkpoint else None,
        "codes": sorted({f.code for f in res.findings}),
    }
