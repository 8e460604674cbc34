"""One lane: (case, exporter, runtime) -> a result record. Runs inside a worker process.

A lane exports (or fetches from the cache) the case's model, opens the
runtime, feeds the case's inputs, and hands the outputs to the one evaluator
(``conformance.evaluate``), which compares them with the float64 reference,
checks where the LSTM nodes ran, and settles the status against the case's
expected divergences. Nothing here prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from conformance import evaluate
from conformance.cases import Case
from conformance.inputs import CaseData, build, case_weights
from conformance.records import Result, lane_result
from conformance.status import ERROR, SKIP
from exporters.base import AnyWeights, Artifact, ExportOptions, describe_error, input_names
from exporters.transforms import Transform, TransformError, split_exporter_id
from reference.config import LMConfig

NO_EXPORT = "none"  # the exporter id of lanes that run the weights directly (the reference runtime)


@dataclass(frozen=True)
class Lane:
    """A planned lane. It carries its case, so a worker never loads the suite again."""

    suite: str  # a packaged suite name or a path to a TOML file
    case: Case = field(repr=False)
    exporter: str
    runtime: str

    @property
    def case_id(self) -> str:
        return self.case.id

    @property
    def id(self) -> str:
        return f"{self.case.id}/{self.exporter}/{self.runtime}"

    def result(self, status: str, message: str, **facts: Any) -> Result:
        """This lane's record (the one builder, with the case's features)."""
        return lane_result(
            suite=self.suite,
            case=self.case.id,
            exporter=self.exporter,
            runtime=self.runtime,
            status=status,
            message=message,
            features=self.case.features(),
            **facts,
        )


def export_options(case: Case) -> ExportOptions:
    return ExportOptions(**case.export.option_values(case.inputs))


@dataclass(frozen=True)
class LatencySettings:
    """How lanes are timed (conformance.timing.measure's knobs) and whether accuracy is checked."""

    budget_s: float = 0.2
    warmup: int = 1
    min_samples: int = 10
    target_rel_ci: float = 0.02
    min_time_s: float = 0.0
    check_accuracy: bool = True


class LaneContext:
    """Per-worker memo of weights, case data and artifacts, so lanes of one case share them."""

    def __init__(self, *, use_cache: bool = True, latency: LatencySettings | None = None) -> None:
        self.use_cache = use_cache
        self.latency = latency
        self._weights: dict[str, AnyWeights] = {}
        self._data: dict[str, CaseData] = {}
        self._artifacts: dict[tuple[str, str], Artifact] = {}

    def weights(self, case: Case) -> AnyWeights:
        if case.id not in self._weights:
            self._weights = {case.id: case_weights(case)}  # keep only the current case's
        return self._weights[case.id]

    def data(self, case: Case) -> CaseData:
        if case.id not in self._data:
            self._data = {case.id: build(case, self.weights(case))}
        return self._data[case.id]

    def artifact(self, case: Case, exporter_id: str) -> Artifact:
        from exporters.registry import export

        key = (case.id, exporter_id)
        if key not in self._artifacts:
            if len(self._artifacts) > 8:
                self._artifacts.clear()
            self._artifacts[key] = export(
                case.model, self.weights(case), exporter_id, export_options(case), use_cache=self.use_cache
            )
        return self._artifacts[key]


def run_lane(lane: Lane, context: LaneContext) -> Result:
    """Execute one lane; every failure becomes a status, never an exception."""
    from conformance.runtimes import get_runtime

    case = lane.case
    start = time.perf_counter()
    runtime = get_runtime(lane.runtime)
    reason = runtime.unavailable()
    if reason:
        return lane.result(SKIP, reason)
    weights = context.weights(case)
    data = context.data(case)
    artifact: Artifact | None = None
    facts: dict[str, Any] = {"settings": runtime.settings()}
    computed_in = facts["settings"].get("tolerance_dtype")
    expectation = case.expectation(lane.exporter, lane.runtime, computed_in=computed_in)

    def settled(verdict: evaluate.Verdict) -> Result:
        status, message, expected = evaluate.settle(verdict, expectation)
        return lane.result(status, message, expected=expected, outputs=verdict.outputs, **facts)

    transform = None if lane.exporter == NO_EXPORT else split_exporter_id(lane.exporter)[1]
    if transform is not None:
        reason = cannot_run(transform, runtime, facts["settings"])
        if reason:
            return lane.result(SKIP, f"{lane.exporter}: {reason}", **facts)
    if lane.exporter != NO_EXPORT:
        try:
            artifact = context.artifact(case, lane.exporter)
        except TransformError as exc:  # bad input (nothing to convert): this lane's error, one line
            return settled(evaluate.Verdict(ERROR, str(exc)))
        facts["artifact"] = {"status": artifact.status, "cached": artifact.cached, **artifact.meta}
        if artifact.status in ("unavailable", "not-applicable"):
            return lane.result(SKIP, f"{lane.exporter}: {artifact.reason}", **facts)
        if not artifact.ok:
            return settled(evaluate.Verdict(ERROR, artifact.reason))
    names = input_names(case.model, export_options(case))
    feeds = {name: data.feeds[name] for name in names}
    if artifact is not None:
        feeds = as_the_model_takes(feeds, artifact.meta)
    try:
        session = runtime.open(artifact, case.model, weights)
    except Exception as exc:
        return settled(evaluate.Verdict(ERROR, f"{lane.runtime} could not load the model: {describe_error(exc)}"))
    try:
        outputs = evaluate.run(session, feeds, lane.runtime)
        if isinstance(outputs, evaluate.Verdict):
            return settled(outputs)
        placement = session.placement()  # also ends ORT profiling, before any timing
        if context.latency is not None:
            facts["latency"] = _time(session, feeds, case, context.latency)
    except Exception as exc:
        return settled(evaluate.Verdict(ERROR, f"{lane.runtime} failed to run: {describe_error(exc)}"))
    finally:
        session.close()
    if context.latency is not None and not context.latency.check_accuracy:
        facts["duration_s"] = round(time.perf_counter() - start, 4)
        return lane.result(SKIP, "accuracy not checked (--latency-only)", **facts)
    problem = evaluate.placement_problem(lane.runtime, runtime.required_provider, placement)
    detail: dict[str, Any] = {}
    if computed_in in ("bfloat16", "float16"):  # say so: the lane is held to the precision it computes in
        detail["judged_at"] = f"{computed_in} tolerance: {lane.runtime} computes in {computed_in}"
    if transform is None:
        allowed = evaluate.tolerances(data.expected, outputs, case.tolerance_for, computed_in=computed_in)
    else:  # a transformed model is held to its transform's measured error budget, not to float32's
        allowed = evaluate.budget_tolerances(transform.id, data.expected, computed_in=computed_in)
        detail["budget"] = {
            "transform": transform.id,
            **{n: {"atol": t.atol, "rtol": t.rtol} for n, t in allowed.items()},
        }
    verdict = evaluate.judge(
        outputs,
        data.expected,
        allowed,
        time_axes=data.time_axes,
        padding_masks=data.padding_masks,
        problems=[problem] if problem else [],
    )
    if transform is not None:
        lm = None
        if isinstance(case.model, LMConfig) and "log_probs" in outputs:
            lm = evaluate.lm_metrics(
                data.feeds["tokens"],
                data.expected["log_probs"],
                outputs["log_probs"],
                batch_first=case.model.lstm.batch_first,
            )
        if lm is not None:
            detail["lm"] = lm
        verdict = evaluate.within_budget(verdict, transform.id, allowed, lm)
    if detail:
        facts["detail"] = detail
    if placement:
        facts["placement"] = placement
    facts["duration_s"] = round(time.perf_counter() - start, 4)
    return settled(verdict)


def cannot_run(transform: Transform, runtime: Any, settings: dict[str, Any]) -> str | None:
    """Why ``runtime`` cannot run what ``transform`` makes (a contrib op it lacks), or None: such a lane is a
    skip, never a pass. What runs com.microsoft.DynamicQuantizeLSTM was measured (``conformance run --suite
    lm``, and each runtime opened on an int8-dynamic model): ONNX Runtime's CPU execution provider; OpenVINO's
    ONNX frontend (openvino-cpu*, which turns it back into a float LSTMSequence). Not: tract
    ("Unimplemented(DynamicQuantizeLSTM)"), the ONNX reference evaluator (unknown domain), ONNX Runtime's
    OpenVINO plugin EP (it hands the node to ORT's CPU EP), ONNX Runtime's CUDA EP (no CUDA kernel in ORT's
    sources; not measured: no GPU here). Runtimes are told apart by their settings (``onnxruntime``,
    ``openvino``) until they declare the contrib ops they implement."""
    if transform.needs is None:
        return None
    if "onnxruntime" in settings:
        provider = runtime.required_provider
        if provider in (None, "CPUExecutionProvider"):
            return None
        return (
            f"{transform.id} makes {transform.needs}, which ONNX Runtime implements on its CPU execution provider "
            f"only: {provider} hands it to the CPU, so this would not be a {runtime.id} result"
        )
    if "openvino" in settings:
        return None
    return f"{transform.id} makes {transform.needs}, an ONNX Runtime contrib op; {runtime.id} does not implement it"


def as_the_model_takes(feeds: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Float inputs cast to the dtype a transformed model declares (float16 for ``+fp16``); others as they are.

    The reference keeps reading the float32 values: rounding the inputs is part of what the transform costs."""
    import numpy as np

    declared = (meta.get("transform") or {}).get("inputs") or {}

    def cast(name: str, value: Any) -> Any:
        wanted = declared.get(name)
        if wanted and wanted != str(value.dtype) and value.dtype.kind == "f" and np.dtype(wanted).kind == "f":
            return value.astype(wanted)
        return value

    return {name: cast(name, value) for name, value in feeds.items()}


def _time(session: Any, feeds: dict[str, Any], case: Case, settings: LatencySettings) -> dict[str, Any]:
    """Latency of the lane's own session on the lane's own inputs (after the accuracy run, never inside it)."""
    from conformance.timing import measure

    call, sync, includes = session.timed(feeds)
    latency = measure(
        call,
        warmup=settings.warmup,
        min_samples=settings.min_samples,
        budget_s=settings.budget_s,
        target_rel_ci=settings.target_rel_ci,
        min_time_s=settings.min_time_s,
        sync=sync,
    )
    record = latency.to_dict(tokens=case.inputs.seq_len * case.inputs.batch)
    record["includes"] = includes
    return record
