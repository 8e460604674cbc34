"""Hand-built graphs (onnx.helper) with LSTMs where exporters rarely put them, and their NumPy references.

- ``loop_chunks``: a Loop over chunks; the body Gathers chunk ``i`` and runs an LSTM carrying (h, c).
- ``scan_chunks``: the same with Scan; the body holds its own initializers and uses peepholes.
- ``weights_as_inputs``: a bidirectional LSTM whose W, R, B are graph inputs.
- ``two_lstms_attrs``: a forward LSTM with ``clip`` feeding a reverse LSTM with HardSigmoid/Softsign.
- ``nested_if_loop``: an If whose then-branch holds a Loop whose body holds an LSTM (two levels deep).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.corpus.onnx_build import LstmWeights, ints, lstm_weights, model, node, run_lstm, tensor, value
from tests.corpus.spec import CorpusModel, Feeds, InputSpec, Outputs, save_model

IN, H = 6, 12
CHUNK_DIMS = {"n_chunks": (3, 1, 2), "chunk_len": (4, 1, 7), "batch": (2, 1, 3)}
CHUNK_INPUTS = (
    InputSpec("chunks", ("n_chunks", "chunk_len", "batch", IN)),
    InputSpec("h0", (1, "batch", H), role="state"),
    InputSpec("c0", (1, "batch", H), role="state"),
)
CHUNKED: dict[str, Any] = {
    "inputs": CHUNK_INPUTS,
    "outputs": ("y", "h_n", "c_n"),
    "dims": CHUNK_DIMS,
    "state_pairs": (("h_n", "h0"), ("c_n", "c0")),
}
LOOP_W = lstm_weights(81, IN, H)
SCAN_W = lstm_weights(91, IN, H, peepholes=True)


def _chunked_reference(weights: LstmWeights) -> Callable[[Feeds], Outputs]:
    def reference(feeds: Feeds) -> Outputs:
        h, c = np.asarray(feeds["h0"], np.float64), np.asarray(feeds["c0"], np.float64)
        ys = []
        for chunk in np.asarray(feeds["chunks"], np.float64):
            out = run_lstm(chunk, weights, initial_h=h, initial_c=c)
            h, c = out.Y_h, out.Y_c
            ys.append(out.Y[:, 0])
        return {"y": np.stack(ys), "h_n": h, "c_n": c}

    return reference


def _chunk_outputs() -> list[Any]:
    return [
        value("y", ["n_chunks", "chunk_len", "batch", H]),
        value("h_n", [1, "batch", H]),
        value("c_n", [1, "batch", H]),
    ]


def _graph_inputs() -> list[Any]:
    return [
        value("chunks", ["n_chunks", "chunk_len", "batch", IN]),
        value("h0", [1, "batch", H]),
        value("c0", [1, "batch", H]),
    ]


def _loop_body(prefix: str, lstm_name: str) -> Any:
    from onnx import TensorProto, helper

    p = prefix
    nodes = [
        node("Gather", ["chunks", f"{p}i"], [f"{p}x"], "body/Gather", axis=0),
        node(
            "LSTM",
            [f"{p}x", f"{p}W", f"{p}R", f"{p}B", "", f"{p}h", f"{p}c"],
            [f"{p}Y", f"{p}Y_h", f"{p}Y_c"],
            lstm_name,
            hidden_size=H,
        ),
        node("Squeeze", [f"{p}Y", f"{p}axis1"], [f"{p}y"], "body/Squeeze"),
        node("Identity", [f"{p}cond"], [f"{p}cond_out"], "body/cond"),
    ]
    inputs = [
        value(f"{p}i", [], TensorProto.INT64),
        value(f"{p}cond", [], TensorProto.BOOL),
        value(f"{p}h", [1, "batch", H]),
        value(f"{p}c", [1, "batch", H]),
    ]
    outputs = [
        value(f"{p}cond_out", [], TensorProto.BOOL),
        value(f"{p}Y_h", [1, "batch", H]),
        value(f"{p}Y_c", [1, "batch", H]),
        value(f"{p}y", ["chunk_len", "batch", H]),
    ]
    return helper.make_graph(nodes, f"{p}body", inputs, outputs)


def _loop_nodes(prefix: str, lstm_name: str, outs: list[str]) -> tuple[list[Any], list[Any]]:
    """Nodes computing the trip count and the Loop, plus the initializers they read (prefixed)."""
    p = prefix
    nodes = [
        node("Shape", ["chunks"], [f"{p}shape"], f"{p}Shape"),
        node("Gather", [f"{p}shape", f"{p}zero"], [f"{p}trips"], f"{p}trips", axis=0),
        node("Loop", [f"{p}trips", "", "h0", "c0"], outs, "Loop_chunks", body=_loop_body(p, lstm_name)),
    ]
    inits = [
        ints(f"{p}zero", 0),
        ints(f"{p}axis1", [1]),
        tensor(f"{p}W", LOOP_W.W),
        tensor(f"{p}R", LOOP_W.R),
        tensor(f"{p}B", LOOP_W.B),
    ]
    return nodes, inits


def loop_proto() -> Any:
    from onnx import helper

    nodes, inits = _loop_nodes("loop.", "chunk/rnn/LSTM", ["h_n", "c_n", "y"])
    return model(helper.make_graph(nodes, "loop_chunks", _graph_inputs(), _chunk_outputs(), inits))


def scan_proto() -> Any:
    from onnx import helper

    w = SCAN_W
    body_nodes = [
        node("LSTM", ["x", "W", "R", "B", "", "h", "c", "P"], ["Y", "Y_h", "Y_c"], "encoder/LSTM", hidden_size=H),
        node("Squeeze", ["Y", "axis1"], ["y_k"], "encoder/Squeeze"),
    ]
    body_inits = [tensor("W", w.W), tensor("R", w.R), tensor("B", w.B), tensor("P", w.P), ints("axis1", [1])]
    body = helper.make_graph(
        body_nodes,
        "scan_body",
        [value("h", [1, "batch", H]), value("c", [1, "batch", H]), value("x", ["chunk_len", "batch", IN])],
        [value("Y_h", [1, "batch", H]), value("Y_c", [1, "batch", H]), value("y_k", ["chunk_len", "batch", H])],
        body_inits,
    )
    scan = node("Scan", ["h0", "c0", "chunks"], ["h_n", "c_n", "y"], "Scan_chunks", body=body, num_scan_inputs=1)
    return model(helper.make_graph([scan], "scan_chunks", _graph_inputs(), _chunk_outputs()))


def nested_proto() -> Any:
    """If(use_rnn) -> then: Loop over chunks with an LSTM; else: zeros of the same shapes."""
    from onnx import TensorProto, helper

    loop_nodes, loop_inits = _loop_nodes("nest.", "chunk/rnn/LSTM", ["t.h_n", "t.c_n", "t.y"])
    then_graph = helper.make_graph(
        loop_nodes,
        "then_loop",
        [],
        [value("t.h_n", [1, "batch", H]), value("t.c_n", [1, "batch", H]), value("t.y", [None, None, "batch", H])],
        loop_inits,
    )
    else_nodes = [
        node("Identity", ["h0"], ["e.h_n"], "skip/h"),
        node("Identity", ["c0"], ["e.c_n"], "skip/c"),
        node("Shape", ["chunks"], ["e.shape"], "skip/Shape"),
        node("Slice", ["e.shape", "e.zero", "e.three"], ["e.lead"], "skip/Slice"),
        node("Concat", ["e.lead", "e.hidden"], ["e.y_shape"], "skip/Concat", axis=0),
        node("ConstantOfShape", ["e.y_shape"], ["e.y"], "skip/zeros"),
    ]
    else_graph = helper.make_graph(
        else_nodes,
        "else_skip",
        [],
        [value("e.h_n", [1, "batch", H]), value("e.c_n", [1, "batch", H]), value("e.y", [None, None, "batch", H])],
        [ints("e.zero", [0]), ints("e.three", [3]), ints("e.hidden", [H])],
    )
    if_node = node("If", ["use_rnn"], ["h_n", "c_n", "y"], "If_rnn", then_branch=then_graph, else_branch=else_graph)
    inputs = [*_graph_inputs(), value("use_rnn", [], TensorProto.BOOL)]
    return model(helper.make_graph([if_node], "nested_if_loop", inputs, _chunk_outputs()))


def _nested_reference(feeds: Feeds) -> Outputs:
    if bool(np.asarray(feeds["use_rnn"])):
        return _chunked_reference(LOOP_W)(feeds)
    chunks = np.asarray(feeds["chunks"])
    zeros = np.zeros((*chunks.shape[:3], H))
    return {"y": zeros, "h_n": np.asarray(feeds["h0"], np.float64), "c_n": np.asarray(feeds["c0"], np.float64)}


# ---- weights fed as graph inputs ----
WIN_IN, WIN_H = 5, 8
WIN_W = lstm_weights(101, WIN_IN, WIN_H, directions=2)


def weights_inputs_proto() -> Any:
    from onnx import helper

    lstm = node(
        "LSTM", ["X", "W", "R", "B"], ["Y", "Y_h", "Y_c"], "rnn/LSTM", hidden_size=WIN_H, direction="bidirectional"
    )
    inputs = [
        value("X", ["seq", "batch", WIN_IN]),
        value("W", [2, 4 * WIN_H, WIN_IN]),
        value("R", [2, 4 * WIN_H, WIN_H]),
        value("B", [2, 8 * WIN_H]),
    ]
    outputs = [
        value("Y", ["seq", 2, "batch", WIN_H]),
        value("Y_h", [2, "batch", WIN_H]),
        value("Y_c", [2, "batch", WIN_H]),
    ]
    return model(helper.make_graph([lstm], "weights_as_inputs", inputs, outputs))


def _weights_inputs_reference(feeds: Feeds) -> Outputs:
    w = LstmWeights(np.asarray(feeds["W"]), np.asarray(feeds["R"]), np.asarray(feeds["B"]))
    out = run_lstm(feeds["X"], w, direction="bidirectional")
    return {"Y": out.Y, "Y_h": out.Y_h, "Y_c": out.Y_c}


# ---- two LSTMs with different attributes ----
TWO_CLIP = 3.0  # bites on pre-activations; |C_t| stays below it at the corpus dims (ORT agrees then)
TWO_ACTS = {"activations": ["HardSigmoid", "Tanh", "Softsign"], "activation_alpha": [0.25], "activation_beta": [0.45]}
FWD_W = lstm_weights(111, IN, 10)
REV_W = lstm_weights(112, 10, 8)
SCALE_X = 4.0  # the graph scales its input so that clip is reached


def two_lstms_proto() -> Any:
    from onnx import helper

    nodes = [
        node("Mul", ["x", "x_scale"], ["x_scaled"], "enc/scale"),
        node("LSTM", ["x_scaled", "W1", "R1", "B1"], ["Y1"], "enc/fwd/LSTM", hidden_size=10, clip=TWO_CLIP),
        node("Squeeze", ["Y1", "axis1"], ["y1"], "enc/Squeeze"),
        node(
            "LSTM",
            ["y1", "W2", "R2", "B2"],
            ["Y2", "h"],
            "enc/rev/LSTM",
            hidden_size=8,
            direction="reverse",
            **TWO_ACTS,
        ),
        node("Squeeze", ["Y2", "axis1"], ["y"], "enc/Squeeze_out"),
    ]
    inits = [
        tensor("x_scale", SCALE_X),
        ints("axis1", [1]),
        *(tensor(f"{k}1", getattr(FWD_W, k)) for k in "WRB"),
        *(tensor(f"{k}2", getattr(REV_W, k)) for k in "WRB"),
    ]
    graph = helper.make_graph(
        nodes,
        "two_lstms",
        [value("x", ["seq", "batch", IN])],
        [value("y", ["seq", "batch", 8]), value("h", [1, "batch", 8])],
        inits,
    )
    return model(graph)


def _two_lstms_reference(feeds: Feeds) -> Outputs:
    x = np.asarray(feeds["x"], np.float64) * SCALE_X
    first = run_lstm(x, FWD_W, clip=TWO_CLIP)
    second = run_lstm(first.Y[:, 0], REV_W, direction="reverse", **TWO_ACTS)
    return {"y": second.Y[:, 0], "h": second.Y_h}


def build_graph_models(folder: Path) -> dict[str, CorpusModel]:
    seq_batch = {"seq": (5, 1, 7, 16), "batch": (2, 1, 3)}
    entries: list[tuple[str, Callable[[], Any], dict[str, Any]]] = [
        ("loop_chunks", loop_proto, {
            "description": "Loop over chunks; the body Gathers a chunk, runs an LSTM carrying (h, c); outer weights",
            "lstm_paths": ("Loop_chunks/body/chunk/rnn/LSTM",), **CHUNKED,
            "numpy_reference": _chunked_reference(LOOP_W),
        }),
        ("scan_chunks", scan_proto, {
            "description": "Scan over chunks; the body's LSTM (peepholes, body initializers) carries (h, c)",
            "lstm_paths": ("Scan_chunks/body/encoder/LSTM",), **CHUNKED,
            "numpy_reference": _chunked_reference(SCAN_W),
        }),
        ("nested_if_loop", nested_proto, {
            "description": "If(use_rnn): then-branch is a Loop whose body runs an LSTM; else passes the state through",
            "lstm_paths": ("If_rnn/then_branch/Loop_chunks/body/chunk/rnn/LSTM",),
            "inputs": (*CHUNK_INPUTS, InputSpec("use_rnn", (), "bool", role="scalar")),
            "outputs": ("y", "h_n", "c_n"), "dims": CHUNK_DIMS, "feeds": {"use_rnn": np.array(True)},
            "exercised_by": {"If_rnn/then_branch/Loop_chunks/body/chunk/rnn/LSTM": {"use_rnn": np.array(True)}},
            "state_pairs": (("h_n", "h0"), ("c_n", "c0")), "numpy_reference": _nested_reference,
        }),
        ("weights_as_inputs", weights_inputs_proto, {
            "description": "bidirectional LSTM whose W, R, B are graph inputs (trained values in feeds)",
            "lstm_paths": ("rnn/LSTM",), "outputs": ("Y", "Y_h", "Y_c"), "dims": seq_batch,
            "inputs": (
                InputSpec("X", ("seq", "batch", WIN_IN)),
                *(InputSpec(k, tuple(getattr(WIN_W, k).shape), role="weight") for k in "WRB"),
            ),
            "feeds": {k: getattr(WIN_W, k) for k in "WRB"}, "numpy_reference": _weights_inputs_reference,
        }),
        ("two_lstms_attrs", two_lstms_proto, {
            "description": f"forward LSTM, clip={TWO_CLIP} -> reverse LSTM, HardSigmoid/Tanh/Softsign with alpha/beta",
            "lstm_paths": ("enc/fwd/LSTM", "enc/rev/LSTM"), "inputs": (InputSpec("x", ("seq", "batch", IN)),),
            "outputs": ("y", "h"), "dims": seq_batch, "numpy_reference": _two_lstms_reference,
            "notes": "clip reaches the pre-activations but not |C_t| at these dims, so ORT's clip reading agrees",
        }),
    ]  # fmt: skip
    models = {}
    for name, build, meta in entries:
        path = folder / f"{name}.onnx"
        if not path.exists():
            save_model(build(), path)
        models[name] = CorpusModel(name=name, path=path, kind="handmade", **meta)
    return models
