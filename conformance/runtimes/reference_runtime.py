"""The NumPy float64 reference as a runtime: the ground truth, and a latency baseline."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from exporters.base import AnyWeights, Artifact, Model
from reference.config import LMConfig
from reference.models import lm_log_probs, run_stack
from reference.weights import LMWeights, LSTMWeights


class ReferenceSession:
    def __init__(self, model: Model, weights: AnyWeights) -> None:
        self._model = model
        self._weights = weights

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if isinstance(self._model, LMConfig):
            assert isinstance(self._weights, LMWeights)
            return {"log_probs": lm_log_probs(self._model, self._weights, feeds["tokens"])}
        assert isinstance(self._weights, LSTMWeights)
        out = run_stack(
            self._model,
            self._weights,
            feeds["X"],
            initial_h=feeds.get("initial_h"),
            initial_c=feeds.get("initial_c"),
            sequence_lens=feeds.get("sequence_lens"),
        )
        return {"Y": out.output, "Y_h": out.h_n, "Y_c": out.c_n}

    def placement(self) -> dict[str, str]:
        return {}

    def timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[Callable[[], object], None, str]:
        return (lambda: self.run(feeds)), None, "reference.run_stack / lm_log_probs in float64, NumPy"

    def close(self) -> None:
        pass


class ReferenceRuntime:
    id = "reference"
    consumes = "weights"
    description = "NumPy float64 reference (reference.lstm)"
    required_provider: str | None = None

    def unavailable(self) -> str | None:
        return None

    def settings(self) -> dict[str, Any]:
        return {"dtype": "float64", "numpy": np.__version__}

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> ReferenceSession:
        return ReferenceSession(model, weights)
