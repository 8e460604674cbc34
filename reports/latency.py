"""Latency tables: one per case, its lanes fastest first, with the speed-up over a baseline runtime.

Reads the ``latency`` entry of each result record (``conformance.timing.Latency.to_dict``:
``median_ms``, ``p90_ms``, ``p99_ms``, ``min_ms``, ``stdev_ms``, ``ci_low_ms``,
``ci_high_ms``, ``count``, ``converged``, optionally ``tokens_per_s``). Lanes without
one (skipped, errored, not timed) are left out.

Speed-up is the baseline's median over the lane's: against the baseline runtime's lane
of the same case and exporter, or, where that exporter has no baseline lane (torch
modules, the NumPy reference), against the baseline runtime's fastest lane of the case,
marked ``*``. A median whose 95% interval missed its target width is marked ``~``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

COLUMNS = (
    "runtime",
    "exporter",
    "status",
    "median ms",
    "±CI",
    "p90 ms",
    "p99 ms",
    "min ms",
    "stdev ms",
    "samples",
    "tokens/s",
    "speed-up",
)
RIGHT = frozenset(COLUMNS[3:])
FALLBACK_MARK = "*"
UNCONVERGED_MARK = "~"


@dataclass(frozen=True)
class _Row:
    cells: tuple[str, ...]
    is_baseline: bool
    fallback: bool
    converged: bool


def _ms(value: float) -> str:
    """Milliseconds with about four significant digits, without exponents."""
    if value >= 100:
        return f"{value:.1f}"
    if value >= 10:
        return f"{value:.2f}"
    if value >= 0.01:
        return f"{value:.3f}"
    return f"{value:.4f}"


def _rows(results: list[dict[str, Any]], baseline: str | None) -> dict[str, list[_Row]]:
    """Per case (sorted), the rows of its timed lanes, fastest first."""
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in results:
        if isinstance(record.get("latency"), dict):
            by_case[record["case"]].append(record)
    tables: dict[str, list[_Row]] = {}
    for case in sorted(by_case):
        lanes = sorted(by_case[case], key=lambda r: (r["latency"]["median_ms"], r["id"]))
        own = {r["exporter"]: r["latency"]["median_ms"] for r in lanes if r["runtime"] == baseline}
        best = min(own.values(), default=None)
        rows = []
        for record in lanes:
            latency = record["latency"]
            median = latency["median_ms"]
            reference, fallback = own.get(record["exporter"]), False
            if reference is None and best is not None:
                reference, fallback = best, True
            is_baseline = baseline is not None and record["runtime"] == baseline
            if is_baseline:
                speedup = "1.00x"
            elif reference is None or median <= 0:
                speedup = ""
            else:
                speedup = f"{reference / median:.2f}x" + (FALLBACK_MARK if fallback else "")
            converged = bool(latency.get("converged", True))
            half = (latency["ci_high_ms"] - latency["ci_low_ms"]) / 2 / median * 100 if median > 0 else 0.0
            tokens = latency.get("tokens_per_s")
            cells = (
                record["runtime"],
                record["exporter"],
                record["status"],
                _ms(median) + ("" if converged else UNCONVERGED_MARK),
                f"{half:.1f}%",
                _ms(latency["p90_ms"]),
                _ms(latency["p99_ms"]),
                _ms(latency["min_ms"]),
                _ms(latency["stdev_ms"]),
                str(latency["count"]),
                f"{tokens:,.0f}" if isinstance(tokens, (int, float)) else "",
                speedup,
            )
            rows.append(_Row(cells, is_baseline, fallback and not is_baseline, converged))
        tables[case] = rows
    return tables


def _columns(baseline: str | None) -> tuple[str, ...]:
    return COLUMNS if baseline is not None else COLUMNS[:-1]


def _notes(rows: list[_Row], baseline: str | None) -> list[str]:
    notes = []
    if any(r.fallback for r in rows):
        notes.append(
            f"{FALLBACK_MARK} vs the fastest {baseline} lane of the case (no {baseline} lane for that exporter)"
        )
    if not all(r.converged for r in rows):
        notes.append(f"{UNCONVERGED_MARK} the median's 95% interval did not reach its target width within the budget")
    return notes


def latency_tables(results: list[dict[str, Any]], *, baseline: str | None = "ort-cpu") -> list[Table]:
    """One rich table per case with timed lanes; ``baseline=None`` drops the speed-up column."""
    tables = []
    columns = _columns(baseline)
    for case, rows in _rows(results, baseline).items():
        notes = _notes(rows, baseline)
        # Text, not str: case ids such as "clip[forward]" are not rich markup.
        table = Table(
            title=Text(f"Latency: {case}"),
            title_justify="left",
            caption=Text("\n".join(notes)) if notes else None,
            caption_justify="left",
        )
        for name in columns:
            table.add_column(name, justify="right" if name in RIGHT else "left", no_wrap=True)
        for row in rows:
            table.add_row(*map(Text, row.cells[: len(columns)]), style="bold" if row.is_baseline else None)
        tables.append(table)
    return tables


def latency_markdown(results: list[dict[str, Any]], *, baseline: str | None = "ort-cpu") -> str:
    """The same tables in GitHub-flavoured Markdown (a CI job summary); empty when nothing was timed."""
    columns = _columns(baseline)
    parts = []
    for case, rows in _rows(results, baseline).items():
        lines = [
            f"### Latency: {case}",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "|".join("---:" if name in RIGHT else "---" for name in columns) + "|",
        ]
        for row in rows:
            cells = [_escape(c) for c in row.cells[: len(columns)]]
            if row.is_baseline:
                cells[0] = f"**{cells[0]}**"
            lines.append("| " + " | ".join(cells) + " |")
        notes = _notes(rows, baseline)
        if notes:
            lines += ["", *[_escape(note) + "  " for note in notes]]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + ("\n" if parts else "")


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("~", "\\~")
