"""Profile files: the built-in ones against their schema and docs, a user's own through a rules file.

The known answers of every built-in profile are tests/test_profiles.py's TRUTH cases (unchanged by
moving the profiles into files); this file checks the file format itself: the published schema, the
generated docs, validation errors, and a user's framework added with one file and diagnosed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from analyzer.api import analyze
from analyzer.config import ConfigError, load_config, load_profile_file
from analyzer.ingest.profile_docs import render_profiles, schema_text, update_formats
from analyzer.ingest.profile_format import (
    ProfileError,
    builtin_profiles,
    parse_profile,
    profile_schema,
)
from analyzer.ingest.profiles import FRAMEWORKS, detect_framework, profile_set, resolve
from analyzer.metrics import CANONICAL_NAMES
from analyzer.model import RawRun, Series
from fixtures.synthetic import make_curve

ROOT = Path(__file__).resolve().parents[1]
PROFILE_DIR = ROOT / "analyzer" / "profiles"


def _builtin_docs() -> list[tuple[str, dict]]:
    import yaml

    return [
        (p.name, yaml.safe_load(p.read_text(encoding="utf-8")))
        for p in sorted(PROFILE_DIR.glob("*.yaml"))
        if not p.name.startswith("_")
    ]


# --------------------------------------------------------------------------------------------------
# Built-in files: schema, docs, completeness
# --------------------------------------------------------------------------------------------------


def test_published_schema_is_the_generated_one() -> None:
    assert (ROOT / "docs" / "profile.schema.json").read_text(encoding="utf-8") == schema_text()


@pytest.mark.parametrize(("filename", "doc"), _builtin_docs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_builtin_profile_validates_against_the_schema(filename: str, doc: dict) -> None:
    jsonschema.validate(doc, profile_schema())


def test_formats_md_block_is_generated_from_the_files() -> None:
    text = (ROOT / "docs" / "formats.md").read_text(encoding="utf-8")
    assert update_formats(text) == text, "run python -m analyzer.ingest.profile_docs --write"
    # hand-written sections around the block survive regeneration
    assert "## How the framework is detected" in text and "## User mappings" in text


def test_docs_check_command_fails_on_a_stale_block(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    stale = (ROOT / "docs" / "formats.md").read_text(encoding="utf-8").replace("| q_target |", "| q_tgt |", 1)
    (tmp_path / "docs" / "formats.md").write_text(stale, encoding="utf-8")
    (tmp_path / "docs" / "profile.schema.json").write_text(schema_text(), encoding="utf-8")
    cmd = [sys.executable, "-m", "analyzer.ingest.profile_docs", "--check"]
    env_path = {"PYTHONPATH": str(ROOT)}
    bad = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env_path)
    assert bad.returncode == 1 and "formats.md" in bad.stdout
    subprocess.run([*cmd[:-1], "--write"], cwd=tmp_path, check=True, capture_output=True, env=env_path)
    assert subprocess.run(cmd, cwd=tmp_path, capture_output=True, env=env_path).returncode == 0


def test_every_builtin_profile_is_documented_and_in_detection_order() -> None:
    block = render_profiles()
    names = [p.name for p in builtin_profiles()]
    assert tuple(names) == FRAMEWORKS
    for n in names:
        assert f"### {n}" in block
    assert FRAMEWORKS[0] == "offrl" and FRAMEWORKS[-1] == "generic"


@pytest.mark.parametrize("name", ["offrl", "generic"])
def test_catch_all_profiles_cover_every_canonical_metric(name: str) -> None:
    prof = {p.name: p for p in builtin_profiles()}[name]
    assert [a.canonical for a in prof.aliases] == list(CANONICAL_NAMES)


def test_referenced_formulas_are_imported_from_their_path() -> None:
    prof = {p.name: p for p in builtin_profiles()}
    assert prof["d3rlpy"].custom_paths == ("analyzer.ingest.formulas:d3rlpy_cql_gap",)
    assert [f.__name__ for f in prof["tianshou"].custom] == [
        "tianshou_td",
        "tianshou_cql_term",
        "tianshou_cql_gap",
        "tianshou_eval_return",
    ]


# --------------------------------------------------------------------------------------------------
# Validation: the engine's checks and the schema agree
# --------------------------------------------------------------------------------------------------

BAD = [
    ({"name": "x", "colour": 1}, "unknown key 'colour'"),
    ({"signature_tags": ["a"]}, "missing `name`"),
    ({"name": "Bad Name"}, "name: expected lower-case"),
    ({"name": "x", "aliases": [{"q_bogus": "t"}]}, "unknown canonical metric 'q_bogus'"),
    ({"name": "x", "aliases": [{"q_data": {"tag": "t", "kind": "guessed"}}]}, "aliases[0].q_data.kind"),
    ({"name": "x", "aliases": [{"q_data": {"tags": "t"}}]}, "aliases[0].q_data"),
    ({"name": "x", "derivations": [{"td_error": {"op": "pow", "a": "t"}}]}, "derivations[0].td_error.op"),
    ({"name": "x", "derivations": [{"td_error": {"a": "t"}}]}, "expected a mapping with `op` and `a`"),
    ({"name": "x", "path_patterns": ["(unclosed"]}, "path_patterns[0]: not a regular expression"),
    ({"name": "x", "custom": ["no_colon"]}, "custom[0]: expected `package.module:function`"),
    ({"name": "x", "algorithm_from_tags": [{"tag": "t"}]}, "algorithm_from_tags[0]"),
    ({"name": "x", "metadata_keys": {"discount": ["d"]}}, "metadata_keys.discount: unknown metadata field"),
    ({"name": "x", "second_critic": {"q_bogus": "t"}}, "second_critic.q_bogus"),
    ({"name": "x", "fallback": "yes"}, "fallback: expected true or false"),
]


@pytest.mark.parametrize(("doc", "message"), BAD)
def test_bad_profile_documents_are_refused_by_engine_and_schema(doc: dict, message: str) -> None:
    with pytest.raises(ProfileError) as exc:
        parse_profile(doc, "my.yaml")
    assert str(exc.value).startswith("my.yaml: ") and message in str(exc.value)
    if "not a regular expression" not in message:  # the schema cannot compile regexes
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, profile_schema())


def test_custom_formula_that_cannot_be_imported_names_the_path() -> None:
    with pytest.raises(ProfileError, match=r"custom\[0\]: cannot import analyzer.nothing:fn"):
        parse_profile({"name": "x", "custom": ["analyzer.nothing:fn"]}, "my.yaml")


# --------------------------------------------------------------------------------------------------
# A user's framework: one file, listed in a rules file
# --------------------------------------------------------------------------------------------------

MY_PROFILE = """\
name: my_trainer
signature_tags: ["stats/a17", "stats/b23"]
aliases:
  - q_data: {tag: "stats/a17", note: "batch mean Q(s, a_data)"}
  - td_error: "stats/b23"
  - critic_loss: {tag: "stats/c5", per_critic_keys: ["n_q"], default_critics: 2}
