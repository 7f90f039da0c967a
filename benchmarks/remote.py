"""Reading event files from a bucket vs from disk, same files, same process run.

Writes `--runs` event files (12 tags x `--steps` steps each, benchmarks/ingest.py's generator),
uploads them to moto's S3 server on 127.0.0.1 (the `test` extra: s3fs, moto[s3], flask,
flask-cors), then reads them with `read_event_file` from disk and through the filesystem layer
(one listing, 16 MiB ranged reads fed to an EventStream) from the bucket, `--repeat` times.
The server runs in this process, so its own CPU use is part of the bucket's time: the number is
the layer's overhead on this machine, not a statement about S3's network speed.

    python benchmarks/remote.py                 # 4 runs x 20,000 steps (50 MiB)
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import generate  # noqa: E402

from analyzer.ingest import storage  # noqa: E402
from analyzer.ingest.follow import read_remote_events  # noqa: E402
from analyzer.tfevents import read_event_file  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="offrl-remote-bench-"))
    try:
        endpoint = f"http://127.0.0.1:{port}"
        files = generate(tmp, args.runs, 12, args.steps, False)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="offrl-bench")
        for i, f in enumerate(files):
            client.put_object(Bucket="offrl-bench", Key=f"runs/r{i}/{f.name}", Body=f.read_bytes())
        size = sum(f.stat().st_size for f in files)
        for _ in range(args.repeat):
            t = time.perf_counter()
            n = sum(read_event_file(f).scalars_read for f in files)
            local = time.perf_counter() - t
            t = time.perf_counter()
            root = storage.remote_path("s3://offrl-bench/runs", {"endpoint_url": endpoint})
            root.ensure_listed()
            m = sum(read_remote_events(root / f"r{i}" / f.name).scalars_read for i, f in enumerate(files))
            remote = time.perf_counter() - t
            assert m == n
            print(
                f"{n:,} scalars, {size / 2**20:.0f} MiB: disk {local:.2f} s ({size / local / 2**20:.0f} MiB/s), "
                f"bucket on 127.0.0.1 {remote:.2f} s ({size / remote / 2**20:.0f} MiB/s, listing included)"
            )
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
