"""`offrl-eval`: collect scripted datasets, score a trainer run's checkpoints, render task frames.

Every user error (missing run dir, no checkpoints, unknown task, bad option) is one line on stderr and exit
code 2 — never a traceback. `checkpoints` exits 1 when some checkpoint could not be read (one line each, naming
the file and the reason); the others are still scored and written. Progress bars go to stderr, so `--format json` on stdout stays machine-readable.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from analyzer.cli_errors import EXIT_FAIL, EXIT_OK, EXIT_USAGE, CliError, GuardedGroup
from robot_eval.loop.scenarios import ORDER, PRESETS

PROG = "offrl-eval"
EXIT_FAILED = EXIT_FAIL  # the name this module used before analyzer/cli_errors.py
FORMATS = ("text", "json")


class _EvalGroup(GuardedGroup):
    prog = PROG

    def user_errors(self) -> Mapping[type[BaseException], int]:
        from analyzer.executor import RayUnavailable
        from robot_eval.dataset import DatasetError
        from robot_eval.evaluate import EvalError
        from robot_eval.tasks import TaskError

        return {
            EvalError: EXIT_USAGE,
            TaskError: EXIT_USAGE,
            DatasetError: EXIT_USAGE,
            RayUnavailable: EXIT_USAGE,
        }


app = typer.Typer(
    cls=_EvalGroup,
    name=PROG,
    help=__doc__,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
Opt = typer.Option
FormatOpt = Annotated[str, Opt("--format", metavar="text|json", help="text or json (on stdout)")]
QuietOpt = Annotated[bool, Opt("--quiet", "-q", help="no progress bar")]


def _choice(value: str, choices: tuple[str, ...], flag: str) -> str:
    if value not in choices:
        raise CliError(f"{flag}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _progress(quiet: bool, total: int, label: str) -> Any:
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


def _cmd_collect(a: Any) -> dict[str, Any]:
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


def _cmd_checkpoints(a: Any, loader: Callable[[str], Any] | None = None) -> dict[str, Any]:
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


def _cmd_info(a: Any) -> dict[str, Any]:
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


def _cmd_render(a: Any) -> dict[str, Any]:
    from robot_eval.render import render_task_frames

    return {"files": [str(p) for p in render_task_frames(Path(a.out_dir), size=a.size, seed=a.seed)]}


def _cmd_loop(a: Any) -> dict[str, Any]:
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


def _emit(command: str, res: dict[str, Any], fmt: str) -> int:
    if fmt == "json":
        print(json.dumps(res, indent=2, sort_keys=True, default=str))
    else:
        _print_text(command, res)
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# commands (each returns its exit code)


@app.command("collect", help="roll out a noisy scripted policy and write a D4RL-style .npz dataset")
def collect_cmd(
    out: Annotated[str, Opt("--out", "-o", help="output .npz path")],
    task: Annotated[
        str, Opt(help="pickplace | drawer | offrl/PickPlace-v0 | offrl/DrawerGrasp-v0")
    ] = "pickplace",
    trajectories: Annotated[
        int, Opt("--trajectories", "-n", help="number of trajectories (paper: 50..10,000)")
    ] = 100,
    noise: Annotated[
        str,
        Opt(
            help="Gaussian action-noise std (COG: 0.1), or 'paper': the noise calibrated to the paper's segment "
            "success rates (grasp ~35%, place ~40%; docs/robot_eval.md)"
        ),
    ] = "0.1",
    seed: int = 0,
    n_objects: Annotated[int | None, Opt(help="pick-place: object types to draw from (1,5,10,20,35)")] = None,
    image_size: Annotated[int, Opt(help="0 = state observations; 48 or 64 = RGB images")] = 0,
    segment: Annotated[str, Opt(metavar="full|grasp|place", help="pick-place partial data")] = "full",
    zero_rewards: Annotated[
        bool, Opt("--zero-rewards", help="relabel rewards to 0 (COG's prior data)")
    ] = False,
    gamma: Annotated[float, Opt(help="discount for mc_returns and metadata")] = 0.99,
    workers: Annotated[int, Opt("--workers", "-w")] = 1,
    compress: Annotated[bool, Opt("--compress", help="np.savez_compressed (smaller, slower)")] = False,
    fmt: FormatOpt = "text",
    quiet: QuietOpt = False,
) -> int:
    _choice(segment, ("full", "grasp", "place"), "--segment")
    _choice(fmt, FORMATS, "--format")
    a = SimpleNamespace(**{k: v for k, v in locals().items() if k != "fmt"})
    return _emit("collect", _cmd_collect(a), fmt)


@app.command("checkpoints", help="roll out every checkpoint of a reference-trainer run")
def checkpoints_cmd(
    ctx: typer.Context,
    run_dir: Annotated[
        str, typer.Argument(help="the trainer's log dir (holds checkpoints/ckpt_<step>.pt and config.json)")
    ],
    episodes: Annotated[int, Opt("--episodes", "-n")] = 20,
    workers: Annotated[int, Opt("--workers", "-w")] = 1,
    seed: Annotated[int, Opt(help="episode seeds (the same for every checkpoint)")] = 0,
    task: Annotated[
        str | None, Opt(help="override the task read from config.json -> dataset metadata")
    ] = None,
    n_objects: int | None = None,
    image_size: int | None = None,
    out: Annotated[str | None, Opt("--out", "-o", help="output folder (default: <RUN_DIR>_eval/)")] = None,
    into_run: Annotated[bool, Opt("--into-run", help="allow writing into <RUN_DIR>/eval/")] = False,
    video: Annotated[bool, Opt("--video", help="save a GIF rollout of the best checkpoint")] = False,
    fmt: FormatOpt = "text",
    quiet: QuietOpt = False,
) -> int:
    _choice(fmt, FORMATS, "--format")
    loader = (ctx.obj or {}).get("policy_loader")
    a = SimpleNamespace(**{k: v for k, v in locals().items() if k not in ("ctx", "fmt", "loader")})
    res = _cmd_checkpoints(a, loader)
    _emit("checkpoints", res, fmt)
    # an unreadable checkpoint fails the command; the others were scored and written
    return EXIT_FAIL if res["errors"] else EXIT_OK


@app.command("info", help="validate a dataset and print its metadata and array shapes")
def info_cmd(dataset: Annotated[str, typer.Argument()], fmt: FormatOpt = "text") -> int:
    _choice(fmt, FORMATS, "--format")
    return _emit("info", _cmd_info(SimpleNamespace(dataset=dataset)), fmt)


@app.command("loop", help="closed loop: collect, train, evaluate every checkpoint, analyze, score")
def loop_cmd(
    scenario: Annotated[str, typer.Argument(help=f"{' | '.join(ORDER)} | all")],
    preset: Annotated[str, Opt(metavar="|".join(PRESETS))] = "quick",
    jobs: Annotated[
        int | None, Opt("--jobs", "-j", help="concurrent trials (1 core each) [default: 1-2]")
    ] = None,
    out: Annotated[
        str, Opt("--out", "-o", help="work dir: datasets, runs, checkpoints (not for git)")
    ] = "out/loop",
    seeds: Annotated[str | None, Opt(help="comma-separated seeds (default: the preset's)")] = None,
    precision: Annotated[str, Opt(metavar="fp32|bf16")] = "bf16",
    results: Annotated[str | None, Opt(help="tables + summary.md folder (default OUT/tables)")] = None,
    figures: Annotated[str | None, Opt(help="figure folder (default OUT/figures)")] = None,
    score_only: Annotated[
        bool, Opt("--score-only", help="run nothing; re-score the finished trials in OUT")
    ] = False,
    reanalyze: Annotated[
        bool,
        Opt(
            "--reanalyze",
            help="with --score-only: run the current analyzer again on every finished trial's logs before scoring",
        ),
    ] = False,
    export: Annotated[
        str | None,
        Opt(
            metavar="CORPUS",
            help="copy each finished trial's logs, config, rollout and FQE results (no weights) into CORPUS (e.g. "
            "results/closed_loop/trials), skip trials CORPUS already holds, and score CORPUS",
        ),
    ] = None,
    executor: Annotated[
        str, Opt(metavar="local|ray", help="local: --jobs threads; ray: one Ray task per trial")
    ] = "local",
    address: Annotated[
        str | None,
        Opt(help="with --executor ray: auto | ray://host:10001 (default: start a local Ray)"),
    ] = None,
    fmt: FormatOpt = "text",
) -> int:
    from robot_eval.loop.run import default_jobs

    _choice(executor, ("local", "ray"), "--executor")
    _choice(preset, tuple(PRESETS), "--preset")
    _choice(precision, ("fp32", "bf16"), "--precision")
    _choice(fmt, FORMATS, "--format")
    jobs = default_jobs() if jobs is None else jobs
    a = SimpleNamespace(**{k: v for k, v in locals().items() if k not in ("fmt", "default_jobs")})
    return _emit("loop", _cmd_loop(a), fmt)


@app.command("render", help="save one rendered frame per task (PNG) for the docs")
def render_cmd(
    out_dir: Annotated[str, Opt("--out-dir")] = "docs/img",
    size: int = 256,
    seed: int = 0,
) -> int:
    return _emit("render", _cmd_render(SimpleNamespace(out_dir=out_dir, size=size, seed=seed)), "text")


def main(argv: list[str] | None = None, *, policy_loader: Callable[[str], Any] | None = None) -> int:
    """Entry point; `policy_loader(path) -> policy` replaces reference_trainer's load_policy (tests, other trainers)."""
    command = typer.main.get_command(app)
    return int(
        command.main(args=argv, prog_name=PROG, standalone_mode=False, obj={"policy_loader": policy_loader})
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
