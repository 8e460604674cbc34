"""Find where a model's outputs start to differ: for "the model differs, but every LSTM node conforms".

Every output of every main-graph node is exposed as a graph output, the copy is run by the runtime and
by the reference, and the values are compared in topological order; the first node with an output beyond
tolerance is where the runtimes diverge. Subgraph bodies are judged as a whole through their node's
outputs. Exposing intermediates can stop a runtime from fusing nodes; a divergence that lives only in a
fused kernel can then vanish, and ``None`` says only that no exposed value differed.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from conformance.compare import EXACT, OutputDiff, Tolerance, compare_output
from conformance.graph.runners import Feeds, Run, as_array, reference_runner
from conformance.graph.verdict import tolerance_for
from conformance.graph.walk import subgraphs

__all__ = ["Divergence", "first_divergence", "topological_order"]


@dataclass(frozen=True)
class Divergence:
    """The first node whose output differs: its path (named as ``find_lstm_nodes`` names nodes), op type,
    position in topological order, the differing value's name, and the comparison."""

    path: str
    op_type: str
    position: int
    output: str
    diff: OutputDiff


def first_divergence(
    model: onnx.ModelProto,
    feeds: Feeds,
    run: Run,
    reference: Run | None = None,
    *,
    tolerances: Mapping[str, Tolerance] | Tolerance | None = None,
) -> Divergence | None:
    """The first main-graph node, in topological order, whose output from ``run`` differs from
    ``reference``'s (default: the whole-model reference, ``reference_runner()``) beyond tolerance.

    ``tolerances``: one ``Tolerance``, or a table by dtype name; others get ``default_tolerance``
    (exact for integers and bools). Values that are not tensors (sequences, maps) are passed over."""
    graph = model.graph
    order = topological_order(graph)
    paths = _paths(graph)
    probe = copy.deepcopy(model)
    present = {o.name for o in graph.output} | {i.name for i in graph.input} | {i.name for i in graph.initializer}
    for index in order:
        for name in graph.node[index].output:
            if name and name not in present:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
                present.add(name)
    actual = run(probe, feeds)
    expected = (reference or reference_runner())(probe, feeds)
    for position, index in enumerate(order):
        node = graph.node[index]
        for name in node.output:
            diff = _compare(name, actual.get(name), expected.get(name), tolerances) if name else None
            if diff is not None and not diff:
                return Divergence(paths[index], node.op_type, position, name, diff)
    return None


def topological_order(graph: onnx.GraphProto) -> list[int]:
    """Node indices in a topological order, ties by position (ONNX asks for sorted graphs; not every
    exporter delivers). A node depends on its inputs and on the outer values its subgraphs read."""
    producer = {name: i for i, node in enumerate(graph.node) for name in node.output if name}
    needs: list[set[int]] = []
    users: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        names = set(node.input) | {n for _, sub in subgraphs(node) for n in _free_names(sub)}
        deps = {producer[n] for n in names if n in producer and producer[n] != i}
        needs.append(deps)
        for d in deps:
            users.setdefault(d, []).append(i)
    ready = [i for i, deps in enumerate(needs) if not deps]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for user in users.get(i, []):
            needs[user].discard(i)
            if not needs[user]:
                heapq.heappush(ready, user)
    if len(order) != len(graph.node):
        raise ValueError(f"the graph has a cycle: {len(graph.node) - len(order)} nodes never become ready")
    return order


def _free_names(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads from its enclosing scopes."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        used.update(n for n in node.input if n)
        for _, sub in subgraphs(node):
            used |= _free_names(sub)
        defined.update(node.output)
    return used - defined


def _paths(graph: onnx.GraphProto) -> list[str]:
    counts: dict[str, int] = {}
    taken: set[str] = set()
    paths = []
    for node in graph.node:
        k = counts.get(node.op_type, 0)
        counts[node.op_type] = k + 1
        base = node.name.strip("/") or f"{node.op_type}_{k}"
        path, n = base, 1
        while path in taken:
            n += 1
            path = f"{base}#{n}"
        taken.add(path)
        paths.append(path)
    return paths


def _compare(
    name: str, actual: object, expected: object, tolerances: Mapping[str, Tolerance] | Tolerance | None
) -> OutputDiff | None:
    e, a = as_array(expected), as_array(actual)
    if e is None:
        return None
    if e.dtype == np.bool_:
        e, a = e.astype(np.uint8), None if a is None else a.astype(np.uint8)
    floating = e.dtype.kind == "f" or e.dtype.name == "bfloat16"
    if not floating and e.dtype.kind not in "iu":
        return None
    tolerance = tolerance_for(e.dtype.name, tolerances) if floating else EXACT
    return compare_output(name, a, e, tolerance, time_axis=None)
