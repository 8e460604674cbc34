"""The user's trained weights, read safely and grouped into the layers of every ``nn.LSTM`` they hold.

``read_trained`` takes a PyTorch state_dict (``.pt``/``.pth``/``.bin``, read without torch for zip
checkpoints; a legacy one falls back to ``torch.load(weights_only=True)``) or our ``.npz`` bundle
(``reference.weights.save``), refuses NaN and Inf, and converts each LSTM layer to ONNX layout and IOFC
gate order. ``conformance.intent`` holds the layers against a model's LSTM nodes.

``load_weights`` and ``diagnose_weights`` are the old one-stack check's; they go when it does.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from conformance.checkpoint import DEFAULT_MAX_BYTES, NotAZipCheckpointError, read_state_dict, refuse_non_finite
from exporters.errors import BadInputError
from reference.weights import IFGO_TO_IOFC, LMWeights, LSTMWeights, from_arrays, permute_gates

Array = npt.NDArray[Any]

_LSTM_KEY = re.compile(r"^(?P<prefix>.*)weight_ih_l(?P<layer>\d+)$")


@dataclass(frozen=True, eq=False)
class TrainedLayer:
    """One layer (all directions) of a trained ``nn.LSTM``, in ONNX layout and IOFC gate order.

    W ``[D, 4H, I]``, R ``[D, 4H, H]``, B ``[D, 8H] = [bias_ih, bias_hh]`` (``None`` for ``bias=False``).
    ``prefix`` is the module's key prefix (``"encoder.lstm."``, ``""`` for a bare ``nn.LSTM``); ``None``
    for a layer of our ``.npz`` bundle, which has no torch names (and may have peepholes ``P``).
    ``proj_size`` is set for ``nn.LSTM(proj_size=...)``: R is then ``[D, 4H, proj_size]``, no ONNX node.
    """

    prefix: str | None
    layer: int
    direction: str
    hidden_size: int
    input_size: int
    W: Array
    R: Array
    B: Array | None
    P: Array | None = None
    proj_size: int | None = None

    @property
    def label(self) -> str:
        """``encoder.lstm layer 1``; ``layer 1`` for a bare module or the bundle."""
        module = (self.prefix or "").rstrip(".")
        return f"{module} layer {self.layer}" if module else f"layer {self.layer}"

    @property
    def phrase(self) -> str:
        """How messages name it: ``trained layer encoder.lstm layer 1``, ``trained layer 1``."""
        return f"trained layer {self.label}" if (self.prefix or "").rstrip(".") else f"trained {self.label}"

    def torch_name(self, tensor: str, direction: int = 0) -> str | None:
        """The state_dict key of ``tensor`` (``weight_ih``, ``bias_hh``, ...); ``None`` for the bundle."""
        if self.prefix is None:
            return None
        return f"{self.prefix}{tensor}_l{self.layer}{'_reverse' if direction else ''}"

    @property
    def torch_names(self) -> tuple[str, ...]:
        """Every state_dict key this layer was read from."""
        tensors = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.B is not None else [])
        tensors += ["weight_hr"] if self.proj_size is not None else []
        names = (self.torch_name(t, d) for d in range(self.W.shape[0]) for t in tensors)
        return tuple(name for name in names if name is not None)


@dataclass(frozen=True, eq=False)
class Trained:
    """The user's trained weights: every nn.LSTM layer, plus the other floating-point arrays by name."""

    path: Path
    layers: tuple[TrainedLayer, ...]
    others: Mapping[str, Array]


# --- reading, grouping ---------------------------------------------------------------------------


