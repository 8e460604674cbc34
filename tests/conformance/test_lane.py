"""One lane in-process: statuses, expectations, skips, errors, the planted wrong model and placement."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from conformance.cases import Case, load_suite
from conformance.cli import main
from conformance.lane import NO_EXPORT, Lane, LaneContext, run_lane
from conformance.records import Expected, Result
from conformance.runner import ResultSink, read_jsonl
from conformance.status import ERROR, FAIL, PASS, SKIP, XFAIL, XPASS
from tests.conformance.fake_runtimes import LSTM_NODE, TRANSPOSE_NODE

SUITE = """\
suite = "lanes"

[defaults]
model = { input_size = 3, hidden_size = 4 }
inputs = { seq_len = 4, batch = 2 }
exporters = ["onnx-native"]
runtimes = ["reference", "ort-cpu"]

[[case]]
id = "plain"
exporters = ["onnx-native", "torch-module"]
runtimes = ["reference", "ort-cpu", "ort-cuda", "torch-cpu", "torch-cuda"]

[[case]]
id = "exact"
description = "atol = rtol = 0: a float32 runtime cannot match the float64 reference"
tolerance = { atol = 0.0, rtol = 0.0 }

[[case.expect]]
runtime = "ort-cpu"
reason = "float32 is not float64"
reference = "https://example.invalid/issue/1"

[[case]]
id = "exact-y"
description = "only Y is held to atol = rtol = 0; the expectation names Y_c"
tolerance_outputs = { Y = { atol = 0.0, rtol = 0.0 } }

[[case.expect]]
runtime = "ort-cpu"
output = "Y_c"
reason = "Y_c diverges"

[[case]]
id = "exact-wrong-status"
tolerance = { atol = 0.0, rtol = 0.0 }

[[case.expect]]
runtime = "ort-cpu"
status = "error"
reason = "ort-cpu raises"

[[case]]
id = "stale"
description = "an expectation on a lane that passes"

[[case.expect]]
runtime = "reference"
reason = "an old bug, since fixed"

[[case]]
id = "peepholes"
model = { peepholes = true }
exporters = ["onnx-native", "torch-script", "torch-module"]
runtimes = ["ort-cpu", "torch-cpu"]

[[case]]
id = "bad-opset"
exporters = ["torch-script"]
runtimes = ["ort-cpu"]
export = { opset = 99 }

[[case]]
id = "bad-opset-expected"
exporters = ["torch-script"]
runtimes = ["ort-cpu"]
export = { opset = 99 }

[[case.expect]]
status = "error"
reason = "torch-script has no opset 99"

[[case]]
id = "gates"
description = "the planted wrong model: gate blocks permuted"
exporters = ["onnx-native", "mutant-gate-order"]
runtimes = ["ort-cpu"]

