"""Fuzzing the three front doors: suite files, the reference operator, and ONNX models.

Each property is a plain function (``check_*``) of one drawn value, and each
strategy a plain function returning a hypothesis strategy, so that
``tools/fuzz.py`` runs the same properties with a much larger budget:

- ``cases``: any TOML text (built from plausible and implausible keys and
  values, or a byte mutation of the packaged smoke.toml) loads as a ``Suite``
  or raises ``CaseError`` with one line ``file:line: ...``; nothing else.
- ``reference``: ``reference.lstm`` on valid inputs (zero-size dims, any
  activations, NaN/Inf values included) returns outputs of the spec's shapes;
  on inputs with a known fault it raises ``ValueError``; nothing else.
- ``onnx``: random bytes, truncations, byte flips and structural mutations of
  real models either import or raise ``ModelImportError``; the interface
  tracing ``conformance check`` does next raises only ``InterfaceError``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conformance.cases import CaseError, Suite, load_suite, loads_suite
from exporters.importers import ModelImportError, import_onnx, load_onnx

DISPLAY = "fuzz.toml"
# Fast by default (the whole file in a few seconds); tools/fuzz.py runs these for minutes.
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# --- (a) suite files -------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """An inline TOML rendering (JSON string escapes are TOML's; a lone surrogate makes invalid TOML, as it should)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"not a TOML value: {value!r}")


def toml_document(data: dict[str, Any]) -> str:
    """Top-level scalars, then ``[defaults]`` and ``[[case]]`` as real tables (so line lookup is exercised)."""
    lines = []
    tables = {k: v for k, v in data.items() if k == "defaults" and isinstance(v, dict)}
    arrays = {
        k: v for k, v in data.items() if k == "case" and isinstance(v, list) and all(isinstance(c, dict) for c in v)
    }
    for key, value in data.items():
        if key not in tables and key not in arrays:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for key, table in tables.items():
        lines += ["", f"[{key}]", *(f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items())]
    for key, items in arrays.items():
        for item in items:
            lines += ["", f"[[{key}]]", *(f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items())]
    return "\n".join(lines) + "\n"


_scalars = st.one_of(
    st.integers(-3, 40),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["forward", "reverse", "bidirectional", "lstm", "lm", "full", "mixed", "with-zero", "corpus"]),
)
_any_value = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_junk_key = st.text(min_size=0, max_size=10)
_ACTIVATION_NAMES = ["Sigmoid", "Tanh", "Relu", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
                     "HardSigmoid", "Elu", "Softsign", "Softplus", "sigmoid", "Swish", ""]  # fmt: skip
_PLAUSIBLE: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "model": {
        "kind": st.sampled_from(["lstm", "lm", "gru"]),
        "vocab_size": st.integers(-1, 40),
        "input_size": st.integers(-1, 6),
        "hidden_size": st.integers(-1, 6),
        "num_layers": st.integers(-1, 3),
        "direction": st.sampled_from(["forward", "reverse", "bidirectional", "backward"]),
        "batch_first": st.booleans(),
        "peepholes": st.booleans(),
        "activations": st.lists(st.sampled_from(_ACTIVATION_NAMES), max_size=7),
        "activation_alpha": st.lists(st.floats(allow_nan=True) | st.integers(-2, 2), max_size=4),
        "activation_beta": st.lists(st.floats(-3, 3), max_size=4),
        "clip": st.floats(allow_nan=True) | st.integers(-1, 3),
        "input_forget": st.integers(-1, 2),
    },
    "weights": {
        "recipe": st.sampled_from(["torch-default", "saturating", "trained", "xavier"]),
        "seed": st.integers(-2, 2**64),
    },
    "inputs": {
        "seq_len": st.integers(-1, 6),
        "batch": st.integers(-1, 4),
        "seed": st.integers(-1, 5),
        "low": st.floats(allow_nan=True),
        "high": st.floats(allow_nan=True),
        "initial_states": st.booleans(),
        "sequence_lens": st.sampled_from(["full", "mixed", "with-zero", "none"]) | st.lists(st.integers(-1, 7)),
        "tokens": st.sampled_from(["random", "corpus", "words"]),
    },
    "export": {
        "seq_len": st.integers(-1, 6),
        "batch": st.integers(-1, 4),
        "opset": st.integers(0, 30),
        "layout": st.integers(-1, 2),
        "dynamic": st.booleans(),
    },
}
_ids_list = st.lists(
    st.sampled_from(["reference", "ort-cpu", "ort-zzz", "onnx-native", "torch-script", "mutant-gate-order", "*", ""]),
    max_size=3,
)
_tolerance = st.fixed_dictionaries({}, optional={"atol": st.floats(allow_nan=True), "rtol": st.floats(-1, 1)})


