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

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from conformance import evaluate
from conformance.diffs import Tolerance
from conformance.graph import (
    Captures,
    GraphError,
    Instrumented,
    LSTMNode,
    capture,
    find_lstm_nodes,
    first_divergence,
    instrument,
    judge_node,
    reference_runner,
)
from conformance.graph.dims import BASE, DimPlan, plan_dims
from conformance.graph.inputs import (
    FeedValue,
    GraphInput,
    InputRoles,
    check_value,
    dim_keys,
    parse_dim,
    parse_feed,
    read_inputs,
    roles,
    synthesize,
)
from conformance.records import Result, model_result, node_result, weights_result
from conformance.status import ERROR, FAIL, FAILING, NOT_EXERCISED, PASS, SKIP
from exporters.base import describe_error
from exporters.errors import BadInputError

DEFAULT_SEQ_LENS = (1, 7, 16)
DEFAULT_MAX_MEMORY = 2 << 30
# The inputs of one run may take this fraction of --max-memory: the LSTMs' outputs, the captures and the
# reference's float64 copies take many times more (a 320 MB input once took 10.8 GB).
INPUT_SHARE = 32
DEFAULT_BATCHES = (1, 3)
# Features the ONNX reference evaluator's own LSTM ignores (reference/SEMANTICS.md): it cannot judge them.
_EVALUATOR_BLIND = {
    "clip": "clip",
    "activations": "activations",
    "input_forget": "input_forget",
    "short_sequence": "sequence_lens",
    "zero_length_sequence": "sequence_lens",
}


def onnx_runtime_ids() -> list[str]:
    """Every runtime that runs ONNX files: what ``check`` uses unless ``--runtime`` narrows it."""
    from conformance.runtimes import all_runtimes

    return [r.id for r in all_runtimes() if r.consumes == "onnx"]


@dataclass(frozen=True)
class CheckOptions:
    seq_lens: Sequence[int] = DEFAULT_SEQ_LENS
    batches: Sequence[int] = DEFAULT_BATCHES
    runtimes: Sequence[str] | None = None  # None: every ONNX runtime (onnx_runtime_ids)
    tolerance: Tolerance | None = None
    weights: Path | None = None
    inputs: Sequence[Path] = ()
    dims: Sequence[str] = ()  # --dim texts
    feeds: Sequence[str] = ()  # --feed texts
    states: Sequence[str] = ()  # --state OUT=IN texts
    stream: int = 0  # --stream N
    seed: int = 0
    timeout: float = 300.0  # seconds per runtime before its worker is killed
    max_memory: int = DEFAULT_MAX_MEMORY  # --max-memory: the largest model tensor or weights file; inputs 1/32 of it


@dataclass(frozen=True)
class InputSet:
    """One set of feeds the model runs on: its label (``batch=3,seq=7``), the symbolic sizes, the feeds."""

    label: str
    sizes: Mapping[str, int]
    feeds: Mapping[str, np.ndarray]
    probed: bool = False  # some size was chosen by the probe, not given with --dim or fixed by the model


@dataclass
class CheckReport:
    model: Path
    nodes: tuple[LSTMNode, ...]
    inputs: tuple[GraphInput, ...]
    input_sets: list[InputSet] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    runtimes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return any(r.status in FAILING for r in self.results)


# --- loading ----------------------------------------------------------------------------------------


