"""The ONNX ``LSTM`` operator (opsets 7-22) in NumPy, computed in float64.

Equations (ONNX spec; gate order IOFC in W, R, B; ``B = [Wb, Rb]``;
``P = [Pi, Po, Pf]``)::

    it = f(Xt Wi^T + Ht-1 Ri^T + Pi * Ct-1 + Wbi + Rbi)
    ft = f(Xt Wf^T + Ht-1 Rf^T + Pf * Ct-1 + Wbf + Rbf)     (1 - it if input_forget)
    ct = g(Xt Wc^T + Ht-1 Rc^T + Wbc + Rbc)
    Ct = ft * Ct-1 + it * ct
    ot = f(Xt Wo^T + Ht-1 Ro^T + Po * Ct + Wbo + Rbo)
    Ht = ot * h(Ct)

The choices made where the spec is ambiguous are written down in
``reference/SEMANTICS.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference.activations import Activation, bind
from reference.config import DIRECTIONS

Array = NDArray[np.float64]

DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")


class LSTMOutput(NamedTuple):
    """The three outputs of the operator, in the order the spec lists them."""

    Y: Array
    Y_h: Array
    Y_c: Array


def _tensor(name: str, value: ArrayLike, shape: tuple[int, ...]) -> Array:
    """Convert ``value`` to float64 and check its shape against the spec's."""
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {list(shape)}, got {list(array.shape)}")
    return array


def _rank3(name: str, value: ArrayLike, meaning: str) -> Array:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 3:
        raise ValueError(f"{name}: expected a rank-3 tensor {meaning}, got shape {list(array.shape)}")
    return array


def _lengths(value: ArrayLike, batch: int, steps: int) -> NDArray[np.int64]:
    raw = np.asarray(value)
    if raw.shape != (batch,):
        raise ValueError(f"sequence_lens: expected shape [{batch}], got {list(raw.shape)}")
    if raw.dtype.kind not in "iu":
        raise ValueError(f"sequence_lens: expected integers, got dtype {raw.dtype}")
    lengths = raw.astype(np.int64)
    bad = np.flatnonzero((lengths < 0) | (lengths > steps))
    if bad.size:
        b = int(bad[0])
        raise ValueError(f"sequence_lens: entry {b} is {int(lengths[b])}, outside [0, {steps}] (seq_length is {steps})")
    return lengths


def _activations(
    num_directions: int,
    activations: Sequence[str] | None,
    alpha: Sequence[float] | None,
    beta: Sequence[float] | None,
) -> list[list[Activation]]:
    names = list(activations) if activations is not None else list(DEFAULT_ACTIVATIONS) * num_directions
    if len(names) != 3 * num_directions:
        raise ValueError(
            f"activations: expected {3 * num_directions} names (f, g, h per direction), got {len(names)}: {names}"
        )
    bound = bind(names, alpha, beta)
    return [bound[3 * d : 3 * d + 3] for d in range(num_directions)]


