"""Models built from the reference operator: stacked LSTMs and the LSTM language model.

Conventions follow ``torch.nn.LSTM``: the stack's output is
``[T, B, D*H]`` (``[B, T, D*H]`` when ``batch_first``), final states are
``[num_layers * D, B, H]`` ordered layer-major, then direction. Initial
states use the same ``[num_layers * D, B, H]`` shape.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference.config import LMConfig, LSTMConfig
from reference.lstm import lstm
from reference.weights import LMWeights, LSTMWeights

Array = NDArray[np.float64]


class StackOutput(NamedTuple):
    output: Array
    h_n: Array
    c_n: Array


def _check_states(name: str, value: ArrayLike | None, shape: tuple[int, ...]) -> Array | None:
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {list(shape)}, got {list(array.shape)}")
    return array


def run_stack(
    config: LSTMConfig,
    weights: LSTMWeights,
    x: ArrayLike,
    *,
    initial_h: ArrayLike | None = None,
    initial_c: ArrayLike | None = None,
    sequence_lens: ArrayLike | None = None,
) -> StackOutput:
    """Run a stacked (optionally bidirectional) LSTM on ``x``."""
    problem = weights.matches(config)
    if problem:
        raise ValueError(problem)
    inp = np.asarray(x, dtype=np.float64)
    if inp.ndim != 3:
        raise ValueError(f"x: expected a rank-3 tensor, got shape {list(inp.shape)}")
    if inp.shape[2] != config.input_size:
        raise ValueError(f"x: expected input size {config.input_size} on the last axis, got shape {list(inp.shape)}")
    if config.batch_first:
        inp = inp.transpose(1, 0, 2)
    batch = inp.shape[1]
    d = config.num_directions
    state_shape = (config.num_layers * d, batch, config.hidden_size)
    h0 = _check_states("initial_h", initial_h, state_shape)
    c0 = _check_states("initial_c", initial_c, state_shape)
    attrs = config.operator_attributes
    hs, cs = [], []
    for k, layer in enumerate(weights.layers):
        out = lstm(
            inp,
            layer.W,
            layer.R,
            layer.B,
            sequence_lens,
            None if h0 is None else h0[k * d : (k + 1) * d],
            None if c0 is None else c0[k * d : (k + 1) * d],
            layer.P,
            **attrs,
        )
        # Y is [T, D, B, H]; the next layer reads [T, B, D*H].
        steps = out.Y.shape[0]
        inp = out.Y.transpose(0, 2, 1, 3).reshape(steps, batch, d * config.hidden_size)
        hs.append(out.Y_h)
        cs.append(out.Y_c)
    output = inp.transpose(1, 0, 2) if config.batch_first else inp
    return StackOutput(output, np.concatenate(hs), np.concatenate(cs))


def log_softmax(logits: Array, axis: int = -1) -> Array:
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))  # type: ignore[no-any-return]


def _tokens(config: LMConfig, tokens: ArrayLike) -> NDArray[np.int64]:
    ids = np.asarray(tokens)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"tokens: expected a rank-2 integer tensor, got shape {list(ids.shape)} dtype {ids.dtype}")
    if ids.size == 0:
        raise ValueError(f"tokens: expected at least one token per sequence, got shape {list(ids.shape)}")
    if ids.size and (ids.min() < 0 or ids.max() >= config.vocab_size):
        raise ValueError(f"tokens: ids must lie in [0, {config.vocab_size}), got [{ids.min()}, {ids.max()}]")
    return ids.astype(np.int64)


def lm_log_probs(
    config: LMConfig,
    weights: LMWeights,
    tokens: ArrayLike,
    *,
    initial_h: ArrayLike | None = None,
    initial_c: ArrayLike | None = None,
) -> Array:
    """Log-probabilities of the next token at every position: [T, B, V] (or [B, T, V])."""
    problem = weights.matches(config)
    if problem:
        raise ValueError(problem)
    ids = _tokens(config, tokens)
    embedded = weights.embedding[ids]
    hidden = run_stack(config.lstm, weights.lstm, embedded, initial_h=initial_h, initial_c=initial_c).output
    # The projection runs on one contiguous time-major [T*B, D*H] matrix whatever the layout: a matmul over
    # a batch-first view rounds differently in the last bit (NumPy 2.4 picks another kernel), and the
    # reference must give the same numbers for the same sequences.
    time_major = hidden.transpose(1, 0, 2) if config.lstm.batch_first else hidden
    steps, batch, width = time_major.shape
    flat = np.ascontiguousarray(time_major).reshape(steps * batch, width)
    logits = (flat @ weights.proj_weight.T + weights.proj_bias).reshape(steps, batch, -1)
    log_probs = log_softmax(logits)
    return log_probs.transpose(1, 0, 2) if config.lstm.batch_first else log_probs


def next_token(config: LMConfig, weights: LMWeights, tokens: ArrayLike) -> NDArray[np.int64]:
    """Greedy next-token prediction after the last position of each sequence: [B]."""
    log_probs = lm_log_probs(config, weights, tokens)
    last = log_probs[:, -1] if config.lstm.batch_first else log_probs[-1]
    return np.asarray(np.argmax(last, axis=-1), dtype=np.int64)


def perplexity(config: LMConfig, weights: LMWeights, tokens: ArrayLike) -> float:
    """exp of the mean negative log-likelihood of tokens[t+1] given tokens[:t+1]."""
    raw = np.asarray(tokens)
    steps = raw.shape[1 if config.lstm.batch_first else 0] if raw.ndim == 2 else 2
    if steps < 2:
        raise ValueError("perplexity: sequences need at least 2 tokens")
    ids = _tokens(config, raw)
    if config.lstm.batch_first:
        ids = ids.T
    time_major = LMConfig(config.vocab_size, _time_major(config.lstm))
    log_probs = lm_log_probs(time_major, weights, ids[:-1])
    picked = np.take_along_axis(log_probs, ids[1:, :, None], axis=-1)
    return float(np.exp(-np.mean(picked)))


def _time_major(config: LSTMConfig) -> LSTMConfig:
    if not config.batch_first:
        return config
    return dataclasses.replace(config, batch_first=False)
