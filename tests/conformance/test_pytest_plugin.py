"""The pytest plugin (``conformance.pytest_plugin``): suite lanes and check targets as pytest items.

Each test builds a small project with ``pytester`` and runs pytest on it, in-process where the
plugin's state is per session anyway, in a subprocess where what is imported must be observed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conformance.cases import load_suite
from conformance.lane import LaneContext, run_lane
from conformance.planning import plan
from conformance.pytest_plugin import CheckInputError, conformance_check
from conformance.runtimes import get_runtime
from exporters.registry import export
from reference.config import LSTMConfig
from reference.weights import generate, save

pytest_plugins = ["pytester"]

SMOKE = """\
suite = "smoke-mine"

[defaults]
model = { input_size = 3, hidden_size = 4 }
inputs = { seq_len = 5, batch = 2 }
exporters = ["onnx-native", "torch-module"]
runtimes = ["reference", "ort-cpu", "onnx-reference", "ort-cuda"]

[[case]]
id = "plain"
tags = ["core"]

[[case]]
id = "exact"
description = "atol = rtol = 0: a float32 runtime cannot match the float64 reference"
model = { direction = "bidirectional" }
tolerance = { atol = 0.0, rtol = 0.0 }

[[case.expect]]
runtime = "ort-*"
reason = "float32 is not float64"

[[case.expect]]
runtime = "onnx-reference"
reason = "float32 is not float64"
"""

PLANTED = """\
[[case]]
id = "gates"
model = { input_size = 3, hidden_size = 4 }
inputs = { seq_len = 5, batch = 2 }
exporters = ["mutant-gate-order"]
runtimes = ["ort-cpu"]
"""

CUDA = get_runtime("ort-cuda").unavailable() is None
# A traceback line into this package's code (the plugin shows lane messages, never a traceback).
OUR_FRAMES = re.compile(r"(conformance|exporters|reference|reports)/\w+(/\w+)*\.py:\d+")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One export cache for the module, for in-process and subprocess runs alike."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "plugin-xdg-cache"))


@pytest.fixture(scope="module", autouse=True)
def _import_once(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> None:
    """Run what the inner sessions run once here, so that their imports happen in this process first.

    An in-process pytester run drops the modules it imported when it ends, and importing onnx's
    protobuf extension a second time aborts the interpreter; modules imported before the run are kept.
    """
    suite = tmp_path_factory.mktemp("warm") / "warm.toml"
    suite.write_text(SMOKE + PLANTED.replace('"gates"', '"gates-warm"'), encoding="utf-8")
    cases = {case.id: case for case in load_suite(suite).cases}
    context = LaneContext()
    for lane in plan([(str(suite), case) for case in cases.values()]):
        run_lane(lane, context)
    # On ort-cpu only: an execution provider another test registered in this process is not this warm-up's.
    conformance_check(models["onnx-native"], seq_lens=[1], batches=[1], runtimes=["ort-cpu"])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The true export and the gate-order mutant of one small LSTM, and its trained weights."""
    folder = tmp_path_factory.mktemp("models")
    config = LSTMConfig(3, 4)
    weights = generate(config, seed=0)
    save(folder / "trained.npz", weights)
    paths = {"weights": folder / "trained.npz"}
    for exporter in ("onnx-native", "mutant-gate-order"):
        artifact = export(config, weights, exporter, cache_dir=folder / "cache")
        assert artifact.path is not None, artifact.reason
        paths[exporter] = Path(shutil.copy(artifact.path, folder / f"{exporter}.onnx"))
    return paths


