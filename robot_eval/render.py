"""Rendered frames of each task for the docs (docs/img/task-*.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_eval.tasks import TaskSpec, task_spec


def _specs() -> dict[str, TaskSpec]:
    return {
        "task-pickplace": task_spec("pickplace"),
        "task-pickplace-35obj": task_spec("pickplace", n_objects=35),
        "task-drawer": task_spec("drawer"),
    }


def render_task_frames(out_dir: Path, size: int = 256, seed: int = 0) -> list[Path]:
    """One PNG per task after a few scripted steps (mid-task is more informative than the reset pose)."""
    from PIL import Image

    from robot_eval.envs.base import PandaEnv
    from robot_eval.scripted import ScriptedPolicy

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, spec in _specs().items():
        env = spec.make(render_mode="rgb_array")
        try:
            assert isinstance(env, PandaEnv)
            env.render_size = size
            env.reset(seed=seed)
            policy = ScriptedPolicy(spec.family, 0.0, np.random.default_rng(seed))
            for _ in range(4 if spec.family == "pickplace" else 22):
                env.step(policy(env))
            frame = env.render()
            side = env._camera(64)
        finally:
            env.close()
        path = out_dir / f"{name}.png"
        Image.fromarray(frame).save(path)
        Image.fromarray(side).resize((size // 2, size // 2), Image.Resampling.NEAREST).save(
            out_dir / f"{name}-obs64.png"
        )
        written += [path, out_dir / f"{name}-obs64.png"]
    return written
