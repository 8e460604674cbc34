"""``conformance check`` on the model shapes and options users bring, beyond the plain stack.

Each test pins one way a gate could pass when it should fail, or fail a correct model:
a CUDA lane that ran on the CPU, a runtime that ignores a feature the model uses,
an embedding as wide as the LSTM output, a tagger (no embedding before the LSTM),
weights of the wrong kind, runtimes that do not take ONNX files, integer token types.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from conformance.cli import main
from conformance.runtimes.onnxruntime_runtime import OrtRuntime, OrtSession
from exporters.base import ExportOptions
from exporters.registry import export
from reference.config import LMConfig, LSTMConfig
from reference.weights import generate, generate_lm


class CpuPretendingCuda(OrtRuntime):
    """ORT CPU that claims to be a CUDA lane, and whose profile shows every node on the CPU."""

    def __init__(self) -> None:
        super().__init__("CPUExecutionProvider", "all")
        self.required_provider = "CUDAExecutionProvider"

    def open(self, artifact: Any, model: Any, weights: Any) -> OrtSession:
        assert artifact is not None and artifact.path is not None
        return OrtSession(str(artifact.path), "CPUExecutionProvider", "all", profile=True)


def check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check", *argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def _export(model: Any, weights: Any, exporter: str, tmp_path: Path, options: ExportOptions | None = None) -> Path:
    artifact = export(model, weights, exporter, options or ExportOptions(), cache_dir=tmp_path / "cache")
    assert artifact.ok and artifact.path is not None, artifact.reason
    return artifact.path


class TestPlacement:
    def test_a_cuda_lane_whose_lstm_ran_on_the_cpu_fails(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("CONFORMANCE_EXTRA_RUNTIMES", f"fake-cuda={__name__}:CpuPretendingCuda")
        config = LSTMConfig(4, 8, num_layers=2, direction="bidirectional")
        path = _export(config, generate(config, seed=0), "onnx-native", tmp_path)
        code, out, _ = check([str(path), "--runtime", "fake-cuda", "--seq-lens", "3", "--batches", "2"], capsys)
        assert code == 1, out
        assert "ran on CPUExecutionProvider, not CUDAExecutionProvider: not a fake-cuda result" in out


class TestEvaluatorBlindSpots:
    def test_a_sequence_lens_model_is_not_judged_by_onnx_reference(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = LSTMConfig(4, 8)
        path = _export(config, generate(config, seed=0), "onnx-native", tmp_path, ExportOptions(sequence_lens=True))
        code, out, _ = check([str(path), "--runtime", "ort-cpu", "--runtime", "onnx-reference"], capsys)
        assert code == 0, out
        assert "onnx.reference's LSTM ignores sequence_lens, which this node uses" in out


class TestLanguageModels:
    def test_embedding_as_wide_as_the_lstm_output_with_a_checkpoint(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        import torch

        class LM(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embedding = torch.nn.Embedding(50, 32)
                self.lstm = torch.nn.LSTM(32, 32)
                self.proj = torch.nn.Linear(32, 50)

            def forward(self, tokens: torch.Tensor) -> torch.Tensor:
                return torch.log_softmax(self.proj(self.lstm(self.embedding(tokens))[0]), dim=-1)

        torch.manual_seed(0)
        lm = LM().eval()
        path = tmp_path / "lm.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                lm, (torch.zeros(5, 2, dtype=torch.long),), str(path), dynamo=False, input_names=["tokens"],
                output_names=["log_probs"], dynamic_axes={"tokens": {0: "T", 1: "B"}, "log_probs": {0: "T", 1: "B"}},
            )  # fmt: skip
        torch.save(lm.state_dict(), tmp_path / "lm.pt")
        code, out, _ = check([str(path), "--weights", str(tmp_path / "lm.pt"), "--runtime", "ort-cpu"], capsys)
        assert code == 0, out

    def test_int32_token_input_is_fed_int32(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        config = LMConfig(20, LSTMConfig(4, 8))
        path = _export(config, generate_lm(config, seed=0), "onnx-native", tmp_path)
        model = onnx.load(str(path))
        tokens = next(i for i in model.graph.input if i.name == "tokens")
        tokens.type.tensor_type.elem_type = onnx.TensorProto.INT32
        gather = next(n for n in model.graph.node if n.op_type == "Gather")
        gather.input[1] = "tokens_int64"
        model.graph.node.insert(
            0, onnx.helper.make_node("Cast", ["tokens"], ["tokens_int64"], to=onnx.TensorProto.INT64)
        )
        int32 = tmp_path / "int32.onnx"
        onnx.save(model, str(int32))
        code, out, _ = check([str(int32), "--runtime", "ort-cpu"], capsys)
        assert code == 0, out


class TestTaggers:
    def test_a_tagger_without_embedding_is_checked(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Float features straight into the LSTM, no Gather: once refused, now a node like any other."""
        config = LMConfig(20, LSTMConfig(4, 8))
        path = _export(config, generate_lm(config, seed=0), "onnx-native", tmp_path)
        model = onnx.load(str(path))
        gather = next(n for n in model.graph.node if n.op_type == "Gather")
        model.graph.node.remove(gather)
        features = onnx.helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, ["T", "B", 4])
        for node in model.graph.node:
            node.input[:] = ["features" if name == gather.output[0] else name for name in node.input]
        model.graph.input.remove(next(i for i in model.graph.input if i.name == "tokens"))
        model.graph.input.insert(0, features)
        model.graph.initializer.remove(next(t for t in model.graph.initializer if t.name == gather.input[0]))
        tagger = tmp_path / "tagger.onnx"
        onnx.save(model, str(tagger))
        code, out, _ = check([str(tagger), "--runtime", "ort-cpu"], capsys)
        assert code == 0, out
        assert "PASS" in out


class TestRuntimeChoice:
    @pytest.mark.parametrize("runtime", ["reference", "torch-cpu"])
    def test_runtimes_that_do_not_take_onnx_files_are_bad_input(
        self, runtime: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = LSTMConfig(4, 8)
        path = _export(config, generate(config, seed=0), "onnx-native", tmp_path)
        code, _, err = check([str(path), "--runtime", runtime], capsys)
        assert code == 2
        assert err.startswith(f"error: --runtime {runtime}: it does not run ONNX files; check runs on: ort-cpu, ")


def test_inputs_keep_their_declared_dtypes(tmp_path: Path) -> None:
    """The check feeds exactly the dtypes the graph declares (no silent int64/float32 defaults), and token
    indices cover the embedding table."""
    from conformance.graph.inputs import read_inputs, roles, synthesize

    config = LMConfig(20, LSTMConfig(4, 8))
    path = _export(config, generate_lm(config, seed=0), "onnx-native", tmp_path)
    model = onnx.load(str(path))
    inputs = read_inputs(model)
    found = roles(model, inputs)
    assert dict(found.tokens) == {"tokens": 20}
    rng = np.random.default_rng(0)
    feeds = {i.name: synthesize(i, {"seq": 20, "batch": 2}, found, rng, steps=20) for i in inputs}
    assert {name: str(v.dtype) for name, v in feeds.items()} == {"tokens": "int64"}
    assert sorted(set(feeds["tokens"].ravel().tolist())) == list(range(20))
