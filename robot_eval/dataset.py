"""D4RL-style `.npz` datasets: the contract shared with reference_trainer (see docs/robot_eval.md).

Arrays: observations, actions, rewards, terminals, timeouts, next_observations, optional mc_returns; key
`metadata` holds a 0-d unicode array with JSON. Writes are atomic (temp file + rename) so a reader never sees a
half-written dataset.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REQUIRED = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
OPTIONAL = ("mc_returns",)


class DatasetError(ValueError):
    """Unreadable or inconsistent dataset; the message names the file and the reason."""


@dataclass
class Dataset:
    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.arrays["rewards"].shape[0])


def save_dataset(path: str | Path, ds: Dataset, compress: bool = False) -> Path:
    """Write `ds` to `path` atomically (uncompressed by default: ~10x faster to write, images are uint8)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise DatasetError(f"{path}: dataset files must end in .npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = dict(ds.arrays)
    payload["metadata"] = np.array(json.dumps(ds.metadata, sort_keys=True))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            (np.savez_compressed if compress else np.savez)(fh, **payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_dataset(path: str | Path) -> Dataset:
    """Read and validate a dataset; any problem raises DatasetError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing arrays {', '.join(missing)}")
    meta: dict[str, Any] = {}
    if "metadata" in arrays:
        try:
            meta = json.loads(str(arrays.pop("metadata")))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: 'metadata' is not JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise DatasetError(f"{path}: 'metadata' must be a JSON object")
    n = arrays["rewards"].shape[0]
    for k in REQUIRED + tuple(k for k in OPTIONAL if k in arrays):
        if arrays[k].shape[:1] != (n,):
            raise DatasetError(
                f"{path}: {k} has {arrays[k].shape[0] if arrays[k].ndim else 0} rows, rewards has {n}"
            )
    if arrays["observations"].shape != arrays["next_observations"].shape:
        raise DatasetError(f"{path}: observations and next_observations differ in shape")
    for k in ("actions", "rewards"):
        if not np.all(np.isfinite(arrays[k])):
            raise DatasetError(f"{path}: {k} contains NaN or Inf")
    return Dataset(arrays, meta)


def trajectory_bounds(ds: Dataset) -> list[tuple[int, int]]:
    """[start, end) of each trajectory: an episode ends at a terminal or a timeout."""
    ends = np.flatnonzero(ds.arrays["terminals"] | ds.arrays["timeouts"])
    out, start = [], 0
    for e in ends:
        out.append((start, int(e) + 1))
        start = int(e) + 1
    if start < len(ds):
        out.append((start, len(ds)))
    return out
