"""PyTorch eager, on the CPU or a CUDA device, running the torch-module exporter's module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from exporters.base import AnyWeights, Artifact, ExportOptions, Model, input_names, output_names


class TorchSession:
    def __init__(self, module: Any, device: str, inputs: list[str], outputs: list[str]) -> None:
        self._module = module.to(device)
        self._device = device
        self._inputs = inputs
        self._outputs = outputs

    def _args(self, feeds: Mapping[str, np.ndarray]) -> list[Any]:
        """The module's positional inputs, as tensors on the session's device."""
        import torch

        return [
            torch.from_numpy(np.ascontiguousarray(feeds[name])).to(self._device)
            for name in self._inputs
            if name in feeds
        ]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = self._args(feeds)
        with torch.inference_mode():
            result = self._module(*args)
            if self._device.startswith("cuda"):
                torch.cuda.synchronize()
        values = result if isinstance(result, tuple) else (result,)
        return {name: value.detach().cpu().numpy() for name, value in zip(self._outputs, values, strict=True)}

    def timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[Callable[[], object], Callable[[], None] | None, str]:
        """The module's forward under inference_mode, inputs already on the device."""
        import torch

        args = self._args(feeds)

        def call() -> object:
            with torch.inference_mode():
                return self._module(*args)

        if self._device.startswith("cuda"):
            return call, torch.cuda.synchronize, "module forward, inputs on the GPU, torch.cuda.synchronize() timed"
        return call, None, "module forward under inference_mode, CPU tensors"

    def placement(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        pass


class TorchRuntime:
    consumes = "torch"
    required_provider: str | None = None

    def __init__(self, device: str) -> None:
        self.device = device
        self.id = f"torch-{device}"
        self.description = f"PyTorch eager on {device.upper()}"

    def unavailable(self) -> str | None:
        try:
            import torch
        except ImportError as exc:
            return f"torch does not import: {exc}"
        if self.device == "cuda" and not torch.cuda.is_available():
            return f"torch.cuda.is_available() is False (torch {torch.__version__})"
        return None

    def settings(self) -> dict[str, Any]:
        import torch

        settings: dict[str, Any] = {
            "torch": torch.__version__,
            "device": self.device,
            "threads": torch.get_num_threads(),
        }
        if self.device == "cuda":
            settings["gpu"] = torch.cuda.get_device_name(0)
            settings["cudnn"] = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
        return settings

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> TorchSession:
        assert artifact is not None and artifact.module is not None
        options = ExportOptions(**{k: v for k, v in artifact.meta.get("options", {}).items()})
        return TorchSession(artifact.module, self.device, input_names(model, options), output_names(model))
