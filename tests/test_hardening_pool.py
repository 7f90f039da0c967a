"""`--workers` (issue 12, item 7): the pool is capped by CPUs and runs, and dies with its parent.

The orphan test starts a real parent process whose workers block, ends the parent (SIGTERM,
SIGINT, SIGKILL) and checks in /proc that none of its workers is left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import analyzer.ingest.pool as pool
from analyzer.ingest import load_runs

ROOT = Path(__file__).resolve().parent.parent


def test_worker_count_is_capped_by_cpus_and_jobs(monkeypatch):
    monkeypatch.setattr(pool, "available_cpus", lambda: 4)
    assert pool.worker_count(10_000, 5_000) == 4
    assert pool.worker_count(64, 3) == 3
    assert pool.worker_count(2, 300) == 2
    assert pool.worker_count(0, 10) == 1 and pool.worker_count(8, 0) == 1
    assert pool.available_cpus() == 4


def _runs(root: Path, n: int) -> Path:
    for i in range(n):
        d = root / f"r{i}"
        d.mkdir(parents=True)
        (d / "progress.csv").write_text("step,loss\n" + "".join(f"{s},{i + s}\n" for s in range(5)))
    return root


def test_load_runs_starts_no_more_workers_than_cpus_and_runs(tmp_path, monkeypatch):
    started: list[int] = []
    real = pool.ProcessPoolExecutor

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, max_workers=None, **kw):
            started.append(max_workers)
            super().__init__(max_workers=max_workers, **kw)

    monkeypatch.setattr(pool, "ProcessPoolExecutor", Spy)
    monkeypatch.setattr(pool, "available_cpus", lambda: 2)
    root = _runs(tmp_path / "logs", 3)
    runs, errors = load_runs([root], workers=10_000)
    assert started == [2] and errors == []
    assert [r.raw["loss"].values.tolist() for r in runs] == [[i + s for s in range(5)] for i in range(3)]
    assert load_runs([_runs(tmp_path / "one", 1)], workers=64)[0][0].id == "r0"  # one run: no pool
    assert started == [2]


_PARENT = """
import sys, time
import analyzer.ingest as ingest
import analyzer.ingest.pool as pool

def blocked(rd, *args):
    time.sleep(600)  # a worker that would outlive its parent for ten minutes
    return None, []

ingest._load_one = blocked
pool.available_cpus = lambda: 2  # a pool even on a one-CPU machine
ingest.load_runs([sys.argv[1]], workers=64)
"""


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is `pid`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            status = Path(f"/proc/{name}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields["PPid"]) == pid and not fields["State"].strip().startswith("Z"):
            out.append(int(name))
    return out


def _alive(pids: list[int]) -> list[int]:
    left = []
    for p in pids:
        try:
            state = Path(f"/proc/{p}/status").read_text().split("State:")[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            left.append(p)
    return left


def _wait(predicate, limit: float = 60.0) -> bool:
    """Poll `predicate` (a bounded wait for processes to appear or go; no timing is asserted)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_ending_the_parent_ends_its_workers(tmp_path, sig):
    root = _runs(tmp_path / "logs", 3)
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(_PARENT))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, str(script), str(root)],
        env=env,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        assert _wait(lambda: len(_children(parent.pid)) >= 2), "the pool never started"
        workers = _children(parent.pid)
        assert len(workers) == 2  # capped: 64 asked, 2 CPUs, 3 runs
        parent.send_signal(sig)
        parent.wait(timeout=60)
        assert _wait(lambda: not _alive(workers)), f"orphaned workers after {sig.name}: {_alive(workers)}"
    finally:
        for p in _alive(workers) + ([parent.pid] if parent.poll() is None else []):
            os.kill(p, signal.SIGKILL)
    assert parent.returncode == -sig  # the parent still ends by the signal it got
