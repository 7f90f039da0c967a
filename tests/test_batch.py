"""Many-run analysis: workers read *and* diagnose; the cross-run capacity comparison runs in the parent.

The fixtures carry their own truth: a width sweep whose two smaller runs underfit only by comparison
(fixtures/synthetic.capacity_family), written to disk as our trainer writes runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analyzer.api import analyze
from analyzer.tfevents import EventWriter
from fixtures.synthetic import capacity_family

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "fixtures" / "demo"


def write_run(run, out: Path, width: int) -> None:
    """A run directory as offrl-train writes it: offrl/<metric> tags and a config.json with the capacity."""
    out.mkdir(parents=True)
    (out / "config.json").write_text(
        json.dumps(
            {"algo": "cql", "gamma": 0.99, "horizon": 40, "reward_range": [0, 1], "hidden": width, "depth": 2}
        )
    )
    with EventWriter(out / "events.out.tfevents.1700000000.test") as w:
        for name, s in run.series.items():
            w.add_scalar_table(s.steps, {f"offrl/{name}": s.values}, wall_times=1.7e9 + s.steps * 0.01)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("sweep")
    truth = {}
    for sr in capacity_family(underfit=True, seed=1):
        width = sr.run.metadata.capacity.widths[0]
        write_run(sr.run, root / f"w{width}", width)
        truth[f"w{width}"] = sr.truth.verdict
    return root, truth


def test_two_workers_give_the_report_of_one_including_the_cross_run_comparison(sweep):
    root, truth = sweep
    one, two = analyze([root], workers=1), analyze([root], workers=2)
    assert {r.run.id: r.verdict for r in one.runs} == truth  # two underfit, by comparison only
    assert sum(f.code == "UF003" for r in one.runs for f in r.findings) == 2
    assert two.to_dict() == one.to_dict()
    a, b = one.frame(), two.frame()  # raw and smoothed curves came back intact from the workers
    assert a.equals(b)


def test_workers_send_series_on_shared_step_arrays_without_changing_values(sweep):
    root, _ = sweep
    rep = analyze([root], workers=2)
    run = rep.runs[0].run
    steps = [s.steps for s in run.series.values()]
    assert len({id(x) for x in steps}) == 1  # all tags were logged at the same steps: one array
    assert all(np.array_equal(s.values, run.raw[s.sources[0]].values) for s in run.series.values())


def test_progress_counts_each_run_directory_once_per_stage(sweep):
    root, _ = sweep
    calls: list[tuple[str, int, int, str]] = []
    analyze([root], workers=2, progress=lambda *a: calls.append(a))
    for stage in ("read", "diagnose"):
        mine = [c for c in calls if c[0] == stage]
        assert [c[1] for c in mine] == [1, 2, 3] and {c[2] for c in mine} == {3}
        assert sorted(c[3] for c in mine) == ["w128", "w256", "w512"]


def test_a_run_whose_diagnosis_fails_is_an_error_and_the_others_are_diagnosed(sweep, monkeypatch):
    import analyzer.batch as batch

    real = batch.diagnose_alone

    def broken(run, cfg):
        if run.id == "w256":
            raise ZeroDivisionError("boom")
        return real(run, cfg)

    monkeypatch.setattr(batch, "diagnose_alone", broken)  # workers=1 runs in this process
    root, _ = sweep
    rep = analyze([root], workers=1)
    assert sorted(r.run.id for r in rep.runs) == ["w128", "w512"]
    err = [e for e in rep.errors if e.path.endswith("w256")]
    assert err and "internal error while diagnosing run: ZeroDivisionError: boom" in err[0].message


def test_per_run_mappings_are_applied_in_the_workers(tmp_path):
    fixture = ROOT / "fixtures" / "formats" / "offrl"
    if not fixture.exists():
        pytest.skip("format fixtures not present")
    rules = tmp_path / "r.yaml"
    rules.write_text("extends: default\nruns:\n  - match: 'runs/*'\n    mappings: {q_data: offrl/q_policy}\n")
    for workers in (1, 2):
        rep = analyze([fixture], rules, workers=workers)
        assert rep.runs and all(r.run.series["q_data"].sources == ("offrl/q_policy",) for r in rep.runs)


def test_bad_paths_are_errors_with_workers_too(tmp_path):
    (tmp_path / "empty").mkdir()
    rep = analyze([DEMO / "healthy", tmp_path / "missing", tmp_path / "empty"], workers=2)
    assert [r.verdict for r in rep.runs] == ["healthy"]
    msgs = {Path(e.path).name: e.message for e in rep.errors}
    assert msgs["missing"] == "path does not exist" and "no training logs found" in msgs["empty"]


def test_unknown_executor_is_refused():
    with pytest.raises(ValueError, match="executor must be one of"):
        analyze([DEMO], executor="slurm")


@pytest.mark.parametrize("tool", ["offrl-analyze", "offrl-train sweep"])
def test_executor_ray_without_ray_installed_is_one_line_exit_2(tool, tmp_path):
    """As if the `cluster` extra were not installed: one line naming the extra, exit 2, no traceback."""
    import subprocess
    import sys

    if tool == "offrl-analyze":
        module, args = "analyzer.cli", [str(DEMO / "healthy"), "--executor", "ray"]
    else:
        (tmp_path / "s.yaml").write_text("base: {dataset: toy.npz, steps: 10}\ngrid: {seed: [0, 1]}\n")
        module = "reference_trainer.cli"
        args = ["sweep", str(tmp_path / "s.yaml"), "--executor", "ray", "-o", str(tmp_path / "out")]
    code = f"import sys; sys.modules['ray'] = None\nfrom {module} import main\nmain({args!r})\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(
        f"{tool}: error: the ray executor needs Ray: pip install 'offrl-workflow[cluster]'"
    )
    assert "Traceback" not in out.stderr
