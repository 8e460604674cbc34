"""One runtime on every input set: each LSTM node judged at the tensors it received, and the whole model
against the reference; the first diverging node named when the difference lies outside the LSTMs."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from conformance import evaluate
from conformance.check.model import CheckOptions, CheckReport, InputSet, op_histogram, save_model
from conformance.check.reference import ReferenceRun
from conformance.diffs import Tolerance
from conformance.graph import (
    Captures,
    Instrumented,
    LSTMNode,
    capture,
    first_divergence,
    judge_node,
)
from conformance.records import Result, model_result, node_result
from conformance.status import ERROR, FAIL, NOT_EXERCISED, PASS, SKIP
from exporters.base import describe_error

# Features the ONNX reference evaluator's own LSTM ignores (reference/SEMANTICS.md): it cannot judge them.
_EVALUATOR_BLIND = {
    "clip": "clip",
    "activations": "activations",
    "input_forget": "input_forget",
    "short_sequence": "sequence_lens",
    "zero_length_sequence": "sequence_lens",
}


def check_runtime(
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
    plain = _PlainSession(runtime, model_path)
    try:
        session = open_session(runtime, instrumented_path)
    except Exception as exc:  # the copy that returns the nodes' tensors: is it the copy, or the model?
        copy_error = describe_error(exc)
        try:
            plain.session = open_session(runtime, model_path)
        except Exception as plain_exc:
            message = f"{runtime_id} could not load the model: {describe_error(plain_exc)}"
            return [model_result(name, runtime_id, ERROR, message)]
        session = _UnloadedCopy(copy_error, plain.session)
    settings = runtime.settings()
    results: list[Result] = []
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


class _UnloadedCopy:
    """Stands in for the instrumented copy that the runtime could not load although it loads the model:
    every run fails with the load error, so each input set is judged on the model alone."""

    def __init__(self, error: str, plain: Any) -> None:
        self.error, self.plain = error, plain

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
        raise RuntimeError(f"it cannot load that copy: {self.error}")

    def placement(self) -> dict[str, str]:
        placement: dict[str, str] = self.plain.placement()
        return placement

    def close(self) -> None:
        pass


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
    computed_in = settings.get("tolerance_dtype")  # OpenVINO's bf16 behind float32 outputs: judged as bf16
    if options.tolerance is None and computed_in in ("bfloat16", "float16"):
        from conformance.compare import default_tolerance

        options = dataclasses.replace(options, tolerance=default_tolerance(computed_in))
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
            rejected = {"rejected_input": label}  # read by the check's causes
            if not input_set.probed:  # sizes the user chose, or the only ones the model declares: not a fault
                return [model_result(name, runtime_id, SKIP, message, label=label, detail=rejected, **facts)]
            message += (
                "; the model declares these dims dynamic and the probe found them mapping onto the LSTM's "
                "sequence or batch axis, so a size it cannot take is a fault of the export"
            )
            return [model_result(name, runtime_id, FAIL, message, label=label, detail=rejected, **facts)]
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
    still judged, and say why the nodes were not (a skip with the reason: the user's model is what the
    runtime is asked to run, and it is judged)."""
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
    else:  # the runtime computes the user's model (judged below); only our copy of it is beyond it
        status, why = (
            SKIP,
            (
                f"{runtime_id} runs the model but not the copy that returns each LSTM node's tensors ({error}); "
                "the whole model is judged"
            ),
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
    # A float16 model with float32 inputs and outputs computes in float16: its outputs carry float16 error.
    computed_in = evaluate.least_precise(n.dtype for n in nodes)
    allowed = evaluate.tolerances(expected, judged, lambda _name: options.tolerance, computed_in=computed_in)
    axes = {k: 0 if v.ndim else None for k, v in expected.items()}  # errors per step along the first axis
    verdict = evaluate.judge(judged, expected, allowed, time_axes=axes, where=f"at {label}")
    if verdict.status == PASS:
        message = f"the model's outputs ({', '.join(expected)}) match the whole-model reference at {label}"
        return dataclasses.replace(verdict, message=message)
    return verdict


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
            save_model(probe, path)
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
