"""The one evaluator: run, judge, settle against an expected divergence, and where the LSTM ran."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pytest

from conformance import evaluate
from conformance.cases import Expectation
from conformance.compare import DEFAULT_TOLERANCES
from conformance.diffs import Tolerance
from conformance.evaluate import Verdict, judge, misplaced_lstm_nodes, placement_problem, settle, tolerances
from conformance.records import Expected
from conformance.status import ERROR, FAIL, PASS, XFAIL, XPASS

EXPECTED = {"Y": np.arange(6.0).reshape(3, 1, 2), "Y_h": np.ones((1, 1, 2))}
TOL = Tolerance(1e-3, 0.0)


def outputs(**errors: float) -> dict[str, np.ndarray]:
    """The expected outputs as float32, with ``errors[name]`` added to one element of each named output."""
    actual = {name: value.astype(np.float32) for name, value in EXPECTED.items()}
    for name, error in errors.items():
        actual[name].flat[-1] += error
    return actual


def verdict(**errors: float) -> Verdict:
    return judge(outputs(**errors), EXPECTED, TOL)


class TestJudge:
    def test_a_pass_names_the_worst_headroom(self) -> None:
        result = verdict(Y_h=5e-4)
        assert result.status == PASS
        assert result.message == "worst headroom 0.5 on Y_h (max abs 0.0005)"
        assert [d.name for d in result.outputs] == ["Y", "Y_h"]
        assert result.failing_outputs == ()

    def test_a_fail_carries_every_mismatch_message(self) -> None:
        result = verdict(Y=1.0, Y_h=1.0)
        assert result.status == FAIL
        assert result.failing_outputs == ("Y", "Y_h")
        assert result.message.count("Tensor-likes are not close!") == 2  # one message per output, in order
        assert result.message.startswith("Tensor-likes are not close!\n\nMismatched elements: 1 / 6 (16.7%)")
        assert "The failure occurred for item ['Y']\n\nTensor-likes are not close!" in result.message
        assert result.message.endswith("The failure occurred for item ['Y_h']")

    def test_a_problem_fails_even_when_the_numbers_pass(self) -> None:
        result = judge(outputs(), EXPECTED, TOL, problems=["LSTM node(s) x ran on CPU"])
        assert (result.status, result.message) == (FAIL, "LSTM node(s) x ran on CPU")
        assert all(result.outputs)

    def test_where_heads_a_failure(self) -> None:
        assert verdict(Y=1.0).message.startswith("Tensor-likes")
        assert judge(outputs(Y=1.0), EXPECTED, TOL, where="at T=3,B=1").message.startswith(
            "at T=3,B=1:\nTensor-likes are not close!"
        )

    def test_the_pass_message_can_be_given(self) -> None:
        assert judge(outputs(), EXPECTED, TOL, passed="matches the PyTorch module").message == (
            "matches the PyTorch module"
        )

    def test_a_missing_output_fails(self) -> None:
        actual = outputs()
        del actual["Y_h"]
        result = judge(actual, EXPECTED, TOL)
        assert result.status == FAIL and result.failing_outputs == ("Y_h",)

    def test_no_outputs(self) -> None:
        assert judge({}, {}, TOL) == Verdict(PASS, "no outputs compared", ())


class TestTolerances:
    def test_the_override_wins_else_the_actual_dtypes_default(self) -> None:
        actual = {"Y": np.zeros(1, np.float16), "Y_h": np.zeros(1, np.float64), "Y_c": np.zeros(1, np.int32)}
        chosen = tolerances({**EXPECTED, "Y_c": np.zeros(1)}, actual, lambda name: TOL if name == "Y" else None)
        assert chosen == {"Y": TOL, "Y_h": DEFAULT_TOLERANCES["float64"], "Y_c": DEFAULT_TOLERANCES["float32"]}

    def test_a_missing_output_gets_the_float32_default(self) -> None:
        assert tolerances(EXPECTED, {}) == dict.fromkeys(EXPECTED, DEFAULT_TOLERANCES["float32"])

    def test_a_runtime_computing_in_bf16_is_held_to_bf16(self) -> None:
        """OpenVINO's default inference precision is bf16 on CPUs with AVX512-BF16, behind float32 outputs."""
        actual = {"Y": np.zeros(1, np.float32), "Y_h": np.zeros(1, np.float16), "Y_c": np.zeros(1, np.float32)}
        expected = {**EXPECTED, "Y_c": np.zeros(1)}
        chosen = tolerances(expected, actual, lambda name: TOL if name == "Y_c" else None, computed_in="bfloat16")
        assert chosen == {"Y": DEFAULT_TOLERANCES["bfloat16"], "Y_h": DEFAULT_TOLERANCES["bfloat16"], "Y_c": TOL}

    def test_computing_in_a_more_precise_dtype_changes_nothing(self) -> None:
        actual = {"Y": np.zeros(1, np.float16)}
        assert tolerances({"Y": np.zeros(1)}, actual, computed_in="float32") == {"Y": DEFAULT_TOLERANCES["float16"]}


