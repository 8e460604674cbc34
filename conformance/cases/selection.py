"""``-k`` selection: pytest-style boolean expressions over case ids, suites, tags and features.

Why a parser of our own (decided when cases.py was split): the matcher that
defines this syntax, ``_pytest.mark.expression``, is private to pytest (no
stability promise) and pytest is a development dependency only, while ``-k``
is part of the CLI every user installs. ``ast.parse`` of a rewritten
expression would accept Python, not this language (``seq_lens:mixed``,
``B=3`` and ``"2 layers"`` are not identifiers). A parsing library (pyparsing,
lark, boolean.py) would be a new runtime dependency and still need this
grammar and tokenizer written out; the grammar is four rules, so the
recursive-descent parser below is the smaller thing to keep.

Nesting (``not`` and parentheses) is capped at :data:`MAX_DEPTH` levels, so
no expression can exhaust Python's stack, and ``and``/``or`` chains build
one flat node, so a long chain evaluates without recursion.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NoReturn

from conformance.cases.model import Case
from exporters.errors import BadInputError

__all__ = ["MAX_DEPTH", "SelectionError", "select"]

MAX_DEPTH = 100  # levels of ``not`` and parentheses together; a real selection needs a few

_TOKEN = re.compile(r"\s*(?:(\()|(\))|\"([^\"]*)\"|'([^']*)'|([^\s()\"']+))")

Node = tuple[Any, ...]  # ("name", text) | ("not", node) | ("and" | "or", (node, node, ...))


class SelectionError(BadInputError):
    """A ``-k`` expression that does not parse; ``str()`` is one line."""


def select(cases: Iterable[Case], expr: str | None) -> list[Case]:
    """Cases whose id, suite, tags or features contain the names of a pytest-style ``-k`` expression.

    Names match as case-insensitive substrings and combine with ``and``, ``or``,
    ``not`` and parentheses; quote a name that holds spaces (``"2 layers"``).
    """
    if expr is None or not expr.strip():
        return list(cases)
    tree = _Parser(expr).parse()
    return [case for case in cases if _evaluate(tree, _haystack(case))]


def _haystack(case: Case) -> tuple[str, ...]:
    return tuple(s.lower() for s in (case.id, case.suite, *case.tags, *case.features()))


def _evaluate(node: Node, haystack: tuple[str, ...]) -> bool:
    op = node[0]
    if op == "name":
        return any(node[1] in s for s in haystack)
    if op == "not":
        return not _evaluate(node[1], haystack)
    wanted = op == "or"  # "or" stops at the first true operand, "and" at the first false one
    for operand in node[1]:
        if _evaluate(operand, haystack) is wanted:
            return wanted
    return not wanted


class _Parser:
    """``expr := and ("or" and)*; and := not ("and" not)*; not := "not" not | "(" expr ")" | name``."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, column)
        pos = 0
        while pos < len(expr):
            match = _TOKEN.match(expr, pos)
            if match is None or match.end() == pos:
                if expr[pos:].strip():
                    self._error(f"unbalanced quote at column {pos + 1}")
                break
            column = match.start() + len(match[0]) - len(match[0].lstrip()) + 1
            if match[1] or match[2]:
                self.tokens.append((match[1] or match[2], match[1] or match[2], column))
            elif match[3] is not None or match[4] is not None:
                self.tokens.append(("name", match[3] if match[3] is not None else match[4], column))
            else:
                word = match[5]
                self.tokens.append((word if word in ("and", "or", "not") else "name", word, column))
            pos = match.end()
        self.index = 0
        self.depth = 0

    def _error(self, problem: str) -> NoReturn:
        raise SelectionError(f"invalid -k expression {self.expr!r}: {problem}")

    def _peek(self) -> str | None:
        return self.tokens[self.index][0] if self.index < len(self.tokens) else None

    def _take(self) -> tuple[str, str, int]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> Node:
        node = self._or()
        if self.index < len(self.tokens):
            _, text, column = self.tokens[self.index]
            self._error(f"unexpected {text!r} at column {column}")
        return node

    def _chain(self, op: str, operand: Node, more: Any) -> Node:
        operands = [operand]
        while self._peek() == op:
            self._take()
            operands.append(more())
        return operand if len(operands) == 1 else (op, tuple(operands))

    def _or(self) -> Node:
        return self._chain("or", self._and(), self._and)

    def _and(self) -> Node:
        return self._chain("and", self._not(), self._not)

    def _not(self) -> Node:
        kind = self._peek()
        if kind is None:
            self._error(f"expected a name at column {len(self.expr) + 1}, got the end of the expression")
        kind, text, column = self._take()
        if kind in ("not", "("):
            self.depth += 1
            if self.depth > MAX_DEPTH:  # the expression is not repeated: it is this deep, so it is long
                raise SelectionError(f"invalid -k expression: nested deeper than {MAX_DEPTH} levels at column {column}")
            node = ("not", self._not()) if kind == "not" else self._group()
            self.depth -= 1
            return node
        if kind != "name":
            self._error(f"expected a name at column {column}, got {text!r}")
        return ("name", text.lower())

    def _group(self) -> Node:
        node = self._or()
        if self._peek() != ")":
            where = f"column {self.tokens[self.index][2]}" if self.index < len(self.tokens) else "the end"
            self._error(f"expected ')' at {where}")
        self._take()
        return node
