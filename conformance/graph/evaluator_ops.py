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

Scan: onnx 1.23's evaluator refuses scan directions and axes other than 0 ("Scan is not implemented for
other output input_direction than 0"). ``ReferenceScan`` runs every direction and axis of the spec.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from onnx.reference.op_run import OpRun
from onnx.reference.ops.op_loop import Loop
from onnx.reference.ops.op_scan import Scan

from conformance.graph.nodes import INPUT_ROLES, LSTMAttributes
from conformance.graph.operator import lstm_call

__all__ = ["ReferenceLSTM", "ReferenceLoop", "ReferenceScan"]


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


class ReferenceScan(Scan):
    """The ONNX ``Scan`` op with every scan direction and axis (the evaluator's own handles only 0 and 0)."""

    op_domain = ""

    def __init__(self, onnx_node: Any, run_params: Any) -> None:
        OpRun.__init__(self, onnx_node, run_params)  # not Scan's: it refuses other directions and axes
        body: Any = getattr(self, "body")  # noqa: B009 - OpRun sets every attribute per instance
        self.input_names, self.output_names = body.input_names, body.output_names

    def _run(self, *args: Any, context: Any = None, bindings: Any = None, **attributes: Any) -> tuple[Any, ...]:
        attribute: Any = self.__dict__.get  # OpRun sets the node's attributes on the instance
        scans = int(attribute("num_scan_inputs"))
        n = len(args) - scans
        states, inputs = list(args[:n]), list(args[n:])
        k = len(self.output_names) - n
        in_axes = [_axis(a, x.ndim) for a, x in zip(_padded(attribute("scan_input_axes"), scans), inputs, strict=True)]
        in_reversed = _padded(attribute("scan_input_directions"), scans)
        steps = inputs[0].shape[in_axes[0]] if inputs else 0
        collected: list[list[Any]] = [[] for _ in range(k)]
        for step in range(steps):
            feeds = dict(context or {})
            feeds.update(zip(self.input_names[:n], states, strict=True))
            for name, x, axis, back in zip(self.input_names[n:], inputs, in_axes, in_reversed, strict=True):
                feeds[name] = np.take(x, steps - 1 - step if back else step, axis=axis)
            outputs = getattr(self, "_run_body")(feeds, bindings=bindings)  # noqa: B009 - set by OpRun
            states = list(outputs[:n])
            for j in range(k):
                collected[j].append(outputs[n + j])
        results = []
        for items, axis, back in zip(
            collected,
            _padded(attribute("scan_output_axes"), k),
            _padded(attribute("scan_output_directions"), k),
            strict=True,
        ):
            if not items:  # no step: the slice's shape is unknown, as in ReferenceLoop
                results.append(np.empty((0,), np.float32))
                continue
            stacked = np.stack(items[::-1] if back else items, axis=0)
            results.append(np.moveaxis(stacked, 0, _axis(axis, stacked.ndim)))
        return (*states, *results)


ReferenceScan.__name__ = "Scan"


def _padded(values: Any, count: int) -> list[int]:
    """An optional per-input attribute as ``count`` ints (missing entries 0)."""
    given = [int(v) for v in (values if values is not None else [])]
    return (given + [0] * count)[:count]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis
