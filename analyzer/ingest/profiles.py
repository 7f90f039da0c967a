"""Alias profiles: give each implementation's tags their canonical meaning.

Readers produce a `RawRun` (tags exactly as logged); `resolve` turns it into a `Run` whose series
carry canonical names (analyzer/metrics.py). Why one table per implementation: the same word means
different things across codebases ("qf1_loss" is pure TD in CORL but TD + CQL term in JaxCQL;
"alpha" is the SAC temperature in rlkit but the CQL Lagrange weight in d3rlpy), so a tag can only
be read correctly once the framework is known. Source: each project's source code, as
docs/formats.md documents for every row below (with the upstream repository of each).

Every series says how far to trust it: `logged` (read as-is), `derived` (computed from logged tags,
formula in `note`), `proxy` (a nearby quantity standing in, reason in `note`).
"""

from __future__ import annotations

import ast
import fnmatch
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analyzer.config import ConfigError, check_run_metadata
from analyzer.ingest.guess import guess_by_name
from analyzer.metrics import CANONICAL_NAMES, TAG_PREFIX
from analyzer.model import Capacity, IngestIssue, RawRun, Run, RunMetadata, Series

__all__ = ["FRAMEWORKS", "PROFILES", "Profile", "detect_framework", "find_tag", "resolve"]


# --------------------------------------------------------------------------------------------------
# Tag lookup
# --------------------------------------------------------------------------------------------------


def find_tag(tags: Iterable[str], candidates: Iterable[str]) -> str | None:
    """First candidate present in `tags`, exactly or as a '/'-suffix.

    Why suffix matching: readers prefix tags by the sub-directory they came from (BRAC's
    `train/q_loss`, TensorBoard's `metrics/critic_loss`), and the same implementation may be read
    from CSV (no prefix) or event files. Exact names win; among suffix matches the shortest wins.
    """
    tag_list = list(tags)
    tag_set = set(tag_list)
    for cand in candidates:
        if cand in tag_set:
            return cand
        suffix = "/" + cand
        hits = [t for t in tag_list if t.endswith(suffix)]
        if hits:
            return min(hits, key=lambda t: (len(t), t))
    return None


def _has(tags: Iterable[str], name: str) -> bool:
    return find_tag(tags, [name]) is not None


# --------------------------------------------------------------------------------------------------
# Profile definitions
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alias:
    """canonical <- first present tag among `tags`, multiplied by `scale`.

    A scale other than 1 makes the series `derived` (e.g. a loss summed over 2 critics / 2).
    """

    canonical: str
    tags: tuple[str, ...]
    kind: str = "logged"
    note: str = ""
    scale: float = 1.0
    #: config keys holding the number of critics the logged value is summed over (scale = 1/n)
    per_critic_keys: tuple[str, ...] = ()
    default_critics: int | None = None
    unless_tags: tuple[str, ...] = ()  # skip when any of these tags is present (another algorithm)
    requires_tags: tuple[str, ...] = ()  # apply only when one of these tags is present


