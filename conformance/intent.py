"""The intent check: hold every LSTM node of a model against what the user's trained ``nn.LSTM`` means.

``read_trained`` (``conformance.trained_weights``, re-exported here) reads the user's weights, one
:class:`TrainedLayer` per layer of every ``nn.LSTM``, in ONNX layout. ``match_nodes`` pairs the model's
LSTM nodes (with the W/R/B/P each received at run time) with those layers by shape; ``check_intent``
then names, one sentence each, every way a node departs from ``nn.LSTM``: its attributes (direction,
activations, clip, input_forget, peepholes) and its weights (gate order, swapped directions, a dropped
bias half, float16 rounding, single values named by torch tensor, index and gate). ``check_extras`` does
the same, conservatively, for an embedding table and a Linear layer when exactly one initializer of the
model can be theirs.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from conformance.trained_weights import Array, Trained, TrainedLayer, bias_key, read_trained
from reference.weights import IFGO_TO_IOFC, IOFC_TO_IFGO, permute_gates

if TYPE_CHECKING:  # conformance.graph imports onnx; only the annotations need it
    from conformance.graph.nodes import LSTMAttributes, LSTMNode

__all__ = [
    "GATES_IOFC",
    "Finding",
    "Match",
    "NodeWeights",
    "Trained",
    "TrainedLayer",
    "check_extras",
    "check_intent",
    "explain_difference",
    "match_nodes",
    "read_trained",
]

GATES_IOFC = ("input", "output", "forget", "cell")  # ONNX's gate blocks, in order
_TORCH = {"W": ("weight_ih",), "R": ("weight_hh",), "B": ("bias_ih", "bias_hh")}  # torch tensors per ONNX role


@dataclass(frozen=True)
class Finding:
    """One way the model departs from the trained module; ``node`` is the LSTM node's path, if about one."""

    node: str | None
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, eq=False)
class NodeWeights:
    """What one LSTM node received at run time: W, R and, where present, B and P (its own dtype)."""

    path: str
    attributes: LSTMAttributes
    W: Array
    R: Array
    B: Array | None
    P: Array | None
    hidden_size: int

    @classmethod
    def of(cls, node: LSTMNode, inputs: Mapping[str, Array]) -> NodeWeights:
        """From one invocation's inputs (``NodeCapture.invocations[0].inputs``)."""
        hidden = node.attributes.hidden_size or int(inputs["R"].shape[-1])
        return cls(node.path, node.attributes, inputs["W"], inputs["R"], inputs.get("B"), inputs.get("P"), hidden)


@dataclass(frozen=True)
class Match:
    """Nodes paired with trained layers, in node order; ``findings`` name what paired with nothing."""

    pairs: tuple[tuple[NodeWeights, TrainedLayer], ...]
    findings: tuple[Finding, ...]


# --- matching ------------------------------------------------------------------------------------


def match_nodes(trained: Trained, nodes: Sequence[NodeWeights]) -> Match:
    """Pair each node, in order, with the first unpaired trained layer of its W and R shapes.

    Among several that fit, the one closest in value (smallest max |W - W'|) wins, so two layers of the
    same shape still pair right. A node that only fits layers already paired pairs with one of them again:
    the same module exported twice (both branches of an If, a module applied twice) is no fault.
    """
    layers = [layer for layer in trained.layers if layer.proj_size is None]
    paired: list[TrainedLayer] = []
    pairs: list[tuple[NodeWeights, TrainedLayer]] = []
    findings: list[Finding] = []
    for node in nodes:
        fits = [layer for layer in layers if (layer.W.shape, layer.R.shape) == (node.W.shape, node.R.shape)]
        free = [layer for layer in fits if not any(layer is p for p in paired)]
        if not fits:
            listed = ", ".join(f"{x.label} W {list(x.W.shape)} R {list(x.R.shape)}" for x in trained.layers)
            shapes = f"W {list(node.W.shape)} R {list(node.R.shape)}"
            message = f"no layer of the trained weights has this node's shapes {shapes} (trained: {listed})"
            findings.append(Finding(node.path, f"LSTM node {node.path}: {message}"))
            continue
        best = min(free or fits, key=lambda layer: _distance(node.W, layer.W))
        pairs.append((node, best))
        if not any(best is p for p in paired):
            paired.append(best)
    findings += [Finding(None, _unpaired(layer)) for layer in trained.layers if not any(layer is p for p in paired)]
    return Match(tuple(pairs), tuple(findings))


def _distance(a: Array, b: Array) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def _unpaired(layer: TrainedLayer) -> str:
    if layer.prefix is None:
        return f"{layer.phrase} (W {list(layer.W.shape)}) matches no LSTM node of the model"
    if layer.proj_size is not None:
        shape = [layer.proj_size, layer.hidden_size]
        return (
            f"{layer.phrase} (weight_hr_l{layer.layer} {shape}) uses proj_size={layer.proj_size}: LSTM projections "
            "are not an ONNX LSTM feature, so no LSTM node can match it"
        )
    both = ", bidirectional" if layer.direction == "bidirectional" else ""
    shape = [4 * layer.hidden_size, layer.input_size]
    return f"{layer.phrase} (weight_ih_l{layer.layer} {shape}{both}) matches no LSTM node of the model"


