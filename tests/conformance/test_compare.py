"""Tests for conformance.compare: the comparison data, its messages, and agreement with numpy/torch."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conformance.compare import (
    DEFAULT_TOLERANCES,
    EXACT,
    OutputDiff,
    Tolerance,
    compare_output,
    compare_outputs,
    default_tolerance,
    format_mismatch,
    summary_line,
)

TOL = Tolerance(atol=1e-5, rtol=1.3e-6)  # torch's float32 defaults: the message examples use them


def three_mismatches() -> tuple[np.ndarray, np.ndarray]:
    """A 3x4 pair with mismatches at (0, 1), (1, 2), (2, 3); the greatest at (1, 2)."""
    expected = np.arange(1.0, 13.0).reshape(3, 4)
    actual = expected.copy()
    actual[0, 1] += 0.25
    actual[1, 2] += 0.5
    actual[2, 3] -= 0.125
    return actual, expected


class TestDefaultTolerances:
    def test_the_table_holds_one_entry_per_float_dtype(self) -> None:
        assert {
            "float64": Tolerance(1e-10, 1e-9),
            "float32": Tolerance(2e-6, 2e-5),
            "float16": Tolerance(1e-2, 1e-2),
            "bfloat16": Tolerance(5e-2, 5e-2),
        } == DEFAULT_TOLERANCES

    @pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32"), "f4"])
    def test_lookup_accepts_names_and_numpy_dtypes(self, dtype: Any) -> None:
        assert default_tolerance(dtype) == Tolerance(atol=2e-6, rtol=2e-5)

    def test_bfloat16_is_looked_up_by_name(self) -> None:
        assert default_tolerance("bfloat16") == Tolerance(5e-2, 5e-2)

    @pytest.mark.parametrize("dtype", ["int64", np.int32, "uint8", "bool"])
    def test_integer_dtypes_compare_exactly(self, dtype: Any) -> None:
        assert default_tolerance(dtype) == EXACT == Tolerance(0.0, 0.0)

    def test_unknown_dtype_names_itself_and_the_known_ones(self) -> None:
        with pytest.raises(ValueError) as info:
            default_tolerance("complex64")
        assert str(info.value) == (
            "no default tolerance for dtype 'complex64'; known: bfloat16, float16, float32, float64 "
            "and the integer dtypes"
        )

    def test_a_name_numpy_does_not_know(self) -> None:
        with pytest.raises(ValueError, match=r"^no default tolerance for dtype 'float8'; known: "):
            default_tolerance("float8")

    @pytest.mark.parametrize(("atol", "rtol"), [(-1e-5, 0.0), (0.0, math.nan), (math.inf, 0.0)])
    def test_tolerance_must_be_finite_and_not_negative(self, atol: float, rtol: float) -> None:
        with pytest.raises(ValueError, match=r"must be a finite number >= 0, got "):
            Tolerance(atol, rtol)

    def test_integers_are_stored_as_floats(self) -> None:
        assert repr(Tolerance(0, 1)) == "Tolerance(atol=0.0, rtol=1.0)"


class TestPassing:
    def test_equal_arrays_pass_with_zero_headroom(self) -> None:
        expected = np.linspace(-1, 1, 24).reshape(2, 3, 4)
        diff = compare_output("Y", expected.copy(), expected, TOL)
        assert diff.passed and bool(diff)
        assert diff.problem is None
        assert (diff.mismatched, diff.total) == (0, 24)
        assert (diff.max_abs, diff.max_rel, diff.headroom) == (0.0, 0.0, 0.0)

    def test_within_tolerance_passes_with_headroom_up_to_one(self) -> None:
        expected = np.ones((4, 2))
        actual = expected + 5e-6  # allowed: 1e-5 + 1.3e-6
        diff = compare_output("Y", actual, expected, TOL)
        assert diff.passed
        assert 0 < diff.headroom <= 1
        assert diff.headroom == pytest.approx(5e-6 / (1e-5 + 1.3e-6), rel=1e-6)
        assert diff.max_abs == pytest.approx(5e-6)

    def test_greatest_errors_of_a_pass_are_over_all_elements(self) -> None:
        expected = np.array([1.0, 100.0, 0.5])
        actual = expected + np.array([1e-6, 1e-4, 0.0])
        diff = compare_output("Y", actual, expected, Tolerance(1e-5, 1e-5))
        assert diff.passed
        assert diff.max_abs_index == (1,)
        assert diff.max_rel_index == (1,)

    def test_float32_actual_is_compared_in_float64(self) -> None:
        expected = np.array([0.1, 0.2], dtype=np.float64)
        diff = compare_output("Y", expected.astype(np.float32), expected, default_tolerance("float32"))
        assert diff.passed
        assert diff.actual_dtype == "float32"
        assert diff.max_abs == pytest.approx(abs(float(np.float32(0.2)) - 0.2))

    def test_an_output_is_truthy_exactly_when_it_passed(self) -> None:
        actual, expected = three_mismatches()
        assert not compare_output("Y", actual, expected, TOL)
        assert compare_output("Y", expected, expected, TOL)


class TestMismatch:
    def test_counts_and_indices(self) -> None:
        actual, expected = three_mismatches()
        diff = compare_output("Y_h", actual, expected, TOL)
        assert not diff.passed
        assert (diff.mismatched, diff.total) == (3, 12)
        assert (diff.max_abs, diff.max_abs_index) == (0.5, (1, 2))
        assert (diff.max_rel, diff.max_rel_index) == (0.125, (0, 1))
        assert (diff.allowed_atol, diff.allowed_rtol) == (1e-5, 1.3e-6)
        assert diff.headroom == pytest.approx(0.5 / (1e-5 + 1.3e-6 * 7))
        assert diff.problem is None

    def test_the_message(self) -> None:
        actual, expected = three_mismatches()
        assert format_mismatch(compare_output("Y_h", actual, expected, TOL)) == (
            "Tensor-likes are not close!\n"
            "\n"
            "Mismatched elements: 3 / 12 (25.0%)\n"
            "Greatest absolute difference: 0.5 at index (1, 2) (up to 1e-05 allowed)\n"
            "Greatest relative difference: 0.125 at index (0, 1) (up to 1.3e-06 allowed)\n"
            "\n"
            "The failure occurred for item ['Y_h']"
        )

    def test_greatest_errors_of_a_failure_are_over_the_mismatches_only(self) -> None:
        expected = np.array([1000.0, 0.0])
        actual = np.array([1000.05, 0.01])  # 0.05 is within rtol of 1000; 0.01 is not within atol of 0
        diff = compare_output("Y", actual, expected, Tolerance(1e-5, 1e-4))
        assert diff.mismatched == 1
        assert diff.max_abs == pytest.approx(0.01)
        assert diff.max_abs_index == (1,)

    def test_relative_error_is_inf_where_expected_is_zero(self) -> None:
        expected = np.array([[0.0, 2.0], [0.0, 4.0]])
        actual = np.array([[0.0, 2.0], [0.5, 4.0]])
        diff = compare_output("Y", actual, expected, TOL)
        assert (diff.max_rel, diff.max_rel_index) == (math.inf, (1, 0))
        assert "Greatest relative difference: inf at index (1, 0) (up to 1.3e-06 allowed)" in format_mismatch(diff)

    def test_zero_expected_within_atol_passes_with_inf_relative_error(self) -> None:
        diff = compare_output("Y", np.array([0.0, 1e-6]), np.array([0.0, 0.0]), TOL)
        assert diff.passed
        assert (diff.max_rel, diff.max_rel_index) == (math.inf, (1,))

    def test_a_mismatch_whose_ratio_rounds_to_one_still_reads_over_one(self) -> None:
        expected = np.zeros(1)
        atol = 1e-5
        actual = np.array([np.nextafter(atol, 1.0)])
        diff = compare_output("Y", actual, expected, Tolerance(atol, 0.0))
        assert not diff.passed
        assert diff.headroom > 1


class TestNonFinite:
    def test_nan_where_expected_is_finite_fails(self) -> None:
        expected = np.arange(6.0).reshape(2, 3)
        actual = expected.copy()
        actual[0, 1] = np.nan
        actual[1, 2] += 1.0
        diff = compare_output("Y_c", actual, expected, TOL)
        assert not diff.passed
        assert (diff.mismatched, diff.nan_count, diff.inf_count) == (2, 1, 0)
        assert diff.headroom == math.inf
        assert format_mismatch(diff) == (
            "Tensor-likes are not close!\n"
            "\n"
            "Mismatched elements: 2 / 6 (33.3%)\n"
            "Greatest absolute difference: 1.0 at index (1, 2) (up to 1e-05 allowed)\n"
            "Greatest relative difference: 0.2 at index (1, 2) (up to 1.3e-06 allowed)\n"
            "Non-finite values where expected is finite: 1 NaN, 0 Inf\n"
            "\n"
            "The failure occurred for item ['Y_c']"
        )

    def test_when_every_mismatch_is_nan_the_greatest_difference_is_nan(self) -> None:
        actual = np.array([1.0, np.nan, np.nan])
        diff = compare_output("Y", actual, np.ones(3), TOL)
        assert math.isnan(diff.max_abs)
        assert diff.max_abs_index == (1,)
        assert diff.nan_count == 2

    def test_nan_matches_nan_at_the_same_index(self) -> None:
        expected = np.array([1.0, np.nan, 3.0])
        diff = compare_output("Y", expected.copy(), expected, TOL)
        assert diff.passed
        assert (diff.nan_count, diff.headroom, diff.max_abs) == (0, 0.0, 0.0)

    def test_finite_where_expected_is_nan_fails_without_counting_as_nan(self) -> None:
        diff = compare_output("Y", np.array([1.0, 2.0]), np.array([1.0, np.nan]), TOL)
        assert not diff.passed
        assert (diff.mismatched, diff.nan_count, diff.headroom) == (1, 0, math.inf)

    def test_inf_where_expected_is_finite_fails(self) -> None:
        expected = np.ones(4)
        actual = expected.copy()
        actual[2] = -np.inf
        diff = compare_output("Y", actual, expected, TOL)
        assert not diff.passed
        assert (diff.inf_count, diff.nan_count) == (1, 0)
        assert (diff.max_abs, diff.max_abs_index, diff.headroom) == (math.inf, (2,), math.inf)
        assert (
            summary_line(diff) == "Y: 1/4 mismatched, max abs inf at (2,) (allowed 1e-05), headroom inf, 0 NaN, 1 Inf"
        )

    def test_the_same_inf_matches(self) -> None:
        expected = np.array([np.inf, -np.inf, 0.0])
        diff = compare_output("Y", expected.copy(), expected, TOL)
        assert diff.passed
        assert diff.headroom == 0.0

    def test_finite_where_expected_is_inf_fails(self) -> None:
        diff = compare_output("Y", np.array([1e308]), np.array([np.inf]), Tolerance(1e-5, 1.0))
        assert not diff.passed
        assert diff.inf_count == 0


class TestStages:
    def test_missing_output(self) -> None:
        diff = compare_output("Y_c", None, np.zeros((1, 3, 16)), TOL)
        assert not diff.passed
        assert diff.problem == "missing output"
        assert (diff.actual_shape, diff.actual_dtype, diff.total, diff.mismatched) == (None, None, 48, 0)
        assert diff.headroom == math.inf
        assert format_mismatch(diff) == "Missing output\n\nThe failure occurred for item ['Y_c']"
        assert summary_line(diff) == "Y_c: missing output"

    def test_shape_mismatch_compares_no_values(self) -> None:
        diff = compare_output("Y", np.full((5, 3, 16), np.nan), np.zeros((7, 3, 16)), TOL)
        assert not diff.passed
        assert diff.problem == "shape mismatch: expected [7, 3, 16], got [5, 3, 16]"
        assert (diff.expected_shape, diff.actual_shape) == ((7, 3, 16), (5, 3, 16))
        assert (diff.mismatched, diff.nan_count, diff.per_step_max_abs) == (0, 0, None)
        assert format_mismatch(diff) == (
            "Shape mismatch: expected [7, 3, 16], got [5, 3, 16]\n\nThe failure occurred for item ['Y']"
        )
        assert summary_line(diff) == "Y: shape mismatch: expected [7, 3, 16], got [5, 3, 16]"

    def test_non_numeric_dtype(self) -> None:
        actual = np.array([[1.0, "x"]], dtype=object)
        diff = compare_output("Y", actual, np.zeros((1, 2)), TOL)
        assert diff.problem == "dtype: expected a floating-point or integer array, got object"
        assert diff.actual_dtype == "object"
        assert not diff.passed

    def test_an_expected_value_that_is_not_numeric_is_a_usage_error(self) -> None:
        with pytest.raises(ValueError, match=r"^expected value of 'Y' must be a floating-point or integer array"):
            compare_output("Y", np.zeros(2), np.array(["a", "b"]), TOL)

    def test_a_padding_mask_is_not_checked_when_the_shape_is_wrong(self) -> None:
        mask = np.ones((2, 2), dtype=bool)
        diff = compare_output("Y", np.ones((3, 2)), np.zeros((2, 2)), TOL, padding_mask=mask)
        assert (diff.padding_violations, diff.problem) == (0, "shape mismatch: expected [2, 2], got [3, 2]")


class TestPadding:
    @staticmethod
    def padded() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Y of shape [seq=4, dir=1, batch=2, hidden=3]; batch 1 has sequence_lens 2, so steps 2, 3 are padding."""
        expected = np.random.default_rng(0).standard_normal((4, 1, 2, 3))
        expected[2:, :, 1, :] = 0.0
        mask = np.zeros((4, 1, 2, 1), dtype=bool)
        mask[2:, :, 1, :] = True
        return expected.copy(), expected, mask

    def test_zero_padding_passes(self) -> None:
        actual, expected, mask = self.padded()
        diff = compare_output("Y", actual, expected, TOL, padding_mask=mask)
        assert diff.passed
        assert (diff.padding_violations, diff.padding_max_abs, diff.padding_max_abs_index) == (0, 0.0, None)

    def test_nonzero_padding_fails_even_within_tolerance(self) -> None:
        actual, expected, mask = self.padded()
        actual[3, 0, 1, 2] = 3e-8
        actual[2, 0, 1, 0] = -1e-9
        diff = compare_output("Y", actual, expected, TOL, padding_mask=mask)
        assert diff.mismatched == 0
        assert not diff.passed
        assert (diff.padding_violations, diff.padding_max_abs, diff.padding_max_abs_index) == (2, 3e-8, (3, 0, 1, 2))
        assert diff.problem == "2 padded positions are not exactly zero (greatest |value| 3e-08 at index (3, 0, 1, 2))"
        assert format_mismatch(diff) == (
            "Tensor-likes are close, but padded positions are not zero!\n"
            "\n"
            "Mismatched elements: 0 / 24 (0.0%)\n"
            "Greatest absolute difference: 3e-08 at index (3, 0, 1, 2) (up to 1e-05 allowed)\n"
            "Greatest relative difference: inf at index (2, 0, 1, 0) (up to 1.3e-06 allowed)\n"
            "2 padded positions are not exactly zero (greatest |value| 3e-08 at index (3, 0, 1, 2))\n"
            "\n"
            "The failure occurred for item ['Y']"
        )
        assert summary_line(diff) == (
            "Y: 0/24 mismatched, max abs 3e-08 at (3, 0, 1, 2) (allowed 1e-05), headroom 0.003x, "
            "2 padded positions not zero"
        )

    def test_one_violation_is_singular_and_nan_counts(self) -> None:
        actual, expected, mask = self.padded()
        actual[2, 0, 1, 1] = np.nan
        diff = compare_output("Y", actual, expected, TOL, padding_mask=mask)
        assert diff.problem == "1 padded position is not exactly zero (greatest |value| nan at index (2, 0, 1, 1))"
        assert (diff.mismatched, diff.nan_count) == (1, 1)

    def test_negative_zero_is_zero(self) -> None:
        actual, expected, mask = self.padded()
        actual[mask.repeat(3, axis=3)] = -0.0
        assert compare_output("Y", actual, expected, TOL, padding_mask=mask).passed

    def test_a_mask_that_does_not_broadcast_is_a_usage_error(self) -> None:
        actual, expected, _ = self.padded()
        with pytest.raises(ValueError) as info:
            compare_output("Y", actual, expected, TOL, padding_mask=np.zeros((4, 2), dtype=bool))
        assert str(info.value) == "padding_mask of shape [4, 2] does not broadcast to 'Y' of shape [4, 1, 2, 3]"

    def test_a_mask_must_be_boolean(self) -> None:
        actual, expected, _ = self.padded()
        with pytest.raises(ValueError, match=r"^padding_mask for 'Y' must be a boolean array, got int64$"):
            compare_output("Y", actual, expected, TOL, padding_mask=np.zeros((4, 1, 2, 3), dtype=np.int64))


