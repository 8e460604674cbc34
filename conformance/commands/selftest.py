"""``conformance selftest``: prove the gate has teeth by mutation testing.

Every configuration of the smoke suite (plus the ``selftest`` suite's extras)
is exported correctly and once per applicable mutant (exporters/mutants.py,
each a real export bug), then run on ONNX Runtime CPU. A mutant is *killed*
when its lane fails, errors or times out; it *survives* when it passes (or
hides behind an expected divergence). The unmutated controls must all pass.
Exit 1 if any mutant survives, any control fails, or a mutation is exercised
by no configuration.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.commands.options import integer
from conformance.status import ERROR, FAIL, PASSING, SKIP, TIMEOUT
from exporters.errors import BadInputError

if TYPE_CHECKING:
    from conformance.records import Result

KILLED = frozenset({FAIL, ERROR, TIMEOUT})  # an xpass means an expected divergence hid the bug: it survived
CONTROL_OK = PASSING
CONTROL_EXPORTER = "onnx-native"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("selftest", help="mutation-test the gate: every built-in export bug must be caught")
    p.add_argument("--suite", action="append", help="suites whose configurations to mutate (default: smoke, selftest)")
    p.add_argument("--runtime", default="ort-cpu", help="runtime to run the mutants on (default ort-cpu)")
    p.add_argument("--mutation", action="append", metavar="NAME", help="only these mutations (repeatable)")
    p.add_argument("--out", default="conformance-results/selftest", metavar="DIR", help="result folder")
    p.add_argument("--jobs", type=integer(minimum=1, maximum=64), default=1, help="worker processes")


def tally(results: list[Result]) -> tuple[dict[str, dict[str, list[str]]], list[Result]]:
    """Per mutation: lane ids killed and survived; and the controls that did not pass."""
    from exporters.mutants import PREFIX

    per: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"killed": [], "survived": []})
    false_alarms = []
    for record in results:
        exporter = record.exporter
        if exporter == CONTROL_EXPORTER:
            if record.status not in CONTROL_OK:
                false_alarms.append(record)
            continue
        if not exporter.startswith(PREFIX) or record.status == SKIP:
            continue
        bucket = "killed" if record.status in KILLED else "survived"
        per[exporter.removeprefix(PREFIX)][bucket].append(record.id)
    return per, false_alarms


def main(args: argparse.Namespace) -> int:
    from rich.table import Table

    from conformance import runner
    from conformance.commands.output import console as make_console
    from conformance.lane import Lane
    from conformance.planning import load_cases
    from exporters.mutants import MUTATIONS, PREFIX

    names = args.mutation or list(MUTATIONS)
    unknown = [n for n in names if n not in MUTATIONS]
    if unknown:
        raise BadInputError(f"unknown mutation(s) {', '.join(unknown)}; available: {', '.join(MUTATIONS)}")
    cases = load_cases(args.suite or ["smoke", "selftest"], None)
    lanes = []
    for suite, case in cases:
        if "onnx-native" not in case.exporters:
            continue
        lanes.append(Lane(suite, case, CONTROL_EXPORTER, args.runtime))
        lanes += [Lane(suite, case, PREFIX + name, args.runtime) for name in names]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.jsonl").unlink(missing_ok=True)
    sink = runner.ResultSink(out / "results.jsonl")
    try:
        results = runner.run_lanes(lanes, sink, jobs=args.jobs)
    finally:
        sink.close()
    per, false_alarms = tally(results)

    console = make_console()
    table = Table(title=f"selftest: {len(cases)} configurations on {args.runtime}", title_justify="left")
    for column in ("mutation", "models the bug", "exercised", "killed", "kill rate"):
        table.add_column(column, justify="right" if column in ("exercised", "killed", "kill rate") else "left")
    failed = bool(false_alarms)
    for name in names:
        counts = per.get(name, {"killed": [], "survived": []})
        exercised = len(counts["killed"]) + len(counts["survived"])
        rate = f"{100 * len(counts['killed']) / exercised:.0f}%" if exercised else "n/a"
        style = "green" if exercised and not counts["survived"] else "bold red"
        failed |= not exercised or bool(counts["survived"])
        table.add_row(name, MUTATIONS[name].description, str(exercised), str(len(counts["killed"])), rate, style=style)
    controls = sum(1 for r in results if r.exporter == CONTROL_EXPORTER)
    console.print(table)
    console.print(f"controls (unmutated {CONTROL_EXPORTER}): {controls - len(false_alarms)}/{controls} pass")
    for name in names:
        for lane_id in per.get(name, {}).get("survived", []):
            console.print(f"SURVIVED {lane_id}", style="bold red")
        if not per.get(name, {}).get("killed") and not per.get(name, {}).get("survived"):
            console.print(f"NOT EXERCISED {name}: no configuration in the suites applies", style="bold red")
    for record in false_alarms:
        console.print(f"FALSE ALARM {record.id}: {record.status}\n{record.message}", style="bold red")
    total = sum(len(c["killed"]) + len(c["survived"]) for c in per.values())
    killed = sum(len(c["killed"]) for c in per.values())
    console.print(f"kill rate {killed}/{total} ({100 * killed / max(total, 1):.1f}%), false alarms {len(false_alarms)}")
    return 1 if failed else 0
