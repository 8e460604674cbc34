"""One case from its merged TOML tables: the schema, every value check, and the :class:`Case` it builds.

Each check fails through :class:`~conformance.cases.locate.Where`, so a problem
is one line naming the file, the line and the key. Runtime ids are checked
against ``conformance.runtimes`` (its import-free part), exporter ids against
``exporters.registry``: neither list is copied here.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from typing import Any

from conformance.cases.locate import Where, is_kind, show
from conformance.cases.model import (
    LM_OUTPUTS,
    LSTM_OUTPUTS,
    Case,
    Expectation,
    ExportSpec,
    InputSpec,
    OutputTolerances,
    Tolerance,
    WeightsSpec,
)
from conformance.runtimes import ORT_PROVIDERS, declared_runtime_ids, is_nameable, unknown_runtime_hint
from exporters.errors import BadInputError
from exporters.registry import exporter_ids, get_exporter
from exporters.transforms import SEPARATOR, transform_ids
from reference.config import LMConfig, LSTMConfig
from reference.weights import RECIPES

__all__ = ["CASE_KEYS", "DEFAULT_KEYS", "TABLES", "TABLE_FIELDS", "build_case", "dotted_key"]

TRAINED = "trained"  # the LM weights fitted to the shipped corpus (cases/data/lm-trained.npz)
SEQUENCE_LENS = ("full", "mixed", "with-zero")
TOKENS = ("random", "corpus")
STATUSES = ("fail", "error")
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
EXPECT_KEYS = ("reason", "runtime", "exporter", "output", "status", "reference", "computed_in", "when")
COMPUTED_IN = ("float32", "bfloat16", "float16", "float64")


def dotted_key(dotted: str, where: Where, path: tuple[str, ...]) -> tuple[str, str]:
    """``"model.direction"`` -> ``("model", "direction")``, refusing keys the schema does not have."""
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in TABLES:
        where.fail(path, "expected a key of model, weights, inputs or export, such as 'model.direction'")
    if parts[1] not in TABLE_FIELDS[parts[0]]:
        valid = [f"{parts[0]}.{k}" for k in TABLE_FIELDS[parts[0]]]
        close = difflib.get_close_matches(dotted, valid, n=1)
        where.fail(path, "unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return parts[0], parts[1]


def _table(where: Where, merged: Mapping[str, Any], name: str) -> dict[str, Any]:
    table = merged.get(name, {})
    where.expect_type(table, dict, (name,))
    fields = TABLE_FIELDS[name]
    where.check_keys(table, tuple(fields), (name,))
    for key, value in table.items():
        kind = fields[key]
        if kind in (int, float, bool, str):
            where.expect_type(value, kind, (name, key))
    return dict(table)


def _required(where: Where, table: Mapping[str, Any], name: str, key: str) -> Any:
    if key not in table:
        where.fail((name, key), "missing (required)")
    return table[key]


def build_case(suite: str, case_id: str, raw: Mapping[str, Any], merged: Mapping[str, Any], where: Where) -> Case:
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
        exporters=_ids(where, merged, "exporters"),
        runtimes=_ids(where, merged, "runtimes"),
        tolerance=_tolerance(where, merged["tolerance"], ("tolerance",)) if "tolerance" in merged else None,
        output_tolerances=_output_tolerances(where, merged.get("tolerance_outputs", {}), outputs),
        expect=tuple(
            e for n, item in enumerate(merged.get("expect", [])) if (e := _expectation(where, item, n, outputs, merged))
        ),
        tags=tuple(_strings(where, merged.get("tags", []), ("tags",))),
        description=description,
        source=f"{where.layout.display}:{where.header_line}",
    )


def _model(where: Where, merged: Mapping[str, Any]) -> LSTMConfig | LMConfig:
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


def _typed_list(where: Where, value: Any, path: tuple[str, ...], kind: type) -> list[Any]:
    if not isinstance(value, list) or not all(is_kind(v, kind) for v in value):
        where.fail(path, f"expected a list of {'strings' if kind is str else 'numbers'}, got {show(value)}")
    return [float(v) if kind is float else v for v in value]


def _strings(where: Where, value: Any, path: tuple[str, ...]) -> list[str]:
    return _typed_list(where, value, path, str)


def _nonnegative(where: Where, table: Mapping[str, Any], name: str, key: str, minimum: int = 0) -> None:
    if key in table and table[key] < minimum:
        where.fail((name, key), f"expected an integer >= {minimum}, got {table[key]}")


def _weights(where: Where, table: dict[str, Any], model: LSTMConfig | LMConfig) -> WeightsSpec:
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


def _inputs(where: Where, table: dict[str, Any], model: LSTMConfig | LMConfig) -> InputSpec:
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
            f"expected one of {', '.join(repr(s) for s in SEQUENCE_LENS)} or a list of lengths, got {show(lens)}",
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


def _export(where: Where, table: dict[str, Any], model: LSTMConfig | LMConfig) -> ExportSpec:
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
    if any(fnmatch.fnmatchcase(e, pattern) for e in exporter_ids()):
        return True
    return SEPARATOR in pattern and not any(c in pattern for c in "*?[") and _transform_problem(pattern) is None


def _transform_problem(value: str) -> str | None:
    """Why ``<exporter>+<transform>`` names no exporter (an unknown transform lists the known ones), or None."""
    try:
        get_exporter(value)
    except BadInputError as exc:
        return str(exc)
    return None


def _exporter_listing(value: str = "") -> str:
    """Known exporter ids for an error message; the selftest mutants are summarised, not listed, and the
    transforms are listed when ``value`` names one (``<exporter>+<transform>``)."""
    listing = ", ".join(exporter_ids(mutants=False)) + " (and the selftest mutants mutant-*)"
    if SEPARATOR in value:
        listing += f"; each ONNX exporter{SEPARATOR}<transform>, transforms: {', '.join(transform_ids())}"
    return listing


def _runtime_listing(value: str) -> str:
    """Known runtime ids for an error message; ONNX Runtime's providers too when ``value`` names one."""
    known = ", ".join(declared_runtime_ids())
    if value.startswith("ort-"):
        known += f"; and ort-<provider> for an ONNX Runtime provider: {', '.join(ORT_PROVIDERS)}"
    return known


