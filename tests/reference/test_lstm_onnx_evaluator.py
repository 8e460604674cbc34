"""The reference against ``onnx.reference.ReferenceEvaluator``, a peer implementation of the LSTM operator.

The evaluator accepts float64, so both sides compute in float64 and agree to rounding (observed
differences are a few 1e-16; the evaluator's sigmoid is ``1 / (1 + exp(-x))``, ours is tanh-based).
It implements directions, B, initial_h/initial_c, P and layout, but ignores ``activations``
(with their alpha/beta), ``clip``, ``input_forget`` and ``sequence_lens``: ``TestEvaluatorIgnores``
pins that, so a future onnx that starts honouring them makes the test fail and gets noticed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import pytest
from numpy.typing import NDArray
from onnx import helper
from onnx.reference import ReferenceEvaluator

from reference import LSTMConfig, lstm
from reference.weights import generate

INPUT_NAMES = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
OUTPUT_NAMES = ("Y", "Y_h", "Y_c")
OPSET = 22  # LSTM's latest version (layout exists since 14)
ATOL_FLOAT64 = 1e-12
ATOL_FLOAT32 = 1e-5
SEQ, BATCH, INPUT_SIZE, HIDDEN = 5, 3, 3, 4


def _model(
    feeds: dict[str, NDArray[Any]], output_shapes: list[tuple[int, ...]], attrs: dict[str, Any]
) -> onnx.ModelProto:
    """One LSTM node whose graph inputs are exactly ``feeds`` (others omitted as empty names)."""
    last = max(INPUT_NAMES.index(name) for name in feeds)
    node_inputs = [name if name in feeds else "" for name in INPUT_NAMES[: last + 1]]
    node = helper.make_node("LSTM", node_inputs, list(OUTPUT_NAMES), **attrs)
    dtype = helper.np_dtype_to_tensor_dtype(feeds["X"].dtype)
    inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
        for name, value in feeds.items()
    ]
    outputs = [
        helper.make_tensor_value_info(name, dtype, shape)
        for name, shape in zip(OUTPUT_NAMES, output_shapes, strict=True)
    ]
    graph = helper.make_graph([node], "lstm", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model, full_check=True)
    return model


@dataclass(frozen=True)
class Problem:
    """Inputs for one LSTM node, in the spec's names; ``None`` means omitted."""

    feeds: dict[str, NDArray[Any]]
    attrs: dict[str, Any]

    def reference(self, **extra: Any) -> tuple[NDArray[np.float64], ...]:
        return tuple(lstm(**self.feeds, **{**self.attrs, **extra}))

    def evaluator(self, **extra: Any) -> tuple[NDArray[Any], ...]:
        attrs = {**self.attrs, **extra}
        shapes = [out.shape for out in self.reference()]
        session = ReferenceEvaluator(_model(self.feeds, shapes, attrs))
        return tuple(session.run(None, self.feeds))


def _problem(
    *,
    direction: str,
    bias: bool,
    states: bool,
    peepholes: bool,
    layout: int,
    recipe: str = "torch-default",
    dtype: type[np.floating[Any]] = np.float64,
    seed: int = 0,
) -> Problem:
    config = LSTMConfig(INPUT_SIZE, HIDDEN, direction=direction, peepholes=peepholes)
    weights = generate(config, seed=seed, recipe=recipe).layers[0]
    rng = np.random.default_rng(seed + 1)
    num_dir = config.num_directions
    x = rng.standard_normal((SEQ, BATCH, INPUT_SIZE))
    state_shape = (num_dir, BATCH, HIDDEN)
    feeds: dict[str, NDArray[Any]] = {"X": x, "W": weights.W, "R": weights.R}
    if bias:
        feeds["B"] = weights.B
    if states:
        feeds["initial_h"] = rng.uniform(-1, 1, state_shape)
        feeds["initial_c"] = rng.uniform(-2, 2, state_shape)
    if peepholes:
        assert weights.P is not None
        feeds["P"] = weights.P
    if layout == 1:
        for name in ("X", "initial_h", "initial_c"):
            if name in feeds:
                feeds[name] = feeds[name].transpose(1, 0, 2).copy()
    feeds = {name: value.astype(dtype) for name, value in feeds.items()}
    attrs = {"hidden_size": HIDDEN, "direction": direction, "layout": layout}
    return Problem(feeds, attrs)


