"""The kinds of value a rules file holds: how each is checked, shown in an error, and written in JSON Schema.

Why one table of kinds: a threshold declared as a `fraction` must be refused the same way in every
section, by the loader and by an editor using docs/rules.schema.json, with the same words. Each
`Kind` carries the check, the normalisation (YAML `1` -> `1.0` for a float setting), the wording
of "expected ..." and its JSON Schema; the models in analyzer/config_model.py only say which kind
each key has. Errors name the file, the YAML path and what was expected, and never quote more of
the file than a short value (a rules file reached by `extends:` may be a file that must not be
shown, issue 12 item 9).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KINDS",
    "MAX_HORIZON",
    "METADATA_KEYS",
    "ConfigError",
    "Kind",
    "check_run_metadata",
    "choice",
    "param_kind",
]


class ConfigError(ValueError):
    """A rules file problem, with file, YAML path and what was expected."""


# ----------------------------------------------------------------------------------------------
# how values and places are shown in an error line


def clip(text: str, limit: int = 120) -> str:
    """One line, no control characters, at most `limit` characters: for parser messages in errors."""
    from analyzer.output.names import clean

    one = clean(" ".join(str(text).split()))
    return one if len(one) <= limit else one[: limit - 1] + "…"


def kind_only(v: Any) -> str:
    """What a value is, without any of its content."""
    if isinstance(v, str):
        return f"a string of {len(v)} characters"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if v is None:
        return "nothing (null)"
    return {"dict": "a mapping", "_Map": "a mapping", "list": "a list"}.get(
        type(v).__name__, type(v).__name__
    )


def tname(v: Any) -> str:
    """A value as an error line shows it: short scalars quoted, anything long by its kind only."""
    if isinstance(v, str):
        if len(v) > 40 or not v.isprintable():
            return f"a string of {len(v)} characters"
        return repr(v)
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"boolean {v}"
    if isinstance(v, int) and abs(v) >= 10**30:  # str() of a 5,000-digit int raises ValueError
        return "a number with more than 30 digits"
    if isinstance(v, (int, float)):
        return f"number {v}"
    return kind_only(v)


def short(v: Any) -> str:
    """repr of a value when short and printable, else its kind only."""
    try:
        text = repr(v)
    except (ValueError, RecursionError):  # an int beyond Python's digit limit for str(); deep nesting
        return kind_only(v)
    return text if len(text) <= 40 and text.isprintable() else kind_only(v)


def key_text(k: Any) -> str:
    """A mapping key as shown in a YAML path (`runs[0].gamma`): short, one line."""
    return clip(k if isinstance(k, str) else tname(k), 60)


def at_line(doc: Any, key: Any) -> str:
    """`line N: ` for a key of a mapping read from YAML (analyzer.config keeps the lines), else empty."""
    line = getattr(doc, "lines", {}).get(key) if isinstance(doc, dict) else None
    return f"line {line}: " if line else ""


def unknown_key(where: str, doc: Any, key: Any, ypath: str, expected: tuple[str, ...] | Any) -> ConfigError:
    """`x.yaml: line 3: unknown key 'colour' in runs[0]; expected one of: match, gamma, ...`."""
    inside = f" in {ypath}" if ypath else " at the top level"
    shown = repr(key_text(key)) if isinstance(key, str) else tname(key)
    return ConfigError(
        f"{where}: {at_line(doc, key)}unknown key {shown}{inside}; expected one of: {', '.join(expected)}"
    )


def is_number(v: Any) -> bool:
    """A finite number that float() can hold (math.isfinite of a 400-digit int raises OverflowError)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return math.isfinite(v) if isinstance(v, float) else abs(v) <= sys.float_info.max


def is_int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


# ----------------------------------------------------------------------------------------------
# kinds


def _same(v: Any) -> Any:
    return v


@dataclass(frozen=True)
class Kind:
    """One kind of value: `check` returns it normalised or raises "<where>: <ypath>: expected ..., got ..."."""

    expected: str  # the words after "expected"
    ok: Callable[[Any], bool]
    schema: Mapping[str, Any]
    convert: Callable[[Any], Any] = _same
    shown: Callable[[Any], str] = tname  # how the refused value is shown
    python: type = object  # the Python type of a checked value (typed models are checked against it)
    choices: tuple[str, ...] = field(default=())

    def check(self, value: Any, where: str, ypath: str) -> Any:
        if not self.ok(value):
            raise ConfigError(f"{where}: {ypath}: expected {self.expected}, got {self.shown(value)}")
        return self.convert(value)


