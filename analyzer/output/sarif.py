"""`--format sarif`: SARIF 2.1.0 for GitHub code scanning and other static-analysis dashboards.

`tool.driver.rules` lists every rule the engine knows (`analyzer.rules.all_rules()`), so a
dashboard can show rules that did not fire; each result points at the run's log file.
Strings are JSON-safe as in `--format json` (undecodable bytes as `\\xNN`, analyzer.output.names).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

from analyzer import __version__
from analyzer.output.common import display_path, log_file
from analyzer.output.names import json_safe
from analyzer.report import Report

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
INGEST_RULE = {
    "id": "INGEST",
    "name": "ingest-problem",
    "shortDescription": {"text": "A log file could not be read completely."},
    "defaultConfiguration": {"level": "error"},
}


def _known_rules() -> list[dict[str, Any]]:
    """Rule descriptors from the diagnosis engine's registry (empty if the registry is unavailable)."""
    try:
        from analyzer.rules import all_rules
    except ImportError:
        return []
    rules = []
    for info in all_rules():
        rule: dict[str, Any] = {
            "id": info.code,
            "name": info.name,
            "shortDescription": {"text": info.summary},
            "defaultConfiguration": {"level": _LEVEL.get(info.level, "warning")},
        }
        props: dict[str, Any] = {}
        doc = getattr(info, "doc_path", None)
        if doc:  # repository-relative; no public URL is assumed
            props["docPath"] = str(doc)
            rule["help"] = {"text": f"offrl-analyze explain {info.code} (or {doc})"}
        params = getattr(info, "params", None)
        if params:
            props["parameters"] = json.loads(json.dumps(params, default=str))
        if props:
            rule["properties"] = props
        rules.append(rule)
    return rules


def _location(path: str) -> dict[str, Any]:
    """A SARIF location for a (display) path: a URI reference, so the path's bytes are %-encoded.

    Why bytes: a space, `%` or `#` in a folder name would otherwise make an invalid or different
    URI, and a name that is not UTF-8 is written back as the bytes it is on disk (`%FF`).
    """
    uri = quote(os.fsencode(path), safe="/")
    return {"physicalLocation": {"artifactLocation": {"uri": uri}}}


def sarif_dict(report: Report) -> dict[str, Any]:
    rules = _known_rules()
    index = {r["id"]: i for i, r in enumerate(rules)}

    def rule_index(code: str, name: str, level: str) -> int:
        if code not in index:  # a rule the registry did not list: still describe it
            rules.append(
                {
                    "id": code,
                    "name": name,
                    "shortDescription": {"text": name},
                    "defaultConfiguration": {"level": _LEVEL.get(level, "warning")},
                }
            )
            index[code] = len(rules) - 1
        return index[code]

    results: list[dict[str, Any]] = []
    for r in report.runs:
        uri = log_file(r)
        for f in r.findings:
            props: dict[str, Any] = {"run": r.run.id, "verdict": r.verdict}
            if f.steps:
                props["steps"] = list(f.steps)
            props["evidence"] = f.to_dict()["evidence"]
            results.append(
                {
                    "ruleId": f.code,
                    "ruleIndex": rule_index(f.code, f.name, f.level),
                    "level": _LEVEL.get(f.level, "warning"),
                    "message": {"text": f"[{r.run.id}] {f.message}"},
                    "locations": [_location(uri)],
                    "properties": props,
                }
            )
        for i in r.run.issues:
            results.append(_ingest_result(i, rule_index, r.run.id))
    for e in report.errors:
        results.append(_ingest_result(e, rule_index, None))
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "offrl-analyze",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }


def _ingest_result(issue, rule_index, run_id: str | None) -> dict[str, Any]:
    idx = rule_index(INGEST_RULE["id"], INGEST_RULE["name"], "error")
    prefix = f"[{run_id}] " if run_id else ""
    return {
        "ruleId": INGEST_RULE["id"],
        "ruleIndex": idx,
        "level": _LEVEL.get(issue.level, "warning"),
        "message": {"text": prefix + issue.message},
        "locations": [_location(display_path(issue.path))],
    }


def render_sarif(report: Report) -> str:
    return json.dumps(json_safe(sarif_dict(report)), indent=2, allow_nan=False) + "\n"
