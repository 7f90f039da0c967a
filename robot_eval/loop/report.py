"""Turn finished trials into per-run scores, aggregate tables with bootstrap CIs, and a markdown summary.

Scenario membership is recomputed from the scenario definitions (a run shared by two scenarios counts in both
scenario tables but once in the overall table).
"""

from __future__ import annotations

import csv
import json
import math
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robot_eval.loop import score as S
from robot_eval.loop.scenarios import ORDER, PRESETS, trials_for
from robot_eval.loop.score import METHOD_TITLES, METHODS

REGULARIZER_TAGS = ("cql_gap", "brac_divergence", "vib_term", "dr3_term")


def membership() -> dict[str, list[tuple[str, str, str | None]]]:
    """trial key -> [(scenario, variant, pair)] over every preset's scenarios."""
    out: dict[str, list[tuple[str, str, str | None]]] = {}
    for p in PRESETS:
        for t in trials_for("all", p):
            entry = (t.scenario, t.variant, t.pair)
            if entry not in out.setdefault(t.key, []):
                out[t.key].append(entry)
    return out


def load_results(out: Path, reanalyze: bool = False) -> list[dict[str, Any]]:
    """Finished trials of OUT (a work dir or an exported corpus, see corpus.py), read-only.

    `reanalyze`: run the installed analyzer again on every finished trial's logs (both readings) and score its
    answers instead of the stored ones, so a changed analyzer is scored on the same runs without retraining. The
    answers live only in memory (and in the tables written from them): nothing is written into a trial folder, so
    a committed corpus stays as it was exported and a re-analysis never mixes with the trial's own record. A trial
    stored without the DV001-off reading gets it the same way."""
    from robot_eval.loop.corpus import finished_trials
    from robot_eval.loop.trial import NO_DV, analyze_run

    res = []
    for tdir in finished_trials(out):
        try:
            r = json.loads((tdir / "result.json").read_text())
        except ValueError:
            continue
        if reanalyze:
            r["analysis"] = analyze_run(tdir / "run")
            r["analysis_nodv"] = analyze_run(tdir / "run", NO_DV)
        elif "analysis_nodv" not in r:
            r["analysis_nodv"] = analyze_run(tdir / "run", NO_DV)
        res.append(r)
    return res


def _evaluated(step: int | None, success: dict[int, float]) -> int | None:
    """A pick must be an evaluated checkpoint; otherwise the latest evaluated one at or before it."""
    if step is None:
        return None
    return step if step in success else S.nearest_at_or_before(sorted(success), step)


def score_run(r: dict[str, Any]) -> dict[str, Any]:
    """Every method's pick and scores for one finished trial."""
    success = {int(k): float(v) for k, v in r["success"].items()}
    steps = sorted(success)
    td = {int(k): float(v) for k, v in r["logs"].get("td_error", {}).items()}
    fqe = {int(k): float(v) for k, v in r.get("fqe", {}).items()}
    picks = {
        "workflow": _evaluated(r["analysis"].get("pick_step"), success),
        "workflow_nodv": _evaluated(r["analysis_nodv"].get("pick_step"), success),
        "last": steps[-1],
        "lowest_td": S.pick_lowest_td(steps, td),
        "fqe": S.argbest({s: v for s, v in fqe.items() if s in success}) if fqe else None,
    }
    row: dict[str, Any] = {
        "key": r["spec"]["key"],
        "seed": r["spec"]["seed"],
        "n_ckpts": len(steps),
        "best_success": max(success.values()),
        "last_success": success[steps[-1]],
        "final_level": S.final_level(success),
        "verdict": r["analysis"].get("verdict"),
        "peak_step": r["analysis"].get("peak_step"),
        "verdict_nodv": r["analysis_nodv"].get("verdict"),
        "peak_step_nodv": r["analysis_nodv"].get("peak_step"),
        "label_overfit": S.label_overfitting(success),
    }
    for m in METHODS:
        ps = S.score_random(success) if m == "random" else S.score_pick(success, picks[m])
        row[f"{m}_pick"] = ps.step
        row[f"{m}_value"] = ps.value
        row[f"{m}_regret"] = ps.regret
        row[f"{m}_frac"] = ps.fraction_of_best
        row[f"{m}_gain"] = ps.gain_over_last
    return row


