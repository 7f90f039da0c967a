"""Hostile surroundings of the command line: unreadable sub-directories, a closed stdout.

Issue 12 items 1 and 15.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EVENT_FILE = REPO / "fixtures" / "demo" / "healthy" / "events.out.tfevents.1700000000.demo"
DEMO = REPO / "fixtures" / "demo"


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's analyzer, whatever the cwd
    env.pop("GITHUB_ACTIONS", None)
    env.pop("OFFRL_DEBUG", None)
    return env


def test_closed_stdout_is_one_error_line_not_an_attribute_error(tmp_path):
    """Item 15: `offrl-analyze fixtures/demo --format json >&-` gave `internal error: AttributeError`."""
    p = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m analyzer "{DEMO}" --format json >&-'],
        capture_output=False,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("offrl-analyze: error: "), err
    assert "standard output" in err and "closed" in err and "internal error" not in err


def test_closed_stdout_with_an_output_file_still_works(tmp_path):
    out = tmp_path / "r.json"
    p = subprocess.run(
        [
            "bash",
            "-c",
            f'"{sys.executable}" -m analyzer "{DEMO}" --format json -o "{out}" -q --fail-on none >&-',
        ],
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr.decode()
    assert '"schema_version": 1' in out.read_text()


# ---------------------------------------------------------------------------------------------- item 1


def _tree(root: Path) -> Path:
    """`root/ok/` and `root/nodir/run/`, an event file in each run."""
    for d in (root / "ok", root / "nodir" / "run"):
        d.mkdir(parents=True)
        shutil.copyfile(EVENT_FILE, d / EVENT_FILE.name)
    return root


def _without_dac_override() -> list[str] | None:
    """A command prefix under which permission bits apply (None: cannot be arranged here).

    root has CAP_DAC_OVERRIDE and reads a mode-0 folder anyway; `setpriv` drops it (and
    CAP_DAC_READ_SEARCH) from the bounding set, as in the audit's reproducer.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


def test_unreadable_subdirectory_fails_the_gate_with_path_and_reason(tmp_path):
    """Item 1: a run inside an unreadable sub-directory was skipped silently and the gate exited 0."""
    root = _tree(tmp_path / "t")
    prefix = _without_dac_override()
    if prefix is None:
        pytest.skip(
            "running as root without setpriv: cannot drop CAP_DAC_OVERRIDE to make a folder unreadable"
        )
    (root / "nodir").chmod(0)
    try:
        probe = subprocess.run([*prefix, "ls", str(root / "nodir")], capture_output=True, timeout=30)
        if probe.returncode == 0:
            pytest.skip("the folder stays readable here (capabilities cannot be dropped in this sandbox)")
        p = subprocess.run(
            [*prefix, sys.executable, "-m", "analyzer", str(root), "--fail-on", "error", "--format", "json"],
            capture_output=True,
            env=_env(),
            cwd=tmp_path,
            timeout=120,
        )
    finally:
        (root / "nodir").chmod(0o755)
    assert p.returncode == 1, p.stderr.decode()
    import json

    report = json.loads(p.stdout)
    assert [r["run"] for r in report["runs"]] == ["ok"]
    assert report["errors"] == [
        {
            "path": str(root / "nodir"),
            "message": "directory not readable (Permission denied); logs inside it were not analysed",
            "level": "error",
        }
    ]


def test_a_directory_that_cannot_be_listed_is_reported(tmp_path, monkeypatch):
    """Item 1 without permissions: any OSError while listing a folder (here EIO) becomes an error."""
    import errno

    from analyzer.ingest import load_runs
    from analyzer.output.failon import parse_fail_on
    from analyzer.report import Report

    root = _tree(tmp_path / "t")
    real_scandir = os.scandir
    bad = str(root / "nodir")

    def scandir(path):
        if os.fspath(path) == bad:
            raise OSError(errno.EIO, "Input/output error", bad)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    runs, errors = load_runs([root])
    assert [r.id for r in runs] == ["ok"]
    assert [(e.path, e.level) for e in errors] == [(bad, "error")]
    assert "Input/output error" in errors[0].message
    assert parse_fail_on("error").report_fails(Report(errors=errors))


def test_folders_that_are_merely_absent_are_not_problems():
    """Discovery probes optional folders (`tb/`, `<run>_eval/`); their absence is no ingest issue."""
    from analyzer.ingest import load_runs

    runs, errors = load_runs([DEMO])
    assert len(runs) == 4 and errors == []
