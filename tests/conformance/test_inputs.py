"""conformance.inputs: feeds that follow the I/O contract, sequence lengths, masks, and the reference outputs."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest

from conformance import corpus
from conformance.cases import Case, loads_suite
from conformance.inputs import CaseData, build, case_weights
from conformance.lane import export_options
from exporters.base import input_names, output_names
from reference.config import LMConfig, LSTMConfig
from reference.models import lm_log_probs, run_stack
from reference.weights import LMWeights, LSTMWeights

LSTM_MODEL = "model = { input_size = 3, hidden_size = 4 }"


def case(body: str, *, model: str = LSTM_MODEL, inputs: str = "seq_len = 5, batch = 3") -> Case:
    text = f"""\
        suite = "inputs"
        [[case]]
        id = "c"
        exporters = ["onnx-native"]
        {model}
        inputs = {{ {inputs} }}
        {body}
        """
    return loads_suite(textwrap.dedent(text), display="inputs.toml").cases[0]


def data(body: str = "", **kwargs: str) -> tuple[Case, CaseData]:
    c = case(body, **kwargs)
    return c, build(c, case_weights(c))


class TestStackFeeds:
    @pytest.mark.parametrize("batch_first", [False, True])
    def test_follow_the_io_contract(self, batch_first: bool) -> None:
        model = (
            "model = { input_size = 3, hidden_size = 4, num_layers = 2, direction = 'bidirectional', "
            f"batch_first = {str(batch_first).lower()} }}"
        )
        c, d = data(model=model, inputs="seq_len = 5, batch = 3, initial_states = true, sequence_lens = 'mixed'")
        assert (
            list(d.feeds) == input_names(c.model, export_options(c)) == ["X", "initial_h", "initial_c", "sequence_lens"]
        )
        assert d.feeds["X"].shape == ((3, 5, 3) if batch_first else (5, 3, 3))
        assert d.feeds["initial_h"].shape == d.feeds["initial_c"].shape == (4, 3, 4)
        assert d.feeds["sequence_lens"].shape == (3,)
        assert {k: v.dtype for k, v in d.feeds.items()} == {
            "X": np.float32,
            "initial_h": np.float32,
            "initial_c": np.float32,
            "sequence_lens": np.int32,
        }
        assert list(d.expected) == output_names(c.model)
        assert d.expected["Y"].shape == ((3, 5, 8) if batch_first else (5, 3, 8))
        assert d.expected["Y_h"].shape == d.expected["Y_c"].shape == (4, 3, 4)
        assert all(v.dtype == np.float64 for v in d.expected.values())
        assert d.time_axes == {"Y": 1 if batch_first else 0, "Y_h": None, "Y_c": None}

    def test_plain_case_feeds_x_only(self) -> None:
        c, d = data()
        assert list(d.feeds) == input_names(c.model, export_options(c)) == ["X"]
        assert d.sequence_lens is None
        assert d.padding_masks == {}

    def test_values_are_in_the_requested_range(self) -> None:
        _, d = data(inputs="seq_len = 5, batch = 3, low = 0.25, high = 0.5, initial_states = true")
        for name in ("X", "initial_h", "initial_c"):
            assert d.feeds[name].min() >= 0.25 and d.feeds[name].max() <= 0.5, name

    @pytest.mark.parametrize("batch_first", [False, True])
    def test_expected_outputs_are_the_reference_on_the_same_feeds(self, batch_first: bool) -> None:
        model = (
            f"model = {{ input_size = 3, hidden_size = 4, num_layers = 2, batch_first = {str(batch_first).lower()} }}"
        )
        c, d = data(model=model, inputs="seq_len = 5, batch = 3, initial_states = true, sequence_lens = 'with-zero'")
        assert isinstance(c.model, LSTMConfig)
        weights = case_weights(c)
        assert isinstance(weights, LSTMWeights)
        out = run_stack(
            c.model,
            weights,
            d.feeds["X"],
            initial_h=d.feeds["initial_h"],
            initial_c=d.feeds["initial_c"],
            sequence_lens=d.feeds["sequence_lens"],
        )
        np.testing.assert_array_equal(d.expected["Y"], out.output)
        np.testing.assert_array_equal(d.expected["Y_h"], out.h_n)
        np.testing.assert_array_equal(d.expected["Y_c"], out.c_n)


class TestSequenceLens:
    def test_full_feeds_no_lengths(self) -> None:
        _, d = data(inputs="seq_len = 5, batch = 3, sequence_lens = 'full'")
        assert "sequence_lens" not in d.feeds
        assert d.sequence_lens is None

    @pytest.mark.parametrize("seed", range(5))
    def test_mixed(self, seed: int) -> None:
        _, d = data(inputs=f"seq_len = 6, batch = 4, sequence_lens = 'mixed', seed = {seed}")
        lens = d.feeds["sequence_lens"]
        assert lens.dtype == np.int32
        assert lens[0] == 6  # at least one full-length sequence
        assert lens.min() >= 1 and lens.max() <= 6
        np.testing.assert_array_equal(d.sequence_lens, lens)

    @pytest.mark.parametrize("seed", range(5))
    def test_with_zero(self, seed: int) -> None:
        _, d = data(inputs=f"seq_len = 6, batch = 4, sequence_lens = 'with-zero', seed = {seed}")
        lens = d.feeds["sequence_lens"]
        assert lens[0] == 6 and lens[-1] == 0
        assert lens[1:-1].min() >= 1 and lens.max() <= 6

    def test_explicit(self) -> None:
        _, d = data(inputs="seq_len = 5, batch = 3, sequence_lens = [3, 0, 5]")
        assert d.feeds["sequence_lens"].tolist() == [3, 0, 5]
        assert d.feeds["sequence_lens"].dtype == np.int32

    @pytest.mark.parametrize("batch_first", [False, True])
    def test_padding_mask_is_true_exactly_past_each_length(self, batch_first: bool) -> None:
        model = f"model = {{ input_size = 3, hidden_size = 4, batch_first = {str(batch_first).lower()} }}"
        _, d = data(model=model, inputs="seq_len = 5, batch = 3, sequence_lens = [3, 0, 5]")
        mask = d.padding_masks["Y"]
        assert list(d.padding_masks) == ["Y"]
        assert mask.dtype == np.bool_
        steps = np.array([[t >= n for n in (3, 0, 5)] for t in range(5)])  # [T, B]
        expected = steps.T[:, :, None] if batch_first else steps[:, :, None]
        np.testing.assert_array_equal(mask, expected)
        y = d.expected["Y"]
        assert np.broadcast_to(mask, y.shape).shape == y.shape
        assert np.all(y[np.broadcast_to(mask, y.shape)] == 0)  # the reference zeroes the padding
        assert np.all(y[~np.broadcast_to(mask, y.shape)] != 0)


class TestLanguageModel:
    LM = "model = { kind = 'lm', vocab_size = 13, input_size = 4, hidden_size = 5 }"

    @pytest.mark.parametrize("batch_first", [False, True])
    def test_tokens_follow_the_io_contract(self, batch_first: bool) -> None:
        model = self.LM.replace("hidden_size = 5", f"hidden_size = 5, batch_first = {str(batch_first).lower()}")
        c, d = data(model=model, inputs="seq_len = 6, batch = 2")
        assert list(d.feeds) == input_names(c.model, export_options(c)) == ["tokens"]
        tokens = d.feeds["tokens"]
        assert tokens.dtype == np.int64
        assert tokens.shape == ((2, 6) if batch_first else (6, 2))
        assert tokens.min() >= 0 and tokens.max() < 13
        assert list(d.expected) == ["log_probs"]
        assert d.expected["log_probs"].shape == ((2, 6, 13) if batch_first else (6, 2, 13))
        assert d.time_axes == {"log_probs": 1 if batch_first else 0}
        assert isinstance(c.model, LMConfig)
        weights = case_weights(c)
        assert isinstance(weights, LMWeights)
        np.testing.assert_array_equal(d.expected["log_probs"], lm_log_probs(c.model, weights, tokens))
        np.testing.assert_allclose(np.exp(d.expected["log_probs"]).sum(axis=-1), 1.0, rtol=1e-12)

    def test_trained_weights_load_and_match_their_config(self) -> None:
        model = "model = { kind = 'lm', vocab_size = 28, input_size = 16, hidden_size = 32 }"
        c = case("weights = { recipe = 'trained' }", model=model, inputs="seq_len = 8, batch = 2")
        weights = case_weights(c)
        assert isinstance(weights, LMWeights) and isinstance(c.model, LMConfig)
        assert weights.matches(c.model) is None
        assert weights.embedding.shape == (28, 16)
        assert weights.lstm.num_layers == 1
        assert case_weights(c).digest() == weights.digest()  # the same file every time

    def test_trained_weights_refuse_another_model(self) -> None:
        c = case("weights = { recipe = 'trained' }", model=self.LM, inputs="seq_len = 8, batch = 2")
        with pytest.raises(ValueError) as info:
            case_weights(c)
        assert str(info.value) == (
            "inputs.toml:2: the trained LM has vocab 28, embedding 16, hidden 32, 1 layer(s); "
            "the case's model must match"
        )

    def test_corpus_tokens_are_slices_of_the_shipped_text(self) -> None:
        model = "model = { kind = 'lm', vocab_size = 28, input_size = 16, hidden_size = 32 }"
        _, d = data(
            "weights = { recipe = 'trained' }", model=model, inputs="seq_len = 12, batch = 3, tokens = 'corpus'"
        )
        tokens = d.feeds["tokens"]
        assert tokens.shape == (12, 3)
        assert tokens.min() >= 0 and tokens.max() < 28
        text = corpus.text()
        for b in range(3):
            assert corpus.decode(tokens[:, b].tolist()) in text

    def test_corpus_tokens_need_the_corpus_vocabulary_at_load_time(self) -> None:
        with pytest.raises(ValueError) as info:
            case("", model=self.LM, inputs="seq_len = 6, batch = 2, tokens = 'corpus'")
        assert re.fullmatch(
            r"inputs\.toml:\d+: inputs\.tokens: 'corpus' tokens need model\.vocab_size >= 28 "
            r"\(the corpus alphabet\), got 13",
            str(info.value),
        )


class TestDeterminism:
    BODY = "model = { input_size = 3, hidden_size = 4, direction = 'bidirectional' }"
    INPUTS = "seq_len = 5, batch = 3, initial_states = true, sequence_lens = 'mixed'"

    def test_same_seed_same_feeds(self) -> None:
        _, first = data(model=self.BODY, inputs=self.INPUTS + ", seed = 7")
        _, second = data(model=self.BODY, inputs=self.INPUTS + ", seed = 7")
        assert list(first.feeds) == list(second.feeds)
        for name in first.feeds:
            np.testing.assert_array_equal(first.feeds[name], second.feeds[name])
        for name in first.expected:
            np.testing.assert_array_equal(first.expected[name], second.expected[name])

    def test_another_seed_other_feeds(self) -> None:
        _, first = data(model=self.BODY, inputs=self.INPUTS + ", seed = 7")
        _, second = data(model=self.BODY, inputs=self.INPUTS + ", seed = 8")
        assert not np.array_equal(first.feeds["X"], second.feeds["X"])

    def test_weights_seed_is_independent_of_the_inputs_seed(self) -> None:
        first = case_weights(case("weights = { seed = 1 }", inputs="seq_len = 5, batch = 3, seed = 0"))
        second = case_weights(case("weights = { seed = 1 }", inputs="seq_len = 5, batch = 3, seed = 9"))
        third = case_weights(case("weights = { seed = 2 }", inputs="seq_len = 5, batch = 3, seed = 0"))
        assert first.digest() == second.digest() != third.digest()
