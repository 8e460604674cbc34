"""The case data model: what one conformance case is, independent of the TOML it was written in."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.diffs import Tolerance
from exporters.errors import BadInputError
from reference.config import LMConfig, LSTMConfig

__all__ = [
    "LM_OUTPUTS",
    "LSTM_OUTPUTS",
    "Case",
    "CaseError",
    "Expectation",
    "ExportSpec",
    "InputSpec",
    "OutputTolerances",
    "Suite",
    "Tolerance",
    "WeightsSpec",
]

LSTM_OUTPUTS, LM_OUTPUTS = ("Y", "Y_h", "Y_c"), ("log_probs",)


class CaseError(BadInputError):
    """A suite file that cannot be used; ``str()`` is one line: ``file:line: key: problem``."""


@dataclass(frozen=True)
class WeightsSpec:
    """A weights recipe from ``reference.weights.RECIPES``, or ``"trained"`` (language models only)."""

    recipe: str = "torch-default"
    seed: int = 0


@dataclass(frozen=True)
class InputSpec:
    """How the runtime inputs are generated (shapes in PyTorch's ``[T, B, ...]`` terms)."""

    seq_len: int
    batch: int
    seed: int = 0
    low: float = -1.0
    high: float = 1.0
    initial_states: bool = False
    sequence_lens: str | tuple[int, ...] = "full"  # "full" | "mixed" | "with-zero" | one length per batch entry
    tokens: str = "random"  # language models: "random" or "corpus"


@dataclass(frozen=True)
class ExportSpec:
    """How to export; ``seq_len``/``batch`` of the example input default to the inputs' own."""

    seq_len: int | None = None
    batch: int | None = None
    opset: int | None = None
    layout: int = 0
    dynamic: bool = True

    def option_values(self, inputs: InputSpec) -> dict[str, Any]:
        """Keyword arguments for ``exporters.base.ExportOptions``."""
        return {
            "opset": self.opset,
            "dynamic": self.dynamic,
            "example_seq_len": inputs.seq_len if self.seq_len is None else self.seq_len,
            "example_batch": inputs.batch if self.batch is None else self.batch,
            "initial_states": inputs.initial_states,
            "sequence_lens": inputs.sequence_lens != "full",
            "layout": self.layout,
        }


@dataclass(frozen=True)
class Expectation:
    """An expected divergence: lanes it matches (globs) may fail or error with this reason."""

    reason: str
    runtime: str | tuple[str, ...] = "*"  # a glob, or globs of which any may match
    exporter: str | tuple[str, ...] = "*"
    output: str = "*"
    status: str = "fail"  # "fail" or "error"
    reference: str | None = None  # upstream issue URL or document
    # Only when the runtime computes in this dtype (its settings' tolerance_dtype; float32 when it says
    # nothing): a divergence smaller than bfloat16's tolerance shows at float32 only.
    computed_in: str | None = None

    def matches(
        self, exporter_id: str, runtime_id: str, output: str | None = None, computed_in: str | None = None
    ) -> bool:
        """Whether this expectation applies to the lane (and to ``output``, when given; and to a runtime
        computing in ``computed_in``, when given). A release of a runtime (``ort-cpu@1.24.4``) is held to
        the expectations of the runtime (``ort-cpu``) unless one names the release."""
        return (
            _any_glob(exporter_id, self.exporter)
            and (_any_glob(runtime_id, self.runtime) or _any_glob(runtime_id.partition("@")[0], self.runtime))
            and (output is None or fnmatch.fnmatchcase(output, self.output))
            and (self.computed_in is None or (computed_in or "float32") == self.computed_in)
        )

    def covers(self, outputs: Iterable[str]) -> bool:
        """Whether every output in ``outputs`` (the failing ones) is one this expectation names."""
        return all(fnmatch.fnmatchcase(name, self.output) for name in outputs)


def _any_glob(value: str, globs: str | tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, g) for g in ((globs,) if isinstance(globs, str) else globs))


