"""Judge one captured invocation of an LSTM node: the float64 reference on exactly the tensors the runtime
used, compared with what the runtime returned.

Only the outputs the node itself declares are judged (the instrumented copy computes all three, but an
output the model never asked for cannot make the model wrong). ``Y`` is judged per time step and must be
exactly zero past ``sequence_lens``. The verdict lists the node's features with a known runtime
divergence (see ``reference/SEMANTICS.md``) so a message can name the likely cause instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from conformance.compare import OutputDiff, Tolerance, compare_outputs, default_tolerance, format_mismatch
from conformance.graph.capture import Invocation
from conformance.graph.nodes import OUTPUT_ROLES, LSTMNode
from conformance.graph.reference_model import node_reference

__all__ = ["DIVERGENCE_FEATURES", "NodeVerdict", "divergence_features", "judge_node", "tolerance_for"]

# Feature name -> what differs, from the measurements in reference/SEMANTICS.md.
DIVERGENCE_FEATURES: dict[str, str] = {
    "clip": "clip is set: ONNX Runtime clips only the gate pre-activations (not C_t on its way into h), "
    "and the ONNX reference evaluator ignores clip",
    "zero_length_sequence": "a sequence_lens entry is 0: ONNX Runtime returns zero Y_h/Y_c there, "
    "not the initial state",
    "short_sequence": "a sequence_lens entry is shorter than the sequence: the ONNX reference evaluator "
    "ignores sequence_lens",
    "activations": "the activations are not the default Sigmoid/Tanh/Tanh: ONNX Runtime's alpha/beta "
    "defaults for ThresholdedRelu, Affine and ScaledTanh differ, and the ONNX reference evaluator ignores them",
    "layout": "layout=1: ONNX Runtime refuses batch-first LSTM nodes",
    "input_forget": "input_forget=1: the ONNX reference evaluator ignores it",
}


@dataclass(frozen=True)
class NodeVerdict:
    """How one invocation of ``node`` compares with the reference; truthy when every judged output passed."""

    node: LSTMNode
    iteration: tuple[int, ...]
    diffs: tuple[OutputDiff, ...]
    features: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return all(self.diffs)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def failed(self) -> tuple[OutputDiff, ...]:
        return tuple(d for d in self.diffs if not d)

    def messages(self) -> tuple[str, ...]:
        """One message per failed output: where, then ``format_mismatch``'s text, then each known-divergence
        feature the node uses (a likely cause, stated as such)."""
        where = f"LSTM node {self.node.path}"
        if self.iteration:
            where += f" (iteration {', '.join(str(i) for i in self.iteration)})"
        notes = "".join(
            f"\nThe node uses a feature with a known divergence: {DIVERGENCE_FEATURES[f]}" for f in self.features
        )
        return tuple(f"{where}: {format_mismatch(diff)}{notes}" for diff in self.failed)


def divergence_features(node: LSTMNode, invocation: Invocation | None = None) -> tuple[str, ...]:
    """The node's features with a known runtime divergence, in ``DIVERGENCE_FEATURES`` order. The
    sequence_lens features need the invocation (the values are data, not attributes)."""
    attributes = node.attributes
    found = {
        "clip": attributes.clip is not None,
        "activations": not attributes.default_activations,
        "layout": attributes.layout == 1,
        "input_forget": attributes.input_forget == 1,
    }
    if invocation is not None and "sequence_lens" in invocation.tensors:
        lengths = np.asarray(invocation.tensors["sequence_lens"])
        steps = invocation.tensors["X"].shape[1 if attributes.layout == 1 else 0]
        found["zero_length_sequence"] = bool(np.any(lengths == 0))
        found["short_sequence"] = bool(np.any(lengths < steps))
    return tuple(name for name in DIVERGENCE_FEATURES if found.get(name))


def judge_node(
    node: LSTMNode,
    invocation: Invocation,
    *,
    tolerances: Mapping[str, Tolerance] | Tolerance | None = None,
) -> NodeVerdict:
    """Compare ``invocation``'s outputs with ``reference.lstm`` on its inputs.

    ``tolerances`` is one ``Tolerance`` or a table by dtype name (``"float16"``); a dtype it lacks gets
    ``default_tolerance``. A ``ValueError`` from the reference (captured tensors of inconsistent shapes,
    an unknown activation) propagates: it is a finding about the model, not a pass or a fail."""
    expected = node_reference(node, invocation)
    actual = invocation.outputs
    judged = [role for role in OUTPUT_ROLES if role in node.outputs] or list(OUTPUT_ROLES)
    dtype = np.asarray(actual["Y"]).dtype.name if "Y" in actual else (node.dtype or "float32")
    tolerance = tolerance_for(dtype, tolerances)
    layout = node.attributes.layout
    masks = {}
    if "sequence_lens" in invocation.tensors:
        masks["Y"] = _padding_mask(invocation.tensors["sequence_lens"], expected["Y"].shape, layout)
    diffs = compare_outputs(
        {role: actual.get(role) for role in judged},
        {role: expected[role] for role in judged},
        tolerance,
        time_axes={"Y": 1 if layout == 1 else 0, "Y_h": None, "Y_c": None},
        padding_masks=masks,
    )
    return NodeVerdict(node, invocation.iteration, tuple(diffs), divergence_features(node, invocation))


def tolerance_for(dtype: str, tolerances: Mapping[str, Tolerance] | Tolerance | None) -> Tolerance:
    """The tolerance for values of ``dtype``: ``tolerances`` itself, its entry for ``dtype``, or the default."""
    if isinstance(tolerances, Tolerance):
        return tolerances
    if tolerances is not None and dtype in tolerances:
        return tolerances[dtype]
    return default_tolerance(dtype)


def _padding_mask(lengths: npt.ArrayLike, shape: tuple[int, ...], layout: int) -> npt.NDArray[np.bool_]:
    """True where Y lies past a sequence's length (Y is [T, D, B, H], or [B, T, D, H] with layout=1)."""
    lens = np.asarray(lengths, dtype=np.int64)
    if layout == 1:
        batch, steps = shape[0], shape[1]
        past: Any = np.arange(steps)[None, :] >= lens[:batch, None]  # [B, T]
        return np.broadcast_to(past[:, :, None, None], shape)
    steps, batch = shape[0], shape[2]
    past = np.arange(steps)[:, None] >= lens[None, :batch]  # [T, B]
    return np.broadcast_to(past[:, None, :, None], shape)
