"""Property tests of ``reference.lstm``: invariants over random small shapes, weights and inputs.

Each property relates two evaluations of the operator (or one evaluation and a
tiny hand-written loop), so a bug has to break the relation to be caught; none
of them trusts the reference's own arithmetic as an oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from reference import LSTMOutput, lstm

Array = NDArray[np.float64]

DIRECTIONS = ("forward", "reverse", "bidirectional")
# Activations that stay bounded or grow at most linearly: safe for any random input over 6 steps.
SAFE_ACTIVATIONS = (
    "Sigmoid",
    "Tanh",
    "Relu",
    "Affine",
    "LeakyRelu",
    "ThresholdedRelu",
    "ScaledTanh",
    "HardSigmoid",
    "Elu",
    "Softsign",
    "Softplus",
)
EXAMPLES = settings(max_examples=50, deadline=None)
# Evaluations that do the same arithmetic in the same order must agree exactly. Those that do not
# (batch 1 vs batch B takes another BLAS path; the hand-written loop uses 1/(1+exp(-x)) for the
# sigmoid) differ by a few ulp, measured at most 2.8e-17 over 300 examples; they get this slack.
ATOL = 1e-12


@dataclass(frozen=True)
class Case:
    """One LSTM node's inputs (layout 0) plus its direction."""

    X: Array
    W: Array
    R: Array
    B: Array | None
    sequence_lens: NDArray[np.int64] | None
    initial_h: Array | None
    initial_c: Array | None
    P: Array | None
    direction: str

    @property
    def steps(self) -> int:
        return int(self.X.shape[0])

    @property
    def batch(self) -> int:
        return int(self.X.shape[1])

    @property
    def hidden(self) -> int:
        return int(self.R.shape[2])

    @property
    def num_directions(self) -> int:
        return int(self.W.shape[0])

    def lengths(self) -> NDArray[np.int64]:
        return np.full(self.batch, self.steps) if self.sequence_lens is None else self.sequence_lens

    def run(self, **attrs: Any) -> LSTMOutput:
        return lstm(
            self.X,
            self.W,
            self.R,
            self.B,
            self.sequence_lens,
            self.initial_h,
            self.initial_c,
            self.P,
            direction=self.direction,
            **attrs,
        )


@st.composite
def cases(
    draw: st.DrawFn,
    directions: tuple[str, ...] = DIRECTIONS,
    *,
    lengths: bool = True,
    full_lengths: bool = False,
) -> Case:
    steps = draw(st.integers(1, 6), label="T")
    batch = draw(st.integers(1, 4), label="B")
    input_size = draw(st.integers(1, 5), label="I")
    hidden = draw(st.integers(1, 5), label="H")
    direction = draw(st.sampled_from(directions), label="direction")
    d = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))

    def maybe(label: str, shape: tuple[int, ...], scale: float) -> Array | None:
        return rng.uniform(-scale, scale, shape) if draw(st.booleans(), label=label) else None

    seq: NDArray[np.int64] | None = None
    if full_lengths:
        seq = np.full(batch, steps, dtype=np.int64)
    elif lengths and draw(st.booleans(), label="has sequence_lens"):
        seq = np.array(draw(st.lists(st.integers(0, steps), min_size=batch, max_size=batch)), dtype=np.int64)
    return Case(
        X=rng.uniform(-2.0, 2.0, (steps, batch, input_size)),
        W=rng.uniform(-1.0, 1.0, (d, 4 * hidden, input_size)),
        R=rng.uniform(-1.0, 1.0, (d, 4 * hidden, hidden)),
        B=maybe("has B", (d, 8 * hidden), 1.0),
        sequence_lens=seq,
        initial_h=maybe("has initial_h", (d, batch, hidden), 1.0),
        initial_c=maybe("has initial_c", (d, batch, hidden), 1.0),
        P=maybe("has P", (d, 3 * hidden), 1.0),
        direction=direction,
    )


def slice_direction(case: Case, d: int) -> Case:
    """Direction ``d`` of a bidirectional case as a one-direction case."""

    def cut(a: Array | None) -> Array | None:
        return None if a is None else a[d : d + 1]

    return replace(
        case,
        W=case.W[d : d + 1],
        R=case.R[d : d + 1],
        B=cut(case.B),
        P=cut(case.P),
        initial_h=cut(case.initial_h),
        initial_c=cut(case.initial_c),
        direction="forward" if d == 0 else "reverse",
    )


def assert_outputs_equal(actual: LSTMOutput, expected: LSTMOutput, *, atol: float = 0.0) -> None:
    for name, a, e in zip(LSTMOutput._fields, actual, expected, strict=True):
        assert a.shape == e.shape, f"{name}: shape {a.shape} != {e.shape}"
        if atol == 0.0:
            np.testing.assert_array_equal(a, e, err_msg=name, strict=True)
        else:
            np.testing.assert_allclose(a, e, rtol=0.0, atol=atol, err_msg=name)


