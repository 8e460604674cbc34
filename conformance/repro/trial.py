"""One trial: a variant of the lane (its case, exporter, and whether it is one bare LSTM node), run and judged.

A variant is built as its lane would be (the exporter, the case's weights and inputs, the float64
reference) or, as :func:`one_node_model`, as the single ``LSTM`` node of an ``onnx-native`` export with
nothing around it, judged against ``reference.lstm`` (the operator itself). The runtime runs in the
:class:`~conformance.repro.worker.Worker`; the verdict comes from the one evaluator
(``conformance.evaluate``) at the tolerance the lane uses (the case's, or the dtype the runtime computes in).

A trial's :attr:`Trial.signature` says what kind of divergence it shows, so minimisation keeps a step only
when the divergence is the same one: the same error (numbers and quoted names aside), or the same kind of
failure (wrong values, wrong shapes, a misplaced node).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conformance import evaluate
from conformance.cases import Case
from conformance.diffs import OutputDiff
from conformance.status import ERROR, FAIL, PASS
from exporters.base import input_names
from reference.config import LSTMConfig
from reference.weights import LSTMWeights

if TYPE_CHECKING:
    import onnx

    from conformance.repro.worker import Worker

NATIVE = "onnx-native"
LSTM_OUTPUTS = ("Y", "Y_h", "Y_c")


@dataclass(frozen=True)
class Variant:
    """A lane's model and inputs, reduced or not: a case (without expectations), an exporter, one node or not."""

    case: Case
    exporter: str
    one_node: bool = False

    @property
    def as_one_node(self) -> bool:
        """Whether it is built as one bare LSTM node (asked for, and possible for this case)."""
        return self.one_node and one_node_possible(self.case, self.exporter)


def one_node_possible(case: Case, exporter: str) -> bool:
    """One LSTM layer from ``onnx-native`` whose graph layout is the node's own (no Transpose to drop)."""
    model = case.model
    return (
        exporter == NATIVE
        and isinstance(model, LSTMConfig)
        and model.num_layers == 1
        and model.batch_first == (case.export.layout == 1)
    )


@dataclass(frozen=True, eq=False)
class Trial:
    """A variant as it ran: the model file, what was fed, expected and returned, and the verdict."""

    variant: Variant
    status: str  # pass | fail | error; "unbuilt" when the variant could not be built or exported
    message: str
    model_path: Path | None = None
    feeds: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    expected: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    actual: dict[str, np.ndarray] | None = None
    diffs: tuple[OutputDiff, ...] = ()
    judged_at: str = "float32"
    explanation: str | None = None  # the key of the HYPOTHESES reading the wrong outputs match

    @property
    def diverges(self) -> bool:
        return self.status in (FAIL, ERROR)

    @property
    def signature(self) -> tuple[str, ...]:
        """What kind of divergence this is: ("error", the message without numbers and quoted names), or
        ("fail", "shape" | "placement"), or ("fail", "values", the reading the outputs match, or "")."""
        if self.status == ERROR:
            return ERROR, normalised(self.message)
        if self.status != FAIL:
            return (self.status,)
        failing = [d for d in self.diffs if not d.passed]
        if not failing:
            return FAIL, "placement"
        if any(not d.values_compared for d in failing):
            return FAIL, "shape"
        return FAIL, "values", self.explanation or ""

    @property
    def greatest(self) -> OutputDiff | None:
        """The output with the greatest absolute error (of the failing ones, when some fail)."""
        pool = [d for d in self.diffs if not d.passed] or list(self.diffs)
        return max(pool, key=lambda d: d.max_abs if d.max_abs == d.max_abs else np.inf, default=None)

    def summary(self) -> str:
        """One line: ``passes (greatest difference 6.1e-08)``, ``fails: Y_h off by 0.39``, ``errors: ...``."""
        worst = self.greatest
        if self.status == PASS:
            return f"passes (greatest difference {worst.max_abs:.2g})" if worst else "passes"
        if self.status == FAIL:
            failing = [d for d in self.diffs if not d.passed]
            shapes = [d for d in failing if not d.values_compared and d.actual_shape is not None]
            if shapes:
                d = shapes[0]
                return f"fails: {d.name} has shape {list(d.actual_shape or ())}, expected {list(d.expected_shape)}"
            if worst is not None and failing:
                names = ", ".join(d.name for d in failing)
                reading = f"; the outputs of the model {HYPOTHESES[self.explanation]}" if self.explanation else ""
                return f"fails: {names} off by up to {worst.max_abs:.2g} ({worst.name}){reading}"
            return f"fails: {(self.message.splitlines() or [''])[0]}"
        if self.status == ERROR:
            return f"errors: {(self.message.splitlines() or [''])[0]}"
        return f"could not be built: {self.message}"


