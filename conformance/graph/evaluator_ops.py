"""Ops that ``onnx.reference.ReferenceEvaluator`` runs in place of its own for the whole-model reference.

LSTM is ``reference.lstm`` (the evaluator's own LSTM ignores clip, activations, input_forget and
sequence_lens).

Choice of dtype: the LSTM is computed in float64 and its outputs are cast once to the node's dtype (that
of X). The ops after it then see the types the graph declares, so they behave as the graph specifies
(a float32 Concat with float32 tensors, a Loop whose carried state keeps its type, model outputs of the
declared dtype), and the reference differs from an exact float64 model by one rounding per LSTM output,
far inside the tolerance for that dtype. Keeping float64 would instead silently promote every later op
and change what they compute (integer casts, comparisons against float32 thresholds).

Loop: onnx 1.23's evaluator joins a Loop's per-iteration scan outputs with ``np.vstack`` (concatenating
along axis 0 where ONNX Runtime stacks them on a new axis, as the spec's pseudocode accumulates them),
fails on a loop that runs no iteration, and runs no iteration when the optional ``cond`` input is
omitted. ``ReferenceLoop`` stacks, returns empty scan outputs for no iteration, and treats no ``cond``
as true.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from onnx.reference.op_run import OpRun
from onnx.reference.ops.op_loop import Loop

from conformance.graph.nodes import INPUT_ROLES, LSTMAttributes
from conformance.graph.operator import lstm_call

__all__ = ["ReferenceLSTM", "ReferenceLoop"]


class ReferenceLSTM(OpRun):
    """The ONNX ``LSTM`` op for ``ReferenceEvaluator(new_ops=[ReferenceLSTM])``: ``reference.lstm`` in
    float64, outputs cast to X's dtype. The class name is the op type the evaluator replaces."""

    op_domain = ""

    def _run(self, *inputs: npt.NDArray[Any] | None, **attributes: Any) -> tuple[npt.NDArray[Any], ...]:
        known = {k: v for k, v in attributes.items() if k in LSTMAttributes.__dataclass_fields__}
        config = LSTMAttributes.from_values({k: v for k, v in known.items() if v is not None})
        args = dict(zip(INPUT_ROLES, inputs, strict=False))
        X = args["X"]
        assert X is not None, "X is a required input"
        result = lstm_call(args, config)
        count = len(self.onnx_node.output)
        return tuple(np.asarray(value).astype(X.dtype) for value in result[:count])


ReferenceLSTM.__name__ = "LSTM"  # the evaluator matches new ops to nodes by class name


class ReferenceLoop(Loop):
    """The ONNX ``Loop`` op with scan outputs stacked on a new leading axis, one slice per iteration."""

    op_domain = ""

    def __init__(self, onnx_node: Any, run_params: Any) -> None:
        Loop.__init__(self, onnx_node, run_params)  # type: ignore[no-untyped-call]
        run_body: Any = getattr(self, "_run_body")  # noqa: B009 - set per instance by OpRun for ``body``
        self._slices: list[tuple[int, ...]] = []
        self._iterations = 0

        def counted_body(*args: Any, **kwargs: Any) -> Any:
            outputs = run_body(*args, **kwargs)
            self._iterations += 1
            self._slices = [np.shape(o) for o in outputs[len(outputs) - self.K :]]
            return outputs

        self._run_body = counted_body

    def _run(self, M: Any, cond: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        if cond is None:  # an omitted condition means "run M times"; the evaluator reads it as False
            cond = np.array(True)
        if self.K and ((M is not None and int(M) <= 0) or not bool(cond)):  # vstack of nothing fails
            return (*args[: self.N], *(np.empty((0,), np.float32) for _ in range(self.K)))
        self._iterations = 0
        outputs = list(Loop._run(self, M, cond, *args, **kwargs))  # type: ignore[no-untyped-call]
        if self.K:  # undo vstack: every slice has one shape (the spec requires it), so a reshape stacks
            count, first = self._iterations, len(outputs) - self.K
            outputs[first:] = [np.reshape(o, (count, *s)) for o, s in zip(outputs[first:], self._slices, strict=True)]
        return tuple(outputs)


ReferenceLoop.__name__ = "Loop"