class TestDirections:
    @EXAMPLES
    @given(cases(("forward",), lengths=False))
    def test_reverse_is_forward_on_flipped_time(self, case: Case) -> None:
        fwd = replace(case, X=case.X[::-1]).run()
        rev = replace(case, direction="reverse").run()
        assert_outputs_equal(rev, LSTMOutput(fwd.Y[::-1], fwd.Y_h, fwd.Y_c))

    @EXAMPLES
    @given(cases(("bidirectional",)), st.data())
    def test_bidirectional_is_two_independent_directions(self, case: Case, data: st.DataObject) -> None:
        names = data.draw(st.lists(st.sampled_from(SAFE_ACTIVATIONS), min_size=6, max_size=6), label="activations")
        both = case.run(activations=names)
        halves = [slice_direction(case, d).run(activations=names[3 * d : 3 * d + 3]) for d in (0, 1)]
        expected = LSTMOutput(
            *(
                np.concatenate(parts, axis=axis)
                for parts, axis in zip(zip(*halves, strict=True), (1, 0, 0), strict=True)
            )
        )
        assert_outputs_equal(both, expected)


class TestLayout:
    @EXAMPLES
    @given(cases())
    def test_layout_1_is_layout_0_transposed(self, case: Case) -> None:
        def batch_major(a: Array | None) -> Array | None:
            return None if a is None else a.transpose(1, 0, 2)

        time_major = case.run()
        out = lstm(
            batch_major(case.X),
            case.W,
            case.R,
            case.B,
            case.sequence_lens,
            batch_major(case.initial_h),
            batch_major(case.initial_c),
            case.P,
            direction=case.direction,
            layout=1,
        )
        d, b, h = case.num_directions, case.batch, case.hidden
        assert out.Y.shape == (b, case.steps, d, h)
        assert out.Y_h.shape == out.Y_c.shape == (b, d, h)
        expected = LSTMOutput(
            time_major.Y.transpose(2, 0, 1, 3), time_major.Y_h.transpose(1, 0, 2), time_major.Y_c.transpose(1, 0, 2)
        )
        assert_outputs_equal(out, expected)


class TestSequenceLengths:
    @EXAMPLES
    @given(cases())
    def test_padding_is_zero_and_final_state_is_last_valid_step(self, case: Case) -> None:
        out = case.run()
        lengths = case.lengths()
        zeros = np.zeros((case.num_directions, case.batch, case.hidden))
        h0 = zeros if case.initial_h is None else case.initial_h
        c0 = zeros if case.initial_c is None else case.initial_c
        reverse = [case.direction == "reverse"] if case.num_directions == 1 else [False, True]
        for b, n in enumerate(lengths):
            assert np.all(out.Y[n:, :, b] == 0.0), f"batch {b}: Y nonzero past length {n}"
            for d, rev in enumerate(reverse):
                if n == 0:
                    np.testing.assert_array_equal(out.Y_h[d, b], h0[d, b])
                    np.testing.assert_array_equal(out.Y_c[d, b], c0[d, b])
                else:
                    last = 0 if rev else n - 1
                    np.testing.assert_array_equal(out.Y_h[d, b], out.Y[last, d, b])

    @EXAMPLES
    @given(cases())
    def test_each_sequence_is_independent_of_the_batch(self, case: Case) -> None:
        out = case.run()
        for b, n in enumerate(case.lengths()):
            if n == 0:
                continue  # covered above: Y_h/Y_c are the initial states

            def one(a: Array | None, b: int = b) -> Array | None:
                return None if a is None else a[:, b : b + 1]

            alone = lstm(
                case.X[:n, b : b + 1],
                case.W,
                case.R,
                case.B,
                None,
                one(case.initial_h),
                one(case.initial_c),
                case.P,
                direction=case.direction,
            )
            np.testing.assert_allclose(out.Y[:n, :, b : b + 1], alone.Y, rtol=0, atol=ATOL, err_msg=f"Y of batch {b}")
            np.testing.assert_allclose(out.Y_h[:, b : b + 1], alone.Y_h, rtol=0, atol=ATOL, err_msg=f"Y_h of batch {b}")
            np.testing.assert_allclose(out.Y_c[:, b : b + 1], alone.Y_c, rtol=0, atol=ATOL, err_msg=f"Y_c of batch {b}")

    @EXAMPLES
    @given(cases())
    def test_nan_in_padding_does_not_leak(self, case: Case) -> None:
        lengths = case.lengths()
        pad = np.arange(case.steps)[:, None] >= lengths[None, :]  # [T, B]
        poisoned = case.X.copy()
        poisoned[pad] = np.nan
        zeroed = case.X.copy()
        zeroed[pad] = 0.0
        out = replace(case, X=poisoned).run()
        for name, value in zip(LSTMOutput._fields, out, strict=True):
            assert np.all(np.isfinite(value)), f"{name} has non-finite values"
        assert_outputs_equal(out, replace(case, X=zeroed).run())


