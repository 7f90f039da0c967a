"""Formulas too specific for a profile file's alias and derivation rows, referenced from the file by
import path (`custom: [analyzer.ingest.formulas:d3rlpy_cql_gap]`).

Why Python here and nowhere else: these invert a library's loss composition with several logged tags
and config constants at once (d3rlpy's conservative term, Tianshou's Lagrange bookkeeping) or move a
series to another x-axis; a row syntax able to say that would be a programming language. Each function
takes the RawRun and returns one canonical Series or None (not applicable: the engine moves on).
"""

from __future__ import annotations

import numpy as np

from analyzer.ingest.tagmath import as_float, as_int, combine, config_get, copy_series, find_tag
from analyzer.model import RawRun, Series

__all__ = [
    "d3rlpy_cql_gap",
    "tianshou_cql_gap",
    "tianshou_cql_term",
    "tianshou_eval_return",
    "tianshou_td",
]


def d3rlpy_cql_gap(raw: RawRun) -> Series | None:
    """Continuous d3rlpy CQL: conservative_loss = sum_critics alpha * w * (gap - threshold).

    So the raw per-critic gap = conservative_loss / (n_critics * alpha * w) + threshold, with
    alpha the logged Lagrange weight and w, threshold, n_critics from params.json. Skipped when
    any of them is unknown (we do not guess d3rlpy defaults that changed across versions).
    """
    cons_tag = find_tag(raw.tags, ["conservative_loss"])
    alpha_tag = find_tag(raw.tags, ["alpha"])
    if cons_tag is None or alpha_tag is None or find_tag(raw.tags, ["td_loss"]) is not None:
        return None
    w_hit = config_get(raw.config, ["config.params.conservative_weight"])
    t_hit = config_get(raw.config, ["config.params.alpha_threshold"])
    n_hit = config_get(raw.config, ["config.params.n_critics"])
    if w_hit is None or t_hit is None or n_hit is None:
        return None
    w, thr, n = as_float(w_hit[1]), as_float(t_hit[1]), as_int(n_hit[1])
    if not w or thr is None or not n or n <= 0:
        return None
    steps, ratio, wt = combine(raw.tags[cons_tag], raw.tags[alpha_tag], "div")
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


#: Tianshou 2.0 TensorboardLogger scopes: update/* at the update (gradient) step, test/* at env_step,
#: info/* at the epoch (what a real run wrote: fixtures/real/tianshou/TRUTH.json).
_TIANSHOU_EVAL_TAGS = ("test/returns_stat/mean", "test/reward", "test/rew")


def _tianshou_critic_parts(raw: RawRun) -> tuple[Series, Series, Series, tuple[str, str, str]] | None:
    tags = [find_tag(raw.tags, [t]) for t in ("critic1_loss", "critic2_loss", "cql_alpha_loss")]
    if any(t is None for t in tags):
        return None
    c1, c2, la = (raw.tags[t] for t in tags)  # type: ignore[index]
    return c1, c2, la, (tags[0], tags[1], tags[2])  # type: ignore[return-value]


def tianshou_td(raw: RawRun) -> Series | None:
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
    steps, total, wt = combine(c1, c2, "add")
    half = Series(name="half", steps=steps, values=total / 2.0, wall_time=wt)
    steps, values, wt = combine(half, la, "add")
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


def tianshou_cql_term(raw: RawRun) -> Series | None:
    """-cql_alpha_loss: the alpha-scaled, threshold-shifted CQL term, mean over both critics."""
    tag = find_tag(raw.tags, ["cql_alpha_loss"])
    if tag is None or find_tag(raw.tags, ["critic1_loss"]) is None:
        return None
    src = raw.tags[tag]
    s = copy_series(
        src,
        "cql_term",
        sources=(tag,),
        kind="derived",
        note=f"-{tag} = cql_alpha * (cql_weight * gap - lagrange_threshold), mean over both critics",
    )
    s.values = -src.values
    return s


def tianshou_cql_gap(raw: RawRun) -> Series | None:
    """Raw gap T * logsumexp(Q / T) - Q(s, a_data) = (-cql_alpha_loss / cql_alpha + threshold) / cql_weight.

    Needs cql_weight and lagrange_threshold from the config (Tianshou's examples log them only in
    the `args` text summary, which the event reader turns into config keys)."""
    la_tag, ca_tag = find_tag(raw.tags, ["cql_alpha_loss"]), find_tag(raw.tags, ["cql_alpha"])
    w_hit = config_get(raw.config, ["cql_weight"])
    t_hit = config_get(raw.config, ["lagrange_threshold"])
    if la_tag is None or ca_tag is None or w_hit is None or t_hit is None:
        return None
    w, thr = as_float(w_hit[1]), as_float(t_hit[1])
    if not w or thr is None:
        return None
    steps, ratio, wt = combine(raw.tags[la_tag], raw.tags[ca_tag], "div")
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
    hit = config_get(raw.config, ["batch_size"])
    bs = as_int(hit[1]) if hit is not None else None
    update_tags = [t for t in raw.tags if t.startswith("update/")]
    last_update = max((int(raw.tags[t].steps[-1]) for t in update_tags if len(raw.tags[t])), default=0)
    if (
        hit is not None
        and bs
        and bs > 1
        and len(test_steps)
        and np.all(test_steps % bs == 0)
        and last_update
        and test_steps[-1] > 2 * last_update
    ):
        return bs, f"config {hit[0]}={bs} (OfflineTrainer: env_step = update step x batch_size)"
    return None, ""


def tianshou_eval_return(raw: RawRun) -> Series | None:
    """test/returns_stat/mean moved from Tianshou's env_step axis onto the update-step axis."""
    tag = find_tag(raw.tags, _TIANSHOU_EVAL_TAGS)
    if tag is None:
        return None
    src = raw.tags[tag]
    b, how = _tianshou_env_per_update(raw, src.steps)
    if b is None or b == 1 or np.any(src.steps % b != 0):
        return copy_series(src, "eval_return", sources=(tag,))
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
