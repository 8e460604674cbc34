"""Rich console rendering: the run summary (runtimes x status) and the failures explained."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

STATUS_ORDER = ("pass", "fail", "xfail", "xpass", "error", "timeout", "skip")
STATUS_STYLE = {
    "pass": "green",
    "fail": "bold red",
    "xfail": "yellow",
    "xpass": "bold magenta",
    "error": "bold red",
    "timeout": "bold red",
    "skip": "dim",
}
FAILING = ("fail", "xpass", "error", "timeout")


def summary_table(results: list[dict[str, Any]], *, title: str = "Results") -> Table:
    """One row per runtime, one column per status, counts of lanes."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for record in results:
        counts[record["runtime"]][record["status"]] += 1
    statuses = [s for s in STATUS_ORDER if any(c[s] for c in counts.values())]
    table = Table(title=title, title_justify="left")
    table.add_column("runtime")
    for status in statuses:
        table.add_column(status, justify="right", style=STATUS_STYLE[status])
    table.add_column("total", justify="right")
    for runtime in sorted(counts):
        row = counts[runtime]
        table.add_row(runtime, *[str(row[s]) if row[s] else "" for s in statuses], str(sum(row.values())))
    if len(counts) > 1:
        total: Counter[str] = Counter()
        for row in counts.values():
            total.update(row)
        table.add_row(
            Text("all", style="bold"), *[str(total[s]) if total[s] else "" for s in statuses], str(sum(total.values()))
        )
    return table


def failures(results: list[dict[str, Any]]) -> RenderableType | None:
    """Each failing lane with its message; ``None`` when nothing failed."""
    failing = sorted((r for r in results if r["status"] in FAILING), key=lambda r: r["id"])
    if not failing:
        return None
    parts: list[RenderableType] = [Text(f"{len(failing)} failing lane(s):", style="bold red")]
    for record in failing:
        parts.append(Text(f"\n{record['status'].upper()} {record['id']}", style=STATUS_STYLE[record["status"]]))
        parts.append(Text(_indent(record.get("message", ""))))
    return Group(*parts)


def expected(results: list[dict[str, Any]]) -> RenderableType | None:
    """Expected divergences that showed up, grouped by reason."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for record in results:
        if record["status"] == "xfail":
            by_reason[record["expected"]["reason"]].append(record["id"])
    if not by_reason:
        return None
    table = Table(title="Expected divergences (confirmed by this run)", title_justify="left", show_lines=False)
    table.add_column("lanes", justify="right")
    table.add_column("reason")
    table.add_column("example lane", style="dim")
    for reason, ids in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        table.add_row(str(len(ids)), reason, sorted(ids)[0])
    return table


def skipped(results: list[dict[str, Any]]) -> RenderableType | None:
    """Why lanes were skipped, one line per distinct reason."""
    reasons = Counter(r["message"] for r in results if r["status"] == "skip")
    if not reasons:
        return None
    lines = [Text("Skipped:", style="dim bold")]
    for reason, count in reasons.most_common():
        lines.append(Text(f"  {count:4d} x {reason}", style="dim"))
    return Group(*lines)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())
