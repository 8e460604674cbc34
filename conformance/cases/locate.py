"""Where keys are in a suite file, and one-line :class:`CaseError` messages that name file, line and key.

``tomllib`` gives values without positions, so line numbers come from the raw
text: :class:`Layout` finds table headers and ``key =`` lines, :class:`Where`
turns a key path of one case into its line (in the case, its ``[defaults]`` or
its matrix). The TOML text itself is checked here too: nesting past
:data:`MAX_TOML_DEPTH` is refused before ``tomllib`` recurses into it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from conformance.cases.model import CaseError

__all__ = [
    "KIND_NAMES",
    "MAX_TOML_DEPTH",
    "Layout",
    "Where",
    "check_nesting",
    "deepest_bracket",
    "is_kind",
    "show",
    "toml_error",
]

# Arrays and inline tables nested deeper than this are refused (suites need 3). tomllib recurses per level
# and overflows Python's stack near 1000; every later step (repr, validation) is safe below this.
MAX_TOML_DEPTH = 100

_HEADER = re.compile(r"^\s*\[(\[?)\s*([^\[\]#]+?)\s*\]\]?\s*(?:#.*)?$")


class Layout:
    """Table headers of a TOML file and a search for ``key =`` lines within a block."""

    def __init__(self, display: str, text: str) -> None:
        self.display = display
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str]] = []  # (0-based line, dotted name without quotes/spaces)
        for number, line in enumerate(self.lines):
            match = _HEADER.match(line)
            if match:
                self.headers.append((number, re.sub(r"[\s\"']", "", match[2])))

    def _block(self, start: int, name: str) -> tuple[int, int]:
        """From the header at ``start`` to the next header that is not a sub-table of ``name``."""
        end = next((n for n, h in self.headers if n > start and not h.startswith(name + ".")), len(self.lines))
        return start, end

    def top(self) -> tuple[int, int]:
        return 0, self.headers[0][0] if self.headers else len(self.lines)

    def table(self, name: str, within: tuple[int, int] | None = None) -> tuple[int, int] | None:
        lo, hi = within or (0, len(self.lines))
        start = next((n for n, h in self.headers if lo <= n < hi and h == name), None)
        return None if start is None else self._block(start, name)

    def array_item(self, name: str, index: int, within: tuple[int, int] | None = None) -> tuple[int, int] | None:
        lo, hi = within or (0, len(self.lines))
        starts = [n for n, h in self.headers if lo <= n < hi and h == name]
        return self._block(starts[index], name) if index < len(starts) else None

    def find(self, block: tuple[int, int], path: Sequence[str], *, literal: bool = False) -> int:
        """0-based line of ``path`` in ``block``: each part at or after the previous one's line."""
        lo, hi = block
        found = lo
        parts = [".".join(path)] if literal else list(path)
        for part in parts:
            pattern = re.compile(
                r"(?:^|[\s{,.\[\"'])" + re.escape(part) + r"[\"']?\s*(?:=|\]|\.[\w-]+\s*=)"
                if not literal
                else r"[\"']" + re.escape(part) + r"[\"']\s*="
            )
            hit = next(
                (
                    n
                    for n in range(found, hi)
                    if not self.lines[n].lstrip().startswith("#") and pattern.search(self.lines[n])
                ),
                None,
            )
            if hit is None:
                break
            found = hit
        return found


