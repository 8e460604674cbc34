"""Behaviour of ``reference.models``: stacked LSTMs and the LSTM language model."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from reference import (
    LMConfig,
    LMWeights,
    LSTMConfig,
    LSTMWeights,
    lm_log_probs,
    lstm,
    next_token,
    perplexity,
    run_stack,
)
from reference.weights import LayerWeights, generate, generate_lm

SEQ, BATCH, INPUT_SIZE, HIDDEN, VOCAB = 5, 3, 4, 6, 9
DIRECTIONS = ("forward", "reverse", "bidirectional")


def exactly(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern that accepts ``message`` and nothing else."""
    return f"^{re.escape(message)}$"


def _x(config: LSTMConfig, seed: int = 0, steps: int = SEQ) -> NDArray[np.float64]:
    shape = (BATCH, steps, config.input_size) if config.batch_first else (steps, BATCH, config.input_size)
    return np.random.default_rng(seed).standard_normal(shape)


def _states(config: LSTMConfig, seed: int = 1) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    shape = (config.num_layers * config.num_directions, BATCH, config.hidden_size)
    return rng.uniform(-1, 1, shape), rng.uniform(-1, 1, shape)


def _chain(config: LSTMConfig, weights: LSTMWeights, x: NDArray[np.float64], **kwargs: Any) -> list[Any]:
    """The stack spelled out with the operator: what ``run_stack`` should compute (time-major)."""
    h0, c0 = kwargs.pop("initial_h", None), kwargs.pop("initial_c", None)
    d = config.num_directions
    outs = []
    inp = x
    for k, layer in enumerate(weights.layers):
        out = lstm(
            inp,
            layer.W,
            layer.R,
            layer.B,
            kwargs.get("sequence_lens"),
            None if h0 is None else h0[k * d : (k + 1) * d],
            None if c0 is None else c0[k * d : (k + 1) * d],
            layer.P,
            **config.operator_attributes,
        )
        inp = np.concatenate([out.Y[:, j] for j in range(d)], axis=-1)
        outs.append(out)
    return outs


STACK_GRID = [
    pytest.param(direction, batch_first, layers, id=f"{direction}-{'bf' if batch_first else 'tm'}-L{layers}")
    for direction, batch_first, layers in itertools.product(DIRECTIONS, (False, True), (1, 3))
]


class TestRunStackShapes:
    @pytest.mark.parametrize(("direction", "batch_first", "num_layers"), STACK_GRID)
    def test_shapes(self, direction: str, batch_first: bool, num_layers: int) -> None:
        config = LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=num_layers, direction=direction, batch_first=batch_first)
        out = run_stack(config, generate(config, seed=0), _x(config))
        d = config.num_directions
        assert out.output.shape == ((BATCH, SEQ, d * HIDDEN) if batch_first else (SEQ, BATCH, d * HIDDEN))
        assert out.h_n.shape == (num_layers * d, BATCH, HIDDEN)
        assert out.c_n.shape == (num_layers * d, BATCH, HIDDEN)
        assert all(a.dtype == np.float64 for a in out)

    @pytest.mark.parametrize(("direction", "batch_first", "num_layers"), STACK_GRID)
    def test_final_states_are_the_last_layers_edge_outputs(
        self, direction: str, batch_first: bool, num_layers: int
    ) -> None:
        config = LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=num_layers, direction=direction, batch_first=batch_first)
        out = run_stack(config, generate(config, seed=0), _x(config))
        time_major = out.output.transpose(1, 0, 2) if batch_first else out.output
        d = config.num_directions
        for j in range(d):
            reverse = direction == "reverse" or j == 1
            edge = time_major[0 if reverse else -1, :, j * HIDDEN : (j + 1) * HIDDEN]
            np.testing.assert_array_equal(out.h_n[(num_layers - 1) * d + j], edge)

    @pytest.mark.parametrize("direction", DIRECTIONS)
    def test_batch_first_is_a_transpose(self, direction: str) -> None:
        config = LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=2, direction=direction)
        weights = generate(config, seed=4)
        bf_config = LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=2, direction=direction, batch_first=True)
        x = _x(config)
        h0, c0 = _states(config)
        tm = run_stack(config, weights, x, initial_h=h0, initial_c=c0)
        bf = run_stack(bf_config, weights, x.transpose(1, 0, 2), initial_h=h0, initial_c=c0)
        np.testing.assert_array_equal(bf.output, tm.output.transpose(1, 0, 2))
        np.testing.assert_array_equal(bf.h_n, tm.h_n)  # states stay [L*D, B, H], as in torch
        np.testing.assert_array_equal(bf.c_n, tm.c_n)


