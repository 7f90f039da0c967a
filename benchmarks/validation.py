"""Validation of the diagnosis on synthetic runs with known truth (fixtures/synthetic.py).

    python benchmarks/validation.py                 # main table (400 curves), markdown on stdout
    python benchmarks/validation.py --sweep         # smoother / weight / peak-tolerance comparison
    python benchmarks/validation.py --changepoints  # ruptures algorithm/cost comparison with timings

Measures verdict accuracy (target >= 95%), peak-step error in logging intervals (target: within
one interval in >= 90% of overfitting runs) and the value regret of the picked peak (how much of
the true Q decline the pick gives away), broken down by noise level, kind and curve length.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.config import RulesConfig, default_config  # noqa: E402
from analyzer.diagnose import diagnose_run  # noqa: E402
from fixtures.synthetic import KINDS, make_curve  # noqa: E402

NOISES = (0.02, 0.05, 0.1, 0.2)
LENGTHS = (50, 200, 1000)
INTERVALS = (1, 100, 1000)
OFFSETS = (0.0, -1.0, 2.0)
# kinds that carry a shape judgment get more weight than the bookkeeping ones
WEIGHTS = {
    "overfitting": 4,
    "healthy": 3,
    "dip": 1,
    "underfitting": 3,
    "diverging": 1,
    "nan": 1,
    "short": 1,
    "proxy-only": 1,
    "brac": 1,
    "no-metadata": 1,
}


def population(n: int, seed: int = 2026) -> list[dict]:
    rng = np.random.default_rng(seed)
    kinds = [k for k in KINDS for _ in range(WEIGHTS[k])]
    out = []
    for i in range(n):
        out.append(
            dict(
                kind=kinds[i % len(kinds)],
                noise=NOISES[int(rng.integers(len(NOISES)))],
                n_points=LENGTHS[int(rng.integers(len(LENGTHS)))],
                log_interval=INTERVALS[int(rng.integers(len(INTERVALS)))],
                offset=OFFSETS[int(rng.integers(len(OFFSETS)))],
                irregular=bool(rng.random() < 0.25),
                nan_gap=bool(rng.random() < 0.15),
                seed=1000 + i,
            )
        )
    return out


def evaluate(spec_list: list[dict], cfg: RulesConfig) -> list[dict]:
    rows = []
    for spec in spec_list:
        sr = make_curve(**spec)
        t0 = time.perf_counter()
        res = diagnose_run(sr.run, cfg)
        dt = time.perf_counter() - t0
        row = dict(spec, truth=sr.truth.verdict, got=res.verdict, seconds=dt, peak_err=None, regret=None)
        if sr.truth.peak_step is not None and res.verdict == "overfitting" and res.peak_step is not None:
            steps = sr.run.series[
                next(k for k in ("q_data", "q_target", "q_policy") if k in sr.run.series)
            ].steps
            i_true = int(np.searchsorted(steps, sr.truth.peak_step))
            i_got = int(np.searchsorted(steps, res.peak_step))
            row["peak_err"] = i_got - i_true  # in logged points (= logging intervals)
            qc = sr.truth.q_clean
            drop = sr.truth.params.get("drop", 0.0)
            if qc is not None and drop > 0:
                row["regret"] = float((qc[i_true] - qc[i_got]) / drop)
        rows.append(row)
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def table(rows: list[dict], key: str) -> list[str]:
    groups: dict = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r)
    lines = [
        f"| {key} | runs | verdict accuracy | overfitting runs with a peak | peak within 1 interval | within 3 | "
        "median abs error (intervals) | median abs error (% of run) | median value regret |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k in sorted(groups, key=lambda v: (str(type(v)), v)):
        lines.append(_row(str(k), groups[k]))
    lines.append(_row("**all**", rows))
    return lines


def _row(label: str, rs: list[dict]) -> str:
    acc = np.mean([r["truth"] == r["got"] for r in rs])
    pe = [abs(r["peak_err"]) for r in rs if r["peak_err"] is not None]
    rg = [r["regret"] for r in rs if r["regret"] is not None]
    w1 = _pct(np.mean([e <= 1 for e in pe])) if pe else "-"
    w3 = _pct(np.mean([e <= 3 for e in pe])) if pe else "-"
    med = f"{np.median(pe):.1f}" if pe else "-"
    rel = [abs(r["peak_err"]) / r["n_points"] for r in rs if r["peak_err"] is not None]
    medrel = f"{100 * np.median(rel):.2f}%" if rel else "-"
    reg = f"{np.median(rg):.3f}" if rg else "-"
    return f"| {label} | {len(rs)} | {_pct(acc)} | {len(pe)} | {w1} | {w3} | {med} | {medrel} | {reg} |"


def confusion(rows: list[dict]) -> list[str]:
    verdicts = ("overfitting", "underfitting", "healthy", "inconclusive")
    lines = ["| truth \\ got | " + " | ".join(verdicts) + " |", "|---" * (len(verdicts) + 1) + "|"]
    for t in verdicts:
        c = [sum(1 for r in rows if r["truth"] == t and r["got"] == g) for g in verdicts]
        lines.append(f"| {t} | " + " | ".join(str(x) for x in c) + " |")
    return lines


def main_table(n: int) -> None:
    cfg = default_config()
    rows = evaluate(population(n), cfg)
    secs = [r["seconds"] for r in rows]
    print(f"## Verdicts on {n} synthetic runs (default rules)\n")
    for key in ("noise", "kind", "n_points"):
        print("\n".join(table(rows, key)))
        print()
    print("Confusion matrix:\n")
    print("\n".join(confusion(rows)))
    print(
        f"\nDiagnosis time per run: median {1000 * np.median(secs):.1f} ms, p95 {1000 * np.percentile(secs, 95):.1f} ms, "
        f"max {1000 * max(secs):.1f} ms (includes smoothing, change points, all rules)."
    )
    wrong = [r for r in rows if r["truth"] != r["got"]]
    if wrong:
        print("\nMisclassified:\n")
        for r in wrong[:40]:
            print(
                f"- {r['kind']} noise={r['noise']} n={r['n_points']} interval={r['log_interval']} "
                f"offset={r['offset']} seed={r['seed']}: truth {r['truth']}, got {r['got']}"
            )


def _cfg(**settings: dict) -> RulesConfig:
    cfg = default_config()
    for sec, vals in settings.items():
        cfg.settings[sec].update(vals)
    return cfg


def sweep(n: int) -> None:
    specs = population(n)

    def v(method: str, weight: float, tol: float, refine: str) -> dict:
        return dict(
            smoothing={"analysis_method": method, "analysis_weight": weight},
            analysis={"peak_tolerance": tol, "peak_refine": refine},
        )

    variants = {
        "ema w=0.6 (TensorBoard, one-sided), argmax": v("ema", 0.6, 0.0, "none"),
        "ema w=0.8 (one-sided), argmax": v("ema", 0.8, 0.0, "none"),
        "ema2 w=0.6 (zero-phase), argmax": v("ema2", 0.6, 0.0, "none"),
        "ema2 w=0.8, argmax": v("ema2", 0.8, 0.0, "none"),
        "ema2 w=0.9, argmax": v("ema2", 0.9, 0.0, "none"),
        "ema2 w=0.8, latest within 1 sigma": v("ema2", 0.8, 1.0, "none"),
        "ema2 w=0.8, latest within 2 sigma": v("ema2", 0.8, 2.0, "none"),
        "ema2 w=0.8, 1 sigma + hinge (default)": v("ema2", 0.8, 1.0, "hinge"),
        "ema2 w=0.9, 1 sigma + hinge": v("ema2", 0.9, 1.0, "hinge"),
        "savgol 11, 1 sigma + hinge": v("savgol", 0.8, 1.0, "hinge"),
        "median 11, 1 sigma + hinge": v("median", 0.8, 1.0, "hinge"),
    }
    print(f"## Smoother sweep on {n} synthetic runs\n")
    print(
        "| analysis smoother | runs | verdict accuracy | overfitting runs with a peak | peak within 1 interval | "
        "within 3 | median abs error | median abs error (% of run) | median value regret | ms/run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, settings in variants.items():
        rows = evaluate(specs, _cfg(**settings))
        r = _row(name, rows)
        print(r[: r.rfind("|")] + f"| {1000 * np.median([x['seconds'] for x in rows]):.1f} |")


def changepoint_bench(n: int) -> None:
    from analyzer.signal import segment

    print(f"## Change-point comparison on {2 * n} overfitting curves per length (noise 0.05 and 0.2)\n")
    print(
        "Pipeline as in diagnosis: raw curve -> bin means (<= 500 points) -> zero-phase EMA w=0.8 -> ruptures; "
        "hit = a change point within 3% of the run (by step) of the true peak.\n"
    )
    print("| method / cost | points | hit rate | mean change points | ms per curve (median) |")
    print("|---|---|---|---|---|")
    combos = [
        ("kernel", "l2-slope"),
        ("pelt", "l2-slope"),
        ("binseg", "l2-slope"),
        ("bottomup", "l2-slope"),
        ("kernel", "l2"),
        ("pelt", "clinear"),
        ("bottomup", "clinear"),
    ]
    for npts in (200, 2000, 20000):
        curves = [
            make_curve("overfitting", n_points=npts, noise=nz, seed=s) for s in range(n) for nz in (0.05, 0.2)
        ]
        for algo, cost in combos:
            hits, counts, times = [], [], []
            for sr in curves:
                q = sr.run.series["q_data"]
                t0 = time.perf_counter()
                cps = segment(q.steps, q.values, algorithm=algo, cost=cost)
                times.append(time.perf_counter() - t0)
                span = q.steps[-1] - q.steps[0]
                hits.append(any(abs(c - sr.truth.peak_step) <= 0.03 * span for c in cps))
                counts.append(len(cps))
            print(
                f"| {algo} / {cost} | {npts} | {_pct(np.mean(hits))} | {np.mean(counts):.1f} | "
                f"{1000 * np.median(times):.1f} |"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400, help="number of synthetic runs")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--changepoints", action="store_true")
    args = ap.parse_args()
    if args.sweep:
        sweep(args.n)
    elif args.changepoints:
        changepoint_bench(min(args.n, 30))
    else:
        main_table(args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
