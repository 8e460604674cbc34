"""Turn a case's recipes into weights, runtime inputs and the float64 reference outputs.

Inputs are generated in float32 (what the exported models take) and the
reference reads those exact float32 values in float64, so the comparison
measures the runtime, not input rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from reference.config import LMConfig, LSTMConfig
from reference.models import lm_log_probs, run_stack
from reference.weights import LMWeights, LSTMWeights, generate, generate_lm, load

if TYPE_CHECKING:
    from conformance.cases import Case, InputSpec

TRAINED_LM = "lm-trained.npz"


@dataclass(frozen=True, eq=False)
class CaseData:
    """Feeds for the runtimes (I/O contract of exporters/base.py) and what they must return."""

    feeds: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    padding_masks: dict[str, np.ndarray] = field(default_factory=dict)
    time_axes: dict[str, int | None] = field(default_factory=dict)
    sequence_lens: np.ndarray | None = None


def case_weights(case: Case) -> LSTMWeights | LMWeights:
    """The canonical weights a case's recipe names."""
    spec = case.weights
    if spec.recipe == "trained":
        if not isinstance(case.model, LMConfig):
            raise ValueError(f"{case.source}: weights.recipe 'trained' exists for language models only")
        with resources.as_file(resources.files("cases") / "data" / TRAINED_LM) as path:
            weights = load(path)
        assert isinstance(weights, LMWeights)
        problem = weights.lstm.matches(case.model.lstm)
        if problem or weights.embedding.shape != (case.model.vocab_size, case.model.embed_size):
            raise ValueError(
                f"{case.source}: the trained LM has vocab {weights.embedding.shape[0]}, embedding "
                f"{weights.embedding.shape[1]}, hidden {weights.lstm.hidden_size}, {weights.lstm.num_layers} layer(s); "
                "the case's model must match"
            )
        return weights
    if isinstance(case.model, LMConfig):
        return generate_lm(case.model, seed=spec.seed, recipe=spec.recipe)
    return generate(case.model, seed=spec.seed, recipe=spec.recipe)


def sequence_lengths(spec: InputSpec, rng: np.random.Generator) -> np.ndarray | None:
    """Per-batch lengths for a case, or ``None`` for full-length sequences."""
    t, b = spec.seq_len, spec.batch
    if spec.sequence_lens == "full":
        return None
    if isinstance(spec.sequence_lens, tuple):
        return np.array(spec.sequence_lens, dtype=np.int32)
    lens = rng.integers(1, t + 1, size=b)
    lens[0] = t  # at least one full-length sequence
    if spec.sequence_lens == "with-zero" and b >= 2:
        lens[-1] = 0
    return lens.astype(np.int32)


def build(case: Case, weights: LSTMWeights | LMWeights) -> CaseData:
    """Generate the case's inputs and compute the reference outputs in float64."""
    spec = case.inputs
    rng = np.random.default_rng(spec.seed)
    if isinstance(case.model, LMConfig):
        assert isinstance(weights, LMWeights)
        return _build_lm(case.model, weights, spec, rng)
    assert isinstance(weights, LSTMWeights)
    return _build_stack(case.model, weights, spec, rng)


def _build_stack(config: LSTMConfig, weights: LSTMWeights, spec: InputSpec, rng: np.random.Generator) -> CaseData:
    t, b = spec.seq_len, spec.batch
    shape = (b, t, config.input_size) if config.batch_first else (t, b, config.input_size)
    x = rng.uniform(spec.low, spec.high, shape).astype(np.float32)
    feeds: dict[str, np.ndarray] = {"X": x}
    kwargs: dict[str, Any] = {}
    if spec.initial_states:
        state = (config.num_layers * config.num_directions, b, config.hidden_size)
        feeds["initial_h"] = rng.uniform(spec.low, spec.high, state).astype(np.float32)
        feeds["initial_c"] = rng.uniform(spec.low, spec.high, state).astype(np.float32)
        kwargs.update(initial_h=feeds["initial_h"], initial_c=feeds["initial_c"])
    lens = sequence_lengths(spec, rng)
    if lens is not None:
        feeds["sequence_lens"] = lens
        kwargs["sequence_lens"] = lens
    out = run_stack(config, weights, x, **kwargs)
    time_axis = 1 if config.batch_first else 0
    masks: dict[str, np.ndarray] = {}
    if lens is not None:
        steps = np.arange(t)[:, None] >= lens[None, :]  # [T, B], True where padded
        pad = steps.T[:, :, None] if config.batch_first else steps[:, :, None]
        masks["Y"] = pad
    return CaseData(
        feeds=feeds,
        expected={"Y": out.output, "Y_h": out.h_n, "Y_c": out.c_n},
        padding_masks=masks,
        time_axes={"Y": time_axis, "Y_h": None, "Y_c": None},
        sequence_lens=lens,
    )


def _build_lm(config: LMConfig, weights: LMWeights, spec: InputSpec, rng: np.random.Generator) -> CaseData:
    t, b = spec.seq_len, spec.batch
    if spec.tokens == "corpus":
        from conformance import corpus

        ids = np.array(corpus.encode(corpus.text()), dtype=np.int64)
        if ids.max() >= config.vocab_size:
            raise ValueError(f"inputs.tokens 'corpus' needs vocab_size >= {int(ids.max()) + 1}")
        starts = rng.integers(0, len(ids) - t, size=b)
        tokens = np.stack([ids[s : s + t] for s in starts], axis=1)  # [T, B]
    else:
        tokens = rng.integers(0, config.vocab_size, size=(t, b), dtype=np.int64)
    if config.lstm.batch_first:
        tokens = np.ascontiguousarray(tokens.T)
    expected = lm_log_probs(config, weights, tokens)
    return CaseData(
        feeds={"tokens": tokens},
        expected={"log_probs": expected},
        time_axes={"log_probs": 1 if config.lstm.batch_first else 0},
    )
