"""Hostile surroundings of the command line: unreadable sub-directories, a closed stdout.

Issue 12 items 1 and 15.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
