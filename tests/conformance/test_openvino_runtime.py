"""OpenVINO runtimes: outputs against the float64 reference, the precision each lane reports, missing package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance.compare import default_tolerance
from conformance.runtimes.openvino_runtime import (
    INSTALL_HINT,
    TOLERANCE_DTYPES,
    OpenVinoRuntime,
    condensed_error,
    discover,
)
from exporters.base import Artifact, ExportOptions
from reference.config import LSTMConfig
from reference.models import run_stack
from reference.weights import generate

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason=INSTALL_HINT)
CONFIG = LSTMConfig(input_size=3, hidden_size=4, direction="bidirectional")
OPTIONS = ExportOptions(initial_states=True)


def onnx_artifact(path: Path, config: LSTMConfig, options: ExportOptions) -> Artifact:
    import onnx

    from exporters.onnx_native import build_model

    onnx.save(build_model(config, generate(config, seed=1), options), str(path))
    return Artifact("onnx-native", "ok", path=path)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Artifact, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A bidirectional LSTM with initial states: the ONNX file, feeds and float64 reference outputs."""
    rng = np.random.default_rng(0)
    feeds = {
        "X": rng.uniform(-1, 1, (5, 2, 3)).astype(np.float32),
        "initial_h": rng.uniform(-1, 1, (2, 2, 4)).astype(np.float32),
        "initial_c": rng.uniform(-1, 1, (2, 2, 4)).astype(np.float32),
    }
    out = run_stack(
        CONFIG, generate(CONFIG, seed=1), feeds["X"], initial_h=feeds["initial_h"], initial_c=feeds["initial_c"]
    )
    artifact = onnx_artifact(tmp_path_factory.mktemp("openvino") / "lstm.onnx", CONFIG, OPTIONS)
    return artifact, feeds, {"Y": out.output, "Y_h": out.h_n, "Y_c": out.c_n}


def assert_within(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], dtype: str) -> None:
    tolerance = default_tolerance(dtype)
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        assert actual[name].dtype == np.float32, name
        np.testing.assert_allclose(actual[name], value, atol=tolerance.atol, rtol=tolerance.rtol, err_msg=name)


class TestIds:
    def test_two_runtimes(self) -> None:
        f32, auto = discover()
        assert (f32.id, f32.precision, f32.consumes, f32.required_provider) == ("openvino-cpu", "f32", "onnx", None)
        assert (auto.id, auto.precision) == ("openvino-cpu-auto", "auto")
        assert f32.description == "OpenVINO, CPU plugin, INFERENCE_PRECISION_HINT=f32"
        assert auto.description == "OpenVINO, CPU plugin, the device's default precision"

    def test_unavailable_without_the_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
        assert OpenVinoRuntime().unavailable() == "openvino is not installed (pip install 'lstm-conformance[openvino]')"


class TestCondensedError:
    TEXT = (
        "Exception from src/inference/src/cpp/core.cpp:132:\n"
        "Exception from src/core/src/pass/graph_rewrite.cpp:298:\n"
        "[ConvertLSTMSequenceToTensorIterator] END: node: opset5::LSTMSequence LSTMSequence_53 (...) -> (...) "
        "CALLBACK HAS THROWN: Unknown activation function: softsign\n\n"
    )

    def test_reason_and_pass(self) -> None:
        assert condensed_error(self.TEXT) == (
            "Unknown activation function: softsign (ConvertLSTMSequenceToTensorIterator)"
        )

    def test_reason_on_its_own_line(self) -> None:
        text = "Exception from a.cpp:1:\n[LSTMCellDecomposition] END: node: ...\nUnsupported activation function\n"
        assert condensed_error(text) == "Unsupported activation function (LSTMCellDecomposition)"

    def test_plain_message(self) -> None:
        assert condensed_error("something failed") == "something failed"


