"""A test-only runtime: ONNX Runtime CPU that aborts the process, or hangs, on inputs with a batch of 3.

``$FAILING_RUNTIME_MODE`` is ``abort`` (``os.abort()``: what ONNX Runtime 1.32 does on a batch of 0) or
``hang`` (sleeps for an hour). Any other batch runs as ORT CPU does. The batch is axis 1 of the first
float input (time-major models). Register it with
``CONFORMANCE_EXTRA_RUNTIMES="failing=tests.conformance.failing_runtime:FailingRuntime"``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from conformance.runtimes.onnxruntime_runtime import OrtRuntime, OrtSession
from exporters.base import AnyWeights, Artifact, Model
from tests.conformance.perturbing_runtime import PerturbingSession

MODE_ENV = "FAILING_RUNTIME_MODE"
BATCH = 3


class FailingSession(PerturbingSession):
    """ORT CPU (the perturbing double with nothing to perturb) that aborts or hangs on a batch of 3."""

    def __init__(self, inner: OrtSession) -> None:
        super().__init__(inner, None)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        data = next((v for v in feeds.values() if v.dtype.kind == "f" and v.ndim == 3), None)
        if data is not None and data.shape[1] == BATCH:
            if os.environ.get(MODE_ENV) == "hang":
                time.sleep(3600)
            os.write(2, b"failing runtime: terminate called without an active exception\n")  # as ORT 1.32 does
            os.abort()
        return self.inner.run(feeds)


class FailingRuntime:
    consumes = "onnx"
    required_provider: str | None = None
    description = "test double: ONNX Runtime CPU that aborts or hangs on a batch of 3"

    def __init__(self) -> None:
        self.id = "failing"
        self.ort = OrtRuntime("CPUExecutionProvider", "all")

    def unavailable(self) -> str | None:
        return self.ort.unavailable()

    def settings(self) -> dict[str, Any]:
        return {**self.ort.settings(), "mode": os.environ.get(MODE_ENV, "abort")}

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> FailingSession:
        return FailingSession(self.ort.open(artifact, model, weights))
