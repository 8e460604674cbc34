"""The language-model part of ``conformance check --quantize``: whether the model is LM-shaped (a token
input and an output scoring the next token), its time axis, and the perplexity and next-token agreement of
the transformed model against the reference (``conformance.evaluate.lm_metrics``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance import evaluate
from conformance.check import InputSet, Opened, Planned
from conformance.check.judging import _comparable


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
