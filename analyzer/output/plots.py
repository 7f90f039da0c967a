"""`--plot DIR`: one PNG per run, three stacked panels sharing the step axis (like the paper's Figs. 3-9).

1. dataset Q: raw (faint) and smoothed, change points (dashed), the peak and the checkpoint to keep;
2. TD error against the underfitting band (where TD, scaled as the rule scales it, reaches the
   reward range — the threshold is read from the finding's evidence, so the picture shows exactly
   what the rule tested);
3. the conservative regularizer (CQL gap/term) or the BRAC divergence.

matplotlib is imported here only, lazily, with the Agg backend (no display, thread-safe `Figure`).
Every text taken from the logs (run id, tag names, checkpoint file names) goes through
`names.plot_text`: one line, undecodable bytes and control characters escaped, `$` not read as math.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from analyzer.output.names import plot_text
from analyzer.report import Report, RunResult

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 8.0, 100  # -> 1000 x 800 px, fixed (tests check the size)
VERDICT_COLOR = {
    "overfitting": "#c62828",
    "underfitting": "#ef6c00",
    "healthy": "#2e7d32",
    "inconclusive": "#616161",
    "diverged": "#6a1b9a",
}
REGULARIZERS = ("cql_gap", "cql_term", "brac_divergence")
_THRESHOLD_KEYS = ("td_threshold", "threshold_td", "threshold", "td_limit", "limit")


def plot_filename(run_id: str) -> str:
    """A file name for run `run_id` (path separators and odd characters become `_`)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id.replace("/", "__")).strip("._") or "run"
    return f"{name}.png"


def td_threshold(result: RunResult) -> tuple[float, str] | None:
    """Raw-TD level at which the underfitting rule fires, and its label, from the finding's evidence.

    The UF001 evidence gives the reading (`rms`: sqrt(TD) x H, `mse`: TD x H), the effective horizon
    H, the Q range and `min_ratio`; inverting "scaled TD >= min_ratio x Q range" gives the raw TD
    level. An explicit threshold key wins. With neither, no band is drawn rather than a guessed one.
    """
    for f in result.findings:
        ev = f.evidence or {}
        for key in _THRESHOLD_KEYS:
            val = ev.get(key)
            if isinstance(val, (int, float)) and np.isfinite(val):
                return float(val), f"{f.code}: underfitting band (TD ≥ {float(val):.3g})"
        H, q_range, reading = ev.get("H"), ev.get("q_range"), ev.get("td_reading")
        ratio = ev.get("min_ratio", 1.0)
        if not (_positive(H) and _positive(q_range) and _positive(ratio)):
            continue
        level = float(ratio) * float(q_range) / float(H)  # scaled error per unit horizon at the limit
        if reading == "rms":
            return level**2, f"{f.code}: sqrt(TD)·H ≥ Q range {float(q_range):.3g} (TD ≥ {level**2:.3g})"
        if reading == "mse":
            return level, f"{f.code}: TD·H ≥ Q range {float(q_range):.3g} (TD ≥ {level:.3g})"
    return None


def _positive(v: object) -> TypeGuard[float]:
    """A finite number > 0 (evidence values are untyped: a rule may have left one out or set NaN)."""
    return isinstance(v, (int, float)) and bool(np.isfinite(v)) and v > 0


