"""Node-level conformance for any ONNX graph: find every LSTM node, capture what it received and
returned on a runtime, and judge it against the float64 reference.

The modules import onnx at module level (``onnx.reference`` and onnxruntime only when a run needs them).
Only ``conformance check`` imports this package, lazily, so ``conformance --help`` stays fast; a test
holds both lines.
"""

from __future__ import annotations

from conformance.graph.bisect import Divergence, first_divergence, topological_order
from conformance.graph.capture import CaptureError, Captures, Invocation, NodeCapture, NotExercised, capture
from conformance.graph.instrument import ControlPlan, Instrumented, SitePlan, instrument
from conformance.graph.nodes import INPUT_ROLES, OUTPUT_ROLES, Enclosing, LSTMAttributes, LSTMNode
from conformance.graph.reference_model import node_reference, run_reference
from conformance.graph.runners import Feeds, Outputs, Run, onnxruntime_runner, reference_runner
from conformance.graph.verdict import DIVERGENCE_FEATURES, NodeVerdict, divergence_features, judge_node
from conformance.graph.walk import GraphError, find_lstm_nodes, inline_functions

__all__ = [
    "DIVERGENCE_FEATURES",
    "INPUT_ROLES",
    "OUTPUT_ROLES",
    "CaptureError",
    "Captures",
    "ControlPlan",
    "Divergence",
    "Enclosing",
    "Feeds",
    "GraphError",
    "Instrumented",
    "Invocation",
    "LSTMAttributes",
    "LSTMNode",
    "NodeCapture",
    "NodeVerdict",
    "NotExercised",
    "Outputs",
    "Run",
    "SitePlan",
    "capture",
    "divergence_features",
    "find_lstm_nodes",
    "first_divergence",
    "inline_functions",
    "instrument",
    "judge_node",
    "node_reference",
    "onnxruntime_runner",
    "reference_runner",
    "run_reference",
    "topological_order",
]
