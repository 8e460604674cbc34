"""Inputs for any graph: what each graph input is, and feeds synthesized from its declared type and shape.

``read_inputs`` lists the graph inputs a user feeds (initializers that shadow an input are left out) with
their dtype and dims; a dim is a number, a name (``dim_param``) or unnamed. A symbolic dim is addressed as
``NAME`` or, unnamed, as ``INPUT:AXIS``. ``roles`` tells what an integer or bool input is for, read off the
graph: indices of a ``Gather`` on a table (``tokens``, fed across the whole table), an LSTM's
``sequence_lens`` (``lengths``), an ``If`` condition (``condition``), else plain data.

``--dim``, ``--feed`` and ``--state`` arrive as text; ``parse_dim`` and ``parse_feed`` turn them into values
and every mistake into a one-line ``BadInputError`` naming the option and the input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

from exporters.errors import BadInputError

__all__ = [
    "Dim",
    "FeedValue",
    "GraphInput",
    "InputRoles",
    "dim_keys",
    "feed_file",
    "parse_dim",
    "parse_feed",
    "read_inputs",
    "roles",
    "synthesize",
]

Dim = int | str | None  # a fixed size, a dim_param name, or unnamed
_PASS_THROUGH = frozenset(
    {"Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Expand", "Transpose", "CastLike"}
)
# sequence_lens may also come sorted (pack_padded_sequence: TopK), gathered or clipped from the input
_LENGTH_PATH = _PASS_THROUGH | {"TopK", "Gather", "GatherElements", "Slice", "Clip", "Abs", "Min", "Max"}
_MAX_VALUES = 64


@dataclass(frozen=True)
class GraphInput:
    """One input the user feeds: ``dtype`` is the NumPy dtype name (``"float32"``), ``dims`` per axis."""

    name: str
    dtype: str
    dims: tuple[Dim, ...] | None  # None: the graph declares no shape

    def key(self, axis: int) -> str | None:
        """How ``--dim`` addresses ``axis``: its name, ``INPUT:AXIS`` when unnamed, None when fixed."""
        assert self.dims is not None
        dim = self.dims[axis]
        if isinstance(dim, int):
            return None
        return dim if dim else f"{self.name}:{axis}"


@dataclass(frozen=True)
class InputRoles:
    """What the graph does with its non-float inputs: token tables (input -> rows), lengths inputs, and
    inputs that an If condition reads."""

    tokens: Mapping[str, int] = field(default_factory=dict)
    lengths: frozenset[str] = frozenset()
    conditions: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)  # input -> (True value, False value)


@dataclass(frozen=True)
class FeedValue:
    """A ``--feed``: a scalar that fills the input (``value``), or an array to feed as is (``array``)."""

    name: str
    value: float | int | bool | None = None
    array: npt.NDArray[Any] | None = None
    source: str = ""


def read_inputs(model: onnx.ModelProto) -> tuple[GraphInput, ...]:
    """The graph inputs a user feeds, in graph order."""
    initialized = {i.name for i in model.graph.initializer}
    found = []
    for info in model.graph.input:
        if info.name in initialized:
            continue
        kind = info.type.WhichOneof("value")
        if kind != "tensor_type":
            raise BadInputError(
                f"graph input {info.name!r} is a {kind or 'typeless value'}, not a tensor: not supported"
            )
        tensor = info.type.tensor_type
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        except (KeyError, TypeError, ValueError):
            raise BadInputError(
                f"graph input {info.name!r} has element type {tensor.elem_type}: not supported"
            ) from None
        dims: tuple[Dim, ...] | None = None
        if tensor.HasField("shape"):
            dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
        found.append(GraphInput(info.name, dtype, dims))
    return tuple(found)


def dim_keys(inputs: Sequence[GraphInput]) -> list[str]:
    """Every symbolic dim, as ``--dim`` addresses it, in order of first appearance."""
    keys: list[str] = []
    for graph_input in inputs:
        for axis in range(len(graph_input.dims or ())):
            key = graph_input.key(axis)
            if key is not None and key not in keys:
                keys.append(key)
    return keys


def roles(model: onnx.ModelProto, inputs: Sequence[GraphInput]) -> InputRoles:
    """Read what the main graph, its subgraphs and functions do with each input (through Cast, Reshape...)."""
    names = {i.name for i in inputs}
    tables = _tables(model)
    tokens: dict[str, int] = {}
    lengths: set[str] = set()
    for graph in _all_graphs(model):
        producers = {out: node for node in graph.node for out in node.output}
        for node in graph.node:
            if node.op_type == "Gather" and len(node.input) >= 2:
                source = _source(node.input[1], producers, names)
                rows = _table_rows(node, tables)
                if source is not None and rows is not None:
                    tokens[source] = min(rows, tokens.get(source, rows))
            elif node.op_type == "LSTM" and len(node.input) > 4 and node.input[4]:
                source = _source(node.input[4], producers, names, _LENGTH_PATH)
                if source is not None:
                    lengths.add(source)
    return InputRoles(tokens, frozenset(lengths), condition_values(model, inputs))


def synthesize(
    graph_input: GraphInput,
    sizes: Mapping[str, int],
    input_roles: InputRoles,
    rng: np.random.Generator,
    *,
    steps: int,
    feed: FeedValue | None = None,
    condition: Any | None = None,
) -> npt.NDArray[Any]:
    """A value for ``graph_input`` at ``sizes`` (symbolic dim key -> size); ``condition`` overrides the
    value of an input an If condition reads (see ``InputRoles.conditions``).

    Floats are uniform in [-1, 1); token indices cover the whole table (a shuffled ``range`` tiled over
    the tensor, so every row is read when the tensor is large enough, and 0 and the last row always);
    lengths are in [1, ``steps``] with the first at ``steps`` and, when there are several, one shorter;
    an If condition takes the value that makes it True; bools are True; other integers are in [1, 4).
    """
    shape = _shape(graph_input, sizes)
    dtype = np.dtype(graph_input.dtype)
    if feed is not None:
        if feed.array is not None:
            return feed.array
        return np.full(shape, feed.value, dtype=dtype)
    if condition is not None and graph_input.name in input_roles.conditions:
        return np.full(shape, condition, dtype=dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if dtype.kind == "f":
        return rng.uniform(-1, 1, shape).astype(dtype)
    if graph_input.name in input_roles.conditions:
        return np.full(shape, input_roles.conditions[graph_input.name][0], dtype=dtype)
    if dtype.kind == "b":
        return np.ones(shape, dtype=dtype)
    if graph_input.name in input_roles.tokens:
        rows = input_roles.tokens[graph_input.name]
        values = np.resize(rng.permutation(rows), count)
        if count >= 2:
            values[0], values[-1] = 0, rows - 1
        return values.reshape(shape).astype(dtype)
    if graph_input.name in input_roles.lengths:
        top = max(steps, 1)
        values = rng.integers(1, top + 1, size=count)
        if count:
            values[0] = top
        if count > 1 and top > 1:
            values[-1] = rng.integers(1, top)
        return values.reshape(shape).astype(dtype)
    return rng.integers(1, 4, size=shape).astype(dtype)  # not 0: a trip count or a Range limit of 0 runs nothing


def _shape(graph_input: GraphInput, sizes: Mapping[str, int]) -> tuple[int, ...]:
    if graph_input.dims is None:
        return ()
    shape = []
    for axis, dim in enumerate(graph_input.dims):
        if isinstance(dim, int):
            shape.append(dim)
            continue
        key = graph_input.key(axis)
        assert key is not None
        shape.append(sizes[key])
    return tuple(shape)


# --- parsing the options ----------------------------------------------------------------------------


def parse_dim(text: str, inputs: Sequence[GraphInput]) -> tuple[str, tuple[int, ...]]:
    """``--dim NAME=N[,N...]`` or ``--dim INPUT:AXIS=N[,N...]`` -> (dim key, sizes)."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BadInputError(f"--dim {text}: expected NAME=N[,N...] or INPUT:AXIS=N[,N...]")
    sizes = []
    for part in values.split(","):
        try:
            size = int(part.strip())
        except ValueError:
            raise BadInputError(f"--dim {text}: {part.strip()!r} is not a whole number") from None
        if not 1 <= size <= 1_000_000:
            raise BadInputError(f"--dim {text}: {size} is outside 1..1000000")
        sizes.append(size)
    if len(sizes) > _MAX_VALUES:
        raise BadInputError(f"--dim {text}: {len(sizes)} values; at most {_MAX_VALUES}")
    known = dim_keys(inputs)
    if key in known:
        return key, tuple(dict.fromkeys(sizes))
    name, colon, axis_text = key.rpartition(":")
    by_name = {i.name: i for i in inputs}
    if colon and name in by_name:
        graph_input = by_name[name]
        rank = len(graph_input.dims or ())
        if not axis_text.isdigit() or int(axis_text) >= rank:
            raise BadInputError(f"--dim {text}: input {name!r} has {rank} axes (0..{rank - 1})")
        dim = (graph_input.dims or ())[int(axis_text)]
        if isinstance(dim, int):
            raise BadInputError(f"--dim {text}: axis {axis_text} of input {name!r} is fixed at {dim}")
        raise BadInputError(f"--dim {text}: axis {axis_text} of input {name!r} is named {dim!r}; use --dim {dim}=...")
    listed = ", ".join(known) if known else "none: every dim is fixed"
    raise BadInputError(f"--dim {text}: the model has no symbolic dim {key!r}; its symbolic dims: {listed}")


