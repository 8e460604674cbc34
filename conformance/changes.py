"""What changed between two runs: new failures, fixes, shrunk headroom, latency regressions.

Lanes are matched by id. Per lane: accuracy (a new failure, a fix, another status
change, an output whose headroom shrank sharply) and latency (the ratio of median
latencies with a bootstrap interval, ``conformance.timing.compare_latency``). Lanes
present in one file only are listed. Exit 1 on a new failure or a significant
slowdown. ``conformance compare`` renders a :class:`Comparison`; this module only computes it.

Releases (``ort-cpu`` in BASE, ``ort-cpu@1.24.4`` in HEAD, or two versions): a lane found in one file
only is matched with the one lane of the other file that differs from it only in the runtime's
``@VERSION``, and compared under the label ``CASE/EXPORTER/ort-cpu -> ort-cpu@1.24.4``. Their
latencies are compared only when both were timed the same way (``includes``): a versioned runtime
answers from a worker process, a pipe round trip per call that the in-process one does not pay.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy-backed; imported where used so `conformance --help` stays light
    from conformance.timing import LatencyChange


from conformance.records import Result, ResultDocument
from conformance.status import FAILING, PASSING, UNCHECKED
from exporters.errors import BadInputError

WAS_FINE = PASSING | UNCHECKED  # a lane that moves from these to FAILING is a new failure
FIXED_TO = PASSING
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
    releases: list[str] = field(default_factory=list)  # "ort-cpu -> ort-cpu@1.24.4: 19 lanes", matched by release

    def count(self, kind: str) -> int:
        return sum(c.kind == kind for c in self.changes)

    @property
    def failed(self) -> bool:
        return any(c.kind in FAILS for c in self.changes)


def by_id(document: ResultDocument, source: str) -> dict[str, Result]:
    """Lane id -> record, checking the latency records the comparison reads."""
    records: dict[str, Result] = {}
    for record in document.results:
        if record.latency is not None:
            from conformance.timing import Latency

            try:
                Latency.from_dict(dict(record.latency))
            except (ValueError, TypeError, KeyError) as exc:
                raise BadInputError(f"{source}: {record.id}: {exc}") from None
        records[record.id] = record
    return records


def compare_runs(
    base: dict[str, Result],
    head: dict[str, Result],
    *,
    max_slowdown: float = 1.10,
    confidence: float = 0.95,
) -> Comparison:
    """Every change between two runs' records (lane id -> record), in table order."""
    from conformance.timing import Latency, compare_latency

    changes: list[Change] = []
    base, head, paired = _match_releases(base, head)
    both = sorted(base.keys() & head.keys())
    timed = 0
    for lane in both:
        b, h = base[lane], head[lane]
        changes += _status_changes(lane, b, h)
        if h.status not in FAILING:  # a failing output says more than its headroom
            changes += _headroom_changes(lane, b, h)
        timed_alike = lane not in paired or (b.latency or {}).get("includes") == (h.latency or {}).get("includes")
        if b.latency is not None and h.latency is not None and timed_alike:  # (in process / through a worker)
            timed += 1
            change = compare_latency(
                Latency.from_dict(dict(b.latency)).samples_ms,
                Latency.from_dict(dict(h.latency)).samples_ms,
                max_slowdown=max_slowdown,
                confidence=confidence,
            )
            if change.regression or change.improvement:
                changes.append(Change(lane, SLOWER if change.regression else FASTER, latency=change))
    for lane in sorted(base.keys() - head.keys()):
        status = base[lane].status
        changes.append(Change(lane, LOST if status in FIXED_TO else ONLY_BASE, base_status=status))
    for lane in sorted(head.keys() - base.keys()):
        status = head[lane].status
        kind = NEW_FAILURE if status in FAILING else ONLY_HEAD  # a new lane that fails is a new failure
        changes.append(Change(lane, kind, head_status=status, message=head[lane].message))
    rank = {kind: i for i, kind in enumerate(ORDER)}
    changes.sort(key=lambda c: (rank[c.kind], -(c.latency.ratio if c.latency else 0.0), c.lane))
    releases = Counter(f"{base[lane].runtime} -> {head[lane].runtime}" for lane in paired)
    labels = [f"{pair}: {n} lane{'s' if n != 1 else ''}" for pair, n in sorted(releases.items())]
    return Comparison(changes, compared=len(both), timed=timed, releases=labels)


