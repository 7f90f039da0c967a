"""Policy loaders: how `offrl-select` finds a run's checkpoints and turns one into a policy (docs/selection.md).

Why a hook: the logs-only tier reads any framework's logs, but the forward-pass and FQE tiers must run the policy of
each checkpoint, and every framework saves policies its own way. A loader is the one framework-specific piece:

    name: str
    pattern: str                                   # the checkpoint files it looks for, for messages
    find_checkpoints(run_dir) -> [(step, path)]    # ascending by step; names only, no file is opened
    load(path) -> policy                           # policy(obs (N, obs_dim) float tensor) -> (N, act_dim) in [-1, 1]

`load` raises ValueError (with the path and reason) for a checkpoint it cannot use; the caller skips that one and
names it. Built in: `reference` (offrl-train's `checkpoints/ckpt_<step>.pt`) and `d3rlpy` (`model_<step>.d3`, through
`d3rlpy.load_learnable`, imported only when used). Others come from the entry-point group
`offrl_workflow.policy_loaders` (an object or class with the attributes above), loaded one at a time and fail-soft
like the analyzer's plugins (analyzer/plugins.py): a broken plugin is reported, never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from analyzer.plugins import DISABLE_ENV, PluginProblem, _enabled

if TYPE_CHECKING:  # torch is imported when a policy is loaded: the logs-only tier runs without it
    import torch

GROUP = "offrl_workflow.policy_loaders"

#: A deterministic policy: (N, obs_dim) float observations -> (N, act_dim) actions in [-1, 1].
PolicyFn = Callable[["torch.Tensor"], "torch.Tensor"]


class LoaderUnavailable(Exception):
    """The loader cannot work here (its library is not installed, an unknown name): a usage error."""


@runtime_checkable
class PolicyLoader(Protocol):
    name: str
    pattern: str

    def find_checkpoints(self, run_dir: Path) -> list[tuple[int, Path]]: ...

    def load(self, path: Path) -> PolicyFn: ...


class ReferenceLoader:
    """offrl-train checkpoints: the actor rebuilt from the weights and config the checkpoint holds."""

    name = "reference"
    pattern = "checkpoints/ckpt_<step>.pt"

    def find_checkpoints(self, run_dir: Path) -> list[tuple[int, Path]]:
        from reference_trainer.checkpoint import list_checkpoints

        return list_checkpoints(Path(run_dir))

    def load(self, path: Path) -> PolicyFn:
        import torch

        from reference_trainer.policy import load_policy

        pol = load_policy(path)
        if len(pol.obs_shape) != 1:
            raise ValueError(f"{path}: image policies are not supported by the forward and FQE tiers")
        actor = pol.actor

        @torch.no_grad()
        def act(obs: torch.Tensor) -> torch.Tensor:
            return actor.act(obs.float()).clamp(-1.0, 1.0)

        return act


_D3_RE = re.compile(r"^model_(\d+)\.d3$")


class D3rlpyLoader:
    """d3rlpy 2.x: `model_<step>.d3` files (the `save_interval` snapshots of `fit`), read with `load_learnable`."""

    name = "d3rlpy"
    pattern = "model_<step>.d3"

    def find_checkpoints(self, run_dir: Path) -> list[tuple[int, Path]]:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            return []
        return sorted((int(m.group(1)), p) for p in run_dir.iterdir() if (m := _D3_RE.match(p.name)))

    def load(self, path: Path) -> PolicyFn:
        import torch

        d3rlpy = require_d3rlpy()
        try:
            algo = d3rlpy.load_learnable(str(path), device=False)
        except Exception as exc:  # noqa: BLE001 - d3rlpy raises many types for a bad file
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ValueError(f"{path}: unreadable d3rlpy model ({type(exc).__name__}: {first})") from None

        @torch.no_grad()
        def act(obs: torch.Tensor) -> torch.Tensor:
            out = algo.predict(obs.detach().cpu().numpy().astype("float32"))
            return torch.as_tensor(out, dtype=torch.float32).reshape(len(obs), -1).clamp(-1.0, 1.0)

        return act


def require_d3rlpy() -> Any:
    """The d3rlpy module, or LoaderUnavailable saying how to get it (checked before any checkpoint is read)."""
    try:
        import d3rlpy
    except ImportError:
        raise LoaderUnavailable("d3rlpy is not installed; pip install d3rlpy") from None
    return d3rlpy


BUILTIN: dict[str, PolicyLoader] = {"reference": ReferenceLoader(), "d3rlpy": D3rlpyLoader()}
_PROBLEMS: list[PluginProblem] = []


def plugin_loaders() -> dict[str, PolicyLoader]:
    """Loaders from `offrl_workflow.policy_loaders` entry points (none with OFFRL_NO_PLUGINS=1); failures are kept
    in `loader_problems()`."""
    out: dict[str, PolicyLoader] = {}
    _PROBLEMS.clear()
    if not _enabled():
        return out
    try:
        eps = sorted(metadata.entry_points(group=GROUP), key=lambda e: (e.name, e.value))
    except Exception as exc:  # noqa: BLE001 - broken distribution metadata on sys.path
        _PROBLEMS.append(PluginProblem(GROUP, "*", "", "", f"cannot list entry points: {exc}"))
        return out
    for ep in eps:
        try:
            obj: Any = ep.load()
            obj = obj() if isinstance(obj, type) else obj
            if not isinstance(obj, PolicyLoader) or not isinstance(getattr(obj, "name", None), str):
                raise TypeError(
                    "expected a loader with `name`, `pattern`, `find_checkpoints(run_dir)`, `load(path)`"
                )
            if obj.name in BUILTIN or obj.name in out:
                raise ValueError(f"policy loader {obj.name!r} exists already")
            out[obj.name] = obj
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported and skipped
            msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            dist = getattr(ep, "dist", None)
            where = f"{dist.name} {dist.version}" if dist is not None else ""
            _PROBLEMS.append(PluginProblem(GROUP, ep.name, ep.value, where, f"{type(exc).__name__}: {msg}"))
    return out


def loader_problems() -> list[PluginProblem]:
    return list(_PROBLEMS)


def get_loader(name: str) -> PolicyLoader:
    """The loader called `name`; LoaderUnavailable (a usage error) when there is none."""
    if name in BUILTIN:
        return BUILTIN[name]
    found = plugin_loaders()
    if name in found:
        return found[name]
    known = sorted({*BUILTIN, *found})
    broken = [p for p in _PROBLEMS if p.name == name]
    if broken:
        raise LoaderUnavailable(f"policy loader {name!r} failed to load: {broken[0].message}")
    hint = f" ({DISABLE_ENV} is set: plugins are off)" if not _enabled() else ""
    raise LoaderUnavailable(f"unknown policy loader {name!r} (choose from {', '.join(known)}){hint}")
