"""Small ONNX graphs with LSTM nodes in every place a real model puts them, built with onnx.helper."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
FLOAT = TensorProto.FLOAT
T, B, IN, H = 5, 2, 3, 4


def weights(seed: int, *, hidden: int = H, inputs: int = IN, directions: int = 1) -> dict[str, npt.NDArray[Any]]:
    rng = np.random.default_rng(seed)
    return {
        "W": (rng.standard_normal((directions, 4 * hidden, inputs)) * 0.5).astype(np.float32),
        "R": (rng.standard_normal((directions, 4 * hidden, hidden)) * 0.5).astype(np.float32),
        "B": (rng.standard_normal((directions, 8 * hidden)) * 0.1).astype(np.float32),
    }


def x_input(seed: int = 0, shape: tuple[int, ...] = (T, B, IN), dtype: Any = np.float32) -> npt.NDArray[Any]:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _init(prefix: str, values: dict[str, npt.NDArray[Any]]) -> list[onnx.TensorProto]:
    return [numpy_helper.from_array(v, f"{prefix}{k}") for k, v in values.items()]


def _model(graph: onnx.GraphProto, **kwargs: Any) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], **kwargs)
    model.ir_version = 8
    return model


def _vi(name: str, elem: int = FLOAT, shape: list[Any] | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def plain(*, dtype: Any = np.float32, **attributes: Any) -> onnx.ModelProto:
    """X -> LSTM (weights as initializers) -> Y, Y_h."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    w = {k: v.astype(dtype) for k, v in weights(1).items()}
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h"], name="/rnn/LSTM", hidden_size=H, **attributes)
    graph = helper.make_graph(
        [node],
        "plain",
        [_vi("X", elem, [T, B, IN])],
        [_vi("Y", elem, [T, 1, B, H]), _vi("Y_h", elem, [1, B, H])],
        _init("", w),
    )
    return _model(graph)


def runtime_weights() -> onnx.ModelProto:
    """W and R made at run time: Unsqueeze of 2-D initializers, R from a Concat of two halves."""
    w = weights(2)
    inits = [
        numpy_helper.from_array(w["W"][0], "W2d"),
        numpy_helper.from_array(w["R"][0, : 2 * H], "R_top"),
        numpy_helper.from_array(w["R"][0, 2 * H :], "R_bottom"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["W2d", "axis0"], ["W"]),
        helper.make_node("Concat", ["R_top", "R_bottom"], ["R2d"], axis=0),
        helper.make_node("Unsqueeze", ["R2d", "axis0"], ["R"]),
        helper.make_node("LSTM", ["X", "W", "R"], ["", "Y_h"], hidden_size=H),
    ]
    return _model(
        helper.make_graph(
            nodes, "runtime_weights", [_vi("X", FLOAT, [T, B, IN])], [_vi("Y_h", FLOAT, [1, B, H])], inits
        )
    )


def weights_as_inputs() -> onnx.ModelProto:
    """W, R and initial_h are graph inputs."""
    node = helper.make_node("LSTM", ["X", "W", "R", "", "", "h0"], ["Y"], hidden_size=H)
    inputs = [
        _vi("X", FLOAT, [T, B, IN]),
        _vi("W", FLOAT, [1, 4 * H, IN]),
        _vi("R", FLOAT, [1, 4 * H, H]),
        _vi("h0", FLOAT, [1, B, H]),
    ]
    return _model(helper.make_graph([node], "weights_as_inputs", inputs, [_vi("Y", FLOAT, [T, 1, B, H])]))


def _branch(name: str, prefix: str, node_name: str) -> onnx.GraphProto:
    node = helper.make_node("LSTM", ["X", f"{prefix}W", f"{prefix}R", f"{prefix}B"], ["", f"{prefix}h"], hidden_size=H)
    node.name = node_name
    return helper.make_graph([node], name, [], [_vi(f"{prefix}h", FLOAT, [1, B, H])])