def feed_file(text: str) -> Path | None:
    """The ``.npy`` file a ``--feed NAME=path.npy`` reads, or None for a value."""
    value = text.partition("=")[2].strip()
    return Path(value) if value.endswith(".npy") else None


def parse_feed(text: str, inputs: Sequence[GraphInput]) -> FeedValue:
    """``--feed NAME=VALUE`` (a number or true/false, filling the input) or ``--feed NAME=path.npy``."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise BadInputError(f"--feed {text}: expected NAME=VALUE or NAME=path.npy")
    by_name = {i.name: i for i in inputs}
    if name not in by_name:
        raise BadInputError(f"--feed {text}: the model has no input {name!r}; its inputs: {', '.join(by_name)}")
    graph_input = by_name[name]
    dtype = np.dtype(graph_input.dtype)
    path = feed_file(text)
    if path is not None:
        return _feed_file(text, graph_input, path)
    if dtype.kind == "b":
        if value.lower() not in ("true", "false", "1", "0"):
            raise BadInputError(f"--feed {text}: input {name!r} is bool; give true or false")
        return FeedValue(name, value=value.lower() in ("true", "1"), source=text)
    try:
        number = float(value)
    except ValueError:
        raise BadInputError(f"--feed {text}: {value!r} is neither a number nor a .npy file") from None
    if not np.isfinite(number):
        raise BadInputError(f"--feed {text}: {value!r} is not finite")
    with np.errstate(over="ignore"):
        overflows = dtype.kind == "f" and not np.isfinite(np.asarray(number).astype(dtype))
    if overflows:
        raise BadInputError(f"--feed {text}: {value} does not fit input {name!r} ({dtype.name})")
    if dtype.kind in "iu":
        if not number.is_integer():
            raise BadInputError(f"--feed {text}: input {name!r} is {dtype.name}; {value!r} is not a whole number")
        info = np.iinfo(dtype)
        if not info.min <= number <= info.max:
            raise BadInputError(f"--feed {text}: {value} does not fit input {name!r} ({dtype.name})")
        return FeedValue(name, value=int(number), source=text)
    return FeedValue(name, value=number, source=text)


def _feed_file(text: str, graph_input: GraphInput, path: Path) -> FeedValue:
    if not path.is_file():
        raise BadInputError(f"--feed {text}: {path}: no such file")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadInputError(f"--feed {text}: {path}: not a .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise BadInputError(f"--feed {text}: {path}: not a .npy array")
    check_value(f"--feed {text}", graph_input, array)
    return FeedValue(graph_input.name, array=array, source=text)


def check_value(where: str, graph_input: GraphInput, array: npt.NDArray[Any]) -> None:
    """Refuse an array the input cannot take: dtype, rank, fixed dims, NaN/Inf."""
    name = graph_input.name
    if array.dtype.name != graph_input.dtype:
        raise BadInputError(
            f"{where}: input {name!r} has dtype {array.dtype.name}, the model takes {graph_input.dtype}"
        )
    dims = graph_input.dims
    if dims is not None:
        wrong_rank = len(dims) != array.ndim
        if wrong_rank or any(isinstance(d, int) and d != s for d, s in zip(dims, array.shape, strict=False)):
            declared = [d if d is not None else "?" for d in dims]
            raise BadInputError(f"{where}: input {name!r} has shape {list(array.shape)}, the model declares {declared}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise BadInputError(f"{where}: input {name!r} contains NaN or Inf; refusing to compare")


# --- reading the graph ------------------------------------------------------------------------------


def _all_graphs(model: onnx.ModelProto) -> list[onnx.GraphProto]:
    graphs: list[onnx.GraphProto] = []
    pending: list[onnx.GraphProto] = [model.graph]
    pending += [helper.make_graph(list(f.node), f.name, [], []) for f in model.functions]
    while pending:
        graph = pending.pop()
        graphs.append(graph)
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    pending.append(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    pending.extend(attr.graphs)
    return graphs


def _tables(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Shapes of every constant table: initializers and Constant outputs, in any graph."""
    shapes: dict[str, tuple[int, ...]] = {}
    for graph in _all_graphs(model):
        for init in graph.initializer:
            shapes[init.name] = tuple(init.dims)
        for node in graph.node:
            if node.op_type == "Constant" and not node.domain:
                for attr in node.attribute:
                    if attr.name == "value":
                        shapes[node.output[0]] = tuple(attr.t.dims)
    return shapes


