"""Rules file (YAML) loading: safe reading, `extends:` chains, merging into a typed `RulesConfig`.

Shape (rules/default.yaml is the annotated reference; every threshold lives there; the keys, their
types and their checks are declared once in analyzer/config_model.py, which also generates
docs/rules.schema.json for editors):

    extends: default            # or a path relative to this file; omitted = start from nothing but code defaults
    analysis:   {tail_fraction: 0.2, skip_warm_start: true}
    smoothing:  {method: ema, weight: 0.6, analysis_method: ema2, analysis_weight: 0.8, window: 11}
    changepoints: {algorithm: pelt, cost: l2-slope, penalty_scale: 1.0, max_points: 500, min_size: 5}
    verdict:    {precedence: overfitting-first}    # or underfitting-first
    checkpoint: {pick: higher-q-around-peak}       # or at-or-before-peak, next-after-peak
    select: [OF, UF001]         # prefix match like ruff; default: all
    ignore: [CQ]
    levels: {UF001: error}
    params: {OF001: {min_drop_fraction: 0.3}}
    runs:   [{match: "sweep/*", gamma: 0.99, reward_range: [0, 1], horizon: 30, dataset_mc_return: 4.2,
              checkpoint_interval: 5, warm_start: 10000, capacity_group: widths, mappings: {q_data: my/q}}]
    mappings: {framework: rlkit, q_data: "trainer/Q1 Predictions Mean", td_error: {tag: "x/td", scale: 1.0}}
    profiles: [./my_trainer.yaml]   # more frameworks: profile files, relative to this file (docs/plugins.md)

Settings are typed attributes: `cfg.settings.changepoints.min_size` (an int).

Every problem raises ConfigError naming the file, the line and YAML path, and what was expected;
the CLI turns it into exit code 2. Only a `yaml.SafeLoader` is used. A rules file (given with
`--rules` or reached by `extends:`) must be a regular file of at most 256 KiB, nested at most 32
levels, with at most 100,000 values after YAML aliases; errors never quote the file's content
beyond a short value (docs/reliability.md).
"""

from __future__ import annotations

import copy
import fnmatch
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from analyzer.config_model import (
    LEVEL_NAMES,
    RUN_KEYS,
    SECTION_MODELS,
    SECTIONS,
    TOP_KEYS,
    RunOverride,
    Settings,
    check_codes,
    check_levels,
    check_mappings,
    check_param,
    check_params,
    check_runs,
    check_section,
)
from analyzer.config_values import (
    MAX_HORIZON,
    METADATA_KEYS,
    ConfigError,
    at_line,
    check_run_metadata,
    clip,
    key_text,
    kind_only,
    tname,
    unknown_key,
)
from analyzer.rules import REGISTRY, ordered_specs

__all__ = [
    "LEVEL_NAMES",
    "MAX_HORIZON",
    "METADATA_KEYS",
    "RUN_KEYS",
    "SECTIONS",
    "TOP_KEYS",
    "ConfigError",
    "RulesConfig",
    "RunOverride",
    "Settings",
    "check_param",
    "check_run_metadata",
    "default_config",
    "load_config",
    "load_profile_file",
    "parse_rules_yaml",
    "read_rules_text",
    "render_default_yaml",
]


