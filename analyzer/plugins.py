"""Plugins: rules, profiles, readers and output formats from other installed packages (entry points).

A package adds to the analyzer by declaring entry points in one of four groups (docs/plugins.md;
examples/offrl-plugin-example is a complete one):

    offrl_workflow.rules     a module whose import registers rules (`@rule`, `@group_rule`), or a
                             RuleSpec / list of RuleSpecs
    offrl_workflow.profiles  a profile file (path), a parsed profile document (dict), a Profile, a
                             list of these, or a function returning them
    offrl_workflow.readers   a Reader: `name`, `claims(path) -> bool`, `read(path) -> list[RawRun]`
    offrl_workflow.outputs   an OutputFormat: `name`, `render(report, fail_on) -> str`

Why one at a time, with every failure caught: one broken or outdated plugin must not take the
analyzer down, nor hide the others (sqlfluff's rule). Each entry point is imported on its own; a
failure - an import error, a duplicate rule code, an invalid profile, an object of the wrong shape -
is recorded as a `PluginProblem` (the analysis reports it as a warning, `offrl-analyze rules`
lists it) and the rest load. `OFFRL_NO_PLUGINS=1` turns discovery off (reproducible runs, tests).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from analyzer.model import IngestIssue, RawRun

__all__ = [
    "GROUPS",
    "OutputFormat",
    "PluginProblem",
    "Reader",
    "load_rule_plugins",
    "loaded_plugins",
    "plugin_outputs",
    "plugin_problems",
    "plugin_profiles",
    "plugin_readers",
]

GROUPS = {
    "rules": "offrl_workflow.rules",
    "profiles": "offrl_workflow.profiles",
    "readers": "offrl_workflow.readers",
    "outputs": "offrl_workflow.outputs",
}
DISABLE_ENV = "OFFRL_NO_PLUGINS"


@runtime_checkable
class Reader(Protocol):
    """A log format the built-in readers do not know. `claims` must be cheap (names, not contents)."""

    name: str

    def claims(self, path: Path) -> bool: ...

    def read(self, path: Path) -> list[RawRun]: ...


@runtime_checkable
class OutputFormat(Protocol):
    """`--format NAME`: a pure function of the report (and the `--fail-on` policy) to text."""

    name: str

    def render(self, report: Any, fail_on: Any) -> str: ...


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not be used, and why (never a traceback)."""

    group: str
    name: str  # entry point name
    value: str  # what it points at (`package.module:attr`)
    distribution: str
    message: str

    def issue(self) -> IngestIssue:
        """As a report's warning: path `plugin <group>:<name> (<distribution>)`."""
        dist = f" ({self.distribution})" if self.distribution else ""
        return IngestIssue(f"plugin {self.group}:{self.name}{dist}", f"{self.message}; skipped", "warning")


@dataclass(frozen=True)
class LoadedPlugin:
    group: str
    name: str
    value: str
    distribution: str
    what: str  # what it added ("rules EX001", "profiles mytrainer", ...)


_PROBLEMS: dict[tuple[str, str, str], PluginProblem] = {}
_LOADED: dict[tuple[str, str, str], LoadedPlugin] = {}


def _enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    if not _enabled():
        return []
    try:
        eps = list(metadata.entry_points(group=group))
    except Exception as exc:  # noqa: BLE001 - broken distribution metadata on sys.path
        _PROBLEMS[(group, "*", "")] = PluginProblem(group, "*", "", "", f"cannot list entry points: {exc}")
        return []
    seen: set[tuple[str, str]] = set()
    out = []
    for ep in sorted(eps, key=lambda e: (e.name, e.value)):
        if (ep.name, ep.value) not in seen:  # the same distribution found twice on sys.path
            seen.add((ep.name, ep.value))
            out.append(ep)
    return out


def _dist(ep: metadata.EntryPoint) -> str:
    d = getattr(ep, "dist", None)
    return f"{d.name} {d.version}" if d is not None else ""


def _each(group_key: str, use: Callable[[metadata.EntryPoint], str]) -> None:
    """Load every entry point of a group; `use(ep)` loads and registers it and says what it added."""
    group = GROUPS[group_key]
    for ep in _entry_points(group):
        key = (group, ep.name, ep.value)
        try:
            what = use(ep)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported and skipped, never a traceback
            msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            _PROBLEMS[key] = PluginProblem(
                group,
                ep.name,
                ep.value,
                _dist(ep),
                f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__,
            )
            continue
        _LOADED[key] = LoadedPlugin(group, ep.name, ep.value, _dist(ep), what)


def plugin_problems() -> list[PluginProblem]:
    """Every plugin that failed to load so far (groups load on first use)."""
    return list(_PROBLEMS.values())


def loaded_plugins() -> list[LoadedPlugin]:
    return list(_LOADED.values())


# --------------------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------------------


