"""``conformance report``: render a result file as console text, JSON, JUnit XML, Markdown or HTML."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

FORMATS = ("console", "json", "junit", "markdown", "html")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="render a result file (results.json) as console text, JSON, JUnit XML, Markdown or HTML",
        description="Render the results.json of a `conformance run` or `check` in another format. Exit code 1 when "
        "the file holds a failing lane (fail, xpass, error, timeout) or only skipped lanes, 130 for an interrupted "
        "run: what the command that wrote it returned.",
    )
    p.add_argument("results", metavar="RESULTS.json", help="the results.json a run wrote")
    p.add_argument("--format", choices=FORMATS, default="console", help="output format (default console)")
    p.add_argument("--out", metavar="FILE", help="write to FILE (atomically) instead of standard output")


def main(args: argparse.Namespace) -> int:
    from conformance.files import load_document, write_text_atomic
    from conformance.status import exit_code

    document = load_document(Path(args.results))
    out = Path(args.out) if args.out else None
    text = render(document, args.format, width=None if out is None else 120)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text_atomic(out, text)
        print(f"{args.format} report: {out}", file=sys.stderr)
    run = document.run
    return exit_code(
        [r.status for r in document.results],
        interrupted=bool(run.get("interrupted")),
        exempt_unchecked=bool(run.get("latency_only")),
    )


def render(document: Any, fmt: str, *, width: int | None = None) -> str:
    """``document`` in format ``fmt`` (one of ``FORMATS``), as text."""
    if fmt == "console":
        return _console(document, width=width)
    import reports

    return reports.render(fmt, document)


def _console(document: Any, *, width: int | None) -> str:
    """The console summary that ``run`` and ``check`` print; to a terminal in colour, to a file in plain text."""
    from rich.console import Console

    from conformance.commands.output import print_summary
    from reports.console import default_title

    title = default_title(document)
    buffer = io.StringIO()
    to_terminal = width is None and sys.stdout.isatty()
    console = Console(
        file=buffer,
        width=width or (None if to_terminal else 120),
        force_terminal=to_terminal,
        no_color=not to_terminal or None,
        highlight=False,
        markup=False,
    )
    timed = any(r.latency is not None for r in document.results)
    print_summary(document, title=title, show_latency=timed, out=console)
    return buffer.getvalue()
