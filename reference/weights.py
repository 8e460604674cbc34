"""The canonical weight bundle, in ONNX layout, and the one place that converts it.

ONNX layout, per layer: ``W [D, 4H, I]``, ``R [D, 4H, H]`` with gate order
IOFC; ``B [D, 8H] = [Wb, Rb]``; ``P [D, 3H] = [Pi, Po, Pf]``. PyTorch's
``nn.LSTM`` uses gate order IFGO with separate ``bias_ih``/``bias_hh``; the
conversion between the two lives here and nowhere else.

Recipes (deterministic from a seed, NumPy's PCG64):

- ``torch-default``: every LSTM tensor ~ U(-1/sqrt(H), 1/sqrt(H)), as
  ``nn.LSTM.reset_parameters`` does; embedding ~ N(0, 1) as ``nn.Embedding``;
  output projection ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as ``nn.Linear``.
- ``saturating``: every LSTM tensor ~ U(-4, 4) whatever the size, so most gate
  pre-activations lie far outside [-4, 4] and the sigmoids/tanhs saturate:
  the regime where float32 rounding and approximate activations diverge.

Generated values are rounded to float32-representable numbers (still stored
as float64), so a float32 model holds exactly the weights the reference
uses: any difference a runtime shows is its own, not weight rounding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference.config import LMConfig, LSTMConfig

Array = NDArray[np.float64]

# Block permutations between the two gate orders (each block is H rows).
IOFC_TO_IFGO = (0, 2, 3, 1)  # torch block k comes from ONNX block IOFC_TO_IFGO[k]
IFGO_TO_IOFC = (0, 3, 1, 2)  # ONNX block k comes from torch block IFGO_TO_IOFC[k]

RECIPES = ("torch-default", "saturating")
FORMAT_VERSION = 1


def permute_gates(array: ArrayLike, order: tuple[int, ...], axis: int = 0) -> Array:
    """Reorder the four gate blocks of ``array`` along ``axis``."""
    a = np.asarray(array)
    blocks = np.split(a, 4, axis=axis)
    return np.concatenate([blocks[k] for k in order], axis=axis)


@dataclass(frozen=True, eq=False)
class LayerWeights:
    """One ONNX LSTM node's initializers (all directions of one layer)."""

    W: Array
    R: Array
    B: Array
    P: Array | None = None

    @property
    def num_directions(self) -> int:
        return int(self.W.shape[0])

    @property
    def hidden_size(self) -> int:
        return int(self.R.shape[2])

    @property
    def input_size(self) -> int:
        return int(self.W.shape[2])

    def arrays(self) -> dict[str, Array]:
        out = {"W": self.W, "R": self.R, "B": self.B}
        if self.P is not None:
            out["P"] = self.P
        return out


@dataclass(frozen=True, eq=False)
class LSTMWeights:
    """All layers of a stack, in ONNX layout."""

    layers: tuple[LayerWeights, ...]

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("LSTMWeights: at least one layer is required")
        first = self.layers[0]
        with_p = [k for k, layer in enumerate(self.layers) if layer.P is not None]
        if with_p and len(with_p) != len(self.layers):
            raise ValueError(f"peepholes (P) on layer(s) {with_p} only: every layer of a stack has P or none does")
        for k, layer in enumerate(self.layers):
            d, h = first.num_directions, first.hidden_size
            want_in = first.input_size if k == 0 else d * h
            expect = {"W": (d, 4 * h, want_in), "R": (d, 4 * h, h), "B": (d, 8 * h)}
            if layer.P is not None:
                expect["P"] = (d, 3 * h)
            for name, shape in expect.items():
                actual = getattr(layer, name).shape
                if actual != shape:
                    raise ValueError(f"layer {k} {name}: expected shape {list(shape)}, got {list(actual)}")

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_directions(self) -> int:
        return self.layers[0].num_directions

    @property
    def hidden_size(self) -> int:
        return self.layers[0].hidden_size

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def peepholes(self) -> bool:
        return self.layers[0].P is not None

    def arrays(self, prefix: str = "") -> dict[str, Array]:
        """Flat ``{"lstm.0.W": ...}`` mapping, the on-disk and digest form."""
        return {
            f"{prefix}lstm.{k}.{name}": value
            for k, layer in enumerate(self.layers)
            for name, value in layer.arrays().items()
        }

    def digest(self) -> str:
        return _digest(self.arrays())

    def matches(self, config: LSTMConfig) -> str | None:
        """Why these weights do not fit ``config``, or ``None`` if they do."""
        got = (self.input_size, self.hidden_size, self.num_layers, self.num_directions, self.peepholes)
        want = (config.input_size, config.hidden_size, config.num_layers, config.num_directions, config.peepholes)
        if got == want:
            return None
        names = ("input_size", "hidden_size", "num_layers", "num_directions", "peepholes")
        diffs = [f"{n} {g} (config {w})" for n, g, w in zip(names, got, want, strict=True) if g != w]
        return "weights do not match the config: " + ", ".join(diffs)


