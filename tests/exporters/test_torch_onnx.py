"""torch.onnx exporters: what they write, run in ONNX Runtime, against the float64 reference.

Every (exporter, model) pair is exported once per module and checked at the
example shape and at other sequence lengths and batch sizes. Where an
exporter is known to be wrong (torch 2.13's dynamo bakes the example sequence
length into a Reshape of time-major models), the test asserts that the wrong
result is *detected*, so a fix upstream shows up here as a failure to update.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from exporters.base import ExportOptions, input_names, output_names
from exporters.torch_onnx import (
    DEFAULT_TORCHSCRIPT_OPSET,
    TorchDynamoExporter,
    TorchOnnxExportError,
    TorchScriptExporter,
    _embed_external_data,
    dynamic_axes,
    example_inputs,
    export_module,
)
from reference.config import LMConfig, LSTMConfig
from reference.models import lm_log_probs, run_stack
from reference.weights import generate, generate_lm

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ATOL = RTOL = 1e-5
EXAMPLE = ExportOptions()  # example input: 5 steps x batch 2
T0, B0 = EXAMPLE.example_seq_len, EXAMPLE.example_batch
EXPORTERS = {"torch-script": TorchScriptExporter(), "torch-dynamo": TorchDynamoExporter()}
# torch.export takes seconds per model: the dynamo lanes are slow tests.
EXPORTER_PARAMS = [pytest.param(e, marks=[pytest.mark.slow] if e == "torch-dynamo" else []) for e in EXPORTERS]


FORWARD = LSTMConfig(3, 4)


class Case(NamedTuple):
    model: LSTMConfig | LMConfig
    options: ExportOptions


CASES = {
    "1-layer-forward": Case(FORWARD, EXAMPLE),
    "2-layer-bidirectional": Case(LSTMConfig(3, 4, num_layers=2, direction="bidirectional"), EXAMPLE),
    "2-layer-forward-initial-states": Case(LSTMConfig(3, 4, num_layers=2), ExportOptions(initial_states=True)),
    "1-layer-bidirectional-batch-first-initial-states": Case(
        LSTMConfig(3, 4, direction="bidirectional", batch_first=True), ExportOptions(initial_states=True)
    ),
    "lm-2-layer": Case(LMConfig(11, LSTMConfig(3, 4, num_layers=2)), EXAMPLE),
    "lm-bidirectional-batch-first": Case(
        LMConfig(11, LSTMConfig(3, 4, direction="bidirectional", batch_first=True)), EXAMPLE
    ),
}
# (steps, batch): the example shape, another batch, other sequence lengths.
SHAPES = [(T0, B0), (T0, 3), (T0, 1), (7, B0), (2, 4), (10, 1)]


def _dynamo_bakes_length(exporter: str, case: str, steps: int) -> bool:
    """torch 2.13's dynamo export of a time-major model is wrong at any sequence length but the example's.

    Batch-first models compute correctly at every length (only their declared output shape is wrong).
    """
    model = CASES[case].model
    config = model.lstm if isinstance(model, LMConfig) else model
    return exporter == "torch-dynamo" and not config.batch_first and steps != T0


def _session(path: Path) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the detected failures would print errors; the test asserts them instead
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class Exported(NamedTuple):
    path: Path
    warnings: tuple[str, ...]
    weights: Any
    session: Any


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Exported]:
    """Export each (exporter, case) once per module, lazily."""
    done: dict[tuple[str, str], Exported] = {}

    def get(exporter: str, case: str) -> Exported:
        if (exporter, case) not in done:
            model, options = CASES[case]
            weights = generate_lm(model, seed=0) if isinstance(model, LMConfig) else generate(model, seed=0)
            path = tmp_path_factory.mktemp(f"{exporter}-{case}") / "model.onnx"
            outcome = EXPORTERS[exporter].export(model, weights, options, path)
            done[exporter, case] = Exported(path, outcome.warnings, weights, _session(path))
        return done[exporter, case]

    return get


def _feed_and_expected(case: Case, weights: Any, steps: int, batch: int) -> tuple[dict[str, Any], list[Any]]:
    model, options = case
    rng = np.random.default_rng(steps * 100 + batch)
    config = model.lstm if isinstance(model, LMConfig) else model
    seq_batch = (batch, steps) if config.batch_first else (steps, batch)
    if isinstance(model, LMConfig):
        tokens = rng.integers(0, model.vocab_size, seq_batch)
        return {"tokens": tokens}, [lm_log_probs(model, weights, tokens)]
    feed: dict[str, Any] = {"X": rng.standard_normal((*seq_batch, config.input_size)).astype(np.float32)}
    if options.initial_states:
        state = (config.num_layers * config.num_directions, batch, config.hidden_size)
        feed["initial_h"] = rng.standard_normal(state).astype(np.float32)
        feed["initial_c"] = rng.standard_normal(state).astype(np.float32)
    states = {k: v for k, v in feed.items() if k != "X"}
    return feed, list(run_stack(config, weights, feed["X"], **states))


def _disagreement(session: Any, feed: dict[str, Any], expected: list[Any], names: list[str]) -> str | None:
    """Why the session's outputs are not the reference's (within ATOL/RTOL), or ``None`` if they are."""
    try:
        actual = session.run(names, feed)
    except Exception as exc:  # the runtime refusing the model at this shape is a detection too
        return f"onnxruntime raised {type(exc).__name__}: {str(exc)[:300]}"
    for name, got, want in zip(names, actual, expected, strict=True):
        if got.shape != want.shape:
            return f"{name}: shape {list(got.shape)}, reference {list(want.shape)}"
        excess = np.abs(got - want) - (ATOL + RTOL * np.abs(want))
        if not np.all(excess <= 0):
            return f"{name}: greatest absolute error {np.max(np.abs(got - want)):.3g} exceeds the tolerance"
    return None


@pytest.mark.parametrize(("steps", "batch"), SHAPES, ids=[f"T{t}xB{b}" for t, b in SHAPES])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("exporter", EXPORTER_PARAMS)
def test_runs_like_the_reference(
    exported: Callable[[str, str], Exported], exporter: str, case: str, steps: int, batch: int
) -> None:
    artifact = exported(exporter, case)
    feed, expected = _feed_and_expected(CASES[case], artifact.weights, steps, batch)
    problem = _disagreement(artifact.session, feed, expected, output_names(CASES[case].model))
    if _dynamo_bakes_length(exporter, case, steps):
        assert problem is not None, f"dynamo export at T={steps} (example T={T0}) now agrees: the bug is fixed?"
    else:
        assert problem is None, problem


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "steps", "batch", "detected"),
    [
        # T*B is not a multiple of 5: the baked Reshape([5, -1, D*H]) fails in the runtime.
        ("2-layer-bidirectional", 7, 2, "onnxruntime raised Fail: [ONNXRuntimeError] : 1 : FAIL : Non-zero status "),
        # T*B = 10: the Reshape succeeds and the model silently returns a wrongly shaped (and scrambled) output.
        ("2-layer-bidirectional", 10, 1, "Y: shape [5, 2, 8], reference [10, 1, 8]"),
        ("lm-2-layer", 10, 1, "log_probs: shape [5, 2, 11], reference [10, 1, 11]"),
    ],
)
def test_dynamo_baked_length_exactly(
    exported: Callable[[str, str], Exported], case: str, steps: int, batch: int, detected: str
) -> None:
    artifact = exported("torch-dynamo", case)
    feed, expected = _feed_and_expected(CASES[case], artifact.weights, steps, batch)
    problem = _disagreement(artifact.session, feed, expected, output_names(CASES[case].model))
    assert problem is not None and problem.startswith(detected), problem
    if "Reshape" in detected or "raised" in detected:
        assert "running Reshape node" in problem


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("exporter", EXPORTER_PARAMS)
class TestWrittenFile:
    def test_native_lstm_nodes_and_declared_axes(
        self, exported: Callable[[str, str], Exported], exporter: str, case: str
    ) -> None:
        model, options = CASES[case]
        proto = onnx.load(str(exported(exporter, case).path))
        config = model.lstm if isinstance(model, LMConfig) else model
        assert [n.op_type for n in proto.graph.node].count("LSTM") == config.num_layers
        first_input = proto.graph.input[0]
        assert [i.name for i in proto.graph.input] == input_names(model, options)
        assert [o.name for o in proto.graph.output] == output_names(model)
        dims = first_input.type.tensor_type.shape.dim
        seq_axis = 1 if config.batch_first else 0
        # The input stays symbolic in every export of the process (exporters.torch_onnx clears the stale kernel).
        assert dims[seq_axis].dim_param == "seq" and dims[1 - seq_axis].dim_param == "batch"

    def test_self_contained_with_the_expected_opset(
        self, exported: Callable[[str, str], Exported], exporter: str, case: str
    ) -> None:
        path = exported(exporter, case).path
        assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]
        proto = onnx.load(str(path), load_external_data=False)
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
        opset = next(o.version for o in proto.opset_import if o.domain == "")
        assert opset == (DEFAULT_TORCHSCRIPT_OPSET if exporter == "torch-script" else 20)  # 20: torch 2.13's default

    def test_warnings_are_captured_lines(
        self, exported: Callable[[str, str], Exported], exporter: str, case: str
    ) -> None:
        warned = exported(exporter, case).warnings
        assert isinstance(warned, tuple) and all(isinstance(w, str) and w for w in warned)
        baked = [w for w in warned if "requested dynamic ('seq') but the file declares it static (5)" in w]
        if exporter == "torch-dynamo":
            assert any(w.startswith("FutureWarning: ") for w in warned)
            assert any(w.startswith("[torch.onnx] Obtain model graph") for w in warned)
            assert baked, warned  # the output's sequence axis is declared static: the bug, flagged at export
        else:
            assert any("legacy TorchScript-based ONNX export" in w for w in warned)
            assert not baked


class TestExportModule:
    @pytest.mark.slow  # a real dynamo export
    def test_nothing_leaks_to_stdout_or_stderr(self, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
        model, options = FORWARD, EXAMPLE
        torch_logger = logging.getLogger("torch")
        before = (list(torch_logger.handlers), torch_logger.propagate)
        outcome = TorchDynamoExporter().export(model, generate(model, seed=1), options, tmp_path / "m.onnx")
        out, err = capfd.readouterr()
        assert (out, err) == ("", "")
        assert outcome.warnings
        assert (list(torch_logger.handlers), torch_logger.propagate) == before

    def test_external_data_is_embedded(self, tmp_path: Path) -> None:
        weight = onnx.numpy_helper.from_array(np.arange(64, dtype=np.float32).reshape(8, 8), "W")
        graph = onnx.helper.make_graph(
            [onnx.helper.make_node("MatMul", ["X", "W"], ["Y"])],
            "g",
            [onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [1, 8])],
            [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [1, 8])],
            [weight],
        )
        path = tmp_path / "m.onnx"
        onnx.save_model(
            onnx.helper.make_model(graph),
            str(path),
            save_as_external_data=True,
            location="m.onnx.data",
            size_threshold=0,
        )
        assert (tmp_path / "m.onnx.data").exists()
        _embed_external_data(path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
        loaded = onnx.load(str(path), load_external_data=False).graph.initializer[0]
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(loaded), np.arange(64).reshape(8, 8))

    def test_static_export(self, tmp_path: Path) -> None:
        model = LSTMConfig(3, 4, direction="bidirectional")
        options = ExportOptions(dynamic=False, example_seq_len=3, example_batch=1)
        path = tmp_path / "static.onnx"
        weights = generate(model, seed=0)
        TorchScriptExporter().export(model, weights, options, path)
        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_value for d in dims] == [3, 1, 3]
        session = _session(path)
        feed, expected = _feed_and_expected(Case(model, options), weights, 3, 1)
        assert _disagreement(session, feed, expected, output_names(model)) is None

    def test_requested_opset_is_honoured(self, tmp_path: Path) -> None:
        model = FORWARD
        path = tmp_path / "m.onnx"
        TorchScriptExporter().export(model, generate(model, seed=0), ExportOptions(opset=14), path)
        assert next(o.version for o in onnx.load(str(path)).opset_import if o.domain == "") == 14

    @pytest.mark.parametrize(
        ("exporter", "message"),
        [
            # TorchScript writes an opset-1 file the checker rejects.
            ("torch-script", "torch.onnx.export(dynamo=False, opset_version=1) wrote an invalid ONNX model: "),
            # dynamo silently falls back to opset 18.
            pytest.param(
                "torch-dynamo",
                "torch.onnx.export(dynamo=True, opset_version=1) wrote opset 18, not the requested 1",
                marks=pytest.mark.slow,
            ),
        ],
        ids=["torch-script", "torch-dynamo"],
    )
    def test_impossible_opset_fails_clearly(self, tmp_path: Path, exporter: str, message: str) -> None:
        model = FORWARD
        path = tmp_path / "m.onnx"
        with pytest.raises(TorchOnnxExportError, match=re.escape(message)):
            EXPORTERS[exporter].export(model, generate(model, seed=0), ExportOptions(opset=1), path)
        assert list(tmp_path.iterdir()) == []

    def test_proj_size_torchscript_refuses(self, tmp_path: Path) -> None:
        with pytest.raises(
            TorchOnnxExportError, match="Unsupported: ONNX export of operator LSTM, LSTMs with projections"
        ):
            _export_projected(tmp_path / "m.onnx", dynamo=False)
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.slow
    def test_proj_size_dynamo_writes_a_model_the_checker_rejects(self, tmp_path: Path) -> None:
        # torch.onnx (dynamo) writes an LSTM node whose declared state shapes contradict hidden_size;
        # without the full check onnxruntime would reject it at run time ("initial_c must have shape").
        with pytest.raises(TorchOnnxExportError, match=re.escape(_PROJ_SIZE_DYNAMO)):
            _export_projected(tmp_path / "m.onnx", dynamo=True)
        assert list(tmp_path.iterdir()) == []


_PROJ_SIZE_DYNAMO = (
    "torch.onnx.export(dynamo=True, opset_version=None) wrote an invalid ONNX model: [ShapeInferenceError] "
    "Inference error(s): (op_type:LSTM, node name: node_lstm__2): [ShapeInferenceError] "
    "Inferred shape and existing shape differ in dimension 2: (2) vs (4)"
)


def _export_projected(path: Path, *, dynamo: bool) -> Any:
    class Projected(torch.nn.Module):  # type: ignore[misc,name-defined]  # torch comes from importorskip
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 4, proj_size=2)

        def forward(self, X: Any) -> Any:
            Y, (Y_h, Y_c) = self.lstm(X)
            return Y, Y_h, Y_c

    torch.manual_seed(0)
    module = Projected().eval()
    model, options = CASES["1-layer-forward"]
    export_module(
        module,
        (torch.randn(5, 2, 3),),
        path,
        dynamo=dynamo,
        input_names=["X"],
        output_names=["Y", "Y_h", "Y_c"],
        opset=None if dynamo else DEFAULT_TORCHSCRIPT_OPSET,
        axes=dynamic_axes(model, options),
    )
    return module


class TestExporters:
    @pytest.mark.parametrize("exporter", list(EXPORTERS))
    def test_identity(self, exporter: str) -> None:
        e = EXPORTERS[exporter]
        assert (e.id, e.produces) == (exporter, "onnx")
        assert e.unavailable() is None
        expected = {"torch"} if exporter == "torch-script" else {"torch", "onnxscript"}
        assert set(e.versions()) == expected
        assert e.versions()["torch"] == torch.__version__

    def test_dynamo_needs_onnxscript(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import exporters.torch_onnx as module

        fake = {"onnxscript": "onnxscript does not import: ModuleNotFoundError: No module named 'onnxscript'"}
        monkeypatch.setattr(module, "import_problem", fake.get)
        assert TorchDynamoExporter().unavailable() == fake["onnxscript"]
        assert TorchScriptExporter().unavailable() is None

    def test_default_opsets(self) -> None:
        assert TorchScriptExporter().opset(ExportOptions()) == 17
        assert TorchDynamoExporter().opset(ExportOptions()) is None
        assert TorchDynamoExporter().opset(ExportOptions(opset=19)) == 19

    @pytest.mark.parametrize("exporter", list(EXPORTERS))
    @pytest.mark.parametrize(
        ("model", "options", "reason"),
        [
            (LSTMConfig(3, 4, direction="reverse"), EXAMPLE, "torch.nn.LSTM has no reverse-only direction"),
            (LSTMConfig(3, 4, peepholes=True), EXAMPLE, "torch.nn.LSTM has no peephole connections"),
            (
                LSTMConfig(3, 4),
                ExportOptions(sequence_lens=True),
                "torch.nn.LSTM has no sequence_lens input (only packed sequences)",
            ),
            (LSTMConfig(3, 4), EXAMPLE, None),
        ],
    )
    def test_not_applicable(self, exporter: str, model: LSTMConfig, options: ExportOptions, reason: str | None) -> None:
        assert EXPORTERS[exporter].not_applicable(model, options) == reason

    def test_export_refuses_what_is_not_applicable(self, tmp_path: Path) -> None:
        model = LSTMConfig(3, 4, clip=1.0)
        with pytest.raises(ValueError, match=re.escape("torch-script: torch.nn.LSTM has no cell clip")):
            TorchScriptExporter().export(model, generate(model, seed=0), EXAMPLE, tmp_path / "m.onnx")


class TestHelpers:
    def test_example_inputs(self) -> None:
        model = LSTMConfig(3, 4, num_layers=2, direction="bidirectional", batch_first=True)
        options = ExportOptions(initial_states=True, example_seq_len=6, example_batch=3)
        x, h0, c0 = example_inputs(model, options)
        assert (tuple(x.shape), tuple(h0.shape), tuple(c0.shape)) == ((3, 6, 3), (4, 3, 4), (4, 3, 4))
        assert x.dtype == torch.float32
        assert torch.equal(x, example_inputs(model, options)[0])  # deterministic
        (tokens,) = example_inputs(LMConfig(11, LSTMConfig(3, 4)), options)
        assert tokens.dtype == torch.int64 and tuple(tokens.shape) == (6, 3) and int(tokens.max()) < 11

    def test_dynamic_axes(self) -> None:
        model = LSTMConfig(3, 4, batch_first=True)
        assert dynamic_axes(model, ExportOptions(initial_states=True)) == {
            "X": {0: "batch", 1: "seq"},
            "initial_h": {1: "batch"},
            "initial_c": {1: "batch"},
            "Y": {0: "batch", 1: "seq"},
            "Y_h": {1: "batch"},
            "Y_c": {1: "batch"},
        }
        lm = LMConfig(11, LSTMConfig(3, 4))
        assert dynamic_axes(lm, EXAMPLE) == {"tokens": {0: "seq", 1: "batch"}, "log_probs": {0: "seq", 1: "batch"}}
        assert dynamic_axes(model, ExportOptions(dynamic=False)) == {}