@dataclass(frozen=True)
class Derivation:
    """canonical <- op(a, b) on steps common to both tags (`b` may be a config constant).

    `op`: "sub" (a - b), "add" (a + b), "div" (a / b), "mul" (a * b), "const" (config constant on
    the steps of `a`). `scale` multiplies the result. `per_critic_keys` as in Alias.
    """

    canonical: str
    op: str
    a: tuple[str, ...]
    b: tuple[str, ...] = ()
    b_config: tuple[str, ...] = ()  # config keys used when `b` is a constant from the config
    note: str = ""
    scale: float = 1.0
    per_critic_keys: tuple[str, ...] = ()
    default_critics: int | None = None
    when_config: tuple[str, Any] | None = None  # only when flattened config key is truthy == value
    unless_config_true: tuple[str, ...] = ()  # skip when any of these config keys is truthy
    unless_tags: tuple[str, ...] = ()  # skip when any of these tags is present (another algorithm)
    requires_tags: tuple[str, ...] = ()  # apply only when one of these tags is present
    #: apply only when this config key's value (lower-cased) is one of these strings
    when_config_in: tuple[str, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class Profile:
    """Everything known about one implementation's logs."""

    name: str
    #: tags whose presence identifies the implementation (each hit scores 2)
    signature_tags: tuple[str, ...]
    #: regexes over the run path / file paths (each hit scores 2)
    path_patterns: tuple[str, ...] = ()
    #: config keys (flattened, suffix-matched) that hint at it (each hit scores 1)
    config_hints: tuple[str, ...] = ()
    #: reader layouts that hint at it (hit scores 2)
    layouts: tuple[str, ...] = ()
    aliases: tuple[Alias, ...] = ()
    derivations: tuple[Derivation, ...] = ()
    #: when `critic_tags` is present but none of `cql_tags` is, the TD error cannot be isolated
    critic_includes_regularizer: bool = False
    critic_tags: tuple[str, ...] = ()
    cql_tags: tuple[str, ...] = ()
    #: why td_error is absent even when everything is logged (e.g. Tianshou)
    td_unavailable: str = ""
    #: algorithm guesses from tags when the config does not say: (tag, algorithm), first hit wins
    algorithm_from_tags: tuple[tuple[str, str], ...] = ()
    default_algorithm: str | None = None
    #: counterpart tags of critic 2: canonical -> tag, noted when critic 1 was chosen
    second_critic: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: regexes over the run path whose group 1 is the seed, when no config says it
    seed_patterns: tuple[str, ...] = ()
    #: formulas too specific for a Derivation row, tried after the derivations
    custom: tuple[Callable[[RawRun], Series | None], ...] = ()


_CRITIC1_NOTE = "critic 1 of the ensemble (paper convention: report QF1)"
#: Rollout scores that `offrl-eval checkpoints` writes next to a run (`<run>_eval/tb/`); discovery
#: attaches them to the run, so the analyzer can show true success beside dataset Q.
_ROBOT_EVAL_TAGS = {"eval_success": ("eval/success_rate",), "eval_return": ("eval/return",)}

_OFFRL = Profile(
    name="offrl",
    signature_tags=tuple(TAG_PREFIX + n for n in ("q_data", "td_error", "cql_gap", "critic_loss", "alpha")),
    config_hints=("algo", "horizon", "reward_range", "ckpt_every", "dataset_mc_return", "encoder", "depth"),
    aliases=tuple(Alias(n, (TAG_PREFIX + n,) + _ROBOT_EVAL_TAGS.get(n, ())) for n in CANONICAL_NAMES),
)

_RLKIT = Profile(
    name="rlkit",
    signature_tags=(
        "trainer/QF1 Loss",
        "trainer/min QF1 Loss",
        "trainer/Q1 Predictions Mean",
        "trainer/Policy Loss",
        "trainer/Num Q Updates",
        "evaluation/Average Returns",
    ),
    path_patterns=(r"--s-\d+", r"_\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}"),
    config_hints=("trainer_kwargs.min_q_weight", "algorithm_kwargs.num_epochs", "qf_kwargs.hidden_sizes"),
    layouts=("progress_csv",),
    aliases=(
        Alias("q_data", ("trainer/Q1 Predictions Mean",), note=_CRITIC1_NOTE),
        Alias("q_target", ("trainer/Q Targets Mean",)),
        Alias(
            "critic_loss", ("trainer/QF1 Loss",), note="QF1 Loss = TD MSE + min QF1 Loss (CQL term); critic 1"
        ),
        Alias("cql_term", ("trainer/min QF1 Loss",), note="alpha-scaled CQL term of critic 1"),
        Alias("temperature", ("trainer/Alpha",), note="rlkit's 'Alpha' is the SAC entropy temperature"),
        Alias("policy_loss", ("trainer/Policy Loss",)),
        Alias(
            "q_policy", ("trainer/QF1 in-distribution values Mean",), note="Q1(s, a~pi(s)) on batch states"
        ),
        Alias("dr3_term", ("trainer/QF1 DR3 Loss",)),
        Alias("vib_term", ("trainer/QF1 Bottleneck Loss",)),
        Alias(
            "eval_return",
            (
                "evaluation/Average Returns",
                "evaluation/Returns Mean",
                "eval/Average Returns",
                "remote_evaluation/Average Returns",
            ),
        ),
    ),
    derivations=(
        Derivation(
            "td_error",
            "sub",
            ("trainer/QF1 Loss",),
            ("trainer/min QF1 Loss",),
            note="pure TD = trainer/QF1 Loss - trainer/min QF1 Loss (rlkit adds the CQL term into QF1 Loss)",
        ),
        Derivation(
            "alpha",
            "mul",
            ("trainer/Alpha_prime",),
            b_config=("trainer_kwargs.min_q_weight",),
            note="effective CQL weight = Alpha_prime (Lagrange) * min_q_weight (config)",
        ),
        Derivation(
            "alpha",
            "const",
            ("trainer/min QF1 Loss",),
            b_config=("trainer_kwargs.min_q_weight",),
            note="constant min_q_weight from the config (no Lagrange tuning logged)",
        ),
        Derivation(
            "cql_gap",
            "div",
            ("trainer/min QF1 Loss",),
            b_config=("trainer_kwargs.min_q_weight",),
            note="raw gap = min QF1 Loss / min_q_weight (valid without Lagrange, temp = 1)",
            unless_config_true=("trainer_kwargs.with_lagrange",),
        ),
    ),
    critic_includes_regularizer=True,
    critic_tags=("trainer/QF1 Loss",),
    cql_tags=("trainer/min QF1 Loss",),
    algorithm_from_tags=(("trainer/min QF1 Loss", "cql"), ("trainer/Conservative Q Value Plus", "brac")),
    second_critic={"q_data": ("trainer/Q2 Predictions Mean",), "critic_loss": ("trainer/QF2 Loss",)},
)

#: young-geng's JaxCQL and CQL (SimpleSAC) share their CQL config: alpha = alpha_prime x cql_min_q_weight
#: with Lagrange tuning, else the constant cql_min_q_weight.
_YOUNG_GENG_ALPHA = (
    Derivation(
        "alpha",
        "mul",
        ("sac/cql/alpha_prime",),
        b_config=("cql.cql_min_q_weight", "cql_min_q_weight"),
        note="effective CQL weight = alpha_prime (Lagrange) * cql_min_q_weight (config)",
        when_config=("cql_lagrange", True),
    ),
    Derivation(
        "alpha",
        "const",
        ("sac/cql/cql_min_qf1_loss",),
        b_config=("cql.cql_min_q_weight", "cql_min_q_weight"),
        note="constant cql_min_q_weight from the config",
    ),
)

_JAXCQL = Profile(
    name="jaxcql",
    signature_tags=("sac/q1_pred", "sac/cql/cql_min_qf1_loss", "average_normalizd_return", "sac/qf1_loss"),
    path_patterns=(r"default_\d{8}", r"-s-\d+--[0-9a-f]{6,}"),
    config_hints=("cql.cql_min_q_weight", "cql.cql_lagrange", "qf_arch", "policy_arch"),
    aliases=(
        Alias("q_data", ("sac/q1_pred", "sac/average_qf1"), note=_CRITIC1_NOTE),
        Alias("q_target", ("sac/target_q_values", "sac/average_target_q")),
        Alias("critic_loss", ("sac/qf1_loss",), note="JaxCQL qf1_loss = TD MSE + cql_min_qf1_loss; critic 1"),
        Alias("cql_term", ("sac/cql/cql_min_qf1_loss",)),
        Alias("cql_gap", ("sac/cql/cql_qf1_diff",)),
        Alias("temperature", ("sac/alpha",)),
        Alias("policy_loss", ("sac/policy_loss",)),
        Alias("eval_return", ("average_return",)),
    ),
    derivations=(
        Derivation(
            "td_error",
            "sub",
            ("sac/qf1_loss",),
            ("sac/cql/cql_min_qf1_loss",),
            note="pure TD = sac/qf1_loss - sac/cql/cql_min_qf1_loss (JaxCQL adds the CQL term into qf1_loss)",
        ),
        *_YOUNG_GENG_ALPHA,
        Derivation(
            "cql_gap",
            "div",
            ("sac/cql/cql_min_qf1_loss",),
            b_config=("cql.cql_min_q_weight", "cql_min_q_weight"),
            note="raw gap = cql_min_qf1_loss / cql_min_q_weight (valid without Lagrange, temp = 1)",
            unless_config_true=("cql.cql_lagrange", "cql_lagrange"),
        ),
    ),
    critic_includes_regularizer=True,
    critic_tags=("sac/qf1_loss",),
    cql_tags=("sac/cql/cql_min_qf1_loss",),
    default_algorithm="cql",
    second_critic={"q_data": ("sac/q2_pred", "sac/average_qf2"), "critic_loss": ("sac/qf2_loss",)},
)

_SIMPLESAC = Profile(
    name="simplesac",
    signature_tags=("sac/average_qf1", "sac/average_target_q", "sac/total_steps", "sac/cql/cql_qf1_diff"),
    config_hints=("cql.cql_min_q_weight", "cql.cql_lagrange", "qf_arch"),
    aliases=(
        Alias("q_data", ("sac/average_qf1",), note=_CRITIC1_NOTE),
        Alias("q_target", ("sac/average_target_q",)),
        Alias(
            "td_error",
            ("sac/qf1_loss",),
            note="young-geng/CQL logs qf1_loss before adding the CQL term: pure TD MSE",
        ),
        Alias("cql_term", ("sac/cql/cql_min_qf1_loss",)),
        Alias("cql_gap", ("sac/cql/cql_qf1_diff",), note="logsumexp - Q_data of critic 1, before alpha"),
        Alias("temperature", ("sac/alpha",)),
        Alias("policy_loss", ("sac/policy_loss",)),
        Alias("eval_return", ("average_return",)),
    ),
    derivations=(
        Derivation(
            "critic_loss",
            "add",
            ("sac/qf1_loss",),
            ("sac/cql/cql_min_qf1_loss",),
            note="critic-1 loss = sac/qf1_loss + sac/cql/cql_min_qf1_loss",
        ),
        *_YOUNG_GENG_ALPHA,
    ),
    default_algorithm="cql",
    second_critic={"q_data": ("sac/average_qf2",), "td_error": ("sac/qf2_loss",)},
)

_CORL = Profile(
    name="corl",
    signature_tags=(
        "cql_min_qf1_loss",
        "cql_qf1_diff",
        "average_qf1",
        "d4rl_normalized_score",
        "ReBRAC/q_min",
        "ReBRAC/critic_loss",
        "eval/normalized_score_mean",
        "value_loss",
        "critic_loss",
        "actor_loss",
    ),
    config_hints=("project", "group", "checkpoints_path", "eval_freq", "buffer_size", "cql_n_actions"),
    # wandb_run: the `.wandb` record log of a W&B run folder (checked on fixtures/real/corl, written by
    # CORL's cql.py through wandb 0.31: flat history keys exactly as in log_dict, config = TrainConfig)
    layouts=("wandb_csv", "wandb_run"),
    aliases=(
        Alias("q_data", ("average_qf1",), note=_CRITIC1_NOTE),
        Alias(
            "q_data", ("ReBRAC/q_min",), note="ReBRAC: mean over the batch of the ensemble-min Q(s, a_data)"
        ),
        Alias("q_target", ("average_target_q",)),
        Alias(
            "td_error", ("qf1_loss",), note="CORL CQL logs qf1_loss before adding the CQL term: pure TD MSE"
        ),
        Alias("cql_term", ("cql_min_qf1_loss",)),
        Alias("cql_gap", ("cql_qf1_diff",), note="logsumexp - Q_data of critic 1, before alpha"),
        Alias("temperature", ("alpha",), note="CORL's 'alpha' is the SAC entropy temperature"),
        Alias("critic_loss", ("ReBRAC/critic_loss", "critic_loss", "q_loss")),
        Alias("policy_loss", ("policy_loss", "ReBRAC/actor_loss", "actor_loss")),
        Alias(
            "brac_divergence",
            ("ReBRAC/bc_mse_policy",),
            kind="proxy",
            note="ReBRAC actor BC penalty: MSE(pi(s), a_data), a divergence surrogate",
        ),
        Alias(
            "eval_return",
            ("d4rl_normalized_score", "eval/normalized_score_mean", "eval_score"),
            note="D4RL-normalised score (x100), not a raw return",
        ),
    ),
    derivations=(
        Derivation(
            "critic_loss",
            "add",
            ("qf1_loss",),
            ("cql_min_qf1_loss",),
            note="critic-1 loss = qf1_loss + cql_min_qf1_loss",
        ),
        Derivation(
            "alpha",
            "mul",
            ("alpha_prime",),
            b_config=("cql_alpha",),
            note="effective CQL weight = alpha_prime (Lagrange) * cql_alpha (config)",
            when_config=("cql_lagrange", True),
        ),
        Derivation(
            "alpha",
            "const",
            ("cql_min_qf1_loss",),
            b_config=("cql_alpha",),
            note="constant cql_alpha from the config",
        ),
        Derivation(
            "td_error",
            "mul",
            ("critic_loss",),
            note="TD3+BC critic_loss sums the MSE of 2 critics: per-critic TD = critic_loss / 2",
            scale=0.5,
            unless_tags=("ReBRAC/critic_loss", "value_loss", "cql_min_qf1_loss", "qf1_loss"),
        ),
    ),
    algorithm_from_tags=(
        ("cql_min_qf1_loss", "cql"),
        ("ReBRAC/q_min", "rebrac"),
        ("value_loss", "iql"),
        ("critic_loss", "td3bc"),
    ),
    second_critic={"q_data": ("average_qf2",), "td_error": ("qf2_loss",)},
)

_D3RLPY_TD_NOTE = (
    "pure TD per critic = (critic_loss - conservative_loss) / n_critics "
    "(d3rlpy sums both over its n_critics Q-functions)"
)


#: d3rlpy algorithms whose `critic_loss` is the TD loss summed over critics, nothing else
#: (params.json `config.type`; read from d3rlpy 2.8.1 algos/qlearning/torch/*_impl.py).
_D3RLPY_PURE_TD_ALGOS = (
    "sac",
    "td3",
    "td3_plus_bc",
    "ddpg",
    "bear",
    "bcq",
    "awac",
    "crr",
    "plas",
    "plas_with_perturbation",
    "prdc",
    "rebrac",
)


#: the same in d3rlpy v1, whose params.json names the algorithm by class (`"algorithm": "TD3PlusBC"`,
#: lower-cased here); v1's IQL logs critic_loss (Q TD, summed over critics) and value_loss apart.
_D3RLPY_V1_PURE_TD_ALGOS = (
    "sac",
    "td3",
    "td3plusbc",
    "ddpg",
    "bear",
    "bcq",
    "awac",
    "crr",
    "plas",
    "plaswithperturbation",
    "iql",
)


def _d3rlpy_cql_gap(raw: RawRun) -> Series | None:
    """Continuous d3rlpy CQL: conservative_loss = sum_critics alpha * w * (gap - threshold).

    So the raw per-critic gap = conservative_loss / (n_critics * alpha * w) + threshold, with
    alpha the logged Lagrange weight and w, threshold, n_critics from params.json. Skipped when
    any of them is unknown (we do not guess d3rlpy defaults that changed across versions).
    """
    cons_tag = find_tag(raw.tags, ["conservative_loss"])
    alpha_tag = find_tag(raw.tags, ["alpha"])
    if cons_tag is None or alpha_tag is None or find_tag(raw.tags, ["td_loss"]) is not None:
        return None
    w_hit = _config_get(raw.config, ["config.params.conservative_weight"])
    t_hit = _config_get(raw.config, ["config.params.alpha_threshold"])
    n_hit = _config_get(raw.config, ["config.params.n_critics"])
    w = _as_float(w_hit[1]) if w_hit else None
    thr = _as_float(t_hit[1]) if t_hit else None
    n = _as_int(n_hit[1]) if n_hit else None
    if not w or thr is None or not n or n <= 0:
        return None
    steps, ratio, wt = _combine(raw.tags[cons_tag], raw.tags[alpha_tag], "div")
    if len(steps) == 0:
        return None
    return Series(
        name="cql_gap",
        steps=steps,
        values=ratio / (n * w) + thr,
        wall_time=wt,
        sources=(cons_tag, alpha_tag, f"config:{w_hit[0]}", f"config:{t_hit[0]}", f"config:{n_hit[0]}"),
        files=raw.tags[cons_tag].files,
        kind="derived",
        note=f"raw gap = conservative_loss / (n_critics={n} * alpha * conservative_weight={w:g}) + alpha_threshold={thr:g}",
    )


_D3RLPY = Profile(
    name="d3rlpy",
    signature_tags=(
        "conservative_loss",
        "critic_loss",
        "actor_loss",
        "temp",
        "temp_loss",
        "td_loss",
        "value_scale",
    ),
    path_patterns=(r"d3rlpy_logs", r"tensorboard_logs[/\\]runs", r"_\d{14}$"),
    config_hints=("observation_shape", "action_size", "config.type", "config.params.n_critics"),
    layouts=("d3rlpy_csv", "d3rlpy_tb"),
    aliases=(
        Alias(
            "critic_loss",
            ("critic_loss",),
            note="d3rlpy critic_loss as logged, summed over n_critics (not per critic): CQL TD MSE + "
            "conservative_loss; IQL q_loss + v_loss; TD3+BC, AWAC, SAC, BEAR ...: TD MSE only",
        ),
        Alias(
            "cql_term",
            ("conservative_loss",),
            note="d3rlpy conservative_loss (alpha-scaled, summed over critics) / n_critics",
            per_critic_keys=("config.params.n_critics", "n_critics"),
            default_critics=2,
            unless_tags=("td_loss",),
        ),
        Alias(
            "critic_loss",
            ("loss",),
            note="DiscreteCQL total loss = td_loss + alpha * conservative_loss",
            requires_tags=("td_loss",),
        ),
        Alias(
            "td_error",
            ("td_loss",),
            note="DiscreteCQL td_loss: d3rlpy's DQN TD loss on the data (Huber, not MSE), no CQL term",
        ),
        Alias(
            "cql_gap",
            ("conservative_loss",),
            note="DiscreteCQL conservative_loss = E[logsumexp_a Q(s,a)] - Q(s,a_data), before alpha",
            requires_tags=("td_loss",),
        ),
        Alias("alpha", ("alpha",), note="d3rlpy CQL 'alpha' is the Lagrange weight of the conservative term"),
        Alias("temperature", ("temp",)),
        Alias("policy_loss", ("actor_loss",)),
        Alias(
            "q_policy",
            ("value_scale", "average_value_estimation", "avg_value", "value_estimation"),
            note="AverageValueEstimationEvaluator: mean Q(s, pi(s)) over dataset states (policy actions)",
        ),
        Alias(
            "q_policy",
            ("init_value", "initial_state_value"),
            kind="proxy",
            note="InitialStateValueEstimationEvaluator: Q(s0, pi(s0)) over initial states only",
        ),
        Alias("eval_return", ("environment", "env_return", "evaluation_return")),
    ),
    derivations=(
        Derivation(
            "td_error",
            "sub",
            ("critic_loss",),
            ("conservative_loss",),
            note=_D3RLPY_TD_NOTE,
            per_critic_keys=("config.params.n_critics", "n_critics"),
            default_critics=2,
        ),
        Derivation(
            "td_error",
            "mul",
            ("q_loss",),
            note="d3rlpy IQL: per-critic TD = q_loss / n_critics (critic_loss also holds the value loss)",
            per_critic_keys=("config.params.n_critics", "n_critics"),
            default_critics=2,
            requires_tags=("v_loss",),
        ),
        Derivation(
            "td_error",
            "mul",
            ("critic_loss",),
            note="d3rlpy actor-critic without a conservative term: per-critic TD = critic_loss / n_critics",
            per_critic_keys=("config.params.n_critics", "n_critics"),
            default_critics=2,
            unless_tags=("conservative_loss", "td_loss", "q_loss"),
            when_config_in=("config.type", _D3RLPY_PURE_TD_ALGOS),
        ),
        Derivation(
            "td_error",
            "mul",
            ("critic_loss",),
            note="d3rlpy v1 algorithm without a conservative term: per-critic TD = critic_loss / n_critics "
            "(v1 logs IQL's value loss apart, as value_loss)",
            per_critic_keys=("n_critics",),
            default_critics=2,
            unless_tags=("conservative_loss", "td_loss", "q_loss"),
            when_config_in=("algorithm", _D3RLPY_V1_PURE_TD_ALGOS),
        ),
        Derivation(
            "cql_term",
            "mul",
            ("conservative_loss",),
            b_config=("config.params.alpha",),
            note="DiscreteCQL cql_term = alpha (config) * conservative_loss",
            requires_tags=("td_loss",),
        ),
        Derivation(
            "alpha",
            "const",
            ("conservative_loss",),
            b_config=("config.params.alpha",),
            note="DiscreteCQL: constant alpha from params.json",
            requires_tags=("td_loss",),
        ),
    ),
    critic_includes_regularizer=True,
    critic_tags=("critic_loss",),
    cql_tags=("conservative_loss",),
    algorithm_from_tags=(("conservative_loss", "cql"), ("td_loss", "dqn")),
    custom=(_d3rlpy_cql_gap,),
)

_BRAC = Profile(
    name="brac",
    signature_tags=(
        "q1_target_mean",
        "div_mean",
        "dsc_mean",
        "p_loss",
        "q_loss",
        "a_loss",
        "r_mean",
        "q_norm",
    ),
    path_patterns=(r"[/\\]n\d+[/\\]", r"[/\\]train$"),
    layouts=("brac",),
    aliases=(
        Alias("q_target", ("q1_target_mean",), note="BRAC: mean TD target of critic 1"),
        Alias(
            "q_data",
            ("q1_target_mean",),
            kind="proxy",
            note="BRAC logs no Q(s, a_data) mean; the TD-target mean r + gamma Q'(s', a') stands in",
        ),
        Alias("critic_loss", ("q_loss",), note="BRAC q_loss = sum over the Q ensemble of TD MSE"),
        Alias("brac_divergence", ("div_mean",)),
        Alias(
            "alpha", ("alpha",), note="BRAC 'alpha' is the divergence-penalty weight (the regulariser weight)"
        ),
        Alias("temperature", ("alpha_entropy",)),
        Alias("policy_loss", ("p_loss",)),
        Alias("eval_return", ("eval/main/episode_mean", "main/episode_mean", "episode_mean")),
    ),
    derivations=(
        Derivation(
            "td_error",
            "mul",
            ("q_loss",),
            note="per-critic TD = q_loss / n_q_fns (BRAC sums the MSE over its ensemble, default 2)",
            per_critic_keys=("n_q_fns", "ensemble_q", "model_params.n_q_fns"),
            default_critics=2,
        ),
    ),
    default_algorithm="brac",
)

#: Tianshou 2.0 TensorboardLogger scopes: update/* at the update (gradient) step, test/* at env_step,
#: info/* at the epoch (what a real run wrote: fixtures/real/tianshou/TRUTH.json).
_TIANSHOU_EVAL_TAGS = ("test/returns_stat/mean", "test/reward", "test/rew")


def _tianshou_critic_parts(raw: RawRun) -> tuple[Series, Series, Series, tuple[str, str, str]] | None:
    tags = [find_tag(raw.tags, [t]) for t in ("critic1_loss", "critic2_loss", "cql_alpha_loss")]
    if any(t is None for t in tags):
        return None
    c1, c2, la = (raw.tags[t] for t in tags)  # type: ignore[index]
    return c1, c2, la, (tags[0], tags[1], tags[2])  # type: ignore[return-value]


def _tianshou_td(raw: RawRun) -> Series | None:
    """Tianshou CQL with Lagrange tuning: mean pure TD of both critics, exactly.

    critic_i_loss = MSE_i + cql_i with cql_i = cql_alpha * (cql_weight * gap_i - threshold), and
    cql_alpha_loss = -(cql_1 + cql_2) / 2 (tianshou/algorithm/imitation/cql.py, 2.0.1), all logged
    from the same update. So (critic1_loss + critic2_loss) / 2 + cql_alpha_loss = (MSE_1 + MSE_2) / 2.
    Without Lagrange tuning no cql_alpha_loss is logged and TD cannot be isolated.
    """
    parts = _tianshou_critic_parts(raw)
    if parts is None:
        return None
    c1, c2, la, tags = parts
    steps, total, wt = _combine(c1, c2, "add")
    half = Series(name="half", steps=steps, values=total / 2.0, wall_time=wt)
    steps, values, wt = _combine(half, la, "add")
    if len(steps) == 0:
        return None
    return Series(
        name="td_error",
        steps=steps,
        values=values,
        wall_time=wt,
        sources=tags,
        files=tuple(dict.fromkeys(c1.files + c2.files + la.files)),
        kind="derived",
        note=f"mean TD MSE of both critics = ({tags[0]} + {tags[1]}) / 2 + {tags[2]} "
        "(Tianshou adds cql_alpha * (cql_weight * gap - threshold) to each critic loss and logs "
        "cql_alpha_loss = minus the mean of those terms)",
    )


def _tianshou_cql_term(raw: RawRun) -> Series | None:
    """-cql_alpha_loss: the alpha-scaled, threshold-shifted CQL term, mean over both critics."""
    tag = find_tag(raw.tags, ["cql_alpha_loss"])
    if tag is None or find_tag(raw.tags, ["critic1_loss"]) is None:
        return None
    src = raw.tags[tag]
    s = _copy_series(
        src,
        "cql_term",
        sources=(tag,),
        kind="derived",
        note=f"-{tag} = cql_alpha * (cql_weight * gap - lagrange_threshold), mean over both critics",
    )
    s.values = -src.values
    return s


def _tianshou_cql_gap(raw: RawRun) -> Series | None:
    """Raw gap T * logsumexp(Q / T) - Q(s, a_data) = (-cql_alpha_loss / cql_alpha + threshold) / cql_weight.

    Needs cql_weight and lagrange_threshold from the config (Tianshou's examples log them only in
    the `args` text summary, which the event reader turns into config keys)."""
    la_tag, ca_tag = find_tag(raw.tags, ["cql_alpha_loss"]), find_tag(raw.tags, ["cql_alpha"])
    w_hit = _config_get(raw.config, ["cql_weight"])
    t_hit = _config_get(raw.config, ["lagrange_threshold"])
    if la_tag is None or ca_tag is None or w_hit is None or t_hit is None:
        return None
    w, thr = _as_float(w_hit[1]), _as_float(t_hit[1])
    if not w or thr is None:
        return None
    steps, ratio, wt = _combine(raw.tags[la_tag], raw.tags[ca_tag], "div")
    if len(steps) == 0:
        return None
    return Series(
        name="cql_gap",
        steps=steps,
        values=(-ratio + thr) / w,
        wall_time=wt,
        sources=(la_tag, ca_tag, f"config:{w_hit[0]}", f"config:{t_hit[0]}"),
        files=raw.tags[la_tag].files,
        kind="derived",
        note=f"raw gap = (-cql_alpha_loss / cql_alpha + lagrange_threshold={thr:g}) / cql_weight={w:g}",
    )


def _tianshou_env_per_update(raw: RawRun, test_steps: np.ndarray) -> tuple[int | None, str]:
    """How many env steps one update step counts on the test/ axis, and how that was found.

    Tianshou's OfflineTrainer advances env_step by batch_size per update and logs test/* at
    env_step, update/* at the update step (a 256x offset at the default batch size). Evidence, in
    order: test/env_step (written at each test, value = env_step) against info/update_step (epoch ->
    update step) at the same epoch; else the config's batch_size when every test step is a multiple
    of it and the test axis runs far past the update axis.
    """
    env_tag, upd_tag = find_tag(raw.tags, ["test/env_step"]), find_tag(raw.tags, ["info/update_step"])
    if env_tag is not None and upd_tag is not None:
        env = np.sort(raw.tags[env_tag].steps)
        env = env[env > 0]
        upd = raw.tags[upd_tag]
        n = min(len(env), len(upd))
        if n:
            u = upd.values[np.argsort(upd.steps)][:n]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = env[:n] / u
            if np.all(np.isfinite(ratios)) and np.all(ratios == ratios[0]) and ratios[0] >= 1:
                b = int(ratios[0])
                if b == ratios[0]:
                    return b, f"{env_tag} / {upd_tag} at the same epoch = {b}"
    hit = _config_get(raw.config, ["batch_size"])
    b = _as_int(hit[1]) if hit is not None else None
    update_tags = [t for t in raw.tags if t.startswith("update/")]
    last_update = max((int(raw.tags[t].steps[-1]) for t in update_tags if len(raw.tags[t])), default=0)
    if (
        b
        and b > 1
        and len(test_steps)
        and np.all(test_steps % b == 0)
        and last_update
        and test_steps[-1] > 2 * last_update
    ):
        return b, f"config {hit[0]}={b} (OfflineTrainer: env_step = update step x batch_size)"
    return None, ""


def _tianshou_eval_return(raw: RawRun) -> Series | None:
    """test/returns_stat/mean moved from Tianshou's env_step axis onto the update-step axis."""
    tag = find_tag(raw.tags, _TIANSHOU_EVAL_TAGS)
    if tag is None:
        return None
    src = raw.tags[tag]
    b, how = _tianshou_env_per_update(raw, src.steps)
    if b is None or b == 1 or np.any(src.steps % b != 0):
        return _copy_series(src, "eval_return", sources=(tag,))
    return Series(
        name="eval_return",
        steps=src.steps // b,
        values=src.values,
        wall_time=src.wall_time,
        sources=(tag,),
        files=src.files,
        kind="logged",
        note=f"logged at env_step; update step = env_step / {b} ({how})",
    )


_TIANSHOU = Profile(
    name="tianshou",
    signature_tags=(
        "update/critic1_loss",
        "update/actor_loss",
        "update/cql_alpha",
        "update/cql_alpha_loss",
        "update/loss/critic1",
        "test/returns_stat/mean",
        "update/update_step",
    ),
    path_patterns=(r"[/\\]cql[/\\]\d+[/\\]",),
    seed_patterns=(r"/[a-z_]+/(\d+)/[^/]+$",),
    aliases=(
        Alias(
            "critic_loss",
            ("update/critic1_loss", "update/loss/critic1", "loss/critic1"),
            note="Tianshou critic1_loss = TD MSE + cql_alpha * (cql_weight * gap - threshold); critic 1",
        ),
        Alias("policy_loss", ("update/actor_loss", "update/loss/actor", "loss/actor")),
        Alias(
            "alpha",
            ("update/cql_alpha",),
            note="Tianshou cql_alpha: Lagrange weight of the CQL term (effective weight = cql_alpha x cql_weight)",
        ),
        Alias("temperature", ("update/alpha",), note="Tianshou 'alpha' is the SAC entropy temperature"),
    ),
    td_unavailable="Tianshou logs critic1_loss = TD MSE + CQL term; without Lagrange tuning (no "
    "update/cql_alpha_loss) the CQL term is not logged: TD error cannot be isolated",
    default_algorithm="cql",
    second_critic={"critic_loss": ("update/critic2_loss", "update/loss/critic2")},
    custom=(_tianshou_td, _tianshou_cql_term, _tianshou_cql_gap, _tianshou_eval_return),
)

_TORCHRL = Profile(
    name="torchrl",
    signature_tags=(
        "loss_qvalue",
        "loss_cql",
        "loss_actor",
        "loss_actor_bc",
        "loss_alpha_prime",
        "evaluation_reward",
    ),
    path_patterns=(r"[/\\]scalars([/\\]|$)", r"CQL-offline_"),
    config_hints=("loss.min_q_weight", "loss.lagrange_thresh", "optim.policy_eval_start"),
    layouts=("torchrl_csv",),
    aliases=(
        Alias(
            "td_error",
            ("loss_qvalue",),
            note="TorchRL CQLLoss loss_qvalue: TD loss (no CQL term) summed over n critics; per-critic = / n",
            per_critic_keys=("loss.num_qvalue_nets", "num_qvalue_nets"),
            default_critics=2,
        ),
        Alias(
            "cql_term",
            ("loss_cql", "cql_loss"),
            note="TorchRL loss_cql: min_q_weight-scaled CQL term (not x alpha'), summed over critics; per-critic = / n",
            per_critic_keys=("loss.num_qvalue_nets", "num_qvalue_nets"),
            default_critics=2,
        ),
        Alias(
            "critic_loss",
            ("q_loss",),
            note="TorchRL cql_offline.py q_loss = loss_qvalue + loss_cql (TD + CQL term, summed over critics)",
        ),
        Alias("temperature", ("alpha",), note="TorchRL CQLLoss 'alpha' is the SAC entropy temperature"),
        Alias("policy_loss", ("loss_actor", "actor_loss")),
        Alias("eval_return", ("evaluation_reward", "eval/reward", "eval_reward")),
    ),
    derivations=(
        Derivation(
            "cql_gap",
            "div",
            ("loss_cql",),
            b_config=("loss.min_q_weight", "min_q_weight"),
            note="raw gap per critic = loss_cql / (n_critics * min_q_weight) (loss_cql is not scaled by alpha')",
            per_critic_keys=("loss.num_qvalue_nets", "num_qvalue_nets"),
            default_critics=2,
        ),
        Derivation(
            "alpha",
            "const",
            ("loss_cql",),
            b_config=("loss.min_q_weight", "min_q_weight"),
            note="CQL weight on the critic = min_q_weight (config); TorchRL's Lagrange alpha' only trains "
            "log_alpha_prime and never scales loss_cql",
        ),
    ),
    default_algorithm="cql",
)

_OFFLINERL_KIT = Profile(
    name="offlinerl-kit",
    signature_tags=("loss/critic1", "loss/actor", "eval/normalized_episode_reward", "cql_alpha", "timestep"),
    path_patterns=(r"seed_\d+&timestamp_", r"policy_training_progress\.csv"),
    layouts=("offlinerl_kit", "offlinerlkit_csv"),
    aliases=(
        Alias(
            "critic_loss",
            ("loss/critic1",),
            note="OfflineRL-Kit loss/critic1 = TD MSE + CQL term (not logged apart); critic 1",
        ),
        Alias("policy_loss", ("loss/actor",)),
        Alias("alpha", ("cql_alpha",), note="Lagrange CQL weight"),
        Alias("temperature", ("alpha",)),
        Alias(
            "eval_return",
            ("eval/normalized_episode_reward", "eval/episode_reward"),
            note="D4RL-normalised episode reward (x100), not a raw return",
        ),
    ),
    td_unavailable="OfflineRL-Kit logs loss/critic1 = TD MSE + CQL term with no separate CQL term: TD error cannot be isolated",
    second_critic={"critic_loss": ("loss/critic2",)},
)

_JAXRL = Profile(
    name="jaxrl",
    signature_tags=(
        "training/critic_loss",
        "training/q1",
        "training/actor_loss",
        "evaluation/average_returns",
    ),
    path_patterns=(r"[/\\]tb[/\\]\d+$",),
    seed_patterns=(r"/tb/(\d+)$",),
    aliases=(
        Alias(
            "q_data",
            ("training/q1",),
            note=_CRITIC1_NOTE + "; jaxrl/IQL q1 = mean Q1(s, a_data) on the batch",
        ),
        Alias("critic_loss", ("training/critic_loss",), note="sum of the TD MSE of both critics"),
        Alias("policy_loss", ("training/actor_loss",)),
        Alias("temperature", ("training/temperature", "training/alpha")),
        Alias("eval_return", ("evaluation/average_returns", "evaluation/return")),
    ),
    derivations=(
        Derivation(
            "td_error",
            "mul",
            ("training/critic_loss",),
            note="per-critic TD = training/critic_loss / 2 (jaxrl/IQL sums the MSE of 2 critics)",
            scale=0.5,
        ),
    ),
    algorithm_from_tags=(("training/value_loss", "iql"), ("training/v", "iql")),
    second_critic={"q_data": ("training/q2",)},
)

_ACME = Profile(
    name="acme",
    signature_tags=("critic_loss", "cql_alpha", "learner_steps", "actor_loss", "alpha_loss"),
    path_patterns=(r"[/\\]logs[/\\]learner", r"[/\\]acme[/\\]"),
    layouts=("acme_csv",),
    aliases=(
        Alias("critic_loss", ("critic_loss",), note="Acme CQL critic_loss = cql_alpha * CQL + TD MSE"),
        Alias("alpha", ("cql_alpha",)),
        Alias("temperature", ("alpha",)),
        Alias("policy_loss", ("actor_loss",)),
    ),
    td_unavailable="Acme logs critic_loss = TD MSE + CQL term with no separate CQL term: TD error cannot be isolated",
    default_algorithm="cql",
)

_CS285 = Profile(
    name="cs285",
    signature_tags=(
        "Exploitation_Data_q-values",
        "Exploitation_OOD_q-values",
        "Exploitation_CQL_Loss",
        "Exploitation_Critic_Loss",
        "Exploitation_Critic_Q_Loss",
        "Data_q-values",
        "OOD_q-values",
        "CQL_Loss",
        "Eval_AverageReturn",
        "Train_EnvstepsSoFar",
    ),
    path_patterns=(r"hw\d+_", r"cs285"),
    aliases=(
        Alias(
            "q_data",
            ("Exploitation_Data_q-values", "Data_q-values"),
            note="CS285 CQLCritic 'Data q-values': mean Q(s, a_data) over the batch",
        ),
        Alias(
            "cql_gap",
            ("Exploitation_CQL_Loss", "CQL_Loss"),
            note="CS285 'CQL Loss' = logsumexp_a Q(s, a) - Q(s, a_data) before alpha (= OOD q-values - Data "
            "q-values, checked on real runs)",
        ),
        Alias(
            "critic_loss",
            ("Exploitation_Critic_Loss", "Critic_Loss", "Exploitation_Critic_Q_Loss", "Training_Loss"),
            note="CS285 critic 'Training Loss': TD loss + cql_alpha x CQL Loss (cql_alpha is not logged)",
        ),
        Alias(
            "td_error",
            ("Exploitation_Critic_Q_Loss", "Critic_Q_Loss"),
            note="CS285 IQL critic Q loss: pure TD regression onto r + gamma V(s')",
        ),
        Alias("policy_loss", ("Actor_Loss",)),
        Alias("eval_return", ("Eval_AverageReturn",)),
    ),
    td_unavailable="CS285 logs Critic_Loss = TD + cql_alpha x CQL_Loss and not cql_alpha: the TD error cannot "
    "be isolated (map td_error to the critic loss in a rules file if the run used alpha = 0)",
    algorithm_from_tags=(
        ("Exploitation_Critic_V_Loss", "iql"),
        ("Exploitation_CQL_Loss", "cql"),
        ("CQL_Loss", "cql"),
    ),
    default_algorithm="cql",
)

_GENERIC = Profile(
    name="generic",
    signature_tags=(),
    aliases=tuple(Alias(n, (n, TAG_PREFIX + n)) for n in CANONICAL_NAMES),
)

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        _OFFRL,
        _RLKIT,
        _JAXCQL,
        _SIMPLESAC,
        _CORL,
        _D3RLPY,
        _BRAC,
        _TIANSHOU,
        _TORCHRL,
        _OFFLINERL_KIT,
        _JAXRL,
        _ACME,
        _CS285,
        _GENERIC,
    )
}
FRAMEWORKS: tuple[str, ...] = tuple(PROFILES)


