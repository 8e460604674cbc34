"""Declarative conformance cases: the TOML suite format, its validation, matrix expansion and ``-k`` selection.

A suite file holds ``[defaults]`` and ``[[case]]`` tables (docs/cases.md is the
format reference). Loading validates everything a run would trip over later,
and every problem is one :class:`CaseError` line ``file:line: key: problem``.

Modules: :mod:`~conformance.cases.model` (the frozen data model),
:mod:`~conformance.cases.load` (TOML -> merged, size-checked, expanded cases),
:mod:`~conformance.cases.build` (the schema and the checks that build one case),
:mod:`~conformance.cases.locate` (line numbers and error lines),
:mod:`~conformance.cases.selection` (``-k``).
"""

from __future__ import annotations

from conformance.cases.load import available_suites, load_suite, loads_suite
from conformance.cases.model import (
    Case,
    CaseError,
    Expectation,
    ExportSpec,
    InputSpec,
    OutputTolerances,
    Suite,
    Tolerance,
    WeightsSpec,
)
from conformance.cases.selection import SelectionError, select

__all__ = [
    "Case",
    "CaseError",
    "Expectation",
    "ExportSpec",
    "InputSpec",
    "OutputTolerances",
    "SelectionError",
    "Suite",
    "Tolerance",
    "WeightsSpec",
    "available_suites",
    "load_suite",
    "loads_suite",
    "select",
]
