"""Signal processing for training curves: smoothing, resampling, noise, trends, change points, peaks.

This module measures; it never judges. Rules (analyzer.rules) turn these numbers into findings.
Choices and the evidence behind each default are in docs/diagnosis.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

SmootherName = Literal["ema", "ema2", "median", "savgol", "none"]
PhaseKind = Literal["rising", "flat", "falling"]


# ----------------------------------------------------------------------------------------------
# smoothing


def ema(values: np.ndarray, weight: float = 0.6) -> np.ndarray:
    """TensorBoard's debiased exponential moving average over finite points only.

    `last = last*w + (1-w)*y`, output `last / (1 - w**n)` with n the number of finite points so
    far; non-finite inputs are skipped and their output repeats the last smoothed value (NaN
    before the first finite point). Matches what users see in TensorBoard's UI.

    The recursion runs in scipy's `lfilter` (C) rather than a Python loop: the loop was the largest
    single cost of diagnosing a run (docs/performance.md); both compute the same products and sums
    in the same order, so the values are identical to the loop's (tests/test_signal.py checks).
    """
    y = np.asarray(values, dtype=np.float64)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"EMA weight must be in [0, 1), got {weight}")
    out = np.full(y.shape, np.nan)
    ok = np.isfinite(y)
    f = y[ok]
    if f.size == 0:
        return out
    if weight > 0:
        from scipy.signal import lfilter

        last = lfilter([1.0 - weight], [1.0, -weight], f)
        sm = last / _debias(weight, f.size)
    else:
        sm = f.copy()
    # each point shows the smoothed value of the last finite point at or before it
    idx = np.cumsum(ok) - 1
    seen = idx >= 0
    out[seen] = sm[idx[seen]]
    return out


def _debias(weight: float, n: int) -> np.ndarray:
    """`1 - weight**k` for k = 1..n with Python's float power (the same rounding as the scalar loop)."""
    out = np.ones(n)
    for k in range(n):
        d = 1.0 - weight ** (k + 1)
        if d == 1.0:
            break  # weight**k is below half an ulp of 1 from here on
        out[k] = d
    return out


def ema_zero_phase(values: np.ndarray, weight: float = 0.6) -> np.ndarray:
    """Forward-then-backward debiased EMA: same noise reduction, no lag.

    A one-sided EMA delays a peak by about w/(1-w) points (1.5 points at w=0.6, 9 at w=0.9),
    which would move the picked checkpoint after the true peak. Running it back over the forward
    result cancels the delay (the filtfilt idea).
    """
    fwd = ema(values, weight)
    out = ema(fwd[::-1], weight)[::-1]
    out[np.isnan(fwd)] = np.nan  # nothing known before the first finite point
    return out


def moving_median(values: np.ndarray, window: int = 5) -> np.ndarray:
    """Centred running median over finite points (robust to isolated spikes)."""
    y = np.asarray(values, dtype=np.float64)
    out = np.full(y.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(y))
    if finite.size == 0:
        return out
    f = y[finite]
    half = max(int(window), 1) // 2
    med = np.array([np.median(f[max(0, i - half) : i + half + 1]) for i in range(f.size)])
    out[finite] = med
    return _fill_forward(out)


def savgol(values: np.ndarray, window: int = 11, order: int = 2) -> np.ndarray:
    """Savitzky–Golay filter (scipy) over finite points; keeps peak height better than an EMA."""
    from scipy.signal import savgol_filter

    y = np.asarray(values, dtype=np.float64)
    out = np.full(y.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(y))
    if finite.size == 0:
        return out
    win = min(int(window) | 1, finite.size if finite.size % 2 else finite.size - 1)
    if win <= order:
        out[finite] = y[finite]
    else:
        out[finite] = savgol_filter(y[finite], win, order, mode="interp")
    return _fill_forward(out)