@pytest.fixture
def smoke(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", conformance_smoke=SMOKE)
    return pytester


def _cuda(passed: int = 0, xfailed: int = 0) -> dict[str, int]:
    """Outcomes of the ort-cuda lanes: skipped without a CUDA provider, else as planned."""
    if CUDA:
        return {"passed": passed, "xfailed": xfailed, "skipped": 0}
    return {"passed": 0, "xfailed": 0, "skipped": passed + xfailed}


class TestSuiteFile:
    def test_lanes_are_items_named_by_lane_id(self, smoke: pytest.Pytester) -> None:
        result = smoke.runpytest("--collect-only", "-q")
        ids = [line for line in result.outlines if line.startswith("conformance_smoke.toml::")]
        assert ids == [
            f"conformance_smoke.toml::{case}/{lane}"
            for case in ("plain", "exact")
            for lane in ("none/reference", "onnx-native/ort-cpu", "onnx-native/onnx-reference", "onnx-native/ort-cuda")
        ]  # torch-module makes a torch module, and no torch runtime is listed: no lane

    @pytest.mark.slow
    def test_outcomes(self, smoke: pytest.Pytester) -> None:
        result = smoke.runpytest("-rsx")
        cuda = _cuda(passed=1, xfailed=1)
        result.assert_outcomes(
            passed=4 + cuda["passed"], xfailed=2 + cuda["xfailed"], skipped=cuda["skipped"], failed=0
        )
        result.stdout.fnmatch_lines(
            ["XFAIL conformance_smoke.toml::exact/onnx-native/ort-cpu - float32 is not float64"]
        )
        if not CUDA:  # skipped at the case's own line, with the runtime's reason
            result.stdout.fnmatch_lines(["SKIPPED [[]1[]] conformance_smoke.toml:9: *CUDAExecutionProvider*"])

    def test_a_planted_failure_fails_with_the_lane_message_only(self, pytester: pytest.Pytester) -> None:
        pytester.makefile(".toml", conformance_planted=PLANTED)
        result = pytester.runpytest()
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "*_ gates/mutant-gate-order/ort-cpu _*",
                "Tensor-likes are not close!",
                "",
                "Mismatched elements: *",
                "Greatest absolute difference: * at index * (up to 2e-06 allowed)",
                "Greatest relative difference: *",
                "",
                "The failure occurred for item ['Y']",
            ]
        )
        assert "The failure occurred for item ['Y_c']" in result.stdout.str()
        assert "Traceback" not in result.stdout.str()
        assert not OUR_FRAMES.search(result.stdout.str()), result.stdout.str()

    @pytest.mark.slow
    def test_select_by_runtime_keyword_feature_and_marker(self, smoke: pytest.Pytester) -> None:
        smoke.runpytest("-k", "ort-cpu").assert_outcomes(passed=1, xfailed=1, deselected=6)
        smoke.runpytest("-k", "bidirectional and reference").assert_outcomes(passed=1, xfailed=1, deselected=6)
        smoke.runpytest("-m", "conformance", "-k", "core and not onnx").assert_outcomes(passed=1, deselected=7)

    def test_runtime_and_exporter_options_filter_the_plan(self, smoke: pytest.Pytester) -> None:
        result = smoke.runpytest(
            "--collect-only", "-q", "--conformance-runtime", "ort-*", "--conformance-exporter", "onnx-*"
        )
        assert result.outlines[-1].startswith("4 tests collected")
        result = smoke.runpytest("--conformance-runtime", "ort-cpux")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(
            ["ERROR: --conformance-runtime: unknown runtime 'ort-cpux' (did you mean 'ort-cpu'?)*"]
        )

    @pytest.mark.slow
    def test_a_bad_suite_is_one_collection_error_line(self, pytester: pytest.Pytester) -> None:
        pytester.makefile(".toml", conformance_bad=SMOKE.replace("hidden_size = 4", "hidden_sise = 4"))
        result = pytester.runpytest()
        assert result.ret == pytest.ExitCode.INTERRUPTED
        result.stdout.fnmatch_lines(
            ["conformance_bad.toml:4: model.hidden_sise: unknown key (did you mean 'hidden_size'?)"]
        )
        assert not OUR_FRAMES.search(result.stdout.str())

    @pytest.mark.slow
    def test_the_ini_option_lists_more_suites(self, pytester: pytest.Pytester) -> None:
        pytester.makefile(".toml", mine=PLANTED)
        pytester.makeini("[pytest]\nconformance_suites =\n    mine.toml\n    smoke\n")
        result = pytester.runpytest("--collect-only", "-q")
        assert "mine.toml::gates/mutant-gate-order/ort-cpu" in result.outlines
        assert "cases/smoke.toml::forward/none/reference" in result.outlines


class TestInert:
    def test_a_project_without_targets_imports_nothing_heavy(self, pytester: pytest.Pytester) -> None:
        pytester.makefile(".toml", settings="[tool]\nname = 'not a suite'\n")
        pytester.makepyfile(
            test_plain="""
            import sys

            def test_plain():
                heavy = {"numpy", "onnx", "onnxruntime", "torch", "conformance.cases", "conformance.lane"}
                assert not heavy & set(sys.modules)
            """
        )
        result = pytester.runpytest_subprocess()
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["plugins:*lstm-conformance*"])


