"""Shards of a run: ``conformance run --shard K/N`` runs one of N deterministic parts of the plan, and
``conformance merge`` puts the parts back together (``conformance/commands/merge.py``).

The partition keeps every lane of one export artifact (a case on one exporter) in one shard, so each
artifact is exported once over all shards, and balances the shards by an estimate of each group's cost
(its export, then its lanes' work), placing the costliest group first on the least loaded shard. It
depends on the plan alone: the same plan gives the same shards on every machine. Each shard records
the plan's hash and lane ids, K and N, so merge can tell shards of one plan from shards of another.
NumPy-free; imports nothing heavy.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exporters.errors import BadInputError

MAX_SHARDS = 4096
# Seconds an export of one artifact takes, cold, on the exporters that cost more than a lane (measured on
# this project's 2-core machine: benchmarks/bench_export_cache.py, a 2-layer bidirectional LSTM).
EXPORT_SECONDS = {"torch-dynamo": 1.7, "torch-script": 0.06, "torch-module": 0.01}
LANE_SECONDS = 0.03  # a lane's fixed cost: session, feeds, comparison
FLOPS_PER_SECOND = 2e9  # the LSTM work of a lane, float64 reference and float32 runtimes alike, roughly
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    index: int  # K, from 1
    count: int  # N

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` with 1 <= K <= N; anything else is bad input naming it."""
    match = _SHARD.match(text)
    if match is None:
        raise BadInputError(f"--shard {text}: expected K/N, such as 1/4 (shard K of N, counted from 1)")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= MAX_SHARDS:
        raise BadInputError(f"--shard {text}: N must be between 1 and {MAX_SHARDS}")
    if not 1 <= index <= count:
        raise BadInputError(f"--shard {text}: K must be between 1 and N ({count}); shards are counted from 1")
    return Shard(index, count)


def plan_hash(lane_ids: Sequence[str]) -> str:
    """The plan's identity: a digest of its lane ids, in plan order."""
    digest = hashlib.sha256("\n".join(lane_ids).encode("utf-8")).hexdigest()
    return f"sha256:{digest[:32]}"


def lane_cost(lane: Any) -> float:
    """Estimated seconds of one lane: a fixed part plus its LSTM work (T * B * 4H * (I + H) per layer and
    direction, times the extra float64 and pure-Python work of the references)."""
    lstm = lane.case.lstm
    inputs = lane.case.inputs
    directions = 2 if lstm.direction == "bidirectional" else 1
    width = lstm.input_size + lstm.hidden_size
    work = 2.0 * inputs.seq_len * inputs.batch * 4 * lstm.hidden_size * width * lstm.num_layers * directions
    slow = 8.0 if lane.runtime == "onnx-reference" else 1.0  # onnx.reference runs its LSTM in Python loops
    return float(LANE_SECONDS + slow * work / FLOPS_PER_SECOND)


def partition(lanes: Sequence[Any], count: int) -> list[list[Any]]:
    """``count`` shards of ``lanes``, each in plan order; the lanes of one artifact stay together."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for position, lane in enumerate(lanes):
        groups.setdefault((lane.suite, lane.case.id, lane.exporter), []).append(position)
    costed = []
    for key, positions in groups.items():
        export = EXPORT_SECONDS.get(key[2], 0.0)
        costed.append((export + sum(lane_cost(lanes[p]) for p in positions), positions[0], positions))
    costed.sort(key=lambda item: (-item[0], item[1]))  # costliest first; ties in plan order
    loads = [0.0] * count
    members: list[list[int]] = [[] for _ in range(count)]
    for cost, _, positions in costed:
        target = min(range(count), key=lambda k: (loads[k], k))
        loads[target] += cost
        members[target] += positions
    return [[lanes[p] for p in sorted(chosen)] for chosen in members]


def shard_of(lanes: Sequence[Any], shard: Shard) -> tuple[list[Any], dict[str, Any]]:
    """The lanes of ``shard`` and what its results record about it (``run.shard``)."""
    ids = [lane.id for lane in lanes]
    mine = partition(lanes, shard.count)[shard.index - 1]
    record = {
        "index": shard.index,
        "count": shard.count,
        "plan_hash": plan_hash(ids),
        "plan_lanes": len(ids),
        "plan_ids": ids,
        "lanes": [lane.id for lane in mine],
    }
    return mine, record