@needs_openvino
class TestF32:
    def test_matches_the_reference_to_float32_tolerance(self, case: Any) -> None:
        artifact, feeds, expected = case
        session = OpenVinoRuntime("f32").open(artifact, CONFIG, generate(CONFIG, seed=1))
        assert_within(session.run(feeds), expected, "float32")

    def test_settings_report_f32(self) -> None:
        import openvino as ov

        settings = OpenVinoRuntime("f32").settings()
        assert settings["openvino"] == ov.get_version()
        assert (settings["device"], settings["precision_hint"]) == ("CPU", "f32")
        assert (settings["inference_precision"], settings["tolerance_dtype"]) == ("f32", "float32")
        assert {"inference_num_threads", "num_streams", "performance_hint"} <= set(settings)

    def test_available_here(self) -> None:
        assert OpenVinoRuntime().unavailable() is None

    def test_placement_names_the_recurrent_layer_and_its_precision(self, case: Any) -> None:
        artifact, feeds, _ = case
        session = OpenVinoRuntime("f32").open(artifact, CONFIG, generate(CONFIG, seed=1))
        session.run(feeds)
        placement = session.placement()
        assert placement
        assert all(node.endswith("(RNNSeq)") or node.endswith("(RNNCell)") for node in placement)
        assert set(placement.values()) == {"CPU f32"}

    def test_timed_call_runs_one_inference(self, case: Any) -> None:
        artifact, feeds, _ = case
        session = OpenVinoRuntime("f32").open(artifact, CONFIG, generate(CONFIG, seed=1))
        call, sync, includes = session.timed(feeds)
        call()
        assert sync is None
        assert includes == "InferRequest.infer, input tensors set before timing, outputs not copied"

    def test_a_compile_failure_is_one_line_naming_the_reason(self, tmp_path: Path) -> None:
        config = LSTMConfig(input_size=3, hidden_size=4, activations=("Sigmoid", "Softsign", "Tanh"))
        artifact = onnx_artifact(tmp_path / "softsign.onnx", config, ExportOptions())
        with pytest.raises(RuntimeError) as info:
            OpenVinoRuntime("f32").open(artifact, config, generate(config, seed=1))
        message = str(info.value)
        assert message.startswith("OpenVINO cannot compile the model: ")
        assert "softsign" in message.lower()
        assert "\n" not in message


@needs_openvino
class TestAuto:
    def test_reports_the_compiled_models_precision(self) -> None:
        import openvino as ov

        settings = OpenVinoRuntime("auto").settings()
        device_default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
        assert settings["precision_hint"] == "device default"
        assert settings["inference_precision"] == device_default
        assert settings["tolerance_dtype"] == TOLERANCE_DTYPES[device_default]

    def test_matches_the_reference_to_the_tolerance_of_that_precision(self, case: Any) -> None:
        artifact, feeds, expected = case
        runtime = OpenVinoRuntime("auto")
        session = runtime.open(artifact, CONFIG, generate(CONFIG, seed=1))
        assert_within(session.run(feeds), expected, runtime.settings()["tolerance_dtype"])


@needs_openvino
class TestForkHazard:
    """Once OpenVINO compiled a model in this process, ``check`` must not fork a worker into its thread
    pool: the child deadlocked in its first compile (measured; an ov::threading::ITaskExecutor wait)."""

    def test_check_runs_openvino_here_and_says_so(self, case: Any) -> None:
        from conformance.check import CheckOptions, run_check
        from conformance.runtimes.openvino_runtime import OpenVinoSession

        artifact, _, _ = case
        assert artifact.path is not None
        OpenVinoSession(str(artifact.path), "f32").close()  # the thread pool now runs in this process
        assert OpenVinoRuntime().fork_hazard() is not None
        report = run_check(artifact.path, CheckOptions(runtimes=["openvino-cpu"], timeout=60))
        assert "openvino-cpu ran in this process, not in a worker: OpenVINO compiled a model in this process" in (
            "\n".join(report.notes)
        )
        assert {r.status for r in report.results} == {"pass"}
        assert not [r for r in report.results if r.status == "timeout"]
