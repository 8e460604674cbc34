"""The reference against ``torch.nn.LSTM`` in float64, through both weight-conversion paths.

``from_torch_state_dict``: a torch module initialises its own weights, the reference reads them.
``to_torch_state_dict``: the reference generates weights, the torch module loads them (strictly).
Both sides compute in float64, so they agree to rounding: 1e-10 absolute is a wide margin.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from torch import nn

from reference import LMConfig, LSTMConfig, lm_log_probs, lstm, next_token, perplexity, run_stack
from reference.weights import (
    LayerWeights,
    LSTMWeights,
    from_torch_state_dict,
    generate,
    generate_lm,
    lm_from_torch_state_dict,
    lm_to_torch_state_dict,
    to_torch_state_dict,
)

ATOL = 1e-10
SEQ, BATCH, INPUT_SIZE, HIDDEN = 6, 3, 4, 5
VOCAB = 11


def _close(actual: NDArray[Any], expected: torch.Tensor | NDArray[Any], what: str) -> None:
    want = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    assert actual.shape == want.shape, f"{what}: shape {actual.shape} != {want.shape}"
    np.testing.assert_allclose(actual, want, rtol=0, atol=ATOL, err_msg=what)


def _tensors(state: dict[str, NDArray[np.float64]]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()}


def _config(num_layers: int, bidirectional: bool, batch_first: bool) -> LSTMConfig:
    return LSTMConfig(
        INPUT_SIZE,
        HIDDEN,
        num_layers=num_layers,
        direction="bidirectional" if bidirectional else "forward",
        batch_first=batch_first,
    )


def _module(config: LSTMConfig, *, bias: bool = True, seed: int = 0) -> nn.LSTM:
    torch.manual_seed(seed)
    return nn.LSTM(
        config.input_size,
        config.hidden_size,
        num_layers=config.num_layers,
        bias=bias,
        batch_first=config.batch_first,
        bidirectional=config.num_directions == 2,
    ).double()


def _without_bias(weights: LSTMWeights) -> LSTMWeights:
    return LSTMWeights(tuple(LayerWeights(layer.W, layer.R, np.zeros_like(layer.B)) for layer in weights.layers))


def _inputs(config: LSTMConfig, *, states: bool, seed: int = 1) -> dict[str, NDArray[np.float64] | None]:
    rng = np.random.default_rng(seed)
    shape = (BATCH, SEQ, INPUT_SIZE) if config.batch_first else (SEQ, BATCH, INPUT_SIZE)
    state_shape = (config.num_layers * config.num_directions, BATCH, HIDDEN)
    return {
        "x": rng.standard_normal(shape),
        "h0": rng.uniform(-1, 1, state_shape) if states else None,
        "c0": rng.uniform(-2, 2, state_shape) if states else None,
    }


def _torch_run(module: nn.LSTM, x: NDArray[np.float64], h0: Any, c0: Any) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        hx = None if h0 is None else (torch.from_numpy(h0), torch.from_numpy(c0))
        output, (h_n, c_n) = module(torch.from_numpy(x), hx)
    return output, h_n, c_n


def _compare_stack(config: LSTMConfig, weights: LSTMWeights, module: nn.LSTM, states: bool) -> None:
    data = _inputs(config, states=states)
    x, h0, c0 = data["x"], data["h0"], data["c0"]
    assert x is not None
    ours = run_stack(config, weights, x, initial_h=h0, initial_c=c0)
    theirs = _torch_run(module, x, h0, c0)
    for name, a, b in zip(("output", "h_n", "c_n"), ours, theirs, strict=True):
        _close(a, b, name)


STACKS = [
    pytest.param(
        layers,
        bidir,
        bf,
        bias,
        states,
        id=f"L{layers}-{'bi' if bidir else 'fw'}-{'bf' if bf else 'tm'}"
        f"-{'bias' if bias else 'nobias'}-{'h0c0' if states else 'zero0'}",
    )
    for layers, bidir, bf, bias, states in itertools.product(
        (1, 2, 3), (False, True), (False, True), (True, False), (False, True)
    )
]


class TestFromTorchStateDict:
    """Torch initialises; the reference runs ``from_torch_state_dict(module.state_dict())``."""

    @pytest.mark.parametrize(("num_layers", "bidirectional", "batch_first", "bias", "states"), STACKS)
    def test_run_stack_matches(
        self, num_layers: int, bidirectional: bool, batch_first: bool, bias: bool, states: bool
    ) -> None:
        config = _config(num_layers, bidirectional, batch_first)
        module = _module(config, bias=bias)
        weights = from_torch_state_dict(module.state_dict())
        assert weights.matches(config) is None
        if not bias:
            assert all(not layer.B.any() for layer in weights.layers)
        _compare_stack(config, weights, module, states)


class TestToTorchStateDict:
    """The reference generates; torch loads ``to_torch_state_dict(weights)`` with ``strict=True``."""

    @pytest.mark.parametrize(("num_layers", "bidirectional", "batch_first", "bias", "states"), STACKS)
    def test_run_stack_matches(
        self, num_layers: int, bidirectional: bool, batch_first: bool, bias: bool, states: bool
    ) -> None:
        config = _config(num_layers, bidirectional, batch_first)
        weights = generate(config, seed=num_layers)
        state = to_torch_state_dict(weights)
        if not bias:
            # nn.LSTM(bias=False) has no bias entries; zero biases are the reference's equivalent.
            weights = _without_bias(weights)
            state = {k: v for k, v in to_torch_state_dict(weights).items() if not k.startswith("bias_")}
        module = _module(config, bias=bias, seed=99)
        module.load_state_dict(_tensors(state), strict=True)
        _compare_stack(config, weights, module, states)

    def test_saturating_weights(self) -> None:
        config = _config(2, True, False)
        weights = generate(config, seed=5, recipe="saturating")
        module = _module(config)
        module.load_state_dict(_tensors(to_torch_state_dict(weights)), strict=True)
        _compare_stack(config, weights, module, states=True)


class TestSingleLayerOperator:
    """``reference.lstm`` directly: Y is [T, D, B, H] where torch gives [T, B, D*H]."""

    @pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
    @pytest.mark.parametrize("states", [False, True], ids=["zero0", "h0c0"])
    def test_operator_matches(self, bidirectional: bool, states: bool) -> None:
        config = _config(1, bidirectional, False)
        module = _module(config, seed=3)
        layer = from_torch_state_dict(module.state_dict()).layers[0]
        data = _inputs(config, states=states)
        x, h0, c0 = data["x"], data["h0"], data["c0"]
        assert x is not None
        direction = "bidirectional" if bidirectional else "forward"
        y, y_h, y_c = lstm(x, layer.W, layer.R, layer.B, None, h0, c0, hidden_size=HIDDEN, direction=direction)
        output, h_n, c_n = _torch_run(module, x, h0, c0)
        _close(y.transpose(0, 2, 1, 3).reshape(SEQ, BATCH, -1), output, "Y")
        _close(y_h, h_n, "Y_h")
        _close(y_c, c_n, "Y_c")

    def test_layout_1_matches_batch_first(self) -> None:
        config = _config(1, True, True)
        module = _module(config, seed=4)
        layer = from_torch_state_dict(module.state_dict()).layers[0]
        data = _inputs(config, states=True)
        x, h0, c0 = data["x"], data["h0"], data["c0"]
        assert x is not None and h0 is not None and c0 is not None
        # layout=1 puts batch first in the states too; torch keeps them [D, B, H].
        y, y_h, y_c = lstm(
            x,
            layer.W,
            layer.R,
            layer.B,
            None,
            h0.transpose(1, 0, 2),
            c0.transpose(1, 0, 2),
            direction="bidirectional",
            layout=1,
        )
        output, h_n, c_n = _torch_run(module, x, h0, c0)
        _close(y.reshape(BATCH, SEQ, -1), output, "Y")
        _close(y_h.transpose(1, 0, 2), h_n, "Y_h")
        _close(y_c.transpose(1, 0, 2), c_n, "Y_c")


class TestSequenceLensAgainstPacking:
    """``sequence_lens`` against torch's packed sequences (zero-padded output, per-sequence final states)."""

    @pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (1, True), (2, True)])
    def test_packed_sequence_matches(self, num_layers: int, bidirectional: bool) -> None:
        config = _config(num_layers, bidirectional, False)
        module = _module(config, seed=7)
        weights = from_torch_state_dict(module.state_dict())
        data = _inputs(config, states=True)
        x, h0, c0 = data["x"], data["h0"], data["c0"]
        assert x is not None and h0 is not None and c0 is not None
        lengths = np.array([3, SEQ, 1])
        ours = run_stack(config, weights, x, initial_h=h0, initial_c=c0, sequence_lens=lengths)
        with torch.no_grad():
            packed = nn.utils.rnn.pack_padded_sequence(
                torch.from_numpy(x), torch.from_numpy(lengths), enforce_sorted=False
            )
            out, (h_n, c_n) = module(packed, (torch.from_numpy(h0), torch.from_numpy(c0)))
            output, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=SEQ)
        _close(ours.output, output, "output")
        _close(ours.h_n, h_n, "h_n")
        _close(ours.c_n, c_n, "c_n")


