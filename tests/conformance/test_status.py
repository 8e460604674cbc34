"""The one status vocabulary: which statuses fail a gate, which count as checked, and the exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conformance import status
from conformance.status import (
    ERROR,
    EXIT_BAD_INPUT,
    EXIT_FAIL,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    FAIL,
    FAILING,
    NOT_EXERCISED,
    PASS,
    PASSING,
    SKIP,
    STATUSES,
    TIMEOUT,
    UNCHECKED,
    XFAIL,
    XPASS,
    exit_code,
    is_failing,
    nothing_checked,
    verdict_word,
)


class TestVocabulary:
    def test_the_statuses_in_display_order(self) -> None:
        assert STATUSES == ("pass", "fail", "xfail", "xpass", "error", "timeout", "skip", "not-exercised")

    def test_failing_passing_and_unchecked_partition_the_statuses(self) -> None:
        assert set(STATUSES) == FAILING | PASSING | UNCHECKED
        assert not (FAILING & PASSING) and not (FAILING & UNCHECKED) and not (PASSING & UNCHECKED)

    def test_an_xpass_fails_and_an_xfail_conforms(self) -> None:
        """An expected divergence that went away must be noticed; one that shows is the record, confirmed."""
        assert {FAIL, XPASS, ERROR, TIMEOUT} == FAILING
        assert {PASS, XFAIL} == PASSING
        assert {SKIP, NOT_EXERCISED} == UNCHECKED

    @pytest.mark.parametrize("name", STATUSES)
    def test_is_failing(self, name: str) -> None:
        assert is_failing(name) == (name in {"fail", "xpass", "error", "timeout"})

    def test_exit_codes(self) -> None:
        assert (EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED) == (0, 1, 2, 3, 130)

    def test_importing_it_imports_nothing_heavy(self) -> None:
        code = "import sys, conformance.status; print(sorted(m for m in ('numpy', 'rich') if m in sys.modules))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout == "[]\n"


class TestNothingChecked:
    @pytest.mark.parametrize(
        ("statuses", "expected"),
        [
            ([SKIP], True),
            ([SKIP, NOT_EXERCISED], True),
            ([], True),
            ([SKIP, PASS], False),
            ([NOT_EXERCISED, FAIL], False),
            ([XFAIL], False),
        ],
    )
    def test_only_unchecked_verdicts(self, statuses: list[str], expected: bool) -> None:
        assert nothing_checked(statuses) is expected

    def test_takes_any_iterable(self) -> None:
        assert nothing_checked(s for s in (SKIP, SKIP))
        assert not nothing_checked(iter([PASS]))


class TestVerdict:
    @pytest.mark.parametrize(
        ("statuses", "word", "code"),
        [
            ([PASS, XFAIL, SKIP], "PASS", 0),
            ([PASS, NOT_EXERCISED], "PASS", 0),
            ([PASS, FAIL], "FAIL", 1),
            ([PASS, XPASS], "FAIL", 1),
            ([PASS, ERROR], "FAIL", 1),
            ([TIMEOUT], "FAIL", 1),
            ([SKIP, FAIL], "FAIL", 1),
            ([SKIP, SKIP], "NOTHING CHECKED", 1),
            ([NOT_EXERCISED], "NOTHING CHECKED", 1),
            ([], "NOTHING CHECKED", 1),
        ],
    )
    def test_word_and_exit_code_agree(self, statuses: list[str], word: str, code: int) -> None:
        assert verdict_word(statuses) == word
        assert exit_code(statuses) == code
        assert exit_code(iter(statuses)) == code  # a generator is read once

    def test_latency_only_runs_may_check_nothing(self) -> None:
        assert exit_code([SKIP, SKIP], exempt_unchecked=True) == 0
        assert verdict_word([SKIP], exempt_unchecked=True) == "PASS"
        assert exit_code([SKIP, ERROR], exempt_unchecked=True) == 1  # a failure still fails

    @pytest.mark.parametrize("statuses", [[PASS], [FAIL], [SKIP], []])
    def test_an_interrupted_run_exits_130_whatever_it_found(self, statuses: list[str]) -> None:
        assert exit_code(statuses, interrupted=True) == 130


def test_the_constants_are_the_statuses() -> None:
    """Every status has its constant, and no constant is outside the vocabulary."""
    assert {getattr(status, n) for n in ("PASS", "FAIL", "XFAIL", "XPASS", "SKIP", "ERROR", "TIMEOUT")} | {
        NOT_EXERCISED
    } == set(STATUSES)
