"""``conformance check MODEL --quantize fp16|fp16-io32|int8-dynamic``: what a deployment transform costs.

The transform (``exporters.transforms``, the very function ``run``'s ``<exporter>+<transform>`` lanes use)
is applied to the user's model; the transformed model runs on each runtime (ONNX Runtime's CPU provider
unless ``--runtime`` says otherwise) at the input sets ``check`` plans, and is held against the float64
reference of the *original* model on the same inputs (``plan_check``):

- each graph output: its greatest absolute and relative error, and where; gated by ``--max-abs``;
- each LSTM node: the transformed node's Y, Y_h and Y_c against ``reference.lstm`` in float64 on what the
  original node received in the whole-model reference; judged against the transform's measured budget
  (``exporters.transforms.BUDGETS``) when no gate is given. int8-dynamic turns an LSTM into
  ``com.microsoft.DynamicQuantizeLSTM``: while the copy that returns each node's tensors is made, a
  stand-in LSTM reading only X takes its place (so capture threads it out of If, Loop and Scan bodies as
  any LSTM), and the contrib node is put back. A transformed node stands for the original node of the same
  path, else of the same name before quantize_dynamic's ``_quant`` suffix, else with the same output
  names, else the one in the same position when both models have as many;
- a language model (a token input read by a Gather on a table of V rows, and an output whose last axis has
  V entries after the token input's shape: logits or log-probabilities): the perplexity of the reference
  and of the transformed model on the input's next tokens, its increase and next-token agreement
  (``conformance.evaluate.lm_metrics``); gated by ``--max-ppl-increase``.

Without a gate the whole model reports its cost and passes; with one, the gates decide and the nodes'
costs are reported, not judged.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from conformance import evaluate
from conformance.check import (
    CheckOptions,
    CheckReport,
    InputSet,
    Opened,
    Planned,
    _fold_not_exercised,
    _onnx_runtimes,
    open_check,
    plan_check,
)
from conformance.check.isolation import runtimes_in_workers, worker_slots
from conformance.check.judging import _comparable, _PlainSession, open_session
from conformance.check.model import save_model
from conformance.compare import compare_output
from conformance.diffs import EXACT, Tolerance
from conformance.graph import GraphError, Instrumented, LSTMNode, NodeCapture, instrument, node_reference
from conformance.graph.walk import subgraphs, walk
from conformance.records import Result, model_result, node_result
from conformance.runtimes.base import fork_hazard
from conformance.status import ERROR, FAIL, NOT_EXERCISED, PASS, SKIP
from exporters.base import describe_error
from exporters.errors import BadInputError
from exporters.transforms import BUDGETS, Transform, TransformError, apply, get_transform

__all__ = ["DEFAULT_RUNTIMES", "CostRow", "LMShape", "QuantizeOptions", "cost_rows", "map_nodes", "run_quantize"]

DEFAULT_RUNTIMES = ("ort-cpu",)  # int8-dynamic's contrib op runs on ONNX Runtime's CPU provider
_STANDIN = "conformance-standin:"  # doc_string of a DynamicQuantizeLSTM's stand-in while capture is planned
_CONTRIB = ("com.microsoft", "DynamicQuantizeLSTM")


@dataclass(frozen=True)
class QuantizeOptions:
    """``--quantize``, and the gates ``--max-abs`` (any output's greatest absolute error) and
    ``--max-ppl-increase`` (relative perplexity increase, 0.02 = 2%)."""

    transform: str
    max_abs: float | None = None
    max_ppl_increase: float | None = None

    @property
    def gated(self) -> bool:
        return self.max_abs is not None or self.max_ppl_increase is not None


@dataclass(frozen=True)
class LMShape:
    """How a model is a language model: its token input, the output scoring the next token over ``vocab``
    entries (``scores``: ``log_probs``, or ``logits`` that get a log-softmax), and the token input's time
    axis with how it was found."""

    tokens: str
    output: str
    vocab: int
    time_axis: int
    time_from: str
    scores: str


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


def run_quantize(model_path: Path, options: CheckOptions, quantize: QuantizeOptions) -> CheckReport:
    """Everything ``conformance check --quantize`` does, as data."""
    start = time.perf_counter()
    try:
        transform = get_transform(quantize.transform)
    except TransformError as exc:
        raise BadInputError(f"--quantize {quantize.transform}: {exc}") from None
    missing = transform.unavailable()
    if missing:
        raise BadInputError(f"--quantize {transform.id}: {missing}")
    if options.stream or options.weights is not None or options.tolerance is not None:
        raise BadInputError("--quantize cannot be combined with --stream, --weights or --atol/--rtol")
    runtimes = _onnx_runtimes(options.runtimes or DEFAULT_RUNTIMES)
    _runtimes_can_run(transform, runtimes)
    opened = open_check(model_path, options, [r.id for r in runtimes])
    report = opened.report
    if quantize.max_ppl_increase is not None and not opened.input_roles.tokens:
        raise BadInputError(
            f"--max-ppl-increase: {model_path.name} is not language-model-shaped: no input is read as token ids "
            "by a Gather on a constant table"
        )
    from conformance.files import scratch_folder

    folder = Path(scratch_folder("conformance-check-"))
    try:  # Ctrl-C or SIGTERM: stop where it is, keep what was measured
        made = _transformed(model_path, opened, transform, folder)
        if isinstance(made, str):  # the transform's tool failed on this model: each runtime's error
            report.results = [model_result(model_path.name, r.id, ERROR, made, exporter=f"user+{transform.id}")
                              for r in runtimes]  # fmt: skip
            report.seconds = time.perf_counter() - start
            return report
        report.notes += _transform_notes(made)
        planned = plan_check(opened, options, folder)
        lm = language_model(opened, planned)
        if isinstance(lm, str) and quantize.max_ppl_increase is not None:
            raise BadInputError(f"--max-ppl-increase: {model_path.name} is not language-model-shaped: {lm}")
        if isinstance(lm, LMShape):
            scores = "log-probabilities" if lm.scores == "log_probs" else "logits (log-softmax taken)"
            report.notes.append(
                f"language model: output {lm.output!r} holds {scores} of the next token of input {lm.tokens!r} "
                f"over {lm.vocab} entries; time is {lm.time_from}"
            )
        jobs = []
        for runtime in runtimes:

            def work(sets: Sequence[InputSet] | None = None, runtime: Any = runtime) -> list[Result]:
                return _on_runtime(runtime, model_path, report, planned, made, lm, quantize, sets)

            hazard = fork_hazard(runtime)
            if hazard:
                report.notes.append(f"{runtime.id} ran in this process, not in a worker: {hazard}")
            jobs.append((runtime.id, work, hazard))
        by_runtime = runtimes_in_workers(jobs, report.input_sets, model_path.name, options, worker_slots())
        for runtime in runtimes:
            report.results += [_as_transformed(r, made.exporter) for r in by_runtime[runtime.id]]
    except KeyboardInterrupt as stop:
        report.stopped = stop
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report.results = _fold_not_exercised(report.results)
    report.seconds = time.perf_counter() - start
    return report


def _as_transformed(result: Result, exporter: str) -> Result:
    """A record of the transformed model: those the worker isolation writes for a worker that crashed or
    timed out (``model_result``'s default exporter, ``user``) get the transform's exporter id too."""
    plain = f"{result.case}/user/{result.runtime}"
    if result.exporter != "user" or result.id != plain:
        return result
    return dataclasses.replace(result, id=f"{result.case}/{exporter}/{result.runtime}", exporter=exporter)


def _runtimes_can_run(transform: Transform, runtimes: Sequence[Any]) -> None:
    """A runtime that cannot run what the transform makes (a contrib op it lacks) is bad input, named."""
    from conformance.lane import cannot_run

    for runtime in runtimes:
        if runtime.unavailable():
            continue  # skipped with its reason, as check does
        reason = cannot_run(transform, runtime, runtime.settings())
        if reason:
            raise BadInputError(f"--runtime {runtime.id}: {reason}")


# --- the transformed model -------------------------------------------------------------------------


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


# --- the language model ----------------------------------------------------------------------------


def language_model(opened: Opened, planned: Planned) -> LMShape | str:
    """The model's language-model shape, or why it has none."""
    report = opened.report
    tokens = opened.input_roles.tokens
    if not tokens:
        return "no input is read as token ids by a Gather on a constant table"
    first = next((s for s in report.input_sets if planned.reference[s.label].outputs is not None), None)
    if first is None:
        return "the reference ran the model on no input set"
    outputs = _comparable(planned.reference[first.label].outputs or {})
    for name, rows in tokens.items():
        ids = np.asarray(first.feeds[name])
        for output, value in outputs.items():
            if value.dtype.kind == "f" and ids.ndim in (1, 2) and value.shape == (*ids.shape, rows):
                axis, why = _time_axis(opened, planned, first, name, ids)
                scores = "log_probs" if _normalised(value) else "logits"
                return LMShape(name, output, rows, axis, why, scores)
    name, rows = next(iter(tokens.items()))
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in outputs.items())
    ids_shape = list(np.shape(first.feeds[name]))
    return (
        f"token input {name!r} indexes a table of {rows} rows, but no float output has the shape "
        f"{[*ids_shape, rows]} (the token input's, then {rows}) at {first.label} (outputs: {shapes})"
    )


def _time_axis(opened: Opened, planned: Planned, first: InputSet, name: str, ids: np.ndarray) -> tuple[int, str]:
    """The token input's time axis: from the probe's roles of its dims, else from the first LSTM node's X
    in the reference run, else axis 0 (torch.nn.LSTM's default), said as assumed."""
    if ids.ndim == 1:
        return 0, f"the only axis of {name!r}"
    graph_input = next(i for i in opened.report.inputs if i.name == name)
    keys = [graph_input.key(a) if graph_input.dims is not None else None for a in (0, 1)]
    kinds = [planned.dims.roles.get(k or "") for k in keys]
    if kinds.count("sequence") == 1:
        axis = kinds.index("sequence")
        return axis, f"axis {axis} of {name!r} (dim {keys[axis]!r}, which moves the LSTM's sequence axis)"
    if kinds.count("batch") == 1:
        axis = 1 - kinds.index("batch")
        return axis, f"axis {axis} of {name!r} (the other, dim {keys[1 - axis]!r}, moves the LSTM's batch axis)"
    captures = planned.reference[first.label].captures
    for node_capture in captures or ():
        if node_capture.exercised:
            x = node_capture.invocations[0].tensors["X"]
            steps, batch = (x.shape[1], x.shape[0]) if node_capture.node.attributes.layout == 1 else x.shape[:2]
            if steps != batch and ids.shape in ((steps, batch), (batch, steps)):
                axis = 0 if ids.shape == (steps, batch) else 1
                return axis, f"axis {axis} of {name!r} (LSTM node {node_capture.node.path} runs {steps} steps)"
            break
    return 0, f"axis 0 of {name!r}, assumed (time-major): neither the probe nor the LSTM's input told the axes apart"


def _normalised(value: np.ndarray) -> bool:
    """Whether ``value`` holds log-probabilities: exp sums to 1 along the last axis."""
    v = value.astype(np.float64)
    top = v.max(axis=-1, keepdims=True)
    total = top[..., 0] + np.log(np.exp(v - top).sum(axis=-1))
    return bool(np.all(np.abs(total) < 1e-3))


def _log_softmax(value: Any) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64)
    top = v.max(axis=-1, keepdims=True)
    shifted = v - top
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)))


