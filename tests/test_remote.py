"""Runs in a bucket: `offrl-analyze s3://...` against a real S3 API (moto's server on 127.0.0.1).

The same runs are uploaded to the bucket and kept on disk; each test compares the bucket's report
with the disk's (JSON, paths replaced by one placeholder), so every reader (event files in blocks,
every CSV layout, configs, W&B records, checkpoints, damaged files, nested runs) is exercised
through the filesystem layer (analyzer/ingest/storage.py) and must not change a verdict, a pick or
a finding. No network and no account: the fixture starts the server and uses dummy credentials.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("s3fs", reason="the 'remote' extra (s3fs) is not installed")
moto_server = pytest.importorskip("moto.server", reason="moto[server] (the 'test' extra) is not installed")

from analyzer.cli import app  # noqa: E402
from analyzer.tfevents import EventWriter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "offrl-logs"
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/offrl-test-aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/offrl-test-aws-credentials",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _damaged_corpus(root: Path) -> None:
    """Damage the reader must report the same way wherever the file is."""
    d = root / "damaged" / "torn_events"
    d.mkdir(parents=True)
    f = d / "events.out.tfevents.1700000000.torn"
    steps = np.arange(0, 6000, 10)
    with EventWriter(f) as w:
        w.add_scalar_table(
            steps, {"offrl/q_data": np.sin(steps / 900.0), "offrl/td_error": np.full(600, 0.1)}
        )
    data = bytearray(f.read_bytes())
    data[len(data) // 3] ^= 0xFF  # a flipped byte,
    data[2 * len(data) // 3 : 2 * len(data) // 3] = b"\x13" * 37  # inserted garbage (resynchronised)
    f.write_bytes(bytes(data[:-7]))  # and a torn last record
    (root / "damaged" / "binary_csv").mkdir()
    (root / "damaged" / "binary_csv" / "progress.csv").write_bytes(b"\x00\x01\x02garbage\xff" * 50)
    (root / "damaged" / "empty_events").mkdir()
    (root / "damaged" / "empty_events" / "events.out.tfevents.1.empty").write_bytes(b"")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(endpoint URL, local copy of the corpus): moto's S3 server with the corpus uploaded."""
    boto3 = pytest.importorskip("boto3")
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    local = tmp_path_factory.mktemp("corpus")
    shutil.copytree(ROOT / "fixtures" / "formats", local / "formats")
    shutil.copytree(
        ROOT / "fixtures" / "demo", local / "nested" / "team" / "demo", ignore=shutil.ignore_patterns("*.py")
    )
    shutil.copytree(
        ROOT / "fixtures" / "real" / "corl" / "wandb", local / "wandb_runs" / "wandb"
    )  # W&B records
    _damaged_corpus(local)
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        for p in sorted(local.rglob("*")):
            if p.is_file():
                client.put_object(Bucket=BUCKET, Key=p.relative_to(local).as_posix(), Body=p.read_bytes())
        yield endpoint, local, client
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def _report(path: str, *extra: str) -> dict:
    code, out, err = _cli(path, "--format", "json", "--exit-zero", "-q", *extra)
    assert code == 0, err
    return json.loads(out)


def _without_paths(report: dict, root: str) -> dict:
    """The report with its root folder (a local path or a bucket URL) replaced by one placeholder."""
    text = json.dumps(report, sort_keys=True)
    text = text.replace(root.rstrip("/"), "<ROOT>")
    return json.loads(text)


