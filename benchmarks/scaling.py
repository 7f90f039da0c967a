"""Cost model of the closed loop and of training sweeps past one machine (docs/scaling.md).

    python benchmarks/scaling.py costs                 # per-trial phase cost from the committed timings
    python benchmarks/scaling.py project [--cores 16]  # wall time of `full` and of 40 runs/scenario on N nodes
    python benchmarks/scaling.py ray [--workers 1,2]   # the smoke preset's trials on a local Ray, 1 vs 2 CPUs

`costs` and `project` read only committed files (results/closed_loop/timings.csv: the 24 round-2 trials at the
`quick` preset; results/closed_loop/trials/*/timing.json: the trials re-run for the committed corpus), so they run
from a fresh clone. `ray` needs the `cluster`, `trainer` and `robot` extras; it collects the smoke datasets once,
then runs the same trials on a fresh local Ray instance with `num_cpus` = 1 and 2 and reports the wall time, each
trial's phases, and Ray's own per-task overhead (no-op tasks).
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/robot_eval.py would shadow the robot_eval package when this file runs as a script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("train", "evaluate", "fqe", "analyze")

# How the `full` preset's trial differs from `quick`'s (robot_eval/loop/scenarios.py), as cost factors:
# 24,000 vs 16,000 steps; 10 vs 4 sampled actions in the CQL logsumexp (1.6x per step, docs/closed_loop.md);
# 25 vs 17 checkpoints, each rolled out 20 vs 10 episodes; FQE fits every checkpoint in one batched ensemble
# (cost ~ checkpoints). Collection: 22 s per 500 trajectories with 2 workers (committed data/*.json).
FULL_FACTORS = {"train": 1.5 * 1.6, "evaluate": (25 / 17) * 2.0, "fqe": 25 / 17, "analyze": 1.0}
COLLECT_S_PER_TRAJ = 22.1 / 500 * 2  # one collection worker
RAY_START_S = 7.0  # local `ray.init(num_cpus=2)` on the loaded reference machine (docs/dependencies.md)


def _committed() -> list[dict]:
    rows = []
    with (ROOT / "results" / "closed_loop" / "timings.csv").open() as fh:
        for r in csv.DictReader(fh):
            rows.append({"key": r["key"], **{p: float(r[p]) for p in PHASES}})
    return rows


def _rerun() -> list[dict]:
    out = []
    for f in sorted((ROOT / "results" / "closed_loop" / "trials").glob("*/timing.json")):
        t = json.loads(f.read_text())
        out.append({"key": f.parent.name, **{p: float(t.get(p, 0.0)) for p in PHASES}})
    return out


def _stats(rows: list[dict]) -> dict:
    total = {p: statistics.mean(r[p] for r in rows) for p in PHASES}
    s = sum(total.values())
    return {
        "trials": len(rows),
        "mean_s": total,
        "median_s": {p: statistics.median(r[p] for r in rows) for p in PHASES},
        "max_total_s": max(sum(r[p] for p in PHASES) for r in rows),
        "share": {p: total[p] / s for p in PHASES},
        "total_mean_s": s,
    }


def _analysis_cost() -> dict:
    """Per-run analysis cost on the committed corpus's run folders, in this process (imports excluded)."""
    from analyzer.api import analyze

    runs = sorted(
        p / "run" for p in (ROOT / "results" / "closed_loop" / "trials").iterdir() if (p / "run").is_dir()
    )
    analyze(runs[:1])  # imports and first-call costs
    t0 = time.perf_counter()
    rep = analyze(runs)
    sec = time.perf_counter() - t0
    return {"runs": len(rep.runs), "seconds_per_run": sec / max(1, len(rep.runs))}


def costs() -> dict:
    return {
        "committed_round2": _stats(_committed()),
        "rerun_corpus": _stats(_rerun()),
        "analysis": _analysis_cost(),
    }


def _trial_cost(key: str, measured: dict[str, dict], factors: dict[str, float]) -> float:
    """Seconds of one trial: the mean of the committed trials with the same dataset and network (seed dropped)."""
    group = key.rsplit("__", 2)[0]
    same = measured.get(group) or measured["*"]
    return sum(same[p] * factors[p] for p in PHASES)


def _measured_by_group() -> dict[str, dict]:
    rows = _committed()
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["key"].rsplit("__", 2)[0], []).append(r)
    out = {g: {p: statistics.mean(r[p] for r in rs) for p in PHASES} for g, rs in groups.items()}
    out["*"] = {p: statistics.mean(r[p] for r in rows) for p in PHASES}
    return out


def makespan(durations: list[float], slots: int) -> float:
    """Longest-processing-time-first list scheduling of independent jobs on `slots` equal slots."""
    heap = [0.0] * max(1, slots)
    for d in sorted(durations, reverse=True):
        heapq.heappush(heap, heapq.heappop(heap) + d)
    return max(heap)


