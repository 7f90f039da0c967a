"""A bounded process pool whose workers never outlive the process that started them.

Why its own module: `--workers N` used to start N processes whatever N was (10,000 workers on
2 cores made a load average of 750), and a parent ended by SIGTERM or SIGKILL left its workers
running (issue 12, item 7). Here the pool is sized by the work and the machine, and every way
the parent can end takes its workers with it:

* an exception in the parent (KeyboardInterrupt from Ctrl-C included) terminates the workers
  before it propagates;
* SIGTERM to the parent (from the main thread's point of view) is turned into that same clean-up,
  then the parent ends by SIGTERM as it would have without us;
* SIGKILL cannot be caught: each worker asks Linux to kill it when its parent dies
  (PR_SET_PDEATHSIG) and, on every platform, a watchdog thread in the worker exits when its
  parent process id changes.

Generic on purpose (a function over argument tuples, results in order): reading runs uses it now,
diagnosing runs in the workers can use it later.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

__all__ = ["available_cpus", "run_in_pool", "worker_count"]

_WATCHDOG_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask / cgroup view where the OS has one)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        n = os.process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS / Windows
        n = os.cpu_count()
    return max(1, n or 1)


def worker_count(requested: int, n_jobs: int) -> int:
    """Processes worth starting: never more than asked, than CPUs, or than jobs; at least 1."""
    return max(1, min(int(requested), available_cpus(), int(n_jobs)))


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the parent process ends, however it ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker inherits the parent's handler
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(_WATCHDOG_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="offrl-parent-watchdog", daemon=True).start()


class _Terminated(BaseException):
    """SIGTERM arrived in the parent while the pool ran (BaseException: no `except Exception` eats it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise _Terminated(signum)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[bool]:
    """Within the block SIGTERM raises _Terminated (main thread, default handler only); yields whether it does."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):  # pragma: no cover - no signals here
        yield False
        return
    if previous not in (signal.SIG_DFL, None):
        yield False  # the application handles SIGTERM itself: leave that alone
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield True
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop every worker now (SIGTERM, then SIGKILL for any that linger) and drop pending work."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        with contextlib.suppress(Exception):
            terminate()
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join(timeout=2.0)
    with contextlib.suppress(Exception):
        pool.shutdown(wait=False, cancel_futures=True)


def run_in_pool(
    fn: Callable[..., Any],
    args: Sequence[tuple[Any, ...]],
    workers: int,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """`[fn(*a) for a in args]` in at most `worker_count(workers, len(args))` processes, in order.

    `on_result(index, result)` is called in the parent as results arrive (in order). `fn` must be
    picklable (a module-level function). Whatever ends the parent ends the workers (module doc).
    """
    n = worker_count(workers, len(args))
    results: list[Any] = []
    if n <= 1 or len(args) <= 1:
        for a in args:
            results.append(fn(*a))
            if on_result is not None:
                on_result(len(results) - 1, results[-1])
        return results
    pool = ProcessPoolExecutor(max_workers=n, initializer=_die_with_parent, initargs=(os.getpid(),))
    with _sigterm_raises():
        try:
            columns = list(zip(*args, strict=True)) if args else []
            for res in pool.map(fn, *columns, chunksize=max(1, len(args) // (4 * n))):
                results.append(res)
                if on_result is not None:
                    on_result(len(results) - 1, res)
        except _Terminated as exc:
            _terminate(pool)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), exc.signum)  # end as SIGTERM would have ended us
            raise SystemExit(128 + exc.signum) from None  # pragma: no cover - not reached
        except BaseException:
            _terminate(pool)
            raise
    pool.shutdown(wait=True)
    return results
