"""Scoring of checkpoint picks on hand-made curves whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robot_eval.loop import score as S

# success by checkpoint step: rises to 0.8 at step 3, then falls to 0.2 (an overfitting curve)
CURVE = {1: 0.2, 2: 0.6, 3: 0.8, 4: 0.4, 5: 0.2}


def test_regret_at_1_hand_values():
    assert S.regret_at_1(CURVE, 3) == 0.0  # the best checkpoint
    assert S.regret_at_1(CURVE, 5) == pytest.approx(1.0)  # a worst checkpoint
    assert S.regret_at_1(CURVE, 2) == pytest.approx((0.8 - 0.6) / (0.8 - 0.2))
    assert S.regret_at_1(CURVE, 4) == pytest.approx(2 / 3)


def test_regret_undefined_when_all_checkpoints_equal():
    assert math.isnan(S.regret_at_1({1: 0.0, 2: 0.0}, 2))
    with pytest.raises(KeyError):
        S.regret_at_1(CURVE, 7)
    with pytest.raises(ValueError):
        S.regret_at_1({}, 1)


def test_fraction_of_best_and_gain_over_last():
    assert S.fraction_of_best(CURVE, 2) == pytest.approx(0.75)
    assert S.gain_over_last(CURVE, 3) == pytest.approx(0.6)
    assert S.gain_over_last(CURVE, 5) == 0.0
    assert math.isnan(S.fraction_of_best({1: 0.0, 2: 0.0}, 1))


def test_score_pick_none_is_all_nan():
    ps = S.score_pick(CURVE, None)
    assert ps.step is None and all(math.isnan(v) for v in (ps.value, ps.regret, ps.fraction_of_best))


def test_random_baseline_is_the_exact_expectation():
    r = S.score_random(CURVE)
    mean = np.mean(list(CURVE.values()))  # 0.44
    assert r.value == pytest.approx(0.44)
    assert r.regret == pytest.approx((0.8 - mean) / 0.6)
    assert r.fraction_of_best == pytest.approx(mean / 0.8)
    assert r.gain_over_last == pytest.approx(mean - 0.2)
    # equals the average of scoring every checkpoint
    per = [S.score_pick(CURVE, s) for s in CURVE]
    assert r.regret == pytest.approx(np.mean([p.regret for p in per]))
    assert r.fraction_of_best == pytest.approx(np.mean([p.fraction_of_best for p in per]))


def test_lowest_td_uses_latest_window_at_or_before_each_checkpoint():
    td = {10: 5.0, 20: 1.0, 30: 3.0, 40: 0.5}
    # checkpoints 25 -> window 20 (1.0), 35 -> 30 (3.0), 45 -> 40 (0.5)
    assert S.pick_lowest_td([25, 35, 45], td) == 45
    assert S.pick_lowest_td([25, 35], td) == 25
    assert S.pick_lowest_td([5], td) is None  # nothing logged before it
    # a NaN window is skipped: checkpoint 45 is judged by the window at 30 (2.0)
    assert S.pick_lowest_td([25, 45], {20: 1.0, 30: 2.0, 40: math.nan}) == 25


def test_argbest_ties_go_to_later_step():
    assert S.argbest({1: 2.0, 2: 2.0, 3: 1.0}) == 2
    assert S.argbest({1: 1.0, 2: 1.0, 3: 3.0}, lower=True) == 2
    assert S.argbest({1: math.nan}) is None


def test_overfitting_label():
    assert S.label_overfitting(CURVE) is True  # smoothed peak 0.6, end 0.3
    assert S.label_overfitting({1: 0.2, 2: 0.5, 3: 0.7, 4: 0.8, 5: 0.8}) is False
    assert S.label_overfitting({1: 0.0, 2: 0.1, 3: 0.0, 4: 0.0}) is None  # never above the margin
    assert S.label_overfitting({1: 0.9, 2: 0.1, 3: 0.0}) is None  # too few checkpoints
    # a single noisy dip at the end of a flat curve is smoothed away
    assert S.label_overfitting({1: 0.8, 2: 0.8, 3: 0.8, 4: 0.8, 5: 0.6}) is False


def test_underfitting_label():
    assert S.label_underfitting(0.1, 0.5) is True
    assert S.label_underfitting(0.5, 0.6) is False
    assert S.label_underfitting(0.6, 0.1) is False


def test_bootstrap_ci_contains_mean_and_shrinks_with_n():
    rng = np.random.default_rng(3)
    small = S.bootstrap_ci(rng.normal(0.5, 0.2, 10))
    big = S.bootstrap_ci(rng.normal(0.5, 0.2, 1000))
    assert small.low < small.mean < small.high
    assert big.high - big.low < small.high - small.low
    assert big.low < 0.5 < big.high
    # known answer: a constant sample has a zero-width interval
    c = S.bootstrap_ci([0.3] * 5)
    assert (c.mean, c.low, c.high, c.n) == pytest.approx((0.3, 0.3, 0.3, 5))


def test_bootstrap_ci_drops_nan_and_handles_tiny_samples():
    c = S.bootstrap_ci([math.nan, 1.0, None, 0.0])
    assert c.n == 2 and c.mean == 0.5 and 0.0 <= c.low <= c.high <= 1.0
    one = S.bootstrap_ci([0.7])
    assert (one.mean, one.low, one.high, one.n) == (0.7, 0.7, 0.7, 1)
    none = S.bootstrap_ci([math.nan])
    assert none.n == 0 and math.isnan(none.mean) and none.fmt() == "n/a"
    assert S.bootstrap_ci([0.0, 1.0]).fmt(pct=True).startswith("50% [")


def test_bootstrap_is_seeded():
    x = [0.1, 0.4, 0.9, 0.3]
    assert S.bootstrap_ci(x, seed=5) == S.bootstrap_ci(x, seed=5)
