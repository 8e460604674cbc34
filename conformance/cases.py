"""Declarative conformance cases: the TOML suite format, its validation, matrix expansion and ``-k`` selection.

A suite file holds ``[defaults]`` and ``[[case]]`` tables (docs/cases.md is the
format reference). Loading validates everything a run would trip over later,
and every problem is one :class:`CaseError` line ``file:line: key: problem``.
"""

from __future__ import annotations

import difflib
import fnmatch
import itertools
import math
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from conformance.compare import Tolerance
from exporters.registry import exporter_ids
from reference.config import LMConfig, LSTMConfig
from reference.weights import RECIPES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib  # type: ignore[import-not-found]  # not a declared dependency: see docs/cases.md

__all__ = [
    "KNOWN_RUNTIMES",
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

KNOWN_RUNTIMES = ("reference", "ort-cpu", "ort-cpu-noopt", "ort-cuda", "torch-cpu", "torch-cuda", "onnx-reference")


def _runtime_ids() -> list[str]:
    """Built-in runtime ids plus plug-ins named in the environment (read without importing them)."""
    from conformance.runtimes import extra_runtimes

    return [*KNOWN_RUNTIMES, *extra_runtimes()]


TRAINED = "trained"  # the LM weights fitted to the shipped corpus (cases/data/lm-trained.npz)
SEQUENCE_LENS = ("full", "mixed", "with-zero")
TOKENS = ("random", "corpus")
STATUSES = ("fail", "error")
LSTM_OUTPUTS, LM_OUTPUTS = ("Y", "Y_h", "Y_c"), ("log_probs",)


class CaseError(ValueError):
    """A suite file that cannot be used; ``str()`` is one line: ``file:line: key: problem``."""


class SelectionError(ValueError):
    """A ``-k`` expression that does not parse."""


# --- data model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsSpec:
    """A weights recipe from ``reference.weights.RECIPES``, or ``"trained"`` (language models only)."""

    recipe: str = "torch-default"
    seed: int = 0


@dataclass(frozen=True)
class InputSpec:
    """How the runtime inputs are generated (shapes in PyTorch's ``[T, B, ...]`` terms)."""

    seq_len: int
    batch: int
    seed: int = 0
    low: float = -1.0
    high: float = 1.0
    initial_states: bool = False
    sequence_lens: str | tuple[int, ...] = "full"  # "full" | "mixed" | "with-zero" | one length per batch entry
    tokens: str = "random"  # language models: "random" or "corpus"


@dataclass(frozen=True)
class ExportSpec:
    """How to export; ``seq_len``/``batch`` of the example input default to the inputs' own."""

    seq_len: int | None = None
    batch: int | None = None
    opset: int | None = None
    layout: int = 0
    dynamic: bool = True

    def option_values(self, inputs: InputSpec) -> dict[str, Any]:
        """Keyword arguments for ``exporters.base.ExportOptions``."""
        return {
            "opset": self.opset,
            "dynamic": self.dynamic,
            "example_seq_len": inputs.seq_len if self.seq_len is None else self.seq_len,
            "example_batch": inputs.batch if self.batch is None else self.batch,
            "initial_states": inputs.initial_states,
            "sequence_lens": inputs.sequence_lens != "full",
            "layout": self.layout,
        }


@dataclass(frozen=True)
class Expectation:
    """An expected divergence: lanes it matches (globs) may fail or error with this reason."""

    reason: str
    runtime: str = "*"
    exporter: str = "*"
    output: str = "*"
    status: str = "fail"  # "fail" or "error"
    reference: str | None = None  # upstream issue URL or document

    def matches(self, exporter_id: str, runtime_id: str, output: str | None = None) -> bool:
        """Whether this expectation applies to the lane (and to ``output``, when given)."""
        return (
            fnmatch.fnmatchcase(exporter_id, self.exporter)
            and fnmatch.fnmatchcase(runtime_id, self.runtime)
            and (output is None or fnmatch.fnmatchcase(output, self.output))
        )

    def covers(self, outputs: Iterable[str]) -> bool:
        """Whether every output in ``outputs`` (the failing ones) is one this expectation names."""
        return all(fnmatch.fnmatchcase(name, self.output) for name in outputs)


class OutputTolerances(Mapping[str, Tolerance]):
    """A read-only, hashable, picklable ``{output name: Tolerance}``."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Tolerance] | None = None) -> None:
        self._items = dict(items or {})

    def __getitem__(self, key: str) -> Tolerance:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"OutputTolerances({self._items!r})"


@dataclass(frozen=True)
class Case:
    """One model + weights + inputs + export, run on each exporter x runtime lane."""

    id: str
    suite: str
    model: LSTMConfig | LMConfig
    weights: WeightsSpec
    inputs: InputSpec
    export: ExportSpec
    exporters: tuple[str, ...]
    runtimes: tuple[str, ...]
    tolerance: Tolerance | None = None
    output_tolerances: Mapping[str, Tolerance] = field(default_factory=OutputTolerances)
    expect: tuple[Expectation, ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""
    source: str = ""  # "cases/full.toml:42", the line of the case's [[case]] header

    @property
    def lstm(self) -> LSTMConfig:
        return self.model.lstm if isinstance(self.model, LMConfig) else self.model

    @property
    def outputs(self) -> tuple[str, ...]:
        return LM_OUTPUTS if isinstance(self.model, LMConfig) else LSTM_OUTPUTS

    def tolerance_for(self, output: str) -> Tolerance | None:
        """The output's own tolerance, else the case's, else ``None`` (the dtype default applies)."""
        return self.output_tolerances.get(output, self.tolerance)

    def option_values(self) -> dict[str, Any]:
        return self.export.option_values(self.inputs)

    def expectation(self, exporter_id: str, runtime_id: str, output: str | None = None) -> Expectation | None:
        """The first expected divergence that matches the lane, or ``None``."""
        return next((e for e in self.expect if e.matches(exporter_id, runtime_id, output)), None)

    def features(self) -> tuple[str, ...]:
        """Short labels for reports and ``-k``: what this case exercises beyond a plain LSTM."""
        lstm, inputs, export = self.lstm, self.inputs, self.export
        out = ["lm", f"V={self.model.vocab_size}"] if isinstance(self.model, LMConfig) else []
        if lstm.direction != "forward":
            out.append(lstm.direction)
        if lstm.num_layers > 1:
            out.append(f"{lstm.num_layers} layers")
        if lstm.batch_first:
            out.append("batch_first")
        if lstm.peepholes:
            out.append("peepholes")
        if lstm.activations is not None:
            out.append("activations:" + ",".join(lstm.activations))
        if lstm.activation_alpha is not None or lstm.activation_beta is not None:
            out.append("alpha/beta")
        if lstm.clip is not None:
            out.append("clip")
        if lstm.input_forget:
            out.append("input_forget")
        if self.weights.recipe != "torch-default":
            out.append(f"weights:{self.weights.recipe}")
        if inputs.initial_states:
            out.append("initial_states")
        if inputs.sequence_lens != "full":
            pattern = inputs.sequence_lens if isinstance(inputs.sequence_lens, str) else "explicit"
            out.append(f"seq_lens:{pattern}")
        if inputs.tokens != "random":
            out.append(f"tokens:{inputs.tokens}")
        if export.layout:
            out.append(f"layout={export.layout}")
        if not export.dynamic:
            out.append("static")
        if export.opset is not None:
            out.append(f"opset={export.opset}")
        out += [f"T={inputs.seq_len}", f"B={inputs.batch}", f"H={lstm.hidden_size}"]
        if export.seq_len not in (None, inputs.seq_len):
            out.append(f"exported T={export.seq_len}")
        if export.batch not in (None, inputs.batch):
            out.append(f"exported B={export.batch}")
        return tuple(out)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    cases: tuple[Case, ...]
    path: Path


# --- loading -----------------------------------------------------------------------------------


def available_suites() -> list[str]:
    """Names of the suites shipped in the ``cases`` package."""
    root = resources.files("cases")
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A packaged suite by name (``"smoke"``) or a suite file by path."""
    text_name = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text_name or "\\" in text_name or text_name.endswith(".toml"):
        path = Path(name_or_path)
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
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CaseError(_toml_error(display, text, exc)) from None
    layout = _Layout(display, text)
    top = _Where(layout, layout.top())
    top.check_keys(data, ("suite", "description", "defaults", "case"), ())
    name = data.get("suite", Path(display).stem)
    top.expect_type(name, str, ("suite",))
    description = data.get("description", "")
    top.expect_type(description, str, ("description",))
    defaults = data.get("defaults", {})
    top.expect_type(defaults, dict, ("defaults",))
    raw_cases = data.get("case", [])
    if not isinstance(raw_cases, list) or not all(isinstance(c, dict) for c in raw_cases):
        top.fail(("case",), "expected [[case]] tables")
    defaults_where = _Where(layout, layout.table("defaults"))
    defaults_where.check_keys(defaults, DEFAULT_KEYS, ("defaults",))
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_cases):
        where = _Where(layout, layout.array_item("case", index), defaults_where)
        for case in _expand(name, raw, defaults, where):
            line = where.header_line
            if case.id in seen:
                raise CaseError(
                    f"{display}:{line}: id: duplicate case id {case.id!r} (first defined at line {seen[case.id]})"
                )
            seen[case.id] = line
            cases.append(case)
    return Suite(name, description, tuple(cases), path if path is not None else Path(display))


