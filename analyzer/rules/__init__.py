"""Rule registry: every diagnosis rule, its parameters and its documentation page.

Rule documentation is generated from each rule's metadata (analyzer/rules/*.py), so the installed
package can print it (`rule_doc`) without the repository's docs/ folder; docs/rules/<CODE>.md are
the same pages written by `python -m analyzer.rules --write-docs docs/rules` (a test keeps them in
sync).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyzer.plugins import load_rule_plugins
from analyzer.rules import data, overfitting, stability, underfitting  # noqa: F401  (registers rules)
from analyzer.rules.base import REGISTRY, Param, RuleSpec, register_spec
from analyzer.rules.underfitting import compare_capacity

__all__ = [
    "REGISTRY",
    "RuleInfo",
    "RuleSpec",
    "Param",
    "all_rules",
    "rule_doc",
    "compare_capacity",
    "get_rule",
]

# third-party rules (`offrl_workflow.rules` entry points): each imported on its own, a broken one
# reported (analyzer.plugins.plugin_problems) and skipped
load_rule_plugins(REGISTRY, register_spec, RuleSpec)

#: Rule families in the order rules run and are listed: data quality, stability (non-finite values,
#: divergence), overfitting, underfitting, capacity comparison.
FAMILIES = ("DQ", "NF", "DV", "OF", "UF", "CQ")


def _order_key(code: str) -> tuple[int, str]:
    family = code[:2]
    return (FAMILIES.index(family) if family in FAMILIES else len(FAMILIES), code)


#: Every registered rule in run/list order: by family, then by code. Derived from the registry, so a
#: new rule (OF003 was once missing from a hand-kept list) can never be left out of it.
ORDER: tuple[str, ...] = tuple(sorted(REGISTRY, key=_order_key))


@dataclass
class RuleInfo:
    code: str
    name: str
    level: str
    summary: str
    params: dict[str, Any]
    doc_path: str  # relative to the repository root


def ordered_specs() -> list[RuleSpec]:
    return [REGISTRY[c] for c in sorted(REGISTRY, key=_order_key)]


def get_rule(code: str) -> RuleSpec:
    try:
        return REGISTRY[code.upper()]
    except KeyError:
        known = ", ".join(sorted(REGISTRY, key=_order_key))
        raise KeyError(f"unknown rule {code!r}; known: {known}") from None


def all_rules() -> list[RuleInfo]:
    return [
        RuleInfo(s.code, s.name, s.level, s.summary, s.defaults(), f"docs/rules/{s.code}.md")
        for s in ordered_specs()
    ]


def rule_doc(code: str) -> str:
    """Markdown page for one rule: What it detects / Why / Example / Remediation / Parameters."""
    s = get_rule(code)
    lines = [
        f"# {s.code} `{s.name}` ({s.level})",
        "",
        s.summary,
        "",
        *(
            [
                "Scope: **group** - it runs once per analysis over all runs read together (at least two), "
                "after their own rules, and its findings join the runs they are about.",
                "",
            ]
            if s.scope == "group"
            else []
        ),
        "## What it detects",
        "",
        s.detects,
        "",
        "## Why",
        "",
        s.why,
        "",
        "## Example",
        "",
        s.example,
        "",
        "## Remediation",
        "",
        s.remediation,
        "",
        "## Parameters",
        "",
    ]
    if s.params:
        lines += ["| name | default | meaning | where the default comes from |", "|---|---|---|---|"]
        for p in s.params:
            default = p.default if p.kind != "choice" else f"{p.default} (one of {', '.join(p.choices)})"
            lines.append(f"| `{p.name}` | `{default}` | {p.help} | {p.source} |")
    else:
        lines.append("None.")
    lines += [
        "",
        f"Set them in a rules file: `params: {{{s.code}: {{<name>: <value>}}}}`; change the level with "
        f"`levels: {{{s.code}: error}}`; turn the rule off with `ignore: [{s.code}]`.",
        "",
        "_Generated from analyzer/rules (`python -m analyzer.rules --write-docs docs/rules`)._",
        "",
    ]
    return "\n".join(lines)


def write_docs(directory: str) -> list[str]:
    """Write docs/rules/<CODE>.md for every rule (and an index); returns the paths written."""
    from pathlib import Path

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    index = ["# Rules", "", "| code | name | level | summary |", "|---|---|---|---|"]
    for s in ordered_specs():
        p = out / f"{s.code}.md"
        p.write_text(rule_doc(s.code), encoding="utf-8")
        written.append(str(p))
        index.append(f"| [{s.code}]({s.code}.md) | `{s.name}` | {s.level} | {s.summary} |")
    (out / "README.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    written.append(str(out / "README.md"))
    return written
