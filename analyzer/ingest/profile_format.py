"""The profile file format: one YAML file per implementation, read into `Profile` objects the engine runs.

Why data instead of code: what a tag means in one library (rlkit's `QF1 Loss` holds the CQL term,
CORL's `qf1_loss` does not) is a fact about that library, not logic. Kept as rows in a file it can be
read, reviewed against the library's source, documented (docs/formats.md is generated from these
files) and added to without touching the package: a rules file's `profiles: [./my_trainer.yaml]` or a
plugin's `offrl_workflow.profiles` entry point (docs/plugins.md).

Row syntax follows the rules file's `mappings:` section: `canonical: tag` or
`canonical: {tag: ..., scale: ..., kind: ..., note: ...}`, with a list of tags allowed where the first
one present wins. `FIELDS`, `ALIAS_KEYS` and `DERIVATION_KEYS` are the one description of the format:
validation, the JSON Schema (docs/profile.schema.json) and the docs table read them.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from analyzer.metrics import CANONICAL_NAMES
from analyzer.model import RawRun, Series

__all__ = [
    "Alias",
    "Derivation",
    "Profile",
    "ProfileError",
    "SharedKnowledge",
    "builtin_profiles",
    "parse_profile",
    "profile_schema",
    "shared_knowledge",
]

Formula = Callable[[RawRun], Series | None]


class ProfileError(ValueError):
    """A profile file that cannot be used: names the file, the field and what was expected.

    A rules file's `profiles:` turn it into a ConfigError (exit 2); a plugin's into a warning."""


@dataclass(frozen=True)
class Alias:
    """canonical <- first present tag among `tags`, multiplied by `scale`.

    A scale other than 1 makes the series `derived` (e.g. a loss summed over 2 critics / 2).
    """

    canonical: str
    tags: tuple[str, ...]
    kind: str = "logged"
    note: str = ""
    scale: float = 1.0
    #: config keys holding the number of critics the logged value is summed over (scale = 1/n)
    per_critic_keys: tuple[str, ...] = ()
    default_critics: int | None = None
    unless_tags: tuple[str, ...] = ()  # skip when any of these tags is present (another algorithm)
    requires_tags: tuple[str, ...] = ()  # apply only when one of these tags is present


@dataclass(frozen=True)
class Derivation:
    """canonical <- op(a, b) on steps common to both tags (`b` may be a config constant).

    `op`: "sub" (a - b), "add" (a + b), "div" (a / b), "mul" (a * b), "const" (config constant on
    the steps of `a`). `scale` multiplies the result. `per_critic_keys` as in Alias.
    """

    canonical: str
    op: str
    a: tuple[str, ...]
    b: tuple[str, ...] = ()
    b_config: tuple[str, ...] = ()  # config keys used when `b` is a constant from the config
    note: str = ""
    scale: float = 1.0
    per_critic_keys: tuple[str, ...] = ()
    default_critics: int | None = None
    when_config: tuple[str, Any] | None = None  # only when flattened config key is truthy == value
    unless_config_true: tuple[str, ...] = ()  # skip when any of these config keys is truthy
    unless_tags: tuple[str, ...] = ()  # skip when any of these tags is present (another algorithm)
    requires_tags: tuple[str, ...] = ()  # apply only when one of these tags is present
    #: apply only when this config key's value (lower-cased) is one of these strings
    when_config_in: tuple[str, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class Profile:
    """Everything known about one implementation's logs (one profile file)."""

    name: str
    #: tags whose presence identifies the implementation (each hit scores 2)
    signature_tags: tuple[str, ...] = ()
    #: regexes over the run path / file paths (each hit scores 2)
    path_patterns: tuple[str, ...] = ()
    #: config keys (flattened, suffix-matched) that hint at it (each hit scores 1)
    config_hints: tuple[str, ...] = ()
    #: reader layouts that hint at it (hit scores 2)
    layouts: tuple[str, ...] = ()
    aliases: tuple[Alias, ...] = ()
    derivations: tuple[Derivation, ...] = ()
    #: when `critic_tags` is present but none of `cql_tags` is, the TD error cannot be isolated
    critic_includes_regularizer: bool = False
    critic_tags: tuple[str, ...] = ()
    cql_tags: tuple[str, ...] = ()
    #: why td_error is absent even when everything is logged (e.g. Tianshou)
    td_unavailable: str = ""
    #: algorithm guesses from tags when the config does not say: (tag, algorithm), first hit wins
    algorithm_from_tags: tuple[tuple[str, str], ...] = ()
    default_algorithm: str | None = None
    #: counterpart tags of critic 2: canonical -> tag, noted when critic 1 was chosen
    second_critic: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: regexes over the run path whose group 1 is the seed, when no config says it
    seed_patterns: tuple[str, ...] = ()
    #: formulas too specific for a Derivation row, tried after the derivations
    custom: tuple[Formula, ...] = ()
    # ---- detection beyond scoring, and presentation ----
    #: any tag starting with this prefix claims the run before any scoring (the reference trainer)
    claim_tag_prefix: str = ""
    #: with no signature tag anywhere: claim a run whose config has >= 2 of these top-level keys and
    #: which logs a tag named like a canonical metric
    claim_config_keys: tuple[str, ...] = ()
    #: the profile used when no other fits (exactly one: `generic`)
    fallback: bool = False
    #: close relatives sharing tag names; decided on `distinguishing_tags` when both score
    rivals: tuple[str, ...] = ()
    distinguishing_tags: tuple[str, ...] = ()
    #: reader layouts on which a `step` x-axis is really the epoch, and why (d3rlpy's TensorBoard)
    step_is_epoch_layouts: tuple[str, ...] = ()
    step_is_epoch_note: str = ""
    #: extra config keys for run metadata, tried before the shared ones (metadata field -> keys)
    metadata_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: tie-break rank in detection (lower first); built-ins 10-130, added profiles 500 by default
    order: int = 500
    label: str = ""  # how reasons name it ("reference trainer"); the name when empty
    title: str = ""  # docs heading after the name
    doc: str = ""  # hand-written Markdown for docs/formats.md
    #: where it came from: "builtin", a file path, or "plugin <entry point>"
    origin: str = ""
    source: str = ""  # the file it was read from, as named in messages
    custom_paths: tuple[str, ...] = ()  # the import paths of `custom`, as written

    @property
    def who(self) -> str:
        return self.label or self.name


