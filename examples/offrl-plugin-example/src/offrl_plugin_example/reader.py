"""A reader for `metrics.jsonl`: one JSON object per line, `{"step": 1000, "agent/q_batch_mean": 3.2, ...}`.

The analyzer asks every reader plugin whether it `claims` a path given on the command line (a file
named *.jsonl, or a folder holding metrics.jsonl directly), and `read`s the runs of the first that does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analyzer.model import IngestIssue, RawRun, Series


class JsonlReader:
    name = "jsonl"

    def claims(self, path: Path) -> bool:
        return (path.is_file() and path.suffix == ".jsonl") or (path / "metrics.jsonl").is_file()

    def read(self, path: Path) -> list[RawRun]:
        file = path if path.is_file() else path / "metrics.jsonl"
        run_dir = file.parent
        issues: list[IngestIssue] = []
        cols: dict[str, dict[int, float]] = {}
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                step = int(row.pop("step"))
            except (ValueError, KeyError, TypeError) as exc:
                issues.append(IngestIssue(str(file), f"line {n}: skipped ({type(exc).__name__})", "warning"))
                continue
            for tag, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    cols.setdefault(tag, {})[step] = float(value)
        tags = {}
        for tag, points in cols.items():
            steps = np.array(sorted(points), dtype=np.int64)
            values = np.array([points[int(s)] for s in steps], dtype=float)
            tags[tag] = Series(tag, steps, values, sources=(tag,), files=(str(file),))
        config: dict = {}
        cfg_file = run_dir / "config.json"
        if cfg_file.is_file():
            config = {str(k): v for k, v in json.loads(cfg_file.read_text(encoding="utf-8")).items()}
        return [
            RawRun(
                id=run_dir.name,
                path=run_dir,
                layout="jsonl",
                tags=tags,
                files=[str(file)],
                config=config,
                config_sources={k: str(cfg_file) for k in config},
                issues=issues,
            )
        ]
