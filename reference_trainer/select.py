"""`offrl-select`: which checkpoint to deploy, from the logs, one forward pass, or FQE on a shortlist (issue 16).

Three tiers, each optional on top of the one before, each reporting the CPU seconds it spent (time.process_time):

1. logs only: the analyzer reads the run (any framework it knows), analyzer/selection.py builds the checkpoint table
   and ranks it (`--method`, else its default order) -> a ranking, a shortlist and a confidence;
2. `--forward`: one forward pass of every checkpoint over held-out transitions (reference_trainer/forward.py for our
   checkpoints; for another framework's policy, the policy's distance from the data actions) merged into the table
   as `forward:<name>`, then ranked again;
3. `--fqe K`: FQE (reference_trainer/fqe.py) on the top K of that ranking only, re-ranked by FQE's V(s0) — the two-
   stage scheme of Tang & Wiens (2021): a cheap ranking picks what the expensive estimate looks at.

Why the table stays in analyzer/selection.py and the tiers live here: the analyzer never imports torch; this module
is where checkpoints are opened. Policies of other frameworks come through reference_trainer/policy_hooks.py.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from analyzer.cli_errors import CliError, GuardedCommand
from analyzer.model import Run
from analyzer.selection import CheckpointTable, Selection, select, table_from_run

if TYPE_CHECKING:
    from reference_trainer.policy_hooks import PolicyFn

PROG = "offrl-select"
#: FQE fitting steps per shortlisted checkpoint (the closed loop's budget, issue 16).
FQE_STEPS = 5000


@dataclass
class RunSelection:
    """One run's answer and what each tier cost."""

    selection: Selection
    path: str
    tiers: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # "logs" | "forward" | "fqe" -> cost and inputs
    skipped: list[str] = field(default_factory=list)  # "<file>: <reason>" for checkpoints no tier could read

    def to_dict(self) -> dict[str, Any]:
        return {**self.selection.to_dict(), "path": self.path, "tiers": self.tiers, "skipped": self.skipped}


@dataclass(frozen=True)
class Options:
    method: str | None = None
    forward: bool = False
    dataset: Path | None = None
    holdout_data: Path | None = None
    fqe: int = 0
    fqe_steps: int = FQE_STEPS
    loader: str = "reference"


# ---------------------------------------------------------------------------- tiers
def _select(table: CheckpointTable, method: str | None) -> Selection:
    try:
        return select(table, method)
    except ValueError as exc:  # an unknown method, or one whose inputs the run lacks: select() says which
        raise CliError(str(exc)) from None