def _objects(client) -> dict[str, str]:
    return {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


@pytest.mark.parametrize("prefix", ["formats", "nested", "damaged", "wandb_runs"])
def test_bucket_report_equals_the_disk_report(s3, prefix) -> None:
    endpoint, local, client = s3
    before = _objects(client)
    url = f"s3://{BUCKET}/{prefix}/"
    remote = _report(url, "--storage-option", f"endpoint_url={endpoint}")
    disk = _report(str(local / prefix))
    assert remote["runs"], remote
    assert _without_paths(remote, f"s3://{BUCKET}/{prefix}") == _without_paths(disk, str(local / prefix))
    verdicts = {r["run"]: r["verdict"] for r in remote["runs"]}
    if prefix == "nested":  # the demo runs keep their verdicts and checkpoint picks in the bucket
        assert verdicts == {
            "team/demo/healthy": "healthy",
            "team/demo/nan": "inconclusive",  # as on disk: NaN from step 9,000 (fixtures/demo)
            "team/demo/overfit": "overfitting",
            "team/demo/underfit": "underfitting",
        }
        pick = next(r for r in remote["runs"] if r["run"] == "team/demo/overfit")["checkpoint"]
        assert pick["path"].startswith(f"s3://{BUCKET}/nested/team/demo/overfit/ckpt_")
    if prefix == "damaged":
        issues = [i["message"] for r in remote["runs"] for i in r["ingest_issues"]] + [
            e["message"] for e in remote["errors"]
        ]
        for kind in ("data CRC mismatch", "resynchronised at byte", "truncated at byte", "empty event file"):
            assert any(kind in m for m in issues), (kind, issues)
        assert any("binary content" in m for m in issues)
    if prefix == "wandb_runs":  # history decoded from the binary run-<id>.wandb record log
        assert [r["framework"] for r in remote["runs"]] == ["corl"] and remote["runs"][0]["metrics"]
    assert _objects(client) == before  # the analyzer never writes into the bucket


def test_event_files_are_read_in_blocks_with_the_same_result(s3, monkeypatch) -> None:
    """Block size 4 KiB: every event file takes many ranged GETs, and the report does not change."""
    from analyzer.ingest import storage

    endpoint, local, _ = s3
    url = f"s3://{BUCKET}/nested/"
    whole = _report(url, "--storage-option", f"endpoint_url={endpoint}")
    calls: list[tuple[int | None, int | None]] = []
    real = storage.Remote.cat

    def counting(self, key, start=None, end=None):
        calls.append((start, end))
        assert start is None or end is None or end - start <= 4096
        return real(self, key, start, end)

    monkeypatch.setattr(storage, "BLOCK", 4096)
    monkeypatch.setattr(storage.Remote, "cat", counting)
    assert _report(url, "--storage-option", f"endpoint_url={endpoint}") == whole
    assert sum(1 for s, _ in calls if s is not None) > 20  # ranged reads, not whole objects


def test_workers_read_a_bucket_too(s3) -> None:
    endpoint, _, _ = s3
    url = f"s3://{BUCKET}/formats/"
    one = _report(url, "--storage-option", f"endpoint_url={endpoint}")
    two = _report(url, "--storage-option", f"endpoint_url={endpoint}", "--workers", "2")
    assert one == two


def test_ray_tasks_read_a_bucket_too(s3) -> None:
    """`--executor ray`: the runs of a bucket read and diagnosed in Ray tasks (each task reconnects with the
    same storage options), the report the local reading gives."""
    ray = pytest.importorskip("ray", reason="Ray (the 'cluster' extra) is not installed")
    endpoint, _, _ = s3
    url = f"s3://{BUCKET}/formats/"
    local = _report(url, "--storage-option", f"endpoint_url={endpoint}")
    if ray.is_initialized():
        ray.shutdown()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        on_ray = _report(url, "--storage-option", f"endpoint_url={endpoint}", "--executor", "ray")
    finally:
        ray.shutdown()
    assert on_ray == local and local["runs"]


def test_single_file_url(s3) -> None:
    endpoint, local, _ = s3
    key = "nested/team/demo/overfit/events.out.tfevents.1700000000.demo"
    remote = _report(f"s3://{BUCKET}/{key}", "--storage-option", f"endpoint_url={endpoint}")
    disk = _report(str(local / key))
    assert _without_paths(remote, f"s3://{BUCKET}/nested") == _without_paths(disk, str(local / "nested"))
    assert remote["runs"][0]["verdict"] == "overfitting"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"s3://no-such-bucket-{os.getpid()}/runs/", "not found"),
        (f"s3://{BUCKET}/no/such/prefix/", "no such file or folder in the bucket"),
    ],
)
def test_missing_bucket_or_prefix_exits_2_with_one_line(s3, url, says) -> None:
    endpoint, _, _ = s3
    code, out, err = _cli(url, "--storage-option", f"endpoint_url={endpoint}")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and url.rstrip("/") in err and says in err, err


