"""Shrink a diverging lane to the smallest model that still shows the same divergence on its runtime.

Reductions are tried one at a time, each kept only when the divergence persists (the same
:attr:`~conformance.repro.trial.Trial.signature`): the ``onnx-native`` exporter, one layer, one bare
``LSTM`` node, one direction, no initial states, no ``sequence_lens``, each operator feature back to its
default, T, B, I and H as small as they go, and last the weights recipe and input range. Passes repeat
until one keeps nothing (a reduction refused early may succeed once others have been made). Each
reduction is tried with the case's random weights and inputs, then with fresh draws before it is refused
(a smaller model may just miss the values that show the divergence). The reductions refused in that last
pass are the controls: the final model with one thing changed, and what that did.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from conformance.cases import Case
from conformance.repro.trial import NATIVE, Trial, Variant, one_node_possible
from reference.activations import lookup
from reference.config import LMConfig, LSTMConfig

MAX_TRIALS = 300
RESEEDS = 3  # draws of the random weights and inputs tried for each reduction before it is refused
DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")
MAX_PASSES = 6

Candidates = Iterator[tuple[str, Variant]]


@dataclass(frozen=True)
class Step:
    """A reduction and what the model did with it (a kept step, or a control)."""

    what: str
    outcome: str


@dataclass(frozen=True)
class Minimised:
    trial: Trial  # the smallest variant that still diverges, as it ran
    steps: tuple[Step, ...]  # the reductions kept, in order
    controls: tuple[Step, ...]  # reductions of the final model that were refused, with their outcome
    trials: int  # how many variants ran


def minimise(start: Trial, run: Callable[[Variant], Trial], *, max_trials: int = MAX_TRIALS) -> Minimised:
    """Reduce ``start`` (a diverging trial) while the divergence persists; ``run`` runs one variant."""
    current = start
    steps: list[Step] = []
    controls: dict[str, Step] = {}
    count = 0
    for _ in range(MAX_PASSES):
        changed = False
        for reduction in REDUCTIONS:
            for what, candidate in _buildable(reduction, current.variant):
                kept = False
                for reseeded, variant in _reseeded(what, candidate):
                    if count >= max_trials:
                        return Minimised(current, tuple(steps), (), count)
                    trial = run(variant)
                    count += 1
                    if trial.status == "unbuilt":
                        break
                    if trial.diverges and trial.signature == start.signature:
                        steps.append(Step(reseeded, trial.summary()))
                        current, changed, controls, kept = trial, True, {}, True
                        break
                    controls.setdefault(reduction.__name__, Step(what, trial.summary()))
                if kept:
                    break
        if not changed:
            break
    return Minimised(current, tuple(steps), tuple(controls.values()), count)


def _buildable(reduction: Callable[[Variant], Candidates], variant: Variant) -> Candidates:
    """The reduction's candidates, leaving out those the configuration refuses (``ValueError``)."""
    try:
        yield from reduction(variant)
    except ValueError:
        return


# --- helpers -------------------------------------------------------------------------------------------------


def _with_lstm(case: Case, **changes: Any) -> Case:
    """``case`` with fields of its LSTM stack changed (inside a language model too); configs re-validate."""
    model = case.model
    if isinstance(model, LMConfig):
        return replace(case, model=LMConfig(model.vocab_size, replace(model.lstm, **changes)))
    return replace(case, model=replace(model, **changes))


def _case(variant: Variant, case: Case) -> Variant:
    return replace(variant, case=case)


def _reseeded(what: str, variant: Variant) -> Candidates:
    """``variant`` with its own random data, then with fresh draws: a model drawn anew may miss the values
    that showed the divergence (a clip threshold no cell reaches) where another draw shows it."""
    yield what, variant
    case = variant.case
    for k in range(1, RESEEDS):
        weights, inputs = (
            replace(case.weights, seed=case.weights.seed + k),
            replace(case.inputs, seed=case.inputs.seed + k),
        )
        yield f"{what} (random seeds +{k})", replace(variant, case=replace(case, weights=weights, inputs=inputs))