class TestPerStep:
    def test_greatest_error_at_each_step_along_axis_0(self) -> None:
        expected = np.zeros((3, 2, 4))
        actual = expected.copy()
        actual[1, 1, 3] = 0.5
        actual[2, 0, 0] = -2e-6
        diff = compare_output("Y", actual, expected, TOL)
        assert diff.per_step_max_abs == (0.0, 0.5, 2e-6)

    def test_batch_first_layout_uses_axis_1(self) -> None:
        expected = np.zeros((2, 3, 1, 4))  # layout=1: [batch, seq, dir, hidden]
        actual = expected.copy()
        actual[0, 2, 0, 1] = 0.25
        assert compare_output("Y", actual, expected, TOL, time_axis=1).per_step_max_abs == (0.0, 0.0, 0.25)
        assert compare_output("Y", actual, expected, TOL, time_axis=-3).per_step_max_abs == (0.0, 0.0, 0.25)

    def test_no_time_axis(self) -> None:
        assert (
            compare_output("Y_h", np.zeros((1, 2, 3)), np.zeros((1, 2, 3)), TOL, time_axis=None).per_step_max_abs
            is None
        )

    def test_a_step_with_nan_reads_nan(self) -> None:
        actual = np.array([[0.0, 1.0], [np.nan, 0.0]])
        steps = compare_output("Y", actual, np.zeros((2, 2)), TOL).per_step_max_abs
        assert steps is not None
        assert steps[0] == 1.0 and math.isnan(steps[1])

    def test_a_time_axis_out_of_range_is_a_usage_error(self) -> None:
        with pytest.raises(ValueError) as info:
            compare_output("Y_h", np.zeros((1, 2)), np.zeros((1, 2)), TOL, time_axis=2)
        assert str(info.value) == "time_axis 2 is out of range for 'Y_h' of shape [1, 2]"

    def test_empty_steps(self) -> None:
        assert compare_output("Y", np.zeros((2, 0)), np.zeros((2, 0)), TOL).per_step_max_abs == (0.0, 0.0)


