"""JSON Schema of the rules file (docs/rules.schema.json), generated from the typed models.

Why generated: editors (VS Code / any yaml-language-server client, JetBrains) complete keys, show
each threshold's help and default, and flag a typo while the file is being written, from the same
declarations the loader checks (analyzer/config_model.py). A rules file opts in with a first line

    # yaml-language-server: $schema=<path or URL of rules.schema.json>

`python -m analyzer.config_schema` prints the schema of the installed analyzer (plugin rules
included); `--write PATH` writes it; `--builtin` leaves plugin rules out, as the published file does. tests/test_config.py keeps docs/rules.schema.json in sync and
checks that every file the loader accepts, the schema accepts too.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

from analyzer.config_model import (
    LEVEL_NAMES,
    SECTION_MODELS,
    SECTIONS,
    TOP_KEYS,
    RunOverride,
    mapping_entry_schema,
    mappings_schema,
)
from analyzer.config_values import param_kind
from analyzer.rules import ordered_specs
from analyzer.rules.base import Param, RuleSpec

__all__ = ["SCHEMA_ID", "rules_schema", "schema_text"]

SCHEMA_ID = "https://offrl-workflow.invalid/rules.schema.json"


def _any_case(code: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in code)


def _param_schema(p: Param) -> dict[str, Any]:
    s = dict(param_kind(p.kind, p.choices).schema)
    s["description"] = f"{p.help}. Default: {p.source}"
    s["default"] = p.default
    return s


def _object(props: Mapping[str, Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": dict(props), "additionalProperties": False}
    if description:
        out["description"] = description
    return out


def is_builtin(spec: RuleSpec) -> bool:
    """A rule of this package (not one a plugin registered)."""
    fn = spec.check or spec.group_check
    return getattr(fn, "__module__", "").startswith("analyzer.")


def _specs(plugins: bool) -> list[RuleSpec]:
    return [s for s in ordered_specs() if plugins or is_builtin(s)]


def _by_code(
    value_schema: Callable[[str], dict[str, Any]], description: str, codes: list[str]
) -> dict[str, Any]:
    """An object keyed by rule code (any letter case, as the loader accepts)."""
    return {
        "type": "object",
        "description": description,
        "properties": {c: value_schema(c) for c in codes},
        "patternProperties": {f"^{_any_case(c)}$": value_schema(c) for c in codes},
        "additionalProperties": False,
    }


def _codes_schema(description: str, codes: list[str]) -> dict[str, Any]:
    prefixes = sorted({c[:n] for c in codes for n in range(1, len(c) + 1)})
    item = {"type": "string", "pattern": "^(" + "|".join(_any_case(p) for p in prefixes) + ")$"}
    return {"description": description, "anyOf": [item, {"type": "array", "items": item}]}


def _nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"anyOf": [dict(schema), {"type": "null"}]}


def rules_schema(plugins: bool = True) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a rules file, generated from the typed models and the rule registry
    (with the rules of installed plugins, or only this package's: `plugins=False`, the published file).

    Looser than the loader in three ways it cannot express: `extends:` targets are not read,
    `changepoints.cost: clinear` with the kernel algorithm is not refused, and an integer written
    as `5.0` passes."""
    sections = {
        name: _object({p.name: _param_schema(p) for p in SECTIONS[name]}, (model.__doc__ or "").strip())
        for name, model in SECTION_MODELS.items()
    }

    specs = _specs(plugins)
    codes = [s.code for s in specs]
    defs: dict[str, Any] = {"mapping": mapping_entry_schema()}
    for spec in specs:  # each rule's parameters once; `params:` refers to them by code
        obj = _object(
            {p.name: _param_schema(p) for p in spec.params}, f"{spec.code} {spec.name}: {spec.summary}"
        )
        defs[f"params_{spec.code}"] = _nullable(obj)

    def rule_params(code: str) -> dict[str, Any]:
        return {"$ref": f"#/$defs/params_{code}"}

    runs_item = _object(
        {
            f.name: (
                mappings_schema({"$ref": "#/$defs/mapping"})
                if f.name == "mappings"
                else (
                    f.metadata["kind"].schema if f.name == "match" else _nullable(f.metadata["kind"].schema)
                )
            )
            | {"description": f.metadata["help"]}
            for f in dataclasses.fields(RunOverride)
        }
    )
    props: dict[str, Any] = {
        "extends": {
            "type": ["string", "null"],
            "description": "'default', or a rules file (relative to this one) to start from",
        },
        **sections,
        "select": _nullable(
            _codes_schema("rule codes or prefixes to run (ruff-style); null: every rule", codes)
        ),
        "ignore": _codes_schema("rule codes or prefixes not to run", codes),
        "levels": _by_code(
            lambda c: {"enum": list(LEVEL_NAMES)}, "rule code -> error | warning | info", codes
        ),
        "params": _by_code(rule_params, "rule code -> its parameters (docs/rules/<CODE>.md)", codes),
        "runs": {
            "type": "array",
            "description": "per-run metadata the logs may lack (later entries win)",
            "items": runs_item,
        },
        "mappings": mappings_schema({"$ref": "#/$defs/mapping"}),
        "profiles": {
            "type": "array",
            "description": "profile files of more frameworks, relative to this file (docs/plugins.md)",
            "items": {"type": "string", "minLength": 1},
        },
    }
    assert tuple(props) == TOP_KEYS
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "offrl-analyze rules file",
        "description": "Generated by `python -m analyzer.config_schema` from analyzer/config_model.py; "
        "rules/default.yaml is the annotated reference.",
        "type": ["object", "null"],
        "properties": props,
        "additionalProperties": False,
        "$defs": defs,
    }


def schema_text(plugins: bool = True) -> str:
    return json.dumps(rules_schema(plugins), indent=2, ensure_ascii=False) + "\n"


USAGE = "usage: python -m analyzer.config_schema [--builtin] [--write PATH]"


def main(argv: list[str] | None = None) -> int:
    """Print (or `--write PATH`) the rules-file JSON Schema; `--builtin`: without plugin rules, as
    published in docs/rules.schema.json (`--builtin --write docs/rules.schema.json` regenerates it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    plugins = "--builtin" not in args
    args = [a for a in args if a != "--builtin"]
    if args[:1] == ["--write"] and len(args) == 2:
        with open(args[1], "w", encoding="utf-8") as fh:
            fh.write(schema_text(plugins))
        return 0
    if args:
        print(USAGE, file=sys.stderr)
        return 2
    sys.stdout.write(schema_text(plugins))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