def lm_cost(lm: LMShape, feeds: Mapping[str, np.ndarray], expected: Any, actual: Any) -> dict[str, Any] | None:
    """``evaluate.lm_metrics`` on one input set (logits get a log-softmax first), with the time axis taken."""
    ids = np.asarray(feeds[lm.tokens])
    reference, runtime = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if lm.scores == "logits":
        with np.errstate(all="ignore"):
            reference, runtime = _log_softmax(reference), _log_softmax(runtime)
    if ids.ndim == 1:
        ids, reference, runtime = ids[:, None], reference[:, None], runtime[:, None]
    metrics = evaluate.lm_metrics(ids, reference, runtime, batch_first=lm.time_axis == 1)
    if metrics is None:
        return None
    return {**metrics, "output": lm.output, "scores": lm.scores, "time_axis": lm.time_axis, "time": lm.time_from}


# --- one runtime -----------------------------------------------------------------------------------


def _on_runtime(
    runtime: Any,
    model_path: Path,
    report: CheckReport,
    planned: Planned,
    made: _Made,
    lm: LMShape | str,
    quantize: QuantizeOptions,
    input_sets: Sequence[InputSet] | None,
) -> list[Result]:
    """The transformed model on one runtime at every input set (or at ``input_sets``)."""
    name = model_path.name
    reason = runtime.unavailable()
    if reason:
        return [model_result(name, runtime.id, SKIP, reason, exporter=made.exporter)]
    plain = _PlainSession(runtime, made.path)
    session: Any = None
    why = made.why
    if made.instrumented_path is not None:
        try:
            session = open_session(runtime, made.instrumented_path)
        except Exception as exc:
            why = (
                f"{runtime.id} cannot load the copy of the {made.transform.id} model that returns each LSTM node's "
                f"tensors ({describe_error(exc)})"
            )
    try:
        if session is None:
            try:
                plain.session = open_session(runtime, made.path)
            except Exception as exc:
                message = f"{runtime.id} could not load the {made.transform.id} model: {describe_error(exc)}"
                return [model_result(name, runtime.id, ERROR, message, exporter=made.exporter)]
        settings = runtime.settings()
        results: list[Result] = []
        for input_set in report.input_sets if input_sets is None else input_sets:
            at = _At(runtime.id, name, report.nodes, input_set, planned, made, lm, quantize, settings)
            results += at.results(session, plain, why)
        placement = (session or plain.session).placement()
    finally:
        if session is not None:
            session.close()
        plain.close()
    problem = evaluate.placement_problem(runtime.id, runtime.required_provider, placement)
    if problem:
        results = [r.with_status(FAIL, f"{problem}\n\n{r.message}") if r.status != SKIP else r for r in results]
    return results


