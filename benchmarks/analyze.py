"""End-to-end benchmark of `offrl-analyze`: N runs x S steps in our trainer's format.

Measures, in one process: ingestion (`load_runs`), diagnosis (rules, verdicts, picks) and output
(rendering every text format of the report); then the whole `analyze()` call as the CLI makes it, for
each worker count, interleaved over `--repeat` rounds, each round preceded by a control that says how
much a second process can gain on this machine right now (`cpu_share`).
Target (docs/performance.md, issue 15): 1,000 runs x 20k steps in <= 30 s with 2 workers on 2 cores.

    python benchmarks/analyze.py                       # 1,000 runs x 20,000 steps, log every 10 steps
    python benchmarks/analyze.py --runs 100 --steps 5000
    python benchmarks/analyze.py --dir /tmp/corpus --keep   # reuse a generated corpus

The corpus is written with the fast event writer (analyzer.tfevents.EventWriter) into a temporary
directory (never into a log directory of yours) and removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

TAGS = ("q_data", "td_error", "cql_gap", "cql_term", "alpha", "critic_loss", "policy_loss")


def make_run(out: Path, i: int, steps: int, log_every: int, ckpt_every: int) -> str:
    """One run: a third overfit (peak at a random step), a third healthy, a third underfit."""
    from analyzer.tfevents import EventWriter

    rng = np.random.default_rng(i)
    t = np.arange(0, steps + 1, log_every, dtype=np.int64)
    x = t.astype(float)
    kind = ("overfit", "healthy", "underfit")[i % 3]
    if kind == "overfit":
        peak = steps * rng.uniform(0.25, 0.5)
        q = 15 * (x / peak) * np.exp(1 - x / peak)
        td = 0.01 + 0.05 * np.exp(-x / (steps / 6))
    elif kind == "healthy":
        q = 15 * (1 - np.exp(-x / (steps / 6)))
        td = 0.01 + 0.05 * np.exp(-x / (steps / 6))
    else:
        q = 2 * (1 - np.exp(-x / (steps / 4)))
        td = np.full_like(x, 6.0)
    n = x.size
    q = q + rng.normal(0, 0.2, n)
    td = np.abs(td + rng.normal(0, 0.002 if kind != "underfit" else 0.3, n))
    gap = 1 + x / steps + rng.normal(0, 0.05, n)
    alpha = np.ones(n)
    cols = {"q_data": q, "td_error": td, "cql_gap": gap, "cql_term": alpha * gap, "alpha": alpha}
    cols["critic_loss"] = td + gap
    cols["policy_loss"] = -q
    run = out / f"run_{i:05d}"
    run.mkdir(parents=True, exist_ok=True)
    config = {
        "algo": "cql",
        "gamma": 0.99,
        "horizon": 40,
        "reward_range": [0.0, 1.0],
        "hidden": 256,
        "depth": 2,
        "encoder": "mlp",
        "seed": i,
        "ckpt_every": ckpt_every,
    }
    (run / "config.json").write_text(json.dumps(config))
    with EventWriter(run / "events.out.tfevents.1700000000.bench") as w:
        w.add_scalar_table(t, {f"offrl/{k}": v for k, v in cols.items()}, wall_times=1.7e9 + x * 0.01)
    for s in range(ckpt_every, steps + 1, ckpt_every):
        (run / f"ckpt_{s}.pt").write_bytes(b"")
    return kind


def make_corpus(root: Path, runs: int, steps: int, log_every: int) -> float:
    t0 = time.perf_counter()
    for i in range(runs):
        make_run(root, i, steps, log_every, ckpt_every=max(log_every, steps // 10))
    return time.perf_counter() - t0


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the worker pool).

    Why: the reference machine is shared; CPU time says what a phase costs even when wall time is
    inflated by other jobs (wall ~= CPU on an idle core for the single-process phases).
    """
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def phases(root: Path) -> dict[str, float]:
    """What each phase costs, in one process: ingestion, diagnosis, output (all six formats, json alone)."""
    from analyzer.api import analyze_runs
    from analyzer.config import default_config
    from analyzer.ingest import load_runs
    from analyzer.output import render
    from analyzer.output.failon import parse_fail_on

    cfg = default_config()
    c0, t0 = _cpu(), time.perf_counter()
    runs, errors = load_runs([root])
    c1, t1 = _cpu(), time.perf_counter()
    report = analyze_runs(runs, cfg, errors=list(errors))
    c2, t2 = _cpu(), time.perf_counter()
    policy = parse_fail_on("overfitting,underfitting")
    for fmt in ("json", "table", "markdown", "github", "junit", "sarif"):
        render(fmt, report, policy)
    c3, t3 = _cpu(), time.perf_counter()
    render("json", report, policy)
    json_s = time.perf_counter() - t3
    return {
        "runs": len(runs),
        "ingest_s": t1 - t0,
        "diagnose_s": t2 - t1,
        "output_all_formats_s": t3 - t2,
        "output_json_s": json_s,
        "ingest_cpu_s": c1 - c0,
        "diagnose_cpu_s": c2 - c1,
        "output_all_formats_cpu_s": c3 - c2,
    }