def lstm(
    X: ArrayLike,
    W: ArrayLike,
    R: ArrayLike,
    B: ArrayLike | None = None,
    sequence_lens: ArrayLike | None = None,
    initial_h: ArrayLike | None = None,
    initial_c: ArrayLike | None = None,
    P: ArrayLike | None = None,
    *,
    hidden_size: int | None = None,
    direction: str = "forward",
    activations: Sequence[str] | None = None,
    activation_alpha: Sequence[float] | None = None,
    activation_beta: Sequence[float] | None = None,
    clip: float | None = None,
    input_forget: int = 0,
    layout: int = 0,
) -> LSTMOutput:
    """Evaluate one ONNX ``LSTM`` node in float64; arguments mirror the spec."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {list(DIRECTIONS)}, got {direction!r}")
    if layout not in (0, 1):
        raise ValueError(f"layout: expected 0 or 1, got {layout!r}")
    if input_forget not in (0, 1):
        raise ValueError(f"input_forget: expected 0 or 1, got {input_forget!r}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip: expected a positive threshold, got {clip!r}")
    num_dir = 2 if direction == "bidirectional" else 1

    x_meaning = "[seq_length, batch_size, input_size]" if layout == 0 else "[batch_size, seq_length, input_size]"
    x = _rank3("X", X, x_meaning)
    if layout == 1:
        x = x.transpose(1, 0, 2)
    steps, batch, input_size = x.shape

    r = _rank3("R", R, "[num_directions, 4*hidden_size, hidden_size]")
    hidden = r.shape[2]
    if hidden_size is not None and hidden_size != hidden:
        raise ValueError(
            f"hidden_size: attribute is {hidden_size} but R has hidden size {hidden} (shape {list(r.shape)})"
        )
    r = _tensor("R", r, (num_dir, 4 * hidden, hidden))
    w = _tensor("W", W, (num_dir, 4 * hidden, input_size))
    b = _tensor("B", B, (num_dir, 8 * hidden)) if B is not None else np.zeros((num_dir, 8 * hidden))
    p = _tensor("P", P, (num_dir, 3 * hidden)) if P is not None else None
    state_shape = (num_dir, batch, hidden) if layout == 0 else (batch, num_dir, hidden)
    h0 = _tensor("initial_h", initial_h, state_shape) if initial_h is not None else None
    c0 = _tensor("initial_c", initial_c, state_shape) if initial_c is not None else None
    if layout == 1:
        h0 = None if h0 is None else h0.transpose(1, 0, 2)
        c0 = None if c0 is None else c0.transpose(1, 0, 2)
    lengths = _lengths(sequence_lens, batch, steps) if sequence_lens is not None else None
    acts = _activations(num_dir, activations, activation_alpha, activation_beta)

    y, y_h, y_c = _run(x, w, r, b, p, h0, c0, lengths, acts, clip, bool(input_forget), direction)
    if layout == 1:
        return LSTMOutput(y.transpose(2, 0, 1, 3), y_h.transpose(1, 0, 2), y_c.transpose(1, 0, 2))
    return LSTMOutput(y, y_h, y_c)


def _time_index(steps: int, lengths: NDArray[np.int64] | None, batch: int) -> NDArray[np.int64]:
    """[T, B] index that reverses each sequence within its own length.

    Positions past a sequence's length map to themselves, so padding stays
    where it was. The map is its own inverse.
    """
    t = np.arange(steps)[:, None]
    lens = np.full(batch, steps) if lengths is None else lengths
    return np.where(t < lens[None, :], lens[None, :] - 1 - t, t)


def _run(
    x: Array,
    w: Array,
    r: Array,
    b: Array,
    p: Array | None,
    h0: Array | None,
    c0: Array | None,
    lengths: NDArray[np.int64] | None,
    acts: list[list[Activation]],
    clip: float | None,
    input_forget: bool,
    direction: str,
) -> tuple[Array, Array, Array]:
    steps, batch, input_size = x.shape
    num_dir, four_h, hidden = r.shape
    reverse = [direction == "reverse"] if num_dir == 1 else [False, True]

    # Input projection of every time step at once, biases folded in: [D, T, B, 4H].
    # One [T*B, I] @ [I, 4H] product per direction, written in place.
    bias = b[:, :four_h] + b[:, four_h:]
    xw = np.empty((num_dir, steps, batch, four_h))
    x2d = x.reshape(steps * batch, input_size)  # not -1: T or B may be 0 (no step: the initial state)
    for d in range(num_dir):
        out = xw[d].reshape(steps * batch, four_h)
        np.matmul(x2d, w[d].T, out=out)
        out += bias[d]
    rev_index = _time_index(steps, lengths, batch) if any(reverse) else None
    batch_index = np.arange(batch)[None, :]
    for d, rev in enumerate(reverse):
        if rev:
            assert rev_index is not None
            xw[d] = xw[d][rev_index, batch_index]

    rt = np.ascontiguousarray(r.transpose(0, 2, 1))  # [D, H, 4H], contiguous for the per-step GEMM
    h = np.zeros((num_dir, batch, hidden)) if h0 is None else h0.copy()
    c = np.zeros((num_dir, batch, hidden)) if c0 is None else c0.copy()
    if p is not None:
        p_i, p_o, p_f = (p[:, k * hidden : (k + 1) * hidden][:, None, :] for k in range(3))
    y = np.zeros((num_dir, steps, batch, hidden))

    shared = all(a == acts[0] for a in acts)

    def apply(act_index: int, value: Array) -> Array:
        if clip is not None:
            value = np.clip(value, -clip, clip)
        if shared:
            return acts[0][act_index](value)
        return np.stack([acts[d][act_index](value[d]) for d in range(num_dir)])

    active_all = lengths is None or bool(np.all(lengths == steps))
    gates = np.empty((num_dir, batch, four_h))
    for t in range(steps):
        np.matmul(h, rt, out=gates)
        gates += xw[:, t]
        gc = gates[..., 3 * hidden : 4 * hidden]
        if p is None:
            # i, o, f are adjacent in IOFC and take the same activation: one call for all three.
            iof = apply(0, gates[..., : 3 * hidden])
            i, o = iof[..., :hidden], iof[..., hidden : 2 * hidden]
            f = 1.0 - i if input_forget else iof[..., 2 * hidden :]
            c_new = apply(1, gc)
            c_new *= i
            c_new += f * c
        else:
            i = apply(0, gates[..., :hidden] + p_i * c)
            f = 1.0 - i if input_forget else apply(0, gates[..., 2 * hidden : 3 * hidden] + p_f * c)
            c_new = f * c + i * apply(1, gc)
            o = apply(0, gates[..., hidden : 2 * hidden] + p_o * c_new)
        h_new = apply(2, c_new)
        h_new *= o
        if active_all:
            h, c = h_new, c_new
            y[:, t] = h_new
        else:
            assert lengths is not None
            mask = (t < lengths)[None, :, None]
            h = np.where(mask, h_new, h)
            c = np.where(mask, c_new, c)
            y[:, t] = np.where(mask, h_new, 0.0)

    for d, rev in enumerate(reverse):
        if rev:
            assert rev_index is not None
            y[d] = y[d][rev_index, batch_index]
    return y.transpose(1, 0, 2, 3), h, c
