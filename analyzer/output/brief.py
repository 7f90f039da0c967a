"""One-line texts for the terminal table: the key numbers, the first concrete action, a short run id.

Why a separate module: the engine writes full sentences (json/markdown/html keep them whole); a
table read at 100-120 columns needs the same facts in a few words. Everything here is derived from
a `RunResult`'s findings and their evidence numbers, never invented; when a finding has no numbers
this module knows, the engine's own sentence is cut at its first clause instead.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from analyzer.report import Finding, RunResult

ELLIPSIS = "…"
ADVICE_MAX = 60  # characters: one short action fits one line of the Advice column
EVIDENCE_MAX = 64


def num(x: Any, digits: int = 3) -> str:
    """Compact number (3 significant digits), `n/a` for missing or non-finite values."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return f"{f:.{digits}g}" if math.isfinite(f) else "n/a"


def clip(text: str, limit: int) -> str:
    """`text` on one line, cut at `limit` characters with an ellipsis."""
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[: limit - 1].rstrip(" ,;:(") + ELLIPSIS


def first_clause(text: str, limit: int = EVIDENCE_MAX) -> str:
    """The engine's sentence up to its first `;` or ` (` (the headline), clipped."""
    head = str(text)
    for sep in ("; ", " - ", " ("):
        i = head.find(sep)
        if i > 12:
            head = head[:i]
    return clip(head, limit)


def short_run_id(run_id: str, width: int) -> str:
    """Shorten from the LEFT with an ellipsis: the distinctive part of a run id is its tail."""
    if width < 2 or len(run_id) <= width:
        return run_id
    return ELLIPSIS + run_id[-(width - 1) :]


def middle_clip(text: str, limit: int) -> str:
    """Keep the start and the end of `text` (a run folder's name says the algorithm/task first and the
    seed/date last), cutting the middle."""
    if limit < 2 or len(text) <= limit:
        return text
    head = (limit - 1) * 3 // 5
    return text[:head] + ELLIPSIS + text[len(text) - (limit - 1 - head) :]


def _first_difference(comps: list[str], others: list[list[str]]) -> int:
    """Index of the first path component where `comps` parts from its nearest sibling (the id that shares
    the longest leading path with it); the last index when it has no sibling."""
    best = -1
    for o in others:
        n = 0
        while n < min(len(comps), len(o)) and comps[n] == o[n]:
            n += 1
        best = max(best, n)
    return min(best, len(comps) - 1) if best >= 0 else len(comps) - 1


def short_run_ids(run_ids: list[str], width: int) -> dict[str, str]:
    """What tells each run apart from the others, in at most `width` characters.

    Why not cut from the left: a sweep's runs share all but one folder level (rlkit writes
    `<env>/<seed>/<env>/<date>_0000--s-0`), so the left-cut tails of seven runs all read `…--s-0` and the
    environment that tells them apart is invisible. Each id shows the first component where it parts from
    its nearest sibling, then the end of its own folder name (`halfcheetah-medium-v0/…0000--s-0`); when
    only the folder name differs, that name with its middle cut.
    """
    parts = {rid: rid.split("/") for rid in run_ids}
    out: dict[str, str] = {}
    for rid, comps in parts.items():
        if len(rid) <= width:
            out[rid] = rid
            continue
        k = _first_difference(comps, [o for other, o in parts.items() if other != rid])
        tail = comps[-1]
        if k >= len(comps) - 1:
            out[rid] = ELLIPSIS + "/" + tail if len(tail) <= width - 2 else middle_clip(tail, width)
            continue
        head = comps[k]
        head = middle_clip(head, max(4, width - min(len(tail), 8) - 3))
        room = width - len(head) - 3
        if len(tail) <= room or room >= 14:
            out[rid] = head + "/" + ELLIPSIS + "/" + middle_clip(tail, room)
        else:  # little room: the end of the folder name (seed, date), as `head/…--s-0`
            out[rid] = head + "/" + ELLIPSIS + tail[-(room + 1) :]
    return out


def checkpoint_cell(result: RunResult) -> str:
    """`8000 (ckpt_8000.pt)`, `8000 (no file)`, or `-`: the step first, then the file to deploy."""
    pick = result.checkpoint
    if pick is None:
        return "-"
    return f"{pick.step} ({Path(pick.path).name if pick.path else 'no file'})"


def _get(findings: list[Finding], code: str) -> list[Finding]:
    return [f for f in findings if f.code == code]


def _proxy(result: RunResult) -> bool:
    q = result.run.series.get("q_data")
    return q is not None and q.kind == "proxy"


def _unit(result: RunResult) -> str:
    return result.run.x_unit


def short_evidence(result: RunResult) -> str:
    """The key numbers behind the verdict, one line (the full sentence stays in `verdict_reason`)."""
    text = _evidence(result)
    if _proxy(result) and "proxy" not in text:
        text = "proxy " + text if text.startswith("Q ") else text + " (proxy Q)"
    return clip(text, EVIDENCE_MAX)


