"""Last resort: find dataset Q and the TD error by what a tag's name says, when no profile maps them.

Why: real logs come from many more trainers than there are profiles, and most spell the dataset-Q mean in a
way a person reads at once (`Data q-values`, `train/q1_pred_mean`, `critic/q_data_avg`). Leaving the metric out
makes the whole overfitting check impossible; guessing it from the name - conservatively, never over a
profile's choice, and always said in an info-level ingest note - lets the run be read and the user check it.

The rules are on name tokens (split at anything that is not a letter or digit, lower-cased):
dataset Q needs a Q token and a "mean/data/prediction" token (or is a bare `q1`-style name), and none of the
tokens that mark another quantity (targets, policy or out-of-distribution actions, losses, spreads, critic 2).
"""

from __future__ import annotations

import dataclasses
import re

from analyzer.model import IngestIssue, RawRun, Run

_Q = {"q", "q1", "qf", "qf1", "qvalue", "qvalues", "qval", "qvals", "qs"}
_MEANING = {
    "data",
    "dataset",
    "mean",
    "avg",
    "average",
    "pred",
    "preds",
    "prediction",
    "predictions",
    "values",
    "value",
}
_NOT_Q = {
    "target", "targets", "targ", "tgt", "next", "policy", "pi", "ood", "random", "rand", "loss", "std", "max",
    "min", "var", "grad", "norm", "lr", "diff", "gap", "cql", "q2", "qf2", "exploration", "explore", "logsumexp",
    "lse", "weight", "alpha", "error", "err", "td",
}  # fmt: skip
_TD = {"td", "bellman"}
_TD_KIND = {"loss", "error", "err", "mse"}
_NOT_TD = {"cql", "conservative", "total", "actor", "policy", "target", "grad", "norm", "ratio"}


def tokens(tag: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", tag.lower()) if t]


def _is_dataset_q(tag: str) -> bool:
    toks = tokens(tag)
    if not toks or set(toks) & _NOT_Q:
        return False
    if not set(toks) & _Q:
        return False
    last = toks[-1]
    return bool(set(toks) & _MEANING) or last in _Q


def _is_td(tag: str) -> bool:
    toks = set(tokens(tag))
    return bool(toks & _TD) and bool(toks & _TD_KIND) and not toks & _NOT_TD


def guess_by_name(raw: RawRun, run: Run, skip: set[str] | frozenset[str] = frozenset()) -> None:
    """Fill q_data / td_error from tag names when nothing resolved them; note every guess (info).

    `skip`: canonical names the user mapped in a rules file - their word stands, even when the mapping failed."""
    for canonical, test in (("q_data", _is_dataset_q), ("td_error", _is_td)):
        if canonical in run.series or canonical in skip:
            continue
        hits = sorted(
            (t for t, s in raw.tags.items() if len(s) and test(t)), key=lambda t: (len(tokens(t)), t)
        )
        if not hits:
            continue
        tag = hits[0]
        run.series[canonical] = dataclasses.replace(  # a renamed view: arrays shared with Run.raw
            raw.tags[tag],
            name=canonical,
            sources=(tag,),
            kind="logged",
            note=f"guessed from the tag's name {tag!r} (no {run.framework} profile row maps it)",
        )
        others = f"; other candidates: {', '.join(hits[1:4])}" if len(hits) > 1 else ""
        run.issues.append(
            IngestIssue(
                str(raw.path),
                f"{canonical} read from {tag!r} by its name{others}; if that is wrong, map it in a rules file "
                f"(`mappings: {{{canonical}: <tag>}}`)",
                level="info",
            )
        )
