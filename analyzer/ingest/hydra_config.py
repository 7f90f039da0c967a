"""Hydra run metadata: `.hydra/config.yaml` and `.hydra/overrides.yaml` of the run's output folder.

Why: Hydra apps (TorchRL's offline CQL script among them) keep their hyperparameters in no config
file of their own: Hydra composes the config, applies the command-line overrides, and saves into the
job's output folder `.hydra/config.yaml` (the composed config: gamma, widths, seed ...),
`.hydra/overrides.yaml` (the overrides as typed: `- loss.gamma=0.95`) and `.hydra/hydra.yaml`
(Hydra's own settings, not read). The training logs sit in that folder or below it: TorchRL's
loggers write `<output>/cql_logging/<exp>/`, torch's SummaryWriter `<output>/runs/<stamp>/`. So the
`.hydra/` folder is looked for in the run directory and up to two folders above it (the first one
found is the run's), never further.

What is read: config.yaml like any YAML config (flattened to `loss.gamma`); Hydra saves it with
interpolations unresolved (`exp_name: cql_${replay_buffer.dataset}`), so `${a.b}` references to keys
of the same file are resolved (resolvers such as `${oc.env:X}` and relative `${.x}` stay as written).
overrides.yaml adds what config.yaml lacks (when it is missing or broken): `key=value`, `+key=value`
and `++key=value` entries, values read as Hydra reads them (numbers, bools, null, lists); deletions
`~key` and sweep syntax are not values and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from analyzer.model import IngestIssue

__all__ = ["HYDRA_DIR", "MAX_LEVELS_UP", "find_hydra_dir", "overrides_mapping", "resolve_interpolations"]

HYDRA_DIR = ".hydra"
#: how far above the run directory the `.hydra/` folder may be (TorchRL: <output>/cql_logging/<exp>/)
MAX_LEVELS_UP = 2
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*)\}")
_MAX_DEPTH = 10  # interpolation chains longer than this (or cycles) stay unresolved


def find_hydra_dir(run_dir: Path) -> Path | None:
    """The `.hydra/` folder of the Hydra job that wrote this run, or None."""
    d = run_dir
    for _ in range(MAX_LEVELS_UP + 1):
        candidate = d / HYDRA_DIR
        try:
            if (candidate / "config.yaml").is_file() or (candidate / "overrides.yaml").is_file():
                return candidate
        except OSError:
            return None
        if d.parent == d:
            return None
        d = d.parent
    return None


def resolve_interpolations(flat: dict[str, Any]) -> int:
    """Replace `${a.b}` in string values by the value of key `a.b` of `flat`, in place; how many.

    A value that is one whole reference takes the referenced value's type (`${loss.gamma}` -> 0.99);
    a reference inside text is replaced by its text (`cql_${dataset}` -> `cql_hopper`).
    """
    done = 0
    for key in list(flat):
        value = flat[key]
        if not isinstance(value, str) or "${" not in value:
            continue
        new = value
        for _ in range(_MAX_DEPTH):
            whole = _REF.fullmatch(new)
            if whole:
                target = flat.get(whole.group(1), _MISSING)
                if target is _MISSING or target is value:
                    break
                new = target
                if not isinstance(new, str) or "${" not in new:
                    break
                continue
            replaced = _REF.sub(lambda m: _text(flat, m), new)
            if replaced == new:
                break
            new = replaced
            if "${" not in new:
                break
        if new != value and not (isinstance(new, str) and _REF.search(new)):
            flat[key] = new
            done += 1
    return done


_MISSING = object()


def _text(flat: Mapping[str, Any], m: re.Match[str]) -> str:
    target = flat.get(m.group(1), _MISSING)
    if target is _MISSING or isinstance(target, (dict, list)):
        return m.group(0)
    if target is None:
        return "None"
    if isinstance(target, bool):
        return "True" if target else "False"
    return str(target)


def _value(text: str) -> Any:
    """An override value as Hydra reads it (the grammar's primitives are YAML 1.2-like)."""
    s = text.strip()
    try:
        return int(s.replace("_", "")) if re.fullmatch(r"[+-]?\d[\d_]*", s) else float(s)
    except ValueError:
        pass
    try:
        value = yaml.safe_load(s)
    except yaml.YAMLError:
        return text
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return value
    return text


def overrides_mapping(items: Any, source: str, issues: list[IngestIssue]) -> dict[str, Any]:
    """`.hydra/overrides.yaml` (a YAML list of `key=value` strings) as {key: value}."""
    if not isinstance(items, list):
        issues.append(IngestIssue(source, "Hydra overrides file is not a list of key=value entries; ignored"))
        return {}
    out: dict[str, Any] = {}
    skipped = 0
    for item in items:
        if not isinstance(item, str) or "=" not in item or item.startswith("~"):
            skipped += 1
            continue
        key, _, value = item.partition("=")
        key = key.lstrip("+").split("@", 1)[0].strip()
        if not key or key.startswith("hydra.") or key == "hydra":
            continue  # Hydra's own settings (hydra.run.dir=...), not the run's
        if re.match(r"^\s*(choice|range|interval|tag|glob|shuffle|sort)\(", value):
            skipped += 1  # sweep syntax: a multirun job's own overrides.yaml has the chosen value
            continue
        out[key] = _value(value)
    if skipped:
        issues.append(
            IngestIssue(source, f"{skipped} Hydra override(s) are not key=value settings; not read", "info")
        )
    return out
