"""Loading a suite: TOML text -> ``[defaults]`` merged under each ``[[case]]`` -> matrix expansion -> cases.

Size is checked before anything grows: nesting deeper than
:data:`~conformance.cases.locate.MAX_TOML_DEPTH` is refused before ``tomllib``
recurses, and a matrix is counted before it is expanded (at most
:data:`MAX_MATRIX_CASES` per ``[[case]]``, :data:`MAX_SUITE_CASES` per file).
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from conformance.cases.build import CASE_KEYS, DEFAULT_KEYS, TABLES, build_case, dotted_key
from conformance.cases.locate import Layout, Where, check_nesting, deepest_bracket, show, toml_error
from conformance.cases.model import Case, CaseError, Suite
from exporters.errors import BadInputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib  # type: ignore[import-not-found]  # not a declared dependency: see docs/cases.md

__all__ = ["MAX_MATRIX_CASES", "MAX_SUITE_CASES", "available_suites", "load_suite", "loads_suite"]

MAX_MATRIX_CASES = 10_000  # cases one [[case]] may expand to (a case builds in ~0.2 ms: 2 s)
MAX_SUITE_CASES = 100_000  # cases one suite file may hold, all [[case]] tables together
_ID = re.compile(r"[^\s\[\]()'\"]+")


def available_suites() -> list[str]:
    """Names of the suites shipped in the ``cases`` package."""
    root = resources.files("cases")
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


MAX_SUITE_BYTES = 16 << 20  # a suite file is a few KB of TOML


def load_suite(name_or_path: str | Path) -> Suite:
    """A packaged suite by name (``"smoke"``) or a suite file by path."""
    text_name = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text_name or "\\" in text_name or text_name.endswith(".toml"):
        path = Path(name_or_path)
        from conformance.files import regular_file

        try:
            regular_file(path, "a suite file", max_bytes=MAX_SUITE_BYTES)
        except BadInputError as exc:
            raise CaseError(str(exc)) from None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CaseError(f"{path}: cannot read suite file: {exc.__class__.__name__}: {exc}") from None
        return loads_suite(text, display=str(path), path=path)
    names = available_suites()
    if text_name not in names:
        close = difflib.get_close_matches(text_name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CaseError(f"unknown suite {text_name!r}{hint}; available: {', '.join(names)}")
    resource = resources.files("cases") / f"{text_name}.toml"
    return loads_suite(
        resource.read_text(encoding="utf-8"), display=f"cases/{text_name}.toml", path=Path(str(resource))
    )


def loads_suite(text: str, *, display: str, path: Path | None = None) -> Suite:
    """Parse and validate a suite from TOML text; ``display`` names the file in error messages."""
    check_nesting(display, text)
    try:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CaseError(toml_error(display, text, exc)) from None
        return _suite(data, Layout(display, text), path if path is not None else Path(display))
    except RecursionError:  # within MAX_TOML_DEPTH this needs a caller already deep in the stack
        depth, line, column = deepest_bracket(text)
        raise CaseError(f"{display}:{line}:{column}: nested {depth} levels deep, too deep to load here") from None


def _suite(data: dict[str, Any], layout: Layout, path: Path) -> Suite:
    top = Where(layout, layout.top())
    top.check_keys(data, ("suite", "description", "defaults", "case"), ())
    name = data.get("suite", Path(layout.display).stem)
    top.expect_type(name, str, ("suite",))
    description = data.get("description", "")
    top.expect_type(description, str, ("description",))
    defaults = data.get("defaults", {})
    top.expect_type(defaults, dict, ("defaults",))
    raw_cases = data.get("case", [])
    if not isinstance(raw_cases, list) or not all(isinstance(c, dict) for c in raw_cases):
        top.fail(("case",), "expected [[case]] tables")
    defaults_where = Where(layout, layout.table("defaults"))
    defaults_where.check_keys(defaults, DEFAULT_KEYS, ("defaults",))
    wheres = [Where(layout, layout.array_item("case", n), defaults_where) for n in range(len(raw_cases))]
    _check_size(raw_cases, wheres)
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for raw, where in zip(raw_cases, wheres, strict=True):
        for case in _expand(name, raw, defaults, where):
            line = where.header_line
            if case.id in seen:
                raise CaseError(
                    f"{layout.display}:{line}: id: duplicate case id {case.id!r} "
                    f"(first defined at line {seen[case.id]})"
                )
            seen[case.id] = line
            cases.append(case)
    return Suite(name, description, tuple(cases), path)


# --- size: counted before anything is expanded ---------------------------------------------------


def _check_size(raw_cases: list[dict[str, Any]], wheres: list[Where]) -> None:
    """Refuse a ``[[case]]`` whose matrix, or a file whose cases, would expand past the limits."""
    total = 0
    for raw, where in zip(raw_cases, wheres, strict=True):
        matrix = raw.get("matrix")
        axes = matrix if isinstance(matrix, dict) else {}  # a matrix that is no table fails in _expand
        count = math.prod(len(v) if isinstance(v, list) else 1 for v in axes.values())
        total += count
        if count > MAX_MATRIX_CASES:
            keys = list(axes)
            shown = ", ".join(keys[:6]) + (f", ... ({len(keys)} keys)" if len(keys) > 6 else "")
            where.fail(
                ("matrix",),
                f"expands to {_count(count)} cases (keys {shown}), over the limit of {MAX_MATRIX_CASES:,}",
            )
        if total > MAX_SUITE_CASES:
            where.fail(
                ("matrix",) if axes else ("id",),
                f"brings the suite to {_count(total)} cases, over the limit of {MAX_SUITE_CASES:,} per file",
            )


def _count(count: int) -> str:
    return f"{count:,}" if count < 10**18 else "more than 10^18"


# --- merging and matrix expansion ----------------------------------------------------------------


def _merge(raw: Mapping[str, Any], defaults: Mapping[str, Any], where: Where) -> dict[str, Any]:
    """Defaults under the case: tables merge key by key, ``expect`` lists concatenate, the rest is replaced."""
    merged: dict[str, Any] = {}
    for key in DEFAULT_KEYS:
        base, own = defaults.get(key), raw.get(key)
        if base is not None:
            where.origins[(key,)] = "defaults"
        if own is not None:
            where.origins[(key,)] = "case"
        if key in (*TABLES, "tolerance_outputs") and (isinstance(base, dict) or isinstance(own, dict)):
            for origin, table in (("defaults", base), ("case", own)):
                if table is None:
                    continue
                where.expect_type(table, dict, (key,))
                for sub in table:
                    where.origins[(key, sub)] = origin
            merged[key] = {**(base or {}), **(own or {})}
        elif key == "expect":
            items = []
            for origin, value in (("defaults", base), ("case", own)):
                if value is None:
                    continue
                if not isinstance(value, list):
                    where.origins[(key,)] = origin
                    where.fail((key,), "expected [[case.expect]] tables")
                where.expect_origins += [(origin, n) for n in range(len(value))]
                items += value
            merged[key] = items
        elif own is not None or base is not None:
            merged[key] = own if own is not None else base
    return merged


def _matrix_axes(matrix: Any, where: Where) -> list[tuple[tuple[str, str], list[Any]]]:
    where.expect_type(matrix, dict, ("matrix",))
    axes = []
    for dotted, values in matrix.items():
        path = dotted_key(dotted, where, ("matrix", dotted))
        if not isinstance(values, list) or not values:
            where.fail(("matrix", dotted), f"expected a non-empty list of values, got {show(values)}")
        for value in values:
            if not _renderable(value):
                where.fail(
                    ("matrix", dotted),
                    f"values must be strings, numbers, booleans or lists of them, got {show(value)}",
                )
        axes.append((path, values))
    return axes


def _renderable(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, (str, int, float, bool)) for v in value)
    return isinstance(value, (str, int, float, bool))


def _render(value: Any) -> str:
    """A matrix value in a case id: ``true``, ``0.5``, ``Relu+Tanh+Tanh``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "+".join(_render(v) for v in value)
    return str(value)


