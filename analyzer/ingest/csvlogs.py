"""CSV log readers: d3rlpy / TorchRL headerless files, rlkit-style wide tables, wandb exports, long tables.

Why one module: every CSV layout shares the same failure modes (empty, binary, truncated,
mislabelled, ragged), so the bytes are checked once here and each layout only decides which
column is the x-axis and how columns become tags. Parsing is pandas' C engine over the whole
file (no Python loop per row); a file is read into memory once and never written.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import analyzer.ingest.storage as storage
from analyzer.ingest.merge import Segment
from analyzer.model import IngestIssue, XUnit

if TYPE_CHECKING:
    import pandas as pd

#: Gradient-step columns, most specific first (docs/ingestion.md, "x-axis"). The first one present
#: in a header is the x-axis. `trainer/Num Q Updates` is rlkit's gradient-step counter,
#: `sac/total_steps` young-geng/CQL's, `timestep` OfflineRL-Kit's, `learner_steps` Acme's,
#: `_step` wandb's (CORL logs with step=total_it).
STEP_COLUMNS: tuple[str, ...] = (
    "trainer/Num Q Updates",
    "global_step",
    "step",
    "_step",
    "sac/total_steps",
    "total_steps",
    "learner_steps",
    "gradient_steps",
    "num_updates",
    "timestep",
    "timesteps",
    "iteration",
    "itr",
)
#: Epoch columns: used only when no step column exists; the run's x_unit becomes "epoch".
EPOCH_COLUMNS: tuple[str, ...] = ("Epoch", "epoch")
#: Long-format CSV: one row per (tag, step, value).
LONG_TAG_COLUMNS: tuple[str, ...] = ("tag", "metric", "name", "key")
LONG_VALUE_COLUMNS: tuple[str, ...] = ("value", "scalar")
WALL_TIME_COLUMNS: tuple[str, ...] = ("wall_time", "_timestamp", "timestamp")
D3RLPY_GRAD_HEADER = ("epoch", "step", "min", "max", "mean", "std")
_NAN_WORDS = frozenset({"nan", "-nan", "+nan"})
_SNIFF_BYTES = 8192


@dataclass
class CsvLog:
    """What one CSV file contributed: tags in file order (merged later), or why it contributed nothing."""

    path: Path
    #: "d3rlpy_csv", "torchrl_csv", "progress_csv", "offlinerl_kit", "wandb_csv", "wide_csv", "long_csv"; "" if unread
    layout: str
    tags: dict[str, Segment] = field(default_factory=dict)
    x_column: str | None = None
    x_unit: XUnit = "step"
    #: (epoch, step counter at the end of that epoch): places epoch-numbered checkpoints on the step axis
    epoch_steps: tuple[np.ndarray, np.ndarray] | None = None
    issues: list[IngestIssue] = field(default_factory=list)
    ignored: bool = False  # True: recognised as not-a-training-log (e.g. d3rlpy gradient stats); not an error


def _issue(path: Path, message: str, level: str = "warning") -> IngestIssue:
    return IngestIssue(path=str(path), message=message, level=level)  # type: ignore[arg-type]


def read_bytes(path: Path) -> tuple[bytes | None, IngestIssue | None]:
    """Read a whole file, turning OS errors into an issue (permissions, a directory named *.csv, ...)."""
    try:
        return storage.read_bytes(path), None  # a RemotePath: fetched whole, like a local file
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        return None, _issue(path, f"cannot read file: {reason}", "error")


def _text_problem(data: bytes) -> str | None:
    """Why these bytes are not a text CSV, or None if they look like one."""
    if not data:
        return "empty file (0 bytes)"
    head = data[:_SNIFF_BYTES]
    if b"\x00" in head:
        return "binary content (NUL bytes), not a text CSV"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character may be cut at the sniff boundary: tolerate damage in the last 3 bytes
        if exc.start < len(head) - 3 or len(data) <= _SNIFF_BYTES:
            return "binary content (not UTF-8 text), not a text CSV"
    stripped = head.lstrip()
    if not stripped:
        return "empty file (whitespace only)"
    if stripped[:1] in (b"{", b"["):
        return "looks like JSON, not CSV (mislabelled file?)"
    return None


_NON_SPACE = re.compile(rb"\S")


def _first_line(data: bytes) -> bytes:
    """First non-blank line, without copying the (possibly huge) rest of the file."""
    m = _NON_SPACE.search(data)
    start = m.start() if m else 0
    end = data.find(b"\n", start)
    return data[start:] if end < 0 else data[start:end]


def _unix_newlines(data: bytes) -> bytes:
    """Lone `\r` (classic Mac OS, or mixed endings) -> `\n`, so the line scans below see the rows.

    pandas splits on a lone `\r` itself, but the header/row checks here look for `\n` and read a
    `\r`-only file as "header only" (issue 12, item 17). `\r\n` files are left alone (no copy).
    """
    n_cr = data.count(b"\r")
    if n_cr == 0 or n_cr == data.count(b"\r\n"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _has_data_rows(data: bytes) -> bool:
    """Anything but whitespace after the first non-blank line (the header)?"""
    m = _NON_SPACE.search(data)
    start = m.start() if m else 0
    end = data.find(b"\n", start)
    return end >= 0 and _NON_SPACE.search(data, end) is not None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _parse(
    data: bytes, path: Path, issues: list[IngestIssue], names: list[str] | None = None, as_text: bool = False
) -> pd.DataFrame | None:
    """pandas C-engine parse; empty cells are missing, the words nan/inf stay values.

    `as_text`: every cell as the file spells it (for exact huge integers; same rows as without).
    """
    import pandas as pd  # lazy: event-file-only runs never pay pandas' import time

    kwargs: dict = {
        "engine": "c",
        "keep_default_na": False,
        "na_values": [""],
        "on_bad_lines": "warn",
        "encoding_errors": "replace",
        # "a, b" style files: only then pay for skipping spaces after delimiters (~15% slower)
        "skipinitialspace": b", " in data[:_SNIFF_BYTES],
    }
    if names is not None:
        kwargs.update(header=None, names=names, index_col=False)
    if as_text:
        kwargs["dtype"] = str
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            df = pd.read_csv(io.BytesIO(data), **kwargs)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeError) as exc:
            issues.append(_issue(path, f"unparseable CSV: {str(exc).strip().splitlines()[0]}", "error"))
            return None
    skipped = [w for w in caught if "Skipping line" in str(w.message)]
    if skipped:
        lines = re.findall(r"Skipping line (\d+)", " ".join(str(w.message) for w in skipped))
        shown = ", ".join(lines[:5]) + (", ..." if len(lines) > 5 else "")
        issues.append(
            _issue(path, f"ragged rows: skipped {len(lines)} line(s) with too many fields (line {shown})")
        )
    return df


def _numeric(col: pd.Series) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(values float64, present mask, garbage count), or None if the column holds no numbers at all.

    Missing cells (empty) are not points; the words nan/inf are values. Cells that are text in an
    otherwise numeric column count as garbage and are dropped.
    """
    import pandas as pd

    if pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64), np.ones(len(col), dtype=bool), 0
    if pd.api.types.is_numeric_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, ~np.isnan(values), 0
    raw = col.astype("string")
    present_raw = raw.notna().to_numpy()
    num = pd.to_numeric(raw.str.strip(), errors="coerce")
    values = num.to_numpy(dtype=np.float64, na_value=np.nan)
    is_nan_word = raw.str.strip().str.lower().isin(_NAN_WORDS).fillna(False).to_numpy(dtype=bool)
    ok = ~np.isnan(values) | is_nan_word
    garbage = present_raw & ~ok
    if present_raw.any() and not ok[present_raw].any():
        return None
    return values, present_raw & ok, int(garbage.sum())