def _table(name: str) -> st.SearchStrategy[dict[str, Any]]:
    plausible = st.fixed_dictionaries({}, optional=_PLAUSIBLE[name])
    junk = st.dictionaries(
        st.sampled_from([*_PLAUSIBLE[name], "hiden_size", "colour"]) | _junk_key, _any_value, max_size=3
    )
    return st.one_of(plausible, plausible, plausible, junk, _any_value)


_expect = st.fixed_dictionaries(
    {},
    optional={
        "reason": st.text(max_size=10),
        "runtime": st.sampled_from(["*", "ort-*", "onnx-reference", "nope"]),
        "exporter": st.sampled_from(["*", "torch-*", "nope"]),
        "output": st.sampled_from(["*", "Y", "Y_h", "log_probs", "Z"]),
        "status": st.sampled_from(["fail", "error", "pass"]),
        "reference": st.text(max_size=5),
        "when": st.dictionaries(
            st.sampled_from(["model.direction", "inputs.batch", "model", "x.y"]), _any_value, max_size=2
        ),
    },
)
_matrix = st.dictionaries(
    st.sampled_from(["model.direction", "model.num_layers", "inputs.batch", "weights.seed", "model.nope", "direction"]),
    st.lists(_scalars, min_size=0, max_size=3) | _scalars,
    max_size=2,
)
_CASE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.sampled_from(["a", "b", "a b", "x[1]"]) | st.text(max_size=6),
    "description": st.text(max_size=8),
    "model": _table("model"),
    "weights": _table("weights"),
    "inputs": _table("inputs"),
    "export": _table("export"),
    "exporters": _ids_list,
    "runtimes": _ids_list,
    "tolerance": _tolerance | _any_value,
    "tolerance_outputs": st.dictionaries(st.sampled_from(["Y", "Y_h", "log_probs", "Q"]), _tolerance, max_size=2),
    "tags": st.lists(st.text(max_size=5), max_size=2) | _any_value,
    "expect": st.lists(_expect, max_size=2),
    "matrix": _matrix,
}
_case = st.fixed_dictionaries({"id": _CASE_FIELDS["id"]}, optional={k: v for k, v in _CASE_FIELDS.items() if k != "id"})
_defaults = st.fixed_dictionaries({}, optional={k: v for k, v in _CASE_FIELDS.items() if k not in ("id", "matrix")})


def suite_documents() -> st.SearchStrategy[dict[str, Any]]:
    """Suite files as data: mostly well-formed tables with plausible values, sometimes anything."""
    plausible = st.fixed_dictionaries(
        {"case": st.lists(_case, max_size=3)},
        optional={"suite": st.text(max_size=5), "description": st.text(max_size=5), "defaults": _defaults},
    )
    junk = st.dictionaries(
        st.sampled_from(["suite", "description", "defaults", "case"]) | _junk_key, _any_value, max_size=4
    )
    return st.one_of(plausible, plausible, plausible, junk)


@functools.cache
def smoke_bytes() -> bytes:
    return (resources.files("cases") / "smoke.toml").read_bytes()


@dataclass(frozen=True)
class Mutation:
    kind: str  # delete | insert | replace | duplicate-line | swap-lines
    at: float  # position as a fraction of the text
    length: int
    data: bytes


