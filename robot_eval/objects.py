"""Catalogue of graspable object types, all from pybullet_data.

The paper's multi-object scenario draws one object per episode from N types (N in {1, 5, 10, 20, 35}). Our
first five types are the named pybullet_data models; the rest come from `random_urdfs/000..` in order, so the
set for a given N is fixed and nested (the 5-type set is contained in the 10-type set, ...).
Every object is rescaled so its largest horizontal extent is `TARGET_EXTENT` — small enough for the Panda's
8 cm gripper opening — and given the same mass and friction, so difficulty differs by shape only.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMED_TYPES: tuple[str, ...] = (
    "cube_small.urdf",
    "lego/lego.urdf",
    "duck_vhacd.urdf",
    "objects/mug.urdf",
    "teddy_vhacd.urdf",
)
N_RANDOM = 1000  # random_urdfs/000 .. 999 ship with pybullet_data
MAX_TYPES = len(NAMED_TYPES) + N_RANDOM
PAPER_TYPE_COUNTS = (1, 5, 10, 20, 35)
TARGET_EXTENT = 0.05  # metres; Panda fingers open to 0.08
OBJECT_MASS = 0.1  # kg
OBJECT_FRICTION = 1.0


@dataclass(frozen=True)
class ObjectType:
    index: int
    urdf: str  # relative to pybullet_data

    @property
    def name(self) -> str:
        return self.urdf.rsplit("/", 1)[-1].removesuffix(".urdf")


def object_types(n: int) -> list[ObjectType]:
    """The first `n` object types of the catalogue (nested sets)."""
    if not 1 <= n <= MAX_TYPES:
        raise ValueError(f"n_objects must be in [1, {MAX_TYPES}], got {n}")
    out: list[ObjectType] = []
    for i in range(n):
        if i < len(NAMED_TYPES):
            out.append(ObjectType(i, NAMED_TYPES[i]))
        else:
            k = i - len(NAMED_TYPES)
            out.append(ObjectType(i, f"random_urdfs/{k:03d}/{k:03d}.urdf"))
    return out
