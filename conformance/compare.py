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
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

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


@dataclass(frozen=True)
class Tolerance:
    """Allowed error: an element passes when ``|a - e| <= atol + rtol * |e|``. Given together, never alone."""

    atol: float
    rtol: float

    def __post_init__(self) -> None:
        for field_name in ("atol", "rtol"):
            value = getattr(self, field_name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{field_name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, field_name, float(value))


EXACT = Tolerance(0.0, 0.0)

DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(atol=1e-10, rtol=1e-9),
    "float32": Tolerance(atol=2e-6, rtol=2e-5),
    "float16": Tolerance(atol=1e-2, rtol=1e-2),
    "bfloat16": Tolerance(atol=5e-2, rtol=5e-2),
}


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


@dataclass(frozen=True)
class OutputDiff:
    """How one output compares with its expected value. Truthy when it passed.

    ``max_abs``/``max_rel`` are the greatest errors over the mismatched elements when there are any (as
    ``assert_close`` reports them), otherwise over all elements; a NaN error is passed over unless every
    candidate is NaN. ``nan_count``/``inf_count`` count NaN/Inf in the actual output where the expected
    value is finite. ``headroom`` is the greatest ``|a - e| / (atol + rtol * |e|)``: 0 when equal, at most 1
    when within tolerance, inf for a NaN/Inf mismatch. When a stage before the values failed (``problem``
    is set and ``padding_violations`` is 0), the values were not compared: counts are 0 and headroom inf.
    """

    name: str
    passed: bool
    problem: str | None
    expected_shape: tuple[int, ...]
    actual_shape: tuple[int, ...] | None
    actual_dtype: str | None
    total: int
    mismatched: int
    max_abs: float
    max_abs_index: tuple[int, ...]
    max_rel: float
    max_rel_index: tuple[int, ...]
    allowed_atol: float
    allowed_rtol: float
    nan_count: int
    inf_count: int
    headroom: float
    per_step_max_abs: tuple[float, ...] | None
    padding_violations: int
    padding_max_abs: float
    padding_max_abs_index: tuple[int, ...] | None

    def __bool__(self) -> bool:
        return self.passed

    @property
    def values_compared(self) -> bool:
        """Whether the comparison reached the values (presence, shape and dtype were fine)."""
        return self.problem is None or self.padding_violations > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: tuples become lists, non-finite floats the strings "inf", "-inf", "nan"."""
        return {f.name: _encode(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputDiff:
        """Inverse of ``to_dict``."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        unknown = [k for k in data if k not in names]
        if missing or unknown:
            raise ValueError(f"OutputDiff record: missing keys {missing}, unknown keys {unknown}")
        values = dict(data)
        for key in _FLOAT_FIELDS:
            values[key] = float(values[key])  # float() reads "inf", "-inf" and "nan" back
        for key in _INDEX_FIELDS:
            values[key] = None if values[key] is None else tuple(int(i) for i in values[key])
        steps = values["per_step_max_abs"]
        values["per_step_max_abs"] = None if steps is None else tuple(float(s) for s in steps)
        return cls(**values)


_FLOAT_FIELDS = ("max_abs", "max_rel", "allowed_atol", "allowed_rtol", "headroom", "padding_max_abs")
_INDEX_FIELDS = ("expected_shape", "actual_shape", "max_abs_index", "max_rel_index", "padding_max_abs_index")


def _encode(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": JSON has no literal for them
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


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
            problem = _padding_problem(padding_violations, padding_max_abs, padding_index)

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


def format_mismatch(diff: OutputDiff) -> str:
    """The message every renderer shows for a failed output, worded as ``torch.testing.assert_close``'s.

    A passing output gets its ``summary_line``."""
    if diff.passed:
        return summary_line(diff)
    item = f"The failure occurred for item {[diff.name]}"
    if not diff.values_compared:
        assert diff.problem is not None
        return f"{_capitalize(diff.problem)}\n\n{item}"
    exact = diff.allowed_atol == 0 and diff.allowed_rtol == 0
    if diff.mismatched:
        header = f"Tensor-likes are not {'equal' if exact else 'close'}!"
    else:
        header = f"Tensor-likes are {'equal' if exact else 'close'}, but padded positions are not zero!"
    share = diff.mismatched / diff.total if diff.total else 0.0
    integral = (diff.actual_dtype or "").startswith(("int", "uint")) and math.isfinite(diff.max_abs)
    max_abs: float | int = int(diff.max_abs) if integral else diff.max_abs  # as torch prints integer differences
    lines = [
        f"Mismatched elements: {diff.mismatched} / {diff.total} ({share:.1%})",
        _difference_line("absolute", max_abs, diff.max_abs_index, None if exact else diff.allowed_atol),
        _difference_line("relative", diff.max_rel, diff.max_rel_index, None if exact else diff.allowed_rtol),
    ]
    if diff.nan_count or diff.inf_count:
        lines.append(f"Non-finite values where expected is finite: {diff.nan_count} NaN, {diff.inf_count} Inf")
    if diff.padding_violations:
        assert diff.problem is not None
        lines.append(_capitalize(diff.problem))
    return header + "\n\n" + "\n".join(lines) + "\n\n" + item


def summary_line(diff: OutputDiff) -> str:
    """One line per output, for tables and logs."""
    if diff.passed:
        return f"{diff.name}: pass, max abs {_short(diff.max_abs)}, headroom {_short(diff.headroom)}"
    if not diff.values_compared:
        return f"{diff.name}: {diff.problem}"
    line = (
        f"{diff.name}: {diff.mismatched}/{diff.total} mismatched, max abs {_short(diff.max_abs)} at "
        f"{diff.max_abs_index} (allowed {diff.allowed_atol}), headroom {_short(diff.headroom)}"
        f"{'x' if math.isfinite(diff.headroom) else ''}"
    )
    if diff.nan_count or diff.inf_count:
        line += f", {diff.nan_count} NaN, {diff.inf_count} Inf"
    if diff.padding_violations:
        line += f", {diff.padding_violations} padded {_positions(diff.padding_violations)} not zero"
    return line


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
    steps = np.moveaxis(abs_err, time_axis, 0).reshape(abs_err.shape[time_axis], -1)
    if steps.shape[1] == 0:
        return tuple(0.0 for _ in range(steps.shape[0]))
    return tuple(float(v) for v in steps.max(axis=1))


def _padding_problem(count: int, greatest: float, index: tuple[int, ...]) -> str:
    verb = "is" if count == 1 else "are"
    return f"{count} padded {_positions(count)} {verb} not exactly zero (greatest |value| {greatest} at index {index})"


def _positions(count: int) -> str:
    return "position" if count == 1 else "positions"


def _difference_line(kind: str, value: float | int, index: tuple[int, ...], allowed: float | None) -> str:
    line = f"Greatest {kind} difference: {value} at index {index}"
    return line if allowed is None else f"{line} (up to {allowed} allowed)"


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _short(value: float) -> str:
    """Two significant digits, but whole numbers up to a million in full (50000, not 5e+04)."""
    if math.isfinite(value) and 1 <= abs(value) < 1e6:
        return f"{value:.{max(2, int(math.log10(abs(value))) + 1)}g}"
    return f"{value:.2g}"