def _toml_error(display: str, text: str, exc: Exception) -> str:
    message = str(exc)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        return f"{display}:{found[1]}:{found[2]}: invalid TOML: {message[: found.start()]}"
    found = re.search(r"\s*\(at end of document\)$", message)
    lines = text.splitlines() or [""]
    if found:
        message = message[: found.start()]
    return f"{display}:{len(lines)}:{len(lines[-1]) + 1}: invalid TOML: {message}"


# --- where keys are: line numbers from the raw text (tomllib gives none) ------------------------

_HEADER = re.compile(r"^\s*\[(\[?)\s*([^\[\]#]+?)\s*\]\]?\s*(?:#.*)?$")


class _Layout:
    """Table headers of a TOML file and a search for ``key =`` lines within a block."""

    def __init__(self, display: str, text: str) -> None:
        self.display = display
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str]] = []  # (0-based line, dotted name without quotes/spaces)
        for number, line in enumerate(self.lines):
            match = _HEADER.match(line)
            if match:
                self.headers.append((number, re.sub(r"[\s\"']", "", match[2])))

    def _block(self, start: int, name: str) -> tuple[int, int]:
        """From the header at ``start`` to the next header that is not a sub-table of ``name``."""
        end = next((n for n, h in self.headers if n > start and not h.startswith(name + ".")), len(self.lines))
        return start, end

    def top(self) -> tuple[int, int]:
        return 0, self.headers[0][0] if self.headers else len(self.lines)

    def table(self, name: str, within: tuple[int, int] | None = None) -> tuple[int, int] | None:
        lo, hi = within or (0, len(self.lines))
        start = next((n for n, h in self.headers if lo <= n < hi and h == name), None)
        return None if start is None else self._block(start, name)

    def array_item(self, name: str, index: int, within: tuple[int, int] | None = None) -> tuple[int, int] | None:
        lo, hi = within or (0, len(self.lines))
        starts = [n for n, h in self.headers if lo <= n < hi and h == name]
        return self._block(starts[index], name) if index < len(starts) else None

    def find(self, block: tuple[int, int], path: Sequence[str], *, literal: bool = False) -> int:
        """0-based line of ``path`` in ``block``: each part at or after the previous one's line."""
        lo, hi = block
        found = lo
        parts = [".".join(path)] if literal else list(path)
        for part in parts:
            pattern = re.compile(
                r"(?:^|[\s{,.\[\"'])" + re.escape(part) + r"[\"']?\s*(?:=|\]|\.[\w-]+\s*=)"
                if not literal
                else r"[\"']" + re.escape(part) + r"[\"']\s*="
            )
            hit = next(
                (
                    n
                    for n in range(found, hi)
                    if not self.lines[n].lstrip().startswith("#") and pattern.search(self.lines[n])
                ),
                None,
            )
            if hit is None:
                break
            found = hit
        return found


