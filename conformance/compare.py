"""Compare a runtime's outputs with the float64 reference: data out, one formatter for every renderer.

An output passes when every element satisfies ``|a - e| <= atol + rtol * |e|`` (``e`` the expected value),
the rule of ``numpy.isclose`` and ``torch.testing.assert_close``. A NaN matches a NaN at the same index
(``equal_nan=True``); an infinity matches only the same infinity. The checks run in stages, as in
``assert_close``: presence, then shape, then dtype, then the values in float64. A failed stage stops the
comparison and leaves its reason in ``OutputDiff.problem``.

Integer dtypes default to the exact tolerance (0, 0). Their values are compared in float64 too, so they are
exact up to 2**53.

How the defaults were measured
------------------------------
float32 (atol 2e-6, rtol 2e-5): ``conformance run --suite full`` (855 lanes: every ONNX LSTM feature,
T up to 1000, H up to 256, saturating weights) on ONNX Runtime 1.32 CPU, PyTorch 2.13 CPU and the
ONNX reference evaluator compared 1,275 float32 outputs; ``benchmarks/measure_tolerances.py`` on that
result file reports the worst error at 0.15 of this tolerance (max abs 9.75e-7, a saturating
bidirectional Y_c), a 6.7x margin. The previous 1e-5/1e-4 left a 33x margin, loose enough that float16
rounding of a language model's weights passed; at 2e-6/2e-5 ``conformance selftest`` kills it.
Re-run the script after changing runtimes; GPU providers (TF32 in cuDNN) are not yet measured.
float64, float16 and bfloat16 are set from machine epsilon (float64 rtol 1e-9, about 4.5e6 epsilons for a
float64 runtime summing in another order over long sequences; float16 rtol 1e-2, about 10 epsilons;
bfloat16 5e-2, about 6); atol is what is allowed near zero, where rtol allows nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from conformance.diffs import (
    DEFAULT_TOLERANCES,
    EXACT,
    OutputDiff,
    Tolerance,
    format_mismatch,
    padding_problem,
    summary_line,
)

__all__ = [
    "DEFAULT_TOLERANCES",
    "EXACT",
    "OutputDiff",
    "Tolerance",
    "compare_output",
    "compare_outputs",
    "default_tolerance",
    "format_mismatch",
    "summary_line",
]


def default_tolerance(dtype: str | np.dtype[Any] | type[Any]) -> Tolerance:
    """The default tolerance for outputs of ``dtype`` (a name such as ``"float32"`` or a NumPy dtype)."""
    try:
        resolved: np.dtype[Any] | None = np.dtype(dtype)
    except TypeError:  # "bfloat16" is a name NumPy knows only once ml_dtypes is imported
        resolved = None
    name = str(dtype) if resolved is None else resolved.name
    if name in DEFAULT_TOLERANCES:
        return DEFAULT_TOLERANCES[name]
    if resolved is not None and resolved.kind in ("b", "i", "u"):
        return EXACT
    known = ", ".join(sorted(DEFAULT_TOLERANCES))
    raise ValueError(f"no default tolerance for dtype {name!r}; known: {known} and the integer dtypes")


def compare_output(
    name: str,
    actual: npt.ArrayLike | None,
    expected: npt.ArrayLike,
    tolerance: Tolerance,
    *,
    time_axis: int | None = 0,
    padding_mask: npt.ArrayLike | None = None,
) -> OutputDiff:
    """Compare one output. ``time_axis`` (None: none) gives the per-step errors. ``padding_mask`` is True
    where the value must be exactly 0.0 (past ``sequence_lens``); a nonzero value there fails the output
    even within tolerance."""
    exp = np.asarray(expected)
    if not _is_numeric(exp.dtype):
        raise ValueError(f"expected value of {name!r} must be a floating-point or integer array, got {exp.dtype}")
    shape = tuple(int(n) for n in exp.shape)
    if time_axis is not None and not -exp.ndim <= time_axis < exp.ndim:
        raise ValueError(f"time_axis {time_axis} is out of range for {name!r} of shape {list(shape)}")
    mask = None if padding_mask is None else _broadcast_mask(name, padding_mask, shape)

    def unchecked(problem: str, actual_shape: tuple[int, ...] | None, actual_dtype: str | None) -> OutputDiff:
        return OutputDiff(
            name=name,
            passed=False,
            problem=problem,
            expected_shape=shape,
            actual_shape=actual_shape,
            actual_dtype=actual_dtype,
            total=int(exp.size),
            mismatched=0,
            max_abs=0.0,
            max_abs_index=(),
            max_rel=0.0,
            max_rel_index=(),
            allowed_atol=tolerance.atol,
            allowed_rtol=tolerance.rtol,
            nan_count=0,
            inf_count=0,
            headroom=math.inf,
            per_step_max_abs=None,
            padding_violations=0,
            padding_max_abs=0.0,
            padding_max_abs_index=None,
        )

    if actual is None:
        return unchecked("missing output", None, None)
    act = np.asarray(actual)
    actual_shape = tuple(int(n) for n in act.shape)
    if actual_shape != shape:
        return unchecked(
            f"shape mismatch: expected {list(shape)}, got {list(actual_shape)}", actual_shape, act.dtype.name
        )
    if not _is_numeric(act.dtype):
        dtype = act.dtype.name
        return unchecked(f"dtype: expected a floating-point or integer array, got {dtype}", actual_shape, dtype)

    a = act.astype(np.float64)
    e = exp.astype(np.float64)
    finite_expected = np.isfinite(e)
    with np.errstate(all="ignore"):
        equal = (a == e) | (np.isnan(a) & np.isnan(e))
        abs_err = np.where(equal, 0.0, np.abs(a - e))
        allowed = tolerance.atol + tolerance.rtol * np.abs(e)
        mismatch = ~(equal | ((abs_err <= allowed) & finite_expected))
        rel_err = np.where(equal, 0.0, abs_err / np.abs(e))
        ratio = np.where(equal, 0.0, abs_err / allowed)
    # A mismatch is over the limit even where the division rounds to 1, and NaN/Inf ones are off the scale.
    ratio = np.where(mismatch, np.maximum(np.where(np.isnan(ratio), np.inf, ratio), np.nextafter(1.0, 2.0)), ratio)

    mismatched = int(np.count_nonzero(mismatch))
    scope = mismatch if mismatched else np.ones(shape, dtype=bool)
    max_abs, max_abs_index = _greatest(abs_err, scope)
    max_rel, max_rel_index = _greatest(rel_err, scope)

    problem: str | None = None
    padding_violations, padding_max_abs, padding_index = 0, 0.0, None
    if mask is not None:
        violating = mask & (a != 0)
        padding_violations = int(np.count_nonzero(violating))
        if padding_violations:
            padding_max_abs, padding_index = _greatest(np.abs(a), violating)
            problem = padding_problem(padding_violations, padding_max_abs, padding_index)

    return OutputDiff(
        name=name,
        passed=mismatched == 0 and padding_violations == 0,
        problem=problem,
        expected_shape=shape,
        actual_shape=actual_shape,
        actual_dtype=act.dtype.name,
        total=int(exp.size),
        mismatched=mismatched,
        max_abs=max_abs,
        max_abs_index=max_abs_index,
        max_rel=max_rel,
        max_rel_index=max_rel_index,
        allowed_atol=tolerance.atol,
        allowed_rtol=tolerance.rtol,
        nan_count=int(np.count_nonzero(np.isnan(a) & finite_expected)),
        inf_count=int(np.count_nonzero(np.isinf(a) & finite_expected)),
        headroom=float(ratio.max()) if ratio.size else 0.0,
        per_step_max_abs=None if time_axis is None else _per_step(abs_err, time_axis),
        padding_violations=padding_violations,
        padding_max_abs=padding_max_abs,
        padding_max_abs_index=padding_index,
    )


def compare_outputs(
    actual: Mapping[str, npt.ArrayLike | None],
    expected: Mapping[str, npt.ArrayLike],
    tolerances: Mapping[str, Tolerance] | Tolerance,
    *,
    time_axes: Mapping[str, int | None] | None = None,
    padding_masks: Mapping[str, npt.ArrayLike] | None = None,
) -> list[OutputDiff]:
    """Compare every expected output, in ``expected``'s order; outputs only ``actual`` has are ignored.

    An output missing from ``time_axes`` uses time axis 0 (name it with None where it has none); one
    missing from ``padding_masks`` has no padding to check."""
    diffs = []
    for name, value in expected.items():
        if isinstance(tolerances, Tolerance):
            tolerance = tolerances
        elif name in tolerances:
            tolerance = tolerances[name]
        else:
            raise ValueError(f"no tolerance for output {name!r}; tolerances are given for {sorted(tolerances)}")
        diffs.append(
            compare_output(
                name,
                actual.get(name),
                value,
                tolerance,
                time_axis=0 if time_axes is None else time_axes.get(name, 0),
                padding_mask=None if padding_masks is None else padding_masks.get(name),
            )
        )
    return diffs


def _is_numeric(dtype: np.dtype[Any]) -> bool:
    return dtype.kind in ("f", "i", "u") or dtype.name in DEFAULT_TOLERANCES  # bfloat16 (ml_dtypes) is kind "V"


def _broadcast_mask(name: str, padding_mask: npt.ArrayLike, shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    mask = np.asarray(padding_mask)
    if mask.dtype != np.bool_:
        raise ValueError(f"padding_mask for {name!r} must be a boolean array, got {mask.dtype}")
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(
            f"padding_mask of shape {list(mask.shape)} does not broadcast to {name!r} of shape {list(shape)}"
        ) from None


def _greatest(values: npt.NDArray[np.float64], where: npt.NDArray[np.bool_]) -> tuple[float, tuple[int, ...]]:
    """Greatest of ``values`` where ``where`` holds, and its index; NaN only when every candidate is NaN."""
    if not where.any():
        return 0.0, ()
    candidates = where & ~np.isnan(values)
    pool = candidates if candidates.any() else where  # all NaN: argmax stops at the first NaN
    flat = int(np.argmax(np.where(pool, values, -1.0)))  # the values are >= 0
    index = tuple(int(i) for i in np.unravel_index(flat, values.shape))
    return float(values.flat[flat]), index


def _per_step(abs_err: npt.NDArray[np.float64], time_axis: int) -> tuple[float, ...]:
    """Greatest absolute error at each step along ``time_axis`` (NaN where that step has a NaN error)."""
    count = abs_err.shape[time_axis]
    if abs_err.size == 0:  # no step, or steps of nothing (a zero-size batch or hidden axis)
        return tuple(0.0 for _ in range(count))
    steps = np.moveaxis(abs_err, time_axis, 0).reshape(count, -1)
    return tuple(float(v) for v in steps.max(axis=1))