class TestIntegerOutputs:
    def test_equal_integers_pass(self) -> None:
        tokens = np.array([[3, 1, 4], [1, 5, 9]], dtype=np.int64)
        diff = compare_output("next_token", tokens.copy(), tokens, default_tolerance(tokens.dtype))
        assert diff.passed
        assert diff.headroom == 0.0

    def test_any_difference_fails_with_infinite_headroom(self) -> None:
        tokens = np.array([[3, 1, 4], [1, 5, 9]], dtype=np.int64)
        actual = tokens.copy()
        actual[1, 1] = 6
        diff = compare_output("next_token", actual, tokens, default_tolerance("int64"))
        assert (diff.passed, diff.mismatched, diff.headroom) == (False, 1, math.inf)
        assert format_mismatch(diff) == (
            "Tensor-likes are not equal!\n"
            "\n"
            "Mismatched elements: 1 / 6 (16.7%)\n"
            "Greatest absolute difference: 1 at index (1, 1)\n"
            "Greatest relative difference: 0.2 at index (1, 1)\n"
            "\n"
            "The failure occurred for item ['next_token']"
        )


class TestCompareOutputs:
    def test_one_diff_per_expected_output_in_expected_order(self) -> None:
        expected = {"Y": np.zeros((2, 1, 1, 3)), "Y_h": np.zeros((1, 1, 3)), "Y_c": np.ones((1, 1, 3))}
        actual = {"Y_c": np.ones((1, 1, 3)), "extra": np.ones(2), "Y": np.zeros((2, 1, 1, 3))}
        diffs = compare_outputs(actual, expected, TOL)
        assert [d.name for d in diffs] == ["Y", "Y_h", "Y_c"]
        assert [d.passed for d in diffs] == [True, False, True]
        assert diffs[1].problem == "missing output"

    def test_per_output_tolerances_time_axes_and_masks(self) -> None:
        expected = {"Y": np.zeros((2, 3)), "Y_h": np.ones(3)}
        actual = {"Y": np.array([[0.0, 0.0, 0.0], [1e-3, 0.0, 0.0]]), "Y_h": np.ones(3) + 1e-3}
        mask = np.array([[False], [True]])
        diffs = compare_outputs(
            actual,
            expected,
            {"Y": Tolerance(1e-2, 0.0), "Y_h": Tolerance(1e-2, 0.0)},
            time_axes={"Y_h": None},
            padding_masks={"Y": mask},
        )
        assert diffs[0].per_step_max_abs == pytest.approx((0.0, 1e-3))
        assert diffs[0].padding_violations == 1 and not diffs[0].passed
        assert diffs[1].per_step_max_abs is None and diffs[1].passed

    def test_a_missing_tolerance_is_a_usage_error(self) -> None:
        with pytest.raises(ValueError) as info:
            compare_outputs({}, {"Y": np.zeros(1), "Y_c": np.zeros(1)}, {"Y": TOL})
        assert str(info.value) == "no tolerance for output 'Y_c'; tolerances are given for ['Y']"