def _series(result: RunResult, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    s = result.run.series.get(name)
    if s is None or len(s) == 0:
        return None
    smooth = result.smoothed.get(name)
    if smooth is None or np.shape(smooth) != s.steps.shape:
        return s.steps, s.values, None
    smooth = np.array(smooth, dtype=float)
    smooth[~np.isfinite(s.values)] = np.nan  # never draw a smoothed line across a hole in the data
    return s.steps, s.values, smooth


def _draw_curve(
    ax: Any, data: tuple[np.ndarray, np.ndarray, np.ndarray | None], color: str, label: str
) -> None:
    steps, raw, smooth = data
    ax.plot(
        steps, raw, color=color, alpha=0.25 if smooth is not None else 0.9, lw=1.0, label=f"{label} (raw)"
    )
    if smooth is not None:
        ax.plot(steps, smooth, color=color, lw=2.0, label=f"{label} (smoothed)")
    bad = ~np.isfinite(raw)
    if bad.any():  # mark where the logged values are NaN/Inf, along the bottom edge of the panel
        ax.scatter(
            steps[bad],
            np.full(int(bad.sum()), 0.03),
            transform=ax.get_xaxis_transform(),
            marker="x",
            color="#b71c1c",
            s=12,
            label="NaN/Inf",
            zorder=5,
        )


def _missing(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#757575")


def render_figure(result: RunResult) -> Any:
    """Build the three-panel matplotlib Figure for one run (not saved)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    ax_q, ax_td, ax_reg = fig.subplots(3, 1, sharex=True)
    run = result.run

    q = _series(result, "q_data")
    q_name = "dataset Q"
    logged = run.series.get("q_data")
    if logged is not None and logged.kind != "logged":  # say what the curve really is
        q_name = plot_text(f"dataset Q ({logged.kind}: {', '.join(logged.sources) or logged.note})")
    if q is None:  # proxies are labelled as such, never passed off as dataset Q
        for alt in ("q_policy", "q_target"):
            q = _series(result, alt)
            if q is not None:
                q_name = f"{alt} (proxy for dataset Q)"
                break
    if q is None:
        _missing(ax_q, "dataset Q not logged")
    else:
        _draw_curve(ax_q, q, "#1565c0", q_name)
        faint = len(result.change_points) > 6  # many phase changes: keep them from hiding the curve
        for i, cp in enumerate(result.change_points):
            ax_q.axvline(
                cp,
                color="#616161",
                ls="--",
                lw=0.8 if faint else 1.0,
                alpha=0.35 if faint else 0.8,
                label="change point" if i == 0 else None,
            )
        steps, raw, smooth = q
        ref = smooth if smooth is not None else raw
        if result.peak_step is not None:
            idx = int(np.argmin(np.abs(steps - result.peak_step)))
            if np.isfinite(ref[idx]):
                ax_q.plot(
                    [steps[idx]],
                    [ref[idx]],
                    marker="v",
                    color="#c62828",
                    ms=10,
                    ls="none",
                    label=f"peak @ {result.peak_step}",
                )
        if result.checkpoint is not None:
            name = plot_text(Path(result.checkpoint.path).name) if result.checkpoint.path else "no file"
            ax_q.axvline(
                result.checkpoint.step,
                color="#2e7d32",
                lw=2.0,
                alpha=0.8,
                label=f"keep {name} @ {result.checkpoint.step}",
            )
    ax_q.set_ylabel("Q")
    ax_q.set_title(q_name, loc="left", fontsize=9, color="#424242")
    success = run.series.get("eval_success")
    if success is not None and len(success):
        # rollout scores (e.g. from `offrl-eval checkpoints`): what the pick should have found
        ax_s = ax_q.twinx()
        ax_s.plot(
            success.steps,
            success.values,
            "o-",
            color="#c62828",
            lw=1.2,
            ms=3,
            label="success rate (rollouts)",
        )
        ax_s.set_ylim(-0.05, 1.05)
        ax_s.set_ylabel("success rate", color="#c62828")
        ax_s.legend(loc="lower right", fontsize=7, framealpha=0.8)

    td = _series(result, "td_error")
    if td is None:
        _missing(ax_td, "TD error not logged")
    else:
        _draw_curve(ax_td, td, "#6a1b9a", "TD error")
        thr = td_threshold(result)
        finite = td[1][np.isfinite(td[1])]
        log = bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 100)
        if thr is not None:
            hi = float(finite.max()) if finite.size else thr[0]
            top = max(thr[0], hi) * (3.0 if log or thr[0] > 5 * hi else 1.5)
            ax_td.axhspan(thr[0], top, color="#ef6c00", alpha=0.12, label=thr[1])
            ax_td.axhline(thr[0], color="#ef6c00", lw=1.0, ls=":")
            # a band far above the curve would squash it flat: a log axis shows both
            log = log or bool(finite.size and finite.min() > 0 and thr[0] > 5 * hi)
        if log:
            ax_td.set_yscale("log")
    ax_td.set_ylabel("TD error")
    ax_td.set_title("TD error (Bellman MSE)", loc="left", fontsize=9, color="#424242")

    reg_name = next((n for n in REGULARIZERS if _series(result, n) is not None), None)
    if reg_name is None:
        _missing(ax_reg, "no CQL regularizer / BRAC divergence logged")
    else:
        reg = _series(result, reg_name)
        assert reg is not None
        _draw_curve(ax_reg, reg, "#00838f", reg_name)
    ax_reg.set_ylabel(reg_name or "regularizer")
    ax_reg.set_xlabel("epoch" if run.x_unit == "epoch" else "gradient step")
    ax_reg.set_title(
        {
            "cql_gap": "CQL regularizer (gap)",
            "cql_term": "CQL term",
            "brac_divergence": "BRAC divergence",
        }.get(reg_name or "", "regularizer"),
        loc="left",
        fontsize=9,
        color="#424242",
    )

    for ax in (ax_q, ax_td, ax_reg):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=7, framealpha=0.8)
    color = VERDICT_COLOR.get(result.verdict, "#000000")
    fig.suptitle(f"{plot_text(run.id)} — {result.verdict}", color=color, fontsize=13, fontweight="bold")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def plot_png(result: RunResult) -> bytes:
    """The run's figure as PNG bytes (for embedding in the HTML report)."""
    with warnings.catch_warnings():
        # a run name in a script the font lacks (CJK, emoji) shows as boxes; not worth a warning per run
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        fig = render_figure(result)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def write_plots(report: Report, out_dir: str | Path) -> list[Path]:
    """Write one PNG per run into `out_dir` (created if missing); returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    for result in report.runs:
        name = plot_filename(result.run.id)
        stem, n = name[:-4], 1
        while name in used:  # two run ids that sanitise to the same name
            n += 1
            name = f"{stem}-{n}.png"
        used.add(name)
        path = out / name
        path.write_bytes(plot_png(result))
        written.append(path)
    return written
