"""The whole-model reference (ReferenceEvaluator with our float64 LSTM) and the per-invocation reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from conformance.compare import compare_outputs, default_tolerance
from conformance.graph import capture, onnxruntime_runner, reference_runner
from conformance.graph.reference_model import node_reference, run_reference
from reference import lstm
from tests.conformance.graph import models
from tests.conformance.graph.models import B, H

ORT = onnxruntime_runner()
H0 = np.full((1, B, H), 0.5, np.float32)
WHOLE: list[tuple[Callable[[], onnx.ModelProto], dict[str, Any]]] = [
    (models.plain, {"X": models.x_input()}),
    (models.if_branches, {"X": models.x_input(), "use_vad": np.array(True)}),
    (models.loop_body, {"X": models.x_input(), "steps": np.array(4), "h0": H0}),
    (models.scan_body, {"h0": H0, "chunks": np.stack([models.x_input(3), models.x_input(4)])}),
    (models.nested_if_loop, {"X": models.x_input(), "use_vad": np.array(True), "steps": np.array(2), "h0": H0}),
    (models.local_function, {"X": models.x_input()}),
    (models.two_lstms, {"X": models.x_input()}),
    (models.stack_with_lengths, {"X": models.x_input(), "lengths": np.array([5, 3], np.int32)}),
]


class TestWholeModel:
    @pytest.mark.parametrize(("build", "feeds"), WHOLE, ids=[b.__name__ for b, _ in WHOLE])
    def test_matches_onnxruntime_on_correct_models(self, build: Callable[[], onnx.ModelProto], feeds: Any) -> None:
        model = build()
        expected = run_reference(model, feeds)
        assert set(expected) == {o.name for o in model.graph.output}
        diffs = compare_outputs(ORT(model, feeds), expected, default_tolerance("float32"), time_axes={})
        assert all(diffs), [d.problem or d.max_abs for d in diffs]

    def test_lstm_outputs_keep_the_node_dtype(self) -> None:
        outputs = run_reference(models.plain(dtype=np.float16), {"X": models.x_input(dtype=np.float16)})
        assert {v.dtype for v in outputs.values()} == {np.dtype(np.float16)}

    def test_the_lstm_is_ours_not_the_evaluators(self) -> None:
        model, feeds = models.plain(clip=0.3), {"X": models.x_input() * 4}
        ours = run_reference(model, feeds)["Y"]
        w = models.weights(1)
        expected = lstm(feeds["X"], w["W"], w["R"], w["B"], clip=float(np.float32(0.3))).Y  # a float attribute
        np.testing.assert_array_equal(ours, expected.astype(np.float32))
        theirs = reference_runner(float64_lstm=False)(model, feeds)["Y"]  # ignores clip
        assert np.abs(theirs - ours).max() > 1e-2

    def test_loop_scan_outputs_are_stacked_per_iteration(self) -> None:
        model = models.loop_body()
        body = model.graph.node[0].attribute[0].g
        body.output.append(onnx.helper.make_tensor_value_info("h_out", onnx.TensorProto.FLOAT, [1, B, H]))
        model.graph.node[0].output.append("h_each")
        model.graph.output.append(onnx.helper.make_tensor_value_info("h_each", onnx.TensorProto.FLOAT, None))
        feeds = {"X": models.x_input(), "steps": np.array(3), "h0": H0}
        assert run_reference(model, feeds)["h_each"].shape == ORT(model, feeds)["h_each"].shape == (3, 1, B, H)
        (concatenated,) = ReferenceEvaluator(model).run(["h_each"], feeds)
        assert np.shape(concatenated) == (3, B, H)  # onnx 1.23's own Loop concatenates

    def test_loop_without_iteration_passes_the_state_through(self) -> None:
        feeds = {"X": models.x_input(), "steps": np.array(0), "h0": H0}
        np.testing.assert_array_equal(run_reference(models.loop_body(), feeds)["h_final"], H0)


class TestNodeReference:
    def test_float64_from_the_captured_float16_values(self) -> None:
        feeds = {"X": models.x_input(dtype=np.float16)}
        (node,) = capture(models.plain(dtype=np.float16), feeds, ORT)
        invocation = node.invocations[0]
        expected = node_reference(node.node, invocation)
        assert {v.dtype for v in expected.values()} == {np.dtype(np.float64)}
        inputs = {k: v.astype(np.float64) for k, v in invocation.inputs.items()}
        direct = lstm(inputs["X"], inputs["W"], inputs["R"], inputs["B"], hidden_size=H)
        np.testing.assert_array_equal(expected["Y_c"], direct.Y_c)

    def test_uses_the_node_attributes(self) -> None:
        _, second = capture(models.two_lstms(), {"X": models.x_input()}, ORT)
        expected = node_reference(second.node, second.invocations[0])
        inputs = second.invocations[0].inputs
        reverse = lstm(
            inputs["X"],
            inputs["W"],
            inputs["R"],
            inputs["B"],
            direction="reverse",
            activations=["HardSigmoid", "Tanh", "Tanh"],
            clip=2.0,
        )
        np.testing.assert_array_equal(expected["Y"], reverse.Y)
        forward = lstm(inputs["X"], inputs["W"], inputs["R"], inputs["B"])
        assert np.abs(forward.Y - expected["Y"]).max() > 1e-2