def smooth(
    values: np.ndarray, method: SmootherName = "ema", weight: float = 0.6, window: int = 11
) -> np.ndarray:
    """Dispatch to one smoother by name (the name used in rules YAML `smoothing.method`)."""
    if method == "ema":
        return ema(values, weight)
    if method == "ema2":
        return ema_zero_phase(values, weight)
    if method == "median":
        return moving_median(values, window)
    if method == "savgol":
        return savgol(values, window)
    if method == "none":
        return _fill_forward(np.where(np.isfinite(values), values, np.nan).astype(np.float64))
    raise ValueError(f"unknown smoother {method!r}; expected ema, ema2, median, savgol or none")


def _fill_forward(x: np.ndarray) -> np.ndarray:
    """Carry the last finite value over NaN gaps; leading NaNs stay NaN."""
    out = np.array(x, dtype=np.float64)
    ok = np.isfinite(out)
    if not ok.any():
        return out
    idx = np.where(ok, np.arange(out.size), 0)
    np.maximum.accumulate(idx, out=idx)
    filled = out[idx]
    filled[: int(np.argmax(ok))] = np.nan
    return filled


# ----------------------------------------------------------------------------------------------
# resampling, noise, trend


def finite(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop non-finite points (NaN gaps, Inf); steps stay aligned."""
    v = np.asarray(values, dtype=np.float64)
    m = np.isfinite(v)
    return np.asarray(steps)[m], v[m]


def resample(steps: np.ndarray, values: np.ndarray, max_points: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Bin-average finite points onto at most `max_points` equal-width step bins.

    Why: change-point costs grow with n (Pelt ~ n to n^2, ruptures' Window/Kernel need n^2
    memory), and irregular logging would otherwise weigh dense stretches more. Bin centres are the
    mean step of their members, so an irregular run keeps its true x positions.
    """
    s, v = finite(steps, values)
    if s.size <= max_points:
        return s.astype(np.float64), v
    edges = np.linspace(s[0], s[-1], max_points + 1)
    b = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, max_points - 1)
    counts = np.bincount(b, minlength=max_points)
    keep = counts > 0
    sx = np.bincount(b, weights=s.astype(np.float64), minlength=max_points)[keep] / counts[keep]
    sv = np.bincount(b, weights=v, minlength=max_points)[keep] / counts[keep]
    return sx, sv


def noise_sigma(values: np.ndarray) -> float:
    """Robust point-to-point noise level: 1.4826 * MAD(first differences) / sqrt(2).

    Differencing removes a slow trend, the MAD ignores spikes; for i.i.d. Gaussian noise this
    estimates its standard deviation. Returns 0.0 with fewer than 3 finite points.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 3:
        return 0.0
    d = np.diff(v)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def theil_sen(x: np.ndarray, y: np.ndarray, max_points: int = 200) -> float:
    """Median of pairwise slopes (robust trend); subsampled to `max_points` for O(n^2) pairs."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = np.isfinite(y)
    x, y = x[m], y[m]
    if x.size < 2:
        return 0.0
    if x.size > max_points:
        idx = np.linspace(0, x.size - 1, max_points).astype(int)
        x, y = x[idx], y[idx]
    i, j = np.triu_indices(x.size, k=1)
    dx = x[j] - x[i]
    ok = dx != 0
    return float(np.median((y[j] - y[i])[ok] / dx[ok])) if ok.any() else 0.0


@dataclass
class Trend:
    """Robust trend over a window: slope per step, total change over the window, relative change."""

    slope: float
    change: float  # slope * window length (in metric units)
    relative: float  # change / |median level| (0 when the level is 0)
    start_step: int
    end_step: int
    level: float  # median value in the window


def tail_trend(steps: np.ndarray, values: np.ndarray, fraction: float = 0.5) -> Trend | None:
    """Theil–Sen trend over the last `fraction` of the run (by step). None with < 4 points."""
    s, v = finite(steps, values)
    if s.size < 4:
        return None
    start = s[-1] - fraction * (s[-1] - s[0])
    m = s >= start
    if m.sum() < 4:
        m = np.zeros(s.size, dtype=bool)
        m[-4:] = True
    slope = theil_sen(s[m], v[m])
    span = float(s[m][-1] - s[m][0])
    level = float(np.median(v[m]))
    change = slope * span
    rel = change / abs(level) if level != 0 else 0.0
    return Trend(slope, change, rel, int(s[m][0]), int(s[m][-1]), level)


