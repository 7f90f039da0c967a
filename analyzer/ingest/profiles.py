"""The profile engine: give each implementation's tags their canonical meaning.

Readers produce a `RawRun` (tags exactly as logged); `resolve` turns it into a `Run` whose series
carry canonical names (analyzer/metrics.py). Why one profile per implementation: the same word means
different things across codebases ("qf1_loss" is pure TD in CORL but TD + CQL term in JaxCQL;
"alpha" is the SAC temperature in rlkit but the CQL Lagrange weight in d3rlpy), so a tag can only
be read correctly once the framework is known.

What each implementation logs is data, not code: one YAML file per implementation in
analyzer/profiles/ (format: analyzer/ingest/profile_format.py, docs/profile.schema.json; rendered
in docs/formats.md), more from a rules file's `profiles:` or a plugin's entry point. This module only
runs them: detect the framework, apply alias rows, derivation rows and the rare referenced formula,
then the shared fallbacks (pure-TD critics, canonical spellings, dataset-Q proxies) and user mappings.

Every series says how far to trust it: `logged` (read as-is), `derived` (computed from logged tags,
formula in `note`), `proxy` (a nearby quantity standing in, reason in `note`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from analyzer.ingest.guess import guess_by_name
from analyzer.ingest.profile_format import (
    Alias,
    Derivation,
    Profile,
    ProfileError,
    builtin_profiles,
    shared_knowledge,
)
from analyzer.ingest.runmeta import _warm_start, extract_metadata
from analyzer.ingest.tagmath import (
    as_float,
    as_int,
    combine,
    config_get,
    copy_series,
    find_tag,
    has_tag,
    truthy,
)
from analyzer.metrics import CANONICAL_NAMES
from analyzer.model import IngestIssue, RawRun, Run, Series

__all__ = [
    "Alias",
    "Derivation",
    "Profile",
    "ProfileError",
    "detect_framework",
    "find_tag",
    "profile_set",
    "registry",
    "resolve",
]

_ = _warm_start  # re-exported: tests and callers read the warm start as the engine does

Profiles = Mapping[str, Profile]


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


def _ordered(profiles: Sequence[Profile]) -> dict[str, Profile]:
    return {p.name: p for p in sorted(profiles, key=lambda p: (p.order, p.name))}


def registry() -> dict[str, Profile]:
    """Every installed profile: the package's files (analyzer/profiles/*.yaml), then the plugins'
    (`offrl_workflow.profiles` entry points; a broken one is reported by analyzer.plugins and skipped)."""
    from analyzer.plugins import plugin_profiles

    return _ordered([*builtin_profiles(), *plugin_profiles()])


def profile_set(extra: Sequence[Profile] = ()) -> dict[str, Profile]:
    """The installed profiles plus `extra` (a rules file's `profiles:`); an extra one with an installed
    profile's name replaces it for this analysis (a user's corrected copy of a built-in file)."""
    base = registry()
    if not extra:
        return base
    merged = {**base, **{p.name: p for p in extra}}
    return _ordered(list(merged.values()))


def __getattr__(name: str) -> Any:
    """`PROFILES`, `FRAMEWORKS` (installed profiles, in detection order), `PURE_TD_ALGORITHMS` and
    `_CANONICAL_FALLBACK` (analyzer/profiles/_shared.yaml): read from the files on first use."""
    if name == "PROFILES":
        return registry()
    if name == "FRAMEWORKS":
        return tuple(registry())
    if name == "PURE_TD_ALGORITHMS":
        return shared_knowledge().pure_td_algorithms
    if name == "_CANONICAL_FALLBACK":
        return shared_knowledge().canonical_fallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------------
# Framework detection
# --------------------------------------------------------------------------------------------------


def _config_has(config: Mapping[str, Any], key: str) -> bool:
    return key in config or any(str(k).endswith("." + key) for k in config)


def _score(profile: Profile, raw: RawRun, path_text: str) -> tuple[int, list[str]]:
    tags = list(raw.tags)
    score = 0
    why: list[str] = []
    # exact tag names score 2, '/'-suffix matches 1: `sac/cql/cql_min_qf1_loss` is JaxCQL's own
    # name, and only looks like CORL's `cql_min_qf1_loss` with a prefix.
    tag_set = set(tags)
    hits = [t for t in profile.signature_tags if has_tag(tags, t)]
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


def _fallback_name(profiles: Profiles) -> str:
    return next((n for n, p in profiles.items() if p.fallback), "generic")


def detect_framework(raw: RawRun, profiles: Profiles | None = None) -> tuple[str, str]:
    """(profile name, short reason). Highest evidence score wins; the fallback profile when nothing fits.

    Why scoring instead of first-match: real folders are mislabelled (rlkit columns exported to a
    wandb CSV, d3rlpy logs copied out of d3rlpy_logs/), so no single signal is trusted alone; a
    profile needs at least one matching signature tag, since paths and config keys are weak hints.
    """
    profiles = registry() if profiles is None else profiles
    tags = list(raw.tags)
    for name, prof in profiles.items():
        if prof.claim_tag_prefix and any(t.startswith(prof.claim_tag_prefix) for t in tags):
            n = sum(t.startswith(prof.claim_tag_prefix) for t in tags)
            return name, f"{n} tags with the {prof.who} prefix {prof.claim_tag_prefix!r}"
    path_text = "/".join([str(raw.path).replace("\\", "/")] + [str(f) for f in raw.files])
    ranking: list[tuple[int, str, list[str]]] = []
    order = list(profiles)
    for name, prof in profiles.items():
        if prof.claim_tag_prefix or prof.fallback:
            continue
        if not any(has_tag(tags, t) for t in prof.signature_tags):
            continue
        score, why = _score(prof, raw, path_text)
        ranking.append((score, name, why))
    if not ranking:
        for name, prof in profiles.items():
            keys = [k for k in prof.claim_config_keys if k in raw.config]
            if len(keys) >= 2 and any(t in CANONICAL_NAMES for t in tags):
                return name, "config keys " + ", ".join(keys) + f" of the {prof.who}"
        return _fallback_name(profiles), "no profile's signature tags found"
    ranking.sort(key=lambda r: (-r[0], order.index(r[1])))
    best = ranking[0]
    # close relatives (JaxCQL and young-geng/CQL share the `sac/` namespace): their own tags decide
    scored = {r[1]: r for r in ranking}
    mine = profiles[best[1]]
    for rival in mine.rivals:
        if rival not in scored or rival not in profiles:
            continue
        own = any(has_tag(tags, t) for t in mine.distinguishing_tags)
        theirs = any(has_tag(tags, t) for t in profiles[rival].distinguishing_tags)
        if theirs and not own:
            best = scored[rival]
            break
    reason = f"{best[1]}: " + "; ".join(best[2])
    if len(ranking) > 1 and ranking[1][0] == best[0] and ranking[1][1] != best[1]:
        reason += f" (tie with {ranking[1][1]} at score {best[0]})"
    return best[1], reason


# --------------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------------


def _n_critics(config: Mapping[str, Any], keys: tuple[str, ...], default: int | None) -> tuple[int, str]:
    hit = config_get(config, keys) if keys else None
    if hit is not None:
        n = as_int(hit[1])
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
        s = copy_series(
            src, alias.canonical, sources=(tag,), kind="derived" if kind == "logged" else kind, note=note
        )
        s.values = s.values * scale
        return s
    return copy_series(src, alias.canonical, sources=(tag,), kind=kind, note=note)


def _apply_derivation(d: Derivation, raw: RawRun) -> Series | None:
    if d.when_config is not None:
        hit = config_get(raw.config, [d.when_config[0]])
        if hit is None or truthy(hit[1]) != bool(d.when_config[1]):
            return None
    if d.when_config_in is not None:
        hit = config_get(raw.config, [d.when_config_in[0]])
        if hit is None or str(hit[1]).strip().lower() not in d.when_config_in[1]:
            return None
    for key in d.unless_config_true:
        hit = config_get(raw.config, [key])
        if hit is not None and truthy(hit[1]):
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
        steps, values, wt = combine(a, b, d.op)
        sources = (a_tag, b_tag)
        files = tuple(dict.fromkeys(a.files + b.files))
    elif d.b_config:
        hit = config_get(raw.config, d.b_config)
        const = None if hit is None else as_float(hit[1])
        if hit is None or const is None or (d.op == "div" and const == 0.0):
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
    pure_td = (run.metadata.algorithm or "") in shared_knowledge().pure_td_algorithms
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


def _apply_pure_td(run: Run) -> None:
    """td_error <- the logged critic loss when the algorithm has no conservative term in it.

    Why: a profile that warns "CQL term missing" is right for CQL, whose critic loss mixes TD error and
    the conservative term; for IQL, TD3+BC, AWAC, BEAR the critic loss *is* the TD error (possibly summed
    over the critics, which the note says), and refusing it left their underfitting check unrun.
    """
    algo = run.metadata.algorithm or ""
    crit = run.series.get("critic_loss")
    if "td_error" in run.series or algo not in shared_knowledge().pure_td_algorithms or crit is None:
        return
    run.series["td_error"] = copy_series(
        crit,
        "td_error",
        kind="derived",
        note=f"{algo}'s critic loss has no conservative term: TD error = critic loss as logged "
        f"(from {crit.source}; summed over critics if the implementation sums them)",
    )


def _apply_canonical_fallback(raw: RawRun, run: Run) -> None:
    """Fill metrics the profile did not resolve from names that say what they are (`q1_data_mean`,
    `bellman_loss`, `normalized_score`): detection may have picked a framework on weak evidence, and a
    tag that spells its meaning beats leaving the metric out. Never overrides a profile's choice."""
    for canonical, names in shared_knowledge().canonical_fallback.items():
        if canonical in run.series:
            continue
        tag = find_tag(raw.tags, names)
        if tag is None:
            continue
        run.series[canonical] = copy_series(
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
    for name, why in shared_knowledge().q_data_proxies:
        s = run.series.get(name)
        if s is not None:
            run.series["q_data"] = copy_series(s, "q_data", kind="proxy", note=f"{why} (from {s.source})")
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
            scale_f = as_float(spec.get("scale", 1.0))
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
        s = copy_series(
            src, canonical, sources=(tag,), kind=final_kind, note=f"{text}; {note}" if note else text
        )
        s.values = s.values * scale
        run.series[canonical] = s


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def resolve(raw: RawRun, mappings: Mapping[str, Any] | None = None, profiles: Profiles | None = None) -> Run:
    """Turn a RawRun into a Run: detect the framework, alias, derive, proxy, and read metadata.

    `profiles`: the profiles to choose from (default: the installed ones, `registry()`; a rules file's
    `profiles:` come through `profile_set`). Never raises on odd input: unknown mapping names, absent
    tags and unusable config values become IngestIssues on the returned run.
    """
    profiles = registry() if profiles is None else profiles
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
        if isinstance(forced, str) and forced in profiles:
            framework, reason = forced, "forced by user mapping 'framework'"
        else:
            framework, reason = detect_framework(raw, profiles)
            issues.append(
                IngestIssue(
                    str(raw.path),
                    f"mapping framework={forced!r} is not a known profile ({', '.join(profiles)}); "
                    f"detected {framework} instead",
                )
            )
    else:
        framework, reason = detect_framework(raw, profiles)
    profile = profiles[framework]

    x_unit = raw.x_unit
    x_note = ""
    if raw.layout in profile.step_is_epoch_layouts and x_unit == "step":
        x_unit, x_note = "epoch", profile.step_is_epoch_note

    run = Run(
        id=raw.id,
        path=raw.path,
        framework=framework,
        raw=dict(raw.tags),
        checkpoints=list(raw.checkpoints),
        issues=issues,
        x_unit=x_unit,
    )
    run.metadata = extract_metadata(raw, profile, x_unit, run.issues)
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
