"""Runs of an MLflow tracking store: `offrl-analyze mlflow:<tracking URI> [--experiment NAME]`.

Why through `MlflowClient`: MLflow 3.x keeps runs in a database (`sqlite:///mlflow.db` is its
default store), older setups in an `mlruns/` folder, teams on a tracking server; the client reads all
three with the same calls, and its store formats are MLflow's to change. What a run gives:

* every metric's history (`get_metric_history`: step, value, timestamp) -> a tag on the step axis,
  points in logging order merged like restarts (`merge.py`: a step logged twice keeps the last value);
* params (MLflow stores them as strings) -> config, each value read back as the number, bool, list or
  None it was logged as (`"0.99"` -> 0.99, `"[256, 256]"` -> [256, 256]); user tags -> `tags.<key>`;
* checkpoint files among the run's artifacts, when the artifact store is a local folder;
* id `<experiment>/<run name>` (the run id's first 8 characters appended when a name repeats).

The analyzer never writes into log stores, and MLflow's stores would: a SQLite database is opened
read-only (`mode=ro`), only after checking that it exists and holds MLflow's tables (else the client
would create them), and a `mlruns/` folder is read only when it already has the `.trash/` folder the
file store's constructor would otherwise create. MLflow is imported only here, when such a source is
given; without it, one line says what to install.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.ingest.configfiles import ConfigResult, add_mapping
from analyzer.ingest.discover import find_checkpoints
from analyzer.ingest.merge import Segment, merge_segments
from analyzer.ingest.profiles import Profile, resolve
from analyzer.model import Checkpoint, IngestIssue, RawRun, Run, Series

__all__ = [
    "INSTALL_HINT",
    "PREFIX",
    "MlflowError",
    "MlflowSource",
    "check_source",
    "load_source",
    "mlflow_problem",
    "parse_source",
    "read_source",
    "source_of",
]

PREFIX = "mlflow:"
INSTALL_HINT = 'pip install "offrl-workflow[mlflow]"'
LAYOUT = "mlflow"
#: tables a tracking database must hold before the client is let near it (else it would create them)
_MLFLOW_TABLES = frozenset({"experiments", "runs", "metrics", "params", "alembic_version"})
#: MLflow caps a param value at 6,000 characters; anything longer is not parsed as a literal
_MAX_PARAM_CHARS = 6000
#: HTTP retry settings for tracking servers, unless set in the environment (see _client)
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
#: metadata.sources keys that let a run be read again (per-run mappings in a rules file)
SOURCE_URI_KEY, SOURCE_RUN_KEY = "mlflow_tracking_uri", "mlflow_run_id"


class MlflowError(Exception):
    """A source that cannot be read at all (no mlflow, no such store, not an MLflow store): one line."""


@dataclass(frozen=True)
class MlflowSource:
    """A tracking store and which of its runs to read.

    `uri`: as the user wrote it after `mlflow:` (`sqlite:///mlflow.db`, `./mlruns`, `file:///...`,
    `http://host:5000`). `experiments`: names (or ids) to read, all experiments when empty.
    `run_ids`: only these runs (re-reading one run), all when empty.
    """

    uri: str
    experiments: tuple[str, ...] = ()
    run_ids: tuple[str, ...] = ()

    def __str__(self) -> str:
        return PREFIX + self.uri


def parse_source(value: object) -> MlflowSource | None:
    """An MLflow source for `mlflow:<uri>` strings (and MlflowSource objects); None for anything else."""
    if isinstance(value, MlflowSource):
        return value
    if isinstance(value, str) and value.startswith(PREFIX):
        return MlflowSource(value[len(PREFIX) :])
    return None


# --------------------------------------------------------------------------------------------------
# Where the store is, checked before the client sees it


@dataclass(frozen=True)
class _Store:
    client_uri: str  # what MlflowClient gets
    kind: str  # "sqlite", "file", "remote"
    local: Path | None  # the database file or mlruns folder


def _sqlite_path(uri: str) -> Path:
    """The file of a SQLAlchemy SQLite URL: sqlite:///rel.db (relative), sqlite:////abs.db (absolute)."""
    rest = uri[len("sqlite:") :]
    if not rest.startswith("//"):
        raise MlflowError(f"{PREFIX}{uri}: a SQLite store is written sqlite:///path/to/mlflow.db")
    rest = rest[2:]
    path, _, _query = rest.partition("?")
    if not path or path == "/":
        raise MlflowError(f"{PREFIX}{uri}: no database file in the URI (an in-memory database holds no runs)")
    return Path(urllib.parse.unquote(path[1:] if path.startswith("/") else path))


