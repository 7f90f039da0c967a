"""Underfitting rules (paper Metric 3.2): horizon-scaled TD error, a large flat regularizer, and the
capacity comparison across runs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from analyzer.model import Run
from analyzer.report import Finding
from analyzer.rules.base import REGISTRY, Context, GroupContext, Param, fmt, group_rule, rule
from analyzer.rules.evidence import UF001Evidence
from analyzer.signal import head_level, tail_level, tail_trend

# Each hint names the flag (metavar as in --help) and a rules-file line that is valid YAML as printed;
# the numbers in them are marked as examples, never as defaults for the user's environment.
HOW_TO_PROVIDE = {
    "reward_range": "`--reward-range LO,HI` (per-step reward bounds, e.g. `--reward-range 0,1`) or a rules "
    "file with `runs: [{match: '*', reward_range: [0, 1]}]`",
    "horizon": "`--horizon N` (episode length in steps, e.g. `--horizon 200`) or `runs: [{match: '*', horizon: 200}]`",
    "gamma": "`--gamma G` (e.g. `--gamma 0.99`) or `runs: [{match: '*', gamma: 0.99}]`",
    "horizon or gamma": "`--horizon N` (episode length in steps) or `--gamma G` (e.g. `--gamma 0.99`), or "
    "`runs: [{match: '*', horizon: 200, gamma: 0.99}]`",
}


def _pct(rel: float) -> str:
    """`+12%`, `-3%`, or `< 1%` (not `-0%`) for a relative change."""
    return "< 1%" if abs(rel) < 0.005 else f"{rel:+.0%}"


def scaled_td_error(td_mse: float, H: float, reading: str) -> float:
    """Overall Q error implied by a TD error (paper Section 3, after Munos 2003).

    `mse`: the paper's reading, TD x H (its worked example: 1.0-2.0 x 30 = 30-60). `rms`:
    sqrt(TD) x H, in Q units, so the comparison with the Q range does not change when rewards are
    rescaled (r -> c r scales the MSE by c^2 but the range by c).
    """
    if reading == "mse":
        return td_mse * H
    if reading == "rms":
        return math.sqrt(max(td_mse, 0.0)) * H
    raise ValueError(f"td_reading must be 'mse' or 'rms', got {reading!r}")


@rule(
    "UF001",
    "td-error-spans-q-range",
    "warning",
    "Horizon-scaled TD error is as large as the whole range Q can take (Metric 3.2, Section 3).",
    family="underfitting",
    params=(
        Param(
            "td_reading",
            "rms",
            "choice",
            "how the logged TD mean-squared error becomes a Q error: rms = sqrt(TD) x H, mse = TD x H",
            "rms: dimensionally consistent and invariant to reward rescaling (the authors' code remaps "
            "r -> 6r + 4); on the paper's 0/1-reward example both readings agree (TD 1.0-2.0, H 30)",
            choices=("rms", "mse"),
        ),
        Param(
            "min_ratio",
            1.0,
            "positive",
            "scaled TD error / Q range at or above which the run underfits",
            "paper Section 5: error 30-60 against a range of 30 'is large' -> ratio >= 1",
        ),
    ),
    detects="TD error (median over the last `tail_fraction` of the run) scaled by the effective horizon "
    "H = min(episode horizon, 1/(1-gamma)) is at least `min_ratio` x the Q range (r_max - r_min) x H. "
    "Inconclusive when the TD error, the reward range, or both horizon and gamma are unknown.",
    why="Section 3: the overall error of the learned Q is about L_TD/(1-gamma); if that error spans "
    "the range of values Q can take, the critic has not fit the Bellman objective - underfitting "
    "(paper example: TD 1.0-2.0 x horizon 30 = 30-60 >= 30 for 0/1 rewards).",
    example="`UF001 td-error-spans-q-range: TD error 1.6 (MSE, last 20%) -> sqrt(TD) x H = 38 >= 1 x Q range 30 "
    "(rewards [0, 1] x H 30)`",
    remediation="Increase capacity (Guideline 4.2): ResNet encoder (`offrl-train ... --encoder resnet`), "
    "wider/deeper Q network (`--hidden 512 --depth 4`), DR3 beta 1e-3-3e-2 (`--dr3 1e-3`). Choosing "
    "a checkpoint cannot fix underfitting.",
)
def td_error_spans_range(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    e = a.eff
    if a.td is None:
        return [ctx.inconclusive("no TD error metric (td_error) to compare with the Q range")]
    if e.missing:
        hows = "; ".join(f"{m}: {HOW_TO_PROVIDE[m]}" for m in e.missing)
        return [
            ctx.inconclusive(
                f"missing metadata {', '.join(e.missing)} to bound the Q range - provide {hows}",
                missing=list(e.missing),
            )
        ]
    assert e.H is not None and e.q_range is not None and e.reward_range is not None
    td = tail_level(a.td.steps, a.td.values, a.tail_fraction)
    if not np.isfinite(td):
        return [ctx.inconclusive("TD error has no finite values")]
    reading = str(ctx.params["td_reading"])
    err = scaled_td_error(td, e.H, reading)
    ratio = err / e.q_range if e.q_range > 0 else math.inf
    trend = tail_trend(a.td.steps, a.td.values, 0.5)
    ev: UF001Evidence = {
        "td_error_tail": td,
        "td_reading": reading,
        "H": e.H,
        "H_source": e.H_source,
        "scaled_error": err,
        "scaled_error_mse": scaled_td_error(td, e.H, "mse"),
        "scaled_error_rms": scaled_td_error(td, e.H, "rms"),
        "q_range": e.q_range,
        "reward_range": list(e.reward_range),
        "ratio": ratio,
        "min_ratio": ctx.params["min_ratio"],
        "td_relative_change_last_half": trend.relative if trend else None,
        "underfitting": bool(ratio >= float(ctx.params["min_ratio"])),
    }
    if ratio < float(ctx.params["min_ratio"]):
        return [
            ctx.finding(
                f"TD error {fmt(td)} ({reading} reading) x H {fmt(e.H)} = {fmt(err)} is {ratio:.0%} of the "
                f"Q range {fmt(e.q_range)}: no underfitting by this test",
                evidence=ev,
                level="info",
            )
        ]
    label = "sqrt(TD) x H" if reading == "rms" else "TD x H"
    msg = (
        f"TD error {fmt(td)} (MSE, last {a.tail_fraction:.0%}) -> {label} = {fmt(err)} >= "
        f"{fmt(float(ctx.params['min_ratio']))} x Q range {fmt(e.q_range)} (rewards "
        f"[{fmt(e.reward_range[0])}, {fmt(e.reward_range[1])}] x H {fmt(e.H)}, {e.H_source})"
    )
    if trend is not None and trend.relative < -0.3:
        msg += f"; still falling ({trend.relative:+.0%} over the last half), more steps may help"
    return [ctx.finding(msg, evidence=ev, steps=(int(a.td.steps[0]), int(a.td.steps[-1])))]


@rule(
    "UF002",
    "regularizer-high-flat",
    "warning",
    "The conservative regularizer stays large and does not decrease (Metric 3.2, Section 3).",
    family="underfitting",
    params=(
        Param(
            "large_fraction",
            0.1,
            "fraction",
            "CQL gap (Q units) counted as large at this fraction of the Q range",
            "heuristic (the paper gives no number): a gap of 10% of the range means OOD actions are "
            "valued well above dataset actions at the end of training; validated on synthetic runs only",
        ),
        Param(
            "brac_large",
            1.0,
            "positive",
            "BRAC divergence (nats) counted as large",
            "heuristic: a KL of 1 nat between policy and behaviour policy is far from the data",
        ),
        Param(
            "max_decrease",
            0.1,
            "fraction",
            "'not decreasing' = fell by less than this fraction over the last half of the run",
            "convention: a 10% fall over the last half is within the noise of a flat curve",
        ),
        Param(
            "max_total_decrease",
            0.2,
            "fraction",
            "'does not decrease' also over the whole run: the tail level is more than (1 - this) of the level "
            "in the first `tail_fraction` of the run",
            "the paper's wording is 'large and does not decrease' during training; a gap that fell by 20% or "
            "more and then levelled off has converged to its floor, which is not zero: the sampled "
            "logsumexp carries log(number of samples) and the action-box volume (docs/trainer.md)",
        ),
    ),
    detects="The regularizer (cql_gap; cql_term/alpha when only the scaled term is logged; "
    "brac_divergence for BRAC) has a final level above `large_fraction` of the Q range (BRAC: "
    "`brac_large` nats) and a robust (Theil-Sen) trend over the last half that falls by less than "
    "`max_decrease`, and that has not fallen by `max_total_decrease` since the start of the run.",
    why="Section 3: 'large values for the TD error, the CQL regularizer, or both imply underfitting'; "
    "a large regularizer means overestimated OOD Q-values, and the project site adds 'and does not "
    "decrease'.",
    example="`UF002 regularizer-high-flat: cql_gap stays at 5.1 (17% of the Q range 30), -2% over the last half`",
    remediation="As for UF001 (capacity-increasing: ResNet, wider/deeper Q, DR3). If Q also diverges, "
    "raise CQL alpha first (`--cql-alpha 5`).",
)
def regularizer_high_flat(ctx: Context) -> list[Finding]:
    a = ctx.analysis
    if a.reg is None:
        return []
    tr = tail_trend(a.reg.steps, a.reg.values, 0.5)
    if tr is None:
        return []
    level = tail_level(a.reg.steps, a.reg.values, a.tail_fraction)
    is_brac = a.reg_name == "brac_divergence"
    if is_brac:
        thr = float(ctx.params["brac_large"])
        scale_txt = f"{fmt(thr)} nats"
    else:
        if not a.eff.q_range:
            return [
                ctx.inconclusive(
                    "no Q range to judge the CQL gap's size - provide reward_range and horizon/gamma",
                    missing=list(a.eff.missing),
                )
            ]
        thr = float(ctx.params["large_fraction"]) * a.eff.q_range
        scale_txt = f"{float(ctx.params['large_fraction']):.0%} of the Q range {fmt(a.eff.q_range)}"
    head = head_level(a.reg.steps, a.reg.values, a.tail_fraction)
    total_rel = (level - head) / abs(head) if np.isfinite(head) and head != 0 else 0.0
    flat = tr.relative > -float(ctx.params["max_decrease"]) and total_rel > -float(
        ctx.params["max_total_decrease"]
    )
    ev = {
        "regularizer": a.reg_name,
        "source": a.reg.source,
        "tail_level": level,
        "threshold": thr,
        "relative_change_last_half": tr.relative,
        "head_level": head,
        "relative_change_whole_run": total_rel,
        "flat": flat,
    }
    if not (level >= thr and flat):
        return []
    return [
        ctx.finding(
            f"{a.reg_name} stays at {fmt(level)} (>= {scale_txt}) and changed {_pct(tr.relative)} over the last "
            "half: large and not decreasing",
            evidence=ev,
            steps=(tr.start_step, tr.end_step),
        )
    ]


# ----------------------------------------------------------------------------------------------
# capacity comparison (cross-run)

#: Hyperparameter names (last dotted component) that describe capacity: ignored when grouping runs.
CAPACITY_KEYS = frozenset(
    {
        "hidden",
        "hidden_sizes",
        "hidden_size",
        "hidden_units",
        "hidden_dim",
        "hidden_dims",
        "layer_size",
        "width",
        "widths",
        "depth",
        "layers",
        "n_layers",
        "num_layers",
        "encoder",
        "resnet_enc",
        "bigger_net",
    }
)
#: Names that differ between runs of one setup without changing it (bookkeeping, seeds, paths).
BOOKKEEPING_KEYS = frozenset(
    {
        "seed",
        "version",
        "run_id",
        "exp_name",
        "exp_id",
        "name",
        "log_dir",
        "logdir",
        "output_dir",
        "save_dir",
        "device",
        "threads",
        "resume",
        "ckpt_every",
        "log_every",
        "snapshot_gap",
        "save_interval",
        "eval_interval",
    }
)


def _ignored_key(key: str) -> bool:
    parts = key.lower().split(".")
    last = parts[-1]
    return (
        last in CAPACITY_KEYS
        or last in BOOKKEEPING_KEYS
        or any("encoder" in p for p in parts)  # d3rlpy: *_encoder_factory.type / .params.hidden_units
        or last.endswith("_dir")
        or last.endswith("_path")
    )


ENCODER_RANK = {"mlp": 0, "conv": 1, "conv3": 1, "cnn": 1, "impala": 2, "resnet": 3, "transformer": 4}


@group_rule(
    "UF003",
    "capacity-underfitting",
    "warning",
    "A same-setup run with more capacity reaches a clearly lower TD error / regularizer "
    "without overfitting (Metric 3.2).",
    params=(
        Param(
            "min_reduction",
            0.3,
            "fraction",
            "TD error (or regularizer) of the largest run must be at least this much lower",
            "heuristic: the paper's Fig. 8 capacity increase roughly halves the TD error; 30% keeps "
            "seed-to-seed noise (typically 10-20%) out",
        ),
    ),
    detects="Among runs that differ only in capacity descriptors (same hyperparameters apart from "
    "widths/depth/encoder/seed, or the same `capacity_group` in the rules file), ordered by "
    "capacity: when the largest run's final TD error (or regularizer) is at least `min_reduction` "
    "lower than a smaller run's and the larger run shows no overfitting (OF001), the smaller run "
    "underfits.",
    why="Metric 3.2: 'compute the training TD error and CQL regularizer for the current run and "
    "another identical run with increased model capacity. If the training errors reduce with "
    "increasing model capacity, the original run was underfitting.'",
    example="`UF003 capacity-underfitting: cap/w128 TD error 0.43 vs 0.048 for cap/w512 (widths 512x512): "
    "-89% with more capacity and no overfitting there`",
    remediation="Use the larger model (or go larger still: `offrl-train ... --hidden 512 --depth 4`, "
    "`--encoder resnet`) and consider DR3 (`--dr3 1e-3`).",
    family="underfitting",
)
def capacity_underfitting(ctx: GroupContext) -> dict[str, list[Finding]]:
    """Metric 3.2's second form over the runs of one analysis (compare_capacity does the work)."""
    return compare_capacity(
        ctx.runs,
        overfitting={rid: v == "overfitting" for rid, v in ctx.verdicts.items()},
        declared_groups=ctx.declared_groups,
        params=ctx.params,
        tail_fraction=ctx.analyses[0].tail_fraction if ctx.analyses else 0.2,
        level=ctx.level,
    )


