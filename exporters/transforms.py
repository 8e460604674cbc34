"""Deployment transforms on top of any ONNX exporter: exporter ids ``<exporter>+<transform>``.

After exporting, users shrink the model. A transform takes the ONNX file an exporter wrote and writes
the model a user would deploy; the harness then runs it like any other artifact and holds it against
the float64 reference on the *original* weights, within the transform's error budget (:data:`BUDGETS`).

- ``fp16``: ``onnxconverter_common.float16.convert_float_to_float16(keep_io_types=False)``: every
  float32 tensor becomes float16, inputs and outputs included (float inputs are fed as float16,
  outputs come back as float16).
- ``fp16-io32``: the same with ``keep_io_types=True``: float16 inside, float32 at the graph boundary
  (``Cast`` nodes at the inputs and outputs), so callers keep feeding float32.
- ``int8-dynamic``: ``onnxruntime.quantization.quantize_dynamic`` with its defaults (int8 weights,
  one scale per tensor, no reduced range). Each LSTM becomes ONNX Runtime's contrib op
  ``com.microsoft.DynamicQuantizeLSTM`` (int8 ``W``/``R`` with their scales and zero points; the kernel
  quantizes ``X`` and ``h`` to uint8 at run time; ``B`` stays float32); a language model's projection
  becomes ``DynamicQuantizeLinear`` + ``MatMulInteger`` + ``Mul``, and its embedding table a uint8
  initializer read by ``Gather`` and then ``DequantizeLinear``. The contrib op runs on ONNX Runtime's CPU
  execution provider and on OpenVINO (whose ONNX frontend reads it); the lanes of runtimes that lack it are
  skipped with the reason (:attr:`Transform.needs`, ``conformance.lane.cannot_run``).

Nothing heavy is imported here until a transform runs: the registry builds these objects to plan lanes.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporters.base import AnyWeights, Exporter, ExportOptions, ExportOutcome, Model
from exporters.errors import BadInputError

__all__ = [
    "BUDGETS",
    "SEPARATOR",
    "TRANSFORMS",
    "Transform",
    "TransformError",
    "TransformedExporter",
    "apply",
    "get_transform",
    "split_exporter_id",
    "transform_ids",
]

SEPARATOR = "+"  # "torch-script+fp16": the exporter's id, the separator, the transform's id

# Error budgets: (atol, rtol) per output, held as |actual - expected| <= atol + rtol * |expected| against the
# float64 reference on the original weights. Measured by `python benchmarks/measure_transforms.py` (196
# configurations per transform, exported by onnx-native at opset 21, run on ONNX Runtime 1.32 CPU, with
# onnxconverter-common 1.16; the grid is in the script's docstring: LSTM stacks with I/H from 4/8 to 64/128,
# 1-2 layers, forward/reverse/bidirectional, with and without initial states, T 16 and 64; language models
# with V 28-64, H 32-64, 1-2 layers, random and corpus tokens, and the trained model at T 24 and 256; seeds
# 0-4). For each run it takes need = max |a - e| / (1 + |e|), the smallest atol = rtol the run passes at.
# Each budget is atol = rtol = 2 x the greatest need over torch-default and trained weights, rounded up to
# 1, 2 or 5 x 10^k: a margin of at least 2 for weights and shapes the grid did not draw. Saturating weights
# are not budgeted: they are ill-conditioned (float32 rounding alone moves the lm-saturating log_probs by
# 1.9e-4), and float16 rounding changes their outputs wholesale (Y off by up to 2.0, log_probs by 1.47).
# The greatest need per output (and, in brackets, the greatest max abs error), from that run:
#   fp16:         Y 2.11e-4 (2.49e-4)  Y_h 1.80e-4 (2.10e-4)  Y_c 2.71e-4 (5.26e-4)  log_probs 8.13e-3 (2.27e-2)
#   fp16-io32:    Y 2.15e-4 (2.49e-4)  Y_h 1.80e-4 (2.10e-4)  Y_c 2.71e-4 (5.26e-4)  log_probs 8.00e-3 (2.24e-2)
#   int8-dynamic: Y 2.49e-3 (3.07e-3)  Y_h 2.08e-3 (2.17e-3)  Y_c 3.07e-3 (3.39e-3)  log_probs 0.263 (1.04)
# int8's log_probs budget is loose by nature: per-tensor int8 weights and uint8 activations move the trained
# model's log_probs by up to 1.04 (on random tokens; 0.43 on text). What that costs a language model is
# in each lane's perplexity and next-token agreement (conformance.evaluate.lm_metrics), not in this number.
# Re-run the script after changing onnxruntime or onnxconverter-common; it prints this table.
BUDGETS: dict[str, dict[str, tuple[float, float]]] = {
    "fp16": {"Y": (5e-4, 5e-4), "Y_h": (5e-4, 5e-4), "Y_c": (1e-3, 1e-3), "log_probs": (2e-2, 2e-2)},
    "fp16-io32": {"Y": (5e-4, 5e-4), "Y_h": (5e-4, 5e-4), "Y_c": (1e-3, 1e-3), "log_probs": (2e-2, 2e-2)},
    "int8-dynamic": {"Y": (5e-3, 5e-3), "Y_h": (5e-3, 5e-3), "Y_c": (1e-2, 1e-2), "log_probs": (1.0, 1.0)},
}


class TransformError(BadInputError):
    """An exporter id whose transform is unknown or cannot apply: bad input, one line listing the transforms."""


@dataclass(frozen=True)
class Transform:
    """One deployment transform: what it does, the package that does it, and what its output needs."""

    id: str
    description: str
    distribution: str  # the PyPI package that provides it (its version is part of the export cache key)
    module: str  # the module to import
    options: Mapping[str, Any]  # the keyword arguments it is called with, recorded with the artifact
    run: Callable[[Path, Path], None]  # (source model, target model)
    needs: str | None = None  # a contrib op the result contains: only runtimes that implement it can run it

    def unavailable(self) -> str | None:
        if importlib.util.find_spec(self.module) is None:
            return f"{self.distribution} is not installed (pip install {self.distribution})"
        return None

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"


def _float16(keep_io_types: bool) -> Callable[[Path, Path], None]:
    def run(source: Path, target: Path) -> None:
        import onnx
        from onnxconverter_common import float16

        model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=keep_io_types)
        onnx.save(model, str(target))

    return run


def _int8_dynamic(source: Path, target: Path) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(source), str(target))


TRANSFORMS: dict[str, Transform] = {
    t.id: t
    for t in (
        Transform(
            "fp16",
            "float16 weights and activations, float16 inputs and outputs (onnxconverter-common)",
            "onnxconverter-common",
            "onnxconverter_common",
            {"function": "float16.convert_float_to_float16", "keep_io_types": False},
            _float16(keep_io_types=False),
        ),
        Transform(
            "fp16-io32",
            "float16 weights and activations, float32 inputs and outputs (onnxconverter-common)",
            "onnxconverter-common",
            "onnxconverter_common",
            {"function": "float16.convert_float_to_float16", "keep_io_types": True},
            _float16(keep_io_types=True),
        ),
        Transform(
            "int8-dynamic",
            "int8 weights, activations quantized at run time: LSTM -> com.microsoft.DynamicQuantizeLSTM",
            "onnxruntime",
            "onnxruntime.quantization",
            {"function": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "per_channel": False},
            _int8_dynamic,
            needs="com.microsoft.DynamicQuantizeLSTM",
        ),
    )
}


def transform_ids() -> list[str]:
    return list(TRANSFORMS)


def _known() -> str:
    return f"known transforms: {', '.join(TRANSFORMS)}"


def get_transform(transform_id: str, *, exporter_id: str | None = None) -> Transform:
    """The transform named ``transform_id``; an unknown one is bad input naming the exporter id it came in."""
    transform = TRANSFORMS.get(transform_id)
    if transform is None:
        where = f" in exporter id {exporter_id!r}" if exporter_id else ""
        raise TransformError(f"unknown transform {transform_id!r}{where}; {_known()}")
    return transform


def split_exporter_id(exporter_id: str) -> tuple[str, Transform | None]:
    """``"torch-script+fp16"`` -> ``("torch-script", TRANSFORMS["fp16"])``; an id without ``+`` -> ``(id, None)``.

    An unknown transform raises :class:`TransformError`."""
    base, separator, name = exporter_id.partition(SEPARATOR)
    if not separator:
        return exporter_id, None
    return base, get_transform(name, exporter_id=exporter_id)


def not_transformable(exporter_id: str, base: Exporter, transform: Transform) -> TransformError:
    """The error for a transform on an exporter that writes no ONNX file (``torch-module``)."""
    return TransformError(
        f"transform {transform.id!r} cannot apply to exporter id {exporter_id!r}: {base.id} produces a "
        f"{base.produces} module, not an ONNX file; {_known()}"
    )


def _float_tensor_count(path: Path) -> int:
    """float32 tensors of the model: initializers, Constant values, graph inputs and outputs (subgraphs too)."""
    import onnx

    model = onnx.load(str(path))
    float32 = onnx.TensorProto.FLOAT
    count = 0
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        count += sum(t.data_type == float32 for t in graph.initializer)
        count += sum(v.type.tensor_type.elem_type == float32 for v in [*graph.input, *graph.output])
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR:
                    count += attribute.t.data_type == float32
                graphs += [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
    return count


def _io_dtypes(path: Path) -> dict[str, dict[str, str]]:
    """The transformed model's input and output element types, by name (``"float16"``, ``"int64"``, ...)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def dtypes(values: Any) -> dict[str, str]:
        out = {}
        for value in values:
            elem = value.type.tensor_type.elem_type
            out[value.name] = str(onnx.helper.tensor_dtype_to_np_dtype(elem)) if elem else "unknown"
        return out

    return {"inputs": dtypes(graph.input), "outputs": dtypes(graph.output)}


