"""Orchestrate the closed loop: datasets -> trials (independent subprocesses, resumable) -> scores -> tables/figures.

Layout of OUT (git-ignored work dir; holds datasets and checkpoints):
  data/<dataset>.npz (+ .json with its collection time)
  trials/<key>/{spec.json, run/, eval/, eval.json, analysis.json, fqe.json, timing.json, result.json, trial.log}
  tables/*.csv, summary.md, figures/loop-*.png (or --results / --figures)
A trial whose result.json exists (for the same spec) is skipped; a killed one resumes phase by phase.
With `--export CORPUS` each trial is copied into the committed corpus (corpus.py: logs, config, rollout and FQE
results, no weights) as soon as it finishes, a trial the corpus already holds is not run again (a later session
needs no work dir), and the tables are made from the corpus.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

from robot_eval.loop.scenarios import DataSpec, Trial, trials_for


def collect_dataset(data: DataSpec, out_dir: Path, workers: int = 1) -> tuple[Path, float]:
    """Collect (once) the scripted dataset; returns its path and the seconds its collection took."""
    from robot_eval.collect import collect
    from robot_eval.dataset import save_dataset
    from robot_eval.tasks import task_spec

    path = out_dir / f"{data.name}.npz"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path, float(json.loads(meta.read_text())["seconds"])
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = task_spec(data.task, n_objects=data.n_objects)
    t0 = time.perf_counter()
    ds = collect(spec, data.trajectories, noise=data.noise, seed=data.seed, workers=workers)
    sec = time.perf_counter() - t0
    save_dataset(path, ds)
    meta.write_text(
        json.dumps({"seconds": sec, "spec": asdict(data), "success_rate": ds.metadata["success_rate"]})
    )
    return path, sec


#: trajectories per collection process when datasets are collected as Ray tasks (a 5,000-trajectory dataset gets 8)
_TRAJ_PER_CPU = 500
_MAX_COLLECT_CPUS = 8


def collect_datasets(
    specs: list[DataSpec],
    out_dir: Path,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, tuple[Path, float]]:
    """Every dataset the trials need, collected once: name -> (path, seconds its collection took).

    Locally one after the other with `jobs` collection processes each. With `executor="ray"` the datasets not on
    disk yet are collected at the same time as Ray tasks, each with about one CPU per 500 trajectories (at most 8),
    so a study's collection takes as long as its largest dataset rather than the sum (docs/scaling.md). A dataset
    is the same for any number of collection processes (per-trajectory seeds, docs/robot_eval.md)."""
    for d in specs:
        log(f"dataset {d.name}")
    if executor != "ray":
        return {d.name: collect_dataset(d, out_dir, workers=max(1, jobs)) for d in specs}
    from analyzer.executor import ray_map

    out: dict[str, tuple[Path, float]] = {}
    todo: dict[int, list[DataSpec]] = {}
    for d in specs:
        if (out_dir / f"{d.name}.npz").exists() and (out_dir / f"{d.name}.json").exists():
            out[d.name] = collect_dataset(d, out_dir)  # already there: read its collection time
        else:
            cpus = max(1, min(_MAX_COLLECT_CPUS, -(-d.trajectories // _TRAJ_PER_CPU)))
            todo.setdefault(cpus, []).append(d)
    for cpus, group in sorted(todo.items()):
        found = ray_map(collect_dataset, [(d, out_dir, cpus) for d in group], address=address, num_cpus=cpus)
        out.update({d.name: res for d, res in zip(group, found, strict=True)})
    return {d.name: out[d.name] for d in specs}


def _spec(trial: Trial, dataset: Path) -> dict[str, Any]:
    d = trial.to_dict()
    d["dataset_path"] = str(dataset.resolve())
    return d


def run_one(tdir: Path, threads: int, precision: str) -> tuple[Path, int]:
    """One trial as its own process (isolation: a crash or a leak in one run cannot touch the others)."""
    cmd = [sys.executable, "-m", "robot_eval.loop.trial", str(tdir), "--threads", str(threads)]
    cmd += ["--precision", precision]
    from analyzer.executor import die_with_parent  # the trial dies with this process (a killed Ray task)

    with (tdir / "trial.log").open("a") as log:
        rc = subprocess.run(
            cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent()
        ).returncode
    return tdir, rc


def trial_gpus(tdir: Path) -> int:
    """1 when the trial's trainer runs on CUDA (its spec's train.device), else 0: a Ray task's GPU share."""
    try:
        device = json.loads((tdir / "spec.json").read_text())["train"].get("device", "cpu")
    except (OSError, ValueError, KeyError, AttributeError):
        return 0
    return 1 if str(device).startswith("cuda") else 0