def _smaller(value: int) -> list[int]:
    """Sizes to try below ``value``, smallest first."""
    return sorted({x for x in (1, 2, 3, 4, value // 2) if 1 <= x < value})


def _lengths(case: Case) -> tuple[int, ...] | None:
    lens = case.inputs.sequence_lens
    return lens if isinstance(lens, tuple) else None


# --- the reductions, in the order they are tried ---------------------------------------------------------------


def exporter(v: Variant) -> Candidates:
    if v.exporter != NATIVE:
        yield f"exporter {v.exporter} -> {NATIVE} (the LSTM operator written directly)", replace(v, exporter=NATIVE)


def language_model(v: Variant) -> Candidates:
    case = v.case
    if isinstance(case.model, LMConfig):
        recipe = "torch-default" if case.weights.recipe == "trained" else case.weights.recipe
        yield (
            "language model -> its LSTM stack alone (no embedding, projection or log-softmax)",
            _case(
                v,
                replace(
                    case,
                    model=case.model.lstm,
                    weights=replace(case.weights, recipe=recipe),
                    inputs=replace(case.inputs, tokens="random"),
                    output_tolerances={},
                ),
            ),
        )


def layers(v: Variant) -> Candidates:
    if v.case.lstm.num_layers > 1:
        yield f"num_layers {v.case.lstm.num_layers} -> 1", _case(v, _with_lstm(v.case, num_layers=1))


def one_node(v: Variant) -> Candidates:
    if not v.one_node and one_node_possible(v.case, v.exporter):
        yield (
            "one bare LSTM node (the Transpose and Reshape the export puts around it removed)",
            replace(v, one_node=True),
        )


def batch_first(v: Variant) -> Candidates:
    if v.case.lstm.batch_first:
        case = _with_lstm(v.case, batch_first=False)
        yield "batch_first -> false (layout 0)", _case(v, replace(case, export=replace(case.export, layout=0)))


def direction(v: Variant) -> Candidates:
    lstm = v.case.lstm
    if lstm.direction == "bidirectional":
        acts = lstm.activations
        yield (
            "direction bidirectional -> forward",
            _case(v, _with_lstm(v.case, direction="forward", activations=None if acts is None else acts[:3])),
        )
        alpha, beta = _reverse_parameters(lstm)
        yield (
            "direction bidirectional -> reverse",
            _case(
                v,
                _with_lstm(
                    v.case,
                    direction="reverse",
                    activations=None if acts is None else acts[3:],
                    activation_alpha=alpha,
                    activation_beta=beta,
                ),
            ),
        )
    elif lstm.direction == "reverse":
        yield "direction reverse -> forward", _case(v, _with_lstm(v.case, direction="forward"))


def _reverse_parameters(lstm: LSTMConfig) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """The alpha and beta values the reverse triple consumes (the forward triple takes its own first)."""
    names = lstm.activations[:3] if lstm.activations else DEFAULT_ACTIVATIONS
    takes_alpha = sum(lookup(n).default_alpha is not None for n in names)
    takes_beta = sum(lookup(n).default_beta is not None for n in names)
    alpha = None if lstm.activation_alpha is None else lstm.activation_alpha[takes_alpha:] or None
    beta = None if lstm.activation_beta is None else lstm.activation_beta[takes_beta:] or None
    return alpha, beta


def initial_states(v: Variant) -> Candidates:
    if v.case.inputs.initial_states:
        yield (
            "initial_h and initial_c removed",
            _case(v, replace(v.case, inputs=replace(v.case.inputs, initial_states=False))),
        )


def sequence_lens(v: Variant) -> Candidates:
    lens = v.case.inputs.sequence_lens
    if lens != "full":
        yield "sequence_lens removed", _case(v, replace(v.case, inputs=replace(v.case.inputs, sequence_lens="full")))
    explicit = _lengths(v.case)
    if explicit and 0 in explicit:
        fewer = tuple(1 if n == 0 else n for n in explicit)
        yield (
            f"sequence_lens {list(explicit)} -> {list(fewer)} (no empty sequence)",
            _case(v, replace(v.case, inputs=replace(v.case.inputs, sequence_lens=fewer))),
        )


def peepholes(v: Variant) -> Candidates:
    if v.case.lstm.peepholes:
        yield "P (peepholes) removed", _case(v, _with_lstm(v.case, peepholes=False))


def clip(v: Variant) -> Candidates:
    if v.case.lstm.clip is not None:
        yield f"clip {v.case.lstm.clip:g} removed", _case(v, _with_lstm(v.case, clip=None))


def input_forget(v: Variant) -> Candidates:
    if v.case.lstm.input_forget:
        yield "input_forget 1 -> 0", _case(v, _with_lstm(v.case, input_forget=0))


def activations(v: Variant) -> Candidates:
    lstm = v.case.lstm
    if lstm.activations is not None:
        yield (
            "activations -> the defaults (Sigmoid, Tanh, Tanh)",
            _case(v, _with_lstm(v.case, activations=None, activation_alpha=None, activation_beta=None)),
        )
        defaults = DEFAULT_ACTIVATIONS * lstm.num_directions
        for k, (name, default) in enumerate(zip(lstm.activations, defaults, strict=True)):
            if lookup(name).name != default and lstm.activation_alpha is lstm.activation_beta is None:
                fewer = (*lstm.activations[:k], default, *lstm.activations[k + 1 :])
                yield f"activation {k} {name} -> {default}", _case(v, _with_lstm(v.case, activations=fewer))
    if lstm.activation_alpha is not None or lstm.activation_beta is not None:
        yield (
            "activation_alpha and activation_beta removed (each function's default)",
            _case(v, _with_lstm(v.case, activation_alpha=None, activation_beta=None)),
        )


def recipe(v: Variant) -> Candidates:
    case = v.case
    if case.weights.recipe not in ("torch-default", "trained"):
        yield (
            f"weights {case.weights.recipe} -> torch-default",
            _case(v, replace(case, weights=replace(case.weights, recipe="torch-default"))),
        )
    if (case.inputs.low, case.inputs.high) != (-1.0, 1.0):
        yield (
            f"inputs U({case.inputs.low:g}, {case.inputs.high:g}) -> U(-1, 1)",
            _case(v, replace(case, inputs=replace(case.inputs, low=-1.0, high=1.0))),
        )


def export_settings(v: Variant) -> Candidates:
    spec = v.case.export
    if spec.opset is not None:
        yield (
            f"opset {spec.opset} -> the exporter's default",
            _case(v, replace(v.case, export=replace(spec, opset=None))),
        )
    if not spec.dynamic:
        yield "static export -> dynamic axes", _case(v, replace(v.case, export=replace(spec, dynamic=True)))
    if spec.seq_len is not None or spec.batch is not None:
        yield (
            "export shape -> the shape it runs at",
            _case(v, replace(v.case, export=replace(spec, seq_len=None, batch=None))),
        )


def seq_len(v: Variant) -> Candidates:
    steps = v.case.inputs.seq_len
    lens = _lengths(v.case)
    for t in _smaller(steps):
        scaled = None if lens is None else tuple(0 if n == 0 else max(1, math.ceil(n * t / steps)) for n in lens)
        inputs = replace(v.case.inputs, seq_len=t, sequence_lens=scaled or v.case.inputs.sequence_lens)
        yield f"T {steps} -> {t}", _case(v, replace(v.case, inputs=inputs))


def batch(v: Variant) -> Candidates:
    size = v.case.inputs.batch
    lens = _lengths(v.case)
    for b in _smaller(size):
        kept = None
        if lens is not None:  # the first (full) length and the last ones (the empty one of "with-zero")
            kept = (min(lens),) if b == 1 else (lens[0], *lens[len(lens) - (b - 1) :])
        inputs = replace(v.case.inputs, batch=b, sequence_lens=kept or v.case.inputs.sequence_lens)
        if inputs.sequence_lens == "with-zero" and b < 2:
            continue
        yield f"B {size} -> {b}", _case(v, replace(v.case, inputs=inputs))


def input_size(v: Variant) -> Candidates:
    for i in _smaller(v.case.lstm.input_size):
        yield f"input_size {v.case.lstm.input_size} -> {i}", _case(v, _with_lstm(v.case, input_size=i))


def hidden_size(v: Variant) -> Candidates:
    for h in _smaller(v.case.lstm.hidden_size):
        yield f"hidden_size {v.case.lstm.hidden_size} -> {h}", _case(v, _with_lstm(v.case, hidden_size=h))


REDUCTIONS: tuple[Callable[[Variant], Candidates], ...] = (
    exporter,
    language_model,
    layers,
    one_node,
    batch_first,
    direction,
    initial_states,
    sequence_lens,
    peepholes,
    clip,
    input_forget,
    activations,
    export_settings,
    seq_len,
    batch,
    input_size,
    hidden_size,
    recipe,  # last: large weights and inputs are what make clipping and saturation show at small sizes
)


def written_out(variant: Variant, lengths: Any) -> Variant:
    """A ``"mixed"`` / ``"with-zero"`` pattern as the explicit lengths it generated (the same inputs), so
    shrinking T and B keeps the short sequences that make the divergence."""
    if lengths is None or isinstance(variant.case.inputs.sequence_lens, tuple):
        return variant
    explicit = tuple(int(n) for n in lengths)
    return dataclasses.replace(
        variant, case=replace(variant.case, inputs=replace(variant.case.inputs, sequence_lens=explicit))
    )
