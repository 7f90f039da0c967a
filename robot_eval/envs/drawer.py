"""Drawer-grasp: pull a closed drawer open by its handle, then lift the object inside out of it.

Reward is sparse and binary: +1 on every step where the object's lowest point is above the drawer walls
(by `CLEAR_MARGIN`) and both fingers hold it. Horizon 50 (COG's drawer tasks use 50 and 80). Images come from a
side camera because the cabinet hides the drawer from the front.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_eval._bullet import data_path
from robot_eval.assets import CabinetGeometry, cabinet_urdf
from robot_eval.envs.base import FINGER_JOINTS, PandaEnv
from robot_eval.objects import OBJECT_FRICTION, OBJECT_MASS

GEOM = CabinetGeometry()
DRAWER_JOINT = 0
DRAWER_FRICTION_N = (
    1.0  # velocity motor with zero target = dry friction, so the drawer stays where it is left
)
OPEN_FRACTION = 0.8  # the drawer counts as open past this fraction of its travel (object fully exposed)
CLEAR_MARGIN = 0.02
OBJECT_SCALE = 0.8  # cube_small (5 cm) -> 4 cm
CABINET_Y_RANGE = (-0.05, 0.05)


class DrawerGraspEnv(PandaEnv):
    """Franka Panda, a cabinet with one drawer holding a small cube; horizon 50."""

    horizon = 50
    state_dim = 19
    camera = ((0.45, -0.62, 0.45), (0.5, 0.0, 0.06))
    home_ee = (0.4, 0.0, 0.3)

    def __init__(self, image_size: int = 0, render_mode: str | None = None) -> None:
        super().__init__(image_size=image_size, render_mode=render_mode)

    def _build_scene(self) -> None:
        pb, c = self._pb, self._cid
        self.cabinet = pb.loadURDF(
            cabinet_urdf(GEOM), [GEOM.front_x, 0.0, 0.0], useFixedBase=True, physicsClientId=c
        )
        pb.setJointMotorControl2(
            self.cabinet,
            DRAWER_JOINT,
            pb.VELOCITY_CONTROL,
            targetVelocity=0.0,
            force=DRAWER_FRICTION_N,
            physicsClientId=c,
        )
        self.obj = pb.loadURDF(
            f"{data_path()}/cube_small.urdf",
            [GEOM.front_x + 0.08, 0.0, 0.1],
            globalScaling=OBJECT_SCALE,
            physicsClientId=c,
        )
        pb.changeDynamics(self.obj, -1, mass=OBJECT_MASS, lateralFriction=OBJECT_FRICTION, physicsClientId=c)
        self.obj_half = 0.025 * OBJECT_SCALE

    def _reset_task(self, options: dict[str, Any]) -> None:
        pb, c = self._pb, self._cid
        rng = self.np_random
        cy = float(rng.uniform(*CABINET_Y_RANGE))
        pb.resetBasePositionAndOrientation(
            self.cabinet, [GEOM.front_x, cy, 0.0], [0, 0, 0, 1], physicsClientId=c
        )
        pb.resetJointState(self.cabinet, DRAWER_JOINT, 0.0, physicsClientId=c)
        # object in the front half of the drawer so that it is exposed once the drawer is open
        ox = GEOM.front_x + GEOM.wall + float(rng.uniform(0.03, 0.06))
        oy = cy + float(rng.uniform(-0.025, 0.025))
        oz = GEOM.drawer_floor_z + GEOM.wall + self.obj_half + 0.002
        yaw = float(rng.uniform(-0.4, 0.4))
        pb.resetBasePositionAndOrientation(
            self.obj, [ox, oy, oz], pb.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=c
        )
        pb.resetBaseVelocity(self.obj, [0, 0, 0], [0, 0, 0], physicsClientId=c)

    def drawer_opening(self) -> float:
        return float(self._pb.getJointState(self.cabinet, DRAWER_JOINT, physicsClientId=self._cid)[0])

    def handle_pos(self) -> np.ndarray:
        """Grasp point on the handle's stem, between the drawer front and the cross bar (world coordinates)."""
        base, _ = self.body_pose(self.cabinet)
        x = base[0] + GEOM.wall - self.drawer_opening() - GEOM.handle_len * 0.55
        z = GEOM.drawer_floor_z - GEOM.wall / 2 + 0.001 + GEOM.drawer_height - GEOM.handle_height / 2 - 0.005
        return np.array([x, base[1], z])

    def _state(self) -> np.ndarray:
        p, q = self.body_pose(self.obj)
        ee = self.ee_pos()
        return np.concatenate([self._robot_state(), p, q, p - ee, self.handle_pos(), [self.drawer_opening()]])

    def holding_handle(self) -> bool:
        pb, c = self._pb, self._cid
        return self._grip_closed and all(
            pb.getContactPoints(
                bodyA=self.robot, bodyB=self.cabinet, linkIndexA=j, linkIndexB=DRAWER_JOINT, physicsClientId=c
            )
            for j in FINGER_JOINTS
        )

    def _success(self) -> bool:
        lo, _ = self._pb.getAABB(self.obj, physicsClientId=self._cid)
        return lo[2] > GEOM.drawer_top_z + CLEAR_MARGIN and self.fingers_touch(self.obj)

    def privileged(self) -> dict[str, Any]:
        p, _ = self.body_pose(self.obj)
        return {
            "ee": self.ee_pos(),
            "obj": p,
            "handle": self.handle_pos(),
            "drawer_open": self.drawer_opening() > OPEN_FRACTION * GEOM.travel,
            "holding_handle": self.holding_handle(),
            "grip_closed": self._grip_closed,
            "finger_width": self.finger_width(),
            "held": self.fingers_touch(self.obj),
            "drawer_top_z": GEOM.drawer_top_z,
        }
