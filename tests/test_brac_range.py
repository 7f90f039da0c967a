"""DV001's feasible Q range for BRAC with a value penalty (issue 16, item 5).

Why: BRAC-vp backs up r + gamma (Q' - p), so dataset Q may leave the reward-only range by gamma x H x the penalty
without diverging. The real logs here carry their own truth: the penalty the trainer logged, and whether Q stays
within what it allows; a synthetic run that leaves even the widened range must still be flagged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analyzer.api import analyze
from analyzer.config import default_config, load_config
from analyzer.diagnose import analyze_signals, run_rules
from analyzer.model import Run, RunMetadata, Series

ROOT = Path(__file__).resolve().parents[1]
BETA10 = ROOT / "fixtures" / "real" / "brac_vp" / "beta10"
TRIAL = (
    ROOT / "results" / "closed_loop" / "trials" / "pickplace_n50_noise0.1_seed0__brac_h256x2__s0__d6524d18"
)


def _dv(result) -> list:
    return [f for f in result.findings if f.code == "DV001"]


def test_penalty_bonus_run_is_not_called_diverged():
    """brac_beta 10 > temperature: the logged value_penalty turns negative (a bonus of up to ~120 per step) and
    dataset Q climbs to ~550, 50x the reward-only Q range 10 above r_max x H. The reward-only range calls that
    divergence (the analyzer did, before the penalty was part of the range); the logged penalty allows it."""
    (res,) = analyze(BETA10).runs
    q = res.run.series["q_data"].values
    p = res.run.series["value_penalty"].values
    assert q.max() > 10 + 5  # beyond q_hi + margin of the reward-only range ...
    assert q.max() < 10 + 0.9 * 10 * -p.min()  # ... and within what the logged bonus allows
    assert not _dv(res) and res.verdict != "diverged"
    assert res.run.metadata.warm_start == 0  # bc_steps of our BRAC is the behaviour fit before step 1
    assert "DQ004" not in {f.code for f in res.findings}


def test_committed_brac_trial_inside_its_penalty_range(tmp_path):
    """The committed BRAC trial (beta 1): dataset Q settles near -7 for rewards in [0, 1] (reward-only minimum 0).
    Read with the below-minimum margin it was analysed with when it ran (0.5 Q ranges; analysis.json there says
    DV001), the reward-only range flags it; with the penalty (1 x brac_divergence up to ~8 x gamma x H 9) it is
    inside the range."""
    rules = tmp_path / "r.yaml"
    rules.write_text("extends: default\nparams: {DV001: {below_range_factor: 0.5}}\n")
    (res,) = analyze(TRIAL / "run", load_config(rules)).runs
    q = res.run.series["q_data"].values
    assert q.min() < -5.0  # below r_min x H - 0.5 x range: what the old check called divergence
    assert not _dv(res)


def findings_for(run: Run, cfg=None) -> list:
    cfg = cfg or default_config()
    return run_rules(analyze_signals(run, cfg, cfg.run_override(run.id)), cfg)


def _brac_run(q: np.ndarray, **series: np.ndarray) -> Run:
    """Our trainer's BRAC-vp (beta 1, gamma 0.9, rewards in [0, 1], horizon 40: Q range 10), logged every 1000."""
    meta = RunMetadata(
        algorithm="brac", gamma=0.9, reward_range=(0.0, 1.0), horizon=40, hyperparameters={"brac_beta": 1.0}
    )
    steps = np.arange(1, q.size + 1) * 1000
    named = {"q_data": q, "td_error": np.full(q.size, 0.3), **series}
    return Run(
        id="t/brac",
        path=Path("t/brac"),
        framework="offrl",
        metadata=meta,
        series={k: Series(k, steps, v) for k, v in named.items()},
    )


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_diverged_brac_run_is_still_flagged(sign):
    """Q running off to 1e4 (either way) with a penalty of ~0.5 per step (its range widens by 4.5 below) is
    divergence: DV001 fires, in range mode, and names the penalty it allowed for."""
    t = np.linspace(0.0, 1.0, 80)
    q = sign * (1.0 + np.expm1(t * np.log(1e4)))
    run = _brac_run(q, brac_divergence=np.full(80, 0.5))
    (dv,) = [f for f in findings_for(run) if f.code == "DV001"]
    assert dv.evidence["mode"] == "range"
    assert dv.evidence["penalty_below"] == pytest.approx(0.9 * 10 * 0.5)
    assert dv.evidence["q_lo"] == pytest.approx(-4.5) and dv.evidence["q_hi"] == pytest.approx(10.0)


def test_logged_value_penalty_is_preferred_and_pr_gets_no_widening():
    """A logged value_penalty (the exact term) wins over beta x divergence; BRAC-pr has no penalty in its
    backup, so its range stays the reward-only one."""
    q = np.concatenate([np.linspace(0.0, -40.0, 30), np.full(50, -40.0)])  # -40: 4 ranges below r_min x H
    run = _brac_run(q, brac_divergence=np.full(80, 0.1), value_penalty=np.full(80, 5.0))
    cfg = default_config()
    cfg.params["DV001"] = {**cfg.params["DV001"], "below_range_factor": 0.5}
    assert not [f for f in findings_for(run, cfg) if f.code == "DV001"]  # 5 x 9 = 45 below allowed
    run.metadata.hyperparameters["brac_variant"] = "pr"
    (dv,) = [f for f in findings_for(run, cfg) if f.code == "DV001"]
    assert "penalty_below" not in dv.evidence and dv.evidence["q_lo"] == 0.0
