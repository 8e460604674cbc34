"""Deliberately wrong exporters: the export bugs the gate must catch.

Each mutant builds the ``onnx-native`` model and breaks it the way a real
exporter bug would: in the weights it writes (gate order, a dropped bias
half, swapped directions, float16 rounding, one perturbed weight) or in the
graph (``sequence_lens`` not wired, initial h and c swapped, clip removed or
added, ``input_forget`` flipped, a layer's direction axis merged without its
transpose). ``conformance selftest`` runs the suite against every mutant and
proves each one is caught; a test plants one to prove ``run`` fails.

Mutant exporter ids are ``mutant-<name>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from exporters.base import AnyWeights, ExportOptions, ExportOutcome, Model
from reference.config import LMConfig, LSTMConfig
from reference.weights import IOFC_TO_IFGO, LayerWeights, LMWeights, LSTMWeights, permute_gates

PREFIX = "mutant-"
# One weight moves by this many float32 tolerances (atol + rtol, conformance.compare's float32 row).
PERTURB_TOLERANCES = 10.0
FLOAT32_ATOL, FLOAT32_RTOL = 2e-6, 2e-5
CLIP_ADDED = 0.05  # binds on any gate pre-activation larger than 0.05 in magnitude


def _lstm_config(model: Model) -> LSTMConfig:
    return model.lstm if isinstance(model, LMConfig) else model


def _map_layers(weights: AnyWeights, fn: Callable[[LayerWeights], LayerWeights]) -> AnyWeights:
    if isinstance(weights, LMWeights):
        return dataclasses.replace(weights, lstm=_map_layers(weights.lstm, fn))  # type: ignore[arg-type]
    return LSTMWeights(tuple(fn(layer) for layer in weights.layers))


def _gate_order(layer: LayerWeights) -> LayerWeights:
    """ONNX initializers written in torch's IFGO order: the classic missing reorder."""
    h4 = layer.W.shape[1]
    b = np.concatenate(
        [permute_gates(layer.B[:, :h4], IOFC_TO_IFGO, axis=1), permute_gates(layer.B[:, h4:], IOFC_TO_IFGO, axis=1)],
        axis=1,
    )
    return LayerWeights(
        permute_gates(layer.W, IOFC_TO_IFGO, axis=1), permute_gates(layer.R, IOFC_TO_IFGO, axis=1), b, layer.P
    )


