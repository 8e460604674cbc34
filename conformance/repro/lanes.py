"""Which lane to reproduce: a lane id, looked up in a results.json or planned from a suite.

A lane id is ``CASE/EXPORTER/RUNTIME`` (``Lane.id``, the ``id`` of a lane record in results.json), or
``SUITE/CASE/EXPORTER/RUNTIME`` with the suite in front. Every problem is bad input, one line naming
what and where, with the closest known id when there is one.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conformance.cases import Case, available_suites, load_suite
from conformance.records import LANE, Result, ResultDocument
from conformance.status import ERROR, FAIL, XFAIL
from exporters.errors import BadInputError

DIVERGING = (FAIL, ERROR, XFAIL)  # statuses of a lane that disagrees with the reference


@dataclass(frozen=True)
class Target:
    """The lane to reproduce, with its case (from the suite) and where it was found."""

    suite: str
    case: Case
    exporter: str
    runtime: str
    found: str  # "recorded as fail in results.json" or "planned from the suite"

    @property
    def id(self) -> str:
        return f"{self.case.id}/{self.exporter}/{self.runtime}"


def _hint(wanted: str, known: Sequence[str]) -> str:
    """`` (did you mean ...?)``: a variant of the case named without its matrix values (``layout-1`` ->
    ``layout-1[forward-false]``), else the closest id."""
    prefix, _, rest = wanted.rpartition("/")
    head, _, exporter = prefix.rpartition("/")
    variants = [k for k in known if k.startswith(f"{head}[") and k.endswith(f"]/{exporter}/{rest}")]
    close = variants[:1] or difflib.get_close_matches(wanted, list(known), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _split(lane_id: str) -> tuple[str, str, str]:
    """``(prefix, exporter, runtime)``; the prefix is ``CASE`` or ``SUITE/CASE``."""
    parts = lane_id.rsplit("/", 2)
    if len(parts) != 3 or not all(parts):
        raise BadInputError(
            f"lane id {lane_id!r}: expected CASE/EXPORTER/RUNTIME or SUITE/CASE/EXPORTER/RUNTIME "
            "(the id of a lane in results.json)"
        )
    return parts[0], parts[1], parts[2]


def find_case(suite: str, case_id: str, where: str) -> Case:
    for case in load_suite(suite).cases:
        if case.id == case_id:
            return case
    raise BadInputError(f"{where}: suite {suite!r} has no case {case_id!r} (any more)")


def from_results(lane_id: str, document: ResultDocument, source: Path) -> Target:
    """The lane ``lane_id`` of a result file, which must have diverged there."""
    _split(lane_id)
    lanes = [r for r in document.results if r.kind == LANE]
    record: Result | None = next(
        (r for r in lanes if lane_id in (r.id, f"{r.suite}/{r.id}")),
        None,
    )
    if record is None:
        known = [r.id for r in lanes] + [f"{r.suite}/{r.id}" for r in lanes]
        raise BadInputError(f"{source}: no lane {lane_id!r}{_hint(lane_id, known)}")
    if record.status not in DIVERGING:
        raise BadInputError(
            f"{source}: lane {record.id!r} has status {record.status!r}, not fail, error or xfail: "
            "it does not diverge, so there is nothing to reproduce"
        )
    case = find_case(record.suite, record.case, f"{source}: lane {record.id!r}")
    return Target(record.suite, case, record.exporter, record.runtime, f"recorded as {record.status} in {source}")


def from_suite(lane_id: str, suite: str | None) -> Target:
    """The lane ``lane_id`` planned from ``suite``, else from the suite named in the id, else from the
    packaged suite that has it."""
    from conformance.planning import plan

    prefix, exporter, runtime = _split(lane_id)
    if suite is None:
        suite = next((s for s in _suites_in(prefix)), None)
    names = [suite] if suite is not None else available_suites()
    found: list[tuple[str, str, Case]] = []
    known: list[str] = []
    for name in names:
        cases = [(name, case) for case in load_suite(name).cases]
        for lane in plan(cases):
            ids = (lane.id, f"{name}/{lane.id}")
            known += ids
            if lane_id in ids and lane.exporter == exporter and lane.runtime == runtime:
                found.append((name, lane.id, lane.case))
    if not found:
        where = f"suite {suite!r}" if suite is not None else f"the packaged suites ({', '.join(names)})"
        raise BadInputError(f"unknown lane {lane_id!r} in {where}{_hint(lane_id, known)}")
    if len(found) > 1:
        raise BadInputError(
            f"lane {lane_id!r} is in suites {', '.join(f[0] for f in found)}: name one with --suite "
            f"or in the id ({found[0][0]}/{found[0][1]})"
        )
    name, _, case = found[0]
    return Target(name, case, exporter, runtime, "planned from the suite")


def _suites_in(prefix: str) -> list[str]:
    """The suite a ``SUITE/CASE`` prefix names: a packaged suite, or a ``.toml`` path."""
    head = prefix.split("/", 1)[0]
    if "/" in prefix and head in available_suites():
        return [head]
    at = prefix.find(".toml/")
    return [prefix[: at + len(".toml")]] if at >= 0 else []