[[case]]
id = "fakes"
runtimes = ["open-fails", "run-fails", "cuda-on-cpu", "cuda-on-cuda", "non-finite"]
"""


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lanes") / "lanes.toml"
    path.write_text(SUITE)
    return path


@pytest.fixture(scope="module")
def cases(suite_path: Path) -> dict[str, Case]:
    with pytest.MonkeyPatch.context() as patch:  # the fake runtime ids must be known while loading
        from tests.conformance.conftest import FAKE_RUNTIMES_ENV

        patch.setenv("CONFORMANCE_EXTRA_RUNTIMES", FAKE_RUNTIMES_ENV)
        return {case.id: case for case in load_suite(suite_path).cases}


@pytest.fixture(scope="module")
def context() -> LaneContext:
    return LaneContext()


@pytest.fixture
def run(cases: dict[str, Case], suite_path: Path, context: LaneContext):  # type: ignore[no-untyped-def]
    def run(lane_id: str) -> Result:
        case_id, exporter, runtime = lane_id.split("/")
        record = run_lane(Lane(str(suite_path), cases[case_id], exporter, runtime), context)
        assert record.id == lane_id
        return record

    return run


def cuda_available() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def torch_cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class TestPass:
    def test_reference_lane(self, run: Any, suite_path: Path) -> None:
        record = run("plain/none/reference")
        assert record.status == PASS
        assert (record.kind, record.suite, record.case, record.exporter, record.runtime) == (
            "lane",
            str(suite_path),
            "plain",
            NO_EXPORT,
            "reference",
        )
        assert record.message.startswith("worst headroom 0 on ")
        assert record.artifact is None
        assert record.settings["dtype"] == "float64"

    def test_the_record_carries_the_case_features(self, run: Any, cases: dict[str, Case]) -> None:
        record = run("plain/none/reference")
        assert record.features == tuple(cases["plain"].features())
        assert record.features  # a renderer groups by them without reloading the suite

    def test_onnx_native_on_ort_cpu(self, run: Any) -> None:
        record = run("plain/onnx-native/ort-cpu")
        assert record.status == PASS, record.message
        assert record.message.startswith("worst headroom ")
        assert sorted(d.name for d in record.outputs) == ["Y", "Y_c", "Y_h"]
        for diff in record.outputs:
            assert diff.passed is True
            assert 0 < diff.headroom < 1
        assert record.artifact is not None
        assert record.artifact["status"] == "ok"
        assert record.artifact["exporter"] == "onnx-native"
        assert record.artifact["op_histogram"]["LSTM"] == 1
        lstm_nodes = [node for node in record.placement if node.endswith("(LSTM)")]
        assert len(lstm_nodes) == 1
        assert set(record.placement.values()) == {"CPUExecutionProvider"}
        assert record.settings["provider"] == "CPUExecutionProvider"
        assert record.duration_s is not None and record.duration_s > 0

    def test_a_second_context_reads_the_export_cache(self, run: Any, cases: dict[str, Case], suite_path: Path) -> None:
        run("plain/onnx-native/ort-cpu")
        lane = Lane(str(suite_path), cases["plain"], "onnx-native", "ort-cpu")
        record = run_lane(lane, LaneContext())
        assert record.status == PASS
        assert record.artifact is not None and record.artifact["cached"] is True

    def test_torch_module_on_torch_cpu(self, run: Any) -> None:
        record = run("plain/torch-module/torch-cpu")
        assert record.status == PASS, record.message
        assert record.placement == {}
        assert "placement" not in record.to_dict()


class TestExpectations:
    def test_xfail_when_the_expected_divergence_shows(self, run: Any) -> None:
        record = run("exact/onnx-native/ort-cpu")
        assert record.status == XFAIL
        assert record.message.startswith("Tensor-likes are not equal!\n\nMismatched elements: ")
        assert "The failure occurred for item ['Y']" in record.message
        assert record.expected == Expected(
            reason="float32 is not float64", status="fail", reference="https://example.invalid/issue/1", output="*"
        )

    def test_an_unmatched_lane_of_the_same_case_passes(self, run: Any) -> None:
        record = run("exact/none/reference")  # float64 on float64: equal, and no expectation names it
        assert record.status == PASS
        assert record.expected is None

    def test_fail_when_other_outputs_diverge(self, run: Any) -> None:
        record = run("exact-y/onnx-native/ort-cpu")
        assert record.status == FAIL
        assert "The failure occurred for item ['Y']" in record.message
        assert record.message.endswith("\n(expected fail on Y_c instead)")
        assert record.output("Y_h").passed is True

    def test_fail_when_it_fails_where_an_error_was_expected(self, run: Any) -> None:
        record = run("exact-wrong-status/onnx-native/ort-cpu")
        assert record.status == FAIL
        assert record.message.endswith("\n(expected error on * instead)")

    def test_xpass_when_the_divergence_is_gone(self, run: Any) -> None:
        record = run("stale/none/reference")
        assert record.status == XPASS
        assert record.message == "expected to fail (an old bug, since fixed) but passed"
        assert record.expected == Expected(reason="an old bug, since fixed", status="fail", reference=None, output="*")
        assert record.output("Y").passed is True

    @pytest.mark.usefixtures("fake_runtimes")  # the suite names them
    def test_xpass_fails_the_run(self, suite_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code = main(
            ["run", "--suite", str(suite_path), "-k", "stale", "--runtime", "reference", "--out", str(tmp_path)]
        )
        stdout = capsys.readouterr().out
        assert code == 1
        assert "XPASS stale/none/reference" in stdout
        assert "expected to fail (an old bug, since fixed) but passed" in stdout


class TestSkip:
    @pytest.mark.skipif(cuda_available(), reason="onnxruntime has the CUDA EP here")
    def test_unavailable_execution_provider(self, run: Any) -> None:
        record = run("plain/onnx-native/ort-cuda")
        assert record.status == SKIP
        assert record.message.startswith("onnxruntime ")
        assert "has no CUDAExecutionProvider (available: " in record.message
        assert record.outputs == ()

    @pytest.mark.skipif(torch_cuda_available(), reason="torch has CUDA here")
    def test_unavailable_torch_device(self, run: Any) -> None:
        record = run("plain/torch-module/torch-cuda")
        assert record.status == SKIP
        assert record.message.startswith("torch.cuda.is_available() is False (torch ")

    @pytest.mark.parametrize(
        "lane_id", ["peepholes/torch-script/ort-cpu", "peepholes/torch-module/torch-cpu"], ids=["onnx", "torch"]
    )
    def test_not_applicable_exporter(self, run: Any, lane_id: str) -> None:
        record = run(lane_id)
        exporter = lane_id.split("/")[1]
        assert record.status == SKIP
        assert record.message == f"{exporter}: torch.nn.LSTM has no peephole connections"
        assert record.artifact is not None and record.artifact["status"] == "not-applicable"

    def test_the_applicable_exporter_of_the_same_case_runs(self, run: Any) -> None:
        assert run("peepholes/onnx-native/ort-cpu").status == PASS


class TestError:
    def test_export_failure(self, run: Any) -> None:
        record = run("bad-opset/torch-script/ort-cpu")
        assert record.status == ERROR
        assert record.message.startswith("export failed: TorchOnnxExportError: ")
        assert "Unsupported onnx_opset_version: 99" in record.message
        assert record.artifact is not None and record.artifact["status"] == "failed"

    def test_expected_export_failure(self, run: Any) -> None:
        record = run("bad-opset-expected/torch-script/ort-cpu")
        assert record.status == XFAIL
        assert record.expected is not None and record.expected.status == "error"
        assert "Unsupported onnx_opset_version: 99" in record.message

    @pytest.mark.usefixtures("fake_runtimes")
    def test_load_failure_is_one_line(self, run: Any) -> None:
        record = run("fakes/none/open-fails")
        assert record.status == ERROR
        assert record.message == "open-fails could not load the model: RuntimeError: corrupt model"

    @pytest.mark.usefixtures("fake_runtimes")
    def test_run_failure(self, run: Any) -> None:
        record = run("fakes/none/run-fails")
        assert record.status == ERROR
        assert record.message == "run-fails failed to run: ValueError: bad input shape"


class TestPlantedWrongModel:
    def test_the_mutant_fails_where_the_true_export_passes(self, run: Any) -> None:
        assert run("gates/onnx-native/ort-cpu").status == PASS
        record = run("gates/mutant-gate-order/ort-cpu")
        assert record.status == FAIL
        assert sorted(diff.name for diff in record.outputs if not diff.passed) == ["Y", "Y_c", "Y_h"]

    @pytest.mark.usefixtures("fake_runtimes")  # the suite names them
    def test_run_fails_and_explains(self, suite_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        argv = ["run", "--suite", str(suite_path), "--exporter", "mutant-gate-order", "--runtime", "ort-cpu"]
        code = main([*argv, "--out", str(tmp_path)])
        stdout = capsys.readouterr().out
        assert code == 1
        assert "1 failing lane:" in stdout  # the console renderer now writes the plural only when it is one
        assert "FAIL gates/mutant-gate-order/ort-cpu" in stdout
        assert "Tensor-likes are not close!" in stdout
        assert "Greatest absolute difference: " in stdout
        for output in ("Y", "Y_h", "Y_c"):
            assert f"The failure occurred for item [{output!r}]" in stdout


@pytest.mark.usefixtures("fake_runtimes")
class TestPlacement:
    def test_an_lstm_node_on_the_wrong_provider_fails_the_lane(self, run: Any) -> None:
        record = run("fakes/none/cuda-on-cpu")
        assert record.status == FAIL
        assert record.message == (
            f"LSTM node(s) {LSTM_NODE} ran on CPUExecutionProvider, not CUDAExecutionProvider: not a cuda-on-cpu result"
        )
        assert record.outputs and all(diff.passed for diff in record.outputs)  # right numbers, wrong place
        assert record.placement[LSTM_NODE] == "CPUExecutionProvider"

    def test_only_lstm_nodes_must_run_on_the_required_provider(self, run: Any) -> None:
        record = run("fakes/none/cuda-on-cuda")
        assert record.status == PASS
        assert record.placement == {LSTM_NODE: "CUDAExecutionProvider", TRANSPOSE_NODE: "CPUExecutionProvider"}


@pytest.mark.usefixtures("fake_runtimes")
class TestBrokenOutputs:
    def test_non_finite_values_and_wrong_shapes_fail_with_a_message_each(self, run: Any) -> None:
        record = run("fakes/none/non-finite")
        assert record.status == FAIL
        message = record.message
        assert (
            "Non-finite values where expected is finite: 1 NaN, 0 Inf\n\nThe failure occurred for item ['Y']" in message
        )
        assert (
            "Non-finite values where expected is finite: 0 NaN, 1 Inf\n\nThe failure occurred for item ['Y_h']"
            in message
        )
        assert message.endswith(
            "Shape mismatch: expected [1, 2, 4], got [1, 2, 1]\n\nThe failure occurred for item ['Y_c']"
        )

    def test_the_record_is_strict_json(self, run: Any, tmp_path: Path) -> None:
        record = run("fakes/none/non-finite")
        sink = ResultSink(tmp_path / "results.jsonl")
        try:
            sink.write(record)  # JSON has no NaN or Infinity: they travel as strings
        finally:
            sink.close()
        line = json.loads((tmp_path / "results.jsonl").read_text(), parse_constant=_refuse)
        assert line["outputs"]["Y"]["max_abs"] == "nan"
        assert line["outputs"]["Y_h"]["max_abs"] == "inf"
        [written] = read_jsonl(tmp_path / "results.jsonl")
        read = {diff.name: diff for diff in written.outputs}
        assert math.isnan(read["Y"].max_abs)
        assert read["Y_h"].max_abs == math.inf
        assert written.to_dict() == json.loads(json.dumps(record.to_dict()))


def _refuse(constant: str) -> Any:
    raise AssertionError(f"not strict JSON: {constant}")
