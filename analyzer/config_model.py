"""The rules file as typed models: one declaration per key gives its type, default, check, docs and schema.

Why: the rules file used to be validated by hand, section by section, and read back by strings
(`cfg.setting("changepoints", "min_size")`). Here each settings section is a dataclass whose
fields declare their kind (analyzer/config_values.py), help text and the source of the default;
`runs:` entries are the `RunOverride` dataclass; the top level is a table of key -> kind. From
these declarations come:

* the typed values the analysis reads (`cfg.settings.changepoints.min_size`, an int);
* the loader's checks and error messages (file, line, YAML path, key, what was expected);
* rules/default.yaml (analyzer.config.render_default_yaml) and docs/rules.schema.json
  (analyzer/config_schema.py, for editors: `# yaml-language-server: $schema=...`, docs/diagnosis.md);
* `SECTIONS`, `RUN_KEYS`, `TOP_KEYS` for code that lists them.

The schema itself is rendered by analyzer/config_schema.py; tests/test_config.py keeps
docs/rules.schema.json in sync.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from analyzer.config_values import (
    GAMMA,
    HORIZON,
    INT,
    NUMBER,
    REWARD_RANGE,
    ConfigError,
    Kind,
    choice,
    is_int,
    is_number,
    param_kind,
    short,
    tname,
    unknown_key,
)
from analyzer.metrics import CANONICAL_NAMES
from analyzer.rules import REGISTRY
from analyzer.rules.base import Param

__all__ = [
    "LEVEL_NAMES",
    "RUN_KEYS",
    "SECTIONS",
    "TOP_KEYS",
    "AnalysisSettings",
    "ChangepointSettings",
    "CheckpointSettings",
    "RunOverride",
    "Settings",
    "SmoothingSettings",
    "VerdictSettings",
    "check_param",
]

LEVEL_NAMES = ("error", "warning", "info")


def setting(default: Any, kind: str, help: str, source: str, *, choices: tuple[str, ...] = ()) -> Any:
    """A settings field: its default, `Param` kind, help text and where the default comes from."""
    return field(default=default, metadata={"param": (kind, help, source, tuple(choices))})


def params_of(model: type) -> tuple[Param, ...]:
    """The `Param` table of a settings dataclass (what default.yaml and the schema document)."""
    out = []
    for f in dataclasses.fields(model):
        kind, help_, source, choices = f.metadata["param"]
        out.append(Param(f.name, f.default, kind, help_, source, choices=choices))
    return tuple(out)


def check_param(p: Param, value: Any, where: str, ypath: str) -> Any:
    """Validate one value against its Param spec; returns the normalised value."""
    return param_kind(p.kind, p.choices).check(value, where, ypath)


# ----------------------------------------------------------------------------------------------
# settings sections

_SMOOTHERS = ("ema", "ema2", "median", "savgol", "none")


@dataclass
class AnalysisSettings:
    """`analysis:` how the final level and the dataset-Q peak are read."""

    tail_fraction: float = setting(
        0.2,
        "fraction",
        "share of the run (by step) whose median is 'the final level' of a metric",
        "convention: the last 20% is long enough to average noise, short enough to reflect the end",
    )
    peak_tolerance: float = setting(
        0.0,
        "nonneg",
        "the peak is the latest point after the maximum still within this many smoothed-noise sigmas of it "
        "(0: the maximum of the smoothed curve)",
        "measured on 1440 synthetic overfitting runs (docs/validation.md): tolerance 1 + hinge loses as much Q on "
        "kink-shaped peaks and more on rounded ones (0.26 vs 0.08 noise sigmas: it sits after the maximum)",
    )
    peak_refine: Literal["hinge", "none"] = setting(
        "none",
        "choice",
        "refine the peak step with a two-piece linear (hinge) fit of the raw curve around it",
        "none: the hinge assumes a kink; it locates kinks better (42% vs 28% within one logged point) but "
        "moves rounded peaks late (docs/validation.md)",
        choices=("hinge", "none"),
    )
    skip_warm_start: bool = setting(
        True,
        "bool",
        "read the Q / TD / regularizer rules after the actor's behaviour-cloning warm start (bc_steps, "
        "policy_eval_start in the run's config, or `warm_start` in a runs: override); NaN checks still see "
        "the whole run",
        "during the warm start the actor imitates the data and ignores Q, so the critic's curve there is a "
        "transient of that phase (dataset Q can dip below its feasible range and recover), not the training "
        "trend Metric 3.1 reads; measured in docs/closed_loop.md",
    )
    peak_window: float = setting(
        0.05,
        "fraction",
        "half-width of the hinge search (the fit uses twice that on each side), as a fraction of the run's points",
        "sweep in docs/validation.md: 0.05 beats 0.02 and 0.1 (curvature of the rise/decline biases wider fits)",
    )


@dataclass
class SmoothingSettings:
    """`smoothing:` the display smoother and the one the rules read."""

    method: Literal["ema", "ema2", "median", "savgol", "none"] = setting(
        "ema",
        "choice",
        "display smoother (RunResult.smoothed, frames, plots)",
        "TensorBoard's debiased EMA, so curves look like what users saw in TensorBoard",
        choices=_SMOOTHERS,
    )
    weight: float = setting(0.6, "fraction", "display EMA weight", "TensorBoard UI default 0.6")
    analysis_method: Literal["ema", "ema2", "median", "savgol", "none"] = setting(
        "ema2",
        "choice",
        "smoother the rules and the peak finder read",
        "zero-phase EMA: no lag, so the peak is not pushed later (docs/diagnosis.md, measured)",
        choices=_SMOOTHERS,
    )
    analysis_weight: float = setting(
        0.8,
        "fraction",
        "EMA weight of the analysis smoother",
        "weight sweep on the synthetic set (docs/diagnosis.md)",
    )
    window: int = setting(
        11, "int", "window (points) for median/savgol", "convention: ~5% of a 200-point run"
    )


@dataclass
class ChangepointSettings:
    """`changepoints:` the phases of the dataset-Q curve (ruptures)."""

    algorithm: Literal["pelt", "binseg", "bottomup", "kernel"] = setting(
        "kernel",
        "choice",
        "ruptures search method",
        "comparison in docs/diagnosis.md",
        choices=("pelt", "binseg", "bottomup", "kernel"),
    )
    cost: Literal["l2-slope", "l2", "clinear"] = setting(
        "l2-slope",
        "choice",
        "l2 on the slope (piecewise-linear phases), l2 on the level, or continuous-linear",
        "comparison in docs/diagnosis.md",
        choices=("l2-slope", "l2", "clinear"),
    )
    penalty_scale: float = setting(
        10.0,
        "positive",
        "multiplier of the BIC-like penalty 2 sigma^2 log n on the smoothed slope",
        "measured: smoothing makes the slope's noise autocorrelated, so the iid BIC value 1 splits "
        "straight noisy lines into phases (31% of test lines; 3: 11%); 10 gives 0% and still finds both "
        "knots of rise-flat-fall signals; 30 finds fewer gradual turns of exponential curves "
        "(docs/diagnosis.md)",
    )
    max_points: int = setting(
        500, "int", "resample longer curves to this many points first", "ruptures cost/memory"
    )
    min_size: int = setting(5, "int", "shortest segment (points)", "convention")


@dataclass
class VerdictSettings:
    """`verdict:` which verdict wins when both overfitting and underfitting signs are found."""

    precedence: Literal["overfitting-first", "underfitting-first"] = setting(
        "overfitting-first",
        "choice",
        "when a sustained dataset-Q decline (OF001) and a large TD error / regularizer (UF001, UF002, UF003) "
        "are both found: call the run overfitting (and say the errors are large too), or underfitting",
        "paper Section 3.2: underfitting is when errors fall with capacity 'without exhibiting the overfitting "
        "signs', and 'unlike the overfitting regime, we would not expect the average learned Q-value to "
        "decrease'. underfitting-first was the default before the closed loop (docs/closed_loop.md) showed "
        "alpha-1 runs whose dataset Q peaked and fell with success while TD x H just exceeded the Q range",
        choices=("overfitting-first", "underfitting-first"),
    )


@dataclass
class CheckpointSettings:
    """`checkpoint:` which checkpoint around the dataset-Q peak to deploy."""

    pick: Literal["at-or-before-peak", "next-after-peak", "higher-q-around-peak"] = setting(
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
    )


@dataclass
class Settings:
    """Every settings section, typed: `cfg.settings.smoothing.weight` is a float."""

    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)
    changepoints: ChangepointSettings = field(default_factory=ChangepointSettings)
    verdict: VerdictSettings = field(default_factory=VerdictSettings)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)


#: section name -> its dataclass, in file order (the fields of `Settings`)
SECTION_MODELS: dict[str, type] = {
    "analysis": AnalysisSettings,
    "smoothing": SmoothingSettings,
    "changepoints": ChangepointSettings,
    "verdict": VerdictSettings,
    "checkpoint": CheckpointSettings,
}
#: Settings sections: key -> Param (validation + documentation of the default).
SECTIONS: dict[str, tuple[Param, ...]] = {name: params_of(model) for name, model in SECTION_MODELS.items()}


def check_section(doc: Any, section: str, where: str) -> dict[str, Any]:
    """One settings section of a rules file -> {key: normalised value} (only the keys it sets)."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: {section}: expected a mapping, got {tname(doc)}")
    kinds = {p.name: param_kind(p.kind, p.choices) for p in SECTIONS[section]}
    for k in doc:
        if k not in kinds:
            raise unknown_key(where, doc, k, section, tuple(kinds))
    return {k: kinds[k].check(v, where, f"{section}.{k}") for k, v in doc.items()}


