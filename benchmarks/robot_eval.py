"""robot_eval speed: env steps/s (state, images), reset cost, dataset collection time, worker speed-up.

Every ratio compares two variants measured in this same process run:
  * low-poly vs stock Panda visual meshes for image observations (TinyRenderer cost),
  * reset by restoreState vs rebuilding the scene from URDF files,
  * 1 vs W collection workers.
Usage: python benchmarks/robot_eval.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

# this script is named like the package it measures: keep its own folder off the import path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from robot_eval.collect import collect  # noqa: E402
from robot_eval.tasks import task_spec  # noqa: E402


def steps_per_second(spec, n_steps: int, lowpoly: bool = True) -> float:
    """Random-action steps/s including resets at the horizon (what collection pays)."""
    from robot_eval.envs.base import PandaEnv

    PandaEnv.lowpoly_visuals = lowpoly
    try:
        env = spec.make()
    finally:
        PandaEnv.lowpoly_visuals = True
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        if term or trunc:
            env.reset()
    dt = time.perf_counter() - t0
    env.close()
    return n_steps / dt


def reset_cost(spec, n: int) -> dict[str, float]:
    """Milliseconds per reset: restoreState (what the envs do) vs building the scene again."""
    env = spec.make()
    t0 = time.perf_counter()
    for i in range(n):
        env.reset(seed=i)
    restore = (time.perf_counter() - t0) / n * 1e3
    env.close()
    t0 = time.perf_counter()
    for i in range(max(2, n // 10)):
        e = spec.make()
        e.reset(seed=i)
        e.close()
    rebuild = (time.perf_counter() - t0) / max(2, n // 10) * 1e3
    return {"restore_ms": restore, "rebuild_ms": rebuild, "ratio": rebuild / restore}


def collect_time(spec, n: int, workers: int) -> float:
    t0 = time.perf_counter()
    collect(spec, n, noise=0.1, seed=0, workers=workers)
    return time.perf_counter() - t0


def worker_speedup(spec, n: int, workers: int, repeats: int) -> dict[str, object]:
    """1 vs W workers, interleaved (1, W, 1, W, ...) so that load from other processes hits both sides alike."""
    pairs = []
    for _ in range(repeats):
        t1 = collect_time(spec, n, 1)
        tw = collect_time(spec, n, workers)
        pairs.append((t1, tw))
    ratios = sorted(t1 / tw for t1, tw in pairs)
    return {
        "trajectories": n,
        "workers": workers,
        "seconds_1_vs_w": pairs,
        "ratios": ratios,
        "median": ratios[len(ratios) // 2],
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--json", default=None)
    ap.add_argument("--only-workers", action="store_true", help="just the 1-vs-W collection comparison")
    a = ap.parse_args()
    if a.only_workers:
        print(json.dumps(worker_speedup(task_spec("pickplace"), 200, a.workers, repeats=3), indent=2))
        return
    n_state, n_img = (400, 100) if a.quick else (4000, 800)
    res: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    }
    pp, dr = task_spec("pickplace"), task_spec("drawer")
    res["steps_per_s"] = {
        "pickplace_state": steps_per_second(pp, n_state),
        "pickplace35_state": steps_per_second(task_spec("pickplace", n_objects=35), n_state),
        "drawer_state": steps_per_second(dr, n_state),
        "pickplace_img48": steps_per_second(task_spec("pickplace", image_size=48), n_img),
        "pickplace_img64": steps_per_second(task_spec("pickplace", image_size=64), n_img),
        "drawer_img48": steps_per_second(task_spec("drawer", image_size=48), n_img),
        "pickplace_img48_stock_meshes": steps_per_second(
            task_spec("pickplace", image_size=48), n_img // 4, False
        ),
    }
    s = res["steps_per_s"]
    res["lowpoly_speedup_img48"] = s["pickplace_img48"] / s["pickplace_img48_stock_meshes"]
    res["reset"] = reset_cost(pp, 50 if a.quick else 200)
    sizes = (100,) if a.quick else (100, 1000)
    res["collect_s"] = {f"pickplace_{n}_w1": collect_time(pp, n, 1) for n in sizes}
    res["collect_s"]["pickplace_img48_100_w1"] = collect_time(task_spec("pickplace", image_size=48), 100, 1)
    if a.workers > 1:
        res["worker_speedup"] = worker_speedup(pp, 50 if a.quick else 200, a.workers, repeats=3)
    print(json.dumps(res, indent=2))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
