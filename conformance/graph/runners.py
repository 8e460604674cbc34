"""Runtimes plugged into capture and bisection: one callable ``(model, feeds) -> outputs`` each.

A ``Run`` receives the (instrumented) ``onnx.ModelProto`` and the feeds, and returns every graph output
by name. Any backend fits behind it; ONNX Runtime and ``onnx.reference.ReferenceEvaluator`` (with or
without our float64 LSTM) are provided here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

__all__ = ["Feeds", "Outputs", "Run", "onnxruntime_runner", "reference_runner"]

Feeds = Mapping[str, npt.NDArray[Any]]
Outputs = Mapping[str, Any]  # arrays, or lists of arrays for sequence-typed outputs
Run = Callable[[onnx.ModelProto, Feeds], Outputs]


def onnxruntime_runner(providers: Sequence[str] = ("CPUExecutionProvider",), *, optimization: str = "all") -> Run:
    """A ``Run`` on ONNX Runtime with ``providers`` (in preference order); ``optimization`` is ``"all"``
    (ORT's default graph optimisations) or ``"none"``. onnxruntime is imported on the first run."""
    if optimization not in ("all", "none"):
        raise ValueError(f"optimization: expected 'all' or 'none', got {optimization!r}")

    def run(model: onnx.ModelProto, feeds: Feeds) -> Outputs:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # failures come back as exceptions, not console noise
        level = "ORT_ENABLE_ALL" if optimization == "all" else "ORT_DISABLE_ALL"
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        session = ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=list(providers))
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, dict(feeds)), strict=True))

    return run


def reference_runner(*, float64_lstm: bool = True) -> Run:
    """A ``Run`` on ``onnx.reference.ReferenceEvaluator``. With ``float64_lstm`` (the default) its LSTM op
    is replaced by ``reference.lstm`` (see ``evaluator_ops.ReferenceLSTM``): the whole-model reference.
    Without it, the evaluator's own LSTM runs: a peer that ignores clip, activations and sequence_lens.
    Either way Loop is ``evaluator_ops.ReferenceLoop``, which stacks scan outputs as ONNX Runtime does, and
    Scan ``evaluator_ops.ReferenceScan``, which runs every scan direction and axis,
    and local functions are inlined first: the evaluator runs function bodies without ``new_ops``."""

    built: list[tuple[onnx.ModelProto, Any]] = []  # the last model and its evaluator: runs repeat a model

    def run(model: onnx.ModelProto, feeds: Feeds) -> Outputs:
        from onnx.reference import ReferenceEvaluator
        from onnx.reference.op_run import OpRun

        from conformance.graph.evaluator_ops import ReferenceLoop, ReferenceLSTM, ReferenceScan
        from conformance.graph.walk import inline_functions

        if built and built[0][0] is model:
            evaluator = built[0][1]
        else:
            new_ops: list[type[OpRun]] = [ReferenceLoop, ReferenceScan]
            new_ops += [ReferenceLSTM] if float64_lstm else []
            evaluator = ReferenceEvaluator(inline_functions(model) if model.functions else model, new_ops=new_ops)
            built[:] = [(model, evaluator)]
        names = list(evaluator.output_names)
        return dict(zip(names, evaluator.run(None, dict(feeds)), strict=True))

    return run


def as_array(value: object) -> npt.NDArray[Any] | None:
    """``value`` when it is a NumPy array (sequence and map outputs are not), else None."""
    return value if isinstance(value, np.ndarray) else None
