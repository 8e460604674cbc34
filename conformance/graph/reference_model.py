"""The float64 reference for one captured LSTM invocation and for a whole graph.

Whole graph: ``onnx.reference.ReferenceEvaluator`` with its LSTM and Loop ops replaced by the ones in
``evaluator_ops`` (imported only when a reference run happens, as ``onnx.reference`` takes ~0.35 s to
import); ``evaluator_ops`` also records the dtype choice (float64 inside the LSTM, outputs cast to the
node's dtype). One invocation: ``reference.lstm`` on exactly the tensors the runtime used, in float64.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx

from conformance.graph.capture import Invocation
from conformance.graph.nodes import LSTMNode
from conformance.graph.operator import lstm_call
from conformance.graph.runners import Feeds, Outputs, reference_runner

__all__ = ["lstm_call", "node_reference", "run_reference"]

Float64 = npt.NDArray[np.float64]


def run_reference(model: onnx.ModelProto, feeds: Feeds) -> Outputs:
    """Outputs of the whole ``model`` (an ``onnx.ModelProto``) with every LSTM node on ``reference.lstm``."""
    return reference_runner()(model, feeds)


def node_reference(node: LSTMNode, invocation: Invocation) -> dict[str, Float64]:
    """``reference.lstm`` in float64 on the tensors one invocation of ``node`` really received (float16
    values widened exactly); returns Y, Y_h and Y_c."""
    result = lstm_call(invocation.inputs, node.attributes)
    return {"Y": result.Y, "Y_h": result.Y_h, "Y_c": result.Y_c}