class Where:
    """Locates keys of one case (or the file's top level) and raises :class:`CaseError` lines."""

    def __init__(self, layout: Layout, block: tuple[int, int] | None, defaults: Where | None = None) -> None:
        self.layout = layout
        self.block = block or (0, len(layout.lines))
        self.defaults = defaults
        self.origins: dict[tuple[str, ...], str] = {}  # key path -> "case" | "defaults" | "matrix"
        self.expect_origins: list[tuple[str, int]] = []  # per expectation: (origin, index in that table)

    @property
    def header_line(self) -> int:
        return self.block[0] + 1

    def line(self, path: Sequence[str]) -> int:
        origin = self.origins.get(tuple(path[:2])) or self.origins.get(tuple(path[:1])) or "case"
        if path and path[0] == "expect" and len(path) > 1 and path[1].isdigit():
            return self._expect_line(int(path[1]), path[2:])
        if origin == "matrix":
            matrix = self.layout.find(self.block, ["matrix"])
            return self.layout.find((matrix, self.block[1]), path[:2], literal=True) + 1
        if origin == "defaults" and self.defaults is not None:
            return self.defaults.line(path)
        return self.layout.find(self.block, path) + 1

    def _expect_line(self, index: int, rest: Sequence[str]) -> int:
        origin, own = self.expect_origins[index] if index < len(self.expect_origins) else ("case", index)
        where = self.defaults if origin == "defaults" and self.defaults is not None else self
        prefix = "defaults" if where is not self else "case"
        item = self.layout.array_item(f"{prefix}.expect", own, where.block)
        if item is None:  # written inline: expect = [{...}, ...]
            start = self.layout.find(where.block, ["expect"])
            return self.layout.find((start, where.block[1]), rest) + 1
        return self.layout.find(item, rest) + 1

    def fail(self, path: Sequence[str], problem: str) -> NoReturn:
        key = ".".join(p for p in path if not p.isdigit())
        key = key if key.isprintable() and key else repr(key)  # one line, whatever the file's keys hold
        raise CaseError(f"{self.layout.display}:{self.line(path)}: {key}: {problem}")

    def check_keys(self, table: Mapping[str, Any], valid: Sequence[str], path: tuple[str, ...]) -> None:
        for key in table:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; valid keys: {', '.join(valid)}"
                self.fail((*path, key), f"unknown key{hint}")

    def expect_type(self, value: Any, kind: type, path: Sequence[str]) -> None:
        if not is_kind(value, kind):
            self.fail(path, f"expected {KIND_NAMES[kind]}, got {show(value)}")


KIND_NAMES: dict[type, str] = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
KIND_NAMES.update({dict: "a table", list: "a list"})


def is_kind(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def toml_error(display: str, text: str, exc: Exception) -> str:
    """``file:line:column: invalid TOML: problem`` from a ``TOMLDecodeError``."""
    message = str(exc)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        return f"{display}:{found[1]}:{found[2]}: invalid TOML: {message[: found.start()]}"
    found = re.search(r"\s*\(at end of document\)$", message)
    lines = text.splitlines() or [""]
    if found:
        message = message[: found.start()]
    return f"{display}:{len(lines)}:{len(lines[-1]) + 1}: invalid TOML: {message}"


# Strings and comments (whose brackets do not nest) and the brackets that do.
_NESTING = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|([\[{])|[\]}]',
    re.S,
)


def deepest_bracket(text: str, *, stop_above: int | None = None) -> tuple[int, int, int]:
    """``(depth, line, column)`` of the most deeply nested ``[`` or ``{`` (the first past ``stop_above``)."""
    depth, best = 0, (0, 1, 1)
    for match in _NESTING.finditer(text):
        if match[1]:
            depth += 1
            if depth > best[0]:
                start = match.start()
                best = (depth, text.count("\n", 0, start) + 1, start - text.rfind("\n", 0, start))
                if stop_above is not None and depth > stop_above:
                    break
        elif match[0] in ("]", "}"):
            depth = max(depth - 1, 0)
    return best


def check_nesting(display: str, text: str, *, limit: int = MAX_TOML_DEPTH) -> None:
    """Refuse arrays and inline tables nested deeper than ``limit``, at the bracket that goes too deep."""
    depth, line, column = deepest_bracket(text, stop_above=limit)
    if depth > limit:
        raise CaseError(f"{display}:{line}:{column}: invalid TOML: nested deeper than {limit} levels")
