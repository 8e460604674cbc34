"""Small helpers for the hand-built graphs: deterministic LSTM weights and terse onnx.helper wrappers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

import reference

F32 = np.float32
OPSET = 17


@dataclass(frozen=True)
class LstmWeights:
    """ONNX layout (gates i, o, f, c): W [D, 4H, I], R [D, 4H, H], B [D, 8H], P [D, 3H] or None."""

    W: NDArray[np.float32]
    R: NDArray[np.float32]
    B: NDArray[np.float32]
    P: NDArray[np.float32] | None = None

    @property
    def hidden(self) -> int:
        return int(self.R.shape[-1])


def lstm_weights(seed: int, input_size: int, hidden: int, directions: int = 1, peepholes: bool = False) -> LstmWeights:
    """Weights as nn.LSTM initialises them (uniform in +-1/sqrt(H)), from ``seed``."""
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden)

    def draw(*shape: int) -> NDArray[np.float32]:
        return rng.uniform(-k, k, size=shape).astype(F32)

    W = draw(directions, 4 * hidden, input_size)
    R = draw(directions, 4 * hidden, hidden)
    B = draw(directions, 8 * hidden)
    P = draw(directions, 3 * hidden) if peepholes else None
    return LstmWeights(W, R, B, P)


def dense(seed: int, rows: int, cols: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """A Linear layer as ``x @ w + b`` with ``w`` [rows, cols]."""
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(rows)
    return rng.uniform(-k, k, size=(rows, cols)).astype(F32), rng.uniform(-k, k, size=cols).astype(F32)


def run_lstm(x: NDArray[Any], w: LstmWeights, **kwargs: Any) -> reference.LSTMOutput:
    """``reference.lstm`` (float64) with ``w``'s tensors."""
    return reference.lstm(x, w.W, w.R, w.B, P=w.P, hidden_size=w.hidden, **kwargs)


def sigmoid(x: NDArray[Any]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def tensor(name: str, value: Any, dtype: Any = F32) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def ints(name: str, values: int | list[int]) -> Any:
    return tensor(name, values, np.int64)


def const(name: str, value: Any, dtype: Any = F32) -> Any:
    """A ``Constant`` node whose output is ``name`` (how many production graphs carry their weights)."""
    from onnx import helper

    return helper.make_node("Constant", [], [name], name=f"const/{name}", value=tensor(name, value, dtype))


def node(op: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any) -> Any:
    from onnx import helper

    return helper.make_node(op, inputs, outputs, name=name, **attrs)


def value(name: str, shape: list[int | str | None], elem: int | None = None) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT if elem is None else elem, shape)


def model(graph: Any, functions: list[Any] | None = None, opset: int = OPSET) -> Any:
    from onnx import helper

    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="lstm-conformance-corpus",
        functions=functions or [],
    )
