"""Rules file (YAML) loading and validation.

Shape (rules/default.yaml is the annotated reference; every threshold lives there):

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

Every problem raises ConfigError naming the file, the line and YAML path, and what was expected;
the CLI turns it into exit code 2. Only a `yaml.SafeLoader` is used. A rules file (given with
`--rules` or reached by `extends:`) must be a regular file of at most 256 KiB, nested at most 32
levels, with at most 100,000 values after YAML aliases; errors never quote the file's content
beyond a short value (docs/reliability.md).
"""

from __future__ import annotations

import copy
import fnmatch
import math
import os
import stat
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from analyzer.metrics import CANONICAL_NAMES
from analyzer.rules import REGISTRY, ordered_specs
from analyzer.rules.base import Param

TOP_KEYS = (
    "extends",
    "analysis",
    "smoothing",
    "changepoints",
    "verdict",
    "checkpoint",
    "select",
    "ignore",
    "levels",
    "params",
    "runs",
    "mappings",
    "profiles",
)
LEVEL_NAMES = ("error", "warning", "info")
RUN_KEYS = (
    "match",
    "gamma",
    "reward_range",
    "horizon",
    "dataset_mc_return",
    "checkpoint_interval",
    "warm_start",
    "mappings",
    "capacity_group",
)

#: Settings sections: key -> Param (validation + documentation of the default).
SECTIONS: dict[str, tuple[Param, ...]] = {
    "analysis": (
        Param(
            "tail_fraction",
            0.2,
            "fraction",
            "share of the run (by step) whose median is 'the final level' of a metric",
            "convention: the last 20% is long enough to average noise, short enough to reflect the end",
        ),
        Param(
            "peak_tolerance",
            0.0,
            "nonneg",
            "the peak is the latest point after the maximum still within this many smoothed-noise sigmas of it "
            "(0: the maximum of the smoothed curve)",
            "measured on 1440 synthetic overfitting runs (docs/validation.md): tolerance 1 + hinge loses as much Q on "
            "kink-shaped peaks and more on rounded ones (0.26 vs 0.08 noise sigmas: it sits after the maximum)",
        ),
        Param(
            "peak_refine",
            "none",
            "choice",
            "refine the peak step with a two-piece linear (hinge) fit of the raw curve around it",
            "none: the hinge assumes a kink; it locates kinks better (42% vs 28% within one logged point) but "
            "moves rounded peaks late (docs/validation.md)",
            choices=("hinge", "none"),
        ),
        Param(
            "skip_warm_start",
            True,
            "bool",
            "read the Q / TD / regularizer rules after the actor's behaviour-cloning warm start (bc_steps, "
            "policy_eval_start in the run's config, or `warm_start` in a runs: override); NaN checks still see "
            "the whole run",
            "during the warm start the actor imitates the data and ignores Q, so the critic's curve there is a "
            "transient of that phase (dataset Q can dip below its feasible range and recover), not the training "
            "trend Metric 3.1 reads; measured in docs/closed_loop.md",
        ),
        Param(
            "peak_window",
            0.05,
            "fraction",
            "half-width of the hinge search (the fit uses twice that on each side), as a fraction of the run's points",
            "sweep in docs/validation.md: 0.05 beats 0.02 and 0.1 (curvature of the rise/decline biases wider fits)",
        ),
    ),
    "smoothing": (
        Param(
            "method",
            "ema",
            "choice",
            "display smoother (RunResult.smoothed, frames, plots)",
            "TensorBoard's debiased EMA, so curves look like what users saw in TensorBoard",
            choices=("ema", "ema2", "median", "savgol", "none"),
        ),
        Param("weight", 0.6, "fraction", "display EMA weight", "TensorBoard UI default 0.6"),
        Param(
            "analysis_method",
            "ema2",
            "choice",
            "smoother the rules and the peak finder read",
            "zero-phase EMA: no lag, so the peak is not pushed later (docs/diagnosis.md, measured)",
            choices=("ema", "ema2", "median", "savgol", "none"),
        ),
        Param(
            "analysis_weight",
            0.8,
            "fraction",
            "EMA weight of the analysis smoother",
            "weight sweep on the synthetic set (docs/diagnosis.md)",
        ),
        Param("window", 11, "int", "window (points) for median/savgol", "convention: ~5% of a 200-point run"),
    ),
    "changepoints": (
        Param(
            "algorithm",
            "kernel",
            "choice",
            "ruptures search method",
            "comparison in docs/diagnosis.md",
            choices=("pelt", "binseg", "bottomup", "kernel"),
        ),
        Param(
            "cost",
            "l2-slope",
            "choice",
            "l2 on the slope (piecewise-linear phases), l2 on the level, or continuous-linear",
            "comparison in docs/diagnosis.md",
            choices=("l2-slope", "l2", "clinear"),
        ),
        Param(
            "penalty_scale",
            10.0,
            "positive",
            "multiplier of the BIC-like penalty 2 sigma^2 log n on the smoothed slope",
            "measured: smoothing makes the slope's noise autocorrelated, so the iid BIC value 1 splits "
            "straight noisy lines into phases (31% of test lines; 3: 11%); 10 gives 0% and still finds both "
            "knots of rise-flat-fall signals; 30 finds fewer gradual turns of exponential curves "
            "(docs/diagnosis.md)",
        ),
        Param(
            "max_points",
            500,
            "int",
            "resample longer curves to this many points first",
            "ruptures cost/memory",
        ),
        Param("min_size", 5, "int", "shortest segment (points)", "convention"),
    ),
    "verdict": (
        Param(
            "precedence",
            "overfitting-first",
            "choice",
            "when a sustained dataset-Q decline (OF001) and a large TD error / regularizer (UF001, UF002, UF003) "
            "are both found: call the run overfitting (and say the errors are large too), or underfitting",
            "paper Section 3.2: underfitting is when errors fall with capacity 'without exhibiting the overfitting "
            "signs', and 'unlike the overfitting regime, we would not expect the average learned Q-value to "
            "decrease'. underfitting-first was the default before the closed loop (docs/closed_loop.md) showed "
            "alpha-1 runs whose dataset Q peaked and fell with success while TD x H just exceeded the Q range",
            choices=("overfitting-first", "underfitting-first"),
        ),
    ),
    "checkpoint": (
        Param(
            "pick",
            "higher-q-around-peak",
            "choice",
            "Guideline 3.1: of the last checkpoint at or before the dataset-Q peak and the first after it, the "
            "one with the higher smoothed dataset Q (higher-q-around-peak); always the one at or before "
            "(at-or-before-peak); or the first after it (next-after-peak)",
            "paper Guideline 3.1; measured on 1440 synthetic overfitting runs with a checkpoint every 5 points: "
            "the pick's true Q is 0.10 / 0.07 instead of 0.26 / 0.12 noise sigmas below the best checkpoint's "
            "(kink / rounded tops; at-or-before), the same pick with a checkpoint at every point "
            "(docs/validation.md); next-after-peak follows the WidowX experiment (actor lags critic)",
            choices=("at-or-before-peak", "next-after-peak", "higher-q-around-peak"),
        ),
    ),
}


