"""Plugins (analyzer/plugins.py): the example package installed and used, broken plugins reported and skipped.

"Installed" the way pip leaves a package behind as far as discovery is concerned: a `*.dist-info`
folder with the example's entry points (read from its own pyproject.toml) on PYTHONPATH, next to its
source. No pip, no network, nothing left in the environment: each check runs the CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from analyzer import plugins
from analyzer.rules.base import Param, RuleSpec

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

from fixtures.synthetic import make_curve

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "offrl-plugin-example"


def _dist_info(site: Path, name: str, version: str, entry_points: dict[str, dict[str, str]]) -> None:
    d = site / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = []
    for group, eps in entry_points.items():
        lines += [f"[{group}]", *(f"{k} = {v}" for k, v in eps.items()), ""]
    (d / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")


def _install_example(site: Path) -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    _dist_info(site, project["name"], project["version"], project["entry-points"])


def _env(site: Path, *extra: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != plugins.DISABLE_ENV}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (site, EXAMPLE / "src", *extra, ROOT))
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def _jsonl_run(run_dir: Path, eval_points: int) -> None:
    """A synthetic overfitting run in the example trainer's own format and tag names."""
    sr = make_curve("overfitting", seed=4, noise=0.05, n_points=150, checkpoint_every=None)
    q, td = sr.run.series["q_data"], sr.run.series["td_error"]
    gap = sr.run.series["cql_gap"] if "cql_gap" in sr.run.series else None
    evals = set(np.linspace(0, len(q) - 1, eval_points).astype(int)) if eval_points else set()
    run_dir.mkdir(parents=True)
    rows = []
    for i, step in enumerate(q.steps):
        row = {
            "step": int(step),
            "agent/q_batch_mean": float(q.values[i]),
            "agent/bellman_mse": float(td.values[i]),
        }
        if gap is not None:
            row["agent/conservative_gap"] = float(gap.values[i])
        if i in evals:
            row["eval/avg_return"] = float(i)
        rows.append(json.dumps(row))
    (run_dir / "metrics.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    md = sr.run.metadata
    cfg = {
        "discount_factor": md.gamma,
        "episode_steps": md.horizon,
        "reward_range": list(md.reward_range),
        "cql_alpha": 2.0,
    }
    (run_dir / "config.json").write_text(json.dumps(cfg), encoding="utf-8")


def test_example_plugin_adds_a_reader_a_profile_a_rule_and_an_output(tmp_path: Path) -> None:
    _install_example(tmp_path / "site")
    env = _env(tmp_path / "site")
    _jsonl_run(tmp_path / "logs" / "run1", eval_points=2)

    out = _cli(env, str(tmp_path / "logs" / "run1"), "--format", "json")
    assert out.returncode in (0, 1), out.stderr
    report = json.loads(out.stdout)
    assert report["errors"] == []  # nothing broken among the plugins
    run = report["runs"][0]
    assert run["framework"] == "mytrainer"  # the plugin's profile resolved the plugin reader's run
    assert run["metrics"]["q_data"]["source"] == "agent/q_batch_mean"
    uf001 = next(f for f in run["findings"] if f["code"] == "UF001")  # H from the profile's metadata keys
    assert uf001["evidence"]["H_source"] == "H = min(horizon 30, 1/(1-gamma) 100)"
    assert run["verdict"] == "overfitting"
    ex = [f for f in run["findings"] if f["code"] == "EX001"]
    assert ex and ex[0]["message"] == "eval_return at 2 steps (fewer than 3)"  # the plugin's rule fired

    tsv = _cli(env, str(tmp_path / "logs" / "run1"), "--format", "tsv")
    assert tsv.returncode in (0, 1), tsv.stderr
    assert tsv.stdout.splitlines() == ["run\tframework\tverdict\tcheckpoint_step", tsv.stdout.splitlines()[1]]
    assert tsv.stdout.splitlines()[1].startswith("run1\tmytrainer\toverfitting\t")

    listed = _cli(env, "rules", "--format", "json")
    codes = [r["code"] for r in json.loads(listed.stdout)]
    assert codes[-1] == "EX001" and codes.index("EX001") > codes.index(
        "CQ003"
    )  # plugin rules after built-ins
    assert "few-evaluations" in _cli(env, "explain", "EX001").stdout

    # the rule reads its parameter from a rules file like any built-in rule
    rules = tmp_path / "rules.yaml"
    rules.write_text("params: {EX001: {min_points: 2}}\n", encoding="utf-8")
    quiet = json.loads(
        _cli(env, str(tmp_path / "logs" / "run1"), "--format", "json", "--rules", str(rules)).stdout
    )
    assert not [f for f in quiet["runs"][0]["findings"] if f["code"] == "EX001"]


def test_without_the_plugin_the_format_is_unknown(tmp_path: Path) -> None:
    _jsonl_run(tmp_path / "logs" / "run1", eval_points=2)
    env = _env(tmp_path / "empty-site")
    out = _cli(env, str(tmp_path / "logs" / "run1"), "--format", "json")
    assert out.returncode == 2 and "no training logs found" in out.stderr
    assert _cli(env, str(tmp_path / "logs"), "--format", "tsv").returncode == 2


BROKEN = {
    "broken_plugins/__init__.py": "",
    "broken_plugins/raises.py": "raise RuntimeError('this plugin is broken on purpose')\n",
    "broken_plugins/dup_rule.py": (
        "from analyzer.rules.base import rule\n"
        "@rule('ZZ001', 'fine', 'info', 's', detects='d', why='w', example='e', remediation='r', family='x')\n"
        "def fine(ctx):\n    return []\n"
        "@rule('OF001', 'taken', 'info', 's', detects='d', why='w', example='e', remediation='r', family='x')\n"
        "def taken(ctx):\n    return []\n"
    ),
    "broken_plugins/shapes.py": (
        "BAD_PROFILE = {'name': 'bad', 'aliases': [{'q_bogus': 'x'}]}\n"
        "BUILTIN_NAME = {'name': 'rlkit'}\n"
        "class NotAReader:\n    name = 'nope'\n"
        "class ClashingOutput:\n    name = 'json'\n    def render(self, report, fail_on):\n        return ''\n"
    ),
}


def test_broken_plugins_are_reported_and_skipped(tmp_path: Path) -> None:
    site, src = tmp_path / "site", tmp_path / "src"
    for rel, text in BROKEN.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text, encoding="utf-8")
    _install_example(site)  # the good plugin, next to the broken ones
    _dist_info(
        site,
        "broken-plugins",
        "1.0",
        {
            "offrl_workflow.rules": {"raises": "broken_plugins.raises", "dup": "broken_plugins.dup_rule"},
            "offrl_workflow.profiles": {
                "bad": "broken_plugins.shapes:BAD_PROFILE",
                "clash": "broken_plugins.shapes:BUILTIN_NAME",
                "missing": "broken_plugins.nowhere:P",
            },
            "offrl_workflow.readers": {"nope": "broken_plugins.shapes:NotAReader"},
            "offrl_workflow.outputs": {"json2": "broken_plugins.shapes:ClashingOutput"},
        },
    )
    _jsonl_run(tmp_path / "logs" / "run1", eval_points=0)
    out = _cli(_env(site, src), str(tmp_path / "logs" / "run1"), "--format", "json")
    assert out.returncode in (0, 1) and "Traceback" not in out.stderr, out.stderr
    report = json.loads(out.stdout)
    problems = {e["path"]: e["message"] for e in report["errors"]}
    assert all(e["level"] == "warning" for e in report["errors"])
    want = {
        "plugin offrl_workflow.rules:raises (broken-plugins 1.0)": "RuntimeError: this plugin is broken on purpose",
        "plugin offrl_workflow.rules:dup (broken-plugins 1.0)": "rule code OF001 registered twice",
        "plugin offrl_workflow.profiles:bad (broken-plugins 1.0)": "unknown canonical metric 'q_bogus'",
        "plugin offrl_workflow.profiles:clash (broken-plugins 1.0)": "'rlkit' is a built-in profile's name",
        "plugin offrl_workflow.profiles:missing (broken-plugins 1.0)": "ModuleNotFoundError",
        "plugin offrl_workflow.readers:nope (broken-plugins 1.0)": "expected a reader",
        "plugin offrl_workflow.outputs:json2 (broken-plugins 1.0)": "output format 'json' exists already",
    }
    for path, text in want.items():
        assert path in problems and text in problems[path], (path, problems.get(path))
    run = report["runs"][0]
    codes = {f["code"] for f in run["findings"]}
    assert (
        "EX001" in codes and "ZZ001" not in codes
    )  # the good plugin works; the half-broken one left nothing
    assert run["framework"] == "mytrainer" and run["verdict"] == "overfitting"
    # the table says so too, as warnings, and exits like a run without plugins would
    table = _cli(_env(site, src), str(tmp_path / "logs" / "run1"))
    assert table.returncode in (0, 1) and "warning: plugin offrl_workflow.rules:raises" in table.stdout
    listed = _cli(_env(site, src), "rules")
    assert listed.returncode == 0 and "EX001" in listed.stdout
    assert "warning: plugin offrl_workflow.rules:dup (broken-plugins 1.0): ValueError" in listed.stderr


