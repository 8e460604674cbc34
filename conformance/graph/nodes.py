"""What the graph layer knows about one LSTM node: where it sits, how it is configured, what it reads.

These records are built once by ``find_lstm_nodes`` from the model as the user wrote it (function calls and
all) and flow unchanged through capture, the reference and the verdicts, so every message names a node the
same way.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INPUT_ROLES",
    "OUTPUT_ROLES",
    "Enclosing",
    "LSTMAttributes",
    "LSTMNode",
    "input_rank",
]

# The operator's inputs and outputs, in the spec's order; a node's k-th input plays INPUT_ROLES[k].
INPUT_ROLES = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
OUTPUT_ROLES = ("Y", "Y_h", "Y_c")
_RANKS = {"X": 3, "W": 3, "R": 3, "B": 2, "sequence_lens": 1, "initial_h": 3, "initial_c": 3, "P": 2}
_RANKS.update({"Y": 4, "Y_h": 3, "Y_c": 3})

DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "tanh")


def input_rank(role: str) -> int:
    """The rank the spec gives the tensor playing ``role`` (an input or an output)."""
    return _RANKS[role]


@dataclass(frozen=True)
class LSTMAttributes:
    """The node's attributes with the spec's names; ``None`` where the node leaves one unset."""

    hidden_size: int | None = None
    direction: str = "forward"
    activations: tuple[str, ...] | None = None
    activation_alpha: tuple[float, ...] | None = None
    activation_beta: tuple[float, ...] | None = None
    clip: float | None = None
    input_forget: int = 0
    layout: int = 0

    @property
    def num_directions(self) -> int:
        return 2 if self.direction == "bidirectional" else 1

    @property
    def default_activations(self) -> bool:
        """Whether the gates use the spec's Sigmoid/Tanh/Tanh (names compare case-insensitively)."""
        if self.activation_alpha or self.activation_beta:
            return False
        if self.activations is None:
            return True
        return tuple(a.lower() for a in self.activations) == DEFAULT_ACTIVATIONS * self.num_directions

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``reference.lstm``."""
        return {
            "hidden_size": self.hidden_size,
            "direction": self.direction,
            "activations": self.activations,
            "activation_alpha": self.activation_alpha,
            "activation_beta": self.activation_beta,
            "clip": self.clip,
            "input_forget": self.input_forget,
            "layout": self.layout,
        }

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> LSTMAttributes:
        """Build from attribute values already read from the proto (``onnx.helper.get_attribute_value``)."""
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown LSTM attributes {unknown}")

        def text(value: object) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        def floats(value: object) -> tuple[float, ...] | None:
            return None if value is None else tuple(_num(v) for v in _seq(value))

        hidden = values.get("hidden_size")
        clip = values.get("clip")
        activations = values.get("activations")
        return cls(
            hidden_size=None if hidden is None else int(_num(hidden)),
            direction=text(values.get("direction", "forward")),
            activations=None if activations is None else tuple(text(a) for a in _seq(activations)),
            activation_alpha=floats(values.get("activation_alpha")),
            activation_beta=floats(values.get("activation_beta")),
            clip=None if clip is None else float(_num(clip)),
            input_forget=int(_num(values.get("input_forget", 0))),
            layout=int(_num(values.get("layout", 0))),
        )


def _seq(value: object) -> Sequence[Any]:
    if hasattr(value, "tolist"):  # a NumPy array from the reference evaluator
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ValueError(f"expected a list attribute, got {value!r}")
    return value


def _num(value: object) -> float:
    if not isinstance(value, numbers.Real):  # NumPy scalars too: the reference evaluator passes np.float32
        raise ValueError(f"expected a number attribute, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Enclosing:
    """One control-flow level around a node: an If branch, a Loop or Scan body, or a function call.

    ``kind`` is the op type (``If``, ``Loop``, ``Scan``, another op with a graph attribute) or
    ``"function"``; ``path`` is that node's own path; ``branch`` the graph attribute the node sits in
    (``then_branch``, ``else_branch``, ``body``), or for a call the function's ``domain:name``.
    """

    kind: str
    path: str
    branch: str

    @property
    def is_loop(self) -> bool:
        """Whether the body runs once per iteration (Loop, Scan): captures gain a leading iteration axis."""
        return self.kind in ("Loop", "Scan")


@dataclass(frozen=True)
class LSTMNode:
    """One LSTM node of a model, wherever it sits.

    ``inputs``/``outputs`` map the roles the node fills (``X``, ``W``, ... ``Y_c``) to value names in the
    node's own scope (a function body's formal names inside a function); roles it leaves empty are absent.
    ``enclosing`` runs outermost first. ``dtype`` is the NumPy name of the node's ``T`` (``"float32"``),
    ``None`` when type inference could not tell. ``index`` is the node's position in ``find_lstm_nodes``.
    """

    path: str
    name: str
    index: int
    attributes: LSTMAttributes
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    enclosing: tuple[Enclosing, ...]
    dtype: str | None

    @property
    def in_loop(self) -> bool:
        """Whether the node can run several times per inference (it sits in a Loop or Scan body)."""
        return any(e.is_loop for e in self.enclosing)