@contextlib.contextmanager
def _captured(into: list[str]) -> Iterator[None]:
    """Collect what the transform's tools say (Python warnings, root-logger warnings) instead of printing it."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            into.append(record.getMessage())

    handler = Collect(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)  # a root with a handler also keeps logging.warning() from calling basicConfig()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        into.extend(str(w.message) for w in caught)
    finally:
        root.removeHandler(handler)


def apply(transform: Transform, source: Path, target: Path, *, exporter_id: str) -> ExportOutcome:
    """Write ``transform`` of the ONNX model ``source`` to ``target``.

    A model without a float32 tensor is bad input (:class:`TransformError`): there is nothing to convert.
    Any other exception is the transform failing, which the registry records as a failed export."""
    if _float_tensor_count(source) == 0:
        raise TransformError(
            f"transform {transform.id!r} cannot apply to exporter id {exporter_id!r}: the model has no float32 "
            f"tensor to convert; {_known()}"
        )
    said: list[str] = []
    with _captured(said):
        transform.run(source, target)
    meta = {
        "transform": {
            "id": transform.id,
            "tool": f"{transform.distribution} {transform.version()}",
            "options": dict(transform.options),
            "needs": transform.needs,
            **_io_dtypes(target),
        }
    }
    return ExportOutcome(warnings=tuple(dict.fromkeys(said)), meta=meta)


class TransformedExporter:
    """An ONNX exporter followed by a transform; its id is ``<exporter>+<transform>``.

    The registry exports the base model through its own (cached) path and calls :meth:`transform_file`;
    :meth:`export` does both in one call for anyone holding only this object."""

    produces = "onnx"

    def __init__(self, base: Exporter, transform: Transform) -> None:
        self.base = base
        self.transform = transform
        self.id = f"{base.id}{SEPARATOR}{transform.id}"
        self.description = f"{base.description}, then {transform.description}"

    def unavailable(self) -> str | None:
        return self.base.unavailable() or self.transform.unavailable()

    def not_applicable(self, model: Model, options: ExportOptions) -> str | None:
        return self.base.not_applicable(model, options)

    def versions(self) -> dict[str, str]:
        return {**self.base.versions(), self.transform.distribution: self.transform.version()}

    def transform_file(self, source: Path, target: Path) -> ExportOutcome:
        return apply(self.transform, source, target, exporter_id=self.id)

    def export(self, model: Model, weights: AnyWeights, options: ExportOptions, path: Path) -> ExportOutcome:
        handle, name = tempfile.mkstemp(suffix=".onnx", prefix="base-", dir=path.parent)
        os.close(handle)
        source = Path(name)
        try:
            first = self.base.export(model, weights, options, source)
            second = self.transform_file(source, path)
        finally:
            source.unlink(missing_ok=True)
        return ExportOutcome(warnings=first.warnings + second.warnings, meta=second.meta)