def _check_sqlite(uri: str) -> _Store:
    path = _sqlite_path(uri)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise MlflowError(f"{path}: MLflow database {what}")
    ro = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    try:
        con = sqlite3.connect(ro, uri=True)
        try:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise MlflowError(f"{path}: not a readable SQLite database ({exc})") from None
    missing = _MLFLOW_TABLES - names
    if missing:
        raise MlflowError(
            f"{path}: not an MLflow tracking database (no {', '.join(sorted(missing))} table); "
            "nothing was read or written"
        )
    return _Store(f"sqlite:///{ro}&uri=true", "sqlite", path)


def _check_file_store(uri: str) -> _Store:
    if uri.startswith("file:"):
        parsed = urllib.parse.urlparse(uri)
        path = Path(urllib.parse.unquote(parsed.path if parsed.netloc in ("", "localhost") else uri[5:]))
    else:
        path = Path(uri)
    if not path.is_dir():
        raise MlflowError(f"{path}: no such MLflow store folder (mlruns/)")
    if not (path / ".trash").is_dir():
        raise MlflowError(
            f"{path}: not an MLflow file store, or one without its .trash/ folder (MLflow's client would "
            "create it, and offrl-analyze never writes into log folders)"
        )
    return _Store(path.resolve().as_uri(), "file", path)


def _store(uri: str) -> _Store:
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme == "sqlite":
        return _check_sqlite(uri)
    if scheme == "file" or not scheme or (len(scheme) == 1 and os.name == "nt"):
        return _check_file_store(uri)
    return _Store(uri, "remote", None)  # http(s)://, databricks, postgresql:// ...: the client's business


def check_source(source: MlflowSource) -> None:
    """Raise MlflowError (one line) when a local store is missing or not MLflow's; mlflow not needed."""
    _store(source.uri)


# --------------------------------------------------------------------------------------------------
# mlflow, imported lazily


def mlflow_problem() -> str | None:
    """Why MLflow sources cannot be read here (one line that says what to do), or None."""
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient  # noqa: F401
    except ImportError:
        return f"reading MLflow runs needs the mlflow package: {INSTALL_HINT}"
    except Exception as exc:  # a broken install: still one line
        return f"mlflow failed to import ({type(exc).__name__}: {exc}): {INSTALL_HINT}"
    return None


def _client(store: _Store) -> Any:
    problem = mlflow_problem()
    if problem:
        raise MlflowError(problem)
    from mlflow.tracking import MlflowClient

    if store.kind == "file":
        # MLflow >= 3.7 refuses file stores unless asked (they are in maintenance mode); reading an
        # existing mlruns/ folder is what this is for
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if store.kind == "remote":
        # MLflow's own defaults (7 retries, backoff 2, 120 s timeout) take 4 minutes to report a server
        # that is down; a reader answers sooner. Values the user set win.
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # no INFO lines on the CLI's stderr
    try:
        client = MlflowClient(tracking_uri=store.client_uri)
        client.search_experiments(max_results=1)  # opens the store: schema and connection errors here
    except ImportError as exc:  # e.g. the SQLite store without sqlalchemy/alembic (mlflow-skinny)
        raise MlflowError(f"the MLflow store needs {exc.name or exc}: {INSTALL_HINT}") from None
    except Exception as exc:
        raise MlflowError(f"cannot open the MLflow store: {_why(exc)}") from None
    return client


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------
# Reading