# --- the check -----------------------------------------------------------------------------------


def check_intent(trained: Trained, nodes: Sequence[NodeWeights]) -> list[Finding]:
    """Every way the nodes depart from the trained nn.LSTM layers, node by node, then unpaired layers."""
    match = match_nodes(trained, nodes)
    findings: list[Finding] = []
    for node in nodes:
        findings += [f for f in match.findings if f.node == node.path]
        for paired, layer in match.pairs:
            if paired is node:
                problems = _attribute_problems(node, layer) + _weight_problems(node, layer)
                findings += [Finding(node.path, f"LSTM node {node.path}: {p}") for p in problems]
    return findings + [f for f in match.findings if f.node is None]


def _attribute_problems(node: NodeWeights, layer: TrainedLayer) -> list[str]:
    a, trained = node.attributes, f"the {layer.phrase}"
    out = []
    if a.direction != layer.direction:
        tail = ": the node runs the sequence backwards" if a.direction == "reverse" else ""
        out.append(f"direction={a.direction!r} while {trained} is a {layer.direction} nn.LSTM{tail}")
    hidden = a.hidden_size if a.hidden_size is not None else node.hidden_size
    if hidden != layer.hidden_size:
        out.append(f"hidden_size={hidden} while {trained} has hidden size {layer.hidden_size}")
    if not a.default_activations:
        names = a.activations or ("Sigmoid", "Tanh", "Tanh") * a.num_directions
        text = f"uses activations [{', '.join(names)}]"
        text += f" with activation_alpha {list(a.activation_alpha)}" if a.activation_alpha else ""
        text += f" with activation_beta {list(a.activation_beta)}" if a.activation_beta else ""
        out.append(f"{text}; nn.LSTM uses Sigmoid, Tanh, Tanh")
    if a.clip is not None:
        out.append(f"sets clip={a.clip:g}; nn.LSTM never clips")
    if a.input_forget:
        out.append(f"sets input_forget={a.input_forget} (f = 1 - i); nn.LSTM has an independent forget gate")
    if layer.P is None and node.P is not None and np.any(node.P):
        out.append("uses peepholes; nn.LSTM has none")
    return out


def _weight_problems(node: NodeWeights, layer: TrainedLayer) -> list[str]:
    trained = f"the {layer.phrase}"
    out = [_compare(name, getattr(node, name), getattr(layer, name), layer) for name in ("W", "R")]
    if layer.B is None:
        if node.B is not None and np.any(node.B):
            out.append(f"B is not all zero while {trained} has no bias (nn.LSTM(bias=False))")
    elif node.B is None:
        if np.any(layer.B):
            out.append(f"has no B while {trained} has biases ({_source(layer, 'B')}): the node runs without them")
    else:
        out.append(_compare("B", node.B, layer.B, layer))
    if layer.P is not None:
        if node.P is None:
            out.append(f"has no P while {trained} has peepholes" if np.any(layer.P) else None)
        else:
            out.append(_compare("P", node.P, layer.P, layer))
    return [problem for problem in out if problem is not None]


def _compare(name: str, found: Array, trained: Array, layer: TrainedLayer) -> str | None:
    if found.shape != trained.shape:
        return f"{name} has shape {list(found.shape)}, the {layer.phrase}'s is {list(trained.shape)}"
    f, t = _compared(found, trained)
    if np.array_equal(f, t):
        return None
    if name == "B":  # Wb + Rb is all the node uses: an export that folds bias_hh into Wb is no fault
        h4 = f.shape[1] // 2
        folded = trained[:, :h4].astype(np.float32) + trained[:, h4:].astype(np.float32)
        if np.array_equal(f[:, :h4] + f[:, h4:], _stored(folded, found.dtype)):
            return None
    why = explain_difference(f, t, name=name, where=_locator(layer, name))
    return f"{name} differs from {_source(layer, name)}: {why}"


def _compared(found: Array, trained: Array) -> tuple[Array, Array]:
    """Both as float32, the trained values rounded as the node stores them (a float16 node: to float16)."""
    return found.astype(np.float32), _stored(trained, found.dtype)


def _stored(trained: Array, dtype: np.dtype[Any]) -> Array:
    """``trained`` as a node of ``dtype`` holds it, as float32: float16 nodes round to float16."""
    stored = np.float16 if dtype == np.float16 else np.float32
    return trained.astype(np.float32).astype(stored).astype(np.float32)


