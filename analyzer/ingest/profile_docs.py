"""docs/formats.md's per-implementation section and docs/profile.schema.json, generated from the profile files.

Why generated: the alias table used to be a hand copy of the Python table and nothing kept the two
in sync. Now the rows are the files (analyzer/profiles/*.yaml) and the docs are rendered from them;
only the block between the markers is written, the hand-written sections around it stay as they are.
tests/test_profile_files.py fails when either file is stale.

    python -m analyzer.ingest.profile_docs --write     # docs/formats.md and docs/profile.schema.json
    python -m analyzer.ingest.profile_docs --check     # exit 1 when either is out of date
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from analyzer.ingest.profile_format import Alias, Derivation, Profile, builtin_profiles, profile_schema

__all__ = ["BEGIN", "END", "render_profiles", "schema_text", "update_formats"]

BEGIN = (
    "<!-- profiles:begin - generated from analyzer/profiles/*.yaml by "
    "`python -m analyzer.ingest.profile_docs --write`; edit the files, not this block -->"
)
END = "<!-- profiles:end -->"

_KIND = {"logged": "L", "derived": "D", "proxy": "P"}
_OP = {"sub": "−", "add": "+", "div": "/", "mul": "×"}


def _code(items: Iterable[str]) -> str:
    return ", ".join(f"`{t}`" for t in items)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _conditions(row: Alias | Derivation) -> list[str]:
    out = []
    if row.per_critic_keys or row.default_critics:
        keys = f" (`{'` / `'.join(row.per_critic_keys)}`" if row.per_critic_keys else " ("
        sep = ", " if row.per_critic_keys else ""
        out.append(f"÷ n_critics{keys}{sep}default {row.default_critics or 1})")
    if row.requires_tags:
        out.append(f"only with {_code(row.requires_tags)}")
    if row.unless_tags:
        out.append(f"not with {_code(row.unless_tags)}")
    if isinstance(row, Derivation):
        if row.when_config is not None:
            out.append(f"when config `{row.when_config[0]}` is {str(row.when_config[1]).lower()}")
        if row.when_config_in is not None:
            out.append(f"when config `{row.when_config_in[0]}` is one of {', '.join(row.when_config_in[1])}")
        if row.unless_config_true:
            out.append(f"not when config {_code(row.unless_config_true)} is true")
    return out


def _alias_row(a: Alias) -> str:
    kind = (
        "P"
        if a.kind == "proxy"
        else ("D" if (a.scale != 1.0 or a.per_critic_keys or a.default_critics) else _KIND[a.kind])
    )
    src = " / ".join(f"`{t}`" for t in a.tags)
    if a.scale != 1.0:
        src += f" × {a.scale:g}"
    src = "; ".join([src, *_conditions(a)])
    return f"| {a.canonical} | {kind} | {_cell(src)} | {_cell(a.note)} |"


def _derivation_row(d: Derivation) -> str:
    a = " / ".join(d.a)
    if d.op == "const":
        src = f"config `{' / '.join(d.b_config)}` (on the steps of `{a}`)"
    elif d.b:
        src = f"`{a}` {_OP[d.op]} `{' / '.join(d.b)}`"
    elif d.b_config:
        src = f"`{a}` {_OP[d.op]} config `{' / '.join(d.b_config)}`"
    else:
        src = f"`{a}`"
    if d.scale != 1.0:
        src += f" × {d.scale:g}"
    src = "; ".join([src, *_conditions(d)])
    return f"| {d.canonical} | D | {_cell(src)} | {_cell(d.note)} |"


def _formula_row(path: str, fn: object) -> str:
    doc = (getattr(fn, "__doc__", None) or "").strip().splitlines()
    return f"| (formula) | D | `{path}` | {_cell(doc[0] if doc else '')} |"


def render_profile(p: Profile, filename: str) -> str:
    lines = [f"### {p.name} — {p.title}" if p.title else f"### {p.name}", ""]
    if p.doc.strip():
        lines += [p.doc.strip(), ""]
    detect = []
    if p.claim_tag_prefix:
        detect.append(f"any tag starting with `{p.claim_tag_prefix}` (before scoring)")
    if p.fallback:
        detect.append("the fallback when no other profile fits")
    if p.signature_tags:
        detect.append(f"tags {_code(p.signature_tags)}")
    if p.path_patterns:
        detect.append(f"paths {_code(p.path_patterns)}")
    if p.config_hints:
        detect.append(f"config keys {_code(p.config_hints)}")
    if p.layouts:
        detect.append(f"layouts {_code(p.layouts)}")
    if p.rivals:
        detect.append(f"against {_code(p.rivals)} decided by {_code(p.distinguishing_tags)}")
    if detect:
        lines += ["Detected by " + "; ".join(detect) + ".", ""]
    rows = [_alias_row(a) for a in p.aliases] + [_derivation_row(d) for d in p.derivations]
    rows += [_formula_row(path, fn) for path, fn in zip(p.custom_paths, p.custom, strict=True)]
    if rows:
        lines += ["| canonical | kind | from | note |", "|---|---|---|---|", *rows, ""]
    facts = []
    if p.critic_includes_regularizer:
        facts.append(
            f"the critic loss {_code(p.critic_tags)} includes the conservative term: without "
            f"{_code(p.cql_tags)} the TD error cannot be isolated (warning)"
        )
    if p.td_unavailable:
        facts.append(f"td_error: {p.td_unavailable}")
    if p.algorithm_from_tags:
        facts.append(
            "algorithm from tags when the config names none: "
            + ", ".join(f"`{t}` → {a}" for t, a in p.algorithm_from_tags)
        )
    if p.default_algorithm:
        facts.append(f"default algorithm {p.default_algorithm}")
    if p.second_critic:
        facts.append(
            "critic 2 noted when logged: " + ", ".join(f"{k} {_code(v)}" for k, v in p.second_critic.items())
        )
    if p.seed_patterns:
        facts.append(f"seed from the path {_code(p.seed_patterns)}")
    if p.step_is_epoch_layouts:
        facts.append(
            f"x-axis is the epoch on layouts {_code(p.step_is_epoch_layouts)} ({p.step_is_epoch_note})"
        )
    if p.metadata_keys:
        facts.append("metadata keys " + "; ".join(f"{k}: {_code(v)}" for k, v in p.metadata_keys.items()))
    for f in facts:
        lines.append(f"- {f[0].upper()}{f[1:]}.")
    if facts:
        lines.append("")
    lines += [f"_Source: `analyzer/profiles/{filename}`._", ""]
    return "\n".join(lines)


def render_profiles(profiles: Sequence[Profile] | None = None) -> str:
    """The generated block (markers included) for the given profiles (default: the built-in files)."""
    profiles = builtin_profiles() if profiles is None else profiles
    parts = [BEGIN, ""]
    for p in profiles:
        parts.append(render_profile(p, Path(p.source).name if p.source else f"{p.name}.yaml"))
    parts.append(END)
    return "\n".join(parts)


def update_formats(text: str) -> str:
    """`text` (docs/formats.md) with its generated block replaced; ValueError when the markers are missing."""
    start, end = text.find(BEGIN.split(" - ")[0]), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"markers {BEGIN.split(' - ')[0]!r} ... {END!r} not found")
    return text[:start] + render_profiles() + text[end + len(END) :]


def schema_text() -> str:
    return json.dumps(profile_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path.cwd()
    formats, schema = root / "docs" / "formats.md", root / "docs" / "profile.schema.json"
    want = {formats: update_formats(formats.read_text(encoding="utf-8")), schema: schema_text()}
    if args == ["--write"]:
        for path, text in want.items():
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        return 0
    if args == ["--check"]:
        stale = [str(p) for p, t in want.items() if not p.is_file() or p.read_text(encoding="utf-8") != t]
        for p in stale:
            print(f"out of date: {p} (run python -m analyzer.ingest.profile_docs --write)")
        return 1 if stale else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
