"""Benchmark: our CQL step vs d3rlpy's CQL on the same synthetic dataset, interleaved in one run.

Usage: python benchmarks/trainer.py [--rounds 3] [--d3rlpy-python /tmp/d3venv-bench/bin/python]
       python benchmarks/trainer.py --signals-only [--signals-rounds 5]   # cost of the selection signals only

What it measures (docs/performance.md, "Reference trainer"):
  (a) 3x256 MLPs, batch 256, 10 sampled actions (FLOP-bound): our fp32 and bf16 vs d3rlpy 2.8.1;
      achieved GFLOP/s against a measured matmul peak; bf16 vs fp32 logged curves (q_data,
      td_error) compared with the seed-to-seed spread of fp32;
  (b) 2x64 MLPs, batch 256: small networks, where per-step overhead matters more;
  (c) 2x64 MLPs, batch 8: almost no arithmetic, i.e. the fixed per-step cost of each loop.
d3rlpy runs in its own interpreter (a venv with d3rlpy installed) as a worker process; each
round times ours then d3rlpy's on the same machine state, so load from other processes hits
both sides alike. Wall-clock and CPU-time rates are both reported, with os.getloadavg().

Selection signals (docs/trainer.md, "Selection signals"; `signals_cost`): the cost of `SignalProbe.compute` (all seven
signals: 10 % held out, success-like rewards) against training time, per case: (i) directly, windows of `log_every`
steps with and without the probe at the end, interleaved in one process, best of N; (ii) decomposed, the best time of
one probe call over `log_every` times the best time of one step, for log intervals too long to time directly.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from reference_trainer.config import TrainConfig
from reference_trainer.cql import CQLAgent
from reference_trainer.data import load_dataset
from reference_trainer.signals import SignalProbe
from reference_trainer.train import train

OBS_DIM, ACT_DIM, N_TRANSITIONS, BATCH, N_ACTIONS = 17, 6, 100_000, 256, 10

D3RLPY_WORKER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, torch, d3rlpy
    torch.set_num_threads(int(sys.argv[2]))
    d3rlpy.seed(0)
    z = np.load(sys.argv[1])
    ds = d3rlpy.dataset.MDPDataset(z["observations"], z["actions"], z["rewards"], z["terminals"], z["timeouts"])
    algo = None
    print("RESULT " + json.dumps({"ok": True, "version": d3rlpy.__version__}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "setup":
            enc = d3rlpy.models.VectorEncoderFactory([cmd["hidden"]] * cmd["depth"])
            algo = d3rlpy.algos.CQLConfig(
                actor_encoder_factory=enc, critic_encoder_factory=enc, batch_size=cmd["batch"],
                n_action_samples=cmd["n_actions"], conservative_weight=1.0, alpha_learning_rate=0.0,
                initial_alpha=1.0,
            ).create(device="cpu")
            algo.build_with_dataset(ds)
            for _ in range(3):
                algo.update(ds.sample_transition_batch(cmd["batch"]))
            out = {"ok": True}
        else:
            w, c = time.perf_counter(), time.process_time()
            for _ in range(cmd["steps"]):
                algo.update(ds.sample_transition_batch(cmd["batch"]))
            out = {"wall": time.perf_counter() - w, "cpu": time.process_time() - c}
        print("RESULT " + json.dumps(out), flush=True)
    """
)