@dataclass(frozen=True)
class _At:
    """One runtime at one input set: every node's cost and the whole model's."""

    runtime_id: str
    model: str
    nodes: tuple[LSTMNode, ...]
    input_set: InputSet
    planned: Planned
    made: _Made
    lm: LMShape | str
    quantize: QuantizeOptions
    settings: Mapping[str, Any]

    @property
    def label(self) -> str:
        return self.input_set.label

    def facts(self) -> dict[str, Any]:
        return {"shape": dict(self.input_set.sizes) or None, "settings": dict(self.settings),
                "artifact": dict(self.made.artifact)}  # fmt: skip

    def results(self, session: Any, plain: _PlainSession, why: str | None) -> list[Result]:
        from conformance.graph import capture
        from conformance.lane import as_the_model_takes

        start = time.perf_counter()
        reference = self.planned.reference[self.label]
        tid = self.made.transform.id
        if reference.outputs is None:
            message = f"the model rejects this input ({self.label}): the reference fails too ({reference.error})"
            return [self._model(SKIP, f"{message}; no cost measured there")]
        feeds = as_the_model_takes(dict(self.input_set.feeds), dict(self.made.artifact))
        captures = None
        outputs: Mapping[str, Any] = {}
        if session is not None and self.made.instrumented is not None:
            try:
                captures = capture(self.made.instrumented, feeds, lambda _model, f: session.run(f))
                outputs = captures.outputs
            except Exception as exc:
                why = (
                    f"{self.runtime_id} runs the {tid} model but not the copy that returns each LSTM node's "
                    f"tensors ({describe_error(exc)})"
                )
        if captures is None:
            try:
                outputs = plain.run(feeds)
            except Exception as exc:
                message = f"{self.runtime_id} failed to run the {tid} model at {self.label}: {describe_error(exc)}"
                return [self._model(ERROR, message)]
        results = [self._node(node, reference.captures, captures, why) for node in self.nodes]
        results.append(self._whole(outputs, reference.outputs))
        duration = round(time.perf_counter() - start, 4)
        return [dataclasses.replace(r, duration_s=duration) for r in results]

    def _model(self, status: str, message: str, **facts: Any) -> Result:
        return model_result(self.model, self.runtime_id, status, message, exporter=self.made.exporter,
                            label=self.label, **self.facts(), **facts)  # fmt: skip

    def _node_record(self, node: LSTMNode, status: str, message: str, **facts: Any) -> Result:
        result = node_result(self.model, node.path, self.runtime_id, status, message, label=self.label,
                             **self.facts(), **facts)  # fmt: skip
        return dataclasses.replace(result, exporter=self.made.exporter)

    def _node(self, node: LSTMNode, reference: Any, captures: Any, why: str | None) -> Result:
        path, tid = node.path, self.made.transform.id
        if reference is None:
            uncapturable = self.planned.reference[self.label].uncapturable
            message = (
                f"LSTM node {path} not captured at {self.label}: the copy of the model that returns each LSTM "
                f"node's tensors fails on the reference ({uncapturable}); the whole model is judged"
            )
            return self._node_record(node, SKIP, message)
        if path in self.made.unmapped:
            message = f"LSTM node {path}: {self.made.unmapped[path]}; the whole model is judged"
            return self._node_record(node, SKIP, message)
        if why is not None or captures is None:
            message = f"LSTM node {path} not captured at {self.label}: {why}; the whole model is judged"
            return self._node_record(node, SKIP, message)
        theirs, how = self.made.mapping[path]
        op = self.made.ops.get(theirs, "LSTM")
        ours: NodeCapture = reference[path]
        if not ours.exercised:
            return self._node_record(node, NOT_EXERCISED, f"LSTM node {path}: {ours.not_exercised}")
        got: NodeCapture = captures[theirs]
        detail: dict[str, Any] = {"transform": tid, "op_type": op, "mapped_to": theirs, "mapped_by": how}
        if len(got.invocations) != len(ours.invocations):
            message = (
                f"LSTM node {path} ran {len(got.invocations)} time(s) in the {tid} model at {self.label}, "
                f"{len(ours.invocations)} in the reference: the transform changed the model's control flow"
            )
            return self._node_record(node, FAIL, message, detail=detail)
        judged = [role for role in ("Y", "Y_h", "Y_c") if role in node.outputs] or ["Y", "Y_h", "Y_c"]
        allowed = {role: Tolerance(*BUDGETS[tid][role]) for role in judged}
        axes: dict[str, int | None] = {"Y": 1 if node.attributes.layout == 1 else 0, "Y_h": None, "Y_c": None}
        worst: evaluate.Verdict | None = None
        costs: dict[str, dict[str, Any]] = {}
        for mine, transformed in zip(ours.invocations, got.invocations, strict=True):
            expected = node_reference(node, mine)
            actual = transformed.outputs
            verdict = evaluate.judge({r: actual.get(r) for r in judged}, {r: expected[r] for r in judged}, allowed,
                                     time_axes=axes)  # fmt: skip
            if worst is None or _headroom(verdict) > _headroom(worst):
                worst = verdict
            for role in judged:
                costs[role] = _worse(costs.get(role), _cost(actual.get(role), expected[role], mine.iteration))
        assert worst is not None
        detail |= {"cost": costs, "budget": {r: {"atol": t.atol, "rtol": t.rtol} for r, t in allowed.items()}}
        runs = f" ({len(ours.invocations)} invocations)" if len(ours.invocations) > 1 else ""
        where = f"LSTM node {path} ({op} in the {tid} model) at {self.label}{runs}"
        if self.quantize.gated:
            within = "within" if worst.status == PASS else "outside"
            message = f"{where}: cost only (the gates decide): {_costs_text(costs)}; {within} the {tid} budget"
            return self._node_record(node, PASS, message, detail=detail)
        judged_verdict = evaluate.within_budget(worst, tid, allowed)
        message = f"{where}: {_costs_text(costs)}\n{judged_verdict.message}"
        return self._node_record(node, judged_verdict.status, message, outputs=worst.outputs, detail=detail)

    def _whole(self, outputs: Mapping[str, Any], reference: Mapping[str, Any]) -> Result:
        quantize, tid = self.quantize, self.made.transform.id
        expected = {k: v for k, v in _comparable(reference).items() if v.dtype.kind in "fiu" and v.size}
        actual = _comparable(outputs)
        costs = {name: _cost(actual.get(name), value) for name, value in expected.items()}
        detail: dict[str, Any] = {"transform": tid, "cost": costs}
        metrics = None
        if isinstance(self.lm, LMShape) and self.lm.output in actual:
            metrics = lm_cost(self.lm, self.input_set.feeds, expected[self.lm.output], actual[self.lm.output])
            if metrics is not None:
                detail["lm"] = metrics
        gates = {k: v for k, v in (("max_abs", quantize.max_abs), ("max_ppl_increase", quantize.max_ppl_increase))
                 if v is not None}  # fmt: skip
        if gates:
            detail["gates"] = gates
        lm_text = f"; {evaluate.lm_summary(metrics)}" if metrics is not None else ""
        cost_text = f"at {self.label}: {_costs_text(costs)}{lm_text}"
        failures: list[str] = []
        diffs: tuple[Any, ...] = ()
        if quantize.max_abs is not None:
            verdict = evaluate.judge({k: actual.get(k) for k in expected}, expected, Tolerance(quantize.max_abs, 0.0))
            diffs = verdict.outputs
            failures += [_over_max_abs(d, quantize.max_abs) for d in diffs if not d.passed]
        if quantize.max_ppl_increase is not None:
            failures += _ppl_gate(metrics, quantize.max_ppl_increase)
        if failures:
            message = f"the {tid} model at {self.label}:\n" + "\n".join(failures) + f"\n({cost_text})"
            return self._model(FAIL, message, outputs=diffs, detail=detail)
        if not gates:
            return self._model(PASS, f"cost only: no --max-abs given; {cost_text}", detail=detail)
        said = []
        if quantize.max_abs is not None:
            said.append(f"every output within --max-abs {quantize.max_abs:g}")
        else:
            said.append("no --max-abs given (output errors are cost only)")
        if quantize.max_ppl_increase is not None:
            said.append(_ppl_within(metrics, quantize.max_ppl_increase))
        return self._model(PASS, f"{'; '.join(said)}; {cost_text}", outputs=diffs, detail=detail)