# --------------------------------------------------------------------------------------------------
# The format, described once
# --------------------------------------------------------------------------------------------------

#: metadata fields a profile's `metadata_keys` may extend (the shared file lists the defaults)
METADATA_FIELDS = (
    "algorithm",
    "gamma",
    "reward_range",
    "reward_min",
    "reward_max",
    "horizon",
    "seed",
    "dataset_mc_return",
    "warm_start",
    "checkpoint_interval",
    "checkpoint_interval_epochs",
    "steps_per_epoch",
    "widths",
    "width",
    "depth",
    "encoder",
)

OPS = ("sub", "add", "div", "mul", "const")
KINDS = ("logged", "derived", "proxy")
_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_IMPORT_RE = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


@dataclass(frozen=True)
class Field:
    """One key of a profile file: its JSON type (the schema) and what it means (schema description)."""

    name: str
    kind: str  # name | text | strings | regexes | int | bool | aliases | derivations | pairs | critic2 | mdkeys | imports
    help: str


FIELDS: tuple[Field, ...] = (
    Field("name", "name", "Profile name: what `Run.framework` says and `mappings: {framework: ...}` forces."),
    Field("title", "text", "Docs heading after the name: the implementation, its upstream, its files."),
    Field("doc", "text", "Hand-written Markdown for docs/formats.md (what is missing, known limits)."),
    Field("label", "text", "How detection reasons name the implementation (default: the name)."),
    Field("order", "int", "Tie-break rank in detection, lower first (built-ins 10-130; default 500)."),
    Field(
        "signature_tags",
        "strings",
        "Tags that identify the implementation; each hit scores 2 (1 as a '/'-suffix).",
    ),
    Field("path_patterns", "regexes", "Regexes over the run path and file paths; each hit scores 2."),
    Field(
        "config_hints",
        "strings",
        "Config keys (flattened, '.'-suffix matched) that hint at it; each scores 1.",
    ),
    Field(
        "layouts",
        "strings",
        "Reader layouts that hint at it (`progress_csv`, `d3rlpy_tb`, ...); a hit scores 2.",
    ),
    Field(
        "claim_tag_prefix",
        "text",
        "Any tag with this prefix claims the run before scoring (the reference trainer).",
    ),
    Field(
        "claim_config_keys",
        "strings",
        "When no profile's signature tag is present: claim a run whose config has two of these top-level "
        "keys and which logs a tag named like a canonical metric.",
    ),
    Field("fallback", "bool", "The profile used when no other fits (only `generic`)."),
    Field("rivals", "strings", "Profiles sharing tag names; when both score, `distinguishing_tags` decide."),
    Field("distinguishing_tags", "strings", "Tags only this profile (not its rivals) logs."),
    Field("step_is_epoch_layouts", "strings", "Reader layouts whose `step` x-axis is really the epoch."),
    Field("step_is_epoch_note", "text", "Why (recorded in `metadata.sources['x_unit']`)."),
    Field(
        "aliases",
        "aliases",
        "Rows `canonical: tag | {tag, ...}`, tried in order; the first row that resolves wins.",
    ),
    Field(
        "derivations",
        "derivations",
        "Rows `canonical: {op, a, b | b_config, ...}` filling what no alias gave.",
    ),
    Field(
        "custom",
        "imports",
        "Python formulas `module:function(raw) -> Series | None`, tried after the derivations.",
    ),
    Field(
        "critic_includes_regularizer",
        "bool",
        "The critic loss holds the conservative term: with `critic_tags` logged and no `cql_tags`, warn "
        "that the TD error cannot be isolated.",
    ),
    Field("critic_tags", "strings", "The critic-loss tags meant above."),
    Field("cql_tags", "strings", "The conservative-term tags meant above."),
    Field("td_unavailable", "text", "Why td_error is absent even when everything is logged (an info issue)."),
    Field(
        "algorithm_from_tags",
        "pairs",
        "`{tag, algorithm}` guesses when the config names none; first hit wins.",
    ),
    Field("default_algorithm", "text", "The algorithm when neither the config nor a tag says."),
    Field("second_critic", "critic2", "canonical -> critic-2 tag(s), noted when critic 1 was read."),
    Field("seed_patterns", "regexes", "Regexes over the run path whose group 1 is the seed."),
    Field("metadata_keys", "mdkeys", "Extra config keys per metadata field, tried before the shared ones."),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)

