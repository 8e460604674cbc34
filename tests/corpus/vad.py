"""A Silero-VAD-shaped production graph, made with onnx.helper, and its float64 NumPy reference.

``input`` [batch, N] audio, ``state`` [2, batch, 32] (packed h and c), ``sr`` int64 scalar.
``If_sr`` on ``sr == 16000``: each branch frames the audio (Reshape, 16 or 8 samples a frame), runs a
MatMul+ReLU front-end and an LSTM whose W, R and B are computed at run time (Concat of per-gate
tensors, then Unsqueeze), then a sigmoid head on the last hidden state. Outputs ``output`` [batch, 1]
and ``stateN`` [2, batch, 32] (packed new state, fed back as ``state`` when streaming).
The 16 kHz branch reads its weights from outer-scope initializers; the 8 kHz branch from Constant
nodes inside the branch. Both LSTM nodes are named ``decoder/rnn/LSTM`` and leave Y unused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tests.corpus.onnx_build import (
    LstmWeights,
    const,
    dense,
    ints,
    lstm_weights,
    model,
    node,
    run_lstm,
    sigmoid,
    tensor,
    value,
)
from tests.corpus.spec import CorpusModel, Feeds, InputSpec, Outputs, save_model

HIDDEN = 32
BRANCHES: dict[str, tuple[int, int, int, int]] = {  # tag: (sample rate, frame, features, seed)
    "then_branch": (16000, 16, 12, 16),
    "else_branch": (8000, 8, 8, 8),
}
PATHS = ("If_sr/then_branch/decoder/rnn/LSTM", "If_sr/else_branch/decoder/rnn/LSTM")


def _weights(frame: int, features: int, seed: int) -> dict[str, Any]:
    fe_w, fe_b = dense(seed, frame, features)
    head_w, head_b = dense(seed + 1, HIDDEN, 1)
    return {
        "fe_w": fe_w,
        "fe_b": fe_b,
        "lstm": lstm_weights(seed + 2, features, HIDDEN),
        "head_w": head_w,
        "head_b": head_b,
    }


def _gates(matrix: NDArray[np.float32]) -> list[NDArray[np.float32]]:
    return list(np.split(matrix[0], 4, axis=0))  # [4H, K] -> four [H, K] gate blocks (i, o, f, c)


def _branch(tag: str, frame: int, features: int, seed: int, inline: bool) -> tuple[Any, list[Any]]:
    """The branch graph and the initializers it reads from the outer scope (none when ``inline``)."""
    from onnx import helper

    p = "v16" if tag == "then_branch" else "v8"  # value-name prefix: names never shadow across scopes
    w = _weights(frame, features, seed)
    lstm: LstmWeights = w["lstm"]
    consts: dict[str, Any] = {
        f"{p}.frame_shape": np.array([0, -1, frame], np.int64),
        f"{p}.fe_w": w["fe_w"],
        f"{p}.fe_b": w["fe_b"],
        f"{p}.head_w": w["head_w"],
        f"{p}.head_b": w["head_b"],
        f"{p}.Wb": lstm.B[0, : 4 * HIDDEN],
        f"{p}.Rb": lstm.B[0, 4 * HIDDEN :],
    }
    for gate, block in zip("iofc", _gates(lstm.W), strict=True):
        consts[f"{p}.W_{gate}"] = block
    for gate, block in zip("iofc", _gates(lstm.R), strict=True):
        consts[f"{p}.R_{gate}"] = block
    for name, arr in (("axes0", [0]), ("zero", [0]), ("one", [1]), ("two", [2])):
        consts[f"{p}.{name}"] = np.array(arr, np.int64)
    nodes: list[Any] = []
    outer: list[Any] = []
    for name, arr in consts.items():
        if inline:
            nodes.append(const(name, arr, arr.dtype))
        else:
            outer.append(tensor(name, arr, arr.dtype))
    nodes += [
        node("Reshape", ["input", f"{p}.frame_shape"], [f"{p}.frames"], "frontend/Reshape"),
        node("MatMul", [f"{p}.frames", f"{p}.fe_w"], [f"{p}.fe_mm"], "frontend/MatMul"),
        node("Add", [f"{p}.fe_mm", f"{p}.fe_b"], [f"{p}.fe_add"], "frontend/Add"),
        node("Relu", [f"{p}.fe_add"], [f"{p}.feat"], "frontend/Relu"),
        node("Transpose", [f"{p}.feat"], [f"{p}.x"], "decoder/Transpose", perm=[1, 0, 2]),
        node("Concat", [f"{p}.W_{g}" for g in "iofc"], [f"{p}.W2"], "decoder/W/Concat", axis=0),
        node("Unsqueeze", [f"{p}.W2", f"{p}.axes0"], [f"{p}.W"], "decoder/W/Unsqueeze"),
        node("Concat", [f"{p}.R_{g}" for g in "iofc"], [f"{p}.R2"], "decoder/R/Concat", axis=0),
        node("Unsqueeze", [f"{p}.R2", f"{p}.axes0"], [f"{p}.R"], "decoder/R/Unsqueeze"),
        node("Concat", [f"{p}.Wb", f"{p}.Rb"], [f"{p}.B1"], "decoder/B/Concat", axis=0),
        node("Unsqueeze", [f"{p}.B1", f"{p}.axes0"], [f"{p}.B"], "decoder/B/Unsqueeze"),
        node("Slice", ["state", f"{p}.zero", f"{p}.one", f"{p}.axes0"], [f"{p}.h0"], "decoder/h0"),
        node("Slice", ["state", f"{p}.one", f"{p}.two", f"{p}.axes0"], [f"{p}.c0"], "decoder/c0"),
        node(
            "LSTM",
            [f"{p}.x", f"{p}.W", f"{p}.R", f"{p}.B", "", f"{p}.h0", f"{p}.c0"],
            ["", f"{p}.Y_h", f"{p}.Y_c"],
            "decoder/rnn/LSTM",
            hidden_size=HIDDEN,
        ),
        node("Squeeze", [f"{p}.Y_h", f"{p}.axes0"], [f"{p}.h_last"], "head/Squeeze"),
        node("MatMul", [f"{p}.h_last", f"{p}.head_w"], [f"{p}.logit_mm"], "head/MatMul"),
        node("Add", [f"{p}.logit_mm", f"{p}.head_b"], [f"{p}.logit"], "head/Add"),
        node("Sigmoid", [f"{p}.logit"], [f"{p}.prob"], "head/Sigmoid"),
        node("Concat", [f"{p}.Y_h", f"{p}.Y_c"], [f"{p}.state_out"], "state/Concat", axis=0),
    ]
    outputs = [value(f"{p}.prob", ["batch", 1]), value(f"{p}.state_out", [2, "batch", HIDDEN])]
    return helper.make_graph(nodes, f"vad_{tag}", [], outputs), outer


def vad_proto() -> Any:
    from onnx import TensorProto, helper

    then_graph, then_outer = _branch("then_branch", *BRANCHES["then_branch"][1:], inline=False)
    else_graph, else_outer = _branch("else_branch", *BRANCHES["else_branch"][1:], inline=True)
    if_node = node("If", ["is_16k"], ["output", "stateN"], "If_sr", then_branch=then_graph, else_branch=else_graph)
    ordered = sorted(if_node.attribute, key=lambda a: a.name != "then_branch")  # then_branch first, as read
    del if_node.attribute[:]
    if_node.attribute.extend(ordered)
    nodes = [node("Equal", ["sr", "sr_16k"], ["is_16k"], "Equal_sr"), if_node]
    graph = helper.make_graph(
        nodes,
        "silero_like_vad",
        [value("input", ["batch", "N"]), value("state", [2, "batch", HIDDEN]), value("sr", [], TensorProto.INT64)],
        [value("output", ["batch", 1]), value("stateN", [2, "batch", HIDDEN])],
        [ints("sr_16k", 16000), *then_outer, *else_outer],
    )
    return model(graph)


def vad_reference(feeds: Feeds) -> Outputs:
    """Float64 NumPy of the whole graph (the LSTM through ``reference.lstm``)."""
    sr = int(np.asarray(feeds["sr"]))
    _rate, frame, features, seed = BRANCHES["then_branch" if sr == 16000 else "else_branch"]
    w = _weights(frame, features, seed)
    audio = np.asarray(feeds["input"], np.float64)
    state = np.asarray(feeds["state"], np.float64)
    frames = audio.reshape(audio.shape[0], -1, frame)
    feat = np.maximum(frames @ w["fe_w"] + w["fe_b"], 0.0)
    out = run_lstm(feat.transpose(1, 0, 2), w["lstm"], initial_h=state[0:1], initial_c=state[1:2])
    prob = sigmoid(out.Y_h[0] @ w["head_w"] + w["head_b"])
    return {"output": prob, "stateN": np.concatenate([out.Y_h, out.Y_c], axis=0)}


VAD_INPUTS = (
    InputSpec("input", ("batch", "N")),
    InputSpec("state", (2, "batch", HIDDEN), role="state"),
    InputSpec("sr", (), "int64", role="scalar"),
)


def vad_model(path: Path, name: str = "vad_if_streaming", **more: Any) -> CorpusModel:
    """The corpus entry (``path`` is written only when missing)."""
    if not path.exists():
        save_model(vad_proto(), path)
    return CorpusModel(
        name=name,
        path=path,
        kind=more.pop("kind", "handmade"),
        description=more.pop(
            "description",
            "Silero-VAD-like: If(sr == 16000) with a front-end + LSTM (run-time W/R/B) per branch, "
            "packed [2, B, H] state in and out",
        ),
        lstm_paths=PATHS,
        inputs=more.pop("inputs", VAD_INPUTS),
        outputs=("output", "stateN"),
        dims={"batch": (2, 1, 3), "N": (64, 16, 128)},  # N: audio samples, a multiple of 16
        feeds={"sr": np.array(16000, np.int64)},
        exercised_by={
            PATHS[0]: {"sr": np.array(16000, np.int64)},
            PATHS[1]: {"sr": np.array(8000, np.int64)},
        },
        state_pairs=(("stateN", "state"),),
        numpy_reference=vad_reference,
        **more,
    )