class _Where:
    """Locates keys of one case (or the file's top level) and raises :class:`CaseError` lines."""

    def __init__(self, layout: _Layout, block: tuple[int, int] | None, defaults: _Where | None = None) -> None:
        self.layout = layout
        self.block = block or (0, len(layout.lines))
        self.defaults = defaults
        self.origins: dict[tuple[str, ...], str] = {}  # key path -> "case" | "defaults" | "matrix"
        self.expect_origins: list[tuple[str, int]] = []  # per expectation: (origin, index in that table)

    @property
    def header_line(self) -> int:
        return self.block[0] + 1

    def line(self, path: Sequence[str]) -> int:
        origin = self.origins.get(tuple(path[:2])) or self.origins.get(tuple(path[:1])) or "case"
        if path and path[0] == "expect" and len(path) > 1 and path[1].isdigit():
            return self._expect_line(int(path[1]), path[2:])
        if origin == "matrix":
            matrix = self.layout.find(self.block, ["matrix"])
            return self.layout.find((matrix, self.block[1]), path[:2], literal=True) + 1
        if origin == "defaults" and self.defaults is not None:
            return self.defaults.line(path)
        return self.layout.find(self.block, path) + 1

    def _expect_line(self, index: int, rest: Sequence[str]) -> int:
        origin, own = self.expect_origins[index] if index < len(self.expect_origins) else ("case", index)
        where = self.defaults if origin == "defaults" and self.defaults is not None else self
        prefix = "defaults" if where is not self else "case"
        item = self.layout.array_item(f"{prefix}.expect", own, where.block)
        if item is None:  # written inline: expect = [{...}, ...]
            start = self.layout.find(where.block, ["expect"])
            return self.layout.find((start, where.block[1]), rest) + 1
        return self.layout.find(item, rest) + 1

    def fail(self, path: Sequence[str], problem: str) -> NoReturn:
        key = ".".join(p for p in path if not p.isdigit())
        key = key if key.isprintable() and key else repr(key)  # one line, whatever the file's keys hold
        raise CaseError(f"{self.layout.display}:{self.line(path)}: {key}: {problem}")

    def check_keys(self, table: Mapping[str, Any], valid: Sequence[str], path: tuple[str, ...]) -> None:
        for key in table:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; valid keys: {', '.join(valid)}"
                self.fail((*path, key), f"unknown key{hint}")

    def expect_type(self, value: Any, kind: type, path: Sequence[str]) -> None:
        if not _is(value, kind):
            self.fail(path, f"expected {_KIND_NAMES[kind]}, got {_show(value)}")