class TestSerialisation:
    def test_round_trip_of_a_failure_with_nonfinite_numbers(self) -> None:
        actual = np.array([[0.5, np.nan], [np.inf, 0.0]])
        mask = np.array([[False, True], [False, True]])
        diff = compare_output("Y", actual, np.zeros((2, 2)), TOL, padding_mask=mask)
        data = diff.to_dict()
        text = json.dumps(data, allow_nan=False)  # strict JSON: no bare Infinity/NaN
        assert data["headroom"] == "inf"
        assert data["max_rel"] == "inf"
        assert data["per_step_max_abs"] == ["nan", "inf"]
        assert data["max_abs_index"] == [1, 0]
        assert (data["padding_max_abs"], data["padding_max_abs_index"]) == ("nan", [0, 1])
        back = OutputDiff.from_dict(json.loads(text))
        assert back.to_dict() == data  # NaN != NaN, so the records are compared in their encoded form
        assert back.per_step_max_abs is not None and math.isnan(back.per_step_max_abs[0])
        assert (back.headroom, back.max_abs_index, back.padding_max_abs_index) == (math.inf, (1, 0), (0, 1))
        assert format_mismatch(back) == format_mismatch(diff)

    @pytest.mark.parametrize(
        "diff",
        [
            compare_output("Y", None, np.zeros(3), TOL),
            compare_output("Y", np.ones(3), np.ones(3), TOL, time_axis=None),
            compare_output("Y", np.array([1.0, np.nan]), np.ones(2), TOL),  # NaN greatest difference
        ],
        ids=["missing", "pass", "nan"],
    )
    def test_round_trip(self, diff: OutputDiff) -> None:
        back = OutputDiff.from_dict(json.loads(json.dumps(diff.to_dict(), allow_nan=False)))
        assert format_mismatch(back) == format_mismatch(diff)
        assert back.to_dict() == diff.to_dict()

    def test_a_record_with_wrong_keys_is_refused(self) -> None:
        data = compare_output("Y", np.ones(1), np.ones(1), TOL).to_dict()
        del data["headroom"]
        data["color"] = "red"
        with pytest.raises(ValueError) as info:
            OutputDiff.from_dict(data)
        assert str(info.value) == "OutputDiff record: missing keys ['headroom'], unknown keys ['color']"


