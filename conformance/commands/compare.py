"""``conformance compare BASE.json HEAD.json``: what got worse and what got better between two runs.

Lanes are matched by id (``conformance.changes`` computes the changes); this module renders them. Exit 1
on a new failure, a significant slowdown or a lane no longer checked, else 0; bad input exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from conformance.changes import BETTER, FAILS, ORDER, WORSE, Change, Comparison
from conformance.commands.options import number


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "compare",
        help="compare two result files: new failures, shrunk headroom, latency regressions",
        description="Match the lanes of two results.json files by id and report what got worse and better. "
        "Exit 1 on a new accuracy failure or a significant slowdown, 0 otherwise, 2 on bad input.",
    )
    p.add_argument("base", help="results.json of the reference run")
    p.add_argument("head", help="results.json of the run under test")
    p.add_argument(
        "--max-slowdown",
        type=number(minimum=1.0, maximum=1000.0),
        default=1.10,
        metavar="RATIO",
        help="flag a lane whose median latency is significantly more than RATIO times the base's (default 1.10)",
    )
    p.add_argument(
        "--confidence",
        type=number(minimum=0.0, maximum=0.999999),
        default=0.95,
        help="confidence of the latency ratio's bootstrap interval (default 0.95)",
    )
    return p


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.text import Text

    from conformance.changes import by_id, compare_runs, environment_changes
    from conformance.files import load_document

    base_path, head_path = Path(args.base), Path(args.head)
    base, head = load_document(base_path), load_document(head_path)
    comparison = compare_runs(
        by_id(base, str(base_path)),
        by_id(head, str(head_path)),
        max_slowdown=args.max_slowdown,
        confidence=args.confidence,
    )
    comparison = dataclasses.replace(comparison, environment=environment_changes(base, head))
    console = Console(highlight=False)
    table = changes_table(comparison, title=f"{base_path} -> {head_path}")
    if table is not None:
        console.print(table)
    for line in comparison.environment:
        console.print(Text(f"note: the machines differ ({line}): latency compares them as well as the code", "dim"))
    line = verdict(comparison, max_slowdown=args.max_slowdown)
    console.print(Text(line, "bold red" if comparison.failed else "bold green"))
    return 1 if comparison.failed else 0


# --- rendering ------------------------------------------------------------------------------------


def _first_line(text: str, limit: int = 100) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _cells(change: Change) -> tuple[str, str]:
    """(base -> head, detail) of one change."""
    if change.latency is not None:
        lat = change.latency
        return (
            f"{lat.base_median:.3f} -> {lat.head_median:.3f} ms",
            f"x{lat.ratio:.2f}, interval {lat.ci_low:.2f}-{lat.ci_high:.2f}",
        )
    if change.headroom is not None:
        room = change.headroom
        factor = f"x{room.head / room.base:.3g}" if room.base > 0 else "up from 0"
        return f"{room.output} {room.base:.3g} -> {room.head:.3g}", f"headroom {factor} (error / allowed; 1 fails)"
    return f"{change.base_status or '-'} -> {change.head_status or '-'}", _first_line(change.message)


def changes_table(comparison: Comparison, *, title: str = "Changes") -> Any:
    """A rich table of every change, worst first; ``None`` when nothing changed."""
    from rich.table import Table
    from rich.text import Text

    if not comparison.changes:
        return None
    # Text, not str: lane ids such as "clip[forward]/..." are not rich markup.
    table = Table(title=Text(title), title_justify="left")
    table.add_column("lane", overflow="fold", min_width=16)
    table.add_column("change", no_wrap=True)
    table.add_column("base -> head", no_wrap=True)
    table.add_column("detail", overflow="fold", min_width=16)
    for change in comparison.changes:
        style = "red" if change.kind in WORSE else "green" if change.kind in BETTER else "dim"
        if change.kind in FAILS:
            style = "bold red"
        table.add_row(*(Text(cell) for cell in (change.lane, change.kind, *_cells(change))), style=style)
    return table


def verdict(comparison: Comparison, *, max_slowdown: float) -> str:
    """One line: FAIL or OK, with the counts that decided it."""
    found = [f"{comparison.count(kind)} {kind}" for kind in ORDER if comparison.count(kind)]
    scope = f"{comparison.compared} lanes compared, {comparison.timed} timed in both"
    threshold = f"slower = median ratio significantly above x{max_slowdown:.2f}"
    if comparison.failed:
        return f"FAIL: {', '.join(found)} ({scope}; {threshold})"
    detail = ", ".join(found) if found else "no changes"
    return f"OK: no new failure, no significant slowdown; {detail} ({scope})"
