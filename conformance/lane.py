"""One lane: (case, exporter, runtime) -> a result record. Runs inside a worker process.

A lane exports (or fetches from the cache) the case's model, opens the
runtime, feeds the case's inputs, compares each output with the float64
reference, checks where the LSTM nodes ran, and settles the status against
the case's expected divergences. Nothing here prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from conformance.cases import Case
from conformance.compare import OutputDiff, Tolerance, compare_outputs, default_tolerance, format_mismatch
from conformance.inputs import CaseData, build, case_weights
from exporters.base import AnyWeights, Artifact, ExportOptions, describe_error, input_names

# Lane statuses.
PASS, FAIL, XFAIL, XPASS, SKIP, ERROR, TIMEOUT = "pass", "fail", "xfail", "xpass", "skip", "error", "timeout"
STATUSES = (PASS, FAIL, XFAIL, XPASS, SKIP, ERROR, TIMEOUT)
FAILING = frozenset({FAIL, XPASS, ERROR, TIMEOUT})
NO_EXPORT = "none"  # the exporter id of lanes that run the weights directly (the reference runtime)


@dataclass(frozen=True)
class Lane:
    suite: str  # a packaged suite name or a path to a TOML file
    case_id: str
    exporter: str
    runtime: str

    @property
    def id(self) -> str:
        return f"{self.case_id}/{self.exporter}/{self.runtime}"

    def to_dict(self) -> dict[str, str]:
        return {"suite": self.suite, "case": self.case_id, "exporter": self.exporter, "runtime": self.runtime}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Lane:
        return cls(data["suite"], data["case"], data["exporter"], data["runtime"])


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


def _tolerances(case: Case, outputs: dict[str, Any], expected: dict[str, Any]) -> dict[str, Tolerance]:
    tolerances = {}
    for name in expected:
        if name in case.output_tolerances:
            tolerances[name] = case.output_tolerances[name]
        elif case.tolerance is not None:
            tolerances[name] = case.tolerance
        else:
            actual = outputs.get(name)
            dtype = str(getattr(actual, "dtype", "float32"))
            tolerances[name] = default_tolerance(dtype if dtype.startswith(("float", "bfloat")) else "float32")
    return tolerances


def _record(lane: Lane, status: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"id": lane.id, **lane.to_dict(), "status": status, "message": message, **extra}


def _settle(
    case: Case, lane: Lane, outcome: str, message: str, failing_outputs: list[str], **extra: Any
) -> dict[str, Any]:
    """Apply the case's expected divergence to a raw pass/fail/error outcome."""
    expectation = case.expectation(lane.exporter, lane.runtime)
    if expectation is None:
        return _record(lane, outcome, message, **extra)
    expected = {"reason": expectation.reason, "reference": expectation.reference, "status": expectation.status}
    if outcome == PASS:
        return _record(
            lane,
            XPASS,
            f"expected to {expectation.status} ({expectation.reason}) but passed",
            expected=expected,
            **extra,
        )
    output_ok = expectation.covers(failing_outputs)
    if outcome == expectation.status and output_ok:
        return _record(lane, XFAIL, message, expected=expected, **extra)
    return _record(
        lane,
        outcome,
        f"{message}\n(expected {expectation.status} on {expectation.output} instead)",
        expected=expected,
        **extra,
    )


