"""The filesystem layer (analyzer/ingest/storage.py) on fsspec's in-memory file system: paths,
listings, options, and the one-line errors. The S3 end-to-end tests are in tests/test_remote.py."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from typer.testing import CliRunner

from analyzer.cli import app
from analyzer.ingest import storage

fsspec = pytest.importorskip("fsspec", reason="the 'remote' extra (fsspec) is not installed")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def mem():
    fs = fsspec.filesystem("memory")
    base = "/offrl-storage-test"
    fs.pipe(f"{base}/runs/a/progress.csv", b"step,loss\n0,1\n1,0.5\n")
    fs.pipe(f"{base}/runs/a/config.json", b'{"gamma": 0.9}')
    fs.pipe(f"{base}/runs/b/sub/.hidden", b"x")
    fs.pipe(f"{base}/runs/b/sub/metrics.csv", b"step,q\n0,1\n")
    yield fs, base
    fs.rm(base, recursive=True)


def test_remote_paths_behave_like_paths(mem) -> None:
    _, base = mem
    root = storage.as_path(f"memory://{base}/runs/")
    assert isinstance(root, storage.RemotePath) and str(root) == f"memory://{base.lstrip('/')}/runs"
    f = root / "a" / "progress.csv"
    assert (f.name, f.stem, f.suffix, f.parent, f.parent.parent) == (
        "progress.csv",
        "progress",
        ".csv",
        root / "a",
        root,
    )
    assert (
        f.relative_to(root) == PurePosixPath("a/progress.csv")
        and f.with_suffix(".json").name == "progress.json"
    )
    assert f.parents[1] == root and f.resolve() is f and f == storage.as_path(str(f))
    with pytest.raises(ValueError):
        root.relative_to(f)
    assert root.exists() and root.is_dir() and not root.is_file()
    assert f.is_file() and not f.is_dir() and f.stat().st_size == 20 and f.read_text().startswith("step")
    assert (root / "b" / "sub").scan() == (["metrics.csv"], [])  # hidden names left out, as locally
    assert not (root / "nothing").exists() and not (root / "a" / "nothing.csv").is_file()
    with pytest.raises(TypeError):
        open(f)  # type: ignore[call-overload]  # no __fspath__: never mistaken for a local file


def test_one_listing_answers_discovery(mem, monkeypatch) -> None:
    from analyzer.ingest import discover_runs

    fs, base = mem
    root = storage.as_path(f"memory://{base}/runs")
    calls = {"find": 0, "ls": 0}
    real_find, real_ls = fs.find, fs.ls
    monkeypatch.setattr(
        fs, "find", lambda *a, **k: calls.__setitem__("find", calls["find"] + 1) or real_find(*a, **k)
    )
    monkeypatch.setattr(
        fs, "ls", lambda *a, **k: calls.__setitem__("ls", calls["ls"] + 1) or real_ls(*a, **k)
    )
    runs = discover_runs(root)
    assert [r.id for r in runs] == ["a", "b/sub"]
    assert calls == {"find": 1, "ls": 0}


def test_local_paths_and_file_urls_stay_local(tmp_path) -> None:
    assert storage.as_path(str(tmp_path)) == tmp_path and not storage.is_url(str(tmp_path))
    assert storage.as_path(f"file://{tmp_path}") == tmp_path
    assert storage.is_url("s3://bucket/x") and storage.is_url("gs://b") and not storage.is_url("C:\\runs")


def test_storage_options_parse_as_yaml_scalars_and_nest() -> None:
    got = storage.parse_storage_options(
        [
            "anon=true",
            "endpoint_url=http://127.0.0.1:9000",
            "client_kwargs.region_name=eu-west-1",
            "n=3",
            "k=",
        ]
    )
    assert got == {
        "anon": True,
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
        "n": 3,
        "k": "",
    }
    for bad in (["novalue"], ["=x"], ["a=1", "a.b=2"]):
        with pytest.raises(ValueError):
            storage.parse_storage_options(bad)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("nosuchproto://bucket/runs", "unknown storage protocol 'nosuchproto'"),
        ("memory://nothing/here", "no such file"),
    ],
)
def test_unusable_urls_exit_2_with_one_line(url, says) -> None:
    r = CliRunner().invoke(app, [url])
    assert r.exit_code == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and says in r.stderr, r.stderr


def test_a_memory_bucket_reads_like_the_folder(mem) -> None:
    """Any fsspec protocol goes through the same layer: fixtures/formats from memory:// == from disk."""
    from analyzer.api import analyze

    fs, base = mem
    src = ROOT / "fixtures" / "formats"
    for p in src.rglob("*"):
        if p.is_file():
            fs.pipe(f"{base}/formats/{p.relative_to(src).as_posix()}", p.read_bytes())

    def summary(report):
        return sorted(
            (
                r.run.id,
                r.verdict,
                r.run.framework,
                r.checkpoint.step if r.checkpoint else None,
                len(r.findings),
            )
            for r in report.runs
        )

    remote = analyze([f"memory://{base}/formats"])
    assert summary(remote) == summary(analyze([src])) and len(remote.runs) >= 14 and not remote.errors


def test_probes_outside_the_listing_cost_one_request_per_parent(mem, monkeypatch) -> None:
    """Runs without checkpoints make find_checkpoints probe sibling folders above the prefix
    (`<parent of root>/checkpoints/<run>`, ...): answered by listing that parent once."""
    from analyzer.ingest import load_runs

    fs, base = mem
    for k in range(6):
        fs.pipe(f"{base}/runs/r{k}/progress.csv", b"step,loss\n0,1\n1,0.5\n")
    calls: list[str] = []
    real_ls = fs.ls
    monkeypatch.setattr(fs, "ls", lambda path, *a, **k: calls.append(path) or real_ls(path, *a, **k))
    runs, _ = load_runs([storage.as_path(f"memory://{base}/runs")])
    assert len(runs) == 8 and all(not r.checkpoints for r in runs)
    assert len(calls) <= 2, calls  # the root's parent (and its parent), once each
