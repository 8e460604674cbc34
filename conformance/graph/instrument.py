"""Make a copy of a model whose graph outputs include every LSTM node's inputs and outputs.

Each LSTM node's tensors (X, W, R, ... whichever it has, weights made at run time included, and Y, Y_h,
Y_c, named where the node omits them) are copied by an ``Identity`` and threaded out to the main graph:

- out of an If: both branches return the same list, the branch without the tensor an empty placeholder
  of the right type and rank, plus a bool marker (True from ``then_branch``) saying which branch ran;
- out of a Loop or Scan body: as extra scan outputs, so each iteration adds one slice along a new
  leading axis (N iterations, N captured invocations).

Limits, stated where they bite: a tensor whose shape changes between iterations, or an If inside a loop
that takes different branches in different iterations, cannot be stacked as a scan output and the
instrumented run fails; LSTM nodes inside other ops that own a graph are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import onnx
from onnx import helper

from conformance.graph.hints import branch_hint
from conformance.graph.nodes import INPUT_ROLES, OUTPUT_ROLES, LSTMNode, input_rank
from conformance.graph.walk import GraphError, Prepared, WalkEvent, elem_type, prepare, subgraphs

__all__ = ["ControlPlan", "Instrumented", "SitePlan", "instrument"]


@dataclass(frozen=True)
class ControlPlan:
    """One If/Loop/Scan around a captured node: its user-facing path, the branch the node sits in, the
    graph output carrying the If's branch marker, and how to make the If take that branch."""

    kind: str
    path: str
    branch: str
    marker: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class SitePlan:
    """Where one LSTM node's tensors come out: role -> graph output of the instrumented model."""

    node: LSTMNode
    outputs: Mapping[str, str]
    controls: tuple[ControlPlan, ...]

    @property
    def loop_depth(self) -> int:
        """How many leading iteration axes the captured tensors carry."""
        return sum(c.kind in ("Loop", "Scan") for c in self.controls)


@dataclass(frozen=True)
class Instrumented:
    """The instrumented copy (functions inlined) and where to find each node's tensors in its outputs."""

    model: onnx.ModelProto
    sites: tuple[SitePlan, ...]
    model_outputs: tuple[str, ...]  # the original model's graph outputs, still the first outputs

    @property
    def nodes(self) -> tuple[LSTMNode, ...]:
        return tuple(s.node for s in self.sites)


@dataclass(frozen=True)
class _Export:
    """A value that must reach the main graph: ``ref`` is ("site", index, role) or ("marker", ordinal, "")."""

    ref: tuple[str, int, str]
    name: str
    elem: int | None
    rank: int


@dataclass
class _Names:
    """Hands out value names unused anywhere in the model."""

    taken: set[str] = field(default_factory=set)

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name


def instrument(model: onnx.ModelProto) -> Instrumented:
    """An instrumented copy of ``model``; ``model`` itself is left unchanged."""
    prepared = prepare(model)
    work = prepared.work
    names = _Names(_all_names(work.graph))
    exports: dict[tuple[int, str] | None, list[_Export]] = {}
    for index, event in enumerate(prepared.lstm_events):
        exports.setdefault(_graph_key(event), []).extend(_expose_site(prepared, index, event, names))

    markers: dict[int, str] = {}
    hints: dict[tuple[int, str], str] = {}
    for event in reversed([e for e in prepared.events if not e.lstm]):
        parts = {attr: exports.pop((event.ordinal, attr), []) for attr, _ in subgraphs(event.node)}
        if not any(parts.values()):
            continue
        wired = _wire(prepared, event, parts, names)
        exports.setdefault(_graph_key(event), []).extend(wired)
        if event.node.op_type == "If":
            path = prepared.paths[event.ordinal]
            for branch in ("then_branch", "else_branch"):
                hints[event.ordinal, branch] = branch_hint(work, prepared.events, event, branch, path=path)

    final: dict[tuple[str, int, str], str] = {}
    for export in exports.pop(None, []):
        work.graph.output.append(_value_info(export.name, export.elem, export.rank))
        final[export.ref] = export.name
        if export.ref[0] == "marker":
            markers[export.ref[1]] = export.name
    assert not exports, "every subgraph's exports were wired to its parent"

    sites = []
    for index, (node, event) in enumerate(zip(prepared.nodes, prepared.lstm_events, strict=True)):
        outputs = {
            role: final["site", index, role] for role in (*INPUT_ROLES, *OUTPUT_ROLES) if ("site", index, role) in final
        }
        controls = tuple(
            ControlPlan(
                level.kind,
                prepared.paths[link],
                level.branch,
                markers.get(link) if level.kind == "If" else None,
                hints.get((link, level.branch)),
            )
            for level, link in zip(event.chain, event.links, strict=True)
            if link is not None
        )
        sites.append(SitePlan(node, outputs, controls))
    original = tuple(o.name for o in model.graph.output)
    return Instrumented(work, tuple(sites), original)


def _graph_key(event: WalkEvent) -> tuple[int, str] | None:
    """The graph holding ``event``: the innermost enclosing (control ordinal, attribute), None for main."""
    if not event.links:
        return None
    link = event.links[-1]
    assert link is not None, "the work model has no function calls left"
    return link, event.chain[-1].branch


def _graph(prepared: Prepared, key: tuple[int, str] | None) -> onnx.GraphProto:
    if key is None:
        return prepared.work.graph
    return dict(subgraphs(prepared.events[key[0]].node))[key[1]]