def _table_rows(node: onnx.NodeProto, tables: Mapping[str, tuple[int, ...]]) -> int | None:
    shape = tables.get(node.input[0])
    if not shape:
        return None
    axis = next((int(helper.get_attribute_value(a)) for a in node.attribute if a.name == "axis"), 0)
    axis = axis + len(shape) if axis < 0 else axis
    return shape[axis] if 0 <= axis < len(shape) and shape[axis] > 0 else None


def _source(
    name: str, producers: Mapping[str, onnx.NodeProto], inputs: set[str], through: frozenset[str] = _PASS_THROUGH
) -> str | None:
    """The graph input ``name`` is a cast or reshaped copy of (through the ops ``through``), if it is one."""
    for _ in range(32):
        if name in inputs:
            return name
        node = producers.get(name)
        if node is None or node.op_type not in through or not node.input:
            return None
        name = node.input[0]
    return None


_COMPARE = ("Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual")
# op -> (offset of the value that makes the comparison True, of the one that makes it False), for input op c
_OFFSETS = {"Equal": (0, 1), "Greater": (1, 0), "GreaterOrEqual": (0, -1), "Less": (-1, 0), "LessOrEqual": (0, 1)}
_MIRROR = {"Greater": "Less", "Less": "Greater", "GreaterOrEqual": "LessOrEqual", "LessOrEqual": "GreaterOrEqual"}


