"""``conformance compare BASE.json HEAD.json``: what got worse and what got better between two runs.

Lanes are matched by id. Per lane: accuracy (a new failure, a fix, another status
change, an output whose headroom shrank sharply) and latency (the ratio of median
latencies with a bootstrap interval, ``conformance.timing.compare_latency``). Lanes
present in one file only are listed. Exit 1 on a new failure or a significant
slowdown, else 0; bad input raises ``ValueError`` (the CLI prints it, exits 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy-backed; imported where used so `conformance --help` stays light
    from conformance.timing import LatencyChange


PASSING = frozenset({"pass", "xfail", "skip"})  # a lane that moves from these to FAILING is a new failure
# conformance.lane.FAILING, repeated so that building the CLI parser imports no NumPy (a test keeps them equal).
FAILING = frozenset({"fail", "error", "timeout", "xpass"})
FIXED_TO = frozenset({"pass", "xfail"})
HEADROOM_FACTOR = 2.0  # flag an output whose headroom (error / allowed) more than doubled ...
HEADROOM_FLOOR = 0.1  # ... and now uses more than 10% of its tolerance
ENVIRONMENT_KEYS = ("cpu", "cpu_count", "gpus")

# Change kinds, in the order the table lists them; the first three fail the comparison.
NEW_FAILURE, SLOWER, LOST, HEADROOM, STATUS, ONLY_BASE, ONLY_HEAD, FIXED, FASTER = (
    "new failure",
    "slower",
    "no longer checked",
    "headroom",
    "status",
    "only in base",
    "only in head",
    "fixed",
    "faster",
)
ORDER = (NEW_FAILURE, SLOWER, LOST, HEADROOM, STATUS, ONLY_BASE, ONLY_HEAD, FIXED, FASTER)
FAILS = (NEW_FAILURE, SLOWER, LOST)  # a lane that passed in BASE and is skipped or gone in HEAD lost its check
WORSE, BETTER = frozenset({*FAILS, HEADROOM}), frozenset({FIXED, FASTER})


@dataclass(frozen=True)
class HeadroomChange:
    output: str
    base: float
    head: float


@dataclass(frozen=True)
class Change:
    """One finding about one lane; a lane can have several (a new failure that is also slower)."""

    lane: str
    kind: str
    base_status: str | None = None
    head_status: str | None = None
    message: str = ""  # head's message, for status changes
    headroom: HeadroomChange | None = None
    latency: LatencyChange | None = None


@dataclass(frozen=True)
class Comparison:
    changes: list[Change]
    compared: int  # lanes in both files
    timed: int  # ... of which both have latency
    environment: list[str] = field(default_factory=list)  # "key: base -> head" where the machines differ

    def count(self, kind: str) -> int:
        return sum(c.kind == kind for c in self.changes)

    @property
    def failed(self) -> bool:
        return any(c.kind in FAILS for c in self.changes)


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
        type=float,
        default=1.10,
        metavar="RATIO",
        help="flag a lane whose median latency is significantly more than RATIO times the base's (default 1.10)",
    )
    p.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="confidence of the latency ratio's bootstrap interval (default 0.95)",
    )
    return p


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.text import Text

    from reports import json_report

    if args.max_slowdown <= 1.0:
        raise ValueError(f"--max-slowdown must be greater than 1 (e.g. 1.10), got {args.max_slowdown}")
    if not 0.0 < args.confidence < 1.0:
        raise ValueError(f"--confidence must be between 0 and 1 (e.g. 0.95), got {args.confidence}")
    base_path, head_path = Path(args.base), Path(args.head)
    base, head = json_report.load(base_path), json_report.load(head_path)
    comparison = compare_runs(
        _records(base, base_path), _records(head, head_path), max_slowdown=args.max_slowdown, confidence=args.confidence
    )
    comparison = dataclasses.replace(comparison, environment=_environment_changes(base, head))
    console = Console(highlight=False)
    table = changes_table(comparison, title=f"{base_path} -> {head_path}")
    if table is not None:
        console.print(table)
    for line in comparison.environment:
        console.print(Text(f"note: the machines differ ({line}): latency compares them as well as the code", "dim"))
    line = verdict(comparison, max_slowdown=args.max_slowdown)
    console.print(Text(line, "bold red" if comparison.failed else "bold green"))
    return 1 if comparison.failed else 0


def _records(document: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """Lane id -> record, checking the fields the comparison reads."""
    results = document.get("results")
    if not isinstance(results, list):
        raise ValueError(f"{path}: 'results' is missing or not a list")
    records: dict[str, dict[str, Any]] = {}
    for i, record in enumerate(results):
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise ValueError(f"{path}: results[{i}] has no lane 'id'")
        if not isinstance(record.get("status"), str):
            raise ValueError(f"{path}: {record['id']}: no 'status'")
        if record["id"] in records:
            raise ValueError(f"{path}: lane {record['id']} appears twice")
        latency = record.get("latency")
        if latency is not None:
            from conformance.timing import Latency

            try:
                if not isinstance(latency, dict):
                    raise ValueError("latency record: not an object")
                Latency.from_dict(latency)
            except ValueError as exc:
                raise ValueError(f"{path}: {record['id']}: {exc}") from None
        records[record["id"]] = record
    return records


def compare_runs(
    base: dict[str, dict[str, Any]],
    head: dict[str, dict[str, Any]],
    *,
    max_slowdown: float = 1.10,
    confidence: float = 0.95,
) -> Comparison:
    """Every change between two runs' records (lane id -> record), in table order."""
    from conformance.timing import Latency, compare_latency

    changes: list[Change] = []
    both = sorted(base.keys() & head.keys())
    timed = 0
    for lane in both:
        b, h = base[lane], head[lane]
        changes += _status_changes(lane, b, h)
        if h["status"] not in FAILING:  # a failing output says more than its headroom
            changes += _headroom_changes(lane, b, h)
        if isinstance(b.get("latency"), dict) and isinstance(h.get("latency"), dict):
            timed += 1
            change = compare_latency(
                Latency.from_dict(b["latency"]).samples_ms,
                Latency.from_dict(h["latency"]).samples_ms,
                max_slowdown=max_slowdown,
                confidence=confidence,
            )
            if change.regression or change.improvement:
                changes.append(Change(lane, SLOWER if change.regression else FASTER, latency=change))
    for lane in sorted(base.keys() - head.keys()):
        status = base[lane]["status"]
        changes.append(Change(lane, LOST if status in FIXED_TO else ONLY_BASE, base_status=status))
    for lane in sorted(head.keys() - base.keys()):
        status = head[lane]["status"]
        kind = NEW_FAILURE if status in FAILING else ONLY_HEAD  # a new lane that fails is a new failure
        changes.append(Change(lane, kind, head_status=status, message=head[lane].get("message", "")))
    rank = {kind: i for i, kind in enumerate(ORDER)}
    changes.sort(key=lambda c: (rank[c.kind], -(c.latency.ratio if c.latency else 0.0), c.lane))
    return Comparison(changes, compared=len(both), timed=timed)


