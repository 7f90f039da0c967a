"""`--watch` poll cost: the incremental follower against the old full re-read, same process run.

Two situations a watch spends its life in:

* **idle**: `--runs` finished runs (default 1,000; 4 tags x `--steps` steps each, a config.json and
  checkpoints) and nothing changes. The follower lists the folders and stats each run's files; the
  old watch read and diagnosed every run again.
* **growing**: one run that gains `--growth` scalars per poll (default 1,000: 4 tags x 250 steps)
  on top of `--base-steps` steps already logged. The follower reads the appended bytes and
  diagnoses that run; the old watch re-read the whole file.

Both sides poll the same files in the same process; each poll of the old side is one
`analyze(paths)` (what `watch()` did before the follower). Reported: seconds per poll (median),
bytes read per poll, runs diagnosed again.

    python benchmarks/watch.py                       # defaults (about 5 minutes on 2 cores)
    python benchmarks/watch.py --runs 100 --polls 5  # quick check
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from analyzer.api import analyze
from analyzer.tfevents import EventWriter
from analyzer.watch import Follower

TAGS = ("offrl/q_data", "offrl/td_error", "offrl/critic_loss", "offrl/policy_loss")


def curves(steps: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """CQL-like curves: dataset Q rises and flattens, TD error decays, losses fall (noise per seed)."""
    rng = np.random.default_rng(seed)
    t = steps / max(1.0, float(steps.max(initial=1)))
    noise = rng.standard_normal((4, steps.shape[0])) * 0.01
    return {
        "offrl/q_data": 50 * (1 - np.exp(-3 * t)) + noise[0],
        "offrl/td_error": 0.5 * np.exp(-2 * t) + 0.05 + noise[1],
        "offrl/critic_loss": 2 * np.exp(-t) + noise[2],
        "offrl/policy_loss": -10 * t + noise[3],
    }


def write_run(d: Path, steps: np.ndarray, seed: int, horizon_steps: int) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"algo": "cql", "gamma": 0.99, "seed": seed}))
    f = d / "events.out.tfevents.1700000000.bench"
    with EventWriter(f) as w:  # an existing file is appended to
        w.add_scalar_table(
            steps, curves(steps.astype(float) / horizon_steps * steps.max(initial=1), seed), 1.7e9 + steps
        )
    for s in range(0, int(steps.max(initial=0)) + 1, max(1, horizon_steps // 5)):
        if s and not (d / f"ckpt_{s}.pt").exists():
            (d / f"ckpt_{s}.pt").write_bytes(b"")
    return f


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def idle(root: Path, runs: int, steps: int, polls: int) -> dict[str, float]:
    for r in range(runs):
        write_run(root / f"run_{r:04d}", np.arange(0, steps * 10, 10), r, steps * 10)
    size = sum(p.stat().st_size for p in root.rglob("events.out.*"))
    follower = Follower([root])
    first, _ = timed(follower.poll)
    new = []
    for _ in range(polls):
        dt, _ = timed(follower.poll)
        new.append(dt)
        assert follower.last.changed == 0 and follower.last.bytes_read == 0
    old = []
    for _ in range(max(1, polls // 3)):  # the full re-read is slow: fewer polls, same median
        dt, report = timed(lambda: analyze([root]))
        old.append(dt)
    return {
        "runs": runs,
        "bytes": size,
        "follower_first_poll_s": first,
        "follower_idle_poll_s": statistics.median(new),
        "full_reread_poll_s": statistics.median(old),
        "speedup": statistics.median(old) / statistics.median(new),
    }


def growing(root: Path, base_steps: int, growth: int, polls: int) -> dict[str, float]:
    per_poll = growth // len(TAGS)
    total = base_steps + per_poll * (polls + 1)
    d = root / "live"
    f = write_run(d, np.arange(0, base_steps), 0, total)
    follower = Follower([root])
    follower.poll()
    new, old, read, read_s = [], [], [], []
    at = base_steps
    for _ in range(polls):
        write_run(d, np.arange(at, at + per_poll), 0, total)
        at += per_poll
        dt, _ = timed(follower.poll)
        new.append(dt)
        read.append(follower.last.bytes_read)
        read_s.append(follower.last.read_seconds)
        assert follower.last.changed == 1
        dt, _ = timed(lambda: analyze([root]))
        old.append(dt)
    return {
        "scalars_at_start": base_steps * len(TAGS),
        "scalars_per_poll": per_poll * len(TAGS),
        "file_bytes_at_end": f.stat().st_size,
        "follower_poll_s": statistics.median(new),
        "follower_bytes_per_poll": statistics.median(read),
        "follower_read_s": statistics.median(read_s),
        "full_reread_poll_s": statistics.median(old),
        "speedup": statistics.median(old) / statistics.median(new),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000, help="idle runs")
    ap.add_argument("--steps", type=int, default=1000, help="steps per idle run (4 tags each)")
    ap.add_argument("--base-steps", type=int, default=50_000, help="steps the growing run starts with")
    ap.add_argument("--growth", type=int, default=1000, help="scalars added per poll to the growing run")
    ap.add_argument("--polls", type=int, default=6)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="offrl-watch-bench-"))
    try:
        write_run(tmp / "warm" / "r", np.arange(0, 1000), 0, 1000)
        analyze([tmp / "warm"])  # imports and registries loaded before anything is timed

        a = idle(tmp / "idle", args.runs, args.steps, args.polls)
        print(
            f"idle: {a['runs']} runs ({a['bytes'] / 2**20:.0f} MiB of event files): follower first poll "
            f"{a['follower_first_poll_s']:.2f} s, then {a['follower_idle_poll_s'] * 1000:.0f} ms per poll; "
            f"full re-read {a['full_reread_poll_s']:.2f} s per poll ({a['speedup']:.0f}x)"
        )
        b = growing(tmp / "grow", args.base_steps, args.growth, args.polls)
        print(
            f"growing: one run of {b['scalars_at_start']:,} scalars + {b['scalars_per_poll']:,} per poll "
            f"({b['file_bytes_at_end'] / 2**20:.1f} MiB): follower {b['follower_poll_s'] * 1000:.0f} ms per poll "
            f"({b['follower_bytes_per_poll'] / 1024:.0f} KiB read in {b['follower_read_s'] * 1000:.0f} ms, "
            f"the rest diagnosing the run), full re-read "
            f"{b['full_reread_poll_s'] * 1000:.0f} ms ({b['speedup']:.1f}x)"
        )
        if args.json:
            args.json.write_text(json.dumps({"idle": a, "growing": b}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
