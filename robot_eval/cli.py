"""`offrl-eval`: collect scripted datasets, score a trainer run's checkpoints, render task frames.

Every user error (missing run dir, no checkpoints, unknown task, bad option) is one line on stderr and exit
code 2 — never a traceback. `checkpoints` exits 1 when some checkpoint could not be read (one line each, naming
the file and the reason); the others are still scored and written. Progress bars go to stderr, so `--format json` on stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """Reported as `offrl-eval: error: <message>` with exit code 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="offrl-eval", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("collect", help="roll out a noisy scripted policy and write a D4RL-style .npz dataset")
    c.add_argument(
        "--task", default="pickplace", help="pickplace | drawer | offrl/PickPlace-v0 | offrl/DrawerGrasp-v0"
    )
    c.add_argument(
        "--trajectories", "-n", type=int, default=100, help="number of trajectories (paper: 50..10,000)"
    )
    c.add_argument(
        "--noise",
        default="0.1",
        help="Gaussian action-noise std (COG: 0.1), or 'paper': the noise calibrated to the paper's segment "
        "success rates (grasp ~35%%, place ~40%%; docs/robot_eval.md)",
    )
    c.add_argument("--seed", type=int, default=0)
    c.add_argument(
        "--n-objects", type=int, default=None, help="pick-place: object types to draw from (1,5,10,20,35)"
    )
    c.add_argument("--image-size", type=int, default=0, help="0 = state observations; 48 or 64 = RGB images")
    c.add_argument(
        "--segment", choices=("full", "grasp", "place"), default="full", help="pick-place partial data"
    )
    c.add_argument("--zero-rewards", action="store_true", help="relabel rewards to 0 (COG's prior data)")
    c.add_argument("--gamma", type=float, default=0.99, help="discount for mc_returns and metadata")
    c.add_argument("--workers", "-w", type=int, default=1)
    c.add_argument("--out", "-o", required=True, help="output .npz path")
    c.add_argument("--compress", action="store_true", help="np.savez_compressed (smaller, slower)")
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    e = sub.add_parser("checkpoints", help="roll out every checkpoint of a reference-trainer run")
    e.add_argument("run_dir", help="the trainer's log dir (holds checkpoints/ckpt_<step>.pt and config.json)")
    e.add_argument("--episodes", "-n", type=int, default=20)
    e.add_argument("--workers", "-w", type=int, default=1)
    e.add_argument("--seed", type=int, default=0, help="episode seeds (the same for every checkpoint)")
    e.add_argument("--task", default=None, help="override the task read from config.json -> dataset metadata")
    e.add_argument("--n-objects", type=int, default=None)
    e.add_argument("--image-size", type=int, default=None)
    e.add_argument("--out", "-o", default=None, help="output folder (default: <RUN_DIR>_eval/)")
    e.add_argument("--into-run", action="store_true", help="allow writing into <RUN_DIR>/eval/")
    e.add_argument("--video", action="store_true", help="save a GIF rollout of the best checkpoint")
    e.add_argument("--format", choices=("text", "json"), default="text")
    e.add_argument("--quiet", "-q", action="store_true")

    i = sub.add_parser("info", help="validate a dataset and print its metadata and array shapes")
    i.add_argument("dataset")
    i.add_argument("--format", choices=("text", "json"), default="text")

    from robot_eval.loop.run import add_parser as add_loop_parser

    add_loop_parser(sub)

    r = sub.add_parser("render", help="save one rendered frame per task (PNG) for the docs")
    r.add_argument("--out-dir", default="docs/img")
    r.add_argument("--size", type=int, default=256)
    r.add_argument("--seed", type=int, default=0)
    return p


def _progress(quiet: bool, total: int, label: str):
    """A rich progress bar on stderr, or a no-op."""
    if quiet:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    prog.start()
    tid = prog.add_task(label, total=total)
    return prog, tid