def if_branches(*, condition: str = "use_vad") -> onnx.ModelProto:
    """An If on a scalar bool graph input, an LSTM in each branch (different weights).

    ``condition="sr"``: the If tests ``Equal(sr, 16000)`` on an int64 graph input instead."""
    nodes = []
    inputs = [_vi("X", FLOAT, [T, B, IN])]
    inits = _init("a_", weights(3)) + _init("b_", weights(4))
    if condition == "use_vad":
        inputs.append(_vi("use_vad", TensorProto.BOOL, []))
        cond = "use_vad"
    else:
        inputs.append(_vi("sr", TensorProto.INT64, []))
        inits.append(numpy_helper.from_array(np.array(16000, np.int64), "rate16k"))
        nodes.append(helper.make_node("Equal", ["sr", "rate16k"], ["is16k"]))
        cond = "is16k"
    nodes.append(
        helper.make_node(
            "If",
            [cond],
            ["h"],
            then_branch=_branch("then", "a_", "/decoder/rnn/LSTM"),
            else_branch=_branch("else", "b_", ""),
        )
    )
    return _model(helper.make_graph(nodes, "if_branches", inputs, [_vi("h", FLOAT, [1, B, H])], inits))


def loop_body() -> onnx.ModelProto:
    """A Loop of ``steps`` iterations; each runs the LSTM on X from the carried state h."""
    body_nodes = [
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        helper.make_node("LSTM", ["X", "W", "R", "B", "", "h_in"], ["", "h_out"], hidden_size=H, name="step"),
    ]
    body = helper.make_graph(
        body_nodes,
        "body",
        [_vi("i", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []), _vi("h_in", FLOAT, [1, B, H])],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("h_out", FLOAT, [1, B, H])],
    )
    inits = [*_init("", weights(5)), numpy_helper.from_array(np.array(True), "true")]
    loop = helper.make_node("Loop", ["steps", "true", "h0"], ["h_final"], body=body, name="decode")
    inputs = [_vi("X", FLOAT, [T, B, IN]), _vi("steps", TensorProto.INT64, []), _vi("h0", FLOAT, [1, B, H])]
    return _model(helper.make_graph([loop], "loop_body", inputs, [_vi("h_final", FLOAT, [1, B, H])], inits))


def scan_body() -> onnx.ModelProto:
    """A Scan over chunks ``[N, T, B, IN]``: each chunk runs the LSTM from the carried h; Y_h per chunk."""
    body_nodes = [
        helper.make_node("LSTM", ["x", "W", "R", "B", "", "h_in"], ["", "h_out"], hidden_size=H),
        helper.make_node("Identity", ["h_out"], ["h_each"]),
    ]
    body = helper.make_graph(
        body_nodes,
        "body",
        [_vi("h_in", FLOAT, [1, B, H]), _vi("x", FLOAT, [T, B, IN])],
        [_vi("h_out", FLOAT, [1, B, H]), _vi("h_each", FLOAT, [1, B, H])],
    )
    scan = helper.make_node("Scan", ["h0", "chunks"], ["h_final", "h_all"], body=body, num_scan_inputs=1)
    inputs = [_vi("h0", FLOAT, [1, B, H]), _vi("chunks", FLOAT, [None, T, B, IN])]
    return _model(
        helper.make_graph(
            [scan],
            "scan_body",
            inputs,
            [_vi("h_final", FLOAT, [1, B, H]), _vi("h_all", FLOAT, [None, 1, B, H])],
            _init("", weights(6)),
        )
    )


