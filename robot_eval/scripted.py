"""Noisy scripted policies that generate the offline datasets.

They read simulator ground truth (`env.privileged()`), are reactive (the phase is recomputed from the state
every step, so a perturbed grasp is retried), and add Gaussian noise N(0, noise^2) to every action dimension
before clipping to [-1, 1] — the COG recipe (noise 0.1). Failures are kept in the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_eval.envs.base import STEP_METRES

OPEN, CLOSE = -1.0, 1.0
CRUISE_Z = 0.2  # travel height while carrying the object
HOVER = 0.08  # approach height above the grasp point
XY_TOL = 0.012
Z_TOL = 0.012


#: Noise that reproduces the paper's partial-data success rates with our scripts (200-trajectory sweeps,
#: docs/robot_eval.md): grasp-only ~35%, place-only ~40%; the full task keeps COG's 0.1.
PAPER_SEGMENT_NOISE = {"full": 0.1, "grasp": 0.6, "place": 1.1}
FULLY_CLOSED = 0.008  # finger width below which a closed gripper holds nothing (the Panda closes at ~0.2 m/s)


def _closing(s: dict[str, Any]) -> bool:
    """The gripper was commanded closed and the fingers are still travelling: wait for them."""
    return s["grip_closed"] and s["finger_width"] > FULLY_CLOSED


def _toward(ee: np.ndarray, goal: np.ndarray) -> np.ndarray:
    return np.clip((goal - ee) / STEP_METRES, -1.0, 1.0)


def _act(move: np.ndarray, grip: float) -> np.ndarray:
    return np.concatenate([move, [grip]])


def pick_place_action(s: dict[str, Any]) -> np.ndarray:
    """Noise-free scripted action for the pick-place family (all three segments)."""
    ee, obj = s["ee"], s["obj"]
    grasp_z = max(obj[2] - 0.005, 0.015)
    if s["segment"] == "grasp":
        if s["held"] and s["grip_closed"]:
            return _act(_toward(ee, np.array([ee[0], ee[1], 0.25])), CLOSE)
    elif s["in_tray"]:
        return _act(_toward(ee, np.array([ee[0], ee[1], 0.3])), OPEN)
    elif s["held"] and s["grip_closed"]:
        tx, ty = s["target"]
        if (
            obj[2] < s["obj_rest_z"] + 0.02
            and np.hypot(*(ee[:2] - obj[:2])) < 0.03
            and ee[2] < grasp_z + 0.03
        ):
            return _act(np.array([0.0, 0.0, 1.0]), CLOSE)  # just closed: lift straight up first
        if np.hypot(ee[0] - tx, ee[1] - ty) > 0.03:
            z = CRUISE_Z if ee[2] > 0.12 else ee[2] + STEP_METRES
            return _act(_toward(ee, np.array([tx, ty, z])), CLOSE)
        return _act(np.zeros(3), OPEN)  # above the tray: release
    # not holding: go and grasp
    if s["grip_closed"]:
        near = np.hypot(*(ee[:2] - obj[:2])) < 0.03 and abs(ee[2] - grasp_z) < 0.03
        if near and _closing(s) and not s["held"]:
            return _act(np.zeros(3), CLOSE)
        return _act(np.array([0.0, 0.0, 1.0]), OPEN)  # missed or dropped: re-open and back off
    dxy = np.hypot(ee[0] - obj[0], ee[1] - obj[1])
    if dxy > XY_TOL:
        z = max(grasp_z + HOVER, ee[2]) if dxy > 0.05 else grasp_z + HOVER / 2
        return _act(_toward(ee, np.array([obj[0], obj[1], z])), OPEN)
    if ee[2] - grasp_z > Z_TOL:
        return _act(_toward(ee, np.array([obj[0], obj[1], grasp_z])), OPEN)
    return _act(np.zeros(3), CLOSE)


def drawer_action(s: dict[str, Any]) -> np.ndarray:
    """Noise-free scripted action for the drawer task: pull the drawer open by its handle, then lift the object."""
    ee, obj, handle = s["ee"], s["obj"], s["handle"]
    if not s["drawer_open"]:
        if s["holding_handle"]:
            # pull at ~60% speed: faster and the handle slips out of the fingers
            return _act(_toward(ee, np.array([ee[0] - 0.6 * STEP_METRES, handle[1], handle[2]])), CLOSE)
        if s["grip_closed"]:
            if np.linalg.norm(ee - handle) < 0.03 and _closing(s):
                return _act(np.zeros(3), CLOSE)
            return _act(np.array([0.0, 0.0, 1.0]), OPEN)
        dxy = np.hypot(ee[0] - handle[0], ee[1] - handle[1])
        if dxy > XY_TOL:
            z = max(handle[2] + HOVER, ee[2])
            return _act(_toward(ee, np.array([handle[0], handle[1], z])), OPEN)
        if ee[2] - handle[2] > Z_TOL:
            return _act(_toward(ee, handle), OPEN)
        return _act(np.zeros(3), CLOSE)
    # drawer open: let go of the handle, then pick the object up and out
    if s["holding_handle"]:
        return _act(np.array([0.0, 0.0, 0.0]), OPEN)
    if s["held"] and s["grip_closed"]:
        return _act(_toward(ee, np.array([ee[0], ee[1], 0.3])), CLOSE)
    grasp_z = max(obj[2] - 0.005, 0.015)
    if s["grip_closed"]:
        if np.linalg.norm(ee - np.array([obj[0], obj[1], grasp_z])) < 0.03 and _closing(s):
            return _act(np.zeros(3), CLOSE)
        return _act(np.array([0.0, 0.0, 1.0]), OPEN)
    above_walls = s["drawer_top_z"] + 0.04
    dxy = np.hypot(ee[0] - obj[0], ee[1] - obj[1])
    if dxy > XY_TOL:
        z = max(above_walls + 0.05, ee[2]) if dxy > 0.04 else max(ee[2], grasp_z + 0.03)
        return _act(_toward(ee, np.array([obj[0], obj[1], z])), OPEN)
    if ee[2] - grasp_z > Z_TOL:
        return _act(_toward(ee, np.array([obj[0], obj[1], grasp_z])), OPEN)
    return _act(np.zeros(3), CLOSE)


class ScriptedPolicy:
    """Scripted expert + Gaussian action noise; owns its RNG so datasets are reproducible from a seed."""

    def __init__(self, task: str, noise: float, rng: np.random.Generator) -> None:
        if noise < 0 or not np.isfinite(noise):
            raise ValueError(f"noise must be a finite number >= 0, got {noise}")
        self.expert = drawer_action if task.startswith("drawer") else pick_place_action
        self.noise = float(noise)
        self.rng = rng

    def __call__(self, env) -> np.ndarray:
        a = self.expert(env.unwrapped.privileged())
        if self.noise > 0:
            a = a + self.rng.normal(0.0, self.noise, size=a.shape)
        return np.clip(a, -1.0, 1.0).astype(np.float32)
