"""Library entry points: `analyze(paths)` for logs on disk, `analyze_runs(runs)` for Run objects.

Pipeline: load the rules file -> ingest (analyzer.ingest.load_runs with the rules file's tag
mappings) -> per run: overrides, signal analysis, rules, verdict -> capacity comparison across
runs (Metric 3.2, second form), which can turn a run's verdict into underfitting -> Report.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from pathlib import Path

from analyzer.config import RulesConfig, load_config, load_profile_file
from analyzer.diagnose import analyze_signals, diagnose_run, finish, run_rules
from analyzer.ingest import load_runs
from analyzer.ingest.profiles import Profile, profile_set
from analyzer.model import IngestIssue, Run
from analyzer.report import Finding, Report, RunResult
from analyzer.rules import ordered_specs
from analyzer.rules.base import Analysis, GroupContext

__all__ = ["Progress", "analyze", "analyze_runs", "diagnose_run"]

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
) -> Report:
    """Diagnose every run found under `paths`. Unreadable paths land in `Report.errors`.

    `progress(stage, done, total, run_id)` is called once per run after it is read (stage "read",
    also with workers) and once per run after it is diagnosed (stage "diagnose"): the CLI's bar.

    Raises ConfigError (analyzer.config) for a bad rules file - the CLI maps it to exit code 2.
    """
    cfg = _config(rules)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    on_run = None
    if progress is not None:

        def on_run(done: int, total: int, run_id: str) -> None:
            progress("read", done, total, run_id)

    profiles = _profiles(cfg)
    runs, errors = load_runs(
        list(paths), mappings=cfg.load_mappings() or None, profiles=profiles, workers=workers, on_run=on_run
    )
    runs = [_remap(r, cfg, profiles) for r in runs]
    return analyze_runs(runs, cfg, errors=list(errors), progress=progress)


def _profiles(cfg: RulesConfig) -> dict[str, Profile] | None:
    """The installed profiles plus the rules file's `profiles:` files (None: just the installed ones)."""
    if not cfg.profiles:
        return None
    return profile_set([load_profile_file(p) for p in cfg.profiles])


def _remap(run: Run, cfg: RulesConfig, profiles: dict[str, Profile] | None = None) -> Run:
    """Re-read a run whose `runs:` entry carries its own tag mappings (they win over global ones)."""
    own = cfg.run_override(run.id).mappings
    if not own:
        return run
    from analyzer.ingest.mlflow_runs import source_of

    try:  # a run from an MLflow store is read again from there, by its run id
        again, _ = load_runs(
            [source_of(run) or run.path], mappings={**cfg.load_mappings(), **own}, profiles=profiles
        )
    except Exception as exc:  # noqa: BLE001 - keep the first reading, report why
        run.issues.append(IngestIssue(str(run.path), f"per-run mappings not applied: {exc}", "warning"))
        return run
    if len(again) != 1:
        run.issues.append(
            IngestIssue(
                str(run.path), f"per-run mappings not applied: re-reading found {len(again)} runs", "warning"
            )
        )
        return run
    again[0].id = run.id
    return again[0]


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
    analyses = []
    results: list[RunResult] = []
    for run in runs:
        ov = cfg.run_override(run.id)
        a = analyze_signals(run, cfg, ov)
        findings = run_rules(a, cfg)
        analyses.append((a, findings))
        results.append(finish(a, findings, cfg))
        if progress is not None:
            progress("diagnose", len(results), len(runs), run.id)
    extra = run_group_rules([a for a, _ in analyses], results, cfg)
    for i, (a, findings) in enumerate(analyses):
        if a.run.id in extra:
            results[i] = finish(a, findings + extra[a.run.id], cfg)
    issues = [*(errors or []), *unmatched_run_patterns(cfg, [r.id for r in runs]), *plugin_warnings()]
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
