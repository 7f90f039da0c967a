"""Signal processing on signals with known truth (ruptures-style: generate, detect, compare)."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.signal import (
    ema,
    ema_zero_phase,
    find_peak,
    moving_median,
    noise_sigma,
    phases,
    resample,
    savgol,
    segment,
    smooth,
    smoothed_noise_gain,
    tail_trend,
    theil_sen,
)


def test_ema_matches_tensorboard_formula_and_skips_nonfinite():
    y = np.array([np.nan, 1.0, 3.0, np.inf, 2.0])
    w = 0.6
    out = ema(y, w)
    # by hand: finite points 1, 3, 2
    last1 = 0.4 * 1
    last2 = last1 * w + 0.4 * 3
    last3 = last2 * w + 0.4 * 2
    expect = [np.nan, last1 / (1 - w), last2 / (1 - w**2), last2 / (1 - w**2), last3 / (1 - w**3)]
    np.testing.assert_allclose(out, expect, equal_nan=True)
    assert ema(np.array([5.0, 5.0, 5.0]), 0.9)[0] == pytest.approx(5.0)  # debiased: no pull to 0


def test_zero_phase_ema_has_no_lag_one_sided_does():
    t = np.arange(201)
    y = 10 - np.abs(t - 100) * 0.1  # peak at 100
    assert int(np.argmax(ema_zero_phase(y, 0.9))) == 100
    assert int(np.argmax(ema(y, 0.9))) > 103  # the TensorBoard EMA delays the peak


@pytest.mark.parametrize("method", ["ema", "ema2", "median", "savgol", "none"])
def test_smoothers_keep_length_and_nan_prefix(method):
    y = np.r_[np.nan, np.nan, np.linspace(0, 1, 50)]
    out = smooth(y, method, 0.6, 7)
    assert out.shape == y.shape
    assert np.isnan(out[:2]).all() and np.isfinite(out[2:]).all()


def test_median_and_savgol_reduce_noise():
    rng = np.random.default_rng(0)
    y = np.sin(np.linspace(0, 3, 300)) + rng.normal(0, 0.2, 300)
    clean = np.sin(np.linspace(0, 3, 300))
    for out in (moving_median(y, 11), savgol(y, 21)):
        assert np.std(out - clean) < 0.6 * np.std(y - clean)


@pytest.mark.parametrize("sigma", [0.01, 0.3, 2.0])
def test_noise_sigma_recovers_noise_on_a_trend(sigma):
    rng = np.random.default_rng(1)
    t = np.linspace(0, 1, 2000)
    y = 5 * (1 - np.exp(-t / 0.2)) + rng.normal(0, sigma, t.size)
    assert noise_sigma(y) == pytest.approx(sigma, rel=0.15)


def test_smoothed_noise_gain_matches_theory_for_one_sided_ema():
    w = 0.6
    assert smoothed_noise_gain("ema", w) == pytest.approx(np.sqrt((1 - w) / (1 + w)), rel=0.1)


def test_resample_bins_irregular_steps():
    rng = np.random.default_rng(2)
    steps = np.unique(np.sort(rng.integers(0, 100_000, 5000)))
    vals = steps / 1000.0
    vals[10] = np.nan
    s, v = resample(steps, vals, 400)
    assert s.size <= 400 and np.all(np.diff(s) > 0)
    np.testing.assert_allclose(v, s / 1000.0, rtol=1e-9)  # linear signal: bin mean at bin mean step
    s2, v2 = resample(steps[:50], vals[:50], 400)
    assert s2.size == 49  # short series untouched except the NaN


def test_theil_sen_ignores_outliers():
    x = np.arange(100.0)
    y = 2 * x + 1
    y[::10] = 1e6
    assert theil_sen(x, y) == pytest.approx(2.0, rel=1e-6)
    tr = tail_trend(x, y, 0.5)
    assert tr is not None and tr.slope == pytest.approx(2.0)


def _piecewise(n: int, knots: list[float], slopes: list[float], noise: float, seed: int):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    y = np.zeros(n)
    bounds = [0.0, *knots, 1.0]
    level = 0.0
    for a, b, s in zip(bounds[:-1], bounds[1:], slopes, strict=False):
        m = (t >= a) & (t <= b)
        y[m] = level + s * (t[m] - a)
        level += s * (b - a)
    return np.arange(1, n + 1) * 100, y + rng.normal(0, noise, n)


@pytest.mark.parametrize("n", [150, 600, 5000])
@pytest.mark.parametrize("noise", [0.02, 0.1])
@pytest.mark.parametrize("seed", [0, 1])
def test_segment_finds_rise_flat_fall_breakpoints(n, noise, seed):
    steps, y = _piecewise(n, [0.3, 0.6], [10.0, 0.0, -6.0], noise, seed)
    cps = segment(steps, y)
    span = steps[-1] - steps[0]
    for knot in (0.3, 0.6):
        true = steps[0] + knot * span
        assert any(abs(c - true) <= 0.05 * span for c in cps), (knot, cps)
    from analyzer.signal import ema_zero_phase as zp

    ph = phases(steps, zp(y, 0.8), cps, 3 * noise)
    kinds = [p.kind for p in ph]
    assert kinds[0] == "rising" and kinds[-1] == "falling" and "flat" in kinds


@pytest.mark.parametrize("seed", range(4))
def test_segment_sees_no_phase_change_in_a_straight_noisy_line(seed):
    steps, y = _piecewise(400, [], [5.0], 0.1, seed)
    from analyzer.signal import ema_zero_phase as zp

    cps = segment(steps, y)
    ph = phases(steps, zp(y, 0.8), cps, 0.3)
    assert [p.kind for p in ph] == ["rising"]


def test_find_peak_takes_latest_point_of_a_plateau_top():
    steps = np.arange(100) * 10
    y = np.r_[np.linspace(0, 5, 30), np.full(30, 5.0), np.linspace(5, 2, 41)[1:]]
    y[35] = 5.05  # tiny bump early on the plateau
    p = find_peak(steps, y, 0.1, tolerance=0.1)
    assert p is not None and p.step == steps[59]  # last plateau point, not the bump
    assert p.drop == pytest.approx(y[59] - np.median(y[-10:]), abs=0.06)
    p0 = find_peak(steps, y, 0.1, tolerance=0.0)
    assert p0 is not None and p0.step == steps[35]


def test_find_peak_recovery_measures_a_dip():
    steps = np.arange(100)
    y = np.r_[np.linspace(0, 5, 30), np.linspace(5, 3, 20), np.linspace(3, 4.9, 50)]
    p = find_peak(steps, y, 0.05)
    assert p is not None and p.recovery > 0.8 and p.step == 29


@pytest.mark.parametrize("seed", range(3))
def test_hinge_refinement_finds_a_kink_on_a_flat_top(seed):
    rng = np.random.default_rng(seed)
    n = 300
    x = np.arange(n)
    clean = np.where(x < 180, 5.0, 5.0 - 0.03 * (x - 180))  # flat top, kink at 180
    y = clean + rng.normal(0, 0.1, n)
    from analyzer.signal import refine_peak

    assert abs(refine_peak(x * 10, y, 168 * 10, 15) - 1800) <= 30  # within 3 points, from 12 away


# ----------------------------------------------------------------------------------------------
# the vectorised EMA and level shift compute exactly what the plain loops they replaced computed


def _ema_loop(values, weight):
    """The scalar loop `ema` was (TensorBoard's formula, point by point)."""
    out = np.full(len(values), np.nan)
    last, n, cur = 0.0, 0, np.nan
    for i, v in enumerate(np.asarray(values, dtype=np.float64)):
        if np.isfinite(v):
            last = last * weight + (1.0 - weight) * v
            n += 1
            cur = last / (1.0 - weight**n) if weight > 0 else last
        out[i] = cur
    return out


def _level_shift_loop(steps, values, min_ratio=2.0, window=3, min_before=3):
    """The loop of np.median calls `level_shift` was."""
    m = np.isfinite(values)
    s, v = steps[m], np.abs(values[m])
    n = s.size
    if n < 2 * window + min_before:
        return None
    best, ratios = None, []
    for i in range(max(window, min_before), n // 2 + 1):
        before, after = float(np.median(v[i - window : i])), float(np.median(v[i : i + window]))
        if before <= 0 or after <= 0:
            continue
        r = max(after / before, before / after)
        ratios.append(r)
        if best is None or r > best[1]:
            best = (int(s[i]), r)
    if best is None or best[1] < min_ratio:
        return None
    far = [r for j, r in enumerate(ratios) if abs(j - ratios.index(best[1])) >= window]
    if far and best[1] < 2.0 * max(far):
        return None
    return best


def _hostile_curves(seed, count=120):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(0, 120))
        v = rng.normal(0, 1, n) * 10 ** rng.uniform(-3, 3)
        if rng.random() < 0.5:
            v = np.abs(v) + rng.choice([0.0, 1.0, 5.0])
        if rng.random() < 0.3 and n:
            v[rng.integers(0, n, size=max(1, n // 10))] = rng.choice([np.nan, np.inf, -np.inf, 0.0])
        if rng.random() < 0.4 and n > 20:
            v[int(rng.integers(3, n // 2 + 1)) :] *= rng.uniform(2, 6)  # a level shift somewhere
        yield np.cumsum(rng.integers(1, 5, n)), v


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_ema_equals_the_loop_bit_for_bit(seed):
    for _, v in _hostile_curves(seed):
        for w in (0.0, 0.6, 0.9, 0.999):
            np.testing.assert_array_equal(ema(v, w), _ema_loop(v, w))
            fwd = _ema_loop(v, w)
            back = _ema_loop(fwd[::-1], w)[::-1]
            back[np.isnan(fwd)] = np.nan
            np.testing.assert_array_equal(ema_zero_phase(v, w), back)


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_level_shift_equals_the_loop(seed):
    from analyzer.signal import level_shift

    found = 0
    for s, v in _hostile_curves(seed):
        for window in (1, 3, 4):
            got = level_shift(s, v, window=window)
            assert got == _level_shift_loop(s, v, window=window)
            found += got is not None
    assert found > 10  # the cases include real shifts, not only curves where both say None