def _bias_half(layer: LayerWeights) -> LayerWeights:
    """Only ``bias_ih`` exported; ``bias_hh`` (Rb) dropped."""
    b = layer.B.copy()
    b[:, b.shape[1] // 2 :] = 0.0
    return dataclasses.replace(layer, B=b)


def _directions(layer: LayerWeights) -> LayerWeights:
    """Forward and backward weights of a bidirectional layer swapped."""
    flip = slice(None, None, -1)
    return LayerWeights(layer.W[flip], layer.R[flip], layer.B[flip], None if layer.P is None else layer.P[flip])


def _half(a: Any) -> Any:
    return None if a is None else a.astype(np.float16).astype(np.float64)


def _float16(layer: LayerWeights) -> LayerWeights:
    """Weights round-tripped through float16."""
    return LayerWeights(_half(layer.W), _half(layer.R), _half(layer.B), _half(layer.P))


def _perturb(layer: LayerWeights) -> LayerWeights:
    """The cell-candidate bias of unit 0 (direction 0) moved by 10x the float32 tolerance."""
    b = layer.B.copy()
    hidden = layer.R.shape[2]
    value = b[0, 3 * hidden]
    b[0, 3 * hidden] = value + PERTURB_TOLERANCES * (FLOAT32_ATOL + FLOAT32_RTOL * max(1.0, abs(value)))
    return dataclasses.replace(layer, B=b)


def _perturbed(weights: AnyWeights) -> AnyWeights:
    """One weight moved by 10x the float32 tolerance of the output it drives.

    LSTM stacks: the first layer's cell-candidate bias of unit 0, direction 0.
    Language models: the output bias of token 0, scaled by the largest
    |log-prob| (log V) that the relative tolerance multiplies.
    """
    if isinstance(weights, LMWeights):
        bias = weights.proj_bias.copy()
        scale = FLOAT32_ATOL + FLOAT32_RTOL * float(np.log(bias.shape[0]))
        bias[0] += PERTURB_TOLERANCES * scale
        return dataclasses.replace(weights, proj_bias=bias)
    return LSTMWeights((_perturb(weights.layers[0]), *weights.layers[1:]))


def _float16_all(weights: AnyWeights) -> AnyWeights:
    mutated = _map_layers(weights, _float16)
    if isinstance(mutated, LMWeights):
        return dataclasses.replace(
            mutated,
            embedding=_half(mutated.embedding),
            proj_weight=_half(mutated.proj_weight),
            proj_bias=_half(mutated.proj_bias),
        )
    return mutated


# --- graph mutations (on the onnx-native ModelProto) -------------------------------------------


def _lstm_nodes(model: Any) -> list[Any]:
    return [n for n in model.graph.node if n.op_type == "LSTM"]


def _inputs(node: Any) -> list[str]:
    return list(node.input) + [""] * (8 - len(node.input))


def _set_inputs(node: Any, inputs: list[str]) -> None:
    while inputs and inputs[-1] == "":
        inputs.pop()
    del node.input[:]
    node.input.extend(inputs)


def _drop_sequence_lens(model: Any) -> None:
    for node in _lstm_nodes(model):
        inputs = _inputs(node)
        inputs[4] = ""
        _set_inputs(node, inputs)


def _swap_states(model: Any) -> None:
    for node in _lstm_nodes(model):
        inputs = _inputs(node)
        inputs[5], inputs[6] = inputs[6], inputs[5]
        _set_inputs(node, inputs)


def _set_attribute(model: Any, name: str, value: Any) -> None:
    from onnx import helper

    for node in _lstm_nodes(model):
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend(kept)
        if value is not None:
            node.attribute.append(helper.make_attribute(name, value))


def _skip_direction_transpose(model: Any) -> None:
    """Merge [T, D, B, H] into [T, B, D*H] by Reshape alone, without moving the direction axis."""
    outputs = {out for node in _lstm_nodes(model) for out in node.output[:1]}
    doomed = [n for n in model.graph.node if n.op_type == "Transpose" and n.input[0] in outputs]
    for transpose in doomed:
        for node in model.graph.node:
            for i, name in enumerate(node.input):
                if name == transpose.output[0]:
                    node.input[i] = transpose.input[0]
        model.graph.node.remove(transpose)


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    weights: Callable[[AnyWeights], AnyWeights] | None = None
    graph: Callable[[Any, LSTMConfig], None] | None = None
    applies: Callable[[LSTMConfig, ExportOptions], str | None] = lambda config, options: None


def _needs_bidirectional(config: LSTMConfig, options: ExportOptions) -> str | None:
    return None if config.direction == "bidirectional" else "needs a bidirectional model"


MUTATIONS: dict[str, Mutation] = {
    m.name: m
    for m in (
        Mutation(
            "gate-order", "initializers in torch's IFGO gate order", weights=lambda w: _map_layers(w, _gate_order)
        ),
        Mutation(
            "bias-half-dropped", "Rb (bias_hh) dropped, only Wb exported", weights=lambda w: _map_layers(w, _bias_half)
        ),
        Mutation(
            "directions-swapped",
            "forward/backward weights swapped in a bidirectional layer",
            weights=lambda w: _map_layers(w, _directions),
            applies=_needs_bidirectional,
        ),
        Mutation(
            "sequence-lens-ignored",
            "sequence_lens input not wired to the LSTM nodes",
            graph=lambda m, c: _drop_sequence_lens(m),
            applies=lambda c, o: None if o.sequence_lens else "needs a sequence_lens input",
        ),
        Mutation("float16-weights", "weights round-tripped through float16", weights=_float16_all),
        Mutation(
            "states-swapped",
            "initial_h and initial_c swapped",
            graph=lambda m, c: _swap_states(m),
            applies=lambda c, o: None if o.initial_states else "needs initial states",
        ),
        Mutation(
            "clip-removed",
            "the clip attribute dropped",
            graph=lambda m, c: _set_attribute(m, "clip", None),
            applies=lambda c, o: None if c.clip is not None else "needs a model with clip",
        ),
        Mutation(
            "clip-added",
            f"clip={CLIP_ADDED} added",
            graph=lambda m, c: _set_attribute(m, "clip", CLIP_ADDED),
            applies=lambda c, o: None if c.clip is None else "the model already clips",
        ),
        Mutation(
            "input-forget-flipped",
            "input_forget flipped",
            graph=lambda m, c: _set_attribute(m, "input_forget", 1 - c.input_forget),
        ),
        Mutation(
            "weight-perturbed",
            f"one weight moved by {PERTURB_TOLERANCES:g}x the float32 tolerance",
            weights=_perturbed,
        ),
        Mutation(
            "direction-misreshaped",
            "a layer's [T, D, B, H] output reshaped to [T, B, D*H] without the transpose",
            graph=lambda m, c: _skip_direction_transpose(m),
            applies=_needs_bidirectional,
        ),
    )
}


def mutant_ids() -> list[str]:
    return [PREFIX + name for name in MUTATIONS]


class MutantExporter:
    """The onnx-native model with one mutation applied."""

    produces = "onnx"

    def __init__(self, name: str) -> None:
        self.mutation = MUTATIONS[name]
        self.id = PREFIX + name
        self.description = f"selftest mutant: {self.mutation.description}"

    def unavailable(self) -> str | None:
        from exporters.onnx_native import OnnxNativeExporter

        return OnnxNativeExporter().unavailable()

    def not_applicable(self, model: Model, options: ExportOptions) -> str | None:
        from exporters.onnx_native import OnnxNativeExporter

        reason = self.mutation.applies(_lstm_config(model), options)
        return reason or OnnxNativeExporter().not_applicable(model, options)

    def versions(self) -> dict[str, str]:
        from exporters.onnx_native import OnnxNativeExporter

        return {**OnnxNativeExporter().versions(), "mutation": self.mutation.name}

    def export(self, model: Model, weights: AnyWeights, options: ExportOptions, path: Path) -> ExportOutcome:
        import onnx

        from exporters.onnx_native import build_model

        if self.mutation.weights is not None:
            weights = self.mutation.weights(weights)
        proto = build_model(model, weights, options)
        if self.mutation.graph is not None:
            self.mutation.graph(proto, _lstm_config(model))
        onnx.save_model(proto, str(path))
        return ExportOutcome()
