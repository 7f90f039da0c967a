"""Verdicts, checkpoint picks (Guideline 3.1), advice, the analyze() API and the JSON contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analyzer.api import analyze, analyze_runs
from analyzer.config import ConfigError, default_config
from analyzer.diagnose import diagnose_run
from analyzer.model import Checkpoint, RunMetadata
from fixtures.synthetic import KINDS, capacity_family, make_curve, overfitting_q

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_verdict_matches_truth(kind, seed):
    sr = make_curve(kind, seed=seed, noise=0.05, n_points=150)
    res = diagnose_run(sr.run)
    assert res.verdict == sr.truth.verdict, res.verdict_reason
    assert res.verdict_reason
    if res.verdict == "inconclusive":
        assert len(res.verdict_reason) > 20  # always with its reason


@pytest.mark.parametrize(
    ("spec", "verdict"),
    [
        (
            dict(kind="overfitting", n_points=1000, log_interval=1, noise=0.1, offset=-1.0, irregular=True),
            "overfitting",
        ),
        (
            dict(kind="healthy", n_points=60, log_interval=5000, noise=0.1, offset=2.0, nan_gap=True),
            "healthy",
        ),
        (dict(kind="underfitting", n_points=1000, log_interval=100, noise=0.2), "underfitting"),
        (dict(kind="overfitting", n_points=60, log_interval=1, noise=0.02, x_unit="epoch"), "overfitting"),
    ],
)
def test_verdicts_across_lengths_intervals_offsets(spec, verdict):
    sr = make_curve(seed=7, **spec)
    assert diagnose_run(sr.run).verdict == verdict


def test_overfitting_pick_is_latest_checkpoint_at_or_before_peak():
    sr = make_curve("overfitting", seed=3, noise=0.02, checkpoint_every=5)
    cfg = default_config()
    cfg.settings.checkpoint.pick = "at-or-before-peak"
    res = diagnose_run(sr.run, cfg)
    assert res.verdict == "overfitting" and res.peak_step is not None
    ck = [c.step for c in sr.run.checkpoints]
    expect = max(s for s in ck if s <= res.peak_step)
    assert res.checkpoint is not None and res.checkpoint.step == expect
    assert res.checkpoint.path is not None and res.checkpoint.path.endswith(f"{expect}.pt")
    assert "Guideline 3.1" in res.checkpoint.reason and "x-axis unit: step" in res.checkpoint.reason
    # the pick is close to the truth: within one checkpoint interval of the true peak
    interval = ck[1] - ck[0]
    assert abs(res.checkpoint.step - sr.truth.peak_step) <= 2 * interval


def _true_q_at(sr, step):
    q = sr.run.series["q_data"]
    return float(sr.truth.q_clean[int(np.searchsorted(q.steps, step))])


def test_default_pick_is_the_neighbour_of_the_peak_with_higher_smoothed_q():
    """Sparse checkpoints (every 10 points) on sharp peaks: the default never leaves the two
    checkpoints around the peak, takes the one the smoothed curve ranks higher, and in total loses
    less true Q than always stepping back to the one before (truth: the noiseless curve)."""
    cfg_before = default_config()
    cfg_before.settings.checkpoint.pick = "at-or-before-peak"
    lost_default = lost_before = 0.0
    moved = 0
    for seed in range(20):
        sr = make_curve(
            "overfitting", seed=seed, noise=0.05, n_points=200, checkpoint_every=10, peak_sharpness=1.0
        )
        res = diagnose_run(sr.run)
        before = diagnose_run(sr.run, cfg_before)
        assert res.verdict == before.verdict == "overfitting" and res.peak_step == before.peak_step
        ck = [c.step for c in sr.run.checkpoints]
        c0 = max(s for s in ck if s <= res.peak_step)
        c1 = min(s for s in ck if s > res.peak_step)
        assert before.checkpoint.step == c0 and res.checkpoint.step in (c0, c1)
        if res.checkpoint.step == c1:
            moved += 1
            assert "higher smoothed Q" in res.checkpoint.reason
        best = max(_true_q_at(sr, s) for s in ck)
        lost_default += best - _true_q_at(sr, res.checkpoint.step)
        lost_before += best - _true_q_at(sr, before.checkpoint.step)
    assert moved >= 3
    assert lost_default < 0.5 * lost_before


def test_next_after_peak_option():
    sr = make_curve("overfitting", seed=3, noise=0.02, checkpoint_every=5)
    cfg = default_config()
    cfg.settings.checkpoint.pick = "next-after-peak"
    res = diagnose_run(sr.run, cfg)
    ck = [c.step for c in sr.run.checkpoints]
    assert res.checkpoint is not None and res.checkpoint.step == min(s for s in ck if s > res.peak_step)
    assert "next-after-peak" in res.checkpoint.reason


def test_pick_from_declared_interval_without_files_and_epoch_unit():
    sr = make_curve(
        "overfitting", seed=5, noise=0.02, n_points=100, log_interval=1, x_unit="epoch", checkpoint_every=None
    )
    run = sr.run
    assert run.checkpoints == []
    # no files, no interval: the pick is still a logged step (what to restore or where to stop), never "-"
    bare = diagnose_run(run)
    assert bare.checkpoint is not None and bare.checkpoint.path is None
    assert bare.checkpoint.step == bare.peak_step and "no checkpoint files" in bare.checkpoint.reason
    run.metadata.checkpoint_interval = 5
    res = diagnose_run(run)
    assert res.verdict == "overfitting"
    assert res.checkpoint is not None and res.checkpoint.path is None
    # default pick: one of the two checkpoints around the peak
    assert res.checkpoint.step % 5 == 0 and res.peak_step - 5 < res.checkpoint.step < res.peak_step + 5
    assert (
        "x-axis unit: epoch" in res.checkpoint.reason
        and "declared checkpoint_interval 5" in res.checkpoint.reason
    )
    assert f"epoch {res.peak_step}" in res.verdict_reason


def test_interval_from_rules_file_runs_override(tmp_path):
    sr = make_curve("healthy", seed=1, checkpoint_every=None, run_id="exp/a")
    p = tmp_path / "r.yaml"
    p.write_text("extends: default\nruns: [{match: 'exp/*', checkpoint_interval: 7000}]\n")
    from analyzer.config import load_config

    res = analyze_runs([sr.run], load_config(p)).runs[0]
    last = int(sr.run.series["q_data"].steps[-1])
    assert res.checkpoint is not None and res.checkpoint.step == (last // 7000) * 7000


def test_underfitting_pick_says_picking_cannot_fix_it_and_advice_has_flags():
    res = diagnose_run(make_curve("underfitting", seed=0).run)
    assert res.verdict == "underfitting"
    assert res.checkpoint is not None and "cannot fix underfitting" in res.checkpoint.reason
    text = " ".join(res.advice)
    for flag in ("--hidden 512 --depth 4", "--encoder resnet", "--dr3 1e-3"):
        assert flag in text


def test_overfitting_advice_has_flags():
    res = diagnose_run(make_curve("overfitting", seed=0).run)
    text = " ".join(res.advice)
    for flag in ("--dropout 0.2", "--vib 1e-3", "--l2 1e-4"):
        assert flag in text


def test_inconclusive_metadata_advice_and_override_resolves_it():
    sr = make_curve("no-metadata", seed=0, run_id="nm/run")
    res = diagnose_run(sr.run)
    assert res.verdict == "inconclusive" and "reward_range" in res.verdict_reason
    assert any("--reward-range" in a for a in res.advice)
    cfg = default_config().with_overrides(gamma=0.99, reward_range=(0.0, 1.0), horizon=30)
    assert diagnose_run(sr.run, cfg).verdict == "healthy"


def test_divergence_is_its_own_verdict_and_nan_is_inconclusive_with_reason():
    r1 = diagnose_run(make_curve("diverging", seed=0).run)
    assert r1.verdict == "diverged" and "diverg" in r1.verdict_reason
    (dv,) = [f for f in r1.findings if f.code == "DV001"]
    # the pick is the last checkpoint before the divergence started
    assert r1.checkpoint is not None and r1.checkpoint.step < dv.evidence["first_step"]
    later = [c.step for c in r1.run.checkpoints if c.step < dv.evidence["first_step"]]
    assert r1.checkpoint.step == max(later)
    r2 = diagnose_run(make_curve("nan", seed=0).run)
    assert r2.verdict == "inconclusive" and "non-finite" in r2.verdict_reason


def test_a_sustained_decline_beats_a_large_td_error_unless_precedence_says_otherwise():
    """Paper 3.2: underfitting is large error 'without exhibiting the overfitting signs'."""
    sr = make_curve("overfitting", seed=1, noise=0.02)
    td = sr.run.series["td_error"]
    td.values = np.full(len(td), 2.0)  # TD x H spans the range
    res = diagnose_run(sr.run)
    assert res.verdict == "overfitting"
    assert "UF001 also fires" in res.verdict_reason and "read with caution" in res.verdict_reason
    assert abs(res.peak_step - sr.truth.peak_step) <= 0.1 * int(td.steps[-1])
    cfg = default_config()
    cfg.settings.verdict.precedence = "underfitting-first"
    res = diagnose_run(sr.run, cfg)
    assert res.verdict == "underfitting" and "read with caution" in res.verdict_reason
    # with no decline, the large TD error is underfitting under either precedence
    flat = make_curve("healthy", seed=1, noise=0.02)
    flat.run.series["td_error"].values = np.full(len(flat.run.series["td_error"]), 2.0)
    assert diagnose_run(flat.run).verdict == "underfitting"


def test_proxy_and_brac_verdicts_name_their_proxy():
    sr = make_curve("brac", seed=1)
    res = diagnose_run(sr.run)
    assert res.verdict == sr.truth.verdict
    if res.verdict != "inconclusive":
        assert "q_target" in res.verdict_reason


def test_capacity_comparison_turns_healthy_into_underfitting():
    fam = capacity_family(underfit=True, seed=1)
    single = [diagnose_run(s.run).verdict for s in fam]
    assert single == ["healthy", "healthy", "healthy"]  # each run alone looks fine
    rep = analyze_runs([s.run for s in fam])
    got = {r.run.id: r.verdict for r in rep.runs}
    assert got == {s.run.id: s.truth.verdict for s in fam}
    uf3 = [f for r in rep.runs for f in r.findings if f.code == "UF003"]
    assert len(uf3) == 2


def test_report_json_is_strict_and_frame_has_raw_and_smoothed():
    runs = [make_curve(k, seed=0).run for k in ("overfitting", "nan", "no-metadata", "brac")]
    rep = analyze_runs(runs)
    text = json.dumps(rep.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["schema_version"] == 1 and len(back["runs"]) == 4
    assert back["runs"][0]["peak_step"] == rep.runs[0].peak_step
    df = rep.runs[0].frame()
    assert list(df.columns) == ["step", "metric", "raw", "smoothed"]
    q = df[df.metric == "q_data"]
    assert len(q) == len(runs[0].series["q_data"]) and q.smoothed.notna().all()
    assert set(rep.frame().run) == {r.id for r in runs}


def test_analyze_reads_logs_from_disk_and_reports_bad_paths(tmp_path):
    fixture = ROOT / "fixtures" / "formats" / "brac"
    if not fixture.exists():
        pytest.skip("format fixtures not present")
    rep = analyze([fixture, tmp_path / "missing"])
    assert rep.runs and all(
        r.verdict in ("overfitting", "underfitting", "healthy", "inconclusive") for r in rep.runs
    )
    assert any("does not exist" in e.message for e in rep.errors)
    json.dumps(rep.to_dict(), allow_nan=False)


def test_analyze_raises_config_error_for_a_bad_rules_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("params: {OF001: {min_drop_fraction: big}}\n")
    with pytest.raises(ConfigError, match="params.OF001.min_drop_fraction"):
        analyze([tmp_path], p)


def test_empty_and_all_nan_runs_do_not_crash():
    sr = make_curve("healthy", seed=0)
    for s in sr.run.series.values():
        s.values = np.full(len(s), np.nan)
    res = diagnose_run(sr.run)
    assert res.verdict == "inconclusive"
    sr.run.series = {}
    sr.run.checkpoints = [Checkpoint(10, Path("x.pt"))]
    sr.run.metadata = RunMetadata()
    res = diagnose_run(sr.run)
    assert res.verdict == "inconclusive" and res.checkpoint is not None and res.checkpoint.step == 10


def test_per_run_mappings_and_metadata_from_rules_file(tmp_path):
    fixture = ROOT / "fixtures" / "formats" / "offrl"
    if not fixture.exists():
        pytest.skip("format fixtures not present")
    p = tmp_path / "r.yaml"
    p.write_text(
        "extends: default\nruns:\n  - match: 'runs/*'\n    mappings: {q_data: offrl/q_policy}\n    horizon: 17\n"
    )
    calls = []
    rep = analyze([fixture], p, progress=lambda stage, done, total, _id: calls.append((stage, done, total)))
    run = rep.runs[0].run
    assert run.id.startswith("runs/")
    assert run.series["q_data"].sources == ("offrl/q_policy",)
    uf = [f for f in rep.runs[0].findings if f.code == "UF001" and not f.evidence.get("inconclusive")]
    assert not uf or "horizon 17" in uf[0].evidence["H_source"]
    assert calls and calls[-1] == ("diagnose", len(rep.runs), len(rep.runs))


@pytest.mark.parametrize(
    ("series", "verdict", "fragment"),
    [
        ({"q_data": [], "td_error": []}, "inconclusive", "no dataset-Q metric"),
        ({"q_data": [1.0], "td_error": [0.1]}, "inconclusive", "1 finite points"),
        ({"q_data": [2.0] * 100, "td_error": [0.01] * 100}, "healthy", "held"),  # no float-noise 'peak'
        ({"q_data": [np.inf] * 30, "td_error": [1.0] * 30}, "inconclusive", "non-finite at step 0"),
        (
            {"q_data": list(np.linspace(0, 1e300, 100)), "td_error": [1e300] * 100},
            "diverged",
            "critic diverged",
        ),
        (
            {"q_data": list(-np.linspace(0, 50, 100)), "td_error": [0.01] * 100},
            "inconclusive",
            "feasible minimum",
        ),
    ],
)
def test_degenerate_curves_get_a_verdict_with_a_reason(series, verdict, fragment):
    from analyzer.model import Run, Series

    run = Run(
        id="edge",
        path=Path("edge"),
        framework="generic",
        metadata=RunMetadata(gamma=0.99, reward_range=(0.0, 1.0), horizon=30),
        series={k: Series(k, np.arange(len(v)), np.asarray(v, float)) for k, v in series.items()},
    )
    with np.errstate(all="raise"):  # no silent float warnings either
        res = diagnose_run(run)
    assert res.verdict == verdict and fragment in res.verdict_reason
    json.dumps(analyze_runs([run]).to_dict(), allow_nan=False)


@pytest.mark.parametrize("sharpness", [0.0, 0.5, 1.0])
def test_generator_peak_sharpness_keeps_rise_and_truth_is_the_noiseless_argmax(sharpness):
    sr = make_curve("overfitting", seed=4, noise=0.0, n_points=400, peak_sharpness=sharpness)
    q = sr.run.series["q_data"]
    qc, pr = sr.truth.q_clean, sr.truth.params
    i = int(np.argmax(qc))
    assert sr.truth.peak_step == int(q.steps[i])
    assert abs((qc[i] - qc[0]) - pr["rise"]) < 0.02 * pr["rise"]  # the same rise at every sharpness
    t = (q.steps - q.steps[0]) / (q.steps[-1] - q.steps[0])
    np.testing.assert_allclose(
        overfitting_q(t, pr["q0"], pr["amp"], pr["tau_rise"], pr["t_peak"], pr["drop"], pr["tau_fall"]), qc
    )


def test_generator_sharp_peaks_climb_into_the_turn_flat_ones_level_off():
    def approach(sharpness):
        sr = make_curve("overfitting", seed=2, noise=0.0, n_points=400, peak_sharpness=sharpness)
        qc = sr.truth.q_clean
        i = int(np.argmax(qc))
        return (qc[i] - qc[i - 40]) / sr.truth.params[
            "rise"
        ]  # share of the rise won in the last 10% before the peak

    assert approach(0.0) < 0.01 and approach(1.0) > 0.15
    with pytest.raises(ValueError, match="peak_sharpness"):
        make_curve("overfitting", peak_sharpness=1.5)


def test_generator_rounded_top_moves_the_true_peak_before_the_turn_and_is_still_overfitting():
    kink = make_curve("overfitting", seed=3, noise=0.0, n_points=400, peak_sharpness=0.5)
    round_ = make_curve("overfitting", seed=3, noise=0.0, n_points=400, peak_sharpness=0.5, peak_round=0.05)
    assert round_.truth.peak_step < kink.truth.peak_step  # truth = the noiseless argmax, not t_peak
    q = round_.run.series["q_data"]
    assert round_.truth.peak_step == int(q.steps[int(np.argmax(round_.truth.q_clean))])
    noisy = make_curve("overfitting", seed=3, noise=0.05, n_points=400, peak_sharpness=0.5, peak_round=0.05)
    res = diagnose_run(noisy.run)
    assert res.verdict == "overfitting"
    assert abs(res.peak_step - noisy.truth.peak_step) <= 0.1 * (q.steps[-1] - q.steps[0])
    with pytest.raises(ValueError, match="peak_round"):
        make_curve("overfitting", peak_round=-0.1)


def test_default_peak_is_not_late_on_rounded_tops_where_the_hinge_is():
    """Why the default is the smoothed maximum: on rounded tops the previous default (latest point
    within 1 sigma + hinge) sits after the true maximum; truth is the noiseless argmax."""
    old = default_config()
    old.settings.analysis.peak_tolerance, old.settings.analysis.peak_refine = 1.0, "hinge"
    err_new, err_old = [], []
    for seed in range(10):
        sr = make_curve(
            "overfitting", seed=100 + seed, noise=0.05, n_points=200, peak_sharpness=0.5, peak_round=0.05
        )
        steps = sr.run.series["q_data"].steps
        i_true = int(np.searchsorted(steps, sr.truth.peak_step))
        new_res, old_res = diagnose_run(sr.run), diagnose_run(sr.run, old)
        assert new_res.verdict == old_res.verdict == "overfitting"
        err_new.append(int(np.searchsorted(steps, new_res.peak_step)) - i_true)
        err_old.append(int(np.searchsorted(steps, old_res.peak_step)) - i_true)
    assert np.median(err_old) > 2  # late
    assert abs(np.median(err_new)) < np.median(err_old)
    assert np.mean(np.abs(err_new)) < np.mean(np.abs(err_old))


def test_with_a_checkpoint_at_every_point_the_default_pick_is_the_peak_itself():
    for seed in range(4):
        sr = make_curve(
            "overfitting", seed=seed, noise=0.1, n_points=120, log_interval=10, checkpoint_every=1
        )
        res = diagnose_run(sr.run)
        assert res.verdict == "overfitting" and res.checkpoint.step == res.peak_step


def test_broken_run_picks_the_last_checkpoint_strictly_before_the_first_nan():
    syn = make_curve("nan", seed=3, checkpoint_every=5)
    res = diagnose_run(syn.run, default_config())
    nf = [f for f in res.findings if f.code == "NF001" and f.level == "error"]
    assert res.verdict == "inconclusive" and nf
    first_bad = int(nf[0].evidence["first_bad_step"])
    before = [c.step for c in syn.run.checkpoints if c.step < first_bad]
    assert res.checkpoint is not None
    assert res.checkpoint.step == max(before)
    assert "training broke" in res.checkpoint.reason


def test_dataset_q_that_only_falls_is_not_healthy():
    from analyzer.model import Series

    syn = make_curve("healthy", seed=4)
    q = syn.run.series["q_data"]
    rng = np.random.default_rng(0)
    falling = 10.0 * np.exp(-np.arange(len(q)) / (len(q) / 3)) + rng.normal(0, 0.05, len(q))
    syn.run.series["q_data"] = Series("q_data", q.steps, falling, sources=("offrl/q_data",))
    res = diagnose_run(syn.run, default_config())
    assert res.verdict == "inconclusive"
    assert "OF003" in res.verdict_reason and "without rising" in res.verdict_reason

    untouched = diagnose_run(make_curve("healthy", seed=4).run, default_config())
    assert untouched.verdict == "healthy"
    assert not [f for f in untouched.findings if f.code == "OF003"]


def _with_warm_start_dip(seed: int = 2, frac: float = 0.25):
    """An overfitting run whose first `frac` is a BC-warm-start transient: dataset Q dips far below the feasible
    range and TD error is large, then the known overfitting curve follows (truth from the generator)."""
    sr = make_curve("overfitting", seed=seed, noise=0.02)
    q, td = sr.run.series["q_data"], sr.run.series["td_error"]
    n = int(frac * len(q))
    ws = int(q.steps[n - 1])
    q_range = (sr.run.metadata.reward_range[1] - sr.run.metadata.reward_range[0]) * sr.run.metadata.horizon
    q.values[:n] = q.values[n] - 2.0 * q_range * np.sin(np.linspace(0, np.pi, n))
    td.values[:n] = 50.0
    return sr, ws


def test_warm_start_transient_is_skipped_when_the_config_names_it():
    sr, ws = _with_warm_start_dip()
    # the config does not name it: the switch is found where the TD error changes level (50 -> its normal level)
    found = diagnose_run(sr.run)
    assert found.verdict == "overfitting"
    (g,) = [f for f in found.findings if f.code == "DQ004"]
    assert "detected from the curves: td_error changed level" in g.message
    sr.run.metadata.warm_start = ws
    sr.run.metadata.sources["warm_start"] = "config.json:bc_steps"
    res = diagnose_run(sr.run)
    assert res.verdict == "overfitting"
    assert abs(res.peak_step - sr.truth.peak_step) <= 0.1 * int(sr.run.series["q_data"].steps[-1])
    (f,) = [f for f in res.findings if f.code == "DQ004"]
    assert f.evidence["skipped"] and f"after {ws}" in f.message and "bc_steps" in f.message
    assert not [f for f in res.findings if f.code == "DV001"]


def test_warm_start_skip_can_be_turned_off_globally_or_per_run(tmp_path):
    from analyzer.config import load_config

    sr, ws = _with_warm_start_dip()
    sr.run.metadata.warm_start = ws
    cfg = default_config()
    cfg.settings.analysis.skip_warm_start = False
    # read whole, the dip 2 Q ranges below the feasible minimum swamps the peak-decline
    assert diagnose_run(sr.run, cfg).verdict != "overfitting"
    rules = tmp_path / "r.yaml"
    rules.write_text("extends: default\nruns:\n  - match: '*'\n    warm_start: 0\n")
    assert diagnose_run(sr.run, load_config(rules)).verdict != "overfitting"
    # and a rules file can name a warm start the logs do not
    sr.run.metadata.warm_start = None
    rules.write_text(f"extends: default\nruns:\n  - match: '*'\n    warm_start: {ws}\n")
    assert diagnose_run(sr.run, load_config(rules)).verdict == "overfitting"
    rules.write_text("extends: default\nruns:\n  - match: '*'\n    warm_start: -3\n")
    with pytest.raises(ConfigError, match=r"runs\[0\]\.warm_start"):
        load_config(rules)


def test_warm_start_longer_than_the_run_leaves_the_whole_run_read():
    sr = make_curve("overfitting", seed=2, noise=0.02)
    sr.run.metadata.warm_start = int(sr.run.series["q_data"].steps[-10])
    res = diagnose_run(sr.run)
    assert res.verdict == "overfitting"
    (f,) = [f for f in res.findings if f.code == "DQ004"]
    assert f.evidence["skipped"] is False and "whole run" in f.message
