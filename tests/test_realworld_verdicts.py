"""Issue 11's failure classes, each on real logs other people wrote (fixtures/real/thirdparty, README there).

Truth is the evaluation return each run logged itself: the tests read it to score a pick (the analyzer
never does). A pick is harmful when its smoothed eval is below the end-of-run value by more than 10% of the
run's eval range (the benchmarks/realworld.py definition).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyzer import analyze
from analyzer.diagnose import diagnose_run
from analyzer.ingest.profiles import resolve
from analyzer.model import RawRun, RunMetadata, Series
from analyzer.output.brief import short_run_ids

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "fixtures" / "real" / "thirdparty"
RLKIT = REAL / "rlkit-cql-d4rl"
EVAL = "evaluation/Average Returns"


def _one(path: Path, **kw):
    rep = analyze([path], **kw)
    assert len(rep.runs) == 1, [r.run.id for r in rep.runs]
    return rep.runs[0]


def _eval_at(res, tag: str = EVAL) -> tuple[float, float, float]:
    """(smoothed eval at the pick, at the end, eval range) from the run's own logged evaluation."""
    ev = res.run.raw[tag]
    ok = np.isfinite(ev.values)
    steps = ev.steps[ok]
    sm = pd.Series(ev.values[ok]).rolling(5, center=True, min_periods=1).median().to_numpy()
    at = float(sm[int(np.argmin(np.abs(steps - res.checkpoint.step)))])
    return at, float(sm[-1]), float(sm.max() - sm.min())


def _not_harmful(res, tag: str = EVAL) -> None:
    at, end, rng = _eval_at(res, tag)
    assert at >= end - 0.1 * rng, (res.verdict, res.checkpoint, at, end, rng)


def _env(name: str) -> Path:
    return next((RLKIT / name).iterdir())


def test_rlkit_metadata_comes_from_the_logs_and_the_variant():
    res = _one(_env("halfcheetah-medium-v0"))
    md = res.run.metadata
    assert md.gamma == 0.99 and md.horizon == 1000 and md.warm_start == 40000
    lo, hi = md.reward_range
    assert lo == pytest.approx(-2.33, abs=0.01) and hi == pytest.approx(8.06, abs=0.01)
    assert "trainer/rewards Min" in md.sources["reward_range"] and "per-batch" in md.sources["reward_range"]
    assert md.reward_mean == pytest.approx(3.95, abs=0.05)
    # the underfitting test runs: no request for --reward-range on a run whose logs hold it
    uf = [f for f in res.findings if f.code == "UF001"]
    assert uf and not uf[0].evidence.get("inconclusive")


def test_divergence_of_dataset_q_is_its_own_verdict_and_the_pick_precedes_it():
    res = _one(_env("hopper-expert-v0"))
    assert res.verdict == "diverged"
    (dv,) = [f for f in res.findings if f.code == "DV001"]
    assert dv.level == "error" and res.checkpoint.step < dv.evidence["first_step"]
    assert "e10x" in dv.message or "e1" in dv.message  # orders of magnitude written as such, never "12x"
    at, end, rng = _eval_at(res)
    assert at > end + 0.5 * rng  # the last sound checkpoint is far better than the diverged end


def test_divergence_seen_only_in_the_critic_loss_and_temperature():
    run = next(REAL.glob("offlinerl-kit/pickplace-cql/*"))
    res = _one(run)
    assert "q_data" not in res.run.series  # that layout logs no Q
    assert res.verdict == "diverged"
    (dv,) = [f for f in res.findings if f.code == "DV001"]
    assert dv.evidence["signal"] == "critic_loss" and dv.evidence["growth"] > 1e9
    assert "temperature" in dv.evidence["signals"]
    assert "e11x" in dv.message
    assert res.checkpoint is not None and res.checkpoint.step < dv.evidence["first_step"]
    _not_harmful(res, "eval/episode_reward")


def test_the_overshoot_after_a_warm_start_switch_is_not_a_peak():
    """Official CQL on halfcheetah-medium-expert: Q jumps 430 -> 759 in the first interval after
    policy_eval_start and peaks 70k steps later; the old reading picked step 110001 (eval 135 vs 3,019)."""
    res = _one(_env("halfcheetah-medium-expert-v0"))
    assert res.verdict != "overfitting"
    (of,) = [f for f in res.findings if f.code == "OF001"]
    assert of.level == "info" and "overshoot" in of.message and of.evidence["switch_share"] > 0.5
    _not_harmful(res)


def test_a_small_dip_after_the_switch_jump_is_not_overfitting():
    res = _one(_env("walker2d-medium-v0"))
    assert res.verdict != "overfitting"
    assert not [f for f in res.findings if f.code == "OF003"]  # settling after the jump is no "fall"
    _not_harmful(res)


