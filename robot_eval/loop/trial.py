"""One closed-loop trial in its own process: train -> evaluate every checkpoint -> analyze logs -> FQE -> result.json.

Run as `python -m robot_eval.loop.trial TRIAL_DIR` (TRIAL_DIR/spec.json written by run.py). Each phase leaves its own
output file and is skipped when that file exists, so a killed trial resumes where it stopped (training itself resumes
from its last checkpoint with `offrl-train --resume`). Nothing is ever written into the trainer's run folder except by
the trainer itself.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Second reading: the same analyzer with the divergence guard (DV001) off, i.e. the bare Q-peak heuristic on runs whose
# dataset Q leaves the feasible range during the BC warm start (docs/closed_loop.md).
NO_DV = ("DV001",)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def _ckpt_steps(run_dir: Path) -> list[int]:
    from robot_eval.evaluate import find_checkpoints

    try:
        return [s for s, _ in find_checkpoints(run_dir)]
    except Exception:  # no folder / no checkpoints yet
        return []


def train(spec: dict[str, Any], tdir: Path, threads: int, precision: str) -> float:
    """Run offrl-train (resuming a partial run); seconds spent, 0 when already complete."""
    run_dir = tdir / "run"
    steps = int(spec["train"]["steps"])
    if steps in _ckpt_steps(run_dir):
        return 0.0
    args = [
        sys.executable,
        "-m",
        "reference_trainer.cli",
        "--dataset",
        spec["dataset_path"],
        "--log-dir",
        str(run_dir),
    ]
    args += ["--seed", str(spec["seed"]), "--threads", str(threads), "--precision", precision]
    for k, v in spec["train"].items():  # every TrainConfig field is a flag (spec keys: either spelling)
        args += [f"--{k.replace('_', '-')}", str(v)]
    if (run_dir / "config.json").exists() and _ckpt_steps(run_dir):
        args.append("--resume")
    elif run_dir.exists():  # a run killed before its first checkpoint: nothing to resume, start clean
        import shutil

        shutil.rmtree(run_dir)
    from analyzer.executor import die_with_parent  # no orphaned trainer when the trial process is killed

    t0 = time.perf_counter()
    with (tdir / "train.log").open("a") as log:
        rc = subprocess.run(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
            preexec_fn=die_with_parent(),
        ).returncode
    if rc != 0:
        raise RuntimeError(f"offrl-train exited with {rc}; see {tdir / 'train.log'}")
    return time.perf_counter() - t0


def evaluate(spec: dict[str, Any], tdir: Path) -> tuple[list[dict[str, Any]], float]:
    from robot_eval.evaluate import (
        EvalResult,
        evaluate_checkpoints,
        find_checkpoints,
        task_from_run,
        write_outputs,
    )

    out = tdir / "eval.json"
    if out.exists():
        cached = json.loads(out.read_text())
        if cached.get("episodes", int(spec["episodes"])) == int(spec["episodes"]):
            return cached["scores"], 0.0
    run_dir = tdir / "run"
    t0 = time.perf_counter()
    ckpts = find_checkpoints(run_dir)
    task = task_from_run(run_dir)
    scores, errors = evaluate_checkpoints(ckpts, task, int(spec["episodes"]), seed=1000 + int(spec["seed"]))
    write_outputs(
        EvalResult(
            str(run_dir),
            str(tdir / "eval"),
            task.env_id,
            task.kwargs,
            int(spec["episodes"]),
            0,
            scores,
            errors,
        )
    )
    rows = [s.__dict__ for s in scores]
    _write_json(out, {"scores": rows, "errors": errors, "episodes": int(spec["episodes"])})
    return rows, time.perf_counter() - t0


def analyze_run(run_dir: Path, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """The workflow's verdict and pick from the logs alone (the analyzer never sees eval results); `ignore` turns
    rules off, as a user's rules file `ignore: [...]` would."""
    from dataclasses import replace

    from analyzer import analyze as run_analyzer
    from analyzer.config import default_config

    rules = replace(default_config(), ignore=list(ignore)) if ignore else None
    report = run_analyzer([run_dir], rules=rules)
    if not report.runs:
        msg = "; ".join(f"{e.path}: {e.message}" for e in report.errors) or "no run found"
        return {"verdict": "error", "reason": msg, "pick_step": None, "peak_step": None}
    r = report.runs[0]
    return {
        "verdict": r.verdict,
        "reason": r.verdict_reason,
        "pick_step": r.checkpoint.step if r.checkpoint else None,
        "pick_reason": r.checkpoint.reason if r.checkpoint else None,
        "peak_step": r.peak_step,
        "findings": [f"{f.code} {f.level}: {f.message}" for f in r.findings],
        "ignored_rules": list(ignore),
    }


