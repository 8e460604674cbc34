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

This module runs it (the options, the orchestration, each runtime at each input set); the parts it imports:
``quantize_nodes`` (the transformed model, its capture and node mapping), ``quantize_lm`` (the language
model) and ``quantize_cost`` (errors as costs, their wording and the console's cost table).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance import evaluate
from conformance.check import (
    CheckOptions,
    CheckReport,
    InputSet,
    Planned,
    _fold_not_exercised,
    _onnx_runtimes,
    open_check,
    plan_check,
)
from conformance.check.isolation import runtimes_in_workers
from conformance.check.judging import _comparable, _PlainSession, open_session
from conformance.check.quantize_cost import (
    CostRow,
    _cost,
    _costs_text,
    _headroom,
    _over_max_abs,
    _worse,
    cost_rows,
)
from conformance.check.quantize_lm import LMShape, _ppl_gate, _ppl_within, language_model, lm_cost
from conformance.check.quantize_nodes import _Made, _transform_notes, _transformed, map_nodes
from conformance.diffs import Tolerance
from conformance.graph import LSTMNode, NodeCapture, node_reference
from conformance.records import Result, model_result, node_result
from conformance.runtimes.base import fork_hazard
from conformance.status import ERROR, FAIL, NOT_EXERCISED, PASS, SKIP
from exporters.base import describe_error
from exporters.errors import BadInputError
from exporters.transforms import BUDGETS, Transform, TransformError, get_transform

__all__ = ["DEFAULT_RUNTIMES", "CostRow", "LMShape", "QuantizeOptions", "cost_rows", "map_nodes", "run_quantize"]

DEFAULT_RUNTIMES = ("ort-cpu",)  # int8-dynamic's contrib op runs on ONNX Runtime's CPU provider


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
        by_runtime = runtimes_in_workers(jobs, report.input_sets, model_path.name, options)
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
