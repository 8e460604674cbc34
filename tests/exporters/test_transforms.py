"""Deployment transforms (``<exporter>+<transform>``): ids, artifacts, the error budget, LM metrics, bad input."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from conformance import evaluate
from conformance.cases import Case, CaseError, loads_suite
from conformance.cli import main
from conformance.inputs import build, case_weights
from conformance.lane import Lane, LaneContext, as_the_model_takes, run_lane
from conformance.status import FAIL, PASS, SKIP
from exporters.base import AnyWeights, ExportOptions, ExportOutcome, Model
from exporters.registry import UnknownExporterError, export, exporter_ids, get_exporter
from exporters.transforms import BUDGETS, TRANSFORMS, TransformedExporter, TransformError, split_exporter_id
from reference.config import LMConfig, LSTMConfig
from reference.models import perplexity
from reference.weights import LMWeights, generate

KNOWN = "known transforms: fp16, fp16-io32, int8-dynamic"
STACK = LSTMConfig(input_size=3, hidden_size=4, num_layers=2, direction="bidirectional")

SUITE = """\
suite = "transforms"

[defaults]
exporters = ["onnx-native+fp16", "onnx-native+fp16-io32", "onnx-native+int8-dynamic"]
runtimes = ["ort-cpu", "onnx-reference", "tract"]

[[case]]
id = "stack"
model = { input_size = 3, hidden_size = 4, num_layers = 2, direction = "bidirectional" }
inputs = { seq_len = 5, batch = 2, initial_states = true }