@dataclass
class RulesConfig:
    settings: Settings = field(default_factory=Settings)  # typed: settings.smoothing.weight is a float
    select: list[str] | None = None  # None = all rules
    ignore: list[str] = field(default_factory=list)
    levels: dict[str, str] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # code -> resolved params (all keys)
    runs: list[RunOverride] = field(default_factory=list)
    mappings: dict[str, Any] = field(default_factory=dict)
    #: profile files (absolute paths) from `profiles:`, parent files' first
    profiles: list[str] = field(default_factory=list)
    cli: RunOverride = field(default_factory=RunOverride)
    sources: list[str] = field(default_factory=list)  # files read, parent first

    # --- queries -----------------------------------------------------------------------------
    def enabled(self, code: str) -> bool:
        sel = self.select
        on = sel is None or any(code.startswith(p) for p in sel)
        return on and not any(code.startswith(p) for p in self.ignore)

    def level_for(self, code: str) -> str:
        return self.levels.get(code, REGISTRY[code].level)

    def params_for(self, code: str) -> dict[str, Any]:
        return {**REGISTRY[code].defaults(), **self.params.get(code, {})}

    def run_override(self, run_id: str) -> RunOverride:
        """Every `runs:` entry whose glob matches `run_id` (later entries win), then CLI values."""
        out = RunOverride()
        for r in self.runs:
            if fnmatch.fnmatchcase(run_id, r.match):
                out = out.merged(r)
        return out.merged(self.cli)

    def load_mappings(self) -> dict[str, Any]:
        """Global tag mappings in load_runs' shape (`{canonical: tag | {tag, scale}}` + `framework`)."""
        return dict(self.mappings)

    def with_overrides(
        self,
        gamma: float | None = None,
        reward_range: tuple[float, float] | None = None,
        horizon: int | None = None,
    ) -> RulesConfig:
        """CLI flags (--gamma, --reward-range, --horizon): apply to every run, above the rules file."""
        where = "command line"
        if gamma is not None:
            gamma = check_run_metadata("gamma", gamma, where, "--gamma")
        if reward_range is not None:
            reward_range = check_run_metadata("reward_range", reward_range, where, "--reward-range")
        if horizon is not None:
            horizon = check_run_metadata("horizon", horizon, where, "--horizon")
        cli = self.cli.merged(RunOverride(gamma=gamma, reward_range=reward_range, horizon=horizon))
        return replace(self, cli=cli)


def default_config() -> RulesConfig:
    """The built-in defaults (identical to rules/default.yaml; a test keeps them in sync)."""
    return RulesConfig(params={s.code: s.defaults() for s in ordered_specs()})


def load_config(path: str | Path | None) -> RulesConfig:
    """Read a rules file (None = built-in defaults). Raises ConfigError on any problem."""
    if path is None:
        return default_config()
    return _load(Path(path), seen=())


# ----------------------------------------------------------------------------------------------
# loading