def _cmd_collect(a: argparse.Namespace) -> dict[str, Any]:
    from robot_eval.collect import collect
    from robot_eval.dataset import save_dataset
    from robot_eval.tasks import TaskError, task_spec

    if a.trajectories < 1:
        raise CliError(f"--trajectories must be >= 1, got {a.trajectories}")
    from robot_eval.scripted import PAPER_SEGMENT_NOISE

    if a.noise == "paper":
        a.noise = PAPER_SEGMENT_NOISE[a.segment]
    else:
        try:
            a.noise = float(a.noise)
        except ValueError:
            raise CliError(f"--noise must be a number or 'paper', got {a.noise!r}") from None
    if not (a.noise >= 0 and a.noise < float("inf")):
        raise CliError(f"--noise must be a finite number >= 0, got {a.noise}")
    if not 0 < a.gamma <= 1:
        raise CliError(f"--gamma must be in (0, 1], got {a.gamma}")
    if a.workers < 1:
        raise CliError(f"--workers must be >= 1, got {a.workers}")
    out = Path(a.out)
    if out.suffix != ".npz":
        raise CliError(f"{out}: --out must end in .npz")
    try:
        spec = task_spec(a.task, n_objects=a.n_objects, image_size=a.image_size, segment=a.segment)
    except TaskError as exc:
        raise CliError(str(exc)) from None
    bar = _progress(a.quiet, a.trajectories, "collect")
    t0 = time.perf_counter()
    try:
        ds = collect(
            spec,
            a.trajectories,
            noise=a.noise,
            seed=a.seed,
            gamma=a.gamma,
            workers=a.workers,
            zero_rewards=a.zero_rewards,
            on_progress=(lambda k: bar[0].advance(bar[1], k)) if bar else None,
        )
    finally:
        if bar:
            bar[0].stop()
    elapsed = time.perf_counter() - t0
    try:
        save_dataset(out, ds, compress=a.compress)
    except OSError as exc:
        raise CliError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return {"path": str(out), "seconds": round(elapsed, 3), "transitions": len(ds), "metadata": ds.metadata}


def _cmd_checkpoints(a: argparse.Namespace, loader=None) -> dict[str, Any]:
    from robot_eval.evaluate import (
        EvalResult,
        check_out_dir,
        default_out_dir,
        evaluate_checkpoints,
        find_checkpoints,
        save_rollout_gif,
        task_from_run,
        write_outputs,
    )

    run_dir = Path(a.run_dir)
    if a.episodes < 1:
        raise CliError(f"--episodes must be >= 1, got {a.episodes}")
    if a.workers < 1:
        raise CliError(f"--workers must be >= 1, got {a.workers}")
    ckpts = find_checkpoints(run_dir)
    spec = task_from_run(run_dir, a.task, n_objects=a.n_objects, image_size=a.image_size)
    out_dir = Path(a.out) if a.out else default_out_dir(run_dir, a.into_run)
    check_out_dir(run_dir, out_dir, a.into_run)
    bar = _progress(a.quiet, len(ckpts) * a.episodes, f"evaluate {len(ckpts)} checkpoints")
    try:
        scores, errors = evaluate_checkpoints(
            ckpts,
            spec,
            a.episodes,
            seed=a.seed,
            workers=a.workers,
            loader=loader,
            on_progress=(lambda k: bar[0].advance(bar[1], k)) if bar else None,
        )
    finally:
        if bar:
            bar[0].stop()
    for line in errors:  # one line per unreadable checkpoint: file and reason
        print(f"offrl-eval: error: {line}", file=sys.stderr)
    if not scores:
        raise CliError(f"{run_dir}: no checkpoint could be evaluated ({len(errors)} failed)")
    result = EvalResult(
        str(run_dir), str(out_dir), spec.env_id, spec.kwargs, a.episodes, a.seed, scores, errors
    )
    files = write_outputs(result)
    best = result.best
    if a.video:  # the best checkpoint, or the latest one when none succeeded
        shown = best or scores[-1]
        gif = out_dir / f"rollout_step{shown.step}.gif"
        files["video"] = str(save_rollout_gif(spec, shown.path, a.seed, gif, loader))
    return {
        "run_dir": str(run_dir),
        "task": spec.env_id,
        "env_kwargs": spec.kwargs,
        "episodes": a.episodes,
        "best_step": best.step if best else None,
        "best_note": result.best_note,
        "scores": [s.__dict__ for s in scores],
        "errors": errors,
        "files": files,
    }