class TestRunStackComposition:
    """``run_stack`` is the operator applied layer by layer, with directions concatenated between layers."""

    @pytest.mark.parametrize("direction", DIRECTIONS)
    @pytest.mark.parametrize("peepholes", [False, True], ids=["noP", "P"])
    def test_equals_chained_operator(self, direction: str, peepholes: bool) -> None:
        config = LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=3, direction=direction, peepholes=peepholes)
        weights = generate(config, seed=2)
        x = _x(config)
        h0, c0 = _states(config)
        lens = np.array([SEQ, 2, 0])
        out = run_stack(config, weights, x, initial_h=h0, initial_c=c0, sequence_lens=lens)
        layers = _chain(config, weights, x, initial_h=h0, initial_c=c0, sequence_lens=lens)
        last = layers[-1].Y
        np.testing.assert_array_equal(out.output, np.concatenate([last[:, j] for j in range(last.shape[1])], axis=-1))
        np.testing.assert_array_equal(out.h_n, np.concatenate([layer.Y_h for layer in layers]))
        np.testing.assert_array_equal(out.c_n, np.concatenate([layer.Y_c for layer in layers]))
        # Past each length the output is zero; an empty sequence keeps its initial states.
        assert not out.output[2:, 1].any() and not out.output[:, 2].any()
        np.testing.assert_array_equal(out.h_n[:, 2], h0[:, 2])

    def test_operator_attributes_reach_every_layer(self) -> None:
        plain = LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=2)
        config = LSTMConfig(
            INPUT_SIZE, HIDDEN, num_layers=2, clip=0.2, input_forget=1, activations=("HardSigmoid", "Softsign", "Tanh")
        )
        weights = generate(config, seed=3)
        x = _x(config)
        out = run_stack(config, weights, x)
        layers = _chain(config, weights, x)
        np.testing.assert_array_equal(out.output, layers[-1].Y[:, 0])
        np.testing.assert_array_equal(out.h_n, np.concatenate([layer.Y_h for layer in layers]))
        assert np.max(np.abs(out.output - run_stack(plain, weights, x).output)) > 1e-2