def _over_max_abs(diff: Any, limit: float) -> str:
    """One output over ``--max-abs``: its greatest absolute error and where, how many elements are over."""
    if not diff.values_compared:
        return f"{diff.name}: {diff.problem}"
    bad = "".join(f", {n} {kind}" for n, kind in ((diff.nan_count, "NaN"), (diff.inf_count, "Inf")) if n)
    return (
        f"{diff.name}: greatest absolute error {diff.max_abs:.3g} at index {diff.max_abs_index}, over --max-abs "
        f"{limit:g} ({diff.mismatched} of {diff.total} elements over{bad})"
    )


def _ppl_gate(metrics: Mapping[str, Any] | None, limit: float) -> list[str]:
    if metrics is None or "perplexity_increase" not in metrics:
        return []
    increase = metrics["perplexity_increase"]
    if not isinstance(increase, float):
        return [f"perplexity is {increase} (reference {metrics['perplexity_reference']:.4g}): over --max-ppl-increase"]
    if increase > limit:
        return [f"perplexity increase {increase:+.3%} over --max-ppl-increase {limit:.3%}"]
    return []


def _ppl_within(metrics: Mapping[str, Any] | None, limit: float) -> str:
    if metrics is None or "perplexity_increase" not in metrics:
        return "perplexity not scored here (one step: no next token)"
    return f"perplexity increase {metrics['perplexity_increase']:+.3%} within --max-ppl-increase {limit:.3%}"


