"""Typed evidence (analyzer/rules/evidence.py): what the rules emit and what the verdict logic reads agree.

Two checks on real findings (synthetic runs of every kind, a capacity family, runs that end in their
warm start or never evaluate, every format fixture): every evidence key a rule emits is declared in
its TypedDict with a matching type, and every key analyzer/diagnose.py reads is declared (the reads
are recorded while the verdicts, picks and advice are decided). A rule renaming a key, or the verdict
code reading one nobody writes, fails here instead of silently changing a verdict.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import analyzer.diagnose as diagnose
from analyzer.api import analyze, analyze_runs
from analyzer.config import default_config
from analyzer.model import Series
from analyzer.report import Finding, RunResult
from analyzer.rules.evidence import EVIDENCE, OF001Evidence, UF001Evidence, evidence_of
from fixtures.synthetic import KINDS, capacity_family, make_curve

ROOT = Path(__file__).resolve().parents[1]


def _runs() -> list[Any]:
    out = []
    for kind in KINDS:
        for seed in (0, 1):
            out.append(make_curve(kind, seed=seed, noise=0.1).run)
        out.append(make_curve(kind, seed=5, noise=0.1, nan_gap=True).run)
    ended = make_curve("healthy", seed=2, noise=0.05).run
    ended.metadata.warm_start = int(ended.series["q_data"].steps[-1]) + 1000  # ended inside its warm start
    skipped = make_curve("overfitting", seed=3, noise=0.05, n_points=300).run
    skipped.metadata.warm_start = int(skipped.series["q_data"].steps[20])
    never_evaluated = make_curve("healthy", seed=4, noise=0.05).run
    q = never_evaluated.series["q_data"]
    never_evaluated.series["eval_return"] = Series("eval_return", q.steps, np.full(len(q), np.nan))
    return [*out, ended, skipped, never_evaluated]


@cache
def _results() -> tuple[RunResult, ...]:
    cfg = default_config()
    results = list(analyze_runs(_runs(), cfg).runs)
    results += analyze_runs([sr.run for sr in capacity_family(underfit=True, seed=1)], cfg).runs
    for folder in ("formats", "real"):
        results += analyze(ROOT / "fixtures" / folder).runs
    return tuple(results)


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, (bool, np.bool_))
    if tp is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return False


def test_every_emitted_evidence_key_is_declared_with_its_type() -> None:
    seen: dict[str, set[str]] = {code: set() for code in EVIDENCE}
    for res in _results():
        for f in res.findings:
            kind = EVIDENCE.get(f.code)
            if kind is None:
                continue
            hints = typing.get_type_hints(kind)
            for key, value in f.evidence.items():
                assert key in hints, f"{f.code} emits undeclared evidence key {key!r} ({kind.__name__})"
                assert _matches(value, hints[key]), (f.code, key, value, hints[key])
                seen[f.code].add(key)
    # the corpus reaches every typed rule, so the check above is not vacuous
    assert all(seen.values()), {c: sorted(k) for c, k in seen.items()}
    assert "ended_in_warm_start" in seen["DQ004"] and "this_run" in seen["UF003"]


def test_every_evidence_key_the_verdict_logic_reads_is_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    read: dict[str, set[str]] = {}

    class Recorder(dict):
        def __init__(self, data: dict, kind: type) -> None:
            super().__init__(data)
            self.kind = kind

        def _note(self, key: str) -> None:
            read.setdefault(self.kind.__name__, set()).add(key)
            assert key in typing.get_type_hints(self.kind), (
                f"diagnose reads {key!r}, not in {self.kind.__name__}"
            )

        def get(self, key: str, default: Any = None) -> Any:
            self._note(key)
            return super().get(key, default)

        def __getitem__(self, key: str) -> Any:
            self._note(key)
            return super().__getitem__(key)

    def recording(finding: Finding, kind: type) -> Any:
        evidence_of(finding, kind)  # the real check: the finding's rule has this evidence type
        return Recorder(finding.evidence, kind)

    monkeypatch.setattr(diagnose, "evidence_of", recording)
    cfg = default_config()
    verdicts = set()
    for res in _results():
        a = diagnose.analyze_signals(res.run, cfg, cfg.run_override(res.run.id))
        again = diagnose.finish(a, list(res.findings), cfg)
        assert again.verdict == res.verdict  # recording changes nothing
        verdicts.add(again.verdict)
    assert {"overfitting", "underfitting", "healthy", "inconclusive"} <= verdicts
    for kind in ("NF001Evidence", "OF001Evidence", "UF001Evidence", "DQ004Evidence", "DV001Evidence"):
        assert read.get(kind), f"no read of {kind} was exercised"


def test_evidence_of_refuses_another_rules_finding() -> None:
    f = Finding("OF001", "q-peak-decline", "warning", "m", evidence={"sustained": True})
    assert evidence_of(f, OF001Evidence)["sustained"] is True
    with pytest.raises(ValueError, match="OF001 evidence is not UF001Evidence"):
        evidence_of(f, UF001Evidence)


def test_typed_evidence_is_plain_json_evidence() -> None:
    """TypedDicts are dicts: the report's JSON carries the same evidence objects as before."""
    res = next(r for r in _results() if any(f.code == "OF001" for f in r.findings))
    f = next(f for f in res.findings if f.code == "OF001")
    assert type(f.evidence) is dict
    d = dataclasses.asdict(f)
    assert d["evidence"]["peak_step"] == f.evidence["peak_step"]