def read_trained(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Trained:
    """The user's trained weights: a PyTorch state_dict (``.pt``/``.pth``/``.bin``) or our ``.npz`` bundle;
    a file declaring more than ``max_bytes`` is refused before its data is read."""
    if path.suffix == ".npz":
        bundle = read_bundle(path, max_bytes=max_bytes)
        lstm = bundle.lstm if isinstance(bundle, LMWeights) else bundle
        others = {} if isinstance(bundle, LSTMWeights) else {k: v for k, v in bundle.arrays().items() if "." not in k}
        layers = tuple(_bundle_layer(k, layer.W, layer.R, layer.B, layer.P) for k, layer in enumerate(lstm.layers))
        return Trained(path, layers, others)
    state = read_checkpoint(path, max_bytes=max_bytes)
    layers = tuple(
        layer
        for key in state
        if (m := _LSTM_KEY.match(key)) and (layer := _torch_layer(path, state, m["prefix"], int(m["layer"])))
    )
    if not layers:
        keys = ", ".join(list(state)[:8]) + (", ..." if len(state) > 8 else "")
        raise BadInputError(f"{path}: no nn.LSTM weights in the state_dict (no '<prefix>weight_ih_l0'; keys: {keys})")
    used = {name for layer in layers for name in layer.torch_names}
    others = {k: v.astype(np.float64) for k, v in state.items() if k not in used and v.dtype.kind == "f"}
    return Trained(path, layers, others)


def read_bundle(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> LSTMWeights | LMWeights:
    """Our ``.npz`` weights bundle (``reference.weights.save``), refused when it holds NaN or Inf."""
    from conformance.checkpoint import read_npz

    _require_file(path)
    arrays = read_npz(path, max_bytes=max_bytes)  # every header checked before any data is read
    refuse_non_finite(path, arrays)
    try:
        return from_arrays(arrays, path)
    except (ValueError, KeyError, IndexError) as exc:  # from_arrays names the file
        raise BadInputError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None


def read_checkpoint(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Array]:
    """A PyTorch checkpoint's tensors, read without importing torch (``conformance.checkpoint``).

    Only a legacy (pre-1.6, non-zip) checkpoint falls back to ``torch.load(weights_only=True)``.
    """
    _require_file(path)
    try:
        state = read_state_dict(path, max_bytes=max_bytes)
    except NotAZipCheckpointError as exc:
        if exc.kind != "legacy":
            raise
        state = _torch_load(path)
    refuse_non_finite(path, state)
    return state


def _require_file(path: Path) -> None:
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    if not path.is_file():
        raise BadInputError(f"{path}: is not a file")


def _torch_load(path: Path) -> dict[str, Array]:
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's first line advises weights_only=False (arbitrary code execution); name the actual refusal.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[0] if lines else "")
        reason = reason.split(". ")[0].rstrip(".") + "."  # not the advice to allowlist globals that follows
        raise BadInputError(
            f"{path}: refused by torch.load(weights_only=True) (not a plain state_dict): {reason}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadInputError(f"{path}: expected a state_dict (a mapping of tensors), got {type(state).__name__}")
    return {k: v.detach().cpu().numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}


def _bundle_layer(k: int, W: Array, R: Array, B: Array, P: Array | None) -> TrainedLayer:
    direction = "bidirectional" if W.shape[0] == 2 else "forward"
    return TrainedLayer(None, k, direction, int(R.shape[2]), int(W.shape[2]), W, R, B, P)


def _torch_layer(path: Path, state: Mapping[str, Array], prefix: str, k: int) -> TrainedLayer | None:
    """Layer ``k`` of the nn.LSTM under ``prefix``; ``None`` when the keys are a GRU's or a plain RNN's."""

    def key(tensor: str, d: int) -> str:
        return f"{prefix}{tensor}_l{k}{'_reverse' if d else ''}"

    w_ih, w_hh, w_hr = state[key("weight_ih", 0)], state.get(key("weight_hh", 0)), state.get(key("weight_hr", 0))
    if w_hh is None or w_ih.ndim != 2 or w_hh.ndim != 2:
        return None
    hidden = int(w_hr.shape[1]) if w_hr is not None and w_hr.ndim == 2 else int(w_hh.shape[1])
    if w_hh.shape[0] != 4 * hidden:  # a GRU has 3H rows, a plain RNN H
        return None
    proj = None if w_hr is None else int(w_hr.shape[0])
    directions = 2 if key("weight_ih", 1) in state else 1
    has_bias = key("bias_ih", 0) in state or key("bias_hh", 0) in state
    expect: dict[str, tuple[int, ...]] = {
        "weight_ih": (4 * hidden, w_ih.shape[1]),
        "weight_hh": (4 * hidden, proj or hidden),
    }
    expect.update({"bias_ih": (4 * hidden,), "bias_hh": (4 * hidden,)} if has_bias else {})
    expect.update({"weight_hr": (proj, hidden)} if proj is not None else {})
    for d, (tensor, shape) in itertools.product(range(directions), expect.items()):
        value = state.get(key(tensor, d))
        if value is None or value.shape != shape:
            got = "is missing" if value is None else f"has shape {list(value.shape)}"
            beside = f"{key('weight_ih', 0)} {list(w_ih.shape)}"
            raise BadInputError(f"{path}: {key(tensor, d)} {got}; an nn.LSTM layer with {beside} needs {list(shape)}")

    def onnx(tensor: str) -> Array:
        return np.stack(
            [permute_gates(state[key(tensor, d)].astype(np.float64), IFGO_TO_IOFC) for d in range(directions)]
        )

    B = np.concatenate([onnx("bias_ih"), onnx("bias_hh")], axis=1) if has_bias else None
    direction = "bidirectional" if directions == 2 else "forward"
    W, R = onnx("weight_ih"), onnx("weight_hh")
    return TrainedLayer(prefix, k, direction, hidden, int(w_ih.shape[1]), W, R, B, proj_size=proj)


def bias_key(weight_key: str) -> str:
    """The key of the bias beside a weight: ``proj.weight`` -> ``proj.bias``, ``proj_weight`` -> ``proj_bias``."""
    return weight_key[: -len("weight")] + "bias" if weight_key.endswith("weight") else weight_key + ".bias"
