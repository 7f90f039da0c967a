"""Shared Panda scene: end-effector delta control through IK, gripper with hysteresis, state restore on reset.

Control constants (docs/robot_eval.md, re-checked by ablation): 10 substeps at 240 Hz per env step, joint position
gain 0.3, 20 IK iterations with damping 0.01 and 4 cm per unit action give 100% noise-0.1 scripted success; 5
substeps gave 45%, gain 1.0 35%, 2 cm per step 22.5%.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from robot_eval._bullet import data_path, pybullet
from robot_eval.assets import lowpoly_panda_urdf

SIM_HZ = 240.0
SUBSTEPS = 10
POSITION_GAIN = 0.3
IK_ITERATIONS = 20
IK_DAMPING = [0.01] * 9  # pybullet's default damping (and its null-space variant) stalls on the Panda
STEP_METRES = 0.04  # end-effector displacement per unit action
ARM_JOINTS = tuple(range(7))
FINGER_JOINTS = (9, 10)
EE_LINK = 11  # panda_grasptarget: the point between the fingertips
FINGER_OPEN = 0.04
FINGER_FORCE = 40.0
GRIP_CLOSE_ABOVE = 0.5  # gripper action > 0.5 closes, < -0.5 opens, otherwise keeps the previous command
GRIP_OPEN_BELOW = -0.5
HOME_JOINTS = (0.0, -0.35, 0.0, -2.4, 0.0, 2.05, math.pi / 4)
DOWN_ORN_EULER = (math.pi, 0.0, 0.0)
IMAGE_SIZES = (0, 48, 64, 84, 128)


class PandaEnv(gym.Env):
    """Base class; subclasses build the task scene and define observation, reward and reset."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 24}
    horizon: int = 40
    workspace_low = np.array([0.3, -0.3, 0.01])
    workspace_high = np.array([0.8, 0.45, 0.45])
    home_ee = (0.5, 0.0, 0.3)
    render_size = 128
    lowpoly_visuals = True  # False = stock Panda meshes (8x slower TinyRenderer images here; benchmarks only)

    def __init__(self, image_size: int = 0, render_mode: str | None = None) -> None:
        if image_size not in IMAGE_SIZES:
            raise ValueError(f"image_size must be one of {IMAGE_SIZES} (0 = state only), got {image_size}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        if self.image_size:
            self.observation_space = spaces.Box(
                0, 255, shape=(self.image_size, self.image_size, 3), dtype=np.uint8
            )
        else:
            # finite bounds (positions in metres, quaternions, widths): nothing in the scene can leave +-100 m
            self.observation_space = spaces.Box(-100.0, 100.0, shape=(self.state_dim,), dtype=np.float32)
        self._pb = pybullet()
        self._cid = self._pb.connect(self._pb.DIRECT)
        self._t = 0
        self._grip_closed = False
        self._build()

    # ----- scene -------------------------------------------------------------------------------------
    state_dim: int = 0

    def _build(self) -> None:
        pb, c = self._pb, self._cid
        pb.resetSimulation(physicsClientId=c)
        pb.setTimeStep(1.0 / SIM_HZ, physicsClientId=c)
        pb.setGravity(0, 0, -9.81, physicsClientId=c)
        pb.loadURDF(f"{data_path()}/plane.urdf", physicsClientId=c)
        urdf = lowpoly_panda_urdf() if self.lowpoly_visuals else f"{data_path()}/franka_panda/panda.urdf"
        self.robot = pb.loadURDF(urdf, useFixedBase=True, physicsClientId=c)
        for j in FINGER_JOINTS:
            pb.changeDynamics(self.robot, j, lateralFriction=1.5, physicsClientId=c)
        self._down = pb.getQuaternionFromEuler(DOWN_ORN_EULER)
        self._build_scene()
        for j, q in enumerate(HOME_JOINTS):
            pb.resetJointState(self.robot, j, q, physicsClientId=c)
        for j in FINGER_JOINTS:
            pb.resetJointState(self.robot, j, FINGER_OPEN, physicsClientId=c)
        # settle the arm at the home end-effector pose so every episode starts from the same state
        for _ in range(3):
            joints = self._ik(np.asarray(self.home_ee))
            for j in ARM_JOINTS:
                pb.resetJointState(self.robot, j, joints[j], physicsClientId=c)
        self._command_arm(np.asarray(self.home_ee))
        self._command_gripper(False)
        for _ in range(SUBSTEPS):
            pb.stepSimulation(physicsClientId=c)
        self._saved = pb.saveState(physicsClientId=c)

    def _build_scene(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ----- control -----------------------------------------------------------------------------------
    def _ik(self, target: np.ndarray) -> list[float]:
        return self._pb.calculateInverseKinematics(
            self.robot,
            EE_LINK,
            target.tolist(),
            self._down,
            jointDamping=IK_DAMPING,
            maxNumIterations=IK_ITERATIONS,
            residualThreshold=1e-4,
            physicsClientId=self._cid,
        )

    def _command_arm(self, target: np.ndarray) -> None:
        q = self._ik(target)
        self._pb.setJointMotorControlArray(
            self.robot,
            list(ARM_JOINTS),
            self._pb.POSITION_CONTROL,
            targetPositions=list(q[:7]),
            forces=[200.0] * 7,
            positionGains=[POSITION_GAIN] * 7,
            physicsClientId=self._cid,
        )

    def _command_gripper(self, closed: bool) -> None:
        self._grip_closed = closed
        target = 0.0 if closed else FINGER_OPEN
        self._pb.setJointMotorControlArray(
            self.robot,
            list(FINGER_JOINTS),
            self._pb.POSITION_CONTROL,
            targetPositions=[target, target],
            forces=[FINGER_FORCE, FINGER_FORCE],
            physicsClientId=self._cid,
        )

    def ee_pos(self) -> np.ndarray:
        return np.asarray(
            self._pb.getLinkState(
                self.robot, EE_LINK, computeForwardKinematics=True, physicsClientId=self._cid
            )[4]
        )

    def finger_width(self) -> float:
        s = self._pb.getJointStates(self.robot, list(FINGER_JOINTS), physicsClientId=self._cid)
        return float(s[0][0] + s[1][0])

    def body_pose(self, body: int) -> tuple[np.ndarray, np.ndarray]:
        p, q = self._pb.getBasePositionAndOrientation(body, physicsClientId=self._cid)
        return np.asarray(p), np.asarray(q)

    def touching_robot(self, body: int) -> bool:
        return bool(self._pb.getContactPoints(bodyA=self.robot, bodyB=body, physicsClientId=self._cid))

    def fingers_touch(self, body: int) -> bool:
        """Both fingers in contact with `body`: the object is held, not merely pushed."""
        pb, c = self._pb, self._cid
        return all(
            pb.getContactPoints(bodyA=self.robot, bodyB=body, linkIndexA=j, physicsClientId=c)
            for j in FINGER_JOINTS
        )

    # ----- gym API -----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._pb.restoreState(self._saved, physicsClientId=self._cid)
        self._command_arm(np.asarray(self.home_ee))
        self._command_gripper(False)
        self._t = 0
        self._reset_task(options or {})
        return self._obs(), self._info()

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (4,):
            raise ValueError(f"action must have shape (4,), got {np.shape(action)}")
        if not np.all(np.isfinite(a)):
            raise ValueError("action contains NaN or Inf")
        a = np.clip(a, -1.0, 1.0)
        target = np.clip(self.ee_pos() + a[:3] * STEP_METRES, self.workspace_low, self.workspace_high)
        self._command_arm(target)
        if a[3] > GRIP_CLOSE_ABOVE:
            self._command_gripper(True)
        elif a[3] < GRIP_OPEN_BELOW:
            self._command_gripper(False)
        for _ in range(SUBSTEPS):
            self._pb.stepSimulation(physicsClientId=self._cid)
        self._t += 1
        success = self._success()
        reward = 1.0 if success else 0.0
        truncated = self._t >= self.horizon
        return self._obs(), reward, False, truncated, self._info(success)

    def _robot_state(self) -> np.ndarray:
        return np.concatenate([self.ee_pos(), [self.finger_width(), 1.0 if self._grip_closed else 0.0]])

    def _obs(self):
        if self.image_size:
            return self._camera(self.image_size)
        return self._state().astype(np.float32)

    def render(self):
        if self.render_mode == "rgb_array":
            return self._camera(self.render_size)
        return None

    def _camera(self, size: int) -> np.ndarray:
        pb = self._pb
        eye, target = self.camera
        view = pb.computeViewMatrix(eye, target, [0, 0, 1])
        proj = pb.computeProjectionMatrixFOV(fov=50.0, aspect=1.0, nearVal=0.05, farVal=3.0)
        _, _, rgba, _, _ = pb.getCameraImage(
            size,
            size,
            view,
            proj,
            renderer=pb.ER_TINY_RENDERER,
            flags=pb.ER_NO_SEGMENTATION_MASK,
            physicsClientId=self._cid,
        )
        return np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[:, :, :3].copy()

    def close(self) -> None:
        if getattr(self, "_cid", None) is not None:
            try:
                self._pb.disconnect(physicsClientId=self._cid)
            except Exception:  # noqa: BLE001 - already disconnected
                pass
            self._cid = None

    # subclasses
    # front camera: robot base at the back, spawn area on one side, tray on the other
    camera: tuple[tuple[float, float, float], tuple[float, float, float]] = (
        (1.1, 0.08, 0.6),
        (0.42, 0.08, 0.05),
    )

    def _reset_task(self, options: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _state(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _success(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _info(self, success: bool | None = None) -> dict[str, Any]:
        return {"success": bool(self._success() if success is None else success), "t": self._t}

    def privileged(self) -> dict[str, Any]:
        """Simulator ground truth for scripted policies (never part of the observation)."""
        raise NotImplementedError
