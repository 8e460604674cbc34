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

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from conformance.records import Result
from reports.text import NAME, markdown_inline, safe

__all__ = ["LATENCY_KEYS", "latency_markdown", "latency_tables", "number", "timed"]

# What a lane's ``latency`` must hold, as numbers, to be shown (``conformance.timing.Latency.to_dict``).
LATENCY_KEYS = ("median_ms", "p90_ms", "p99_ms", "min_ms", "stdev_ms", "ci_low_ms", "ci_high_ms", "count")

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


def number(value: object) -> float | None:
    """``value`` as a finite float, or ``None`` (a bool, a string, NaN and infinity are not numbers here)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def timed(result: Result) -> Mapping[str, Any] | None:
    """The result's latency when it holds every number a table shows, else ``None``."""
    latency = result.latency
    if latency is None or any(number(latency.get(key)) is None for key in LATENCY_KEYS):
        return None
    return latency


def _rows(results: Sequence[Result], baseline: str | None) -> dict[str, list[_Row]]:
    """Per case (sorted), the rows of its timed lanes, fastest first."""
    by_case: dict[str, list[tuple[Result, Mapping[str, Any]]]] = defaultdict(list)
    for result in results:
        latency = timed(result)
        if latency is not None:
            by_case[result.case].append((result, latency))
    tables: dict[str, list[_Row]] = {}
    for case in sorted(by_case):
        lanes = sorted(by_case[case], key=lambda lane: (lane[1]["median_ms"], lane[0].id))
        own = {r.exporter: latency["median_ms"] for r, latency in lanes if r.runtime == baseline}
        best = min(own.values(), default=None)
        rows = []
        for record, latency in lanes:
            median = latency["median_ms"]
            reference, fallback = own.get(record.exporter), False
            if reference is None and best is not None:
                reference, fallback = best, True
            is_baseline = baseline is not None and record.runtime == baseline
            if is_baseline:
                speedup = "1.00x"
            elif reference is None or median <= 0:
                speedup = ""
            else:
                speedup = f"{reference / median:.2f}x" + (FALLBACK_MARK if fallback else "")
            converged = bool(latency.get("converged", True))
            half = (latency["ci_high_ms"] - latency["ci_low_ms"]) / 2 / median * 100 if median > 0 else 0.0
            tokens = number(latency.get("tokens_per_s"))
            cells = (
                safe(record.runtime, NAME),
                safe(record.exporter, NAME),
                record.status,
                _ms(median) + ("" if converged else UNCONVERGED_MARK),
                f"{half:.1f}%",
                _ms(latency["p90_ms"]),
                _ms(latency["p99_ms"]),
                _ms(latency["min_ms"]),
                _ms(latency["stdev_ms"]),
                str(int(latency["count"])),
                f"{tokens:,.0f}" if tokens is not None else "",
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


def latency_tables(results: Sequence[Result], *, baseline: str | None = "ort-cpu") -> list[Table]:
    """One rich table per case with timed lanes; ``baseline=None`` drops the speed-up column."""
    tables = []
    columns = _columns(baseline)
    for case, rows in _rows(results, baseline).items():
        notes = _notes(rows, baseline)
        # Text, not str: case ids such as "clip[forward]" are not rich markup.
        table = Table(
            title=Text(f"Latency: {safe(case, NAME)}"),
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


def latency_markdown(results: Sequence[Result], *, baseline: str | None = "ort-cpu") -> str:
    """The same tables in GitHub-flavoured Markdown (a CI job summary); empty when nothing was timed."""
    columns = _columns(baseline)
    parts = []
    for case, rows in _rows(results, baseline).items():
        lines = [
            f"### Latency: {markdown_inline(case, NAME)}",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "|".join("---:" if name in RIGHT else "---" for name in columns) + "|",
        ]
        for row in rows:
            cells = [markdown_inline(c, None) for c in row.cells[: len(columns)]]
            if row.is_baseline:
                cells[0] = f"**{cells[0]}**"
            lines.append("| " + " | ".join(cells) + " |")
        notes = _notes(rows, baseline)
        if notes:
            lines += ["", *[markdown_inline(note, None) + "  " for note in notes]]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + ("\n" if parts else "")
