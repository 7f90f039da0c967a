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
    assert cfg.setting("smoothing", "weight") == 0.9
    assert cfg.setting("smoothing", "method") == "ema"


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
