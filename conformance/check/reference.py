"""The whole-model reference on each input set: captures of every LSTM node and the model's outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from conformance.check.model import InputSet
from conformance.graph import (
    Captures,
    Instrumented,
    capture,
    reference_runner,
)
from exporters.base import describe_error
from exporters.errors import BadInputError


@dataclass(frozen=True)
class ReferenceRun:
    """The whole-model reference on one input set: its captures and the model's outputs; when the
    instrumented copy fails on it (``uncapturable`` says why) the outputs of the model itself; when the
    model fails too, ``error``."""

    captures: Captures | None
    outputs: Mapping[str, Any] | None
    error: str | None = None
    uncapturable: str | None = None


def reference_runs(
    instrumented: Instrumented, model: onnx.ModelProto, input_sets: Sequence[InputSet]
) -> dict[str, ReferenceRun]:
    run = reference_runner()
    plain = reference_runner()
    found = {}
    for input_set in input_sets:
        try:
            captures = capture(instrumented, input_set.feeds, run)
            found[input_set.label] = ReferenceRun(captures, captures.outputs)
            continue
        except Exception as exc:
            why = describe_error(exc, 300)
        try:
            outputs = plain(model, input_set.feeds)
        except Exception as exc:
            found[input_set.label] = ReferenceRun(None, None, describe_error(exc, 300))
            continue
        found[input_set.label] = ReferenceRun(None, outputs, uncapturable=why)
    return found


def weights_finite(path: Path, reference: Mapping[str, ReferenceRun]) -> None:
    """NaN or Inf in the weights an LSTM node uses makes every comparison meaningless: bad input, named."""
    for run in reference.values():
        for node_capture in run.captures or ():
            for invocation in node_capture.invocations[:1]:
                for role in ("W", "R", "B", "P"):
                    value = invocation.tensors.get(role)
                    if value is None or np.asarray(value).dtype.kind != "f":
                        continue
                    bad = ~np.isfinite(np.asarray(value))
                    if bad.any():
                        index = tuple(int(i) for i in np.argwhere(bad)[0])
                        raise BadInputError(
                            f"{path}: LSTM node {node_capture.node.path}: its {role} holds NaN or Inf "
                            f"({int(bad.sum())} value(s), first at index {index}); refusing to compare"
                        )
