"""Runtimes: ids, availability, ONNX Runtime's provider checks and placement, torch, onnx.reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime
import pytest

from conformance.runtimes import (
    BUILTIN_RUNTIMES,
    ORT_PROVIDERS,
    UnknownRuntimeError,
    all_runtimes,
    declared_runtime_ids,
    get_runtime,
    is_nameable,
    nameable_runtime_ids,
    ort_plugin_ep,
    runtime_ids,
)
from conformance.runtimes.onnx_reference import OnnxReferenceRuntime
from conformance.runtimes.onnxruntime_runtime import OrtRuntime, OrtSession, discover, parse_profile, short_name
from conformance.runtimes.reference_runtime import ReferenceRuntime
from conformance.runtimes.torch_runtime import TorchRuntime
from exporters.base import Artifact, ExportOptions
from exporters.plugins import PluginError
from exporters.registry import export
from reference.config import LMConfig, LSTMConfig
from reference.models import lm_log_probs, run_stack
from reference.weights import generate, generate_lm
from tests.conformance.conftest import FAKE_RUNTIMES
from tests.conformance.fake_runtimes import CrashRuntime

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
HAS_CUDA_EP = CUDA in onnxruntime.get_available_providers()
STACK = LSTMConfig(input_size=3, hidden_size=4, num_layers=2, direction="bidirectional", batch_first=True)
OPTIONS = ExportOptions(example_seq_len=5, example_batch=2, initial_states=True)
LM = LMConfig(vocab_size=11, lstm=LSTMConfig(input_size=4, hidden_size=5))


@pytest.fixture(scope="module")
def stack_case() -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Weights, feeds ([B, T, I], with initial states) and the float64 reference outputs of STACK."""
    weights = generate(STACK, seed=1)
    rng = np.random.default_rng(0)
    feeds = {
        "X": rng.uniform(-1, 1, (2, 5, 3)).astype(np.float32),
        "initial_h": rng.uniform(-1, 1, (4, 2, 4)).astype(np.float32),
        "initial_c": rng.uniform(-1, 1, (4, 2, 4)).astype(np.float32),
    }
    out = run_stack(STACK, weights, feeds["X"], initial_h=feeds["initial_h"], initial_c=feeds["initial_c"])
    return weights, feeds, {"Y": out.output, "Y_h": out.h_n, "Y_c": out.c_n}


@pytest.fixture(scope="module")
def stack_onnx(stack_case: Any) -> Artifact:
    artifact = export(STACK, stack_case[0], "onnx-native", OPTIONS)
    assert artifact.ok, artifact.reason
    return artifact


def assert_matches(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        assert actual[name].dtype == np.float32, name
        np.testing.assert_allclose(actual[name], value, atol=1e-5, rtol=1e-4, err_msg=name)


def fake_providers(monkeypatch: pytest.MonkeyPatch, providers: list[str]) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(providers))