def run_trials(
    todo: list[Path],
    jobs: int,
    precision: str,
    done: Callable[[Path, int], None],
    executor: str = "local",
    address: str | None = None,
) -> None:
    """Run the trials (each `run_one`): `jobs` local threads, or one Ray task each (1 CPU, or 1 GPU when
    its trainer is on CUDA) with `executor="ray"`; `done(trial_dir, exit_code)` as each finishes.

    A Ray task whose worker dies is retried and the trial resumes from its folder, phase by phase."""
    if executor == "ray":
        from analyzer.executor import ray_map

        for gpus in sorted({trial_gpus(d) for d in todo}):
            group = [d for d in todo if trial_gpus(d) == gpus]
            ray_map(
                run_one,
                [(d, 1, precision) for d in group],
                address=address,
                num_cpus=1,
                num_gpus=gpus,
                on_result=lambda _i, res: done(*res),
            )
        return
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for fut in as_completed([pool.submit(run_one, d, 1, precision) for d in todo]):
            done(*fut.result())


def is_done(tdir: Path, spec: dict[str, Any]) -> bool:
    res = tdir / "result.json"
    if not res.exists():
        return False
    try:
        old = json.loads(res.read_text())["spec"]
    except (ValueError, KeyError):
        return False
    return (
        old.get("key") == spec["key"]
        and old.get("episodes") == spec["episodes"]
        and old.get("fqe_steps") == spec["fqe_steps"]
    )