derivations:
  - cql_gap: {op: div, a: "stats/d9", b_config: ["cql_weight"], note: "cql term / cql_weight"}
default_algorithm: cql
metadata_keys: {gamma: ["my_discount"]}
"""


def _write_run(run_dir: Path, seed: int = 4) -> object:
    """A synthetic overfitting run logged under a trainer's own tag names, with its truth."""
    sr = make_curve("overfitting", seed=seed, noise=0.05, n_points=150, checkpoint_every=None)
    s = sr.run.series
    steps = s["q_data"].steps
    cols = {
        "stats/a17": s["q_data"].values,
        "stats/b23": s["td_error"].values,
        "stats/c5": 2.0 * s["td_error"].values,
        "stats/d9": 5.0 * np.full(len(steps), 0.3),
    }
    run_dir.mkdir(parents=True)
    lines = ["step," + ",".join(cols)]
    for i, st in enumerate(steps):
        lines.append(f"{int(st)}," + ",".join(repr(float(v[i])) for v in cols.values()))
    (run_dir / "progress.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    md = sr.run.metadata
    cfg = {
        "my_discount": md.gamma,
        "horizon": md.horizon,
        "reward_range": list(md.reward_range),
        "cql_weight": 5.0,
    }
    (run_dir / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return sr


def _rules(tmp_path: Path, profile_text: str = MY_PROFILE) -> Path:
    (tmp_path / "profiles").mkdir(exist_ok=True)
    (tmp_path / "profiles" / "my_trainer.yaml").write_text(profile_text, encoding="utf-8")
    rules = tmp_path / "rules.yaml"
    rules.write_text("profiles: [./profiles/my_trainer.yaml]\n", encoding="utf-8")
    return rules


def test_user_profile_file_adds_a_framework(tmp_path: Path) -> None:
    sr = _write_run(tmp_path / "logs" / "run1")
    without = analyze(tmp_path / "logs")
    assert without.runs[0].run.framework == "generic" and "q_data" not in without.runs[0].run.series

    report = analyze(tmp_path / "logs", _rules(tmp_path))
    run = report.runs[0].run
    assert run.framework == "my_trainer" and "stats/a17" in run.metadata.sources["framework"]
    assert (
        run.series["q_data"].sources == ("stats/a17",)
        and run.series["q_data"].note == "batch mean Q(s, a_data)"
    )
    crit = run.series["critic_loss"]
    assert crit.kind == "derived" and "n_critics default 2" in crit.note
    np.testing.assert_allclose(crit.values, sr.run.series["td_error"].values)  # 2 x TD / 2 critics
    np.testing.assert_allclose(run.series["cql_gap"].values, 0.3)
    assert run.metadata.gamma == sr.run.metadata.gamma and "my_discount" in run.metadata.sources["gamma"]
    assert (
        run.metadata.algorithm == "cql" and "profile my_trainer default" in run.metadata.sources["algorithm"]
    )
    # and the diagnosis runs on it: the synthetic truth is overfitting
    assert report.runs[0].verdict == sr.truth.verdict == "overfitting"


def test_user_profile_through_the_cli_and_extends(tmp_path: Path) -> None:
    _write_run(tmp_path / "logs" / "run1")
    _rules(tmp_path)
    child = tmp_path / "sub" / "child.yaml"
    child.parent.mkdir()
    child.write_text("extends: ../rules.yaml\n", encoding="utf-8")  # profiles: inherited, paths kept
    cfg = load_config(child)
    assert cfg.profiles == [str((tmp_path / "profiles" / "my_trainer.yaml").resolve())]
    out = subprocess.run(
        [sys.executable, "-m", "analyzer", str(tmp_path / "logs"), "--rules", str(child), "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode in (0, 1), out.stderr
    data = json.loads(out.stdout)
    assert data["runs"][0]["framework"] == "my_trainer"
    assert data["runs"][0]["verdict"] == "overfitting"


def test_broken_user_profile_is_a_rules_error_with_exit_2(tmp_path: Path) -> None:
    _write_run(tmp_path / "logs" / "run1")
    rules = _rules(tmp_path, MY_PROFILE.replace("op: div", "op: pow"))
    with pytest.raises(ConfigError, match=r"my_trainer.yaml: derivations\[0\].cql_gap.op"):
        load_config(rules)
    out = subprocess.run(
        [sys.executable, "-m", "analyzer", str(tmp_path / "logs"), "--rules", str(rules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "derivations[0].cql_gap.op" in out.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("profiles: ./one.yaml\n", "profiles: expected a list"),
        ("profiles: [./missing.yaml]\n", "profiles[0]: profile file './missing.yaml' not found"),
    ],
)
def test_profiles_key_errors(tmp_path: Path, text: str, message: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(rules)


def test_profile_file_that_is_not_a_file_or_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profile file: a directory, not a regular file"):
        load_profile_file(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="YAML syntax error"):
        load_profile_file(bad)


def test_a_user_file_with_a_builtin_name_replaces_it(tmp_path: Path) -> None:
    p = tmp_path / "rlkit.yaml"
    p.write_text(
        'name: rlkit\norder: 20\nsignature_tags: ["trainer/QF1 Loss"]\naliases:\n  - q_data: "trainer/QF1 Loss"\n'
    )
    profiles = profile_set([load_profile_file(p)])
    assert tuple(profiles) == FRAMEWORKS
    raw = RawRun(
        id="r",
        path=Path("/logs/r"),
        layout="wide_csv",
        tags={"trainer/QF1 Loss": Series("trainer/QF1 Loss", np.array([0, 1]), np.array([1.0, 2.0]))},
    )
    assert detect_framework(raw, profiles)[0] == "rlkit"
    run = resolve(raw, None, profiles)
    assert run.series["q_data"].sources == ("trainer/QF1 Loss",)  # the user's row, not the built-in's
    assert resolve(raw).series["critic_loss"].sources == ("trainer/QF1 Loss",)  # built-in untouched