def _exporter_hint(value: str) -> str:
    close = difflib.get_close_matches(value, exporter_ids(), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# key -> (its default ids, whether a pattern matches a known id, a "did you mean" hint, the listing)
_ID_KINDS: dict[str, tuple[Callable[[], list[str]], Callable[[str], bool], Callable[[str], str], Callable[[str], str]]]
_ID_KINDS = {
    "exporters": (lambda: exporter_ids(mutants=False), _known_exporter, _exporter_hint, _exporter_listing),
    "runtimes": (declared_runtime_ids, is_nameable, unknown_runtime_hint, _runtime_listing),
}


def _ids(where: Where, merged: Mapping[str, Any], key: str) -> tuple[str, ...]:
    default, known, hint, listing = _ID_KINDS[key]
    values = _strings(where, merged[key] if key in merged else default(), (key,))
    what = key.removesuffix("s")
    for value in values:
        if key == "exporters" and SEPARATOR in value and not any(c in value for c in "*?["):
            problem = _transform_problem(value)  # the transform's own message: it lists the transforms
            if problem:
                where.fail((key,), problem)
        if any(c in value for c in "*?[") or not known(value):
            where.fail((key,), f"unknown {what} {value!r}{hint(value)}; known: {listing(value)}")
    if len(set(values)) != len(values):
        where.fail((key,), f"{what} {next(v for v in values if values.count(v) > 1)!r} listed twice")
    return tuple(values)


def _tolerance(where: Where, value: Any, path: tuple[str, ...]) -> Tolerance:
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


def _output_tolerances(where: Where, value: Any, outputs: tuple[str, ...]) -> Mapping[str, Tolerance]:
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
    where: Where, item: Any, index: int, outputs: tuple[str, ...], variant: Mapping[str, Any]
) -> Expectation | None:
    """The expectation, or ``None`` when its ``when`` table does not hold for this (expanded) case."""
    path = ("expect", str(index))
    where.expect_type(item, dict, path)
    where.check_keys(item, EXPECT_KEYS, path)
    for key in ("reason", "output", "status", "reference", "computed_in"):
        if key in item:
            where.expect_type(item[key], str, (*path, key))
    for key in ("runtime", "exporter"):  # a glob, or a list of globs (any of them)
        if key in item and not isinstance(item[key], str):
            where.expect_type(item[key], list, (*path, key))
            if not item[key] or not all(isinstance(v, str) for v in item[key]):
                where.fail((*path, key), "expected a glob or a non-empty list of globs")
    if "computed_in" in item and item["computed_in"] not in COMPUTED_IN:
        where.fail((*path, "computed_in"), f"expected one of {', '.join(COMPUTED_IN)}, got {item['computed_in']!r}")
    if not item.get("reason", "").strip():
        where.fail((*path, "reason"), "missing: say why the lane diverges")
    status = item.get("status", "fail")
    if status not in STATUSES:
        where.fail((*path, "status"), f"expected 'fail' or 'error', got {status!r}")
    checks = (
        ("exporter", _known_exporter, _exporter_listing),
        ("runtime", is_nameable, _runtime_listing),
        ("output", lambda p: any(fnmatch.fnmatchcase(o, p) for o in outputs), lambda _: ", ".join(outputs)),
    )
    for key, known, listing in checks:
        value = item.get(key, "*")
        for pattern in [value] if isinstance(value, str) else value:
            if not known(pattern):
                where.fail((*path, key), f"{pattern!r} matches no known {key}; known: {listing(pattern)}")
    when = item.get("when", {})
    where.expect_type(when, dict, (*path, "when"))
    for dotted, wanted in when.items():
        table, key = dotted_key(dotted, where, (*path, "when", dotted))
        value = variant.get(table, {}).get(key, _UNSET)
        if value is _UNSET:
            value = _DEFAULTS[table].get(key)
        if not (value == wanted or (isinstance(wanted, list) and value in wanted)):
            return None
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in item.items() if k != "when"}
    return Expectation(**fields)


_UNSET = object()


def _field_defaults(cls: Any) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


_DEFAULTS = {
    "model": {"kind": "lstm", **_field_defaults(LSTMConfig)},
    "weights": _field_defaults(WeightsSpec),
    "inputs": _field_defaults(InputSpec),
    "export": _field_defaults(ExportSpec),
}