def project(cores: int, nodes: list[int], collect_workers: int) -> dict:
    from robot_eval.loop.scenarios import trials_for

    measured = _measured_by_group()
    studies = {
        "full (39 trials)": (trials_for("all", "full"), FULL_FACTORS),
        "quick, 40 seeds/scenario": (
            trials_for("all", "quick", tuple(range(40))),
            dict.fromkeys(PHASES, 1.0),
        ),
        "full, 40 seeds/scenario": (trials_for("all", "full", tuple(range(40))), FULL_FACTORS),
    }
    out = {}
    for name, (trials, factors) in studies.items():
        unique = {t.key: t for t in trials}
        durations = [_trial_cost(k, measured, factors) for k in unique]
        datasets = {t.data.name: t.data.trajectories for t in trials}
        # collected as Ray tasks at once (robot_eval.loop.run.collect_datasets): ~1 CPU per 500 trajectories, <= 8
        per = [n * COLLECT_S_PER_TRAJ / max(1, min(8, -(-n // 500))) for n in datasets.values()]
        serial = sum(datasets.values()) * COLLECT_S_PER_TRAJ / collect_workers  # the local executor's way
        rows = {}
        for n in nodes:
            slots = n * cores
            collect = makespan(per, slots)
            rows[n] = {
                "wall_h": (collect + RAY_START_S + makespan(durations, slots)) / 3600,
                "lower_bound_h": max(sum(durations) / slots, max(durations)) / 3600,
            }
        out[name] = {
            "trials": len(unique),
            "core_hours": sum(durations) / 3600,
            "longest_trial_min": max(durations) / 60,
            "collect_min_ray": max(per) / 60,
            "collect_min_serial_2_workers": serial / 60,
            "datasets": len(datasets),
            "by_nodes": rows,
        }
    return out


def ray_bench(workers: list[int], scenario: str, seeds: tuple[int, ...] | None) -> dict:
    import ray

    from robot_eval.loop.run import _spec, collect_dataset, is_done, run_trials
    from robot_eval.loop.scenarios import trials_for

    base = Path(tempfile.mkdtemp(prefix="offrl-scaling-"))
    try:
        trials = list({t.key: t for t in trials_for(scenario, "smoke", seeds)}.values())
        data = {t.data.name: collect_dataset(t.data, base / "data")[0] for t in trials}
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        noop = ray.remote(num_cpus=1)(lambda: None)
        ray.get([noop.remote() for _ in range(20)])
        t0 = time.perf_counter()
        ray.get([noop.remote() for _ in range(500)])
        per_task_ms = (time.perf_counter() - t0) / 500 * 1000
        ray.shutdown()
        out: dict = {"trials": len(trials), "task_overhead_ms": per_task_ms, "rounds": []}
        for k, w in enumerate(workers):  # e.g. 1,2,1,2: interleaved, so load changes hit both alike
            root = base / f"round{k}"
            todo = []
            for t in trials:
                tdir = root / "trials" / t.key
                tdir.mkdir(parents=True)
                (tdir / "spec.json").write_text(json.dumps(_spec(t, data[t.data.name])))
                todo.append(tdir)
            ray.init(num_cpus=w, include_dashboard=False, log_to_driver=False)
            failed: list[str] = []
            t0 = time.perf_counter()
            run_trials(todo, w, "bf16", lambda d, rc, _f=failed: rc and _f.append(d.name), "ray")
            wall = time.perf_counter() - t0
            ray.shutdown()
            phases = [json.loads((d / "timing.json").read_text()) for d in todo]
            done = sum(is_done(d, json.loads((d / "spec.json").read_text())) for d in todo)
            out["rounds"].append(
                {
                    "workers": w,
                    "wall_s": wall,
                    "done": done,
                    "failed": failed,
                    "phase_sum_s": {p: sum(ph.get(p, 0.0) for ph in phases) for p in PHASES},
                }
            )
            print(json.dumps(out["rounds"][-1]), file=sys.stderr, flush=True)
        return out
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("costs")
    pp = sub.add_parser("project")
    pp.add_argument("--cores", type=int, default=16, help="cores per node (one trial per core)")
    pp.add_argument("--nodes", default="1,2,4,8,16,32")
    pp.add_argument(
        "--collect-workers", type=int, default=2, help="processes collecting datasets on the driver"
    )
    rp = sub.add_parser("ray")
    rp.add_argument("--workers", default="1,2")
    rp.add_argument("--scenario", default="all")
    rp.add_argument("--seeds", default=None)
    a = ap.parse_args()
    if a.cmd == "costs":
        res = costs()
    elif a.cmd == "project":
        res = project(a.cores, [int(x) for x in a.nodes.split(",")], a.collect_workers)
    else:
        seeds = tuple(int(s) for s in a.seeds.split(",")) if a.seeds else None
        res = ray_bench([int(x) for x in a.workers.split(",")], a.scenario, seeds)
    print(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