#: Largest rules file read (bytes). rules/default.yaml, every threshold with its comment, is 13 KB;
#: the pure-Python YAML parser (no C stack to overflow on deep nesting) reads 256 KiB in ~3 s.
MAX_RULES_BYTES = 256 * 1024
#: Deepest nesting accepted (the deepest real path, runs[i].mappings.<metric>.tag, is 5 levels).
MAX_DEPTH = 32
#: Most values a rules file may hold, counting each use of a YAML alias (an alias bomb stays small
#: on disk and in memory, but validating it value by value would not end).
MAX_VALUES = 100_000
#: Longest string value or key (a tag, glob or path); longer is not a rules file.
MAX_STRING = 10_000


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_rules_text(path: Path, where: str) -> str:
    """The text of a rules file: a regular file of at most MAX_RULES_BYTES, UTF-8.

    Why so strict: `--rules` and `extends:` name any path. A device (`/dev/zero`) would be read
    without end, a FIFO would block for ever, and a secret file must not end up in an error line:
    the file type is checked before opening (opening some devices has effects), again on the
    open descriptor (the path may have been swapped), and at most MAX_RULES_BYTES + 1 bytes are
    read. Errors name the file and the reason, never the content.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{where}: rules file not found") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read rules file ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: cannot read rules file: {_file_kind(st.st_mode)}, not a regular file")
    if st.st_size > MAX_RULES_BYTES:
        raise ConfigError(f"{where}: rules file too large ({st.st_size} bytes; at most {MAX_RULES_BYTES})")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(f"{where}: cannot read rules file: {_file_kind(mode)}, not a regular file")
            data = f.read(MAX_RULES_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read rules file ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_RULES_BYTES:
        raise ConfigError(f"{where}: rules file too large (more than {MAX_RULES_BYTES} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where}: not a UTF-8 text file (undecodable byte at offset {exc.start})"
        ) from None


class _Map(dict):
    """A YAML mapping that remembers the line of each key, so errors can say where."""

    lines: dict[Any, int]


def _yaml_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        """`yaml.SafeLoader` whose mappings are `_Map`s (no other change: no tag executes code)."""

    def construct_map(loader: Any, node: Any) -> Any:
        data = _Map()
        data.lines = {}
        yield data
        data.update(loader.construct_mapping(node))
        for key_node, _ in node.value:  # flattened by construct_mapping (merge keys included)
            try:
                data.lines.setdefault(loader.construct_object(key_node), key_node.start_mark.line + 1)
            except TypeError:  # unhashable key: construct_mapping has refused it already
                continue

    Loader.add_constructor("tag:yaml.org,2002:map", construct_map)
    return Loader


def parse_rules_yaml(text: str, where: str) -> Any:
    """YAML text -> document, or ConfigError naming the file, the line and what is wrong.

    Never quotes the document: a YAML error's snippet of the offending line is left out.
    """
    import yaml

    try:
        doc = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{where}: YAML syntax error: {loc}{clip(exc.problem or 'invalid YAML')}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: YAML error: {clip(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to read (at most {MAX_DEPTH} levels)") from None
    except (ValueError, OverflowError) as exc:  # a date like 2020-99-99, an int of > 4300 digits
        why = "an integer with more than 4300 digits" if "integer string conversion" in str(exc) else str(exc)
        raise ConfigError(f"{where}: a value cannot be read: {clip(why)}") from None
    _check_shape(doc, where)
    return doc


def _check_shape(doc: Any, where: str) -> None:
    """Refuse documents too deep, too large once aliases are expanded, self-referencing, or with huge strings.

    Why before validation: validation and `copy.deepcopy` walk the document; a 5,000-level nesting
    or a self-referencing alias would end in RecursionError, an alias bomb in a walk that never
    ends. Iterative, and each mapping or list is measured once however many aliases point at it.
    """
    done: dict[int, tuple[int, int]] = {}  # id -> (height, values below, capped)
    open_: set[int] = set()
    stack: list[tuple[Any, str, int, bool]] = [(doc, "", 0, False)]
    while stack:
        node, ypath, depth, leaving = stack.pop()
        if isinstance(node, str) and len(node) > MAX_STRING:
            raise ConfigError(
                f"{where}: {ypath or 'top level'}: a string of {len(node)} characters (at most {MAX_STRING})"
            )
        if not isinstance(node, (dict, list)):
            continue
        key = id(node)
        kids = [*node.keys(), *node.values()] if isinstance(node, dict) else list(node)
        if leaving:
            open_.discard(key)
            inner = [done[id(c)] for c in kids if isinstance(c, (dict, list))]
            height = 1 + max((h for h, _ in inner), default=0)
            values = min(MAX_VALUES + 1, len(kids) + sum(n for _, n in inner))
            done[key] = (height, values)
            if values > MAX_VALUES:
                raise ConfigError(f"{where}: more than {MAX_VALUES} values once YAML aliases are expanded")
            continue
        if key in done:
            if depth + done[key][0] > MAX_DEPTH:
                raise ConfigError(f"{where}: {ypath}: nested more than {MAX_DEPTH} levels deep")
            continue
        if key in open_:
            raise ConfigError(
                f"{where}: {ypath or 'top level'}: a YAML alias refers to a value containing it"
            )
        if depth >= MAX_DEPTH:
            raise ConfigError(f"{where}: {clip(ypath, 80)}: nested more than {MAX_DEPTH} levels deep")
        open_.add(key)
        stack.append((node, ypath, depth, True))
        if isinstance(node, dict):
            items = [(f"{ypath}.{key_text(k)}" if ypath else key_text(k), c) for k, c in node.items()]
            items += [(ypath, k) for k in node]
        else:
            items = [(f"{ypath}[{i}]", c) for i, c in enumerate(node)]
        for child_path, child in items:
            if isinstance(child, (dict, list, str)):
                stack.append((child, child_path, depth + 1, False))


def _load(path: Path, seen: tuple[Path, ...], via: str = "") -> RulesConfig:
    """Read one rules file (and what it extends). `via`: `a.yaml: extends: ` when reached from a.yaml."""
    where = str(path)
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on older Pythons
        raise ConfigError(f"{where}: cannot resolve path ({clip(str(exc))})") from None
    if resolved in seen:
        chain = " -> ".join(str(p) for p in (*seen, resolved))
        raise ConfigError(f"{where}: extends: circular chain {chain}")
    doc = parse_rules_yaml(read_rules_text(path, via + where), where)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        # never the value itself: `extends: /etc/passwd` parses as one long string
        raise ConfigError(
            f"{where}: expected a mapping at the top level (is this a rules file?), got {kind_only(doc)}"
        )
    for k in doc:
        if k not in TOP_KEYS:
            raise unknown_key(where, doc, k, "", TOP_KEYS)

    ext = doc.get("extends")
    if ext is None:
        base = default_config()
    elif ext == "default":
        base = default_config()
    elif isinstance(ext, str):
        target = Path(ext)
        if not target.is_absolute():
            target = path.parent / target
        if len(ext) > 4096 or "\0" in ext:
            raise ConfigError(f"{where}: extends: not a usable path ({len(ext)} characters)")
        if not target.exists():
            raise ConfigError(
                f"{where}: extends: target {clip(repr(ext), 200)} not found (looked for {clip(str(target), 300)})"
            )
        base = _load(target, (*seen, resolved), via=f"{where}: extends: ")
    else:
        raise ConfigError(f"{where}: extends: expected 'default' or a path, got {tname(ext)}")

    cfg = copy.deepcopy(base)
    cfg.sources = [*base.sources, where]
    for section in SECTION_MODELS:
        if section in doc:
            old = getattr(cfg.settings, section)
            setattr(cfg.settings, section, replace(old, **check_section(doc[section], section, where)))
    if "select" in doc:
        cfg.select = None if doc["select"] is None else check_codes(doc["select"], where, "select")
    if cfg.settings.changepoints.algorithm == "kernel" and cfg.settings.changepoints.cost == "clinear":
        raise ConfigError(
            f"{where}: changepoints.cost: 'clinear' needs algorithm pelt, binseg or bottomup (kernel supports l2, l2-slope)"
        )
    if "ignore" in doc:
        cfg.ignore = sorted(set(cfg.ignore) | set(check_codes(doc["ignore"], where, "ignore")))
    if "levels" in doc:
        cfg.levels.update(check_levels(doc["levels"], where))
    if "params" in doc:
        for code, vals in check_params(doc["params"], where).items():
            cfg.params.setdefault(code, REGISTRY[code].defaults()).update(vals)
    if "runs" in doc:
        cfg.runs = [*cfg.runs, *check_runs(doc["runs"], where)]
    if "mappings" in doc:
        cfg.mappings = {
            **cfg.mappings,
            **check_mappings(doc["mappings"], where, "mappings"),
        }
    if "profiles" in doc:
        cfg.profiles = [
            *cfg.profiles,
            *(p for p in _check_profiles(doc, path, where) if p not in cfg.profiles),
        ]
    return cfg


def _check_profiles(doc: Any, path: Path, where: str) -> list[str]:
    """`profiles: [./my_trainer.yaml]`: profile files relative to this rules file, each read and checked
    now, so a broken one is a rules-file error (exit 2) rather than a surprise during ingestion."""
    items = doc["profiles"]
    if not isinstance(items, list) or not all(isinstance(x, str) and x for x in items):
        raise ConfigError(
            f"{where}: {at_line(doc, 'profiles')}profiles: expected a list of profile file paths"
        )
    out = []
    for i, item in enumerate(items):
        target = Path(item) if Path(item).is_absolute() else path.parent / item
        try:
            usable = len(item) <= 4096 and "\0" not in item and target.is_file()
        except OSError:  # a name too long for the file system, a permission problem
            usable = False
        if not usable:
            raise ConfigError(
                f"{where}: profiles[{i}]: profile file {clip(repr(item), 200)} not found "
                f"(looked for {clip(str(target), 300)})"
            )
        load_profile_file(target)  # a ConfigError naming the file and the field
        out.append(str(target.resolve()))
    return out


def load_profile_file(path: str | Path) -> Any:
    """Read and check one profile file (a `Profile`); read like a rules file (a regular file of at most
    MAX_RULES_BYTES, safe YAML), so a broken one is a ConfigError naming the file and the field."""
    from analyzer.ingest.profile_format import ProfileError, parse_profile

    p = Path(path)
    try:
        text = read_rules_text(p, str(p))
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("rules file", "profile file")) from None
    try:
        return parse_profile(parse_rules_yaml(text, str(p)), str(p), str(p))
    except ProfileError as exc:
        raise ConfigError(str(exc)) from None


# ----------------------------------------------------------------------------------------------
# rules/default.yaml is generated from the same specs (a test keeps the file in sync)


def _yaml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v if v.replace("-", "").replace("_", "").isalnum() else repr(v)
    return repr(v)


def render_default_yaml() -> str:
    """The annotated default rules file: every threshold with where its default comes from."""
    out = [
        "# yaml-language-server: $schema=../docs/rules.schema.json",
        "# offrl-workflow default rules (generated: python -c 'from analyzer.config import render_default_yaml as r;",
        '# print(r(), end="")\' > rules/default.yaml). Every threshold the diagnosis uses is here, with the',
        "# source of its default. A user rules file starts with `extends: default` and overrides what it needs;",
        "# see docs/diagnosis.md and docs/rules/<CODE>.md.",
        "",
    ]
    for section, ps in SECTIONS.items():
        out.append(f"{section}:")
        for p in ps:
            out.append(f"  # {p.help}. Default: {p.source}")
            if p.choices:
                out.append(f"  # one of: {', '.join(p.choices)}")
            out.append(f"  {p.name}: {_yaml_scalar(p.default)}")
        out.append("")
    out += [
        "select: null  # null = every rule; a list of codes or prefixes (ruff-style), e.g. [OF, UF001]",
        "ignore: []",
        "levels: {}  # e.g. {UF001: error}",
        "",
        "params:",
    ]
    for s in ordered_specs():
        out.append(f"  # {s.code} {s.name} ({s.level}): {s.summary}")
        if not s.params:
            out.append(f"  {s.code}: {{}}")
            continue
        out.append(f"  {s.code}:")
        for p in s.params:
            out.append(f"    # {p.help}. Default: {p.source}")
            if p.choices:
                out.append(f"    # one of: {', '.join(p.choices)}")
            out.append(f"    {p.name}: {_yaml_scalar(p.default)}")
    out += [
        "",
        "# Per-run metadata the logs may lack (later entries win; CLI --gamma/--reward-range/--horizon win over all):",
        "# runs:",
        "#   - match: 'sweep/*'          # glob on the run id",
        "#     gamma: 0.99",
        "#     reward_range: [0, 1]",
        "#     horizon: 30",
        "#     dataset_mc_return: 4.2     # same discounting as Q",
        "#     checkpoint_interval: 5000  # in the run's x-axis unit",
        "#     capacity_group: widths     # runs in one group are compared by capacity (UF003)",
        "#     mappings: {q_data: 'my/q_tag'}",
        "runs: []",
        "",
        "# Global tag mappings passed to ingestion: {canonical_name: tag | {tag, scale}} + optional framework.",
        "mappings: {}",
        "",
    ]
    return "\n".join(out)
