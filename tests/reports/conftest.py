"""Fixtures for the renderer tests: a result document built from lanes of real runs.

``data/sample_results.json`` holds 23 lane records copied from ``conformance run --suite full`` and
``--suite smoke`` on a CPU-only machine: passes, expected divergences and skips as they ran; two
expected divergences of ``full`` with their expectation removed (so they are plain ``fail``s with the
real ``format_mismatch`` text and per-step errors), one ``error`` made the same way, one ``xpass``, one
``timeout`` as the runner words it, and ``latency`` entries in ``conformance.timing.Latency.to_dict``'s
form on the passing lanes.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from reports.json_report import payload

SAMPLE = Path(__file__).parent / "data" / "sample_results.json"


def build_document(results: list[dict[str, Any]], **run: Any) -> dict[str, Any]:
    """A result document as ``conformance run`` writes it, around ``results`` (``run`` overrides its run info)."""
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))
    info = {**sample["run"], "lanes": len(results), **run}
    return payload(copy.deepcopy(results), environment=sample["environment"], run=info)


@pytest.fixture
def sample_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(SAMPLE.read_text(encoding="utf-8"))["results"]
    return records


@pytest.fixture
def document(sample_records: list[dict[str, Any]]) -> dict[str, Any]:
    return build_document(sample_records)


@pytest.fixture
def passing_document(sample_records: list[dict[str, Any]]) -> dict[str, Any]:
    return build_document([r for r in sample_records if r["status"] in ("pass", "xfail", "skip")])


def record(records: list[dict[str, Any]], lane_id: str) -> dict[str, Any]:
    return next(r for r in records if r["id"] == lane_id)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where a test leaves files for people to look at: $CONFORMANCE_ARTIFACTS, else under the test's tmp."""
    folder = Path(os.environ.get("CONFORMANCE_ARTIFACTS") or tmp_path / "tests" / "reports" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
