"""Real-log benchmark: the analyzer on training logs that other people wrote, scored against their own evaluation.

    python benchmarks/realworld.py                          # ../shared/realworld (development set)
    python benchmarks/realworld.py PATH [PATH ...]          # any folders of runs (e.g. fixtures/real)
    python benchmarks/realworld.py --json out.json --plots docs/img/realworld

Each real run logs its own evaluation return. The analyzer never reads it to decide (no rule reads
`eval_return`); this script does, to score what the analyzer said:

- the pick: the smoothed evaluation return (5-point rolling median) at the picked step, at the end of the
  run and at its best. A pick is *harmful* when its evaluation is below the end-of-run value by more
  than 10% of the run's evaluation range: following the advice would have cost the user;
- coverage: of the runs whose files hold a dataset-Q series (a tag this script knows means E_D[Q(s,a)],
  listed below, independent of the analyzer's profiles), the share where the analyzer resolved one;
- divergence recall: of the runs labelled diverged by a person (benchmarks/realworld_labels.yaml), the
  share the analyzer calls `diverged`; and the runs it calls diverged that are not labelled.

The truth tags live here, apart from the analyzer's profiles, so a profile change cannot move the yardstick.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyzer import analyze  # noqa: E402
from analyzer.model import Run, Series  # noqa: E402
from analyzer.report import RunResult  # noqa: E402

DEFAULT_PATH = ROOT.parent / "shared" / "realworld"
LABELS = Path(__file__).with_name("realworld_labels.yaml")

#: Evaluation-return tags of the implementations in the real sets (truth for the pick; never read by rules).
EVAL_TAGS = (
    "evaluation/Average Returns",  # rlkit
    "Eval_AverageReturn",  # CS285
    "environment",  # d3rlpy v1 FileLogger (environment.csv)
    "eval/episode_reward",  # OfflineRL-Kit
    "eval/normalized_episode_reward",
    "eval_score",  # CORL
    "test/returns_stat/mean",  # Tianshou
    "eval/reward",  # TorchRL
)
#: Tags that hold the dataset-Q mean E_D[Q(s, a)] itself (not a proxy such as Q(s, pi(s))).
DATASET_Q_TAGS = (
    "trainer/Q1 Predictions Mean",
    "Exploitation_Data_q-values",
    "Data_q-values",
    "offrl/q_data",
    "average_qf1",
    "q1_data_mean",
)
HARM_FRACTION = 0.1
SMOOTH_POINTS = 5


@dataclass
class Row:
    run: str
    framework: str
    verdict: str
    reason: str
    pick_step: int | None
    pick_source: str
    eval_tag: str | None
    eval_at_pick: float | None
    eval_end: float | None
    eval_best: float | None
    eval_range: float | None
    regret_pick: float | None  # (best - pick) / range
    regret_end: float | None
    harmful: bool | None
    holds_dataset_q: bool
    resolved_dataset_q: bool
    labelled_diverged: bool


def eval_series(run: Run) -> tuple[str | None, Series | None]:
    for tag in EVAL_TAGS:
        s = run.raw.get(tag)
        if s is not None and np.isfinite(s.values).sum() >= 3:
            return tag, s
    s = run.series.get("eval_return")
    if s is not None and np.isfinite(s.values).sum() >= 3:
        return s.source, s
    return None, None


def smoothed(s: Series) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(s.values)
    med = pd.Series(s.values[ok]).rolling(SMOOTH_POINTS, center=True, min_periods=1).median()
    return s.steps[ok], med.to_numpy()


def value_at(steps: np.ndarray, values: np.ndarray, step: int) -> float:
    """Smoothed evaluation at the logged evaluation step nearest to `step` (ties: the earlier one)."""
    i = int(np.argmin(np.abs(steps - step)))
    return float(values[i])


def score(res: RunResult, labels: list[dict[str, str]]) -> Row:
    run = res.run
    tag, ev = eval_series(run)
    holds_q = any(t in run.raw for t in DATASET_Q_TAGS)
    resolved = "q_data" in run.series and np.isfinite(run.series["q_data"].values).any()
    diverged = any(lab["match"] in run.id for lab in labels)
    pick = res.checkpoint.step if res.checkpoint is not None else None
    pick_src = "checkpoint file" if res.checkpoint is not None and res.checkpoint.path else "logged step"
    row = Row(
        run=run.id,
        framework=run.framework,
        verdict=res.verdict,
        reason=res.verdict_reason,
        pick_step=pick,
        pick_source=pick_src if pick is not None else "none",
        eval_tag=tag,
        eval_at_pick=None,
        eval_end=None,
        eval_best=None,
        eval_range=None,
        regret_pick=None,
        regret_end=None,
        harmful=None,
        holds_dataset_q=holds_q,
        resolved_dataset_q=bool(resolved),
        labelled_diverged=diverged,
    )
    if ev is None:
        return row
    st, sm = smoothed(ev)
    end, best, lo = float(sm[-1]), float(np.max(sm)), float(np.min(sm))
    rng = best - lo
    row.eval_end, row.eval_best, row.eval_range = end, best, rng
    row.regret_end = (best - end) / rng if rng > 0 else 0.0
    if pick is not None:
        at = value_at(st, sm, pick)
        row.eval_at_pick = at
        row.regret_pick = (best - at) / rng if rng > 0 else 0.0
        row.harmful = bool(at < end - HARM_FRACTION * rng)
    return row


def load_labels() -> list[dict[str, str]]:
    data = yaml.safe_load(LABELS.read_text()) or {}
    return list(data.get("diverged", []))


def summarize(rows: list[Row]) -> dict[str, Any]:
    verdicts = Counter(r.verdict for r in rows)
    of = [r for r in rows if r.verdict == "overfitting"]
    scored = [r for r in rows if r.harmful is not None]
    holds = [r for r in rows if r.holds_dataset_q]
    lab = [r for r in rows if r.labelled_diverged]
    flagged = [r for r in rows if r.verdict == "diverged"]
    moved = [r for r in scored if r.regret_pick is not None and r.regret_end is not None]
    return {
        "runs": len(rows),
        "verdicts": dict(sorted(verdicts.items())),
        "overfitting_picks": len(of),
        "harmful_overfitting_picks": sum(1 for r in of if r.harmful),
        "picks_scored": len(scored),
        "harmful_picks": sum(1 for r in scored if r.harmful),
        "runs_holding_dataset_q": len(holds),
        "dataset_q_resolved": sum(1 for r in holds if r.resolved_dataset_q),
        "labelled_diverged": len(lab),
        "diverged_flagged": sum(1 for r in lab if r.verdict == "diverged"),
        "diverged_false_alarms": sum(1 for r in flagged if not r.labelled_diverged),
        "mean_regret_pick": float(np.mean([r.regret_pick for r in moved])) if moved else None,
        "mean_regret_end": float(np.mean([r.regret_end for r in moved])) if moved else None,
    }


def plot(res: RunResult, row: Row, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = res.run
    fig, (ax_q, ax_e) = plt.subplots(2, 1, figsize=(6, 3.8), sharex=True)
    q = run.series.get("q_data") or run.series.get("q_target") or run.series.get("q_policy")
    if q is not None:
        ax_q.plot(q.steps, q.values, lw=1, color="tab:blue", label=q.name)
        finite = q.values[np.isfinite(q.values)]
        if finite.size and np.nanmax(np.abs(finite)) > 1e4 * max(1e-9, np.nanmedian(np.abs(finite))):
            ax_q.set_yscale("symlog")
    ax_q.set_ylabel("dataset Q")
    _, ev = eval_series(run)
    if ev is not None:
        st, sm = smoothed(ev)
        ax_e.plot(ev.steps, ev.values, lw=0.8, color="0.6", label="eval return (logged)")
        ax_e.plot(st, sm, lw=1.5, color="tab:green", label="5-point median")
    ax_e.set_ylabel("eval return")
    ax_e.set_xlabel(run.x_unit)
    if row.pick_step is not None:
        for ax in (ax_q, ax_e):
            ax.axvline(row.pick_step, color="tab:red", ls="--", lw=1)
    harm = " HARMFUL" if row.harmful else ""
    ax_q.set_title(f"{row.run[-70:]}\n{row.verdict}, pick {row.pick_step}{harm}", fontsize=8)
    if ev is not None:
        ax_e.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)


def slug(run_id: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in "__".join(run_id.split("/")[-3:]))
    return keep[-90:].lstrip("-_.") or "run"


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", type=Path, help=f"folders of runs (default: {DEFAULT_PATH})")
    ap.add_argument("--rules", type=Path, help="rules file for the analyzer")
    ap.add_argument("--json", type=Path, help="write per-run rows and the summary as JSON")
    ap.add_argument(
        "--plots", type=Path, help="write one PNG per run (dataset Q over eval return, pick marked)"
    )
    args = ap.parse_args(argv)
    paths = args.paths or [DEFAULT_PATH]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"error: not found: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    labels = load_labels()
    report = analyze(paths, rules=args.rules)
    rows = [score(res, labels) for res in report.runs]
    print(
        f"{'run':58s} {'framework':18s} {'verdict':13s} {'pick':>8s} {'eval@pick':>10s} {'eval end':>10s} "
        f"{'best':>10s} harm"
    )
    for r in sorted(rows, key=lambda r: r.run):
        print(
            f"{r.run[-58:]:58s} {r.framework[:18]:18s} {r.verdict:13s} {str(r.pick_step):>8s} "
            f"{fmt(r.eval_at_pick):>10s} {fmt(r.eval_end):>10s} {fmt(r.eval_best):>10s} "
            f"{'YES' if r.harmful else ('-' if r.harmful is None else 'no')}"
        )
    s = summarize(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": s, "runs": [asdict(r) for r in rows]}, indent=1) + "\n")
    if args.plots:
        for res, row in zip(report.runs, rows, strict=True):
            plot(res, row, args.plots / f"{slug(row.run)}.png")
    print()
    print(f"runs: {s['runs']}; verdicts: {', '.join(f'{k} {v}' for k, v in s['verdicts'].items())}")
    print(
        f"overfitting picks: {s['overfitting_picks']}, harmful: {s['harmful_overfitting_picks']}; "
        f"all picks harmful: {s['harmful_picks']}/{s['picks_scored']}"
    )
    print(f"dataset Q resolved: {s['dataset_q_resolved']}/{s['runs_holding_dataset_q']} runs that hold one")
    print(
        f"divergence: {s['diverged_flagged']}/{s['labelled_diverged']} labelled runs flagged diverged, "
        f"{s['diverged_false_alarms']} unlabelled runs flagged"
    )
    print(
        f"normalised eval regret (best - x) / range: pick {fmt(s['mean_regret_pick'])}, "
        f"end of run {fmt(s['mean_regret_end'])}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