def _param_value(text: str) -> Any:
    """A param string read back as what was logged: numbers, bools, None, lists/dicts; else the text."""
    s = text.strip()
    if not s or len(s) > _MAX_PARAM_CHARS:
        return text
    try:
        if s.lstrip("+-").isdigit():
            return int(s)
        f = float(s)  # 0.99, 1e-3, inf, nan
        return f
    except ValueError:
        pass
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if s[0] in "[({" and s[-1] in "])}":
        import ast

        try:
            value = ast.literal_eval(s)  # Python reprs of lists/tuples/dicts (what str() logged)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return text
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, (list, dict)):
            return value
    return text


def _series(
    name: str, history: Sequence[Any], policy: str, where: str, issues: list[IngestIssue]
) -> Series | None:
    """One metric's history as a Series: logging order = (timestamp, step); duplicates per `policy`."""
    if not history:
        return None
    rows = sorted(
        ((int(m.timestamp), int(m.step), float(m.value)) for m in history), key=lambda r: (r[0], r[1])
    )
    wall = np.array([r[0] / 1000.0 for r in rows], dtype=np.float64)
    steps = np.array([r[1] for r in rows], dtype=np.int64)
    values = np.array([r[2] for r in rows], dtype=np.float64)
    merged = merge_segments([Segment(steps, values, wall, where)], policy)
    if len(rows) > 1 and int(merged.steps.shape[0]) == 1:
        issues.append(
            IngestIssue(
                where,
                f"metric {name!r}: {len(rows)} values logged at one step ({int(merged.steps[0])}); only the "
                "last is kept (log it with mlflow.log_metric(key, value, step=...))",
            )
        )
    return Series(
        name=name,
        steps=merged.steps,
        values=merged.values,
        wall_time=merged.wall_time,
        sources=(name,),
        files=(where,),
    )


def _experiments(client: Any, source: MlflowSource) -> list[Any]:
    from mlflow.entities import ViewType

    every = list(
        _paged(lambda token: client.search_experiments(view_type=ViewType.ACTIVE_ONLY, page_token=token))
    )
    if not source.experiments:
        return every
    chosen: list[Any] = []
    for want in source.experiments:
        hit = [e for e in every if e.name == want] or [e for e in every if str(e.experiment_id) == want]
        if not hit:
            names = ", ".join(sorted(e.name for e in every)[:10]) or "none"
            raise MlflowError(f"no experiment named {want!r} (experiments: {names})")
        chosen.extend(h for h in hit if h not in chosen)
    return chosen


def _paged(call: Any) -> Iterable[Any]:
    token = None
    while True:
        page = call(token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def _local_dir(uri: str | None) -> Path | None:
    if not uri or not uri.startswith("file:"):
        return None
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))
    return path if path.is_dir() else None


def _run_ids(runs: Sequence[Any]) -> dict[str, str]:
    """MLflow run id -> name shown: the run name, plus the id's first 8 characters when it repeats."""
    names = [r.info.run_name or r.info.run_id for r in runs]
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return {
        r.info.run_id: (n if seen[n] == 1 else f"{n}-{r.info.run_id[:8]}")
        for r, n in zip(runs, names, strict=True)
    }