# ----------------------------------------------------------------------------------------------
# compound kinds: their check is a function (the wording of their errors is their own)


def check_mappings(doc: Any, where: str, ypath: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{where}: {ypath}: expected a mapping of canonical metric to tag, got {tname(doc)}"
        )
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if k == "framework":
            if not isinstance(v, str):
                raise ConfigError(f"{where}: {ypath}.framework: expected a profile name, got {tname(v)}")
            out[k] = v
            continue
        if k not in CANONICAL_NAMES:
            raise ConfigError(
                f"{where}: {ypath}.{k}: unknown canonical metric; expected one of {', '.join(CANONICAL_NAMES)}"
            )
        if isinstance(v, str) and v:
            out[k] = v
        elif isinstance(v, dict):
            if set(v) - set(_MAPPING_ENTRY) or not isinstance(v.get("tag"), str):
                raise ConfigError(
                    f"{where}: {ypath}.{k}: expected a tag string or {{tag: <str>, scale: <number>, kind: "
                    f"logged|derived|proxy, note: <str>}}, got {short(v)}"
                )
            if "scale" in v and not is_number(v["scale"]):
                raise ConfigError(f"{where}: {ypath}.{k}.scale: expected a number, got {tname(v['scale'])}")
            if "kind" in v and v["kind"] not in _SERIES_KINDS:
                raise ConfigError(
                    f"{where}: {ypath}.{k}.kind: expected logged, derived or proxy, got {tname(v['kind'])}"
                )
            out[k] = dict(v)
        else:
            raise ConfigError(
                f"{where}: {ypath}.{k}: expected a tag string or {{tag, scale}}, got {tname(v)}"
            )
    return out


