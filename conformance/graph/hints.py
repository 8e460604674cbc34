"""Say which input value would send an If down a branch the inputs did not take.

The condition is traced back through the graph: straight to a graph input (``set use_vad to True``),
through ``Not`` and shape-only ops, or through a comparison of a graph input with a constant
(``set sr to 16000``). Anything else (arithmetic, a loop variable, a value made inside a function from
several inputs) is not traced; the hint then names the If and the branch, which is all that is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from conformance.graph.walk import WalkEvent, subgraphs

__all__ = ["branch_hint"]

_PASS_THROUGH = {"Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Expand", "CastLike"}
# op -> (wording when True, wording when False), with the graph input on the left and the constant c right
_COMPARISONS = {
    "Equal": ("to {c}", "to a value other than {c}"),
    "Greater": ("above {c}", "to {c} or below"),
    "GreaterOrEqual": ("to {c} or above", "below {c}"),
    "Less": ("below {c}", "to {c} or above"),
    "LessOrEqual": ("to {c} or below", "above {c}"),
}
_MIRRORED = {"Greater": "Less", "Less": "Greater", "GreaterOrEqual": "LessOrEqual", "LessOrEqual": "GreaterOrEqual"}
_MAX_DEPTH = 32


@dataclass(frozen=True)
class _Origin:
    kind: str  # "node" | "const" | "input" | "unknown"
    node: onnx.NodeProto | None = None
    value: np.ndarray | None = None
    elem_type: int = 0


class _Scopes:
    """The graphs around one node, innermost last; names resolve innermost first, as ONNX scoping does."""

    def __init__(self, graphs: Sequence[onnx.GraphProto]) -> None:
        self._graphs = list(graphs)

    def origin(self, name: str) -> _Origin:
        for depth in range(len(self._graphs) - 1, -1, -1):
            graph = self._graphs[depth]
            for node in graph.node:
                if name in node.output:
                    if node.op_type == "Constant" and not node.domain:
                        value = _constant(node)
                        return _Origin("const", value=value) if value is not None else _Origin("node", node)
                    return _Origin("node", node)
            for init in graph.initializer:
                if init.name == name:
                    return _Origin("const", value=numpy_helper.to_array(init))
            for info in graph.input:
                if info.name == name:
                    if depth > 0:  # a loop counter or carried value: set by the loop, not by the user
                        return _Origin("unknown")
                    return _Origin("input", elem_type=info.type.tensor_type.elem_type)
        return _Origin("unknown")


def branch_hint(
    work: onnx.ModelProto, events: Sequence[WalkEvent], if_event: WalkEvent, branch: str, *, path: str
) -> str:
    """A sentence telling the user how to make ``if_event`` (an If of the inlined ``work`` model, shown
    to the user as ``path``) run ``branch`` (``then_branch`` or ``else_branch``)."""
    graphs = [work.graph]
    for level, link in zip(if_event.chain, if_event.links, strict=True):
        assert link is not None, "the work model has no function calls left"
        graphs.append(dict(subgraphs(events[link].node))[level.branch])
    want = branch == "then_branch"
    cond = if_event.node.input[0]
    traced = _phrase(cond, want, _Scopes(graphs), 0)
    if traced is not None:
        return traced
    return f"feed inputs that make If {path} take its {branch}"


def _phrase(name: str, want: bool, scopes: _Scopes, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        return None
    origin = scopes.origin(name)
    if origin.kind == "input":
        if origin.elem_type == onnx.TensorProto.BOOL:
            return f"set {name} to {want}"
        return f"set {name} to a nonzero value" if want else f"set {name} to 0"
    if origin.kind == "const":
        assert origin.value is not None
        return f"no input can: the condition is the constant {_show(origin.value)}"
    if origin.kind != "node" or origin.node is None or origin.node.domain not in ("", "ai.onnx"):
        return None
    node = origin.node
    if node.op_type == "Not":
        return _phrase(node.input[0], not want, scopes, depth + 1)
    if node.op_type in _PASS_THROUGH:
        return _phrase(node.input[0], want, scopes, depth + 1)
    if node.op_type in _COMPARISONS and len(node.input) == 2:
        return _comparison(node, want, scopes, depth)
    return None


def _comparison(node: onnx.NodeProto, want: bool, scopes: _Scopes, depth: int) -> str | None:
    left, right = node.input[0], node.input[1]
    op = node.op_type
    constant = _single(scopes, right)
    variable = left
    if constant is None:
        constant, variable = _single(scopes, left), right
        op = _MIRRORED.get(op, op)
    if constant is None:
        return None
    source = _input_behind(variable, scopes, depth + 1)
    if source is None:
        return None
    wording = _COMPARISONS[op][0 if want else 1]
    return f"set {source} " + wording.format(c=constant)


def _input_behind(name: str, scopes: _Scopes, depth: int) -> str | None:
    """The main-graph input ``name`` is a reshaped or cast copy of, if it is one."""
    while depth <= _MAX_DEPTH:
        origin = scopes.origin(name)
        if origin.kind == "input":
            return name
        if origin.kind != "node" or origin.node is None or origin.node.op_type not in _PASS_THROUGH:
            return None
        name, depth = origin.node.input[0], depth + 1
    return None


def _single(scopes: _Scopes, name: str) -> str | None:
    origin = scopes.origin(name)
    if origin.kind != "const" or origin.value is None or origin.value.size != 1:
        return None
    return _show(origin.value)


def _show(value: np.ndarray) -> str:
    """A one-element constant as a user would type it: ``16000``, ``0.5``, ``True``."""
    item = value.reshape(-1)[0].item() if value.size == 1 else value.tolist()
    if isinstance(item, float) and item.is_integer():
        return str(int(item))
    return str(item)


def _constant(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_int", "value_floats", "value_ints"):
            return np.asarray(helper.get_attribute_value(attr))
    return None