class TestRunStackErrors:
    CONFIG = LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=2, direction="bidirectional")

    @pytest.mark.parametrize("which", ["initial_h", "initial_c"])
    @pytest.mark.parametrize("shape", [(2, BATCH, HIDDEN), (4, BATCH + 1, HIDDEN), (4, BATCH, HIDDEN - 1), (4, BATCH)])
    def test_wrong_initial_state_shape(self, which: str, shape: tuple[int, ...]) -> None:
        weights = generate(self.CONFIG, seed=0)
        good = np.zeros((4, BATCH, HIDDEN))
        states = {"initial_h": good, "initial_c": good, which: np.zeros(shape)}
        message = f"{which}: expected shape [4, {BATCH}, {HIDDEN}], got {list(shape)}"
        with pytest.raises(ValueError, match=exactly(message)):
            run_stack(self.CONFIG, weights, _x(self.CONFIG), **states)

    def test_batch_first_states_are_not_batch_first(self) -> None:
        config = LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=2, direction="bidirectional", batch_first=True)
        with pytest.raises(
            ValueError, match=exactly(f"initial_h: expected shape [4, {BATCH}, {HIDDEN}], got [{BATCH}, 4, {HIDDEN}]")
        ):
            run_stack(config, generate(config, seed=0), _x(config), initial_h=np.zeros((BATCH, 4, HIDDEN)))

    @pytest.mark.parametrize(
        ("config", "message"),
        [
            pytest.param(
                LSTMConfig(INPUT_SIZE, HIDDEN + 1, num_layers=2, direction="bidirectional"),
                f"hidden_size {HIDDEN} (config {HIDDEN + 1})",
                id="hidden_size",
            ),
            pytest.param(
                LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=3, direction="bidirectional"),
                "num_layers 2 (config 3)",
                id="num_layers",
            ),
            pytest.param(LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=2), "num_directions 2 (config 1)", id="direction"),
            pytest.param(
                LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=2, direction="bidirectional", peepholes=True),
                "peepholes False (config True)",
                id="peepholes",
            ),
            pytest.param(
                LSTMConfig(INPUT_SIZE + 2, HIDDEN, direction="reverse", peepholes=True),
                f"input_size {INPUT_SIZE} (config {INPUT_SIZE + 2}), num_layers 2 (config 1), "
                "num_directions 2 (config 1), peepholes False (config True)",
                id="several",
            ),
        ],
    )
    def test_weights_do_not_match_config(self, config: LSTMConfig, message: str) -> None:
        weights = generate(self.CONFIG, seed=0)
        with pytest.raises(ValueError, match=exactly(f"weights do not match the config: {message}")):
            run_stack(config, weights, _x(self.CONFIG))

    def test_input_must_be_rank_3(self) -> None:
        weights = generate(self.CONFIG, seed=0)
        with pytest.raises(ValueError, match=exactly(f"x: expected a rank-3 tensor, got shape [{SEQ}, {INPUT_SIZE}]")):
            run_stack(self.CONFIG, weights, np.zeros((SEQ, INPUT_SIZE)))

    def test_input_feature_size_names_x(self) -> None:
        weights = generate(self.CONFIG, seed=0)
        with pytest.raises(ValueError, match=r"^x: .*\b7\b"):
            run_stack(self.CONFIG, weights, np.zeros((SEQ, BATCH, INPUT_SIZE + 3)))


# --- language model ------------------------------------------------------------------------------


def _lm(direction: str = "forward", batch_first: bool = False, num_layers: int = 2) -> tuple[LMConfig, LMWeights]:
    config = LMConfig(
        VOCAB, LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=num_layers, direction=direction, batch_first=batch_first)
    )
    return config, generate_lm(config, seed=num_layers)


def _tokens(config: LMConfig, seed: int = 5, steps: int = SEQ) -> NDArray[np.int64]:
    shape = (BATCH, steps) if config.lstm.batch_first else (steps, BATCH)
    return np.random.default_rng(seed).integers(0, config.vocab_size, shape)


def _uniform(config: LMConfig) -> LMWeights:
    """All weights zero: every logit is 0 whatever the input, so every next token has probability 1/V."""
    w = generate_lm(config, seed=0)
    zero = np.zeros_like
    layers = tuple(LayerWeights(zero(layer.W), zero(layer.R), zero(layer.B)) for layer in w.lstm.layers)
    return LMWeights(zero(w.embedding), LSTMWeights(layers), zero(w.proj_weight), zero(w.proj_bias))


LM_GRID = [
    pytest.param(direction, batch_first, id=f"{direction}-{'bf' if batch_first else 'tm'}")
    for direction, batch_first in itertools.product(DIRECTIONS, (False, True))
]