def run_loop(
    scenario: str,
    preset: str,
    out: Path,
    jobs: int = 2,
    seeds: tuple[int, ...] | None = None,
    precision: str = "bf16",
    results_dir: Path | None = None,
    figures_dir: Path | None = None,
    log=print,
    export_to: Path | None = None,
    executor: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Run every trial of `scenario` (or 'all') under `preset`, then score all finished trials in OUT (or, with
    `export_to`, export each finished trial there, skip the trials it already holds, and score the corpus).
    `executor="ray"` runs each trial as a Ray task (`run_trials`); OUT must then be on a filesystem every
    node of the cluster sees (docs/scaling.md)."""
    from robot_eval.loop.corpus import export

    out = Path(out)
    trials = trials_for(scenario, preset, seeds)
    if executor == "ray":  # connect first: a missing Ray or cluster is said before any dataset is collected
        from analyzer.executor import ray_init

        ray_init(address)
    t_start = time.perf_counter()
    specs = list({t.data.name: t.data for t in trials}.values())
    datasets = collect_datasets(specs, out / "data", jobs, executor, address, log)
    todo: list[Path] = []
    seen: set[str] = set()
    exported = 0
    for t in trials:
        tdir = out / "trials" / t.key
        if t.key in seen:
            continue
        seen.add(t.key)
        spec = _spec(t, datasets[t.data.name][0])
        if export_to is not None and is_done(Path(export_to) / t.key, spec):
            exported += 1
            continue
        tdir.mkdir(parents=True, exist_ok=True)
        if is_done(tdir, spec):
            if export_to is not None:
                export(out, export_to, [tdir], log=log)
            continue
        (tdir / "spec.json").write_text(json.dumps(spec, indent=1, sort_keys=True))
        for stale in ("result.json",):
            (tdir / stale).unlink(missing_ok=True)
        todo.append(tdir)
    log(
        f"{len(seen)} trials, {len(seen) - len(todo)} already finished"
        + (f" ({exported} of them in {export_to})" if export_to is not None else "")
        + (
            f", {len(todo)} to run with {jobs} job(s)"
            if executor == "local"
            else f", {len(todo)} to run on Ray"
        )
    )
    failed: list[str] = []

    def finished(tdir: Path, rc: int) -> None:
        if rc != 0:
            failed.append(f"{tdir.name} (exit {rc}, see {tdir / 'trial.log'})")
            log(f"FAILED {tdir.name}")
            return
        log(f"done {tdir.name}")
        if export_to is not None:
            export(out, export_to, [tdir], log=log)

    run_trials(todo, jobs, precision, finished, executor, address)
    from robot_eval.loop.report import write_report

    summary = write_report(
        Path(export_to) if export_to is not None else out,
        results_dir or out / "tables",
        figures_dir or out / "figures",
        {k: v[1] for k, v in datasets.items()},
        command=" ".join(["offrl-eval", "loop", scenario, "--preset", preset, "--jobs", str(jobs)])
        + (" --executor ray" if executor == "ray" else ""),
        log=log,
    )
    summary["failed"] = failed
    summary["wall_s"] = time.perf_counter() - t_start
    return summary


def default_jobs() -> int:
    return max(1, min(2, (os.cpu_count() or 1)))


def command(a: Any) -> dict[str, Any]:
    """Run `offrl-eval loop` (options in robot_eval/cli.py); ValueError/KeyError become one-line errors
    (exit 2) in the CLI."""
    from robot_eval.loop.scenarios import ORDER

    if a.scenario != "all" and a.scenario not in ORDER:
        raise ValueError(f"unknown scenario {a.scenario!r} (choose from {', '.join(ORDER)}, all)")
    if a.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {a.jobs}")
    seeds = None
    if a.seeds:
        try:
            seeds = tuple(int(s) for s in a.seeds.split(","))
        except ValueError:
            raise ValueError(f"--seeds must be comma-separated integers, got {a.seeds!r}") from None
    if a.reanalyze and not a.score_only:
        raise ValueError("--reanalyze re-scores finished trials: use it with --score-only")
    export_to = Path(a.export) if a.export else None
    if a.score_only:
        from robot_eval.loop.corpus import export, finished_trials, is_corpus
        from robot_eval.loop.report import write_report

        out = Path(a.out)
        if not out.is_dir() or not ((out / "trials").is_dir() or is_corpus(out)):
            raise ValueError(f"{out}: no trials/ folder to score (and not an exported corpus)")
        if export_to is not None:
            ex = export(out, export_to, log=lambda m: print(m, file=sys.stderr))
            print(
                f"{len(ex['exported'])} trial(s) exported, {ex['already_exported']} already in {export_to}",
                file=sys.stderr,
            )
            out = export_to
        if not finished_trials(out):
            raise ValueError(f"{out}: no finished trials (no */result.json) to score")
        # a corpus is committed data: its tables go elsewhere unless asked for (out/ is git-ignored)
        base = Path("out") / "corpus" if is_corpus(out) else out
        res = write_report(
            out,
            Path(a.results) if a.results else base / "tables",
            Path(a.figures) if a.figures else base / "figures",
            {},
            command=f"offrl-eval loop {a.scenario} --preset {a.preset} --jobs {a.jobs}"
            + (" (re-analyzed with --score-only --reanalyze)" if a.reanalyze else ""),
            log=lambda m: print(m, file=sys.stderr),
            reanalyze=a.reanalyze,
        )
        res["files"] = [*res.get("figures", []), *([res["results_dir"]] if "results_dir" in res else [])]
        return res
    res = run_loop(
        a.scenario,
        a.preset,
        Path(a.out),
        jobs=a.jobs,
        seeds=seeds,
        precision=a.precision,
        results_dir=Path(a.results) if a.results else None,
        figures_dir=Path(a.figures) if a.figures else None,
        log=lambda m: print(m, file=sys.stderr),
        export_to=export_to,
        executor=getattr(a, "executor", "local"),
        address=getattr(a, "address", None),
    )
    res["files"] = [*res.get("figures", []), *([res["results_dir"]] if "results_dir" in res else [])]
    return res
