"""``reference.lstm`` called with an LSTM node's inputs by role and its parsed attributes.

Its own module so the evaluator's LSTM op and the per-node reference share it without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy.typing as npt

from conformance.graph.nodes import LSTMAttributes
from reference import LSTMOutput, lstm

__all__ = ["lstm_call"]


def lstm_call(inputs: Mapping[str, npt.ArrayLike | None], attributes: LSTMAttributes) -> LSTMOutput:
    """``reference.lstm`` on inputs by role (``X``, ``W``, ...; absent or None where unused)."""
    X, W, R = inputs["X"], inputs["W"], inputs["R"]
    if X is None or W is None or R is None:
        raise ValueError("an LSTM node needs X, W and R")
    get = inputs.get
    return lstm(
        X,
        W,
        R,
        get("B"),
        get("sequence_lens"),
        get("initial_h"),
        get("initial_c"),
        get("P"),
        hidden_size=attributes.hidden_size,
        direction=attributes.direction,
        activations=attributes.activations,
        activation_alpha=attributes.activation_alpha,
        activation_beta=attributes.activation_beta,
        clip=attributes.clip,
        input_forget=attributes.input_forget,
        layout=attributes.layout,
    )
