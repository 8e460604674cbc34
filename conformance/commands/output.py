"""What every command does with results: the console summary, the report files, the exit code."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conformance.records import ResultDocument


def console(*, stderr: bool = False) -> Any:
    """A rich console that never reads markup in text (ids and names come from users' files)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, markup=False)


def print_summary(
    document: ResultDocument, *, title: str, show_latency: bool = False, baseline: str = "ort-cpu", out: Any = None
) -> None:
    """The one console summary of ``run``, ``check``, ``report`` and ``--against-torch``."""
    from reports.console import summary

    target = out or console()
    for part in summary(document, title=title, show_latency=show_latency, baseline=baseline):
        target.print(part)


def write_reports(document: ResultDocument, files: Sequence[tuple[str, str | Path | None]]) -> list[str]:
    """Render each ``(format, path)`` whose path is given, atomically; return the paths written."""
    import reports
    from conformance.files import write_text_atomic

    written = []
    for fmt, path in files:
        if path:
            write_text_atomic(Path(path), reports.render(fmt, document))
            written.append(str(path))
    return written


def report_files(args: Any) -> list[tuple[str, str | Path | None]]:
    """The ``--json/--junit/--markdown/--html FILE`` options of a command, as (format, path) pairs."""
    return [(fmt, getattr(args, fmt, None)) for fmt in ("json", "junit", "markdown", "html")]


def add_report_options(parser: Any, *, json: bool = True) -> None:
    if json:
        parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    parser.add_argument("--markdown", metavar="FILE", help="also write a Markdown report (e.g. $GITHUB_STEP_SUMMARY)")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")


def argv() -> list[str]:
    return sys.argv[1:]
