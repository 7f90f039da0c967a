"""Small helpers shared by the profile engine and the Python formulas profiles reference.

Why a module of its own: the engine (analyzer/ingest/profiles.py) and the rare formula that a profile
file names by import path (analyzer/ingest/formulas.py, or a plugin's module) must read tags and
config values the same way - suffix matching, lenient numbers, arithmetic on shared steps - or the
same log would mean different things depending on which of them looked at it.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from analyzer.model import Series

__all__ = [
    "as_float",
    "as_int",
    "as_list",
    "combine",
    "config_get",
    "copy_series",
    "find_tag",
    "has_tag",
    "truthy",
]


def find_tag(tags: Iterable[str], candidates: Iterable[str]) -> str | None:
    """First candidate present in `tags`, exactly or as a '/'-suffix.

    Why suffix matching: readers prefix tags by the sub-directory they came from (BRAC's
    `train/q_loss`, TensorBoard's `metrics/critic_loss`), and the same implementation may be read
    from CSV (no prefix) or event files. Exact names win; among suffix matches the shortest wins.
    """
    tag_list = list(tags)
    tag_set = set(tag_list)
    for cand in candidates:
        if cand in tag_set:
            return cand
        suffix = "/" + cand
        hits = [t for t in tag_list if t.endswith(suffix)]
        if hits:
            return min(hits, key=lambda t: (len(t), t))
    return None


def has_tag(tags: Iterable[str], name: str) -> bool:
    return find_tag(tags, [name]) is not None


def config_get(config: Mapping[str, Any], keys: Iterable[str]) -> tuple[str, Any] | None:
    """(key, value) for the first key found exactly or as a '.'-suffix of a flattened key."""
    for key in keys:
        if key in config and config[key] is not None:
            return key, config[key]
        hits = sorted(
            (k for k in config if str(k).endswith("." + key) and config[k] is not None),
            key=lambda k: len(str(k)),
        )
        if hits:
            return hits[0], config[hits[0]]
    return None


def as_float(value: Any, keep_inf: bool = False) -> float | None:
    """A config value as a float; None when it is not a number (or, unless `keep_inf`, not finite).

    An int too large for a float (a 1000-digit number in a config file) becomes +-inf, never an
    OverflowError; `keep_inf` lets metadata validation report such values instead of ignoring them.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        try:
            f = float(value)
        except OverflowError:
            f = -math.inf if value < 0 else math.inf
    elif isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return f if keep_inf or math.isfinite(f) else None


def as_int(value: Any) -> int | None:
    f = as_float(value)
    if f is None or f != int(f):
        return None
    return int(f)


def as_list(value: Any) -> list[Any] | None:
    """Lists arrive as lists, tuples, JSON/python strings ("[256, 256]") or dashed strings ("256-256")."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\s*[-x,]\s*\d+)+", text):
            return [int(p) for p in re.split(r"\s*[-x,]\s*", text)]
        if text.startswith(("[", "(")):
            for parser in (json.loads, ast.literal_eval):
                try:
                    out = parser(text)
                except (ValueError, SyntaxError, TypeError):
                    continue
                if isinstance(out, (list, tuple)):
                    return list(out)
    return None


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def copy_series(src: Series, name: str, **kw: Any) -> Series:
    """A renamed view of `src`: arrays are shared with `Run.raw`, not copied.

    Why: copying was half of `resolve`'s time on million-point runs (docs/formats.md); nothing
    downstream edits series in place. Scaled series get new arrays from the multiplication.
    """
    return Series(
        name=name,
        steps=src.steps,
        values=src.values,
        wall_time=src.wall_time,
        x_unit=src.x_unit,
        sources=kw.pop("sources", src.sources),
        files=kw.pop("files", src.files),
        **kw,
    )


def combine(a: Series, b: Series, op: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Apply `op` on the steps both series share (logs may record tags on different steps)."""
    common, ia, ib = np.intersect1d(a.steps, b.steps, assume_unique=True, return_indices=True)
    va, vb = a.values[ia], b.values[ib]
    with np.errstate(divide="ignore", invalid="ignore"):
        if op == "sub":
            out = va - vb
        elif op == "add":
            out = va + vb
        elif op == "div":
            out = va / vb
        elif op == "mul":
            out = va * vb
        else:  # pragma: no cover - guarded by the profile file validation
            raise ValueError(op)
    wt = None if a.wall_time is None else a.wall_time[ia]
    return common, out, wt
