"""Fixtures for the renderer tests: result documents built from lanes of real runs.

``data/sample_results.json`` is a schema-version-1 file holding 23 lane records copied from ``conformance
run --suite full`` and ``--suite smoke`` on a CPU-only machine: passes, expected divergences and skips as
they ran; two expected divergences of ``full`` with their expectation removed (so they are plain
``fail``s with the real ``format_mismatch`` text and per-step errors), one ``error`` made the same way,
one ``xpass``, one ``timeout`` as the runner words it, and ``latency`` entries in
``conformance.timing.Latency.to_dict``'s form on the passing lanes. It is read once through
``ResultDocument.from_dict`` (the path every old file takes); tests then build typed documents from its
``Result`` records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from conformance.records import Result, ResultDocument

SAMPLE = Path(__file__).parent / "data" / "sample_results.json"
FAIL_LANE = "clip[forward]/onnx-native/ort-cpu"


def sample() -> ResultDocument:
    return ResultDocument.from_dict(json.loads(SAMPLE.read_text(encoding="utf-8")), source=str(SAMPLE))


def build_document(
    results: Iterable[Result], *, environment: dict[str, Any] | None = None, **run: Any
) -> ResultDocument:
    """A document as ``conformance run`` writes it, around ``results`` (``run`` overrides its run info)."""
    base = sample()
    results = list(results)
    info = {**base.run, "command": "run", "lanes": len(results), **run}
    return ResultDocument.of(results, run=info, environment=environment or base.environment)


@pytest.fixture
def sample_results() -> tuple[Result, ...]:
    return sample().results


@pytest.fixture
def document(sample_results: tuple[Result, ...]) -> ResultDocument:
    return build_document(sample_results)


@pytest.fixture
def passing_document(sample_results: tuple[Result, ...]) -> ResultDocument:
    return build_document(r for r in sample_results if r.status in ("pass", "xfail", "skip"))


def record(results: Iterable[Result], result_id: str) -> Result:
    return next(r for r in results if r.id == result_id)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where a test leaves files for people to look at: $CONFORMANCE_ARTIFACTS, else under the test's tmp."""
    folder = Path(os.environ.get("CONFORMANCE_ARTIFACTS") or tmp_path / "tests" / "reports" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_document(model: str = "model.onnx") -> ResultDocument:
    """A ``check`` of one model: two nodes and the whole model on two runtimes at one shape, and the weights."""
    from conformance.records import model_result, node_result, weights_result

    shape = {"T": 7, "B": 3}
    results = [
        node_result(model, "/lstm/LSTM", "ort-cpu", "pass", "worst headroom 0.01 on Y", label="T=7,B=3", shape=shape),
        node_result(model, "/lstm_1/LSTM", "ort-cpu", "pass", "worst headroom 0.02 on Y", label="T=7,B=3", shape=shape),
        node_result(
            model, "/lstm/LSTM", "openvino", "fail", "Tensor-likes are not close!", label="T=7,B=3", shape=shape
        ),
        node_result(model, "/lstm_1/LSTM", "openvino", "not-exercised", "the If took its else branch", label="T=7,B=3"),
        model_result(model, "ort-cpu", "pass", "worst headroom 0.03 on logits", label="T=7,B=3", shape=shape),
        model_result(model, "openvino", "fail", "Tensor-likes are not close!", label="T=7,B=3", shape=shape),
        weights_result(model, "pass", "the model holds the trained weights"),
    ]
    run = {"command": "check", "model": model, "causes": ["openvino runs the LSTM in bf16"], "wall_seconds": 1.25}
    return ResultDocument.of(results, run=run, environment=sample().environment)


def lane_with_latency(case: str, *, median_ms: float = 1.0) -> Result:
    """A passing lane of ``case`` whose latency holds every number the tables show."""
    from conformance.records import lane_result

    latency = {key: median_ms for key in ("median_ms", "p90_ms", "p99_ms", "min_ms", "stdev_ms", "ci_low_ms")}
    latency |= {"ci_high_ms": median_ms, "count": 9, "converged": True}
    return lane_result(
        suite="full", case=case, exporter="onnx-native", runtime="ort-cpu", status="pass", message="", latency=latency
    )
