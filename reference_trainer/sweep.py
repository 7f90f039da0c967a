"""`offrl-train sweep SWEEP.yaml`: a grid of training runs under one folder, resumable, locally or on Ray.

Why: Metric 3.2's capacity comparison (and every figure of the paper) compares runs that differ in one
setting; a sweep writes such runs side by side, each folder named by what differs, so
`offrl-analyze OUT/` reads them as one group. A sweep file (examples/sweeps/*.yaml):

    base:                 # offrl-train settings every run shares (the keys of `offrl-train --config`)
      algo: cql
      steps: 16000
    datasets:             # optional names for dataset paths (relative to the sweep file)
      n50: data/pickplace_n50.npz
    grid:                 # every combination is one run
      dataset: [n50]
      hidden: [128, 256]
      seed: [0, 1]
      remedy:             # an axis whose values are settings: one variant each (a label names it)
        - {label: none}
        - {label: vib, vib: 0.001}

Layout of OUT: one run folder per combination, named `axis=value` for every axis with more than one
value (`hidden=128__seed=0`), written by offrl-train itself; the sweep's own files live in `OUT/.sweep/`
(hidden: the analyzer never reads them): `plan.json`, and per run `<name>.yaml` (its settings),
`<name>.log` (the trainer's output) and `<name>.done.json` (written when the trainer finished).
A run with a done marker for the same settings is skipped; one with checkpoints resumes from the last
(`offrl-train --resume`); one killed before its first checkpoint starts again.

Each run is `python -m reference_trainer.cli --config OUT/.sweep/<name>.yaml --log-dir OUT/<name>` in its
own process: locally, `--jobs` at a time; with `--executor ray`, one Ray task each (the run's `threads`
CPUs, and one GPU when its device is CUDA). On a cluster OUT must be on a filesystem every node sees
(docs/scaling.md).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from analyzer.cli_errors import EXIT_FAIL, EXIT_OK, EXIT_USAGE, GuardedCommand
from analyzer.executor import RayUnavailable
from reference_trainer.config import ConfigError, TrainConfig, resolve_config

__all__ = ["SweepError", "SweepRun", "expand", "load_sweep", "main", "run_sweep"]

#: settings the sweep manages itself
MANAGED = ("log_dir", "resume", "config")
SWEEP_DIR = ".sweep"
EXECUTORS = ("local", "ray")
_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


class SweepError(ValueError):
    """A bad sweep file or a sweep folder that holds other runs; the CLI prints it and exits 2."""


@dataclass
class SweepRun:
    """One combination of the grid: its folder name, what differs, and every setting it trains with."""

    name: str
    differs: dict[str, Any]  # axis -> label, for the axes with more than one value
    settings: dict[str, Any]  # offrl-train settings (TrainConfig field names), dataset included
    status: str = "todo"  # todo | done | trained | failed
    seconds: float = 0.0
    message: str = ""

    @property
    def cpus(self) -> int:
        return max(1, int(self.settings.get("threads") or 1))

    @property
    def gpus(self) -> int:
        return 1 if str(self.settings.get("device", "cpu")).startswith("cuda") else 0


@dataclass
class Sweep:
    path: Path
    base: dict[str, Any]
    datasets: dict[str, str]
    grid: dict[str, list[Any]] = field(default_factory=dict)


def _field(key: Any) -> str:
    return str(key).strip().lstrip("-").replace("-", "_")


def _settings(where: str, mapping: Any) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise SweepError(f"{where}: expected a mapping of offrl-train settings, got {type(mapping).__name__}")
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = _field(key)
        if name == "label":
            continue
        if name in MANAGED:
            raise SweepError(f"{where}: {key!r} is set by the sweep itself (each run gets its own folder)")
        if name not in _FIELDS:
            raise SweepError(f"{where}: unknown offrl-train setting {key!r}")
        out[name] = value
    return out


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file (structure only; `expand` checks every run's settings)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"{path}: sweep file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepError(f"{path}: cannot read sweep file ({exc})") from None
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: expected a mapping with base:, datasets: and grid:")
    unknown = set(data) - {"base", "datasets", "grid"}
    if unknown:
        raise SweepError(
            f"{path}: unknown key(s) {sorted(unknown)} (a sweep file has base:, datasets:, grid:)"
        )
    base = _settings(f"{path}: base", data.get("base") or {})
    raw_ds = data.get("datasets") or {}
    if not isinstance(raw_ds, dict) or not all(isinstance(v, str) for v in raw_ds.values()):
        raise SweepError(f"{path}: datasets: must map names to .npz paths")
    datasets = {str(k): str((path.parent / v).resolve()) for k, v in raw_ds.items()}
    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise SweepError(f"{path}: grid: must map each axis to a list of values")
    axes: dict[str, list[Any]] = {}
    for axis, values in grid.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise SweepError(f"{path}: grid axis {axis!r} has no values")
        name = _field(axis)
        if name in MANAGED:
            raise SweepError(f"{path}: grid axis {axis!r} is set by the sweep itself")
        if name not in _FIELDS and not all(isinstance(v, dict) for v in values):
            raise SweepError(
                f"{path}: grid axis {axis!r} is not an offrl-train setting; an axis of variants lists "
                "mappings of settings (e.g. - {label: vib, vib: 0.001})"
            )
        axes[name if name in _FIELDS else str(axis)] = values
    return Sweep(path, base, datasets, axes)


def _label(value: Any) -> str:
    """A value as it appears in a folder name: short, filesystem-safe, the same every time."""
    if isinstance(value, dict):
        if "label" in value:
            text = str(value["label"])
        else:
            text = "+".join(f"{_field(k)}-{_label(v)}" for k, v in value.items()) or "none"
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = "-".join(_label(v) for v in value)
    else:
        text = str(value)
    if text.endswith(".npz"):
        text = Path(text).stem
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


def expand(sweep: Sweep) -> list[SweepRun]:
    """Every combination of the grid, in file order, with its folder name and checked settings."""
    axes = list(sweep.grid.items())
    varied = [a for a, vals in axes if len(vals) > 1]
    for axis, vals in axes:
        labels = [_label(v) for v in vals]
        if len(set(labels)) != len(labels):
            raise SweepError(f"{sweep.path}: grid axis {axis!r} has values that give the same name: {labels}")
    runs: list[SweepRun] = []
    for combo in itertools.product(*(vals for _, vals in axes)):
        settings = dict(sweep.base)
        differs: dict[str, Any] = {}
        for (axis, _), value in zip(axes, combo, strict=True):
            if isinstance(value, dict):
                settings.update(_settings(f"{sweep.path}: grid {axis}", value))
            else:
                settings[axis] = value
            if axis in varied:
                differs[axis] = _label(value)
        ds = settings.get("dataset")
        if not ds:
            raise SweepError(f"{sweep.path}: no dataset (set base: dataset: or a grid axis dataset:)")
        settings["dataset"] = sweep.datasets.get(str(ds)) or str((sweep.path.parent / str(ds)).resolve())
        settings.setdefault("threads", 1)  # one core per run: runs run side by side
        try:
            resolve_config(settings, {})
        except ConfigError as exc:
            raise SweepError(f"{sweep.path}: run {differs or '(the only one)'}: {exc}") from None
        name = "__".join(f"{k}={v}" for k, v in differs.items()) or "run"
        runs.append(SweepRun(name, differs, settings))
    return runs


# ----------------------------------------------------------------------------------------------
# one run


def _paths(out: Path, name: str) -> tuple[Path, Path, Path, Path]:
    meta = out / SWEEP_DIR
    return out / name, meta / f"{name}.yaml", meta / f"{name}.log", meta / f"{name}.done.json"


def _has_checkpoints(run_dir: Path) -> bool:
    ckpts = run_dir / "checkpoints"
    return ckpts.is_dir() and any(p.name.startswith("ckpt_") and p.suffix == ".pt" for p in ckpts.iterdir())


def is_done(out: Path, run: SweepRun) -> bool:
    _, _, _, done = _paths(out, run.name)
    try:
        return json.loads(done.read_text()).get("settings") == json.loads(json.dumps(run.settings))
    except (OSError, ValueError):
        return False


def train_one(out: str, name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume, or skip) one run of the sweep; a Ray task or a local thread calls this.

    Returns {"name", "status": done|trained|failed, "seconds", "message"}. Resumable from its files only:
    a retried task (its worker killed) continues from the run's last checkpoint.
    """
    from analyzer.executor import die_with_parent

    root = Path(out)
    run = SweepRun(name, {}, settings)
    run_dir, cfg_path, log_path, done = _paths(root, name)
    if is_done(root, run):
        return {"name": name, "status": "done", "seconds": 0.0, "message": ""}
    args = [
        sys.executable,
        "-m",
        "reference_trainer.cli",
        "--config",
        str(cfg_path),
        "--log-dir",
        str(run_dir),
    ]
    if (run_dir / "config.json").exists() and _has_checkpoints(run_dir):
        args.append("--resume")
    elif run_dir.exists():  # killed before its first checkpoint: nothing to resume, start clean
        shutil.rmtree(run_dir)
    env = {**os.environ, "OMP_NUM_THREADS": str(run.cpus)}
    t0 = time.perf_counter()
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(args)}\n")
        log.flush()
        rc = subprocess.run(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent()
        ).returncode
    sec = time.perf_counter() - t0
    if rc != 0:
        return {
            "name": name,
            "status": "failed",
            "seconds": sec,
            "message": f"offrl-train exited {rc}; see {log_path}",
        }
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps({"settings": settings, "seconds": sec}, indent=1, sort_keys=True))
    os.replace(tmp, done)
    return {"name": name, "status": "trained", "seconds": sec, "message": ""}


