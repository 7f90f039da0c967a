"""`--format json`: exactly `Report.to_dict()` (schema_version 1, docs/report.schema.json)."""

from __future__ import annotations

import json

from analyzer.report import Report


def render_json(report: Report) -> str:
    # allow_nan=False: the contract promises strict JSON (NaN/Inf are already None in to_dict()).
    return json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