class TinyLM(nn.Module):
    """Token embedding -> LSTM stack -> linear -> log-softmax, with the submodule names weights.py expects."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        stack = config.lstm
        self.embedding = nn.Embedding(config.vocab_size, stack.input_size)
        self.lstm = nn.LSTM(
            stack.input_size,
            stack.hidden_size,
            num_layers=stack.num_layers,
            batch_first=stack.batch_first,
            bidirectional=stack.num_directions == 2,
        )
        self.proj = nn.Linear(stack.output_size, config.vocab_size)

    def forward(self, tokens: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        hidden, _ = self.lstm(self.embedding(tokens), hx)
        return torch.log_softmax(self.proj(hidden), dim=-1)


LMS = [
    pytest.param(layers, bidir, bf, id=f"L{layers}-{'bi' if bidir else 'fw'}-{'bf' if bf else 'tm'}")
    for layers, bidir, bf in [(1, False, False), (2, False, False), (2, False, True), (2, True, False), (3, True, True)]
]


def _lm(num_layers: int, bidirectional: bool, batch_first: bool) -> tuple[LMConfig, Any, TinyLM]:
    config = LMConfig(VOCAB, _config(num_layers, bidirectional, batch_first))
    weights = generate_lm(config, seed=num_layers + 10)
    module = TinyLM(config).double()
    module.load_state_dict(_tensors(lm_to_torch_state_dict(weights)), strict=True)
    return config, weights, module


def _tokens(config: LMConfig, seed: int = 2) -> NDArray[np.int64]:
    shape = (BATCH, SEQ) if config.lstm.batch_first else (SEQ, BATCH)
    return np.random.default_rng(seed).integers(0, config.vocab_size, shape)


class TestLanguageModel:
    @pytest.mark.parametrize(("num_layers", "bidirectional", "batch_first"), LMS)
    def test_log_probs_match(self, num_layers: int, bidirectional: bool, batch_first: bool) -> None:
        config, weights, module = _lm(num_layers, bidirectional, batch_first)
        tokens = _tokens(config)
        with torch.no_grad():
            expected = module(torch.from_numpy(tokens))
        _close(lm_log_probs(config, weights, tokens), expected, "log_probs")

    @pytest.mark.parametrize(("num_layers", "bidirectional", "batch_first"), LMS)
    def test_next_token_matches(self, num_layers: int, bidirectional: bool, batch_first: bool) -> None:
        config, weights, module = _lm(num_layers, bidirectional, batch_first)
        tokens = _tokens(config)
        with torch.no_grad():
            log_probs = module(torch.from_numpy(tokens))
        last = log_probs[:, -1] if batch_first else log_probs[-1]
        top2 = torch.topk(last, 2, dim=-1).values
        assert bool(torch.all(top2[:, 0] - top2[:, 1] > 1e-6)), "argmax is a near-tie; pick another seed"
        predicted = next_token(config, weights, tokens)
        np.testing.assert_array_equal(predicted, torch.argmax(last, dim=-1).numpy())

    @pytest.mark.parametrize(("num_layers", "bidirectional", "batch_first"), LMS)
    def test_perplexity_matches_exp_nll_loss(self, num_layers: int, bidirectional: bool, batch_first: bool) -> None:
        config, weights, module = _lm(num_layers, bidirectional, batch_first)
        tokens = torch.from_numpy(_tokens(config))
        context, targets = (tokens[:, :-1], tokens[:, 1:]) if batch_first else (tokens[:-1], tokens[1:])
        with torch.no_grad():
            log_probs = module(context)
            expected = torch.exp(nn.functional.nll_loss(log_probs.reshape(-1, VOCAB), targets.reshape(-1))).item()
        assert expected > 1.0
        assert abs(perplexity(config, weights, tokens.numpy()) - expected) <= ATOL

    def test_initial_states_match(self) -> None:
        config, weights, module = _lm(2, True, False)
        tokens = _tokens(config)
        rng = np.random.default_rng(3)
        h0 = rng.uniform(-1, 1, (4, BATCH, HIDDEN))
        c0 = rng.uniform(-1, 1, (4, BATCH, HIDDEN))
        with torch.no_grad():
            expected = module(torch.from_numpy(tokens), (torch.from_numpy(h0), torch.from_numpy(c0)))
        _close(lm_log_probs(config, weights, tokens, initial_h=h0, initial_c=c0), expected, "log_probs")

    def test_weights_read_back_from_torch(self) -> None:
        config = LMConfig(VOCAB, _config(2, True, False))
        torch.manual_seed(8)
        module = TinyLM(config).double()
        weights = lm_from_torch_state_dict(module.state_dict())
        tokens = _tokens(config)
        with torch.no_grad():
            expected = module(torch.from_numpy(tokens))
        _close(lm_log_probs(config, weights, tokens), expected, "log_probs")