class TestAttributes:
    @EXAMPLES
    @given(cases())
    def test_huge_clip_is_no_clip(self, case: Case) -> None:
        assert_outputs_equal(case.run(clip=1e30), case.run())

    @EXAMPLES
    @given(cases())
    def test_default_activations_given_explicitly(self, case: Case) -> None:
        explicit = ["Sigmoid", "Tanh", "Tanh"] * case.num_directions
        shouted = ["SIGMOID", "tanh", "TaNh"] * case.num_directions
        omitted = case.run()
        assert_outputs_equal(case.run(activations=explicit), omitted)
        assert_outputs_equal(case.run(activations=shouted), omitted)

    @EXAMPLES
    @given(cases(), st.data())
    def test_activation_names_are_case_insensitive(self, case: Case, data: st.DataObject) -> None:
        names = data.draw(
            st.lists(
                st.sampled_from(SAFE_ACTIVATIONS), min_size=3 * case.num_directions, max_size=3 * case.num_directions
            )
        )
        mangled = [n.lower() if k % 2 else n.upper() for k, n in enumerate(names)]
        assert_outputs_equal(case.run(activations=mangled), case.run(activations=names))

    @EXAMPLES
    @given(cases(full_lengths=True))
    def test_input_forget_couples_forget_to_input_gate(self, case: Case) -> None:
        out = case.run(input_forget=1)
        expected = manual_lstm(case, input_forget=True)
        assert_outputs_equal(out, expected, atol=ATOL)

    @EXAMPLES
    @given(cases(full_lengths=True))
    def test_manual_loop_agrees_without_input_forget(self, case: Case) -> None:
        # Validates the hand-written loop itself, so the input_forget test above tests the reference.
        assert_outputs_equal(case.run(), manual_lstm(case, input_forget=False), atol=ATOL)

    @EXAMPLES
    @given(cases())
    def test_float32_inputs_give_float64_outputs(self, case: Case) -> None:
        def f32(a: Any) -> Any:
            return None if a is None or a is case.sequence_lens else np.asarray(a, dtype=np.float32)

        narrow = replace(
            case,
            **{k: f32(getattr(case, k)) for k in ("X", "W", "R", "B", "initial_h", "initial_c", "P")},
        )
        out = narrow.run()
        for name, value in zip(LSTMOutput._fields, out, strict=True):
            assert value.dtype == np.float64, f"{name} is {value.dtype}"
        widened = replace(
            narrow,
            **{
                k: None if getattr(narrow, k) is None else getattr(narrow, k).astype(np.float64)
                for k in ("X", "W", "R", "B", "initial_h", "initial_c", "P")
            },
        )
        assert_outputs_equal(out, widened.run())


def _sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))  # type: ignore[no-any-return]


def manual_lstm(case: Case, *, input_forget: bool) -> LSTMOutput:
    """The ONNX equations written out step by step, full-length sequences only."""
    assert case.sequence_lens is None or np.all(case.sequence_lens == case.steps)
    d_count, h = case.num_directions, case.hidden
    reverse = [case.direction == "reverse"] if d_count == 1 else [False, True]
    ys, hs, cs = [], [], []
    for d, rev in enumerate(reverse):
        w, r = case.W[d], case.R[d]
        bias = np.zeros(8 * h) if case.B is None else case.B[d]
        p = np.zeros(3 * h) if case.P is None else case.P[d]
        p_i, p_o, p_f = p[:h], p[h : 2 * h], p[2 * h :]
        h_t = np.zeros((case.batch, h)) if case.initial_h is None else case.initial_h[d]
        c_t = np.zeros((case.batch, h)) if case.initial_c is None else case.initial_c[d]
        y = np.zeros((case.steps, case.batch, h))
        order = range(case.steps - 1, -1, -1) if rev else range(case.steps)
        for t in order:
            z = case.X[t] @ w.T + h_t @ r.T + bias[: 4 * h] + bias[4 * h :]
            zi, zo, zf, zc = (z[:, k * h : (k + 1) * h] for k in range(4))
            i = _sigmoid(zi + p_i * c_t)
            f = 1.0 - i if input_forget else _sigmoid(zf + p_f * c_t)
            c_t = f * c_t + i * np.tanh(zc)
            o = _sigmoid(zo + p_o * c_t)
            h_t = o * np.tanh(c_t)
            y[t] = h_t
        ys.append(y)
        hs.append(h_t)
        cs.append(c_t)
    return LSTMOutput(np.stack(ys, axis=1), np.stack(hs), np.stack(cs))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_zero_length_everywhere_returns_initial_states(direction: str) -> None:
    """A fixed example of the length-0 rule, readable without hypothesis."""
    d = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(7)
    h0, c0 = rng.standard_normal((d, 2, 3)), rng.standard_normal((d, 2, 3))
    out = lstm(
        rng.standard_normal((4, 2, 5)),
        rng.standard_normal((d, 12, 5)),
        rng.standard_normal((d, 12, 3)),
        None,
        np.array([0, 0]),
        h0,
        c0,
        direction=direction,
    )
    assert np.all(out.Y == 0.0)
    np.testing.assert_array_equal(out.Y_h, h0)
    np.testing.assert_array_equal(out.Y_c, c0)