@dataclass(frozen=True, eq=False)
class LMWeights:
    """Embedding [V, E], LSTM stack, output projection [V, D*H] and bias [V]."""

    embedding: Array
    lstm: LSTMWeights
    proj_weight: Array
    proj_bias: Array

    def matches(self, config: LMConfig) -> str | None:
        """Why these weights do not fit ``config``, or ``None`` if they do."""
        problem = self.lstm.matches(config.lstm)
        if problem:
            return problem
        if self.embedding.shape[0] != config.vocab_size:
            return f"weights do not match the config: vocab_size {self.embedding.shape[0]} (config {config.vocab_size})"
        want = {
            "embedding": (config.vocab_size, config.embed_size),
            "proj_weight": (config.vocab_size, config.lstm.output_size),
            "proj_bias": (config.vocab_size,),
        }
        for name, shape in want.items():
            actual = getattr(self, name).shape
            if actual != shape:
                return f"weights do not match the config: {name} has shape {list(actual)}, config needs {list(shape)}"
        return None

    def arrays(self) -> dict[str, Array]:
        out = {"embedding": self.embedding, "proj_weight": self.proj_weight, "proj_bias": self.proj_bias}
        out.update(self.lstm.arrays())
        return out

    def digest(self) -> str:
        return _digest(self.arrays())


