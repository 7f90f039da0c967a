"""Renderers for a `Report`: one module per output format, all pure functions of the report.

Why pure functions returning strings: the CLI decides where text goes (stdout, `-o FILE`), tests
compare the strings with golden files, and no renderer ever touches a log directory.
"""

from __future__ import annotations

from analyzer.output.failon import FailOn, parse_fail_on

FORMATS: tuple[str, ...] = ("table", "json", "markdown", "github", "junit", "sarif")

__all__ = ["FORMATS", "FailOn", "available_formats", "parse_fail_on", "render"]


def available_formats() -> tuple[str, ...]:
    """The built-in formats, then those of plugins (`offrl_workflow.outputs` entry points)."""
    from analyzer.plugins import plugin_outputs

    return FORMATS + tuple(plugin_outputs(FORMATS))


def render(
    fmt: str, report, fail_on: FailOn, *, color: bool = False, width: int | None = None, verbose: bool = False
) -> str:
    """Render `report` in format `fmt` (one of FORMATS) as text (`verbose`: table detail under it)."""
    if fmt == "json":
        from analyzer.output.json_out import render_json

        return render_json(report)
    if fmt == "markdown":
        from analyzer.output.markdown import render_markdown

        return render_markdown(report, fail_on)
    if fmt == "github":
        from analyzer.output.github import render_github

        return render_github(report, fail_on)
    if fmt == "junit":
        from analyzer.output.junit import render_junit

        return render_junit(report, fail_on)
    if fmt == "sarif":
        from analyzer.output.sarif import render_sarif

        return render_sarif(report)
    if fmt == "table":
        from analyzer.output.table import render_table

        return render_table(report, fail_on, color=color, width=width, verbose=verbose)
    from analyzer.plugins import plugin_outputs

    plugin = plugin_outputs(FORMATS).get(fmt)
    if plugin is not None:
        return plugin.render(report, fail_on)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(available_formats())}")