class TestSummaryLine:
    def test_pass(self) -> None:
        expected = np.ones(4)
        diff = compare_output("Y", expected + 2.1e-7, expected, Tolerance(1e-5, 0.0))
        assert summary_line(diff) == "Y: pass, max abs 2.1e-07, headroom 0.021"

    def test_failure(self) -> None:
        actual, expected = three_mismatches()
        diff = compare_output("Y_h", actual, expected, Tolerance(1e-5, 0.0))
        assert summary_line(diff) == "Y_h: 3/12 mismatched, max abs 0.5 at (1, 2) (allowed 1e-05), headroom 50000x"

    def test_format_mismatch_of_a_pass_is_its_summary_line(self) -> None:
        diff = compare_output("Y", np.ones(2), np.ones(2), TOL)
        assert format_mismatch(diff) == summary_line(diff) == "Y: pass, max abs 0, headroom 0"


class TestTorchParity:
    """The shared lines are word for word torch.testing.assert_close's."""

    @staticmethod
    def torch_message(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance, name: str) -> str:
        torch = pytest.importorskip("torch")
        with pytest.raises(AssertionError) as info:
            torch.testing.assert_close(
                {name: torch.from_numpy(actual)},
                {name: torch.from_numpy(expected)},
                atol=tolerance.atol,
                rtol=tolerance.rtol,
                equal_nan=True,
            )
        return str(info.value)

    @staticmethod
    def cases() -> list[tuple[str, np.ndarray, np.ndarray, Tolerance]]:
        rng = np.random.default_rng(7)
        expected = rng.standard_normal((5, 1, 3, 8))
        noisy = expected + rng.standard_normal(expected.shape) * 1e-4
        zeros_expected = np.zeros((2, 3))
        with_inf = np.ones(6)
        with_inf_actual = with_inf.copy()
        with_inf_actual[[1, 4]] = [np.inf, 1.5]
        integers = np.arange(12, dtype=np.int64).reshape(3, 4)
        return [
            ("Y_h", *three_mismatches(), TOL),
            ("Y", noisy, expected, Tolerance(1e-4, 1e-4)),
            ("Y", noisy.astype(np.float32).astype(np.float64), expected, Tolerance(1e-5, 1.3e-6)),
            ("Y_c", zeros_expected + 1e-3, zeros_expected, Tolerance(1e-5, 1e-3)),
            ("Y", with_inf_actual, with_inf, Tolerance(1e-2, 1e-2)),
            ("Y", noisy, expected, EXACT),
            ("tokens", integers[::-1].copy(), integers, EXACT),
        ]

    @pytest.mark.parametrize("index", range(7))
    def test_message_matches_torch(self, index: int) -> None:
        name, actual, expected, tolerance = self.cases()[index]
        ours = format_mismatch(compare_output(name, actual, expected, tolerance))
        theirs = self.torch_message(actual, expected, tolerance, name)
        ours_shared = "\n".join(line for line in ours.splitlines() if not line.startswith("Non-finite values"))
        assert ours_shared == theirs


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=64)
moderate = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)


