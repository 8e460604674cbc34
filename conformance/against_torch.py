"""``conformance check MODEL --against-torch SOURCE``: compare an ONNX model with the user's PyTorch module.

For graphs ``check`` cannot map to an LSTM stack or language model, the user's own module is the expected
value: both run on the same generated inputs and outputs are matched by position. SOURCE is
``package.module:attr``, a TorchScript file (``.pt``/``.pth``, ``torch.jit.save``) or an ExportedProgram
(``.pt2``, ``torch.export.save``).

Inputs are read from the ONNX graph's inputs. Which axis is time and which is batch (the :class:`Layout`)
comes from the module's recurrent layer (``batch_first``), else the inputs' dim names, else the graph's
LSTM node, else PyTorch's default (time-major); every result says which. A fixed dim runs as declared and
the shapes are labelled as they ran. Token inputs (reaching an embedding) take values across the whole
vocabulary: over the shapes tried, every row is fed at least once when the sizes allow, and every shape
holds the first and last rows. Torch is imported only here, and only when a comparison runs.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conformance import evaluate
from conformance.compare import default_tolerance
from conformance.diffs import Tolerance
from conformance.records import Result, model_result, shape_label
from conformance.status import ERROR, FAIL, SKIP
from exporters.base import describe_error
from exporters.errors import BadInputError

__all__ = ["MODULE_FILES", "GraphInput", "Layout", "against_torch", "load_module", "plan"]

MODULE_FILES = (".pt", ".pth", ".pt2")  # a SOURCE with one of these suffixes that exists is a file
_TIME = re.compile(r"t|time\w*|seq\w*|len\w*|max_len|\w*steps?", re.IGNORECASE)
_BATCH = re.compile(r"b|n|bs|batch\w*|\w*_batch", re.IGNORECASE)
_RNNS = ("LSTM", "GRU", "RNN")
_TO_GATHER = {"Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Flatten", "Clip"}


# --- the module -------------------------------------------------------------------------------------


def load_module(spec: str) -> Any:
    """SOURCE -> a callable module in eval mode: ``package.module:attr`` (a module or a factory), or a file."""
    path = Path(spec)
    if path.suffix in MODULE_FILES:
        if path.is_file():
            return _load_file(path)
        if ":" not in spec:
            raise BadInputError(f"--against-torch: {spec}: no such file")
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise BadInputError(f"--against-torch: expected MODULE:ATTR (e.g. mypkg.model:build), got {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadInputError(f"--against-torch: cannot import {module_name!r}: {exc}") from None
    target = getattr(module, attr, None)
    if target is None:
        raise BadInputError(f"--against-torch: module {module_name!r} has no attribute {attr!r}")
    import torch

    if not isinstance(target, torch.nn.Module) and callable(target):
        target = target()
    if not isinstance(target, torch.nn.Module):
        raise BadInputError(f"--against-torch: {spec} is not a torch.nn.Module (got {type(target).__name__})")
    return target.eval()


def _load_file(path: Path) -> Any:
    """A TorchScript file (``torch.jit.load``) or an ExportedProgram (``torch.export.load(...).module()``)."""
    import torch

    if path.suffix == ".pt2":
        quiet = logging.getLogger("torch.export")  # it logs a traceback before raising on a bad file
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            program = torch.export.load(str(path))
        except Exception as exc:
            raise BadInputError(f"{path}: not an ExportedProgram saved by torch.export.save ({_why(exc)})") from None
        finally:
            quiet.setLevel(level)
        return program.module()  # already traced in the mode it was exported in; it refuses .eval()
    try:
        with warnings.catch_warnings():  # torch.jit.load is deprecated, but the user's file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()  # type: ignore[no-untyped-call]
    except Exception as exc:  # RuntimeError: PytorchStreamReader failed locating file constants.pkl ...
        if _is_state_dict(path):
            raise BadInputError(
                f"{path}: a state_dict, not a module: pass it with --weights, or give module:attr"
            ) from None
        raise BadInputError(
            f"{path}: not a TorchScript module saved by torch.jit.save ({_why(exc)}); for a pickled module, "
            "give module:attr"
        ) from None


def _is_state_dict(path: Path) -> bool:
    import torch

    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(loaded, Mapping)


def _why(exc: BaseException) -> str:
    """``describe_error`` without torch's paragraph about corrupted checkpoints."""
    return describe_error(exc, 200).split(". This is an internal miniz error", 1)[0]