def local_function() -> onnx.ModelProto:
    """A model-local function ``Encoder`` holding an LSTM (its hidden_size an attribute reference),
    called twice: by node ``enc`` and by an unnamed node."""
    lstm = helper.make_node("LSTM", ["x", "w", "r"], ["", "h"], name="rnn")
    lstm.attribute.append(helper.make_attribute_ref("hidden_size", onnx.AttributeProto.INT))
    function = helper.make_function(
        "local", "Encoder", ["x", "w", "r"], ["h"], [lstm], [helper.make_opsetid("", OPSET)], attributes=[]
    )
    function.attribute_proto.append(helper.make_attribute("hidden_size", H))
    w1, w2 = weights(7), weights(8)
    nodes = [
        helper.make_node("Encoder", ["X", "W1", "R1"], ["h1"], domain="local", name="enc"),
        helper.make_node("Encoder", ["X", "W2", "R2"], ["h2"], domain="local"),
        helper.make_node("Add", ["h1", "h2"], ["h"]),
    ]
    inits = [
        numpy_helper.from_array(w1["W"], "W1"),
        numpy_helper.from_array(w1["R"], "R1"),
        numpy_helper.from_array(w2["W"], "W2"),
        numpy_helper.from_array(w2["R"], "R2"),
    ]
    graph = helper.make_graph(
        nodes, "local_function", [_vi("X", FLOAT, [T, B, IN])], [_vi("h", FLOAT, [1, B, H])], inits
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("local", 1)],
        functions=[function],
    )
    model.ir_version = 9
    return model