_SERIES_KINDS = ("logged", "derived", "proxy")
_MAPPING_ENTRY: dict[str, Any] = {
    "tag": {"type": "string", "description": "exact tag or glob (fnmatch); first sorted match"},
    "scale": {"type": "number", "description": "multiplier (e.g. per-critic); != 1 makes the series derived"},
    "kind": {"enum": list(_SERIES_KINDS)},
    "note": {"description": "appended to the series note"},
}


def mapping_entry_schema() -> dict[str, Any]:
    """JSON Schema of one `mappings:` value: a tag, or {tag, scale, kind, note}."""
    return {
        "anyOf": [
            {"type": "string", "minLength": 1},
            {
                "type": "object",
                "properties": _MAPPING_ENTRY,
                "required": ["tag"],
                "additionalProperties": False,
            },
        ]
    }


def mappings_schema(entry: Mapping[str, Any]) -> dict[str, Any]:
    """JSON Schema of a `mappings:` section whose values follow `entry` (the schema or a $ref to it)."""
    props: dict[str, Any] = {
        "framework": {"type": "string", "description": "force a profile (docs/formats.md)"}
    }
    props.update({name: dict(entry) for name in CANONICAL_NAMES})
    return {
        "type": "object",
        "description": "canonical metric -> tag | {tag, scale, kind, note}; `framework` forces a profile",
        "properties": props,
        "additionalProperties": False,
    }


MAPPINGS = Kind("a mapping of canonical metric to tag", lambda v: True, {}, python=dict)
GLOB = Kind(
    "a glob on the run id",
    lambda v: isinstance(v, str) and bool(v),
    {"type": "string", "minLength": 1},
    python=str,
)
NAME = Kind("a name", lambda v: isinstance(v, str), {"type": "string"}, python=str)
WARM_START = Kind(
    "an integer >= 0 (steps)",
    lambda v: is_int(v, 0),
    {"type": "integer", "minimum": 0},
    convert=int,
    python=int,
)


