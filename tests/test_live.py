"""Live diagnosis (analyzer/live.py) and the d3rlpy LoggerAdapter (analyzer/integrations/d3rlpy.py).

Curves carry their own truth (fixtures/synthetic.py: the true dataset-Q peak). The d3rlpy adapter is
driven by a fake `fitter` that calls it exactly as d3rlpy 2.8's training loop and D3RLPyLogger do
(d3rlpy/algos/qlearning/base.py `fitter`, d3rlpy/logging/logger.py `commit`): d3rlpy itself is not
installed, and is not needed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from analyzer.diagnose import diagnose_run
from analyzer.integrations.d3rlpy import OffrlAdapterFactory, StopTraining
from analyzer.live import LiveMonitor
from fixtures.synthetic import make_curve

EVERY = 5  # a checkpoint every 5 logged points


def _config(sr: Any) -> dict[str, Any]:
    md = sr.run.metadata
    return {"gamma": md.gamma, "horizon": md.horizon, "reward_range": list(md.reward_range)}


def _true_q_lost(sr: Any, step: int) -> float:
    """True (noiseless) dataset Q given up by keeping `step` instead of the true peak, as a share of the rise.

    Why not the distance to the peak step: on flat tops the true peak is one point of a plateau that is
    level within 1e-4 of the rise for tens of thousands of steps; what matters is the Q kept."""
    q = sr.truth.q_clean
    i = int(np.searchsorted(sr.run.series["q_data"].steps, step))
    return float((q.max() - q[i]) / (q.max() - q[0]))


def _loop(sr: Any, monitor: LiveMonitor, names: tuple[str, ...] = ("q_data", "td_error", "cql_gap")) -> Any:
    """A training loop that logs canonical metrics, saves a checkpoint every EVERY points, stops when told."""
    series = {n: sr.run.series[n] for n in names}
    steps = series[names[0]].steps
    now = None
    for i, step in enumerate(steps):
        now = monitor.observe(int(step), {n: s.values[i] for n, s in series.items()})
        if i % EVERY == EVERY - 1:
            monitor.checkpoint(int(step), f"ckpt_{int(step)}.pt")
        if now.should_stop:
            break
    return now


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loop_stops_after_the_q_peak_and_keeps_a_checkpoint_near_it(seed: int) -> None:
    sr = make_curve("overfitting", seed=seed, noise=0.05, n_points=150, checkpoint_every=None)
    monitor = LiveMonitor(config=_config(sr))
    now = _loop(sr, monitor)
    last = int(sr.run.series["q_data"].steps[-1])
    peak = sr.truth.peak_step
    assert now.verdict == "overfitting" and now.should_stop
    assert peak < now.step < last  # noticed after the peak, and training ended early
    assert now.keep_path == f"ckpt_{now.keep_step}.pt"  # one of the checkpoints the loop saved
    assert _true_q_lost(sr, now.keep_step) <= 0.05  # the kept checkpoint is (nearly) as good as the true peak
    assert [e.kind for e in now.events] == ["overfitting"]  # announced once, when it happened


def test_healthy_run_is_never_stopped_and_ends_as_the_offline_analysis_says() -> None:
    sr = make_curve("healthy", seed=3, noise=0.05, n_points=150)
    monitor = LiveMonitor(config=_config(sr))
    now = _loop(sr, monitor)
    assert not now.should_stop and now.step == int(sr.run.series["q_data"].steps[-1])
    assert now.verdict == "healthy" == diagnose_run(sr.run).verdict


def test_live_verdict_is_the_offline_verdict_of_the_same_logs() -> None:
    sr = make_curve("overfitting", seed=5, noise=0.05, n_points=150)
    monitor = LiveMonitor(config=_config(sr), stop_on=())  # never stop: read the whole run
    names = ("q_data", "td_error", "cql_gap", "critic_loss", "alpha")
    now = _loop(sr, monitor, names)
    offline = diagnose_run(sr.run)
    assert (
        (now.verdict, now.peak_step)
        == (offline.verdict, offline.peak_step)
        == ("overfitting", offline.peak_step)
    )
    assert now.should_stop is False


def test_odd_values_never_raise() -> None:
    monitor = LiveMonitor(framework="generic")
    for k in range(40):
        v = monitor.observe(
            k * 10,
            {
                "q_data": np.float32(k),
                "td_error": float("nan") if k == 7 else 0.1,
                "note": "text",
                "flag": True,
            },
        )
    assert v.verdict in ("inconclusive", "healthy")
    raw = monitor.raw_run()
    assert set(raw.tags) == {"q_data", "td_error"}
    assert np.isnan(raw.tags["td_error"].values[7])  # NaN is kept for NF001 to report
    warned = [i.message for i in raw.issues]
    assert sum("'note'" in m for m in warned) == 1 and sum("'flag'" in m for m in warned) == 1
    monitor.observe(390, {"q_data": 100.0})  # a step logged again: the later value wins
    assert monitor.raw_run().tags["q_data"].values[-1] == 100.0


def test_every_spaces_the_diagnoses() -> None:
    sr = make_curve("healthy", seed=1, noise=0.05, n_points=40)
    monitor = LiveMonitor(config=_config(sr), every=10)
    calls = []
    real = monitor.diagnose
    monitor.diagnose = lambda: calls.append(1) or real()  # type: ignore[method-assign]
    q = sr.run.series["q_data"]
    for i, step in enumerate(q.steps):
        now = monitor.observe(int(step), {"q_data": q.values[i]})
        assert now.step == int(step)
    assert len(calls) == 4  # observations 1, 11, 21, 31


# --------------------------------------------------------------------------------------------------
# d3rlpy: a fake `fitter` that calls the adapter as d3rlpy 2.8 does
# --------------------------------------------------------------------------------------------------

N_STEPS_PER_EPOCH = 1000
N_CRITICS, WEIGHT, THRESHOLD = 2, 5.0, 10.0


class FakeCQL:
    """What the loop needs of an algorithm: its d3rlpy config (as `save_config` serialises it) and `save`."""

    def __init__(self) -> None:
        self.saved: list[str] = []

    def params(self) -> dict[str, Any]:
        return {
            "observation_shape": [3],
            "action_size": 1,
            "config": {
                "type": "cql",
                "params": {
                    "gamma": 0.99,
                    "n_critics": N_CRITICS,
                    "conservative_weight": WEIGHT,
                    "alpha_threshold": THRESHOLD,
                    "batch_size": 256,
                },
            },
        }

    def save(self, fname: str) -> None:
        self.saved.append(fname)


def _losses(sr: Any, i: int) -> dict[str, float]:
    """One epoch's metrics under d3rlpy's names: critic_loss and conservative_loss summed over the critics,
    conservative_loss = n * alpha * w * (gap - threshold) (d3rlpy CQL, continuous)."""
    s = sr.run.series
    alpha = 1.0
    cons = N_CRITICS * alpha * WEIGHT * (float(s["cql_gap"].values[i]) - THRESHOLD)
    return {
        "critic_loss": N_CRITICS * float(s["td_error"].values[i]) + cons,
        "conservative_loss": cons,
        "actor_loss": -float(s["q_data"].values[i]),
        "alpha": alpha,
        "temp": 0.1,
    }


def fake_fitter(
    sr: Any, logger_adapter: Any, algo: FakeCQL, *, new_create: bool = True
) -> Iterator[tuple[int, dict]]:
    """d3rlpy 2.8 `fitter` with LoggingStrategy.EPOCH, save_interval=1, an AverageValueEstimation evaluator."""
    name = "CQL_20260101000000"
    adapter = (
        logger_adapter.create(algo, name, N_STEPS_PER_EPOCH) if new_create else logger_adapter.create(name)
    )
    adapter.write_params(algo.params())  # save_config -> logger.add_params
    buffer: defaultdict[str, list[float]] = defaultdict(list)
    total_step = 0
    for epoch in range(1, len(sr.run.series["q_data"]) + 1):
        for _ in range(4):  # updates inside the epoch; D3RLPyLogger averages them at commit
            for k, v in _losses(sr, epoch - 1).items():
                buffer[k].append(v)
            buffer["time_step"].append(0.01)
        total_step += N_STEPS_PER_EPOCH
        buffer["value_scale"].append(float(sr.run.series["q_data"].values[epoch - 1]))  # evaluator
        # D3RLPyLogger.commit
        adapter.before_write_metric(epoch, total_step)
        metrics = {}
        for k, vals in buffer.items():
            metrics[k] = sum(vals) / len(vals)
            adapter.write_metric(epoch, total_step, k, metrics[k])
        adapter.after_write_metric(epoch, total_step)
        adapter.watch_model(epoch, total_step)
        buffer.clear()
        adapter.save_model(total_step, algo)  # epoch % save_interval == 0
        yield epoch, metrics
    adapter.close()


def test_d3rlpy_fitter_stops_at_the_q_peak() -> None:
    sr = make_curve("overfitting", seed=2, noise=0.05, n_points=150, checkpoint_every=None)
    factory = OffrlAdapterFactory()
    seen = []
    for epoch, _ in fake_fitter(sr, factory, FakeCQL()):
        seen.append(epoch)
        if factory.should_stop:
            break
    v = factory.verdict
    assert v is not None and v.verdict == "overfitting"
    assert sr.truth.peak_step < v.step < 150 * N_STEPS_PER_EPOCH and len(seen) < 150
    assert v.keep_step is not None and _true_q_lost(sr, v.keep_step) <= 0.05
    assert v.keep_step % N_STEPS_PER_EPOCH == 0  # a step save_model was called with
    run = v.result.run
    assert run.framework == "d3rlpy" and run.id == "CQL_20260101000000"
    assert run.series["q_data"].kind == "proxy" and run.series["q_data"].sources == ("value_scale",)
    td = run.series["td_error"]  # (critic_loss - conservative_loss) / n_critics from write_params' config
    np.testing.assert_allclose(td.values, sr.run.series["td_error"].values[: len(td)], rtol=1e-9)
    assert "config.params.n_critics=2" in td.note
    np.testing.assert_allclose(run.series["cql_gap"].values, sr.run.series["cql_gap"].values[: len(td)])
    assert run.metadata.gamma == 0.99 and run.metadata.algorithm == "cql"


def test_d3rlpy_fit_ends_with_stop_training_and_older_create() -> None:
    sr = make_curve("overfitting", seed=0, noise=0.05, n_points=150, checkpoint_every=None)
    heard = []
    factory = OffrlAdapterFactory(raise_on_stop=True, on_verdict=heard.append)
    algo = FakeCQL()
    with pytest.raises(StopTraining) as stop:
        for _ in fake_fitter(sr, factory, algo, new_create=False):  # d3rlpy < 2.4: create(experiment_name)
            pass
    assert stop.value.verdict.verdict == "overfitting" and stop.value.verdict is heard[-1]
    assert not factory.adapter.closed  # fit was interrupted before close
    assert len(heard) < 150 and heard[-1].should_stop and not any(h.should_stop for h in heard[:-1])


def test_d3rlpy_healthy_run_trains_to_the_end() -> None:
    sr = make_curve("healthy", seed=4, noise=0.05, n_points=100, checkpoint_every=None)
    factory = OffrlAdapterFactory()
    epochs = [e for e, _ in fake_fitter(sr, factory, FakeCQL()) if not factory.should_stop]
    assert len(epochs) == 100 and factory.adapter.closed
    assert factory.verdict.verdict != "overfitting"
