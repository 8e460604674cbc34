"""The user's trained weights: loaded safely, then held against the weights an exported model carries.

``--weights`` takes a ``.npz`` written by ``reference.weights.save`` or a PyTorch checkpoint (a state_dict,
loaded with ``weights_only=True``). ``diagnose_weights`` names how the model's LSTM initializers differ:
gate order, swapped directions, a dropped bias half, float16 rounding, or single values.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from conformance.checkpoint import refuse_non_finite
from exporters.errors import BadInputError
from exporters.importers import ImportedModel
from reference.config import LSTMConfig
from reference.weights import (
    IFGO_TO_IOFC,
    IOFC_TO_IFGO,
    LMWeights,
    LSTMWeights,
    from_torch_state_dict,
    load,
    permute_gates,
)


def load_weights(path: Path, imported: ImportedModel) -> LSTMWeights | LMWeights:
    """The user's trained weights: a weights ``.npz`` or a PyTorch checkpoint (``weights_only=True``)."""
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    if path.suffix == ".npz":
        try:
            weights = load(path)
        except BadInputError:
            raise
        except (ValueError, OSError, KeyError, EOFError) as exc:  # reference.weights.load names the file
            raise BadInputError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
        refuse_non_finite(path, weights.arrays())
        return _same_kind(path, weights, imported)
    state = _read_state_dict(path)
    prefixes = sorted({k[: -len("weight_ih_l0")] for k in state if k.endswith("weight_ih_l0")})
    if len(prefixes) != 1:
        raise BadInputError(f"{path}: expected one nn.LSTM in the checkpoint, found {len(prefixes)} ({prefixes})")
    lstm = from_torch_state_dict(state, prefix=prefixes[0])
    if not isinstance(imported.weights, LMWeights):
        return lstm
    vocab = imported.weights.embedding.shape[0]
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
    # The projection is a [V, D*H] weight with a [V] bias beside it; the embedding is a [V, E] table
    # without one. When E == D*H the shapes alone cannot tell them apart; the bias can.
    proj = [
        k for k, v in arrays.items()
        if v.shape == imported.weights.proj_weight.shape and arrays.get(_bias_key(k), np.empty(0)).shape == (vocab,)
    ]  # fmt: skip
    embedding = [k for k, v in arrays.items() if v.shape == imported.weights.embedding.shape and k not in proj]
    if len(proj) != 1 or len(embedding) != 1:
        raise BadInputError(
            f"{path}: cannot tell the embedding [{vocab}, E] and the projection [{vocab}, D*H] (with a [{vocab}] bias) "
            f"apart in the checkpoint (candidates: embedding {embedding}, projection {proj}); "
            "save the weights with reference.weights.save and pass the .npz"
        )
    return LMWeights(arrays[embedding[0]], lstm, arrays[proj[0]], arrays[_bias_key(proj[0])])


def _read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A PyTorch checkpoint's tensors, read without importing torch (``conformance.checkpoint``).

    Only a legacy (pre-1.6, non-zip) checkpoint falls back to ``torch.load(weights_only=True)``.
    """
    from conformance.checkpoint import DEFAULT_MAX_BYTES, NotAZipCheckpointError, read_state_dict

    try:
        state = read_state_dict(path, max_bytes=DEFAULT_MAX_BYTES)
    except NotAZipCheckpointError as exc:
        if exc.kind != "legacy":
            raise
        state = _torch_load(path)
    refuse_non_finite(path, {k: v for k, v in state.items() if v.dtype.kind == "f"})
    return state


def _torch_load(path: Path) -> dict[str, np.ndarray]:
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


def _bias_key(weight_key: str) -> str:
    return weight_key[: -len("weight")] + "bias" if weight_key.endswith("weight") else weight_key + ".bias"


def _same_kind(path: Path, weights: LSTMWeights | LMWeights, imported: ImportedModel) -> LSTMWeights | LMWeights:
    kinds = {LSTMWeights: "an LSTM stack", LMWeights: "a language model"}
    if type(weights) is not type(imported.weights):
        raise BadInputError(
            f"{path}: holds the weights of {kinds[type(weights)]}, but the model is {kinds[type(imported.weights)]}"
        )
    return weights


def diagnose_weights(found: LSTMWeights | LMWeights, trained: LSTMWeights | LMWeights) -> list[str]:
    """How the model's initializers differ from the trained weights, one finding per line."""
    found_stack = found.lstm if isinstance(found, LMWeights) else found
    trained_stack = trained.lstm if isinstance(trained, LMWeights) else trained
    problem = trained_stack.matches(_config_of(found_stack))
    if problem:
        return [f"the model's LSTM does not have the trained weights' shape: {problem}"]
    findings = []
    for k, (a, b) in enumerate(zip(found_stack.layers, trained_stack.layers, strict=True)):
        for name in ("W", "R", "B", "P"):
            x, y = getattr(a, name), getattr(b, name)
            if x is None or y is None:
                if (x is None) != (y is None):
                    findings.append(f"layer {k} {name}: present in only one of model and trained weights")
                continue
            x32, y32 = x.astype(np.float32), y.astype(np.float32)
            if np.array_equal(x32, y32):
                continue
            findings.append(f"layer {k} {name}: {_explain(name, x32, y32)}")
    if isinstance(found, LMWeights) and isinstance(trained, LMWeights):
        for name in ("embedding", "proj_weight", "proj_bias"):
            x, y = getattr(found, name).astype(np.float32), getattr(trained, name).astype(np.float32)
            if x.shape != y.shape or not np.array_equal(x, y):
                findings.append(f"{name}: differs from the trained weights")
    return findings


def _config_of(weights: LSTMWeights) -> LSTMConfig:
    direction = "bidirectional" if weights.num_directions == 2 else "forward"
    return LSTMConfig(
        weights.input_size, weights.hidden_size, weights.num_layers, direction, peepholes=weights.peepholes
    )


def _explain(name: str, found: np.ndarray, trained: np.ndarray) -> str:
    if name in ("W", "R", "B"):
        halves = (
            [(found, trained)]
            if name != "B"
            else [
                (found[:, : found.shape[1] // 2], trained[:, : trained.shape[1] // 2]),
                (found[:, found.shape[1] // 2 :], trained[:, trained.shape[1] // 2 :]),
            ]
        )
        for order, label in ((IOFC_TO_IFGO, "IFGO (PyTorch's order)"), (IFGO_TO_IOFC, "a permuted order")):
            if all(np.array_equal(f, permute_gates(t, order, axis=1)) for f, t in halves):
                return f"gate blocks are in {label}, not ONNX's IOFC: the export did not reorder the gates"
        for perm in itertools.permutations(range(4)):
            if perm != (0, 1, 2, 3) and all(np.array_equal(f, permute_gates(t, perm, axis=1)) for f, t in halves):
                return f"gate blocks permuted {perm} relative to IOFC"
        if name == "B" and np.array_equal(halves[0][0], halves[0][1]) and not np.any(halves[1][0]):
            return "the recurrence bias half Rb is all zero: only one of bias_ih/bias_hh was exported"
    if found.shape[0] == 2 and np.array_equal(found[::-1], trained):
        return "forward and reverse directions are swapped"
    if np.allclose(found, trained.astype(np.float16).astype(np.float32), rtol=0, atol=0):
        return "values are the trained weights rounded to float16"
    diff = np.abs(found.astype(np.float64) - trained.astype(np.float64))
    count = int(np.count_nonzero(diff))
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
    return f"{count} of {diff.size} values differ, greatest by {diff.max():.3g} at index {index}"