def test_q_far_below_what_the_rewards_allow_is_over_conservatism():
    res = _one(_env("halfcheetah-medium-v0"))
    (cq,) = [f for f in res.findings if f.code == "CQ003"]
    assert cq.evidence["floor"] == pytest.approx(res.run.metadata.reward_mean) and cq.evidence["gap"] > 100
    assert res.verdict == "inconclusive" and res.verdict_reason.startswith("CQ003")
    assert any("lower CQL alpha" in a for a in res.advice)
    assert not [f for f in res.findings if f.code == "OF001" and f.evidence.get("sustained")]
    _not_harmful(res)


def test_a_warm_start_the_config_does_not_name_is_found_from_the_curves(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(_env("halfcheetah-medium-expert-v0"), run)
    variant = json.loads((run / "variant.json").read_text())
    del variant["trainer_kwargs"]["policy_eval_start"]
    (run / "variant.json").write_text(json.dumps(variant))
    res = _one(run)
    assert res.run.metadata.warm_start is None
    (dq,) = [f for f in res.findings if f.code == "DQ004"]
    assert "detected from the curves" in dq.message
    assert 30001 <= dq.evidence["warm_start"] <= 50001
    assert res.verdict != "overfitting"
    _not_harmful(res)


def test_every_real_run_gets_a_pick_that_is_a_step_when_no_checkpoint_file_exists():
    rep = analyze([RLKIT])
    for res in rep.runs:
        assert res.checkpoint is not None and res.checkpoint.path is None
        assert "no checkpoint files" in res.checkpoint.reason
        _not_harmful(res)


def test_the_table_shows_the_folder_that_tells_a_sweep_apart():
    ids = [r.run.id for r in analyze([REAL]).runs]
    short = short_run_ids(ids, 40)
    for env in (
        "hopper-expert-v0",
        "halfcheetah-medium-v0",
        "halfcheetah-medium-expert-v0",
        "walker2d-medium-v0",
    ):
        (rid,) = [i for i in ids if f"/{env}/" in i]
        assert short[rid].startswith(env) or env[:12] in short[rid], short[rid]


# ---------------------------------------------------------------------------------------------- classes on
# hand-made runs (the real sets hold no clean instance of these)


def _raw(tags: dict[str, tuple[list[int], list[float]]], config: dict | None = None) -> RawRun:
    return RawRun(
        id="r",
        path=Path("r"),
        layout="progress_csv",
        tags={k: Series(k, np.array(s), np.array(v, dtype=float)) for k, (s, v) in tags.items()},
        config=dict(config or {}),
    )


def test_pure_td_critic_loss_is_the_td_error_for_algorithms_without_a_cql_term():
    steps = list(range(0, 2000, 100))
    tags = {"trainer/QF1 Loss": (steps, [1.0] * 20), "trainer/Q1 Predictions Mean": (steps, [2.0] * 20)}
    iql = resolve(_raw(tags, {"algorithm": "IQL"}))
    assert iql.metadata.algorithm == "iql"
    assert iql.series["td_error"].kind == "derived" and "no conservative term" in iql.series["td_error"].note
    assert not any("cannot be isolated" in i.message for i in iql.issues)
    cql = resolve(_raw(tags, {"algorithm": "CQL"}))  # a CQL run without its CQL term: still refused
    assert "td_error" not in cql.series and any("cannot be isolated" in i.message for i in cql.issues)


def test_canonical_looking_names_are_read_when_no_profile_maps_them():
    steps = list(range(0, 3000, 100))
    run = resolve(
        _raw(
            {
                "q1_data_mean": (steps, list(np.linspace(0, 5, 30))),
                "bellman_loss": (steps, [0.1] * 30),
                "normalized_score": (steps, [50.0] * 30),
            }
        )
    )
    assert run.series["q_data"].sources == ("q1_data_mean",)
    assert run.series["td_error"].sources == ("bellman_loss",)
    assert run.series["eval_return"].sources == ("normalized_score",)


def _curve_run(q: np.ndarray, **meta) -> object:
    from analyzer.model import Run

    steps = np.arange(len(q)) * 100
    series = {
        "q_data": Series("q_data", steps, q),
        "td_error": Series("td_error", steps, np.full(len(q), 0.01)),
    }
    series.update(meta.pop("extra", {}))
    return Run(
        id="r",
        path=Path("r"),
        framework="offrl",
        series=series,
        metadata=RunMetadata(algorithm="cql", **meta),
    )


def test_negative_rewards_q_converging_down_is_learning_not_a_fall():
    q = -8.0 * (1 - np.exp(-np.arange(120) / 20.0)) + np.random.default_rng(0).normal(0, 0.05, 120)
    unknown = diagnose_run(_curve_run(q, gamma=0.9, horizon=50))
    assert [f for f in unknown.findings if f.code == "OF003"]  # without the rewards it cannot tell
    neg = diagnose_run(_curve_run(q, gamma=0.9, horizon=50, reward_range=(-1.0, 0.0)))
    assert not [f for f in neg.findings if f.code == "OF003"]
    assert neg.verdict == "healthy"


def test_a_run_that_ended_inside_its_warm_start_is_never_healthy():
    q = np.linspace(0, 3, 40) + np.random.default_rng(1).normal(0, 0.02, 40)
    res = diagnose_run(_curve_run(q, gamma=0.9, horizon=50, reward_range=(0.0, 1.0), warm_start=5000))
    assert res.verdict == "inconclusive" and "inside its BC warm start" in res.verdict_reason


def test_an_all_nan_evaluation_column_does_not_block_the_pick():
    from fixtures.synthetic import make_curve

    sr = make_curve("overfitting", seed=3, noise=0.02)
    clean = diagnose_run(sr.run)
    q = sr.run.series["q_data"]
    sr.run.series["eval_return"] = Series("eval_return", q.steps, np.full(len(q), np.nan))
    res = diagnose_run(sr.run)
    assert res.verdict == clean.verdict == "overfitting"
    assert res.checkpoint.step == clean.checkpoint.step
    (nf,) = [f for f in res.findings if f.code == "NF001"]
    assert nf.level == "info" and "not evaluated" in nf.message


def test_a_runs_pattern_that_matches_no_run_is_a_warning_that_says_what_ids_look_like(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "extends: default\nruns:\n  - match: 'd4rl/hopper*'\n    horizon: 100\n  - match: '*'\n    gamma: 0.9\n"
    )
    rep = analyze([RLKIT], rules=rules)
    (w,) = [e for e in rep.errors if "matches no run" in e.message]
    assert w.level == "warning" and "runs[0].match 'd4rl/hopper*'" in w.message
    assert "relative to the folder given on the command line" in w.message
    assert "runs[1]" not in " ".join(e.message for e in rep.errors)


def test_series_logged_against_different_x_axes_are_reported_not_silently_aligned():
    """Eval at environment steps, updates at gradient steps (256x apart) in one run."""
    run = resolve(
        _raw(
            {
                "q_data": (list(range(0, 1000, 100)), [1.0] * 10),
                "eval_return": (list(range(0, 256000, 25600)), [1.0] * 10),
            }
        )
    )
    (w,) = [i for i in run.issues if "different x-axes" in i.message]
    assert "256x apart" in w.message and "eval_return" in w.message and "q_data" in w.message
    same = resolve(
        _raw({"q_data": (list(range(0, 1000, 100)), [1.0] * 10), "eval_return": ([0, 500, 900], [1.0] * 3)})
    )
    assert not [i for i in same.issues if "different x-axes" in i.message]


@pytest.mark.parametrize("layout", ["beside", "checkpoints-tree"])
def test_checkpoints_in_a_sibling_folder_named_after_the_run_are_found(tmp_path, layout):
    from analyzer.ingest.discover import find_checkpoints

    run = tmp_path / "logs" / "cql_s0"
    run.mkdir(parents=True)
    (tmp_path / "logs" / "cql_s1").mkdir()
    side = (
        tmp_path / "logs" / "cql_s0_checkpoints"
        if layout == "beside"
        else tmp_path / "checkpoints" / "cql_s0"
    )
    side.mkdir(parents=True)
    for k in (1000, 2000):
        (side / f"checkpoint_{k}.pt").write_bytes(b"")
    other = tmp_path / "checkpoints" / "cql_s1"  # another run's weights are never borrowed
    other.mkdir(parents=True, exist_ok=True)
    (other / "checkpoint_5.pt").write_bytes(b"")
    assert [c.step for c in find_checkpoints(run)] == [1000, 2000]
    assert all(c.path.parent == side for c in find_checkpoints(run))
    assert [c.step for c in find_checkpoints(tmp_path / "logs" / "cql_s1")] == [
        5
    ]  # its own, found the same way


@pytest.mark.parametrize(
    ("tag", "is_q"),
    [
        ("Data q-values", True),  # CS285 spelled with spaces
        ("train/q1_pred_mean", True),
        ("critic/q_data_avg", True),
        ("Q1 Predictions Mean", True),
        ("trainer/Q Targets Mean", False),  # a target, not dataset Q
        ("OOD q-values", False),
        ("policy_q_mean", False),
        ("train/q_loss", False),
        ("q2", False),  # critic 2: critic 1 is the paper's convention
    ],
)
def test_dataset_q_is_guessed_from_names_that_say_so_and_only_those(tag, is_q):
    steps = list(range(0, 3000, 100))
    run = resolve(_raw({tag: (steps, list(np.linspace(0, 5, 30))), "unrelated": (steps, [0.0] * 30)}))
    assert ("q_data" in run.series and run.series["q_data"].sources == (tag,)) == is_q
    if is_q:
        assert any("by its name" in i.message and i.level == "info" for i in run.issues)