def condition_values(model: onnx.ModelProto, inputs: Sequence[GraphInput]) -> dict[str, tuple[Any, Any]]:
    """For each input an If condition reads: (a value that makes it True, one that makes it False), traced
    straight, through Not or copies, or through a comparison with a one-element constant."""
    names = {i.name for i in inputs}
    constants = _constants(model)
    found: dict[str, tuple[Any, Any]] = {}
    for graph in _all_graphs(model):
        producers = {out: node for node in graph.node for out in node.output}
        for node in graph.node:
            if node.op_type == "If" and node.input:
                traced = _condition(node.input[0], producers, names, constants)
                if traced is not None and traced[0] not in found:
                    found[traced[0]] = traced[1]
    return found


def _condition(
    name: str, producers: Mapping[str, onnx.NodeProto], inputs: set[str], constants: Mapping[str, Any]
) -> tuple[str, tuple[Any, Any]] | None:
    flip = False
    for _ in range(32):
        if name in inputs:
            values: tuple[Any, Any] = (True, False) if not flip else (False, True)
            return name, values
        node = producers.get(name)
        if node is None or not node.input:
            return None
        if node.op_type in _PASS_THROUGH or node.op_type == "Not":
            flip ^= node.op_type == "Not"
            name = node.input[0]
            continue
        if node.op_type not in _COMPARE or len(node.input) != 2:
            return None
        op, left, right = node.op_type, node.input[0], node.input[1]
        if right not in constants:
            op, left, right = _MIRROR.get(op, op), right, left
        constant = constants.get(right)
        source = _source(left, producers, inputs)
        if constant is None or source is None:
            return None
        up, down = _OFFSETS[op]
        values = (constant + up, constant + down)
        return source, (values[::-1] if flip else values)
    return None


def _constants(model: onnx.ModelProto) -> dict[str, Any]:
    """One-element initializers and Constant outputs of every graph, as Python numbers."""
    found: dict[str, Any] = {}
    for graph in _all_graphs(model):
        arrays = [(i.name, i) for i in graph.initializer]
        arrays += [
            (n.output[0], a.t) for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"
        ]
        for name, tensor in arrays:
            if int(np.prod(tensor.dims, dtype=np.int64)) == 1:
                found[name] = numpy_helper.to_array(tensor).reshape(-1)[0].item()
    return found