def test_bad_credentials_exit_2_with_one_line(s3) -> None:
    """moto checks signatures once auth is switched on; an unknown key is refused, in one line."""
    import requests

    endpoint, _, _ = s3
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10)
    try:
        code, out, err = _cli(
            f"s3://{BUCKET}/formats/",
            "--storage-option",
            f"endpoint_url={endpoint}",
            "--storage-option",
            "key=AKIAUNKNOWNKEY000000",
            "--storage-option",
            "secret=wrong",
        )
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "access denied" in err, err


def test_storage_option_needs_a_url_and_key_value(tmp_path) -> None:
    code, _, err = _cli(str(ROOT / "fixtures" / "demo"), "--storage-option", "anon=true")
    assert code == 2 and "URL paths" in err
    code, _, err = _cli("s3://b/p", "--storage-option", "anon")
    assert code == 2 and "KEY=VALUE" in err


def test_remote_runs_use_the_local_cache(s3, tmp_path, monkeypatch) -> None:
    """Cache keys come from the object's size, LastModified and ETag; the cache stays on disk."""
    from analyzer.ingest import cache, load_runs, storage

    endpoint, _, client = s3
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "LIVE_SECONDS", 0.0)
    url = storage.as_path(f"s3://{BUCKET}/nested/team/demo/", {"endpoint_url": endpoint})
    first, _ = load_runs([url], use_cache=True)
    stored = sorted((tmp_path / "cache").rglob("*.npz"))
    assert len(stored) == 4 and len(first) == 4
    seen: list[str] = []
    import analyzer.ingest as ingest

    original = ingest._read_logs
    monkeypatch.setattr(ingest, "_read_logs", lambda rd, p: seen.append(rd.id) or original(rd, p))
    again, _ = load_runs([storage.as_path(str(url), {"endpoint_url": endpoint})], use_cache=True)
    assert seen == [] and [r.id for r in again] == [r.id for r in first]
    # an object that changes (new ETag and size) is read again; the others still come from the cache
    key = "nested/team/demo/healthy/events.out.tfevents.1700000000.demo"
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=body + body[-200:])
    try:
        load_runs([storage.as_path(str(url), {"endpoint_url": endpoint})], use_cache=True)
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    assert seen == ["healthy"]


def test_watch_follows_a_bucket_reading_only_new_bytes(s3) -> None:
    """An object re-uploaded longer (how a sync job updates a live log) is read from its old end;
    an unchanged bucket costs one listing and no object read; each poll reports what a fresh
    analysis of the bucket reports."""
    import importlib.util

    from analyzer.api import analyze
    from analyzer.ingest import storage
    from analyzer.output.json_out import render_json
    from analyzer.watch import Follower

    endpoint, local, client = s3
    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "fixtures" / "demo" / "make_demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    run = local / "live" / "cql_seed1"
    demo.write_run(run, "overfit", first=0, last=5000)

    def upload() -> None:
        for p in sorted(run.iterdir()):
            client.put_object(Bucket=BUCKET, Key=f"live/cql_seed1/{p.name}", Body=p.read_bytes())

    upload()
    opts = {"endpoint_url": endpoint}
    url = f"s3://{BUCKET}/live/"
    follower = Follower([storage.as_path(url, opts)])
    sizes = []
    for k, (lo, hi) in enumerate([(5100, 12000), (12100, 20000), (None, None)]):
        report, resets = follower.poll()
        fresh = analyze([storage.as_path(url, opts)])
        assert json.loads(render_json(report)) == json.loads(render_json(fresh)) and resets == []
        size = (run / demo.EVENT_NAME).stat().st_size
        if k:
            assert follower.last.changed == 1 and follower.last.bytes_read == size - sizes[-1] + 64
        sizes.append(size)
        if lo is not None:
            demo.write_run(run, "overfit", first=lo, last=hi)
            upload()
    assert {r.run.id: r.verdict for r in report.runs} == {"cql_seed1": "overfitting"}
    follower.poll()
    assert follower.last.changed == 0 and follower.last.bytes_read == 0
    # a shorter object under the same key (a restarted job) is read again from the start
    demo.write_run(run, "overfit", first=0, last=3000)
    upload()
    _, resets = follower.poll()
    assert [r.kind for r in resets] == ["reread"] and "truncated" in resets[0].message
    client.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in _objects(client) if k.startswith("live/")]}
    )
