"""Alias profiles: every fixture folder's TRUTH.json, plus the rules on tiny hand-made runs.

Fixtures carry their own truth: fixtures/formats/* were generated from known curves
(fixtures/formats/make_formats.py), fixtures/real/d3rlpy was written by d3rlpy itself
(scripts/make_d3rlpy_fixture.py) and its TRUTH.json was filled from the files.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analyzer.ingest import discover_runs, load_runs, read_raw_run
from analyzer.ingest.profiles import FRAMEWORKS, detect_framework, find_tag, resolve
from analyzer.model import Checkpoint, RawRun, Run, Series

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RTOL, ATOL = 1e-5, 1e-4  # event files store float32; derived values subtract two float32 numbers


def _truth_cases() -> list[Any]:
    cases = []
    for group in ("formats", "real"):
        # nested folders too: fixtures/real/d3rlpy/actor_critic/ holds more d3rlpy runs
        for truth_path in sorted((FIXTURES / group).glob("**/TRUTH.json")):
            truth = json.loads(truth_path.read_text())
            for entry in truth["runs"]:
                cases.append(
                    pytest.param(
                        truth_path.parent,
                        entry,
                        id=f"{group}/{truth_path.parent.relative_to(FIXTURES / group).as_posix()}:{entry['path']}",
                    )
                )
    return cases


CASES = _truth_cases()


@cache
def _raw_runs(folder: Path) -> dict[Path, RawRun]:
    return {rd.path.resolve(): read_raw_run(rd) for rd in discover_runs(folder)}


def _resolved(folder: Path, entry: dict) -> tuple[RawRun, Run]:
    # `read_alone`: d3rlpy's TensorBoard folder is a run of its own only when given by itself (with
    # its experiment's CSV folder in the scan it joins that run: `also_reads`)
    raws = _raw_runs(folder / entry["path"] if entry.get("read_alone") else folder)
    target = (folder / entry["path"]).resolve()
    assert target in raws, (
        f"discovery did not find run {entry['path']} in {folder} (found {sorted(map(str, raws))})"
    )
    raw = raws[target]
    return raw, resolve(raw)


def test_every_framework_has_a_format_fixture() -> None:
    folders = {p.name for p in (FIXTURES / "formats").iterdir() if (p / "TRUTH.json").is_file()}
    assert set(FRAMEWORKS) <= folders


def test_format_fixtures_stay_small() -> None:
    total = sum(p.stat().st_size for p in (FIXTURES / "formats").rglob("*") if p.is_file())
    assert total < 2_000_000


@pytest.mark.parametrize(("folder", "entry"), CASES)
def test_fixture_truth(folder: Path, entry: dict) -> None:
    raw, run = _resolved(folder, entry)
    assert run.framework == entry["framework"], run.metadata.sources.get("framework")
    assert run.metadata.sources.get("framework")
    assert run.x_unit == entry["x_unit"]
    assert set(run.raw) == set(raw.tags)
    assert run.metadata.hyperparameters == raw.config
    for name, spec in entry["metrics"].items():
        s = run.get(name)
        assert s is not None, f"{name} did not resolve; series: {sorted(run.series)}"
        assert s.kind == spec["kind"], (name, s.kind, s.note)
        if spec.get("sources"):
            assert list(s.sources) == spec["sources"], (name, s.sources)
        if s.kind != "logged":
            assert s.note, f"{name}: {s.kind} series must say how/why in its note"
        assert s.x_unit == run.x_unit
        assert np.all(np.diff(s.steps) > 0)
        for step, value in spec.get("values", []):
            hit = np.nonzero(s.steps == step)[0]
            assert hit.size == 1, f"{name}: step {step} missing"
            got = float(s.values[hit[0]])
            assert math.isclose(got, value, rel_tol=RTOL, abs_tol=ATOL), (name, step, got, value)
    for name in entry.get("absent", []):
        assert name not in run.series, f"{name} should be absent, got {run.series[name].source}"
    for name, text in entry.get("notes_contain", {}).items():
        assert text in run.series[name].note
    for text in entry.get("issues_contain", []):
        assert any(text in i.message for i in run.issues), [i.message for i in run.issues]
    md = run.metadata
    for key, expected in entry.get("metadata", {}).items():
        if key == "capacity":
            for ck, cv in expected.items():
                got = getattr(md.capacity, ck)
                assert (list(got) if isinstance(got, tuple) else got) == cv, (ck, got)
        elif key == "reward_range":
            assert md.reward_range is not None and list(md.reward_range) == expected
        elif isinstance(expected, float):
            assert math.isclose(getattr(md, key), expected), (key, getattr(md, key))
        else:
            assert getattr(md, key) == expected, (key, getattr(md, key), md.sources.get(key))
        assert md.sources.get(key), f"metadata {key} has no recorded source"
    if "checkpoints" in entry:
        assert [c.step for c in run.checkpoints] == entry["checkpoints"]
    for other in entry.get("also_reads", []):  # one experiment written by two loggers: one run
        other_dir = (folder / other).resolve()
        assert any(Path(f).resolve().is_relative_to(other_dir) for f in raw.files), (other, raw.files)
        assert other_dir not in _raw_runs(folder), f"{other} is still a run of its own"


# --------------------------------------------------------------------------------------------------
# Unit tests on hand-made RawRuns
# --------------------------------------------------------------------------------------------------


def _s(name: str, steps: list[int], values: list[float]) -> Series:
    return Series(name=name, steps=np.array(steps), values=np.array(values, dtype=float), sources=(name,))


def _raw(
    tags: dict[str, tuple[list[int], list[float]]], config: dict | None = None, layout: str = "wide_csv"
) -> RawRun:
    return RawRun(
        id="r",
        path=Path("/logs/r"),
        layout=layout,
        tags={k: _s(k, *v) for k, v in tags.items()},
        config=dict(config or {}),
    )


RLKIT_TAGS = {
    "trainer/QF1 Loss": ([0, 10, 20, 30], [5.0, 4.0, 3.5, 3.0]),
    "trainer/min QF1 Loss": ([10, 20, 30, 40], [3.0, 3.0, 2.5, 2.0]),
    "trainer/Q1 Predictions Mean": ([0, 10, 20, 30], [1.0, 2.0, 3.0, 4.0]),
    "trainer/Policy Loss": ([0, 10, 20, 30], [0.0, 0.0, 0.0, 0.0]),
}


def test_td_derivation_uses_common_steps_only() -> None:
    run = resolve(_raw(RLKIT_TAGS, {"trainer_kwargs.min_q_weight": 2.0}))
    assert run.framework == "rlkit"
    td = run.series["td_error"]
    assert td.kind == "derived" and td.sources == ("trainer/QF1 Loss", "trainer/min QF1 Loss")
    assert td.steps.tolist() == [10, 20, 30]
    assert td.values.tolist() == [1.0, 0.5, 0.5]
    assert "QF1 Loss - trainer/min QF1 Loss" in td.note
    gap = run.series["cql_gap"]
    assert gap.values.tolist() == [1.5, 1.5, 1.25, 1.0]  # min QF1 Loss / min_q_weight
    assert run.series["alpha"].values.tolist() == [2.0] * 4


def test_rlkit_lagrange_alpha_and_no_gap() -> None:
    tags = dict(RLKIT_TAGS)
    tags["trainer/Alpha_prime"] = ([10, 20, 30, 40], [1.0, 2.0, 4.0, 8.0])
    run = resolve(_raw(tags, {"trainer_kwargs.min_q_weight": 5.0, "trainer_kwargs.with_lagrange": True}))
    assert run.series["alpha"].values.tolist() == [5.0, 10.0, 20.0, 40.0]
    assert "cql_gap" not in run.series  # the Lagrange threshold makes term / weight wrong


def test_missing_cql_term_is_reported_not_guessed() -> None:
    tags = {k: v for k, v in RLKIT_TAGS.items() if k != "trainer/min QF1 Loss"}
    run = resolve(_raw(tags))
    assert "td_error" not in run.series
    assert "critic_loss" in run.series
    assert any("TD error cannot be isolated" in i.message for i in run.issues)


def test_d3rlpy_per_critic_scaling_follows_config() -> None:
    tags = {
        "critic_loss": ([1, 2], [9.0, 12.0]),
        "conservative_loss": ([1, 2], [3.0, 3.0]),
        "temp": ([1, 2], [1.0, 1.0]),
    }
    run3 = resolve(_raw(tags, {"config.params.n_critics": 3}, layout="d3rlpy_csv"))
    assert run3.framework == "d3rlpy"
    assert run3.series["td_error"].values.tolist() == [2.0, 3.0]
    assert "n_critics config config.params.n_critics=3" in run3.series["td_error"].note
    run2 = resolve(_raw(tags, {}, layout="d3rlpy_csv"))
    assert run2.series["td_error"].values.tolist() == [3.0, 4.5]  # default 2 critics
    assert run2.series["critic_loss"].kind == "logged"
    assert run2.series["critic_loss"].values.tolist() == [9.0, 12.0]


def test_proxy_only_when_no_better_source() -> None:
    tags = {
        "critic_loss": ([1, 2], [9.0, 12.0]),
        "conservative_loss": ([1, 2], [3.0, 3.0]),
        "value_scale": ([1, 2], [5.0, 6.0]),
    }
    run = resolve(_raw(tags, layout="d3rlpy_csv"))
    assert run.series["q_data"].kind == "proxy" and run.series["q_data"].sources == ("value_scale",)
    assert run.series["q_policy"].kind == "logged"
    # a user mapping to a real dataset-Q tag replaces the proxy
    tags["my/q_data"] = ([1, 2], [1.0, 1.5])
    run = resolve(_raw(tags, layout="d3rlpy_csv"), {"q_data": "my/q_data"})
    assert run.series["q_data"].kind == "logged" and run.series["q_data"].values.tolist() == [1.0, 1.5]


def test_corl_lagrange_alpha_uses_alpha_prime() -> None:
    tags = {
        "qf1_loss": ([0, 1], [1.0, 1.0]),
        "cql_min_qf1_loss": ([0, 1], [2.0, 2.0]),
        "cql_qf1_diff": ([0, 1], [0.5, 0.5]),
        "alpha_prime": ([0, 1], [0.5, 0.25]),
        "average_qf1": ([0, 1], [3.0, 4.0]),
    }
    on = resolve(_raw(tags, {"cql_alpha": 4.0, "cql_lagrange": True}, layout="wandb_csv"))
    assert on.framework == "corl"
    assert on.series["alpha"].values.tolist() == [2.0, 1.0]
    off = resolve(_raw(tags, {"cql_alpha": 4.0, "cql_lagrange": False}, layout="wandb_csv"))
    assert off.series["alpha"].values.tolist() == [4.0, 4.0]
    assert on.series["td_error"].kind == "logged"  # CORL qf1_loss is pure TD


def test_jaxcql_vs_simplesac_decides_whether_qf1_loss_is_pure_td() -> None:
    common = {"sac/qf1_loss": ([0, 1], [5.0, 4.0]), "sac/cql/cql_min_qf1_loss": ([0, 1], [3.0, 3.0])}
    jax = resolve(_raw({**common, "sac/q1_pred": ([0, 1], [1.0, 1.0])}))
    assert jax.framework == "jaxcql"
    assert jax.series["td_error"].kind == "derived" and jax.series["td_error"].values.tolist() == [2.0, 1.0]
    simple = resolve(
        _raw(
            {**common, "sac/average_qf1": ([0, 1], [1.0, 1.0]), "sac/cql/cql_qf1_diff": ([0, 1], [0.6, 0.6])}
        )
    )
    assert simple.framework == "simplesac"
    assert simple.series["td_error"].kind == "logged" and simple.series["td_error"].values.tolist() == [
        5.0,
        4.0,
    ]


# --------------------------------------------------------------------------------------------------
# User mappings
# --------------------------------------------------------------------------------------------------

GENERIC_TAGS = {
    "q_data": ([0, 1, 2], [1.0, 2.0, 3.0]),
    "my/q_mean": ([0, 1, 2], [7.0, 8.0, 9.0]),
    "loss/td": ([0, 1, 2], [2.0, 4.0, 6.0]),
    "unrelated": ([0, 1, 2], [0.0, 0.0, 0.0]),
}


def test_generic_fallback_exact_canonical_names_first_then_names_that_say_what_they_are() -> None:
    run = resolve(_raw(GENERIC_TAGS))
    assert run.framework == "generic"
    assert set(run.series) == {"q_data", "td_error"}
    assert run.series["q_data"].sources == ("q_data",)  # the exact name beats the guess `my/q_mean`
    assert run.series["td_error"].sources == ("loss/td",) and "guessed" in run.series["td_error"].note
    assert any(
        "td_error read from 'loss/td' by its name" in i.message and i.level == "info" for i in run.issues
    )
    assert "no profile" in run.metadata.sources["framework"]


def test_mapping_override_exact_tag() -> None:
    run = resolve(_raw(GENERIC_TAGS), {"q_data": "my/q_mean"})
    assert run.series["q_data"].values.tolist() == [7.0, 8.0, 9.0]
    assert run.series["q_data"].sources == ("my/q_mean",) and run.series["q_data"].kind == "logged"
    assert "user mapping" in run.series["q_data"].note


def test_mapping_glob_and_scale() -> None:
    run = resolve(_raw(GENERIC_TAGS), {"q_data": "my/q_*", "td_error": {"tag": "loss/*", "scale": 0.5}})
    assert run.series["q_data"].sources == ("my/q_mean",)
    td = run.series["td_error"]
    assert td.values.tolist() == [1.0, 2.0, 3.0] and td.kind == "derived" and "x 0.5" in td.note


def test_mapping_problems_become_issues() -> None:
    run = resolve(
        _raw(GENERIC_TAGS),
        {
            "q_bogus": "q_data",
            "td_error": "no/such/tag",
            "cql_gap": {"tag": "loss/td", "scale": "big"},
            "alpha": 3,
        },
    )
    msgs = [i.message for i in run.issues]
    assert any("unknown canonical metric 'q_bogus'" in m for m in msgs)
    assert any("'td_error' -> 'no/such/tag': no such tag" in m for m in msgs)
    assert any("scale 'big' is not a number" in m for m in msgs)
    assert any("mapping 'alpha': expected a tag string" in m for m in msgs)
    assert "td_error" not in run.series and "cql_gap" not in run.series


def test_absent_mapping_keeps_profile_series() -> None:
    run = resolve(_raw(RLKIT_TAGS), {"q_data": "nope"})
    assert run.series["q_data"].sources == ("trainer/Q1 Predictions Mean",)
    assert any("no such tag" in i.message for i in run.issues)


def test_forced_framework() -> None:
    tags = {"QF1 Loss": ([0, 1], [1.0, 1.0]), "trainer/QF1 Loss": ([0, 1], [5.0, 5.0])}
    raw = _raw(tags)
    assert detect_framework(raw)[0] == "rlkit"
    plain = _raw({"Q1 Predictions Mean": ([0, 1], [1.0, 2.0])})
    assert resolve(plain).framework == "generic"
    forced = resolve(_raw({"trainer/Q1 Predictions Mean": ([0, 1], [1.0, 2.0])}), {"framework": "rlkit"})
    assert forced.framework == "rlkit" and forced.metadata.sources["framework"].startswith("forced")
    bad = resolve(plain, {"framework": "nonsense"})
    assert bad.framework == "generic"
    assert any("'nonsense' is not a known profile" in i.message for i in bad.issues)


def test_mislabelled_rlkit_columns_in_wandb_csv(tmp_path: Path) -> None:
    """A wandb history export of an rlkit run: the layout says wandb, the columns say rlkit."""
    run_dir = tmp_path / "export"
    run_dir.mkdir()
    lines = [
        "_step,_runtime,trainer/QF1 Loss,trainer/min QF1 Loss,trainer/Q1 Predictions Mean,trainer/Policy Loss"
    ]
    for k in range(20):
        lines.append(f"{k * 1000},{k * 2.0},{3.0 + 1.0 / (k + 1)},3.0,{float(k)},-1.0")
    (run_dir / "wandb_export.csv").write_text("\n".join(lines) + "\n")
    runs, errors = load_runs([run_dir])
    assert not errors and len(runs) == 1
    run = runs[0]
    assert run.framework == "rlkit", run.metadata.sources["framework"]
    td = run.series["td_error"]
    assert td.kind == "derived"
    np.testing.assert_allclose(td.values, [1.0 / (k + 1) for k in range(20)], rtol=1e-12)
    assert td.steps[-1] == 19000


def test_odd_config_values_never_raise() -> None:
    cfg = {
        "gamma": "abc",
        "reward_range": "not a range",
        "qf_kwargs.hidden_sizes": "[bad",
        "horizon": -5,
        "seed": "x",
        "ckpt_every": 0,
        "algo": 17,
        "dataset_mc_return": float("nan"),
    }
    run = resolve(_raw({}, cfg))
    md = run.metadata
    assert run.framework == "generic" and run.series == {}
    assert (md.gamma, md.reward_range, md.horizon, md.seed, md.checkpoint_interval, md.algorithm) == (
        None,
    ) * 6
    assert md.dataset_mc_return is None and not md.capacity.is_known()
    assert md.hyperparameters == cfg


def test_metadata_from_alternative_keys_and_checkpoint_spacing() -> None:
    raw = _raw(
        RLKIT_TAGS,
        {"discount": 0.97, "qf_arch": "128-128", "max_path_length": 50, "reward_min": -1, "reward_max": 1},
    )
    raw.checkpoints = [Checkpoint(step=s, path=Path(f"/logs/r/itr_{s}.pkl")) for s in (10, 20, 30)]
    md = resolve(raw).metadata
    assert md.gamma == 0.97 and md.capacity.widths == (128, 128) and md.horizon == 50
    assert md.reward_range == (-1.0, 1.0)
    assert md.checkpoint_interval == 10 and "checkpoint files" in md.sources["checkpoint_interval"]


def test_find_tag_prefers_exact_then_shortest_suffix() -> None:
    tags = ["eval/main/episode_mean", "eval/max_q/episode_mean", "metrics/critic_loss", "critic_loss_x"]
    assert find_tag(tags, ["critic_loss"]) == "metrics/critic_loss"
    assert find_tag(tags, ["eval/main/episode_mean", "episode_mean"]) == "eval/main/episode_mean"
    assert find_tag(tags, ["nothing"]) is None


def test_critic_two_note() -> None:
    tags = dict(RLKIT_TAGS)
    tags["trainer/Q2 Predictions Mean"] = ([0, 10, 20, 30], [1.5, 2.5, 3.5, 4.5])
    run = resolve(_raw(tags))
    assert "critic 2 also logged as 'trainer/Q2 Predictions Mean'" in run.series["q_data"].note


def test_d3rlpy_cql_gap_inverts_the_conservative_term() -> None:
    # conservative_loss = n * alpha * w * (gap - threshold); n=2, alpha=0.5, w=5, threshold=10, gap=[3, 4]
    cfg = {
        "config.params.n_critics": 2,
        "config.params.conservative_weight": 5.0,
        "config.params.alpha_threshold": 10.0,
    }
    tags = {
        "critic_loss": ([1, 2], [-30.0, -20.0]),
        "conservative_loss": ([1, 2], [2 * 0.5 * 5 * (3 - 10), 2 * 0.5 * 5 * (4 - 10)]),
        "alpha": ([1, 2], [0.5, 0.5]),
    }
    run = resolve(_raw(tags, cfg, layout="d3rlpy_csv"))
    np.testing.assert_allclose(run.series["cql_gap"].values, [3.0, 4.0])
    assert "alpha_threshold=10" in run.series["cql_gap"].note
    del cfg["config.params.conservative_weight"]  # unknown weight: no guess
    assert "cql_gap" not in resolve(_raw(tags, cfg, layout="d3rlpy_csv")).series


def test_d3rlpy_non_conservative_algorithms() -> None:
    td3bc = {"critic_loss": ([1, 2], [4.0, 2.0]), "actor_loss": ([1, 2], [0.0, 0.0])}
    run = resolve(_raw(td3bc, {"config.type": "td3_plus_bc"}, layout="d3rlpy_csv"))
    assert run.framework == "d3rlpy" and run.metadata.algorithm == "td3bc"
    assert run.series["td_error"].values.tolist() == [2.0, 1.0]
    assert not any("cannot be isolated" in i.message for i in run.issues)
    unknown = resolve(_raw(td3bc, {}, layout="d3rlpy_csv"))  # no params.json: cannot tell CQL from TD3+BC
    assert "td_error" not in unknown.series
    assert any("TD error cannot be isolated" in i.message for i in unknown.issues)
    iql = {"critic_loss": ([1], [9.0]), "q_loss": ([1], [6.0]), "v_loss": ([1], [3.0])}
    assert resolve(_raw(iql, {"config.type": "iql"}, layout="d3rlpy_csv")).series[
        "td_error"
    ].values.tolist() == [3.0]


def test_corl_td3bc_export_is_not_taken_for_another_framework() -> None:
    tags = {
        "critic_loss": ([0, 1], [4.0, 3.0]),
        "actor_loss": ([0, 1], [-1.0, -1.0]),
        "eval_score": ([0], [50.0]),
    }
    cfg = {"project": "CORL", "group": "TD3_BC-D4RL", "checkpoints_path": None, "discount": 0.99}
    run = resolve(_raw(tags, cfg, layout="wandb_csv"))
    assert run.framework == "corl", run.metadata.sources["framework"]
    assert run.series["td_error"].values.tolist() == [2.0, 1.5]
    assert run.metadata.algorithm == "td3bc"


def test_mappings_of_the_wrong_shape_are_an_issue() -> None:
    run = resolve(_raw(GENERIC_TAGS), ["q_data", "my/q_mean"])  # type: ignore[arg-type]
    assert run.series["q_data"].sources == ("q_data",)
    assert any("mappings must be a mapping" in i.message for i in run.issues)


def test_corl_rebrac_dataset_q_is_logged() -> None:
    tags = {
        "ReBRAC/critic_loss": ([1, 2], [3.0, 2.0]),
        "ReBRAC/q_min": ([1, 2], [10.0, 11.0]),
        "ReBRAC/actor_loss": ([1, 2], [-10.0, -11.0]),
        "ReBRAC/bc_mse_policy": ([1, 2], [0.2, 0.1]),
        "eval/normalized_score_mean": ([2], [55.0]),
    }
    run = resolve(_raw(tags, layout="wandb_csv"))
    assert run.framework == "corl" and run.metadata.algorithm == "rebrac"
    assert run.series["q_data"].kind == "logged" and run.series["q_data"].sources == ("ReBRAC/q_min",)
    assert run.series["brac_divergence"].kind == "proxy"
    assert run.series["critic_loss"].sources == ("ReBRAC/critic_loss",)
    assert "td_error" not in run.series  # ReBRAC's critic loss is not split; no TD3+BC halving


def test_warm_start_from_trainer_corl_and_rlkit_keys() -> None:
    from analyzer.ingest.profiles import _warm_start

    run = resolve(_raw({"offrl/q_data": ([0, 100, 200], [0.0, 1.0, 2.0])}, {"bc_steps": 4000}))
    assert run.x_unit == "step"
    assert run.metadata.warm_start == 4000 and "bc_steps" in run.metadata.sources["warm_start"]
    # the CQL/rlkit code counts policy_eval_start in gradient steps; its logs are per epoch
    cfg = {"trainer_kwargs.policy_eval_start": 10000, "algorithm_kwargs.num_trains_per_train_loop": 1000}
    assert _warm_start(_raw({}, cfg), "epoch")[0] == 10
    assert _warm_start(_raw({}, {"policy_eval_start": 10000}), "epoch") == (None, "")  # unknown epoch length
    assert _warm_start(_raw({}, {"bc_steps": 0}), "step") == (0, "config:bc_steps")  # "none", said explicitly
    for bad in (-5, "x", None, True):
        assert _warm_start(_raw({}, {"bc_steps": bad}), "step") == (None, "")
