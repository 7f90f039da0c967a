"""A d3rlpy `LoggerAdapter` that diagnoses the run while `fit` trains it, to stop at the dataset-Q peak.

d3rlpy 2.x calls a logger adapter (d3rlpy/logging/logger.py, `LoggerAdapter` protocol) as it trains:
`write_params` once with the algorithm's config, then per logging period (an epoch by default)
`before_write_metric`, `write_metric` for each averaged metric, `after_write_metric`, `watch_model`,
and `save_model(total_step, algo)` every `save_interval` epochs, `close` at the end; the factory's
`create(algo, experiment_name, n_steps_per_epoch)` makes the adapter. This module implements that
protocol by duck typing - d3rlpy is not imported, and not a dependency.

    adapter = OffrlAdapterFactory()                       # or CombineAdapterFactory([FileAdapterFactory(), it])
    for epoch, metrics in cql.fitter(dataset, n_steps=..., logger_adapter=adapter,
                                     evaluators={"value_scale": d3rlpy.metrics.AverageValueEstimationEvaluator()}):
        if adapter.should_stop:                           # overfitting established: the best model is behind us
            break
    print(adapter.verdict.line())                         # keep adapter.verdict.keep_step (a saved model's step)

Metrics are read with the d3rlpy profile (analyzer/profiles/d3rlpy.yaml), config from `write_params`
(gamma, n_critics, the algorithm type). d3rlpy logs no dataset Q of its own: pass the
AverageValueEstimationEvaluator (`value_scale`, Q(s, pi(s)) on dataset states) for a proxy, or log
your own under a mapped name. x-axis: d3rlpy's total step. `raise_on_stop=True` ends `fit` itself by
raising `StopTraining` (catch it), for code that calls `fit` rather than `fitter`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from analyzer.live import LiveMonitor, LiveVerdict

__all__ = ["OffrlAdapterFactory", "OffrlLoggerAdapter", "StopTraining"]


class StopTraining(Exception):
    """Raised by the adapter (with `raise_on_stop`) once the verdict says training should stop."""

    def __init__(self, verdict: LiveVerdict) -> None:
        super().__init__(verdict.line())
        self.verdict = verdict


class OffrlLoggerAdapter:
    """d3rlpy `LoggerAdapter` (duck-typed): every committed metric goes to a LiveMonitor."""

    def __init__(
        self,
        monitor: LiveMonitor,
        *,
        on_verdict: Callable[[LiveVerdict], None] | None = None,
        raise_on_stop: bool = False,
    ) -> None:
        self.monitor = monitor
        self.on_verdict = on_verdict
        self.raise_on_stop = raise_on_stop
        self._pending: dict[str, float] = {}
        self.closed = False

    # ---- the LoggerAdapter protocol ----------------------------------------------------------

    def write_params(self, params: Mapping[str, Any]) -> None:
        self.monitor.set_config(params)

    def before_write_metric(self, epoch: int, step: int) -> None:
        self._pending = {}

    def write_metric(self, epoch: int, step: int, name: str, value: float) -> None:
        self._pending[name] = value

    def after_write_metric(self, epoch: int, step: int) -> None:
        verdict = self.monitor.observe(step, self._pending)
        self._pending = {}
        if self.on_verdict is not None:
            self.on_verdict(verdict)
        if self.raise_on_stop and verdict.should_stop:
            raise StopTraining(verdict)

    def save_model(self, epoch: int, algo: Any) -> None:
        # d3rlpy passes the total step here (`logger.save_model(total_step, self)`); the model itself is
        # saved by the adapters that write files (FileAdapter: model_<step>.d3), not by this one.
        self.monitor.checkpoint(int(epoch))

    def watch_model(self, epoch: int, step: int) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    # ---- results -----------------------------------------------------------------------------

    @property
    def verdict(self) -> LiveVerdict | None:
        return self.monitor.last

    @property
    def should_stop(self) -> bool:
        return self.monitor.should_stop


class OffrlAdapterFactory:
    """d3rlpy `LoggerAdapterFactory` (duck-typed). Keeps the adapter it made (`.adapter`), so the code
    around `fit`/`fitter` can read the verdict; `should_stop` and `verdict` are forwarded."""

    def __init__(
        self,
        *,
        rules: Any = None,
        mappings: Mapping[str, Any] | None = None,
        every: int = 1,
        on_verdict: Callable[[LiveVerdict], None] | None = None,
        raise_on_stop: bool = False,
    ) -> None:
        self.rules = rules
        self.mappings = mappings
        self.every = every
        self.on_verdict = on_verdict
        self.raise_on_stop = raise_on_stop
        self.adapter: OffrlLoggerAdapter | None = None

    def create(self, *args: Any, **kwargs: Any) -> OffrlLoggerAdapter:
        """d3rlpy >= 2.4: `create(algo, experiment_name, n_steps_per_epoch)`; earlier 2.x:
        `create(experiment_name)`. Only the experiment name is used (as the run id)."""
        name = kwargs.get("experiment_name")
        if name is None:
            strings = [a for a in args if isinstance(a, str)]
            name = strings[0] if strings else "d3rlpy"
        monitor = LiveMonitor(
            str(name), framework="d3rlpy", mappings=self.mappings, rules=self.rules, every=self.every
        )
        self.adapter = OffrlLoggerAdapter(
            monitor, on_verdict=self.on_verdict, raise_on_stop=self.raise_on_stop
        )
        return self.adapter

    @property
    def verdict(self) -> LiveVerdict | None:
        return self.adapter.verdict if self.adapter is not None else None

    @property
    def should_stop(self) -> bool:
        return self.adapter is not None and self.adapter.should_stop