def _headroom(verdict: evaluate.Verdict) -> float:
    return max((d.headroom for d in verdict.outputs), default=0.0)


def _cost(actual: Any, expected: Any, iteration: tuple[int, ...] = ()) -> dict[str, Any]:
    """The greatest absolute and relative error of ``actual`` against ``expected``, over every element, and
    where (an index; a node in a loop: the iteration first); NaN/Inf counted. Non-finite as text (JSON)."""
    diff = compare_output("cost", actual, expected, EXACT, time_axis=None)
    if diff.problem is not None:
        return {"problem": diff.problem}
    return {
        "max_abs": _finite(diff.max_abs),
        "max_abs_index": [*iteration, *diff.max_abs_index],
        "max_rel": _finite(diff.max_rel),
        "max_rel_index": [*iteration, *diff.max_rel_index],
        "nan": diff.nan_count,
        "inf": diff.inf_count,
    }


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _number(value: Any) -> float:
    """A cost figure as a number (``"inf"`` -> inf); a problem reads as inf."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.inf


def _worse(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Of two costs of one output (two invocations), the greater absolute error, and the greater relative."""
    if old is None or "problem" in old:
        return old or new
    if "problem" in new:
        return new
    out = dict(old)
    if _number(new["max_abs"]) > _number(old["max_abs"]):
        out.update(max_abs=new["max_abs"], max_abs_index=new["max_abs_index"])
    if _number(new["max_rel"]) > _number(old["max_rel"]):
        out.update(max_rel=new["max_rel"], max_rel_index=new["max_rel_index"])
    out.update(nan=old["nan"] + new["nan"], inf=old["inf"] + new["inf"])
    return out