def load_model(path: Path, max_bytes: int = DEFAULT_MAX_MEMORY) -> onnx.ModelProto:
    """The model with its external data (confined to the model's folder, each tensor at most ``max_bytes``),
    or a one-line ``BadInputError`` (``exporters.importers.load_onnx``)."""
    from exporters.importers import load_onnx

    if path.is_dir():
        raise BadInputError(f"{path}: a folder, not an ONNX file")
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


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Op type -> count over the main graph, every subgraph and every function body, most frequent first."""
    counts: dict[str, int] = {}
    pending = [model.graph, *(onnx.helper.make_graph(list(f.node), f.name, [], []) for f in model.functions)]
    while pending:
        graph = pending.pop()
        for node in graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
            for attr in node.attribute:
                pending += [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# --- the check --------------------------------------------------------------------------------------


def run_check(model_path: Path, options: CheckOptions) -> CheckReport:
    """Everything ``conformance check`` does, as data."""
    start = time.perf_counter()
    runtimes = _onnx_runtimes(options.runtimes)
    runtime_ids = [r.id for r in runtimes]
    model = load_model(model_path, options.max_memory)
    nodes = lstm_nodes(model_path, model)
    inputs = read_inputs_or_refuse(model_path, model)
    report = CheckReport(model_path, nodes, inputs, runtimes=runtime_ids)
    fixed = _given_dims(options.dims, inputs)
    feeds = _given_feeds(options.feeds, inputs)
    _sizes_from_arrays(feeds, inputs, fixed)
    _shapes_declared(inputs, feeds, options.inputs)
    trained = _read_trained(options.weights, options.max_memory)
    input_roles = roles(model, inputs)
    try:
        instrumented = instrument(model)
    except GraphError as exc:
        raise BadInputError(f"{model_path}: {exc}") from None
    stream = None
    if options.stream:
        from conformance.streaming import plan_stream

        stream = plan_stream(model, inputs, options.states, options.stream)
        report.notes += stream.notes
    with tempfile.TemporaryDirectory(prefix="conformance-check-") as folder:
        probe_sizes = {k: 2 * BASE for k in dim_keys(inputs)} | fixed_first(fixed)
        _within_budget(inputs, probe_sizes, feeds, options.max_memory // INPUT_SHARE)
        instrumented_path = Path(folder) / "instrumented.onnx"
        _save(instrumented.model, instrumented_path)
        dims = plan_dims(
            instrumented, instrumented_path, inputs, input_roles, fixed, feeds, options.seq_lens, options.batches
        )
        report.notes += dims.notes
        report.input_sets = _input_sets(inputs, input_roles, dims, feeds, options, fixed, nodes)
        report.input_sets += [_user_input_set(p, inputs, options.max_memory // INPUT_SHARE) for p in options.inputs]
        reference = _reference_runs(instrumented, model, report.input_sets)
        _weights_finite(model_path, reference)
        if trained is not None:
            report.results.append(_intent(model_path, model, trained, nodes, reference))
        for runtime in runtimes:

            def work(sets: Sequence[InputSet] | None = None, runtime: Any = runtime) -> list[Result]:
                return _check_runtime(
                    runtime, model_path, model, instrumented, instrumented_path, report, reference, options, sets
                )

            report.results += _isolated_runtime(work, report.input_sets, model_path.name, runtime.id, options)
        report.results = _fold_not_exercised(report.results)
        if stream is not None:
            from conformance.streaming import run_stream

            report.results += run_stream(
                stream, model_path, model, report.input_sets[0], runtimes, options, open_session,
                lambda work, runtime_id: in_worker(work, model_path.name, runtime_id, options.timeout),
            )  # fmt: skip
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


def _save(model: onnx.ModelProto, path: Path) -> None:
    if model.ByteSize() > 1_900_000_000:  # protobuf's 2 GB limit: keep the weights beside the graph
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save_model(model, str(path))


# --- inputs -----------------------------------------------------------------------------------------


def _input_sets(
    inputs: Sequence[GraphInput],
    input_roles: InputRoles,
    dims: DimPlan,
    feeds: Mapping[str, FeedValue],
    options: CheckOptions,
    given: Mapping[str, tuple[int, ...]],
    nodes: Sequence[LSTMNode],
) -> list[InputSet]:
    """One input set per combination of dim sizes; then, at the first sizes, one per other value of each
    input that an If condition reads (so both branches run), unless the user fed that input."""
    rng = np.random.default_rng(options.seed)
    sets = []
    for sizes in dims.combinations:
        _within_budget(inputs, sizes, feeds, options.max_memory // INPUT_SHARE)
        steps = dims.steps(sizes)
        _lstm_work_within(nodes, sizes, steps, dims, options.max_memory)
        made = {i.name: synthesize(i, sizes, input_roles, rng, steps=steps, feed=feeds.get(i.name)) for i in inputs}
        probed = any(dims.roles.get(k) in ("sequence", "batch") for k in sizes if k not in given)
        sets.append(InputSet(_label(sizes), sizes, made, probed))
    if not sets:
        return sets
    first = sets[0]
    for name, (_, other) in input_roles.conditions.items():
        if name in feeds:
            continue
        value = np.full_like(first.feeds[name], other)
        label = f"{first.label},{name}={_show(other)}" if first.label else f"{name}={_show(other)}"
        sets.append(InputSet(label, first.sizes, {**first.feeds, name: value}, first.probed))
    return sets


def _within_budget(
    inputs: Sequence[GraphInput], sizes: Mapping[str, int], feeds: Mapping[str, FeedValue], budget: int
) -> None:
    """Refuse, before anything is allocated, sizes whose synthesized inputs would take more than ``budget``."""
    total = 0
    for graph_input in inputs:
        feed = feeds.get(graph_input.name)
        if graph_input.dims is None or (feed is not None and feed.array is not None):
            continue
        shape = [d if isinstance(d, int) else sizes[graph_input.key(a) or ""] for a, d in enumerate(graph_input.dims)]
        size = int(np.prod(shape, dtype=np.float64)) * np.dtype(graph_input.dtype).itemsize
        total += size
        if total > budget:
            raise BadInputError(
                f"input {graph_input.name!r} at {_label(sizes)} would take {size / 2**30:.2f} GiB "
                f"({'x'.join(map(str, shape))} {graph_input.dtype}); the inputs of one run may take "
                f"{budget / 2**20:.0f} MiB (1/{INPUT_SHARE} of --max-memory): choose smaller sizes with --dim"
            )


# Bytes per LSTM step, per batch row and hidden unit, over everything one run holds: the reference's
# float64 gates and states, the runtime's outputs, the captures and the comparison's copies (measured on a
# 1,000,000-step input, which reached 2.8 GB, about 175 bytes per step-row-unit of its 16-unit LSTM).
LSTM_BYTES_PER_UNIT = 256


def _lstm_work_within(
    nodes: Sequence[LSTMNode], sizes: Mapping[str, int], steps: int, dims: DimPlan, budget: int
) -> None:
    """Refuse, before anything runs, sizes at which the LSTMs' work would not fit in ``--max-memory``."""
    batch = max([v for k, v in sizes.items() if dims.roles.get(k) == "batch"], default=1)
    units = sum((n.attributes.hidden_size or 0) * n.attributes.num_directions for n in nodes)
    need = steps * batch * units * LSTM_BYTES_PER_UNIT
    if need > budget:
        raise BadInputError(
            f"at {_label(sizes)} the LSTMs ({steps} steps x batch {batch} x {units} units) would need about "
            f"{need / 2**30:.1f} GiB, over --max-memory {budget / 2**30:.1f} GiB: choose smaller sizes with --dim"
        )