_KIND_NAMES: dict[type, str] = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_KIND_NAMES.update({dict: "a table", list: "a list"})


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


# --- schema, merging and matrix expansion -------------------------------------------------------

TABLES = ("model", "weights", "inputs", "export")
DEFAULT_KEYS = (*TABLES, "exporters", "runtimes", "tolerance", "tolerance_outputs", "tags", "expect")
CASE_KEYS = ("id", "description", *DEFAULT_KEYS, "matrix")
LSTM_FIELDS: dict[str, type] = {
    "input_size": int, "hidden_size": int, "num_layers": int, "direction": str, "batch_first": bool,
    "peepholes": bool, "activations": list, "activation_alpha": list, "activation_beta": list,
    "clip": float, "input_forget": int,
}  # fmt: skip
TABLE_FIELDS: dict[str, dict[str, type]] = {
    "model": {"kind": str, "vocab_size": int, **LSTM_FIELDS},
    "weights": {"recipe": str, "seed": int},
    "inputs": {
        "seq_len": int, "batch": int, "seed": int, "low": float, "high": float, "initial_states": bool,
        "sequence_lens": object, "tokens": str,
    },
    "export": {"seq_len": int, "batch": int, "opset": int, "layout": int, "dynamic": bool},
}  # fmt: skip
EXPECT_KEYS = ("reason", "runtime", "exporter", "output", "status", "reference", "when")
_ID = re.compile(r"[^\s\[\]()'\"]+")


def _merge(raw: Mapping[str, Any], defaults: Mapping[str, Any], where: _Where) -> dict[str, Any]:
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


def _matrix_paths(matrix: Any, where: _Where) -> list[tuple[tuple[str, str], list[Any]]]:
    where.expect_type(matrix, dict, ("matrix",))
    axes = []
    for dotted, values in matrix.items():
        path = _dotted(dotted, where, ("matrix", dotted))
        if not isinstance(values, list) or not values:
            where.fail(("matrix", dotted), f"expected a non-empty list of values, got {_show(values)}")
        for value in values:
            if not _renderable(value):
                where.fail(
                    ("matrix", dotted),
                    f"values must be strings, numbers, booleans or lists of them, got {_show(value)}",
                )
        axes.append((path, values))
    return axes


