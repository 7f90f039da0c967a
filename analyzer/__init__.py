"""offrl-workflow analyzer: diagnose offline-RL training logs (Kumar et al., "A Workflow for
Offline Model-Free Robotic RL"). Light by design: never imports torch or pybullet."""

__version__ = "0.1.0"
from analyzer.api import analyze  # noqa: F401
