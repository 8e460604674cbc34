"""tract runtime: outputs against the float64 reference, one plan per input shape, missing package, errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance.compare import default_tolerance
from conformance.runtimes.tract_runtime import INSTALL_HINT, TractRuntime, TractSession, condensed_error, input_fact
from exporters.base import Artifact, ExportOptions
from reference.config import LSTMConfig
from reference.models import run_stack
from reference.weights import generate

needs_tract = pytest.mark.skipif(importlib.util.find_spec("tract") is None, reason=INSTALL_HINT)
# Initial states given: tract 0.23 cannot run a one-direction LSTM with batch > 1 and Y_c without them
# (docs/runtimes-probe.md), and these tests are about the runtime wrapper, not that divergence.
CONFIG = LSTMConfig(input_size=3, hidden_size=4)
OPTIONS = ExportOptions(initial_states=True)
WEIGHTS = generate(CONFIG, seed=1)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    import onnx

    from exporters.onnx_native import build_model

    path = tmp_path_factory.mktemp("tract") / "lstm.onnx"
    onnx.save(build_model(CONFIG, WEIGHTS, OPTIONS), str(path))
    return Artifact("onnx-native", "ok", path=path)


def feeds_and_expected(steps: int, batch: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(steps * 10 + batch)
    feeds = {
        "X": rng.uniform(-1, 1, (steps, batch, 3)).astype(np.float32),
        "initial_h": rng.uniform(-1, 1, (1, batch, 4)).astype(np.float32),
        "initial_c": rng.uniform(-1, 1, (1, batch, 4)).astype(np.float32),
    }
    out = run_stack(CONFIG, WEIGHTS, feeds["X"], initial_h=feeds["initial_h"], initial_c=feeds["initial_c"])
    return feeds, {"Y": out.output, "Y_h": out.h_n, "Y_c": out.c_n}


def assert_float32_close(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    tolerance = default_tolerance("float32")
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        assert actual[name].dtype == np.float32, name
        np.testing.assert_allclose(actual[name], value, atol=tolerance.atol, rtol=tolerance.rtol, err_msg=name)


class TestRuntime:
    def test_protocol_attributes(self) -> None:
        runtime = TractRuntime()
        assert (runtime.id, runtime.consumes, runtime.required_provider) == ("tract", "onnx", None)
        assert runtime.description == "tract (Rust inference engine), CPU, plan optimised per input shape"

    def test_unavailable_without_the_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "tract", None)  # makes `import tract` raise ImportError
        assert TractRuntime().unavailable() == "tract is not installed (pip install 'lstm-conformance[tract]')"

    def test_input_facts(self) -> None:
        assert input_fact(np.zeros((5, 2, 3), np.float32)) == "5,2,3,f32"
        assert input_fact(np.zeros(2, np.int32)) == "2,i32"
        with pytest.raises(ValueError, match="tract: no input fact for dtype complex64"):
            input_fact(np.zeros(2, np.complex64))


class TestCondensedError:
    def test_context_and_root_cause(self) -> None:
        text = (
            'Evaluating #6 "lstm0" Scan\n\nCaused by:\n    0: Setting body inputs\n'
            "    1: Clashing resolution for expression. 1=1 != 3.\n\nStack backtrace:\n   0: anyhow::Error\n"
        )
        assert condensed_error(text) == 'Evaluating #6 "lstm0" Scan: Clashing resolution for expression. 1=1 != 3.'

    def test_single_line(self) -> None:
        assert condensed_error("Non constant seq_len is not supported") == "Non constant seq_len is not supported"


@needs_tract
class TestSession:
    def test_available_here(self) -> None:
        assert TractRuntime().unavailable() is None

    def test_settings(self) -> None:
        import tract

        settings = TractRuntime().settings()
        assert settings == {
            "tract": tract.version(),
            "device": "CPU",
            "input_facts": "concrete, one plan per input shape",
        }

    def test_matches_the_reference_at_two_shapes_with_one_plan_each(self, artifact: Artifact) -> None:
        session = TractRuntime().open(artifact, CONFIG, WEIGHTS)
        assert isinstance(session, TractSession)
        for steps, batch in ((5, 2), (7, 3), (5, 2)):
            feeds, expected = feeds_and_expected(steps, batch)
            assert_float32_close(session.run(feeds), expected)
        assert len(session._runnables) == 2
        session.close()
        assert not session._runnables

    def test_runs_do_not_carry_state_over(self, artifact: Artifact) -> None:
        session = TractRuntime().open(artifact, CONFIG, WEIGHTS)
        feeds, expected = feeds_and_expected(5, 2)
        call, sync, _ = session.timed(feeds)
        call()
        call()  # a reused tract State would start this run from the previous final h/c
        assert sync is None
        assert_float32_close(session.run(feeds), expected)
        results = call()
        assert isinstance(results, list)
        np.testing.assert_array_equal(results[0].to_numpy(), session.run(feeds)["Y"])

    def test_missing_input_is_named(self, artifact: Artifact) -> None:
        session = TractRuntime().open(artifact, CONFIG, WEIGHTS)
        feeds, _ = feeds_and_expected(5, 2)
        del feeds["initial_c"]
        with pytest.raises(ValueError, match="tract: missing input\\(s\\) initial_c"):
            session.run(feeds)

    def test_a_tract_error_is_one_line(self, tmp_path: Path) -> None:
        import onnx

        from exporters.onnx_native import build_model

        path = tmp_path / "lens.onnx"
        onnx.save(build_model(CONFIG, WEIGHTS, ExportOptions(sequence_lens=True)), str(path))
        session = TractRuntime().open(Artifact("onnx-native", "ok", path=path), CONFIG, WEIGHTS)
        feeds = {"X": np.zeros((5, 2, 3), np.float32), "sequence_lens": np.array([5, 3], np.int32)}
        with pytest.raises(RuntimeError) as info:
            session.run(feeds)
        message = str(info.value)
        assert message.startswith("tract cannot optimise the model: ")
        assert "\n" not in message
