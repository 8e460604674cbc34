"""The eleven activation functions the ONNX RNN operators accept.

Each entry carries the defaults of the corresponding ONNX operator for
``alpha`` and ``beta``; ``None`` means the function takes no such parameter.
ScaledTanh and Affine were experimental ONNX operators without documented
defaults; we use the identity-preserving values (alpha=1, beta=1 for
ScaledTanh, i.e. plain tanh; alpha=1, beta=0 for Affine, i.e. identity).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def _sigmoid(x: Array, alpha: float, beta: float) -> Array:
    # 1 / (1 + exp(-x)) keeps full relative precision in both tails; for x < -709
    # exp(-x) overflows to inf and the result is 0.0, the correctly rounded value
    # (above x = 745 it underflows to 0 and the result is 1.0, likewise right).
    with np.errstate(over="ignore", under="ignore"):
        e = np.negative(x)
        np.exp(e, out=e)
    e += 1.0
    np.reciprocal(e, out=e)
    return e


def _tanh(x: Array, alpha: float, beta: float) -> Array:
    return np.tanh(x)


def _relu(x: Array, alpha: float, beta: float) -> Array:
    return np.maximum(x, 0.0)


def _affine(x: Array, alpha: float, beta: float) -> Array:
    return alpha * x + beta


def _leaky_relu(x: Array, alpha: float, beta: float) -> Array:
    return np.where(x >= 0.0, x, alpha * x)


def _thresholded_relu(x: Array, alpha: float, beta: float) -> Array:
    return np.where(x > alpha, x, 0.0)


def _scaled_tanh(x: Array, alpha: float, beta: float) -> Array:
    return alpha * np.tanh(beta * x)


def _hard_sigmoid(x: Array, alpha: float, beta: float) -> Array:
    return np.clip(alpha * x + beta, 0.0, 1.0)


def _elu(x: Array, alpha: float, beta: float) -> Array:
    return np.where(x >= 0.0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def _softsign(x: Array, alpha: float, beta: float) -> Array:
    return x / (1.0 + np.abs(x))


def _softplus(x: Array, alpha: float, beta: float) -> Array:
    # log(1 + exp(x)) without overflow for large x; exp underflow for x < -745 gives the right 0.
    with np.errstate(under="ignore"):
        return np.logaddexp(0.0, x)


@dataclass(frozen=True)
class ActivationSpec:
    """One activation function and the ONNX defaults of its parameters."""

    name: str
    fn: Callable[[Array, float, float], Array]
    default_alpha: float | None
    default_beta: float | None


ACTIVATIONS: dict[str, ActivationSpec] = {
    spec.name: spec
    for spec in (
        ActivationSpec("Relu", _relu, None, None),
        ActivationSpec("Tanh", _tanh, None, None),
        ActivationSpec("Sigmoid", _sigmoid, None, None),
        ActivationSpec("Affine", _affine, 1.0, 0.0),
        ActivationSpec("LeakyRelu", _leaky_relu, 0.01, None),
        ActivationSpec("ThresholdedRelu", _thresholded_relu, 1.0, None),
        ActivationSpec("ScaledTanh", _scaled_tanh, 1.0, 1.0),
        ActivationSpec("HardSigmoid", _hard_sigmoid, 0.2, 0.5),
        ActivationSpec("Elu", _elu, 1.0, None),
        ActivationSpec("Softsign", _softsign, None, None),
        ActivationSpec("Softplus", _softplus, None, None),
    )
}

_BY_LOWER = {name.lower(): spec for name, spec in ACTIVATIONS.items()}


@dataclass(frozen=True)
class Activation:
    """An activation function bound to its alpha and beta."""

    name: str
    alpha: float
    beta: float

    def __call__(self, x: Array) -> Array:
        return ACTIVATIONS[self.name].fn(x, self.alpha, self.beta)


def lookup(name: str) -> ActivationSpec:
    """Find an activation by name; ONNX names are matched case-insensitively."""
    spec = _BY_LOWER.get(name.lower())
    if spec is None:
        known = ", ".join(ACTIVATIONS)
        raise ValueError(f"unknown activation {name!r}; expected one of: {known}")
    return spec


def bind(
    names: Sequence[str],
    alphas: Sequence[float] | None,
    betas: Sequence[float] | None,
) -> list[Activation]:
    """Bind activation names to their parameters.

    The ONNX spec says alpha/beta values "are consumed in the order of
    activation functions": each function that takes an alpha takes the next
    unused value of ``activation_alpha`` (likewise beta), and a function that
    takes none consumes nothing. A function left without a value gets its
    operator's default. Values left over are ignored, as ONNX Runtime does.
    """
    alpha_values = list(alphas or ())
    beta_values = list(betas or ())
    bound: list[Activation] = []
    for name in names:
        spec = lookup(name)
        alpha = spec.default_alpha
        beta = spec.default_beta
        if alpha is not None and alpha_values:
            alpha = float(alpha_values.pop(0))
        if beta is not None and beta_values:
            beta = float(beta_values.pop(0))
        bound.append(Activation(spec.name, 0.0 if alpha is None else alpha, 0.0 if beta is None else beta))
    return bound
