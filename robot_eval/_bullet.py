"""Quiet, lazy access to pybullet.

pybullet prints a build banner from C on import (to stdout in some builds, stderr in 3.2.7 wheels), which would
corrupt machine-readable CLI output (`--format json`). We point file descriptors 1 and 2 at /dev/null around the
import only; an ImportError is still raised normally afterwards.
"""

from __future__ import annotations

import ctypes
import os
import sys
from types import ModuleType

_PB: ModuleType | None = None


def pybullet() -> ModuleType:
    """Import pybullet once, with its stdout banner suppressed."""
    global _PB
    if _PB is not None:
        return _PB
    if "pybullet" in sys.modules:
        _PB = sys.modules["pybullet"]
        return _PB
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in saved:
            os.dup2(devnull, fd)
        import pybullet as pb

        # the banner goes through C stdio buffers: flush them into /dev/null before restoring the descriptors
        try:
            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):
            pass
    finally:
        for fd, orig in saved.items():
            os.dup2(orig, fd)
            os.close(orig)
        os.close(devnull)
    _PB = pb
    return pb


def data_path() -> str:
    """Directory of the assets bundled with pybullet (`pybullet_data`)."""
    import pybullet_data

    return pybullet_data.getDataPath()
