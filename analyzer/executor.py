"""Running independent jobs as Ray tasks: many-run analysis, closed-loop trials, training sweeps.

Why Ray and not a scheduler of our own: offline-RL labs already run it (RLlib, Ray Tune), it runs
embedded on one machine (`ray.init()` starts a local instance) and on a cluster by address
(`auto`, `ray://host:10001`), and it documents SLURM and Kubernetes set-ups. Ray is the optional
`cluster` extra: this module imports it only inside its functions, and nothing in the analyzer's
import path imports this module (analyzer.batch does, lazily, for `--executor ray`).

What the callers rely on:
* a job is a module-level function and its arguments (Ray ships the function by reference, so the
  workers need this package installed - a cluster's nodes run the same environment as the driver);
* a task whose worker process dies (killed, node lost) is retried by Ray (`max_retries`), so jobs
  must be resumable from their own files - the trial and sweep runners are;
* an exception raised by a job is raised here as itself (not Ray's wrapper), after the other jobs
  already submitted have been cancelled.
"""

from __future__ import annotations

import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["RayUnavailable", "cluster_cpus", "die_with_parent", "ray_init", "ray_map", "ray_map_chunks"]

INSTALL_HINT = "the ray executor needs Ray: pip install 'offrl-workflow[cluster]' (docs/scaling.md)"


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster at the given address cannot be reached."""


_PR_SET_PDEATHSIG = 1
_libc: Any = None


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess that makes the child get SIGKILL when its parent dies (Linux).

    Why: a trial or sweep run is a subprocess of the process that runs the job (a Ray worker, a
    local thread). If that process is killed (a Ray task killed, a node lost), an orphaned trainer
    would go on writing the run folder while the retried job resumes from it. libc is loaded here,
    before the fork, so the child only makes the one prctl call. None where prctl does not exist.
    """
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        import ctypes

        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return None
    prctl, parent = _libc.prctl, os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(INSTALL_HINT) from exc
    return ray


def ray_init(address: str | None = None, *, num_cpus: int | None = None) -> Any:
    """The `ray` module, connected: to the running instance if this process has one, else to `address`.

    `address` None or "local" starts a private local instance (`num_cpus` caps it; default all CPUs);
    "auto" joins the cluster this node belongs to; "ray://host:10001" connects through Ray Client.
    `RAY_ADDRESS` in the environment is honoured by Ray itself when `address` is None.
    """
    ray = _ray()
    if ray.is_initialized():
        return ray
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    if address and address != "local":
        kw["address"] = address
    elif num_cpus is not None:
        kw["num_cpus"] = int(num_cpus)
    try:
        ray.init(**kw)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(f"cannot start or reach Ray at {address or 'a local instance'}: {exc}") from exc
    return ray


def cluster_cpus(ray: Any) -> int:
    """CPUs the connected cluster offers (at least 1)."""
    try:
        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    except Exception:  # noqa: BLE001 - a Ray Client session may not answer; one CPU is safe
        return 1


def _unwrap(ray: Any, exc: BaseException) -> BaseException:
    """The job's own exception from Ray's RayTaskError (which subclasses it when it can)."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            return cause
    return exc


def ray_map(
    fn: Callable[..., Any],
    args: Sequence[tuple[Any, ...]],
    *,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_retries: int = 3,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """`[fn(*a) for a in args]` as one Ray task each (`num_cpus`/`num_gpus` reserved per task); in order.

    `on_result(index, result)` is called in this process as each task finishes (completion order).
    A task whose worker dies is retried up to `max_retries` times; an exception a task raises is
    raised here once the remaining tasks are cancelled.
    """
    ray = ray_init(address)
    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries)(fn)
    refs = [remote.remote(*a) for a in args]
    return _gather(ray, refs, on_result)


def _gather(ray: Any, refs: list[Any], on_result: Callable[[int, Any], None] | None) -> list[Any]:
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    res = ray.get(ref)
                except Exception as exc:
                    raise _unwrap(ray, exc) from None
                results[index[ref]] = res
                if on_result is not None:
                    on_result(index[ref], res)
    except BaseException:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001, S110 - best effort: the task may have finished meanwhile
                pass
        raise
    return results


def ray_map_chunks(
    fn_chunk: Callable[..., list[Any]],
    items: Sequence[Any],
    shared: tuple[Any, ...] = (),
    *,
    address: str | None = None,
    chunk_size: int | None = None,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """`fn_chunk(chunk, *shared)` over consecutive chunks of `items`, one Ray task (1 CPU) per chunk.

    For many small jobs (one run's analysis takes milliseconds): a task per item would spend more on
    scheduling and transfers than on work. `shared` is put in Ray's object store once. Default chunk
    size: four chunks per cluster CPU, at most 256 items. Returns one result per item, in order;
    `on_result(item_index, result)` is called per item as its chunk finishes.
    """
    ray = ray_init(address)
    if not items:
        return []
    if chunk_size is None:
        chunk_size = max(1, min(256, math.ceil(len(items) / (4 * cluster_cpus(ray)))))
    starts = list(range(0, len(items), chunk_size))
    shared_refs = [ray.put(x) for x in shared]
    remote = ray.remote(num_cpus=1, max_retries=3)(fn_chunk)
    refs = [remote.remote(list(items[s : s + chunk_size]), *shared_refs) for s in starts]
    out: list[Any] = [None] * len(items)

    def per_chunk(k: int, results: list[Any]) -> None:
        for j, res in enumerate(results):
            out[starts[k] + j] = res
            if on_result is not None:
                on_result(starts[k] + j, res)

    _gather(ray, refs, per_chunk)
    return out
