"""The eleven ONNX activations: formulas, parameter defaults, and how alpha/beta lists are consumed."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from reference import lstm
from reference.activations import ACTIVATIONS, Activation, bind, lookup

# Moderate points plus magnitudes where a naive exp() overflows or underflows.
POINTS = [-1e300, -1e4, -750.0, -50.0, -3.5, -1.0, -0.25, 0.0, 0.25, 1.0, 1.0000001, 3.5, 50.0, 750.0, 1e4, 1e300]


def _sigmoid(x: float) -> float:
    # The numerically stable two-branch logistic: full relative precision on both sides.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _softplus(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


# name -> (alpha, beta, formula(x, alpha, beta)), written from the ONNX operator definitions.
FORMULAS: dict[str, tuple[float, float, Callable[[float, float, float], float]]] = {
    "Relu": (0.0, 0.0, lambda x, a, b: max(x, 0.0)),
    "Tanh": (0.0, 0.0, lambda x, a, b: math.tanh(x)),
    "Sigmoid": (0.0, 0.0, lambda x, a, b: _sigmoid(x)),
    "Affine": (0.5, -2.0, lambda x, a, b: a * x + b),
    "LeakyRelu": (0.3, 0.0, lambda x, a, b: x if x >= 0 else a * x),
    "ThresholdedRelu": (1.0, 0.0, lambda x, a, b: x if x > a else 0.0),
    "ScaledTanh": (1.7, 0.5, lambda x, a, b: a * math.tanh(b * x)),
    "HardSigmoid": (0.2, 0.5, lambda x, a, b: min(max(a * x + b, 0.0), 1.0)),
    "Elu": (0.7, 0.0, lambda x, a, b: x if x >= 0 else a * math.expm1(x)),
    "Softsign": (0.0, 0.0, lambda x, a, b: x / (1.0 + abs(x))),
    "Softplus": (0.0, 0.0, lambda x, a, b: _softplus(x)),
}


# Activations that evaluate exp(-|x|) and so signal (harmless) underflow at extreme magnitudes.
UNDERFLOWING: frozenset[str] = frozenset()  # Sigmoid and Softplus silence the harmless exp underflow


@contextmanager
def strict_floats(**errstate: str) -> Iterator[None]:
    """Floating-point exceptions (those named, default all) and any warning become errors."""
    with np.errstate(**(errstate or {"all": "raise"})), warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_the_eleven_onnx_activations() -> None:
    assert sorted(ACTIVATIONS) == sorted(FORMULAS)


class TestFormulas:
    @pytest.mark.parametrize("name", sorted(FORMULAS))
    def test_matches_formula(self, name: str) -> None:
        alpha, beta, formula = FORMULAS[name]
        x = np.array(POINTS)
        with strict_floats(over="raise", invalid="raise", divide="raise"):
            got = Activation(name, alpha, beta)(x)
        want = np.array([formula(v, alpha, beta) for v in POINTS])
        assert got.dtype == np.float64
        assert got.shape == x.shape
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-300)

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param(
                n,
                marks=pytest.mark.xfail(
                    strict=True,
                    raises=FloatingPointError,
                    reason=f"{n}: exp() of a very negative number signals underflow for |x| >~ 745 "
                    "(harmless, the result is right, but it raises under np.errstate(all='raise'))",
                ),
            )
            if n in UNDERFLOWING
            else n
            for n in sorted(FORMULAS)
        ],
    )
    def test_no_floating_point_exception_at_any_magnitude(self, name: str) -> None:
        alpha, beta, _ = FORMULAS[name]
        with strict_floats():
            got = Activation(name, alpha, beta)(np.array(POINTS))
        assert np.all(np.isfinite(got))

    def test_sigmoid_at_extremes(self) -> None:
        with strict_floats(over="raise", invalid="raise", divide="raise"):
            got = Activation("Sigmoid", 0.0, 0.0)(np.array([-1e300, -1e4, 0.0, 1e4, 1e300]))
        np.testing.assert_array_equal(got, [0.0, 0.0, 0.5, 1.0, 1.0])

    def test_sigmoid_keeps_relative_precision_in_both_tails(self) -> None:
        points = [-700.0, -40.0, -30.0, -20.0, 20.0, 30.0]
        got = Activation("Sigmoid", 0.0, 0.0)(np.array(points))
        np.testing.assert_allclose(got, [_sigmoid(v) for v in points], rtol=1e-15, atol=0)

    def test_thresholded_relu_threshold_is_exclusive(self) -> None:
        got = Activation("ThresholdedRelu", 2.0, 0.0)(np.array([1.999, 2.0, 2.001]))
        np.testing.assert_array_equal(got, [0.0, 0.0, 2.001])

    def test_hard_sigmoid_saturates_at_both_ends(self) -> None:
        got = Activation("HardSigmoid", 0.2, 0.5)(np.array([-2.5, -3.0, 0.0, 2.5, 3.0]))
        np.testing.assert_allclose(got, [0.0, 0.0, 0.5, 1.0, 1.0], rtol=0, atol=1e-16)

    def test_elu_is_continuous_at_zero(self) -> None:
        got = Activation("Elu", 1.0, 0.0)(np.array([-1e-300, 0.0, 1e-300]))
        np.testing.assert_array_equal(got, [-1e-300, 0.0, 1e-300])


class TestDefaults:
    @pytest.mark.parametrize(
        ("name", "alpha", "beta"),
        [
            ("LeakyRelu", 0.01, None),
            ("ThresholdedRelu", 1.0, None),
            ("HardSigmoid", 0.2, 0.5),
            ("Elu", 1.0, None),
            ("Affine", 1.0, 0.0),
            ("ScaledTanh", 1.0, 1.0),
            ("Relu", None, None),
            ("Tanh", None, None),
            ("Sigmoid", None, None),
            ("Softsign", None, None),
            ("Softplus", None, None),
        ],
    )
    def test_spec_defaults(self, name: str, alpha: float | None, beta: float | None) -> None:
        spec = ACTIVATIONS[name]
        assert (spec.default_alpha, spec.default_beta) == (alpha, beta)
        (bound,) = bind([name], None, None)
        assert (bound.alpha, bound.beta) == (alpha or 0.0, beta or 0.0)

    def test_defaults_are_what_the_functions_use(self) -> None:
        x = np.array([-2.0, -0.5, 0.5, 1.0, 2.0])
        (leaky, thresholded, hard, elu, affine, scaled) = bind(
            ["LeakyRelu", "ThresholdedRelu", "HardSigmoid", "Elu", "Affine", "ScaledTanh"], None, None
        )
        np.testing.assert_array_equal(leaky(x), [-0.02, -0.005, 0.5, 1.0, 2.0])
        np.testing.assert_array_equal(thresholded(x), [0.0, 0.0, 0.0, 0.0, 2.0])
        np.testing.assert_allclose(hard(x), [0.1, 0.4, 0.6, 0.7, 0.9], rtol=0, atol=1e-16)
        np.testing.assert_array_equal(elu(x), np.where(x >= 0, x, np.expm1(x)))
        np.testing.assert_array_equal(affine(x), x)
        np.testing.assert_array_equal(scaled(x), np.tanh(x))


class TestLookup:
    @pytest.mark.parametrize("spelling", ["leakyrelu", "LEAKYRELU", "LeakyRelu", "leakyRelu"])
    def test_case_insensitive(self, spelling: str) -> None:
        assert lookup(spelling).name == "LeakyRelu"
        assert bind([spelling], [0.2], None) == [Activation("LeakyRelu", 0.2, 0.0)]


class TestConsumptionOrder:
    """ONNX: alpha/beta values are consumed in the order of the activations, only by functions taking them."""

    def test_functions_without_a_parameter_consume_nothing(self) -> None:
        got = bind(["LeakyRelu", "Tanh", "HardSigmoid"], [0.1, 0.3], [0.7])
        assert got == [
            Activation("LeakyRelu", 0.1, 0.0),
            Activation("Tanh", 0.0, 0.0),
            Activation("HardSigmoid", 0.3, 0.7),
        ]

    def test_alpha_and_beta_lists_advance_independently(self) -> None:
        # Elu takes an alpha but no beta, so ScaledTanh gets the second beta value, Affine the first.
        got = bind(["Affine", "Elu", "ScaledTanh"], [1.5, 2.5, 3.5], [4.5, 5.5])
        assert got == [
            Activation("Affine", 1.5, 4.5),
            Activation("Elu", 2.5, 0.0),
            Activation("ScaledTanh", 3.5, 5.5),
        ]

    def test_beta_only_goes_to_functions_taking_beta(self) -> None:
        got = bind(["ThresholdedRelu", "HardSigmoid"], None, [0.9])
        assert got == [Activation("ThresholdedRelu", 1.0, 0.0), Activation("HardSigmoid", 0.2, 0.9)]

    def test_too_few_values_leave_defaults(self) -> None:
        got = bind(["LeakyRelu", "Elu", "HardSigmoid"], [0.2], None)
        assert got == [
            Activation("LeakyRelu", 0.2, 0.0),
            Activation("Elu", 1.0, 0.0),
            Activation("HardSigmoid", 0.2, 0.5),
        ]

    def test_bidirectional_lists_run_on_into_the_reverse_triple(self) -> None:
        got = bind(["LeakyRelu", "Tanh", "Tanh", "Sigmoid", "Elu", "Tanh"], [0.1, 0.9], None)
        assert got[0] == Activation("LeakyRelu", 0.1, 0.0)
        assert got[4] == Activation("Elu", 0.9, 0.0)

    def test_values_left_over_are_ignored(self) -> None:
        # SEMANTICS.md: left-over values are ignored, as ONNX Runtime does.
        assert bind(["Sigmoid", "Tanh", "Tanh"], [0.5, 0.6], [0.7]) == bind(["Sigmoid", "Tanh", "Tanh"], None, None)

    def test_values_are_converted_to_float(self) -> None:
        (got,) = bind(["Elu"], [np.float32(0.5)], None)
        assert type(got.alpha) is float and got.alpha == 0.5


class TestThroughTheOperator:
    """The operator binds parameters the same way ``bind`` does."""

    @staticmethod
    def _node() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(3)
        return rng.standard_normal((4, 2, 3)), rng.standard_normal((1, 8, 3)), rng.standard_normal((1, 8, 2))

    def test_explicit_defaults_equal_omitted(self) -> None:
        X, W, R = self._node()
        acts = ["HardSigmoid", "Tanh", "Elu"]
        omitted = lstm(X, W, R, activations=acts)
        explicit = lstm(X, W, R, activations=acts, activation_alpha=[0.2, 1.0], activation_beta=[0.5])
        for a, b in zip(omitted, explicit, strict=True):
            np.testing.assert_array_equal(a, b)

    def test_parameters_change_the_result(self) -> None:
        X, W, R = self._node()
        X = X[:1]  # one step, so h's output never feeds back into the cell state
        acts = ["HardSigmoid", "Tanh", "Elu"]
        base = lstm(X, W, R, activations=acts)
        changed = lstm(X, W, R, activations=acts, activation_alpha=[0.2, 0.5])  # only Elu's alpha differs
        assert not np.array_equal(base.Y, changed.Y)
        np.testing.assert_array_equal(base.Y_c, changed.Y_c)

    def test_leftover_values_do_not_change_the_result(self) -> None:
        X, W, R = self._node()
        for a, b in zip(lstm(X, W, R), lstm(X, W, R, activation_alpha=[3.0], activation_beta=[4.0]), strict=True):
            np.testing.assert_array_equal(a, b)
