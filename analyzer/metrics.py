"""Canonical metric names: the one vocabulary every log format is translated into.

Why a fixed vocabulary: rules should reason about "the dataset-Q mean" or "the pure TD error",
never about `trainer/Q1 Predictions Mean` or `sac/average_qf1`. Alias profiles map each
implementation's tags onto these names; the reference trainer logs them directly under
`TAG_PREFIX + name` so that the analyzer reads it with no configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Tag prefix the reference trainer uses; `offrl/q_data` is the dataset-Q mean, and so on.
TAG_PREFIX = "offrl/"


@dataclass(frozen=True)
class MetricInfo:
    name: str
    title: str
    description: str


_METRICS = [
    MetricInfo(
        "q_data", "dataset Q", "Mean Q(s, a) over dataset (s, a) pairs, E_D[Q(s,a)] (paper Metric 3.1)."
    ),
    MetricInfo(
        "q_policy",
        "policy-action Q",
        "Mean Q(s, a~pi(s)) over dataset states; a proxy for q_data, not the same.",
    ),
    MetricInfo("q_target", "TD target", "Mean Bellman target r + gamma * Q'(s', a'); a proxy for q_data."),
    MetricInfo(
        "td_error", "TD error", "Bellman mean squared error alone (no CQL/regularizer term), per critic."
    ),
    MetricInfo(
        "cql_gap", "CQL gap (raw)", "E[logsumexp_a Q(s,a)] - E_D[Q(s,a)]: the conservative gap before alpha."
    ),
    MetricInfo("cql_term", "CQL term", "alpha-scaled conservative term added to the critic loss."),
    MetricInfo("alpha", "CQL alpha", "Weight of the conservative term (min_q_weight / alpha_prime)."),
    MetricInfo("temperature", "entropy temperature", "SAC entropy coefficient."),
    MetricInfo("critic_loss", "critic loss", "Total critic loss as logged (may include the CQL term)."),
    MetricInfo("policy_loss", "policy loss", "Actor loss as logged."),
    MetricInfo(
        "brac_divergence", "BRAC divergence", "Divergence estimate between pi and the behaviour policy."
    ),
    MetricInfo(
        "value_penalty",
        "value penalty",
        "Mean per-step term a value-penalty method subtracts from the bootstrapped value, r + gamma (Q' - p) "
        "(BRAC-vp: alpha D(s'), or temp log pi - beta log pi_b with an entropy term); widens the feasible Q range.",
    ),
    MetricInfo("dr3_term", "DR3 term", "Feature dot-product regularizer phi(s,a).phi(s',a') (DR3)."),
    MetricInfo("vib_term", "VIB term", "KL of the variational information bottleneck to N(0, I)."),
    MetricInfo(
        "eval_return", "evaluation return", "Average return of evaluation rollouts (when any were run)."
    ),
    MetricInfo("eval_success", "evaluation success rate", "Success rate of evaluation rollouts in [0, 1]."),
    # checkpoint-selection signals (issue 16): point values on fixed batches at each log step, not window averages.
    # No rule reads them yet; they are here so that any framework that logs them is read under one name.
    MetricInfo(
        "policy_data_distance",
        "policy-data action distance",
        "Mean squared distance of pi's deterministic (mean) action from the dataset action, per action dimension, "
        "on a fixed batch of dataset states.",
    ),
    MetricInfo(
        "policy_data_distance_holdout",
        "held-out policy-data action distance",
        "policy_data_distance on a held-out split of the dataset never trained on.",
    ),
    MetricInfo(
        "td_error_holdout",
        "held-out TD error",
        "Bellman mean squared error, as td_error, on a held-out split of the dataset never trained on.",
    ),
    MetricInfo(
        "q_data_holdout",
        "held-out dataset Q",
        "Mean Q(s, a) over held-out dataset pairs, as q_data, on a split never trained on.",
    ),
    MetricInfo(
        "dr3_dot",
        "DR3 feature dot product",
        "phi(s,a).phi(s',a') of the penultimate critic features on a fixed batch, a' the backup action; measured "
        "whether or not the DR3 remedy is on (dr3_term is the remedy's loss term).",
    ),
    MetricInfo(
        "srank",
        "feature rank",
        "Effective rank of the penultimate critic features on a fixed batch, delta 0.01 (Kumar et al. 2021).",
    ),
    MetricInfo(
        "critic_weight_norm", "critic weight norm", "L2 norm of all parameters of the (first) critic."
    ),
    MetricInfo(
        "soft_opc",
        "SoftOPC",
        "Mean Q(s, a) on transitions of successful trajectories minus mean Q(s, a) on all (Irpan et al. 2019); "
        "only where rewards are success-like.",
    ),
]

METRICS: dict[str, MetricInfo] = {m.name: m for m in _METRICS}
CANONICAL_NAMES: tuple[str, ...] = tuple(METRICS)


def trainer_tag(name: str) -> str:
    """Tag under which the reference trainer logs canonical metric `name`."""
    if name not in METRICS:
        raise KeyError(f"unknown canonical metric {name!r}; known: {', '.join(CANONICAL_NAMES)}")
    return TAG_PREFIX + name
