"""Model configurations: what a stacked LSTM or an LSTM language model is."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from reference.activations import lookup

DIRECTIONS = ("forward", "reverse", "bidirectional")


@dataclass(frozen=True)
class LSTMConfig:
    """A stack of ONNX LSTM layers, composed the way ``torch.nn.LSTM`` does.

    Layer ``k > 0`` reads the previous layer's output with its directions
    concatenated along the feature axis. The operator attributes
    (``activations``, ``clip``, ``input_forget``) apply to every layer.
    ``batch_first`` selects the [batch, seq, feature] convention for the
    model's inputs and outputs.
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    direction: str = "forward"
    batch_first: bool = False
    peepholes: bool = False
    activations: tuple[str, ...] | None = None
    activation_alpha: tuple[float, ...] | None = None
    activation_beta: tuple[float, ...] | None = None
    clip: float | None = None
    input_forget: int = 0

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction: expected one of {list(DIRECTIONS)}, got {self.direction!r}")
        if self.activations is not None:
            expected = 3 * self.num_directions
            if len(self.activations) != expected:
                raise ValueError(
                    f"activations: expected {expected} names (f, g, h per direction), got {len(self.activations)}"
                )
            for name in self.activations:
                lookup(name)
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip: expected a positive threshold, got {self.clip!r}")
        if self.input_forget not in (0, 1):
            raise ValueError(f"input_forget: expected 0 or 1, got {self.input_forget!r}")

    @property
    def num_directions(self) -> int:
        return 2 if self.direction == "bidirectional" else 1

    @property
    def output_size(self) -> int:
        """Features per time step of the stack's output."""
        return self.num_directions * self.hidden_size

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.output_size

    @property
    def operator_attributes(self) -> dict[str, Any]:
        """The ONNX ``LSTM`` attributes every layer of this stack carries (beyond the defaults)."""
        attrs: dict[str, Any] = {"hidden_size": self.hidden_size, "direction": self.direction}
        if self.activations is not None:
            attrs["activations"] = list(self.activations)
        if self.activation_alpha is not None:
            attrs["activation_alpha"] = list(self.activation_alpha)
        if self.activation_beta is not None:
            attrs["activation_beta"] = list(self.activation_beta)
        if self.clip is not None:
            attrs["clip"] = self.clip
        if self.input_forget:
            attrs["input_forget"] = self.input_forget
        return attrs

    def torch_expressible(self) -> str | None:
        """Why ``torch.nn.LSTM`` cannot express this configuration, or ``None`` if it can."""
        reasons = []
        if self.direction == "reverse":
            reasons.append("reverse-only direction")
        if self.peepholes:
            reasons.append("peephole connections")
        if self.clip is not None:
            reasons.append("cell clip")
        if self.input_forget:
            reasons.append("input_forget")
        if self.activations is not None and any(
            lookup(a).name != d for a, d in zip(self.activations, ("Sigmoid", "Tanh", "Tanh") * 2, strict=False)
        ):
            reasons.append("non-default activations")
        if self.activation_alpha or self.activation_beta:
            reasons.append("activation alpha/beta")
        return None if not reasons else "torch.nn.LSTM has no " + ", ".join(reasons)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("activations", "activation_alpha", "activation_beta"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LSTMConfig:
        kwargs = dict(data)
        for key in ("activations", "activation_alpha", "activation_beta"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)


@dataclass(frozen=True)
class LMConfig:
    """Token embedding -> LSTM stack -> linear -> log-softmax."""

    vocab_size: int
    lstm: LSTMConfig

    def __post_init__(self) -> None:
        if not isinstance(self.vocab_size, int) or self.vocab_size < 2:
            raise ValueError(f"vocab_size: expected an integer >= 2, got {self.vocab_size!r}")

    @property
    def embed_size(self) -> int:
        return self.lstm.input_size

    def to_dict(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "lstm": self.lstm.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMConfig:
        return cls(vocab_size=data["vocab_size"], lstm=LSTMConfig.from_dict(data["lstm"]))
