"""What every command does with results: the console summary, the report files, the exit code."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conformance.records import ResultDocument
from exporters.errors import BadInputError


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
            try:
                write_text_atomic(Path(path), reports.render(fmt, document))
            except OSError as exc:  # a full disk, a folder given as the file, no permission
                raise BadInputError(f"--{fmt} {path}: cannot write the report ({exc.strerror or exc})") from None
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


def refuse_overwrites(files: Sequence[tuple[str, str | Path | None]], protected: Mapping[Path, str]) -> None:
    """Refuse report paths that would overwrite an input (``protected``: path -> what it is) or each other,
    before any work is done: a report written over the model or the run's journal once lost them."""
    seen: dict[Path, str] = {}
    for fmt, path in files:
        if not path:
            continue
        resolved = Path(path).resolve()
        for other, what in protected.items():
            if resolved == other.resolve():
                raise BadInputError(f"--{fmt} {path}: that is {what}; the report would overwrite it")
        if resolved in seen:
            raise BadInputError(f"--{fmt} {path}: also given to --{seen[resolved]}; one file per report")
        seen[resolved] = fmt
