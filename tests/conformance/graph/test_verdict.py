"""judge_node: the float64 reference on the captured inputs against the captured outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest

from conformance.compare import Tolerance
from conformance.graph import Run, capture, instrument, onnxruntime_runner, reference_runner
from conformance.graph.capture import Invocation
from conformance.graph.verdict import DIVERGENCE_FEATURES, divergence_features, judge_node
from tests.conformance.graph import models
from tests.conformance.graph.models import B, H

ORT = onnxruntime_runner()
REFERENCE = reference_runner()


def perturbing(run: Run, name: str, index: tuple[int, ...], amount: float) -> Run:
    """A runtime whose output ``name`` is off by ``amount`` at ``index``: a planted kernel bug."""

    def perturbed(model: onnx.ModelProto, feeds: Any) -> dict[str, Any]:
        outputs = dict(run(model, feeds))
        value = np.array(outputs[name])
        value[index] += amount
        outputs[name] = value
        return outputs

    return perturbed


def only_invocation(model: onnx.ModelProto, feeds: dict[str, Any], run: Run = ORT) -> tuple[Any, Invocation]:
    (node,) = capture(model, feeds, run)
    (invocation,) = node.invocations
    return node.node, invocation


CORRECT: list[tuple[Callable[[], onnx.ModelProto], dict[str, Any]]] = [
    (models.plain, {"X": models.x_input()}),
    (models.runtime_weights, {"X": models.x_input()}),
    (models.if_branches, {"X": models.x_input(), "use_vad": np.array(False)}),
    (models.loop_body, {"X": models.x_input(), "steps": np.array(3), "h0": np.ones((1, B, H), np.float32)}),
    (models.scan_body, {"h0": np.zeros((1, B, H), np.float32), "chunks": np.stack([models.x_input()] * 2)}),
    (models.local_function, {"X": models.x_input()}),
    (models.two_lstms, {"X": models.x_input()}),
    (models.stack_with_lengths, {"X": models.x_input(), "lengths": np.array([5, 0], np.int32)}),
]


class TestCorrectRuntimes:
    @pytest.mark.parametrize("run", [ORT, REFERENCE], ids=["onnxruntime", "reference"])
    @pytest.mark.parametrize(("build", "feeds"), CORRECT, ids=[b.__name__ for b, _ in CORRECT])
    def test_every_invocation_passes(self, run: Run, build: Callable[[], onnx.ModelProto], feeds: Any) -> None:
        captures = capture(build(), feeds, run)
        verdicts = [judge_node(n.node, inv) for n in captures for inv in n.invocations]
        assert verdicts
        assert all(verdicts), [m for v in verdicts for m in v.messages()]
        assert all(d.headroom < 0.1 for v in verdicts for d in v.diffs)  # far inside float32's tolerance

    def test_only_the_outputs_the_node_declares_are_judged(self) -> None:
        node, invocation = only_invocation(models.runtime_weights(), {"X": models.x_input()})
        assert [d.name for d in judge_node(node, invocation).diffs] == ["Y_h"]

    def test_float16_node_on_onnxruntime_within_float16_tolerance(self) -> None:
        feeds = {"X": models.x_input(dtype=np.float16)}
        node, invocation = only_invocation(models.plain(dtype=np.float16), feeds)
        verdict = judge_node(node, invocation)
        assert verdict
        assert {d.allowed_rtol for d in verdict.diffs} == {1e-2}
        assert max(d.headroom for d in verdict.diffs) < 0.05  # output rounding to float16 only


class TestPlantedBugs:
    def test_perturbed_y_fails_naming_node_output_and_index(self) -> None:
        model = models.plain()
        y = instrument(model).sites[0].outputs["Y"]
        run = perturbing(ORT, y, (2, 0, 1, 3), 1e-3)
        node, invocation = only_invocation(model, {"X": models.x_input()}, run)
        verdict = judge_node(node, invocation)
        assert not verdict
        assert [d.name for d in verdict.failed] == ["Y"]
        (message,) = verdict.messages()
        assert message.startswith(
            "LSTM node rnn/LSTM: Tensor-likes are not close!\n\nMismatched elements: 1 / 40 (2.5%)"
        )
        assert "at index (2, 0, 1, 3) (up to 2e-06 allowed)" in message
        assert message.endswith("The failure occurred for item ['Y']")

    def test_perturbed_float16_output(self) -> None:
        model = models.plain(dtype=np.float16)
        y_h = instrument(model).sites[0].outputs["Y_h"]
        run = perturbing(REFERENCE, y_h, (0, 1, 2), 0.25)
        node, invocation = only_invocation(model, {"X": models.x_input(dtype=np.float16)}, run)
        verdict = judge_node(node, invocation)
        assert [d.name for d in verdict.failed] == ["Y_h"]
        assert verdict.failed[0].max_abs_index == (0, 1, 2)

    def test_loop_iteration_named_in_the_message(self) -> None:
        model = models.loop_body()
        y_h = instrument(model).sites[0].outputs["Y_h"]
        run = perturbing(ORT, y_h, (1, 0, 0, 0), 0.5)  # iteration 1 only
        feeds = {"X": models.x_input(), "steps": np.array(3), "h0": np.zeros((1, B, H), np.float32)}
        (node,) = capture(model, feeds, run)
        verdicts = [judge_node(node.node, inv) for inv in node.invocations]
        assert [bool(v) for v in verdicts] == [True, False, True]
        assert verdicts[1].messages()[0].startswith("LSTM node decode/body/step (iteration 1): Tensor-likes")

    def test_nonzero_padding_past_sequence_lens_fails(self) -> None:
        model = models.stack_with_lengths(layers=1)
        y = instrument(model).sites[0].outputs["Y"]
        run = perturbing(ORT, y, (4, 0, 1, 0), 1e-9)  # t=4 is past length 2 of batch entry 1
        feeds = {"X": models.x_input(), "lengths": np.array([5, 2], np.int32)}
        node, invocation = only_invocation(model, feeds, run)
        verdict = judge_node(node, invocation)
        assert verdict.failed[0].padding_violations == 1
        assert "1 padded position is not exactly zero" in verdict.messages()[0]

    def test_exact_tolerance_from_the_table_by_dtype(self) -> None:
        node, invocation = only_invocation(models.plain(), {"X": models.x_input()})
        verdict = judge_node(node, invocation, tolerances={"float32": Tolerance(0.0, 0.0)})
        assert not verdict  # float32 results are not the float64 reference to the last bit
        assert "Tensor-likes are not equal!" in verdict.messages()[0]
        assert judge_node(node, invocation, tolerances={"float16": Tolerance(0.0, 0.0)})  # not this dtype


class TestKnownDivergences:
    def test_onnxruntime_clip_fails_and_the_message_names_the_feature(self) -> None:
        node, invocation = only_invocation(models.plain(clip=0.3), {"X": models.x_input() * 4})
        verdict = judge_node(node, invocation)
        assert not verdict
        assert verdict.features == ("clip",)
        assert verdict.messages()[0].endswith(
            "\nThe node uses a feature with a known divergence: " + DIVERGENCE_FEATURES["clip"]
        )

    def test_onnx_reference_lstm_ignores_clip(self) -> None:
        peer = reference_runner(float64_lstm=False)
        node, invocation = only_invocation(models.plain(clip=0.3), {"X": models.x_input() * 4}, peer)
        assert not judge_node(node, invocation)
        node, invocation = only_invocation(models.plain(clip=0.3), {"X": models.x_input() * 4}, REFERENCE)
        assert judge_node(node, invocation)

    def test_features_of_attributes(self) -> None:
        _, second = capture(models.two_lstms(), {"X": models.x_input()}, ORT)
        assert divergence_features(second.node) == ("clip", "activations")
        (plain,) = capture(models.plain(layout=1, input_forget=1), {"X": models.x_input()}, REFERENCE)
        assert divergence_features(plain.node) == ("layout", "input_forget")
        assert judge_node(plain.node, plain.invocations[0])  # batch-first, judged on its own axes

    @pytest.mark.parametrize(
        ("lengths", "features"),
        [([5, 5], ()), ([5, 4], ("short_sequence",)), ([0, 5], ("zero_length_sequence", "short_sequence"))],
    )
    def test_features_of_sequence_lens_values(self, lengths: list[int], features: tuple[str, ...]) -> None:
        feeds = {"X": models.x_input(), "lengths": np.array(lengths, np.int32)}
        node, invocation = only_invocation(models.stack_with_lengths(layers=1), feeds)
        assert divergence_features(node, invocation) == features
        assert divergence_features(node) == ()  # the values are data: unknown without an invocation