def _expose_site(prepared: Prepared, index: int, event: WalkEvent, names: _Names) -> list[_Export]:
    node = event.node
    info = prepared.nodes[index]
    elem = None if info.dtype is None else elem_type(info.dtype)
    while len(node.output) < len(OUTPUT_ROLES):
        node.output.append("")
    for k, role in enumerate(OUTPUT_ROLES):
        if not node.output[k]:
            node.output[k] = names.fresh(f"lstm{index}_{role}")
    graph = _graph(prepared, _graph_key(event))
    found: list[_Export] = []
    for role, name in (*zip(INPUT_ROLES, node.input, strict=False), *zip(OUTPUT_ROLES, node.output, strict=True)):
        if not name:
            continue
        copy_name = names.fresh(f"capture_lstm{index}_{role}")
        graph.node.append(helper.make_node("Identity", [name], [copy_name]))
        role_elem = onnx.TensorProto.INT32 if role == "sequence_lens" else elem
        found.append(_Export(("site", index, role), copy_name, role_elem, input_rank(role)))
    return found


def _wire(prepared: Prepared, event: WalkEvent, parts: Mapping[str, list[_Export]], names: _Names) -> list[_Export]:
    """Thread the exports of ``event``'s subgraphs out through ``event``; returns them as its outputs."""
    node, path = event.node, prepared.paths[event.ordinal]
    graphs = dict(subgraphs(node))
    if node.op_type == "If":
        then_ex, else_ex = parts["then_branch"], parts["else_branch"]
        for branch, own in (("then_branch", True), ("else_branch", False)):
            graph = graphs[branch]
            outs = [e.name if own else _placeholder(graph, e, names, path) for e in then_ex]
            outs += [_placeholder(graph, e, names, path) if own else e.name for e in else_ex]
            marker = names.fresh(f"capture_branch_{'then' if own else 'else'}")
            graph.node.append(helper.make_node("Constant", [], [marker], value=helper.make_tensor("", 9, [], [own])))
            for name, export in zip([*outs, marker], [*then_ex, *else_ex, None], strict=True):
                elem, rank = (onnx.TensorProto.BOOL, 0) if export is None else (export.elem, export.rank)
                graph.output.append(_value_info(name, elem, rank))
        marker_export = _Export(("marker", event.ordinal, ""), "", onnx.TensorProto.BOOL, 0)
        return [_outer(node, e, names, 0) for e in (*then_ex, *else_ex, marker_export)]
    if node.op_type in ("Loop", "Scan"):
        body, found = graphs["body"], parts["body"]
        declared = len(body.output) - (1 if node.op_type == "Loop" else 0)
        while len(node.output) < declared:
            node.output.append(names.fresh("capture_unused"))
        for export in found:
            body.output.append(_value_info(export.name, export.elem, export.rank))
        if node.op_type == "Scan":
            _extend_scan_axes(node, len(found))
        return [_outer(node, e, names, 1) for e in found]
    sites = [e.ref for part in parts.values() for e in part if e.ref[0] == "site"]
    inner = prepared.nodes[sites[0][1]].path if sites else path
    raise GraphError(f"LSTM node {inner} sits inside {node.op_type} node {path}, which capture cannot see through")


def _outer(node: onnx.NodeProto, export: _Export, names: _Names, extra_rank: int) -> _Export:
    name = names.fresh(f"{export.name or 'capture_branch'}_out")
    node.output.append(name)
    return _Export(export.ref, name, export.elem, export.rank + extra_rank)


def _placeholder(graph: onnx.GraphProto, export: _Export, names: _Names, path: str) -> str:
    """An empty tensor (a False/zero scalar at rank 0) standing in for a value of the other branch.

    Made by ConstantOfShape, not as an empty Constant: OpenVINO reads an empty Constant as a scalar, so the
    If's output would have a dynamic rank, which its CPU plugin refuses to compile.
    """
    if export.elem is None:
        raise GraphError(f"cannot tell the element type of the LSTM tensors inside If {path}; declare the types")
    name = names.fresh(f"{export.name}_absent")
    if export.rank == 0:
        tensor = helper.make_tensor("", export.elem, [], [0])
        graph.node.append(helper.make_node("Constant", [], [name], value=tensor))
        return name
    shape = names.fresh(f"{export.name}_absent_shape")
    dims = helper.make_tensor("", onnx.TensorProto.INT64, [export.rank], [0] * export.rank)
    graph.node.append(helper.make_node("Constant", [], [shape], value=dims))
    zero = helper.make_tensor("", export.elem, [1], [0])
    graph.node.append(helper.make_node("ConstantOfShape", [shape], [name], value=zero))
    return name


def _extend_scan_axes(node: onnx.NodeProto, count: int) -> None:
    for attr in node.attribute:
        if attr.name in ("scan_output_axes", "scan_output_directions"):
            attr.ints.extend([0] * count)


def _value_info(name: str, elem: int | None, rank: int) -> onnx.ValueInfoProto:
    if elem is None:
        return onnx.ValueInfoProto(name=name)
    return helper.make_tensor_value_info(name, elem, [None] * rank)


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names: set[str] = set()
    for info in (*graph.input, *graph.output, *graph.value_info):
        names.add(info.name)
    names.update(init.name for init in graph.initializer)
    for node in graph.node:
        names.update(_strings(node.input, node.output))
        for _, sub in subgraphs(node):
            names |= _all_names(sub)
    return names


def _strings(*groups: Iterable[str]) -> set[str]:
    return {name for group in groups for name in group if name}