#: keys of an alias row's mapping form: (kind, help)
ALIAS_KEYS: dict[str, tuple[str, str]] = {
    "tag": ("tags", "The tag, or a list of tags of which the first present is read."),
    "kind": ("kind", "logged (default), derived or proxy."),
    "note": ("text", "What the tag holds in this implementation; shown with the series."),
    "scale": ("number", "Multiply the values (makes the series derived)."),
    "per_critic_keys": ("strings", "Config keys holding the number of critics the value is summed over."),
    "default_critics": ("int", "The number of critics when no such key is in the config."),
    "unless_tags": ("strings", "Skip the row when any of these tags is logged (another algorithm)."),
    "requires_tags": ("strings", "Apply the row only when one of these tags is logged."),
}
#: keys of a derivation row: (kind, help)
DERIVATION_KEYS: dict[str, tuple[str, str]] = {
    "op": ("op", "sub (a - b), add, div, mul, or const (a config constant on the steps of a)."),
    "a": ("tags", "First operand: a tag or a list of tags (first present)."),
    "b": ("tags", "Second operand as a tag (steps common to both are kept)."),
    "b_config": ("tags", "Second operand as a config constant: a key, or keys tried in order."),
    "note": ("text", "The formula in words; shown with the series."),
    "scale": ("number", "Multiply the result."),
    "per_critic_keys": ("strings", "As in alias rows: divide by the number of critics."),
    "default_critics": ("int", "As in alias rows."),
    "when_config": ("when", "`{key: true|false}`: only when that config flag has this truth value."),
    "unless_config_true": ("strings", "Skip when any of these config keys is true."),
    "unless_tags": ("strings", "Skip when any of these tags is logged."),
    "requires_tags": ("strings", "Only when one of these tags is logged."),
    "when_config_in": ("when_in", "`{key: [values]}`: only when the config value (lower-cased) is listed."),
}


