"""Text from users' files, made safe to show. Stdlib only.

Tensor, node and input names, case ids, messages and reasons come from files a user gave us (a model, a
case file, a result file). Shown raw, they can reset a terminal (``ESC c``), set its title (OSC), reorder
what is displayed (bidi overrides), break an XML file, or hang a renderer by sheer length. :func:`safe` is
the one cleaner every renderer calls: control characters become visible escapes (``\\x1b``), and a field is
cut to a length with a note of what was left out. The full text stays in the JSON result file.

Markup is the renderer's business: the console passes the result to ``rich.text.Text`` (never parsed as
markup, never highlighted), HTML and XML escape it, and Markdown uses :func:`markdown_inline` or
:func:`code_span` below.
"""

from __future__ import annotations

import re

__all__ = [
    "FILE_MESSAGE",
    "ID",
    "MESSAGE",
    "NAME",
    "code_span",
    "count",
    "first_line",
    "joined",
    "markdown_inline",
    "plural",
    "safe",
]

NAME = 200  # one name: a tensor, node, runtime, case, exporter
ID = 400  # a composite id (case/exporter/runtime, model[shape]/node/runtime)
MESSAGE = 4_000  # a message or reason on the console
FILE_MESSAGE = 100_000  # a message in an HTML or JUnit file (Markdown has its own, smaller budget)

# C0 controls but newline and tab (handled per mode), DEL and C1, the bidi embeddings, overrides and isolates
# (Trojan Source), line/paragraph separators, lone surrogates and the two non-characters XML 1.0 forbids.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")
_UNSAFE_LINE = re.compile(f"[\t\n{_UNSAFE.pattern[1:-1]}]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def safe(text: object, limit: int | None = NAME, *, multiline: bool = False) -> str:
    """``text`` with every control character written as a visible escape, cut to ``limit`` characters.

    ``multiline`` keeps newlines and tabs (messages); otherwise they are escaped too (names, ids). A cut
    text ends with ``… (N more characters)``, counted on the original text.
    """
    text = str(text)
    more = 0
    if limit is not None and len(text) > limit:
        text, more = text[:limit], len(text) - limit
    text = _UNSAFE.sub(_escape, text.replace("\r\n", "\n")) if multiline else _UNSAFE_LINE.sub(_escape, text)
    if more:
        text += f"{chr(10) if multiline else ''}… ({more:,} more {plural(more, 'character')})"
    return text


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def markdown_inline(text: object, limit: int | None = MESSAGE) -> str:
    """Safe text for a Markdown line or table cell: one line, Markdown and HTML specials escaped."""
    line = safe(" ".join(str(text).split()), limit)
    return re.sub(r"([\\`*_\[\]|<>#~])", r"\\\1", line).replace("&", "&amp;")


def code_span(text: object, limit: int | None = ID) -> str:
    """Safe text for a single-backtick code span, which cannot hold a backtick or a table's pipe."""
    return safe(" ".join(str(text).split()), limit).replace("`", "'").replace("|", "¦")


def first_line(text: str) -> str:
    """The first line that is not blank, stripped (empty when there is none)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def plural(n: int, noun: str) -> str:
    """``noun`` as it goes with ``n``: ``lane`` for 1, ``lanes`` for 0 or 2 (every noun we count takes ``-s``).

    The one place a count chooses its noun's form: every renderer and command words its counts through it.
    """
    return noun if n == 1 else f"{noun}s"


def count(n: int, noun: str) -> str:
    """``1 lane``, ``2 lanes``, ``0 lanes``: ``n`` and :func:`plural`'s form of ``noun``."""
    return f"{n} {plural(n, noun)}"


def joined(value: object) -> str:
    """A list from a file as ``a, b, c`` (anything else as its ``str``), for environment lines."""
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
