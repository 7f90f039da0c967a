"""Score checkpoint picks against rolled-out success: DOPE-style regret@1, fraction of best, gain over last.

Why these three: regret@1 is scale-free across runs whose best success differs (DOPE, Fu et al. 2021), fraction of
best says how much of the attainable success a pick keeps, and gain over last answers the practical question "was
picking better than just deploying the final checkpoint?". All values are per run, over that run's checkpoints;
aggregates carry percentile-bootstrap confidence intervals over runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# A run's true curve is labelled "overfitting" when its (3-checkpoint moving average) success peaks and the final
# level sits at least this far below the peak. 0.2 = the half-width of a 95% Wilson interval at 50% success with
# 20 episodes: a smaller drop is within rollout noise.
OVERFIT_DROP = 0.2
# "More capacity raises success" (underfitting label): the higher-capacity run's final success exceeds the base
# run's by at least this much (same seed, same data; the same noise argument as OVERFIT_DROP).
UNDERFIT_GAIN = 0.2
SMOOTH = 3

#: The checkpoint-pick methods the loop scores, in table order, and how tables and figures title them.
METHODS = ("workflow", "workflow_nodv", "last", "random", "lowest_td", "fqe")
METHOD_TITLES = {
    "workflow": "workflow (offrl-analyze defaults, logs only)",
    "workflow_nodv": "workflow, DV001 guard off",
    "last": "last checkpoint",
    "random": "uniform random (expected)",
    "lowest_td": "lowest logged TD error",
    "fqe": "FQE V(s0)",
}


@dataclass(frozen=True)
class PickScore:
    """One method's pick in one run. NaN where a quantity is undefined (see `score_pick`)."""

    step: int | None
    value: float
    regret: float
    fraction_of_best: float
    gain_over_last: float


def _curve(values: Mapping[int, float]) -> tuple[np.ndarray, np.ndarray]:
    if not values:
        raise ValueError("empty curve: no evaluated checkpoints")
    steps = np.array(sorted(values), dtype=np.int64)
    vals = np.array([float(values[s]) for s in steps], dtype=np.float64)
    if not np.all(np.isfinite(vals)):
        raise ValueError("curve has non-finite success values")
    return steps, vals


def regret_at_1(values: Mapping[int, float], pick: int) -> float:
    """(v_best - v_pick) / (v_best - v_worst) = 1 - (v_pick - v_worst)/(v_best - v_worst); NaN when every
    checkpoint scores the same (no choice can be better or worse, so the run says nothing about a picker)."""
    _, vals = _curve(values)
    if pick not in values:
        raise KeyError(f"picked step {pick} was not evaluated")
    best, worst = vals.max(), vals.min()
    if best == worst:
        return math.nan
    return float((best - values[pick]) / (best - worst))


def fraction_of_best(values: Mapping[int, float], pick: int) -> float:
    """v_pick / v_best; NaN when the best checkpoint has zero success (nothing to reach)."""
    _, vals = _curve(values)
    best = vals.max()
    return math.nan if best <= 0 else float(values[pick] / best)


def gain_over_last(values: Mapping[int, float], pick: int) -> float:
    """v_pick - v_last in success-rate points (positive = picking beat deploying the final checkpoint)."""
    steps, vals = _curve(values)
    return float(values[pick] - vals[-1])


def score_pick(values: Mapping[int, float], pick: int | None) -> PickScore:
    """All three numbers for one pick; a missing pick (method had nothing to say) scores NaN everywhere."""
    if pick is None:
        return PickScore(None, math.nan, math.nan, math.nan, math.nan)
    return PickScore(
        int(pick),
        float(values[pick]),
        regret_at_1(values, pick),
        fraction_of_best(values, pick),
        gain_over_last(values, pick),
    )