_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'|`[^`]*`")
_NUMBER = re.compile(r"\d+(\.\d+)?([eE][-+]?\d+)?")


def normalised(message: str) -> str:
    """An error message without its numbers and quoted names, which change as a model shrinks."""
    text = _NUMBER.sub("N", _QUOTED.sub("Q", message.lower()))
    return " ".join(text.split())


# --- what a wrong result is instead ------------------------------------------------------------------------

# Readings of the model with one feature dropped or changed, in the order they are tried: wrong outputs
# that equal one of them (within tolerance) say what the runtime did: ignored ``clip``, ran reverse as
# forward... The text completes "the outputs are the specification's for the same model ...".
HYPOTHESES: dict[str, str] = {
    "sequence_lens": "without `sequence_lens` (every sequence runs all T steps)",
    "initial_states": "without `initial_h`/`initial_c` (zero initial states)",
    "P": "without `P` (no peepholes)",
    "clip": "without `clip`",
    "input_forget": "with `input_forget=0`",
    "activations": "with the default activations (Sigmoid, Tanh, Tanh)",
    "activation_params": "with each activation's default alpha and beta",
    "reverse_as_forward": "with `direction=forward` instead of reverse",
    "reverse_activations": "with the forward activations in the reverse direction too",
}


def _alternatives(
    config: LSTMConfig, weights: LSTMWeights, feeds: dict[str, np.ndarray], *, node_layout: int | None
) -> dict[str, dict[str, np.ndarray]]:
    """The reference's outputs for each applicable hypothesis (same weights and inputs, one thing changed).

    ``node_layout`` is the layout of a bare node (its outputs as the operator gives them), None for a stack.
    """
    from reference.lstm import lstm
    from reference.models import run_stack

    changes: dict[str, tuple[dict[str, Any], set[str]]] = {}  # key -> (config changes, inputs dropped)
    if "sequence_lens" in feeds:
        changes["sequence_lens"] = ({}, {"sequence_lens"})
    if "initial_h" in feeds:
        changes["initial_states"] = ({}, {"initial_h", "initial_c"})
    if config.peepholes:
        changes["P"] = ({"peepholes": False}, set())
    if config.clip is not None:
        changes["clip"] = ({"clip": None}, set())
    if config.input_forget:
        changes["input_forget"] = ({"input_forget": 0}, set())
    if config.activations is not None:
        changes["activations"] = ({"activations": None, "activation_alpha": None, "activation_beta": None}, set())
    if config.activation_alpha is not None or config.activation_beta is not None:
        changes["activation_params"] = ({"activation_alpha": None, "activation_beta": None}, set())
    if config.direction == "reverse":
        changes["reverse_as_forward"] = ({"direction": "forward"}, set())
    acts = config.activations
    if acts is not None and acts[:3] != acts[3:] and config.activation_alpha is config.activation_beta is None:
        changes["reverse_activations"] = ({"activations": acts[:3] * 2}, set())
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, (config_changes, dropped) in changes.items():
        other = dataclasses.replace(config, **config_changes)
        kept = {name: value for name, value in feeds.items() if name not in dropped}
        layers = weights.layers if other.peepholes else tuple(dataclasses.replace(w, P=None) for w in weights.layers)
        if node_layout is not None:
            layer = layers[0]
            result = lstm(
                kept["X"], layer.W, layer.R, layer.B, kept.get("sequence_lens"), kept.get("initial_h"),
                kept.get("initial_c"), layer.P, layout=node_layout, **other.operator_attributes,
            )  # fmt: skip
            out[key] = {"Y": result.Y, "Y_h": result.Y_h, "Y_c": result.Y_c}
        else:
            stack = run_stack(
                other, LSTMWeights(layers), kept["X"], initial_h=kept.get("initial_h"),
                initial_c=kept.get("initial_c"), sequence_lens=kept.get("sequence_lens"),
            )  # fmt: skip
            out[key] = {"Y": stack.output, "Y_h": stack.h_n, "Y_c": stack.c_n}
    return out


