"""`--format json`: exactly `Report.to_dict()` (schema_version 1, docs/report.schema.json).

Names are kept exactly, except bytes that are not UTF-8 (no JSON string can hold them): they are
written as `\\xNN` text, as in every other format (analyzer.output.names).
"""

from __future__ import annotations

import json

from analyzer.output.names import json_safe
from analyzer.report import Report


def render_json(report: Report) -> str:
    # allow_nan=False: the contract promises strict JSON (NaN/Inf are already None in to_dict()).
    return json.dumps(json_safe(report.to_dict()), indent=2, allow_nan=False) + "\n"
