"""instrument + capture: the tensors each LSTM node really received and returned, per runtime."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import pytest

from conformance.graph import (
    CaptureError,
    Captures,
    GraphError,
    Run,
    capture,
    find_lstm_nodes,
    instrument,
    onnxruntime_runner,
    reference_runner,
)
from tests.conformance.graph import models
from tests.conformance.graph.models import B, H, T

ORT = onnxruntime_runner()
REFERENCE = reference_runner()
RUNNERS = pytest.mark.parametrize("run", [ORT, REFERENCE], ids=["onnxruntime", "reference"])


def zeros_h() -> npt.NDArray[np.float32]:
    return np.zeros((1, B, H), np.float32)


class TestMainGraph:
    @RUNNERS
    def test_plain_lstm_every_role_captured(self, run: Run) -> None:
        x = models.x_input()
        captures = capture(models.plain(), {"X": x}, run)
        (node,) = captures
        (invocation,) = node.invocations
        assert node.exercised and node.not_exercised is None
        assert set(invocation.inputs) == {"X", "W", "R", "B"}
        assert set(invocation.outputs) == {"Y", "Y_h", "Y_c"}  # Y_c named and computed though omitted
        np.testing.assert_array_equal(invocation.inputs["X"], x)
        np.testing.assert_array_equal(invocation.inputs["W"], models.weights(1)["W"])
        assert invocation.outputs["Y"].shape == (T, 1, B, H)
        assert invocation.iteration == ()

    def test_model_outputs_come_back_too(self) -> None:
        x = models.x_input()
        captures = capture(models.plain(), {"X": x}, ORT)
        assert set(captures.outputs) == {"Y", "Y_h"}
        np.testing.assert_array_equal(captures.outputs["Y_h"], captures["rnn/LSTM"].invocations[0].outputs["Y_h"])

    @RUNNERS
    def test_weights_computed_at_run_time(self, run: Run) -> None:
        (node,) = capture(models.runtime_weights(), {"X": models.x_input()}, run)
        w = models.weights(2)
        np.testing.assert_array_equal(node.invocations[0].inputs["W"], w["W"])
        np.testing.assert_array_equal(node.invocations[0].inputs["R"], w["R"])

    def test_weights_fed_as_graph_inputs(self) -> None:
        w = models.weights(3)
        h0 = np.full((1, B, H), 0.25, np.float32)
        feeds = {"X": models.x_input(), "W": w["W"], "R": w["R"], "h0": h0}
        (node,) = capture(models.weights_as_inputs(), feeds, ORT)
        inputs = node.invocations[0].inputs
        assert set(inputs) == {"X", "W", "R", "initial_h"}
        np.testing.assert_array_equal(inputs["R"], w["R"])
        np.testing.assert_array_equal(inputs["initial_h"], h0)

    def test_stack_with_sequence_lens(self) -> None:
        lengths = np.array([5, 2], np.int32)
        captures = capture(models.stack_with_lengths(), {"X": models.x_input(), "lengths": lengths}, ORT)
        assert len(captures) == 3
        for node in captures:
            np.testing.assert_array_equal(node.invocations[0].inputs["sequence_lens"], lengths)
        layer0, layer1 = captures.nodes[0].invocations[0], captures.nodes[1].invocations[0]
        np.testing.assert_array_equal(layer1.inputs["X"], layer0.outputs["Y"][:, 0])

    def test_two_lstms_each_captured(self) -> None:
        first, second = capture(models.two_lstms(), {"X": models.x_input()}, ORT)
        assert first.invocations[0].outputs["Y"].shape == (T, 2, B, H)
        assert second.invocations[0].inputs["X"].shape == (T, B, 2 * H)


class TestIf:
    @RUNNERS
    @pytest.mark.parametrize("use_vad", [True, False])
    def test_taken_branch_captured_other_not_exercised(self, run: Run, use_vad: bool) -> None:
        feeds = {"X": models.x_input(), "use_vad": np.array(use_vad)}
        captures = capture(models.if_branches(), feeds, run)
        then_node = captures["If_0/then_branch/decoder/rnn/LSTM"]
        else_node = captures["If_0/else_branch/LSTM_0"]
        taken, skipped = (then_node, else_node) if use_vad else (else_node, then_node)
        assert len(taken.invocations) == 1
        assert skipped.invocations == ()
        np.testing.assert_array_equal(taken.invocations[0].outputs["Y_h"], captures.outputs["h"])
        expected_weights = models.weights(3 if use_vad else 4)["W"]
        np.testing.assert_array_equal(taken.invocations[0].inputs["W"], expected_weights)
        assert str(skipped.not_exercised) == (
            f"not exercised by these inputs: If If_0 took its {'then' if use_vad else 'else'}_branch; "
            f"to exercise it, set use_vad to {not use_vad}"
        )

    @pytest.mark.parametrize(
        ("sr", "hint"),
        [(8000, "set sr to 16000"), (16000, "set sr to a value other than 16000")],
    )
    def test_hint_through_a_comparison_with_a_constant(self, sr: int, hint: str) -> None:
        feeds = {"X": models.x_input(), "sr": np.array(sr, np.int64)}
        skipped = [n for n in capture(models.if_branches(condition="sr"), feeds, ORT) if not n.exercised]
        assert len(skipped) == 1
        assert skipped[0].not_exercised is not None
        assert skipped[0].not_exercised.hint == hint

    def test_hint_through_not(self) -> None:
        model = models.if_branches()
        model.graph.node.insert(0, onnx.helper.make_node("Not", ["use_vad"], ["skip_vad"]))
        model.graph.node[1].input[0] = "skip_vad"
        feeds = {"X": models.x_input(), "use_vad": np.array(True)}
        then_node = capture(model, feeds, ORT)["If_0/then_branch/decoder/rnn/LSTM"]
        assert then_node.not_exercised is not None
        assert then_node.not_exercised.hint == "set use_vad to False"

    def test_untraceable_condition_names_the_if_and_branch(self) -> None:
        model = models.if_branches()
        model.graph.node.insert(0, onnx.helper.make_node("Xor", ["use_vad", "use_vad"], ["never"]))
        model.graph.node[1].input[0] = "never"
        feeds = {"X": models.x_input(), "use_vad": np.array(True)}
        then_node = capture(model, feeds, ORT)["If_0/then_branch/decoder/rnn/LSTM"]
        assert then_node.not_exercised is not None
        assert then_node.not_exercised.reason == "If If_0 took its else_branch"
        assert then_node.not_exercised.hint == "feed inputs that make If If_0 take its then_branch"


class TestLoops:
    @RUNNERS
    def test_loop_of_n_iterations_gives_n_invocations(self, run: Run) -> None:
        feeds = {"X": models.x_input(), "steps": np.array(3, np.int64), "h0": zeros_h()}
        captures = capture(models.loop_body(), feeds, run)
        node = captures["decode/body/step"]
        assert [inv.iteration for inv in node.invocations] == [(0,), (1,), (2,)]
        first, second, third = node.invocations
        np.testing.assert_array_equal(first.inputs["initial_h"], feeds["h0"])
        np.testing.assert_array_equal(second.inputs["initial_h"], first.outputs["Y_h"])  # state carried
        np.testing.assert_array_equal(third.outputs["Y_h"], captures.outputs["h_final"])

    @RUNNERS
    def test_loop_without_iteration_is_not_exercised(self, run: Run) -> None:
        feeds = {"X": models.x_input(), "steps": np.array(0, np.int64), "h0": zeros_h()}
        (node,) = capture(models.loop_body(), feeds, run)
        assert node.invocations == ()
        assert str(node.not_exercised) == (
            "not exercised by these inputs: Loop decode ran no iteration; "
            "to exercise it, feed inputs that make Loop decode run at least one iteration"
        )

    @RUNNERS
    def test_scan_body_once_per_chunk(self, run: Run) -> None:
        chunks = np.stack([models.x_input(1), models.x_input(2)])
        captures = capture(models.scan_body(), {"h0": zeros_h(), "chunks": chunks}, run)
        node = captures["Scan_0/body/LSTM_0"]
        assert [inv.iteration for inv in node.invocations] == [(0,), (1,)]
        np.testing.assert_array_equal(node.invocations[1].inputs["X"], chunks[1])
        np.testing.assert_array_equal(node.invocations[1].outputs["Y_h"], captures.outputs["h_all"][1])

    @RUNNERS
    def test_loop_inside_an_if(self, run: Run) -> None:
        feeds: dict[str, Any] = {"X": models.x_input(), "steps": np.array(2, np.int64), "h0": zeros_h()}
        taken = capture(models.nested_if_loop(), {**feeds, "use_vad": np.array(True)}, run)
        assert len(taken.nodes[0].invocations) == 2
        skipped = capture(models.nested_if_loop(), {**feeds, "use_vad": np.array(False)}, run)
        assert str(skipped.nodes[0].not_exercised) == (
            "not exercised by these inputs: If vad took its else_branch; to exercise it, set use_vad to True"
        )
        no_iteration = capture(
            models.nested_if_loop(), {**feeds, "use_vad": np.array(True), "steps": np.array(0, np.int64)}, run
        )
        assert no_iteration.nodes[0].not_exercised is not None
        assert no_iteration.nodes[0].not_exercised.reason == "Loop vad/then_branch/Loop_0 ran no iteration"

    @RUNNERS
    @pytest.mark.parametrize("use_vad", [True, False])
    def test_if_inside_a_loop(self, run: Run, use_vad: bool) -> None:
        feeds = {"X": models.x_input(), "use_vad": np.array(use_vad), "steps": np.array(2, np.int64), "h0": zeros_h()}
        (node,) = capture(models.loop_with_if(), feeds, run)
        assert node.node.path == "Loop_0/body/If_0/then_branch/LSTM_0"
        if use_vad:
            assert [inv.iteration for inv in node.invocations] == [(0,), (1,)]
        else:
            assert str(node.not_exercised) == (
                "not exercised by these inputs: If Loop_0/body/If_0 took its else_branch in every iteration; "
                "to exercise it, set use_vad to True"
            )


class TestFunctionsAndDtypes:
    @RUNNERS
    def test_function_called_twice_captured_per_call(self, run: Run) -> None:
        x = models.x_input()
        captures = capture(models.local_function(), {"X": x}, run)
        assert [n.node.path for n in captures] == ["enc/rnn", "Encoder_1/rnn"]
        np.testing.assert_array_equal(captures["enc/rnn"].invocations[0].inputs["W"], models.weights(7)["W"])
        np.testing.assert_array_equal(captures["Encoder_1/rnn"].invocations[0].inputs["W"], models.weights(8)["W"])
        total = sum(n.invocations[0].outputs["Y_h"] for n in captures)
        np.testing.assert_allclose(captures.outputs["h"], total, rtol=1e-6)

    @RUNNERS
    def test_float16_node(self, run: Run) -> None:
        # ONNX Runtime's CPU EP has no float16 LSTM kernel: it inserts casts and runs float32 (see README)
        (node,) = capture(models.plain(dtype=np.float16), {"X": models.x_input(dtype=np.float16)}, run)
        tensors = node.invocations[0].tensors
        assert {v.dtype for v in tensors.values()} == {np.dtype(np.float16)}


class TestInstrumented:
    def test_original_model_is_left_alone(self) -> None:
        model = models.nested_if_loop()
        before = copy.deepcopy(model)
        instrument(model)
        assert model == before

    def test_one_instrumented_copy_serves_several_runtimes(self) -> None:
        instrumented = instrument(models.if_branches())
        feeds = {"X": models.x_input(), "use_vad": np.array(True)}
        by_ort, by_reference = capture(instrumented, feeds, ORT), capture(instrumented, feeds, REFERENCE)
        assert [n.exercised for n in by_ort] == [n.exercised for n in by_reference] == [True, False]
        assert instrumented.model_outputs == ("h",)
        assert [s.node.path for s in instrumented.sites] == [n.path for n in instrumented.nodes]

    @pytest.mark.parametrize(
        "build",
        [
            models.plain,
            models.runtime_weights,
            models.weights_as_inputs,
            models.if_branches,
            models.loop_body,
            models.scan_body,
            models.local_function,
            models.two_lstms,
            models.stack_with_lengths,
            models.nested_if_loop,
        ],
    )
    def test_instrumented_model_passes_the_full_checker(self, build: Any) -> None:
        onnx.checker.check_model(instrument(build()).model, full_check=True)  # shape inference included

    def test_runtime_that_drops_outputs_is_an_error(self) -> None:
        def forgetful(model: onnx.ModelProto, feeds: Any) -> dict[str, Any]:
            return {"Y": np.zeros(1)}

        with pytest.raises(CaptureError, match=r"the runtime did not return the captured outputs \["):
            capture(models.plain(), {"X": models.x_input()}, forgetful)

    def test_lstm_inside_an_op_capture_cannot_see_through_is_refused(self) -> None:
        model = models.sequence_map()
        (node,) = find_lstm_nodes(model)
        assert node.path == "SequenceMap_0/body/LSTM_0"
        with pytest.raises(GraphError, match=r"^LSTM node SequenceMap_0/body/LSTM_0 sits inside SequenceMap node "):
            instrument(model)

    def test_constant_condition_says_no_input_can(self) -> None:
        model = models.if_branches()
        off = onnx.helper.make_tensor("", onnx.TensorProto.BOOL, [], [False])
        model.graph.node.insert(0, onnx.helper.make_node("Constant", [], ["off"], value=off))
        model.graph.node[1].input[0] = "off"
        feeds = {"X": models.x_input(), "use_vad": np.array(True)}
        then_node = capture(model, feeds, ORT)["If_0/then_branch/decoder/rnn/LSTM"]
        assert then_node.not_exercised is not None
        assert then_node.not_exercised.hint == "no input can: the condition is the constant False"

    def test_captures_index_by_path(self) -> None:
        captures: Captures = capture(models.plain(), {"X": models.x_input()}, ORT)
        with pytest.raises(KeyError, match=r"no LSTM node 'nope'; nodes: \['rnn/LSTM'\]"):
            captures["nope"]
