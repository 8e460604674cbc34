"""ONNX's own ``LSTM`` node test cases, regenerated from the installed onnx package, against the reference.

``collect_testcases`` runs the exporters of ``onnx/backend/test/case/node/lstm.py`` and returns each
case as a one-node model plus ``(inputs, outputs)`` data sets. Omitted optional inputs and outputs
are empty strings in the node, and the data sets hold values only for the ones present, so inputs
and outputs are mapped by their position in the node, never by name.

The expected outputs were computed by ONNX in float32; the reference computes in float64, hence an
absolute tolerance of 1e-6 (observed differences are below 1e-7).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from onnx import helper
from onnx.backend.test.case.node import collect_testcases
from onnx.backend.test.case.test_case import TestCase

from reference import lstm

INPUT_NAMES = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
OUTPUT_NAMES = ("Y", "Y_h", "Y_c")
ATOL = 1e-6

# The cases onnx 1.23 ships; a later onnx may add more, never fewer.
KNOWN_CASES = {
    "test_lstm_defaults",
    "test_lstm_with_initial_bias",
    "test_lstm_with_peepholes",
    "test_lstm_batchwise",
    "test_lstm_reverse",
    "test_lstm_bidirectional",
}


def _collect() -> list[TestCase]:
    # collect_testcases imports every node exporter (some overflow casts on purpose) and keeps its
    # results in module globals: the op-type filter is only honoured on the first call in a process,
    # so filter again here. KNOWN_CASES guards against an empty or foreign list.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases("LSTM")
    return [case for case in cases if [node.op_type for node in case.model.graph.node] == ["LSTM"]]


CASES = _collect()


def _attributes(case: TestCase) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for attribute in case.model.graph.node[0].attribute:
        value = helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        attrs[attribute.name] = value
    return attrs


def _positional(names: list[str], spec_names: tuple[str, ...], values: list[Any]) -> dict[str, Any]:
    """Map the present (non-empty) node slots, by position, to the spec's names."""
    assert len(names) <= len(spec_names)
    present = [spec_names[pos] for pos, name in enumerate(names) if name]
    assert len(present) == len(values), f"{len(values)} values for the present slots {present}"
    return dict(zip(present, values, strict=True))


class TestCollection:
    def test_known_cases_are_collected(self) -> None:
        names = {case.name for case in CASES}
        assert names >= KNOWN_CASES, f"missing: {sorted(KNOWN_CASES - names)}"

    def test_every_case_has_data_and_expected_outputs(self) -> None:
        assert CASES
        for case in CASES:
            assert case.data_sets, case.name
            for _inputs, outputs in case.data_sets:
                assert len(outputs) >= 1, case.name


class TestAgainstOnnxCases:
    @pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
    def test_reference_matches_expected_outputs(self, case: TestCase) -> None:
        node = case.model.graph.node[0]
        attrs = _attributes(case)
        for inputs, expected in case.data_sets:
            feeds = _positional(list(node.input), INPUT_NAMES, list(inputs))
            actual = lstm(**feeds, **attrs)._asdict()
            for name, value in _positional(list(node.output), OUTPUT_NAMES, list(expected)).items():
                want = np.asarray(value)
                assert actual[name].shape == want.shape, name
                np.testing.assert_allclose(actual[name], want, rtol=0, atol=ATOL, err_msg=f"{case.name}: {name}")
