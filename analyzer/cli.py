"""`offrl-analyze`: the command line (typer + rich), designed to feel like a linter.

Dispatch: `offrl-analyze PATH...` runs the default `check` command; `rules`, `explain CODE` and
`check` are subcommands. Only a FIRST argument spelled exactly like a subcommand selects it, so a
directory literally named `rules` is analysed with `offrl-analyze ./rules`, `offrl-analyze rules/`
or `offrl-analyze check rules`.

Exit codes (as ruff): 0 nothing at/above `--fail-on`; 1 something is; 2 usage error, bad config, or
no readable run at all. Every error is one line on stderr, never a traceback (set OFFRL_DEBUG=1 to
see the traceback of an internal error); the conventions are shared with offrl-train and offrl-eval
(analyzer/cli_errors.py).
"""

from __future__ import annotations

import io
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from analyzer import __version__
from analyzer.cli_errors import EXIT_FAIL, EXIT_OK, CliError, GuardedGroup
from analyzer.output import FORMATS, available_formats
from analyzer.output.brief import short_run_id
from analyzer.output.failon import DEFAULT_FAIL_ON, FailOn, FailOnError, parse_fail_on
from analyzer.output.names import terminal

PROG = "offrl-analyze"
SUBCOMMANDS = ("check", "rules", "explain")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def join_reward_range(args: list[str]) -> list[str]:
    """Accept `--reward-range LO HI` (two tokens, as the rule messages print it) besides `LO,HI`.

    Only when both following tokens are numbers; `--reward-range 0 1` becomes `--reward-range 0,1`.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":  # everything after is a path
            out.extend(args[i:])
            break
        if (
            a == "--reward-range"
            and i + 2 < len(args)
            and _is_number(args[i + 1])
            and _is_number(args[i + 2])
        ):
            out += [a, f"{args[i + 1]},{args[i + 2]}"]
            i += 3
            continue
        out.append(a)
        i += 1
    return out


class _DefaultCheckGroup(GuardedGroup):
    """A click group whose default command is `check`; errors and exit codes: analyzer/cli_errors.py."""

    prog = PROG

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        args = join_reward_range(list(args))
        first = args[0] if args else None
        if first is None or (first not in self.commands and first not in ("-h", "--help", "--version")):
            args = ["check", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultCheckGroup,
    name=PROG,
    help="Diagnose offline-RL (CQL/BRAC) training logs: overfitting, underfitting, which checkpoint to keep.\n\n"
    "`offrl-analyze PATH...` analyses runs (default command `check`); `offrl-analyze rules` lists rules; "
    "`offrl-analyze explain OF001` documents one. A directory named `rules`: `offrl-analyze ./rules`.",
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit(EXIT_OK)


#: `--version`, on the root and on `check` (so `offrl-analyze PATH... --version` works too)
VersionOption = Annotated[
    bool,
    typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
]


@app.callback()
def _root(
    version: VersionOption = False,
) -> None:
    """Diagnose offline-RL training logs."""


# ----------------------------------------------------------------------------------------------
# option parsing helpers (each raises CliError with a message naming the option)


def parse_reward_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise CliError(f"--reward-range: expected LO,HI (two numbers, e.g. 0,1), got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise CliError(f"--reward-range: need finite LO < HI, got {text!r}")
    return (lo, hi)


def _sources(args: list[str], experiments: list[str], storage_options: list[str] | None = None) -> list[Any]:
    """PATH arguments as paths, `mlflow:<tracking URI>` as MLflow sources (with --experiment), and
    URLs (`s3://bucket/prefix`, `gs://...`, any fsspec URL) as remote paths (with --storage-option).

    Why strings first: a Path would fold the `//` of `mlflow:sqlite:///mlflow.db` or `s3://bucket`."""
    from analyzer.ingest import storage
    from analyzer.ingest.mlflow_runs import MlflowError, MlflowSource, check_source, mlflow_problem

    try:
        options = storage.parse_storage_options(list(storage_options or []))
    except ValueError as e:
        raise CliError(f"--storage-option: {e}") from None
    if options and not any(storage.is_url(a) for a in args):
        raise CliError("--storage-option applies to URL paths (e.g. s3://bucket/prefix/)")
    out: list[Any] = []
    for a in args:
        if storage.is_url(a) and not a.startswith("mlflow:"):
            try:
                out.append(storage.as_path(a, options))
            except (OSError, ValueError) as e:
                raise CliError(f"{a}: {getattr(e, 'strerror', None) or e}") from None
        elif a.startswith("mlflow:"):
            source = MlflowSource(a[len("mlflow:") :], tuple(experiments))
            try:
                check_source(source)  # the store is there and is MLflow's (before mlflow is imported)
            except MlflowError as e:
                raise CliError(str(e)) from None
            problem = mlflow_problem()
            if problem:
                raise CliError(problem)
            out.append(source)
        else:
            out.append(Path(a))
    if experiments and not any(isinstance(o, MlflowSource) for o in out):
        raise CliError("--experiment selects runs of an mlflow: source (e.g. mlflow:sqlite:///mlflow.db)")
    return out


def _check_paths(paths: list[Any]) -> None:
    if not paths:
        raise CliError("no PATH given; usage: offrl-analyze PATH... (see offrl-analyze --help)")
    from analyzer.ingest.storage import RemotePath

    for p in paths:
        if isinstance(p, RemotePath):
            try:  # one recursive listing: a missing bucket, bad credentials or no network end here
                found = p.exists()
            except OSError as e:
                raise CliError(f"{p}: {e.strerror or e}") from None
            if not found:
                raise CliError(f"{p}: no such file or folder in the bucket")
            continue
        if not isinstance(p, Path):
            continue  # an MLflow source, checked by _sources
        if not p.exists():
            raise CliError(f"{p}: no such file or directory")
        if not os.access(p, os.R_OK):
            raise CliError(f"{p}: permission denied")


def load_rules(
    rules_file: Path | None,
    gamma: float | None,
    reward_range: tuple[float, float] | None,
    horizon: int | None,
) -> Any:
    """Load the rules config (or defaults) and apply command-line overrides; ConfigError -> CliError."""
    from analyzer.config import ConfigError, load_config

    try:  # a missing file, a FIFO, a device or a folder: load_config says which, in one line
        rules = load_config(rules_file)
    except ConfigError as e:
        raise CliError(f"--rules: {e}") from None
    try:
        if (gamma, reward_range, horizon) != (None, None, None):
            rules = rules.with_overrides(gamma=gamma, reward_range=reward_range, horizon=horizon)
    except ConfigError as e:
        raise CliError(str(e)) from None
    return rules


def default_format() -> str:
    """`github` inside GitHub Actions (annotations), else the rich table."""
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "table"


def run_analysis(
    paths: list[Any],
    rules: Any,
    workers: int,
    show_progress: bool,
    executor: str = "local",
    address: str | None = None,
) -> Any:
    """Call the engine; with `show_progress`, a rich bar on stderr that advances per run.

    Two stages, one bar each: reading logs (per run directory, also with --workers) and
    diagnosing (per run). The bar is transient: it disappears once the table prints.
    `executor="ray"`: the runs are read and diagnosed as Ray tasks (docs/scaling.md).
    """
    from analyzer.executor import RayUnavailable

    try:
        return _run_analysis(paths, rules, workers, show_progress, executor, address)
    except RayUnavailable as e:
        raise CliError(str(e)) from None


def _run_analysis(
    paths: list[Any], rules: Any, workers: int, show_progress: bool, executor: str, address: str | None
) -> Any:
    from analyzer.api import analyze

    if not show_progress:
        return analyze(paths, rules, workers=workers, executor=executor, address=address)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(stderr=True)
    columns = [
        SpinnerColumn(),
        TextColumn("{task.description:<10}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[run]}", markup=True),
    ]
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}
        label = {"read": "reading", "diagnose": "diagnosing"}
        width = max(20, console.width - 70)

        def on_progress(stage: str, done: int, total: int, run_id: str) -> None:
            if stage not in tasks:
                for other in tasks.values():  # the previous stage is over
                    bar.update(other, visible=False)
                tasks[stage] = bar.add_task(label.get(stage, stage), total=total, run="")
            shown = short_run_id(terminal(run_id), width)
            bar.update(tasks[stage], completed=done, total=total, run=escape(shown))

        return analyze(
            paths, rules, workers=workers, progress=on_progress, executor=executor, address=address
        )


# ----------------------------------------------------------------------------------------------
# commands


@app.command("check")
def check(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PATH...",
            help="Run directories, log files, folders of runs, bucket URLs (s3://, gs://, any fsspec URL) or mlflow:<tracking URI> "
            "(docs/formats.md, 'Where your logs are').",
            show_default=False,
        ),
    ] = None,
    experiment: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment",
            metavar="NAME",
            help="With mlflow: sources, read only this experiment (repeatable; default: all).",
        ),
    ] = None,
    storage_option: Annotated[
        list[str] | None,
        typer.Option(
            "--storage-option",
            metavar="KEY=VALUE",
            help="With s3:// gs:// ... paths: an fsspec storage option (repeatable; e.g. "
            "endpoint_url=http://127.0.0.1:9000, anon=true, client_kwargs.region_name=eu-west-1). "
            "Credentials come from the usual places (environment, profile).",
        ),
    ] = None,
    rules_file: Annotated[
        Path | None, typer.Option("--rules", help="Rules config (YAML); default: built-in thresholds.")
    ] = None,
    gamma: Annotated[
        float | None, typer.Option("--gamma", help="Override the discount factor for every run.")
    ] = None,
    reward_range: Annotated[
        str | None,
        typer.Option(
            "--reward-range", metavar="LO,HI", help="Override the per-step reward range (e.g. 0,1)."
        ),
    ] = None,
    horizon: Annotated[
        int | None, typer.Option("--horizon", help="Override the episode horizon (environment steps).")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="|".join(FORMATS),
            help="Output format [default: table; github when GITHUB_ACTIONS=true].",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write the formatted output to FILE instead of stdout."),
    ] = None,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            help="Exit 1 when a run has one of these verdicts and/or a finding at/above this level "
            "(comma list, e.g. overfitting,underfitting or warning; 'none' never fails).",
        ),
    ] = DEFAULT_FAIL_ON,
    exit_zero: Annotated[
        bool,
        typer.Option("--exit-zero", help="Exit 0 even when runs fail --fail-on (2 still means an error)."),
    ] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", metavar="DIR", help="Write one PNG figure per run into DIR.")
    ] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report", metavar="DIR", help="Write a self-contained DIR/index.html.")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Processes used to read logs (capped at the CPUs available and the number of runs).",
        ),
    ] = 1,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            metavar="local|ray",
            help="local: --workers processes; ray: Ray tasks, for trees of many thousands of runs "
            "(the 'cluster' extra).",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address", help="With --executor ray: auto | ray://HOST:10001 (default: start a local Ray)."
        ),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Re-read growing logs; report new runs and first overfitting.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.0, help="Seconds between --watch polls.")
    ] = 30.0,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="No progress bar or status messages; results only.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "-v", "--verbose", help="Table format: print each run's findings and full advice under the table."
        ),
    ] = False,
    version: VersionOption = False,
) -> None:
    """Analyse runs (the default command: `offrl-analyze PATH...`)."""
    paths = _sources(list(args or []), list(experiment or []), list(storage_option or []))
    fmt = fmt or default_format()
    if fmt not in available_formats():  # also loads output plugins, so a broken one is reported
        raise CliError(f"--format: unknown format {fmt!r}; choose one of {', '.join(available_formats())}")
    try:
        policy = parse_fail_on(fail_on)
    except FailOnError as e:
        raise CliError(str(e)) from None
    rr = parse_reward_range(reward_range)  # --gamma/--horizon/--reward-range: checked in load_rules
    _check_paths(paths)
    rules = load_rules(rules_file, gamma, rr, horizon)

    if watch:
        from analyzer.ingest.storage import RemotePath
        from analyzer.watch import watch as watch_loop

        if not all(isinstance(p, (Path, RemotePath)) for p in paths):
            raise CliError("--watch follows local folders and buckets; mlflow: sources are read once (no --watch)")

        try:
            watch_loop(
                paths,
                interval,
                rules=rules,
                workers=workers,
                on_event=lambda e: typer.echo(terminal(e.line())),
            )
        except KeyboardInterrupt:
            pass
        raise typer.Exit(EXIT_OK)

    show_progress = not quiet and sys.stderr is not None and sys.stderr.isatty()
    if executor not in ("local", "ray"):
        raise CliError(f"--executor: expected local or ray, got {executor!r}")
    report = run_analysis(paths, rules, workers, show_progress, executor, address)
    _emit(report, fmt, policy, output, quiet, verbose)
    _write_pictures(report, policy, plot, report_dir, quiet)

    if not report.runs:
        where = ", ".join(str(p) for p in paths)
        first = f": {report.errors[0].path}: {report.errors[0].message}" if report.errors else ""
        raise CliError(f"no readable run found in {where}{first}")
    if exit_zero:
        raise typer.Exit(EXIT_OK)
    raise typer.Exit(EXIT_FAIL if policy.report_fails(report) else EXIT_OK)


def table_width() -> int | None:
    """None on a terminal (rich measures it); else $COLUMNS when set, else 160 (pipes, CI logs)."""
    if sys.stdout.isatty():
        return None
    try:
        cols = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        cols = 0
    return cols if cols >= 40 else 160


def _emit(report: Any, fmt: str, policy: FailOn, output: Path | None, quiet: bool, verbose: bool) -> None:
    from analyzer.output import render
    from analyzer.output.common import summary_line

    if output is None and fmt == "table":
        from rich.console import Console

        from analyzer.output.table import print_report

        console = Console(file=sys.stdout, highlight=False, width=table_width())
        print_report(console, report, policy, verbose=verbose)
        return
    text = render(fmt, report, policy, verbose=verbose)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        raise CliError(f"-o/--output: cannot write {output}: {e.strerror or e}") from None
    if not quiet:
        typer.echo(terminal(f"{summary_line(report)} (wrote {fmt} to {output})"), err=True)


def _write_pictures(
    report: Any, policy: FailOn, plot: Path | None, report_dir: Path | None, quiet: bool
) -> None:
    try:
        if plot is not None:
            from analyzer.output.plots import write_plots

            written = write_plots(report, plot)
            if not quiet:
                typer.echo(terminal(f"wrote {len(written)} plot(s) to {plot}"), err=True)
        if report_dir is not None:
            from analyzer.output.html_report import write_report

            index = write_report(report, report_dir, policy)
            if not quiet:
                typer.echo(terminal(f"wrote report {index}"), err=True)
    except OSError as e:
        raise CliError(f"cannot write {e.filename or 'output'}: {e.strerror or e}") from None


@app.command("rules")
def rules_cmd(
    fmt: Annotated[str, typer.Option("--format", metavar="table|json", help="Output format.")] = "table",
) -> None:
    """List every diagnosis rule with its code, level and summary (plugins' rules after the built-in ones)."""
    from analyzer.plugins import plugin_problems
    from analyzer.rules import all_rules

    infos = all_rules()
    for problem in plugin_problems():  # a rule plugin that did not load: say so, on stderr
        issue = problem.issue()
        typer.echo(f"{PROG}: warning: {issue.path}: {issue.message}", err=True)
    if fmt == "json":
        import json

        rows = [
            {
                "code": i.code,
                "name": i.name,
                "level": i.level,
                "summary": i.summary,
                "params": i.params,
                "doc": str(i.doc_path),
            }
            for i in infos
        ]
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if fmt != "table":
        raise CliError(f"--format: expected table or json, got {fmt!r}")
    from rich.console import Console
    from rich.table import Table

    table = Table(header_style="bold")
    for col in ("Code", "Name", "Level", "Summary"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(i.code, i.name, i.level, i.summary)
    Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 160).print(table)


@app.command("explain")
def explain_cmd(code: Annotated[str, typer.Argument(help="Rule code, e.g. OF001.")]) -> None:
    """Show the documentation of one rule (what it measures, thresholds, where they come from)."""
    from analyzer.rules import rule_doc

    try:
        text = rule_doc(code.upper())
    except (KeyError, LookupError, ValueError) as e:
        detail = e.args[0] if e.args else str(e)
        raise CliError(f"explain: {detail}; see `offrl-analyze rules`") from None
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(text))
    else:
        typer.echo(text)


class ClosedStdout(io.TextIOBase):
    """Stands in for `sys.stdout` when the process started with it closed (`offrl-analyze ... >&-`).

    Python then sets `sys.stdout` to None; writing the report would fail with an AttributeError.
    Any write raises a CliError instead: one line on stderr, exit 2 (`-o FILE` still works).
    """

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not text:
            return 0
        raise CliError("cannot write to standard output: it is closed (write the report with -o FILE)")

    def flush(self) -> None:
        return None


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (`offrl-analyze`, `python -m analyzer`)."""
    if sys.stdout is None:
        sys.stdout = ClosedStdout()
    for stream in (sys.stdout, sys.stderr):
        # a terminal or pipe whose encoding cannot show a character (PYTHONIOENCODING=ascii):
        # write it as an escape rather than fail half-way through the report
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass
    app(args=argv, prog_name=PROG)
