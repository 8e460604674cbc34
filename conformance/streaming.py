"""``check --stream N``: run a streaming model N steps, each state output fed back into its state input.

Each runtime carries its own state from step to step and the reference carries its own, so an error that
grows with the stream shows as it would in deployment. The pairs come from ``--state OUT=IN`` or are
guessed: an output and an input with the same declared shape and dtype, paired by name (``stateN`` ->
``state``, ``h_n`` -> ``h0``); the guess is printed. Each step gets fresh values for the other float
inputs (a new chunk of audio, say) and keeps the rest.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from conformance.graph.inputs import GraphInput
from conformance.records import Result, model_result
from conformance.status import ERROR, FAIL, PASS, SKIP
from exporters.base import describe_error
from exporters.errors import BadInputError

__all__ = ["StreamPlan", "guess_pairs", "plan_stream", "run_stream"]


@dataclass(frozen=True)
class StreamPlan:
    """The (output, input) state pairs, the number of steps, and what was guessed."""

    pairs: tuple[tuple[str, str], ...]
    steps: int
    notes: tuple[str, ...] = ()


def plan_stream(model: onnx.ModelProto, inputs: Sequence[GraphInput], states: Sequence[str], steps: int) -> StreamPlan:
    """The pairs given with ``--state`` (checked), or guessed; a model with none is bad input."""
    outputs = {o.name: o for o in model.graph.output}
    by_name = {i.name: i for i in inputs}
    pairs: list[tuple[str, str]] = []
    for text in states:
        out, sep, into = (part.strip() for part in text.partition("="))
        if not sep or not out or not into:
            raise BadInputError(f"--state {text}: expected OUT=IN")
        if out not in outputs:
            raise BadInputError(f"--state {text}: the model has no output {out!r}; its outputs: {', '.join(outputs)}")
        if into not in by_name:
            raise BadInputError(f"--state {text}: the model has no input {into!r}; its inputs: {', '.join(by_name)}")
        if into in [i for _, i in pairs]:
            raise BadInputError(f"--state {text}: input {into!r} already takes another output")
        declared = _declared(outputs[out])
        if declared is not None and not _compatible(declared, (by_name[into].dtype, by_name[into].dims)):
            raise BadInputError(
                f"--state {text}: output {out!r} is {_show(declared)} but input {into!r} is "
                f"{_show((by_name[into].dtype, by_name[into].dims))}"
            )
        pairs.append((out, into))
    if pairs:
        return StreamPlan(tuple(pairs), steps)
    guessed = guess_pairs(model, inputs)
    if not guessed:
        raise BadInputError(
            "--stream: found no state output to feed back (no output has the declared shape and dtype of an "
            "input); name the pairs with --state OUT=IN"
        )
    shown = ", ".join(f"{o}={i}" for o, i in guessed)
    return StreamPlan(guessed, steps, (f"--stream: state pairs guessed from names and shapes: --state {shown}",))


def guess_pairs(model: onnx.ModelProto, inputs: Sequence[GraphInput]) -> tuple[tuple[str, str], ...]:
    """Outputs paired with the input of the same declared dtype and shape whose name is closest."""
    pairs = []
    taken: set[str] = set()
    for output in model.graph.output:
        declared = _declared(output)
        if declared is None:
            continue
        candidates = [
            i for i in inputs if i.name not in taken and i.dims and _compatible(declared, (i.dtype, i.dims), guess=True)
        ]
        if not candidates:
            continue
        best = max(candidates, key=lambda i: _likeness(output.name, i.name))
        if _likeness(output.name, best.name) >= 0.4:
            pairs.append((output.name, best.name))
            taken.add(best.name)
    return tuple(pairs)


def _compatible(output: tuple[str, Any], state: tuple[str, Any], *, guess: bool = False) -> bool:
    """Whether an output can be fed back as a state input: same dtype and rank, equal where both dims are
    fixed (a symbolic or unnamed dim matches another: exporters name the same size differently). To
    ``guess`` a pair, a fixed dim must also meet a fixed dim: an output [batch, 1] is no state for an
    input [batch, N]."""
    (out_dtype, out_dims), (in_dtype, in_dims) = output, state
    if out_dtype != in_dtype:
        return False
    if out_dims is None or in_dims is None:
        return True
    if len(out_dims) != len(in_dims):
        return False
    for a, b in zip(out_dims, in_dims, strict=True):
        fixed = isinstance(a, int), isinstance(b, int)
        if (all(fixed) and a != b) or (guess and fixed[0] != fixed[1]):
            return False
    return True


def _likeness(output: str, name: str) -> float:
    """How alike two names are, ignoring the usual markers of a state in and out."""

    def stem(text: str) -> str:
        text = text.lower()
        for marker in ("_out", "out_", "_in", "in_", "new_", "next_", "_next", "_new", "_n", "0", "n"):
            text = text.replace(marker, "") if len(text) > len(marker) else text
        return text

    return difflib.SequenceMatcher(None, stem(output), stem(name)).ratio()


def _declared(info: onnx.ValueInfoProto) -> tuple[str, tuple[Any, ...] | None] | None:
    from onnx import helper

    if info.type.WhichOneof("value") != "tensor_type":
        return None
    tensor = info.type.tensor_type
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
    except (KeyError, TypeError, ValueError):
        return None
    if not tensor.HasField("shape"):
        return dtype, None
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
    return dtype, dims


def _show(declared: tuple[str, Any]) -> str:
    dtype, dims = declared
    return f"{dtype} {list(dims) if dims is not None else '(no shape)'}"


def run_stream(
    plan: StreamPlan,
    model_path: Path,
    model: onnx.ModelProto,
    first: Any,
    runtimes: Sequence[Any],
    options: Any,
    open_session: Callable[[Any, Path], Any],
    isolate: Callable[[Callable[[], list[Result]], str], list[Result]] = lambda work, _runtime_id: work(),
) -> list[Result]:
    """One result per runtime: the stream of ``plan.steps`` steps from the input set ``first``;
    ``open_session(runtime, path)`` opens a runtime's session on a model file, and ``isolate(work,
    runtime_id)`` runs one runtime's work (in a worker process, for ``check``)."""
    from conformance.graph import reference_runner

    name, label = model_path.name, f"stream {plan.steps} steps from {first.label}"
    steps = _step_feeds(first.feeds, plan, options.seed)
    try:
        expected = _stream(lambda feeds: dict(reference_runner()(model, feeds)), steps, plan)
    except Exception as exc:
        return [model_result(name, "reference", ERROR, f"the reference failed on the stream: {describe_error(exc)}")]
    results = []
    for runtime in runtimes:

        def work(runtime: Any = runtime) -> list[Result]:
            return [_runtime_stream(runtime, name, label, model_path, steps, plan, expected, options, open_session)]

        results += isolate(work, runtime.id)
    return results


