"""PyBullet manipulation tasks, scripted offline datasets and checkpoint evaluation. Extra: `robot`.

Importing this package registers the gymnasium environments by entry-point string only, so pybullet is imported
when an environment is made, not here.
"""

from __future__ import annotations

from robot_eval.tasks import register_envs

register_envs()

__all__ = ["register_envs"]