def score_random(values: Mapping[int, float]) -> PickScore:
    """Expected scores of a uniformly random checkpoint: each metric is linear in v_pick, so its expectation is the
    metric of the mean value (computed exactly, no sampling)."""
    steps, vals = _curve(values)
    best, worst, mean = vals.max(), vals.min(), vals.mean()
    regret = math.nan if best == worst else float((best - mean) / (best - worst))
    frac = math.nan if best <= 0 else float(mean / best)
    return PickScore(None, float(mean), regret, frac, float(mean - vals[-1]))


def nearest_at_or_before(steps: Sequence[int], target: int) -> int | None:
    """The latest of `steps` at or before `target` (a logged window ending at or before a checkpoint)."""
    prior = [s for s in steps if s <= target]
    return max(prior) if prior else None


def argbest(scores: Mapping[int, float], lower: bool = False) -> int | None:
    """Step with the highest (or lowest) finite score; ties go to the later step (the usual deploy choice)."""
    finite = [(v, s) for s, v in scores.items() if v is not None and math.isfinite(v)]
    if not finite:
        return None
    if lower:
        return min(finite, key=lambda t: (t[0], -t[1]))[1]
    return max(finite, key=lambda t: (t[0], t[1]))[1]


def pick_lowest_td(ckpt_steps: Sequence[int], td: Mapping[int, float]) -> int | None:
    """Baseline: the checkpoint whose latest logged TD error (window ending at or before it) is lowest."""
    logged = sorted(s for s, v in td.items() if math.isfinite(v))
    per_ckpt: dict[int, float] = {}
    for c in ckpt_steps:
        s = nearest_at_or_before(logged, c)
        if s is not None:
            per_ckpt[c] = td[s]
    return argbest(per_ckpt, lower=True)


def smooth(vals: np.ndarray, k: int = SMOOTH) -> np.ndarray:
    """Centred moving average with a shrinking window at the ends (no padding bias)."""
    n = len(vals)
    h = k // 2
    return np.array([vals[max(0, i - h) : min(n, i + h + 1)].mean() for i in range(n)])


def label_overfitting(values: Mapping[int, float], drop: float = OVERFIT_DROP) -> bool | None:
    """True-curve label: the smoothed success peaks before the last checkpoint and ends >= `drop` below the peak.
    None (unlabelled) with fewer than 4 checkpoints or when success never exceeds `drop` (nothing to fall from)."""
    _, vals = _curve(values)
    if len(vals) < 4:
        return None
    sm = smooth(vals)
    if sm.max() < drop:
        return None
    return bool(sm.max() - sm[-1] >= drop)


def label_underfitting(base_final: float, bigger_final: float, gain: float = UNDERFIT_GAIN) -> bool:
    """True when the higher-capacity run ends at least `gain` above the base run (Metric 3.2's ground truth)."""
    return bool(bigger_final - base_final >= gain)


def final_level(values: Mapping[int, float]) -> float:
    """Smoothed success at the last checkpoint (mean of the last `SMOOTH // 2 + 1` checkpoints)."""
    _, vals = _curve(values)
    return float(smooth(vals)[-1])


@dataclass(frozen=True)
class CI:
    mean: float
    low: float
    high: float
    n: int

    def fmt(self, pct: bool = False) -> str:
        if self.n == 0 or not math.isfinite(self.mean):
            return "n/a"
        f = (lambda x: f"{100 * x:.0f}%") if pct else (lambda x: f"{x:.2f}")
        return f"{f(self.mean)} [{f(self.low)}, {f(self.high)}]"


def bootstrap_ci(values: Sequence[float], n_boot: int = 10_000, level: float = 0.95, seed: int = 0) -> CI:
    """Mean and percentile-bootstrap interval over runs, NaNs dropped. With one run the interval is the point
    (no spread can be estimated); with none everything is NaN."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return CI(math.nan, math.nan, math.nan, 0)
    if x.size == 1:
        return CI(float(x[0]), float(x[0]), float(x[0]), 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return CI(float(x.mean()), float(lo), float(hi), int(x.size))
