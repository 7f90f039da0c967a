"""Ingestion benchmark: our event-file reader vs tbparse on the same generated corpus, same process.

Generates R runs x T tags x S steps (default 50 x 12 x 20000 = 12M scalars, ~650 MB; the shape of
a hyperparameter sweep logged every step) with `EventWriter`, then times

* ours, CRC checks on (the default) and off, over every file;
* tbparse `SummaryReader(dir, pivot=False).scalars` over the first `--tbparse-runs` runs (all runs
  takes ~4 minutes at full size; rates are per scalar so the ratio stays comparable);

and the memory of each reader on one run: tracemalloc peak (Python objects and numpy buffers; not
protobuf's C arena) and peak-RSS growth of a fresh process while it reads (everything).

    python benchmarks/ingest.py                      # full size, tbparse on 5 runs
    python benchmarks/ingest.py --runs 4 --steps 2000 --tbparse-runs 4   # quick check
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from analyzer.tfevents import EventWriter, read_event_file


def generate(root: Path, runs: int, tags: int, steps: int, as_tensor: bool, seed: int = 0) -> list[Path]:
    """One event file per run; every step logs every tag (interleaved, as trainers write them)."""
    rng = np.random.default_rng(seed)
    names = [f"offrl/metric_{i:02d}" for i in range(tags)]
    step_ids = np.arange(steps, dtype=np.int64)
    files = []
    for r in range(runs):
        cols = {n: np.cumsum(rng.standard_normal(steps)) * 0.01 for n in names}
        walls = 1.7e9 + r * 1e5 + step_ids * 0.02
        with EventWriter(root / f"run_{r:03d}", as_tensor=as_tensor) as w:
            w.add_hparams({"seed": r, "lr": 3e-4, "algo": "cql"})
            for a in range(0, steps, 5000):  # in chunks, as a trainer would flush
                w.add_scalar_table(
                    step_ids[a : a + 5000], {n: c[a : a + 5000] for n, c in cols.items()}, walls[a : a + 5000]
                )
        files.append(w.path)
    return files


def time_ours(files: list[Path], check_crc: bool) -> tuple[float, int, int]:
    t = time.perf_counter()
    n = issues = 0
    for f in files:
        d = read_event_file(f, check_crc=check_crc)
        n += d.scalars_read
        issues += len(d.issues)
    return time.perf_counter() - t, n, issues


def read_tbparse(paths: list[Path], root: Path, all_runs: bool) -> int:
    from tbparse import SummaryReader

    if all_runs:
        return len(SummaryReader(str(root), pivot=False).scalars)
    return sum(len(SummaryReader(str(p), pivot=False).scalars) for p in paths)


def time_tbparse(run_dirs: list[Path], root: Path, all_runs: bool) -> tuple[float, int]:
    t = time.perf_counter()
    n = read_tbparse(run_dirs, root, all_runs)
    return time.perf_counter() - t, n


_RSS_CHILD = """
import sys
from analyzer.tfevents import read_event_file
from tbparse import SummaryReader

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key))

with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM) to the current RSS
    fh.write("5")
before = status("VmRSS:")
if sys.argv[1] == "ours":
    d = read_event_file(sys.argv[2])
else:
    d = SummaryReader(sys.argv[2], pivot=False).scalars
print(before, status("VmHWM:"))
"""


def rss_growth(reader: str, path: Path) -> float:
    """Peak-RSS growth (MiB) of a fresh process while `reader` reads `path` (imports excluded;
    Linux /proc). NaN where /proc is unavailable."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, reader, str(path)], capture_output=True, text=True, check=True
        )
        before, after = map(int, out.stdout.split()[-2:])
    except (subprocess.CalledProcessError, ValueError):
        return float("nan")
    return (after - before) / 1024  # KiB -> MiB


def traced_peak(fn) -> float:
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--tags", type=int, default=12)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--tbparse-runs", type=int, default=5, help="runs tbparse reads (0: skip tbparse)")
    ap.add_argument(
        "--as-tensor", action="store_true", help="TF2-style tensor scalars instead of simple_value"
    )
    ap.add_argument("--dir", type=Path, help="corpus directory (kept); default: a temporary one, deleted")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)

    tmp = None
    root = args.dir
    if root is None:
        tmp = tempfile.mkdtemp(prefix="offrl-ingest-bench-")
        root = Path(tmp)
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        files = generate(root, args.runs, args.tags, args.steps, args.as_tensor)
        gen_s = time.perf_counter() - t
        size = sum(f.stat().st_size for f in files)
        total = args.runs * args.tags * args.steps
        print(
            f"corpus: {args.runs} runs x {args.tags} tags x {args.steps} steps = {total:,} scalars "
            f"({'tensor' if args.as_tensor else 'simple_value'}), {size / 2**20:.0f} MiB in {len(files)} files; "
            f"written in {gen_s:.1f} s ({total / gen_s / 1e6:.2f} M scalars/s)"
        )
        res: dict[str, object] = {"runs": args.runs, "tags": args.tags, "steps": args.steps, "bytes": size}
        for crc in (True, False):
            dt, n, issues = time_ours(files, crc)
            assert n == total and issues == 0, (n, issues)
            rate = n / dt
            res[f"ours_crc_{'on' if crc else 'off'}_s"] = dt
            res[f"ours_crc_{'on' if crc else 'off'}_rate"] = rate
            print(
                f"ours, CRC {'on ' if crc else 'off'}: {dt:7.2f} s  {rate / 1e6:6.2f} M scalars/s  ({size / dt / 2**20:.0f} MiB/s)"
            )
        mem_ours = traced_peak(lambda: read_event_file(files[0]))
        rss_ours = rss_growth("ours", files[0])
        res.update(ours_peak_mib_1run=mem_ours, ours_rss_growth_mib_1run=rss_ours)
        if args.tbparse_runs > 0:
            k = min(args.tbparse_runs, args.runs)
            run_dirs = [f.parent for f in files[:k]]
            dt, n = time_tbparse(run_dirs, root, k == args.runs)
            assert n == k * args.tags * args.steps, n
            rate = n / dt
            ratio = res["ours_crc_on_rate"] / rate  # type: ignore[operator]
            res.update(tbparse_runs=k, tbparse_s=dt, tbparse_rate=rate, ratio_crc_on=ratio)
            scope = "all runs" if k == args.runs else f"first {k} of {args.runs} runs (rate per scalar)"
            print(f"tbparse ({scope}): {dt:7.2f} s  {rate / 1e6:6.3f} M scalars/s")
            mem_tb = traced_peak(lambda: read_tbparse(run_dirs[:1], root, False))
            rss_tb = rss_growth("tbparse", run_dirs[0])
            res.update(tbparse_peak_mib_1run=mem_tb, tbparse_rss_growth_mib_1run=rss_tb)
            print(f"speed-up, CRC on: {ratio:.1f}x   (CRC off: {res['ours_crc_off_rate'] / rate:.1f}x)")  # type: ignore[operator]
            print(
                f"memory reading one run ({args.tags * args.steps:,} scalars, {files[0].stat().st_size / 2**20:.1f} MiB): "
                f"tracemalloc peak ours {mem_ours:.0f} MiB, tbparse {mem_tb:.0f} MiB; "
                f"peak-RSS growth in a fresh process ours {rss_ours:.0f} MiB, tbparse {rss_tb:.0f} MiB"
            )
        else:
            print(
                f"memory reading one run: tracemalloc peak {mem_ours:.0f} MiB, peak-RSS growth {rss_ours:.0f} MiB"
            )
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