def _status_changes(lane: str, base: dict[str, Any], head: dict[str, Any]) -> list[Change]:
    before, after = base["status"], head["status"]
    if before == after:
        return []
    if before in PASSING and after in FAILING:
        kind = NEW_FAILURE
    elif before in FAILING and after in FIXED_TO:
        kind = FIXED
    elif before in FIXED_TO and after == "skip":
        kind = LOST
    else:
        kind = STATUS
    return [Change(lane, kind, before, after, message=head.get("message", ""))]


def _headroom_changes(lane: str, base: dict[str, Any], head: dict[str, Any]) -> list[Change]:
    """Outputs whose headroom more than doubled to above HEADROOM_FLOOR."""
    base_outputs, head_outputs = base.get("outputs"), head.get("outputs")
    if not isinstance(base_outputs, dict) or not isinstance(head_outputs, dict):
        return []
    changes = []
    for name in sorted(base_outputs.keys() & head_outputs.keys()):
        before = _number(base_outputs[name], "headroom")
        after = _number(head_outputs[name], "headroom")
        if before is None or after is None:
            continue
        if after > before * HEADROOM_FACTOR and after > HEADROOM_FLOOR:
            changes.append(Change(lane, HEADROOM, headroom=HeadroomChange(name, before, after)))
    return changes


def _number(output: Any, key: str) -> float | None:
    value = output.get(key) if isinstance(output, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _environment_changes(base: dict[str, Any], head: dict[str, Any]) -> list[str]:
    """Machine and package differences that make a latency comparison compare more than code."""
    b, h = base.get("environment") or {}, head.get("environment") or {}
    lines = [f"{key}: {b.get(key)} -> {h.get(key)}" for key in ENVIRONMENT_KEYS if b.get(key) != h.get(key)]
    b_versions, h_versions = b.get("versions") or {}, h.get("versions") or {}
    for package in sorted(b_versions.keys() & h_versions.keys()):
        if package != "lstm-conformance" and b_versions[package] != h_versions[package]:
            lines.append(f"{package}: {b_versions[package]} -> {h_versions[package]}")
    return ["; ".join(lines)] if lines else []


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