def _submodules(module: Any, kinds: tuple[str, ...]) -> list[Any]:
    """Submodules whose class (or, scripted, original class) is one of ``kinds``, in ``modules()`` order."""
    walk = getattr(module, "modules", None)
    if walk is None:
        return []
    found = []
    for sub in walk():
        names = {type(sub).__name__, getattr(sub, "original_name", "")}
        if names & set(kinds):
            found.append(sub)
    return found


# --- the inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphInput:
    """A graph input as declared: dims are ints (fixed), names (symbolic) or ``None`` (unnamed)."""

    name: str
    dims: tuple[int | str | None, ...]
    dtype: np.dtype[Any]
    vocabulary: int | None = None  # rows of the embedding this integer input indexes


@dataclass(frozen=True)
class Layout:
    """Which axes of the sequence input are time and batch, and what said so."""

    batch_first: bool
    source: str

    @property
    def axes(self) -> tuple[int, int]:
        """(time axis, batch axis) of the sequence input."""
        return (1, 0) if self.batch_first else (0, 1)

    def __str__(self) -> str:
        return f"{'batch-first' if self.batch_first else 'time-major'} ({self.source})"


def graph_inputs(model: Any, module: Any) -> list[GraphInput]:
    """The model's non-initializer inputs, with the vocabulary of each integer one that feeds an embedding."""
    import onnx

    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    tables = {t.name: int(t.dims[0]) for t in graph.initializer if t.dims}
    embeddings = [int(e.num_embeddings) for e in _submodules(module, ("Embedding",)) if hasattr(e, "num_embeddings")]
    out = []
    for value_info in graph.input:
        if value_info.name in initializers or not value_info.type.HasField("tensor_type"):
            continue
        tensor_type = value_info.type.tensor_type
        dims = tuple(
            int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim
        )
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        vocabulary = None
        if dtype.kind in "iu":
            table = _gather_table(graph, value_info.name, tables)
            if table is not None or (embeddings and len(dims) >= 2):
                # the module's own embedding is what was trained; the graph's table is what was exported
                vocabulary = embeddings[0] if len(embeddings) == 1 or table is None else table
        out.append(GraphInput(value_info.name, dims, dtype, vocabulary))
    return out


def _gather_table(graph: Any, name: str, tables: Mapping[str, int]) -> int | None:
    """Rows of the initializer a ``Gather`` looks ``name`` up in (through casts and reshapes), if any."""
    frontier, seen = [name], set()
    while frontier:
        value = frontier.pop()
        for node in graph.node:
            if value not in node.input or id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type == "Gather" and list(node.input).index(value) == 1 and node.input[0] in tables:
                return tables[node.input[0]]
            if node.op_type in _TO_GATHER:
                frontier += list(node.output)
    return None


def _layout(module: Any, model: Any, data: GraphInput | None) -> Layout:
    """The module's recurrent layer, else the sequence input's dim names, else the graph's LSTM node."""
    rnns = [m for m in _submodules(module, _RNNS) if hasattr(m, "batch_first")]
    if rnns:
        first = bool(rnns[0].batch_first)
        kind = getattr(rnns[0], "original_name", "") or type(rnns[0]).__name__
        return Layout(first, f"the module's nn.{kind} has batch_first={first}")
    if data is not None:
        for axis, dim in enumerate(data.dims[:2]):
            role = _role_by_name(dim)
            if role is not None:
                return Layout((axis == 0) == (role == "B"), f"{data.name}'s axis {axis} is named {dim!r}")
    from conformance.interface import read_interface

    try:
        iface = read_interface(model)
    except BadInputError:
        iface = None
    if iface is not None and data is not None and iface.data_input == data.name:
        return Layout(iface.batch_first, "the graph's LSTM node")
    return Layout(False, "nothing says otherwise: PyTorch's default")