class TestLogProbs:
    @pytest.mark.parametrize(("direction", "batch_first"), LM_GRID)
    def test_shape_and_normalisation(self, direction: str, batch_first: bool) -> None:
        config, weights = _lm(direction, batch_first)
        log_probs = lm_log_probs(config, weights, _tokens(config))
        assert log_probs.shape == ((BATCH, SEQ, VOCAB) if batch_first else (SEQ, BATCH, VOCAB))
        assert np.all(log_probs < 0)
        np.testing.assert_allclose(np.exp(log_probs).sum(axis=-1), 1.0, rtol=0, atol=1e-12)

    @pytest.mark.parametrize("direction", DIRECTIONS)
    def test_batch_first_is_a_transpose(self, direction: str) -> None:
        config, weights = _lm(direction)
        bf_config, _ = _lm(direction, batch_first=True)
        tokens = _tokens(config)
        np.testing.assert_array_equal(
            lm_log_probs(bf_config, weights, tokens.T), lm_log_probs(config, weights, tokens).transpose(1, 0, 2)
        )

    def test_is_the_stack_then_projection(self) -> None:
        config, weights = _lm("bidirectional")
        tokens = _tokens(config)
        hidden = run_stack(config.lstm, weights.lstm, weights.embedding[tokens]).output
        logits = hidden @ weights.proj_weight.T + weights.proj_bias
        expected = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        np.testing.assert_allclose(lm_log_probs(config, weights, tokens), expected, rtol=0, atol=1e-13)

    def test_initial_states_are_used(self) -> None:
        config, weights = _lm()
        tokens = _tokens(config)
        h0, c0 = _states(config.lstm)
        with_states = lm_log_probs(config, weights, tokens, initial_h=h0, initial_c=c0)
        assert np.max(np.abs(with_states - lm_log_probs(config, weights, tokens))) > 1e-3
        with pytest.raises(
            ValueError, match=exactly(f"initial_h: expected shape [2, {BATCH}, {HIDDEN}], got [1, {BATCH}, {HIDDEN}]")
        ):
            lm_log_probs(config, weights, tokens, initial_h=h0[:1])

    def test_vocab_mismatch_is_an_error(self) -> None:
        config, weights = _lm()
        smaller = LMConfig(VOCAB - 2, config.lstm)
        with pytest.raises(ValueError, match="vocab_size"):
            lm_log_probs(smaller, weights, _tokens(smaller))

    def test_larger_config_vocab_is_a_value_error(self) -> None:
        config, weights = _lm()
        larger = LMConfig(VOCAB + 2, config.lstm)
        with pytest.raises(ValueError, match="vocab_size"):
            lm_log_probs(larger, weights, np.full((SEQ, BATCH), VOCAB + 1))


Entry = Callable[[LMConfig, LMWeights, Any], Any]
ENTRIES = [
    pytest.param(lm_log_probs, id="lm_log_probs"),
    pytest.param(next_token, id="next_token"),
    pytest.param(perplexity, id="perplexity"),
]


class TestTokenValidation:
    @pytest.mark.parametrize("entry", ENTRIES)
    @pytest.mark.parametrize(("bad", "low", "high"), [(VOCAB, 0, VOCAB), (-1, -1, VOCAB - 1), (10**6, 0, 10**6)])
    def test_out_of_range(self, entry: Entry, bad: int, low: int, high: int) -> None:
        config, weights = _lm()
        tokens = _tokens(config)
        tokens[0, 0], tokens[1, 1], tokens[2, 2] = bad, 0, VOCAB - 1  # pin the reported [min, max]
        message = f"tokens: ids must lie in [0, {VOCAB}), got [{low}, {high}]"
        with pytest.raises(ValueError, match=exactly(message)):
            entry(config, weights, tokens)

    @pytest.mark.parametrize("entry", ENTRIES)
    @pytest.mark.parametrize(
        ("tokens", "described"),
        [
            pytest.param(np.zeros((SEQ, BATCH)), f"shape [{SEQ}, {BATCH}] dtype float64", id="float"),
            pytest.param(np.zeros(SEQ, dtype=np.int64), f"shape [{SEQ}] dtype int64", id="rank1"),
            pytest.param(
                np.zeros((SEQ, BATCH, 1), dtype=np.int32), f"shape [{SEQ}, {BATCH}, 1] dtype int32", id="rank3"
            ),
        ],
    )
    def test_not_a_rank_2_integer_tensor(self, entry: Entry, tokens: NDArray[Any], described: str) -> None:
        config, weights = _lm()
        with pytest.raises(ValueError, match=exactly(f"tokens: expected a rank-2 integer tensor, got {described}")):
            entry(config, weights, tokens)

    def test_unsigned_and_narrow_integers_are_accepted(self) -> None:
        config, weights = _lm()
        tokens = _tokens(config)
        expected = lm_log_probs(config, weights, tokens)
        for dtype in (np.uint8, np.int16, np.uint64):
            np.testing.assert_array_equal(lm_log_probs(config, weights, tokens.astype(dtype)), expected)