class ConfigError(ValueError):
    """A rules file problem, with file, YAML path and what was expected."""


@dataclass
class RunOverride:
    match: str = "*"
    gamma: float | None = None
    reward_range: tuple[float, float] | None = None
    horizon: int | None = None
    dataset_mc_return: float | None = None
    checkpoint_interval: int | None = None
    warm_start: int | None = None  # 0: no warm start (turns off what the logs say)
    mappings: dict[str, Any] = field(default_factory=dict)
    capacity_group: str | None = None

    def merged(self, other: RunOverride) -> RunOverride:
        """`other` wins where it sets a value."""
        out = copy.deepcopy(self)
        for k in RUN_KEYS:
            if k == "match":
                continue
            v = getattr(other, k)
            if k == "mappings":
                out.mappings = {**out.mappings, **v}
            elif v is not None:
                setattr(out, k, v)
        return out


@dataclass
class RulesConfig:
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # section -> key -> value
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

    def setting(self, section: str, key: str) -> Any:
        return self.settings.get(section, {}).get(key, _section_default(section, key))

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


def _section_default(section: str, key: str) -> Any:
    for p in SECTIONS[section]:
        if p.name == key:
            return p.default
    raise KeyError(f"{section}.{key}")


def default_config() -> RulesConfig:
    """The built-in defaults (identical to rules/default.yaml; a test keeps them in sync)."""
    return RulesConfig(
        settings={sec: {p.name: p.default for p in ps} for sec, ps in SECTIONS.items()},
        params={s.code: s.defaults() for s in ordered_specs()},
    )


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
        raise ConfigError(
            f"{where}: YAML syntax error: {loc}{_clip(exc.problem or 'invalid YAML')}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: YAML error: {_clip(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to read (at most {MAX_DEPTH} levels)") from None
    except (ValueError, OverflowError) as exc:  # a date like 2020-99-99, an int of > 4300 digits
        why = "an integer with more than 4300 digits" if "integer string conversion" in str(exc) else str(exc)
        raise ConfigError(f"{where}: a value cannot be read: {_clip(why)}") from None
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
            raise ConfigError(f"{where}: {_clip(ypath, 80)}: nested more than {MAX_DEPTH} levels deep")
        open_.add(key)
        stack.append((node, ypath, depth, True))
        if isinstance(node, dict):
            items = [(f"{ypath}.{_key(k)}" if ypath else _key(k), c) for k, c in node.items()]
            items += [(ypath, k) for k in node]
        else:
            items = [(f"{ypath}[{i}]", c) for i, c in enumerate(node)]
        for child_path, child in items:
            if isinstance(child, (dict, list, str)):
                stack.append((child, child_path, depth + 1, False))