def test_plugins_can_be_turned_off(tmp_path: Path) -> None:
    _install_example(tmp_path / "site")
    env = {**_env(tmp_path / "site"), plugins.DISABLE_ENV: "1"}
    codes = [r["code"] for r in json.loads(_cli(env, "rules", "--format", "json").stdout)]
    assert "EX001" not in codes


# --------------------------------------------------------------------------------------------------
# The loader in this process (no global state touched: a private registry, patched entry points)
# --------------------------------------------------------------------------------------------------


def _spec(code: str) -> RuleSpec:
    return RuleSpec(code, "n", "info", "s", (Param("p", 1, "int", "h", "s"),), "d", "w", "e", "r", None, "x")


def test_rule_plugin_objects_roll_back_when_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "_PROBLEMS", {})
    monkeypatch.setattr(plugins, "_LOADED", {})
    objects = {"good": [_spec("AB001")], "half": [_spec("AB002"), _spec("AB001")], "code": _spec("bad1")}
    eps = [metadata.EntryPoint(n, f"m:{n}", plugins.GROUPS["rules"]) for n in objects]
    monkeypatch.setattr(
        plugins, "_entry_points", lambda group: eps if group == plugins.GROUPS["rules"] else []
    )
    monkeypatch.setattr(metadata.EntryPoint, "load", lambda self: objects[self.name])
    registry: dict[str, RuleSpec] = {}

    def register(spec: RuleSpec) -> None:
        if spec.code in registry:
            raise ValueError(f"rule code {spec.code} registered twice")
        registry[spec.code] = spec

    plugins.load_rule_plugins(registry, register, RuleSpec)
    assert set(registry) == {"AB001"}  # `half` added AB002 before failing: rolled back
    msgs = {p.name: p.message for p in plugins.plugin_problems()}
    assert msgs["half"] == "ValueError: rule code AB001 registered twice"
    assert "rule code 'bad1': expected 2-4 capital letters" in msgs["code"]
    assert [p.name for p in plugins.loaded_plugins()] == ["good"]
