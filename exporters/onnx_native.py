"""The ``onnx-native`` exporter: the model written by hand around the ONNX ``LSTM`` operator.

No tracing and no framework in between: one ``LSTM`` node per layer carrying the
canonical weights as they are (they are already in ONNX layout), so this
exporter expresses every configuration the reference supports, including the
ones ``torch.nn.LSTM`` cannot (reverse-only, peepholes, clip, input_forget,
other activations). The graph's interface is the contract in
``exporters.base``; what happens inside follows ``options``:

- ``options.layout`` is the layout of the ``LSTM`` nodes (1 = the batch-major
  ``layout`` attribute, opset >= 14); ``batch_first`` is the layout of the
  graph's interface. Where the two differ, ``Transpose`` nodes bridge them.
- Each layer's ``Y`` (``[T, D, B, H]``, or ``[B, T, D, H]`` with layout 1) is
  transposed as needed and reshaped with ``[0, 0, -1]``, which merges the
  directions into the feature axis and keeps dynamic ``T`` and ``B`` working.

onnx (and onnxruntime, to pick the default opset) are imported inside the
functions that need them, so importing this module is cheap.
"""

# Heavy imports are lazy by design (DESIGN.md), so imports inside functions are intended here.

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from exporters.base import AnyWeights, ExportOptions, ExportOutcome, Model
from reference.config import LMConfig, LSTMConfig
from reference.weights import LMWeights, LSTMWeights

if TYPE_CHECKING:
    import onnx

MIN_OPSET = 7  # LSTM-7 is the first version with today's inputs and attributes
LAYOUT_OPSET = 14  # the LSTM ``layout`` attribute, and Reshape's ``allowzero``
SPLIT_INPUT_OPSET = 13  # Split takes ``split`` as an input from opset 13 on
FALLBACK_OPSET = 21  # when onnxruntime cannot tell: the newest opset onnxruntime 1.18 (our minimum) runs
MIN_IR_VERSION = 4  # IR 3 requires every initializer to be a graph input, which would expose the weights
SEQ, BATCH = "seq", "batch"  # names of the dynamic axes
_MERGE_SHAPE = "shape.merge_directions"  # the [0, 0, -1] constant of every direction-merging Reshape


@functools.lru_cache(maxsize=1)
def default_opset() -> int:
    """The newest default-domain opset that both onnx and the installed onnxruntime know.

    onnxruntime's operator-schema registry is asked for the highest ``since_version`` in
    the ``ai.onnx`` domain, which is the newest opset it loads; onnxruntime refuses a
    model stamped with a newer one. Without onnxruntime (or a build that hides the
    registry) the answer is ``FALLBACK_OPSET``.
    """
    import onnx

    newest_onnx = int(onnx.defs.onnx_opset_version())
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_c

        newest_ort = max(int(s.since_version) for s in ort_c.get_all_operator_schema() if s.domain in ("", "ai.onnx"))
    except Exception:  # no onnxruntime, or a build without the schema registry
        return min(FALLBACK_OPSET, newest_onnx)
    return min(newest_ort, newest_onnx)


def resolve_opset(options: ExportOptions) -> int:
    return default_opset() if options.opset is None else options.opset


def ir_version(opset: int) -> int:
    """The oldest IR version that carries ``opset`` (so older runtimes load it), but at least 4."""
    from onnx import helper

    return max(int(helper.find_min_ir_version_for([helper.make_opsetid("", opset)])), MIN_IR_VERSION)


def inapplicable(options: ExportOptions, opset: int) -> str | None:
    """Why ``options`` at ``opset`` cannot be written, or ``None``."""
    import onnx

    newest = int(onnx.defs.onnx_opset_version())
    if not MIN_OPSET <= opset <= newest:
        return f"opset {opset}: this exporter writes opsets {MIN_OPSET} to {newest} (LSTM-7 and later)"
    if options.layout not in (0, 1):
        return f"layout {options.layout}: expected 0 (Transpose nodes) or 1 (the LSTM layout attribute)"
    if options.layout == 1 and opset < LAYOUT_OPSET:
        return f"layout=1: the LSTM layout attribute needs opset >= {LAYOUT_OPSET}, got opset {opset}"
    return None


# --- graph building ------------------------------------------------------------------------------


