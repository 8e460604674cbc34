"""Find every LSTM node of a model: main graph, If/Loop/Scan bodies, model-local functions, any depth.

The walk is depth first in node order (an If's ``then_branch`` before its ``else_branch``) and numbers
each LSTM node and each node that owns a graph (a "control") as it meets it. The same walk over the
function-inlined copy meets the same nodes in the same order, because the inliner expands a call in
place; that order is how the user's paths are carried onto the copy that is instrumented and run.

Paths use a node's name where it has one (leading ``/`` dropped, as torch names them) and
``<op_type>_<k>`` where it has none (``k`` counts that op type in its scope). A graph attribute adds its
name (``If_0/then_branch/...``); a function call adds the call node's segment. A path already taken gets
``#2``, ``#3``, ... so every path is unique.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import onnx
import onnx.inliner
from onnx import helper

from conformance.graph.nodes import INPUT_ROLES, OUTPUT_ROLES, Enclosing, LSTMAttributes, LSTMNode

__all__ = [
    "GraphError",
    "Prepared",
    "WalkEvent",
    "elem_type",
    "find_lstm_nodes",
    "inline_functions",
    "is_lstm",
    "prepare",
    "subgraphs",
    "walk",
]

_BRANCH_ORDER = {"then_branch": 0, "else_branch": 1}
_DTYPE_ROLES = ("X", "W", "R", "Y", "Y_h", "Y_c", "B", "initial_h", "initial_c", "P")


class GraphError(ValueError):
    """The model cannot be walked or instrumented; ``str()`` is the user-facing message."""


@dataclass(frozen=True)
class WalkEvent:
    """One LSTM node or control node met by the walk. ``links`` holds, per ``chain`` entry, the ordinal of
    that enclosing control (None for a function call), so a walk over the inlined copy can find it."""

    ordinal: int
    node: onnx.NodeProto
    path: str
    chain: tuple[Enclosing, ...]
    links: tuple[int | None, ...]
    lstm: bool


def is_lstm(node: onnx.NodeProto) -> bool:
    return node.op_type == "LSTM" and node.domain in ("", "ai.onnx")


def subgraphs(node: onnx.NodeProto) -> list[tuple[str, onnx.GraphProto]]:
    """The node's graph attributes in walk order: ``then_branch`` before ``else_branch``, else as stored."""
    found: list[tuple[str, onnx.GraphProto]] = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            found.append((attr.name, attr.g))
        elif attr.type == onnx.AttributeProto.GRAPHS:
            found.extend((f"{attr.name}[{k}]", g) for k, g in enumerate(attr.graphs))
    return sorted(found, key=lambda item: _BRANCH_ORDER.get(item[0], 2))


def walk(model: onnx.ModelProto) -> list[WalkEvent]:
    """Every LSTM and control node, depth first, descending into the model-local functions a node calls."""
    functions = {(f.domain, f.name, f.overload): f for f in model.functions}
    events: list[WalkEvent] = []
    taken: set[str] = set()

    def unique(path: str) -> str:
        candidate, k = path, 1
        while candidate in taken:
            k += 1
            candidate = f"{path}#{k}"
        taken.add(candidate)
        return candidate

    def visit(
        nodes: Sequence[onnx.NodeProto],
        prefix: str,
        chain: tuple[Enclosing, ...],
        links: tuple[int | None, ...],
        calling: tuple[tuple[str, str, str], ...],
    ) -> None:
        counts: Counter[str] = Counter()
        for node in nodes:
            k = counts[node.op_type]
            counts[node.op_type] += 1
            graphs = subgraphs(node)
            key = (node.domain, node.op_type, node.overload)
            if not (is_lstm(node) or graphs or key in functions):
                continue
            path = unique(prefix + (node.name.strip("/") or f"{node.op_type}_{k}"))
            if is_lstm(node) or graphs:
                events.append(WalkEvent(len(events), node, path, chain, links, is_lstm(node)))
            if graphs:
                ordinal = len(events) - 1
                for attr, graph in graphs:
                    level = Enclosing(node.op_type, path, attr)
                    visit(graph.node, f"{path}/{attr}/", (*chain, level), (*links, ordinal), calling)
            elif key in functions:
                if key in calling:
                    raise GraphError(f"function {node.domain}:{node.op_type} calls itself (node {path})")
                function = functions[key]
                level = Enclosing("function", path, f"{function.domain}:{function.name}")
                visit(function.node, f"{path}/", (*chain, level), (*links, None), (*calling, key))

    visit(model.graph.node, "", (), (), ())
    return events


@dataclass(frozen=True)
class Prepared:
    """A model made ready to instrument: ``work`` is a copy with local functions inlined, ``events`` its
    walk, and ``nodes`` the LSTM nodes named after the original model (aligned with the LSTM events)."""

    work: onnx.ModelProto
    events: tuple[WalkEvent, ...]
    nodes: tuple[LSTMNode, ...]
    paths: tuple[str, ...]  # the original model's path of each event, by ordinal

    @property
    def lstm_events(self) -> tuple[WalkEvent, ...]:
        return tuple(e for e in self.events if e.lstm)


