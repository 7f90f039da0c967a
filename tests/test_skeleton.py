"""The analyzer's import path must stay light: no torch, no pybullet."""

import subprocess
import sys


def test_analyzer_import_does_not_pull_heavy_dependencies():
    code = (
        "import sys, analyzer, analyzer.model, analyzer.metrics, analyzer.report\n"
        "import importlib.util\n"
        "heavy = [m for m in ('torch', 'pybullet') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_canonical_trainer_tags_are_prefixed():
    from analyzer.metrics import CANONICAL_NAMES, trainer_tag

    assert "q_data" in CANONICAL_NAMES and "td_error" in CANONICAL_NAMES
    assert trainer_tag("q_data") == "offrl/q_data"
