"""Paper-style figures (Kumar et al. Figs. 3-6): per scenario, the true success curve with the workflow's pick beside
the dataset-Q, TD-error and regularizer curves the workflow read; plus one regret@1 chart of all methods."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from robot_eval.loop.score import METHOD_TITLES, METHODS  # noqa: E402

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _series(d: dict[str, float]) -> tuple[list[int], list[float]]:
    pts = sorted((int(k), float(v)) for k, v in d.items())
    return [p[0] for p in pts], [p[1] for p in pts]


def scenario_figure(
    scenario: str, rows: list[dict[str, Any]], by_key: dict[str, dict[str, Any]], path: Path
) -> Path:
    """Columns: variants; rows: success (pick = triangle, true best = star), dataset Q, TD error, regularizer."""
    variants = list(dict.fromkeys(x["variant"] for x in rows))
    fig, axes = plt.subplots(
        4, len(variants), figsize=(3.6 * len(variants), 9.5), squeeze=False, sharex="col"
    )
    for j, v in enumerate(variants):
        runs = [x for x in rows if x["variant"] == v]
        for i, x in enumerate(runs):
            r = by_key[x["key"]]
            c = COLORS[i % len(COLORS)]
            st, sv = _series(r["success"])
            ax = axes[0][j]
            ax.plot(st, sv, "-o", color=c, ms=3, lw=1.2, label=f"seed {x['seed']}")
            if x["workflow_pick"] is not None and math.isfinite(x["workflow_value"]):
                ax.plot([x["workflow_pick"]], [x["workflow_value"]], "v", color=c, ms=10, mec="k")
            logs = r["logs"]
            for row_i, tag in ((1, "q_data"), (2, "td_error")):
                if tag in logs:
                    axes[row_i][j].plot(*_series(logs[tag]), color=c, lw=1)
            if x["peak_step"] is not None:
                axes[1][j].axvline(x["peak_step"], color=c, ls=":", lw=1)
            main = "brac_divergence" if "brac_divergence" in logs else "cql_gap"
            for tag in (main, "vib_term", "dr3_term"):
                if tag in logs:
                    axes[3][j].plot(*_series(logs[tag]), color=c, lw=1, ls="-" if tag == main else "--")
        bc = runs and by_key[runs[0]["key"]]["spec"]["train"]
        if bc and bc.get("algo", "cql") == "cql" and bc.get("bc-steps"):
            for i in range(4):  # end of the CQL actor's BC warm start
                axes[i][j].axvline(int(bc["bc-steps"]), color="0.6", lw=0.8, ls="--")
        axes[0][j].set_title(f"{scenario}: {v}", fontsize=10)
        axes[0][j].set_ylim(-0.05, 1.05)
        axes[0][j].legend(fontsize=7, loc="best")
        axes[2][j].set_yscale("log")
        axes[3][j].set_xlabel("gradient step")
    for i, lab in enumerate(
        (
            "true success\n(▼ = workflow pick;\ngrey -- = end of BC)",
            "dataset Q\n(: = peak read)",
            "TD error",
            "regularizer\n(cql_gap / brac_div;\n-- vib/dr3 term)",
        )
    ):
        axes[i][0].set_ylabel(lab, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def regret_figure(agg: list[dict[str, Any]], path: Path) -> Path:
    """Mean regret@1 with 95% bootstrap CI per scope and method."""
    scopes = list(dict.fromkeys(a["scope"] for a in agg))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(scopes), 3.6))
    width = 0.8 / len(METHODS)
    for k, m in enumerate(METHODS):
        xs, ys, lo, hi = [], [], [], []
        for i, s in enumerate(scopes):
            rec = next(a for a in agg if a["scope"] == s and a["method"] == m)
            if rec["regret_n"] and math.isfinite(rec["regret_mean"]):
                xs.append(i + (k - (len(METHODS) - 1) / 2) * width)
                ys.append(rec["regret_mean"])
                lo.append(rec["regret_mean"] - rec["regret_lo"])
                hi.append(rec["regret_hi"] - rec["regret_mean"])
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, color=COLORS[k], label=METHOD_TITLES[m])
    ax.set_xticks(range(len(scopes)), scopes)
    ax.set_ylabel("normalised regret@1 (lower is better)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_figures(
    results: list[dict[str, Any]], rows: list[dict[str, Any]], agg: list[dict[str, Any]], out_dir: Path
) -> list[Path]:
    by_key = {r["spec"]["key"]: r for r in results}
    out = []
    for scen in dict.fromkeys(x["scenario"] for x in rows):
        out.append(
            scenario_figure(
                scen, [x for x in rows if x["scenario"] == scen], by_key, out_dir / f"loop-{scen}.png"
            )
        )
    out.append(regret_figure(agg, out_dir / "loop-regret.png"))
    return out