# --------------------------------------------------------------------------------------------------
# Framework detection
# --------------------------------------------------------------------------------------------------

#: Evidence that separates close relatives (both use `sac/...` tags); applied after scoring.
_JAXCQL_ONLY = ("sac/q1_pred", "average_normalizd_return")
_SIMPLESAC_ONLY = ("sac/total_steps", "sac/cql/cql_qf1_diff")


def _config_has(config: Mapping[str, Any], key: str) -> bool:
    return key in config or any(str(k).endswith("." + key) for k in config)


def _score(profile: Profile, raw: RawRun, path_text: str) -> tuple[int, list[str]]:
    tags = list(raw.tags)
    score = 0
    why: list[str] = []
    # exact tag names score 2, '/'-suffix matches 1: `sac/cql/cql_min_qf1_loss` is JaxCQL's own
    # name, and only looks like CORL's `cql_min_qf1_loss` with a prefix.
    tag_set = set(tags)
    hits = [t for t in profile.signature_tags if _has(tags, t)]
    if hits:
        score += sum(2 if t in tag_set else 1 for t in hits)
        why.append("tags " + ", ".join(hits[:4]) + (" ..." if len(hits) > 4 else ""))
    for pat in profile.path_patterns:
        if re.search(pat, path_text):
            score += 2
            why.append(f"path matches {pat}")
    chits = [k for k in profile.config_hints if _config_has(raw.config, k)]
    if chits:
        score += len(chits)
        why.append("config keys " + ", ".join(chits[:4]))
    if raw.layout in profile.layouts:
        score += 2
        why.append(f"layout {raw.layout}")
    return score, why


