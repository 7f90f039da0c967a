"""Checkpoint selection on the closed-loop corpora: every selector's regret against rolled-out success (issue 16).

    python benchmarks/selection.py results/closed_loop/trials results/closed_loop/select \
        [--dev-seeds 0,1] [--json results/selection/selection.json] [--figures docs/img/selection]

Each trial of a corpus holds the trainer's logs (run/), the rollout success of every checkpoint (result.json, the
truth, never read by a selector), FQE's V(s0) per checkpoint (fqe_<steps>.json) and one forward pass per checkpoint
(forward.json). Every selector reads the same `CheckpointTable` the product builds (analyzer.selection): the
analyzer's ingest of run/, plus forward.json under "forward:" and FQE under "fqe:" for the tiers that may use them.

Tiers (issue 16): T0 baselines (last, random, lowest logged TD, Q-peak); T1 logs only (the trainer's logged
signals); T2 + one forward pass per checkpoint; T3 + FQE on the shortlist of 3; FQE on every checkpoint.

Split: selectors and their one tolerance were designed on the development seeds (`--dev-seeds`); the headline numbers
are the held-out seeds. Intervals are scipy's BCa bootstrap over runs (10,000 resamples); paired differences are
bootstrapped on the per-run differences. A run whose checkpoints all score the same success is left out (regret is
undefined there: no pick can be better or worse).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# benchmarks/robot_eval.py would shadow the robot_eval package when this file runs as a script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from analyzer.selection import (  # noqa: E402
    DRIFT_TOLERANCE,
    SHORTLIST,
    CheckpointTable,
    confidence_basis,
    drift_alarm,
    rank_order,
    select_drift,
    select_last,
    select_qpeak,
    table_from_run,
)

#: "the pick is within 0.1 of the best checkpoint" (issue 16's confidence event), in success-rate points
WITHIN = 0.1
#: a rollout-labelled collapse: success had reached >= COLLAPSE_FROM and a later checkpoint lost >= COLLAPSE_DROP
COLLAPSE_FROM = 0.5
COLLAPSE_DROP = 0.5


@dataclass
class Trial:
    key: str
    seed: int
    scenario: str
    variant: str
    table: CheckpointTable
    success: np.ndarray  # per table step
    fqe_seconds: float
    forward_seconds: float
    log_every: int
    ckpt_every: int
    logged_distance: tuple[np.ndarray, np.ndarray] | None = None  # (steps, values) as logged, for the alarm
    extra: dict[str, float] = field(default_factory=dict)


def load_trial(tdir: Path) -> Trial | None:
    """One finished trial as a table (logs + forward + FQE) and its truth; None when it is not finished."""
    from analyzer.api import analyze

    res_path = tdir / "result.json"
    if not res_path.exists():
        return None
    r = json.loads(res_path.read_text())
    success = {int(k): float(v) for k, v in r["success"].items()}
    steps = sorted(success)
    report = analyze(tdir / "run")
    if not report.runs:
        return None
    run = report.runs[0].run
    table = table_from_run(run, steps)
    fw_path = tdir / "forward.json"
    fw = json.loads(fw_path.read_text()) if fw_path.exists() else {}
    if fw:
        table = table.merge({int(k): v for k, v in fw["scores"].items()}, "forward pass", prefix="forward:")
    table = table.merge(
        {int(k): {"v_s0": float(v)} for k, v in r.get("fqe", {}).items()}, "FQE", prefix="fqe:"
    )
    pdd = run.series.get("policy_data_distance_holdout") or run.series.get("policy_data_distance")
    spec = r["spec"]
    cfg = json.loads((tdir / "run" / "config.json").read_text())
    return Trial(
        key=tdir.name,
        seed=int(spec["seed"]),
        scenario=str(spec["scenario"]),
        variant=str(spec["variant"]),
        table=table,
        success=np.array([success[s] for s in steps]),
        fqe_seconds=float(r.get("timing", {}).get("fqe", math.nan)),
        forward_seconds=float(fw.get("cpu_seconds", math.nan)) if fw else math.nan,
        log_every=int(cfg.get("log_every", 100)),
        ckpt_every=int(cfg.get("ckpt_every", steps[1] - steps[0] if len(steps) > 1 else 1)),
        logged_distance=(pdd.steps, pdd.values) if pdd is not None else None,
    )


# ---------------------------------------------------------------------------- the methods
Method = Callable[[Trial], list[int] | None]  # checkpoint indices, best first (None: not applicable)


def _by(
    values: np.ndarray | None, lower: bool = False, after: int | None = None, t: Trial | None = None
) -> list[int] | None:
    """Checkpoints by one signal (highest first, or lowest), only those after `after` ranked (the product's order)."""
    if values is None or not np.isfinite(values).any():
        return None
    mask = None
    if after is not None and t is not None and (t.table.steps > after).any():
        mask = t.table.steps > after
    return rank_order(-values if lower else values, mask)


def _without(t: Trial, *prefixes: str) -> CheckpointTable:
    """The trial's table without the signals of the given tiers (so a tier never reads a higher tier's scores)."""
    keep = {k: v for k, v in t.table.values.items() if not k.startswith(prefixes)}
    return CheckpointTable(t.table.run_id, t.table.steps, keep, t.table.sources, t.table.warm_start)


def _logs(t: Trial) -> CheckpointTable:
    return _without(t, "forward:", "fqe:")


def _logs_forward(t: Trial) -> CheckpointTable:
    return _without(t, "fqe:")


def _order(r: object) -> list[int] | None:
    return None if r is None else list(r.order)  # type: ignore[attr-defined]


def _fqe_rerank(t: Trial, order: list[int] | None, k: int = SHORTLIST) -> list[int] | None:
    """T3: FQE on the first k of a cheap ranking; those k re-ranked by FQE V(s0), the rest after them."""
    if order is None:
        return None
    v = t.table.values.get("fqe:v_s0")
    if v is None:
        return None
    top = sorted(order[:k], key=lambda i: (-v[i], -i))
    return top + order[k:]


def _first_after_warm_start(t: Trial) -> list[int] | None:
    after = np.flatnonzero(t.table.steps > t.table.warm_start)
    if not len(after):
        return None
    first = int(after[0])
    return [first] + [i for i in range(len(t.table.steps)) if i != first]


def _logged_drift(t: Trial) -> list[int] | None:
    tab = _logs(t)
    return _order(select_drift(tab)) if tab.get("policy_data_distance") is not None else None


METHODS: dict[str, tuple[str, Method]] = {
    "last": ("T0", lambda t: _order(select_last(_logs(t)))),
    "lowest TD (logged)": ("T0", lambda t: _by(_logs(t).get("td_error"), lower=True)),
    "Q-peak (Metric 3.1, logged)": ("T0", lambda t: _order(select_qpeak(_logs(t)))),
    # not a selector anyone proposed: a check on how much of drift's gain is "just after the switch" in these runs
    "first checkpoint after the warm start": ("T0", _first_after_warm_start),
    "drift (logged distance)": ("T1", _logged_drift),
    "highest held-out Q (logged)": (
        "T1",
        lambda t: _by(_logs(t).get("q_data_holdout"), after=t.table.warm_start, t=t),
    ),
    "lowest held-out TD (logged)": (
        "T1",
        lambda t: _by(_logs(t).get("td_error_holdout"), lower=True, after=t.table.warm_start, t=t),
    ),
    "SoftOPC (logged)": ("T1", lambda t: _by(_logs(t).get("soft_opc"), after=t.table.warm_start, t=t)),
    "drift (forward pass)": ("T2", lambda t: _order(select_drift(_logs_forward(t)))),
    "critic V(s0) (forward pass)": (
        "T2",
        lambda t: _by(_logs_forward(t).get("forward:v_s0"), after=t.table.warm_start, t=t),
    ),
    "FQE on drift(logged) top 3": ("T3", lambda t: _fqe_rerank(t, _logged_drift(t))),
    "FQE on drift(forward) top 3": ("T3", lambda t: _fqe_rerank(t, _order(select_drift(_logs_forward(t))))),
    "FQE on all": ("FQE", lambda t: _by(t.table.values.get("fqe:v_s0"))),
}


# ---------------------------------------------------------------------------- scoring
def regret(success: np.ndarray, i: int) -> float:
    best, worst = success.max(), success.min()
    return float((best - success[i]) / (best - worst))


def bca(x: np.ndarray, stat: Callable[[np.ndarray], float] = np.mean) -> tuple[float, float, float]:
    """(statistic, low, high): scipy's BCa 95% interval over runs; the point itself when n < 3 or no spread."""
    from scipy.stats import bootstrap

    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    point = float(stat(x))
    if len(x) < 3 or np.all(x == x[0]):
        return (point, point, point)
    res = bootstrap((x,), lambda a, axis=-1: np.apply_along_axis(stat, axis, a), n_resamples=10_000, method="BCa",
                    random_state=0, vectorized=True)  # fmt: skip
    lo, hi = res.confidence_interval
    return (point, float(lo), float(hi))


def score(trials: list[Trial]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    last = {t.key: regret(t.success, len(t.success) - 1) for t in trials}
    fqe_all = {}
    for t in trials:
        o = METHODS["FQE on all"][1](t)
        fqe_all[t.key] = regret(t.success, o[0]) if o else math.nan
    for name, (tier, fn) in METHODS.items():
        r1, r3, picks, vs_last, vs_fqe = [], [], {}, [], []
        for t in trials:
            order = fn(t)
            if not order:
                continue
            a = regret(t.success, order[0])
            b = min(regret(t.success, i) for i in order[:SHORTLIST])
            r1.append(a)
            r3.append(b)
            picks[t.key] = int(t.table.steps[order[0]])
            vs_last.append(a - last[t.key])
            vs_fqe.append(a - fqe_all[t.key])
        r1a, r3a, dl, df = (np.array(x) for x in (r1, r3, vs_last, vs_fqe))
        out[name] = {
            "tier": tier,
            "n": len(r1),
            "regret_mean": bca(r1a),
            "regret_median": float(np.median(r1a)) if len(r1a) else math.nan,
            "regret_at_3": bca(r3a),
            "beats_last": float(np.mean(dl < 0)) if len(dl) else math.nan,
            "not_worse_than_last": float(np.mean(dl <= 0)) if len(dl) else math.nan,
            "minus_fqe": bca(df),
            "wins_or_ties_fqe": float(np.mean(df <= 0)) if len(df) else math.nan,
            "picks": picks,
        }
    # random: expected regret of a uniform pick (exact)
    rnd = np.array(
        [(t.success.max() - t.success.mean()) / (t.success.max() - t.success.min()) for t in trials]
    )
    out["random (expected)"] = {"tier": "T0", "n": len(rnd), "regret_mean": bca(rnd),
                                "regret_median": float(np.median(rnd)) if len(rnd) else math.nan}  # fmt: skip
    return out


def sensitivity(
    trials: list[Trial], tolerances: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5)
) -> dict[str, object]:
    """Mean regret@1 of drift at other tolerances: not a choice (0.75 was fixed on the development seeds), the
    answer to "how much does the result hang on that one number?"."""
    out: dict[str, object] = {}
    for label, tab in (("forward pass", _logs_forward), ("logged distance", _logs)):
        row = {}
        for tol in tolerances:
            r = [regret(t.success, o.order[0]) for t in trials if (o := select_drift(tab(t), tolerance=tol))]
            row[str(tol)] = float(np.mean(r)) if r else math.nan
        out[label] = row
    return out


def costs(trials: list[Trial]) -> dict[str, float]:
    """Per run, as the trials recorded them: the forward pass's CPU seconds against FQE-on-all's wall seconds (one
    thread, so close to its CPU time on an idle core; inflated by load). The same-process CPU comparison, FQE on
    the shortlist included, is `--cost` (results/selection/cost.json)."""
    fw = np.array([t.forward_seconds for t in trials])
    fq = np.array([t.fqe_seconds for t in trials])
    ok = np.isfinite(fw) & np.isfinite(fq) & (fq > 0)
    return {
        "runs": int(ok.sum()),
        "forward_cpu_s": float(np.mean(fw[ok])) if ok.any() else math.nan,
        "fqe_all_wall_s": float(np.mean(fq[ok])) if ok.any() else math.nan,
        "forward_share_of_fqe": float(np.mean(fw[ok] / fq[ok])) if ok.any() else math.nan,
    }


# ---------------------------------------------------------------------------- confidence (calibration)
def within(t: Trial, order: list[int]) -> bool:
    return bool(t.success.max() - t.success[order[0]] <= WITHIN + 1e-9)


#: the product's method -> the benchmark method its confidence is fitted on (drift: the forward-pass distance, which
#: every trial has; the same bins apply to the logged distance, whose reliability is reported on its own)
CALIBRATED = {"drift": "drift (forward pass)", "qpeak": "Q-peak (Metric 3.1, logged)", "last": "last"}


def _outcomes(trials: list[Trial], product: str, method: str) -> dict[str, list[int]]:
    """Per confidence bin: 1/0 per run, whether `method`'s pick is within 0.1 of the best checkpoint."""
    by: dict[str, list[int]] = {}
    for t in trials:
        order = METHODS[method][1](t)
        if order:
            tab = _logs_forward(t) if "forward" in method else _logs(t)
            by.setdefault(confidence_basis(tab, product), []).append(int(within(t, order)))
    return by


def fit_confidence(trials: list[Trial]) -> dict[str, dict[str, float]]:
    """analyzer.selection.CONFIDENCE from development runs: per bin, the Laplace-smoothed share within 0.1."""
    out: dict[str, dict[str, float]] = {}
    for product, method in CALIBRATED.items():
        for k, v in sorted(_outcomes(trials, product, method).items()):
            out[k] = {"p": (sum(v) + 1) / (len(v) + 2), "n": len(v), "hits": sum(v)}
    return out


def reliability(
    trials: list[Trial], conf: dict[str, dict[str, float]], methods: dict[str, str] | None = None
) -> list[dict[str, float]]:
    """Per bin on (held-out) runs: the stated confidence against the observed share within 0.1 (Wilson 95%)."""
    rows: list[dict[str, float]] = []
    for product, method in (methods or CALIBRATED).items():
        for k, v in sorted(_outcomes(trials, product, method).items()):
            n, h = len(v), sum(v)
            p, z = h / n, 1.96
            centre = (p + z * z / (2 * n)) / (1 + z * z / n)
            half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
            stated = conf.get(k, {}).get("p", math.nan)
            rows.append({"bin": k, "method": method, "stated": stated, "observed": p,
                         "low": centre - half, "high": centre + half, "n": n})  # fmt: skip
    return rows


def calibration_error(rows: list[dict[str, float]]) -> float:
    """Run-weighted mean |stated - observed| over the bins (the issue's "calibrated within +-0.1")."""
    n = sum(r["n"] for r in rows)
    return sum(r["n"] * abs(r["stated"] - r["observed"]) for r in rows) / n if n else math.nan


# ---------------------------------------------------------------------------- collapse early warning
def collapse_step(t: Trial) -> tuple[int, int] | None:
    """(last good checkpoint, first collapsed checkpoint) of a rollout-labelled collapse, else None."""
    s = t.success
    peak = -1.0
    for i, v in enumerate(s):
        if peak >= COLLAPSE_FROM and v <= peak - COLLAPSE_DROP:
            return int(t.table.steps[i - 1]), int(t.table.steps[i])
        peak = max(peak, v)
    return None


def early_warning(
    trials: list[Trial], source: str, tolerance: float = DRIFT_TOLERANCE, rebase_after: int | None = None
) -> dict[str, object]:
    """Recall and false alarms of `drift_alarm` against rollout-labelled collapses.

    `source` "logged": the trainer's logged distance (every log interval); "forward": the forward pass at each
    checkpoint. Early (strict): raised by the last checkpoint still measured good; early (lenient): raised at least
    one logging interval before the first checkpoint measured collapsed."""
    strict = lenient = pos = neg = false_alarm = 0
    rows = []
    for t in trials:
        if source == "logged":
            if t.logged_distance is None:
                continue
            steps, d = t.logged_distance
        else:
            d = t.table.values.get("forward:policy_data_distance")
            if d is None:
                continue
            steps = t.table.steps
        alarm = drift_alarm(steps, d, t.table.warm_start, tolerance, rebase_after)
        c = collapse_step(t)
        a = alarm.step if alarm else None
        if c is None:
            neg += 1
            false_alarm += int(a is not None)
        else:
            pos += 1
            strict += int(a is not None and a <= c[0])
            lenient += int(a is not None and a <= c[1] - t.log_every)
        rows.append({"run": t.key, "alarm": a, "collapse": c})
    return {
        "source": source,
        "collapses": pos,
        "no_collapse": neg,
        "recall_strict": strict / pos if pos else math.nan,
        "recall_lenient": lenient / pos if pos else math.nan,
        "false_alarm_rate": false_alarm / neg if neg else math.nan,
        "runs": rows,
    }


def alarm_sensitivity(
    trials: list[Trial],
    rebase: tuple[int | None, ...] = (None, 300, 500, 1000),
    tolerances: tuple[float, ...] = (0.25, 0.5, 0.75),
) -> list[dict[str, object]]:
    """The early warning's trade-off on the logged distance: the product's alarm (rebase None: the minimum includes
    the warm start, so the switch itself raises it) against variants that wait out the switch's transient and
    measure drift from where the policy settles. A table to read, not a tuning step: no variant is adopted."""
    rows = []
    for rb in rebase:
        for tol in tolerances:
            e = early_warning(trials, "logged", tol, rb)
            rows.append({"rebase_after": rb, "tolerance": tol} | {k: v for k, v in e.items() if k != "runs"})
    return rows


# ---------------------------------------------------------------------------- output
def _fmt(ci: object) -> str:
    if not isinstance(ci, (tuple, list)) or not math.isfinite(ci[0]):
        return "n/a"
    return f"{ci[0]:.2f} [{ci[1]:.2f}, {ci[2]:.2f}]"


def table_md(scores: dict[str, dict[str, object]]) -> str:
    lines = [
        "| tier | method | n | regret@1 mean [BCa 95%] | median | regret@3 | beats last | minus FQE-on-all | wins/ties FQE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in scores.items():
        pct = lambda x: f"{100 * x:.0f}%" if isinstance(x, float) and math.isfinite(x) else "—"  # noqa: E731
        lines.append(
            f"| {s['tier']} | {name} | {s['n']} | {_fmt(s['regret_mean'])} | {s['regret_median']:.2f} | "
            f"{_fmt(s.get('regret_at_3'))} | {pct(s.get('beats_last'))} | {_fmt(s.get('minus_fqe'))} | "
            f"{pct(s.get('wins_or_ties_fqe'))} |"
        )
    return "\n".join(lines)


def alarm_md(rows: list[dict[str, object]]) -> str:
    """The alarm trade-off as a table: one row per (rebase_after, tolerance)."""
    out = [
        "| alarm | tolerance | collapses | recall (lenient) | recall (strict) | runs without collapse | false alarms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rb = r["rebase_after"]
        name = (
            "product (minimum includes the warm start)"
            if rb is None
            else f"rebased {rb} steps after the switch"
        )
        out.append(
            f"| {name} | {r['tolerance']} | {r['collapses']} | {r['recall_lenient']:.2f} | {r['recall_strict']:.2f} "
            f"| {r['no_collapse']} | {r['false_alarm_rate']:.2f} |"
        )
    return "\n".join(out)


def figure(rel: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    ax.fill_between([0, 1], [-0.1, 0.9], [0.1, 1.1], color="0.9", label="±0.1 (target)")
    for r in rel:
        ax.errorbar(r["stated"], r["observed"], yerr=[[r["observed"] - r["low"]], [r["high"] - r["observed"]]],
                    fmt="o", capsize=3)  # fmt: skip
        ax.annotate(f"{r['bin']} (n={r['n']})", (r["stated"], r["observed"]), textcoords="offset points",
                    xytext=(6, -4), fontsize=8)  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("stated confidence (fitted on development seeds)")
    ax.set_ylabel("held-out share within 0.1 of the best")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def measure_cost(trial_dir: Path, fqe_steps: int, shortlist: int = SHORTLIST) -> dict[str, float]:
    """CPU seconds (time.process_time, one process, one thread) of each tier on one trial's checkpoints: the forward
    pass of every checkpoint, FQE on every checkpoint, FQE on `shortlist` of them. Same process, same load."""
    import time

    import torch

    from reference_trainer.checkpoint import list_checkpoints
    from reference_trainer.forward import forward_scores
    from reference_trainer.fqe import FQEConfig, fit_fqe

    torch.set_num_threads(1)
    spec = json.loads((trial_dir / "spec.json").read_text())
    gamma = json.loads((trial_dir / "run" / "config.json").read_text()).get("gamma")
    ckpts = list_checkpoints(trial_dir / "run")
    out: dict[str, float] = {"checkpoints": len(ckpts), "fqe_steps": fqe_steps}
    t0 = time.process_time()
    forward_scores(ckpts, spec["dataset_path"])
    out["forward_s"] = time.process_time() - t0
    cfg = FQEConfig(steps=fqe_steps, seed=int(spec["seed"]), gamma=gamma)
    t0 = time.process_time()
    fit_fqe([p for _, p in ckpts[-shortlist:]], spec["dataset_path"], cfg)
    out["fqe_shortlist_s"] = time.process_time() - t0
    t0 = time.process_time()
    fit_fqe([p for _, p in ckpts], spec["dataset_path"], cfg)
    out["fqe_all_s"] = time.process_time() - t0
    out["forward_share"] = out["forward_s"] / out["fqe_all_s"]
    out["shortlist_share"] = out["fqe_shortlist_s"] / out["fqe_all_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/selection.py", description=__doc__.split("\n\n")[0])
    p.add_argument("corpora", nargs="+", type=Path)
    p.add_argument("--dev-seeds", default="0,1")
    p.add_argument("--json", type=Path)
    p.add_argument("--figures", type=Path)
    p.add_argument("--markdown", type=Path, help="write the tables (every split) to this file")
    p.add_argument(
        "--cost", type=Path, help="instead: measure each tier's CPU time on this trial dir (with checkpoints)"
    )
    p.add_argument("--fqe-steps", type=int, default=5000)
    p.add_argument(
        "--alarm-unseen-from",
        type=int,
        default=7,
        help="first seed that no early-warning variant was designed on (the alarm table is also given for these)",
    )
    a = p.parse_args(argv)
    if a.cost:
        print(json.dumps(measure_cost(a.cost, a.fqe_steps)))
        return 0
    dev_seeds = {int(s) for s in a.dev_seeds.split(",") if s}
    trials: list[Trial] = []
    flat = 0
    for root in a.corpora:
        for tdir in sorted(d for d in root.iterdir() if d.is_dir()):
            t = load_trial(tdir)
            if t is None:
                continue
            if t.success.max() == t.success.min():
                flat += 1
                continue
            trials.append(t)
    dev = [t for t in trials if t.seed in dev_seeds]
    held = [t for t in trials if t.seed not in dev_seeds]
    conf = fit_confidence(dev)
    rel = reliability(held, conf)
    fresh = [t for t in held if t.seed >= 4]  # the select corpus: seeds no design step saw
    variants = alarm_sensitivity(held)
    unseen = [t for t in held if t.seed >= a.alarm_unseen_from]
    variants_unseen = alarm_sensitivity(unseen)
    result = {
        "trials": len(trials) + flat,
        "flat_left_out": flat,
        "dev_seeds": sorted(dev_seeds),
        "tolerance": DRIFT_TOLERANCE,
        "all": score(trials),
        "dev": score(dev),
        "held_out": score(held),
        "fresh": score(fresh),
        "costs": costs(trials),
        "tolerance_sensitivity": {
            split: sensitivity(ts) for split, ts in (("dev", dev), ("held_out", held), ("fresh", fresh))
        },
        "confidence_fit_dev": conf,
        "reliability_held_out": rel,
        "calibration_error_held_out": calibration_error(rel),
        "reliability_logged_drift_held_out": reliability(held, conf, {"drift": "drift (logged distance)"}),
        "early_warning": {
            split: {src: early_warning(ts, src) for src in ("logged", "forward")}
            for split, ts in (("all", trials), ("held_out", held))
        },
        "early_warning_variants_held_out": variants,
        "early_warning_variants_unseen": {"from_seed": a.alarm_unseen_from, "rows": variants_unseen},
    }
    md = []
    titles = {"held_out": "held-out seeds", "fresh": "held-out seeds 4+ (runs no design step saw)",
              "dev": "development seeds", "all": "all runs"}  # fmt: skip
    for split in ("held_out", "fresh", "dev", "all"):
        md.append(
            f"### {titles[split]} ({result[split]['last']['n']} scorable runs)\n\n{table_md(result[split])}\n"
        )  # type: ignore[index]
    md.append(f"### early warning variants (held-out seeds, logged distance)\n\n{alarm_md(variants)}\n")
    md.append(
        f"### early warning variants (seeds {a.alarm_unseen_from}+, unseen by the variants)\n\n"
        f"{alarm_md(variants_unseen)}\n"
    )
    text = "\n".join(md)
    print(text)
    if a.markdown:
        a.markdown.parent.mkdir(parents=True, exist_ok=True)
        a.markdown.write_text(
            f"<!-- generated by: python benchmarks/selection.py {' '.join(str(c) for c in a.corpora)} -->\n\n{text}"
        )
    print("\ncosts:", json.dumps(result["costs"]))
    print("tolerance sensitivity:", json.dumps(result["tolerance_sensitivity"]))
    print("confidence (dev):", json.dumps(conf))
    print("reliability (held-out):", json.dumps(rel), "mean |error|", result["calibration_error_held_out"])
    for split, ew in result["early_warning"].items():  # type: ignore[union-attr]
        for src, e in ew.items():
            print(f"early warning {split} {src}: " + json.dumps({k: v for k, v in e.items() if k != "runs"}))
    for row in variants:
        print("early warning variant (held-out, logged): " + json.dumps(row))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1, default=float) + "\n")
    if a.figures:
        figure(result["reliability_held_out"], a.figures / "reliability.png")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