def tail_level(steps: np.ndarray, values: np.ndarray, fraction: float = 0.2) -> float:
    """Median of the finite values in the last `fraction` of the run (by step); NaN if none."""
    s, v = finite(steps, values)
    if s.size == 0:
        return float("nan")
    start = s[-1] - fraction * (s[-1] - s[0])
    return float(np.median(v[s >= start]))


def head_level(steps: np.ndarray, values: np.ndarray, fraction: float = 0.2) -> float:
    """Median of the finite values in the first `fraction` of the run (by step); NaN if none."""
    s, v = finite(steps, values)
    if s.size == 0:
        return float("nan")
    end = s[0] + fraction * (s[-1] - s[0])
    return float(np.median(v[s <= end]))


# ----------------------------------------------------------------------------------------------
# change points and phases


@dataclass
class Phase:
    kind: PhaseKind
    start_step: int
    end_step: int
    change: float  # smoothed value at end - at start


def change_points(
    steps: np.ndarray,
    smoothed: np.ndarray,
    *,
    max_points: int = 500,
    penalty_scale: float = 1.0,
    min_size: int = 5,
    algorithm: str = "kernel",
    cost: str = "l2-slope",
    noise: float | None = None,
) -> list[int]:
    """Steps where the smoothed curve changes behaviour (ruptures), excluding the end.

    Default: exact penalized search (ruptures KernelCPD, linear kernel = l2 cost, C code; the same
    segmentation as Pelt with l2, 1000x faster) on the *first difference* of the normalised, resampled smoothed
    curve, i.e. piecewise-constant slope = rising / flat / falling segments; penalty
    `penalty_scale * sigma^2 * log(n)` (BIC-like) with sigma the robust noise of that
    difference (`noise`, when the caller knows it: a smoothed curve's noise is autocorrelated and
    the MAD estimate then reads too low). Evidence for these choices: docs/diagnosis.md ("Change points").
    """
    import ruptures as rpt

    s, v = resample(steps, smoothed, max_points)
    if s.size < 2 * min_size + 2:
        return []
    with np.errstate(over="ignore", invalid="ignore"):
        scale = float(np.nanstd(v))
    if not np.isfinite(scale):
        return []  # values near the float limit (diverged run): no meaningful segmentation
    z = (v - np.nanmean(v)) / (scale if scale > 0 else 1.0)
    if cost == "l2-slope":
        signal = np.diff(z)
        xs = s[1:]
        model = "l2"
    elif cost == "l2":
        signal, xs, model = z, s, "l2"
    elif cost == "clinear":
        signal, xs, model = z, s, "clinear"
    else:
        raise ValueError(f"unknown change-point cost {cost!r}")
    n = signal.size
    if noise is not None and scale > 0:
        sigma = noise / scale  # caller knows the noise of this signal (normalised units)
    else:
        sigma = noise_sigma(signal) if cost == "l2-slope" else noise_sigma(z)
    sigma = max(sigma, 1e-3 * (np.std(signal) + 1e-12))
    pen = penalty_scale * sigma**2 * np.log(n) * (2.0 if model == "l2" else 1.0)
    pen = max(pen, 1e-12)
    sig2 = signal.reshape(-1, 1)
    if algorithm == "pelt":
        algo = rpt.Pelt(model=model, min_size=min_size, jump=1).fit(sig2)
        bkps = algo.predict(pen=pen)
    elif algorithm == "binseg":
        bkps = rpt.Binseg(model=model, min_size=min_size, jump=1).fit(sig2).predict(pen=pen)
    elif algorithm == "bottomup":
        bkps = rpt.BottomUp(model=model, min_size=min_size, jump=1).fit(sig2).predict(pen=pen)
    elif algorithm == "kernel":
        if model != "l2":
            raise ValueError("the kernel algorithm supports the l2 costs only (l2, l2-slope)")
        bkps = rpt.KernelCPD(kernel="linear", min_size=min_size).fit(sig2).predict(pen=pen)
    else:
        raise ValueError(f"unknown change-point algorithm {algorithm!r}")
    return [int(round(xs[b])) for b in bkps if b < n]