def end_to_end(root: Path, workers: int) -> dict[str, float]:
    """`analyze()` + the table, as `offrl-analyze --workers N` runs it (each worker reads and diagnoses)."""
    from analyzer.api import analyze
    from analyzer.config import default_config
    from analyzer.output import render
    from analyzer.output.failon import parse_fail_on

    cfg = default_config()
    me0, kids0, t0 = _cpu_split(), _cpu_children(), time.perf_counter()
    whole = analyze([root], cfg, workers=workers)
    t1 = time.perf_counter()
    render("table", whole, parse_fail_on("overfitting,underfitting"))
    t2 = time.perf_counter()
    verdicts = {
        v: sum(r.verdict == v for r in whole.runs)
        for v in ("overfitting", "underfitting", "healthy", "inconclusive")
    }
    return {
        "workers": workers,
        "runs": len(whole.runs),
        "analyze_s": t1 - t0,
        "end_to_end_s": t2 - t0,
        "parent_cpu_s": _cpu_split() - me0,
        "workers_cpu_s": _cpu_children() - kids0,
        "load_avg_1min": os.getloadavg()[0],
        **{f"n_{k}": v for k, v in verdicts.items()},
    }


def _cpu_split() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def _cpu_children() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def _spin(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i
    return x


def cpu_share(n: int = 20_000_000) -> float:
    """Speed-up of a pure-CPU job split over 2 processes vs 1, measured now: the parallelism on offer.

    Why: on a shared Linux machine with autogroup scheduling (the default on most distributions), all
    processes of one session share that session's slice of the CPUs, so under load a second worker can
    give nothing at all; this control says whether a 1-vs-2-worker comparison could show a gain.
    """
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    _spin(n)
    one = time.perf_counter() - t0
    with ProcessPoolExecutor(2) as ex:
        t0 = time.perf_counter()
        list(ex.map(_spin, [n // 2, n // 2]))
        two = time.perf_counter() - t0
    return one / two


def bench_plots(root: Path, n: int) -> float:
    """Seconds per run for --plot (matplotlib), on the first n runs."""
    from analyzer.api import analyze
    from analyzer.output.plots import plot_png

    dirs = sorted(p for p in root.iterdir() if p.is_dir())[:n]
    report = analyze(dirs)
    t0 = time.perf_counter()
    for r in report.runs:
        plot_png(r)
    return (time.perf_counter() - t0) / max(1, len(report.runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument(
        "--log-every", type=int, default=10, help="steps between logged points (trainer default 10)"
    )
    ap.add_argument("--workers", default="1,2", help="comma list of worker counts to time")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of the worker counts, interleaved")
    ap.add_argument("--dir", type=Path, help="corpus directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the corpus")
    ap.add_argument("--plots", type=int, default=10, help="time --plot on this many runs (0 = skip)")
    args = ap.parse_args()

    root = args.dir or Path(tempfile.mkdtemp(prefix="offrl-bench-"))
    try:
        existing = sum(1 for p in root.iterdir() if p.is_dir()) if root.exists() else 0
        if existing != args.runs:
            if root.exists() and existing:
                shutil.rmtree(root)
            root.mkdir(parents=True, exist_ok=True)
            gen = make_corpus(root, args.runs, args.steps, args.log_every)
            print(f"generated {args.runs} runs x {args.steps} steps (every {args.log_every}) in {gen:.1f} s")
        size = sum(f.stat().st_size for f in root.rglob("events.out.*"))
        points = args.runs * (args.steps // args.log_every + 1) * len(TAGS)
        print(
            f"corpus: {root} — {size / 1e6:.0f} MB of event files, {points / 1e6:.1f} M scalars; cores: {os.cpu_count()}"
        )
        # warm-up: imports (scipy, ruptures, matplotlib-free) and first-call costs are not per-run costs
        from analyzer.api import analyze

        t0 = time.perf_counter()
        analyze([sorted(p for p in root.iterdir() if p.is_dir())[0]])
        print(f"warm-up (imports + one run): {time.perf_counter() - t0:.2f} s")
        ph = phases(root)
        print(
            f"phases (1 process): ingest {ph['ingest_s']:.2f} s / {ph['ingest_cpu_s']:.2f} CPU-s | "
            f"diagnose {ph['diagnose_s']:.2f} s / {ph['diagnose_cpu_s']:.2f} CPU-s | output (6 formats) "
            f"{ph['output_all_formats_s']:.2f} s / {ph['output_all_formats_cpu_s']:.2f} CPU-s (json {ph['output_json_s']:.2f} s)"
        )
        cpu = ph["ingest_cpu_s"] + ph["diagnose_cpu_s"] + ph["output_all_formats_cpu_s"]
        print(
            f"  shares of the CPU: ingest {ph['ingest_cpu_s'] / cpu:.0%}, diagnose {ph['diagnose_cpu_s'] / cpu:.0%}, "
            f"output {ph['output_all_formats_cpu_s'] / cpu:.0%}"
        )
        rows = []
        counts = [int(x) for x in args.workers.split(",")]
        for rep in range(args.repeat):
            share = cpu_share()
            print(
                f"round {rep + 1}: a CPU job split over 2 processes runs {share:.2f}x as fast as in 1 right now"
            )
            for w in counts:  # interleaved: load changes hit every worker count alike
                row = end_to_end(root, w)
                row["cpu_share_2"] = share
                rows.append(row)
                print(
                    f"  workers={w}: analyze() {row['analyze_s']:.2f} s | end-to-end (analyze + table) "
                    f"{row['end_to_end_s']:.2f} s | CPU-s parent {row['parent_cpu_s']:.2f} + workers "
                    f"{row['workers_cpu_s']:.2f} (load average {row['load_avg_1min']:.1f} on {os.cpu_count()} cores); "
                    f"verdicts: {row['n_overfitting']} over, {row['n_underfitting']} under, {row['n_healthy']} healthy, "
                    f"{row['n_inconclusive']} inconclusive"
                )
        for w in counts:
            mine = sorted(r["end_to_end_s"] for r in rows if r["workers"] == w)
            print(f"workers={w}: end-to-end median {mine[len(mine) // 2]:.2f} s over {len(mine)} round(s)")
        rows.insert(0, {"phases": ph})
        if args.plots:
            per = bench_plots(root, args.plots)
            print(
                f"--plot: {per * 1000:.0f} ms per run (matplotlib Agg, 1000x800 px), measured on {args.plots} runs"
            )
        print(json.dumps(rows))
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