def _raw_run(client: Any, store: _Store, exp: Any, run: Any, name: str, policy: str) -> RawRun:
    info = run.info
    where = f"{PREFIX}{store.client_uri if store.kind == 'remote' else store.local} run {info.run_id}"
    issues: list[IngestIssue] = []
    tags: dict[str, Series] = {}
    for key in sorted(run.data.metrics):
        try:
            history = client.get_metric_history(info.run_id, key)
        except Exception as exc:
            issues.append(IngestIssue(where, f"metric {key!r} unreadable: {_why(exc)}", "error"))
            continue
        s = _series(key, history, policy, where, issues)
        if s is not None:
            tags[key] = s
    cfg = ConfigResult()
    params = {k: _param_value(v) for k, v in sorted(run.data.params.items())}
    add_mapping(cfg, params, f"{where} params")
    user_tags = {k: v for k, v in sorted(run.data.tags.items()) if not k.startswith("mlflow.")}
    if user_tags:
        add_mapping(cfg, {k: _param_value(v) for k, v in user_tags.items()}, f"{where} tags", prefix="tags")
    issues.extend(cfg.issues)
    status = str(info.status)
    if status == "RUNNING":
        issues.append(IngestIssue(where, "MLflow run is still RUNNING: its curves may be incomplete", "info"))
    elif status in ("FAILED", "KILLED"):
        issues.append(IngestIssue(where, f"MLflow run ended {status}"))
    artifacts = _local_dir(getattr(info, "artifact_uri", None))
    checkpoints = (
        [Checkpoint(step=c.step, path=c.path) for c in find_checkpoints(artifacts) if not c.epoch_unit]
        if artifacts
        else []
    )
    if store.kind == "file":
        path = Path(store.local or ".") / str(exp.experiment_id) / str(info.run_id)
    elif store.local is not None:
        path = store.local
    else:
        path = Path(store.client_uri)
    return RawRun(
        id=f"{exp.name}/{name}",
        path=path,
        layout=LAYOUT,
        tags=tags,
        files=[where],
        config=cfg.config,
        config_sources=cfg.sources,
        checkpoints=sorted(checkpoints, key=lambda c: (c.step, str(c.path))),
        issues=issues,
        x_unit="step",
    )


def read_source(
    source: MlflowSource, policy: str = "keep-last"
) -> tuple[list[tuple[RawRun, str]], list[IngestIssue]]:
    """Every run of the chosen experiments as (RawRun, MLflow run id), and problems that yielded no run.

    Raises MlflowError (one line) when the store cannot be read at all.
    """
    store = _store(source.uri)
    client = _client(store)
    found: list[tuple[RawRun, str]] = []
    try:
        for exp in _experiments(client, source):
            runs = list(_paged(lambda token, e=exp: client.search_runs([e.experiment_id], page_token=token)))
            if source.run_ids:
                runs = [r for r in runs if r.info.run_id in source.run_ids]
            names = _run_ids(runs)
            for run in runs:
                raw = _raw_run(client, store, exp, run, names[run.info.run_id], policy)
                found.append((raw, run.info.run_id))
    except MlflowError:
        raise
    except Exception as exc:
        raise MlflowError(f"reading the MLflow store failed: {_why(exc)}") from None
    errors: list[IngestIssue] = []
    if not found:
        chosen = ", ".join(source.experiments) if source.experiments else "any experiment"
        errors.append(IngestIssue(str(source), f"no MLflow runs in {chosen}", "error"))
    return found, errors


def load_source(
    source: MlflowSource,
    mappings: Mapping[str, Any] | None = None,
    policy: str = "keep-last",
    profiles: Mapping[str, Profile] | None = None,
) -> tuple[list[Run], list[IngestIssue]]:
    """`read_source`, each run resolved by the alias profiles; an unreadable store is one error."""
    try:
        found, errors = read_source(source, policy)
    except MlflowError as exc:
        return [], [IngestIssue(str(source), str(exc), "error")]
    runs: list[Run] = []
    for raw, run_id in found:
        run = resolve(raw, dict(mappings) if mappings else None, profiles)
        # where to read this run again (per-run mappings in a rules file: analyzer.batch.remap)
        run.metadata.sources[SOURCE_URI_KEY] = source.uri
        run.metadata.sources[SOURCE_RUN_KEY] = run_id
        runs.append(run)
    return runs, errors


def source_of(run: Run) -> MlflowSource | None:
    """The MLflow source that reads `run` alone again, for a run that came from MLflow."""
    uri = run.metadata.sources.get(SOURCE_URI_KEY)
    run_id = run.metadata.sources.get(SOURCE_RUN_KEY)
    return MlflowSource(uri, run_ids=(run_id,)) if uri and run_id else None