def run_lane(case: Case, lane: Lane, context: LaneContext) -> dict[str, Any]:
    """Execute one lane; every failure becomes a status, never an exception."""
    from conformance.runtimes import get_runtime

    start = time.perf_counter()
    runtime = get_runtime(lane.runtime)
    reason = runtime.unavailable()
    if reason:
        return _record(lane, SKIP, reason)
    weights = context.weights(case)
    data = context.data(case)
    artifact: Artifact | None = None
    extra: dict[str, Any] = {"settings": runtime.settings()}
    if lane.exporter != NO_EXPORT:
        artifact = context.artifact(case, lane.exporter)
        extra["artifact"] = {"status": artifact.status, "cached": artifact.cached, **artifact.meta}
        if artifact.status in ("unavailable", "not-applicable"):
            return _record(lane, SKIP, f"{lane.exporter}: {artifact.reason}", **extra)
        if not artifact.ok:
            return _settle(case, lane, ERROR, artifact.reason, [], **extra)
    names = input_names(case.model, export_options(case))
    feeds = {name: data.feeds[name] for name in names}
    try:
        session = runtime.open(artifact, case.model, weights)
    except Exception as exc:
        return _settle(
            case, lane, ERROR, f"{lane.runtime} could not load the model: {describe_error(exc)}", [], **extra
        )
    try:
        outputs = session.run(feeds)
        placement = session.placement()  # also ends ORT profiling, before any timing
        if context.latency is not None:
            extra["latency"] = _time(session, feeds, case, context.latency)
    except Exception as exc:
        return _settle(case, lane, ERROR, f"{lane.runtime} failed to run: {describe_error(exc)}", [], **extra)
    finally:
        session.close()
    if context.latency is not None and not context.latency.check_accuracy:
        extra["duration_s"] = round(time.perf_counter() - start, 4)
        return _record(lane, SKIP, "accuracy not checked (--latency-only)", **extra)
    diffs = compare_outputs(
        outputs,
        data.expected,
        _tolerances(case, outputs, data.expected),
        time_axes=data.time_axes,
        padding_masks=data.padding_masks,
    )
    extra["outputs"] = {d.name: d.to_dict() for d in diffs}
    if placement:
        extra["placement"] = placement
    failing = [d for d in diffs if not d.passed]
    messages = [format_mismatch(d) for d in failing]
    problem = placement_problem(lane.runtime, runtime.required_provider, placement)
    if problem:
        messages.append(problem)
    extra["duration_s"] = round(time.perf_counter() - start, 4)
    outcome = FAIL if messages else PASS
    message = "\n\n".join(messages) if messages else _pass_message(diffs)
    return _settle(case, lane, outcome, message, [d.name for d in failing], **extra)


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


def misplaced_lstm_nodes(required: str | None, placement: dict[str, str]) -> list[str]:
    """LSTM nodes that ran somewhere other than the provider the lane is about."""
    if required is None:
        return []
    return sorted(node for node, provider in placement.items() if node.endswith("(LSTM)") and provider != required)


def placement_problem(runtime_id: str, required: str | None, placement: dict[str, str]) -> str | None:
    """The message that fails a lane whose LSTM ran on another provider, or ``None``."""
    misplaced = misplaced_lstm_nodes(required, placement)
    if not misplaced:
        return None
    providers = ", ".join(sorted({placement[n] for n in misplaced}))
    return f"LSTM node(s) {', '.join(misplaced)} ran on {providers}, not {required}: not a {runtime_id} result"


def nothing_checked(results: list[dict[str, Any]]) -> bool:
    """Every lane was skipped: a gate that ran nothing must not pass."""
    return all(r["status"] == SKIP for r in results)


NOTHING_CHECKED = "nothing was checked: every lane was skipped (see the reasons above)"
EXIT_INTERRUPTED = 130


def exit_code(results: list[dict[str, Any]], *, interrupted: bool = False, latency_only: bool = False) -> int:
    """The exit rule of ``run`` (and of ``report`` on a saved run).

    130 when interrupted; 1 when a lane failed, or when every lane was skipped
    (``--latency-only`` lanes skip accuracy by design and are exempt); else 0.
    """
    if interrupted:
        return EXIT_INTERRUPTED
    if any(r["status"] in FAILING for r in results):
        return 1
    return 1 if results and not latency_only and nothing_checked(results) else 0


def _pass_message(diffs: list[OutputDiff]) -> str:
    worst = max(diffs, key=lambda d: d.headroom, default=None)
    if worst is None:
        return "no outputs compared"
    return f"worst headroom {worst.headroom:.3g} on {worst.name} (max abs {worst.max_abs:.3g})"