class TestCheckFixture:
    def test_passes_and_fails_naming_the_cause(self, pytester: pytest.Pytester, models: dict[str, Path]) -> None:
        pytester.makepyfile(
            test_export=f"""
            def test_true_export(conformance_check):
                report = conformance_check({str(models["onnx-native"])!r}, weights={str(models["weights"])!r})
                assert not report.failed and report.results

            def test_mutant(conformance_check):
                conformance_check({str(models["mutant-gate-order"])!r}, weights={str(models["weights"])!r},
                                  seq_lens=[1, 4], batches=[2])
            """
        )
        result = pytester.runpytest("--conformance-runtime", "ort-cpu")
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(
            [
                "E*AssertionError: conformance check of *mutant-gate-order.onnx: 1 of 5 results failed*",
                "*- LSTM node *gate blocks are in IFGO*",
            ]
        )

    def test_the_function_returns_the_report_or_raises(self, models: dict[str, Path]) -> None:
        report = conformance_check(models["onnx-native"], runtimes=["ort-cpu"], atol=1e-5, rtol=1e-4)
        assert {r.status for r in report.results} == {"pass"}
        with pytest.raises(AssertionError, match="gate blocks are in IFGO"):
            conformance_check(models["mutant-gate-order"], runtimes=["ort-cpu"], weights=models["weights"])
        with pytest.raises(TypeError, match=r"unknown option\(s\) seq_len; valid: seq_lens"):
            conformance_check(models["onnx-native"], seq_len=[1])
        with pytest.raises(CheckInputError, match=r"missing\.onnx: no such file"):
            conformance_check(models["weights"].parent / "missing.onnx")

    def test_nothing_run_is_a_skip_not_a_pass(self, models: dict[str, Path]) -> None:
        with pytest.raises(pytest.skip.Exception, match="no runtime could check"):
            conformance_check(models["onnx-native"], runtimes=["ort-cuda"] if not CUDA else [])


class TestCheckIniOption:
    @pytest.mark.slow
    def test_one_item_per_runtime_and_one_for_the_weights(
        self, pytester: pytest.Pytester, models: dict[str, Path]
    ) -> None:
        shutil.copytree(models["weights"].parent, pytester.path / "build", ignore=shutil.ignore_patterns("cache"))
        (pytester.path / "tests").mkdir()
        pytester.makepyprojecttoml(
            """
            [tool.pytest.ini_options]
            testpaths = ["tests"]
            conformance_check = [
                "build/onnx-native.onnx::weights=build/trained.npz",
                "build/mutant-gate-order.onnx::weights=build/trained.npz::seq_lens=1,4::batches=2",
            ]
            """
        )
        collected = pytester.runpytest("--collect-only", "-q").outlines
        from conformance.check import onnx_runtime_ids

        assert [line for line in collected if line.startswith("build/onnx-native.onnx::")] == [
            f"build/onnx-native.onnx::{name}" for name in ("weights", *onnx_runtime_ids())
        ]
        assert {"ort-cpu", "ort-cpu-noopt", "ort-cuda", "onnx-reference", "openvino-cpu", "tract"} <= set(
            onnx_runtime_ids()
        )
        result = pytester.runpytest("--conformance-runtime", "ort-cpu*")
        result.assert_outcomes(passed=5, failed=1)
        result.stdout.fnmatch_lines(
            [
                "*_ build/mutant-gate-order.onnx::weights _*",
                "the model differs from the trained weights (mutant-gate-order.onnx vs trained.npz):",
                "*- LSTM node *gate blocks are in IFGO*",
            ]
        )
        # The mutant's nodes compute what their (reordered) weights say: only the weights item fails.
        assert "ort-cpu: " not in result.stdout.str()
        assert not OUR_FRAMES.search(result.stdout.str())
        # Named paths collect only what they reach: the ini targets are not appended.
        pytester.makepyfile(test_one="def test_one(): pass")
        assert pytester.runpytest("test_one.py").parseoutcomes() == {"passed": 1}

    def test_a_bad_entry_is_a_usage_error(self, pytester: pytest.Pytester) -> None:
        pytester.makeini("[pytest]\nconformance_check = model.onnx::seq_lens=1,x\n")
        result = pytester.runpytest()
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(
            ["ERROR: conformance_check entry *: seq_lens: expected comma-separated positive integers, got '1,x'"]
        )
