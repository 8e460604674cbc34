"""ONNX through ``torch.onnx.export``: the TorchScript exporter and the dynamo (torch.export) exporter.

Both export the float32 module of :func:`exporters.torch_module.build_module`
with the I/O contract of :mod:`exporters.base`, and differ only in the
``dynamo`` flag and in how dynamic axes are spelled (TorchScript:
``dynamic_axes``; dynamo: ``dynamic_shapes`` built from ``torch.export.Dim``).
Whatever the exporter prints (Python warnings, stdout/stderr, native output,
torch/onnxscript logging) is captured and returned, never shown.

Known behaviour (torch 2.13, onnxscript 0.7; tests/exporters/test_torch_onnx.py pins it):

- TorchScript emits native ``LSTM`` nodes and is correct at every shape.
- dynamo also emits native ``LSTM`` nodes, but for time-major models it bakes
  the example sequence length into the ``Reshape`` after each LSTM: other
  lengths fail in the runtime or, when ``T*B`` happens to divide, silently
  return a wrongly shaped output. Batch-first models compute correctly; for
  both, the declared shape of the sequence output is static (noted in the
  returned warnings by :func:`_static_axes`).
- dynamo falls back to opset 18 when it cannot honour the requested opset,
  and TorchScript at opset 1 writes an invalid file: both are refused here.
- ``nn.LSTM(proj_size=...)``: TorchScript refuses it; dynamo writes a model
  whose LSTM shapes contradict each other, which the full check refuses.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from exporters.base import AnyWeights, ExportOptions, ExportOutcome, Model, input_names, output_names
from exporters.torch_module import build_module, import_problem, package_version, torch_not_applicable
from reference.config import LMConfig

DEFAULT_TORCHSCRIPT_OPSET = 17
EXAMPLE_SEED = 0
CAPTURED_LOGGERS = ("torch", "onnxscript", "onnx_ir")
UNTOUCHED_LOGGER = "torch.__trace"  # torch's structured trace (TORCH_TRACE): debug payloads, not messages
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MAX_ERROR_CHARS = 2000


class TorchOnnxExportError(RuntimeError):
    """``torch.onnx.export`` failed; ``str()`` names the exporter and the cause."""


def example_inputs(model: Model, options: ExportOptions) -> tuple[Any, ...]:
    """Deterministic float32 example inputs in the order of :func:`exporters.base.input_names`."""
    import torch

    gen = torch.Generator().manual_seed(EXAMPLE_SEED)
    steps, batch = options.example_seq_len, options.example_batch
    config = model.lstm if isinstance(model, LMConfig) else model
    seq_batch = (batch, steps) if config.batch_first else (steps, batch)
    if isinstance(model, LMConfig):
        return (torch.randint(0, model.vocab_size, seq_batch, generator=gen, dtype=torch.int64),)
    args = [torch.randn(*seq_batch, config.input_size, generator=gen)]
    if options.initial_states:
        state = (config.num_layers * config.num_directions, batch, config.hidden_size)
        args += [torch.randn(*state, generator=gen), torch.randn(*state, generator=gen)]
    return tuple(args)


def dynamic_axes(model: Model, options: ExportOptions) -> dict[str, dict[int, str]]:
    """``{tensor name: {axis: "seq" | "batch"}}`` for every input and output; empty when not dynamic."""
    if not options.dynamic:
        return {}
    config = model.lstm if isinstance(model, LMConfig) else model
    seq_batch = {0: "batch", 1: "seq"} if config.batch_first else {0: "seq", 1: "batch"}
    axes = {name: dict(seq_batch) for name in ("tokens", "log_probs", "X", "Y")}
    axes.update({name: {1: "batch"} for name in ("initial_h", "initial_c", "Y_h", "Y_c")})
    names = [*input_names(model, options), *output_names(model)]
    return {name: axes[name] for name in names if name in axes}


def export_module(
    module: Any,
    args: tuple[Any, ...],
    path: Path,
    *,
    dynamo: bool,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int | None,
    axes: dict[str, dict[int, str]],
) -> tuple[str, ...]:
    """Export ``module`` to one self-contained ONNX file at ``path``; return what the exporter printed.

    Raises :class:`TorchOnnxExportError` when the export fails (the partial file is removed).
    """
    import torch

    kwargs: dict[str, Any] = {"input_names": list(input_names), "output_names": list(output_names)}
    kwargs["opset_version"] = opset
    if dynamo:
        kwargs["external_data"] = False
        if axes:
            kwargs["dynamic_shapes"] = _dynamic_shapes(axes, input_names)
        _forget_stale_lstm_kernel()
    elif axes:
        kwargs["dynamic_axes"] = axes
    label = f"torch.onnx.export(dynamo={dynamo}, opset_version={opset})"
    path.parent.mkdir(parents=True, exist_ok=True)
    captured: list[str] = []
    try:
        with _capture_output(captured):
            torch.onnx.export(module, args, str(path), dynamo=dynamo, **kwargs)
        _embed_external_data(path)
        _check_written(path, opset, label, captured)
    except TorchOnnxExportError:
        _remove_partial(path)
        raise
    except Exception as exc:
        _remove_partial(path)
        raise TorchOnnxExportError(f"{label} failed: {type(exc).__name__}: {_clean(str(exc))}") from exc
    captured += _static_axes(path, axes)
    return tuple(captured)


def _clean(message: str) -> str:
    message = _ANSI.sub("", message).strip()
    return message if len(message) <= _MAX_ERROR_CHARS else message[:_MAX_ERROR_CHARS] + " [...]"


def _check_written(path: Path, opset: int | None, label: str, captured: list[str]) -> None:
    """Refuse a file that is not a valid ONNX model or silently carries another opset than requested."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    declared = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and declared != opset:
        said = [line for line in captured if "version" in line.lower()]
        hint = f" (the exporter said: {' | '.join(said)})" if said else ""
        raise TorchOnnxExportError(f"{label} wrote opset {declared}, not the requested {opset}{hint}")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise TorchOnnxExportError(f"{label} wrote an invalid ONNX model: {_clean(str(exc))}") from exc


