"""The one evaluator: run a session on inputs, compare with the expected outputs, settle the status.

``run``'s lanes, ``check``'s shapes, ``check --against-torch`` and ``selftest`` all go through here, so a
verdict means the same everywhere: an exception while running is ``error``, an output outside tolerance
or a misplaced LSTM is ``fail``, and an expected divergence from the case file turns a matching failure
into ``xfail`` and a pass into ``xpass``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from conformance.compare import compare_outputs, default_tolerance
from conformance.diffs import OutputDiff, Tolerance, format_mismatch
from conformance.records import Expected
from conformance.status import ERROR, FAIL, PASS, XFAIL, XPASS
from exporters.base import describe_error


@dataclass(frozen=True)
class Verdict:
    """A raw outcome (``pass``, ``fail`` or ``error``) before any expected divergence is applied."""

    status: str
    message: str
    outputs: tuple[OutputDiff, ...] = ()

    @property
    def failing_outputs(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.outputs if not d.passed)


def tolerances(
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    override: Callable[[str], Tolerance | None] = lambda name: None,
    *,
    computed_in: str | None = None,
) -> dict[str, Tolerance]:
    """Each output's tolerance: the override (case file, ``--atol``), else the default of the actual dtype,
    or of ``computed_in`` when the runtime computes in a less precise dtype than it returns (OpenVINO's
    bf16 inference precision behind float32 outputs: its settings' ``tolerance_dtype``)."""
    out = {}
    for name in expected:
        chosen = override(name)
        if chosen is None:
            dtype = str(getattr(actual.get(name), "dtype", "float32"))
            dtype = dtype if dtype.startswith(("float", "bfloat")) else "float32"
            if computed_in is not None and _PRECISION.get(computed_in, 99) < _PRECISION.get(dtype, 99):
                dtype = computed_in
            chosen = default_tolerance(dtype)
        out[name] = chosen
    return out


_PRECISION = {"bfloat16": 0, "float16": 1, "float32": 2, "float64": 3}  # by tolerance: bf16 the loosest


def budget_tolerances(
    transform: str, expected: Mapping[str, Any], *, computed_in: str | None = None
) -> dict[str, Tolerance]:
    """Each output's tolerance on a transformed lane: the transform's error budget (exporters/transforms.py
    ``BUDGETS``, measured), widened by the default tolerance of ``computed_in`` when the runtime computes in
    a less precise dtype than float32 (the two errors add up)."""
    from exporters.transforms import BUDGETS

    budget = BUDGETS[transform]
    widen = Tolerance(0.0, 0.0)
    if computed_in is not None and _PRECISION.get(computed_in, 99) < _PRECISION["float32"]:
        widen = default_tolerance(computed_in)
    out = {}
    for name in expected:
        if name not in budget:
            raise ValueError(f"the {transform} error budget has no entry for output {name!r} (exporters/transforms.py)")
        atol, rtol = budget[name]
        out[name] = Tolerance(atol + widen.atol, rtol + widen.rtol)
    return out


def within_budget(
    verdict: Verdict, transform: str, allowed: Mapping[str, Tolerance], lm: Mapping[str, Any] | None = None
) -> Verdict:
    """A transformed lane's verdict, worded against its transform's error budget, with the language model's
    accuracy cost (:func:`lm_metrics`) when there is one."""
    budget = "; ".join(f"{name} atol {t.atol:g}, rtol {t.rtol:g}" for name, t in allowed.items())
    cost = "" if lm is None else lm_summary(lm)
    if verdict.status == PASS:
        message = f"within the {transform} error budget ({budget}): {verdict.message}"
        return replace(verdict, message=f"{message}; {cost}" if cost else message)
    if verdict.status == FAIL:
        message = f"outside the {transform} error budget ({budget}):\n{verdict.message}"
        return replace(verdict, message=f"{message}\n{cost}" if cost else message)
    return verdict


def lm_metrics(
    tokens: np.ndarray, expected: np.ndarray, actual: Any, *, batch_first: bool = False
) -> dict[str, Any] | None:
    """What a language model's deployment costs, from its log-probabilities ``[T, B, V]`` (``[B, T, V]``).

    ``next_token_agreement``: the fraction of the T*B positions where the runtime's most likely next token
    (argmax of its log_probs) is the reference's. ``perplexity``: exp of the mean negative log-probability
    of the token that actually comes next (positions 0..T-2, targets tokens[1..T-1]), from the runtime's
    log_probs; ``perplexity_reference`` the same from the reference's; ``perplexity_increase`` their
    relative difference (0.01 = 1% higher). None when the output has another shape than the reference's."""
    reference = np.asarray(expected, dtype=np.float64)
    runtime = np.asarray(actual)
    if runtime.shape != reference.shape or reference.ndim != 3:
        return None
    runtime = runtime.astype(np.float64)
    ids = np.asarray(tokens, dtype=np.int64)
    if batch_first:
        ids, reference, runtime = ids.T, reference.transpose(1, 0, 2), runtime.transpose(1, 0, 2)
    same = np.argmax(runtime, axis=-1) == np.argmax(reference, axis=-1)
    out: dict[str, Any] = {
        "next_token_agreement": float(np.mean(same)),
        "positions": int(same.size),
        "agreeing_positions": int(np.count_nonzero(same)),
    }
    if ids.shape[0] >= 2:
        targets = ids[1:, :, None]
        nll_reference = -float(np.mean(np.take_along_axis(reference[:-1], targets, axis=-1)))
        nll = -float(np.mean(np.take_along_axis(runtime[:-1], targets, axis=-1)))
        with np.errstate(over="ignore"):
            ppl_reference, ppl = float(np.exp(nll_reference)), float(np.exp(nll))
        finite = math.isfinite(ppl)
        out.update(  # JSON has no inf or NaN: a non-finite perplexity is written as text ("inf", "nan")
            perplexity_reference=ppl_reference,
            perplexity=ppl if finite else str(ppl),
            perplexity_increase=ppl / ppl_reference - 1.0 if finite else str(ppl),
            scored_tokens=int(targets.size),
        )
    return out


def lm_summary(metrics: Mapping[str, Any]) -> str:
    """``perplexity 12.35 (reference 12.34, +0.08%), next-token agreement 99.3% (143/144)``."""
    agreement = (
        f"next-token agreement {metrics['next_token_agreement']:.1%} "
        f"({metrics['agreeing_positions']}/{metrics['positions']})"
    )
    if "perplexity" not in metrics:
        return agreement
    ppl, increase = metrics["perplexity"], metrics["perplexity_increase"]
    if not isinstance(ppl, float):
        return f"perplexity {ppl} (reference {metrics['perplexity_reference']:.4g}), {agreement}"
    return f"perplexity {ppl:.4g} (reference {metrics['perplexity_reference']:.4g}, {increase:+.3%}), {agreement}"


def least_precise(dtypes: Iterable[str | None]) -> str | None:
    """The floating dtype of ``dtypes`` with the loosest tolerance (bfloat16 before float16 before float32),
    or None when there is none: what ``tolerances(computed_in=...)`` takes for a model of mixed precision."""
    known = [d for d in dtypes if d in _PRECISION]
    return min(known, key=_PRECISION.__getitem__) if known else None


def judge(
    actual: Mapping[str, Any],
    expected: Mapping[str, np.ndarray],
    allowed: Mapping[str, Tolerance] | Tolerance,
    *,
    time_axes: Mapping[str, int | None] | None = None,
    padding_masks: Mapping[str, np.ndarray] | None = None,
    problems: Sequence[str] = (),
    where: str = "",
    passed: str | None = None,
) -> Verdict:
    """Compare every output; ``problems`` (a misplaced LSTM, ...) fail the verdict too."""
    diffs = compare_outputs(actual, expected, allowed, time_axes=time_axes, padding_masks=padding_masks)
    messages = [format_mismatch(d) for d in diffs if not d.passed] + list(problems)
    if messages:
        text = "\n\n".join(messages)
        return Verdict(FAIL, f"{where}:\n{text}" if where else text, tuple(diffs))
    return Verdict(PASS, passed or pass_message(diffs), tuple(diffs))


def run(session: Any, feeds: Mapping[str, np.ndarray], runtime_id: str, *, where: str = "") -> dict[str, Any] | Verdict:
    """The session's outputs, or an ``error`` verdict naming the runtime (and where) when it raised."""
    try:
        outputs: dict[str, Any] = session.run(feeds)
    except Exception as exc:
        at = f"at {where}" if where else "to run"
        return Verdict(ERROR, f"{runtime_id} failed {at}: {describe_error(exc)}")
    return outputs


def settle(verdict: Verdict, expectation: Any | None) -> tuple[str, str, Expected | None]:
    """Apply an expected divergence (``conformance.cases.Expectation`` or ``None``) to a raw verdict.

    Returns the final status, its message and the expectation as recorded.
    """
    if expectation is None:
        return verdict.status, verdict.message, None
    expected = Expected(expectation.reason, expectation.status, expectation.reference, expectation.output)
    if verdict.status == PASS:
        return XPASS, f"expected to {expectation.status} ({expectation.reason}) but passed", expected
    if verdict.status == expectation.status and expectation.covers(verdict.failing_outputs):
        return XFAIL, verdict.message, expected
    return (
        verdict.status,
        f"{verdict.message}\n(expected {expectation.status} on {expectation.output} instead)",
        expected,
    )


def pass_message(diffs: Sequence[OutputDiff]) -> str:
    worst = max(diffs, key=lambda d: d.headroom, default=None)
    if worst is None:
        return "no outputs compared"
    return f"worst headroom {worst.headroom:.3g} on {worst.name} (max abs {worst.max_abs:.3g})"


def misplaced_lstm_nodes(required: str | None, placement: Mapping[str, str]) -> list[str]:
    """LSTM nodes that ran somewhere other than the provider the lane is about."""
    if required is None:
        return []
    return sorted(node for node, provider in placement.items() if node.endswith(_LSTM_OPS) and provider != required)


_LSTM_OPS = ("(LSTM)", "(DynamicQuantizeLSTM)")  # placement keys "node (OpType)"; the latter: int8-dynamic


def placement_problem(runtime_id: str, required: str | None, placement: Mapping[str, str]) -> str | None:
    """The message that fails a lane whose LSTM ran on another provider, or ``None``."""
    misplaced = misplaced_lstm_nodes(required, placement)
    if not misplaced:
        return None
    providers = ", ".join(sorted({placement[n] for n in misplaced}))
    return f"LSTM node(s) {', '.join(misplaced)} ran on {providers}, not {required}: not a {runtime_id} result"