_mutations = st.lists(
    st.builds(
        Mutation,
        st.sampled_from(["delete", "insert", "replace", "duplicate-line", "swap-lines"]),
        st.floats(0, 1),
        st.integers(0, 40),
        st.binary(max_size=12) | st.sampled_from([b"[", b"]]", b"=", b'"', b"\n", b"[[case]]\n", b"\xff", b"#", b"{"]),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, mutations: list[Mutation]) -> bytes:
    for m in mutations:
        at = int(m.at * len(data))
        if m.kind == "delete":
            data = data[:at] + data[at + m.length :]
        elif m.kind == "insert":
            data = data[:at] + m.data + data[at:]
        elif m.kind == "replace":
            data = data[:at] + m.data + data[at + len(m.data) :]
        else:
            lines = data.split(b"\n")
            k = min(int(m.at * len(lines)), len(lines) - 1)
            other = min(k + 1 + m.length % 5, len(lines) - 1)
            if m.kind == "duplicate-line":
                lines.insert(k, lines[k])
            else:
                lines[k], lines[other] = lines[other], lines[k]
            data = b"\n".join(lines)
    return data


def check_accepted(suite: object, display: str) -> Suite:
    """What every suite that loads holds: cases with unique ids, each naming its line, on known ids only."""
    from conformance.runtimes import runtime_ids
    from exporters.registry import exporter_ids

    assert isinstance(suite, Suite), f"not a Suite: {suite!r}"
    ids = [case.id for case in suite.cases]
    assert all(ids), f"a case without an id: {ids}"
    assert len(ids) == len(set(ids)), f"duplicate case ids: {ids}"
    runtimes, exporters = set(runtime_ids()), set(exporter_ids())
    for case in suite.cases:
        assert re.fullmatch(rf"{re.escape(display)}:\d+", case.source), f"{case.id}: source {case.source!r}"
        assert set(case.runtimes) <= runtimes, f"{case.id}: unknown runtimes in {case.runtimes}"
        assert set(case.exporters) <= exporters, f"{case.id}: unknown exporters in {case.exporters}"
    return suite


def check_case_error(exc: CaseError, display: str) -> None:
    message = str(exc)
    assert "\n" not in message and "\r" not in message, f"CaseError of several lines: {message!r}"
    assert message.startswith(f"{display}:"), f"CaseError that does not name the file: {message!r}"


def check_suite_text(text: str) -> Suite | None:
    """``loads_suite`` returns a Suite or raises a one-line CaseError naming the file; nothing else escapes."""
    try:
        suite = loads_suite(text, display=DISPLAY)
    except CaseError as exc:
        check_case_error(exc, DISPLAY)
        return None
    return check_accepted(suite, DISPLAY)


def check_suite_document(data: dict[str, Any]) -> Suite | None:
    return check_suite_text(toml_document(data))


def check_suite_bytes(data: bytes) -> Suite | None:
    """A suite file with these bytes, through ``load_suite`` (so undecodable bytes are covered too)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / DISPLAY
        path.write_bytes(data)
        try:
            suite = load_suite(path)
        except CaseError as exc:
            check_case_error(exc, str(path))
            return None
        return check_accepted(suite, str(path))


def check_smoke_mutation(mutations: list[Mutation]) -> Suite | None:
    return check_suite_bytes(mutate(smoke_bytes(), mutations))


# --- (b) the reference operator -------------------------------------------------------------------

DIRECTIONS = ("forward", "reverse", "bidirectional")
ACTIVATIONS = ("Sigmoid", "Tanh", "Relu", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid",
               "Elu", "Softsign", "Softplus", "sigmoid", "TANH")  # fmt: skip
# Faults that each make a call invalid: the reference must refuse them with ValueError.
FAULTS = ("direction", "layout", "input_forget", "clip", "hidden_size", "W", "R", "B", "P", "X-rank",
          "initial_h", "initial_c", "activation-name", "activation-count", "lens-negative", "lens-too-long",
          "lens-float", "lens-shape")  # fmt: skip


@dataclass
class OperatorCall:
    """Arguments of one ``reference.lstm`` call, the shapes it was built for, and the faults injected."""

    args: dict[str, Any]
    steps: int
    batch: int
    hidden: int
    num_directions: int
    layout: int
    faults: tuple[str, ...] = field(default_factory=tuple)


def _values(draw: Any, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 4.0, 1e3]))
    array = rng.uniform(-scale, scale, shape)
    if array.size and draw(st.booleans()):
        special = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e308, 0.0]))
        array.flat[draw(st.integers(0, array.size - 1))] = special
    return array


@st.composite
def operator_calls(draw: Any) -> OperatorCall:
    steps, batch, inputs, hidden = (draw(st.integers(0, 4)) for _ in range(4))
    direction = draw(st.sampled_from(DIRECTIONS))
    d = 2 if direction == "bidirectional" else 1
    layout = draw(st.sampled_from([0, 1]))
    faults = set(draw(st.lists(st.sampled_from(FAULTS), max_size=2, unique=True)) if draw(st.booleans()) else [])
    x_shape = (steps, batch, inputs) if layout == 0 else (batch, steps, inputs)
    state = (d, batch, hidden) if layout == 0 else (batch, d, hidden)

    def shape(name: str, good: tuple[int, ...]) -> tuple[int, ...]:
        if name not in faults:
            return good
        axis = draw(st.integers(0, len(good) - 1))
        return tuple(n + 1 if k == axis else n for k, n in enumerate(good))

    args: dict[str, Any] = {
        "X": _values(draw, x_shape if "X-rank" not in faults else x_shape[:2]),
        "W": _values(draw, shape("W", (d, 4 * hidden, inputs))),
        "R": _values(draw, shape("R", (d, 4 * hidden, hidden))),
        "direction": direction if "direction" not in faults else draw(st.sampled_from(["Forward", "both", ""])),
        "layout": layout if "layout" not in faults else draw(st.sampled_from([2, -1])),
    }
    if draw(st.booleans()) or "B" in faults:
        args["B"] = _values(draw, shape("B", (d, 8 * hidden)))
    if draw(st.booleans()) or "P" in faults:
        args["P"] = _values(draw, shape("P", (d, 3 * hidden)))
    for name in ("initial_h", "initial_c"):
        if draw(st.booleans()) or name in faults:
            args[name] = _values(draw, shape(name, state))
    lens_faults = {"lens-negative", "lens-too-long", "lens-float", "lens-shape"} & faults
    if draw(st.booleans()) or lens_faults:
        lens = np.asarray(draw(st.lists(st.integers(0, steps), min_size=batch, max_size=batch)), dtype=np.int64)
        dtype = draw(st.sampled_from([np.int32, np.int64, np.uint8]))
        if batch == 0:
            faults -= {"lens-negative", "lens-too-long"}  # no entry to put out of range
        if "lens-negative" in faults:
            lens[-1] = -1
        if "lens-too-long" in faults:
            lens[0] = steps + 1
        if "lens-float" in faults:
            dtype = draw(st.sampled_from([np.float32, np.float64, np.bool_]))
        if "lens-negative" in faults:
            dtype = np.int64  # -1 must stay negative
        if "lens-shape" in faults:
            lens = np.append(lens, 0)
        args["sequence_lens"] = lens.astype(dtype)
    if draw(st.booleans()) or "hidden_size" in faults:
        args["hidden_size"] = hidden if "hidden_size" not in faults else hidden + draw(st.integers(1, 3))
    if draw(st.booleans()) or "input_forget" in faults:
        args["input_forget"] = draw(st.sampled_from([0, 1])) if "input_forget" not in faults else 2
    if draw(st.booleans()) or "clip" in faults:
        good_clip = st.floats(min_value=1e-3, max_value=1e6) | st.just(float("inf")) | st.integers(1, 5)
        bad_clip = st.sampled_from([0.0, -1.0, float("nan"), -float("inf"), 0])
        args["clip"] = draw(good_clip if "clip" not in faults else bad_clip)
    if draw(st.booleans()) or {"activation-name", "activation-count"} & faults:
        names = draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=3 * d, max_size=3 * d))
        if "activation-name" in faults:
            names[draw(st.integers(0, len(names) - 1))] = draw(st.sampled_from(["Gelu", "", "sigmoid ", "Tanh2"]))
        if "activation-count" in faults:
            names = [*names, "Tanh"] if draw(st.booleans()) else names[:-1]
        args["activations"] = names
        numbers = st.floats(allow_nan=True, allow_infinity=True, width=64)
        if draw(st.booleans()):
            args["activation_alpha"] = draw(st.lists(numbers, max_size=7))
        if draw(st.booleans()):
            args["activation_beta"] = draw(st.lists(numbers, max_size=7))
    return OperatorCall(args, steps, batch, hidden, d, layout, tuple(sorted(faults)))


def check_operator_call(call: OperatorCall) -> None:
    """Valid calls return outputs of the spec's shapes; calls with a fault raise ValueError; nothing else."""
    from reference import LSTMOutput, lstm

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = lstm(**call.args)
        except ValueError:
            assert call.faults, "a valid call was refused"
            return
    assert not call.faults, f"a call with fault(s) {call.faults} was accepted"
    assert isinstance(out, LSTMOutput)
    t, b, h, d = call.steps, call.batch, call.hidden, call.num_directions
    want_y = (t, d, b, h) if call.layout == 0 else (b, t, d, h)
    want_state = (d, b, h) if call.layout == 0 else (b, d, h)
    assert out.Y.shape == want_y
    assert out.Y_h.shape == out.Y_c.shape == want_state
    assert out.Y.dtype == out.Y_h.dtype == out.Y_c.dtype == np.float64


# --- (c) ONNX models ----------------------------------------------------------------------------------


@functools.cache
def seed_sources() -> tuple[tuple[Any, Any, Any], ...]:
    """(config, weights, export options) of each seed model."""
    from exporters.base import ExportOptions
    from reference.config import LMConfig, LSTMConfig
    from reference.weights import generate, generate_lm

    stack = LSTMConfig(3, 4, num_layers=2, direction="bidirectional", batch_first=True)
    lm = LMConfig(vocab_size=6, lstm=LSTMConfig(3, 4))
    return (
        (stack, generate(stack, seed=0), ExportOptions(initial_states=True, sequence_lens=True)),
        (lm, generate_lm(lm, seed=0), ExportOptions()),
    )


@functools.cache
def seed_models() -> tuple[bytes, ...]:
    """Real models to truncate and mutate: an onnx-native LSTM stack with states and lengths, and an LM."""
    from exporters.onnx_native import build_model

    return tuple(build_model(*source).SerializeToString() for source in seed_sources())


@dataclass(frozen=True)
class ModelMutation:
    """One change to a real model: a truncation, byte flips, or an edit of its protobuf."""

    seed: int  # which of seed_models()
    kind: str
    at: float
    value: Any


_MODEL_EDITS = ("truncate", "flip", "drop-initializer", "drop-node", "drop-input", "set-attribute", "reshape",
                "retype", "rename-input", "drop-graph-input", "drop-graph-output", "clear-dims")  # fmt: skip
_attribute_values = st.one_of(
    st.integers(-3, 3),
    st.floats(allow_nan=True),
    st.sampled_from(["forward", "reverse", "bidirectional", "sideways", ""]),
    st.lists(st.sampled_from(["Sigmoid", "Tanh", "Relu", "Nope"]), max_size=7),
    st.lists(st.floats(-2, 2), max_size=4),
)


def model_mutations() -> st.SearchStrategy[ModelMutation]:
    return st.builds(
        ModelMutation,
        st.integers(0, 1),
        st.sampled_from(_MODEL_EDITS),
        st.floats(0, 1),
        st.one_of(_attribute_values, st.binary(max_size=8), st.lists(st.integers(-1, 9), max_size=4)),
    )


def _pick(items: Any, at: float) -> Any:
    items = list(items)
    return items[min(int(at * len(items)), len(items) - 1)] if items else None


def apply_model_mutation(m: ModelMutation) -> bytes:
    data = seed_models()[m.seed]
    if m.kind == "truncate":
        return data[: int(m.at * len(data))]
    if m.kind == "flip":
        flips = m.value if isinstance(m.value, bytes) and m.value else b"\x01"
        out = bytearray(data)
        for k, byte in enumerate(flips):
            out[(int(m.at * len(data)) + 97 * k) % len(out)] ^= byte or 0x80
        return bytes(out)
    model = onnx.ModelProto()
    model.ParseFromString(data)
    graph = model.graph
    node = _pick(graph.node, m.at)
    if m.kind == "drop-initializer" and graph.initializer:
        graph.initializer.remove(_pick(graph.initializer, m.at))
    elif m.kind == "drop-node" and node is not None:
        graph.node.remove(node)
    elif m.kind == "drop-input" and node is not None and node.input:
        del node.input[min(int(m.at * len(node.input)), len(node.input) - 1) :]
    elif m.kind == "rename-input" and node is not None and node.input:
        node.input[0] = "renamed"
    elif m.kind == "set-attribute":
        lstm = _pick([n for n in graph.node if n.op_type == "LSTM"], m.at)
        name = _pick(["direction", "hidden_size", "activations", "activation_alpha", "clip", "input_forget",
                      "layout"], m.at * 7 % 1)  # fmt: skip
        for attribute in list(lstm.attribute):
            if attribute.name == name:
                lstm.attribute.remove(attribute)
        value = m.value if not isinstance(m.value, bytes) else m.value.decode("latin-1")
        if not (isinstance(value, list) and not value):
            lstm.attribute.append(onnx.helper.make_attribute(name, value))
    elif m.kind in ("reshape", "retype", "clear-dims") and graph.initializer:
        tensor = _pick(graph.initializer, m.at)
        if m.kind == "reshape":
            dims = [d for d in (m.value if isinstance(m.value, list) else [2, 3]) if isinstance(d, int)]
            del tensor.dims[:]
            tensor.dims.extend(dims)
        elif m.kind == "retype":
            tensor.data_type = _pick([*range(1, 27), 0, 99, 2**31 - 1], m.at)
        else:
            del tensor.dims[:]
    elif m.kind == "drop-graph-input" and graph.input:
        graph.input.remove(_pick(graph.input, m.at))
    elif m.kind == "drop-graph-output" and graph.output:
        graph.output.remove(_pick(graph.output, m.at))
    return model.SerializeToString()


def check_model_bytes(data: bytes) -> None:
    """``import_onnx`` succeeds or raises ModelImportError; reading the interface raises only InterfaceError."""
    from conformance.interface import InterfaceError, read_interface

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                imported = import_onnx(path)
            except ModelImportError as exc:
                assert "\n" not in str(exc).strip(), f"ModelImportError of several lines: {exc}"
                return
            assert imported.weights is not None
            try:
                read_interface(load_onnx(path))
            except InterfaceError:
                return


def check_model_mutation(m: ModelMutation) -> None:
    check_model_bytes(apply_model_mutation(m))


# --- the tests: each property at the default, modest budget -----------------------------------------------

# name -> (strategy, property): what tools/fuzz.py runs, by target.
TARGETS: dict[str, list[tuple[str, Callable[[], st.SearchStrategy[Any]], Callable[[Any], Any]]]] = {
    "cases": [
        ("suite documents", suite_documents, check_suite_document),
        ("suite texts", lambda: st.text(max_size=200), check_suite_text),
        ("smoke.toml mutations", lambda: _mutations, check_smoke_mutation),
    ],
    "reference": [("operator calls", operator_calls, check_operator_call)],
    "onnx": [
        ("random bytes", lambda: st.binary(max_size=300), check_model_bytes),
        ("model mutations", model_mutations, check_model_mutation),
    ],
}


@EXAMPLES
@given(suite_documents())
@example({"\r": []})  # found by tools/fuzz.py: the key was echoed raw, a two-line CaseError
@example({"case": [{"id": "a", "model": {"input_size": 1, "hidden_size": 1}, "inputs": {"seq_len": 1, "batch": 1}}]})
def test_suite_documents(data: dict[str, Any]) -> None:
    check_suite_document(data)


@EXAMPLES
@given(st.text(max_size=200))
def test_suite_texts(text: str) -> None:
    check_suite_text(text)


@EXAMPLES
@given(_mutations)
def test_smoke_mutations(mutations: list[Mutation]) -> None:
    check_smoke_mutation(mutations)


@settings(EXAMPLES, max_examples=150)
@given(operator_calls())
def test_operator_calls(call: OperatorCall) -> None:
    check_operator_call(call)


@EXAMPLES
@given(st.binary(max_size=300))
def test_random_bytes_as_models(data: bytes) -> None:
    check_model_bytes(data)


# Found by tools/fuzz.py (each crashed import_onnx with IndexError, ValueError, OverflowError or KeyError).
_RETYPE_99 = (27 + 0.5) / 29  # _pick's index 27 of [1..26, 0, 99, 2**31 - 1]


@settings(EXAMPLES, max_examples=100)
@given(model_mutations())
@example(ModelMutation(0, "drop-input", 0.0, 0))  # a node before the first LSTM left without inputs
@example(ModelMutation(0, "reshape", 0.0, [2, 3]))  # tensor data that does not fill its dims
@example(ModelMutation(0, "set-attribute", 0.25, 3.4028235677973366e38))  # input_forget = 3.4e38 (int() overflows)
@example(ModelMutation(0, "set-attribute", 0.96875, "forward"))  # layout = "forward"
@example(ModelMutation(0, "retype", _RETYPE_99, 0))  # data type 99: no such ONNX type
def test_model_mutations(mutation: ModelMutation) -> None:
    check_model_mutation(mutation)


@pytest.mark.parametrize(("steps", "batch"), [(0, 2), (3, 0), (0, 0)])
def test_zero_steps_or_an_empty_batch_give_the_state_after_no_step(steps: int, batch: int) -> None:
    """Found by this fuzzer: T = 0 or B = 0 raised "cannot reshape array of size 0" instead of computing."""
    from reference import lstm

    rng = np.random.default_rng(0)
    h0, c0 = rng.uniform(-1, 1, (2, batch, 4)), rng.uniform(-1, 1, (2, batch, 4))
    out = lstm(rng.uniform(-1, 1, (steps, batch, 3)), rng.uniform(-1, 1, (2, 16, 3)), rng.uniform(-1, 1, (2, 16, 4)),
               initial_h=h0, initial_c=c0, direction="bidirectional")  # fmt: skip
    assert out.Y.shape == (steps, 2, batch, 4)
    assert np.array_equal(out.Y_h, h0) and np.array_equal(out.Y_c, c0)


def test_the_unmutated_seeds_import_and_map() -> None:
    """The mutation fuzzer starts from models that work: a failure after an edit is the edit's.

    Each seed imports as the configuration and weights it was built from, and its interface maps every
    graph input and output to its role.
    """
    from conformance.interface import read_interface
    from reference.config import LMConfig

    roles = [
        ({"X": "X", "initial_h": "initial_h", "initial_c": "initial_c", "sequence_lens": "sequence_lens"},
         {"Y": "Y", "Y_h": "Y_h", "Y_c": "Y_c"}),
        ({"tokens": "tokens"}, {"log_probs": "log_probs"}),
    ]  # fmt: skip
    for (config, weights, _), data, (inputs, outputs) in zip(seed_sources(), seed_models(), roles, strict=True):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            path.write_bytes(data)
            imported = import_onnx(path)
            interface = read_interface(load_onnx(path))
        lstm = config.lstm if isinstance(config, LMConfig) else config
        assert interface.batch_first == lstm.batch_first
        time_major = dataclasses.replace(lstm, batch_first=False)  # the layout is the interface's, not the weights'
        assert imported.config == (dataclasses.replace(config, lstm=time_major) if lstm is not config else time_major)
        found, built = imported.weights.arrays(), weights.arrays()
        assert sorted(found) == sorted(built)
        for name, value in built.items():
            np.testing.assert_array_equal(found[name], value.astype(np.float32), err_msg=name)
        assert (interface.roles, interface.outputs) == (inputs, outputs)


def test_the_unmutated_smoke_suite_loads() -> None:
    suite = check_suite_bytes(smoke_bytes())
    assert suite is not None and suite.cases