def build_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (run, scenario it belongs to), with the underfitting label for capacity pairs."""
    member = membership()
    scored = {r["spec"]["key"]: (r, score_run(r)) for r in results}
    rows = []
    for key, (_r, row) in scored.items():
        for scen, variant, pair in member.get(key, [(_r["spec"]["scenario"], _r["spec"]["variant"], None)]):
            rows.append(
                {"scenario": scen, "variant": variant, "pair": pair or "", **row, "label_underfit": None}
            )
    by = {(x["scenario"], x["variant"], x["seed"]): x for x in rows}
    for x in rows:  # base run of a capacity pair: does the plain bigger network end higher?
        if x["scenario"] != "capacity" or x["pair"]:
            continue
        big = [
            y
            for y in rows
            if y["scenario"] == "capacity" and y["pair"] == x["variant"] and y["seed"] == x["seed"]
        ]
        if big:
            x["label_underfit"] = S.label_underfitting(x["final_level"], big[0]["final_level"])
    return sorted(rows, key=lambda x: (x["scenario"], x["variant"], x["seed"])) if by else rows


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario and overall (unique runs): mean and 95% bootstrap CI of regret, fraction of best, gain."""
    uniq = {x["key"]: x for x in rows}
    scopes: dict[str, list[dict[str, Any]]] = {"all": list(uniq.values())}
    for name in (*ORDER, *sorted({x["scenario"] for x in rows} - set(ORDER))):  # the paper's order
        members = [x for x in rows if x["scenario"] == name]
        if members:
            scopes[name] = members
    out = []
    for scope, xs in scopes.items():
        for m in METHODS:
            rec: dict[str, Any] = {"scope": scope, "method": m, "runs": len(xs)}
            for metric in ("regret", "frac", "gain"):
                ci = S.bootstrap_ci([x[f"{m}_{metric}"] for x in xs], seed=0)
                rec.update(
                    {
                        f"{metric}_mean": ci.mean,
                        f"{metric}_lo": ci.low,
                        f"{metric}_hi": ci.high,
                        f"{metric}_n": ci.n,
                    }
                )
            out.append(rec)
    return out


def verdict_accuracy(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Confusion counts of the workflow's verdicts (both readings) against labels from the rollout curves."""
    uniq = list({x["key"]: x for x in rows}.values())
    out = []
    for reading, vkey in (("defaults", "verdict"), ("DV001 off", "verdict_nodv")):
        for name, label_key in (("overfitting", "label_overfit"), ("underfitting", "label_underfit")):
            src = uniq if name == "overfitting" else [x for x in rows if x["label_underfit"] is not None]
            lab = [x for x in src if x[label_key] is not None]
            hit = [x[vkey] == name for x in lab]
            truth = [bool(x[label_key]) for x in lab]
            acc = S.bootstrap_ci([float(h == t) for h, t in zip(hit, truth, strict=True)], seed=1)
            out.append(
                {
                    "reading": reading,
                    "label": name,
                    "labelled_runs": len(lab),
                    "unlabelled_runs": len(src) - len(lab),
                    "tp": sum(h and t for h, t in zip(hit, truth, strict=True)),
                    "fp": sum(h and not t for h, t in zip(hit, truth, strict=True)),
                    "fn": sum(t and not h for h, t in zip(hit, truth, strict=True)),
                    "tn": sum(not h and not t for h, t in zip(hit, truth, strict=True)),
                    "inconclusive": sum(x[vkey] == "inconclusive" for x in lab),
                    "accuracy": acc.mean,
                    "accuracy_lo": acc.low,
                    "accuracy_hi": acc.high,
                }
            )
    return out


def timing_rows(results: list[dict[str, Any]], collect_s: dict[str, float]) -> list[dict[str, Any]]:
    """Wall seconds per phase per trial; a dataset's collection time is split over the trials that use it."""
    users: dict[str, int] = {}
    for r in results:
        name = Path(r["spec"]["dataset_path"]).stem
        users[name] = users.get(name, 0) + 1
    out = []
    for r in results:
        name = Path(r["spec"]["dataset_path"]).stem
        t = r["timing"]
        c = collect_s.get(name, math.nan) / max(1, users[name])
        phases = {
            "collect_share": c,
            **{k: float(t.get(k, 0.0)) for k in ("train", "evaluate", "analyze", "fqe")},
        }
        out.append(
            {
                "key": r["spec"]["key"],
                "steps": r["spec"]["train"]["steps"],
                **phases,
                "total": sum(v for v in phases.values() if math.isfinite(v)),
            }
        )
    return out


def curve_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        logs = r["logs"]
        for step in sorted(int(s) for s in logs.get("q_data", {})):
            rec = {"key": r["spec"]["key"], "step": step, "kind": "log"}
            for tag in ("q_data", "td_error", *REGULARIZER_TAGS):
                rec[tag] = logs.get(tag, {}).get(str(step), "")
            out.append(rec)
        for step, v in sorted((int(s), v) for s, v in r["success"].items()):
            out.append(
                {
                    "key": r["spec"]["key"],
                    "step": step,
                    "kind": "ckpt",
                    "success": v,
                    "fqe_v_s0": r.get("fqe", {}).get(str(step), ""),
                }
            )
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols: list[str] = []
    for x in rows:
        cols += [k for k in x if k not in cols]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for x in rows:
            w.writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v)) for k, v in x.items()}
            )


def _ci(rec: dict[str, Any], metric: str, pct: bool) -> str:
    return S.CI(rec[f"{metric}_mean"], rec[f"{metric}_lo"], rec[f"{metric}_hi"], rec[f"{metric}_n"]).fmt(pct)


