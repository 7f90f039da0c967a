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
    python benchmarks/ingest.py --corpus trainers --tbparse-runs 6       # other writers' files

`--corpus trainers` is what real trainers write instead (issue 14): files from
`torch.utils.tensorboard.SummaryWriter` and tensorboardX's SummaryWriter (each if installed;
tensorboardX is not a project dependency), 8 training scalars every step, 3 eval scalars and an
image every 1,000 steps, 3 weight histograms every 500, a text every 5,000, interleaved in one file
per run (default 3 runs per writer x 20,000 steps = 960,360 scalars). Both readers are timed in
this process, CRC checks on, by wall clock and by CPU time.
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


#: What real trainers log besides scalars, and how often (steps): the issue-14 corpus
TRAIN_TAGS = (
    "loss/critic",
    "loss/actor",
    "loss/cql",
    "loss/alpha",
    "q/data",
    "q/policy",
    "td_error",
    "alpha",
)
EVAL_TAGS = ("eval/return", "eval/success", "eval/q_data")
HIST_EVERY, EVAL_EVERY, IMAGE_EVERY, TEXT_EVERY = 500, 1000, 1000, 5000
LAYERS = ((256, 17), (256, 256), (1, 256))  # Q-network weight matrices: one histogram each


def _trainer_run(writer, steps: int, seed: int) -> int:  # noqa: ANN001
    """Log like a training loop: scalars every step, weight histograms every 500, eval scalars and an
    image every 1,000, a text every 5,000, interleaved in one event file; returns scalars written."""
    import torch

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o, i, generator=gen) * 0.1 for o, i in LAYERS]
    walks = {t: np.cumsum(rng.standard_normal(steps)) * 0.01 for t in TRAIN_TAGS}
    n = 0
    writer.add_text("config", "algo: cql\ngamma: 0.99\nlr: 0.0003", 0)
    for step in range(steps):
        for t in TRAIN_TAGS:
            writer.add_scalar(t, float(walks[t][step]), step)
        n += len(TRAIN_TAGS)
        if step % HIST_EVERY == 0:
            for k, w in enumerate(weights):
                w.add_(torch.randn(w.shape, generator=gen) * 1e-3)
                writer.add_histogram(f"weights/q_{k}", w, step)
        if step % EVAL_EVERY == 0:
            for t in EVAL_TAGS:
                writer.add_scalar(t, float(rng.standard_normal()), step)
            n += len(EVAL_TAGS)
        if step % IMAGE_EVERY == 0:
            img = torch.rand(3, 32, 32, generator=gen)
            writer.add_image("eval/frame", img, step)
        if step % TEXT_EVERY == 0:
            writer.add_text("eval/episode", f"step {step}: success {rng.random():.2f}", step)
    writer.close()
    return n


def generate_trainers(root: Path, runs: int, steps: int) -> tuple[list[Path], int, list[str]]:
    """`runs` runs from each of torch.utils.tensorboard.SummaryWriter and tensorboardX.SummaryWriter.

    Returns (event files, scalars written, writers used). A writer whose package is missing is left
    out and named in the third item's complement (tensorboardX is not a project dependency).
    """
    writers: list[tuple[str, object]] = []
    try:
        from torch.utils.tensorboard import SummaryWriter as TorchWriter

        writers.append(("torch", TorchWriter))
    except ImportError:
        pass
    try:
        from tensorboardX import SummaryWriter as XWriter

        writers.append(("tensorboardX", XWriter))
    except ImportError:
        pass
    files: list[Path] = []
    total = 0
    for name, cls in writers:
        for r in range(runs):
            d = root / f"{name}_{r:02d}"
            shutil.rmtree(d, ignore_errors=True)  # a kept --dir from an earlier run: start clean
            total += _trainer_run(cls(log_dir=str(d)), steps, seed=r)  # type: ignore[operator]
            files.extend(sorted(d.glob("events.out.tfevents.*")))
    return files, total, [n for n, _ in writers]


def time_ours(files: list[Path], check_crc: bool) -> tuple[float, int, int]:
    """(wall seconds, scalars, issues); the CPU seconds of the same read are in `LAST_CPU`."""
    t, c = time.perf_counter(), time.process_time()
    n = issues = 0
    for f in files:
        d = read_event_file(f, check_crc=check_crc)
        n += d.scalars_read
        issues += len(d.issues)
    LAST_CPU["ours"] = time.process_time() - c
    return time.perf_counter() - t, n, issues


#: CPU seconds of the last timed read per reader. Why both clocks: on a shared machine wall time
#: includes waiting for a core, which hits the 1-second read and the 30-second read unequally; both
#: readers are single-threaded, so CPU time is the like-for-like figure there.
LAST_CPU: dict[str, float] = {}


def read_tbparse(paths: list[Path], root: Path, all_runs: bool) -> int:
    from tbparse import SummaryReader

    if all_runs:
        return len(SummaryReader(str(root), pivot=False).scalars)
    return sum(len(SummaryReader(str(p), pivot=False).scalars) for p in paths)


