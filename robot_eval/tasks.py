"""Task names, gymnasium registration, and the mapping from a dataset's metadata back to an environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PICK_PLACE_ID = "offrl/PickPlace-v0"
DRAWER_ID = "offrl/DrawerGrasp-v0"
HORIZONS = {PICK_PLACE_ID: 40, DRAWER_ID: 50}
ALIASES = {
    "pickplace": PICK_PLACE_ID,
    "pick-place": PICK_PLACE_ID,
    "PickPlace-v0": PICK_PLACE_ID,
    "drawer": DRAWER_ID,
    "drawergrasp": DRAWER_ID,
    "DrawerGrasp-v0": DRAWER_ID,
}
ENV_KWARGS = {PICK_PLACE_ID: ("n_objects", "image_size", "segment"), DRAWER_ID: ("image_size",)}


class TaskError(ValueError):
    """Unknown task name or invalid task options (the CLI turns it into a one-line message, exit 2)."""


def register_envs() -> None:
    """Register both environments (idempotent; no pybullet import)."""
    from gymnasium.envs.registration import register, registry

    if PICK_PLACE_ID not in registry:
        register(
            id=PICK_PLACE_ID,
            entry_point="robot_eval.envs.pick_place:PickPlaceEnv",
            max_episode_steps=HORIZONS[PICK_PLACE_ID],
            kwargs={"n_objects": 1, "image_size": 0},
        )
    if DRAWER_ID not in registry:
        register(
            id=DRAWER_ID,
            entry_point="robot_eval.envs.drawer:DrawerGraspEnv",
            max_episode_steps=HORIZONS[DRAWER_ID],
            kwargs={"image_size": 0},
        )


def resolve_task(name: str) -> str:
    """Canonical env id for a task name or alias."""
    if name in HORIZONS:
        return name
    if name in ALIASES:
        return ALIASES[name]
    known = ", ".join(sorted(set(ALIASES) | set(HORIZONS)))
    raise TaskError(f"unknown task {name!r} (known: {known})")


@dataclass(frozen=True)
class TaskSpec:
    """Everything needed to rebuild an environment in another process."""

    env_id: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return HORIZONS[self.env_id]

    @property
    def image_size(self) -> int:
        return int(self.kwargs.get("image_size", 0))

    @property
    def family(self) -> str:
        return "drawer" if self.env_id == DRAWER_ID else "pickplace"

    def make(self, render_mode: str | None = None):
        """The raw environment (no gymnasium wrappers: the env truncates at its own horizon)."""
        if self.env_id == DRAWER_ID:
            from robot_eval.envs.drawer import DrawerGraspEnv

            return DrawerGraspEnv(render_mode=render_mode, **self.kwargs)
        from robot_eval.envs.pick_place import PickPlaceEnv

        return PickPlaceEnv(render_mode=render_mode, **self.kwargs)


def task_spec(task: str, **options: Any) -> TaskSpec:
    """Validated TaskSpec; options the task does not take (e.g. n_objects for the drawer) raise TaskError."""
    env_id = resolve_task(task)
    allowed = ENV_KWARGS[env_id]
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key not in allowed:
            if key == "segment" and value == "full" or key == "n_objects" and value == 1:
                continue  # defaults are harmless
            raise TaskError(f"task {env_id} does not take option {key}={value!r}")
        kwargs[key] = value
    if kwargs.get("image_size", 0) not in (0, 48, 64, 84, 128):
        raise TaskError(f"image_size must be 0 (state), 48, 64, 84 or 128, got {kwargs['image_size']}")
    if "n_objects" in kwargs:
        from robot_eval.objects import MAX_TYPES

        if not 1 <= int(kwargs["n_objects"]) <= MAX_TYPES:
            raise TaskError(f"n_objects must be in [1, {MAX_TYPES}], got {kwargs['n_objects']}")
    if kwargs.get("segment", "full") not in ("full", "grasp", "place"):
        raise TaskError(f"segment must be full, grasp or place, got {kwargs['segment']!r}")
    return TaskSpec(env_id, kwargs)