def _runtime_family(record: Result) -> str | None:
    """``CASE/EXPORTER/ort-cpu`` for ``CASE/EXPORTER/ort-cpu@1.24.4`` (and for itself); None when the id
    does not end in its runtime."""
    if not record.runtime or not record.id.endswith(f"/{record.runtime}"):
        return None
    return record.id[: -len(record.runtime)] + record.runtime.partition("@")[0]


def _match_releases(
    base: dict[str, Result], head: dict[str, Result]
) -> tuple[dict[str, Result], dict[str, Result], set[str]]:
    """Both runs, with each lane of one file only that has exactly one counterpart in the other, differing
    only in the runtime's release, moved under the label ``BASE_ID -> HEAD_RUNTIME`` on both sides."""
    only_base: dict[str, list[str]] = defaultdict(list)
    only_head: dict[str, list[str]] = defaultdict(list)
    for records, only, other in ((base, only_base, head), (head, only_head, base)):
        for lane, record in records.items():
            family = _runtime_family(record)
            if lane not in other and family is not None:
                only[family].append(lane)
    pairs = {
        only_base[f][0]: only_head[f][0]
        for f in only_base.keys() & only_head.keys()
        if len(only_base[f]) == 1 == len(only_head[f]) and "@" in only_base[f][0] + only_head[f][0]
    }
    if not pairs:
        return base, head, set()
    base, head = dict(base), dict(head)
    paired = set()
    for base_id, head_id in pairs.items():
        label = f"{base_id} -> {head[head_id].runtime}"
        base[label], head[label] = base.pop(base_id), head.pop(head_id)
        paired.add(label)
    return base, head, paired


def _status_changes(lane: str, base: Result, head: Result) -> list[Change]:
    before, after = base.status, head.status
    if before == after:
        return []
    if before in WAS_FINE and after in FAILING:
        kind = NEW_FAILURE
    elif before in FAILING and after in FIXED_TO:
        kind = FIXED
    elif before in FIXED_TO and after in UNCHECKED:  # skipped or not exercised: the check is gone
        kind = LOST
    else:
        kind = STATUS
    return [Change(lane, kind, before, after, message=head.message)]


def _headroom_changes(lane: str, base: Result, head: Result) -> list[Change]:
    """Outputs whose headroom more than doubled to above HEADROOM_FLOOR."""
    base_outputs = {d.name: d.headroom for d in base.outputs}
    head_outputs = {d.name: d.headroom for d in head.outputs}
    changes = []
    for name in sorted(base_outputs.keys() & head_outputs.keys()):
        before, after = base_outputs[name], head_outputs[name]
        if not (math.isfinite(before) and math.isfinite(after)):
            continue
        if after > before * HEADROOM_FACTOR and after > HEADROOM_FLOOR:
            changes.append(Change(lane, HEADROOM, headroom=HeadroomChange(name, before, after)))
    return changes


def environment_changes(base: ResultDocument, head: ResultDocument) -> list[str]:
    """Machine and package differences that make a latency comparison compare more than code."""
    b, h = base.environment, head.environment
    lines = [f"{key}: {b.get(key)} -> {h.get(key)}" for key in ENVIRONMENT_KEYS if b.get(key) != h.get(key)]
    b_versions, h_versions = b.get("versions") or {}, h.get("versions") or {}
    for package in sorted(b_versions.keys() & h_versions.keys()):
        if package != "lstm-conformance" and b_versions[package] != h_versions[package]:
            lines.append(f"{package}: {b_versions[package]} -> {h_versions[package]}")
    return ["; ".join(lines)] if lines else []