def fixed_first(given: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """The first size of each dim given with ``--dim``: what the probe runs at."""
    return {k: v[0] for k, v in given.items()}


def _label(sizes: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sizes.items()) or "fixed shape"


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _user_input_set(path: Path, inputs: Sequence[GraphInput], max_bytes: int) -> InputSet:
    """Inputs from an ``.npz`` (keys = input names) or an ONNX test-data folder of ``input_N.pb``."""
    if path.is_dir():
        from onnx import numpy_helper

        feeds = {}
        for index, pb in enumerate(sorted(path.glob("input_*.pb"))):
            tensor = onnx.TensorProto()
            try:
                tensor.ParseFromString(pb.read_bytes())
                array = numpy_helper.to_array(tensor, base_dir=str(path))
            except Exception as exc:
                raise BadInputError(f"{pb}: not an ONNX TensorProto ({describe_error(exc, 200)})") from None
            name = tensor.name or (inputs[index].name if index < len(inputs) else f"input_{index}")
            feeds[name] = array
    elif path.is_file():
        from conformance.checkpoint import read_npz

        feeds = read_npz(path, max_bytes=max_bytes)  # each member's header checked before its data is read
    else:
        raise BadInputError(f"{path}: no such file or folder")
    missing = [i.name for i in inputs if i.name not in feeds]
    if missing:
        raise BadInputError(f"{path}: no data for model input(s) {missing} (found: {sorted(feeds)})")
    for graph_input in inputs:
        check_value(str(path), graph_input, feeds[graph_input.name])
    return InputSet(f"inputs:{path.name}", {}, {i.name: feeds[i.name] for i in inputs})


# --- the reference ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceRun:
    """The whole-model reference on one input set: its captures and the model's outputs; when the
    instrumented copy fails on it (``uncapturable`` says why) the outputs of the model itself; when the
    model fails too, ``error``."""

    captures: Captures | None
    outputs: Mapping[str, Any] | None
    error: str | None = None
    uncapturable: str | None = None


def _reference_runs(
    instrumented: Instrumented, model: onnx.ModelProto, input_sets: Sequence[InputSet]
) -> dict[str, ReferenceRun]:
    run = reference_runner()
    plain = reference_runner()
    found = {}
    for input_set in input_sets:
        try:
            captures = capture(instrumented, input_set.feeds, run)
            found[input_set.label] = ReferenceRun(captures, captures.outputs)
            continue
        except Exception as exc:
            why = describe_error(exc, 300)
        try:
            outputs = plain(model, input_set.feeds)
        except Exception as exc:
            found[input_set.label] = ReferenceRun(None, None, describe_error(exc, 300))
            continue
        found[input_set.label] = ReferenceRun(None, outputs, uncapturable=why)
    return found


# --- isolation --------------------------------------------------------------------------------------


def in_worker(work: Any, model: str, runtime_id: str, timeout: float) -> list[Result]:
    """``work()`` (one runtime's results) in a forked worker process, so that a runtime that aborts the
    process (ONNX Runtime 1.32 on a batch of 0: "terminate called without an active exception") or hangs
    costs that runtime's results only, and the report is still written. Where ``fork`` is not available
    the work runs here. A bug in the work is raised here, as it would be in-process."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        result: list[Result] = work()
        return result
    ctx = mp.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _said; the worker's stderr, for a crash message
    process = ctx.Process(target=_worker, args=(send, work, errors), daemon=True)
    process.start()
    send.close()
    kind: str = "died"
    value: Any = None
    try:
        if receive.poll(timeout):
            try:
                kind, value = receive.recv()
            except (EOFError, OSError):  # it died while sending, or before
                kind, value = "died", None
        else:
            kind, value = "timeout", None
    finally:
        if kind == "timeout" or process.is_alive():
            process.kill()
        process.join(5)
        receive.close()
        said = _said(errors)
    if kind == "results":
        if said:
            sys.stderr.write(said)
        return list(value)
    if kind == "raised":
        raise value
    if kind == "timeout":
        message = f"{runtime_id} did not finish within {timeout:g} s; its worker was killed (--timeout)"
        return [model_result(model, runtime_id, "timeout", message)]
    last = next((line.strip() for line in reversed(said.splitlines()) if line.strip()), "")
    words = f"; its last words: {last[:300]}" if last else ""
    message = f"{runtime_id} crashed the worker process ({_ended(process)}){words}"
    return [model_result(model, runtime_id, ERROR, message)]


def _isolated_runtime(
    work: Any, input_sets: Sequence[InputSet], model: str, runtime_id: str, options: CheckOptions
) -> list[Result]:
    """One runtime in one worker; when that worker dies, each input set again in a worker of its own, so
    a crash costs only the inputs that cause it."""
    results = in_worker(work, model, runtime_id, options.timeout)
    lost = len(results) == 1 and results[0].status in (ERROR, "timeout") and "worker" in results[0].message
    if not lost or len(input_sets) < 2:
        return results
    retried: list[Result] = []
    for input_set in input_sets:
        one = in_worker(lambda input_set=input_set: work([input_set]), model, runtime_id, options.timeout)
        if len(one) == 1 and one[0].status in (ERROR, "timeout") and "worker" in one[0].message:
            one = [model_result(model, runtime_id, one[0].status, f"at {input_set.label}: {one[0].message}",
                                label=input_set.label, shape=dict(input_set.sizes) or None)]  # fmt: skip
        retried += one
    return retried


def _said(errors: Any) -> str:
    """What a worker wrote to its stderr (at most the last 8 KiB), and the file closed."""
    with errors:
        size = errors.seek(0, 2)
        errors.seek(max(0, size - 8192))
        return str(errors.read().decode("utf-8", "replace"))


def _worker(send: Any, work: Any, errors: Any) -> None:
    sys.stderr.flush()
    os.dup2(errors.fileno(), 2)  # C++ runtimes write to fd 2 directly ("terminate called ...")
    try:
        send.send(("results", work()))
    except BaseException as exc:  # a bug: the parent raises it
        try:
            send.send(("raised", exc))
        except Exception:  # an exception that does not pickle: its text does
            send.send(("raised", RuntimeError(f"{type(exc).__name__}: {exc}")))


def _ended(process: Any) -> str:
    import signal

    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _weights_finite(path: Path, reference: Mapping[str, ReferenceRun]) -> None:
    """NaN or Inf in the weights an LSTM node uses makes every comparison meaningless: bad input, named."""
    for run in reference.values():
        for node_capture in run.captures or ():
            for invocation in node_capture.invocations[:1]:
                for role in ("W", "R", "B", "P"):
                    value = invocation.tensors.get(role)
                    if value is None or np.asarray(value).dtype.kind != "f":
                        continue
                    bad = ~np.isfinite(np.asarray(value))
                    if bad.any():
                        index = tuple(int(i) for i in np.argwhere(bad)[0])
                        raise BadInputError(
                            f"{path}: LSTM node {node_capture.node.path}: its {role} holds NaN or Inf "
                            f"({int(bad.sum())} value(s), first at index {index}); refusing to compare"
                        )


# --- one runtime ------------------------------------------------------------------------------------


def _check_runtime(
    runtime: Any,
    model_path: Path,
    model: onnx.ModelProto,
    instrumented: Instrumented,
    instrumented_path: Path,
    report: CheckReport,
    reference: Mapping[str, ReferenceRun],
    options: CheckOptions,
    input_sets: Sequence[InputSet] | None = None,
) -> list[Result]:
    """One runtime on every input set (or on ``input_sets``)."""
    name, runtime_id = model_path.name, runtime.id
    reason = runtime.unavailable()
    if reason:
        return [model_result(name, runtime_id, SKIP, reason)]
    try:
        session = open_session(runtime, instrumented_path)
    except Exception as exc:
        return [model_result(name, runtime_id, ERROR, f"{runtime_id} could not load the model: {describe_error(exc)}")]
    settings = runtime.settings()
    results: list[Result] = []
    plain = _PlainSession(runtime, model_path)
    try:
        for input_set in report.input_sets if input_sets is None else input_sets:
            results += _check_input(
                runtime_id, session, plain, name, model, instrumented, input_set, reference[input_set.label],
                options, settings,
            )  # fmt: skip
        problem = evaluate.placement_problem(runtime_id, runtime.required_provider, session.placement())
    finally:
        session.close()
        plain.close()
    if problem:  # the LSTM ran on another provider: none of these verdicts is a result of this runtime
        results = [r.with_status(FAIL, f"{problem}\n\n{r.message}") if r.status != SKIP else r for r in results]
    return results


class _PlainSession:
    """The runtime on the user's own model, opened only when the instrumented copy fails on it."""

    def __init__(self, runtime: Any, path: Path) -> None:
        self.runtime, self.path = runtime, path
        self.session: Any = None

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if self.session is None:
            self.session = open_session(self.runtime, self.path)
        outputs: dict[str, Any] = self.session.run(feeds)
        return outputs

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def open_session(runtime: Any, path: Path) -> Any:
    from exporters.base import OK, Artifact

    return runtime.open(Artifact("user", OK, path=path), None, None)


def _check_input(
    runtime_id: str,
    session: Any,
    plain: _PlainSession,
    name: str,
    model: onnx.ModelProto,
    instrumented: Instrumented,
    input_set: InputSet,
    reference: ReferenceRun,
    options: CheckOptions,
    settings: dict[str, Any],
) -> list[Result]:
    """Every node and the whole model on one runtime at one input set."""
    label = input_set.label
    facts: dict[str, Any] = {"shape": dict(input_set.sizes) or None, "settings": settings}
    start = time.perf_counter()
    try:
        captures = capture(instrumented, input_set.feeds, lambda _model, feeds: session.run(feeds))
    except Exception as exc:
        error = describe_error(exc)
        if runtime_id == "onnx-reference" and _has_loop(model) and "concatenate" in error:
            message = (
                f"onnx.reference cannot run this model's Loop ({error}): its Loop does not stack scan outputs; "
                "the whole-model reference uses a Loop that does (conformance/graph/evaluator_ops.py)"
            )
            return [model_result(name, runtime_id, SKIP, message, label=label, **facts)]
        if reference.outputs is None:  # the reference rejects it too: the model cannot take this input
            message = f"the model rejects this input ({label}): the reference fails too ({reference.error})"
            if not input_set.probed:  # sizes the user chose, or the only ones the model declares: not a fault
                return [model_result(name, runtime_id, SKIP, message, label=label, **facts)]
            message += (
                "; the model declares these dims dynamic and the probe found them mapping onto the LSTM's "
                "sequence or batch axis, so a size it cannot take is a fault of the export"
            )
            return [model_result(name, runtime_id, FAIL, message, label=label, **facts)]
        nodes = [site.node for site in instrumented.sites]
        return _uninstrumented(runtime_id, plain, name, nodes, input_set, reference, error, options, facts)
    blind = _evaluator_blind_spots(runtime_id, captures)
    results = [
        _node_verdict(runtime_id, name, label, node_capture, blind, options.tolerance, facts)
        for node_capture in captures
    ]
    results.append(
        _model_verdict(runtime_id, session, name, model, input_set, captures, reference, results, blind, options, facts)
    )
    duration = round(time.perf_counter() - start, 4)
    return [dataclasses.replace(r, duration_s=duration) for r in results]


def _comparable(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Tensor outputs by name; a sequence output's tensors as ``name[0]``, ``name[1]``, ...; maps are passed over."""
    found: dict[str, np.ndarray] = {}
    for name, value in outputs.items():
        if isinstance(value, np.ndarray):
            found[name] = value
        elif isinstance(value, (list, tuple)):
            found[f"{name}[len]"] = np.asarray(len(value), dtype=np.int64)
            found.update({f"{name}[{i}]": v for i, v in enumerate(value) if isinstance(v, np.ndarray)})
    return found


def _has_loop(model: onnx.ModelProto) -> bool:
    return "Loop" in op_histogram(model)


def _uninstrumented(
    runtime_id: str,
    plain: _PlainSession,
    name: str,
    nodes: Sequence[LSTMNode],
    input_set: InputSet,
    reference: ReferenceRun,
    error: str,
    options: CheckOptions,
    facts: Mapping[str, Any],
) -> list[Result]:
    """The runtime failed on the instrumented copy: run the user's model itself, so the whole model is
    still judged, and say why the nodes were not. When the reference could not run the copy either, the
    capture itself is at fault (a skip, with the reason); otherwise this runtime is (an error)."""
    label = input_set.label
    assert reference.outputs is not None
    try:
        outputs = plain.run(input_set.feeds)
    except Exception as exc:
        message = f"{runtime_id} failed at {label}: {describe_error(exc)}"
        return [model_result(name, runtime_id, ERROR, message, label=label, **facts)]
    if reference.uncapturable:
        status, why = (
            SKIP,
            (
                f"the copy of the model that returns each LSTM node's tensors fails on the reference too "
                f"({reference.uncapturable}): an If inside a Loop or Scan that takes different branches in "
                "different iterations cannot be captured (conformance/graph/instrument.py); the whole model is judged"
            ),
        )
    else:
        status, why = (
            ERROR,
            (f"{runtime_id} runs the model but not the copy that returns each LSTM node's tensors ({error})"),
        )
    results = []
    for node in nodes:
        message = f"LSTM node {node.path} not captured at {label}: {why}"
        results.append(node_result(name, node.path, runtime_id, status, message, label=label, **facts))
    verdict = _compare_outputs(outputs, reference.outputs, nodes, options, label)
    whole = model_result(
        name, runtime_id, verdict.status, verdict.message, label=label, outputs=verdict.outputs, **facts
    )
    return [*results, whole]


def _compare_outputs(
    outputs: Mapping[str, Any],
    reference: Mapping[str, Any],
    nodes: Sequence[LSTMNode],
    options: CheckOptions,
    label: str,
) -> evaluate.Verdict:
    expected, actual = _comparable(reference), _comparable(outputs)
    if not expected:
        return evaluate.Verdict(
            SKIP, f"the model has no tensor outputs to compare at {label} (its outputs are maps or empty sequences)"
        )
    for key in [k for k, v in expected.items() if v.size == 0]:  # both empty: nothing to differ
        got = actual.get(key)
        if isinstance(got, np.ndarray) and got.size == 0:
            del expected[key]
    if not expected:
        return evaluate.Verdict(PASS, f"the model's outputs are empty at {label}, on the runtime and the reference")
    judged: dict[str, Any] = {k: actual.get(k) for k in expected}
    allowed = evaluate.tolerances(expected, judged, lambda _name: options.tolerance or _compute_tolerance(nodes))
    axes = {k: 0 if v.ndim else None for k, v in expected.items()}  # errors per step along the first axis
    verdict = evaluate.judge(judged, expected, allowed, time_axes=axes, where=f"at {label}")
    if verdict.status == PASS:
        message = f"the model's outputs ({', '.join(expected)}) match the whole-model reference at {label}"
        return dataclasses.replace(verdict, message=message)
    return verdict


_PRECISION = ("float16", "bfloat16", "float32", "float64")


def _compute_tolerance(nodes: Sequence[LSTMNode]) -> Tolerance | None:
    """The tolerance of the model's least precise LSTM (a float16 model with float32 inputs and outputs
    computes in float16: its outputs carry float16 error); None when the outputs' own dtype decides."""
    from conformance.compare import default_tolerance

    dtypes = [n.dtype for n in nodes if n.dtype in _PRECISION]
    if not dtypes:
        return None
    least = min(dtypes, key=_PRECISION.index)
    return default_tolerance(least) if least in ("float16", "bfloat16") else None


def _evaluator_blind_spots(runtime_id: str, captures: Captures) -> dict[str, str]:
    """Node path -> why ``onnx-reference`` cannot judge it (features its own LSTM ignores)."""
    if runtime_id != "onnx-reference":
        return {}
    from conformance.graph import divergence_features

    found = {}
    for node_capture in captures:
        ignored = sorted(
            {
                _EVALUATOR_BLIND[f]
                for inv in node_capture.invocations or (None,)
                for f in divergence_features(node_capture.node, inv)
                if f in _EVALUATOR_BLIND
            }
        )
        if ignored:
            found[node_capture.node.path] = (
                f"onnx.reference's LSTM ignores {', '.join(ignored)}, which this node uses (reference/SEMANTICS.md)"
            )
    return found


def _node_verdict(
    runtime_id: str,
    name: str,
    label: str,
    node_capture: Any,
    blind: Mapping[str, str],
    tolerance: Tolerance | None,
    facts: Mapping[str, Any],
) -> Result:
    node = node_capture.node
    if not node_capture.exercised:
        message = f"LSTM node {node.path}: {node_capture.not_exercised}"
        return node_result(name, node.path, runtime_id, NOT_EXERCISED, message, label=label, **facts)
    if node.path in blind:
        return node_result(name, node.path, runtime_id, SKIP, blind[node.path], label=label, **facts)
    failures: list[str] = []
    worst = None
    features: set[str] = set()
    for invocation in node_capture.invocations:
        try:
            verdict = judge_node(node, invocation, tolerances=tolerance)
        except ValueError as exc:
            message = f"LSTM node {node.path}: the reference cannot run on the captured inputs: {exc}"
            return node_result(name, node.path, runtime_id, ERROR, message, label=label, **facts)
        features.update(verdict.features)
        if not verdict.passed:
            failures += verdict.messages()
            worst = worst or verdict
        elif worst is None and verdict is not None:
            pass
    count = len(node_capture.invocations)
    runs = f" ({count} invocations)" if count > 1 else ""
    outputs = tuple((worst or verdict).diffs)
    extra = {"features": tuple(sorted(features))} if features else {}
    if failures:
        shown = failures[:3] + ([f"... and {len(failures) - 3} more"] if len(failures) > 3 else [])
        message = f"{runtime_id} at {label}{runs}:\n" + "\n".join(shown)
        return node_result(name, node.path, runtime_id, FAIL, message, label=label, outputs=outputs, **extra, **facts)
    message = f"LSTM node {node.path} matches the float64 reference at {label}{runs}"
    return node_result(name, node.path, runtime_id, PASS, message, label=label, outputs=outputs, **extra, **facts)


def _model_verdict(
    runtime_id: str,
    session: Any,
    name: str,
    model: onnx.ModelProto,
    input_set: InputSet,
    captures: Captures,
    reference: ReferenceRun,
    node_results: Sequence[Result],
    blind: Mapping[str, str],
    options: CheckOptions,
    facts: Mapping[str, Any],
) -> Result:
    label = input_set.label
    if reference.outputs is None:
        message = f"the reference could not run the whole model at {label}: {reference.error}"
        return model_result(name, runtime_id, ERROR, message, label=label, **facts)
    exercised_blind = [p for p in blind if not captures[p].not_exercised]
    if exercised_blind:
        reason = blind[exercised_blind[0]]
        return model_result(name, runtime_id, SKIP, f"whole model not judged: {reason}", label=label, **facts)
    verdict = _compare_outputs(captures.outputs, reference.outputs, [c.node for c in captures], options, label)
    if verdict.status == PASS:
        return model_result(name, runtime_id, PASS, verdict.message, label=label, outputs=verdict.outputs, **facts)
    if verdict.status == SKIP:
        return model_result(name, runtime_id, SKIP, verdict.message, label=label, **facts)
    nodes_ok = all(r.status in (PASS, NOT_EXERCISED) for r in node_results)
    message, status = verdict.message, verdict.status
    if nodes_ok:
        found, where = _first_divergence(runtime_id, model, input_set, options)
        message = f"{verdict.message}\nEvery LSTM node conforms at {label}: the difference is outside the LSTMs.{where}"
        if found is not None and found.op_type in _DISCRETE:
            status = PASS
            message = (
                f"the model's outputs match the whole-model reference at {label} except where {found.op_type} "
                f"{found.path} picks another element: every value before it agrees within tolerance, so it is a "
                f"near tie (the reference's float64 LSTM rounds differently in the last bits), not a fault"
            )
    return model_result(name, runtime_id, status, message, label=label, outputs=verdict.outputs, **facts)


# Ops that pick an element: a near tie of values within tolerance may flip their integer output.
_DISCRETE = frozenset({"ArgMax", "ArgMin", "TopK"})


def _first_divergence(
    runtime_id: str, model: onnx.ModelProto, input_set: InputSet, options: CheckOptions
) -> tuple[Any, str]:
    """The first node where the runtime and the reference part (or None) and a sentence saying so."""
    from conformance.runtimes import get_runtime

    runtime = get_runtime(runtime_id)

    def run(probe: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="conformance-bisect-") as folder:
            path = Path(folder) / "probe.onnx"
            _save(probe, path)
            session = open_session(runtime, path)
            try:
                outputs: dict[str, Any] = session.run(feeds)
                return outputs
            finally:
                session.close()

    try:
        found = first_divergence(model, input_set.feeds, run, tolerances=options.tolerance)
    except Exception as exc:
        return None, f" Could not find the first diverging node: {describe_error(exc, 200)}."
    if found is None:
        return None, (
            " No intermediate value differs when every one is exposed (the runtime may fuse nodes only when "
            "they are not observed)."
        )
    return found, (
        f" The first node where {runtime_id} and the reference diverge is {found.op_type} {found.path} "
        f"(output {found.output!r}: greatest error {found.diff.max_abs:.3g} at index {found.diff.max_abs_index})."
    )


# --- intent -----------------------------------------------------------------------------------------


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
    return any(
        r.shape is not None and r.message.startswith(f"the model rejects this input ({label})") for r in results
    ) or any(r.message.startswith(f"the model rejects this input ({label})") for r in results)


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


# --- causes -----------------------------------------------------------------------------------------


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