def detect_framework(raw: RawRun) -> tuple[str, str]:
    """(profile name, short reason). Highest evidence score wins; `generic` when nothing fits.

    Why scoring instead of first-match: real folders are mislabelled (rlkit columns exported to a
    wandb CSV, d3rlpy logs copied out of d3rlpy_logs/), so no single signal is trusted alone; a
    profile needs at least one matching signature tag, since paths and config keys are weak hints.
    """
    tags = list(raw.tags)
    if any(t.startswith(TAG_PREFIX) for t in tags):
        n = sum(t.startswith(TAG_PREFIX) for t in tags)
        return "offrl", f"{n} tags with the reference-trainer prefix {TAG_PREFIX!r}"
    path_text = "/".join([str(raw.path).replace("\\", "/")] + [str(f) for f in raw.files])
    ranking: list[tuple[int, str, list[str]]] = []
    for name, prof in PROFILES.items():
        if name in ("offrl", "generic"):
            continue
        if not any(_has(tags, t) for t in prof.signature_tags):
            continue
        score, why = _score(prof, raw, path_text)
        ranking.append((score, name, why))
    if not ranking:
        offrl_keys = [
            k for k in ("algo", "reward_range", "ckpt_every", "dataset_mc_return") if k in raw.config
        ]
        if len(offrl_keys) >= 2 and any(t in CANONICAL_NAMES for t in tags):
            return "offrl", "config keys " + ", ".join(offrl_keys) + " of the reference trainer"
        return "generic", "no profile's signature tags found"
    ranking.sort(key=lambda r: (-r[0], FRAMEWORKS.index(r[1])))
    best = ranking[0]
    names = {r[1] for r in ranking}
    # JaxCQL and young-geng/CQL share the `sac/` namespace; decide on their distinguishing tags.
    if {"jaxcql", "simplesac"} <= names and best[1] in ("jaxcql", "simplesac"):
        j = any(_has(tags, t) for t in _JAXCQL_ONLY)
        s = any(_has(tags, t) for t in _SIMPLESAC_ONLY)
        pick = "jaxcql" if j and not s else "simplesac" if s and not j else best[1]
        best = next(r for r in ranking if r[1] == pick)
    reason = f"{best[1]}: " + "; ".join(best[2])
    if len(ranking) > 1 and ranking[1][0] == best[0] and ranking[1][1] != best[1]:
        reason += f" (tie with {ranking[1][1]} at score {best[0]})"
    return best[1], reason