def _evidence(r: RunResult) -> str:
    fs = r.findings
    unit = _unit(r)
    broken = [f for f in _get(fs, "NF001") if f.level == "error" and "first_bad_step" in f.evidence]
    if r.verdict == "inconclusive" and broken and "non-finite" in r.verdict_reason:
        ev = broken[0].evidence
        metric = r.verdict_reason.split(" ", 1)[0] or ev.get("metric", "?")
        first = next((f.evidence for f in broken if f.evidence.get("metric") == metric), ev)
        return f"{metric} {first.get('first_value', 'non-finite')} from {unit} {first['first_bad_step']}"
    if r.verdict == "overfitting":
        of = [f for f in _get(fs, "OF001") if "peak_value" in f.evidence]
        if of:
            ev = of[0].evidence
            frac = ev.get("drop_fraction_of_rise")
            share = f", -{frac:.0%} of rise" if isinstance(frac, (int, float)) and math.isfinite(frac) else ""
            return (
                f"Q peak {num(ev['peak_value'])} @{ev.get('peak_step', '?')} "
                f"-> {num(ev.get('final_level'))}{share}"
            )
    if r.verdict == "underfitting":
        uf1 = [f for f in _get(fs, "UF001") if f.evidence.get("underfitting")]
        if uf1:
            ev = uf1[0].evidence
            return (
                f"TD x H = {num(ev.get('scaled_error'))} >= Q range {num(ev.get('q_range'))} "
                f"({num(ev.get('ratio'), 2)}x)"
            )
        uf2 = [f for f in _get(fs, "UF002") if "tail_level" in f.evidence]
        if uf2 and not _get(fs, "UF003"):
            ev = uf2[0].evidence
            return (
                f"{ev.get('regularizer', 'regularizer')} flat at {num(ev['tail_level'])} "
                f">= {num(ev.get('threshold'))}"
            )
    if r.verdict == "healthy":
        uf1 = [f for f in _get(fs, "UF001") if "ratio" in f.evidence and not f.evidence.get("inconclusive")]
        td = f"; TD x H = {uf1[0].evidence['ratio']:.0%} of Q range" if uf1 else ""
        return f"no Q decline{td}"
    if r.verdict == "inconclusive":
        return _inconclusive_evidence(r)
    if r.verdict == "diverged":
        div = _get(fs, "DV001")
        return first_clause(div[0].message) if div else first_clause(r.verdict_reason)
    return first_clause(re.sub(r"^[A-Z]{2}\d{3}: ", "", r.verdict_reason))  # e.g. UF003's own sentence


def _inconclusive_evidence(r: RunResult) -> str:
    fs = r.findings
    reason = r.verdict_reason
    div = _get(fs, "DV001")
    if div and reason.startswith("Q diverges"):
        return "Q diverges: " + first_clause(div[0].message, EVIDENCE_MAX - 12)
    if reason.startswith("no dataset-Q metric"):
        return "no dataset-Q metric: overfitting unchecked"
    few = [f for f in _get(fs, "DQ002") if "points" in f.evidence]
    if few and reason == few[0].message:
        ev = few[0].evidence
        return f"{ev.get('metric', 'q_data')}: {ev['points']} points (< {ev.get('min_points', '?')})"
    missing = [m for f in _get(fs, "UF001") for m in f.evidence.get("missing", [])]
    if missing and reason.startswith("no overfitting sign"):
        what = ", ".join("horizon" if m == "horizon or gamma" else m.replace("_", " ") for m in missing)
        return f"no Q decline; underfitting needs {what}"
    return first_clause(reason)


def short_advice(result: RunResult) -> str:
    """The first concrete action, <= ADVICE_MAX characters (`-v` and the other formats give all)."""
    return clip(_advice(result), ADVICE_MAX)


def _advice(r: RunResult) -> str:
    fs = r.findings
    codes = {f.code for f in fs if f.level != "info" or f.evidence.get("inconclusive")}
    ours = r.run.framework == "offrl"  # offrl-train flags only make sense for our own trainer's runs
    pick = r.checkpoint
    name = Path(pick.path).name if pick is not None and pick.path else None
    if r.verdict == "overfitting":
        fix = "add --vib 1e-3" if ours else "regularize Q (dropout/VIB)"
        if name:
            return f"keep {name}; {fix}"
        at = pick.step if pick is not None else r.peak_step
        return f"stop at {_unit(r)} {at}; {fix}" if at is not None else f"stop at the Q peak; {fix}"
    if r.verdict == "underfitting":
        return (
            "retrain: --hidden 512 --depth 4 (or --dr3 1e-3)"
            if ours
            else "retrain with a bigger Q network (or DR3)"
        )
    if r.verdict == "healthy":
        return f"keep {name} (latest)" if name else "keep the latest checkpoint"
    if r.verdict == "diverged":
        where = (
            f"keep {name}"
            if name
            else (f"keep {_unit(r)} {pick.step}" if pick is not None else "no sound checkpoint")
        )
        return f"{where} (before it diverged); raise CQL alpha"
    if "NF001" in codes and "non-finite" in r.verdict_reason:
        return "restart from last finite checkpoint, lower Q lr"
    if "DV001" in codes:
        return "raise CQL alpha; check the reward scale"
    if r.verdict_reason.startswith("no dataset-Q metric"):
        return "log dataset Q or map it: `mappings:` (see -v)"
    if "DQ002" in codes:
        return "train longer or log dataset Q more often"
    missing = [m for f in _get(fs, "UF001") for m in f.evidence.get("missing", [])]
    if missing:
        if missing == ["reward_range"]:
            return "pass --reward-range LO,HI (e.g. 0,1)"
        if "reward_range" not in missing:
            return "pass --horizon N and/or --gamma G"
        return "pass --reward-range LO,HI --horizon N (see -v)"
    return r.advice[0] if r.advice else "-"