def _run_config(run: Run) -> dict[str, Any]:
    """The run's config.json (offrl-train writes it); {} when there is none or it is unreadable."""
    try:
        cfg = json.loads((Path(run.path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _dataset(run: Run, opts: Options, tier: str) -> Path:
    """--dataset, else the run config's `dataset`; exit 2 naming the path and the reason when it cannot be used."""
    if opts.dataset is not None:
        path, where = opts.dataset, "--dataset"
    else:
        named = _run_config(run).get("dataset")
        if not named:
            raise CliError(
                f"{run.path}: {tier} needs the dataset and the run's config.json names none; pass --dataset"
            )
        path, where = Path(str(named)), f"the dataset named in {Path(run.path) / 'config.json'}"
    if not path.exists():
        raise CliError(f"{path}: dataset not found ({where}; pass --dataset to use another file)")
    if not path.is_file():
        raise CliError(f"{path}: dataset is not a file ({where})")
    return path


def _checkpoints(run: Run, table: CheckpointTable, loader: Any, tier: str) -> list[tuple[int, Path]]:
    found = loader.find_checkpoints(Path(run.path))
    if not found:
        wanted = [
            str(Path(run.path) / loader.pattern.replace("<step>", str(int(s)))) for s in table.steps[:3]
        ]
        more = f" (and {len(table.steps) - 3} more)" if len(table.steps) > 3 else ""
        missing = ", ".join(wanted) + more if wanted else str(Path(run.path) / loader.pattern)
        raise CliError(
            f"{run.path}: {tier} needs the checkpoint files and none exist: missing {missing} "
            f"(policy loader {loader.name!r}; --policy-loader picks another)"
        )
    return [(int(s), Path(p)) for s, p in found]


def _generic_forward(
    loader: Any, ckpts: list[tuple[int, Path]], data_path: Path, holdout: Path | None
) -> tuple[dict[int, dict[str, float]], str, int, list[str]]:
    """policy_data_distance of any loader's policy: no critic, so the only forward score a foreign policy gives."""
    import torch

    from reference_trainer.data import load_dataset
    from reference_trainer.forward import FORWARD_BATCH
    from reference_trainer.signals import SIGNAL_SEED, policy_data_distance

    path = holdout or data_path
    ds = load_dataset(path)
    if ds.is_image:
        raise CliError(f"{path}: the forward tier reads state observations only")
    where = f"held-out dataset {holdout}" if holdout else "training data"
    rows = torch.as_tensor(
        np.sort(np.random.default_rng(SIGNAL_SEED).permutation(ds.size)[:FORWARD_BATCH]), dtype=torch.long
    )
    obs, act = ds.observations[rows], ds.actions[rows]
    scores: dict[int, dict[str, float]] = {}
    skipped: list[str] = []
    for step, p in ckpts:
        try:
            pi = loader.load(p)(obs)
            if tuple(pi.shape) != tuple(act.shape):
                raise ValueError(
                    f"{p}: policy actions {tuple(pi.shape)} do not match the data's {tuple(act.shape)}"
                )
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        scores[step] = {"policy_data_distance": float(policy_data_distance(pi, act))}
    return scores, where, int(len(rows)), skipped


def forward_tier(
    run: Run, table: CheckpointTable, opts: Options, loader: Any
) -> tuple[CheckpointTable, dict[str, Any], list[str]]:
    """Score every checkpoint with one forward pass and merge the scores as `forward:<name>`."""
    ckpts = _checkpoints(run, table, loader, "--forward")
    data = _dataset(run, opts, "--forward")
    if opts.holdout_data is not None and not opts.holdout_data.is_file():
        raise CliError(f"{opts.holdout_data}: held-out dataset not found (--holdout-data)")
    from reference_trainer.forward import forward_scores  # torch: imported before the clock starts

    t0 = time.process_time()
    if loader.name == "reference":
        res = forward_scores(ckpts, data, opts.holdout_data)
        scores, where, n, skipped = res.scores, res.data, res.transitions, list(res.skipped)
    else:
        scores, where, n, skipped = _generic_forward(loader, ckpts, data, opts.holdout_data)
    cpu = time.process_time() - t0
    if not scores:
        first = skipped[0] if skipped else "no checkpoint could be scored"
        raise CliError(f"--forward could not score any checkpoint of {run.path}: {first}")
    merged = table.merge(scores, "forward pass", prefix="forward:")
    names = sorted({f"forward:{k}" for row in scores.values() for k in row})
    info = {
        "cpu_seconds": cpu,
        "dataset": str(data),
        "data": where,
        "transitions": n,
        "checkpoints_scored": len(scores),
        "checkpoints": len(ckpts),
        "inputs": names,
    }
    return merged, info, skipped


def fqe_tier(
    run: Run, sel: Selection, opts: Options, loader: Any, table: CheckpointTable
) -> tuple[Selection, dict[str, Any], list[str]]:
    """FQE on the top `opts.fqe` readable checkpoints of the ranking; the pick becomes FQE's best of them."""
    from reference_trainer.fqe import FQEConfig, fit_fqe_policies

    ckpts = dict(_checkpoints(run, table, loader, "--fqe"))
    data = _dataset(run, opts, "--fqe")
    gamma = _run_config(run).get("gamma")
    gamma = float(gamma) if isinstance(gamma, (int, float)) else run.metadata.gamma
    skipped: list[str] = []
    entries: list[tuple[int, str, PolicyFn]] = []
    t0 = time.process_time()
    for step in sel.ranked:
        if len(entries) == opts.fqe:
            break
        if step not in ckpts:
            continue
        try:
            entries.append((step, str(ckpts[step]), loader.load(ckpts[step])))
        except ValueError as exc:
            skipped.append(str(exc))
    if not entries:
        raise CliError(
            f"--fqe: none of the ranked checkpoints of {run.path} could be loaded: {skipped[:1] or ckpts}"
        )
    cfg = FQEConfig(steps=opts.fqe_steps, gamma=gamma)
    try:
        res = fit_fqe_policies(entries, data, cfg)
    except ValueError as exc:  # the dataset (DatasetError) or policies that do not fit it
        raise CliError(str(exc)) from None
    cpu = time.process_time() - t0
    values = {r.step: r.v_s0 for r in res}
    by_fqe = sorted(values, key=lambda s: (-values[s] if math.isfinite(values[s]) else math.inf, -s))
    rest = [s for s in sel.ranked if s not in values]
    best = by_fqe[0]
    why = (
        f"FQE's best of the top {len(res)} by {sel.method}: V(s0) {values[best]:.4g} at step {best} "
        f"({len(res)} of {len(ckpts)} checkpoints fitted, {opts.fqe_steps} steps each)"
    )
    out = replace(
        sel,
        method=f"{sel.method}+fqe",
        ranked=by_fqe + rest,
        shortlist=list(by_fqe),
        confidence=None,
        confidence_basis="fqe (not calibrated)",
        reasons=[why, *sel.reasons],
        inputs={**sel.inputs, "fqe:v_s0": "FQE"},
    )
    info = {
        "cpu_seconds": cpu,
        "dataset": str(data),
        "gamma": gamma,
        "fitting_steps": opts.fqe_steps,
        "fitted": len(res),
        "checkpoints": len(ckpts),
        "values": {str(s): values[s] for s in by_fqe},
        "td_error": {str(r.step): r.td_error for r in res},
    }
    return out, info, skipped


def select_run(run: Run, opts: Options, logs_cpu: float = 0.0) -> RunSelection:
    """Every tier the options ask for, on one analysed run (`logs_cpu`: what reading it cost)."""
    t0 = time.process_time()
    table = table_from_run(run)
    if not len(table.steps):
        raise CliError(
            f"{run.path}: no checkpoints to choose from (no checkpoint files, interval or dataset Q)"
        )
    sel = _select(table, opts.method)
    out = RunSelection(sel, str(run.path), {"logs": {"cpu_seconds": logs_cpu + time.process_time() - t0}})
    if not (opts.forward or opts.fqe):
        return out
    from reference_trainer.policy_hooks import get_loader, require_d3rlpy

    loader = get_loader(opts.loader)
    if loader.name == "d3rlpy":
        require_d3rlpy()
    if opts.forward:
        table, info, skipped = forward_tier(run, table, opts, loader)
        out.tiers["forward"] = info
        out.skipped += skipped
        t1 = time.process_time()
        sel = _select(table, opts.method)
        info["cpu_seconds"] += time.process_time() - t1
    if opts.fqe:
        sel, info, skipped = fqe_tier(run, sel, opts, loader, table)
        out.tiers["fqe"] = info
        out.skipped += [s for s in skipped if s not in out.skipped]
    out.selection = sel
    return out


def select_paths(paths: list[Path], opts: Options, rules: Path | None = None) -> list[RunSelection]:
    """Analyse each run directory and select in each run found; exit 2 for a path that holds no readable run."""
    from analyzer.api import analyze
    from analyzer.config import ConfigError

    out = []
    for path in paths:
        if not path.exists():
            raise CliError(f"{path}: run directory not found")
        t0 = time.process_time()
        try:
            report = analyze(path, rules)
        except ConfigError as exc:
            raise CliError(str(exc)) from None
        cpu = time.process_time() - t0
        if not report.runs:
            why = (
                "; ".join(e.message for e in report.errors if e.level == "error") or "no training logs found"
            )
            raise CliError(f"{path}: {why}")
        for res in report.runs:
            chosen = select_run(res.run, opts, cpu / len(report.runs))
            # name runs by the path the user gave (run ids are relative to it: a run dir given directly is just
            # its own folder name, e.g. "run", which tells several runs apart by nothing)
            rel = Path(res.run.id)
            chosen.selection.run_id = str(
                path if rel.name == path.name and len(rel.parts) == 1 else path / rel
            )
            out.append(chosen)
    return out


# ---------------------------------------------------------------------------- output
def _cost(r: RunSelection) -> str:
    parts = [f"logs {r.tiers['logs']['cpu_seconds']:.2f} s"]
    if "forward" in r.tiers:
        f = r.tiers["forward"]
        parts.append(
            f"forward {f['cpu_seconds']:.2f} s ({f['checkpoints_scored']} checkpoints, {f['data']}, "
            f"{f['transitions']} transitions)"
        )
    if "fqe" in r.tiers:
        q = r.tiers["fqe"]
        parts.append(f"FQE {q['cpu_seconds']:.2f} s ({q['fitted']} of {q['checkpoints']} checkpoints fitted)")
    return "CPU: " + ", ".join(parts)


def render_table(results: list[RunSelection]) -> None:
    from rich.console import Console
    from rich.table import Table

    from analyzer.output.brief import short_run_ids
    from analyzer.output.names import terminal

    t = Table("run", "method", "pick", "confidence", "shortlist", "reason")
    labels = short_run_ids(
        [r.selection.run_id for r in results], 40
    )  # what tells the runs apart, as offrl-analyze
    for r in results:
        s = r.selection
        conf = "-" if s.confidence is None else f"{s.confidence:.2f}"
        t.add_row(
            terminal(labels[s.run_id]),
            s.method,
            str(s.pick),
            conf,
            ", ".join(map(str, s.shortlist)),
            terminal("; ".join(s.reasons)),
        )
    console = Console(soft_wrap=False)
    console.print(t)
    for r in results:
        console.print(f"{terminal(r.selection.run_id)}: {_cost(r)}", markup=False, highlight=False)
        for why in r.skipped:
            console.print(f"  skipped {terminal(why)}", markup=False, highlight=False)


def render_json(results: list[RunSelection]) -> str:
    return json.dumps({"runs": [r.to_dict() for r in results]}, indent=2, allow_nan=False, default=_num)


def _num(o: object) -> object:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(type(o).__name__)


# ---------------------------------------------------------------------------- command line
class _SelectCommand(GuardedCommand):
    prog = PROG

    def user_errors(self) -> dict[type[BaseException], int]:
        from reference_trainer.policy_hooks import LoaderUnavailable

        errors: dict[type[BaseException], int] = {LoaderUnavailable: 2}
        try:  # imports torch: the logs-only tier runs without it (the base install has no trainer extra)
            from reference_trainer.data import DatasetError
        except ImportError:
            return errors
        return {**errors, DatasetError: 2}


def run(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="run directories (any framework the analyzer reads)")
    ],
    method: Annotated[
        str | None,
        typer.Option("--method", help="drift | qpeak | last (default: drift, else qpeak, else last)"),
    ] = None,
    forward: Annotated[
        bool, typer.Option("--forward", help="score every checkpoint with one forward pass")
    ] = False,
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="dataset .npz (default: the run config's)")
    ] = None,
    holdout_data: Annotated[
        Path | None, typer.Option("--holdout-data", help="held-out transitions (.npz) for --forward")
    ] = None,
    fqe: Annotated[
        int, typer.Option("--fqe", min=0, help="fit FQE on the top K of the ranking (0: none)", metavar="K")
    ] = 0,
    fqe_steps: Annotated[
        int,
        typer.Option("--fqe-steps", min=1, help=f"FQE fitting steps per checkpoint (default {FQE_STEPS})"),
    ] = FQE_STEPS,
    policy_loader: Annotated[
        str, typer.Option("--policy-loader", help="reference | d3rlpy | a plugin's (docs/selection.md)")
    ] = "reference",
    fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
    rules: Annotated[
        Path | None, typer.Option("--rules", help="rules file for reading the logs (warm start, tags)")
    ] = None,
) -> None:
    """Rank a run's checkpoints: logs only, + one forward pass (--forward), + FQE on a shortlist (--fqe K)."""
    if fmt not in ("table", "json"):
        raise CliError(f"--format {fmt!r}: choose table or json")
    from analyzer.selection import SELECTORS

    if method is not None and method not in SELECTORS:
        raise CliError(f"--method {method!r}: choose from {', '.join(SELECTORS)}")
    opts = Options(method, forward, dataset, holdout_data, fqe, fqe_steps, policy_loader)
    if forward or fqe:
        from reference_trainer.policy_hooks import get_loader

        get_loader(policy_loader)  # an unknown loader is bad usage before any run is read
    results = select_paths(list(run_dirs), opts, rules)
    if fmt == "json":
        sys.stdout.write(render_json(results) + "\n")
    else:
        render_table(results)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
app.command(cls=_SelectCommand, help=__doc__, context_settings={"help_option_names": ["-h", "--help"]})(run)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (`offrl-select`)."""
    app(args=argv, prog_name=PROG)


if __name__ == "__main__":
    main()
