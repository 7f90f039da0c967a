"""Run metadata from a run's config, path and logged tags: gamma, horizon, reward range, seed, capacity...

Why apart from the profile engine: these readings are the same for every implementation (only the
config keys differ, and they are data: analyzer/profiles/_shared.yaml plus a profile's own
`metadata_keys`). Every value read records where it came from in `RunMetadata.sources`, and a value
the rules-file validation refuses becomes a warning naming the file and key, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from analyzer.config import ConfigError, check_run_metadata
from analyzer.ingest.profile_format import Profile, SharedKnowledge, shared_knowledge
from analyzer.ingest.tagmath import as_float, as_int, as_list, config_get, find_tag
from analyzer.model import Capacity, IngestIssue, RawRun, RunMetadata

__all__ = ["extract_metadata", "normalise_algorithm"]


def _shared() -> SharedKnowledge:
    return shared_knowledge()


def _keys(field: str, profile: Profile | None) -> tuple[str, ...]:
    """Config keys for one metadata field: the profile's own first, then the shared ones."""
    own = profile.metadata_keys.get(field, ()) if profile is not None else ()
    return (*own, *_shared().metadata_keys.get(field, ()))


def normalise_algorithm(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    key = re.sub(r"[^a-z0-9]", "", value.lower().replace("+", "plus"))
    return _shared().algorithm_names.get(key, value.strip().lower())


def extract_metadata(raw: RawRun, profile: Profile, x_unit: str, issues: list[IngestIssue]) -> RunMetadata:
    cfg = raw.config
    md = RunMetadata(hyperparameters=dict(cfg))

    def src(key: str) -> str:
        f = raw.config_sources.get(key)
        return f"{f}:{key}" if f else f"config:{key}"

    hit = config_get(cfg, _keys("algorithm", profile))
    if hit is not None and normalise_algorithm(hit[1]):
        md.algorithm, md.sources["algorithm"] = normalise_algorithm(hit[1]), src(hit[0])
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
        f = as_float(value, keep_inf=True)
        return value if f is None else f

    hit = config_get(cfg, _keys("gamma", profile))
    if hit is not None and (g := checked("gamma", number(hit[1]), hit[0])) is not None:
        md.gamma, md.sources["gamma"] = g, src(hit[0])

    hit = config_get(cfg, _keys("reward_range", profile))
    if hit is not None:
        rr = as_list(hit[1])
        value = [number(x) for x in rr] if rr is not None else hit[1]
        if (pair := checked("reward_range", value, hit[0])) is not None:
            md.reward_range, md.sources["reward_range"] = pair, src(hit[0])
    if md.reward_range is None:
        lo_hit = config_get(cfg, _keys("reward_min", profile))
        hi_hit = config_get(cfg, _keys("reward_max", profile))
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

    hit = config_get(cfg, _keys("horizon", profile))
    if hit is not None and (h := checked("horizon", number(hit[1]), hit[0])) is not None:
        md.horizon, md.sources["horizon"] = h, src(hit[0])

    hit = config_get(cfg, _keys("seed", profile))
    if hit is not None and (sd := as_int(hit[1])) is not None:
        md.seed, md.sources["seed"] = sd, src(hit[0])
    else:
        path = str(raw.path).replace("\\", "/")
        for pat in (*profile.seed_patterns, *_shared().seed_path_patterns):
            if (m := re.search(pat, path)) is not None:
                md.seed, md.sources["seed"] = int(m.group(1)), f"path {raw.path} ({pat})"
                break

    hit = config_get(cfg, _keys("dataset_mc_return", profile))
    if hit is not None and (mc := as_float(hit[1])) is not None:
        md.dataset_mc_return, md.sources["dataset_mc_return"] = mc, src(hit[0])

    md.capacity, cap_src = _capacity(cfg, profile)
    if cap_src:
        md.sources["capacity"] = ", ".join(src(k) for k in cap_src)

    ck, ck_src = _checkpoint_interval(raw, x_unit, profile)
    if ck is not None:
        md.checkpoint_interval, md.sources["checkpoint_interval"] = ck, ck_src

    ws, ws_src = _warm_start(raw, x_unit, profile)
    if ws and profile.name == "offrl" and md.algorithm == "brac":
        # our trainer's BRAC spends `bc_steps` fitting pi_b before its first logged step: the actor has no warm start
        ws, ws_src = 0, f"{ws_src} (BRAC: the behaviour fit before the logged steps)"
    if ws is not None:
        md.warm_start, md.sources["warm_start"] = ws, ws_src
    return md


def _logged_reward_range(raw: RawRun) -> tuple[tuple[float, float], str] | None:
    """(r_min, r_max) from logged per-batch minima/maxima over the whole run, with its source.

    Why batch statistics are good enough: the reward-implied Q bounds only need the scale of the rewards;
    the extremes of every sampled batch over a run of thousands of batches reach the dataset's extremes
    closely, and a slightly narrow range only makes the bounds a little stricter.
    """
    lo_tag, hi_tag = (
        find_tag(raw.tags, _shared().reward_tags["min"]),
        find_tag(raw.tags, _shared().reward_tags["max"]),
    )
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
    tag = find_tag(raw.tags, _shared().reward_tags["mean"])
    if tag is None:
        return None
    v = raw.tags[tag].values
    v = v[np.isfinite(v)]
    if not v.size:
        return None
    return float(np.median(v)), f"logged tag {tag!r} (median of the per-batch means)"


def _warm_start(raw: RawRun, x_unit: str, profile: Profile | None = None) -> tuple[int | None, str]:
    """BC warm-start length in the run's x-axis unit; None when absent, zero, or not convertible."""
    hit = config_get(raw.config, _keys("warm_start", profile))
    if hit is None or (v := as_int(hit[1])) is None or v < 0:
        return None, ""
    f = raw.config_sources.get(hit[0])
    where = f"{f}:{hit[0]}" if f else f"config:{hit[0]}"
    if v == 0:
        return 0, where  # said explicitly: no warm start (and none to look for in the curves)
    if x_unit == "step":
        return v, where
    if x_unit == "epoch":
        spe = config_get(raw.config, _keys("steps_per_epoch", profile))
        n = as_int(spe[1]) if spe is not None else None
        if spe is not None and n is not None and n > 0:
            return -(-v // n), f"{where} / config:{spe[0]} (steps -> epochs, rounded up)"
    return None, ""


def _capacity(cfg: Mapping[str, Any], profile: Profile | None = None) -> tuple[Capacity, list[str]]:
    used: list[str] = []
    widths: tuple[int, ...] | None = None
    depth: int | None = None
    encoder: str | None = None
    hit = config_get(cfg, _keys("widths", profile))
    if hit is not None:
        items = as_list(hit[1])
        ints = [as_int(x) for x in items] if items else []
        if ints and all(w is not None and w > 0 for w in ints):
            widths = tuple(int(w) for w in ints if w is not None)
            depth = len(widths)
            used.append(hit[0])
    if widths is None:
        w = config_get(cfg, _keys("width", profile))
        d = config_get(cfg, _keys("depth", profile))
        wi = as_int(w[1]) if w is not None else None
        di = as_int(d[1]) if d is not None else None
        if w is not None and wi is not None and wi > 0:
            used.append(w[0])
            if d is not None and di is not None and di > 0:
                widths, depth = (wi,) * di, di
                used.append(d[0])
            else:
                widths = (wi,)
        elif d is not None and di is not None and di > 0:
            depth = di
            used.append(d[0])
    e = config_get(cfg, _keys("encoder", profile))
    if e is not None and isinstance(e[1], str) and e[1].strip():
        encoder = e[1].strip().lower()
        used.append(e[0])
    return Capacity(widths=widths, depth=depth, encoder=encoder), used


def _checkpoint_interval(raw: RawRun, x_unit: str, profile: Profile | None = None) -> tuple[int | None, str]:
    cfg = raw.config
    hit = config_get(cfg, _keys("checkpoint_interval", profile))
    if hit is not None and (v := as_int(hit[1])) is not None and v > 0:
        f = raw.config_sources.get(hit[0])
        return v, f"{f}:{hit[0]}" if f else f"config:{hit[0]}"
    hit = config_get(cfg, _keys("checkpoint_interval_epochs", profile))
    if hit is not None and (v := as_int(hit[1])) is not None and v > 0:
        if x_unit == "epoch":
            return v, f"config:{hit[0]} (epochs)"
        spe = config_get(cfg, _keys("steps_per_epoch", profile))
        n = as_int(spe[1]) if spe is not None else None
        if spe is not None and n is not None and n > 0:
            return v * n, f"config:{hit[0]} x config:{spe[0]} (epochs -> steps)"
    steps = sorted({c.step for c in raw.checkpoints})
    if len(steps) >= 2:
        diffs = np.diff(steps)
        if np.all(diffs == diffs[0]) and diffs[0] > 0:
            return int(diffs[0]), f"checkpoint files ({len(steps)} at a regular spacing)"
    return None, ""
