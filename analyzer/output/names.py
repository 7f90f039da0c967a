"""Safe text for every output format: one place that decides how names and messages from disk are shown.

Why one module: run ids, paths, checkpoint names, tags and the messages that quote them come from
the file system and from log contents, so whoever wrote the logs chooses them. A folder name can
hold bytes that are not UTF-8 (`os.fsdecode` turns each into a lone surrogate U+DC80-U+DCFF, which
no UTF-8 writer accepts), terminal escape sequences (`ESC[31m` recolours or rewrites the
terminal), newlines (split a markdown heading or a GitHub workflow command in two), characters
XML 1.0 forbids (a JUnit file that no longer parses), bidirectional overrides (text that reads
differently from what it is) or `$` pairs (matplotlib reads them as math). Every renderer passes
such text through the function for its context below.

The shown form is the same in every human-readable format: printable text stays as it is, and
every other character becomes a Python-style escape: an undecodable byte is `\\xff` (as
`bytes.__repr__` writes it), a control character `\\x1b`, other code points `\\u202e`. JSON and
SARIF keep valid Unicode exactly (a JSON string can carry any of it) and escape only the
undecodable bytes, which have no Unicode form. A backslash in a name is kept as is, so the
escaped form is for reading, not a lossless encoding of the name.
"""

from __future__ import annotations

import unicodedata
from typing import Any

#: Unicode categories escaped in shown text: controls (Cc), surrogates (Cs, from undecodable
#: bytes), unassigned code points and non-characters such as U+FFFE (Cn, not allowed in XML 1.0),
#: line and paragraph separators (Zl, Zp: line breaks for some terminals and JavaScript).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Cn", "Zl", "Zp"})
#: Bidirectional embedding, override and isolate controls ("Trojan source"), category Cf.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def escape_char(ch: str) -> str:
    """The shown form of one character that may not be output as is."""
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:  # os.fsdecode's stand-in for the undecodable byte o - 0xDC00
        return f"\\x{o - 0xDC00:02x}"
    if o <= 0xFF:
        return f"\\x{o:02x}"
    if o <= 0xFFFF:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def _unsafe(ch: str) -> bool:
    return ch in _BIDI or unicodedata.category(ch) in _UNSAFE_CATEGORIES


def clean(text: Any, *, keep_newlines: bool = False) -> str:
    """`text` as a string that is safe to show: every unsafe character escaped (see module doc).

    One line unless `keep_newlines` (then LF and TAB stay; CR is escaped, it rewrites the line).
    """
    s = text if isinstance(text, str) else str(text)
    if s.isascii() and s.isprintable():  # the common case: nothing to do
        return s
    keep = "\n\t" if keep_newlines else ""
    return "".join(escape_char(c) if c not in keep and _unsafe(c) else c for c in s)


# ----------------------------------------------------------------------------------------------
# one function per output context


def terminal(text: Any) -> str:
    """Terminal (the rich table, progress line, error lines): one line, no escape sequences."""
    return clean(text)


def undecodable_only(text: str) -> str:
    """JSON / SARIF: valid Unicode kept exactly (json escapes controls), undecodable bytes as `\\xNN`."""
    if text.isascii():
        return text
    return "".join(escape_char(c) if "\ud800" <= c <= "\udfff" else c for c in text)


def json_safe(value: Any) -> Any:
    """`undecodable_only` applied to every string (keys too) of a JSON-shaped value."""
    if isinstance(value, str):
        return undecodable_only(value)
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def xml_text(text: Any) -> str:
    """XML 1.0 character data or attribute value (ElementTree escapes `<`, `&` and quotes itself).

    Only TAB, LF, CR and U+0020-U+D7FF, U+E000-U+FFFD, U+10000-U+10FFFF are allowed in XML 1.0;
    `clean(keep_newlines=True)` escapes every other code point (controls, surrogates, U+FFFE/FFFF).
    """
    return clean(text, keep_newlines=True)


def _github_escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def github_data(text: Any) -> str:
    """The message of a GitHub workflow command (`::error ...::MESSAGE`): `%` and line breaks escaped.

    A line break in a message is kept as `%0A` (GitHub shows a multi-line annotation), so the
    command stays on one line of the log.
    """
    return _github_escape(clean(text, keep_newlines=True))


def github_property(text: Any) -> str:
    """A property value of a workflow command (`file=`, `title=`): one line, `:` and `,` escaped too."""
    return _github_escape(clean(text)).replace(":", "%3A").replace(",", "%2C")


def markdown_inline(text: Any) -> str:
    """Markdown text on one line (headings, list items, paragraphs)."""
    return clean(text)


def markdown_cell(text: Any) -> str:
    """A markdown table cell: one line, pipes escaped (a backslash before a pipe doubled)."""
    return clean(text).replace("\\", "\\\\").replace("|", "\\|")


def markdown_code(text: Any) -> str:
    """`text` as an inline code span: fenced by more backticks than it contains in a row.

    CommonMark strips one space on each side when both are present, so a name that starts or ends
    with a backtick (or a space) keeps its exact look.
    """
    s = clean(text)
    longest = run = 0
    for c in s:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith(("`", " ")) or s.endswith(("`", " ")) or not s else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def html_text(text: Any) -> str:
    """HTML text or attribute value."""
    import html

    return html.escape(clean(text), quote=True)


def plot_text(text: Any) -> str:
    """Text for matplotlib: one line, `$` escaped so that no part of a name is read as mathtext."""
    return clean(text).replace("$", r"\$")