def run_field(kind: Kind, help: str, *, default: Any = None, factory: Callable[[], Any] | None = None) -> Any:
    """A `runs:` entry key: its kind and help; null means "not set" except for `match`."""
    meta = {"kind": kind, "help": help}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunOverride:
    """A `runs:` entry (and the CLI's --gamma/--reward-range/--horizon): metadata the logs may lack."""

    match: str = run_field(GLOB, "glob on the run id (later entries win)", default="*")
    gamma: float | None = run_field(GAMMA, "discount factor")
    reward_range: tuple[float, float] | None = run_field(REWARD_RANGE, "[r_min, r_max] per step")
    horizon: int | None = run_field(HORIZON, "episode horizon in environment steps")
    dataset_mc_return: float | None = run_field(NUMBER, "mean Monte-Carlo return of the dataset (as Q)")
    checkpoint_interval: int | None = run_field(INT, "in the run's x-axis unit")
    warm_start: int | None = run_field(WARM_START, "actor warm start in steps; 0: none (overrides the logs)")
    mappings: dict[str, Any] = run_field(
        MAPPINGS, "tag mappings of these runs (win over the global ones)", factory=dict
    )
    capacity_group: str | None = run_field(NAME, "runs in one group are compared by capacity (UF003)")

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


RUN_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunOverride))


def _run_kinds() -> dict[str, Kind]:
    return {f.name: f.metadata["kind"] for f in dataclasses.fields(RunOverride)}


def check_runs(doc: Any, where: str) -> list[RunOverride]:
    if not isinstance(doc, list):
        raise ConfigError(f"{where}: runs: expected a list of {{match: <glob>, ...}}, got {tname(doc)}")
    kinds = _run_kinds()
    out = []
    for i, r in enumerate(doc):
        yp = f"runs[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(f"{where}: {yp}: expected a mapping, got {tname(r)}")
        for k in r:
            if k not in kinds:
                raise unknown_key(where, r, k, yp, RUN_KEYS)
        values: dict[str, Any] = {"match": GLOB.check(r.get("match", "*"), where, f"{yp}.match")}
        for k, v in r.items():
            if k == "match" or v is None:
                continue
            values[k] = (
                check_mappings(v, where, f"{yp}.mappings")
                if k == "mappings"
                else kinds[k].check(v, where, f"{yp}.{k}")
            )
        out.append(RunOverride(**values))
    return out


# ----------------------------------------------------------------------------------------------
# select / ignore / levels / params: rule codes (the registry may hold plugin rules: read at call time)


def check_codes(doc: Any, where: str, key: str) -> list[str]:
    if isinstance(doc, str):
        doc = [doc]
    if not isinstance(doc, list):
        raise ConfigError(f"{where}: {key}: expected a list of rule codes or prefixes, got {tname(doc)}")
    out = []
    for i, c in enumerate(doc):
        if not isinstance(c, str) or not c:
            raise ConfigError(f"{where}: {key}[{i}]: expected a rule code or prefix, got {tname(c)}")
        c = c.upper()
        if not any(code.startswith(c) for code in REGISTRY):
            raise ConfigError(
                f"{where}: {key}[{i}]: {tname(c)} matches no rule; known: {', '.join(sorted(REGISTRY))}"
            )
        out.append(c)
    return out


def _check_code(code: Any, where: str, ypath: str) -> str:
    if not isinstance(code, str) or code.upper() not in REGISTRY:
        raise ConfigError(
            f"{where}: {ypath}: unknown rule {tname(code)}; known: {', '.join(sorted(REGISTRY))}"
        )
    return code.upper()


def check_levels(doc: Any, where: str) -> dict[str, str]:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: levels: expected a mapping of rule code to level, got {tname(doc)}")
    level = choice(LEVEL_NAMES)
    return {
        _check_code(code, where, f"levels.{code}"): level.check(lvl, where, f"levels.{code}")
        for code, lvl in doc.items()
    }


def check_params(doc: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: params: expected a mapping of rule code to parameters, got {tname(doc)}")
    out: dict[str, dict[str, Any]] = {}
    for code, vals in doc.items():
        c = _check_code(code, where, f"params.{code}")
        if vals is None:
            continue
        if not isinstance(vals, dict):
            raise ConfigError(
                f"{where}: params.{code}: expected a mapping of parameter to value, got {tname(vals)}"
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


#: The top level of a rules file, in file order: key -> what it holds (its JSON Schema is built below).
TOP_KEYS: tuple[str, ...] = (
    "extends",
    *SECTION_MODELS,
    "select",
    "ignore",
    "levels",
    "params",
    "runs",
    "mappings",
    "profiles",
)