def _dotted(dotted: str, where: _Where, path: tuple[str, ...]) -> tuple[str, str]:
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in TABLES:
        where.fail(path, "expected a key of model, weights, inputs or export, such as 'model.direction'")
    if parts[1] not in TABLE_FIELDS[parts[0]]:
        valid = [f"{parts[0]}.{k}" for k in TABLE_FIELDS[parts[0]]]
        close = difflib.get_close_matches(dotted, valid, n=1)
        where.fail(path, "unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return parts[0], parts[1]


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


def _expand(suite: str, raw: dict[str, Any], defaults: Mapping[str, Any], where: _Where) -> list[Case]:
    where.check_keys(raw, CASE_KEYS, ())
    if "id" not in raw:
        where.fail(("id",), "missing: every [[case]] needs an id")
    case_id = raw["id"]
    where.expect_type(case_id, str, ("id",))
    if not _ID.fullmatch(case_id):
        where.fail(("id",), f"expected a name without spaces, brackets, parentheses or quotes, got {case_id!r}")
    merged = _merge(raw, defaults, where)
    axes = _matrix_paths(raw["matrix"], where) if "matrix" in raw else []
    cases = []
    for combo in itertools.product(*(values for _, values in axes)):
        variant = {k: (dict(v) if isinstance(v, dict) else v) for k, v in merged.items()}
        origins = dict(where.origins)
        for ((table, key), _), value in zip(axes, combo, strict=True):
            variant[table] = {**variant.get(table, {}), key: value}
            where.origins[(table, key)] = "matrix"
            where.origins.setdefault((table,), "matrix")
        expanded_id = f"{case_id}[{'-'.join(_render(v) for v in combo)}]" if axes else case_id
        cases.append(_build(suite, expanded_id, raw, variant, where))
        where.origins = origins
    return cases


# --- building one case ------------------------------------------------------------------------


def _table(where: _Where, merged: Mapping[str, Any], name: str) -> dict[str, Any]:
    table = merged.get(name, {})
    where.expect_type(table, dict, (name,))
    fields = TABLE_FIELDS[name]
    where.check_keys(table, tuple(fields), (name,))
    for key, value in table.items():
        kind = fields[key]
        if kind in (int, float, bool, str):
            where.expect_type(value, kind, (name, key))
    return dict(table)


def _required(where: _Where, table: Mapping[str, Any], name: str, key: str) -> Any:
    if key not in table:
        where.fail((name, key), "missing (required)")
    return table[key]


def _build(suite: str, case_id: str, raw: Mapping[str, Any], merged: Mapping[str, Any], where: _Where) -> Case:
    model = _model(where, merged)
    outputs = LM_OUTPUTS if isinstance(model, LMConfig) else LSTM_OUTPUTS
    inputs = _inputs(where, _table(where, merged, "inputs"), model)
    description = raw.get("description", "")
    where.expect_type(description, str, ("description",))
    return Case(
        id=case_id,
        suite=suite,
        model=model,
        weights=_weights(where, _table(where, merged, "weights"), model),
        inputs=inputs,
        export=_export(where, _table(where, merged, "export"), model),
        exporters=_ids(where, merged, "exporters", exporter_ids(mutants=False), _known_exporter),
        runtimes=_ids(where, merged, "runtimes", _runtime_ids(), _known_runtime),
        tolerance=_tolerance(where, merged["tolerance"], ("tolerance",)) if "tolerance" in merged else None,
        output_tolerances=_output_tolerances(where, merged.get("tolerance_outputs", {}), outputs),
        expect=tuple(
            e for n, item in enumerate(merged.get("expect", [])) if (e := _expectation(where, item, n, outputs, merged))
        ),
        tags=tuple(_strings(where, merged.get("tags", []), ("tags",))),
        description=description,
        source=f"{where.layout.display}:{where.header_line}",
    )


def _model(where: _Where, merged: Mapping[str, Any]) -> LSTMConfig | LMConfig:
    if "model" not in merged:
        where.fail(("model",), "missing: every case needs a model (in the case or in [defaults])")
    table = _table(where, merged, "model")
    kind = table.pop("kind", "lstm")
    if kind not in ("lstm", "lm"):
        where.fail(("model", "kind"), f"expected 'lstm' or 'lm', got {kind!r}")
    vocab_size = table.pop("vocab_size", None)
    if kind == "lstm" and vocab_size is not None:
        where.fail(("model", "vocab_size"), "only language models (kind = 'lm') have a vocabulary")
    for key in ("input_size", "hidden_size"):
        _required(where, table, "model", key)
    for key in ("activations", "activation_alpha", "activation_beta"):
        if key in table:
            kind_of = str if key == "activations" else float
            table[key] = tuple(_typed_list(where, table[key], ("model", key), kind_of))
    if "clip" in table:
        table["clip"] = float(table["clip"])
    if kind == "lm" and vocab_size is None:
        where.fail(("model", "vocab_size"), "missing (required)")
    try:
        lstm = LSTMConfig(**table)
        return LMConfig(vocab_size=vocab_size, lstm=lstm) if kind == "lm" else lstm
    except ValueError as exc:
        message = str(exc)
        key, sep, problem = message.partition(": ")
        if sep and (key in LSTM_FIELDS or key == "vocab_size"):
            where.fail(("model", key), problem)
        if message.startswith("unknown activation"):
            where.fail(("model", "activations"), message)
        where.fail(("model",), message)


def _typed_list(where: _Where, value: Any, path: tuple[str, ...], kind: type) -> list[Any]:
    if not isinstance(value, list) or not all(_is(v, kind) for v in value):
        where.fail(path, f"expected a list of {'strings' if kind is str else 'numbers'}, got {_show(value)}")
    return [float(v) if kind is float else v for v in value]


def _strings(where: _Where, value: Any, path: tuple[str, ...]) -> list[str]:
    return _typed_list(where, value, path, str)


def _nonnegative(where: _Where, table: Mapping[str, Any], name: str, key: str, minimum: int = 0) -> None:
    if key in table and table[key] < minimum:
        where.fail((name, key), f"expected an integer >= {minimum}, got {table[key]}")


def _weights(where: _Where, table: dict[str, Any], model: LSTMConfig | LMConfig) -> WeightsSpec:
    recipe = table.get("recipe", "torch-default")
    valid = (*RECIPES, TRAINED)
    if recipe not in valid:
        close = difflib.get_close_matches(recipe, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        where.fail(("weights", "recipe"), f"unknown recipe {recipe!r}{hint}; expected one of: {', '.join(valid)}")
    if recipe == TRAINED and not isinstance(model, LMConfig):
        where.fail(("weights", "recipe"), "'trained' weights exist for language models only (model.kind = 'lm')")
    _nonnegative(where, table, "weights", "seed")
    return WeightsSpec(**table)


def _inputs(where: _Where, table: dict[str, Any], model: LSTMConfig | LMConfig) -> InputSpec:
    for key in ("seq_len", "batch"):
        _required(where, table, "inputs", key)
        _nonnegative(where, table, "inputs", key, minimum=1)
    _nonnegative(where, table, "inputs", "seed")
    t, b = table["seq_len"], table["batch"]
    if table.get("low", -1.0) > table.get("high", 1.0):
        where.fail(
            ("inputs", "high"),
            f"expected high >= low, got low = {table.get('low', -1.0)}, high = {table.get('high', 1.0)}",
        )
    lens = table.get("sequence_lens", "full")
    if isinstance(lens, list):
        lens = tuple(_typed_list(where, lens, ("inputs", "sequence_lens"), int))
        if len(lens) != b:
            where.fail(("inputs", "sequence_lens"), f"expected {b} lengths (one per batch entry), got {len(lens)}")
        bad = [n for n in lens if not 0 <= n <= t]
        if bad:
            where.fail(("inputs", "sequence_lens"), f"length {bad[0]} out of range [0, {t}]")
        table["sequence_lens"] = lens
    elif lens not in SEQUENCE_LENS:
        where.fail(
            ("inputs", "sequence_lens"),
            f"expected one of {', '.join(repr(s) for s in SEQUENCE_LENS)} or a list of lengths, got {_show(lens)}",
        )
    elif lens == "with-zero" and b < 2:
        where.fail(("inputs", "sequence_lens"), "'with-zero' needs batch >= 2 (one sequence full, one empty)")
    tokens = table.get("tokens", "random")
    if tokens not in TOKENS:
        where.fail(("inputs", "tokens"), f"expected 'random' or 'corpus', got {tokens!r}")
    if isinstance(model, LMConfig):
        if table.get("initial_states", False):
            where.fail(("inputs", "initial_states"), "language models take tokens only")
        if lens != "full":
            where.fail(("inputs", "sequence_lens"), "language models take tokens only")
        if tokens == "corpus":
            from conformance.corpus import VOCAB

            if model.vocab_size < len(VOCAB):
                where.fail(
                    ("inputs", "tokens"),
                    f"'corpus' tokens need model.vocab_size >= {len(VOCAB)} (the corpus alphabet), "
                    f"got {model.vocab_size}",
                )
    elif tokens != "random":
        where.fail(("inputs", "tokens"), "only language models (model.kind = 'lm') take tokens")
    for key in ("low", "high"):
        if key in table:
            table[key] = float(table[key])
    return InputSpec(**table)


def _export(where: _Where, table: dict[str, Any], model: LSTMConfig | LMConfig) -> ExportSpec:
    for key in ("seq_len", "batch"):
        _nonnegative(where, table, "export", key, minimum=1)
    if table.get("opset") is not None and table["opset"] < 7:
        where.fail(("export", "opset"), f"expected an integer >= 7 (LSTM as it is since opset 7), got {table['opset']}")
    layout = table.get("layout", 0)
    if layout not in (0, 1):
        where.fail(("export", "layout"), f"expected 0 or 1, got {layout}")
    lstm = model.lstm if isinstance(model, LMConfig) else model
    if layout == 1 and not lstm.batch_first:
        where.fail(("export", "layout"), "layout = 1 needs model.batch_first = true")
    if layout == 1 and table.get("opset") is not None and table["opset"] < 14:
        where.fail(("export", "layout"), f"layout = 1 needs opset >= 14 (got opset {table['opset']})")
    return ExportSpec(**table)


def _known_exporter(pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(e, pattern) for e in exporter_ids())


def _known_runtime(pattern: str) -> bool:
    return pattern.startswith("ort-") or any(fnmatch.fnmatchcase(r, pattern) for r in _runtime_ids())


def _listing(key: str) -> str:
    """Known ids for an error message; the selftest mutants are summarised, not listed."""
    if key == "exporters":
        return ", ".join(exporter_ids(mutants=False)) + " (and the selftest mutants mutant-*)"
    return ", ".join(_runtime_ids())


def _ids(where: _Where, merged: Mapping[str, Any], key: str, default: list[str], known: Any) -> tuple[str, ...]:
    values = _strings(where, merged.get(key, default), (key,))
    what = key.removesuffix("s")
    for value in values:
        if any(c in value for c in "*?[") or not known(value):
            valid = exporter_ids() if key == "exporters" else _runtime_ids()
            close = difflib.get_close_matches(value, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where.fail((key,), f"unknown {what} {value!r}{hint}; known: {_listing(key)}")
    if len(set(values)) != len(values):
        where.fail((key,), f"{what} {next(v for v in values if values.count(v) > 1)!r} listed twice")
    return tuple(values)


def _tolerance(where: _Where, value: Any, path: tuple[str, ...]) -> Tolerance:
    where.expect_type(value, dict, path)
    where.check_keys(value, ("atol", "rtol"), path)
    missing = [k for k in ("atol", "rtol") if k not in value]
    if missing:
        where.fail(path, f"atol and rtol must be given together (missing {missing[0]})")
    for key in ("atol", "rtol"):
        number = value[key]
        where.expect_type(number, float, (*path, key))
        if not (math.isfinite(number) and number >= 0):
            where.fail((*path, key), f"expected a finite number >= 0, got {number}")
    return Tolerance(atol=float(value["atol"]), rtol=float(value["rtol"]))


def _output_tolerances(where: _Where, value: Any, outputs: tuple[str, ...]) -> Mapping[str, Tolerance]:
    where.expect_type(value, dict, ("tolerance_outputs",))
    result = {}
    for name, tolerance in value.items():
        if name not in outputs:
            close = difflib.get_close_matches(name, outputs, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where.fail(("tolerance_outputs", name), f"unknown output{hint}; outputs: {', '.join(outputs)}")
        result[name] = _tolerance(where, tolerance, ("tolerance_outputs", name))
    return OutputTolerances(result)


def _expectation(
    where: _Where, item: Any, index: int, outputs: tuple[str, ...], variant: Mapping[str, Any]
) -> Expectation | None:
    """The expectation, or ``None`` when its ``when`` table does not hold for this (expanded) case."""
    path = ("expect", str(index))
    where.expect_type(item, dict, path)
    where.check_keys(item, EXPECT_KEYS, path)
    for key in ("reason", "runtime", "exporter", "output", "status", "reference"):
        if key in item:
            where.expect_type(item[key], str, (*path, key))
    if not item.get("reason", "").strip():
        where.fail((*path, "reason"), "missing: say why the lane diverges")
    status = item.get("status", "fail")
    if status not in STATUSES:
        where.fail((*path, "status"), f"expected 'fail' or 'error', got {status!r}")
    checks = (
        ("exporter", _known_exporter, _listing("exporters")),
        ("runtime", _known_runtime, _listing("runtimes")),
        ("output", lambda p: any(fnmatch.fnmatchcase(o, p) for o in outputs), ", ".join(outputs)),
    )
    for key, known, valid in checks:
        if not known(item.get(key, "*")):
            where.fail((*path, key), f"{item[key]!r} matches no known {key}; known: {valid}")
    when = item.get("when", {})
    where.expect_type(when, dict, (*path, "when"))
    for dotted, wanted in when.items():
        table, key = _dotted(dotted, where, (*path, "when", dotted))
        value = variant.get(table, {}).get(key, _UNSET)
        if value is _UNSET:
            value = _DEFAULTS[table].get(key)
        if not (value == wanted or (isinstance(wanted, list) and value in wanted)):
            return None
    return Expectation(**{k: v for k, v in item.items() if k != "when"})


_UNSET = object()


def _field_defaults(cls: Any) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


_DEFAULTS = {
    "model": {"kind": "lstm", **_field_defaults(LSTMConfig)},
    "weights": _field_defaults(WeightsSpec),
    "inputs": _field_defaults(InputSpec),
    "export": _field_defaults(ExportSpec),
}


# --- -k selection ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\()|(\))|\"([^\"]*)\"|'([^']*)'|([^\s()\"']+))")


def select(cases: Iterable[Case], expr: str | None) -> list[Case]:
    """Cases whose id, suite, tags or features contain the names of a pytest-style ``-k`` expression.

    Names match as case-insensitive substrings and combine with ``and``, ``or``,
    ``not`` and parentheses; quote a name that holds spaces (``"2 layers"``).
    """
    if expr is None or not expr.strip():
        return list(cases)
    tree = _Parser(expr).parse()
    return [case for case in cases if _evaluate(tree, _haystack(case))]


def _haystack(case: Case) -> tuple[str, ...]:
    return tuple(s.lower() for s in (case.id, case.suite, *case.tags, *case.features()))


Node = tuple[Any, ...]  # ("name", text) | ("not", node) | ("and" | "or", left, right)


def _evaluate(node: Node, haystack: tuple[str, ...]) -> bool:
    op = node[0]
    if op == "name":
        return any(node[1] in s for s in haystack)
    if op == "not":
        return not _evaluate(node[1], haystack)
    if op == "and":
        return _evaluate(node[1], haystack) and _evaluate(node[2], haystack)
    return _evaluate(node[1], haystack) or _evaluate(node[2], haystack)


class _Parser:
    """``expr := and ("or" and)*; and := not ("and" not)*; not := "not" not | "(" expr ")" | name``."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, column)
        pos = 0
        while pos < len(expr):
            match = _TOKEN.match(expr, pos)
            if match is None or match.end() == pos:
                if expr[pos:].strip():
                    self._error(f"unbalanced quote at column {pos + 1}")
                break
            column = match.start() + len(match[0]) - len(match[0].lstrip()) + 1
            if match[1] or match[2]:
                self.tokens.append((match[1] or match[2], match[1] or match[2], column))
            elif match[3] is not None or match[4] is not None:
                self.tokens.append(("name", match[3] if match[3] is not None else match[4], column))
            else:
                word = match[5]
                self.tokens.append((word if word in ("and", "or", "not") else "name", word, column))
            pos = match.end()
        self.index = 0

    def _error(self, problem: str) -> NoReturn:
        raise SelectionError(f"invalid -k expression {self.expr!r}: {problem}")

    def _peek(self) -> str | None:
        return self.tokens[self.index][0] if self.index < len(self.tokens) else None

    def _take(self) -> tuple[str, str, int]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> Node:
        node = self._or()
        if self.index < len(self.tokens):
            _, text, column = self.tokens[self.index]
            self._error(f"unexpected {text!r} at column {column}")
        return node

    def _or(self) -> Node:
        node = self._and()
        while self._peek() == "or":
            self._take()
            node = ("or", node, self._and())
        return node

    def _and(self) -> Node:
        node = self._not()
        while self._peek() == "and":
            self._take()
            node = ("and", node, self._not())
        return node

    def _not(self) -> Node:
        kind = self._peek()
        if kind is None:
            self._error(f"expected a name at column {len(self.expr) + 1}, got the end of the expression")
        kind, text, column = self._take()
        if kind == "not":
            return ("not", self._not())
        if kind == "(":
            node = self._or()
            if self._peek() != ")":
                where = f"column {self.tokens[self.index][2]}" if self.index < len(self.tokens) else "the end"
                self._error(f"expected ')' at {where}")
            self._take()
            return node
        if kind != "name":
            self._error(f"expected a name at column {column}, got {text!r}")
        return ("name", text.lower())