def load_rule_plugins(registry: dict[str, Any], register: Callable[[Any], None], spec_type: type) -> None:
    """Import rule plugins into `registry` (called once, by analyzer.rules when the registry is built;
    `spec_type` is RuleSpec, passed in so this module stays below the rules package).

    A module that fails halfway (its second rule's code is taken) leaves none of its rules behind.
    """
    RuleSpec = spec_type  # noqa: N806

    def use(ep: metadata.EntryPoint) -> str:
        before = set(registry)
        try:
            obj = ep.load()  # a module registers its rules as it is imported
            if isinstance(obj, RuleSpec):
                obj = [obj]
            if isinstance(obj, (list, tuple)):
                for spec in obj:
                    if not isinstance(spec, RuleSpec):
                        raise TypeError(f"expected a module or RuleSpec objects, got {type(spec).__name__}")
                    register(spec)
            added = sorted(set(registry) - before)
            if not added:
                raise ValueError("registered no rule (expected a module using @rule, or RuleSpec objects)")
            for code in added:
                if not re.fullmatch(r"[A-Z]{2,4}\d{3}", code):
                    raise ValueError(f"rule code {code!r}: expected 2-4 capital letters and 3 digits (XY001)")
        except BaseException:
            for code in set(registry) - before:
                del registry[code]
            raise
        return "rules " + ", ".join(added)

    _each("rules", use)


# --------------------------------------------------------------------------------------------------
# profiles
# --------------------------------------------------------------------------------------------------


def _profile_items(obj: Any) -> Iterable[Any]:
    if callable(obj) and not isinstance(obj, type):
        obj = obj()
    if isinstance(obj, (list, tuple)):
        return list(obj)
    return [obj]


@cache
def plugin_profiles() -> tuple[Any, ...]:
    """Profiles from `offrl_workflow.profiles` entry points, each validated like a profile file.

    A plugin profile may not take a built-in profile's name (it would change every analysis on the
    machine); a rules file's `profiles:` can, for one analysis.
    """
    import yaml

    from analyzer.ingest.profile_format import Profile, builtin_profiles, parse_profile

    builtin = {p.name for p in builtin_profiles()}
    out: list[Profile] = []
    taken: set[str] = set()

    def use(ep: metadata.EntryPoint) -> str:
        found: list[Profile] = []
        for item in _profile_items(ep.load()):
            if isinstance(item, Profile):
                prof = item
            elif isinstance(item, dict):
                prof = parse_profile(item, f"{ep.value}", f"plugin {ep.name}")
            elif isinstance(item, (str, os.PathLike)) or hasattr(item, "read_text"):
                text = (
                    item.read_text(encoding="utf-8")
                    if hasattr(item, "read_text")
                    else Path(item).read_text("utf-8")
                )
                where = str(item)
                prof = parse_profile(yaml.safe_load(text), where, f"plugin {ep.name}")
            else:
                raise TypeError(f"expected a profile file path, dict or Profile, got {type(item).__name__}")
            if prof.name in builtin:
                raise ValueError(f"profile {prof.name!r} is a built-in profile's name")
            if prof.name in taken:
                raise ValueError(f"profile {prof.name!r} is already given by another plugin")
            found.append(prof)
        for prof in found:
            taken.add(prof.name)
            out.append(prof)
        return "profiles " + ", ".join(p.name for p in found)

    _each("profiles", use)
    return tuple(out)


# --------------------------------------------------------------------------------------------------
# readers and output formats
# --------------------------------------------------------------------------------------------------


def _instance(obj: Any) -> Any:
    return obj() if isinstance(obj, type) else obj


@cache
def plugin_readers() -> tuple[Reader, ...]:
    out: list[Reader] = []

    def use(ep: metadata.EntryPoint) -> str:
        reader = _instance(ep.load())
        if not isinstance(reader, Reader) or not isinstance(getattr(reader, "name", None), str):
            raise TypeError("expected a reader with `name`, `claims(path)` and `read(path)`")
        out.append(reader)
        return f"reader {reader.name}"

    _each("readers", use)
    return tuple(out)


@cache
def plugin_outputs(reserved: tuple[str, ...] = ()) -> dict[str, OutputFormat]:
    """Output formats from `offrl_workflow.outputs`; `reserved`: the built-in format names."""
    out: dict[str, OutputFormat] = {}

    def use(ep: metadata.EntryPoint) -> str:
        fmt = _instance(ep.load())
        if not isinstance(fmt, OutputFormat) or not isinstance(getattr(fmt, "name", None), str):
            raise TypeError("expected an output format with `name` and `render(report, fail_on)`")
        if fmt.name in reserved or fmt.name in out:
            raise ValueError(f"output format {fmt.name!r} exists already")
        out[fmt.name] = fmt
        return f"output format {fmt.name}"

    _each("outputs", use)
    return out