def segment(
    steps: np.ndarray,
    raw: np.ndarray,
    *,
    method: SmootherName = "ema2",
    weight: float = 0.8,
    window: int = 11,
    algorithm: str = "kernel",
    cost: str = "l2-slope",
    penalty_scale: float = 10.0,
    max_points: int = 500,
    min_size: int = 5,
) -> list[int]:
    """Change points of a raw curve: resample (bin means) -> smooth -> `change_points`.

    Resampling the raw curve before smoothing keeps the noise model simple: the penalty uses the
    bins' robust noise times the smoother's measured gain on white noise (of its slope for
    l2-slope), because the MAD of an autocorrelated smoothed series reads far too low.
    """
    rs, rv = resample(steps, raw, max_points)
    if rs.size == 0:
        return []
    rsm = smooth(rv, method, weight, window)
    gain = smoothed_noise_gain(method, weight, window, diff=cost == "l2-slope")
    return change_points(
        rs,
        rsm,
        max_points=max_points,
        penalty_scale=penalty_scale,
        min_size=min_size,
        algorithm=algorithm,
        cost=cost,
        noise=noise_sigma(rv) * gain,
    )


def phases(
    steps: np.ndarray,
    smoothed: np.ndarray,
    cps: list[int],
    flat_tolerance: float,
    min_fraction: float = 0.03,
    flat_slope: float = 0.2,
) -> list[Phase]:
    """Label the segments between change points rising / flat / falling.

    A segment is flat when its net change is within `flat_tolerance` (metric units, typically a
    multiple of the noise level) or its slope is below `flat_slope` curve-ranges per run length
    (a straight line from min to max over the whole run has slope 1); otherwise its sign decides. Segments shorter than `min_fraction` of the run join their neighbour.
    """
    s, v = finite(steps, smoothed)
    if s.size == 0:
        return []
    span = float(s[-1] - s[0]) or 1.0
    inner = sorted(c for c in cps if s[0] < c < s[-1])
    # a segment shorter than min_fraction of the run (end effects of the smoother) joins its neighbour
    kept: list[int] = []
    for c in inner:
        if (c - (kept[-1] if kept else s[0])) >= min_fraction * span:
            kept.append(c)
    if kept and (s[-1] - kept[-1]) < min_fraction * span:
        kept.pop()
    bounds = [int(s[0]), *kept, int(s[-1])]
    value_range = float(np.max(v) - np.min(v))
    out: list[Phase] = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=False):
        va = float(np.interp(a, s, v))
        vb = float(np.interp(b, s, v))
        d = vb - va
        slope = abs(d) / max((b - a) / span, 1e-12)  # curve ranges per run length
        flat = abs(d) <= flat_tolerance or slope <= flat_slope * value_range
        kind: PhaseKind = "flat" if flat else ("rising" if d > 0 else "falling")
        if out and out[-1].kind == kind:
            prev = out[-1]
            out[-1] = Phase(kind, prev.start_step, b, prev.change + d)
        else:
            out.append(Phase(kind, a, b, d))
    return out


# ----------------------------------------------------------------------------------------------
# peak


@dataclass
class Peak:
    """Maximum of a smoothed curve and how the curve behaves before and after it."""

    step: int
    index: int  # index into the finite-point arrays
    value: float
    start_value: float  # smoothed level at the start (median of the first points)
    rise: float  # value - min before the peak
    end_value: float  # smoothed level over the tail
    drop: float  # value - end_value
    min_after: float  # lowest smoothed value after the peak
    recovery: float  # (end_value - min_after) / (value - min_after): 1 = fully back up
    after_fraction: float  # share of the run (by step) after the peak
    after_points: int  # logged points after the peak