def time_tbparse(run_dirs: list[Path], root: Path, all_runs: bool) -> tuple[float, int]:
    t, c = time.perf_counter(), time.process_time()
    n = read_tbparse(run_dirs, root, all_runs)
    LAST_CPU["tbparse"] = time.process_time() - c
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
    ap.add_argument(
        "--corpus",
        choices=("ours", "trainers"),
        default="ours",
        help="ours: EventWriter files, every tag every step; trainers: torch SummaryWriter and "
        "tensorboardX files with histograms, images, text and eval tags interleaved",
    )
    ap.add_argument("--runs", type=int, help="runs (trainers: per writer) [ours 50, trainers 3]")
    ap.add_argument("--tags", type=int, default=12, help="ours: tags per run")
    ap.add_argument("--steps", type=int, help="steps per run [ours 20000, trainers 20000]")
    ap.add_argument("--tbparse-runs", type=int, default=5, help="runs tbparse reads (0: skip tbparse)")
    ap.add_argument(
        "--as-tensor", action="store_true", help="TF2-style tensor scalars instead of simple_value"
    )
    ap.add_argument("--dir", type=Path, help="corpus directory (kept); default: a temporary one, deleted")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    trainers = args.corpus == "trainers"
    args.runs = args.runs or (3 if trainers else 50)
    args.steps = args.steps or 20000

    tmp = None
    root = args.dir
    if root is None:
        tmp = tempfile.mkdtemp(prefix="offrl-ingest-bench-")
        root = Path(tmp)
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        if trainers:
            files, total, writers = generate_trainers(root, args.runs, args.steps)
            if not files:
                print("trainers corpus: neither torch nor tensorboardX is installed", file=sys.stderr)
                return 2
            missing = {"torch", "tensorboardX"} - set(writers)
            what = (
                f"{len(files)} runs ({args.runs} per writer: {', '.join(writers)}"
                + (f"; {', '.join(sorted(missing))} not installed" if missing else "")
                + f") x {args.steps} steps: {len(TRAIN_TAGS)} scalars every step, {len(EVAL_TAGS)} eval "
                f"scalars + an image every {EVAL_EVERY}, {len(LAYERS)} weight histograms every "
                f"{HIST_EVERY}, text every {TEXT_EVERY} = {total:,} scalars"
            )
        else:
            files = generate(root, args.runs, args.tags, args.steps, args.as_tensor)
            total = args.runs * args.tags * args.steps
            what = (
                f"{args.runs} runs x {args.tags} tags x {args.steps} steps = {total:,} scalars "
                f"({'tensor' if args.as_tensor else 'simple_value'})"
            )
        gen_s = time.perf_counter() - t
        size = sum(f.stat().st_size for f in files)
        print(
            f"corpus: {what}, {size / 2**20:.0f} MiB in {len(files)} files; "
            f"written in {gen_s:.1f} s ({total / gen_s / 1e6:.2f} M scalars/s)"
        )
        res: dict[str, object] = {
            "corpus": args.corpus,
            "runs": len(files),
            "steps": args.steps,
            "scalars": total,
            "bytes": size,
        }
        if not trainers:
            res["tags"] = args.tags
        # one-time costs (protobuf modules, CRC tables, tbparse's imports) stay out of the timings
        read_event_file(files[0])
        if args.tbparse_runs > 0:
            import tbparse  # noqa: F401
            from tensorboard.backend.event_processing import event_accumulator  # noqa: F401
        for crc in (True, False):
            dt, n, issues = time_ours(files, crc)
            assert n == total and issues == 0, (n, issues)
            rate = n / dt
            key = f"ours_crc_{'on' if crc else 'off'}"
            res.update({f"{key}_s": dt, f"{key}_rate": rate, f"{key}_cpu_s": LAST_CPU["ours"]})
            print(
                f"ours, CRC {'on ' if crc else 'off'}: {dt:7.2f} s  {rate / 1e6:6.2f} M scalars/s  "
                f"({size / dt / 2**20:.0f} MiB/s; CPU {LAST_CPU['ours']:.2f} s)"
            )
        ours_cpu = res["ours_crc_on_cpu_s"]
        mem_ours = traced_peak(lambda: read_event_file(files[0]))
        rss_ours = rss_growth("ours", files[0])
        res.update(ours_peak_mib_1run=mem_ours, ours_rss_growth_mib_1run=rss_ours)
        if args.tbparse_runs > 0:
            k = min(args.tbparse_runs, len(files))
            run_dirs = [f.parent for f in files[:k]]
            dt, n = time_tbparse(run_dirs, root, k == len(files))
            if k == len(files):
                assert n == total, n  # tbparse finds exactly the scalars we do
            rate = n / dt
            ratio = res["ours_crc_on_rate"] / rate  # type: ignore[operator]
            cpu_rate = n / LAST_CPU["tbparse"]
            cpu_ratio = (total / ours_cpu) / cpu_rate  # type: ignore[operator]
            res.update(
                tbparse_runs=k,
                tbparse_s=dt,
                tbparse_rate=rate,
                tbparse_cpu_s=LAST_CPU["tbparse"],
                ratio_crc_on=ratio,
                ratio_crc_on_cpu=cpu_ratio,
            )
            scope = "all runs" if k == len(files) else f"first {k} of {len(files)} runs (rate per scalar)"
            print(
                f"tbparse ({scope}): {dt:7.2f} s  {rate / 1e6:6.3f} M scalars/s  (CPU {LAST_CPU['tbparse']:.2f} s)"
            )
            mem_tb = traced_peak(lambda: read_tbparse(run_dirs[:1], root, False))
            rss_tb = rss_growth("tbparse", run_dirs[0])
            res.update(tbparse_peak_mib_1run=mem_tb, tbparse_rss_growth_mib_1run=rss_tb)
            print(
                f"speed-up, CRC on: {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU   "
                f"(CRC off: {res['ours_crc_off_rate'] / rate:.1f}x wall)"  # type: ignore[operator]
            )
            one = files[0]
            print(
                f"memory reading one run ({one.stat().st_size / 2**20:.1f} MiB): "
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
