"""What a corpus model is: :class:`CorpusModel`, its input contract and the helpers every builder shares.

Node paths: a main-graph node is its name; a node inside a subgraph is
``<owner node name>/<graph attribute>/<node name>`` (e.g.
``If_sr/then_branch/decoder/rnn/LSTM``); a node inside a model-local function
is ``<call node name>/<node name>`` (the call names the function already); nesting repeats the rule.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

Feeds = Mapping[str, NDArray[Any]]
Outputs = dict[str, NDArray[Any]]
Reference = Callable[[Feeds], Outputs]

ROLES = ("data", "tokens", "lengths", "scalar", "state", "weight")


@dataclass(frozen=True)
class InputSpec:
    """One graph input. ``shape`` entries that are strings name a dim of :attr:`CorpusModel.dims`.

    role: ``data`` (float noise), ``tokens`` (integers in ``[0, high)``), ``lengths`` (``sequence_lens``-like
    integers in ``[1, <dim named by high_dim>]``), ``scalar`` (a fixed value from ``CorpusModel.feeds``,
    e.g. a sample rate), ``state`` (streaming state, fed back from an output: see ``state_pairs``),
    ``weight`` (trained weights fed at run time; the trained value is in ``CorpusModel.feeds``).
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"
    role: str = "data"
    high: int | None = None
    high_dim: str | None = None


@dataclass(frozen=True, eq=False)
class CorpusModel:
    """One ONNX file of the corpus and everything a checker (or its tests) needs to drive it.

    ``lstm_paths`` are the node paths (module docstring) of every LSTM node, in graph order.
    ``dims`` gives the values each named dim may take (the first is the default); ``feeds`` the values
    that must be fed as given (scalars such as a sample rate; weights fed as inputs); ``exercised_by``
    maps a node path to the feeds that make the run reach it (If branches); ``state_pairs`` are
    ``(output, input)`` pairs that carry streaming state. ``torch_reference`` / ``numpy_reference``
    compute what the model is meant to return (float64 NumPy or the float32 torch module); for a
    planted bug they return the *intended* (bug-free) outputs. ``atol``/``rtol`` are the tolerances
    at which the corpus tests hold the ONNX file against those references.
    """

    name: str
    path: Path
    kind: str
    description: str
    lstm_paths: tuple[str, ...]
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    dims: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    feeds: Mapping[str, NDArray[Any]] = field(default_factory=dict)
    exercised_by: Mapping[str, Mapping[str, NDArray[Any]]] = field(default_factory=dict)
    state_pairs: tuple[tuple[str, str], ...] = ()
    state_dict: Path | None = None
    planted_bug: str | None = None
    bug_node: str | None = None
    torch_reference: Reference | None = None
    numpy_reference: Reference | None = None
    atol: float = 1e-5
    rtol: float = 1e-4
    ort_cpu: str = "runs"
    notes: str = ""

    @property
    def lstm_count(self) -> int:
        return len(self.lstm_paths)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    def example_feeds(self, seed: int = 0, **dims: int) -> dict[str, NDArray[Any]]:
        """Deterministic feeds at the default dims (or those given), honouring roles and fixed feeds."""
        sizes = {name: values[0] for name, values in self.dims.items()}
        unknown = set(dims) - set(sizes)
        if unknown:
            raise KeyError(f"{self.name}: unknown dims {sorted(unknown)}; known: {sorted(sizes)}")
        sizes.update(dims)
        rng = np.random.default_rng(seed)
        out: dict[str, NDArray[Any]] = {}
        for spec in self.inputs:
            if spec.name in self.feeds:
                out[spec.name] = np.array(self.feeds[spec.name], copy=True)
                continue
            shape = tuple(sizes[d] if isinstance(d, str) else d for d in spec.shape)
            if spec.role == "tokens":
                assert spec.high is not None
                out[spec.name] = rng.integers(0, spec.high, size=shape).astype(spec.dtype)
            elif spec.role == "lengths":
                assert spec.high_dim is not None
                top = sizes[spec.high_dim]
                lengths = rng.integers(1, top + 1, size=shape)
                lengths.flat[0] = top  # the longest sequence uses the whole axis
                out[spec.name] = lengths.astype(spec.dtype)
            else:
                scale = 0.5 if spec.role == "state" else 1.0
                out[spec.name] = (scale * rng.standard_normal(shape)).astype(spec.dtype)
        return out


def cache_root() -> Path:
    """Where the corpus is cached outside pytest: ``$XDG_CACHE_HOME/lstm-conformance/corpus``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lstm-conformance" / "corpus"


def iter_nodes(graph: Any, functions: Mapping[tuple[str, str], Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, node)`` for every node under ``graph``: subgraphs and model-local function bodies included."""
    for node in graph.node:
        path = prefix + node.name
        yield path, node
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.HasField("g") else list(attr.graphs)
            for sub in subgraphs:
                yield from iter_nodes(sub, functions, f"{path}/{attr.name}/")
        body = functions.get((node.domain, node.op_type))
        if body is not None:
            yield from iter_nodes(body, functions, f"{path}/")


def lstm_paths(model: Any) -> tuple[str, ...]:
    """The path of every LSTM node of an ``onnx.ModelProto``, in graph order."""
    functions = {(f.domain, f.name): f for f in model.functions}
    return tuple(path for path, node in iter_nodes(model.graph, functions) if node.op_type == "LSTM")


def lstm_nodes(model: Any) -> dict[str, Any]:
    """``{path: NodeProto}`` for every LSTM node of ``model``."""
    functions = {(f.domain, f.name): f for f in model.functions}
    return {path: node for path, node in iter_nodes(model.graph, functions) if node.op_type == "LSTM"}


def save_model(model: Any, path: Path, *, check: bool = True) -> None:
    """Check (full) and write ``model`` atomically, so an interrupted build never leaves a half file."""
    import onnx

    if check:
        onnx.checker.check_model(model, full_check=True)
    tmp = path.with_name(path.name + ".partial")
    onnx.save_model(model, str(tmp))
    tmp.replace(path)


def ort_session(path: Path, **options: Any) -> Any:
    """A quiet ONNX Runtime CPU session (dynamo exports declare static output dims that ORT warns about)."""
    import onnxruntime as ort

    settings = ort.SessionOptions()
    settings.log_severity_level = 3
    settings.intra_op_num_threads = 1
    for key, value in options.items():
        setattr(settings, key, value)
    return ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])


def run_ort(model: CorpusModel, feeds: Feeds) -> Outputs:
    session = ort_session(model.path)
    values = session.run(None, {name: feeds[name] for name in model.input_names})
    return {out.name: value for out, value in zip(session.get_outputs(), values, strict=True)}