@st.composite
def array_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    expected = draw(hnp.arrays(np.float64, shape, elements=st.one_of(moderate, finite_or_not)))
    scale = draw(st.sampled_from([0.0, 1e-12, 1e-6, 1e-3, 1.0]))
    noise = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1)))
    with np.errstate(all="ignore"):
        actual = expected + scale * noise
    replace = draw(hnp.arrays(np.bool_, shape))
    others = draw(hnp.arrays(np.float64, shape, elements=finite_or_not))
    return np.where(replace, others, actual), expected


class TestAgreesWithNumpy:
    @settings(max_examples=300, deadline=None)
    @given(
        pair=array_pairs(),
        atol=st.sampled_from([0.0, 1e-10, 1e-5, 1e-2, 1.0]) | st.floats(0, 10),
        rtol=st.sampled_from([0.0, 1e-9, 1e-4, 1e-2, 1.0]) | st.floats(0, 10),
    )
    def test_passed_is_allclose_with_equal_nan(
        self, pair: tuple[np.ndarray, np.ndarray], atol: float, rtol: float
    ) -> None:
        actual, expected = pair
        diff = compare_output("Y", actual, expected, Tolerance(atol, rtol), time_axis=None)
        with np.errstate(all="ignore"):
            close = np.isclose(actual, expected, atol=atol, rtol=rtol, equal_nan=True)
        assert diff.passed == bool(np.all(close))
        assert diff.mismatched == int(np.count_nonzero(~close))
        assert (diff.headroom <= 1) == diff.passed
        assert diff.passed or format_mismatch(diff).startswith("Tensor-likes are not")