def _source(layer: TrainedLayer, name: str) -> str:
    names = [layer.torch_name(t, d) for d in range(layer.W.shape[0]) for t in _TORCH.get(name, ())]
    shown = [n for n in names if n is not None]
    if not shown:
        return f"the {layer.phrase}"
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _locator(layer: TrainedLayer, name: str) -> Callable[[tuple[int, ...]], str]:
    """Words an ONNX index of W/R/B as the torch tensor, its index and the gate."""

    def where(index: tuple[int, ...]) -> str:
        text = f"ONNX index {index}"
        if name not in _TORCH:
            return text
        d, row, cols = index[0], index[1], index[2:]
        half, row = divmod(row, 4 * layer.hidden_size) if name == "B" else (0, row)
        gate, within = divmod(row, layer.hidden_size)
        tensor = layer.torch_name(_TORCH[name][half], d)
        if tensor is None:
            return f"{text} ({GATES_IOFC[gate]} gate)"
        torch_index = ", ".join(str(i) for i in (IFGO_TO_IOFC[gate] * layer.hidden_size + within, *cols))
        return f"{text} = {tensor}[{torch_index}] ({GATES_IOFC[gate]} gate)"

    return where


def explain_difference(
    found: Array, trained: Array, *, name: str | None = None, where: Callable[[tuple[int, ...]], str] | None = None
) -> str:
    """Why ``found`` differs from ``trained`` (float32, one shape), as one clause.

    ``name`` (``W``, ``R``, ``B``, ``P``) turns on the LSTM diagnoses: gate order, swapped directions, a
    dropped bias half. ``where`` words the index of the greatest difference (default ``index (d, r, c)``).
    """
    if name in ("W", "R", "B"):
        h = found.shape[1] // 2
        halves = [(found, trained)] if name != "B" else [(found[:, :h], trained[:, :h]), (found[:, h:], trained[:, h:])]
        for order, label in ((IOFC_TO_IFGO, "IFGO (PyTorch's order)"), (IFGO_TO_IOFC, "a permuted order")):
            if all(np.array_equal(f, permute_gates(t, order, axis=1)) for f, t in halves):
                return f"gate blocks are in {label}, not ONNX's IOFC: the export did not reorder the gates"
        for perm in itertools.permutations(range(4)):
            if perm != (0, 1, 2, 3) and all(np.array_equal(f, permute_gates(t, perm, axis=1)) for f, t in halves):
                return f"gate blocks permuted {perm} relative to IOFC"
        if name == "B" and np.array_equal(halves[0][0], halves[0][1]) and not np.any(halves[1][0]):
            return "the recurrence bias half Rb is all zero: only one of bias_ih/bias_hh was exported"
    if name is not None and found.shape[0] == 2 and np.array_equal(found[::-1], trained):
        return "forward and reverse directions are swapped"
    if np.array_equal(found, trained.astype(np.float16).astype(np.float32)):
        return "values are the trained weights rounded to float16"
    diff = np.abs(found.astype(np.float64) - trained.astype(np.float64))
    count = int(np.count_nonzero(diff))
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
    at = where(index) if where is not None else f"index {index}"
    return f"{count} of {diff.size} values differ, greatest by {diff.max():.3g} at {at}"


# --- embedding and output projection -------------------------------------------------------------


def check_extras(trained: Trained, initializers: Mapping[str, Array]) -> list[Finding]:
    """The trained embedding and Linear weights against the model's initializers, where pairing is certain.

    A 2-D array pairs with an initializer of its shape or its transpose (a Linear exported as MatMul)
    only when that initializer is its one candidate and no other trained array claims it; its 1-D bias
    pairs the same way, and only once the weight matched. Anything less certain says nothing.
    """
    floats = {name: a for name, a in initializers.items() if a.dtype.kind == "f"}
    weights = {k: v for k, v in trained.others.items() if v.ndim == 2}
    biases = {k: v for k, v in trained.others.items() if v.ndim == 1}

    def fits(array: Array, init: Array) -> bool:
        return init.shape == array.shape or (array.ndim == 2 and init.shape == array.T.shape)

    def certain(arrays: Mapping[str, Array]) -> dict[str, str]:
        claims = {k: [n for n, a in floats.items() if fits(v, a)] for k, v in arrays.items()}
        claimed = Counter(n for names in claims.values() for n in names)
        return {k: names[0] for k, names in claims.items() if len(names) == 1 and claimed[names[0]] == 1}

    findings, matched = [], []
    for key, init in certain(weights).items():
        problem = _extra_problem(key, weights[key], init, floats[init])
        findings += [Finding(None, problem)] if problem else []
        matched += [] if problem else [bias_key(key)]
    for key, init in certain({k: biases[k] for k in matched if k in biases}).items():
        problem = _extra_problem(key, biases[key], init, floats[init])
        findings += [Finding(None, problem)] if problem else []
    return findings


def _extra_problem(key: str, trained: Array, name: str, init: Array) -> str | None:
    stored = [(init, "")] if init.shape == trained.shape else []
    stored += [(init.T, " (stored transposed)")] if trained.ndim == 2 and init.shape == trained.T.shape else []
    tried = []
    for found, note in stored:
        f, t = _compared(found, trained)
        if np.array_equal(f, t):
            return None
        tried.append((int(np.count_nonzero(f != t)), note, f, t))
    _, note, f, t = min(tried, key=lambda x: x[0])

    def where(index: tuple[int, ...]) -> str:
        return f"{key}[{', '.join(str(i) for i in index)}]"

    return f"{key} differs from initializer {name!r} in the model{note}: {explain_difference(f, t, where=where)}"
