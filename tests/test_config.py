"""Rules file loading: defaults in sync, overrides, and precise ConfigError messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.config import ConfigError, default_config, load_config, render_default_yaml
from analyzer.rules import REGISTRY, all_rules, rule_doc

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_default_yaml_in_sync_with_code():
    text = (ROOT / "rules" / "default.yaml").read_text(encoding="utf-8")
    assert text == render_default_yaml(), "regenerate rules/default.yaml (see its header)"
    cfg = load_config(ROOT / "rules" / "default.yaml")
    ref = default_config()
    assert cfg.settings == ref.settings and cfg.params == ref.params
    # every parameter of every rule is in the file
    for spec in REGISTRY.values():
        for p in spec.params:
            assert f"    {p.name}:" in text, (spec.code, p.name)


def test_rule_docs_in_sync():
    for info in all_rules():
        page = (ROOT / info.doc_path).read_text(encoding="utf-8")
        assert page == rule_doc(info.code), (
            f"regenerate docs: python -m analyzer.rules --write-docs docs/rules ({info.code})"
        )
        for section in ("## What it detects", "## Why", "## Example", "## Remediation", "## Parameters"):
            assert section in page


def test_extends_default_select_ignore_levels_params(tmp_path):
    p = write(
        tmp_path,
        "extends: default\nselect: [OF, UF001]\nignore: [OF002]\nlevels: {UF001: error}\n"
        "params: {OF001: {min_drop_fraction: 0.3}}\nsmoothing: {weight: 0.9}\n",
    )
    cfg = load_config(p)
    assert cfg.enabled("OF001") and cfg.enabled("UF001")
    assert not cfg.enabled("OF002") and not cfg.enabled("UF002") and not cfg.enabled("DV001")
    assert cfg.level_for("UF001") == "error" and cfg.level_for("OF001") == "warning"
    assert cfg.params_for("OF001")["min_drop_fraction"] == 0.3
    assert cfg.params_for("OF001")["max_recovery"] == 0.5  # untouched defaults kept
    assert cfg.settings.smoothing.weight == 0.9
    assert cfg.settings.smoothing.method == "ema"


def test_extends_path_chain_and_runs_overrides(tmp_path):
    write(
        tmp_path,
        "params: {UF001: {td_reading: mse}}\nruns: [{match: 'a/*', gamma: 0.9, horizon: 30}]\n",
        "base.yaml",
    )
    child = write(
        tmp_path,
        "extends: base.yaml\nruns:\n  - {match: 'a/x*', reward_range: [0, 1], capacity_group: g1}\n"
        "  - {match: '*', dataset_mc_return: 3.5}\n",
    )
    cfg = load_config(child)
    assert cfg.params_for("UF001")["td_reading"] == "mse"
    ov = cfg.run_override("a/x1")
    assert ov.gamma == 0.9 and ov.horizon == 30 and ov.reward_range == (0.0, 1.0)
    assert ov.capacity_group == "g1" and ov.dataset_mc_return == 3.5
    other = cfg.run_override("b/y")
    assert other.gamma is None and other.dataset_mc_return == 3.5
    cli = cfg.with_overrides(gamma=0.95, reward_range=(0, 2), horizon=50).run_override("a/x1")
    assert cli.gamma == 0.95 and cli.reward_range == (0.0, 2.0) and cli.horizon == 50


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("bogus: 1\n", ["line 1: unknown key 'bogus' at the top level", "expected one of: extends, "]),
        (
            "params: {OF001: {min_drop: 0.2}}\n",
            ["params.OF001.min_drop: unknown parameter of OF001", "min_drop_fraction"],
        ),
        (
            "params: {OF001: {min_drop_fraction: big}}\n",
            ["params.OF001.min_drop_fraction: expected a number in (0, 1], got 'big'"],
        ),
        ("params: {OF001: {min_drop_fraction: 1.5}}\n", ["expected a number in (0, 1], got number 1.5"]),
        ("params: {ZZ999: {}}\n", ["params.ZZ999: unknown rule 'ZZ999'"]),
        ("levels: {OF001: fatal}\n", ["levels.OF001: expected one of error, warning, info, got 'fatal'"]),
        ("select: [XY]\n", ["select[0]: 'XY' matches no rule"]),
        (
            "runs: [{match: '*', gamma: 1.5}]\n",
            ["runs[0].gamma: expected a discount in [0, 1), got number 1.5"],
        ),
        ("runs: [{match: '*', reward_range: [1, 0]}]\n", ["runs[0].reward_range: expected [r_min, r_max]"]),
        ("runs: [{match: '*', horizon: 2.5}]\n", ["runs[0].horizon: expected an integer >= 1"]),
        (
            "runs: [{match: '*', colour: red}]\n",
            ["line 1: unknown key 'colour' in runs[0]; expected one of: match"],
        ),
        ("mappings: {q_dataa: x}\n", ["mappings.q_dataa: unknown canonical metric"]),
        (
            "mappings: {q_data: {tag: x, scale: big}}\n",
            ["mappings.q_data.scale: expected a number, got 'big'"],
        ),
        ("smoothing: {method: gaussian}\n", ["smoothing.method: expected one of ema, ema2"]),
        (
            "checkpoint: {pick: best}\n",
            ["checkpoint.pick: expected one of at-or-before-peak, next-after-peak"],
        ),
        ("changepoints: {algorithm: kernel, cost: clinear}\n", ["changepoints.cost: 'clinear' needs"]),
        ("verdict: {precedence: bogus}\n", ["verdict.precedence: expected one of overfitting-first"]),
        ("analysis: {skip_warm_start: maybe}\n", ["analysis.skip_warm_start: expected true or false"]),
        ("runs: [{match: '*', warm_start: 1.5}]\n", ["runs[0].warm_start: expected an integer >= 0"]),
        ("- a\n- b\n", ["expected a mapping at the top level (is this a rules file?), got a list"]),
        ("extends: 3\n", ["extends: expected 'default' or a path"]),
    ],
)
def test_bad_values_name_file_path_and_expectation(tmp_path, text, fragments):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert msg.startswith(str(p) + ": "), msg
    for frag in fragments:
        assert frag in msg, msg


def test_yaml_syntax_error_has_line(tmp_path):
    p = write(tmp_path, "params:\n  OF001: {min_drop_fraction: 0.2\nlevels: [\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert str(p) in msg and "YAML syntax error" in msg and "line " in msg


def test_missing_file_and_missing_extends_target(tmp_path):
    with pytest.raises(ConfigError, match="rules file not found"):
        load_config(tmp_path / "nope.yaml")
    p = write(tmp_path, "extends: parent.yaml\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert "extends: target 'parent.yaml' not found" in str(ei.value) and str(p) in str(ei.value)


def test_circular_extends(tmp_path):
    write(tmp_path, "extends: b.yaml\n", "a.yaml")
    b = write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="circular"):
        load_config(b)


def test_cli_override_validation():
    with pytest.raises(ConfigError, match="--gamma: expected a discount"):
        default_config().with_overrides(gamma=1.0)
    with pytest.raises(ConfigError, match="--reward-range"):
        default_config().with_overrides(reward_range=(1.0, 1.0))


def test_empty_file_is_defaults(tmp_path):
    cfg = load_config(write(tmp_path, ""))
    assert cfg.params == default_config().params and cfg.select is None


# ---------------------------------------------------------------------------------------------- typed models, schema

import json  # noqa: E402
import typing  # noqa: E402
from dataclasses import fields  # noqa: E402

import jsonschema  # noqa: E402
import yaml  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from analyzer.config_model import SECTION_MODELS, SECTIONS, RunOverride, Settings  # noqa: E402
from analyzer.config_schema import rules_schema, schema_text  # noqa: E402
from analyzer.config_values import param_kind  # noqa: E402
from analyzer.metrics import CANONICAL_NAMES  # noqa: E402

SCHEMA_FILE = ROOT / "docs" / "rules.schema.json"


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_file_in_sync_with_the_models():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(plugins=False), (
        "regenerate: python -m analyzer.config_schema --builtin --write docs/rules.schema.json"
    )
    assert rules_schema()["properties"].keys() == set(TOP_KEYS_FROM_LOADER())


def TOP_KEYS_FROM_LOADER():  # noqa: N802 - the loader's list, read where the loader keeps it
    from analyzer.config import TOP_KEYS

    return TOP_KEYS


def test_settings_are_typed_attributes_with_the_declared_kinds():
    """Each settings field's annotation agrees with its kind (a fraction is a float, a choice a Literal of
    exactly its choices), and a loaded value has that type (YAML `1` for a float setting becomes 1.0)."""
    assert [f.name for f in fields(Settings)] == list(SECTION_MODELS) == list(SECTIONS)
    for name, model in SECTION_MODELS.items():
        hints = typing.get_type_hints(model)
        for p in SECTIONS[name]:
            kind, hint = param_kind(p.kind, p.choices), hints[p.name]
            if typing.get_origin(hint) is typing.Literal:
                assert typing.get_args(hint) == p.choices == kind.choices, (name, p.name)
            else:
                assert hint is kind.python, (name, p.name, hint, kind.python)
    hints = typing.get_type_hints(RunOverride)
    for f in fields(RunOverride):
        hint = hints[f.name]
        if type(None) in typing.get_args(hint):  # `X | None`: null in a runs: entry means "not set"
            (hint,) = (a for a in typing.get_args(hint) if a is not type(None))
        assert (typing.get_origin(hint) or hint) is f.metadata["kind"].python, f.name


def test_loaded_values_have_the_declared_python_types(tmp_path):
    cfg = load_config(write(tmp_path, "smoothing: {weight: 1}\nchangepoints: {penalty_scale: 3}\n"))
    assert cfg.settings.smoothing.weight == 1.0 and isinstance(cfg.settings.smoothing.weight, float)
    assert isinstance(cfg.settings.changepoints.penalty_scale, float)
    assert isinstance(cfg.settings.changepoints.min_size, int)
    assert default_config().settings == Settings()


GOOD = [
    "",
    "extends: default\n",
    "select: of\nignore: [uf001]\nlevels: {of001: error}\nparams: {of001: {min_drop_fraction: 0.3}, UF001: null}\n",
    "runs: [{match: 'a/*', gamma: 0.9, horizon: 1000.0, reward_range: [0, 1], warm_start: 0, gamma: null}]\n",
    "mappings: {framework: rlkit, q_data: x, td_error: {tag: 'loss/td*', scale: 0.5, kind: derived, note: 7}}\n",
    "select: null\nsmoothing: {method: ema2, weight: 1}\nprofiles: []\n",
]


@pytest.mark.parametrize("text", GOOD)
def test_files_the_loader_accepts_pass_the_schema(tmp_path, text):
    load_config(write(tmp_path, text))
    assert list(_validator().iter_errors(yaml.safe_load(text))) == []


def test_default_yaml_passes_the_schema():
    doc = yaml.safe_load((ROOT / "rules" / "default.yaml").read_text(encoding="utf-8"))
    assert list(_validator().iter_errors(doc)) == []


@pytest.mark.parametrize(
    "text",
    [
        "bogus: 1\n",
        "params: {OF001: {min_drop: 0.2}}\n",
        "params: {OF001: {min_drop_fraction: big}}\n",
        "params: {OF001: {min_drop_fraction: 1.5}}\n",
        "params: {ZZ999: {}}\n",
        "levels: {OF001: fatal}\n",
        "select: [XY]\n",
        "runs: [{match: '*', gamma: 1.5}]\n",
        "runs: [{match: '*', horizon: 2.5}]\n",
        "runs: [{match: '*', colour: red}]\n",
        "runs: [{match: ''}]\n",
        "mappings: {q_dataa: x}\n",
        "mappings: {q_data: {tag: x, scale: big}}\n",
        "smoothing: {method: gaussian}\n",
        "checkpoint: {pick: best}\n",
        "verdict: {precedence: bogus}\n",
        "analysis: {skip_warm_start: maybe}\n",
        "runs: [{match: '*', warm_start: 1.5}]\n",
        "- a\n- b\n",
        "extends: 3\n",
    ],
)
def test_files_the_loader_refuses_for_a_value_or_key_fail_the_schema_too(tmp_path, text):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, text))
    assert list(_validator().iter_errors(yaml.safe_load(text)))


# near-valid documents: every key is real, values are valid or junk, so the loader accepts a good share
_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=4), st.floats(allow_nan=False)
)
_CODES = sorted(REGISTRY)


def _value(p) -> st.SearchStrategy:
    valid = {
        "fraction": st.floats(0.01, 1.0),
        "positive": st.floats(0.01, 1e6),
        "nonneg": st.floats(0.0, 1e6),
        "number": st.floats(-1e6, 1e6),
        "int": st.integers(1, 10_000),
        "bool": st.booleans(),
        "choice": st.sampled_from(p.choices or ("x",)),
    }[p.kind]
    return st.one_of(valid, valid, _JUNK)


def _section(params) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={p.name: _value(p) for p in params})


_codes = st.sampled_from([*_CODES, *(c.lower() for c in _CODES), "OF", "uf", "ZZ9"])
_run = st.fixed_dictionaries(
    {},
    optional={
        "match": st.sampled_from(["*", "a/*", ""]),
        "gamma": st.one_of(st.floats(0, 0.999), _JUNK),
        "horizon": st.one_of(st.integers(1, 10**6), _JUNK),
        "reward_range": st.one_of(st.lists(st.floats(-10, 10), min_size=2, max_size=2), _JUNK),
        "warm_start": st.one_of(st.integers(0, 10**5), _JUNK),
        "checkpoint_interval": st.one_of(st.integers(1, 100), _JUNK),
        "dataset_mc_return": st.one_of(st.floats(-5, 5), _JUNK),
        "capacity_group": st.one_of(st.sampled_from(["g1", "widths"]), _JUNK),
        "mappings": st.dictionaries(
            st.sampled_from([*CANONICAL_NAMES, "framework"]), st.sampled_from(["x/q", ""])
        ),
    },
)
_doc = st.fixed_dictionaries(
    {},
    optional={
        "extends": st.sampled_from(["default", None]),
        **{name: _section(params) for name, params in SECTIONS.items()},
        "select": st.one_of(st.none(), _codes, st.lists(_codes, max_size=3)),
        "ignore": st.one_of(_codes, st.lists(_codes, max_size=3)),
        "levels": st.dictionaries(_codes, st.sampled_from(["error", "warning", "info", "fatal"]), max_size=3),
        "params": st.sampled_from(_CODES).flatmap(
            lambda c: st.fixed_dictionaries({c: st.one_of(st.none(), _section(REGISTRY[c].params))})
        ),
        "runs": st.lists(_run, max_size=2),
        "mappings": st.dictionaries(
            st.sampled_from([*CANONICAL_NAMES, "framework"]),
            st.one_of(
                st.sampled_from(["x/q", ""]),
                st.fixed_dictionaries({"tag": st.just("t")}, optional={"scale": _JUNK}),
            ),
            max_size=3,
        ),
    },
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_doc)
def test_every_file_the_loader_accepts_passes_the_schema(tmp_path, doc):
    """The schema may be looser than the loader (module docstring of analyzer/config_schema.py), never
    stricter: an editor must not flag a file that offrl-analyze reads."""
    text = yaml.safe_dump(doc)
    try:
        load_config(write(tmp_path, text))
    except ConfigError:
        return
    assert list(_validator().iter_errors(yaml.safe_load(text))) == []


def test_published_schema_leaves_plugin_rules_out(monkeypatch):
    """docs/rules.schema.json lists this package's rules whatever plugins the machine has installed;
    `python -m analyzer.config_schema` (plugins included) lists a plugin's rule too."""
    import dataclasses as dc

    from analyzer.rules.base import REGISTRY as registry

    def plugin_check(*args):  # defined in a test module: not an analyzer.* module, so a plugin's
        return None

    some = next(iter(registry.values()))
    monkeypatch.setitem(
        registry, "EX999", dc.replace(some, code="EX999", check=plugin_check, group_check=None)
    )
    assert "params_EX999" in rules_schema()["$defs"]
    assert "params_EX999" not in rules_schema(plugins=False)["$defs"]
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(plugins=False)