def two_lstms() -> onnx.ModelProto:
    """Two LSTMs with different attributes: a bidirectional one, then a reverse HardSigmoid/clip one."""
    first = weights(9, directions=2)
    second = weights(10, inputs=2 * H)
    nodes = [
        helper.make_node("LSTM", ["X", "W1", "R1", "B1"], ["Y1"], hidden_size=H, direction="bidirectional"),
        helper.make_node("Transpose", ["Y1"], ["Y1t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["Y1t", "shape"], ["X2"]),
        helper.make_node(
            "LSTM",
            ["X2", "W2", "R2", "B2"],
            ["Y2", "Y_h"],
            hidden_size=H,
            direction="reverse",
            activations=["HardSigmoid", "Tanh", "Tanh"],
            clip=2.0,
        ),
    ]
    inits = _init("", {f"{k}1": v for k, v in first.items()}) + _init("", {f"{k}2": v for k, v in second.items()})
    inits.append(numpy_helper.from_array(np.array([T, B, 2 * H], np.int64), "shape"))
    return _model(
        helper.make_graph(nodes, "two_lstms", [_vi("X", FLOAT, [T, B, IN])], [_vi("Y_h", FLOAT, [1, B, H])], inits)
    )


def stack_with_lengths(layers: int = 3) -> onnx.ModelProto:
    """A ``layers``-deep stack, every layer reading ``lengths`` (sequence_lens), as torch's pack does."""
    nodes, inits = [], [numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    source = "X"
    for layer in range(layers):
        w = weights(20 + layer, inputs=IN if layer == 0 else H)
        inits += _init(f"l{layer}_", w)
        names = [source, f"l{layer}_W", f"l{layer}_R", f"l{layer}_B", "lengths"]
        nodes.append(helper.make_node("LSTM", names, [f"Y{layer}"], hidden_size=H, name=f"/lstm/layer{layer}"))
        nodes.append(helper.make_node("Squeeze", [f"Y{layer}", "axis1"], [f"S{layer}"]))
        source = f"S{layer}"
    inputs = [_vi("X", FLOAT, [T, B, IN]), _vi("lengths", TensorProto.INT32, [B])]
    return _model(helper.make_graph(nodes, "stack", inputs, [_vi(source, FLOAT, [T, B, H])], inits))


def nested_if_loop() -> onnx.ModelProto:
    """An If on ``use_vad`` whose then_branch holds a Loop of ``steps`` iterations holding the LSTM;
    the else_branch passes h0 through."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("LSTM", ["X", "W", "R", "B", "", "h_in"], ["", "h_out"], hidden_size=H),
        ],
        "body",
        [_vi("i", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []), _vi("h_in", FLOAT, [1, B, H])],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("h_out", FLOAT, [1, B, H])],
    )
    then_branch = helper.make_graph(
        [helper.make_node("Loop", ["steps", "", "h0"], ["h_loop"], body=body)],
        "then",
        [],
        [_vi("h_loop", FLOAT, [1, B, H])],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["h0"], ["h_same"])], "else", [], [_vi("h_same", FLOAT, [1, B, H])]
    )
    node = helper.make_node("If", ["use_vad"], ["h"], then_branch=then_branch, else_branch=else_branch, name="vad")
    inputs = [
        _vi("X", FLOAT, [T, B, IN]),
        _vi("use_vad", TensorProto.BOOL, []),
        _vi("steps", TensorProto.INT64, []),
        _vi("h0", FLOAT, [1, B, H]),
    ]
    return _model(helper.make_graph([node], "nested", inputs, [_vi("h", FLOAT, [1, B, H])], _init("", weights(11))))


def scaled_output() -> onnx.ModelProto:
    """X -> LSTM -> Y_h -> Mul by 2 -> Tanh: a graph with ops after the LSTM, for bisection."""
    nodes = [
        helper.make_node("LSTM", ["X", "W", "R", "B"], ["", "Y_h"], hidden_size=H, name="rnn"),
        helper.make_node("Mul", ["Y_h", "two"], ["scaled"], name="scale"),
        helper.make_node("Tanh", ["scaled"], ["out"], name="squash"),
    ]
    inits = [*_init("", weights(12)), numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    return _model(
        helper.make_graph(nodes, "scaled", [_vi("X", FLOAT, [T, B, IN])], [_vi("out", FLOAT, [1, B, H])], inits)
    )


def loop_with_if() -> onnx.ModelProto:
    """A Loop whose body holds an If on the graph input ``use_vad``: the LSTM runs in every iteration or
    in none."""
    lstm = helper.make_node("LSTM", ["X", "W", "R", "B", "", "h_in"], ["", "h_new"], hidden_size=H)
    then_branch = helper.make_graph([lstm], "then", [], [_vi("h_new", FLOAT, [1, B, H])])
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["h_in"], ["h_kept"])], "else", [], [_vi("h_kept", FLOAT, [1, B, H])]
    )
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("If", ["use_vad"], ["h_out"], then_branch=then_branch, else_branch=else_branch),
        ],
        "body",
        [_vi("i", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []), _vi("h_in", FLOAT, [1, B, H])],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("h_out", FLOAT, [1, B, H])],
    )
    loop = helper.make_node("Loop", ["steps", "", "h0"], ["h_final"], body=body)
    inputs = [
        _vi("X", FLOAT, [T, B, IN]),
        _vi("use_vad", TensorProto.BOOL, []),
        _vi("steps", TensorProto.INT64, []),
        _vi("h0", FLOAT, [1, B, H]),
    ]
    graph = helper.make_graph(
        [loop], "loop_with_if", inputs, [_vi("h_final", FLOAT, [1, B, H])], _init("", weights(13))
    )
    return _model(graph)


def sequence_map() -> onnx.ModelProto:
    """An LSTM inside a SequenceMap body: found, but capture cannot see through SequenceMap."""
    body = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R"], ["", "h"], hidden_size=H)],
        "body",
        [_vi("x", FLOAT, [T, B, IN])],
        [_vi("h", FLOAT, [1, B, H])],
    )
    node = helper.make_node("SequenceMap", ["xs"], ["hs"], body=body)
    inputs = [helper.make_tensor_sequence_value_info("xs", FLOAT, [T, B, IN])]
    outputs = [helper.make_tensor_sequence_value_info("hs", FLOAT, [1, B, H])]
    w = weights(14)
    inits = [numpy_helper.from_array(w["W"], "W"), numpy_helper.from_array(w["R"], "R")]
    return _model(helper.make_graph([node], "sequence_map", inputs, outputs, inits))