def _capacity_key(run: Run) -> tuple[int, int, int] | None:
    c = run.metadata.capacity
    if not c.is_known():
        return None
    enc = ENCODER_RANK.get((c.encoder or "mlp").lower(), 1)
    depth = c.depth if c.depth is not None else (len(c.widths) if c.widths else 0)
    width = int(sum(c.widths)) if c.widths else 0
    return (enc, depth, width)


def _dominates(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=False)) and a != b


def _group_key(run: Run, declared: dict[str, str]) -> str:
    if run.id in declared:
        return "declared:" + declared[run.id]
    hp = {k: v for k, v in sorted(run.metadata.hyperparameters.items()) if not _ignored_key(k)}
    algo = run.metadata.algorithm or ""
    return f"auto:{algo}:{sorted((k, repr(v)) for k, v in hp.items())}"


def _capacity_text(run: Run) -> str:
    c = run.metadata.capacity
    parts = []
    if c.widths:
        parts.append("widths " + "x".join(str(w) for w in c.widths))
    if c.depth is not None and not c.widths:
        parts.append(f"depth {c.depth}")
    if c.encoder:
        parts.append(f"encoder {c.encoder}")
    return ", ".join(parts) or "capacity unknown"


def compare_capacity(
    runs: list[Run],
    *,
    overfitting: dict[str, bool] | None = None,
    declared_groups: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    tail_fraction: float = 0.2,
    level: str | None = None,
) -> dict[str, list[Finding]]:
    """Metric 3.2's second form across runs: findings per run id (only runs that underfit).

    `overfitting`: run id -> whether OF001 fired for it (a larger run that overfits is no evidence).
    `declared_groups`: run id -> capacity_group name from the rules file (overrides automatic grouping).
    """
    spec = REGISTRY["UF003"]
    prm = {**spec.defaults(), **(params or {})}
    overfitting = overfitting or {}
    groups: dict[str, list[Run]] = {}
    for r in runs:
        if _capacity_key(r) is None:
            continue
        groups.setdefault(_group_key(r, declared_groups or {}), []).append(r)
    out: dict[str, list[Finding]] = {}
    for members in groups.values():
        if len({_capacity_key(r) for r in members}) < 2:
            continue
        for small in members:
            ks = _capacity_key(small)
            assert ks is not None
            bigger = [b for b in members if _dominates(_capacity_key(b) or (0, 0, 0), ks)]
            bigger = [b for b in bigger if not overfitting.get(b.id, False)]
            if not bigger:
                continue
            for metric in ("td_error", "cql_gap", "brac_divergence"):
                ss = small.series.get(metric)
                if ss is None:
                    continue
                v_small = tail_level(ss.steps, ss.values, tail_fraction)
                best: tuple[float, Run] | None = None
                for b in bigger:
                    sb = b.series.get(metric)
                    if sb is None:
                        continue
                    vb = tail_level(sb.steps, sb.values, tail_fraction)
                    if np.isfinite(vb) and (best is None or vb < best[0]):
                        best = (vb, b)
                if best is None or not np.isfinite(v_small) or v_small <= 0:
                    continue
                reduction = 1.0 - best[0] / v_small
                if reduction >= float(prm["min_reduction"]):
                    b = best[1]
                    out.setdefault(small.id, []).append(
                        Finding(
                            code=spec.code,
                            name=spec.name,
                            level=(level or spec.level),  # type: ignore[arg-type]
                            message=(
                                f"{metric} {fmt(v_small)} here vs {fmt(best[0])} for {b.id} ({_capacity_text(b)}): "
                                f"{-reduction:+.0%} with more capacity and no overfitting there"
                            ),
                            evidence={
                                "metric": metric,
                                "this_run": {
                                    "id": small.id,
                                    "capacity": _capacity_text(small),
                                    "tail": v_small,
                                },
                                "larger_run": {"id": b.id, "capacity": _capacity_text(b), "tail": best[0]},
                                "reduction": reduction,
                                "min_reduction": prm["min_reduction"],
                                "group_size": len(members),
                            },
                        )
                    )
                    break  # one metric is enough; TD first
    return out