def _expand(suite: str, raw: dict[str, Any], defaults: Mapping[str, Any], where: Where) -> list[Case]:
    where.check_keys(raw, CASE_KEYS, ())
    if "id" not in raw:
        where.fail(("id",), "missing: every [[case]] needs an id")
    case_id = raw["id"]
    where.expect_type(case_id, str, ("id",))
    if not _ID.fullmatch(case_id):
        where.fail(("id",), f"expected a name without spaces, brackets, parentheses or quotes, got {case_id!r}")
    merged = _merge(raw, defaults, where)
    axes = _matrix_axes(raw["matrix"], where) if "matrix" in raw else []
    cases = []
    for combo in itertools.product(*(values for _, values in axes)):
        variant = {k: (dict(v) if isinstance(v, dict) else v) for k, v in merged.items()}
        origins = dict(where.origins)
        for ((table, key), _), value in zip(axes, combo, strict=True):
            variant[table] = {**variant.get(table, {}), key: value}
            where.origins[(table, key)] = "matrix"
            where.origins.setdefault((table,), "matrix")
        expanded_id = f"{case_id}[{'-'.join(_render(v) for v in combo)}]" if axes else case_id
        cases.append(build_case(suite, expanded_id, raw, variant, where))
        where.origins = origins
    return cases
