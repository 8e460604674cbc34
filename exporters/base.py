"""What every exporter shares: options, the artifact it produces, the model's I/O contract.

I/O contract. Every model an exporter produces, ONNX or torch, has the same
interface, in PyTorch's conventions, so one set of inputs drives every lane:

- LSTM stack (``LSTMConfig``): inputs ``X`` float32 ``[T, B, I]`` (``[B, T, I]``
  when ``batch_first``); with ``ExportOptions.initial_states`` also
  ``initial_h`` and ``initial_c`` ``[L*D, B, H]``; with
  ``ExportOptions.sequence_lens`` also ``sequence_lens`` int32 ``[B]``.
  Outputs ``Y`` ``[T, B, D*H]`` (``[B, T, D*H]``), ``Y_h`` and ``Y_c``
  ``[L*D, B, H]``.
- Language model (``LMConfig``): input ``tokens`` int64 ``[T, B]``
  (``[B, T]``); output ``log_probs`` float32 ``[T, B, V]`` (``[B, T, V]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reference.config import LMConfig, LSTMConfig
from reference.weights import LMWeights, LSTMWeights

Model = LSTMConfig | LMConfig
AnyWeights = LSTMWeights | LMWeights

# Artifact.status values.
OK, NOT_APPLICABLE, FAILED, UNAVAILABLE = "ok", "not-applicable", "failed", "unavailable"


@dataclass(frozen=True)
class ExportOptions:
    """How to export. Exporters that cannot honour an option report not-applicable."""

    opset: int | None = None  # None: the exporter's default
    dynamic: bool = True  # dynamic sequence and batch axes
    example_seq_len: int = 5  # the example input traced/exported with
    example_batch: int = 2
    initial_states: bool = False  # expose initial_h / initial_c inputs
    sequence_lens: bool = False  # expose a sequence_lens input (onnx-native only)
    layout: int = 0  # onnx-native with batch_first: 1 = LSTM layout attribute, 0 = Transpose nodes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def input_names(model: Model, options: ExportOptions) -> list[str]:
    if isinstance(model, LMConfig):
        return ["tokens"]
    names = ["X"]
    if options.initial_states:
        names += ["initial_h", "initial_c"]
    if options.sequence_lens:
        names.append("sequence_lens")
    return names


def output_names(model: Model) -> list[str]:
    return ["log_probs"] if isinstance(model, LMConfig) else ["Y", "Y_h", "Y_c"]


@dataclass(frozen=True)
class Artifact:
    """What an exporter produced, or why it produced nothing.

    ``path`` is an ONNX file for ONNX exporters; ``module`` a torch
    ``nn.Module`` for the torch-module exporter. ``meta`` holds exporter id
    and tool versions, opset, IR version, op-type histogram, file size,
    export seconds and the warnings the exporter printed.
    """

    exporter: str
    status: str
    reason: str = ""
    path: Path | None = None
    module: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class ExportOutcome:
    """What one exporter's ``export`` call returns before validation and caching."""

    warnings: tuple[str, ...] = ()
    module: Any = None
    meta: dict[str, Any] = field(default_factory=dict)  # more artifact metadata (a transform's, ...)


class Exporter(Protocol):
    """One way of turning (model, weights, options) into a runnable artifact."""

    id: str
    description: str
    produces: str  # "onnx" or "torch"

    def unavailable(self) -> str | None:
        """Why this exporter cannot run here (a missing package), or ``None``."""

    def not_applicable(self, model: Model, options: ExportOptions) -> str | None:
        """Why this model/options cannot be expressed by this exporter, or ``None``."""

    def versions(self) -> dict[str, str]:
        """Versions of the tools this exporter uses; part of the cache key."""

    def export(self, model: Model, weights: AnyWeights, options: ExportOptions, path: Path) -> ExportOutcome:
        """Write the ONNX file to ``path`` (ONNX exporters) or build the module (torch).

        Raise any exception on failure; the registry records it as a failed export.
        """


def describe_error(exc: BaseException, limit: int | None = 400) -> str:
    """``Type: first line of the message`` (cut at ``limit`` characters): how results name an exception."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if limit is not None and len(first) > limit:
        first = first[:limit] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