class OutputTolerances(Mapping[str, Tolerance]):
    """A read-only, hashable, picklable ``{output name: Tolerance}``."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Tolerance] | None = None) -> None:
        self._items = dict(items or {})

    def __getitem__(self, key: str) -> Tolerance:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"OutputTolerances({self._items!r})"


@dataclass(frozen=True)
class Case:
    """One model + weights + inputs + export, run on each exporter x runtime lane."""

    id: str
    suite: str
    model: LSTMConfig | LMConfig
    weights: WeightsSpec
    inputs: InputSpec
    export: ExportSpec
    exporters: tuple[str, ...]
    runtimes: tuple[str, ...]
    tolerance: Tolerance | None = None
    output_tolerances: Mapping[str, Tolerance] = field(default_factory=OutputTolerances)
    expect: tuple[Expectation, ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""
    source: str = ""  # "cases/full.toml:42", the line of the case's [[case]] header

    @property
    def lstm(self) -> LSTMConfig:
        return self.model.lstm if isinstance(self.model, LMConfig) else self.model

    @property
    def outputs(self) -> tuple[str, ...]:
        return LM_OUTPUTS if isinstance(self.model, LMConfig) else LSTM_OUTPUTS

    def tolerance_for(self, output: str) -> Tolerance | None:
        """The output's own tolerance, else the case's, else ``None`` (the dtype default applies)."""
        return self.output_tolerances.get(output, self.tolerance)

    def option_values(self) -> dict[str, Any]:
        return self.export.option_values(self.inputs)

    def expectation(
        self, exporter_id: str, runtime_id: str, output: str | None = None, computed_in: str | None = None
    ) -> Expectation | None:
        """The first expected divergence that matches the lane, or ``None``."""
        return next((e for e in self.expect if e.matches(exporter_id, runtime_id, output, computed_in)), None)

    def features(self) -> tuple[str, ...]:
        """Short labels for reports and ``-k``: what this case exercises beyond a plain LSTM."""
        lstm, inputs, export = self.lstm, self.inputs, self.export
        out = ["lm", f"V={self.model.vocab_size}"] if isinstance(self.model, LMConfig) else []
        if lstm.direction != "forward":
            out.append(lstm.direction)
        if lstm.num_layers > 1:
            out.append(f"{lstm.num_layers} layers")
        if lstm.batch_first:
            out.append("batch_first")
        if lstm.peepholes:
            out.append("peepholes")
        if lstm.activations is not None:
            out.append("activations:" + ",".join(lstm.activations))
        if lstm.activation_alpha is not None or lstm.activation_beta is not None:
            out.append("alpha/beta")
        if lstm.clip is not None:
            out.append("clip")
        if lstm.input_forget:
            out.append("input_forget")
        if self.weights.recipe != "torch-default":
            out.append(f"weights:{self.weights.recipe}")
        if inputs.initial_states:
            out.append("initial_states")
        if inputs.sequence_lens != "full":
            pattern = inputs.sequence_lens if isinstance(inputs.sequence_lens, str) else "explicit"
            out.append(f"seq_lens:{pattern}")
        if inputs.tokens != "random":
            out.append(f"tokens:{inputs.tokens}")
        if export.layout:
            out.append(f"layout={export.layout}")
        if not export.dynamic:
            out.append("static")
        if export.opset is not None:
            out.append(f"opset={export.opset}")
        out += [f"T={inputs.seq_len}", f"B={inputs.batch}", f"H={lstm.hidden_size}"]
        if export.seq_len not in (None, inputs.seq_len):
            out.append(f"exported T={export.seq_len}")
        if export.batch not in (None, inputs.batch):
            out.append(f"exported B={export.batch}")
        return tuple(out)


@dataclass(frozen=True)
class Suite:
    """A loaded suite file: its cases in written order, matrices expanded."""

    name: str
    description: str
    cases: tuple[Case, ...]
    path: Path