#: Above this magnitude float64 cannot tell neighbouring integers apart: such steps are re-read as text.
_EXACT_FLOAT = 2.0**53
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _step_column(
    col: pd.Series, name: str, as_text: Callable[[], Sequence[object]], path: Path, issues: list[IngestIssue]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(int64 steps, usable mask) of a step column, or None if it holds no numbers at all.

    Steps stay exact int64 (issue 12): an integer column is taken as is; cells beyond 2**53 in a
    column pandas read as floats (one empty cell is enough) are parsed again from `as_text()`,
    the column as the file spells it. nan/inf and values outside int64 are not steps (damage).
    """
    import pandas as pd

    if pd.api.types.is_signed_integer_dtype(col.dtype):
        return col.to_numpy(dtype=np.int64), np.ones(len(col), dtype=bool)
    parsed = _numeric(col)
    if parsed is None:
        return None
    values, ok, _ = parsed
    with np.errstate(invalid="ignore"):
        ok = ok & np.isfinite(values) & (np.abs(values) <= 2.0**63)  # 2**63 - 1 reads as 2.0**63
        in_range = ok & (values < 2.0**63)
    steps = np.zeros(values.shape[0], dtype=np.int64)
    rounded = np.rint(values[in_range])
    if np.any(rounded != values[in_range]):
        issues.append(
            _issue(path, f"step column {name!r} has non-integer values; rounded to integers", "info")
        )
    steps[in_range] = rounded.astype(np.int64)
    with np.errstate(invalid="ignore"):
        big = np.flatnonzero(ok & (np.abs(values) >= _EXACT_FLOAT))
    if big.size:
        text = col.to_numpy() if pd.api.types.is_object_dtype(col.dtype) else as_text()
        for i in big.tolist():  # only the rare huge cells, so a Python loop is fine
            try:
                exact = int(str(text[i]).strip())
            except (ValueError, IndexError):
                exact = None  # "9.2e18" and the like: the float is all the file says
            if exact is not None and _INT64_MIN <= exact <= _INT64_MAX:
                steps[i] = exact
            elif exact is not None or not in_range[i]:
                ok[i] = False
    return steps, ok


def _text_of(
    data: bytes, path: Path, position: int, names: list[str] | None = None
) -> Callable[[], Sequence[object]]:
    """Lazily re-parse `data` as text and return column `position` (rows as in the numeric parse)."""

    def read() -> Sequence[object]:
        df = _parse(data, path, [], names=names, as_text=True)
        return df.iloc[:, position].to_numpy() if df is not None else ()

    return read


def _drop_truncated_tail(data: bytes, path: Path, issues: list[IngestIssue], n_fields: int) -> bytes:
    """A file still being written (or cut by a crash) ends mid-line: drop that line if it is short."""
    if data.endswith(b"\n") or data.endswith(b"\r"):
        return data
    cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
    if cut < 0:
        return data  # a single line (header or one row): handled by the caller
    last = data[cut + 1 :]
    if last.count(b",") + 1 < n_fields:
        issues.append(
            _issue(
                path,
                f"last line truncated (no newline at end, {last.count(b',') + 1} of {n_fields} fields); dropped",
            )
        )
        return data[: cut + 1]
    return data


def _pick_column(header: list[str], preferred: tuple[str, ...]) -> str | None:
    present = set(header)
    for name in preferred:
        if name in present:
            return name
    lowered = {h.lower().strip(): h for h in header}
    for name in preferred:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def read_csv_log(path: Path, tag: str | None = None) -> CsvLog:
    """Read one CSV log file; never raises on bad data.

    `tag` names the single series of a headerless file (d3rlpy `<metric>.csv`, TorchRL
    `scalars/<key>.csv`); it defaults to the file stem.
    """
    path = storage.as_path(path)
    data, err = read_bytes(path)
    if err is not None or data is None:
        log = CsvLog(path=path, layout="")
        log.issues.append(err or _issue(path, "cannot read file"))
        return log
    return read_csv_bytes(data, path, tag)


def read_csv_bytes(data: bytes, path: Path, tag: str | None = None) -> CsvLog:
    """`read_csv_log` on bytes already read (`path` names the file in issues and picks the layout)."""
    log = CsvLog(path=path, layout="")
    problem = _text_problem(data)
    if problem:
        level = "warning" if problem.startswith("empty") else "error"
        log.issues.append(_issue(path, problem, level))
        return log
    data = _unix_newlines(data)
    first = _first_line(data).decode("utf-8", errors="replace").strip().lstrip("\ufeff")
    fields = [f.strip().strip('"') for f in first.split(",")]
    headerless = all(_is_number(f) for f in fields)
    if headerless:
        return _read_headerless(data, path, log, fields, tag or path.stem)
    return _read_headered(data, path, log, fields)


def _read_headerless(data: bytes, path: Path, log: CsvLog, fields: list[str], tag: str) -> CsvLog:
    if len(fields) == 3:
        log.layout, names = "d3rlpy_csv", ["epoch", "step", "value"]
    elif len(fields) == 2:
        log.layout, names = "torchrl_csv", ["step", "value"]
    else:
        log.issues.append(
            _issue(
                path,
                f"headerless CSV with {len(fields)} columns: not a known layout (expected 2 or 3)",
                "error",
            )
        )
        return log
    data = _drop_truncated_tail(data, path, log.issues, len(names))
    df = _parse(data, path, log.issues, names=names)
    if df is None:
        return log
    step_num = _step_column(
        df["step"], "step", _text_of(data, path, names.index("step"), names), path, log.issues
    )
    val_num = _numeric(df["value"])
    if step_num is None or val_num is None:
        log.issues.append(_issue(path, "no numeric step/value columns", "error"))
        return log
    steps, step_ok = step_num
    values, val_ok, garbage = val_num
    ok = step_ok & val_ok
    if garbage or (~step_ok).any():
        log.issues.append(
            _issue(path, f"dropped {int((~ok).sum())} row(s) with a missing or non-numeric field")
        )
    if not ok.any():
        log.issues.append(_issue(path, "no data rows", "warning"))
        return log
    log.x_column = "step"
    log.tags[tag] = Segment(steps[ok], values[ok], None, str(path))
    if "epoch" in names:
        # d3rlpy's epoch column: the epoch -> step table that puts its TensorBoard twin (global_step =
        # epoch) on this file's step axis when both adapters logged one experiment (d3rlpy_pair.py)
        parsed_epoch = _numeric(df["epoch"])
        if parsed_epoch is not None:
            ep, ep_ok, _ = parsed_epoch
            ep_ok = ep_ok & ok & np.isfinite(ep) & (np.abs(ep) < 2.0**62)
            log.epoch_steps = (np.rint(ep[ep_ok]).astype(np.int64), steps[ep_ok])
    return log


def _read_headered(data: bytes, path: Path, log: CsvLog, header: list[str]) -> CsvLog:
    lowered = [h.lower() for h in header]
    if tuple(lowered) == D3RLPY_GRAD_HEADER:
        log.ignored = True  # d3rlpy per-module gradient statistics: not a training curve, skipped silently
        return log
    data = _drop_truncated_tail(data, path, log.issues, len(header))
    if not _has_data_rows(data):
        log.issues.append(_issue(path, "header only, no data rows"))
        return log
    df = _parse(data, path, log.issues)
    if df is None:
        return log
    # pick columns from pandas' own reading of the header (quoted names may contain commas)
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    columns = list(df.columns)
    tag_col = _pick_column(columns, LONG_TAG_COLUMNS)
    value_col = _pick_column(columns, LONG_VALUE_COLUMNS)
    step_col = _pick_column(columns, STEP_COLUMNS)
    epoch_col = _pick_column(columns, EPOCH_COLUMNS)
    if len(df) == 0:
        log.issues.append(_issue(path, "header only, no data rows"))
        return log
    if tag_col and value_col and (step_col or epoch_col):
        return _read_long(df, data, path, log, tag_col, value_col, step_col or epoch_col)  # type: ignore[arg-type]
    x_col = step_col or epoch_col
    if x_col is None and path.name != "progress.csv":
        # (a viskit progress.csv without a counter is still read: one row per logging iteration)
        log.ignored = True
        log.issues.append(
            _issue(
                path,
                "no step column in header (looked for: step, global_step, _step, Epoch, ...); "
                "not read as a training log",
                "info",
            )
        )
        return log
    if path.name == "policy_training_progress.csv":
        log.layout = "offlinerl_kit"
    elif path.name == "progress.csv":
        log.layout = "progress_csv"
    elif "_step" in df.columns:
        log.layout = "wandb_csv"
    else:
        log.layout = "wide_csv"
    if x_col is None:
        log.issues.append(
            _issue(path, "no step or epoch column; using the row number as the epoch", "warning")
        )
        x_steps = np.arange(len(df), dtype=np.int64)
        x_ok = np.ones(len(df), dtype=bool)
        log.x_unit = "epoch"
        log.x_column = None
    else:
        as_text = _text_of(data, path, columns.index(x_col))
        parsed_steps = _step_column(df[x_col], x_col, as_text, path, log.issues)
        if parsed_steps is None:
            log.issues.append(_issue(path, f"step column {x_col!r} is not numeric", "error"))
            return log
        x_steps, x_ok = parsed_steps
        if (~x_ok).any():
            log.issues.append(
                _issue(path, f"dropped {int((~x_ok).sum())} row(s) without a usable value in {x_col!r}")
            )
        log.x_column = x_col
        log.x_unit = "epoch" if x_col in EPOCH_COLUMNS or x_col.lower() == "epoch" else "step"
    steps = x_steps[x_ok]
    wall_col = _pick_column([c for c in df.columns if c != x_col], WALL_TIME_COLUMNS)
    wall = None
    if wall_col is not None:
        parsed_wall = _numeric(df[wall_col])
        if parsed_wall is not None and parsed_wall[1][x_ok].all():
            wall = parsed_wall[0][x_ok]
    dropped_text = 0
    garbage_cols: list[str] = []
    for col in df.columns:
        if col == x_col or col == wall_col:
            continue
        parsed = _numeric(df[col])
        if parsed is None:
            dropped_text += 1
            continue
        values, ok, garbage = parsed
        if garbage:
            garbage_cols.append(f"{col} ({garbage})")
        ok = ok[x_ok]
        if not ok.any():
            continue
        seg_wall = wall[ok] if wall is not None else None
        log.tags[str(col)] = Segment(steps[ok], values[x_ok][ok], seg_wall, str(path))
    if garbage_cols:
        log.issues.append(
            _issue(path, f"non-numeric cells dropped in column(s): {', '.join(garbage_cols[:5])}")
        )
    if not log.tags:
        reason = "all metric columns are non-numeric" if dropped_text else "no metric values in any column"
        log.issues.append(_issue(path, reason, "error"))
        return log
    if x_col is not None and log.x_unit == "step" and epoch_col is not None and epoch_col in df.columns:
        parsed_epoch = _numeric(df[epoch_col])
        if parsed_epoch is not None:
            ep, ep_ok, _ = parsed_epoch
            ep_ok = ep_ok[x_ok]
            log.epoch_steps = (np.rint(ep[x_ok][ep_ok]).astype(np.int64), steps[ep_ok])
    return log


def _read_long(
    df: pd.DataFrame, data: bytes, path: Path, log: CsvLog, tag_col: str, value_col: str, step_col: str
) -> CsvLog:
    import pandas as pd

    log.layout = "long_csv"
    log.x_column = step_col
    log.x_unit = "epoch" if step_col.lower() == "epoch" else "step"
    as_text = _text_of(data, path, list(df.columns).index(step_col))
    step_p = _step_column(df[step_col], step_col, as_text, path, log.issues)
    val_p = _numeric(df[value_col])
    if step_p is None or val_p is None:
        log.issues.append(_issue(path, f"columns {step_col!r}/{value_col!r} are not numeric", "error"))
        return log
    wall_col = _pick_column(list(df.columns), WALL_TIME_COLUMNS)
    wall_p = _numeric(df[wall_col]) if wall_col else None
    tags = df[tag_col].astype("string")
    ok = step_p[1] & val_p[1] & tags.notna().to_numpy()
    if (~ok).any():
        log.issues.append(
            _issue(path, f"dropped {int((~ok).sum())} row(s) with a missing tag, step or value")
        )
    steps_all = step_p[0]
    keys = tags.to_numpy(dtype=object)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        log.issues.append(_issue(path, "no data rows", "error"))
        return log
    groups = pd.Series(idx).groupby(pd.Series(keys[idx]), sort=False).indices
    for name, pos in groups.items():
        rows = idx[pos]
        wall = wall_p[0][rows] if wall_p is not None and wall_p[1][rows].all() else None
        log.tags[str(name)] = Segment(steps_all[rows], val_p[0][rows], wall, str(path))
    return log
