"""The transformed model of ``conformance check --quantize``: the transform applied, the copy that returns
each LSTM node's tensors (a stand-in LSTM for each DynamicQuantizeLSTM while it is wired), and which of its
nodes stands for each node of the original model."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from conformance.check import Opened
from conformance.check.model import save_model
from conformance.graph import GraphError, Instrumented, LSTMNode, instrument
from conformance.graph.walk import subgraphs, walk
from exporters.base import describe_error
from exporters.transforms import Transform, TransformError, apply

_STANDIN = "conformance-standin:"  # doc_string of a DynamicQuantizeLSTM's stand-in while capture is planned
_CONTRIB = ("com.microsoft", "DynamicQuantizeLSTM")


@dataclass(frozen=True)
class _Made:
    """The transformed model: its file, its record (``apply``'s), the copy that returns each LSTM node's
    tensors (``None``: ``why``), the op each of its nodes is, and which of its nodes each original one maps to."""

    transform: Transform
    path: Path
    artifact: Mapping[str, Any]
    instrumented: Instrumented | None
    instrumented_path: Path | None
    why: str | None
    ops: Mapping[str, str]
    mapping: Mapping[str, tuple[str, str]]  # original path -> (transformed path, how it was matched)
    unmapped: Mapping[str, str]  # original path -> why no transformed node stands for it

    @property
    def exporter(self) -> str:
        return f"user+{self.transform.id}"


def _transformed(model_path: Path, opened: Opened, transform: Transform, folder: Path) -> _Made | str:
    """Apply the transform; ``TransformError`` (nothing to convert) is bad input; any other failure of the
    transform's tool is returned as text, each runtime's error."""
    target = folder / "transformed.onnx"
    try:
        outcome = apply(transform, model_path, target, exporter_id=model_path.name)
    except TransformError:
        raise
    except Exception as exc:
        tool = f"{transform.distribution} {transform.version()}"
        return f"{transform.id} ({tool}) could not transform {model_path.name}: {describe_error(exc)}"
    artifact = {"status": "ok", **outcome.meta}
    if outcome.warnings:
        artifact["warnings"] = list(outcome.warnings)
    model = onnx.load(str(target))
    instrumented, why, ops = _instrument_transformed(model)
    instrumented_path = None
    if instrumented is not None:
        instrumented_path = folder / "transformed-instrumented.onnx"
        save_model(instrumented.model, instrumented_path)
    transformed_nodes = instrumented.nodes if instrumented is not None else _lstm_like_nodes(model)
    mapping, unmapped = map_nodes(opened.report.nodes, transformed_nodes)
    return _Made(transform, target, artifact, instrumented, instrumented_path, why, ops, mapping, unmapped)


def _instrument_transformed(model: onnx.ModelProto) -> tuple[Instrumented | None, str | None, dict[str, str]]:
    """The copy of the transformed model that returns each LSTM node's tensors, DynamicQuantizeLSTM nodes
    included (a stand-in LSTM reading only X takes each one's place while ``instrument`` wires it, then
    the contrib node is put back with its quantized weights); the op of each node by path."""
    work = copy.deepcopy(model)
    replaced = _stand_ins(work)
    events = [e for e in walk(work) if e.lstm]
    ops = {e.path: "DynamicQuantizeLSTM" if e.node.doc_string.startswith(_STANDIN) else "LSTM" for e in events}
    try:
        instrumented = instrument(work)
    except GraphError as exc:
        return None, str(exc), ops
    _put_back(instrumented.model.graph, replaced)
    return instrumented, None, ops


def _stand_ins(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Replace each DynamicQuantizeLSTM of the main graph and its subgraphs by an LSTM reading only X,
    marked in its doc_string; returns the originals, by the number in the mark."""
    replaced: list[onnx.NodeProto] = []

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            if (node.domain, node.op_type) == _CONTRIB:
                replaced.append(copy.deepcopy(node))
                del node.input[1:]
                node.domain, node.op_type = "", "LSTM"
                node.doc_string = f"{_STANDIN}{len(replaced) - 1}"
            for _, graph_attribute in subgraphs(node):
                visit(graph_attribute)

    visit(model.graph)
    return replaced


def _put_back(graph: onnx.GraphProto, replaced: Sequence[onnx.NodeProto]) -> None:
    for node in graph.node:
        if node.doc_string.startswith(_STANDIN):
            original = replaced[int(node.doc_string.removeprefix(_STANDIN))]
            node.domain, node.op_type, node.doc_string = original.domain, original.op_type, original.doc_string
            node.input.extend(original.input[1:])  # X is still the first: instrument only reads it
        for _, graph_attribute in subgraphs(node):
            _put_back(graph_attribute, replaced)


def _lstm_like_nodes(model: onnx.ModelProto) -> tuple[LSTMNode, ...]:
    """The transformed model's LSTM and DynamicQuantizeLSTM nodes, when it cannot be instrumented."""
    from conformance.graph import find_lstm_nodes

    work = copy.deepcopy(model)
    _stand_ins(work)
    try:
        return find_lstm_nodes(work)
    except GraphError:
        return ()


def map_nodes(
    original: Sequence[LSTMNode], transformed: Sequence[LSTMNode]
) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Which transformed node stands for each original node: the one of the same path, else of the same
    path plus quantize_dynamic's ``_quant`` suffix, else with the same output names, else (when both
    models have as many nodes) the one in the same position. Returns (original path -> (transformed path,
    how), original path -> why none does)."""
    mapped: dict[str, tuple[str, str]] = {}
    taken: set[str] = set()
    by_path = {n.path: n for n in transformed}
    for node in original:
        for candidate, how in ((node.path, "path"), (f"{node.path}_quant", "name")):
            if candidate in by_path and candidate not in taken:
                mapped[node.path] = (candidate, how)
                taken.add(candidate)
                break
        else:
            same = [t for t in transformed if t.path not in taken and node.outputs and t.outputs == node.outputs]
            if len(same) == 1:
                mapped[node.path] = (same[0].path, "outputs")
                taken.add(same[0].path)
    rest = [n for n in original if n.path not in mapped]
    others = [t for t in transformed if t.path not in taken]
    unmapped: dict[str, str] = {}
    if rest and len(original) == len(transformed):
        mapped.update({n.path: (t.path, "order") for n, t in zip(rest, others, strict=True)})
    else:
        for node in rest:
            unmapped[node.path] = (
                f"no LSTM node of the transformed model has its path, name or output names, and the models have "
                f"{len(original)} and {len(transformed)} LSTM nodes, so their order cannot tell"
            )
    return mapped, unmapped


def _transform_notes(made: _Made) -> list[str]:
    record = made.artifact.get("transform", {})
    options = record.get("options", {})
    notes = [f"{made.transform.id}: {made.transform.description}; {record.get('tool')} {options.get('function')}"]
    kept = [path for path, op in made.ops.items() if op == "LSTM"]
    if made.transform.needs and kept:
        became = len(made.ops) - len(kept)
        notes.append(
            f"{became} of {len(made.ops)} LSTM nodes became {made.transform.needs}; left as float LSTM by the "
            f"transform: {', '.join(kept)}"
        )
    if made.why:
        notes.append(f"the transformed model's LSTM nodes cannot be captured ({made.why}); outputs only")
    by_order = [f"{o} -> {t}" for o, (t, how) in made.mapping.items() if how == "order"]
    if by_order:
        notes.append(f"LSTM nodes matched by their order: {', '.join(by_order)}")
    return notes