def _clip(text: str, limit: int = 120) -> str:
    """One line, no control characters, at most `limit` characters: for parser messages in errors."""
    from analyzer.output.names import clean

    one = clean(" ".join(str(text).split()))
    return one if len(one) <= limit else one[: limit - 1] + "…"


def _key(k: Any) -> str:
    """A mapping key as shown in a YAML path (`runs[0].gamma`): short, one line."""
    return _clip(k if isinstance(k, str) else _tname(k), 60)


def _at(doc: Any, key: Any) -> str:
    """`line N: ` for a key of a mapping read from YAML, else empty."""
    line = getattr(doc, "lines", {}).get(key) if isinstance(doc, dict) else None
    return f"line {line}: " if line else ""


def _unknown_key(where: str, doc: Any, key: Any, ypath: str, expected: tuple[str, ...] | Any) -> ConfigError:
    """`x.yaml: line 3: unknown key 'colour' in runs[0]; expected one of: match, gamma, ...`."""
    inside = f" in {ypath}" if ypath else " at the top level"
    shown = repr(_key(key)) if isinstance(key, str) else _tname(key)
    return ConfigError(
        f"{where}: {_at(doc, key)}unknown key {shown}{inside}; expected one of: {', '.join(expected)}"
    )


def _load(path: Path, seen: tuple[Path, ...], via: str = "") -> RulesConfig:
    """Read one rules file (and what it extends). `via`: `a.yaml: extends: ` when reached from a.yaml."""
    where = str(path)
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on older Pythons
        raise ConfigError(f"{where}: cannot resolve path ({_clip(str(exc))})") from None
    if resolved in seen:
        chain = " -> ".join(str(p) for p in (*seen, resolved))
        raise ConfigError(f"{where}: extends: circular chain {chain}")
    doc = parse_rules_yaml(read_rules_text(path, via + where), where)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        # never the value itself: `extends: /etc/passwd` parses as one long string
        raise ConfigError(
            f"{where}: expected a mapping at the top level (is this a rules file?), got {_kind_only(doc)}"
        )
    for k in doc:
        if k not in TOP_KEYS:
            raise _unknown_key(where, doc, k, "", TOP_KEYS)

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
                f"{where}: extends: target {_clip(repr(ext), 200)} not found (looked for {_clip(str(target), 300)})"
            )
        base = _load(target, (*seen, resolved), via=f"{where}: extends: ")
    else:
        raise ConfigError(f"{where}: extends: expected 'default' or a path, got {_tname(ext)}")

    cfg = copy.deepcopy(base)
    cfg.sources = [*base.sources, where]
    for section in SECTIONS:
        if section in doc:
            vals = _check_section(doc[section], section, where)
            cfg.settings.setdefault(section, {}).update(vals)
    if "select" in doc:
        cfg.select = None if doc["select"] is None else _check_codes(doc["select"], where, "select")
    if (
        cfg.setting("changepoints", "algorithm") == "kernel"
        and cfg.setting("changepoints", "cost") == "clinear"
    ):
        raise ConfigError(
            f"{where}: changepoints.cost: 'clinear' needs algorithm pelt, binseg or bottomup (kernel supports l2, l2-slope)"
        )
    if "ignore" in doc:
        cfg.ignore = sorted(set(cfg.ignore) | set(_check_codes(doc["ignore"], where, "ignore")))
    if "levels" in doc:
        cfg.levels.update(_check_levels(doc["levels"], where))
    if "params" in doc:
        for code, vals in _check_params(doc["params"], where).items():
            cfg.params.setdefault(code, REGISTRY[code].defaults()).update(vals)
    if "runs" in doc:
        cfg.runs = [*cfg.runs, *_check_runs(doc["runs"], where)]
    if "mappings" in doc:
        cfg.mappings = {
            **cfg.mappings,
            **_check_mappings(doc["mappings"], where, "mappings", allow_framework=True),
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
        raise ConfigError(f"{where}: {_at(doc, 'profiles')}profiles: expected a list of profile file paths")
    out = []
    for i, item in enumerate(items):
        target = Path(item) if Path(item).is_absolute() else path.parent / item
        try:
            usable = len(item) <= 4096 and "\0" not in item and target.is_file()
        except OSError:  # a name too long for the file system, a permission problem
            usable = False
        if not usable:
            raise ConfigError(
                f"{where}: profiles[{i}]: profile file {_clip(repr(item), 200)} not found "
                f"(looked for {_clip(str(target), 300)})"
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
# validation helpers


def _tname(v: Any) -> str:
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
    return _kind_only(v)


def _kind_only(v: Any) -> str:
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


def _num(v: Any) -> bool:
    """A finite number that float() can hold (math.isfinite of a 400-digit int raises OverflowError)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return math.isfinite(v) if isinstance(v, float) else abs(v) <= sys.float_info.max


def check_param(p: Param, value: Any, where: str, ypath: str) -> Any:
    """Validate one value against its Param spec; returns the normalised value."""
    k = p.kind
    bad = None
    if k == "fraction":
        if not (_num(value) and 0 < value <= 1):
            bad = "a number in (0, 1]"
    elif k == "positive":
        if not (_num(value) and value > 0):
            bad = "a positive number"
    elif k == "nonneg":
        if not (_num(value) and value >= 0):
            bad = "a number >= 0"
    elif k == "number":
        if not _num(value):
            bad = "a number"
    elif k == "int":
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            bad = "an integer >= 1"
    elif k == "choice":
        if value not in p.choices:
            bad = "one of " + ", ".join(p.choices)
    elif k == "bool":
        if not isinstance(value, bool):
            bad = "true or false"
    if bad:
        raise ConfigError(f"{where}: {ypath}: expected {bad}, got {_tname(value)}")
    return float(value) if k in ("fraction", "positive", "nonneg", "number") else value


def _check_section(doc: Any, section: str, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: {section}: expected a mapping, got {_tname(doc)}")
    specs = {p.name: p for p in SECTIONS[section]}
    out = {}
    for k, v in doc.items():
        if k not in specs:
            raise _unknown_key(where, doc, k, section, tuple(specs))
        out[k] = check_param(specs[k], v, where, f"{section}.{k}")
    return out


def _check_codes(doc: Any, where: str, key: str) -> list[str]:
    if isinstance(doc, str):
        doc = [doc]
    if not isinstance(doc, list):
        raise ConfigError(f"{where}: {key}: expected a list of rule codes or prefixes, got {_tname(doc)}")
    out = []
    for i, c in enumerate(doc):
        if not isinstance(c, str) or not c:
            raise ConfigError(f"{where}: {key}[{i}]: expected a rule code or prefix, got {_tname(c)}")
        c = c.upper()
        if not any(code.startswith(c) for code in REGISTRY):
            raise ConfigError(
                f"{where}: {key}[{i}]: {_tname(c)} matches no rule; known: {', '.join(sorted(REGISTRY))}"
            )
        out.append(c)
    return out


def _check_code(code: Any, where: str, ypath: str) -> str:
    if not isinstance(code, str) or code.upper() not in REGISTRY:
        raise ConfigError(
            f"{where}: {ypath}: unknown rule {_tname(code)}; known: {', '.join(sorted(REGISTRY))}"
        )
    return code.upper()


def _check_levels(doc: Any, where: str) -> dict[str, str]:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: levels: expected a mapping of rule code to level, got {_tname(doc)}")
    out = {}
    for code, lvl in doc.items():
        c = _check_code(code, where, f"levels.{code}")
        if lvl not in LEVEL_NAMES:
            raise ConfigError(
                f"{where}: levels.{code}: expected one of {', '.join(LEVEL_NAMES)}, got {_tname(lvl)}"
            )
        out[c] = lvl
    return out


def _check_params(doc: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{where}: params: expected a mapping of rule code to parameters, got {_tname(doc)}"
        )
    out: dict[str, dict[str, Any]] = {}
    for code, vals in doc.items():
        c = _check_code(code, where, f"params.{code}")
        if vals is None:
            continue
        if not isinstance(vals, dict):
            raise ConfigError(
                f"{where}: params.{code}: expected a mapping of parameter to value, got {_tname(vals)}"
            )
        specs = {p.name: p for p in REGISTRY[c].params}
        for k, v in vals.items():
            if k not in specs:
                known = ", ".join(specs) or "none"
                raise ConfigError(
                    f"{where}: params.{code}.{k}: unknown parameter of {c}; expected one of: {known}"
                )
            out.setdefault(c, {})[k] = check_param(specs[k], v, where, f"params.{code}.{k}")
    return out


#: Longest episode horizon accepted from any source. Longer is a typo or a unit mix-up (1e20 in a
#: config file), and would make every horizon-scaled check (UF001, ST001) vacuous.
MAX_HORIZON = 10**9
#: Keys `check_run_metadata` validates: the run metadata a CLI flag, a rules file's `runs:` entry
#: and a run's own config file can all give.
METADATA_KEYS = ("gamma", "horizon", "reward_range")


def check_run_metadata(key: str, v: Any, where: str, ypath: str) -> Any:
    """The one validation of run metadata (gamma, horizon, reward_range), whatever its source.

    Why one function: the CLI (`--gamma`), the rules file (`runs: [{gamma: ...}]`) and a run's
    config file (`config.json: {"gamma": ...}`) must accept and refuse the same values, or a value
    refused on the command line slips in through a config file (issue 12, item 18). Returns the
    normalised value; raises ConfigError "<where>: <ypath>: expected ..., got ...".
    """
    shown = "a number with more than 30 digits" if isinstance(v, int) and abs(v) >= 10**30 else None
    if key == "gamma":
        if not (_num(v) and 0 <= v < 1):
            raise ConfigError(f"{where}: {ypath}: expected a discount in [0, 1), got {shown or _tname(v)}")
        return float(v)
    if key == "horizon":
        if isinstance(v, float) and _num(v) and v == int(v):
            v = int(v)  # 1000.0 (a YAML or JSON writer's float) is 1000 steps
        if not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_HORIZON):
            raise ConfigError(
                f"{where}: {ypath}: expected an integer >= 1 (steps, at most {MAX_HORIZON:.0e}), got {shown or _tname(v)}"
            )
        return int(v)
    if key == "reward_range":
        ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(_num(x) for x in v) and v[0] < v[1]
        if not (ok and math.isfinite(float(v[1]) - float(v[0]))):
            raise ConfigError(
                f"{where}: {ypath}: expected [r_min, r_max] with finite r_min < r_max, got {_short(v)}"
            )
        return (float(v[0]), float(v[1]))
    raise KeyError(f"{key!r} is not run metadata; one of {', '.join(METADATA_KEYS)}")


def _short(v: Any) -> str:
    """repr of a value for an error line when short and printable, else its kind only.

    A config value can be arbitrarily large, and a rules file reached by `extends:` may be a file
    that must not be quoted (issue 12 item 9)."""
    try:
        text = repr(v)
    except (ValueError, RecursionError):  # an int beyond Python's digit limit for str(); deep nesting
        return _kind_only(v)
    return text if len(text) <= 40 and text.isprintable() else _kind_only(v)


def _check_int(v: Any, where: str, ypath: str) -> int:
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        raise ConfigError(f"{where}: {ypath}: expected an integer >= 1, got {_tname(v)}")
    return int(v)


def _check_mappings(doc: Any, where: str, ypath: str, allow_framework: bool) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{where}: {ypath}: expected a mapping of canonical metric to tag, got {_tname(doc)}"
        )
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if k == "framework" and allow_framework:
            if not isinstance(v, str):
                raise ConfigError(f"{where}: {ypath}.framework: expected a profile name, got {_tname(v)}")
            out[k] = v
            continue
        if k not in CANONICAL_NAMES:
            raise ConfigError(
                f"{where}: {ypath}.{k}: unknown canonical metric; expected one of {', '.join(CANONICAL_NAMES)}"
            )
        if isinstance(v, str) and v:
            out[k] = v
        elif isinstance(v, dict):
            extra = set(v) - {"tag", "scale", "kind", "note"}
            if extra or not isinstance(v.get("tag"), str):
                raise ConfigError(
                    f"{where}: {ypath}.{k}: expected a tag string or {{tag: <str>, scale: <number>, kind: "
                    f"logged|derived|proxy, note: <str>}}, got {_short(v)}"
                )
            if "scale" in v and not _num(v["scale"]):
                raise ConfigError(f"{where}: {ypath}.{k}.scale: expected a number, got {_tname(v['scale'])}")
            if "kind" in v and v["kind"] not in ("logged", "derived", "proxy"):
                raise ConfigError(
                    f"{where}: {ypath}.{k}.kind: expected logged, derived or proxy, got {_tname(v['kind'])}"
                )
            out[k] = dict(v)
        else:
            raise ConfigError(
                f"{where}: {ypath}.{k}: expected a tag string or {{tag, scale}}, got {_tname(v)}"
            )
    return out


def _check_runs(doc: Any, where: str) -> list[RunOverride]:
    if not isinstance(doc, list):
        raise ConfigError(f"{where}: runs: expected a list of {{match: <glob>, ...}}, got {_tname(doc)}")
    out = []
    for i, r in enumerate(doc):
        yp = f"runs[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(f"{where}: {yp}: expected a mapping, got {_tname(r)}")
        for k in r:
            if k not in RUN_KEYS:
                raise _unknown_key(where, r, k, yp, RUN_KEYS)
        m = r.get("match", "*")
        if not isinstance(m, str) or not m:
            raise ConfigError(f"{where}: {yp}.match: expected a glob on the run id, got {_tname(m)}")
        ov = RunOverride(match=m)
        if r.get("gamma") is not None:
            ov.gamma = check_run_metadata("gamma", r["gamma"], where, f"{yp}.gamma")
        if r.get("reward_range") is not None:
            ov.reward_range = check_run_metadata(
                "reward_range", r["reward_range"], where, f"{yp}.reward_range"
            )
        if r.get("horizon") is not None:
            ov.horizon = check_run_metadata("horizon", r["horizon"], where, f"{yp}.horizon")
        if r.get("checkpoint_interval") is not None:
            ov.checkpoint_interval = _check_int(r["checkpoint_interval"], where, f"{yp}.checkpoint_interval")
        if r.get("warm_start") is not None:
            w = r["warm_start"]
            if not (isinstance(w, int) and not isinstance(w, bool) and w >= 0):
                raise ConfigError(
                    f"{where}: {yp}.warm_start: expected an integer >= 0 (steps), got {_tname(w)}"
                )
            ov.warm_start = int(w)
        if r.get("dataset_mc_return") is not None:
            if not _num(r["dataset_mc_return"]):
                raise ConfigError(
                    f"{where}: {yp}.dataset_mc_return: expected a number, got {_tname(r['dataset_mc_return'])}"
                )
            ov.dataset_mc_return = float(r["dataset_mc_return"])
        if r.get("capacity_group") is not None:
            if not isinstance(r["capacity_group"], str):
                raise ConfigError(
                    f"{where}: {yp}.capacity_group: expected a name, got {_tname(r['capacity_group'])}"
                )
            ov.capacity_group = r["capacity_group"]
        if r.get("mappings") is not None:
            ov.mappings = _check_mappings(r["mappings"], where, f"{yp}.mappings", allow_framework=True)
        out.append(ov)
    return out


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