def prepare(model: onnx.ModelProto) -> Prepared:
    """Inline the model's local functions into a copy and walk both, matching the copy's nodes to the
    user's paths. Attributes are read from the copy, where a function's attribute references are resolved."""
    original = walk(model)
    work = inline_functions(model)
    events = walk(work)
    shape = [(e.lstm, e.node.op_type) for e in original]
    if shape != [(e.lstm, e.node.op_type) for e in events]:
        raise GraphError("inlining the model's local functions changed the order of its LSTM and control nodes")
    types = _value_types(work)
    nodes = []
    for index, (mine, theirs) in enumerate(
        zip([e for e in original if e.lstm], [e for e in events if e.lstm], strict=True)
    ):
        nodes.append(_lstm_node(index, mine, theirs.node, types))
    return Prepared(work, tuple(events), tuple(nodes), tuple(e.path for e in original))


def inline_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with its local functions inlined (a plain copy when it has none).

    Capture needs it to thread tensors out of function bodies; the whole-model reference needs it because
    ``ReferenceEvaluator`` runs function bodies with its own ops, ignoring ``new_ops``."""
    work = copy.deepcopy(model)
    if not work.functions:
        return work
    _apply_function_defaults(work)
    try:
        return onnx.inliner.inline_local_functions(work)
    except Exception as exc:  # the C++ inliner raises its own error types
        raise GraphError(f"cannot inline the model's local functions: {exc}") from exc


def _apply_function_defaults(model: onnx.ModelProto) -> None:
    """Write each function's attribute defaults onto the calls that leave them unset: onnx 1.23's inliner
    drops an attribute reference whose call site omits it, where ONNX Runtime applies the default."""
    functions = {(f.domain, f.name, f.overload): f for f in model.functions}

    def fill(nodes: Sequence[onnx.NodeProto]) -> None:
        for node in nodes:
            function = functions.get((node.domain, node.op_type, node.overload))
            if function is not None:
                given = {a.name for a in node.attribute}
                node.attribute.extend(a for a in function.attribute_proto if a.name not in given)
            for _, graph in subgraphs(node):
                fill(graph.node)

    fill(model.graph.node)
    for function in model.functions:
        fill(function.node)


def find_lstm_nodes(model: onnx.ModelProto) -> tuple[LSTMNode, ...]:
    """Every LSTM node in ``model``, in walk order, with its path, attributes, value names and dtype."""
    return prepare(model).nodes


def _lstm_node(index: int, event: WalkEvent, resolved: onnx.NodeProto, types: dict[str, int]) -> LSTMNode:
    node = event.node
    try:
        values = {a.name: helper.get_attribute_value(a) for a in resolved.attribute}
        attributes = LSTMAttributes.from_values(values)
    except ValueError as exc:
        raise GraphError(f"LSTM node {event.path}: {exc}") from exc
    inputs = {role: name for role, name in zip(INPUT_ROLES, node.input, strict=False) if name}
    outputs = {role: name for role, name in zip(OUTPUT_ROLES, node.output, strict=False) if name}
    names = dict(zip(INPUT_ROLES, resolved.input, strict=False)) | dict(
        zip(OUTPUT_ROLES, resolved.output, strict=False)
    )
    elem = next((types[names[r]] for r in _DTYPE_ROLES if names.get(r) and names[r] in types), None)
    dtype = None if elem is None else helper.tensor_dtype_to_np_dtype(elem).name
    return LSTMNode(event.path, node.name, index, attributes, inputs, outputs, event.chain, dtype)


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every value whose type is declared or inferable, across all graphs (names are
    unique model-wide in a valid model). Shape inference is best effort: a model it rejects keeps its
    declared types."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception:
        inferred = model
    types: dict[str, int] = {}

    def collect(graph: onnx.GraphProto) -> None:
        for info in (*graph.input, *graph.output, *graph.value_info):
            if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
                types[info.name] = info.type.tensor_type.elem_type
        for init in graph.initializer:
            types[init.name] = init.data_type
        for node in graph.node:
            for _, sub in subgraphs(node):
                collect(sub)

    collect(inferred.graph)
    return types


def elem_type(dtype: str) -> int:
    """The ONNX element type (``TensorProto.FLOAT``...) of a NumPy dtype name (``"float32"``...)."""
    for elem in onnx.TensorProto.DataType.values():
        try:
            if helper.tensor_dtype_to_np_dtype(elem).name == dtype:
                return int(elem)
        except (KeyError, ValueError, TypeError):  # UNDEFINED and types NumPy cannot hold
            continue
    raise GraphError(f"no ONNX element type for dtype {dtype!r}")
