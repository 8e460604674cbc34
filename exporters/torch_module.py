"""Canonical weights -> a ``torch.nn`` module in eval mode, and the ``torch-module`` exporter.

The modules follow the I/O contract of :mod:`exporters.base`. Weights reach
them through :func:`reference.weights.to_torch_state_dict` /
:func:`reference.weights.lm_to_torch_state_dict`, the one place that converts
gate order (ONNX IOFC -> torch IFGO). torch is imported only when a module is
built, so importing this file costs nothing.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from exporters.base import AnyWeights, ExportOptions, ExportOutcome, Model
from reference.config import LMConfig, LSTMConfig
from reference.weights import LMWeights, LSTMWeights, lm_to_torch_state_dict, to_torch_state_dict

if TYPE_CHECKING:
    from torch import nn

DTYPES = ("float32", "float64")


def _import(package: str) -> Any:
    return importlib.import_module(package)


@functools.cache
def import_problem(package: str) -> str | None:
    """Why ``package`` does not import here, or ``None`` if it does."""
    try:
        _import(package)
    except Exception as exc:  # an ImportError, or a broken install raising anything else
        return f"{package} does not import: {type(exc).__name__}: {exc}"
    return None


def package_version(package: str) -> str:
    return str(_import(package).__version__)


def torch_not_applicable(model: Model, options: ExportOptions) -> str | None:
    """Why a ``torch.nn.LSTM``-based module cannot express ``model``/``options``, or ``None``."""
    config = model.lstm if isinstance(model, LMConfig) else model
    reasons = []
    problem = config.torch_expressible()
    if problem:
        reasons.append(problem)
    if options.sequence_lens:
        reasons.append("torch.nn.LSTM has no sequence_lens input (only packed sequences)")
    return "; ".join(reasons) or None


def build_module(model: Model, weights: AnyWeights, *, dtype: str = "float32") -> nn.Module:
    """A torch module for ``model`` with ``weights`` loaded, in eval mode.

    LSTM stack: ``forward(X, initial_h=None, initial_c=None) -> (Y, Y_h, Y_c)``.
    Language model: ``forward(tokens) -> log_probs`` with submodules
    ``embedding``, ``lstm`` and ``proj``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {list(DTYPES)}, got {dtype!r}")
    lstm_config = model.lstm if isinstance(model, LMConfig) else model
    problem = lstm_config.torch_expressible()
    if problem:
        raise ValueError(f"build_module: {problem}")
    import torch

    classes = _module_classes()
    module: nn.Module
    if isinstance(model, LMConfig):
        if not isinstance(weights, LMWeights):
            raise TypeError(f"build_module: a language model needs LMWeights, got {type(weights).__name__}")
        _check_lm_weights(model, weights)
        module = classes.LanguageModel(model)
        state = lm_to_torch_state_dict(weights)
    else:
        if not isinstance(weights, LSTMWeights):
            raise TypeError(f"build_module: an LSTM stack needs LSTMWeights, got {type(weights).__name__}")
        mismatch = weights.matches(model)
        if mismatch:
            raise ValueError(f"build_module: {mismatch}")
        module = classes.LSTMStack(model)
        state = to_torch_state_dict(weights, prefix="lstm.")
    torch_dtype = getattr(torch, dtype)
    module.to(torch_dtype)
    module.load_state_dict({name: torch.tensor(value, dtype=torch_dtype) for name, value in state.items()}, strict=True)
    return module.eval()


def _check_lm_weights(model: LMConfig, weights: LMWeights) -> None:
    mismatch = weights.matches(model)
    if mismatch:
        raise ValueError(f"build_module: {mismatch}")


class _Classes(NamedTuple):
    LSTMStack: type[nn.Module]
    LanguageModel: type[nn.Module]


@functools.cache
def _module_classes() -> _Classes:
    """Define the module classes on first use, so that torch is imported only then."""
    import torch
    from torch import nn

    def new_lstm(config: LSTMConfig) -> nn.LSTM:
        return nn.LSTM(
            config.input_size,
            config.hidden_size,
            config.num_layers,
            bidirectional=config.direction == "bidirectional",
            batch_first=config.batch_first,
        )

    class LSTMStack(nn.Module):
        """``nn.LSTM`` with the contract's ``(X, initial_h, initial_c) -> (Y, Y_h, Y_c)`` interface."""

        def __init__(self, config: LSTMConfig) -> None:
            super().__init__()
            self.lstm = new_lstm(config)

        def forward(
            self, X: torch.Tensor, initial_h: torch.Tensor | None = None, initial_c: torch.Tensor | None = None
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            if (initial_h is None) != (initial_c is None):
                raise ValueError("initial_h and initial_c: give both or neither")
            if initial_h is None or initial_c is None:
                Y, (Y_h, Y_c) = self.lstm(X)
            else:
                Y, (Y_h, Y_c) = self.lstm(X, (initial_h, initial_c))
            return Y, Y_h, Y_c

    class LanguageModel(nn.Module):
        """Token embedding -> ``nn.LSTM`` -> linear -> log-softmax."""

        def __init__(self, config: LMConfig) -> None:
            super().__init__()
            self.embedding = nn.Embedding(config.vocab_size, config.embed_size)
            self.lstm = new_lstm(config.lstm)
            self.proj = nn.Linear(config.lstm.output_size, config.vocab_size)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            hidden = self.lstm(self.embedding(tokens))[0]
            return torch.log_softmax(self.proj(hidden), dim=-1)

    return _Classes(LSTMStack, LanguageModel)


class TorchModuleExporter:
    """The eager ``torch.nn`` module itself: the baseline every ONNX export is compared with."""

    id = "torch-module"
    description = "torch.nn module (nn.LSTM) run eagerly, weights from the canonical bundle"
    produces = "torch"

    def unavailable(self) -> str | None:
        return import_problem("torch")

    def not_applicable(self, model: Model, options: ExportOptions) -> str | None:
        return torch_not_applicable(model, options)

    def versions(self) -> dict[str, str]:
        return {"torch": package_version("torch")}

    def export(self, model: Model, weights: AnyWeights, options: ExportOptions, path: Path) -> ExportOutcome:
        """Build the float32 module; ``path`` is unused (nothing is written)."""
        return ExportOutcome(module=build_module(model, weights))