[[case]]
id = "lm"
model = { kind = "lm", vocab_size = 28, input_size = 16, hidden_size = 32 }
weights = { recipe = "trained" }
inputs = { seq_len = 12, batch = 2, tokens = "corpus" }
export = { opset = 21 }  # at opset 28 ONNX Runtime 1.32 has no DequantizeLinear kernel (cases/lm.toml)
"""


@pytest.fixture(scope="module", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        patch.delenv("CONFORMANCE_EXTRA_EXPORTERS", raising=False)
        yield


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    return {case.id: case for case in loads_suite(SUITE, display="transforms.toml").cases}


@pytest.fixture(scope="module")
def context() -> LaneContext:
    return LaneContext()


def lane(cases: dict[str, Case], context: LaneContext, lane_id: str) -> Any:
    case_id, exporter, runtime = lane_id.split("/")
    return run_lane(Lane("transforms.toml", cases[case_id], exporter, runtime), context)


def stack_export(transform: str) -> Any:
    artifact = export(STACK, generate(STACK, seed=0), f"onnx-native+{transform}", ExportOptions(initial_states=True))
    assert artifact.ok, artifact.reason
    return artifact


class IntOnlyExporter:
    """A plug-in exporter whose model has no float tensor: Identity on an int64 input."""

    id = "int-only"
    description = "int64 Identity"
    produces = "onnx"

    def unavailable(self) -> str | None:
        return None

    def not_applicable(self, model: Model, options: ExportOptions) -> str | None:
        return None

    def versions(self) -> dict[str, str]:
        return {}

    def export(self, model: Model, weights: AnyWeights, options: ExportOptions, path: Path) -> ExportOutcome:
        from onnx import TensorProto, helper

        value = helper.make_tensor_value_info
        graph = helper.make_graph(
            [helper.make_node("Identity", ["X"], ["Y"])],
            "g",
            [value("X", TensorProto.INT64, [2])],
            [value("Y", TensorProto.INT64, [2])],
        )
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return ExportOutcome()


class TestIds:
    def test_each_onnx_exporter_with_each_transform_is_nameable(self) -> None:
        ids = exporter_ids()
        for base in ("onnx-native", "torch-script", "torch-dynamo"):
            assert {f"{base}+{t}" for t in TRANSFORMS} <= set(ids)
        assert not [i for i in ids if i.startswith("torch-module+")]
        assert "+" not in "".join(exporter_ids(mutants=False))  # a case's default: the plain exporters

    def test_a_transformed_exporter(self) -> None:
        exporter = get_exporter("torch-script+fp16-io32")
        assert isinstance(exporter, TransformedExporter)
        assert (exporter.id, exporter.produces, exporter.base.id) == ("torch-script+fp16-io32", "onnx", "torch-script")
        assert "keep" not in exporter.description and "float32 inputs and outputs" in exporter.description
        assert split_exporter_id("onnx-native") == ("onnx-native", None)

    def test_an_unknown_transform_lists_the_known_ones(self) -> None:
        with pytest.raises(TransformError) as info:
            get_exporter("torch-script+fp8")
        assert str(info.value) == f"unknown transform 'fp8' in exporter id 'torch-script+fp8'; {KNOWN}"

    def test_a_torch_module_cannot_be_transformed(self) -> None:
        with pytest.raises(TransformError) as info:
            get_exporter("torch-module+fp16")
        assert str(info.value) == (
            "transform 'fp16' cannot apply to exporter id 'torch-module+fp16': torch-module produces a torch "
            f"module, not an ONNX file; {KNOWN}"
        )

    def test_an_unknown_base_exporter(self) -> None:
        with pytest.raises(UnknownExporterError, match=r"^exporter id 'torch-scrpt\+fp16': unknown exporter 'torch"):
            get_exporter("torch-scrpt+fp16")

    def test_a_case_file_with_an_unknown_transform(self) -> None:
        text = SUITE.replace('"onnx-native+int8-dynamic"]', '"torch-script+fp8"]')
        with pytest.raises(CaseError) as info:
            loads_suite(text, display="transforms.toml")
        assert str(info.value) == (
            f"transforms.toml:4: exporters: unknown transform 'fp8' in exporter id 'torch-script+fp8'; {KNOWN}"
        )

    def test_an_expectation_can_name_transformed_lanes_by_glob(self) -> None:
        text = SUITE + '\n[[case.expect]]\nexporter = "*+fp16*"\nruntime = "tract"\nreason = "r"\n'
        case = {c.id: c for c in loads_suite(text, display="t.toml").cases}["lm"]
        assert case.expectation("onnx-native+fp16-io32", "tract") is not None
        assert case.expectation("onnx-native+int8-dynamic", "tract") is None


class TestBadInputOnTheCommandLine:
    def test_export_with_an_unknown_transform(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        argv = ["export", "lm[trained-corpus]", "--suite", "lm", "--exporter", "torch-script+fp8", "--out"]
        assert main([*argv, str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err == (
            f"error: unknown transform 'fp8' in exporter id 'torch-script+fp8'; {KNOWN}\n"
        )

    def test_run_with_an_unknown_transform(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["run", "--suite", "lm", "--exporter", "torch-script+fp8", "--out", str(tmp_path / "r")]) == 2
        assert capsys.readouterr().err == f"error: unknown transform 'fp8' in exporter id 'torch-script+fp8'; {KNOWN}\n"

    def test_a_model_without_float_tensors(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("CONFORMANCE_EXTRA_EXPORTERS", f"int-only={__name__}:IntOnlyExporter")
        message = (
            "transform 'fp16' cannot apply to exporter id 'int-only+fp16': the model has no float32 tensor to "
            f"convert; {KNOWN}"
        )
        with pytest.raises(TransformError) as info:
            export(STACK, generate(STACK, seed=0), "int-only+fp16", cache_dir=tmp_path)
        assert str(info.value) == message
        argv = ["export", "lm[trained-corpus]", "--suite", "lm", "--exporter", "int-only+fp16", "--out"]
        assert main([*argv, str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err == f"error: {message}\n"


class TestArtifacts:
    def test_fp16_converts_every_float_tensor_inputs_and_outputs_too(self) -> None:
        artifact = stack_export("fp16")
        model = onnx.load(str(artifact.path))
        kinds = {t.data_type for t in model.graph.initializer}
        assert onnx.TensorProto.FLOAT16 in kinds and onnx.TensorProto.FLOAT not in kinds
        assert artifact.meta["transform"]["inputs"] == {"X": "float16", "initial_h": "float16", "initial_c": "float16"}
        assert set(artifact.meta["transform"]["outputs"].values()) == {"float16"}
        assert artifact.meta["transform"]["options"]["keep_io_types"] is False
        assert artifact.meta["op_histogram"]["LSTM"] == 2

    def test_fp16_io32_keeps_float32_at_the_boundary(self) -> None:
        artifact = stack_export("fp16-io32")
        model = onnx.load(str(artifact.path))
        assert onnx.TensorProto.FLOAT not in {t.data_type for t in model.graph.initializer}
        assert set(artifact.meta["transform"]["inputs"].values()) == {"float32"}
        assert set(artifact.meta["transform"]["outputs"].values()) == {"float32"}
        assert artifact.meta["op_histogram"]["Cast"] == 6  # 3 inputs in, 3 outputs out

    def test_int8_dynamic_makes_dynamic_quantize_lstm(self) -> None:
        artifact = stack_export("int8-dynamic")
        assert artifact.meta["op_histogram"]["DynamicQuantizeLSTM"] == 2 and "LSTM" not in artifact.meta["op_histogram"]
        assert artifact.meta["opset_imports"]["com.microsoft"] == 1
        assert artifact.meta["transform"]["needs"] == "com.microsoft.DynamicQuantizeLSTM"
        model = onnx.load(str(artifact.path))
        assert onnx.TensorProto.INT8 in {t.data_type for t in model.graph.initializer}

    def test_the_cache_keys_on_the_transform(self, tmp_path: Path) -> None:
        weights = generate(STACK, seed=0)
        paths = {export(STACK, weights, e, cache_dir=tmp_path).path for e in ("onnx-native", "onnx-native+fp16")}
        paths.add(export(STACK, weights, "onnx-native+fp16-io32", cache_dir=tmp_path).path)
        assert len(paths) == 3
        again = export(STACK, weights, "onnx-native+fp16", cache_dir=tmp_path)
        assert again.cached and again.path in paths
        assert again.meta["base"]["op_histogram"]["LSTM"] == 2  # the base export it was made from

    def test_the_exporter_alone_exports_then_transforms(self, tmp_path: Path) -> None:
        exporter = get_exporter("onnx-native+fp16-io32")
        outcome = exporter.export(STACK, generate(STACK, seed=0), ExportOptions(), tmp_path / "model.onnx")
        assert outcome.meta["transform"]["id"] == "fp16-io32"
        assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # the base model it wrote first is gone

    def test_feeds_are_cast_to_what_the_model_declares(self) -> None:
        feeds = {"X": np.ones((2, 1, 3), np.float32), "sequence_lens": np.array([2], np.int32)}
        cast = as_the_model_takes(feeds, {"transform": {"inputs": {"X": "float16", "sequence_lens": "int32"}}})
        assert cast["X"].dtype == np.float16 and cast["sequence_lens"].dtype == np.int32
        assert as_the_model_takes(feeds, {})["X"].dtype == np.float32


class TestLanes:
    @pytest.mark.parametrize("transform", list(TRANSFORMS))
    def test_a_stack_within_budget_on_ort(self, cases: dict[str, Case], context: LaneContext, transform: str) -> None:
        record = lane(cases, context, f"stack/onnx-native+{transform}/ort-cpu")
        assert record.status == PASS, record.message
        assert record.message.startswith(f"within the {transform} error budget (Y atol ")
        budget = record.detail["budget"]
        assert budget["transform"] == transform and budget["Y_c"] == dict(
            zip(("atol", "rtol"), BUDGETS[transform]["Y_c"], strict=True)
        )
        assert "lm" not in record.detail  # not a language model
        assert all(d.max_abs > 0 for d in record.outputs)  # transformed: not the float32 numbers

    def test_a_language_model_reports_what_it_costs(self, cases: dict[str, Case], context: LaneContext) -> None:
        record = lane(cases, context, "lm/onnx-native+int8-dynamic/ort-cpu")
        assert record.status == PASS, record.message
        metrics = record.detail["lm"]
        assert set(metrics) == {
            "next_token_agreement", "positions", "agreeing_positions", "perplexity_reference", "perplexity",
            "perplexity_increase", "scored_tokens",
        }  # fmt: skip
        case, weights = cases["lm"], case_weights(cases["lm"])
        assert isinstance(case.model, LMConfig) and isinstance(weights, LMWeights)
        tokens = build(case, weights).feeds["tokens"]
        assert metrics["perplexity_reference"] == pytest.approx(perplexity(case.model, weights, tokens))
        assert (metrics["positions"], metrics["scored_tokens"]) == (24, 22)
        assert metrics["perplexity_increase"] == pytest.approx(
            metrics["perplexity"] / metrics["perplexity_reference"] - 1
        )
        assert "perplexity " in record.message and "next-token agreement" in record.message

    def test_a_too_tight_budget_fails_and_names_it(
        self, cases: dict[str, Case], context: LaneContext, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(BUDGETS, "fp16", {k: (1e-9, 1e-9) for k in BUDGETS["fp16"]})
        record = lane(cases, context, "lm/onnx-native+fp16/ort-cpu")
        assert record.status == FAIL
        first, second = record.message.split("\n")[:2]
        assert first == "outside the fp16 error budget (log_probs atol 1e-09, rtol 1e-09):"
        assert second == "Tensor-likes are not close!"
        assert record.message.split("\n")[-1].startswith("perplexity ")

    @pytest.mark.parametrize("runtime", ["onnx-reference", "tract"])
    def test_a_runtime_without_the_contrib_op_is_skipped(
        self, cases: dict[str, Case], context: LaneContext, runtime: str
    ) -> None:
        record = lane(cases, context, f"stack/onnx-native+int8-dynamic/{runtime}")
        assert record.status == SKIP
        assert record.message == (
            "onnx-native+int8-dynamic: int8-dynamic makes com.microsoft.DynamicQuantizeLSTM, an ONNX Runtime contrib "
            f"op; {runtime} does not implement it"
        )


class TestLMMetrics:
    # Three positions, one sequence, three tokens; the tokens are 0, 1, 2. Rows are next-token probabilities.
    REFERENCE = np.log([[[0.3, 0.5, 0.2]], [[0.5, 0.25, 0.25]], [[0.2, 0.2, 0.6]]])  # argmax 1, 0, 2
    RUNTIME = np.log([[[0.5, 0.25, 0.25]], [[0.5, 0.25, 0.25]], [[0.1, 0.1, 0.8]]])  # argmax 0, 0, 2
    TOKENS = np.array([[0], [1], [2]])

    def test_by_hand(self) -> None:
        metrics = evaluate.lm_metrics(self.TOKENS, self.REFERENCE, self.RUNTIME.astype(np.float32))
        assert metrics is not None
        # Scored: token 1 after position 0, token 2 after position 1.
        assert metrics["perplexity_reference"] == pytest.approx(2**1.5)  # exp(-(ln 0.5 + ln 0.25) / 2)
        assert metrics["perplexity"] == pytest.approx(4.0)  # exp(-(ln 0.25 + ln 0.25) / 2)
        assert metrics["perplexity_increase"] == pytest.approx(4 / 2**1.5 - 1)
        assert (metrics["agreeing_positions"], metrics["positions"], metrics["scored_tokens"]) == (2, 3, 2)
        assert metrics["next_token_agreement"] == pytest.approx(2 / 3)
        assert evaluate.lm_summary(metrics) == (
            "perplexity 4 (reference 2.828, +41.421%), next-token agreement 66.7% (2/3)"
        )

    def test_batch_first_reads_the_same_positions(self) -> None:
        time_major = evaluate.lm_metrics(self.TOKENS, self.REFERENCE, self.RUNTIME)
        batch_first = evaluate.lm_metrics(
            self.TOKENS.T, self.REFERENCE.transpose(1, 0, 2), self.RUNTIME.transpose(1, 0, 2), batch_first=True
        )
        assert batch_first == time_major

    def test_a_non_finite_perplexity_is_text_and_a_wrong_shape_is_none(self) -> None:
        runtime = self.RUNTIME.copy()
        runtime[0, 0, 1] = -math.inf
        metrics = evaluate.lm_metrics(self.TOKENS, self.REFERENCE, runtime)
        assert metrics is not None and metrics["perplexity"] == metrics["perplexity_increase"] == "inf"
        assert evaluate.lm_summary(metrics).startswith("perplexity inf (reference 2.828), next-token agreement")
        assert evaluate.lm_metrics(self.TOKENS, self.REFERENCE, runtime[:2]) is None


def test_every_transform_has_a_budget_for_every_output() -> None:
    assert set(BUDGETS) == set(TRANSFORMS)
    for budget in BUDGETS.values():
        assert set(budget) == {"Y", "Y_h", "Y_c", "log_probs"}
        assert all(0 < atol <= 1 and 0 < rtol <= 1 for atol, rtol in budget.values())


class TestCommands:
    def test_list_exporters_shows_the_transforms(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["list", "exporters"]) == 0
        out = capsys.readouterr().out
        assert "Transforms (any ONNX exporter: <exporter>+<transform>, e.g. torch-script+fp16)" in out
        for transform_id in TRANSFORMS:
            assert transform_id in out

    def test_export_writes_the_inputs_a_float16_model_takes(self, tmp_path: Path) -> None:
        from onnx import numpy_helper

        assert main(["export", "forward", "--exporter", "onnx-native+fp16", "--out", str(tmp_path / "x")]) == 0
        tensor = onnx.load_tensor(str(tmp_path / "x" / "test_data_set_0" / "input_0.pb"))
        assert numpy_helper.to_array(tensor).dtype == np.float16

    def test_run_names_the_known_transforms_for_an_unknown_one(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["run", "--exporter", "torch-script+fp8", "--out", str(tmp_path / "x")]) == 2
        assert capsys.readouterr().err == (
            "error: unknown transform 'fp8' in exporter id 'torch-script+fp8'; "
            "known transforms: fp16, fp16-io32, int8-dynamic\n"
        )
