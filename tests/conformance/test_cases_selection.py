"""``-k`` selection (conformance/cases/selection.py): the expression language, its errors and its limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.cases import Case, SelectionError, load_suite, select
from conformance.cases.selection import MAX_DEPTH
from tests.conformance.case_files import load


@pytest.fixture
def cases(tmp_path: Path) -> list[Case]:
    suite = load(
        tmp_path,
        """
        [[case]]
        id = "plain"
        tags = ["core"]

        [[case]]
        id = "deep"
        tags = ["stack"]
        model = { num_layers = 2, direction = "bidirectional" }

        [[case]]
        id = "peep"
        model = { peepholes = true }
        inputs = { sequence_lens = "mixed" }
        """,
    )
    return list(suite.cases)


def ids(cases: list[Case], expr: str | None) -> list[str]:
    return [c.id for c in select(cases, expr)]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (None, ["plain", "deep", "peep"]),
        ("", ["plain", "deep", "peep"]),
        ("deep", ["deep"]),
        ("DEEP", ["deep"]),
        ("core", ["plain"]),
        ("bidirectional", ["deep"]),
        ("peepholes", ["peep"]),
        ("seq_lens:mixed", ["peep"]),
        ("t", ["plain", "deep", "peep"]),  # the suite name: a substring everywhere
        ("not deep", ["plain", "peep"]),
        ("core or stack", ["plain", "deep"]),
        ("e and not core", ["deep", "peep"]),
        ("not (core or stack)", ["peep"]),
        ("(core or stack) and not bidirectional", ["plain"]),
        ("not not core", ["plain"]),
        ("core or stack and bidirectional", ["plain", "deep"]),  # and binds tighter
        ("(core or stack) and bidirectional", ["deep"]),
        ("core and stack or peep", ["peep"]),
        ('"2 layers"', ["deep"]),
        ("'2 layers' or peep", ["deep", "peep"]),
        ("B=3 and H=5", ["plain", "deep", "peep"]),
        ("nothing", []),
    ],
)
def test_expressions(cases: list[Case], expr: str | None, expected: list[str]) -> None:
    assert ids(cases, expr) == expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("core and", "invalid -k expression 'core and': expected a name at column 9, got the end of the expression"),
        ("(core", "invalid -k expression '(core': expected ')' at the end"),
        ("core)", "invalid -k expression 'core)': unexpected ')' at column 5"),
        ("core stack", "invalid -k expression 'core stack': unexpected 'stack' at column 6"),
        ("and core", "invalid -k expression 'and core': expected a name at column 1, got 'and'"),
        ("'core", 'invalid -k expression "\'core": unbalanced quote at column 1'),
    ],
)
def test_bad_expressions(cases: list[Case], expr: str, message: str) -> None:
    with pytest.raises(SelectionError) as info:
        select(cases, expr)
    assert str(info.value) == message


class TestLimits:
    """No expression reaches Python's recursion limit: nesting is capped, chains are flat."""

    @pytest.mark.parametrize(
        ("expr", "column"),
        [("not " * 3000 + "core", 401), ("(" * 3000 + "core" + ")" * 3000, 101), ("not (" * 51 + "x", 251)],
        ids=["not-x3000", "parentheses-x3000", "mixed"],
    )
    def test_nesting_past_the_limit(self, cases: list[Case], expr: str, column: int) -> None:
        assert MAX_DEPTH == 100
        with pytest.raises(SelectionError) as info:
            select(cases, expr)
        assert str(info.value) == f"invalid -k expression: nested deeper than 100 levels at column {column}"

    def test_nesting_at_the_limit(self, cases: list[Case]) -> None:
        assert ids(cases, "not " * 100 + "core") == ["plain"]
        assert ids(cases, "not " * 99 + "core") == ["deep", "peep"]
        assert ids(cases, "(" * 100 + "core" + ")" * 100) == ["plain"]

    def test_long_chains(self, cases: list[Case]) -> None:
        assert ids(cases, " or ".join(["nothing"] * 20_000 + ["core"])) == ["plain"]
        assert ids(cases, " and ".join(["e"] * 20_000 + ["not core"])) == ["deep", "peep"]


def test_packaged_selection() -> None:
    full = load_suite("full").cases
    clip = select(full, "clip and not control")
    assert clip
    assert all(c.lstm.clip is not None for c in clip)
    assert {c.id for c in select(full, "stack and bidirectional")} >= {"stack[bidirectional-2]"}
