"""``conformance check``: gate any ONNX model with LSTM nodes against the float64 reference.

Every LSTM node, wherever it sits (main graph, If branches, Loop and Scan bodies, functions), is judged on
each runtime at the tensors it really received: the model is instrumented to return each node's inputs
and outputs (``conformance.graph``), and ``reference.lstm`` runs on exactly those inputs. The whole model
is judged too, against ``onnx.reference`` with our float64 LSTM in place of its own; when the model
differs while every LSTM node conforms, the first node where the runtime and the reference part is named.

Inputs are synthesized from the declared types and shapes (``conformance.graph.inputs``); the sizes of
symbolic dims are found by probing (``dims``), or given with ``--dim``. With ``--weights``, the trained
weights are held against what each node really used (``conformance.intent``). onnx and onnxruntime are
imported here, so the CLI imports this module only when ``check`` runs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from conformance.check.input_sets import fixed_first, input_sets_for, user_input_set, within_budget
from conformance.check.isolation import in_worker, runtimes_in_workers
from conformance.check.judging import check_runtime, open_session
from conformance.check.model import (
    DEFAULT_BATCHES,
    DEFAULT_MAX_MEMORY,
    DEFAULT_SEQ_LENS,
    INPUT_SHARE,
    CheckOptions,
    CheckReport,
    InputSet,
    op_histogram,
    save_model,
)
from conformance.check.reference import ReferenceRun, reference_runs, weights_finite
from conformance.files import regular_file, scratch_folder
from conformance.graph import (
    GraphError,
    Instrumented,
    LSTMNode,
    find_lstm_nodes,
    instrument,
)
from conformance.graph.dims import BASE, DimPlan, plan_dims
from conformance.graph.inputs import (
    FeedValue,
    GraphInput,
    InputRoles,
    dim_keys,
    parse_dim,
    parse_feed,
    read_inputs,
    roles,
)
from conformance.records import Result, weights_result
from conformance.runtimes.base import fork_hazard
from conformance.status import FAIL, NOT_EXERCISED, PASS, SKIP
from exporters.errors import BadInputError


def onnx_runtime_ids() -> list[str]:
    """Every runtime that runs ONNX files: what ``check`` uses unless ``--runtime`` narrows it."""
    from conformance.runtimes import all_runtimes

    return [r.id for r in all_runtimes() if r.consumes == "onnx"]


def load_model(path: Path, max_bytes: int = DEFAULT_MAX_MEMORY) -> onnx.ModelProto:
    """The model with its external data (confined to the model's folder, each tensor at most ``max_bytes``),
    or a one-line ``BadInputError`` (``exporters.importers.load_onnx``)."""
    from exporters.importers import load_onnx

    if path.is_dir():
        raise BadInputError(f"{path}: a folder, not an ONNX file")
    if path.exists():
        regular_file(path, "an ONNX file", max_bytes=max_bytes)  # protobuf reads all of it before any check
    model: onnx.ModelProto = load_onnx(path, max_tensor_bytes=max_bytes)
    return model


def lstm_nodes(path: Path, model: onnx.ModelProto) -> tuple[LSTMNode, ...]:
    """Every LSTM node of ``model``; a graph without one is bad input, and the message lists its ops."""
    try:
        nodes = find_lstm_nodes(model)
    except GraphError as exc:
        raise BadInputError(f"{path}: {exc}") from None
    if not nodes:
        ops = op_histogram(model)
        listed = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in ops.items()) or "none"
        raise BadInputError(
            f"{path}: no LSTM node in the graph, its subgraphs or its functions; nothing to check (ops: {listed})"
        )
    return nodes


@dataclass(frozen=True)
class Opened:
    """A model a check has read and validated the options against, before anything runs: the report to
    fill, the model, its instrumented copy, what its inputs are for, and the sizes and feeds given."""

    report: CheckReport
    model: onnx.ModelProto
    instrumented: Instrumented
    input_roles: InputRoles
    fixed: dict[str, tuple[int, ...]]
    feeds: dict[str, FeedValue]


@dataclass(frozen=True)
class Planned:
    """What every runtime of a check runs on: the instrumented copy saved in the scratch folder, the dim
    plan (each symbolic dim's role), and the float64 reference on each input set (``report.input_sets``)."""

    instrumented_path: Path
    dims: DimPlan
    reference: dict[str, ReferenceRun]


def open_check(model_path: Path, options: CheckOptions, runtime_ids: Sequence[str]) -> Opened:
    """Read the model, find its LSTM nodes and inputs, and check ``--dim``/``--feed``/``--inputs`` against
    them, and make the copy of the model that returns each LSTM node's tensors; bad input raises
    ``BadInputError``."""
    model = load_model(model_path, options.max_memory)
    nodes = lstm_nodes(model_path, model)
    inputs = read_inputs_or_refuse(model_path, model)
    report = CheckReport(model_path, nodes, inputs, runtimes=list(runtime_ids))
    fixed = _given_dims(options.dims, inputs)
    feeds = _given_feeds(options.feeds, inputs)
    _sizes_from_arrays(feeds, inputs, fixed)
    _shapes_declared(inputs, feeds, options.inputs)
    input_roles = roles(model, inputs)
    try:
        instrumented = instrument(model)
    except GraphError as exc:
        raise BadInputError(f"{model_path}: {exc}") from None
    return Opened(report, model, instrumented, input_roles, fixed, feeds)


def plan_check(opened: Opened, options: CheckOptions, folder: Path) -> Planned:
    """Probe the symbolic dims, make the input sets (``opened.report.input_sets``, notes to its notes) and
    run the float64 reference on each; the instrumented copy is saved in ``folder``."""
    report, inputs = opened.report, opened.report.inputs
    probe_sizes = {k: 2 * BASE for k in dim_keys(inputs)} | fixed_first(opened.fixed)
    within_budget(inputs, probe_sizes, opened.feeds, options.max_memory // INPUT_SHARE)
    instrumented_path = Path(folder) / "instrumented.onnx"
    save_model(opened.instrumented.model, instrumented_path)
    dims = plan_dims(
        opened.instrumented, instrumented_path, inputs, opened.input_roles, opened.fixed, opened.feeds,
        options.seq_lens, options.batches,
    )  # fmt: skip
    report.notes += dims.notes
    report.input_sets = input_sets_for(
        inputs, opened.input_roles, dims, opened.feeds, options, opened.fixed, report.nodes
    )
    report.input_sets += [user_input_set(p, inputs, options.max_memory // INPUT_SHARE) for p in options.inputs]
    reference = reference_runs(opened.instrumented, opened.model, report.input_sets)
    weights_finite(report.model, reference)
    return Planned(instrumented_path, dims, reference)


def run_check(model_path: Path, options: CheckOptions) -> CheckReport:
    """Everything ``conformance check`` does, as data."""
    start = time.perf_counter()
    runtimes = _onnx_runtimes(options.runtimes)
    opened = open_check(model_path, options, [r.id for r in runtimes])
    report, model, inputs, nodes = opened.report, opened.model, opened.report.inputs, opened.report.nodes
    trained = _read_trained(options.weights, options.max_memory)
    instrumented = opened.instrumented
    stream = None
    if options.stream:
        from conformance.streaming import plan_stream

        stream = plan_stream(model, inputs, options.states, options.stream)
        report.notes += stream.notes
    folder = scratch_folder("conformance-check-")  # a killed check's is swept by the next one
    try:  # Ctrl-C or SIGTERM: stop where it is, keep what was judged
        planned = plan_check(opened, options, Path(folder))
        instrumented_path, reference = planned.instrumented_path, planned.reference
        if trained is not None:
            report.results.append(_intent(model_path, model, trained, nodes, reference))
        jobs = []
        for runtime in runtimes:

            def work(sets: Sequence[InputSet] | None = None, runtime: Any = runtime) -> list[Result]:
                return check_runtime(
                    runtime, model_path, model, instrumented, instrumented_path, report, reference, options, sets
                )

            hazard = fork_hazard(runtime)
            if hazard:
                report.notes.append(f"{runtime.id} ran in this process, not in a worker: {hazard}")
            jobs.append((runtime.id, work, hazard))
        by_runtime = runtimes_in_workers(jobs, report.input_sets, model_path.name, options)
        for runtime in runtimes:  # in the order the runtimes are listed, whatever order they finished in
            report.results += by_runtime[runtime.id]
        if stream is not None:
            from conformance.streaming import run_stream

            by_id = {r.id: r for r in runtimes}

            report.results += run_stream(
                stream, model_path, model, report.input_sets[0], runtimes, options, open_session,
                lambda work, runtime_id: in_worker(
                    work, model_path.name, runtime_id, options.timeout, fork_hazard(by_id[runtime_id])
                ),
            )  # fmt: skip
    except KeyboardInterrupt as stop:
        report.stopped = stop
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report.results = _fold_not_exercised(report.results)
    report.causes = _causes(report)
    report.seconds = time.perf_counter() - start
    return report


def _given_dims(texts: Sequence[str], inputs: Sequence[GraphInput]) -> dict[str, tuple[int, ...]]:
    given: dict[str, tuple[int, ...]] = {}
    for text in texts:
        key, sizes = parse_dim(text, inputs)
        if key in given:
            raise BadInputError(f"--dim {text}: dim {key!r} is given twice; list its sizes once: --dim {key}=N,M")
        given[key] = sizes
    return given


def _given_feeds(texts: Sequence[str], inputs: Sequence[GraphInput]) -> dict[str, FeedValue]:
    feeds: dict[str, FeedValue] = {}
    for text in texts:
        feed = parse_feed(text, inputs)
        if feed.name in feeds:
            raise BadInputError(f"--feed {text}: input {feed.name!r} is fed twice")
        feeds[feed.name] = feed
    return feeds


def _sizes_from_arrays(
    feeds: Mapping[str, FeedValue], inputs: Sequence[GraphInput], given: dict[str, tuple[int, ...]]
) -> None:
    """An array fed with ``--feed NAME=x.npy`` fixes the symbolic dims of its input to its own sizes."""
    for graph_input in inputs:
        feed = feeds.get(graph_input.name)
        if feed is None or feed.array is None or graph_input.dims is None:
            continue
        for axis, size in enumerate(feed.array.shape):
            key = graph_input.key(axis)
            if key is None:
                continue
            if key in given and given[key] != (size,):
                raise BadInputError(
                    f"--feed {feed.source}: its axis {axis} is {size}, but --dim gives {key}="
                    f"{','.join(map(str, given[key]))}"
                )
            given[key] = (size,)


def _shapes_declared(inputs: Sequence[GraphInput], feeds: Mapping[str, FeedValue], files: Sequence[Path]) -> None:
    """An input without a declared shape cannot be synthesized: the user must feed it."""
    for graph_input in inputs:
        fed = graph_input.name in feeds and feeds[graph_input.name].array is not None
        if graph_input.dims is None and not fed and not files:
            raise BadInputError(
                f"input {graph_input.name!r} declares no shape, so no values can be made for it; feed it with "
                f"--feed {graph_input.name}=values.npy or --inputs"
            )


def read_inputs_or_refuse(path: Path, model: onnx.ModelProto) -> tuple[GraphInput, ...]:
    try:
        return read_inputs(model)
    except BadInputError as exc:
        raise BadInputError(f"{path}: {exc}") from None


def _onnx_runtimes(wanted: Sequence[str] | None) -> list[Any]:
    """The runtimes to check on (built once: building them imports and probes the backends); every ONNX
    runtime when ``wanted`` is None; one that does not run ONNX files is bad input."""
    from conformance.runtimes import all_runtimes, get_runtime

    everything = all_runtimes()
    if wanted is None:
        return [r for r in everything if r.consumes == "onnx"]
    by_id = {r.id: r for r in everything}
    chosen = []
    for runtime_id in wanted:
        runtime = by_id.get(runtime_id) or get_runtime(runtime_id)  # get_runtime names an unknown id
        if runtime.consumes != "onnx":
            onnx_ids = [r.id for r in everything if r.consumes == "onnx"]
            raise BadInputError(
                f"--runtime {runtime_id}: it does not run ONNX files; check runs on: {', '.join(onnx_ids)}"
            )
        chosen.append(runtime)
    return chosen


def _read_trained(path: Path | None, max_bytes: int) -> Any:
    if path is None:
        return None
    from conformance.intent import read_trained

    return read_trained(path, max_bytes=max_bytes)


def _intent(
    model_path: Path, model: onnx.ModelProto, trained: Any, nodes: Sequence[LSTMNode], reference: Mapping[str, Any]
) -> Result:
    """The trained weights (``--weights``) held against what each node used in the reference runs."""
    from onnx import numpy_helper

    from conformance.intent import NodeWeights, check_extras, check_intent

    used: dict[str, NodeWeights] = {}
    for run in reference.values():
        if run.captures is None:
            continue
        for node_capture in run.captures:
            node = node_capture.node
            if node.path in used or not node_capture.exercised:
                continue
            used[node.path] = NodeWeights.of(node, node_capture.invocations[0].inputs)
    missing = [n.path for n in nodes if n.path not in used]
    findings = check_intent(trained, [used[n.path] for n in nodes if n.path in used])
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    findings += check_extras(trained, initializers)
    lines = [f.message for f in findings]
    note = f"\n(not compared: {', '.join(missing)}, not exercised by these inputs)" if missing else ""
    if lines:
        message = f"the model differs from the trained weights ({model_path.name} vs {trained.path.name}):\n" + (
            "\n".join(f"- {line}" for line in lines)
        )
        return weights_result(model_path.name, FAIL, message + note)
    compared = len(used)
    message = (
        f"every LSTM node ({compared} compared) uses the trained weights of {trained.path.name} "
        f"with nn.LSTM's semantics{note}"
    )
    return weights_result(model_path.name, PASS if compared else SKIP, message)


def _rejected(results: Sequence[Result], label: str) -> bool:
    """Whether the model rejected the input set ``label`` on the reference too (judging marks it)."""
    return any(r.detail.get("rejected_input") == label for r in results)


def _fold_not_exercised(results: list[Result]) -> list[Result]:
    """Keep "not exercised" only for a node no input reached on that runtime, once (the first input)."""
    reached = {(r.node, r.runtime) for r in results if r.node and r.status != NOT_EXERCISED}
    kept, seen = [], set()
    for result in results:
        key = (result.node, result.runtime)
        if result.status == NOT_EXERCISED and (key in reached or key in seen):
            continue
        seen.add(key)
        kept.append(result)
    return kept


def _causes(report: CheckReport) -> list[str]:
    """Causes worth naming across results: LSTM nodes that fail on every runtime that judged them."""
    by_node: dict[str, set[str]] = {}
    for result in report.results:
        if result.node and result.status not in (SKIP, NOT_EXERCISED):
            by_node.setdefault(result.node, set()).add(result.status)
    rejected = [s.label for s in report.input_sets if _rejected(report.results, s.label)]
    ran = [s.label for s in report.input_sets if s.label not in rejected]
    causes = []
    if rejected and ran:
        causes.append(
            f"the model rejects some inputs its declared dims allow ({'; '.join(rejected[:4])}) but runs at others "
            f"({'; '.join(ran[:4])}): a dim declared dynamic is fixed inside the graph (e.g. a dynamo export that "
            "baked its example sequence length into a Reshape)"
        )
    return causes + [
        f"LSTM node {path} fails on every runtime that ran it: the node itself (its weights or attributes), "
        "not one runtime, departs from the reference"
        for path, statuses in by_node.items()
        if statuses == {FAIL} and len({r.runtime for r in report.results if r.node == path and r.status == FAIL}) > 1
    ]


__all__ = [
    "DEFAULT_BATCHES",
    "DEFAULT_MAX_MEMORY",
    "DEFAULT_SEQ_LENS",
    "INPUT_SHARE",
    "CheckOptions",
    "CheckReport",
    "InputSet",
    "Opened",
    "Planned",
    "ReferenceRun",
    "load_model",
    "lstm_nodes",
    "onnx_runtime_ids",
    "op_histogram",
    "open_check",
    "open_session",
    "plan_check",
    "run_check",
]