def _cmd_info(a: argparse.Namespace) -> dict[str, Any]:
    from robot_eval.dataset import load_dataset, trajectory_bounds

    ds = load_dataset(a.dataset)
    arrays = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in ds.arrays.items()}
    return {
        "path": a.dataset,
        "transitions": len(ds),
        "trajectories": len(trajectory_bounds(ds)),
        "arrays": arrays,
        "metadata": ds.metadata,
    }


def _cmd_render(a: argparse.Namespace) -> dict[str, Any]:
    from robot_eval.render import render_task_frames

    return {"files": [str(p) for p in render_task_frames(Path(a.out_dir), size=a.size, seed=a.seed)]}


def _cmd_loop(a: argparse.Namespace) -> dict[str, Any]:
    from robot_eval.loop.run import command

    try:
        return command(a)
    except (ValueError, KeyError) as exc:
        raise CliError(str(exc).strip("'\"")) from None


def _print_text(command: str, res: dict[str, Any]) -> None:
    if command == "collect":
        m = res["metadata"]
        print(
            f"wrote {res['path']}: {m['n_trajectories']} trajectories, {res['transitions']} transitions, "
            f"success {m['success_rate']:.1%}, MC return {m['mc_return_mean']:.3f} ({res['seconds']:.1f} s)"
        )
    elif command == "info":
        print(f"{res['path']}: {res['transitions']} transitions in {res['trajectories']} trajectories")
        for k, v in res["arrays"].items():
            print(f"  {k:<18} {tuple(v['shape'])} {v['dtype']}")
        for k, v in sorted(res["metadata"].items()):
            print(f"  {k}: {v}")
    elif command == "checkpoints":
        print(f"task {res['task']} {res['env_kwargs'] or ''}, {res['episodes']} episode(s) per checkpoint")
        print(f"{'step':>10}  {'success':>8}  {'95% CI':>13}  {'return':>8}")
        for s in res["scores"]:
            ci = f"[{s['success_ci_low']:.2f}, {s['success_ci_high']:.2f}]"
            print(f"{s['step']:>10}  {s['success_rate']:>8.2f}  {ci:>13}  {s['return_mean']:>8.2f}")
        print(f"best: {res['best_note']}")
        for k, v in res["files"].items():
            print(f"{k}: {v}")
    else:
        for f in res["files"]:
            print(f)


def main(argv: list[str] | None = None, *, policy_loader=None) -> int:
    """Entry point; `policy_loader(path) -> policy` replaces reference_trainer's load_policy (tests, other trainers)."""
    from robot_eval.dataset import DatasetError
    from robot_eval.evaluate import EvalError
    from robot_eval.tasks import TaskError

    args = _parser().parse_args(argv)
    handlers = {
        "collect": _cmd_collect,
        "checkpoints": lambda a: _cmd_checkpoints(a, policy_loader),
        "info": _cmd_info,
        "render": _cmd_render,
        "loop": _cmd_loop,
    }
    try:
        res = handlers[args.command](args)
    except (CliError, EvalError, TaskError, DatasetError) as exc:
        print(f"offrl-eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("offrl-eval: interrupted", file=sys.stderr)
        return 130
    if getattr(args, "format", "text") == "json":
        print(json.dumps(res, indent=2, sort_keys=True, default=str))
    else:
        _print_text(args.command, res)
    if args.command == "checkpoints" and res["errors"]:
        return EXIT_FAILED  # the others were scored and written; an unreadable checkpoint fails the command
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