# --------------------------------------------------------------------------------------------------
# Config helpers
# --------------------------------------------------------------------------------------------------


def _config_get(config: Mapping[str, Any], keys: Iterable[str]) -> tuple[str, Any] | None:
    """(key, value) for the first key found exactly or as a '.'-suffix of a flattened key."""
    for key in keys:
        if key in config and config[key] is not None:
            return key, config[key]
        hits = sorted(
            (k for k in config if str(k).endswith("." + key) and config[k] is not None),
            key=lambda k: len(str(k)),
        )
        if hits:
            return hits[0], config[hits[0]]
    return None


def _as_float(value: Any, keep_inf: bool = False) -> float | None:
    """A config value as a float; None when it is not a number (or, unless `keep_inf`, not finite).

    An int too large for a float (a 1000-digit number in a config file) becomes +-inf, never an
    OverflowError; `keep_inf` lets metadata validation report such values instead of ignoring them.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        try:
            f = float(value)
        except OverflowError:
            f = -math.inf if value < 0 else math.inf
    elif isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return f if keep_inf or math.isfinite(f) else None


def _as_int(value: Any) -> int | None:
    f = _as_float(value)
    if f is None or f != int(f):
        return None
    return int(f)


def _as_list(value: Any) -> list[Any] | None:
    """Lists arrive as lists, tuples, JSON/python strings ("[256, 256]") or dashed strings ("256-256")."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\s*[-x,]\s*\d+)+", text):
            return [int(p) for p in re.split(r"\s*[-x,]\s*", text)]
        if text.startswith(("[", "(")):
            for parser in (json.loads, ast.literal_eval):
                try:
                    out = parser(text)
                except (ValueError, SyntaxError, TypeError):
                    continue
                if isinstance(out, (list, tuple)):
                    return list(out)
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


# --------------------------------------------------------------------------------------------------
# Series arithmetic
# --------------------------------------------------------------------------------------------------