# --------------------------------------------------------------------------------------------------
# Validation: YAML document -> Profile
# --------------------------------------------------------------------------------------------------


class _Where:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> ProfileError:
        return ProfileError(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")


def _text(v: Any, w: _Where, path: str) -> str:
    if not isinstance(v, str):
        raise w.fail(path, f"expected a string, got {type(v).__name__}")
    return v


def _strings(v: Any, w: _Where, path: str, allow_one: bool = False) -> tuple[str, ...]:
    if allow_one and isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        what = "a string or a list of strings" if allow_one else "a list of strings"
        raise w.fail(path, f"expected {what}")
    return tuple(v)


def _regexes(v: Any, w: _Where, path: str) -> tuple[str, ...]:
    out = _strings(v, w, path)
    for i, pat in enumerate(out):
        try:
            re.compile(pat)
        except re.error as exc:
            raise w.fail(f"{path}[{i}]", f"not a regular expression ({exc})") from None
    return out


def _int(v: Any, w: _Where, path: str, minimum: int | None = None) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or (minimum is not None and v < minimum):
        raise w.fail(path, "expected an integer" + (f" >= {minimum}" if minimum is not None else ""))
    return v


def _number(v: Any, w: _Where, path: str) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v or v in (float("inf"), -float("inf")):
        raise w.fail(path, "expected a finite number")
    return float(v)


def _bool(v: Any, w: _Where, path: str) -> bool:
    if not isinstance(v, bool):
        raise w.fail(path, "expected true or false")
    return v


def _canonical(k: Any, w: _Where, path: str) -> str:
    if k not in CANONICAL_NAMES:
        raise w.fail(path, f"unknown canonical metric {k!r}; expected one of {', '.join(CANONICAL_NAMES)}")
    return str(k)


def _row(v: Any, w: _Where, path: str) -> tuple[str, Any]:
    if not isinstance(v, dict) or len(v) != 1:
        raise w.fail(path, "expected a one-key mapping `canonical: ...`")
    ((k, spec),) = v.items()
    return _canonical(k, w, path), spec


def _unknown(
    spec: Mapping[str, Any], known: Mapping[str, Any] | tuple[str, ...], w: _Where, path: str
) -> None:
    extra = [k for k in spec if k not in known]
    if extra:
        raise w.fail(path, f"unknown key {extra[0]!r}; expected one of {', '.join(known)}")


def _alias(v: Any, w: _Where, path: str) -> Alias:
    canonical, spec = _row(v, w, path)
    path = f"{path}.{canonical}"
    if isinstance(spec, (str, list)):
        return Alias(canonical, _strings(spec, w, path, allow_one=True))
    if not isinstance(spec, dict) or "tag" not in spec:
        raise w.fail(path, "expected a tag, a list of tags, or a mapping with `tag`")
    _unknown(spec, ALIAS_KEYS, w, path)
    kind = spec.get("kind", "logged")
    if kind not in KINDS:
        raise w.fail(f"{path}.kind", f"expected one of {', '.join(KINDS)}")
    return Alias(
        canonical,
        _strings(spec["tag"], w, f"{path}.tag", allow_one=True),
        kind=kind,
        note=_text(spec.get("note", ""), w, f"{path}.note"),
        scale=_number(spec.get("scale", 1.0), w, f"{path}.scale"),
        per_critic_keys=_strings(spec.get("per_critic_keys", []), w, f"{path}.per_critic_keys"),
        default_critics=_int(spec["default_critics"], w, f"{path}.default_critics", 1)
        if "default_critics" in spec
        else None,
        unless_tags=_strings(spec.get("unless_tags", []), w, f"{path}.unless_tags"),
        requires_tags=_strings(spec.get("requires_tags", []), w, f"{path}.requires_tags"),
    )


def _derivation(v: Any, w: _Where, path: str) -> Derivation:
    canonical, spec = _row(v, w, path)
    path = f"{path}.{canonical}"
    if not isinstance(spec, dict) or "op" not in spec or "a" not in spec:
        raise w.fail(path, "expected a mapping with `op` and `a`")
    _unknown(spec, DERIVATION_KEYS, w, path)
    if spec["op"] not in OPS:
        raise w.fail(f"{path}.op", f"expected one of {', '.join(OPS)}")
    if "b" in spec and "b_config" in spec:
        raise w.fail(path, "give `b` (a tag) or `b_config` (a config constant), not both")
    if spec["op"] in ("sub", "add") and "b" not in spec:
        raise w.fail(path, f"op {spec['op']} needs `b`")
    if spec["op"] == "const" and "b_config" not in spec:
        raise w.fail(path, "op const needs `b_config`")
    when = None
    if "when_config" in spec:
        wc = spec["when_config"]
        if not isinstance(wc, dict) or len(wc) != 1 or not isinstance(next(iter(wc.values())), bool):
            raise w.fail(f"{path}.when_config", "expected `{config_key: true|false}`")
        ((wk, wv),) = wc.items()
        when = (str(wk), wv)
    when_in = None
    if "when_config_in" in spec:
        wi = spec["when_config_in"]
        if not isinstance(wi, dict) or len(wi) != 1:
            raise w.fail(f"{path}.when_config_in", "expected `{config_key: [values]}`")
        ((ik, iv),) = wi.items()
        when_in = (str(ik), _strings(iv, w, f"{path}.when_config_in.{ik}"))
    return Derivation(
        canonical,
        spec["op"],
        _strings(spec["a"], w, f"{path}.a", allow_one=True),
        b=_strings(spec.get("b", []), w, f"{path}.b", allow_one=True),
        b_config=_strings(spec.get("b_config", []), w, f"{path}.b_config", allow_one=True),
        note=_text(spec.get("note", ""), w, f"{path}.note"),
        scale=_number(spec.get("scale", 1.0), w, f"{path}.scale"),
        per_critic_keys=_strings(spec.get("per_critic_keys", []), w, f"{path}.per_critic_keys"),
        default_critics=_int(spec["default_critics"], w, f"{path}.default_critics", 1)
        if "default_critics" in spec
        else None,
        when_config=when,
        unless_config_true=_strings(spec.get("unless_config_true", []), w, f"{path}.unless_config_true"),
        unless_tags=_strings(spec.get("unless_tags", []), w, f"{path}.unless_tags"),
        requires_tags=_strings(spec.get("requires_tags", []), w, f"{path}.requires_tags"),
        when_config_in=when_in,
    )


def import_object(path: str) -> Any:
    """`package.module:attribute` -> the object (ImportError / AttributeError propagate)."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _formulas(v: Any, w: _Where, path: str) -> tuple[tuple[str, ...], tuple[Formula, ...]]:
    names = _strings(v, w, path)
    fns = []
    for i, name in enumerate(names):
        if not re.match(_IMPORT_RE, name):
            raise w.fail(f"{path}[{i}]", f"expected `package.module:function`, got {name!r}")
        try:
            fn = import_object(name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the file's problem, reported
            raise w.fail(f"{path}[{i}]", f"cannot import {name}: {type(exc).__name__}: {exc}") from None
        if not callable(fn):
            raise w.fail(f"{path}[{i}]", f"{name} is not callable")
        fns.append(fn)
    return names, tuple(fns)


def parse_profile(doc: Any, source: str, origin: str = "") -> Profile:
    """A profile file's document -> Profile; ProfileError naming `source`, the field and the problem."""
    w = _Where(source)
    if not isinstance(doc, dict):
        raise w.fail(
            "", f"expected a mapping at the top level (is this a profile file?), got {type(doc).__name__}"
        )
    _unknown(doc, FIELD_NAMES, w, "")
    if "name" not in doc:
        raise w.fail("", "missing `name`")
    name = _text(doc["name"], w, "name")
    if not re.match(_NAME_RE, name):
        raise w.fail("name", f"expected lower-case letters, digits, '_', '-', '.', got {name!r}")
    kw: dict[str, Any] = {"name": name, "origin": origin or source, "source": source}
    for f in FIELDS:
        if f.name == "name" or f.name not in doc:
            continue
        v = doc[f.name]
        if f.kind == "text":
            kw[f.name] = _text(v, w, f.name)
        elif f.kind == "strings":
            kw[f.name] = _strings(v, w, f.name)
        elif f.kind == "regexes":
            kw[f.name] = _regexes(v, w, f.name)
        elif f.kind == "int":
            kw[f.name] = _int(v, w, f.name, 0)
        elif f.kind == "bool":
            kw[f.name] = _bool(v, w, f.name)
        elif f.kind == "aliases":
            if not isinstance(v, list):
                raise w.fail(f.name, "expected a list of rows")
            kw[f.name] = tuple(_alias(r, w, f"{f.name}[{i}]") for i, r in enumerate(v))
        elif f.kind == "derivations":
            if not isinstance(v, list):
                raise w.fail(f.name, "expected a list of rows")
            kw[f.name] = tuple(_derivation(r, w, f"{f.name}[{i}]") for i, r in enumerate(v))
        elif f.kind == "imports":
            kw["custom_paths"], kw["custom"] = _formulas(v, w, f.name)
        elif f.kind == "pairs":
            if not isinstance(v, list):
                raise w.fail(f.name, "expected a list of {tag, algorithm}")
            pairs = []
            for i, p in enumerate(v):
                if not isinstance(p, dict) or set(p) != {"tag", "algorithm"}:
                    raise w.fail(f"{f.name}[{i}]", "expected {tag: <tag>, algorithm: <name>}")
                pairs.append(
                    (
                        _text(p["tag"], w, f"{f.name}[{i}].tag"),
                        _text(p["algorithm"], w, f"{f.name}[{i}].algorithm"),
                    )
                )
            kw[f.name] = tuple(pairs)
        elif f.kind == "critic2":
            if not isinstance(v, dict):
                raise w.fail(f.name, "expected a mapping canonical -> tag(s)")
            kw[f.name] = {
                _canonical(k, w, f"{f.name}.{k}"): _strings(t, w, f"{f.name}.{k}", allow_one=True)
                for k, t in v.items()
            }
        elif f.kind == "mdkeys":
            if not isinstance(v, dict):
                raise w.fail(f.name, "expected a mapping metadata field -> config keys")
            for k in v:
                if k not in METADATA_FIELDS:
                    raise w.fail(
                        f"{f.name}.{k}",
                        f"unknown metadata field; expected one of {', '.join(METADATA_FIELDS)}",
                    )
            kw[f.name] = {str(k): _strings(t, w, f"{f.name}.{k}") for k, t in v.items()}
        else:  # pragma: no cover - FIELDS and this function change together
            raise AssertionError(f.kind)
    if "default_algorithm" in kw and not kw["default_algorithm"]:
        kw["default_algorithm"] = None
    return Profile(**kw)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _builtin_dir() -> Any:
    return resources.files("analyzer") / "profiles"


@cache
def builtin_profiles() -> tuple[Profile, ...]:
    """The package's profile files (analyzer/profiles/*.yaml; `_*.yaml` hold shared data), in `order`."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # trusted package data: the fast loader
    out = []
    for entry in sorted(_builtin_dir().iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml") or entry.name.startswith("_"):
            continue
        doc = yaml.load(entry.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a SafeLoader
        out.append(parse_profile(doc, f"analyzer/profiles/{entry.name}", "builtin"))
    return tuple(sorted(out, key=lambda p: (p.order, p.name)))


@dataclass(frozen=True)
class SharedKnowledge:
    """What holds for every implementation (analyzer/profiles/_shared.yaml)."""

    metadata_keys: dict[str, tuple[str, ...]]
    algorithm_names: dict[str, str]
    seed_path_patterns: tuple[str, ...]
    reward_tags: dict[str, tuple[str, ...]]
    pure_td_algorithms: frozenset[str]
    canonical_fallback: dict[str, tuple[str, ...]]
    #: (canonical, why) stand-ins for q_data, first present wins
    q_data_proxies: tuple[tuple[str, str], ...]


@cache
def shared_knowledge() -> SharedKnowledge:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc = yaml.load((_builtin_dir() / "_shared.yaml").read_text(encoding="utf-8"), Loader=loader)  # noqa: S506
    return SharedKnowledge(
        metadata_keys={k: tuple(v) for k, v in doc["metadata_keys"].items()},
        algorithm_names=dict(doc["algorithm_names"]),
        seed_path_patterns=tuple(doc["seed_path_patterns"]),
        reward_tags={k: tuple(v) for k, v in doc["reward_tags"].items()},
        pure_td_algorithms=frozenset(doc["pure_td_algorithms"]),
        canonical_fallback={k: tuple(v) for k, v in doc["canonical_fallback"].items()},
        q_data_proxies=tuple((p["canonical"], p["note"]) for p in doc["q_data_proxies"]),
    )


# --------------------------------------------------------------------------------------------------
# JSON Schema (docs/profile.schema.json is this, a test keeps it in sync)
# --------------------------------------------------------------------------------------------------


def _json_type(kind: str, help: str) -> dict[str, Any]:
    strings = {"type": "array", "items": {"type": "string", "minLength": 1}}
    one_or_more = {"oneOf": [{"type": "string", "minLength": 1}, strings]}
    table: dict[str, dict[str, Any]] = {
        "name": {"type": "string", "pattern": _NAME_RE},
        "text": {"type": "string"},
        "strings": strings,
        "regexes": strings,
        "tags": one_or_more,
        "int": {"type": "integer", "minimum": 0},
        "number": {"type": "number"},
        "bool": {"type": "boolean"},
        "kind": {"enum": list(KINDS)},
        "op": {"enum": list(OPS)},
        "when": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": {"type": "boolean"},
        },
        "when_in": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": strings,
        },
        "imports": {"type": "array", "items": {"type": "string", "pattern": _IMPORT_RE}},
        "pairs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["tag", "algorithm"],
                "additionalProperties": False,
                "properties": {"tag": {"type": "string"}, "algorithm": {"type": "string"}},
            },
        },
        "critic2": {
            "type": "object",
            "propertyNames": {"enum": list(CANONICAL_NAMES)},
            "additionalProperties": one_or_more,
        },
        "mdkeys": {
            "type": "object",
            "propertyNames": {"enum": list(METADATA_FIELDS)},
            "additionalProperties": strings,
        },
        "aliases": {"type": "array", "items": {"$ref": "#/$defs/alias_row"}},
        "derivations": {"type": "array", "items": {"$ref": "#/$defs/derivation_row"}},
    }
    return {**table[kind], "description": help}


def _row_schema(keys: Mapping[str, tuple[str, str]], required: list[str], allow_str: bool) -> dict[str, Any]:
    spec = {
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "properties": {k: _json_type(kind, help) for k, (kind, help) in keys.items()},
    }
    tags = {"type": "array", "items": {"type": "string", "minLength": 1}}
    short = [{"type": "string", "minLength": 1}, tags]
    value: dict[str, Any] = {"oneOf": [*short, spec]} if allow_str else spec
    return {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "propertyNames": {"enum": list(CANONICAL_NAMES)},
        "additionalProperties": value,
    }


def profile_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a profile file, for editors and for checking files in CI."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://offrl-workflow/docs/profile.schema.json",
        "title": "offrl-workflow profile file",
        "description": "One implementation's logs: how to detect them and which tag means which canonical "
        "metric (docs/formats.md, docs/plugins.md). Generated by "
        "`python -m analyzer.ingest.profile_docs --write`.",
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {f.name: _json_type(f.kind, f.help) for f in FIELDS},
        "$defs": {
            "alias_row": _row_schema(ALIAS_KEYS, ["tag"], allow_str=True),
            "derivation_row": _row_schema(DERIVATION_KEYS, ["op", "a"], allow_str=False),
        },
    }