def _number(expected: str, ok: Callable[[float], bool], schema: Mapping[str, Any]) -> Kind:
    return Kind(
        expected, lambda v: is_number(v) and ok(v), {"type": "number", **schema}, convert=float, python=float
    )


def choice(choices: tuple[str, ...]) -> Kind:
    """One of `choices` (strings)."""
    return Kind(
        "one of " + ", ".join(choices),
        lambda v: isinstance(v, str) and v in choices,
        {"enum": list(choices)},
        python=str,
        choices=tuple(choices),
    )


FRACTION = _number("a number in (0, 1]", lambda v: 0 < v <= 1, {"exclusiveMinimum": 0, "maximum": 1})
POSITIVE = _number("a positive number", lambda v: v > 0, {"exclusiveMinimum": 0})
NONNEG = _number("a number >= 0", lambda v: v >= 0, {"minimum": 0})
NUMBER = _number("a number", lambda v: True, {})
INT = Kind(
    "an integer >= 1", lambda v: is_int(v, 1), {"type": "integer", "minimum": 1}, convert=int, python=int
)
BOOL = Kind("true or false", lambda v: isinstance(v, bool), {"type": "boolean"}, python=bool)

#: `Param.kind` (rule parameters and settings) -> Kind; "choice" is built from the Param's choices.
KINDS: dict[str, Kind] = {
    "fraction": FRACTION,
    "positive": POSITIVE,
    "nonneg": NONNEG,
    "number": NUMBER,
    "int": INT,
    "bool": BOOL,
}


def param_kind(kind: str, choices: tuple[str, ...] = ()) -> Kind:
    """The Kind of a `Param` (analyzer/rules/base.py) from its `kind` name."""
    if kind == "choice":
        return choice(choices)
    return KINDS[kind]


# ----------------------------------------------------------------------------------------------
# run metadata: one validation for the CLI (--gamma), a rules file's runs: entry and a run's config file

#: Longest episode horizon accepted from any source. Longer is a typo or a unit mix-up (1e20 in a
#: config file), and would make every horizon-scaled check (UF001, ST001) vacuous.
MAX_HORIZON = 10**9
#: Keys `check_run_metadata` validates: the run metadata a CLI flag, a rules file's `runs:` entry
#: and a run's own config file can all give.
METADATA_KEYS = ("gamma", "horizon", "reward_range")


def _horizon_ok(v: Any) -> bool:
    if isinstance(v, float) and is_number(v) and v == int(v):
        v = int(v)  # 1000.0 (a YAML or JSON writer's float) is 1000 steps
    return is_int(v, 1) and v <= MAX_HORIZON


def _range_ok(v: Any) -> bool:
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(is_number(x) for x in v) and v[0] < v[1]
    return ok and math.isfinite(float(v[1]) - float(v[0]))


GAMMA = Kind(
    "a discount in [0, 1)",
    lambda v: is_number(v) and 0 <= v < 1,
    {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
    convert=float,
    python=float,
)
HORIZON = Kind(
    f"an integer >= 1 (steps, at most {MAX_HORIZON:.0e})",
    _horizon_ok,
    {"type": "integer", "minimum": 1, "maximum": MAX_HORIZON},
    convert=int,
    python=int,
)
REWARD_RANGE = Kind(
    "[r_min, r_max] with finite r_min < r_max",
    _range_ok,
    {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
    convert=lambda v: (float(v[0]), float(v[1])),
    shown=short,
    python=tuple,
)
METADATA: dict[str, Kind] = {"gamma": GAMMA, "horizon": HORIZON, "reward_range": REWARD_RANGE}


def check_run_metadata(key: str, v: Any, where: str, ypath: str) -> Any:
    """The one validation of run metadata (gamma, horizon, reward_range), whatever its source.

    Why one function: the CLI (`--gamma`), the rules file (`runs: [{gamma: ...}]`) and a run's
    config file (`config.json: {"gamma": ...}`) must accept and refuse the same values, or a value
    refused on the command line slips in through a config file (issue 12, item 18). Returns the
    normalised value; raises ConfigError "<where>: <ypath>: expected ..., got ...".
    """
    if key not in METADATA:
        raise KeyError(f"{key!r} is not run metadata; one of {', '.join(METADATA_KEYS)}")
    return METADATA[key].check(v, where, ypath)
