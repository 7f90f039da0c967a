"""Example offrl-workflow plugin (docs/plugins.md).

Adds, each through its own entry point (pyproject.toml):
- a reader for `metrics.jsonl` files (`reader.py`): one JSON object per line, `{"step": ..., <tag>: ...}`;
- the profile `mytrainer` (`mytrainer.yaml`): which of those tags is which canonical metric;
- the rule EX001 `few-evaluations` (`rules.py`);
- the output format `--format tsv` (`output.py`).
"""

from pathlib import Path

#: the profile entry point: a profile file shipped as package data
PROFILE = Path(__file__).with_name("mytrainer.yaml")
