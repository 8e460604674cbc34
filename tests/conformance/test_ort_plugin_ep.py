"""ONNX Runtime plugin EPs: --ep-library checks, discovery, "no device", "ran on the CPU EP", real runs."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnxruntime
import pytest

from conformance.compare import default_tolerance
from conformance.evaluate import placement_problem
from conformance.runtimes import ort_plugin_ep
from conformance.runtimes.ort_plugin_ep import (
    EP_LIBRARIES_ENV,
    EpLibrary,
    PluginEpRuntime,
    assignment_placement,
    discover,
    env_ep_libraries,
    ep_libraries_env,
    ep_short_name,
    one_line,
    parse_ep_library,
)
from exporters.base import Artifact, ExportOptions
from exporters.errors import BadInputError
from reference.config import LSTMConfig
from reference.models import run_stack
from reference.weights import generate

OPENVINO_EP = "OpenVINOExecutionProvider"
needs_openvino_ep = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime_ep_openvino") is None,
    reason="onnxruntime-ep-openvino is not installed (pip install onnxruntime-ep-openvino)",
)
CONFIG = LSTMConfig(input_size=3, hidden_size=4, direction="bidirectional")
WEIGHTS = generate(CONFIG, seed=1)
FAKE = EpLibrary("fake", Path("/nowhere/libfake_ep.so"), ("FakeExecutionProvider",), "test double")


def a_shared_library_that_is_not_an_ep() -> Path:
    """NumPy's compiled core: a shared library everywhere this suite runs, without CreateEpFactories."""
    spec = importlib.util.find_spec("numpy._core._multiarray_umath") or importlib.util.find_spec(
        "numpy.core._multiarray_umath"  # NumPy 1.x
    )
    assert spec is not None and spec.origin is not None
    return Path(spec.origin)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Artifact, dict[str, np.ndarray], dict[str, np.ndarray]]:
    import onnx

    from exporters.onnx_native import build_model

    path = tmp_path_factory.mktemp("plugin-ep") / "lstm.onnx"
    onnx.save(build_model(CONFIG, WEIGHTS, ExportOptions()), str(path))
    x = np.random.default_rng(0).uniform(-1, 1, (5, 2, 3)).astype(np.float32)
    out = run_stack(CONFIG, WEIGHTS, x)
    return Artifact("onnx-native", "ok", path=path), {"X": x}, {"Y": out.output, "Y_h": out.h_n, "Y_c": out.c_n}