def find_peak(
    steps: np.ndarray, smoothed: np.ndarray, tail_fraction: float = 0.1, tolerance: float = 0.0
) -> Peak | None:
    """The smoothed curve's maximum (or the latest point of its top), with rise/drop/recovery around it.

    `tolerance` 0 (the diagnosis default): the argmax of the smoothed curve, which is unbiased on
    kink-shaped and rounded tops alike. `tolerance` > 0: the latest point within `tolerance` of
    the maximum (a literal reading of Guideline 3.1's "latest checkpoint that corresponds to a
    peak"); measured to sit after the true maximum on rounded tops (docs/validation.md). The
    caller confirms that a sustained decline follows (OF001).
    """
    s, v = finite(steps, smoothed)
    if s.size < 3:
        return None
    i = int(np.argmax(v))
    vmax = float(v[i])
    if tolerance > 0:
        i = int(np.flatnonzero(v >= vmax - tolerance)[-1])
    return _peak_stats(s, v, i, vmax, tail_fraction)


def find_peak_at(
    steps: np.ndarray, smoothed: np.ndarray, step: int, tail_fraction: float = 0.1
) -> Peak | None:
    """Peak statistics for a peak placed at `step` (e.g. after hinge refinement)."""
    s, v = finite(steps, smoothed)
    if s.size < 3:
        return None
    i = int(np.clip(np.searchsorted(s, step), 0, s.size - 1))
    return _peak_stats(s, v, i, float(np.max(v)), tail_fraction)


def _peak_stats(s: np.ndarray, v: np.ndarray, i: int, vmax: float, tail_fraction: float) -> Peak:
    k = max(1, int(np.ceil(tail_fraction * s.size)))
    end_value = float(np.median(v[-k:]))
    before_min = float(np.min(v[: i + 1]))
    after = v[i:]
    min_after = float(np.min(after))
    denom = vmax - min_after
    recovery = float((end_value - min_after) / denom) if denom > 0 else 0.0
    span = float(s[-1] - s[0]) or 1.0
    return Peak(
        step=int(s[i]),
        index=i,
        value=vmax,
        start_value=float(v[0]),
        rise=float(vmax - before_min),
        end_value=end_value,
        drop=float(vmax - end_value),
        min_after=min_after,
        recovery=recovery,
        after_fraction=float((s[-1] - s[i]) / span),
        after_points=int(s.size - 1 - i),
    )


_NOISE_GAIN: dict[tuple[str, float, int], float] = {}


def smoothed_noise_gain(method: str, weight: float, window: int = 11, diff: bool = False) -> float:
    """Std of the smoother's output on unit white noise (measured once, cached).

    Turns the raw noise level into the noise level of the smoothed curve, which is what a
    tolerance on the smoothed curve must be compared with.
    """
    key = (method + ("/diff" if diff else ""), float(weight), int(window))
    if key not in _NOISE_GAIN:
        z = np.random.default_rng(12345).normal(size=4000)
        out = smooth(z, method, weight, window)[200:-200]  # type: ignore[arg-type]
        _NOISE_GAIN[key] = float(np.std(np.diff(out) if diff else out))
    return _NOISE_GAIN[key]


def hinge_break(x: np.ndarray, y: np.ndarray, candidates: np.ndarray) -> tuple[int, float] | None:
    """Best break index of a continuous two-piece linear fit y ~ a + b x + c max(0, x - x_k), c < 0.

    Least squares for every candidate k (3 parameters each, closed form via lstsq on a small
    window). Why: on a rise-then-decline the turn is where the slope drops; fitting both sides at
    once uses every point near the turn, whereas the smoothed maximum wanders along a flat top by
    several logging intervals. Returns (index into x, slope change c) or None.
    """
    if x.size < 6 or candidates.size == 0:
        return None
    xs = (x - x[0]) / max(float(x[-1] - x[0]), 1e-12)
    best: tuple[float, int, float] | None = None
    ones = np.ones_like(xs)
    for k in candidates:
        if k < 2 or k > xs.size - 3:
            continue
        h = np.maximum(0.0, xs - xs[k])
        A = np.column_stack([ones, xs, h])
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        if coef[2] >= 0:
            continue
        sse = float(np.sum((A @ coef - y) ** 2))
        if best is None or sse < best[0]:
            best = (sse, int(k), float(coef[2]))
    return None if best is None else (best[1], best[2])


