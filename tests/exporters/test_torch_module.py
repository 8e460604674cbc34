"""The torch module built from canonical weights computes what the float64 reference computes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exporters.base import ExportOptions, ExportOutcome
from exporters.torch_module import TorchModuleExporter, build_module, torch_not_applicable
from reference.config import LMConfig, LSTMConfig
from reference.models import lm_log_probs, run_stack
from reference.weights import generate, generate_lm

torch = pytest.importorskip("torch")

STACKS = {
    "1-layer-forward": LSTMConfig(3, 4),
    "2-layer-forward": LSTMConfig(3, 4, num_layers=2),
    "1-layer-bidirectional": LSTMConfig(3, 4, direction="bidirectional"),
    "2-layer-bidirectional": LSTMConfig(3, 4, num_layers=2, direction="bidirectional"),
    "2-layer-bidirectional-batch-first": LSTMConfig(3, 4, num_layers=2, direction="bidirectional", batch_first=True),
}
LMS = {
    "lm-2-layer": LMConfig(11, LSTMConfig(3, 4, num_layers=2)),
    "lm-bidirectional-batch-first": LMConfig(11, LSTMConfig(3, 4, direction="bidirectional", batch_first=True)),
}
STEPS, BATCH = 6, 3


def _stack_inputs(config: LSTMConfig, *, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (BATCH, STEPS, config.input_size) if config.batch_first else (STEPS, BATCH, config.input_size)
    state = (config.num_layers * config.num_directions, BATCH, config.hidden_size)
    return rng.standard_normal(shape), rng.standard_normal(state), rng.standard_normal(state)


def _run_stack_module(module: object, dtype: object, *arrays: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        outputs = module(*(torch.tensor(a, dtype=dtype) for a in arrays))  # type: ignore[operator]
    return [o.double().numpy() for o in outputs]


def _tokens(config: LMConfig, *, seed: int = 2) -> np.ndarray:
    shape = (BATCH, STEPS) if config.lstm.batch_first else (STEPS, BATCH)
    return np.random.default_rng(seed).integers(0, config.vocab_size, shape)


class TestAgreesWithReference:
    @pytest.mark.parametrize(("dtype", "tol"), [("float64", 1e-10), ("float32", 1e-5)])
    @pytest.mark.parametrize("name", list(STACKS))
    def test_stack(self, name: str, dtype: str, tol: float) -> None:
        config = STACKS[name]
        weights = generate(config, seed=0)
        module = build_module(config, weights, dtype=dtype)
        x, _, _ = _stack_inputs(config)
        expected = run_stack(config, weights, x)
        actual = _run_stack_module(module, getattr(torch, dtype), x)
        for got, want in zip(actual, expected, strict=True):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=tol, rtol=tol)

    @pytest.mark.parametrize(("dtype", "tol"), [("float64", 1e-10), ("float32", 1e-5)])
    @pytest.mark.parametrize("name", ["2-layer-bidirectional", "2-layer-bidirectional-batch-first"])
    def test_stack_with_initial_states(self, name: str, dtype: str, tol: float) -> None:
        config = STACKS[name]
        weights = generate(config, seed=0, recipe="saturating")
        module = build_module(config, weights, dtype=dtype)
        x, h0, c0 = _stack_inputs(config)
        expected = run_stack(config, weights, x, initial_h=h0, initial_c=c0)
        actual = _run_stack_module(module, getattr(torch, dtype), x, h0, c0)
        for got, want in zip(actual, expected, strict=True):
            np.testing.assert_allclose(got, want, atol=tol, rtol=tol)

    @pytest.mark.parametrize(("dtype", "tol"), [("float64", 1e-10), ("float32", 1e-5)])
    @pytest.mark.parametrize("name", list(LMS))
    def test_language_model(self, name: str, dtype: str, tol: float) -> None:
        config = LMS[name]
        weights = generate_lm(config, seed=0)
        module = build_module(config, weights, dtype=dtype)
        tokens = _tokens(config)
        with torch.no_grad():
            actual = module(torch.from_numpy(tokens)).double().numpy()
        expected = lm_log_probs(config, weights, tokens)
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, atol=tol, rtol=tol)


class TestModuleShape:
    def test_language_model_submodules(self) -> None:
        config = LMS["lm-2-layer"]
        module = build_module(config, generate_lm(config, seed=0))
        assert isinstance(module.embedding, torch.nn.Embedding)
        assert isinstance(module.lstm, torch.nn.LSTM)
        assert isinstance(module.proj, torch.nn.Linear)
        assert not module.training

    def test_stack_is_float32_eval_by_default(self) -> None:
        config = STACKS["2-layer-bidirectional"]
        module = build_module(config, generate(config, seed=0))
        assert not module.training
        assert {p.dtype for p in module.parameters()} == {torch.float32}
        lstm = module.lstm
        assert isinstance(lstm, torch.nn.LSTM) and lstm.bidirectional and lstm.num_layers == 2

    def test_final_states_are_layer_major(self) -> None:
        config = STACKS["2-layer-bidirectional"]
        x, _, _ = _stack_inputs(config)
        _, y_h, y_c = _run_stack_module(build_module(config, generate(config, seed=0)), torch.float32, x)
        assert y_h.shape == y_c.shape == (4, BATCH, 4)

    def test_one_initial_state_alone_is_refused(self) -> None:
        config = STACKS["1-layer-forward"]
        module = build_module(config, generate(config, seed=0))
        x, h0, _ = _stack_inputs(config)
        with pytest.raises(ValueError, match="initial_h and initial_c: give both or neither"):
            module(torch.tensor(x, dtype=torch.float32), torch.tensor(h0, dtype=torch.float32))


class TestBuildModuleRefuses:
    def test_unknown_dtype(self) -> None:
        config = STACKS["1-layer-forward"]
        with pytest.raises(ValueError, match=r"dtype: expected one of \['float32', 'float64'\], got 'float16'"):
            build_module(config, generate(config, seed=0), dtype="float16")

    def test_weights_for_another_config(self) -> None:
        with pytest.raises(ValueError, match=r"weights do not match the config: hidden_size 5 \(config 4\)"):
            build_module(STACKS["1-layer-forward"], generate(LSTMConfig(3, 5), seed=0))

    def test_lm_weights_for_a_stack(self) -> None:
        config = LMS["lm-2-layer"]
        with pytest.raises(TypeError, match="an LSTM stack needs LSTMWeights, got LMWeights"):
            build_module(config.lstm, generate_lm(config, seed=0))

    def test_stack_weights_for_an_lm(self) -> None:
        config = LMS["lm-2-layer"]
        with pytest.raises(TypeError, match="a language model needs LMWeights, got LSTMWeights"):
            build_module(config, generate(config.lstm, seed=0))

    def test_inexpressible_config(self) -> None:
        config = LSTMConfig(3, 4, peepholes=True)
        with pytest.raises(ValueError, match=re.escape("build_module: torch.nn.LSTM has no peephole connections")):
            build_module(config, generate(config, seed=0))


class TestNotApplicable:
    @pytest.mark.parametrize(
        ("config", "reason"),
        [
            (LSTMConfig(3, 4, direction="reverse"), "torch.nn.LSTM has no reverse-only direction"),
            (LSTMConfig(3, 4, peepholes=True), "torch.nn.LSTM has no peephole connections"),
            (LSTMConfig(3, 4, clip=1.0), "torch.nn.LSTM has no cell clip"),
            (LSTMConfig(3, 4, input_forget=1), "torch.nn.LSTM has no input_forget"),
            (
                LSTMConfig(3, 4, activations=("HardSigmoid", "Tanh", "Tanh")),
                "torch.nn.LSTM has no non-default activations",
            ),
            (
                LSTMConfig(3, 4, clip=2.0, input_forget=1),
                "torch.nn.LSTM has no cell clip, input_forget",
            ),
        ],
    )
    def test_inexpressible_stack(self, config: LSTMConfig, reason: str) -> None:
        assert TorchModuleExporter().not_applicable(config, ExportOptions()) == reason

    def test_inexpressible_language_model(self) -> None:
        config = LMConfig(11, LSTMConfig(3, 4, direction="reverse"))
        assert torch_not_applicable(config, ExportOptions()) == "torch.nn.LSTM has no reverse-only direction"

    def test_sequence_lens_option(self) -> None:
        reason = TorchModuleExporter().not_applicable(STACKS["1-layer-forward"], ExportOptions(sequence_lens=True))
        assert reason == "torch.nn.LSTM has no sequence_lens input (only packed sequences)"

    def test_reasons_accumulate(self) -> None:
        reason = torch_not_applicable(LSTMConfig(3, 4, direction="reverse"), ExportOptions(sequence_lens=True))
        assert reason == (
            "torch.nn.LSTM has no reverse-only direction; "
            "torch.nn.LSTM has no sequence_lens input (only packed sequences)"
        )

    @pytest.mark.parametrize(
        "config",
        [
            STACKS["2-layer-bidirectional-batch-first"],
            LSTMConfig(3, 4, activations=("sigmoid", "tanh", "Tanh")),
            LMS["lm-2-layer"],
        ],
    )
    def test_expressible(self, config: LSTMConfig | LMConfig) -> None:
        assert TorchModuleExporter().not_applicable(config, ExportOptions(initial_states=True)) is None


class TestExporter:
    def test_identity(self) -> None:
        exporter = TorchModuleExporter()
        assert (exporter.id, exporter.produces) == ("torch-module", "torch")
        assert exporter.unavailable() is None
        assert exporter.versions() == {"torch": torch.__version__}

    def test_export_builds_the_module_and_writes_nothing(self, tmp_path: Path) -> None:
        config = STACKS["1-layer-bidirectional"]
        weights = generate(config, seed=0)
        target = tmp_path / "unused"
        outcome = TorchModuleExporter().export(config, weights, ExportOptions(), target)
        assert isinstance(outcome, ExportOutcome)
        assert outcome.warnings == ()
        assert not target.exists()
        x, _, _ = _stack_inputs(config)
        actual = _run_stack_module(outcome.module, torch.float32, x)
        np.testing.assert_allclose(actual[0], run_stack(config, weights, x).output, atol=1e-5, rtol=1e-5)


def test_importing_the_exporters_does_not_import_torch() -> None:
    code = (
        "import sys, exporters.torch_module, exporters.torch_onnx; "
        "heavy = [m for m in ('torch', 'onnx', 'onnxscript') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