# ----------------------------------------------------------------------------------------------
# the sweep


def prepare(out: Path, sweep: Sweep, runs: list[SweepRun]) -> None:
    """Write OUT/.sweep/: the plan and each run's settings; refuse a folder that holds another sweep's runs."""
    meta = out / SWEEP_DIR
    meta.mkdir(parents=True, exist_ok=True)
    for run in runs:
        _, cfg_path, _, _ = _paths(out, run.name)
        text = yaml.safe_dump(run.settings, sort_keys=True)
        if cfg_path.exists() and cfg_path.read_text() != text and (out / run.name).exists():
            raise SweepError(
                f"{out / run.name}: started with other settings ({cfg_path}); remove the folder or use another --out"
            )
        cfg_path.write_text(text)
    plan = {
        "sweep_file": str(sweep.path.resolve()),
        "runs": [{"name": r.name, "differs": r.differs, "settings": r.settings} for r in runs],
    }
    (meta / "plan.json").write_text(json.dumps(plan, indent=1, sort_keys=True))


def run_sweep(
    sweep_file: str | Path,
    out: str | Path | None = None,
    *,
    executor: str = "local",
    address: str | None = None,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> list[SweepRun]:
    """Expand the sweep and train every run not yet done; returns the runs with their status."""
    if executor not in EXECUTORS:
        raise SweepError(f"--executor must be one of {EXECUTORS}, got {executor!r}")
    sweep = load_sweep(sweep_file)
    runs = expand(sweep)
    if executor == "ray":  # connect first: a missing Ray or cluster is said before anything is written
        from analyzer.executor import ray_init

        ray_init(address)
    root = Path(out) if out is not None else Path("runs") / "sweeps" / Path(sweep_file).stem
    prepare(root, sweep, runs)
    todo = [r for r in runs if not is_done(root, r)]
    for r in runs:
        if r not in todo:
            r.status = "done"
    log(
        f"{len(runs)} run(s) in {root}: {len(runs) - len(todo)} already done, {len(todo)} to train ({executor})"
    )
    by_name = {r.name: r for r in runs}

    def record(res: dict[str, Any]) -> None:
        r = by_name[res["name"]]
        r.status, r.seconds, r.message = res["status"], float(res["seconds"]), res["message"]
        log(f"{r.status} {r.name} ({r.seconds:.0f} s){': ' + r.message if r.message else ''}")

    if executor == "ray":
        from analyzer.executor import ray_map

        groups: dict[tuple[int, int], list[SweepRun]] = {}
        for r in todo:  # one Ray call per resource shape
            groups.setdefault((r.cpus, r.gpus), []).append(r)
        for (cpus, gpus), members in groups.items():
            ray_map(
                train_one,
                [(str(root), r.name, r.settings) for r in members],
                address=address,
                num_cpus=cpus,
                num_gpus=gpus,
                on_result=lambda _i, res: record(res),
            )
    else:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(train_one, str(root), r.name, r.settings) for r in todo]
            for fut in as_completed(futures):
                record(fut.result())
    return runs


