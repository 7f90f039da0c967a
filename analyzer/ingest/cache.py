"""Optional cache of what was read from a run's log files, for re-analysing unchanged runs.

Why: `--watch` and repeated `offrl-analyze` calls re-read every finished run although nothing
changed; loading merged arrays back is 10-100x cheaper than parsing (docs/ingestion.md,
"Caching"). Off by default (`use_cache=False`).

Rules that keep it safe:
* it lives under `$XDG_CACHE_HOME/offrl-workflow` (else `~/.cache/offrl-workflow`), never in a log
  directory;
* one entry per (run path, duplicate policy), overwritten when the run changes, so it cannot grow
  without bound as a live run grows;
* an entry is valid only if every log file's path, size and mtime (ns) match (in a bucket: size,
  LastModified and ETag; the cache itself stays local, never in the bucket), and the reading code
  is the same (size and mtime of the reader modules, plus CACHE_VERSION);
* runs with a log file modified in the last `LIVE_SECONDS` are not stored (still being written);
* entries are `.npz` files loaded with `allow_pickle=False` plus a JSON header: nothing in the
  cache can execute code; any unreadable entry is a miss.
Configs and checkpoints are not cached (small, and they change without the logs changing).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import analyzer.ingest.storage as storage
from analyzer.model import IngestIssue, Series

#: Bump when the reader's output changes, so old entries are never served.
CACHE_VERSION = 2
#: A run whose log files changed this recently is still being written: do not cache it.
LIVE_SECONDS = 60.0


@dataclass
class LogPart:
    """Everything a run's log files yield: merged tags, the files read, issues, layout and x-axis."""

    tags: dict[str, Series]
    files: list[str]
    issues: list[IngestIssue]
    layout: str
    x_unit: str
    d3rlpy_tb: bool
    hparams: list[tuple[str, dict]]
    epoch_steps: tuple[np.ndarray, np.ndarray] | None


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Identity of the reading code: an edited reader (or a new release) never gets stale entries."""
    here = Path(__file__).parent
    parts: list[Any] = [CACHE_VERSION]
    for name in (
        "__init__.py",
        "csvlogs.py",
        "../tfevents/reader.py",
        "../tfevents/crc.py",
        "merge.py",
        "discover.py",
        "cache.py",
        "wandb_run.py",
        "d3rlpy_pair.py",
    ):
        try:
            st = os.stat(here / name)
            parts.append([name, st.st_size, st.st_mtime_ns])
        except OSError:
            parts.append([name, None])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "offrl-workflow" / f"rawrun-v{CACHE_VERSION}"


def _fingerprint(rd: Any) -> tuple[list[list[Any]], float] | None:
    """[[path, tag/prefix, size, mtime_ns], ...] of the run's log files and the newest mtime (s)."""
    rows: list[list[Any]] = []
    newest = 0.0
    sources = [(e.path, e.prefix) for e in rd.event_files] + [(c.path, c.tag or "") for c in rd.csv_files]
    sources += [(p, "wandb") for p in getattr(rd, "wandb_files", ())]
    for path, label in sources:
        try:
            st = storage.stat(path)  # a bucket's object: size, LastModified and ETag
        except OSError:
            return None
        rows.append([str(path.resolve()), label, *st.key()])
        newest = max(newest, st.mtime or 0.0)
    rows.sort()
    return rows, newest


def _entry(rd: Any, policy: str) -> Path:
    ident = json.dumps([str(rd.path.resolve()), rd.kind, policy])
    return cache_dir() / (hashlib.sha256(ident.encode()).hexdigest()[:32] + ".npz")


def _issue_dict(i: IngestIssue) -> dict[str, Any]:
    return {
        "path": i.path,
        "message": i.message,
        "level": i.level,
        "offset": i.offset,
        "records_lost": i.records_lost,
    }


def store(rd: Any, policy: str, part: LogPart) -> bool:
    """Write `part` for `rd`; False (silently) when it should not or cannot be cached."""
    fp = _fingerprint(rd)
    if fp is None or time.time() - fp[1] < LIVE_SECONDS:
        return False
    arrays: dict[str, Any] = {}  # np.savez(**arrays): Any, or mypy reads the dict as allow_pickle
    tag_meta = []
    for k, (name, s) in enumerate(part.tags.items()):
        arrays[f"s{k}"] = s.steps
        arrays[f"v{k}"] = s.values
        if s.wall_time is not None:
            arrays[f"w{k}"] = s.wall_time
        tag_meta.append([name, list(s.sources), list(s.files), s.wall_time is not None, s.kind, s.note])
    if part.epoch_steps is not None:
        arrays["epoch_e"], arrays["epoch_s"] = part.epoch_steps
    header = {
        "version": code_version(),
        "fingerprint": fp[0],
        "tags": tag_meta,
        "files": part.files,
        "issues": [_issue_dict(i) for i in part.issues],
        "layout": part.layout,
        "x_unit": part.x_unit,
        "d3rlpy_tb": part.d3rlpy_tb,
        "hparams": part.hparams,
    }
    try:
        arrays["header"] = np.array(json.dumps(header, default=str))
        target = _entry(rd, policy)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, target)  # atomic: a concurrent reader sees the old or the new entry
    except (OSError, TypeError, ValueError):
        return False
    return True


def load(rd: Any, policy: str) -> LogPart | None:
    """The cached LogPart for `rd` if its log files are unchanged, else None."""
    target = _entry(rd, policy)
    if not target.is_file():
        return None
    fp = _fingerprint(rd)
    if fp is None:
        return None
    try:
        with np.load(target, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            if header.get("version") != code_version() or header.get("fingerprint") != fp[0]:
                return None
            x_unit = header["x_unit"]
            tags: dict[str, Series] = {}
            for k, (name, sources, files, has_wall, kind, note) in enumerate(header["tags"]):
                tags[name] = Series(
                    name=name,
                    steps=z[f"s{k}"],
                    values=z[f"v{k}"],
                    wall_time=z[f"w{k}"] if has_wall else None,
                    x_unit=x_unit,
                    sources=tuple(sources),
                    files=tuple(files),
                    kind=kind,
                    note=note,
                )
            epoch_steps = (z["epoch_e"], z["epoch_s"]) if "epoch_e" in z.files else None
            # everything built from the header stays inside the try: an unexpected key in an issue
            # (IngestIssue(**i) -> TypeError) is a miss, not a lost run (issue 12, item 16)
            return LogPart(
                tags=tags,
                files=list(header["files"]),
                issues=[IngestIssue(**i) for i in header["issues"]],
                layout=header["layout"],
                x_unit=x_unit,
                d3rlpy_tb=bool(header["d3rlpy_tb"]),
                hparams=[(f, dict(h)) for f, h in header["hparams"]],
                epoch_steps=epoch_steps,
            )
    except Exception:  # a damaged or foreign entry is a cache miss, whatever the reason
        return None