def analyze(
    tdir: Path, ignore: tuple[str, ...] = (), name: str = "analysis.json"
) -> tuple[dict[str, Any], float]:
    """The trial's own reading, cached in `name` beside its result (a resumed trial does not redo it). Re-analysis
    with a newer analyzer (`--score-only --reanalyze`) calls `analyze_run` instead and never writes here."""
    out = tdir / name
    if out.exists():
        return json.loads(out.read_text()), 0.0
    t0 = time.perf_counter()
    res = analyze_run(tdir / "run", ignore)
    _write_json(out, res)
    return res, time.perf_counter() - t0


def fqe(spec: dict[str, Any], tdir: Path, threads: int) -> tuple[dict[str, float], float]:
    from reference_trainer.fqe import FQEConfig, fit_fqe
    from robot_eval.evaluate import find_checkpoints

    steps = int(spec.get("fqe_steps", 0))
    out = tdir / f"fqe_{steps}.json"  # keyed by the budget: a new one refits
    if out.exists():
        return json.loads(out.read_text()), 0.0
    if steps <= 0:
        return {}, 0.0
    t0 = time.perf_counter()
    ckpts = find_checkpoints(tdir / "run")
    run_cfg = json.loads((tdir / "run" / "config.json").read_text())  # the discount the run trained with
    cfg = FQEConfig(steps=steps, seed=int(spec["seed"]), threads=threads, gamma=run_cfg.get("gamma"))
    res = fit_fqe([p for _, p in ckpts], spec["dataset_path"], cfg)
    vals = {str(r.step): r.v_s0 for r in res}
    _write_json(out, vals)
    return vals, time.perf_counter() - t0


def forward(spec: dict[str, Any], tdir: Path, threads: int) -> tuple[dict[str, Any], float]:
    """One forward pass of every checkpoint over the run's held-out transitions (reference_trainer.forward): the
    scores of `offrl-select --forward`. Written once, like the FQE values; a run without a held-out split is scored
    on its training data, and forward.json says so."""
    from reference_trainer.checkpoint import list_checkpoints
    from reference_trainer.forward import forward_scores

    out = tdir / "forward.json"
    if out.exists():
        return json.loads(out.read_text()), 0.0
    res = forward_scores(list_checkpoints(tdir / "run"), spec["dataset_path"], threads=threads)
    _write_json(out, res.to_dict())
    return res.to_dict(), res.cpu_seconds


def read_progress(run_dir: Path) -> dict[str, dict[int, float]]:
    """progress.csv -> {metric (without the offrl/ prefix): {step: value}}; non-numbers become NaN."""
    series: dict[str, dict[int, float]] = {}
    with (run_dir / "progress.csv").open() as fh:
        for row in csv.DictReader(fh):
            step = int(row.pop("step"))
            for k, v in row.items():
                try:
                    val = float(v)
                except (TypeError, ValueError):
                    val = math.nan
                series.setdefault(k.removeprefix("offrl/"), {})[step] = val
    return series


def run_trial(tdir: Path, threads: int = 1, precision: str = "bf16") -> dict[str, Any]:
    spec = json.loads((tdir / "spec.json").read_text())
    timing_path = tdir / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}

    def add(phase: str, sec: float) -> None:
        timing[phase] = timing.get(phase, 0.0) + sec
        _write_json(timing_path, timing)

    add("train", train(spec, tdir, threads, precision))
    scores, sec = evaluate(spec, tdir)
    add("evaluate", sec)
    analysis, sec = analyze(tdir)
    add("analyze", sec)
    analysis_nodv, _ = analyze(tdir, NO_DV, "analysis_nodv.json")
    fq, sec = fqe(spec, tdir, threads)
    if sec:  # a fit (also a refit with another budget) replaces the FQE time rather than adding to it
        timing["fqe"] = sec
        _write_json(timing_path, timing)
    fw, sec = forward(spec, tdir, threads)
    if sec:
        add("forward", sec)
    result = {
        "spec": spec,
        "timing": timing,
        "success": {str(s["step"]): s["success_rate"] for s in scores},
        "analysis": analysis,
        "analysis_nodv": analysis_nodv,
        "fqe": fq,
        "forward": fw.get("scores", {}),
        "logs": {k: {str(s): v for s, v in d.items()} for k, d in read_progress(tdir / "run").items()},
    }
    _write_json(tdir / "result.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m robot_eval.loop.trial")
    p.add_argument("trial_dir")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    a = p.parse_args(argv)
    try:
        run_trial(Path(a.trial_dir), a.threads, a.precision)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"trial {a.trial_dir}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
