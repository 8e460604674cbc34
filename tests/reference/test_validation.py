"""Bad input to the reference: each case is one ValueError whose whole message is pinned here."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from reference import LMConfig, LSTMConfig, lstm

T, N, F, H = 3, 2, 4, 5  # steps, batch, features (input size), hidden size
KNOWN = "Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus"


def raises(message: str) -> Any:
    """Expect a ValueError whose message is exactly ``message``."""
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def node(d: int = 1, **overrides: Any) -> dict[str, Any]:
    """Valid inputs for an LSTM node with ``d`` directions; ``overrides`` replace some."""
    rng = np.random.default_rng(0)
    inputs: dict[str, Any] = {
        "X": rng.standard_normal((T, N, F)),
        "W": rng.standard_normal((d, 4 * H, F)),
        "R": rng.standard_normal((d, 4 * H, H)),
        "direction": "bidirectional" if d == 2 else "forward",
    }
    inputs.update(overrides)
    return inputs


def test_the_valid_node_runs() -> None:
    """The baseline each test below breaks in exactly one way."""
    for d in (1, 2):
        out = lstm(**node(d), B=np.zeros((d, 8 * H)), P=np.zeros((d, 3 * H)), sequence_lens=[T, 0])
        assert out.Y.shape == (T, d, N, H)


class TestRanks:
    def test_x_rank(self) -> None:
        with raises("X: expected a rank-3 tensor [seq_length, batch_size, input_size], got shape [3, 2]"):
            lstm(**node(X=np.zeros((T, N))))

    def test_x_rank_layout_1(self) -> None:
        with raises("X: expected a rank-3 tensor [batch_size, seq_length, input_size], got shape [2, 3, 4, 1]"):
            lstm(**node(X=np.zeros((N, T, F, 1))), layout=1)

    def test_w_rank(self) -> None:
        with raises("W: expected shape [1, 20, 4], got [20, 4]"):
            lstm(**node(W=np.zeros((4 * H, F))))

    def test_r_rank(self) -> None:
        with raises("R: expected a rank-3 tensor [num_directions, 4*hidden_size, hidden_size], got shape [20, 5]"):
            lstm(**node(R=np.zeros((4 * H, H))))

    def test_scalar_x(self) -> None:
        with raises("X: expected a rank-3 tensor [seq_length, batch_size, input_size], got shape []"):
            lstm(**node(X=1.0))


class TestShapes:
    def test_w_input_size_mismatch(self) -> None:
        with raises("W: expected shape [1, 20, 4], got [1, 20, 3]"):
            lstm(**node(W=np.zeros((1, 4 * H, 3))))

    def test_w_directions_mismatch(self) -> None:
        with raises("W: expected shape [2, 20, 4], got [1, 20, 4]"):
            lstm(**node(2, W=np.zeros((1, 4 * H, F))))

    def test_r_not_four_gates(self) -> None:
        with raises("R: expected shape [1, 20, 5], got [1, 15, 5]"):
            lstm(**node(R=np.zeros((1, 3 * H, H))))

    def test_r_directions_mismatch(self) -> None:
        with raises("R: expected shape [2, 20, 5], got [1, 20, 5]"):
            lstm(**node(2, R=np.zeros((1, 4 * H, H))))

    def test_b(self) -> None:
        with raises("B: expected shape [1, 40], got [1, 20]"):
            lstm(**node(), B=np.zeros((1, 4 * H)))

    def test_b_rank(self) -> None:
        with raises("B: expected shape [2, 40], got [40]"):
            lstm(**node(2), B=np.zeros(8 * H))

    def test_p(self) -> None:
        with raises("P: expected shape [1, 15], got [1, 20]"):
            lstm(**node(), P=np.zeros((1, 4 * H)))

    def test_initial_h(self) -> None:
        with raises("initial_h: expected shape [1, 2, 5], got [2, 1, 5]"):
            lstm(**node(), initial_h=np.zeros((N, 1, H)))

    def test_initial_c(self) -> None:
        with raises("initial_c: expected shape [2, 2, 5], got [1, 2, 5]"):
            lstm(**node(2), initial_c=np.zeros((1, N, H)))

    def test_initial_h_layout_1_is_batch_major(self) -> None:
        x = np.zeros((N, T, F))
        with raises("initial_h: expected shape [2, 1, 5], got [1, 2, 5]"):
            lstm(**node(X=x), initial_h=np.zeros((1, N, H)), layout=1)

    def test_initial_c_layout_1_is_batch_major(self) -> None:
        x = np.zeros((N, T, F))
        with raises("initial_c: expected shape [2, 2, 5], got [2, 2, 4]"):
            lstm(**node(2, X=x), initial_c=np.zeros((N, 2, H - 1)), layout=1)

    def test_hidden_size_attribute_mismatches_r(self) -> None:
        with raises("hidden_size: attribute is 6 but R has hidden size 5 (shape [1, 20, 5])"):
            lstm(**node(), hidden_size=6)

    def test_hidden_size_attribute_matching_r_is_accepted(self) -> None:
        assert lstm(**node(), hidden_size=H).Y_h.shape == (1, N, H)


class TestActivations:
    def test_unknown_name_lists_valid_names(self) -> None:
        with raises(f"unknown activation 'Swish'; expected one of: {KNOWN}"):
            lstm(**node(), activations=["Sigmoid", "Swish", "Tanh"])

    def test_too_few(self) -> None:
        with raises("activations: expected 3 names (f, g, h per direction), got 2: ['Sigmoid', 'Tanh']"):
            lstm(**node(), activations=["Sigmoid", "Tanh"])

    def test_one_direction_for_bidirectional(self) -> None:
        with raises("activations: expected 6 names (f, g, h per direction), got 3: ['Sigmoid', 'Tanh', 'Tanh']"):
            lstm(**node(2), activations=["Sigmoid", "Tanh", "Tanh"])


class TestSequenceLens:
    def test_negative(self) -> None:
        with raises("sequence_lens: entry 1 is -1, outside [0, 3] (seq_length is 3)"):
            lstm(**node(), sequence_lens=np.array([2, -1]))

    def test_too_long(self) -> None:
        with raises("sequence_lens: entry 0 is 4, outside [0, 3] (seq_length is 3)"):
            lstm(**node(), sequence_lens=np.array([4, 1]))

    @pytest.mark.parametrize(
        ("value", "dtype"), [([2.0, 1.0], "float64"), ([True, False], "bool"), (["2", "1"], "<U1")]
    )
    def test_not_integers(self, value: list[Any], dtype: str) -> None:
        with raises(f"sequence_lens: expected integers, got dtype {dtype}"):
            lstm(**node(), sequence_lens=np.array(value))

    @pytest.mark.parametrize(("value", "shape"), [([1, 2, 3], "[3]"), ([[1, 2]], "[1, 2]"), (2, "[]")])
    def test_shape(self, value: Any, shape: str) -> None:
        with raises(f"sequence_lens: expected shape [2], got {shape}"):
            lstm(**node(), sequence_lens=np.array(value))

    @pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.int64])
    def test_any_integer_dtype_is_accepted(self, dtype: type) -> None:
        """Every integer dtype means the same lengths: the outputs are those of a plain list of ints."""
        out = lstm(**node(), sequence_lens=np.array([3, 1], dtype=dtype))
        want = lstm(**node(), sequence_lens=[3, 1])
        for name in ("Y", "Y_h", "Y_c"):
            np.testing.assert_array_equal(getattr(out, name), getattr(want, name), err_msg=name)
        assert not out.Y[1:, :, 1].any() and out.Y[0, :, 1].all()  # entry 1 stops after one step
        assert not np.array_equal(out.Y_h, lstm(**node()).Y_h)  # the lengths were applied


class TestAttributes:
    @pytest.mark.parametrize("direction", ["backward", "Forward", "bidirectional "])
    def test_direction(self, direction: str) -> None:
        with raises(f"direction: expected one of ['forward', 'reverse', 'bidirectional'], got {direction!r}"):
            lstm(**node(direction=direction))

    @pytest.mark.parametrize("layout", [2, -1])
    def test_layout(self, layout: int) -> None:
        with raises(f"layout: expected 0 or 1, got {layout!r}"):
            lstm(**node(), layout=layout)

    @pytest.mark.parametrize("value", [2, -1])
    def test_input_forget(self, value: int) -> None:
        with raises(f"input_forget: expected 0 or 1, got {value!r}"):
            lstm(**node(), input_forget=value)

    @pytest.mark.parametrize("clip", [0.0, -1.0, float("nan"), 0])
    def test_clip_not_positive(self, clip: float) -> None:
        with raises(f"clip: expected a positive threshold, got {clip!r}"):
            lstm(**node(), clip=clip)


class TestLSTMConfig:
    @pytest.mark.parametrize("name", ["input_size", "hidden_size", "num_layers"])
    @pytest.mark.parametrize("value", [0, -3, 2.0, True, "4"])
    def test_sizes_are_positive_integers(self, name: str, value: Any) -> None:
        sizes: dict[str, Any] = {"input_size": 3, "hidden_size": 4, "num_layers": 1, name: value}
        with raises(f"{name}: expected a positive integer, got {value!r}"):
            LSTMConfig(**sizes)

    def test_direction(self) -> None:
        with raises("direction: expected one of ['forward', 'reverse', 'bidirectional'], got 'both'"):
            LSTMConfig(3, 4, direction="both")

    def test_activation_count(self) -> None:
        with raises("activations: expected 6 names (f, g, h per direction), got 3"):
            LSTMConfig(3, 4, direction="bidirectional", activations=("Sigmoid", "Tanh", "Tanh"))

    def test_unknown_activation(self) -> None:
        with raises(f"unknown activation 'Gelu'; expected one of: {KNOWN}"):
            LSTMConfig(3, 4, activations=("Sigmoid", "Gelu", "Tanh"))

    @pytest.mark.parametrize("clip", [0.0, -2.5])
    def test_clip(self, clip: float) -> None:
        with raises(f"clip: expected a positive threshold, got {clip!r}"):
            LSTMConfig(3, 4, clip=clip)

    def test_input_forget(self) -> None:
        with raises("input_forget: expected 0 or 1, got 3"):
            LSTMConfig(3, 4, input_forget=3)

    def test_valid_config_round_trips_through_dict(self) -> None:
        config = LSTMConfig(3, 4, 2, "bidirectional", activations=("Sigmoid", "Tanh", "Tanh") * 2, clip=5.0)
        assert LSTMConfig.from_dict(config.to_dict()) == config


class TestLMConfig:
    @pytest.mark.parametrize("vocab_size", [1, 0, 2.5])
    def test_vocab_size(self, vocab_size: Any) -> None:
        with raises(f"vocab_size: expected an integer >= 2, got {vocab_size!r}"):
            LMConfig(vocab_size, LSTMConfig(3, 4))
