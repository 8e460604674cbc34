"""Comparison results as data, and the one formatter of their messages: NumPy-free.

``OutputDiff`` is what ``conformance.compare`` computes for one output; ``format_mismatch`` words a failure
as ``torch.testing.assert_close`` does. The library and ``reports`` both read these, and neither needs
NumPy for it, so renderers stay light and never import the numerics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["DEFAULT_TOLERANCES", "EXACT", "OutputDiff", "Tolerance", "format_mismatch", "summary_line"]


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


def padding_problem(count: int, greatest: float, index: tuple[int, ...]) -> str:
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