def _pk(x: dict[str, Any], m: str) -> str:
    v = x[f"{m}_value"]
    return "-" if x[f"{m}_pick"] is None else f"{x[f'{m}_pick']} ({v:.2f})"


def summary_markdown(agg, acc, rows, timings, command: str, versions: dict[str, str]) -> str:
    lines = ["# Closed-loop results (generated by `offrl-eval loop`)", "", f"Command: `{command}`", ""]
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.append("")
    lines.append(
        "Regret@1 (0 = best checkpoint, 1 = worst), fraction of the best checkpoint's success, and gain over"
    )
    lines.append(
        "the last checkpoint (success-rate points); mean [95% bootstrap CI] over runs; `n` = runs where the metric"
    )
    lines.append("is defined (regret needs checkpoints that differ; fraction needs a best success > 0).")
    for scope in [s for s in dict.fromkeys(r["scope"] for r in agg)]:
        recs = [r for r in agg if r["scope"] == scope]
        lines += [
            "",
            f"## {scope} ({recs[0]['runs']} runs)",
            "",
            "| method | regret@1 | n | fraction of best | n | gain over last |",
            "|---|---|---|---|---|---|",
        ]
        for r in recs:
            lines.append(
                f"| {METHOD_TITLES[r['method']]} | {_ci(r, 'regret', False)} | {r['regret_n']} | {_ci(r, 'frac', True)} | {r['frac_n']} | {_ci(r, 'gain', False)} |"
            )
    lines += [
        "",
        "## Verdicts against rollout labels",
        "",
        "| reading | label | labelled runs | TP | FP | FN | TN | inconclusive verdicts | accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a in acc:
        ci = S.CI(a["accuracy"], a["accuracy_lo"], a["accuracy_hi"], a["labelled_runs"]).fmt(True)
        lines.append(
            f"| {a['reading']} | {a['label']} | {a['labelled_runs']} | {a['tp']} | {a['fp']} | {a['fn']} | {a['tn']} | {a['inconclusive']} | {ci} |"
        )
    lines += [
        "",
        "## Runs",
        "",
        "| scenario | variant | seed | verdict | pick (success) | DV001-off verdict | pick (success) | best success | last success | FQE pick (success) | overfit label | underfit label |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        lines.append(
            f"| {x['scenario']} | {x['variant']} | {x['seed']} | {x['verdict']} | {_pk(x, 'workflow')} | {x['verdict_nodv']} | "
            f"{_pk(x, 'workflow_nodv')} | {x['best_success']:.2f} | {x['last_success']:.2f} | {_pk(x, 'fqe')} | "
            f"{x['label_overfit']} | {x['label_underfit']} |"
        )
    if timings:
        lines += [
            "",
            "## Wall time per trial (s, mean over trials)",
            "",
            "| collect (share) | train | evaluate | analyze | FQE | total |",
            "|---|---|---|---|---|---|",
        ]
        mean = {
            k: sum(t[k] for t in timings if math.isfinite(t[k])) / len(timings)
            for k in ("collect_share", "train", "evaluate", "analyze", "fqe", "total")
        }
        lines.append(
            "| "
            + " | ".join(
                f"{mean[k]:.1f}" for k in ("collect_share", "train", "evaluate", "analyze", "fqe", "total")
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("offrl-workflow", "torch", "pybullet", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_report(
    out: Path,
    results_dir: Path,
    figures_dir: Path,
    collect_s: dict[str, float],
    command: str,
    log: Callable[[str], None] = print,
    reanalyze: bool = False,
) -> dict[str, Any]:
    """Score every finished trial under OUT; write runs/summary/verdicts/timings/curves CSVs, summary.md, figures."""
    results = load_results(out, reanalyze)
    if not results:
        log("no finished trials to score")
        return {"runs": 0}
    for f in (out / "data").glob("*.json"):
        collect_s.setdefault(f.stem, float(json.loads(f.read_text())["seconds"]))
    rows = build_rows(results)
    agg = aggregate(rows)
    acc = verdict_accuracy(rows)
    tim = timing_rows(results, collect_s)
    results_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(results_dir / "runs.csv", rows)
    _write_csv(results_dir / "summary.csv", agg)
    _write_csv(results_dir / "verdicts.csv", acc)
    _write_csv(results_dir / "timings.csv", tim)
    _write_csv(results_dir / "curves.csv", curve_rows(results))
    (results_dir / "summary.md").write_text(summary_markdown(agg, acc, rows, tim, command, versions()))
    from robot_eval.loop.figures import write_figures  # matplotlib: loaded only when figures are drawn

    figs = write_figures(results, rows, agg, figures_dir)
    log(f"scored {len(results)} runs -> {results_dir}, {len(figs)} figure(s) -> {figures_dir}")
    return {"runs": len(results), "results_dir": str(results_dir), "figures": [str(f) for f in figs]}
