"""Test-double runtimes for the runner and lane tests.

Each consumes ``"weights"`` (like the reference runtime), so its lanes need
no export. Register them with ``CONFORMANCE_EXTRA_RUNTIMES`` (see the
``fake_runtimes`` fixture in conftest.py); the registry sets each
instance's ``id`` from that variable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from conformance.runtimes.reference_runtime import ReferenceSession
from exporters.base import AnyWeights, Artifact, Model

CRASH_EXIT_CODE = 3
LSTM_NODE, TRANSPOSE_NODE = "lstm_0 (LSTM)", "transpose_y (Transpose)"


class _FakeRuntime:
    consumes = "weights"
    required_provider: str | None = None
    description = "test double"

    def __init__(self) -> None:
        self.id = type(self).__name__

    def unavailable(self) -> str | None:
        return None

    def settings(self) -> dict[str, Any]:
        return {"fake": type(self).__name__}

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> ReferenceSession:
        return self.session(model, weights)

    def session(self, model: Model, weights: AnyWeights) -> ReferenceSession:
        return ReferenceSession(model, weights)


class _CrashSession(ReferenceSession):
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        os._exit(CRASH_EXIT_CODE)  # a segfault-like death: no exception, no cleanup


class CrashRuntime(_FakeRuntime):
    """Kills its worker process in ``run``."""

    def session(self, model: Model, weights: AnyWeights) -> ReferenceSession:
        return _CrashSession(model, weights)


class _HangSession(ReferenceSession):
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        while True:
            time.sleep(3600)


class HangRuntime(_FakeRuntime):
    """Never returns from ``run``."""

    def session(self, model: Model, weights: AnyWeights) -> ReferenceSession:
        return _HangSession(model, weights)


class OpenFailsRuntime(_FakeRuntime):
    """Raises while loading the model."""

    def session(self, model: Model, weights: AnyWeights) -> ReferenceSession:
        raise RuntimeError("corrupt model\nsecond line")


class _RunFailsSession(ReferenceSession):
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise ValueError("bad input shape")


class RunFailsRuntime(_FakeRuntime):
    """Raises in ``run``."""

    def session(self, model: Model, weights: AnyWeights) -> ReferenceSession:
        return _RunFailsSession(model, weights)


class _PlacedSession(ReferenceSession):
    """The reference's outputs, with a placement as ONNX Runtime's profiler reports it."""

    def __init__(self, model: Model, weights: AnyWeights, lstm_provider: str) -> None:
        super().__init__(model, weights)
        self._lstm_provider = lstm_provider

    def placement(self) -> dict[str, str]:
        return {LSTM_NODE: self._lstm_provider, TRANSPOSE_NODE: "CPUExecutionProvider"}


class CudaOnCpuRuntime(_FakeRuntime):
    """Claims CUDA, but its LSTM node ran on the CPU EP (ORT's silent fallback)."""

    required_provider = "CUDAExecutionProvider"

    def session(self, model: Model, weights: AnyWeights) -> ReferenceSession:
        return _PlacedSession(model, weights, "CPUExecutionProvider")


class CudaOnCudaRuntime(_FakeRuntime):
    """Claims CUDA, and its LSTM node ran there (only a Transpose fell back to the CPU)."""

    required_provider = "CUDAExecutionProvider"

    def session(self, model: Model, weights: AnyWeights) -> ReferenceSession:
        return _PlacedSession(model, weights, "CUDAExecutionProvider")


class _NonFiniteSession(ReferenceSession):
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = super().run(feeds)
        y, y_h = outputs["Y"].astype(np.float32), outputs["Y_h"].astype(np.float32)
        y.flat[0] = np.nan
        y_h.flat[0] = np.inf
        return {"Y": y, "Y_h": y_h, "Y_c": outputs["Y_c"][..., :1].astype(np.float32)}  # Y_c cut short


class NonFiniteRuntime(_FakeRuntime):
    """Returns a NaN in Y, an Inf in Y_h and a Y_c of the wrong shape."""

    def session(self, model: Model, weights: AnyWeights) -> ReferenceSession:
        return _NonFiniteSession(model, weights)
