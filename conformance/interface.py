"""Read a user's ONNX graph: which graph input and output plays which role around its LSTM nodes.

``conformance check`` feeds a model it did not export, so it must find out
by tracing the graph which input is the sequence (or the tokens), which are
the initial states and ``sequence_lens``, whether the model is batch-first,
and which outputs are ``Y``, ``Y_h``, ``Y_c`` or the (log-)probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporters.errors import BadInputError
from exporters.importers import attribute

# Graph-input roles by the LSTM input slot they reach.
_SLOT_ROLES = {0: "X", 4: "sequence_lens", 5: "initial_h", 6: "initial_c"}
# Ops a value may pass through between a graph input/output and the LSTM.
_PASS_THROUGH = {
    "Transpose", "Reshape", "Cast", "Identity", "Squeeze", "Unsqueeze", "Slice", "Split", "Gather",
    "Concat", "Expand", "Add", "MatMul", "Gemm", "Shape", "ConstantOfShape", "Flatten", "Mul",
}  # fmt: skip


class InterfaceError(BadInputError):
    """The graph's inputs or outputs cannot be mapped to an LSTM stack or language model."""


@dataclass(frozen=True)
class Interface:
    data_input: str  # the sequence X, or the token ids of a language model
    tokens: bool  # data_input holds token ids (Gather -> LSTM)
    batch_first: bool
    roles: dict[str, str]  # graph input name -> X | tokens | initial_h | initial_c | sequence_lens
    outputs: dict[str, str]  # graph output name -> Y | Y_h | Y_c | log_probs | probs
    input_dims: dict[str, list[int | str | None]] = field(default_factory=dict)
    output_dims: dict[str, list[int | str | None]] = field(default_factory=dict)
    input_types: dict[str, str] = field(default_factory=dict)  # graph input name -> NumPy dtype name

    def input_for(self, role: str) -> str | None:
        return next((name for name, r in self.roles.items() if r == role), None)


def _dims(value_info: Any) -> list[int | str | None]:
    dims: list[int | str | None] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def read_interface(model: Any) -> Interface:
    """Trace ``model``'s graph inputs forward and outputs backward to the LSTM nodes."""
    from onnx import helper

    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    producers: dict[str, Any] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, slot))
        for name in node.output:
            producers[name] = node
    lstms = [n for n in graph.node if n.op_type == "LSTM"]
    if not lstms:
        raise InterfaceError("no LSTM node in the graph")
    first = lstms[0]
    node_layout = int(attribute(first, "layout", 0))

    roles: dict[str, str] = {}
    batch_first = False
    tokens = False
    dims = {}
    types: dict[str, str] = {}
    for value_info in graph.input:
        if value_info.name in initializers:
            continue
        dims[value_info.name] = _dims(value_info)
        elem_type = value_info.type.tensor_type.elem_type
        if elem_type:
            types[value_info.name] = helper.tensor_dtype_to_np_dtype(elem_type).name
        found = _trace_forward(value_info.name, consumers)
        if found is None:
            continue
        lstm, slot, ops = found
        role = _SLOT_ROLES.get(slot)
        if role is None:
            continue
        if role == "X":
            if lstm is not first:
                continue
            tokens = "Gather" in ops
            batch_first = ops.get("Transpose", False) ^ bool(node_layout)
            role = "tokens" if tokens else "X"
        roles[value_info.name] = role
    data = next((n for n, r in roles.items() if r in ("X", "tokens")), None)
    if data is None:
        raise InterfaceError("no graph input reaches the first LSTM node's X")

    outputs: dict[str, str] = {}
    output_dims = {}
    last = lstms[-1]
    for value_info in graph.output:
        role = _trace_backward(value_info.name, producers, last)
        if role is not None:
            outputs[value_info.name] = role
            output_dims[value_info.name] = _dims(value_info)
    if not outputs:
        raise InterfaceError("no graph output comes from an LSTM node or a (Log)Softmax after it")
    return Interface(data, tokens, batch_first, roles, outputs, dims, output_dims, types)


def _trace_forward(name: str, consumers: dict[str, list[tuple[Any, int]]]) -> tuple[Any, int, dict[str, bool]] | None:
    """The first LSTM node ``name`` reaches, the slot it enters, and the ops on the way."""
    frontier: list[tuple[str, dict[str, bool]]] = [(name, {})]
    seen: set[int] = set()
    for _ in range(10):
        next_frontier = []
        for value, ops in frontier:
            for node, slot in consumers.get(value, []):
                if node.op_type == "LSTM":
                    return node, slot, ops
                if node.op_type not in _PASS_THROUGH or id(node) in seen:
                    continue
                seen.add(id(node))
                step = dict(ops)
                if node.op_type == "Transpose":
                    perm = list(attribute(node, "perm", []))
                    # A transpose that swaps the first two axes changes time/batch major-ness.
                    swaps = len(perm) >= 2 and perm[:2] == [1, 0]
                    step["Transpose"] = step.get("Transpose", False) ^ swaps
                elif node.op_type == "Gather":
                    step["Gather"] = True
                next_frontier += [(out, step) for out in node.output]
        frontier = next_frontier
    return None


def _trace_backward(name: str, producers: dict[str, Any], last_lstm: Any) -> str | None:
    frontier = [name]
    seen: set[int] = set()
    for _ in range(12):
        next_frontier = []
        for value in frontier:
            node = producers.get(value)
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type == "LogSoftmax":
                return "log_probs"
            if node.op_type == "Softmax":
                return "probs"
            if node.op_type == "LSTM":
                slot = list(node.output).index(value)
                if slot == 0:
                    return "Y" if node is last_lstm else None
                return "Y_h" if slot == 1 else "Y_c"
            next_frontier += [v for v in node.input if v]
        frontier = next_frontier
    return None