@dataclass
class _Graph:
    """Nodes and initializers collected while building, with the opset-dependent node forms."""

    opset: int
    nodes: list[Any] = field(default_factory=list)
    initializers: dict[str, Any] = field(default_factory=dict)

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any) -> None:
        from onnx import helper

        while inputs and not inputs[-1]:  # trailing optional inputs are left out, not named ""
            inputs = inputs[:-1]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))

    def const(self, name: str, value: NDArray[Any]) -> str:
        from onnx import numpy_helper

        if name not in self.initializers:
            self.initializers[name] = numpy_helper.from_array(np.ascontiguousarray(value), name)
        return name

    def weight(self, name: str, value: NDArray[Any]) -> str:
        return self.const(name, np.asarray(value, dtype=np.float32))

    def transpose(self, x: str, perm: tuple[int, ...], out: str) -> str:
        self.node("Transpose", [x], [out], name=f"{out}.transpose", perm=list(perm))
        return out

    def merge_last_two(self, x: str, out: str) -> str:
        """[a, b, D, H] -> [a, b, D*H]; ``0`` copies the (possibly dynamic) leading dims."""
        shape = self.const(_MERGE_SHAPE, np.array([0, 0, -1], dtype=np.int64))
        self.node("Reshape", [x, shape], [out], name=f"{out}.reshape")
        return out

    def split0(self, x: str, sizes: list[int], outs: list[str]) -> list[str]:
        """Split ``x`` along axis 0 (``split`` is an attribute before opset 13, an input after)."""
        if self.opset >= SPLIT_INPUT_OPSET:
            sizes_name = self.const(f"{x}.split_sizes", np.array(sizes, dtype=np.int64))
            self.node("Split", [x, sizes_name], outs, name=f"{x}.split", axis=0)
        else:
            self.node("Split", [x], outs, name=f"{x}.split", axis=0, split=sizes)
        return outs


@dataclass(frozen=True)
class _Stack:
    """Where a stack's tensors come from and go to."""

    x: str  # input tensor, in the interface layout
    outer_layout: int  # layout of the graph interface: 1 = batch_first
    node_layout: int  # layout of the LSTM nodes
    y: str  # name of the stack's output, in the interface layout
    states: bool  # produce Y_h / Y_c graph outputs
    initial: bool  # read initial_h / initial_c graph inputs
    lens: str  # sequence_lens input, or ""


def _initial_states(g: _Graph, config: LSTMConfig, name: str, node_layout: int) -> list[str]:
    """Per layer, the slice of ``name`` [L*D, B, H] in the nodes' layout ([D, B, H] or [B, D, H])."""
    layers, d = config.num_layers, config.num_directions
    parts = [name] if layers == 1 else g.split0(name, [d] * layers, [f"lstm{k}.{name}" for k in range(layers)])
    if node_layout == 0:
        return parts
    return [g.transpose(part, (1, 0, 2), f"lstm{k}.{name}.bdh") for k, part in enumerate(parts)]


def _directions_merged(g: _Graph, y: str, node_layout: int, target_layout: int, out: str) -> str:
    """An LSTM node's Y ([T, D, B, H] or [B, T, D, H]) as [T, B, D*H] or [B, T, D*H]."""
    perms = {(0, 0): (0, 2, 1, 3), (0, 1): (2, 0, 1, 3), (1, 0): (1, 0, 2, 3), (1, 1): None}
    perm = perms[node_layout, target_layout]
    if perm is not None:
        y = g.transpose(y, perm, f"{y}.{'tbdh' if target_layout == 0 else 'btdh'}")
    return g.merge_last_two(y, out)


def _build_stack(g: _Graph, config: LSTMConfig, weights: LSTMWeights, io: _Stack) -> None:
    layers = config.num_layers
    attrs = dict(config.operator_attributes)
    if io.node_layout == 1:
        attrs["layout"] = 1
    x = io.x
    if io.outer_layout != io.node_layout:
        x = g.transpose(x, (1, 0, 2), f"{x}.{'tbi' if io.node_layout == 0 else 'bti'}")
    h0 = _initial_states(g, config, "initial_h", io.node_layout) if io.initial else None
    c0 = _initial_states(g, config, "initial_c", io.node_layout) if io.initial else None
    finals: dict[str, list[str]] = {"Y_h": [], "Y_c": []}
    for k, layer in enumerate(weights.layers):
        p = f"lstm{k}"
        inputs = [
            x,
            g.weight(f"{p}.W", layer.W),
            g.weight(f"{p}.R", layer.R),
            g.weight(f"{p}.B", layer.B),
            io.lens,
            "" if h0 is None else h0[k],
            "" if c0 is None else c0[k],
            "" if layer.P is None else g.weight(f"{p}.P", layer.P),
        ]
        # A single layer in layout 0 writes the Y_h / Y_c graph outputs itself.
        own = {kind: kind if layers == 1 and io.node_layout == 0 else f"{p}.{kind}" for kind in finals}
        g.node("LSTM", inputs, [f"{p}.Y", *own.values()] if io.states else [f"{p}.Y"], name=p, **attrs)
        if io.states:
            for kind, name in own.items():
                if io.node_layout == 1:  # [B, D, H] -> [D, B, H]
                    finals[kind].append(g.transpose(name, (1, 0, 2), kind if layers == 1 else f"{p}.{kind}.dbh"))
                else:
                    finals[kind].append(name)
        last = k == layers - 1
        target = io.outer_layout if last else io.node_layout
        x = _directions_merged(g, f"{p}.Y", io.node_layout, target, io.y if last else f"{p}.output")
    if io.states and layers > 1:
        for kind, parts in finals.items():
            g.node("Concat", parts, [kind], name=f"{kind}.concat", axis=0)