class TestEpLibraryOption:
    def test_missing_file(self, tmp_path: Path) -> None:
        missing = tmp_path / "libnothing.so"
        with pytest.raises(ValueError) as info:
            parse_ep_library(f"OpenVINOExecutionProvider={missing}")
        assert str(info.value) == f"--ep-library OpenVINOExecutionProvider={missing}: no such file: {missing}"

    def test_a_folder(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError) as info:
            parse_ep_library(f"X={tmp_path}")
        assert str(info.value) == f"--ep-library X={tmp_path}: not a file: {tmp_path}"

    def test_not_a_shared_library(self, tmp_path: Path) -> None:
        text = tmp_path / "notes.txt"
        text.write_text("hello")
        with pytest.raises(ValueError) as info:
            parse_ep_library(f"X={text}")
        assert str(info.value) == f"--ep-library X={text}: {text} is not a shared library"

    def test_a_shared_library_without_the_entry_point(self) -> None:
        library = a_shared_library_that_is_not_an_ep()
        with pytest.raises(ValueError) as info:
            parse_ep_library(f"X={library}")
        assert str(info.value) == (
            f"--ep-library X={library}: {library} is not an ONNX Runtime plugin EP library"
            " (no CreateEpFactories symbol)"
        )

    @pytest.mark.parametrize("entry", ["OpenVINOExecutionProvider", "=/lib/x.so", "X=", ""])
    def test_bad_syntax(self, entry: str) -> None:
        with pytest.raises(ValueError) as info:
            parse_ep_library(entry)
        assert str(info.value) == (
            f"--ep-library {entry}: expected NAME=PATH (NAME: the execution provider, e.g. OpenVINOExecutionProvider)"
        )

    def test_messages_are_one_line_bad_input(self, tmp_path: Path) -> None:
        for entry in ("X", f"X={tmp_path / 'a.so'}", f"X={a_shared_library_that_is_not_an_ep()}"):
            with pytest.raises(BadInputError) as info:  # a ValueError: the CLI exits 2
                parse_ep_library(entry)
            assert "\n" not in str(info.value)

    @needs_openvino_ep
    def test_a_plugin_library_is_accepted(self) -> None:
        package = importlib.import_module("onnxruntime_ep_openvino")
        path = Path(package.get_library_path())
        library = parse_ep_library(f"{OPENVINO_EP}={path}")
        assert (library.name, library.path, library.ep_names, library.problem) == (
            OPENVINO_EP,
            path,
            (OPENVINO_EP,),
            None,
        )
        assert ep_libraries_env([f"{OPENVINO_EP}={path}"]) == f"{OPENVINO_EP}={path}"

    def test_a_bad_entry_in_the_environment_becomes_an_unavailable_runtime(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        missing = tmp_path / "libgone.so"
        monkeypatch.setenv(EP_LIBRARIES_ENV, f"GoneExecutionProvider={missing}")
        (library,) = env_ep_libraries()
        assert library.problem == f"--ep-library GoneExecutionProvider={missing}: no such file: {missing}"
        (runtime,) = [r for r in discover() if r.ep_name == "GoneExecutionProvider"]
        assert runtime.id == "ort-gone"
        assert runtime.unavailable() == library.problem
        settings = runtime.settings()  # still describes what it would run
        assert (settings["provider"], settings["devices"], settings["library"]) == ("GoneExecutionProvider", [], "None")

    def test_environment_entries_are_separated_by_pathsep(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(EP_LIBRARIES_ENV, os.pathsep.join(["A=/no/a.so", "B=/no/b.so"]))
        assert [lib.name for lib in env_ep_libraries()] == ["A", "B"]


class TestNames:
    @pytest.mark.parametrize(
        ("ep", "short"),
        [
            ("OpenVINOExecutionProvider", "openvino"),
            ("OpenVINOExecutionProvider.AUTO", "openvino-auto"),
            ("NvTensorRTRTXExecutionProvider", "nvtensorrtrtx"),
            ("WebGpuExecutionProvider", "webgpu"),
        ],
    )
    def test_short_names(self, ep: str, short: str) -> None:
        assert ep_short_name(ep) == short

    def test_runtime_attributes(self) -> None:
        runtime = PluginEpRuntime(FAKE, "FakeExecutionProvider")
        assert (runtime.id, runtime.consumes, runtime.required_provider) == (
            "ort-fake",
            "onnx",
            "FakeExecutionProvider",
        )
        assert (
            runtime.description == "ONNX Runtime, FakeExecutionProvider plugin EP (test double), precision: EP default"
        )


class TestNoDevice:
    def test_an_ep_without_a_device_is_unavailable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(ort_plugin_ep, "register", lambda library: None)
        monkeypatch.setattr(onnxruntime, "get_ep_devices", lambda: [SimpleNamespace(ep_name="CPUExecutionProvider")])
        runtime = PluginEpRuntime(FAKE, "FakeExecutionProvider")
        assert runtime.unavailable() == "no device for FakeExecutionProvider on this CPU"
        with pytest.raises(RuntimeError, match=r"^no device for FakeExecutionProvider on this CPU$"):
            runtime.open(Artifact("onnx-native", "ok", path=Path("m.onnx")), CONFIG, WEIGHTS)

    def test_a_library_that_does_not_register(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(name: str, path: str) -> None:
            raise RuntimeError("Failed to load library /nowhere/libfake_ep.so\nmore detail")

        monkeypatch.setattr(onnxruntime, "register_execution_provider_library", refuse)
        assert PluginEpRuntime(FAKE, "FakeExecutionProvider").unavailable() == (
            "test double: /nowhere/libfake_ep.so does not register: RuntimeError: Failed to load library "
            "/nowhere/libfake_ep.so"
        )

    def test_an_onnxruntime_without_plugin_support(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delattr(onnxruntime, "register_execution_provider_library")
        assert PluginEpRuntime(FAKE, "FakeExecutionProvider").unavailable() == (
            f"onnxruntime {onnxruntime.__version__} cannot load plugin EPs (needs 1.22 or later)"
        )

    @needs_openvino_ep
    def test_the_openvino_ep_with_its_devices_hidden(self, monkeypatch: pytest.MonkeyPatch) -> None:
        runtime = next(r for r in discover() if r.id == "ort-openvino")
        reason = runtime.unavailable()
        if reason is not None:  # onnxruntime-ep-openvino 1.8.1 binds no device on an AMD CPU
            pytest.skip(f"ort-openvino: {reason}")
        assert reason is None  # registered (once per process) before the devices are hidden
        monkeypatch.setattr(onnxruntime, "get_ep_devices", lambda: [])
        assert runtime.unavailable() == "no device for OpenVINOExecutionProvider on this CPU"


def fake_assignment(*nodes: tuple[str, str, str]) -> Any:
    """A session whose graph-assignment record puts each (node, op type) on an EP."""
    subgraphs = [
        SimpleNamespace(ep_name=ep, get_nodes=lambda name=name, op=op: [SimpleNamespace(name=name, op_type=op)])
        for name, op, ep in nodes
    ]
    return SimpleNamespace(get_provider_graph_assignment_info=lambda: subgraphs)


class TestOneLine:
    def test_openvino_ep_failure(self) -> None:
        text = (
            "[ONNXRuntimeError] : 11 : EP_FAIL : Exception from src/inference/src/cpp/core.cpp:117:\n"
            "Exception from src/core/src/pass/graph_rewrite.cpp:298:\n"
            "[ConvertLSTMSequenceToTensorIterator] END: node: ... CALLBACK HAS THROWN: Unknown activation function: elu"
        )
        assert one_line(text) == "[ONNXRuntimeError] : 11 : EP_FAIL : Unknown activation function: elu"

    def test_reason_on_the_last_line(self) -> None:
        text = (
            "[ONNXRuntimeError] : 11 : EP_FAIL : Exception from a.cpp:1:\n[Pass] END\nUnsupported activation function"
        )
        assert one_line(text) == "[ONNXRuntimeError] : 11 : EP_FAIL : Unsupported activation function"

    def test_single_line_is_kept(self) -> None:
        assert one_line(" [ONNXRuntimeError] : 1 : FAIL : bad model ") == "[ONNXRuntimeError] : 1 : FAIL : bad model"


class TestPlacement:
    def test_assignment_record(self) -> None:
        session = fake_assignment(("lstm0", "LSTM", "CPUExecutionProvider"), ("Y.reshape", "Reshape", "FakeEP"))
        assert assignment_placement(session) == {
            "lstm0 (LSTM)": "CPUExecutionProvider",
            "Y.reshape (Reshape)": "FakeEP",
        }

    def test_an_onnxruntime_without_the_record(self) -> None:
        assert assignment_placement(SimpleNamespace()) == {}

    def test_an_lstm_on_the_cpu_ep_fails_the_lane(self) -> None:
        runtime = PluginEpRuntime(FAKE, "FakeExecutionProvider")
        placement = assignment_placement(fake_assignment(("lstm0", "LSTM", "CPUExecutionProvider")))
        problem = placement_problem(runtime.id, runtime.required_provider, placement)
        assert problem is not None
        assert "ran on CPUExecutionProvider" in problem


@needs_openvino_ep
class TestOpenVinoEp:
    @pytest.fixture(autouse=True)
    def _a_device(self) -> None:
        """These tests need the EP to bind a device: onnxruntime-ep-openvino 1.8.1 lists none on an AMD
        CPU (seen on an AMD EPYC; OpenVINO itself runs there), where the runtime is a skip with that reason."""
        reason = next(r for r in discover(extra=[]) if r.id == "ort-openvino").unavailable()
        if reason is not None:
            pytest.skip(f"ort-openvino: {reason}")

    def test_discovered_as_two_lanes(self) -> None:
        runtimes = {r.id: r for r in discover(extra=[])}
        f32, auto = runtimes["ort-openvino"], runtimes["ort-openvino-auto"]
        assert f32.required_provider == auto.required_provider == OPENVINO_EP
        assert f32.library.source.startswith("onnxruntime-ep-openvino ")
        assert f32.unavailable() is None

    def test_settings(self) -> None:
        runtime = next(r for r in discover(extra=[]) if r.id == "ort-openvino")
        settings = runtime.settings()
        assert settings["provider"] == OPENVINO_EP
        assert settings["onnxruntime"] == onnxruntime.__version__
        assert settings["provider_options"] == dict(ort_plugin_ep.OPENVINO_F32)
        assert settings["tolerance_dtype"] == "float32"
        assert settings["devices"]
        assert Path(settings["library"]).is_file()

    @pytest.mark.parametrize("runtime_id", ["ort-openvino", "ort-openvino-auto"])
    def test_matches_the_reference_and_runs_on_the_ep(self, case: Any, runtime_id: str) -> None:
        artifact, feeds, expected = case
        runtime = next(r for r in discover(extra=[]) if r.id == runtime_id)
        tolerance = default_tolerance(runtime.settings()["tolerance_dtype"])
        session = runtime.open(artifact, CONFIG, WEIGHTS)
        try:
            outputs = session.run(feeds)
            for name, value in expected.items():
                np.testing.assert_allclose(outputs[name], value, atol=tolerance.atol, rtol=tolerance.rtol, err_msg=name)
            placement = session.placement()
            assert placement["lstm0 (LSTM)"] == OPENVINO_EP
            assert placement_problem(runtime.id, runtime.required_provider, placement) is None
            call, sync, _ = session.timed(feeds)
            call()
            assert sync is None
        finally:
            session.close()

    def test_an_lstm_handed_to_the_cpu_ep_is_reported(self, case: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        artifact, feeds, _ = case
        runtime = next(r for r in discover(extra=[]) if r.id == "ort-openvino")
        session = runtime.open(artifact, CONFIG, WEIGHTS)
        fake = fake_assignment(("lstm0", "LSTM", "CPUExecutionProvider"))
        monkeypatch.setattr(
            onnxruntime.InferenceSession,
            "get_provider_graph_assignment_info",
            lambda self: fake.get_provider_graph_assignment_info(),
        )
        session.run(feeds)
        placement = session.placement()
        session.close()
        assert placement["lstm0 (LSTM)"] == "CPUExecutionProvider"
        problem = placement_problem(runtime.id, runtime.required_provider, placement)
        assert problem == (
            "LSTM node(s) lstm0 (LSTM) ran on CPUExecutionProvider, not OpenVINOExecutionProvider: "
            "not a ort-openvino result"
        )

    def test_plugin_ep_names_cover_what_registration_adds_to_the_providers(self) -> None:
        next(r for r in discover(extra=[]) if r.id == "ort-openvino").unavailable()  # registers the library
        added = set(onnxruntime.get_available_providers()) - {"CPUExecutionProvider", "AzureExecutionProvider"}
        assert OPENVINO_EP in added
        assert added <= ort_plugin_ep.plugin_ep_names()

    def test_a_wrong_ep_name_lists_what_the_library_provides(self) -> None:
        package = importlib.import_module("onnxruntime_ep_openvino")
        library = parse_ep_library(f"openvino={package.get_library_path()}")
        runtime = next(r for r in discover(extra=[library]) if r.library is library)
        assert runtime.id == "ort-openvino"  # replaces the package's lane of the same id
        reason = runtime.unavailable()
        assert reason is not None
        assert reason.startswith("no device for openvino on this CPU (the library provides ")
        assert OPENVINO_EP in reason

    def test_registering_twice_is_harmless(self) -> None:
        (library,) = [lib for lib in ort_plugin_ep.installed_ep_libraries() if OPENVINO_EP in lib.ep_names]
        ort_plugin_ep.register(library)
        ort_plugin_ep.register(library)
        assert ort_plugin_ep.devices_of(OPENVINO_EP)

    def test_a_compile_failure_is_one_line(self, tmp_path: Path) -> None:
        import onnx

        from exporters.onnx_native import build_model

        config = LSTMConfig(input_size=3, hidden_size=4, activations=("Sigmoid", "Softsign", "Tanh"))
        path = tmp_path / "softsign.onnx"
        onnx.save(build_model(config, generate(config, seed=1), ExportOptions()), str(path))
        runtime = next(r for r in discover(extra=[]) if r.id == "ort-openvino")
        with pytest.raises(RuntimeError) as info:
            runtime.open(Artifact("onnx-native", "ok", path=path), config, generate(config, seed=1))
        assert "\n" not in str(info.value)
        assert "softsign" in str(info.value).lower()

    def test_close_removes_the_profile(self, case: Any) -> None:
        artifact, _, _ = case
        runtime = next(r for r in discover(extra=[]) if r.id == "ort-openvino")
        session = runtime.open(artifact, CONFIG, WEIGHTS)
        profile_dir = session._profile_dir
        assert profile_dir is not None and Path(profile_dir).is_dir()
        session.close()
        assert not Path(profile_dir).exists()


class TestCommandLine:
    """``--ep-library`` on ``run`` and ``check``: bad input is exit 2 naming the entry; a good one is a lane."""

    @pytest.mark.parametrize("command", [["run", "--suite", "smoke"], ["check", "model.onnx"]])
    def test_a_missing_library_is_bad_input(
        self, command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from conformance.cli import main

        monkeypatch.setenv(EP_LIBRARIES_ENV, "")  # restored after the test: main() sets it
        missing = tmp_path / "libgone.so"
        assert main([*command, "--ep-library", f"GoneExecutionProvider={missing}"]) == 2
        err = capsys.readouterr().err
        assert err == f"error: --ep-library GoneExecutionProvider={missing}: no such file: {missing}\n"

    def test_a_file_that_is_not_an_ep_is_bad_input(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from conformance.cli import main

        monkeypatch.setenv(EP_LIBRARIES_ENV, "")  # restored after the test: main() sets it
        library = a_shared_library_that_is_not_an_ep()
        assert main(["check", "model.onnx", "--ep-library", f"X={library}"]) == 2
        assert capsys.readouterr().err == (
            f"error: --ep-library X={library}: {library} is not an ONNX Runtime plugin EP library "
            "(no CreateEpFactories symbol)\n"
        )

    @needs_openvino_ep
    def test_a_library_given_by_path_becomes_the_lane(
        self, case: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import json

        import onnxruntime_ep_openvino as package

        from conformance.cli import main

        monkeypatch.setenv(EP_LIBRARIES_ENV, "")  # restored after the test: main() sets it
        artifact, _, _ = case
        path = package.get_library_path()
        report = tmp_path / "check.json"
        entry = f"{OPENVINO_EP}={path}"
        code = main(
            ["check", str(artifact.path), "--runtime", "ort-openvino", "--ep-library", entry, "--json", str(report)]
        )
        results = json.loads(report.read_text())["results"]
        if all(r["status"] == "skip" for r in results):  # a CPU the EP binds no device on (AMD, here)
            pytest.skip(results[0]["message"])
        assert code == 0, [r["message"] for r in results if r["status"] != "pass"]
        assert {r["settings"]["plugin"] for r in results} == {f"--ep-library {entry}"}
        assert os.environ[EP_LIBRARIES_ENV] == entry


@needs_openvino_ep
class TestForkHazard:
    def test_check_runs_the_ep_here_once_it_ran_a_session_here(self, case: Any) -> None:
        from conformance.check import CheckOptions, run_check
        from conformance.runtimes import get_runtime

        runtime = get_runtime("ort-openvino")
        if runtime.unavailable():
            pytest.skip(runtime.unavailable())
        artifact, _, _ = case
        assert artifact.path is not None
        runtime.open(artifact, None, None).close()  # the EP's threads now run in this process
        report = run_check(artifact.path, CheckOptions(runtimes=["ort-openvino"], timeout=60))
        assert any(note.startswith("ort-openvino ran in this process, not in a worker: ") for note in report.notes)
        assert {r.status for r in report.results} == {"pass"}
