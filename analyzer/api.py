"""Library entry points: `analyze(paths)` for logs on disk, `analyze_runs(runs)` for Run objects.

Pipeline: load the rules file -> per run, in the workers (analyzer.batch): ingest with the rules
file's tag mappings, overrides, signal analysis, rules, verdict -> in this process: the group-scope
rules across runs (UF003: Metric 3.2's capacity comparison), which can turn a run's verdict into
underfitting -> Report.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from pathlib import Path

from analyzer.batch import diagnose_alone, diagnose_paths
from analyzer.config import RulesConfig, load_config
from analyzer.diagnose import diagnose_run, finish
from analyzer.model import IngestIssue, Run
from analyzer.report import Finding, Report, RunResult
from analyzer.rules import ordered_specs
from analyzer.rules.base import Analysis, GroupContext

__all__ = ["Progress", "analyze", "analyze_runs", "diagnose_alone", "diagnose_run"]

Progress = Callable[[str, int, int, str], None]
"""`progress(stage, done, total, run_id)`: stage is "read" or "diagnose"; done counts from 1."""


def _config(rules: str | Path | RulesConfig | None) -> RulesConfig:
    return rules if isinstance(rules, RulesConfig) else load_config(rules)


def analyze(
    paths: str | Path | Sequence[str | Path],
    rules: str | Path | RulesConfig | None = None,
    *,
    workers: int = 1,
    progress: Progress | None = None,
    executor: str = "local",
    address: str | None = None,
) -> Report:
    """Diagnose every run found under `paths`. Unreadable paths land in `Report.errors`.

    Each run is read and diagnosed by its own rules in the same worker (analyzer.batch): `workers`
    local processes (capped by CPUs and runs), or Ray tasks with `executor="ray"` (the `cluster`
    extra; `address` as for `ray.init`: None starts or joins a local instance, "auto", "ray://host:10001").
    The group-scope rules (UF003's capacity comparison) then run here, on every run's analysis.

    `progress(stage, done, total, run_id)` is called once per run directory after it is read (stage
    "read") and once per run after it is diagnosed (stage "diagnose"): the CLI's bar.

    Raises ConfigError (analyzer.config) for a bad rules file - the CLI maps it to exit code 2.
    """
    cfg = _config(rules)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    done, errors = diagnose_paths(
        list(paths), cfg, workers=workers, executor=executor, address=address, progress=progress
    )
    return _report(done, cfg, errors)


def analyze_runs(
    runs: Sequence[Run],
    rules: str | Path | RulesConfig | None = None,
    *,
    errors: list[IngestIssue] | None = None,
    progress: Progress | None = None,
) -> Report:
    """Diagnose already-loaded runs (notebooks, tests, other readers), then the group-scope rules.

    `progress("diagnose", done, total, run_id)` is called after each run's own rules. Plugins that
    failed to load (analyzer.plugins) are listed in `Report.errors` as warnings.
    """
    cfg = _config(rules)
    done: list[tuple[Analysis, RunResult]] = []
    for run in runs:
        done.append(diagnose_alone(run, cfg))
        if progress is not None:
            progress("diagnose", len(done), len(runs), run.id)
    return _report(done, cfg, list(errors or []))


def _report(done: list[tuple[Analysis, RunResult]], cfg: RulesConfig, errors: list[IngestIssue]) -> Report:
    """The group-scope rules over every run, each run that gains findings finished again, and the Report."""
    analyses = [a for a, _ in done]
    results = [r for _, r in done]
    extra = run_group_rules(analyses, results, cfg)
    for i, (a, res) in enumerate(done):
        if a.run.id in extra:
            results[i] = finish(a, res.findings + extra[a.run.id], cfg)
    issues = [*errors, *unmatched_run_patterns(cfg, [a.run.id for a in analyses]), *plugin_warnings()]
    return Report(runs=results, errors=issues)


def run_group_rules(
    analyses: list[Analysis], results: list[RunResult], cfg: RulesConfig
) -> dict[str, list[Finding]]:
    """Every enabled group-scope rule over the runs of one analysis (at least two): findings per run id.

    A rule that raises costs each run one info finding saying so, never the analysis.
    """
    specs = [s for s in ordered_specs() if s.scope == "group" and s.group_check and cfg.enabled(s.code)]
    if len(analyses) < 2 or not specs:
        return {}
    verdicts: dict[str, str] = {r.run.id: r.verdict for r in results}
    groups = {a.run.id: g for a in analyses if (g := cfg.run_override(a.run.id).capacity_group)}
    out: dict[str, list[Finding]] = {}
    for spec in specs:
        ctx = GroupContext(
            analyses,
            verdicts,
            groups,
            cfg.params_for(spec.code),
            spec,
            cfg.level_for(spec.code),  # type: ignore[arg-type]
        )
        try:
            found = spec.group_check(ctx)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - a rule bug must not hide the other findings
            why = f"inconclusive: rule failed on this group of runs: {type(exc).__name__}: {exc}"
            ev = {"inconclusive": True, "reason": why}
            found = {a.run.id: [ctx.finding(why, evidence=ev, level="info")] for a in analyses}
        for run_id, fs in found.items():
            out.setdefault(run_id, []).extend(fs)
    return out


def plugin_warnings() -> list[IngestIssue]:
    """Plugins that failed to load, as warnings. Rules, profiles and readers are loaded here if they were
    not yet; output formats load when one is asked for (the CLI checks `--format` before analysing)."""
    from analyzer.ingest.profiles import registry
    from analyzer.plugins import plugin_problems, plugin_readers

    registry()
    plugin_readers()
    return [p.issue() for p in plugin_problems()]


def unmatched_run_patterns(cfg: RulesConfig, run_ids: list[str]) -> list[IngestIssue]:
    """A warning for every `runs:` entry whose pattern matches none of the runs read.

    Why: an entry that silently applies to nothing leaves the user believing a reward range or warm start
    was given; the usual cause is matching against the wrong text, so the warning shows what ids look like.
    """
    out = []
    for i, entry in enumerate(cfg.runs):
        if run_ids and not any(fnmatch.fnmatchcase(rid, entry.match) for rid in run_ids):
            example = min(run_ids, key=len)
            out.append(
                IngestIssue(
                    "rules file",
                    f"runs[{i}].match {entry.match!r} matches no run; patterns are matched against the run id, "
                    f"the run's path relative to the folder given on the command line (e.g. {example!r}; "
                    "use '*' for any characters, '**/' is not special)",
                    level="warning",
                )
            )
    return out