def _role_by_name(dim: int | str | None) -> str | None:
    if not isinstance(dim, str):
        return None
    if _TIME.fullmatch(dim):
        return "T"
    return "B" if _BATCH.fullmatch(dim) else None


def _roles(inputs: Sequence[GraphInput], data: GraphInput | None, layout: Layout) -> dict[str, list[str | None]]:
    """Each input's axes as ``T``, ``B`` or ``None`` (fixed, or a symbolic dim of no known meaning).

    The sequence input's axes follow the layout; a dim name it uses means the same in every input; other
    symbolic dims go by their names, else by the layout's positions.
    """
    t_axis, b_axis = layout.axes
    named: dict[str, str] = {}
    if data is not None:
        for axis, role in ((t_axis, "T"), (b_axis, "B")):
            dim = data.dims[axis] if axis < len(data.dims) else None
            if isinstance(dim, str):
                named[dim] = role
    roles = {}
    for graph_input in inputs:
        axes: list[str | None] = []
        for axis, dim in enumerate(graph_input.dims):
            by_position = "T" if axis == t_axis else "B" if axis == b_axis else None
            if isinstance(dim, int):
                axes.append(None)
            elif isinstance(dim, str) and dim in named:
                axes.append(named[dim])
            elif graph_input is data:
                axes.append(by_position)
            else:
                axes.append(_role_by_name(dim) or by_position)
        roles[graph_input.name] = axes
    return roles


@dataclass(frozen=True)
class Plan:
    """What runs: the layout, and each shape (as it runs) with its feeds."""

    layout: Layout
    cases: tuple[tuple[dict[str, int], dict[str, np.ndarray]], ...]


def plan(model: Any, module: Any, seq_lens: Sequence[int], batches: Sequence[int], *, seed: int = 0) -> Plan:
    """The shapes to run and their inputs: fixed dims as declared, one case per distinct shape."""
    inputs = graph_inputs(model, module)
    data = next((i for i in inputs if len(i.dims) >= 2), inputs[0] if inputs else None)
    layout = _layout(module, model, data)
    roles = _roles(inputs, data, layout)
    t_axis, b_axis = layout.axes
    used = {role for axes in roles.values() for role in axes if role}
    labelled = [
        (name, axis)
        for name, axis in (("T", t_axis), ("B", b_axis))
        if name in used or (data is not None and axis < len(data.dims))
    ]
    shapes: dict[tuple[tuple[str, int], ...], dict[str, int]] = {}
    for t in seq_lens:
        for b in batches:
            wanted = {"T": t, "B": b}
            shape = {name: _fixed(data, axis, wanted[name]) for name, axis in labelled}
            shapes.setdefault(tuple(shape.items()), shape)
    rng = np.random.default_rng(seed)
    streams = {i.name: _TokenStream(i.vocabulary, rng) for i in inputs if i.vocabulary}
    cases = []
    for shape in shapes.values():
        feeds = {}
        for graph_input in inputs:
            dims = [
                d if isinstance(d, int) else shape.get(r or "", 1)
                for d, r in zip(graph_input.dims, roles[graph_input.name], strict=True)
            ]
            feeds[graph_input.name] = _values(graph_input, dims, streams.get(graph_input.name), rng)
        cases.append((shape, feeds))
    return Plan(layout, tuple(cases))


def _fixed(data: GraphInput | None, axis: int, wanted: int) -> int:
    dim = data.dims[axis] if data is not None and axis < len(data.dims) else None
    return dim if isinstance(dim, int) else wanted


class _TokenStream:
    """Token ids over a vocabulary: shuffled passes over every row, so the shapes together cover it."""

    def __init__(self, vocabulary: int, rng: np.random.Generator) -> None:
        self.vocabulary, self.rng = vocabulary, rng
        self.pending = np.empty(0, np.int64)

    def take(self, count: int) -> np.ndarray:
        """``count`` ids holding the first and last rows (room allowing), the rest from the passes."""
        ends = np.unique([0, self.vocabulary - 1])[:count]
        rest = count - len(ends)
        while len(self.pending) < rest:
            self.pending = np.concatenate([self.pending, self.rng.permutation(self.vocabulary)])
        taken, self.pending = self.pending[:rest], self.pending[rest:]
        return self.rng.permutation(np.concatenate([ends, taken]))