def _costs_text(costs: Mapping[str, Mapping[str, Any]]) -> str:
    return "; ".join(_cost_text(name, cost) for name, cost in costs.items()) or "no outputs compared"


def _cost_text(name: str, cost: Mapping[str, Any]) -> str:
    if "problem" in cost:
        return f"{name}: {cost['problem']}"
    text = (
        f"{name} max abs {_number(cost['max_abs']):.3g} at {tuple(cost['max_abs_index'])}, "
        f"max rel {_number(cost['max_rel']):.3g} at {tuple(cost['max_rel_index'])}"
    )
    bad = [f"{cost[k]} {k.upper()}" for k in ("nan", "inf") if cost.get(k)]
    return f"{text} ({', '.join(bad)})" if bad else text


# --- the console's cost table ----------------------------------------------------------------------


@dataclass(frozen=True)
class CostRow:
    """One line of the cost table: an output or a node on one runtime, its worst over the input sets."""

    what: str
    runtime: str
    max_abs: float
    where: str
    max_rel: float
    lm: str = ""


def cost_rows(results: Sequence[Result]) -> list[CostRow]:
    """Per output and per LSTM node (worst of its Y, Y_h, Y_c) and runtime: the greatest absolute error
    over the input sets and where, the greatest relative one; for a language model the greatest perplexity
    increase and the lowest next-token agreement."""
    worst: dict[tuple[str, str], CostRow] = {}
    lms: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for result in results:
        costs = result.detail.get("cost")
        if not isinstance(costs, Mapping):
            continue
        label = result.case.partition("[")[2].rstrip("]")
        for name, cost in costs.items():
            if "problem" in cost:
                continue
            what = f"node {result.node}" if result.node else f"output {name}"
            where = f"{name + ' ' if result.node else ''}at {label} {tuple(cost['max_abs_index'])}"
            row = CostRow(what, result.runtime, _number(cost["max_abs"]), where, _number(cost["max_rel"]))
            old = worst.get((what, result.runtime))
            if old is not None:
                bigger = row if row.max_abs > old.max_abs else old
                row = dataclasses.replace(bigger, max_rel=max(old.max_rel, row.max_rel))
            worst[what, result.runtime] = row
        lm = result.detail.get("lm")
        if isinstance(lm, Mapping) and not result.node:
            lms.setdefault((f"output {lm.get('output')}", result.runtime), []).append(lm)
    rows = []
    for key, row in worst.items():
        metrics = lms.get(key)
        rows.append(dataclasses.replace(row, lm=_lm_cell(metrics)) if metrics else row)
    return sorted(rows, key=lambda r: not r.what.startswith("output"))  # outputs first, runtimes as listed


def _lm_cell(metrics: Sequence[Mapping[str, Any]]) -> str:
    increases = [m["perplexity_increase"] for m in metrics if "perplexity_increase" in m]
    numbers = [i for i in increases if isinstance(i, float)]
    agreement = min(m["next_token_agreement"] for m in metrics)
    if len(numbers) < len(increases):
        ppl = "perplexity not finite"
    elif numbers:
        ppl = f"perplexity {100 * max(numbers):+.3g}% at worst"
    else:
        ppl = "perplexity not scored"
    return f"{ppl}; next-token agreement {agreement:.1%} at lowest"
