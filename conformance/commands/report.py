"""``conformance report``: render a result file as console text, JSON, JUnit XML, Markdown or HTML."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

FORMATS = ("console", "json", "junit", "markdown", "html")
_RECORD_KEYS = ("id", "suite", "case", "exporter", "runtime", "status")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="render a result file (results.json) as console text, JSON, JUnit XML, Markdown or HTML",
        description="Render the results.json of a `conformance run` in another format. Exit code 1 when the "
        "file holds a failing lane (fail, xpass, error, timeout) or only skipped lanes, 130 for an interrupted run: "
        "what `run` returned.",
    )
    p.add_argument("results", metavar="RESULTS.json", help="the results.json a run wrote")
    p.add_argument("--format", choices=FORMATS, default="console", help="output format (default console)")
    p.add_argument("--out", metavar="FILE", help="write to FILE (atomically) instead of standard output")


def main(args: argparse.Namespace) -> int:
    from conformance.lane import exit_code
    from reports.json_report import write_text_atomic

    document = load_document(Path(args.results))
    out = Path(args.out) if getattr(args, "out", None) else None
    text = render(document, args.format, width=None if out is None else 120)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text_atomic(out, text)
        print(f"{args.format} report: {out}", file=sys.stderr)
    run = document.get("run") or {}
    return exit_code(
        document["results"], interrupted=bool(run.get("interrupted")), latency_only=bool(run.get("latency_only"))
    )


def load_document(path: Path) -> dict[str, Any]:
    """A result document, or ``ValueError`` with one line that names the file and what is wrong."""
    from reports import json_report

    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give its results.json")
    try:
        document = json_report.load(path)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a conformance result file (not UTF-8 text)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    results = document.get("results")
    if not isinstance(results, list):
        raise ValueError(f"{path}: not a conformance result file (no 'results' list)")
    for index, record in enumerate(results):
        missing = [key for key in _RECORD_KEYS if not isinstance(record, dict) or key not in record]
        if missing:
            raise ValueError(f"{path}: results[{index}] is not a lane record (missing {', '.join(missing)})")
    return document


def render(document: dict[str, Any], fmt: str, *, width: int | None = None) -> str:
    """``document`` in format ``fmt`` (one of ``FORMATS``), as text."""
    if fmt == "console":
        return _console(document, width=width)
    if fmt == "json":
        import json

        return json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n"
    if fmt == "junit":
        from reports.junit import render_junit

        return render_junit(document)
    if fmt == "markdown":
        from reports.markdown import render_markdown

        return render_markdown(document)
    if fmt == "html":
        from reports.html import render_html

        return render_html(document)
    raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _console(document: dict[str, Any], *, width: int | None) -> str:
    """The console summary that ``conformance run`` prints; to a terminal in colour, to a file in plain text."""
    from rich.console import Console

    from reports import console as console_report
    from reports.latency import latency_tables

    results: list[dict[str, Any]] = document["results"]
    run = document.get("run") or {}
    suites = ", ".join(map(str, run.get("suites") or [])) or "results"
    wall = run.get("wall_seconds")
    title = f"{suites}: {len(results)} lanes" + (f" in {wall:.1f} s" if isinstance(wall, (int, float)) else "")
    buffer = io.StringIO()
    to_terminal = width is None and sys.stdout.isatty()
    console = Console(
        file=buffer,
        width=width or (None if to_terminal else 120),
        force_terminal=to_terminal,
        no_color=not to_terminal or None,
        highlight=False,
        markup=False,  # lane ids such as "clip[forward]/..." are text, not rich markup
    )
    console.print(console_report.summary_table(results, title=title))
    parts = [console_report.expected(results), console_report.skipped(results), console_report.failures(results)]
    if any(isinstance(r.get("latency"), dict) for r in results):
        parts += latency_tables(results)
    for part in parts:
        if part is not None:
            console.print(part)
    return buffer.getvalue()
