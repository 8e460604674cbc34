"""Weights import from users' models: PyTorch modules/state_dicts and ONNX LSTM graphs.

The ONNX importer recovers the canonical weights (and the model config) from
a model's LSTM initializers, so ``conformance check`` can compute the
reference for a user's own export. It maps two graph patterns:

- a bare LSTM stack: LSTM nodes chained layer by layer;
- the language-model pattern: Gather(embedding) -> LSTM stack ->
  MatMul/Add or Gemm -> LogSoftmax/Softmax.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporters.errors import BadInputError
from reference.config import LMConfig, LSTMConfig
from reference.weights import LayerWeights, LMWeights, LSTMWeights, from_torch_state_dict

DEFAULT_MAX_TENSOR_BYTES = 2 << 30  # refuse tensors declaring more than 2 GiB


class ModelImportError(BadInputError):
    """A model whose weights cannot be recovered; ``str()`` is the one-line reason."""


class UnmappableGraphError(ModelImportError):
    """A valid graph that is not an LSTM stack or language model whose weights are initializers."""


@dataclass(frozen=True)
class ImportedModel:
    """What the importer recovered from a model."""

    config: LSTMConfig | LMConfig
    weights: LSTMWeights | LMWeights
    lstm_nodes: tuple[str, ...]
    layout: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


# --- PyTorch -------------------------------------------------------------------------------------


def from_torch(module_or_state_dict: Any) -> tuple[LSTMConfig, LSTMWeights]:
    """Canonical config and weights of an ``nn.LSTM`` (or its state_dict)."""
    if hasattr(module_or_state_dict, "state_dict") and hasattr(module_or_state_dict, "hidden_size"):
        module = module_or_state_dict
        if getattr(module, "proj_size", 0):
            raise ModelImportError("nn.LSTM with proj_size is not supported: the ONNX LSTM operator has no projection")
        weights = from_torch_state_dict(module.state_dict())
        config = LSTMConfig(
            input_size=int(module.input_size),
            hidden_size=int(module.hidden_size),
            num_layers=int(module.num_layers),
            direction="bidirectional" if module.bidirectional else "forward",
            batch_first=bool(module.batch_first),
        )
        return config, weights
    state_dict: Mapping[str, Any] = module_or_state_dict
    weights = from_torch_state_dict(state_dict)
    config = LSTMConfig(
        input_size=weights.input_size,
        hidden_size=weights.hidden_size,
        num_layers=weights.num_layers,
        direction="bidirectional" if weights.num_directions == 2 else "forward",
    )
    return config, weights


# --- ONNX ----------------------------------------------------------------------------------------


def load_onnx(path: str | Path, *, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> Any:
    """Load an ONNX model safely: one-line errors, external data confined to the model's folder.

    Tensors declaring more than ``max_tensor_bytes`` are refused before their
    data is read.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ModelImportError(f"{path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelImportError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from None
    if not model.graph.node and not model.graph.initializer:
        raise ModelImportError(f"{path}: not a valid ONNX model (empty graph; truncated or not protobuf?)")
    base = path.parent.resolve()
    uses_external = False
    for tensor in _all_tensors(model):
        _check_size(path, tensor, max_tensor_bytes)
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            uses_external = True
            info = {entry.key: entry.value for entry in tensor.external_data}
            location = info.get("location", "")
            target = (base / location).resolve()
            if not target.is_relative_to(base) or Path(location).is_absolute():
                raise ModelImportError(
                    f"{path}: tensor {tensor.name!r} has external data at {location!r}, "
                    "outside the model's folder; refused"
                )
            if not target.is_file():
                raise ModelImportError(f"{path}: external data file {location!r} of tensor {tensor.name!r} is missing")
            _bound_external_read(path, tensor, info, target)
    if uses_external:
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(model, str(base))
        except (ValueError, OSError) as exc:  # a length or offset past the end of the data file, ...
            raise ModelImportError(f"{path}: cannot read its external data ({type(exc).__name__}: {exc})") from None
    return model


def _all_tensors(model: Any) -> list[Any]:
    """Every tensor a model stores: initializers (sparse ones too) and Constant-like attributes, in the main
    graph, every subgraph (If, Loop, Scan bodies, at any depth) and every function body."""
    tensors: list[Any] = []
    pending = [model.graph]
    nodes = [node for function in model.functions for node in function.node]
    while pending or nodes:
        if pending:
            graph = pending.pop()
            tensors += list(graph.initializer)
            for sparse in graph.sparse_initializer:
                tensors += [sparse.values, sparse.indices]
            nodes += list(graph.node)
            continue
        node = nodes.pop()
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
            if attr.HasField("sparse_tensor"):
                tensors += [attr.sparse_tensor.values, attr.sparse_tensor.indices]
            tensors += list(attr.tensors)
            if attr.HasField("g"):
                pending.append(attr.g)
            pending += list(attr.graphs)
    return tensors


def _bound_external_read(path: Path, tensor: Any, info: dict[str, str], target: Path) -> None:
    """Without a ``length``, onnx reads the external file to its end (a 3 GiB file for a 1 KiB tensor once
    took 6 GiB): set it to the size the tensor declares, and refuse a file too short to hold it."""
    import onnx

    count = int(np.prod(list(tensor.dims), dtype=np.float64)) if tensor.dims else 1
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize if tensor.data_type else 1
    declared = count * itemsize
    try:
        offset = int(info.get("offset", "0") or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        raise ModelImportError(
            f"{path}: tensor {tensor.name!r} has a non-numeric external data offset or length"
        ) from None
    if length is not None and length != declared:
        raise ModelImportError(
            f"{path}: tensor {tensor.name!r} declares {declared} bytes but its external data length is {length}"
        )
    available = target.stat().st_size - offset
    if offset < 0 or available < declared:
        raise ModelImportError(
            f"{path}: external data file {info.get('location')!r} holds {max(available, 0)} bytes from offset "
            f"{offset}, too few for tensor {tensor.name!r} ({declared} bytes)"
        )
    if length is None:
        entry = tensor.external_data.add()
        entry.key, entry.value = "length", str(declared)


def _check_size(path: Path, tensor: Any, limit: int) -> None:
    import onnx

    count = int(np.prod(list(tensor.dims), dtype=np.float64)) if tensor.dims else 1
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize if tensor.data_type else 1
    except KeyError:
        raise ModelImportError(f"{path}: tensor {tensor.name!r} has unknown data type {tensor.data_type}") from None
    declared = count * itemsize
    if declared > limit:
        raise ModelImportError(
            f"{path}: tensor {tensor.name!r} declares {declared / 2**30:.1f} GiB "
            f"(shape {list(tensor.dims)}), over the {limit / 2**30:.1f} GiB budget; refused"
        )


class _Graph:
    """Constant values and producers of one ONNX graph."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.model = model
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    if attr.name == "value":
                        self.consts[node.output[0]] = numpy_helper.to_array(attr.t)
        self.producer = {out: node for node in model.graph.node for out in node.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in model.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def const(self, name: str, what: str) -> np.ndarray:
        value = self._fold(name)
        if value is None:
            raise UnmappableGraphError(
                f"{what} ({name!r}) is computed at run time, not an initializer; cannot recover it"
            )
        return value

    def _fold(self, name: str, depth: int = 0) -> np.ndarray | None:
        """A constant, or a constant seen through Cast/Identity/Unsqueeze/Squeeze/Transpose."""
        if name in self.consts:
            return self.consts[name]
        node = self.producer.get(name)
        if node is None or depth > 8:
            return None
        if node.op_type in ("Identity", "Cast"):
            return self._fold(node.input[0], depth + 1)
        if node.op_type in ("Unsqueeze", "Squeeze") and len(node.input) >= 1:
            value = self._fold(node.input[0], depth + 1)
            axes = attribute(node, "axes")
            if axes is None and len(node.input) > 1:
                folded = self._fold(node.input[1], depth + 1)
                axes = None if folded is None else [int(a) for a in folded.ravel()]
            if value is None:
                return None
            if node.op_type == "Unsqueeze":
                return np.expand_dims(value, tuple(axes or ()))
            return np.squeeze(value, axis=tuple(axes) if axes else None)
        if node.op_type == "Transpose":
            value = self._fold(node.input[0], depth + 1)
            perm = attribute(node, "perm")
            return None if value is None else np.transpose(value, perm)
        return None


def attribute(node: Any, name: str, default: Any = None) -> Any:
    """A node attribute's value (strings decoded), or ``default`` when the node does not set it."""
    import onnx

    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            if isinstance(value, bytes):
                return value.decode()
            if isinstance(value, list) and value and isinstance(value[0], bytes):
                return [v.decode() for v in value]
            return value
    return default


def import_onnx(path: str | Path, *, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> ImportedModel:
    """Recover config and weights from an ONNX model's LSTM initializers."""
    model = load_onnx(path, max_tensor_bytes=max_tensor_bytes)
    try:
        return _import(model, path)
    except ModelImportError:
        raise
    except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as exc:
        # A malformed graph (a node short of inputs, an attribute of the wrong type, tensor data that does
        # not fill its dims) is bad input, not an importer crash: one line naming the file.
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelImportError(f"{path}: malformed graph ({type(exc).__name__}: {first})") from exc


def _import(model: Any, path: str | Path) -> ImportedModel:
    graph = _Graph(model)
    nodes = [node for node in model.graph.node if node.op_type == "LSTM"]
    if not nodes:
        ops = sorted({node.op_type for node in model.graph.node})
        raise UnmappableGraphError(f"{path}: no LSTM node in the graph (ops: {', '.join(ops) or 'none'})")
    stack, layout = _stack_from_nodes(graph, nodes, path)
    embedding = _embedding(graph, nodes[0])
    if embedding is None:
        return ImportedModel(stack[0], stack[1], tuple(n.name for n in nodes), layout)
    projection = _projection(graph, nodes[-1])
    if projection is None:
        raise ModelImportError(
            f"{path}: found an embedding Gather before the LSTMs but no MatMul/Add or Gemm projection after them"
        )
    config, weights = stack
    proj_weight, proj_bias, notes = projection
    vocab = embedding.shape[0]
    lm_config = LMConfig(vocab_size=int(vocab), lstm=config)
    lm_weights = LMWeights(embedding.astype(np.float64), weights, proj_weight, proj_bias)
    return ImportedModel(lm_config, lm_weights, tuple(n.name for n in nodes), layout, notes)


def _stack_from_nodes(graph: _Graph, nodes: list[Any], path: str | Path) -> tuple[tuple[LSTMConfig, LSTMWeights], int]:
    layers = []
    attrs0: dict[str, Any] | None = None
    for k, node in enumerate(nodes):
        label = f"LSTM node {node.name or k!r}"
        inputs = list(node.input) + [""] * (8 - len(node.input))
        w = graph.const(inputs[1], f"{label} W").astype(np.float64)
        r = graph.const(inputs[2], f"{label} R").astype(np.float64)
        hidden = r.shape[-1]
        num_dir = w.shape[0]
        b = graph.const(inputs[3], f"{label} B").astype(np.float64) if inputs[3] else np.zeros((num_dir, 8 * hidden))
        p = graph.const(inputs[7], f"{label} P").astype(np.float64) if inputs[7] else None
        attrs = {
            "direction": attribute(node, "direction", "forward"),
            "activations": attribute(node, "activations"),
            "activation_alpha": attribute(node, "activation_alpha"),
            "activation_beta": attribute(node, "activation_beta"),
            "clip": attribute(node, "clip"),
            "input_forget": int(attribute(node, "input_forget", 0)),
            "layout": int(attribute(node, "layout", 0)),
        }
        if attrs0 is None:
            attrs0 = attrs
        elif attrs != attrs0:
            raise ModelImportError(f"{path}: LSTM layers differ in attributes ({attrs0} vs {attrs}); not supported")
        layers.append(LayerWeights(W=w, R=r, B=b, P=p))
    assert attrs0 is not None
    try:
        weights = LSTMWeights(tuple(layers))
        config = LSTMConfig(
            input_size=weights.input_size,
            hidden_size=weights.hidden_size,
            num_layers=weights.num_layers,
            direction=attrs0["direction"],
            batch_first=False,
            peepholes=weights.peepholes,
            activations=tuple(attrs0["activations"]) if attrs0["activations"] else None,
            activation_alpha=tuple(attrs0["activation_alpha"]) if attrs0["activation_alpha"] else None,
            activation_beta=tuple(attrs0["activation_beta"]) if attrs0["activation_beta"] else None,
            clip=attrs0["clip"],
            input_forget=attrs0["input_forget"],
        )
    except ValueError as exc:
        raise ModelImportError(f"{path}: LSTM weights do not form a stack: {exc}") from None
    return (config, weights), attrs0["layout"]


def _embedding(graph: _Graph, first_lstm: Any) -> np.ndarray | None:
    """The embedding table if the first LSTM's X comes from a Gather on a constant table."""
    name = first_lstm.input[0]
    for _ in range(6):
        node = graph.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Gather":
            table = graph._fold(node.input[0])
            return None if table is None or table.ndim != 2 else table
        if node.op_type not in ("Transpose", "Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze"):
            return None
        name = node.input[0]
    return None


def _projection(graph: _Graph, last_lstm: Any) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None:
    """Output projection (weight [V, D*H], bias [V]) after the last LSTM, found by walking its consumers."""
    frontier = [out for out in last_lstm.output[:1] if out]
    seen: set[str] = set()
    for _ in range(12):
        next_frontier = []
        for name in frontier:
            for node in graph.consumers.get(name, []):
                if node.name in seen:
                    continue
                seen.add(node.name)
                if node.op_type == "Gemm":
                    weight = graph._fold(node.input[1])
                    bias = graph._fold(node.input[2]) if len(node.input) > 2 and node.input[2] else None
                    if weight is None:
                        return None
                    w = weight if int(attribute(node, "transB", 0)) else weight.T
                    b = np.zeros(w.shape[0]) if bias is None else bias
                    return w.astype(np.float64), b.astype(np.float64).ravel(), ("projection: Gemm",)
                if node.op_type == "MatMul":
                    weight = graph._fold(node.input[1])
                    if weight is None or weight.ndim != 2:
                        return None
                    bias = _bias_after(graph, node.output[0])
                    b = np.zeros(weight.shape[1]) if bias is None else bias
                    return weight.T.astype(np.float64), b.astype(np.float64).ravel(), ("projection: MatMul/Add",)
                next_frontier.extend(node.output)
        frontier = next_frontier
    return None


def _bias_after(graph: _Graph, name: str) -> np.ndarray | None:
    for node in graph.consumers.get(name, []):
        if node.op_type == "Add":
            other = node.input[1] if node.input[0] == name else node.input[0]
            return graph._fold(other)
    return None
