"""ONNX's own reference evaluator (``onnx.reference.ReferenceEvaluator``): a peer, not the oracle."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from exporters.base import AnyWeights, Artifact, Model


class OnnxReferenceSession:
    def __init__(self, path: str, output_names: list[str]) -> None:
        from onnx.reference import ReferenceEvaluator

        self._evaluator = ReferenceEvaluator(path)
        self._outputs = output_names

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._evaluator.run(None, dict(feeds))
        return dict(zip(self._outputs, values, strict=True))

    def placement(self) -> dict[str, str]:
        return {}

    def timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[Callable[[], object], None, str]:
        inputs = dict(feeds)
        return (lambda: self._evaluator.run(None, inputs)), None, "ReferenceEvaluator.run"

    def close(self) -> None:
        pass


class OnnxReferenceRuntime:
    id = "onnx-reference"
    consumes = "onnx"
    description = "onnx.reference.ReferenceEvaluator (pure Python)"
    required_provider: str | None = None

    def unavailable(self) -> str | None:
        try:
            import onnx.reference  # noqa: F401
        except ImportError as exc:
            return f"onnx.reference does not import: {exc}"
        return None

    def settings(self) -> dict[str, Any]:
        import onnx

        return {"onnx": onnx.__version__}

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> OnnxReferenceSession:
        import onnx

        assert artifact is not None and artifact.path is not None
        names = [o.name for o in onnx.load(str(artifact.path), load_external_data=False).graph.output]
        return OnnxReferenceSession(str(artifact.path), names)