def _values(
    graph_input: GraphInput, dims: list[int], tokens: _TokenStream | None, rng: np.random.Generator
) -> np.ndarray:
    dtype = graph_input.dtype
    if tokens is not None:
        return tokens.take(int(np.prod(dims))).reshape(dims).astype(dtype)
    if dtype.kind in "iub":
        return rng.integers(0, 2, size=dims).astype(dtype)
    return rng.uniform(-1, 1, dims).astype(dtype)


# --- the comparison ---------------------------------------------------------------------------------


def against_torch(
    model_path: Path,
    spec: str,
    *,
    seq_lens: Sequence[int],
    batches: Sequence[int],
    runtimes: Sequence[str],
    tolerance: Tolerance | None = None,
) -> list[Result]:
    """The ONNX model on each runtime vs the user's module, at each shape; one result per shape and runtime.

    Each result's ``detail["layout"]`` says how its inputs were laid out (and what said so).
    """
    from conformance.runtimes import get_runtime
    from exporters.base import OK, Artifact
    from exporters.importers import load_onnx

    module = load_module(spec)
    model = load_onnx(model_path)
    allowed = tolerance or default_tolerance("float32")
    planned = plan(model, module, seq_lens, batches)
    layout = str(planned.layout)
    results = []
    for runtime_id in runtimes:
        runtime = get_runtime(runtime_id)
        reason = runtime.unavailable()
        if reason:
            results.append(model_result(model_path.name, runtime_id, SKIP, reason, exporter="torch"))
            continue
        try:
            session = runtime.open(Artifact("user", OK, path=model_path), None, None)  # type: ignore[arg-type]
        except Exception as exc:
            message = f"{runtime_id} cannot load the model: {describe_error(exc)}"
            results.append(model_result(model_path.name, runtime_id, ERROR, message, exporter="torch"))
            continue
        try:
            results += [
                _one(session, module, runtime_id, shape, feeds, allowed, model_path.name, layout)
                for shape, feeds in planned.cases
            ]
        finally:
            session.close()
    return results


def _one(
    session: Any,
    module: Any,
    runtime_id: str,
    shape: dict[str, int],
    feeds: dict[str, np.ndarray],
    tolerance: Tolerance,
    model: str,
    layout: str,
) -> Result:
    """One shape on one runtime: the ONNX outputs against the module's, matched by position."""
    import torch

    label = shape_label(shape) or None
    facts: dict[str, Any] = {"exporter": "torch", "label": label, "shape": shape or None, "detail": {"layout": layout}}
    actual = evaluate.run(session, feeds, runtime_id, where=label or "")
    if isinstance(actual, evaluate.Verdict):
        return model_result(model, runtime_id, actual.status, f"{actual.message}\ninputs: {layout}", **facts)
    try:
        with torch.inference_mode():
            out = _flatten(module(*[torch.from_numpy(v) for v in feeds.values()]))
    except Exception as exc:
        at = f" at {label}" if label else ""
        message = f"the PyTorch module failed{at}: {describe_error(exc)}\ninputs: {layout}"
        return model_result(model, runtime_id, ERROR, message, **facts)
    expected = {n: v.detach().double().numpy() for n, v in zip(actual, out, strict=False)}
    problems = [] if len(out) == len(actual) else [f"the ONNX model has {len(actual)} outputs, the module {len(out)}"]
    verdict = evaluate.judge(
        actual, expected, tolerance, time_axes=dict.fromkeys(expected), problems=problems,
        passed=f"matches the PyTorch module; inputs {layout}",
    )  # fmt: skip
    message = verdict.message if verdict.status != FAIL else f"{verdict.message}\ninputs: {layout}"
    return model_result(model, runtime_id, verdict.status, message, outputs=verdict.outputs, **facts)


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]
