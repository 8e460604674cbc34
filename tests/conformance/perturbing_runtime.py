"""A test-only runtime: ONNX Runtime CPU with one LSTM node's captured ``Y_h`` pushed out of tolerance.

``conformance check`` runs an instrumented copy of the model whose graph outputs include a copy of each
LSTM node's tensors (``conformance/graph/instrument.py``: an ``Identity`` from the node's ``Y_h`` to a
graph output). This runtime finds that graph output for the main-graph LSTM node named by
``$PERTURB_NODE`` (its path as ``check`` prints it, e.g. ``lstm/LSTM_1``) and adds ten times the allowed
error (``10 * (atol + rtol * |v|)``) to it, so only that node's captured output is off: the model's own
outputs, and every other node, are ORT's. On a model with no such capture (the user's model itself, a
stream) it is plain ORT CPU.

Register it with ``CONFORMANCE_EXTRA_RUNTIMES="perturbed=tests.conformance.perturbing_runtime:PerturbingRuntime"``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from conformance.compare import default_tolerance
from conformance.runtimes.onnxruntime_runtime import OrtRuntime, OrtSession
from exporters.base import AnyWeights, Artifact, Model

NODE_ENV = "PERTURB_NODE"
FACTOR = 10.0  # times the allowed error


def captured_y_h(path: Path, node_path: str) -> str | None:
    """The graph output that copies the ``Y_h`` of main-graph LSTM node ``node_path``, or None."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    outputs = {o.name for o in graph.output}
    wanted = node_path.strip("/")
    y_h = [n.output[1] for n in graph.node if n.op_type == "LSTM" and n.name.strip("/") == wanted and len(n.output) > 1]
    if not y_h or not y_h[0]:
        return None
    for node in graph.node:
        if node.op_type == "Identity" and list(node.input) == [y_h[0]] and node.output[0] in outputs:
            return str(node.output[0])
    return None


def push_out(value: np.ndarray) -> np.ndarray:
    """``value`` moved by ten times its dtype's default tolerance, away from zero, element by element."""
    tolerance = default_tolerance(value.dtype)
    magnitude = np.abs(value.astype(np.float64))
    moved = value.astype(np.float64) + FACTOR * (tolerance.atol + tolerance.rtol * magnitude)
    return moved.astype(value.dtype)


class PerturbingSession:
    """An ORT CPU session whose ``run`` perturbs one output (when the model has it)."""

    def __init__(self, inner: OrtSession, target: str | None) -> None:
        self.inner, self.target = inner, target

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.inner.run(feeds)
        if self.target is not None and self.target in outputs:
            outputs[self.target] = push_out(np.asarray(outputs[self.target]))
        return outputs

    def placement(self) -> dict[str, str]:
        return self.inner.placement()

    def timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[Callable[[], object], Callable[[], None] | None, str]:
        return self.inner.timed(feeds)

    def close(self) -> None:
        self.inner.close()


class PerturbingRuntime:
    consumes = "onnx"
    required_provider: str | None = None
    description = "test double: ONNX Runtime CPU with one LSTM node's captured Y_h out of tolerance"

    def __init__(self) -> None:
        self.id = "perturbed"  # the registry sets it from CONFORMANCE_EXTRA_RUNTIMES
        self.ort = OrtRuntime("CPUExecutionProvider", "all")

    def unavailable(self) -> str | None:
        return self.ort.unavailable()

    def settings(self) -> dict[str, Any]:
        return {**self.ort.settings(), "perturbed_node": os.environ.get(NODE_ENV)}

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> PerturbingSession:
        assert artifact is not None and artifact.path is not None
        node = os.environ.get(NODE_ENV)
        target = captured_y_h(artifact.path, node) if node else None
        return PerturbingSession(self.ort.open(artifact, model, weights), target)