def _runtime_stream(
    runtime: Any,
    name: str,
    label: str,
    model_path: Path,
    steps: Sequence[Mapping[str, np.ndarray]],
    plan: StreamPlan,
    expected: list[dict[str, Any]],
    options: Any,
    open_session: Callable[[Any, Path], Any],
) -> Result:
    runtime_id = runtime.id
    reason = runtime.unavailable()
    if reason:
        return model_result(name, runtime_id, SKIP, reason, label=label)
    try:
        session = open_session(runtime, model_path)
    except Exception as exc:
        return model_result(
            name, runtime_id, ERROR, f"{runtime_id} could not load the model: {describe_error(exc)}", label=label
        )
    try:
        actual = _stream(session.run, steps, plan)
    except Exception as exc:
        return model_result(name, runtime_id, ERROR, f"{runtime_id} failed: {describe_error(exc)}", label=label)
    finally:
        session.close()
    return _judge(name, runtime_id, label, actual, expected, options)


def _step_feeds(first: Mapping[str, np.ndarray], plan: StreamPlan, seed: int) -> list[dict[str, np.ndarray]]:
    """Each step's feeds: fresh values for the float inputs that are not state, the rest kept."""
    rng = np.random.default_rng(seed + 1)
    states = {into for _, into in plan.pairs}
    steps = [dict(first)]
    for _ in range(plan.steps - 1):
        step = {}
        for key, value in first.items():
            fresh = key not in states and value.dtype.kind == "f" and value.ndim > 0
            step[key] = rng.uniform(-1, 1, value.shape).astype(value.dtype) if fresh else value
        steps.append(step)
    return steps


def _stream(run: Any, steps: Sequence[Mapping[str, np.ndarray]], plan: StreamPlan) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = []
    carried: dict[str, np.ndarray] = {}
    for feeds in steps:
        result = dict(run({**feeds, **carried}))
        outputs.append(result)
        carried = {into: np.asarray(result[out]) for out, into in plan.pairs}
    return outputs


def _judge(
    name: str, runtime_id: str, label: str, actual: list[dict[str, Any]], expected: list[dict[str, Any]], options: Any
) -> Result:
    from conformance import evaluate

    errors = []
    failed_at = None
    message = ""
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        arrays = {k: v for k, v in want.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"}
        worst = max(
            (
                float(np.max(np.abs(np.asarray(got[k], np.float64) - v.astype(np.float64)), initial=0.0))
                for k, v in arrays.items()
            ),
            default=0.0,
        )
        errors.append(worst)
        allowed = evaluate.tolerances(arrays, got, lambda _name: options.tolerance)
        verdict = evaluate.judge({k: got.get(k) for k in arrays}, arrays, allowed, where=f"at step {index + 1}")
        if verdict.status != PASS and failed_at is None:
            failed_at, message = index + 1, verdict.message
    growth = _growth(errors)
    detail = {"max_abs_error_per_step": [round(e, 12) for e in errors]}
    if failed_at is not None:
        text = (
            f"{runtime_id} drifts from the reference at step {failed_at} of {len(errors)}; "
            f"greatest error per step: {growth}\n{message}"
        )
        return model_result(name, runtime_id, FAIL, text, label=label, detail=detail)
    text = f"{runtime_id} stays within tolerance for {len(errors)} steps; greatest error per step: {growth}"
    return model_result(name, runtime_id, PASS, text, label=label, detail=detail)


def _growth(errors: Sequence[float]) -> str:
    """The greatest error of each step; of a long stream, the first six, the last five and the worst."""
    if len(errors) <= 12:
        return ", ".join(f"{e:.2g}" for e in errors)
    worst = max(range(len(errors)), key=errors.__getitem__)
    head, tail = ", ".join(f"{e:.2g}" for e in errors[:6]), ", ".join(f"{e:.2g}" for e in errors[-5:])
    return f"{head}, ..., {tail} (worst {errors[worst]:.2g} at step {worst + 1})"
