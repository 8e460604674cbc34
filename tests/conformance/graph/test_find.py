"""find_lstm_nodes: every LSTM node, wherever it sits, with a stable path and what it is configured with."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

from conformance.graph import Enclosing, GraphError, LSTMAttributes, find_lstm_nodes
from tests.conformance.graph import models


class TestPaths:
    def test_torch_style_name_loses_its_leading_slash(self) -> None:
        (node,) = find_lstm_nodes(models.plain())
        assert node.path == "rnn/LSTM"
        assert node.name == "/rnn/LSTM"
        assert node.enclosing == ()

    def test_unnamed_node_is_op_type_and_index(self) -> None:
        (node,) = find_lstm_nodes(models.runtime_weights())
        assert node.path == "LSTM_0"

    def test_if_branches_then_before_else(self) -> None:
        then_node, else_node = find_lstm_nodes(models.if_branches())
        assert then_node.path == "If_0/then_branch/decoder/rnn/LSTM"
        assert else_node.path == "If_0/else_branch/LSTM_0"
        assert then_node.enclosing == (Enclosing("If", "If_0", "then_branch"),)
        assert else_node.enclosing == (Enclosing("If", "If_0", "else_branch"),)

    def test_loop_and_scan_bodies(self) -> None:
        (loop_node,) = find_lstm_nodes(models.loop_body())
        (scan_node,) = find_lstm_nodes(models.scan_body())
        assert loop_node.path == "decode/body/step"
        assert loop_node.in_loop and loop_node.enclosing[0].is_loop
        assert scan_node.path == "Scan_0/body/LSTM_0"
        assert scan_node.enclosing == (Enclosing("Scan", "Scan_0", "body"),)

    def test_nested_control_flow_lists_every_level_outermost_first(self) -> None:
        (node,) = find_lstm_nodes(models.nested_if_loop())
        assert node.path == "vad/then_branch/Loop_0/body/LSTM_0"
        assert [(e.kind, e.path, e.branch) for e in node.enclosing] == [
            ("If", "vad", "then_branch"),
            ("Loop", "vad/then_branch/Loop_0", "body"),
        ]

    def test_function_called_twice_gives_one_path_per_call(self) -> None:
        first, second = find_lstm_nodes(models.local_function())
        assert (first.path, second.path) == ("enc/rnn", "Encoder_1/rnn")
        assert first.enclosing == (Enclosing("function", "enc", "local:Encoder"),)
        # names in the function's own scope, not the caller's
        assert first.inputs == {"X": "x", "W": "w", "R": "r"}
        assert first.outputs == {"Y_h": "h"}

    def test_same_name_twice_is_made_unique(self) -> None:
        model = models.two_lstms()
        for node in model.graph.node:
            if node.op_type == "LSTM":
                node.name = "rnn"
        assert [n.path for n in find_lstm_nodes(model)] == ["rnn", "rnn#2"]

    def test_paths_are_stable_across_calls(self) -> None:
        model = models.nested_if_loop()
        assert find_lstm_nodes(model) == find_lstm_nodes(model)


class TestAttributes:
    def test_defaults_when_unset(self) -> None:
        (node,) = find_lstm_nodes(models.plain())
        assert node.attributes == LSTMAttributes(hidden_size=models.H)
        assert node.attributes.default_activations

    def test_two_lstms_keep_their_own_attributes(self) -> None:
        first, second = find_lstm_nodes(models.two_lstms())
        assert first.attributes.direction == "bidirectional"
        assert first.attributes.num_directions == 2
        assert second.attributes == LSTMAttributes(
            hidden_size=models.H, direction="reverse", activations=("HardSigmoid", "Tanh", "Tanh"), clip=2.0
        )
        assert not second.attributes.default_activations

    def test_default_activations_compare_case_insensitively(self) -> None:
        attributes = LSTMAttributes(direction="bidirectional", activations=("sigmoid", "TANH", "Tanh") * 2)
        assert attributes.default_activations

    def test_function_attribute_reference_takes_the_function_default(self) -> None:
        # the call sites do not set hidden_size: the function's default (4) applies, as in ONNX Runtime
        assert [n.attributes.hidden_size for n in find_lstm_nodes(models.local_function())] == [models.H] * 2

    def test_as_kwargs_feeds_the_reference(self) -> None:
        (_, node) = find_lstm_nodes(models.two_lstms())
        assert node.attributes.as_kwargs()["activations"] == ("HardSigmoid", "Tanh", "Tanh")
        assert node.attributes.as_kwargs()["clip"] == 2.0

    def test_layout_and_input_forget(self) -> None:
        (node,) = find_lstm_nodes(models.plain(layout=1, input_forget=1))
        assert (node.attributes.layout, node.attributes.input_forget) == (1, 1)


class TestValues:
    def test_inputs_and_outputs_in_scope_and_omitted_roles_absent(self) -> None:
        (node,) = find_lstm_nodes(models.weights_as_inputs())
        assert node.inputs == {"X": "X", "W": "W", "R": "R", "initial_h": "h0"}
        assert node.outputs == {"Y": "Y"}

    def test_stack_reads_sequence_lens(self) -> None:
        nodes = find_lstm_nodes(models.stack_with_lengths())
        assert [n.path for n in nodes] == ["lstm/layer0", "lstm/layer1", "lstm/layer2"]
        assert all(n.inputs["sequence_lens"] == "lengths" for n in nodes)

    @pytest.mark.parametrize(
        ("model", "dtype"),
        [
            (models.plain(), "float32"),
            (models.plain(dtype="float16"), "float16"),
            (models.if_branches(), "float32"),
            (models.local_function(), "float32"),
        ],
    )
    def test_dtype(self, model: onnx.ModelProto, dtype: str) -> None:
        assert {n.dtype for n in find_lstm_nodes(model)} == {dtype}

    def test_dtype_unknown_is_none(self) -> None:
        model = models.weights_as_inputs()
        del model.graph.input[:]
        for name in ("X", "W", "R", "h0"):  # declared without a type
            model.graph.input.append(onnx.ValueInfoProto(name=name))
        del model.graph.output[:]
        model.graph.output.append(onnx.ValueInfoProto(name="Y"))
        (node,) = find_lstm_nodes(model)
        assert node.dtype is None


class TestErrors:
    def test_model_without_lstm_has_no_nodes(self) -> None:
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
        assert find_lstm_nodes(helper.make_model(graph)) == ()

    def test_bad_attribute_names_the_node(self) -> None:
        model = models.plain()
        model.graph.node[0].attribute.append(helper.make_attribute("activations", 3))
        with pytest.raises(GraphError, match=r"LSTM node rnn/LSTM: expected a list attribute, got 3"):
            find_lstm_nodes(model)
