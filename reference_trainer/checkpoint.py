"""Atomic checkpoints and finding the latest readable one after a crash.

Why temp file + os.replace: a SIGKILL during torch.save must never leave a half-written
`ckpt_<step>.pt` that resume or `load_policy` would then try to read.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

CKPT_RE = re.compile(r"^ckpt_(\d+)\.pt$")
#: What `save_atomic` writes before the rename: `.ckpt_<step>.pt.<pid>.tmp`.
TMP_RE = re.compile(r"^\.ckpt_\d+\.pt\.\d+\.tmp$")
FORMAT_VERSION = 1


def checkpoint_dir(log_dir: Path) -> Path:
    return log_dir / "checkpoints"


def checkpoint_path(log_dir: Path, step: int) -> Path:
    return checkpoint_dir(log_dir) / f"ckpt_{step}.pt"


def list_checkpoints(log_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every `ckpt_<step>.pt`, ascending by step."""
    folder = checkpoint_dir(log_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CKPT_RE.match(p.name))]
    return sorted(found)


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_stale_tmp(log_dir: Path) -> list[Path]:
    """Delete the temp files of checkpoint writes that never finished; returns what was removed.

    A SIGKILL between `torch.save` and `os.replace` leaves `.ckpt_<n>.pt.<pid>.tmp` behind (issue 12,
    item 21). Called on `--resume`, when no other trainer may write into this run (one run, one
    trainer): every such file is an orphan, whichever process wrote it.
    """
    folder = checkpoint_dir(log_dir)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if TMP_RE.match(p.name) and p.is_file():
            try:
                p.unlink()
            except FileNotFoundError:
                continue
            removed.append(p)
    return sorted(removed)


def _reason(exc: BaseException) -> str:
    """One short line for why torch.load failed (torch's own messages run to five lines of advice)."""
    text = str(exc)
    name = type(exc).__name__
    if "central directory" in text or "zip archive" in text or isinstance(exc, EOFError):
        return "truncated or corrupt file (not a complete PyTorch zip archive)"
    if "Weights only load failed" in text or name == "UnpicklingError":
        detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
        detail = " ".join(detail.split("Check the documentation")[0].split())
        return "refused by the safe loader: holds objects other than tensors" + (
            f" ({detail})" if detail else ""
        )
    first = " ".join(text.split("\n", 1)[0].split())
    return f"{name}: {first[:200]}" if first else name


def read_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load with weights_only=True (plain tensors and containers only); ValueError if unusable."""
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise next to the real reason
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # torch raises many types for truncated/corrupt zip files
        raise ValueError(f"{path}: unreadable checkpoint: {_reason(exc)}") from None
    if not isinstance(payload, dict) or "actor" not in payload or "config" not in payload:
        raise ValueError(f"{path}: not an offrl-train checkpoint (missing 'actor'/'config')")
    return payload


def latest_valid(log_dir: Path) -> tuple[dict[str, Any], Path, list[str]] | None:
    """Newest checkpoint that loads and holds a full training state; also the skipped ones' reasons."""
    skipped: list[str] = []
    for _step, path in reversed(list_checkpoints(log_dir)):
        try:
            payload = read_checkpoint(path)
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        if "train_state" not in payload:
            skipped.append(f"{path}: holds no training state")
            continue
        return payload, path, skipped
    return None


def rng_state() -> dict[str, Any]:
    """torch/numpy/python RNG states as tensors and plain containers (loadable with weights_only)."""
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy=True: ("MT19937", keys, pos, has_gauss, cached)
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, npst["pos"], npst["has_gauss"], npst["cached"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