class TestIds:
    def test_builtin_runtimes_in_order(self) -> None:
        ids = runtime_ids()
        assert ids[:4] == ["reference", "ort-cpu", "ort-cpu-noopt", "ort-cuda"]
        assert ids[-6:] == ["torch-cpu", "torch-cuda", "onnx-reference", "openvino-cpu", "openvino-cpu-auto", "tract"]

    def test_every_runtime_follows_the_protocol(self) -> None:
        for runtime in all_runtimes():
            assert runtime.consumes in ("onnx", "torch", "weights"), runtime.id
            assert runtime.description
            assert runtime.required_provider is None or runtime.required_provider.endswith("ExecutionProvider")

    def test_ort_runtimes(self) -> None:
        cpu, noopt, cuda = discover()[:3]
        assert (cpu.id, cpu.provider, cpu.opt_level, cpu.required_provider) == ("ort-cpu", CPU, "all", None)
        assert (noopt.id, noopt.opt_level, noopt.required_provider) == ("ort-cpu-noopt", "noopt", None)
        assert (cuda.id, cuda.provider, cuda.required_provider) == ("ort-cuda", CUDA, CUDA)
        assert cpu.description == "ONNX Runtime, CPUExecutionProvider, all graph optimisations"
        assert noopt.description == "ONNX Runtime, CPUExecutionProvider, graph optimisations disabled"

    def test_short_names(self) -> None:
        assert short_name(CUDA) == "cuda"
        assert short_name("TensorrtExecutionProvider") == "tensorrt"

    def test_unknown_id_suggests_the_closest(self) -> None:
        with pytest.raises(UnknownRuntimeError) as info:
            get_runtime("ort-cpuu")
        assert (
            str(info.value)
            == f"unknown runtime 'ort-cpuu' (did you mean 'ort-cpu'?); available: {', '.join(runtime_ids())}"
        )

    def test_unknown_id_without_a_close_match(self) -> None:
        with pytest.raises(UnknownRuntimeError) as info:
            get_runtime("tensorflow")
        assert str(info.value) == f"unknown runtime 'tensorflow'; available: {', '.join(runtime_ids())}"

    @pytest.mark.parametrize(("typo", "meant"), [("openvno-cpu", "openvino-cpu"), ("trakt", "tract"),
                                                  ("openvino-cpu-aut", "openvino-cpu-auto")])  # fmt: skip
    def test_the_new_runtimes_are_suggested(self, typo: str, meant: str) -> None:
        with pytest.raises(UnknownRuntimeError, match=rf"^unknown runtime '{typo}' \(did you mean '{meant}'\?\)"):
            get_runtime(typo)

    def test_openvino_tract_and_plugin_eps_are_built_in(self) -> None:
        ids = declared_runtime_ids()
        assert {"openvino-cpu", "openvino-cpu-auto", "tract"} <= set(ids)
        assert is_nameable("ort-openvino") and is_nameable("ort-openvino-auto")  # with or without the package
        assert [r.id for r in all_runtimes()].count("ort-openvino") <= 1  # never twice (by name and by device)

    def test_unknown_runtime_is_bad_input(self) -> None:
        assert issubclass(UnknownRuntimeError, ValueError)  # the CLI turns ValueError into exit code 2

    @pytest.mark.usefixtures("fake_runtimes")
    def test_plug_ins_from_the_environment_take_their_id_from_it(self) -> None:
        runtime = get_runtime("crash")
        assert isinstance(runtime, CrashRuntime)
        assert runtime.id == "crash"
        assert runtime_ids()[-len(FAKE_RUNTIMES) :] == list(FAKE_RUNTIMES)

    def test_a_malformed_plug_in_entry_is_one_line(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONFORMANCE_EXTRA_RUNTIMES", "crash=tests.conformance.fake_runtimes:CrashRuntime,=x:Y")
        with pytest.raises(PluginError) as info:
            all_runtimes()
        assert str(info.value) == "CONFORMANCE_EXTRA_RUNTIMES: malformed entry '=x:Y': expected id=module:Class"


class TestOneList:
    """BUILTIN_RUNTIMES is the one list: what case files may name and what all_runtimes() builds agree."""

    def test_declared_ids_are_the_fixed_builtins_then_the_plug_ins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fixed = [r.id for r in BUILTIN_RUNTIMES if "*" not in r.id]
        assert declared_runtime_ids() == fixed
        monkeypatch.setenv("CONFORMANCE_EXTRA_RUNTIMES", "fake=tests.x:Fake")
        assert declared_runtime_ids() == [*fixed, "fake"]

    def test_all_runtimes_builds_them_in_the_same_order(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake_providers(monkeypatch, ["TensorrtExecutionProvider", CUDA, CPU])
        built = runtime_ids()
        assert [i for i in built if i in declared_runtime_ids()] == declared_runtime_ids()
        families = [r.id for r in BUILTIN_RUNTIMES if "*" in r.id]
        plugin_eps = [r.id for r in ort_plugin_ep.discover()]  # onnxruntime-ep-* packages installed here
        assert [i for i in built if i not in declared_runtime_ids()] == ["ort-tensorrt", *plugin_eps]
        assert families == ["ort-*", "ort-*"]  # ONNX Runtime's own providers, then plugin EPs
        assert built.index("ort-tensorrt") == built.index("ort-cuda") + 1  # where "ort-*" stands in the list

    def test_every_onnxruntime_provider_is_nameable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake_providers(monkeypatch, onnxruntime.get_all_providers())
        assert len(runtime_ids()) > len(declared_runtime_ids())
        for runtime_id in runtime_ids():
            assert is_nameable(runtime_id), runtime_id

    def test_the_provider_list_covers_this_onnxruntime(self) -> None:
        compute = {short_name(p) for p in onnxruntime.get_all_providers()} - {"azure"}
        assert compute <= set(ORT_PROVIDERS), compute - set(ORT_PROVIDERS)
        assert sorted(ORT_PROVIDERS) == list(ORT_PROVIDERS)
        assert "ort-azure" not in nameable_runtime_ids()  # AzureExecutionProvider computes no node

    def test_naming_a_runtime_imports_no_backend(self) -> None:
        code = (
            "import sys, conformance.runtimes as r; "
            "r.nameable_runtime_ids(); r.is_nameable('ort-*'); r.unknown_runtime_hint('ort-cpuu'); "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]"


class TestOrtAvailability:
    @pytest.mark.skipif(HAS_CUDA_EP, reason="onnxruntime has the CUDA EP here")
    def test_cuda_unavailable_here(self) -> None:
        available = onnxruntime.get_available_providers()
        assert get_runtime("ort-cuda").unavailable() == (
            f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider (available: {', '.join(available)})"
        )

    def test_cpu_available(self) -> None:
        assert get_runtime("ort-cpu").unavailable() is None
        assert get_runtime("ort-cpu-noopt").unavailable() is None

    def test_mocked_cuda_is_available(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake_providers(monkeypatch, [CUDA, CPU])
        assert get_runtime("ort-cuda").unavailable() is None

    def test_other_compute_providers_are_discovered(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake_providers(monkeypatch, ["TensorrtExecutionProvider", CUDA, CPU, "AzureExecutionProvider"])
        runtimes = discover()
        assert [r.id for r in runtimes] == ["ort-cpu", "ort-cpu-noopt", "ort-cuda", "ort-tensorrt"]
        tensorrt = runtimes[-1]
        assert tensorrt.required_provider == "TensorrtExecutionProvider"
        assert tensorrt.unavailable() is None
        assert "ort-tensorrt" in runtime_ids()
        assert not any("azure" in runtime_id for runtime_id in runtime_ids())

    def test_a_missing_provider_is_named_with_what_is_there(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake_providers(monkeypatch, [CPU])
        assert OrtRuntime("TensorrtExecutionProvider").unavailable() == (
            f"onnxruntime {onnxruntime.__version__} has no TensorrtExecutionProvider (available: {CPU})"
        )

    def test_settings(self) -> None:
        assert get_runtime("ort-cpu-noopt").settings() == {
            "onnxruntime": onnxruntime.__version__,
            "provider": CPU,
            "graph_optimization_level": "ORT_DISABLE_ALL",
            "intra_op_num_threads": "default (physical cores)",
        }


class _FallbackSession:
    """An InferenceSession whose requested provider failed to initialise (ORT falls back silently)."""

    requested: ClassVar[list[str]] = []

    def __init__(self, path: str, sess_options: Any = None, providers: list[str] | None = None) -> None:
        _FallbackSession.requested = list(providers or [])

    def get_providers(self) -> list[str]:
        return [CPU]


class TestOrtSession:
    def test_refuses_a_session_that_fell_back(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(onnxruntime, "InferenceSession", _FallbackSession)
        with pytest.raises(RuntimeError) as info:
            OrtSession("model.onnx", CUDA, "all", profile=False)
        assert str(info.value) == f"{CUDA} failed to initialise; the session fell back to ['{CPU}']"
        assert _FallbackSession.requested == [CUDA, CPU]

    def test_a_failed_open_leaves_no_profile_folder(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        import tempfile

        monkeypatch.setattr(onnxruntime, "InferenceSession", _FallbackSession)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        with pytest.raises(RuntimeError):
            OrtSession("model.onnx", CUDA, "all", profile=True)
        assert list(tmp_path.iterdir()) == []

    def test_runs_and_reports_placement_from_its_profile(self, stack_case: Any, stack_onnx: Artifact) -> None:
        weights, feeds, expected = stack_case
        session = get_runtime("ort-cpu").open(stack_onnx, STACK, weights)
        try:
            assert_matches(session.run(feeds), expected)
            placement = session.placement()
            assert session.placement() is placement  # the profile is read once
        finally:
            session.close()
        assert set(placement.values()) == {CPU}
        assert len([node for node in placement if node.endswith(" (LSTM)")]) == STACK.num_layers
        assert any(node.endswith(" (Transpose)") for node in placement)

    def test_noopt_runs_every_node_of_the_graph(self, stack_case: Any, stack_onnx: Artifact) -> None:
        import onnx

        weights, feeds, expected = stack_case
        session = get_runtime("ort-cpu-noopt").open(stack_onnx, STACK, weights)
        try:
            assert_matches(session.run(feeds), expected)
            placement = session.placement()
        finally:
            session.close()
        graph = onnx.load(str(stack_onnx.path)).graph
        ops = sorted(op for op in {node.op_type for node in graph.node} if op not in ("Constant",))
        assert sorted({node.rsplit(" (", 1)[1].rstrip(")") for node in placement}) == ops
        assert set(placement.values()) == {CPU}

    def test_without_profiling_there_is_no_placement(self, stack_onnx: Artifact, stack_case: Any) -> None:
        assert stack_onnx.path is not None
        session = OrtSession(str(stack_onnx.path), CPU, "all", profile=False)
        try:
            assert_matches(session.run(stack_case[1]), stack_case[2])
            assert session.placement() == {}
        finally:
            session.close()


class TestParseProfile:
    EVENTS: ClassVar[list[dict[str, Any]]] = [
        {"cat": "Session", "name": "model_loading_uri", "ph": "X", "dur": 120, "args": {}},
        {"cat": "Session", "name": "session_initialization", "ph": "X", "dur": 300},
        {"cat": "Node", "name": "lstm0_fence_before", "args": {"op_name": "LSTM"}},
        {"cat": "Node", "name": "lstm0_kernel_time", "args": {"op_name": "LSTM", "provider": CPU}},
        {"cat": "Node", "name": "lstm0_fence_after", "args": {"op_name": "LSTM"}},
        {"cat": "Node", "name": "Transpose_1_kernel_time", "args": {"op_name": "Transpose", "provider": CUDA}},
        {"cat": "Node", "name": "orphan_kernel_time"},
        {"cat": "Api", "name": "Run", "args": {"provider": CPU}},
        {"cat": "Session", "name": "SequentialExecutor::Execute"},
    ]

    def test_synthetic_profile(self, tmp_path: Path) -> None:
        path = tmp_path / "ort_profile.json"
        path.write_text(json.dumps(self.EVENTS))
        assert parse_profile(path) == {"lstm0 (LSTM)": CPU, "Transpose_1 (Transpose)": CUDA}
        assert parse_profile(str(path)) == parse_profile(path)

    def test_empty_profile(self, tmp_path: Path) -> None:
        path = tmp_path / "ort_profile.json"
        path.write_text("[]")
        assert parse_profile(path) == {}

    def test_real_profile(self, stack_onnx: Artifact, stack_case: Any, tmp_path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(tmp_path / "ort")
        session = ort.InferenceSession(str(stack_onnx.path), sess_options=options, providers=[CPU])
        session.run(None, stack_case[1])
        profile = Path(session.end_profiling())
        assert profile.parent == tmp_path
        placement = parse_profile(profile)
        assert set(placement.values()) == {CPU}
        assert len([node for node in placement if node.endswith(" (LSTM)")]) == STACK.num_layers


class TestOrtThroughTheLane:
    def test_a_cuda_session_that_falls_back_is_a_lane_error(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        import tempfile

        from conformance.cases import loads_suite
        from conformance.lane import Lane, LaneContext, run_lane
        from conformance.status import ERROR

        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the profile folder it leaks (see the xfail above)
        fake_providers(monkeypatch, [CUDA, CPU])
        monkeypatch.setattr(onnxruntime, "InferenceSession", _FallbackSession)
        case = loads_suite(
            'suite = "s"\n[[case]]\nid = "c"\nmodel = { input_size = 2, hidden_size = 3 }\n'
            'inputs = { seq_len = 2, batch = 1 }\nexporters = ["onnx-native"]\nruntimes = ["ort-cuda"]\n',
            display="s.toml",
        ).cases[0]
        record = run_lane(Lane("s.toml", case, "onnx-native", "ort-cuda"), LaneContext())
        assert record.status == ERROR
        assert record.message == (
            f"ort-cuda could not load the model: RuntimeError: {CUDA} failed to initialise; "
            f"the session fell back to ['{CPU}']"
        )


class TestTorch:
    @pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="torch has CUDA here")
    def test_cuda_unavailable_here(self) -> None:
        import torch

        assert TorchRuntime("cuda").unavailable() == f"torch.cuda.is_available() is False (torch {torch.__version__})"

    def test_cpu_runs_the_torch_module_artifact(self, stack_case: Any) -> None:
        weights, feeds, expected = stack_case
        artifact = export(STACK, weights, "torch-module", OPTIONS)
        assert artifact.ok and artifact.module is not None
        runtime = get_runtime("torch-cpu")
        assert runtime.unavailable() is None
        assert runtime.consumes == "torch"
        session = runtime.open(artifact, STACK, weights)
        try:
            assert_matches(session.run(feeds), expected)
            assert session.placement() == {}
        finally:
            session.close()
        assert runtime.settings()["device"] == "cpu"

    def test_cpu_runs_a_language_model(self) -> None:
        weights = generate_lm(LM, seed=2)
        tokens = np.random.default_rng(3).integers(0, LM.vocab_size, size=(6, 2), dtype=np.int64)
        artifact = export(LM, weights, "torch-module", ExportOptions())
        session = get_runtime("torch-cpu").open(artifact, LM, weights)
        assert_matches(session.run({"tokens": tokens}), {"log_probs": lm_log_probs(LM, weights, tokens)})


class TestOnnxReference:
    def test_runs_an_onnx_native_model(self, stack_case: Any, stack_onnx: Artifact) -> None:
        weights, feeds, expected = stack_case
        runtime = OnnxReferenceRuntime()
        assert runtime.unavailable() is None
        assert runtime.consumes == "onnx"
        session = runtime.open(stack_onnx, STACK, weights)
        assert_matches(session.run(feeds), expected)
        assert session.placement() == {}
        session.close()


class TestReferenceRuntime:
    def test_returns_the_float64_reference(self, stack_case: Any) -> None:
        weights, feeds, expected = stack_case
        runtime = ReferenceRuntime()
        assert (runtime.consumes, runtime.unavailable(), runtime.required_provider) == ("weights", None, None)
        outputs = runtime.open(None, STACK, weights).run(feeds)
        for name, value in expected.items():
            assert outputs[name].dtype == np.float64
            np.testing.assert_array_equal(outputs[name], value)