def _digest(arrays: Mapping[str, Array]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name], dtype=np.float64)
        h.update(f"{name}:{list(a.shape)};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --- recipes -------------------------------------------------------------------------------------


def generate(config: LSTMConfig, *, seed: int, recipe: str = "torch-default") -> LSTMWeights:
    """Deterministic weights for ``config`` from ``seed`` and a named recipe."""
    return _generate_lstm(config, np.random.default_rng(seed), recipe)


def generate_lm(config: LMConfig, *, seed: int, recipe: str = "torch-default") -> LMWeights:
    """Deterministic language-model weights; the recipe applies to the LSTM stack."""
    rng = np.random.default_rng(seed)
    lstm_weights = _generate_lstm(config.lstm, rng, recipe)
    fan_in = config.lstm.output_size
    bound = 1.0 / np.sqrt(fan_in)
    return LMWeights(
        embedding=_f32(rng.standard_normal((config.vocab_size, config.embed_size))),
        lstm=lstm_weights,
        proj_weight=_f32(rng.uniform(-bound, bound, (config.vocab_size, fan_in))),
        proj_bias=_f32(rng.uniform(-bound, bound, config.vocab_size)),
    )


def _f32(array: Array) -> Array:
    return array.astype(np.float32).astype(np.float64)


def _generate_lstm(config: LSTMConfig, rng: np.random.Generator, recipe: str) -> LSTMWeights:
    if recipe == "torch-default":
        bound = 1.0 / np.sqrt(config.hidden_size)
    elif recipe == "saturating":
        bound = 4.0
    else:
        raise ValueError(f"unknown weights recipe {recipe!r}; expected one of: {', '.join(RECIPES)}")
    d, h = config.num_directions, config.hidden_size
    layers = []
    for k in range(config.num_layers):
        i = config.layer_input_size(k)
        layers.append(
            LayerWeights(
                W=_f32(rng.uniform(-bound, bound, (d, 4 * h, i))),
                R=_f32(rng.uniform(-bound, bound, (d, 4 * h, h))),
                B=_f32(rng.uniform(-bound, bound, (d, 8 * h))),
                P=_f32(rng.uniform(-bound, bound, (d, 3 * h))) if config.peepholes else None,
            )
        )
    return LSTMWeights(tuple(layers))


# --- PyTorch layout ------------------------------------------------------------------------------


def _suffix(direction: int) -> str:
    return "_reverse" if direction == 1 else ""


def to_torch_state_dict(weights: LSTMWeights, prefix: str = "") -> dict[str, Array]:
    """``nn.LSTM`` state_dict entries (IFGO, bias_ih/bias_hh) as NumPy arrays."""
    if weights.peepholes:
        raise ValueError("to_torch_state_dict: torch.nn.LSTM has no peephole weights (P)")
    out: dict[str, Array] = {}
    for k, layer in enumerate(weights.layers):
        h4 = 4 * layer.hidden_size
        for d in range(layer.num_directions):
            s = f"_l{k}{_suffix(d)}"
            out[f"{prefix}weight_ih{s}"] = permute_gates(layer.W[d], IOFC_TO_IFGO)
            out[f"{prefix}weight_hh{s}"] = permute_gates(layer.R[d], IOFC_TO_IFGO)
            out[f"{prefix}bias_ih{s}"] = permute_gates(layer.B[d, :h4], IOFC_TO_IFGO)
            out[f"{prefix}bias_hh{s}"] = permute_gates(layer.B[d, h4:], IOFC_TO_IFGO)
    return out


def _numpy(value: Any) -> Array:
    if hasattr(value, "detach"):  # a torch tensor; no torch import needed
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def from_torch_state_dict(state_dict: Mapping[str, Any], prefix: str = "") -> LSTMWeights:
    """Canonical weights from an ``nn.LSTM`` state_dict (tensors or arrays).

    The number of layers and directions is read off the keys; a missing bias
    counts as zero (``nn.LSTM(bias=False)``). ``proj_size`` is not supported.
    """
    keys = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if any(k.startswith("weight_hr_l") for k in keys):
        raise ValueError("from_torch_state_dict: LSTMs with proj_size are not supported (ONNX LSTM has no projection)")
    num_layers = 0
    while f"weight_ih_l{num_layers}" in keys:
        num_layers += 1
    if num_layers == 0:
        raise ValueError(
            f"from_torch_state_dict: no 'weight_ih_l0' under prefix {prefix!r}; keys: {sorted(state_dict)[:8]}"
        )
    num_dir = 2 if "weight_ih_l0_reverse" in keys else 1
    layers = []
    for k in range(num_layers):
        ws, rs, bs = [], [], []
        for d in range(num_dir):
            s = f"_l{k}{_suffix(d)}"
            w_ih, w_hh = _numpy(keys[f"weight_ih{s}"]), _numpy(keys[f"weight_hh{s}"])
            zeros = np.zeros(w_ih.shape[0])
            b_ih = _numpy(keys[f"bias_ih{s}"]) if f"bias_ih{s}" in keys else zeros
            b_hh = _numpy(keys[f"bias_hh{s}"]) if f"bias_hh{s}" in keys else zeros
            ws.append(permute_gates(w_ih, IFGO_TO_IOFC))
            rs.append(permute_gates(w_hh, IFGO_TO_IOFC))
            bs.append(np.concatenate([permute_gates(b_ih, IFGO_TO_IOFC), permute_gates(b_hh, IFGO_TO_IOFC)]))
        layers.append(LayerWeights(W=np.stack(ws), R=np.stack(rs), B=np.stack(bs)))
    return LSTMWeights(tuple(layers))


# --- files ---------------------------------------------------------------------------------------


def save(path: str | Path, weights: LSTMWeights | LMWeights) -> None:
    """Write weights to an ``.npz`` file (no pickle); the kind is recorded in the file."""
    kind = "lm" if isinstance(weights, LMWeights) else "lstm"
    meta = json.dumps({"format": "lstm-conformance-weights", "version": FORMAT_VERSION, "kind": kind})
    arrays: dict[str, Any] = {name: np.asarray(a, dtype=np.float64) for name, a in weights.arrays().items()}
    arrays["__meta__"] = np.array(meta)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load(path: str | Path) -> LSTMWeights | LMWeights:
    """Read weights written by :func:`save`; never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a weights file ({exc})") from None
    return from_arrays(arrays, path)


def from_arrays(arrays: Mapping[str, Array], path: str | Path) -> LSTMWeights | LMWeights:
    """The weights in the arrays of a file written by :func:`save` (read by the caller, under its budget)."""
    arrays = dict(arrays)
    for name, value in arrays.items():
        if name != "__meta__" and (value.dtype.kind not in "fiu" or value.ndim == 0):
            shape = list(value.shape)
            raise ValueError(f"{path}: corrupt weights file ({name!r} is a {value.dtype} array of shape {shape})")
    if "__meta__" not in arrays:
        raise ValueError(f"{path}: not an lstm-conformance weights file (no __meta__ entry)")
    try:
        meta = json.loads(str(arrays.pop("__meta__")))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt weights file (__meta__ is not JSON: {exc.msg})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: not an lstm-conformance weights file (__meta__ is {meta!r})")
    if (
        meta.get("format") != "lstm-conformance-weights"
        or meta.get("version") != FORMAT_VERSION
        or meta.get("kind") not in ("lstm", "lm")
    ):
        raise ValueError(f"{path}: unsupported weights format {meta}")
    try:
        lstm_weights = _lstm_from_arrays(arrays, path)
        if meta["kind"] == "lm":
            return LMWeights(arrays["embedding"], lstm_weights, arrays["proj_weight"], arrays["proj_bias"])
    except KeyError as exc:
        raise ValueError(f"{path}: corrupt weights file (missing array {exc.args[0]!r})") from None
    return lstm_weights


def _lstm_from_arrays(arrays: Mapping[str, Array], path: str | Path) -> LSTMWeights:
    layers = []
    k = 0
    while f"lstm.{k}.W" in arrays:
        layers.append(
            LayerWeights(
                W=arrays[f"lstm.{k}.W"], R=arrays[f"lstm.{k}.R"], B=arrays[f"lstm.{k}.B"], P=arrays.get(f"lstm.{k}.P")
            )
        )
        k += 1
    if not layers:
        raise ValueError(f"{path}: no LSTM layers in weights file")
    return LSTMWeights(tuple(layers))


def lm_to_torch_state_dict(weights: LMWeights) -> dict[str, Array]:
    """State dict of the ``embedding``/``lstm``/``proj`` language-model module."""
    out = {"embedding.weight": weights.embedding, "proj.weight": weights.proj_weight, "proj.bias": weights.proj_bias}
    out.update(to_torch_state_dict(weights.lstm, prefix="lstm."))
    return out


def lm_from_torch_state_dict(state_dict: Mapping[str, Any]) -> LMWeights:
    """Inverse of :func:`lm_to_torch_state_dict`."""
    return LMWeights(
        embedding=_numpy(state_dict["embedding.weight"]),
        lstm=from_torch_state_dict(state_dict, prefix="lstm."),
        proj_weight=_numpy(state_dict["proj.weight"]),
        proj_bias=_numpy(state_dict["proj.bias"]),
    )