class _Session:
    def __init__(self, result: Mapping[str, Any] | Exception) -> None:
        self.result = result

    def run(self, feeds: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class TestRun:
    def test_the_outputs(self) -> None:
        assert evaluate.run(_Session({"Y": 1}), {}, "ort-cpu") == {"Y": 1}

    def test_an_exception_is_an_error_verdict_naming_the_runtime(self) -> None:
        result = evaluate.run(_Session(RuntimeError("bad shape\nmore")), {}, "ort-cpu")
        assert result == Verdict(ERROR, "ort-cpu failed to run: RuntimeError: bad shape")
        at = evaluate.run(_Session(ValueError("x")), {}, "ort-cpu", where="T=7,B=3")
        assert at == Verdict(ERROR, "ort-cpu failed at T=7,B=3: ValueError: x")


class TestSettle:
    def test_without_an_expectation_nothing_changes(self) -> None:
        raw = verdict(Y=1.0)
        assert settle(raw, None) == (FAIL, raw.message, None)

    def test_a_pass_where_a_failure_was_expected_is_an_xpass(self) -> None:
        expectation = Expectation("clip is applied late", reference="https://example.invalid/9")
        assert settle(verdict(), expectation) == (
            XPASS,
            "expected to fail (clip is applied late) but passed",
            Expected("clip is applied late", "fail", "https://example.invalid/9", "*"),
        )

    @pytest.mark.parametrize("output", ["*", "Y*", "Y_h"])
    def test_the_expected_failure_is_an_xfail_with_the_failures_message(self, output: str) -> None:
        raw = verdict(Y_h=1.0)
        status, message, expected = settle(raw, Expectation("Y_h diverges", output=output))
        assert (status, message) == (XFAIL, raw.message)
        assert expected == Expected("Y_h diverges", "fail", None, output)

    def test_an_expected_error_that_happens_is_an_xfail(self) -> None:
        raw = Verdict(ERROR, "export failed: opset 99")
        assert settle(raw, Expectation("no opset 99", status="error"))[:2] == (XFAIL, "export failed: opset 99")

    def test_a_failure_of_another_output_is_a_fail_with_a_note(self) -> None:
        raw = verdict(Y=1.0, Y_h=1.0)  # Y_h was expected to diverge; Y was not
        status, message, expected = settle(raw, Expectation("Y_h diverges", output="Y_h"))
        assert status == FAIL
        assert message == f"{raw.message}\n(expected fail on Y_h instead)"
        assert expected is not None and expected.output == "Y_h"

    def test_another_outcome_than_the_expected_one_keeps_its_status_with_a_note(self) -> None:
        raw = verdict(Y=1.0)
        assert settle(raw, Expectation("raises", status="error")) == (
            FAIL,
            f"{raw.message}\n(expected error on * instead)",
            Expected("raises", "error", None, "*"),
        )
        error = Verdict(ERROR, "ort-cpu failed to run: RuntimeError: x")
        note = f"{error.message}\n(expected fail on * instead)"
        assert settle(error, Expectation("wrong numbers"))[:2] == (ERROR, note)


class TestPlacement:
    PLACED: ClassVar[dict[str, str]] = {
        "lstm_0 (LSTM)": "CPUExecutionProvider",
        "t (Transpose)": "CPUExecutionProvider",
        "lstm_1 (LSTM)": "CUDAExecutionProvider",
    }

    def test_only_lstm_nodes_on_another_provider_are_misplaced(self) -> None:
        assert misplaced_lstm_nodes("CUDAExecutionProvider", self.PLACED) == ["lstm_0 (LSTM)"]
        assert misplaced_lstm_nodes("CPUExecutionProvider", self.PLACED) == ["lstm_1 (LSTM)"]

    def test_a_runtime_that_requires_no_provider_has_none_misplaced(self) -> None:
        assert misplaced_lstm_nodes(None, self.PLACED) == []
        assert placement_problem("reference", None, self.PLACED) is None

    def test_the_problem_names_nodes_providers_and_the_runtime(self) -> None:
        assert placement_problem("ort-cuda", "CUDAExecutionProvider", self.PLACED) == (
            "LSTM node(s) lstm_0 (LSTM) ran on CPUExecutionProvider, not CUDAExecutionProvider: not a ort-cuda result"
        )
        placed = {"lstm_1 (LSTM)": "CUDAExecutionProvider"}
        assert placement_problem("ort-cuda", "CUDAExecutionProvider", placed) is None
