"""The user-shaped PyTorch modules of the corpus, their exports and their torch references.

Imported only to build a model or to compute a torch reference (it imports torch).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from exporters.torch_onnx import export_module
from tests.corpus.spec import Feeds, Outputs

TORCHSCRIPT_OPSET = 17
VOCAB = 40


class CharLM(nn.Module):
    """Embedding(V, 16) -> 2-layer batch-first LSTM(16, 32) -> Linear(32, V) logits (no log-softmax)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 16)
        self.lstm = nn.LSTM(16, 32, num_layers=2, batch_first=True)
        self.head = nn.Linear(32, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.emb(tokens))
        out: torch.Tensor = self.head(y)
        return out


class Tagger(nn.Module):
    """Bidirectional batch-first LSTM(12, 24) -> Linear(48, 7) tag scores per step (no embedding)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(12, 24, bidirectional=True, batch_first=True)
        self.head = nn.Linear(48, 7)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(features)
        out: torch.Tensor = self.head(y)
        return out


class ConvLSTM(nn.Module):
    """[B, 8, T] channels-first features -> Conv1d(8, 16, 3, padding=1) -> ReLU -> LSTM(16, 32) -> Linear(32, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(8, 16, kernel_size=3, padding=1)
        self.lstm = nn.LSTM(16, 32, batch_first=True)
        self.head = nn.Linear(32, 5)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = torch.relu(self.conv(audio)).transpose(1, 2)
        y, _ = self.lstm(frames)
        out: torch.Tensor = self.head(y)
        return out


class PlainStack(nn.Module):
    """A plain time-major 2-layer nn.LSTM(10, 16): the module the planted bugs claim to be."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(10, 16, num_layers=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y, (h, c) = self.lstm(x)
        return y, h, c


class PackedStack(nn.Module):
    """3-layer LSTM(6, 10) over a packed padded batch: TorchScript exports ``lengths`` as ``sequence_lens``."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 10, num_layers=3)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        y, (h, c) = self.lstm(packed)
        y, _ = pad_packed_sequence(y, total_length=x.shape[0])
        return y, h, c


class Encoder(nn.Module):
    """Linear(6, 8) -> ReLU -> LSTM(8, 12): exported as a model-local ONNX function."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 8)
        self.lstm = nn.LSTM(8, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.lstm(torch.relu(self.proj(x)))[0]
        return y


class EncoderModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.encoder(x))
        return out


MODULES: dict[str, Callable[[], nn.Module]] = {
    "char_lm": CharLM,
    "tagger": Tagger,
    "conv": ConvLSTM,
    "plain_stack": PlainStack,
    "packed_stack": PackedStack,
    "encoder": EncoderModel,
}


def make_module(key: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return MODULES[key]().eval()


def export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    *,
    dynamo: bool,
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
    **extra: Any,
) -> None:
    """Export as a user would (dynamo: torch's defaults, its own opset; TorchScript: opset 17), quietly."""
    if extra:  # options export_module does not forward (export_modules_as_functions): call torch directly
        from exporters.torch_onnx import _capture_output

        with _capture_output([]):
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                opset_version=TORCHSCRIPT_OPSET,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                **extra,
            )
        import onnx

        onnx.checker.check_model(str(path), full_check=True)
        return
    opset = None if dynamo else TORCHSCRIPT_OPSET
    export_module(module, args, path, dynamo=dynamo, input_names=inputs, output_names=outputs, opset=opset, axes=axes)


def save_state_dict(module: nn.Module, path: Path) -> None:
    tmp = path.with_name(path.name + ".partial")
    torch.save(module.state_dict(), tmp)
    tmp.replace(path)


def load_module(key: str, state_dict: Path) -> nn.Module:
    module = MODULES[key]().eval()
    module.load_state_dict(torch.load(state_dict, weights_only=True))
    return module


def run_module(module: nn.Module, feeds: Feeds, inputs: list[str], outputs: list[str]) -> Outputs:
    """Call ``module`` with ``feeds`` (ONNX input order) and name its results with the ONNX output names."""
    args = [torch.from_numpy(np.asarray(feeds[name])) for name in inputs]
    args = [a.float() if a.is_floating_point() else a for a in args]
    with torch.no_grad():
        result = module(*args)
    values = result if isinstance(result, tuple) else (result,)
    return {name: value.numpy() for name, value in zip(outputs, values, strict=True)}


def torch_reference(key: str, state_dict: Path, inputs: list[str], outputs: list[str]) -> Callable[[Feeds], Outputs]:
    """A callable that loads the saved state_dict once and runs the module on ONNX-named feeds."""
    cache: dict[str, nn.Module] = {}

    def reference(feeds: Feeds) -> Outputs:
        if "module" not in cache:
            cache["module"] = load_module(key, state_dict)
        return run_module(cache["module"], feeds, inputs, outputs)

    return reference