class TestNextToken:
    @pytest.mark.parametrize(("direction", "batch_first"), LM_GRID)
    def test_is_argmax_of_last_position(self, direction: str, batch_first: bool) -> None:
        config, weights = _lm(direction, batch_first)
        tokens = _tokens(config)
        predicted = next_token(config, weights, tokens)
        assert predicted.shape == (BATCH,)
        assert predicted.dtype.kind == "i"
        log_probs = lm_log_probs(config, weights, tokens)
        last = log_probs[:, -1] if batch_first else log_probs[-1]
        np.testing.assert_array_equal(predicted, np.argmax(last, axis=-1))

    def test_batch_first_agrees_with_time_major(self) -> None:
        config, weights = _lm()
        bf_config, _ = _lm(batch_first=True)
        tokens = _tokens(config, steps=7)
        np.testing.assert_array_equal(next_token(bf_config, weights, tokens.T), next_token(config, weights, tokens))

    def test_empty_sequences_are_a_value_error(self) -> None:
        config, weights = _lm()
        with pytest.raises(ValueError, match=r"^tokens: "):
            next_token(config, weights, np.zeros((0, BATCH), dtype=np.int64))


class TestPerplexity:
    @pytest.mark.parametrize(("direction", "batch_first"), LM_GRID)
    def test_is_exp_mean_nll_of_next_tokens(self, direction: str, batch_first: bool) -> None:
        config, weights = _lm(direction, batch_first)
        tokens = _tokens(config)
        ids = tokens.T if batch_first else tokens
        time_major = LMConfig(VOCAB, LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=2, direction=direction))
        log_probs = lm_log_probs(time_major, weights, ids[:-1])
        picked = np.take_along_axis(log_probs, ids[1:, :, None], axis=-1)
        value = perplexity(config, weights, tokens)
        assert isinstance(value, float)
        assert value == pytest.approx(float(np.exp(-picked.mean())), rel=1e-14, abs=0)
        assert value > 1.0

    def test_only_earlier_tokens_condition_each_prediction(self) -> None:
        # Changing the last token changes only the last target, not the context of any prediction.
        config, weights = _lm()
        tokens = _tokens(config)
        changed = tokens.copy()
        changed[-1] = (changed[-1] + 1) % VOCAB
        log_probs = lm_log_probs(config, weights, tokens[:-1])
        for ids in (tokens, changed):
            picked = np.take_along_axis(log_probs, ids[1:, :, None], axis=-1)
            assert perplexity(config, weights, ids) == pytest.approx(float(np.exp(-picked.mean())), rel=1e-14, abs=0)

    @pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
    @pytest.mark.parametrize("steps", [0, 1])
    def test_needs_two_tokens(self, batch_first: bool, steps: int) -> None:
        config, weights = _lm(batch_first=batch_first)
        with pytest.raises(ValueError, match=exactly("perplexity: sequences need at least 2 tokens")):
            perplexity(config, weights, _tokens(config, steps=steps))

    @pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
    def test_two_tokens_suffice(self, batch_first: bool) -> None:
        config, weights = _lm(batch_first=batch_first)
        assert perplexity(config, weights, _tokens(config, steps=2)) > 1.0

    @pytest.mark.parametrize("vocab", [2, 4, 7, 10, 50])
    @pytest.mark.parametrize(("direction", "batch_first"), LM_GRID)
    def test_uniform_lm_has_perplexity_vocab_size(self, vocab: int, direction: str, batch_first: bool) -> None:
        config = LMConfig(
            vocab, LSTMConfig(INPUT_SIZE, HIDDEN, num_layers=2, direction=direction, batch_first=batch_first)
        )
        weights = _uniform(config)
        tokens = _tokens(config)
        # Every log-probability is exactly -log(V): log_softmax of equal logits sums V exact ones.
        log_probs = lm_log_probs(config, weights, tokens)
        assert np.all(log_probs == -np.log(vocab))
        # exp(mean(log V)) is V up to rounding in the mean and in exp(log(V)): a few ulp, not bit-exact
        # (e.g. exp(log(8.0)) == 7.999999999999998).
        assert perplexity(config, weights, tokens) == pytest.approx(vocab, rel=16 * np.finfo(np.float64).eps, abs=0)