def _copy_series(src: Series, name: str, **kw: Any) -> Series:
    """A renamed view of `src`: arrays are shared with `Run.raw`, not copied.

    Why: copying was half of `resolve`'s time on million-point runs (docs/formats.md); nothing
    downstream edits series in place. Scaled series get new arrays from the multiplication.
    """
    return Series(
        name=name,
        steps=src.steps,
        values=src.values,
        wall_time=src.wall_time,
        x_unit=src.x_unit,
        sources=kw.pop("sources", src.sources),
        files=kw.pop("files", src.files),
        **kw,
    )


def _combine(a: Series, b: Series, op: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Apply `op` on the steps both series share (logs may record tags on different steps)."""
    common, ia, ib = np.intersect1d(a.steps, b.steps, assume_unique=True, return_indices=True)
    va, vb = a.values[ia], b.values[ib]
    with np.errstate(divide="ignore", invalid="ignore"):
        if op == "sub":
            out = va - vb
        elif op == "add":
            out = va + vb
        elif op == "div":
            out = va / vb
        elif op == "mul":
            out = va * vb
        else:  # pragma: no cover - guarded by Derivation construction
            raise ValueError(op)
    wt = None if a.wall_time is None else a.wall_time[ia]
    return common, out, wt


# --------------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------------


def _n_critics(config: Mapping[str, Any], keys: tuple[str, ...], default: int | None) -> tuple[int, str]:
    hit = _config_get(config, keys) if keys else None
    if hit is not None:
        n = _as_int(hit[1])
        if n is not None and n > 0:
            return n, f"config {hit[0]}={n}"
    return (default or 1), f"default {default}"


def _gated_out(item: Alias | Derivation, raw: RawRun) -> bool:
    """True when the tags say this row belongs to another algorithm of the same framework."""
    if item.unless_tags and find_tag(raw.tags, item.unless_tags) is not None:
        return True
    return bool(item.requires_tags) and find_tag(raw.tags, item.requires_tags) is None


def _row_scale(item: Alias | Derivation, raw: RawRun) -> tuple[float, str]:
    """The row's scale and note, divided by n_critics (and saying how n was found) for summed losses."""
    scale, note = item.scale, item.note
    if item.per_critic_keys or item.default_critics:
        n, how = _n_critics(raw.config, item.per_critic_keys, item.default_critics)
        scale = scale / n
        note = f"{note} [n_critics {how}]"
    return scale, note


def _apply_alias(alias: Alias, raw: RawRun) -> Series | None:
    if _gated_out(alias, raw):
        return None
    tag = find_tag(raw.tags, alias.tags)
    if tag is None:
        return None
    src = raw.tags[tag]
    scale, note = _row_scale(alias, raw)
    kind = alias.kind
    if scale != 1.0:
        note = f"{note} (values x {scale:g})"
        s = _copy_series(
            src, alias.canonical, sources=(tag,), kind="derived" if kind == "logged" else kind, note=note
        )
        s.values = s.values * scale
        return s
    return _copy_series(src, alias.canonical, sources=(tag,), kind=kind, note=note)


def _apply_derivation(d: Derivation, raw: RawRun) -> Series | None:
    if d.when_config is not None:
        hit = _config_get(raw.config, [d.when_config[0]])
        if hit is None or _truthy(hit[1]) != bool(d.when_config[1]):
            return None
    if d.when_config_in is not None:
        hit = _config_get(raw.config, [d.when_config_in[0]])
        if hit is None or str(hit[1]).strip().lower() not in d.when_config_in[1]:
            return None
    for key in d.unless_config_true:
        hit = _config_get(raw.config, [key])
        if hit is not None and _truthy(hit[1]):
            return None
    if _gated_out(d, raw):
        return None
    a_tag = find_tag(raw.tags, d.a)
    if a_tag is None:
        return None
    a = raw.tags[a_tag]
    sources: tuple[str, ...] = (a_tag,)
    files = a.files
    if d.b:
        b_tag = find_tag(raw.tags, d.b)
        if b_tag is None:
            return None
        b = raw.tags[b_tag]
        steps, values, wt = _combine(a, b, d.op)
        sources = (a_tag, b_tag)
        files = tuple(dict.fromkeys(a.files + b.files))
    elif d.b_config:
        hit = _config_get(raw.config, d.b_config)
        const = None if hit is None else _as_float(hit[1])
        if const is None or (d.op == "div" and const == 0.0):
            return None
        sources = (a_tag, f"config:{hit[0]}")
        steps, wt = a.steps.copy(), (None if a.wall_time is None else a.wall_time.copy())
        with np.errstate(divide="ignore", invalid="ignore"):
            if d.op == "const":
                values = np.full(a.values.shape, const)
            elif d.op == "div":
                values = a.values / const
            elif d.op == "mul":
                values = a.values * const
            else:
                return None
    elif d.op == "mul":
        steps, values = a.steps.copy(), a.values.copy()
        wt = None if a.wall_time is None else a.wall_time.copy()
    else:
        return None
    scale, note = _row_scale(d, raw)
    if len(steps) == 0:
        return None
    return Series(
        name=d.canonical,
        steps=steps,
        values=values * scale,
        wall_time=wt,
        x_unit=a.x_unit,
        sources=sources,
        files=files,
        kind="derived",
        note=note,
    )


def _resolve_profile(profile: Profile, raw: RawRun, run: Run) -> None:
    # Derivations of td_error beat a logged critic-loss alias only where the alias is absent; order:
    # logged aliases first (first alias per canonical wins), then derivations fill the gaps.
    for alias in profile.aliases:
        if alias.canonical in run.series:
            continue
        s = _apply_alias(alias, raw)
        if s is not None:
            run.series[alias.canonical] = s
    for d in profile.derivations:
        if d.canonical in run.series:
            continue
        s = _apply_derivation(d, raw)
        if s is not None:
            run.series[d.canonical] = s
    for fn in profile.custom:
        s = fn(raw)
        if s is not None and s.name not in run.series:
            run.series[s.name] = s
    # Note when critic 1 was chosen while critic 2 is also logged.
    for canonical, tags2 in profile.second_critic.items():
        s = run.series.get(canonical)
        t2 = find_tag(raw.tags, tags2)
        if s is not None and t2 is not None and "critic 2" not in s.note:
            s.note = (s.note + "; " if s.note else "") + f"critic 1 chosen, critic 2 also logged as {t2!r}"
    # Tell the user what cannot be measured, rather than silently leaving a hole.
    pure_td = (run.metadata.algorithm or "") in PURE_TD_ALGORITHMS
    if profile.critic_includes_regularizer and "td_error" not in run.series and not pure_td:
        critic = find_tag(raw.tags, profile.critic_tags)
        if critic is not None and find_tag(raw.tags, profile.cql_tags) is None:
            run.issues.append(
                IngestIssue(
                    str(raw.path),
                    f"critic loss present ({critic}) but CQL term missing ({', '.join(profile.cql_tags)}): "
                    "TD error cannot be isolated",
                    level="warning",
                )
            )
    if profile.td_unavailable and "td_error" not in run.series and not pure_td:
        run.issues.append(IngestIssue(str(raw.path), profile.td_unavailable, level="info"))


#: algorithms whose critic loss is the TD regression alone (no conservative term in it): IQL's Q loss,
#: TD3+BC, AWAC, BEAR (its MMD constraint acts on the actor), SAC/TD3/DDPG, BCQ, CRR, DQN-style
PURE_TD_ALGORITHMS = frozenset({"iql", "td3bc", "awac", "bear", "sac", "td3", "ddpg", "bcq", "crr", "dqn"})


def _apply_pure_td(run: Run) -> None:
    """td_error <- the logged critic loss when the algorithm has no conservative term in it.

    Why: a profile that warns "CQL term missing" is right for CQL, whose critic loss mixes TD error and
    the conservative term; for IQL, TD3+BC, AWAC, BEAR the critic loss *is* the TD error (possibly summed
    over the critics, which the note says), and refusing it left their underfitting check unrun.
    """
    algo = run.metadata.algorithm or ""
    crit = run.series.get("critic_loss")
    if "td_error" in run.series or algo not in PURE_TD_ALGORITHMS or crit is None:
        return
    run.series["td_error"] = _copy_series(
        crit,
        "td_error",
        kind="derived",
        note=f"{algo}'s critic loss has no conservative term: TD error = critic loss as logged "
        f"(from {crit.source}; summed over critics if the implementation sums them)",
    )


#: canonical-looking spellings read when a profile left a metric unresolved (any framework, last resort)
_CANONICAL_FALLBACK: dict[str, tuple[str, ...]] = {
    "q_data": ("q_data", "q1_data_mean", "q_data_mean", "dataset_q", "data_q", "q_data/mean", "mean_q_data"),
    "td_error": ("td_error", "bellman_loss", "bellman_error", "td_loss", "td_mse"),
    "cql_gap": ("cql_gap", "cql_diff", "conservative_gap"),
    "critic_loss": ("critic_loss", "q_loss", "qf_loss"),
    "eval_return": (
        "eval_return",
        "normalized_score",
        "eval/normalized_score",
        "episode_return",
        "eval_score",
    ),
}


def _apply_canonical_fallback(raw: RawRun, run: Run) -> None:
    """Fill metrics the profile did not resolve from names that say what they are (`q1_data_mean`,
    `bellman_loss`, `normalized_score`): detection may have picked a framework on weak evidence, and a
    tag that spells its meaning beats leaving the metric out. Never overrides a profile's choice."""
    for canonical, names in _CANONICAL_FALLBACK.items():
        if canonical in run.series:
            continue
        tag = find_tag(raw.tags, names)
        if tag is None:
            continue
        run.series[canonical] = _copy_series(
            raw.tags[tag],
            canonical,
            sources=(tag,),
            kind="logged",
            note=f"read by its name ({tag!r}); the {run.framework} profile does not map it",
        )


#: how far apart the last steps of two series of one run may be before they cannot share an x-axis
_AXIS_RATIO = 20.0


def _check_shared_axis(run: Run) -> None:
    """Warn when a run's series end at steps orders of magnitude apart.

    Why: trainers log updates at gradient steps and evaluation at environment steps (Tianshou's test/* at
    update step x batch size: 256x) into one file; read as one axis, an evaluation 'at step 1e6' lands far
    beyond the last update and every comparison across the two is wrong. The reader cannot know the factor,
    so it says so and names the series.
    """
    ends = {name: int(s.steps[-1]) for name, s in run.series.items() if len(s) >= 3 and int(s.steps[-1]) > 0}
    if len(ends) < 2:
        return
    lo_name, lo = min(ends.items(), key=lambda kv: kv[1])
    hi_name, hi = max(ends.items(), key=lambda kv: kv[1])
    if hi < _AXIS_RATIO * lo:
        return
    far = sorted(n for n, e in ends.items() if e >= hi / _AXIS_RATIO**0.5)
    near = sorted(n for n, e in ends.items() if e < hi / _AXIS_RATIO**0.5)
    run.issues.append(
        IngestIssue(
            str(run.path),
            f"series end {hi / lo:.0f}x apart ({', '.join(far)} at {run.x_unit} {hi}; {', '.join(near)} at {lo}): "
            "logged against different x-axes (e.g. environment steps vs gradient steps); they are not aligned, so "
            "read each group on its own axis or rescale one with a mapping `scale`",
            level="warning",
        )
    )


def _apply_proxies(run: Run) -> None:
    """Dataset-Q proxies, used only when nothing better exists (each says why it is a proxy)."""
    if "q_data" in run.series:
        return
    for name, why in (
        (
            "q_policy",
            "Q(s, pi(s)) on dataset states stands in for Q(s, a_data): policy actions, not data actions",
        ),
        ("q_target", "TD-target mean r + gamma Q'(s', a') stands in for Q(s, a_data)"),
    ):
        s = run.series.get(name)
        if s is not None:
            run.series["q_data"] = _copy_series(s, "q_data", kind="proxy", note=f"{why} (from {s.source})")
            return


def _apply_mappings(mappings: Mapping[str, Any], raw: RawRun, run: Run) -> None:
    """User mappings override the profile: {canonical: tag | glob | {tag, scale, kind, note}}."""
    for canonical, spec in mappings.items():
        if canonical == "framework":
            continue
        if canonical not in CANONICAL_NAMES:
            run.issues.append(
                IngestIssue(
                    str(raw.path),
                    f"mapping for unknown canonical metric {canonical!r} ignored; known: {', '.join(CANONICAL_NAMES)}",
                )
            )
            continue
        if isinstance(spec, str):
            pattern, scale, kind, note = spec, 1.0, None, ""
        elif isinstance(spec, Mapping) and isinstance(spec.get("tag"), str):
            pattern = spec["tag"]
            scale_f = _as_float(spec.get("scale", 1.0))
            if scale_f is None:
                run.issues.append(
                    IngestIssue(
                        str(raw.path), f"mapping {canonical!r}: scale {spec.get('scale')!r} is not a number"
                    )
                )
                continue
            scale = scale_f
            kind = spec.get("kind")
            note = str(spec.get("note", ""))
            if kind not in (None, "logged", "derived", "proxy"):
                run.issues.append(
                    IngestIssue(
                        str(raw.path), f"mapping {canonical!r}: kind {kind!r} is not logged|derived|proxy"
                    )
                )
                kind = None
        else:
            run.issues.append(
                IngestIssue(
                    str(raw.path),
                    f"mapping {canonical!r}: expected a tag string or {{tag: ..., scale: ...}}, got {spec!r}",
                )
            )
            continue
        if pattern in raw.tags:
            tag = pattern
        else:
            matches = sorted(t for t in raw.tags if fnmatch.fnmatchcase(t, pattern))
            if not matches:
                run.issues.append(
                    IngestIssue(
                        str(raw.path),
                        f"mapping {canonical!r} -> {pattern!r}: no such tag in this run "
                        f"({len(raw.tags)} tags; profile mapping kept)",
                    )
                )
                continue
            tag = matches[0]
            if len(matches) > 1:
                run.issues.append(
                    IngestIssue(
                        str(raw.path),
                        f"mapping {canonical!r} -> {pattern!r} matched {len(matches)} tags; using {tag!r}",
                        level="info",
                    )
                )
        src = raw.tags[tag]
        final_kind = kind or ("logged" if scale == 1.0 else "derived")
        text = f"user mapping {pattern!r}" + (f" x {scale:g}" if scale != 1.0 else "")
        s = _copy_series(
            src, canonical, sources=(tag,), kind=final_kind, note=f"{text}; {note}" if note else text
        )
        s.values = s.values * scale
        run.series[canonical] = s


# --------------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------------

_ALGO_NAMES = {
    "cql": "cql",
    "discretecql": "cql",
    "conservativesac": "cql",
    "calql": "calql",
    "brac": "brac",
    "bracprimal": "brac",
    "bracdual": "brac",
    "iql": "iql",
    "td3bc": "td3bc",
    "td3plusbc": "td3bc",
    "rebrac": "rebrac",
    "sac": "sac",
    "bc": "bc",
    "awac": "awac",
    "dqn": "dqn",
    "doubledqn": "dqn",
}

_GAMMA_KEYS = ("gamma", "discount", "trainer_kwargs.discount", "discount_factor")
_HORIZON_KEYS = (
    "horizon",
    "max_path_length",
    "episode_length",
    "max_episode_steps",
    "max_traj_length",
    "max_ep_len",
)
_SEED_KEYS = ("seed",)
#: seed spelled in run directory names: rlkit `--s-3`, JaxCQL `-s-42--`, OfflineRL-Kit `seed_2&`
_SEED_PATH_PATTERNS = (r"-s-(\d+)(?:--|$|/)", r"(?:^|/|_)seed[_-]?(\d+)(?:&|/|$|_)")
_MC_KEYS = ("dataset_mc_return",)
#: actor warm start by behaviour cloning (gradient steps): our trainer and CORL `bc_steps`, the CQL/rlkit code
#: (and the workflow authors' fork) `policy_eval_start`
_WARM_START_KEYS = ("bc_steps", "policy_eval_start")
_CKPT_KEYS = ("ckpt_every", "checkpoint_interval", "save_interval", "save_freq", "checkpoint_freq")
_CKPT_EPOCH_KEYS = ("snapshot_gap", "save_every_n_epochs")
_STEPS_PER_EPOCH_KEYS = ("num_trains_per_train_loop", "n_steps_per_epoch", "steps_per_epoch")
_WIDTH_KEYS = (
    "qf_kwargs.hidden_sizes",
    "critic_hidden_dims",
    "hidden_dims",
    "hidden_sizes",
    "critic_encoder_factory.params.hidden_units",
    "hidden_units",
    "qf_arch",
    "layer_sizes",
)
_ENCODER_KEYS = ("encoder", "critic_encoder_factory.type", "encoder_type")


def _normalise_algorithm(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    key = re.sub(r"[^a-z0-9]", "", value.lower().replace("+", "plus"))
    return _ALGO_NAMES.get(key, value.strip().lower())


def _extract_metadata(raw: RawRun, profile: Profile, x_unit: str, issues: list[IngestIssue]) -> RunMetadata:
    cfg = raw.config
    md = RunMetadata(hyperparameters=dict(cfg))

    def src(key: str) -> str:
        f = raw.config_sources.get(key)
        return f"{f}:{key}" if f else f"config:{key}"

    hit = _config_get(cfg, ("algo", "algorithm", "algo_name", "config.type", "agent_name", "algorithm_name"))
    if hit is not None and _normalise_algorithm(hit[1]):
        md.algorithm, md.sources["algorithm"] = _normalise_algorithm(hit[1]), src(hit[0])
    else:
        for tag, algo in profile.algorithm_from_tags:
            t = find_tag(raw.tags, [tag])
            if t is not None:
                md.algorithm, md.sources["algorithm"] = algo, f"tag {t}"
                break
        else:
            if profile.default_algorithm:
                md.algorithm, md.sources["algorithm"] = (
                    profile.default_algorithm,
                    f"profile {profile.name} default",
                )

    def checked(key: str, value: Any, *config_keys: str) -> Any:
        """`value` through the CLI's and rules file's own validation; refused -> a warning naming file and key."""
        try:
            return check_run_metadata(key, value, "", "")
        except ConfigError as exc:
            why = str(exc).split(": expected ", 1)[-1]
            for k in config_keys:
                issues.append(
                    IngestIssue(
                        raw.config_sources.get(k, "config"), f"{k}: expected {why}; ignored", "warning"
                    )
                )
            return None

    def number(value: Any) -> Any:
        """Numbers spelled as strings (hparams, argparse dumps) as floats; anything else unchanged."""
        if isinstance(value, int) and not isinstance(value, bool):
            return value  # exact, also beyond float range: the validation reports it
        f = _as_float(value, keep_inf=True)
        return value if f is None else f

    hit = _config_get(cfg, _GAMMA_KEYS)
    if hit is not None and (g := checked("gamma", number(hit[1]), hit[0])) is not None:
        md.gamma, md.sources["gamma"] = g, src(hit[0])

    hit = _config_get(cfg, ("reward_range",))
    if hit is not None:
        rr = _as_list(hit[1])
        value = [number(x) for x in rr] if rr is not None else hit[1]
        if (pair := checked("reward_range", value, hit[0])) is not None:
            md.reward_range, md.sources["reward_range"] = pair, src(hit[0])
    if md.reward_range is None:
        lo_hit = _config_get(cfg, ("reward_min", "r_min", "min_reward"))
        hi_hit = _config_get(cfg, ("reward_max", "r_max", "max_reward"))
        if lo_hit and hi_hit:
            pair = checked("reward_range", [number(lo_hit[1]), number(hi_hit[1])], lo_hit[0], hi_hit[0])
            if pair is not None:
                md.reward_range = pair
                md.sources["reward_range"] = f"{src(lo_hit[0])}, {src(hi_hit[0])}"

    if md.reward_range is None:
        rr_logged = _logged_reward_range(raw)
        if rr_logged is not None:
            md.reward_range, md.sources["reward_range"] = rr_logged
    mean_logged = _logged_reward_mean(raw)
    if mean_logged is not None:
        md.reward_mean, md.sources["reward_mean"] = mean_logged

    hit = _config_get(cfg, _HORIZON_KEYS)
    if hit is not None and (h := checked("horizon", number(hit[1]), hit[0])) is not None:
        md.horizon, md.sources["horizon"] = h, src(hit[0])

    hit = _config_get(cfg, _SEED_KEYS)
    if hit is not None and (sd := _as_int(hit[1])) is not None:
        md.seed, md.sources["seed"] = sd, src(hit[0])
    else:
        path = str(raw.path).replace("\\", "/")
        for pat in (*profile.seed_patterns, *_SEED_PATH_PATTERNS):
            if (m := re.search(pat, path)) is not None:
                md.seed, md.sources["seed"] = int(m.group(1)), f"path {raw.path} ({pat})"
                break

    hit = _config_get(cfg, _MC_KEYS)
    if hit is not None and (mc := _as_float(hit[1])) is not None:
        md.dataset_mc_return, md.sources["dataset_mc_return"] = mc, src(hit[0])

    md.capacity, cap_src = _capacity(cfg)
    if cap_src:
        md.sources["capacity"] = ", ".join(src(k) for k in cap_src)

    ck, ck_src = _checkpoint_interval(raw, x_unit)
    if ck is not None:
        md.checkpoint_interval, md.sources["checkpoint_interval"] = ck, ck_src

    ws, ws_src = _warm_start(raw, x_unit)
    if ws is not None:
        md.warm_start, md.sources["warm_start"] = ws, ws_src
    return md


#: per-batch reward statistics some trainers log (rlkit `trainer/rewards Min/Max/Mean`, and plain spellings)
_REWARD_MIN_TAGS = ("trainer/rewards Min", "rewards Min", "reward_min", "rewards_min", "batch_reward_min")
_REWARD_MAX_TAGS = ("trainer/rewards Max", "rewards Max", "reward_max", "rewards_max", "batch_reward_max")
_REWARD_MEAN_TAGS = (
    "trainer/rewards Mean",
    "rewards Mean",
    "reward_mean",
    "rewards_mean",
    "batch_reward_mean",
)


def _logged_reward_range(raw: RawRun) -> tuple[tuple[float, float], str] | None:
    """(r_min, r_max) from logged per-batch minima/maxima over the whole run, with its source.

    Why batch statistics are good enough: the reward-implied Q bounds only need the scale of the rewards;
    the extremes of every sampled batch over a run of thousands of batches reach the dataset's extremes
    closely, and a slightly narrow range only makes the bounds a little stricter.
    """
    lo_tag, hi_tag = find_tag(raw.tags, _REWARD_MIN_TAGS), find_tag(raw.tags, _REWARD_MAX_TAGS)
    if lo_tag is None or hi_tag is None:
        return None
    lo_v, hi_v = raw.tags[lo_tag].values, raw.tags[hi_tag].values
    lo_v, hi_v = lo_v[np.isfinite(lo_v)], hi_v[np.isfinite(hi_v)]
    if not lo_v.size or not hi_v.size:
        return None
    lo, hi = float(lo_v.min()), float(hi_v.max())
    if not lo <= hi:
        return None
    return (lo, hi), f"logged tags {lo_tag!r} (min over the run) / {hi_tag!r} (max), per-batch statistics"


def _logged_reward_mean(raw: RawRun) -> tuple[float, str] | None:
    tag = find_tag(raw.tags, _REWARD_MEAN_TAGS)
    if tag is None:
        return None
    v = raw.tags[tag].values
    v = v[np.isfinite(v)]
    if not v.size:
        return None
    return float(np.median(v)), f"logged tag {tag!r} (median of the per-batch means)"


def _warm_start(raw: RawRun, x_unit: str) -> tuple[int | None, str]:
    """BC warm-start length in the run's x-axis unit; None when absent, zero, or not convertible."""
    hit = _config_get(raw.config, _WARM_START_KEYS)
    if hit is None or (v := _as_int(hit[1])) is None or v < 0:
        return None, ""
    f = raw.config_sources.get(hit[0])
    where = f"{f}:{hit[0]}" if f else f"config:{hit[0]}"
    if v == 0:
        return 0, where  # said explicitly: no warm start (and none to look for in the curves)
    if x_unit == "step":
        return v, where
    if x_unit == "epoch":
        spe = _config_get(raw.config, _STEPS_PER_EPOCH_KEYS)
        n = _as_int(spe[1]) if spe is not None else None
        if n is not None and n > 0:
            return -(-v // n), f"{where} / config:{spe[0]} (steps -> epochs, rounded up)"
    return None, ""


def _capacity(cfg: Mapping[str, Any]) -> tuple[Capacity, list[str]]:
    used: list[str] = []
    widths: tuple[int, ...] | None = None
    depth: int | None = None
    encoder: str | None = None
    hit = _config_get(cfg, _WIDTH_KEYS)
    if hit is not None:
        items = _as_list(hit[1])
        ints = [_as_int(x) for x in items] if items else []
        if ints and all(w is not None and w > 0 for w in ints):
            widths = tuple(int(w) for w in ints if w is not None)
            depth = len(widths)
            used.append(hit[0])
    if widths is None:
        w = _config_get(cfg, ("hidden", "hidden_dim", "hidden_size", "critic_hidden_dim"))
        d = _config_get(
            cfg, ("depth", "n_hidden_layers", "q_n_hidden_layers", "num_layers", "critic_n_hidden_layers")
        )
        wi = _as_int(w[1]) if w is not None else None
        di = _as_int(d[1]) if d is not None else None
        if wi is not None and wi > 0:
            used.append(w[0])
            if di is not None and di > 0:
                widths, depth = (wi,) * di, di
                used.append(d[0])
            else:
                widths = (wi,)
        elif di is not None and di > 0:
            depth = di
            used.append(d[0])
    e = _config_get(cfg, _ENCODER_KEYS)
    if e is not None and isinstance(e[1], str) and e[1].strip():
        encoder = e[1].strip().lower()
        used.append(e[0])
    return Capacity(widths=widths, depth=depth, encoder=encoder), used


def _checkpoint_interval(raw: RawRun, x_unit: str) -> tuple[int | None, str]:
    cfg = raw.config
    hit = _config_get(cfg, _CKPT_KEYS)
    if hit is not None and (v := _as_int(hit[1])) is not None and v > 0:
        f = raw.config_sources.get(hit[0])
        return v, f"{f}:{hit[0]}" if f else f"config:{hit[0]}"
    hit = _config_get(cfg, _CKPT_EPOCH_KEYS)
    if hit is not None and (v := _as_int(hit[1])) is not None and v > 0:
        if x_unit == "epoch":
            return v, f"config:{hit[0]} (epochs)"
        spe = _config_get(cfg, _STEPS_PER_EPOCH_KEYS)
        n = _as_int(spe[1]) if spe is not None else None
        if n is not None and n > 0:
            return v * n, f"config:{hit[0]} x config:{spe[0]} (epochs -> steps)"
    steps = sorted({c.step for c in raw.checkpoints})
    if len(steps) >= 2:
        diffs = np.diff(steps)
        if np.all(diffs == diffs[0]) and diffs[0] > 0:
            return int(diffs[0]), f"checkpoint files ({len(steps)} at a regular spacing)"
    return None, ""


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def resolve(raw: RawRun, mappings: Mapping[str, Any] | None = None) -> Run:
    """Turn a RawRun into a Run: detect the framework, alias, derive, proxy, and read metadata.

    Never raises on odd input: unknown mapping names, absent tags and unusable config values
    become IngestIssues on the returned run.
    """
    issues = list(raw.issues)
    if mappings is not None and not isinstance(mappings, Mapping):
        issues.append(
            IngestIssue(
                str(raw.path),
                f"mappings must be a mapping of canonical name -> tag, got {type(mappings).__name__}; ignored",
            )
        )
        mappings = None
    mappings = {str(k): v for k, v in (mappings or {}).items()}
    forced = mappings.get("framework")
    if forced is not None:
        if isinstance(forced, str) and forced in PROFILES:
            framework, reason = forced, "forced by user mapping 'framework'"
        else:
            framework, reason = detect_framework(raw)
            issues.append(
                IngestIssue(
                    str(raw.path),
                    f"mapping framework={forced!r} is not a known profile ({', '.join(FRAMEWORKS)}); "
                    f"detected {framework} instead",
                )
            )
    else:
        framework, reason = detect_framework(raw)
    profile = PROFILES[framework]

    x_unit = raw.x_unit
    x_note = ""
    if framework == "d3rlpy" and raw.layout in ("tfevents", "d3rlpy_tb") and x_unit == "step":
        # d3rlpy's TensorboardAdapter writes global_step = epoch (log-formats.md section 2).
        x_unit, x_note = "epoch", "d3rlpy TensorBoard global_step is the epoch"

    run = Run(
        id=raw.id,
        path=raw.path,
        framework=framework,
        raw=dict(raw.tags),
        checkpoints=list(raw.checkpoints),
        issues=issues,
        x_unit=x_unit,
    )
    run.metadata = _extract_metadata(raw, profile, x_unit, run.issues)
    _resolve_profile(profile, raw, run)
    _apply_canonical_fallback(raw, run)
    if mappings:
        _apply_mappings(mappings, raw, run)
    guess_by_name(raw, run, skip=set(mappings or ()))
    _apply_pure_td(run)
    _apply_proxies(run)
    for s in run.series.values():
        s.x_unit = x_unit
    _check_shared_axis(run)
    run.metadata.sources["framework"] = reason
    if x_note:
        run.metadata.sources["x_unit"] = x_note
    return run
