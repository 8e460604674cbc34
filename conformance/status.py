"""The status vocabulary every verdict uses: run, check, compare, reports and the pytest plugin.

NumPy-free and import-free, so the CLI parser, ``compare`` and the renderers can read it without
loading anything heavy. A status is one of :data:`STATUSES`; which of them fail a gate and which
count as "checked" is defined here once.
"""

from __future__ import annotations

from collections.abc import Iterable

PASS, FAIL, XFAIL, XPASS, SKIP, ERROR, TIMEOUT = "pass", "fail", "xfail", "xpass", "skip", "error", "timeout"
NOT_EXERCISED = "not-exercised"  # a node of a graph branch the inputs did not take: never a pass

# Display order (console, Markdown, HTML): the outcomes that ran, then the ones that did not.
STATUSES = (PASS, FAIL, XFAIL, XPASS, ERROR, TIMEOUT, SKIP, NOT_EXERCISED)
FAILING = frozenset({FAIL, XPASS, ERROR, TIMEOUT})  # any of these fails the run or check
PASSING = frozenset({PASS, XFAIL})  # conforms (an expected divergence, confirmed, conforms to the record)
UNCHECKED = frozenset({SKIP, NOT_EXERCISED})  # nothing was compared

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def is_failing(status: str) -> bool:
    return status in FAILING


def nothing_checked(statuses: Iterable[str]) -> bool:
    """Every verdict is unchecked (skipped, not exercised): a gate that compared nothing must not pass."""
    return all(s in UNCHECKED for s in statuses)


def exit_code(statuses: Iterable[str], *, interrupted: bool = False, exempt_unchecked: bool = False) -> int:
    """The exit rule of ``run``, ``check`` and ``report``.

    130 when interrupted; 1 when a verdict fails, or when there were verdicts and none of them was
    checked, or there were none (``exempt_unchecked`` for ``--latency-only`` runs, which skip accuracy by
    design); else 0. It is :func:`verdict_word` as an exit code.
    """
    if interrupted:
        return EXIT_INTERRUPTED
    word = verdict_word(statuses, exempt_unchecked=exempt_unchecked)
    return EXIT_OK if word == "PASS" else EXIT_FAIL


def verdict_word(statuses: Iterable[str], *, exempt_unchecked: bool = False) -> str:
    """The closing word of ``run`` and ``check``: ``PASS``, ``FAIL`` or ``NOTHING CHECKED``.

    No verdict at all is "nothing checked" too; ``exempt_unchecked`` (``--latency-only``) lets an
    unchecked run pass.
    """
    seen = list(statuses)
    if any(s in FAILING for s in seen):
        return "FAIL"
    return "NOTHING CHECKED" if not exempt_unchecked and nothing_checked(seen) else "PASS"
