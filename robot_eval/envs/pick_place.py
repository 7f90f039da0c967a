"""Pick-and-place: put the object into the tray (COG / roboverse "pick-tray" analogue on a Franka Panda).

Reward is sparse and binary: +1 on every step where the object rests in the tray (in contact with the tray,
released by the gripper, centre inside the tray walls). `segment="grasp"` rewards a lifted, held object
instead (the paper's grasp-only prior data); `segment="place"` starts with the object already in the gripper
(the paper's place-only data).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from robot_eval._bullet import data_path
from robot_eval.envs.base import FINGER_JOINTS, FINGER_OPEN, SUBSTEPS, PandaEnv
from robot_eval.objects import OBJECT_FRICTION, OBJECT_MASS, TARGET_EXTENT, object_types

Segment = Literal["full", "grasp", "place"]
SEGMENTS: tuple[str, ...] = ("full", "grasp", "place")

TRAY_CENTER = (0.55, 0.30)
TRAY_SCALE = 0.5  # traybox.urdf is 0.6 m wide; scaled to 0.3 m
TRAY_INNER_HALF = 0.12  # object centre must be within this of the tray centre (walls at ~0.125)
TRAY_MAX_Z = 0.12
SPAWN_LOW = (0.45, -0.18)
SPAWN_HIGH = (0.62, 0.05)
LIFT_HEIGHT = 0.06  # grasp success: object centre this far above its resting height, held by both fingers
PARK_X = 3.0
PALETTE = (
    (0.9, 0.15, 0.1, 1),
    (0.1, 0.5, 0.9, 1),
    (0.95, 0.8, 0.1, 1),
    (0.2, 0.7, 0.25, 1),
    (0.6, 0.35, 0.8, 1),
)


class PickPlaceEnv(PandaEnv):
    """Franka Panda, one object drawn from `n_objects` types, a tray; horizon 40."""

    horizon = 40
    state_dim = 18

    def __init__(
        self,
        n_objects: int = 1,
        image_size: int = 0,
        segment: Segment = "full",
        render_mode: str | None = None,
    ) -> None:
        if segment not in SEGMENTS:
            raise ValueError(f"segment must be one of {SEGMENTS}, got {segment!r}")
        self.types = object_types(int(n_objects))
        self.n_objects = int(n_objects)
        self.segment = segment
        super().__init__(image_size=image_size, render_mode=render_mode)

    def _build_scene(self) -> None:
        pb, c = self._pb, self._cid
        self.tray = pb.loadURDF(
            f"{data_path()}/tray/traybox.urdf",
            [TRAY_CENTER[0], TRAY_CENTER[1], 0.0],
            useFixedBase=True,
            globalScaling=TRAY_SCALE,
            physicsClientId=c,
        )
        self.bodies: list[int] = []
        self.rest_z: list[float] = []
        self.extents: list[np.ndarray] = []
        self.base_orn: list[tuple[float, ...]] = []
        self.inertia: list[tuple[float, ...]] = []
        for t in self.types:
            path = f"{data_path()}/{t.urdf}"
            probe = pb.loadURDF(path, [0, 0, 1.0], physicsClientId=c)
            lo, hi = pb.getAABB(probe, physicsClientId=c)
            pb.removeBody(probe, physicsClientId=c)
            scale = TARGET_EXTENT / max(hi[0] - lo[0], hi[1] - lo[1])
            x = PARK_X + 0.3 * t.index
            body = pb.loadURDF(path, [x, 3.0, 1.0], globalScaling=scale, physicsClientId=c)
            pb.changeDynamics(
                body, -1, lateralFriction=OBJECT_FRICTION, rollingFriction=0.001, physicsClientId=c
            )
            if t.index < len(PALETTE):  # named models are white or textured: colour them so images show them
                pb.changeVisualShape(
                    body, -1, rgbaColor=PALETTE[t.index], textureUniqueId=-1, physicsClientId=c
                )
            lo, hi = pb.getAABB(body, physicsClientId=c)
            pos, orn = pb.getBasePositionAndOrientation(body, physicsClientId=c)
            rest = pos[2] - lo[2] + 0.001
            pb.resetBasePositionAndOrientation(body, [x, 3.0, rest], orn, physicsClientId=c)
            self.bodies.append(body)
            self.rest_z.append(rest)
            self.extents.append(np.asarray(hi) - np.asarray(lo))
            self.base_orn.append(orn)
            # parked objects are static (mass 0): 35 resting dynamic meshes would cost ~15x in step speed
            # solid-box inertia from the scaled extents (some random_urdfs declare izz = 0)
            ex, ey, ez = self.extents[-1]
            m = OBJECT_MASS / 12.0
            self.inertia.append((m * (ey**2 + ez**2), m * (ex**2 + ez**2), m * (ex**2 + ey**2)))
            pb.changeDynamics(body, -1, mass=0.0, physicsClientId=c)
        self.obj_index = 0
        self.obj = self.bodies[0]

    def _reset_task(self, options: dict[str, Any]) -> None:
        pb, c = self._pb, self._cid
        rng = self.np_random
        prev = self.obj_index
        self.obj_index = int(rng.integers(self.n_objects))
        self.obj = self.bodies[self.obj_index]
        if prev != self.obj_index:  # restoreState put every body back at its parked pose
            pb.changeDynamics(self.bodies[prev], -1, mass=0.0, physicsClientId=c)
        pb.changeDynamics(
            self.obj,
            -1,
            mass=OBJECT_MASS,
            localInertiaDiagonal=self.inertia[self.obj_index],
            physicsClientId=c,
        )
        x = float(rng.uniform(SPAWN_LOW[0], SPAWN_HIGH[0]))
        y = float(rng.uniform(SPAWN_LOW[1], SPAWN_HIGH[1]))
        yaw = float(rng.uniform(-math.pi, math.pi)) if self.segment != "place" else 0.0
        q_yaw = pb.getQuaternionFromEuler([0, 0, yaw])
        _, orn = pb.multiplyTransforms([0, 0, 0], q_yaw, [0, 0, 0], self.base_orn[self.obj_index])
        if self.segment == "place":
            self._start_in_hand(x, y, orn)
        else:
            pb.resetBasePositionAndOrientation(
                self.obj, [x, y, self.rest_z[self.obj_index]], orn, physicsClientId=c
            )

    def _start_in_hand(self, x: float, y: float, orn) -> None:
        """Teleport arm and object into a grasp above (x, y) and let the fingers close on it."""
        pb, c = self._pb, self._cid
        ee = np.array([x, y, 0.14])
        for _ in range(3):
            q = self._ik(ee)
            for j in range(7):
                pb.resetJointState(self.robot, j, q[j], physicsClientId=c)
        for j in FINGER_JOINTS:
            pb.resetJointState(self.robot, j, FINGER_OPEN, physicsClientId=c)
        ee_now = self.ee_pos()
        pb.resetBasePositionAndOrientation(self.obj, ee_now.tolist(), orn, physicsClientId=c)
        pb.resetBaseVelocity(self.obj, [0, 0, 0], [0, 0, 0], physicsClientId=c)
        self._command_arm(ee_now)
        self._command_gripper(True)
        for _ in range(2 * SUBSTEPS):
            pb.stepSimulation(physicsClientId=c)

    # ----- observation / reward --------------------------------------------------------------------------
    def _state(self) -> np.ndarray:
        p, q = self.body_pose(self.obj)
        ee = self.ee_pos()
        return np.concatenate([self._robot_state(), p, q, p - ee, self.extents[self.obj_index]])

    def in_tray(self) -> bool:
        p, _ = self.body_pose(self.obj)
        inside = abs(p[0] - TRAY_CENTER[0]) < TRAY_INNER_HALF and abs(p[1] - TRAY_CENTER[1]) < TRAY_INNER_HALF
        if not inside or p[2] > TRAY_MAX_Z:
            return False
        on_tray = bool(self._pb.getContactPoints(bodyA=self.obj, bodyB=self.tray, physicsClientId=self._cid))
        return on_tray and not self.touching_robot(self.obj)

    def lifted(self) -> bool:
        p, _ = self.body_pose(self.obj)
        return p[2] > self.rest_z[self.obj_index] + LIFT_HEIGHT and self.fingers_touch(self.obj)

    def _success(self) -> bool:
        return self.lifted() if self.segment == "grasp" else self.in_tray()

    def _info(self, success: bool | None = None) -> dict[str, Any]:
        info = super()._info(success)
        info["object_type"] = self.types[self.obj_index].name
        return info

    def privileged(self) -> dict[str, Any]:
        p, _ = self.body_pose(self.obj)
        return {
            "ee": self.ee_pos(),
            "obj": p,
            "obj_rest_z": self.rest_z[self.obj_index],
            "grip_closed": self._grip_closed,
            "finger_width": self.finger_width(),
            "held": self.fingers_touch(self.obj),
            "target": np.array([TRAY_CENTER[0], TRAY_CENTER[1]]),
            "in_tray": self.in_tray(),
            "segment": self.segment,
        }