def refine_peak(steps: np.ndarray, raw: np.ndarray, peak_step: int, half_window: int) -> int:
    """Move a peak estimate to the best hinge break of the raw curve within +-half_window points.

    Optional (`analysis.peak_refine: hinge`): better on kink-shaped tops, late on rounded ones
    (docs/validation.md), so not the default.

    The fit window spans 2 x half_window points on each side of the estimate, so that both the
    top and the start of the decline are in it. Falls back to the estimate when no decreasing
    break fits.
    """
    s, v = finite(steps, raw)
    if s.size < 8:
        return int(peak_step)
    i = int(np.clip(np.searchsorted(s, peak_step), 0, s.size - 1))
    lo, hi = max(0, i - 2 * half_window), min(s.size, i + 2 * half_window + 1)
    cand = np.arange(max(lo + 2, i - half_window), min(hi - 3, i + half_window + 1)) - lo
    hit = hinge_break(s[lo:hi].astype(np.float64), v[lo:hi], cand)
    return int(peak_step) if hit is None else int(s[lo + hit[0]])


def jump_end(values: np.ndarray, sigma: float, k: float = 4.0, max_points: int = 5) -> int:
    """Index where a run of abrupt steps at the start of `values` ends (0: no jump).

    `values[0]` is the last point before a regime switch (e.g. the end of a BC warm start), the rest the
    points after it. Why: when logging is sparse, the critic's re-fit to a new actor shows as one or two
    steps of many noise sigmas; such a jump is a change of regime, not the gradual rise Metric 3.1 reads,
    so a rise or peak measured across it would be the switch, not learning. At most `max_points` steps count.
    """
    v = np.asarray(values, dtype=np.float64)
    if sigma <= 0 or v.size < 2:
        return 0
    i = 0
    while i + 1 < v.size and i < max_points and np.isfinite(v[i + 1]) and np.isfinite(v[i]):
        if abs(v[i + 1] - v[i]) <= k * sigma:
            break
        i += 1
    return i


def level_shift(
    steps: np.ndarray, values: np.ndarray, min_ratio: float = 2.0, window: int = 3, min_before: int = 3
) -> tuple[int, float] | None:
    """(step, ratio) of the largest multiplicative level shift of a positive curve (a loss) in its first half.

    The shift between point i-1 and i is the median of the `window` points from i over the median of the
    `window` points before it; the largest (or its inverse, for a fall) counts when it is >= `min_ratio`,
    at least `min_before` points from the start (the first updates always move a loss fast) and at least
    twice any other shift in that half (a steady trend shifts every window a little, a switch one window a lot).
    """
    s, v = finite(steps, values)
    v = np.abs(v)
    n = s.size
    if n < 2 * window + min_before:
        return None
    # medians of every `window` consecutive points, at once (a Python loop of np.median calls was most
    # of a run's diagnosis time); med[j] is the median of v[j : j + window]
    med = np.median(np.lib.stride_tricks.sliding_window_view(v, window), axis=1)
    idx = np.arange(max(window, min_before), n // 2 + 1)
    before, after = med[idx - window], med[idx]
    ok = (before > 0) & (after > 0)
    if not ok.any():
        return None
    idx, before, after = idx[ok], before[ok], after[ok]
    r_all = np.maximum(after / before, before / after)
    k = int(np.argmax(r_all))  # the first of equal maxima, as the loop's strict '>' kept
    best = (int(s[idx[k]]), float(r_all[k]))
    if best[1] < min_ratio:
        return None
    # windows next to the switch share its points: compare with shifts at least `window` points away
    far = r_all[np.abs(np.arange(r_all.size) - k) >= window]
    if far.size and best[1] < 2.0 * float(far.max()):
        return None
    return best
