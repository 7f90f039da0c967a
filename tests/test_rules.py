"""Rules on fixtures that carry their own truth, the paper's worked numbers, and the capacity comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analyzer.config import default_config
from analyzer.diagnose import analyze_signals, diagnose_run, run_rules
from analyzer.model import Capacity, Run, RunMetadata, Series
from analyzer.rules import REGISTRY, all_rules, compare_capacity, rule_doc
from analyzer.rules.underfitting import scaled_td_error
from fixtures.synthetic import capacity_family, make_curve


def findings_for(run, cfg=None):
    cfg = cfg or default_config()
    return run_rules(analyze_signals(run, cfg, cfg.run_override(run.id)), cfg)


def codes(fs, include_info=False):
    return {f.code for f in fs if include_info or (f.level != "info" and not f.evidence.get("inconclusive"))}


def make_run(
    series: dict[str, np.ndarray], *, steps=None, meta: RunMetadata | None = None, rid="t/run"
) -> Run:
    n = len(next(iter(series.values())))
    steps = np.arange(1, n + 1) * 1000 if steps is None else steps
    return Run(
        id=rid,
        path=Path(rid),
        framework="offrl",
        metadata=meta or RunMetadata(algorithm="cql", gamma=0.99, reward_range=(0.0, 1.0), horizon=30),
        series={k: Series(k, steps, v) for k, v in series.items()},
    )


# ---------------------------------------------------------------------------------------------- fixtures x rules


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("noise", [0.02, 0.1])
@pytest.mark.parametrize("sharpness", [None, 0.0, 1.0])
def test_overfitting_curves_fire_of001_sustained(seed, noise, sharpness):
    sr = make_curve("overfitting", seed=seed, noise=noise, peak_sharpness=sharpness)
    fs = findings_for(sr.run)
    of = [f for f in fs if f.code == "OF001"]
    assert of and of[0].evidence["sustained"] and of[0].level == "warning"
    ev = of[0].evidence
    assert ev["drop_fraction_of_rise"] >= 0.2 and ev["drop_in_sigmas"] >= 3
    assert "OF001" in codes(fs) and "UF001" not in codes(fs)


@pytest.mark.parametrize("kind", ["healthy", "dip"])
@pytest.mark.parametrize("seed", range(3))
def test_healthy_and_dip_curves_do_not_fire_of001(kind, seed):
    fs = findings_for(make_curve(kind, seed=seed, noise=0.05).run)
    assert "OF001" not in codes(fs)
    uf = [f for f in fs if f.code == "UF001"]
    assert uf and uf[0].evidence["underfitting"] is False and uf[0].level == "info"


@pytest.mark.parametrize("seed", range(3))
def test_underfitting_curves_fire_uf001_and_uf002(seed):
    fs = findings_for(make_curve("underfitting", seed=seed).run)
    assert {"UF001", "UF002"} <= codes(fs)
    uf = next(f for f in fs if f.code == "UF001")
    assert uf.evidence["ratio"] >= 1.0 and uf.evidence["td_reading"] == "rms"


def test_diverging_fires_dv001_error():
    fs = findings_for(make_curve("diverging", seed=1).run)
    dv = [f for f in fs if f.code == "DV001"]
    assert dv and dv[0].level == "error" and dv[0].evidence["mode"] == "range"
    assert dv[0].evidence["extreme"] > dv[0].evidence["q_hi"] + dv[0].evidence["margin"]


def test_divergence_by_growth_without_metadata():
    t = np.linspace(0, 1, 200)
    q = 1 + np.exp(t / 0.08)
    run = make_run({"q_data": q, "td_error": np.ones(200)}, meta=RunMetadata(algorithm="cql"))
    dv = [f for f in findings_for(run) if f.code == "DV001"]
    assert dv and dv[0].evidence["mode"] == "growth" and dv[0].evidence["growth"] >= 10


def test_nan_run_reports_first_bad_step():
    sr = make_curve("nan", seed=4)
    q = sr.run.series["q_data"]
    first = int(q.steps[np.flatnonzero(~np.isfinite(q.values))[0]])
    nf = [f for f in findings_for(sr.run) if f.code == "NF001" and f.evidence["metric"] == "q_data"]
    assert nf and nf[0].level == "error" and nf[0].evidence["first_bad_step"] == first
    assert nf[0].evidence["persistent"] is True


def test_nan_gap_that_recovers_is_a_warning_not_an_error():
    sr = make_curve("healthy", seed=2, nan_gap=True)
    nf = [f for f in findings_for(sr.run) if f.code == "NF001"]
    assert nf and all(f.level == "warning" and not f.evidence["persistent"] for f in nf)


def test_short_run_fires_dq002():
    fs = findings_for(make_curve("short", seed=0).run)
    dq = [f for f in fs if f.code == "DQ002"]
    assert dq and dq[0].evidence["points"] < 20


def test_proxy_and_brac_say_which_proxy():
    fs = findings_for(make_curve("proxy-only", seed=0).run)
    dq = [f for f in fs if f.code == "DQ003"]
    assert dq and dq[0].evidence["metric"] == "q_policy" and "Q(s, pi(s))" in dq[0].message
    fs = findings_for(make_curve("brac", seed=1).run)
    dq = [f for f in fs if f.code == "DQ003"]
    assert dq and dq[0].evidence["metric"] == "q_target"


def test_missing_q_and_td_fire_dq001():
    run = make_run({"critic_loss": np.linspace(3, 1, 50)})
    fs = findings_for(run)
    missing = {f.evidence["missing"] for f in fs if f.code == "DQ001"}
    assert {"q_data", "td_error", "regularizer"} <= missing


def test_missing_metadata_makes_uf001_inconclusive_and_says_how():
    fs = findings_for(make_curve("no-metadata", seed=0).run)
    uf = next(f for f in fs if f.code == "UF001")
    assert uf.evidence["inconclusive"] and uf.level == "info"
    assert uf.evidence["missing"] == ["reward_range", "horizon or gamma"]
    assert "--reward-range" in uf.message and "--horizon" in uf.message and "runs:" in uf.message


def test_only_gamma_known_uses_one_over_one_minus_gamma():
    meta = RunMetadata(algorithm="cql", gamma=0.9, reward_range=(0.0, 1.0))
    run = make_run({"q_data": np.linspace(0, 5, 60), "td_error": np.full(60, 0.01)}, meta=meta)
    uf = next(f for f in findings_for(run) if f.code == "UF001")
    assert uf.evidence["H"] == pytest.approx(10.0) and "horizon unknown" in uf.evidence["H_source"]


# ---------------------------------------------------------------------------------------------- paper's numbers


@pytest.mark.parametrize(("td", "expected"), [(1.0, 30.0), (2.0, 60.0)])
def test_paper_worked_example_mse_reading(td, expected):
    """Section 5: TD error 1.0-2.0 x horizon 30 = 30-60 >= range 30 (0/1 rewards) -> underfitting."""
    assert scaled_td_error(td, 30, "mse") == pytest.approx(expected)
    cfg = default_config()
    cfg.params["UF001"]["td_reading"] = "mse"
    meta = RunMetadata(algorithm="cql", gamma=0.99, reward_range=(0.0, 1.0), horizon=30)  # H = min(30, 100)
    run = make_run({"q_data": np.linspace(0, 8, 100), "td_error": np.full(100, td)}, meta=meta)
    uf = next(f for f in findings_for(run, cfg) if f.code == "UF001")
    assert uf.evidence["H"] == 30 and uf.evidence["q_range"] == 30
    assert uf.evidence["scaled_error"] == pytest.approx(expected)
    assert uf.evidence["underfitting"] is True and uf.level == "warning"
    assert diagnose_run(run, cfg).verdict == "underfitting"


@pytest.mark.parametrize(("td", "under"), [(1.0, True), (2.0, True), (0.9, False), (0.25, False)])
def test_paper_example_rms_reading_agrees_on_unit_reward_range(td, under):
    run = make_run({"q_data": np.linspace(0, 8, 100), "td_error": np.full(100, td)})
    uf = next(f for f in findings_for(run) if f.code == "UF001")
    assert uf.evidence["scaled_error"] == pytest.approx(np.sqrt(td) * 30)
    assert uf.evidence["underfitting"] is under


def test_rms_reading_is_invariant_to_reward_scale_mse_is_not():
    # rewards x 6 (the authors' r -> 6r + 4 remap): TD MSE x 36, Q range x 6
    for reading, same in (("rms", True), ("mse", False)):
        a = scaled_td_error(0.5, 30, reading) / (1 * 30)
        b = scaled_td_error(0.5 * 36, 30, reading) / (6 * 30)
        assert (a == pytest.approx(b)) is same


# ---------------------------------------------------------------------------------------------- theorem A.1 / alpha


def test_q_below_mc_return_and_alpha_too_high():
    meta = RunMetadata(
        algorithm="cql", gamma=0.99, reward_range=(0.0, 1.0), horizon=30, dataset_mc_return=12.0
    )
    q = np.r_[np.linspace(0, 3, 50), np.full(50, 3.0)]
    run = make_run({"q_data": q, "td_error": np.full(100, 0.01), "cql_gap": np.full(100, 0.1)}, meta=meta)
    fs = findings_for(run)
    assert {"OF002", "CQ002"} <= codes(fs)
    of2 = next(f for f in fs if f.code == "OF002")
    assert of2.evidence["gap"] == pytest.approx(9.0, abs=0.2) and "Theorem A.1" in of2.message
    meta.dataset_mc_return = 3.5  # just above: OF002 margin 0.05 x 30 = 1.5 not reached
    assert not {"OF002", "CQ002"} & codes(findings_for(run))


def test_alpha_too_low_policy_gap_and_above_feasible_max():
    n = 100
    run = make_run(
        {"q_data": np.full(n, 32.0), "q_policy": np.full(n, 45.0), "td_error": np.full(n, 0.01)},
    )
    cq = [f for f in findings_for(run) if f.code == "CQ001"]
    assert {f.evidence["mode"] for f in cq} == {"above-max", "policy-gap"}


def test_brac_skips_cql_only_rules():
    meta = RunMetadata(
        algorithm="brac", gamma=0.99, reward_range=(0.0, 1.0), horizon=30, dataset_mc_return=20.0
    )
    run = make_run(
        {"q_target": np.full(60, 2.0), "td_error": np.full(60, 0.01), "brac_divergence": np.full(60, 3.0)},
        meta=meta,
    )
    fs = findings_for(run)
    assert not {"OF002", "CQ001", "CQ002"} & codes(fs)
    uf2 = next(f for f in fs if f.code == "UF002")
    assert uf2.evidence["regularizer"] == "brac_divergence"


def test_regularizer_derived_from_cql_term_over_alpha():
    n = 80
    run = make_run(
        {
            "q_data": np.linspace(0, 5, n),
            "td_error": np.full(n, 0.01),
            "cql_term": np.full(n, 20.0),
            "alpha": np.full(n, 5.0),
        }
    )
    uf2 = [f for f in findings_for(run) if f.code == "UF002"]
    assert (
        uf2
        and uf2[0].evidence["tail_level"] == pytest.approx(4.0)
        and "(derived)" in uf2[0].evidence["source"]
    )


# ---------------------------------------------------------------------------------------------- capacity (Metric 3.2)


def test_capacity_comparison_flags_the_smaller_runs():
    fam = capacity_family(underfit=True, seed=1)
    out = compare_capacity([s.run for s in fam])
    assert set(out) == {"cap/w128", "cap/w256"}
    f = out["cap/w128"][0]
    assert f.evidence["larger_run"]["id"] == "cap/w512" and f.evidence["reduction"] >= 0.3


def test_capacity_comparison_silent_when_capacity_does_not_help():
    fam = capacity_family(underfit=False, seed=1)
    assert compare_capacity([s.run for s in fam]) == {}


def test_capacity_comparison_ignores_overfitting_larger_runs_and_other_setups():
    fam = capacity_family(underfit=True, seed=2)
    runs = [s.run for s in fam]
    assert compare_capacity(runs, overfitting={"cap/w256": True, "cap/w512": True}) == {}
    runs[2].metadata.hyperparameters["lr"] = 1e-3  # a different setup: not comparable
    out = compare_capacity(runs)
    assert set(out) == {"cap/w128"}  # only w128 vs w256 remain comparable
    out = compare_capacity(runs, declared_groups={r.id: "g" for r in runs})  # declared group wins
    assert set(out) == {"cap/w128", "cap/w256"}


def test_capacity_unknown_is_not_compared():
    fam = capacity_family(underfit=True, seed=3)
    for s in fam:
        s.run.metadata.capacity = Capacity()
    assert compare_capacity([s.run for s in fam]) == {}


# ---------------------------------------------------------------------------------------------- registry/config effects


def test_every_rule_has_docs_and_kebab_name():
    infos = all_rules()
    assert len(infos) == len(REGISTRY) >= 12
    for info in infos:
        assert info.name == info.name.lower() and " " not in info.name and "_" not in info.name
        assert info.level in ("error", "warning", "info")
        assert f"# {info.code} `{info.name}`" in rule_doc(info.code)


def test_level_override_and_ignore():
    sr = make_curve("overfitting", seed=0)
    cfg = default_config()
    cfg.levels["OF001"] = "error"
    assert next(f for f in findings_for(sr.run, cfg) if f.code == "OF001").level == "error"
    cfg.ignore = ["OF"]
    assert not {f.code for f in findings_for(sr.run, cfg)} & {"OF001", "OF002"}


def test_a_crashing_rule_becomes_an_inconclusive_finding(monkeypatch):
    spec = REGISTRY["CQ001"]

    def boom(ctx):
        raise RuntimeError("kaputt")

    monkeypatch.setattr(spec, "check", boom)
    fs = findings_for(make_curve("healthy", seed=0).run)
    cq = [f for f in fs if f.code == "CQ001"]
    assert cq and cq[0].evidence["inconclusive"] and "kaputt" in cq[0].message


def test_capacity_grouping_ignores_capacity_and_bookkeeping_keys_of_real_configs():
    fam = capacity_family(underfit=True, seed=4)
    runs = [s.run for s in fam]
    for i, r in enumerate(runs):
        w = r.metadata.capacity.widths[0]
        r.metadata.hyperparameters = {
            "config.params.critic_encoder_factory.params.hidden_units": [w, w],  # d3rlpy
            "config.params.critic_encoder_factory.type": "vector",
            "qf_kwargs.hidden_sizes": [w, w],  # rlkit
            "layer_size": w,
            "seed": i,
            "log_dir": f"/tmp/run{i}",
            "config.params.batch_size": 256,  # the shared setup
        }
    assert set(compare_capacity(runs)) == {"cap/w128", "cap/w256"}
    runs[0].metadata.hyperparameters["config.params.batch_size"] = 64  # now a different setup
    assert set(compare_capacity(runs)) == {"cap/w256"}