# ----------------------------------------------------------------------------------------------
# CLI


class _SweepCommand(GuardedCommand):
    prog = "offrl-train sweep"
    interrupted = "; run the same command again to resume the sweep"

    def user_errors(self) -> Mapping[type[BaseException], int]:
        return {SweepError: EXIT_USAGE, RayUnavailable: EXIT_USAGE}


def sweep_command(
    sweep_file: Annotated[Path, typer.Argument(help="sweep YAML (examples/sweeps/)")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="sweep folder (default runs/sweeps/<file name>)")
    ] = None,
    executor: Annotated[str, typer.Option(metavar="local|ray", help="where runs train")] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="with --executor ray: auto | ray://host:10001 (default: start a local Ray)"),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="with --executor local: runs at a time")] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the runs and train nothing")] = False,
) -> int:
    """Train every run of a sweep file not yet done (module docstring: the file, the folder, resuming).

    Exit 0 when every run is done, 1 when a run failed (the others still ran), 2 for a bad sweep file.
    """

    def echo(m: str) -> None:
        typer.echo(m, err=True)

    if jobs < 1:
        raise SweepError(f"--jobs must be >= 1, got {jobs}")
    if dry_run:
        for r in expand(load_sweep(sweep_file)):
            typer.echo(f"{r.name}\t{json.dumps(r.differs, sort_keys=True)}")
        return EXIT_OK
    runs = run_sweep(sweep_file, out, executor=executor, address=address, jobs=jobs, log=echo)
    failed = [r for r in runs if r.status == "failed"]
    echo(
        f"{len(runs) - len(failed)} of {len(runs)} run(s) done"
        + (f"; {len(failed)} failed" if failed else "")
    )
    return EXIT_FAIL if failed else EXIT_OK


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
app.command(
    cls=_SweepCommand,
    help=__doc__.split("\n\n")[0] if __doc__ else None,
    context_settings={"help_option_names": ["-h", "--help"]},
)(sweep_command)


def main(argv: list[str] | None = None) -> None:
    """`offrl-train sweep ...` (reference_trainer.cli hands it the arguments after `sweep`)."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="offrl-train sweep")