def _explanation(
    case: Case, weights: Any, feeds: dict[str, np.ndarray], actual: dict[str, np.ndarray], *, node_layout: int | None,
    computed_in: str | None,
) -> str | None:  # fmt: skip
    """The first hypothesis whose outputs the actual outputs equal within tolerance, or None."""
    from conformance.compare import compare_outputs

    if not isinstance(case.model, LSTMConfig) or not isinstance(weights, LSTMWeights):
        return None
    try:
        alternatives = _alternatives(case.model, weights, feeds, node_layout=node_layout)
    except ValueError:
        return None
    for key, expected in alternatives.items():
        allowed = evaluate.tolerances(expected, actual, case.tolerance_for, computed_in=computed_in)
        if all(d.passed for d in compare_outputs(actual, expected, allowed)):
            return key
    return None


# --- building ---------------------------------------------------------------------------------------------


def one_node_model(config: LSTMConfig, weights: LSTMWeights, options: Any) -> onnx.ModelProto:
    """The ``LSTM`` node of the ``onnx-native`` export of ``config`` (one layer) as a model of its own.

    The node keeps its attributes and weight initializers; its inputs and outputs become the graph's
    (``X``, ``sequence_lens``, ``initial_h``, ``initial_c``; ``Y``, ``Y_h``, ``Y_c``), in the node's own layout.
    """
    import onnx
    from onnx import TensorProto, helper

    from exporters.onnx_native import BATCH, SEQ, build_model

    full = build_model(config, weights, options)
    [node] = [n for n in full.graph.node if n.op_type == "LSTM"]
    graph_inputs = {0: "X", 4: "sequence_lens", 5: "initial_h", 6: "initial_c"}
    names = [graph_inputs.get(k, name) if name else "" for k, name in enumerate(node.input)]
    layout = options.layout
    seq: int | str = SEQ if options.dynamic else options.example_seq_len
    batch: int | str = BATCH if options.dynamic else options.example_batch
    d, h = config.num_directions, config.hidden_size
    seq_batch = [batch, seq] if layout else [seq, batch]
    state: list[int | str] = [batch, d, h] if layout else [d, batch, h]
    shapes: dict[str, tuple[int, list[int | str]]] = {
        "X": (TensorProto.FLOAT, [*seq_batch, config.input_size]),
        "sequence_lens": (TensorProto.INT32, [batch]),
        "initial_h": (TensorProto.FLOAT, state),
        "initial_c": (TensorProto.FLOAT, state),
    }
    inputs = [helper.make_tensor_value_info(n, *shapes[n]) for n in names if n in shapes]
    y_shape: list[int | str] = [batch, seq, d, h] if layout else [seq, d, batch, h]
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y_shape)]
    outputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, state) for n in ("Y_h", "Y_c")]
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    lstm = helper.make_node("LSTM", names, list(LSTM_OUTPUTS), name=node.name, **attributes)
    initializers = [t for t in full.graph.initializer if t.name in names]
    graph = helper.make_graph([lstm], "lstm", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=list(full.opset_import), producer_name=full.producer_name)
    model.ir_version = full.ir_version
    model.doc_string = "one ONNX LSTM node (lstm-conformance repro)"
    onnx.checker.check_model(model)
    assert isinstance(model, onnx.ModelProto)
    return model