def _dynamic_shapes(axes: dict[str, dict[int, str]], names: Sequence[str]) -> dict[str, dict[int, Any]]:
    """The dynamo spelling of ``axes``: one ``torch.export.Dim`` per axis name, keyed by forward argument."""
    import torch

    dims: dict[str, Any] = {}
    shapes: dict[str, dict[int, Any]] = {}
    for name in names:  # input names are the forward() parameter names
        shapes[name] = {axis: dims.setdefault(dim, torch.export.Dim(dim)) for axis, dim in axes.get(name, {}).items()}
    return shapes


def _forget_stale_lstm_kernel() -> None:
    """Make every dynamo export behave like the first one in a fresh process.

    During capture torch.onnx writes a while-loop decomposition straight into
    ``aten.lstm.input.py_kernels`` (not through ``py_impl``, which would clear
    the op's dispatch cache), and the cache entry filled by the first export
    outlives it. Without this, the second and later exports in one process
    silently specialise the sequence axis of the *input* to the example length
    instead of baking it into a ``Reshape``: a different artifact for the same
    request, depending on what ran before.
    """
    import torch

    cache = getattr(torch.ops.aten.lstm.input, "_dispatch_cache", None)
    if isinstance(cache, dict):
        cache.clear()


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@contextlib.contextmanager
def _capture_output(sink: list[str]) -> Iterator[None]:
    """Collect Python warnings, stdout/stderr (Python and native) and torch/onnxscript logging into ``sink``.

    Process-wide while active (file descriptors 1 and 2, logger handlers): not for concurrent threads.
    """
    records: list[str] = []
    caught: list[warnings.WarningMessage] = []
    out, err, native = io.StringIO(), io.StringIO(), io.StringIO()
    try:
        with (
            _route_logging(records),
            warnings.catch_warnings(record=True) as caught_here,
            _capture_fds(native),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            caught = caught_here
            warnings.simplefilter("always")
            yield
    finally:
        lines = [f"{w.category.__name__}: {w.message}" for w in caught]
        lines += records
        for text in (out.getvalue(), err.getvalue(), native.getvalue()):
            lines += [line for line in _ANSI.sub("", text).splitlines() if line.strip()]
        sink += _dedupe(lines)


@contextlib.contextmanager
def _route_logging(records: list[str]) -> Iterator[None]:
    """Send the records of the exporters' loggers to ``records`` instead of their handlers (torch gives many
    of its loggers their own stderr handler and ``propagate=False``)."""
    handler = _ListHandler(records)
    names = [
        name
        for name, lg in list(logging.root.manager.loggerDict.items())
        if isinstance(lg, logging.Logger)
        and lg.handlers
        and name.split(".")[0] in CAPTURED_LOGGERS
        and not name.startswith(UNTOUCHED_LOGGER)
    ]
    loggers = [logging.getLogger(name) for name in dict.fromkeys([*CAPTURED_LOGGERS, *names])]
    saved = [(lg.handlers[:], lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.handlers, lg.propagate = [handler], False
    try:
        yield
    finally:
        for lg, (handlers, propagate) in zip(loggers, saved, strict=True):
            lg.handlers, lg.propagate = handlers, propagate


@contextlib.contextmanager
def _capture_fds(buffer: io.StringIO) -> Iterator[None]:
    """Redirect file descriptors 1 and 2 (native prints) into ``buffer``; a no-op where they cannot be duplicated."""
    try:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
    except OSError:
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for stream in (sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()
        for fd in saved:
            os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            buffer.write(tmp.read().decode(errors="replace"))


def _dedupe(lines: list[str]) -> list[str]:
    """Each distinct line once, in first-seen order, with a repeat count."""
    counts = Counter(lines)
    return [line if counts[line] == 1 else f"{line} (x{counts[line]})" for line in dict.fromkeys(lines)]


def _embed_external_data(path: Path) -> None:
    """Make ``path`` self-contained: pull any external tensor data into the file and delete the side files."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    proto = onnx.load(str(path), load_external_data=False)
    external = {
        entry.value
        for tensor in proto.graph.initializer
        if uses_external_data(tensor)
        for entry in tensor.external_data
        if entry.key == "location"
    }
    if not external:
        return
    folder = path.parent.resolve()
    sides = [(folder / location).resolve() for location in sorted(external)]
    escaping = [str(side) for side in sides if side.parent != folder]
    if escaping:
        raise TorchOnnxExportError(f"{path}: external data outside the model's folder: {escaping}")
    onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=False)
    for side in sides:
        side.unlink(missing_ok=True)


def _remove_partial(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".data")):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _static_axes(path: Path, axes: dict[str, dict[int, str]]) -> list[str]:
    """Notes for requested dynamic axes the exported file declares static (what the exporter silently baked in)."""
    if not axes:
        return []
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    notes = []
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        for axis, name in axes.get(value.name, {}).items():
            if axis < len(dims) and dims[axis].HasField("dim_value"):
                notes.append(
                    f"lstm-conformance: {value.name} axis {axis} requested dynamic ({name!r}) "
                    f"but the file declares it static ({dims[axis].dim_value})"
                )
    return notes


class _TorchOnnxExporter:
    """Shared implementation; subclasses set ``id``, ``description``, ``dynamo`` and ``default_opset``."""

    id: str
    description: str
    produces = "onnx"
    dynamo: bool
    default_opset: int | None  # None: torch.onnx's own default

    def unavailable(self) -> str | None:
        packages = ("torch", "onnxscript") if self.dynamo else ("torch",)
        return next((p for p in map(import_problem, packages) if p), None)

    def not_applicable(self, model: Model, options: ExportOptions) -> str | None:
        return torch_not_applicable(model, options)

    def versions(self) -> dict[str, str]:
        packages = ("torch", "onnxscript") if self.dynamo else ("torch",)
        return {p: package_version(p) for p in packages}

    def opset(self, options: ExportOptions) -> int | None:
        """The opset requested from torch.onnx (``None``: torch's default; the file records the one used)."""
        return options.opset if options.opset is not None else self.default_opset

    def export(self, model: Model, weights: AnyWeights, options: ExportOptions, path: Path) -> ExportOutcome:
        problem = self.not_applicable(model, options)
        if problem:
            raise ValueError(f"{self.id}: {problem}")
        module = build_module(model, weights)
        warned = export_module(
            module,
            example_inputs(model, options),
            Path(path),
            dynamo=self.dynamo,
            input_names=input_names(model, options),
            output_names=output_names(model),
            opset=self.opset(options),
            axes=dynamic_axes(model, options),
        )
        return ExportOutcome(warnings=warned)


class TorchScriptExporter(_TorchOnnxExporter):
    """``torch.onnx.export(dynamo=False)``: the legacy TorchScript tracer; opset 17 unless asked."""

    id = "torch-script"
    description = "torch.onnx.export(dynamo=False), TorchScript tracing"
    dynamo = False
    default_opset = DEFAULT_TORCHSCRIPT_OPSET


class TorchDynamoExporter(_TorchOnnxExporter):
    """``torch.onnx.export(dynamo=True)``: torch.export + onnxscript; torch's default opset unless asked."""

    id = "torch-dynamo"
    description = "torch.onnx.export(dynamo=True), torch.export + onnxscript"
    dynamo = True
    default_opset = None