def make_dataset(path: Path, seed: int = 0, success_like: bool = False) -> None:
    """Random-walk-ish synthetic transitions (obs 17, act 6) with 1000-step episodes; `success_like`: 40-step episodes
    with a 0/1 reward at the last step of about a third of them (as the robot tasks), so SoftOPC is computed too."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(N_TRANSITIONS, OBS_DIM)).astype(np.float32)
    act = np.tanh(rng.normal(size=(N_TRANSITIONS, ACT_DIM))).astype(np.float32)
    next_obs = (obs + 0.1 * rng.normal(size=obs.shape)).astype(np.float32)
    rewards = (obs[:, 0] * act[:, 0]).astype(np.float32)
    horizon = 40 if success_like else 1000
    timeouts = np.zeros(N_TRANSITIONS, dtype=bool)
    timeouts[horizon - 1 :: horizon] = True
    if success_like:
        rewards = np.zeros(N_TRANSITIONS, dtype=np.float32)
        rewards[horizon - 1 :: horizon] = (rng.random(N_TRANSITIONS // horizon) < 0.33).astype(np.float32)
    meta = {"task": "synthetic", "gamma": 0.99, "horizon": 1000, "reward_range": [-5.0, 5.0]}
    np.savez(path, observations=obs, actions=act, rewards=rewards, terminals=np.zeros(N_TRANSITIONS, dtype=bool),
             timeouts=timeouts, next_observations=next_obs, metadata=np.array(json.dumps(meta)))  # fmt: skip


class D3rlpyWorker:
    """d3rlpy in its own interpreter; speaks JSON lines prefixed with RESULT."""

    def __init__(self, python: str, dataset: Path, threads: int) -> None:
        self.proc = subprocess.Popen(
            [python, "-c", D3RLPY_WORKER, str(dataset), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.version = self._read()["version"]

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        raise RuntimeError("d3rlpy worker exited")

    def ask(self, **cmd: object) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def ours_runner(dataset_path: Path, hidden: int, depth: int, precision: str, batch: int = BATCH):
    """A closure that runs `steps` training steps exactly as train() does (sample, update, accumulate)."""
    ds = load_dataset(dataset_path)
    cfg = TrainConfig(obs_shape=ds.obs_shape, act_dim=ds.act_dim, hidden=hidden, depth=depth, precision=precision,
                      bc_steps=0, gamma=0.99, batch_size=batch, n_actions=N_ACTIONS)  # fmt: skip
    torch.manual_seed(0)
    agent = CQLAgent(cfg, torch.device("cpu"))
    acc = torch.zeros(len(agent.metric_names))
    step = 0

    def run(steps: int) -> dict:
        nonlocal step
        w, c = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step += 1
            acc.add_(agent.update(ds.sample(batch), step))
        acc.tolist()  # the once-per-interval host read
        return {"wall": time.perf_counter() - w, "cpu": time.process_time() - c}

    run(3)
    return run


def signals_cost(ds_path: Path, name: str, hidden: int, depth: int, n_actions: int, log_every: int, rounds: int,
                 precision: str = "fp32", long_log_every: int = 1000) -> dict:  # fmt: skip
    """Training time with and without the selection signals (module docstring); times in ms, overhead in %."""
    full = load_dataset(ds_path)
    cfg = TrainConfig(obs_shape=full.obs_shape, act_dim=full.act_dim, hidden=hidden, depth=depth, precision=precision,
                      bc_steps=0, gamma=0.99, batch_size=BATCH, n_actions=n_actions, holdout_fraction=0.1)  # fmt: skip
    from reference_trainer.train import split_holdout

    ds, held = split_holdout(cfg, full)
    torch.manual_seed(0)
    agent = CQLAgent(cfg, torch.device("cpu"))
    probe = SignalProbe(agent, ds, held)
    acc = torch.zeros(len(agent.metric_names))
    step = 0

    def window(steps: int, with_probe: bool) -> tuple[float, float]:
        nonlocal step
        w, c = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step += 1
            acc.add_(agent.update(ds.sample(BATCH), step))
        acc.tolist()  # the once-per-interval host read
        if with_probe:
            probe.compute()
        return time.perf_counter() - w, time.process_time() - c

    def probe_only() -> tuple[float, float]:
        w, c = time.perf_counter(), time.process_time()
        probe.compute()
        return time.perf_counter() - w, time.process_time() - c

    window(5, True)  # warm-up
    plain, signals, probes, single = [], [], [], []
    for _ in range(rounds):
        plain.append(window(log_every, False))
        signals.append(window(log_every, True))
        probes.append(probe_only())
        single.append(window(10, False))
    out: dict = {"case": name, "hidden": hidden, "depth": depth, "n_actions": n_actions, "precision": precision,
                 "batch": BATCH, "signals": list(probe.names), "rounds": rounds, "log_every": log_every}  # fmt: skip
    for unit, k in (("wall", 0), ("cpu", 1)):
        p = min(r[k] for r in plain)
        w = min(r[k] for r in signals)
        one_probe = min(r[k] for r in probes)
        one_step = min(r[k] for r in single) / 10
        out[unit] = {
            "window_ms_without": 1e3 * p,
            "window_ms_with": 1e3 * w,
            "overhead_pct_direct": 100 * (w - p) / p,
            "probe_ms": 1e3 * one_probe,
            "step_ms": 1e3 * one_step,
            "overhead_pct_decomposed": 100 * one_probe / (log_every * one_step),
            f"overhead_pct_decomposed_log_every_{long_log_every}": 100
            * one_probe
            / (long_log_every * one_step),
        }
    out["loadavg"] = os.getloadavg()
    return out


def flops_per_step(hidden: int, depth: int, n_actions: int = N_ACTIONS, batch: int = BATCH) -> float:
    """Matmul FLOPs of one CQL step (backward counted as 2x forward where it runs)."""
    h, a, f = hidden, ACT_DIM, OBS_DIM
    rows = batch * (1 + 3 * n_actions)
    per_row = a * h + (depth - 1) * h * h + h  # action part of layer 1, hidden layers, output
    critic_main = 2 * (rows * per_row + batch * f * h) * 3  # fwd + bwd, both weight and input grads
    critic_actor = 2 * batch * (per_row + f * h) * 2  # fwd + input-grad bwd
    target = 2 * batch * (per_row + f * h)
    actor_fwd = 2 * batch * (f * h + (depth - 1) * h * h + h * 2 * a)
    return 2 * (critic_main + critic_actor + target) + 2 * actor_fwd + actor_fwd * 2


def matmul_peak(
    dtype: torch.dtype, rows: int = 8192, hidden: int = 256, reps: int = 10, trials: int = 5
) -> float:
    """Best-of-`trials` CPU-time GFLOP/s of one hidden-layer GEMM (F.linear, as the critics use)."""
    x, w = torch.randn(rows, hidden, dtype=dtype), torch.randn(hidden, hidden, dtype=dtype)
    for _ in range(3):
        torch.nn.functional.linear(x, w)
    best = 0.0
    for _ in range(trials):
        t = time.process_time()
        for _ in range(reps):
            torch.nn.functional.linear(x, w)
        best = max(best, 2 * rows * hidden * hidden * reps / max(time.process_time() - t, 1e-9) / 1e9)
    return best


def timing_case(
    name: str, hidden: int, depth: int, steps: int, rounds: int, ds_path: Path, worker, batch: int = BATCH
) -> dict:
    sides = {p: ours_runner(ds_path, hidden, depth, p, batch) for p in ("fp32", "bf16")}
    if worker is not None:
        worker.ask(op="setup", hidden=hidden, depth=depth, batch=batch, n_actions=N_ACTIONS)
    samples: dict[str, list[dict]] = {k: [] for k in [*sides, "d3rlpy"]}
    for _ in range(rounds):
        for key, run in sides.items():
            samples[key].append(run(steps))
        if worker is not None:
            samples["d3rlpy"].append(worker.ask(op="run", steps=steps, batch=batch))
    out: dict = {
        "case": name,
        "hidden": hidden,
        "depth": depth,
        "batch": batch,
        "steps_per_round": steps,
        "rounds": rounds,
    }
    for key, rs in samples.items():
        if rs:
            out[key] = {
                "wall_steps_per_s": statistics.median(steps / r["wall"] for r in rs),
                "cpu_steps_per_s": statistics.median(steps / r["cpu"] for r in rs),
            }
    if "d3rlpy" in out:
        for key in sides:
            for unit in ("wall", "cpu"):
                out[f"ratio_{key}_vs_d3rlpy_{unit}"] = (
                    out[key][f"{unit}_steps_per_s"] / out["d3rlpy"][f"{unit}_steps_per_s"]
                )
    gflop = flops_per_step(hidden, depth, batch=batch) / 1e9
    out["gflop_per_step"] = gflop
    for key in sides:
        out[key]["gflops_cpu"] = gflop * out[key]["cpu_steps_per_s"]
    out["loadavg"] = os.getloadavg()
    return out


def curve_comparison(ds_path: Path, hidden: int, depth: int, steps: int, root: Path) -> dict:
    """bf16 vs fp32 logged curves (same seed) against the fp32 seed-to-seed spread."""
    curves = {}
    for prec, seed in (("fp32", 0), ("bf16", 0), ("fp32", 1), ("bf16", 1)):
        log_dir = root / f"curve_{prec}_{seed}"
        cfg = TrainConfig(algo="cql", dataset=str(ds_path), steps=steps, log_every=max(steps // 10, 1), ckpt_every=steps,
                          log_dir=str(log_dir), seed=seed, precision=prec, hidden=hidden, depth=depth, bc_steps=0,
                          threads=torch.get_num_threads())  # fmt: skip
        train(cfg, echo=lambda _m: None)
        with (log_dir / "progress.csv").open() as f:
            rows = list(csv.DictReader(f))
        curves[(prec, seed)] = {
            m: np.array([float(r[f"offrl/{m}"]) for r in rows]) for m in ("q_data", "td_error")
        }
    out = {"steps": steps, "hidden": hidden, "depth": depth}
    for m in ("q_data", "td_error"):
        prec_gap = max(np.abs(curves[("fp32", s)][m] - curves[("bf16", s)][m]).max() for s in (0, 1))
        seed_gap = max(np.abs(curves[(p, 0)][m] - curves[(p, 1)][m]).max() for p in ("fp32", "bf16"))
        out[m] = {"max_abs_bf16_minus_fp32": float(prec_gap), "max_abs_seed0_minus_seed1": float(seed_gap),
                  "within_seed_noise": bool(prec_gap <= seed_gap)}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--big-steps", type=int, default=15, help="steps per round at 3x256")
    ap.add_argument("--small-steps", type=int, default=100, help="steps per round at 2x64")
    ap.add_argument("--curve-steps", type=int, default=200, help="training steps per curve run (0 = skip)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--d3rlpy-python", default="/tmp/d3venv-bench/bin/python")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    ap.add_argument("--signals-only", action="store_true", help="time the selection signals only")
    ap.add_argument("--signals-rounds", type=int, default=5, help="best of N for the signals timing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results: dict = {"threads": args.threads, "torch": torch.__version__, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        sig_path = Path(tmp) / "synthetic_success.npz"
        make_dataset(sig_path, success_like=True)
        r = args.signals_rounds
        results["signals"] = [
            # the closed loop's presets (quick/full: 2x256, 4 sampled actions, log every 100 steps), in bf16 as it runs
            signals_cost(sig_path, "loop 2x256 n4 bf16", 256, 2, 4, 100, r, precision="bf16"),
            signals_cost(sig_path, "loop 2x256 n4 fp32", 256, 2, 4, 100, r),
            # small networks: the cheapest steps, so the largest relative cost
            signals_cost(sig_path, "2x64 n10", 64, 2, 10, 100, r),
            # the trainer's defaults (3x256, 10 sampled actions; log every 1000: decomposed, 100: direct)
            signals_cost(sig_path, "3x256 n10 (defaults)", 256, 3, 10, 100, max(2, r // 2)),
        ]
        if args.signals_only:
            results["loadavg_end"] = os.getloadavg()
            print(json.dumps(results, indent=2))
            if args.out:
                args.out.write_text(json.dumps(results, indent=2))
            return
        ds_path = Path(tmp) / "synthetic.npz"
        make_dataset(ds_path)
        worker = None
        if Path(args.d3rlpy_python).exists():
            worker = D3rlpyWorker(args.d3rlpy_python, ds_path, args.threads)
            results["d3rlpy"] = worker.version
        else:
            print(f"d3rlpy interpreter {args.d3rlpy_python} not found: timing ours only", file=sys.stderr)
        results["matmul_peak_gflops"] = {
            "fp32": matmul_peak(torch.float32),
            "bf16": matmul_peak(torch.bfloat16),
        }
        try:
            results["a_3x256"] = timing_case("3x256", 256, 3, args.big_steps, args.rounds, ds_path, worker)
            results["b_2x64"] = timing_case("2x64", 64, 2, args.small_steps, args.rounds, ds_path, worker)
            # per-step fixed cost (Python, dispatch, optimizer): same networks, almost no arithmetic
            results["c_2x64_batch8"] = timing_case(
                "2x64 b8", 64, 2, args.small_steps, args.rounds, ds_path, worker, 8
            )
        finally:
            if worker is not None:
                worker.close()
        if args.curve_steps > 0:
            results["bf16_vs_fp32_curves"] = curve_comparison(ds_path, 256, 3, args.curve_steps, Path(tmp))
    results["loadavg_end"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