def _one_node_data(
    case: Case, weights: LSTMWeights, feeds: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int | None], dict[str, np.ndarray]]:
    """Feeds in the node's layout, the operator's float64 outputs, the time axes and the padding masks."""
    from reference.lstm import lstm

    config = case.model
    assert isinstance(config, LSTMConfig)
    layout = case.export.layout
    node_feeds = dict(feeds)
    if layout == 1:
        for name in ("initial_h", "initial_c"):
            if name in node_feeds:
                node_feeds[name] = np.ascontiguousarray(node_feeds[name].transpose(1, 0, 2))
    layer = weights.layers[0]
    out = lstm(
        node_feeds["X"],
        layer.W,
        layer.R,
        layer.B,
        node_feeds.get("sequence_lens"),
        node_feeds.get("initial_h"),
        node_feeds.get("initial_c"),
        layer.P,
        layout=layout,
        **config.operator_attributes,
    )
    expected = {"Y": out.Y, "Y_h": out.Y_h, "Y_c": out.Y_c}
    masks: dict[str, np.ndarray] = {}
    lens = node_feeds.get("sequence_lens")
    if lens is not None:
        steps = case.inputs.seq_len
        padded = np.arange(steps)[:, None] >= np.asarray(lens)[None, :]  # [T, B]
        masks["Y"] = padded.T[:, :, None, None] if layout else padded[:, None, :, None]
    return node_feeds, expected, {"Y": 1 if layout else 0, "Y_h": None, "Y_c": None}, masks


def run_trial(
    variant: Variant, runtime_id: str, worker: Worker, scratch: Path, *, computed_in: str | None, required: str | None
) -> Trial:
    """Build ``variant``, run it on the runtime in the worker, judge it. Never raises for the variant's sake."""
    from conformance.inputs import build, case_weights
    from conformance.lane import export_options
    from conformance.repro.worker import RunJob
    from exporters.registry import export

    case = variant.case
    options = export_options(case)
    try:
        weights = case_weights(case)
        data = build(case, weights)
    except ValueError as exc:
        return Trial(variant, "unbuilt", str(exc))
    feeds = {name: data.feeds[name] for name in input_names(case.model, options)}
    expected, time_axes, masks = data.expected, data.time_axes, data.padding_masks
    if variant.as_one_node:
        import onnx

        assert isinstance(weights, LSTMWeights) and isinstance(case.model, LSTMConfig)
        try:
            model = one_node_model(case.model, weights, options)
        except (ValueError, onnx.checker.ValidationError) as exc:
            return Trial(variant, "unbuilt", str(exc))
        path = scratch / "one-node" / f"{len(list(scratch.glob('one-node/*.onnx')))}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(model, str(path))
        feeds, expected, time_axes, masks = _one_node_data(case, weights, feeds)
    else:
        artifact = export(case.model, weights, variant.exporter, options, cache_dir=scratch)
        if not artifact.ok or artifact.path is None:
            return Trial(variant, "unbuilt", f"{variant.exporter}: {artifact.status}: {artifact.reason}")
        path = artifact.path
    reply = worker.run(RunJob(runtime_id, str(path), feeds, case.model, weights))
    base = Trial(variant, ERROR, reply.error or "", path, feeds, expected, judged_at=computed_in or "float32")
    if reply.outputs is None:
        return base
    problem = evaluate.placement_problem(runtime_id, required, reply.placement)
    verdict = evaluate.judge(
        reply.outputs,
        expected,
        evaluate.tolerances(expected, reply.outputs, case.tolerance_for, computed_in=computed_in),
        time_axes=time_axes,
        padding_masks=masks,
        problems=[problem] if problem else [],
    )
    explanation = None
    if verdict.status == FAIL and not problem and all(d.values_compared for d in verdict.outputs):
        layout = case.export.layout if variant.as_one_node else None
        explanation = _explanation(case, weights, feeds, reply.outputs, node_layout=layout, computed_in=computed_in)
    return dataclasses.replace(
        base,
        status=verdict.status,
        message=verdict.message,
        actual=reply.outputs,
        diffs=verdict.outputs,
        explanation=explanation,
    )


def variant_of(case: Case, exporter: str) -> Variant:
    """The lane itself as a variant: its case without expected divergences (the raw verdict is wanted)."""
    return Variant(dataclasses.replace(case, expect=()), exporter)