def _assert_close(actual: tuple[NDArray[Any], ...], expected: tuple[NDArray[Any], ...], atol: float) -> None:
    for name, a, e in zip(OUTPUT_NAMES, actual, expected, strict=True):
        assert a.shape == e.shape, f"{name}: shape {a.shape} != {e.shape}"
        np.testing.assert_allclose(a, e, rtol=0, atol=atol, err_msg=name)


def _max_difference(a: tuple[NDArray[Any], ...], b: tuple[NDArray[Any], ...]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


GRID = [
    pytest.param(
        dict(direction=d, bias=b, states=s, peepholes=p, layout=lay),
        id=f"{d}-{'B' if b else 'noB'}-{'h0c0' if s else 'zero0'}-{'P' if p else 'noP'}-layout{lay}",
    )
    for d, b, s, p, lay in itertools.product(
        ("forward", "reverse", "bidirectional"), (True, False), (True, False), (True, False), (0, 1)
    )
]
DIRECTIONS = ("forward", "reverse", "bidirectional")


class TestAgreesWithEvaluator:
    @pytest.mark.parametrize("options", GRID)
    def test_float64_grid(self, options: dict[str, Any]) -> None:
        problem = _problem(**options)
        out = problem.evaluator()
        assert all(o.dtype == np.float64 for o in out), [o.dtype for o in out]
        _assert_close(problem.reference(), out, ATOL_FLOAT64)

    @pytest.mark.parametrize("direction", DIRECTIONS)
    def test_saturating_weights(self, direction: str) -> None:
        problem = _problem(direction=direction, bias=True, states=True, peepholes=True, layout=0, recipe="saturating")
        _assert_close(problem.reference(), problem.evaluator(), ATOL_FLOAT64)

    @pytest.mark.parametrize("direction", DIRECTIONS)
    def test_float32_inputs(self, direction: str) -> None:
        # The evaluator computes in float32 here; the reference widens the same float32 values.
        problem = _problem(direction=direction, bias=True, states=True, peepholes=True, layout=0, dtype=np.float32)
        out = problem.evaluator()
        assert all(o.dtype == np.float32 for o in out), [o.dtype for o in out]
        _assert_close(problem.reference(), out, ATOL_FLOAT32)


IGNORED = [
    pytest.param({"clip": 0.1}, id="clip"),
    pytest.param({"input_forget": 1}, id="input_forget"),
    pytest.param({"activations": ["HardSigmoid", "Relu", "Softsign"]}, id="activations"),
    pytest.param(
        {
            "activations": ["Sigmoid", "ScaledTanh", "ScaledTanh"],
            "activation_alpha": [2.0, 0.5],
            "activation_beta": [0.5, 3.0],
        },
        id="activation_alpha_beta",
    ),
]


class TestEvaluatorIgnores:
    """Attributes the evaluator accepts but does not apply (onnx 1.23); the reference applies them."""

    @pytest.mark.parametrize("attrs", IGNORED)
    def test_attribute_is_ignored(self, attrs: dict[str, Any]) -> None:
        problem = _problem(direction="forward", bias=True, states=True, peepholes=False, layout=0)
        with_attr, without = problem.evaluator(**attrs), problem.evaluator()
        for name, a, b in zip(OUTPUT_NAMES, with_attr, without, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"evaluator now honours {sorted(attrs)} ({name})")
        # The evaluator still computes the default operator, and the attribute matters to the reference.
        _assert_close(problem.reference(), with_attr, ATOL_FLOAT64)
        assert _max_difference(problem.reference(**attrs), with_attr) > 1e-2

    def test_sequence_lens_is_ignored(self) -> None:
        problem = _problem(direction="bidirectional", bias=True, states=True, peepholes=False, layout=0)
        lens = np.array([SEQ, 2, 0], dtype=np.int32)
        short = Problem({**problem.feeds, "sequence_lens": lens}, problem.attrs)
        with_lens = short.evaluator()
        for name, a, b in zip(OUTPUT_NAMES, with_lens, problem.evaluator(), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"evaluator now honours sequence_lens ({name})")
        # The reference zero-pads Y past each length and keeps initial_h for the empty sequence.
        y, y_h, _ = short.reference()
        assert np.all(y[2:, :, 1] == 0.0) and np.all(y[:, :, 2] == 0.0)
        np.testing.assert_array_equal(y_h[:, 2], problem.feeds["initial_h"][:, 2])
        assert _max_difference(short.reference(), with_lens) > 1e-2