def _value_info(name: str, elem_type: int, shape: list[int | str]) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, elem_type, shape)


def build_model(model: Model, weights: AnyWeights, options: ExportOptions) -> onnx.ModelProto:
    """The ONNX model of ``model`` with ``weights``, with the I/O contract of ``exporters.base``.

    Raises ``ValueError`` when ``options`` cannot be written (see ``inapplicable``) or the
    weights do not fit the model.
    """
    import onnx
    from onnx import TensorProto, helper

    opset = resolve_opset(options)
    problem = inapplicable(options, opset)
    if problem:
        raise ValueError(problem)
    lm = model if isinstance(model, LMConfig) else None
    config = model.lstm if isinstance(model, LMConfig) else model
    stack_weights = weights.lstm if isinstance(weights, LMWeights) else weights
    if (lm is None) != isinstance(weights, LSTMWeights):
        raise ValueError(f"weights: a {type(model).__name__} needs {'LMWeights' if lm else 'LSTMWeights'}")
    mismatch = stack_weights.matches(config)
    if mismatch:
        raise ValueError(mismatch)

    seq: int | str = SEQ if options.dynamic else options.example_seq_len
    batch: int | str = BATCH if options.dynamic else options.example_batch
    outer = 1 if config.batch_first else 0
    seq_batch = [batch, seq] if outer else [seq, batch]
    g = _Graph(opset)
    inputs, outputs = [], []
    if lm is not None:
        assert isinstance(weights, LMWeights)
        inputs.append(_value_info("tokens", TensorProto.INT64, seq_batch))
        embedding = g.weight("embedding", weights.embedding)
        g.node("Gather", [embedding, "tokens"], ["embedded"], name="embedding.gather", axis=0)
        io = _Stack("embedded", outer, options.layout, "lstm.output", states=False, initial=False, lens="")
        _build_stack(g, config, stack_weights, io)
        proj_t = g.weight("proj.weight_T", np.asarray(weights.proj_weight).T)
        g.node("MatMul", ["lstm.output", proj_t], ["logits.matmul"], name="proj.matmul")
        g.node("Add", ["logits.matmul", g.weight("proj.bias", weights.proj_bias)], ["logits"], name="proj.add")
        # axis=2 on a rank-3 tensor is the last axis under both LogSoftmax semantics (<13 flattens).
        g.node("LogSoftmax", ["logits"], ["log_probs"], name="log_softmax", axis=2)
        outputs.append(_value_info("log_probs", TensorProto.FLOAT, [*seq_batch, lm.vocab_size]))
    else:
        state_shape: list[int | str] = [config.num_layers * config.num_directions, batch, config.hidden_size]
        inputs.append(_value_info("X", TensorProto.FLOAT, [*seq_batch, config.input_size]))
        if options.initial_states:
            inputs += [_value_info(n, TensorProto.FLOAT, state_shape) for n in ("initial_h", "initial_c")]
        if options.sequence_lens:
            inputs.append(_value_info("sequence_lens", TensorProto.INT32, [batch]))
        lens = "sequence_lens" if options.sequence_lens else ""
        io = _Stack("X", outer, options.layout, "Y", states=True, initial=options.initial_states, lens=lens)
        _build_stack(g, config, stack_weights, io)
        outputs.append(_value_info("Y", TensorProto.FLOAT, [*seq_batch, config.output_size]))
        outputs += [_value_info(n, TensorProto.FLOAT, state_shape) for n in ("Y_h", "Y_c")]

    kind = "lstm language model" if lm else "lstm stack"
    graph = helper.make_graph(g.nodes, kind.replace(" ", "_"), inputs, outputs, list(g.initializers.values()))
    result = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="lstm-conformance onnx-native",
        doc_string=f"{kind} written around the ONNX LSTM operator",
    )
    result.ir_version = ir_version(opset)
    assert isinstance(result, onnx.ModelProto)
    return result


# --- the exporter --------------------------------------------------------------------------------


class OnnxNativeExporter:
    """Writes the model directly with ``onnx.helper``: one LSTM node per layer."""

    id = "onnx-native"
    description = "hand-written ONNX graph around the LSTM operator (every configuration the reference supports)"
    produces = "onnx"

    def unavailable(self) -> str | None:
        try:
            import onnx  # noqa: F401
        except ImportError as exc:
            return f"the onnx package is not installed ({exc})"
        return None

    def not_applicable(self, model: Model, options: ExportOptions) -> str | None:
        return inapplicable(options, resolve_opset(options))

    def versions(self) -> dict[str, str]:
        import onnx

        out = {"onnx": str(onnx.__version__)}
        try:  # it picks the default opset, so it belongs in the cache key
            import onnxruntime

            out["onnxruntime"] = str(onnxruntime.__version__)
        except ImportError:
            pass
        return out

    def export(self, model: Model, weights: AnyWeights, options: ExportOptions, path: Path) -> ExportOutcome:
        import onnx

        onnx.save_model(build_model(model, weights, options), str(path))
        return ExportOutcome()
