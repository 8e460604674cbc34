"""The onnx-native exporter: valid graphs that match the float64 reference on onnxruntime.

Every model built here passes ``onnx.checker.check_model(full_check=True)`` and strict shape
inference (``_build`` checks both). Outputs are compared with ``reference.models`` at float32
tolerance. Where onnxruntime and the reference differ by design (``reference/SEMANTICS.md``:
clip, zero-length sequences with initial states, ``layout=1``), the tests assert that the
difference is there, so the product's expected-divergence entries stay true.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import onnxruntime.capi.onnxruntime_pybind11_state as ort_c
import pytest
from numpy.typing import NDArray
from onnx.reference import ReferenceEvaluator

from exporters.base import Exporter, ExportOptions, input_names, output_names
from exporters.onnx_native import MIN_OPSET, OnnxNativeExporter, build_model, default_opset, ir_version
from reference.config import LMConfig, LSTMConfig
from reference.models import lm_log_probs, run_stack
from reference.weights import LMWeights, LSTMWeights, generate, generate_lm

ATOL = RTOL = 1e-5  # float32 tolerance
INPUT, HIDDEN, VOCAB = 3, 4, 11
NEWEST = default_opset()
OPSETS = sorted({MIN_OPSET, 14, NEWEST})
DIRECTIONS = ("forward", "reverse", "bidirectional")
EXAMPLE = ExportOptions()
# (seq, batch): the example the model was exported with, and other sizes through the dynamic axes.
SIZES = {"example": (EXAMPLE.example_seq_len, EXAMPLE.example_batch), "other": (7, 3), "single": (1, 1)}

Arrays = dict[str, NDArray[Any]]


def _build(model: LSTMConfig | LMConfig, weights: LSTMWeights | LMWeights, options: ExportOptions) -> onnx.ModelProto:
    built = build_model(model, weights, options)
    onnx.checker.check_model(built, full_check=True)
    onnx.shape_inference.infer_shapes(built, check_type=True, strict_mode=True, data_prop=True)
    return built


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4  # the layout=1 test provokes an error log; the exception is what counts
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run_ort(model: onnx.ModelProto, feeds: Arrays) -> list[NDArray[Any]]:
    return list(_session(model).run(None, feeds))


def _run_evaluator(model: onnx.ModelProto, feeds: Arrays) -> list[NDArray[Any]]:
    return [np.asarray(out) for out in ReferenceEvaluator(model).run(None, feeds)]


def _assert_close(actual: Sequence[NDArray[Any]], expected: Sequence[NDArray[Any]], names: Sequence[str]) -> None:
    assert len(actual) == len(expected) == len(names)
    for a, e, name in zip(actual, expected, names, strict=True):
        assert a.shape == e.shape, f"{name}: shape {a.shape}, expected {e.shape}"
        np.testing.assert_allclose(a, e, atol=ATOL, rtol=RTOL, err_msg=f"output {name}")


def _stack(layers: int = 1, direction: str = "forward", batch_first: bool = False, **extra: Any) -> LSTMConfig:
    return LSTMConfig(INPUT, HIDDEN, num_layers=layers, direction=direction, batch_first=batch_first, **extra)


def _stack_feeds(
    config: LSTMConfig, options: ExportOptions, seq: int, batch: int, *, seed: int = 0, lens: Sequence[int] = ()
) -> Arrays:
    """Random float32 inputs named as the I/O contract names them."""
    rng = np.random.default_rng(seed)
    x_shape = (batch, seq, INPUT) if config.batch_first else (seq, batch, INPUT)
    feeds: Arrays = {"X": rng.standard_normal(x_shape).astype(np.float32)}
    if options.initial_states:
        state = (config.num_layers * config.num_directions, batch, HIDDEN)
        feeds["initial_h"] = rng.standard_normal(state).astype(np.float32)
        feeds["initial_c"] = rng.standard_normal(state).astype(np.float32)
    if options.sequence_lens:
        feeds["sequence_lens"] = np.array(lens or [seq] * batch, dtype=np.int32)
    assert list(feeds) == input_names(config, options)
    return feeds


def _stack_reference(config: LSTMConfig, weights: LSTMWeights, feeds: Arrays) -> list[NDArray[np.float64]]:
    return list(
        run_stack(
            config,
            weights,
            feeds["X"],
            initial_h=feeds.get("initial_h"),
            initial_c=feeds.get("initial_c"),
            sequence_lens=feeds.get("sequence_lens"),
        )
    )


def _check_stack(config: LSTMConfig, options: ExportOptions, seq: int, batch: int, **kw: Any) -> None:
    weights = generate(config, seed=7, recipe="torch-default")
    feeds = _stack_feeds(config, options, seq, batch, **kw)
    actual = _run_ort(_build(config, weights, options), feeds)
    _assert_close(actual, _stack_reference(config, weights, feeds), output_names(config))


def _lm(layers: int, direction: str, batch_first: bool) -> LMConfig:
    return LMConfig(VOCAB, _stack(layers, direction, batch_first))


def _tokens(config: LMConfig, seq: int, batch: int) -> NDArray[np.int64]:
    shape = (batch, seq) if config.lstm.batch_first else (seq, batch)
    return np.random.default_rng(3).integers(0, VOCAB, shape, dtype=np.int64)


GRID = list(itertools.product(OPSETS, (1, 2), DIRECTIONS, (False, True), (False, True), SIZES))


def _grid_id(params: tuple[Any, ...]) -> str:
    opset, layers, direction, states, batch_first, size = params
    return f"opset{opset}-L{layers}-{direction}-{'h0' if states else 'noh0'}-{'bf' if batch_first else 'tm'}-{size}"


class TestStackGrid:
    @pytest.mark.parametrize("params", GRID, ids=[_grid_id(p) for p in GRID])
    def test_matches_reference(self, params: tuple[Any, ...]) -> None:
        opset, layers, direction, states, batch_first, size = params
        options = ExportOptions(opset=opset, initial_states=states)
        _check_stack(_stack(layers, direction, batch_first), options, *SIZES[size])


LM_GRID = list(itertools.product(OPSETS, (1, 2), DIRECTIONS, (False, True), SIZES))


class TestLanguageModelGrid:
    @pytest.mark.parametrize(
        "params", LM_GRID, ids=[_grid_id((p[0], p[1], p[2], False, p[3], p[4])).replace("noh0-", "") for p in LM_GRID]
    )
    def test_matches_reference(self, params: tuple[Any, ...]) -> None:
        opset, layers, direction, batch_first, size = params
        config = _lm(layers, direction, batch_first)
        weights = generate_lm(config, seed=5, recipe="torch-default")
        tokens = _tokens(config, *SIZES[size])
        (actual,) = _run_ort(_build(config, weights, ExportOptions(opset=opset)), {"tokens": tokens})
        _assert_close([actual], [lm_log_probs(config, weights, tokens)], ["log_probs"])
        np.testing.assert_allclose(np.exp(actual).sum(axis=-1), 1.0, atol=1e-5)


# Non-default activations with alpha/beta where onnxruntime and the reference agree (SEMANTICS.md).
ACTIVATIONS = {
    "hardsigmoid-leakyrelu-elu": (
        "forward",
        ("HardSigmoid", "LeakyRelu", "Elu"),
        (0.3, 0.05, 0.9),
        (0.6,),
    ),
    "bidirectional-six": (
        "bidirectional",
        ("hardsigmoid", "Softsign", "Relu", "Sigmoid", "elu", "Softplus"),
        (0.25, 1.3),
        (0.45,),
    ),
    "reverse-defaults": ("reverse", ("HardSigmoid", "LeakyRelu", "Tanh"), None, None),
}


class TestEveryOpset:
    """Every opset from 7 to the default, across the op-version changes (Split 11/13/18, LSTM 14/22, ...)."""

    @pytest.mark.parametrize("opset", range(MIN_OPSET, NEWEST + 1))
    def test_stack(self, opset: int) -> None:
        config = _stack(2, "bidirectional", True, peepholes=True)
        options = ExportOptions(opset=opset, initial_states=True, sequence_lens=True)
        _check_stack(config, options, *SIZES["other"], lens=[7, 3, 5])

    @pytest.mark.parametrize("opset", range(MIN_OPSET, NEWEST + 1))
    def test_language_model(self, opset: int) -> None:
        config = _lm(2, "bidirectional", True)
        weights = generate_lm(config, seed=5)
        tokens = _tokens(config, *SIZES["other"])
        (actual,) = _run_ort(_build(config, weights, ExportOptions(opset=opset)), {"tokens": tokens})
        _assert_close([actual], [lm_log_probs(config, weights, tokens)], ["log_probs"])


class TestFeatures:
    """Operator features onnxruntime implements as the reference does (float32 tolerance)."""

    @pytest.mark.parametrize("opset", OPSETS)
    @pytest.mark.parametrize("direction", DIRECTIONS)
    def test_peepholes(self, opset: int, direction: str) -> None:
        config = _stack(2, direction, peepholes=True)
        _check_stack(config, ExportOptions(opset=opset, initial_states=True), 6, 3)

    @pytest.mark.parametrize("opset", OPSETS)
    @pytest.mark.parametrize("direction", DIRECTIONS)
    @pytest.mark.parametrize("states", [False, True], ids=["noh0", "h0"])
    @pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
    def test_sequence_lens_mixed(self, opset: int, direction: str, states: bool, batch_first: bool) -> None:
        options = ExportOptions(opset=opset, initial_states=states, sequence_lens=True)
        _check_stack(_stack(2, direction, batch_first), options, 6, 4, lens=[6, 2, 5, 1])

    @pytest.mark.parametrize("direction", DIRECTIONS)
    def test_sequence_lens_zero_without_initial_states(self, direction: str) -> None:
        # Both sides give zeros for a zero-length sequence when no initial state is given.
        options = ExportOptions(sequence_lens=True)
        _check_stack(_stack(2, direction), options, 5, 4, lens=[5, 0, 3, 0])

    @pytest.mark.parametrize("direction", DIRECTIONS)
    def test_sequence_lens_zero_with_initial_states_agrees_except_final_states(self, direction: str) -> None:
        config = _stack(2, direction)
        options = ExportOptions(initial_states=True, sequence_lens=True)
        weights = generate(config, seed=7)
        feeds = _stack_feeds(config, options, 5, 4, lens=[5, 0, 3, 0])
        y, y_h, y_c = _run_ort(_build(config, weights, options), feeds)
        ref_y, ref_h, ref_c = _stack_reference(config, weights, feeds)
        live = [0, 2]
        _assert_close([y, y_h[:, live], y_c[:, live]], [ref_y, ref_h[:, live], ref_c[:, live]], ["Y", "Y_h", "Y_c"])
        # SEMANTICS.md: the reference keeps the initial state after zero steps; onnxruntime zero-fills.
        np.testing.assert_allclose(ref_h[:, [1, 3]], feeds["initial_h"][:, [1, 3]], atol=1e-7)
        assert np.all(y_h[:, [1, 3]] == 0) and np.all(y_c[:, [1, 3]] == 0)
        assert np.abs(ref_h[:, [1, 3]]).max() > 1e-2

    @pytest.mark.parametrize("opset", OPSETS)
    @pytest.mark.parametrize("direction", DIRECTIONS)
    @pytest.mark.parametrize("peepholes", [False, True], ids=["nopeep", "peep"])
    def test_input_forget(self, opset: int, direction: str, peepholes: bool) -> None:
        config = _stack(2, direction, input_forget=1, peepholes=peepholes)
        _check_stack(config, ExportOptions(opset=opset, initial_states=True), 5, 3)

    @pytest.mark.parametrize("opset", OPSETS)
    @pytest.mark.parametrize("case", ACTIVATIONS)
    def test_activations(self, opset: int, case: str) -> None:
        direction, names, alpha, beta = ACTIVATIONS[case]
        config = _stack(2, direction, activations=names, activation_alpha=alpha, activation_beta=beta)
        options = ExportOptions(opset=opset, initial_states=True, sequence_lens=True)
        _check_stack(config, options, 6, 3, lens=[6, 3, 4])


LAYOUT1 = list(itertools.product((1, 2), DIRECTIONS, (False, True), (False, True)))


class TestDivergences:
    """Differences the product must detect: asserted present, not skipped."""

    def test_clip_differs_on_onnxruntime(self) -> None:
        config = _stack(1, "forward", clip=0.3)
        weights = generate(config, seed=11, recipe="saturating")
        options = ExportOptions(initial_states=True)
        feeds = _stack_feeds(config, options, 6, 3)
        actual = _run_ort(_build(config, weights, options), feeds)
        expected = _stack_reference(config, weights, feeds)
        worst = max(float(np.abs(a - e).max()) for a, e in zip(actual, expected, strict=True))
        assert worst > 1e-2, f"onnxruntime now matches the reference's clip reading (max diff {worst:.3g})"

    @pytest.mark.parametrize(
        "params", LAYOUT1, ids=[_grid_id((14, *p, "other"))[8:].replace("-other", "") for p in LAYOUT1]
    )
    def test_layout1_rejected_by_onnxruntime_and_run_by_evaluator(self, params: tuple[Any, ...]) -> None:
        layers, direction, states, batch_first = params
        config = _stack(layers, direction, batch_first)
        weights = generate(config, seed=13)
        options = ExportOptions(initial_states=states, layout=1)
        built = _build(config, weights, options)
        assert {a.name: a.i for n in built.graph.node if n.op_type == "LSTM" for a in n.attribute}["layout"] == 1
        with pytest.raises(Exception, match="layout"):
            _session(built)
        feeds = _stack_feeds(config, options, 6, 3)
        actual = _run_evaluator(built, feeds)
        _assert_close(actual, _stack_reference(config, weights, feeds), output_names(config))

    def test_layout1_language_model_runs_on_evaluator(self) -> None:
        config = _lm(2, "bidirectional", True)
        weights = generate_lm(config, seed=2)
        built = _build(config, weights, ExportOptions(layout=1))
        tokens = _tokens(config, 6, 3)
        (actual,) = _run_evaluator(built, {"tokens": tokens})
        _assert_close([actual], [lm_log_probs(config, weights, tokens)], ["log_probs"])


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


class TestGraph:
    @pytest.mark.parametrize(("opset", "layout"), [(o, 0) for o in OPSETS] + [(o, 1) for o in OPSETS if o >= 14])
    @pytest.mark.parametrize("lm", [False, True], ids=["stack", "lm"])
    def test_fixed_models_have_fixed_dims(self, opset: int, lm: bool, layout: int) -> None:
        stack = _stack(2, "bidirectional", batch_first=True)
        model: LSTMConfig | LMConfig = LMConfig(VOCAB, stack) if lm else stack
        weights = generate_lm(model, seed=1) if isinstance(model, LMConfig) else generate(stack, seed=1)
        options = ExportOptions(opset=opset, dynamic=False, initial_states=True, sequence_lens=True, layout=layout)
        built = _build(model, weights, options)
        inferred = onnx.shape_inference.infer_shapes(built, strict_mode=True, data_prop=True)
        tensors = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
        assert len(tensors) > len(built.graph.input) + len(built.graph.output)
        for value in tensors:
            dims = _dims(value)
            assert dims and all(isinstance(d, int) and d > 0 for d in dims), f"{value.name}: {dims}"
        seq, batch = options.example_seq_len, options.example_batch
        if lm:
            assert _dims(built.graph.input[0]) == [batch, seq]
            assert _dims(built.graph.output[0]) == [batch, seq, VOCAB]
        else:
            shapes = {v.name: _dims(v) for v in [*built.graph.input, *built.graph.output]}
            assert shapes == {
                "X": [batch, seq, INPUT],
                "initial_h": [4, batch, HIDDEN],
                "initial_c": [4, batch, HIDDEN],
                "sequence_lens": [batch],
                "Y": [batch, seq, 2 * HIDDEN],
                "Y_h": [4, batch, HIDDEN],
                "Y_c": [4, batch, HIDDEN],
            }
        if layout == 0:
            feeds = (
                {"tokens": _tokens(model, seq, batch)}
                if isinstance(model, LMConfig)
                else _stack_feeds(stack, options, seq, batch)
            )
            assert [o.shape for o in _run_ort(built, feeds)] == [tuple(_dims(o)) for o in built.graph.output]

    def test_dynamic_models_name_their_axes(self) -> None:
        config = _stack(2, "bidirectional")
        built = _build(config, generate(config, seed=1), ExportOptions(initial_states=True, sequence_lens=True))
        shapes = {v.name: _dims(v) for v in [*built.graph.input, *built.graph.output]}
        assert shapes == {
            "X": ["seq", "batch", INPUT],
            "initial_h": [4, "batch", HIDDEN],
            "initial_c": [4, "batch", HIDDEN],
            "sequence_lens": ["batch"],
            "Y": ["seq", "batch", 2 * HIDDEN],
            "Y_h": [4, "batch", HIDDEN],
            "Y_c": [4, "batch", HIDDEN],
        }

    @pytest.mark.parametrize("opset", OPSETS)
    def test_two_layer_bidirectional_has_two_lstm_nodes(self, opset: int) -> None:
        config = _stack(2, "bidirectional", batch_first=True)
        built = _build(config, generate(config, seed=1), ExportOptions(opset=opset, initial_states=True))
        histogram = Counter(n.op_type for n in built.graph.node)
        assert histogram["LSTM"] == 2
        assert [n.name for n in built.graph.node if n.op_type == "LSTM"] == ["lstm0", "lstm1"]
        assert {i.name for i in built.graph.initializer} >= {f"lstm{k}.{w}" for k in (0, 1) for w in "WRB"}
        assert all(i.data_type == onnx.TensorProto.FLOAT for i in built.graph.initializer if i.name.startswith("lstm"))

    def test_operator_attributes_are_copied(self) -> None:
        activations = ("HardSigmoid", "Tanh", "Elu")
        config = _stack(
            1, "reverse", peepholes=True, activations=activations, activation_alpha=(0.3, 0.8), clip=2.5, input_forget=1
        )
        built = _build(config, generate(config, seed=1), ExportOptions())
        (node,) = [n for n in built.graph.node if n.op_type == "LSTM"]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["hidden_size"] == HIDDEN and attrs["direction"] == b"reverse"
        assert attrs["activations"] == [b"HardSigmoid", b"Tanh", b"Elu"]
        assert attrs["activation_alpha"] == pytest.approx([0.3, 0.8])
        assert attrs["clip"] == pytest.approx(2.5) and attrs["input_forget"] == 1
        assert "layout" not in attrs
        assert list(node.input)[-1] == "lstm0.P"

    @pytest.mark.parametrize("opset", [*OPSETS, 13])
    def test_ir_version_is_the_oldest_for_the_opset(self, opset: int) -> None:
        config = _stack()
        built = _build(config, generate(config, seed=1), ExportOptions(opset=opset))
        assert built.ir_version == ir_version(opset)
        assert [(o.domain, o.version) for o in built.opset_import] == [("", opset)]
        _session(built)  # onnxruntime accepts the pair


class TestExporter:
    def test_protocol_and_metadata(self) -> None:
        exporter: Exporter = OnnxNativeExporter()
        assert (exporter.id, exporter.produces) == ("onnx-native", "onnx")
        assert exporter.description
        assert exporter.unavailable() is None
        assert exporter.versions()["onnx"] == onnx.__version__

    def test_default_opset_is_the_newest_onnxruntime_runs(self) -> None:
        newest_ort = max(s.since_version for s in ort_c.get_all_operator_schema() if s.domain in ("", "ai.onnx"))
        assert min(newest_ort, onnx.defs.onnx_opset_version()) == NEWEST
        config = _stack()
        built = _build(config, generate(config, seed=1), ExportOptions())
        assert built.opset_import[0].version == NEWEST
        _session(built)

    @pytest.mark.parametrize("lm", [False, True], ids=["stack", "lm"])
    @pytest.mark.parametrize(
        "options", [ExportOptions(), ExportOptions(opset=7, initial_states=True, sequence_lens=True)]
    )
    def test_applies_to_every_configuration(self, lm: bool, options: ExportOptions) -> None:
        stack = _stack(
            2, "reverse", True, peepholes=True, clip=1.0, input_forget=1, activations=("Relu", "Elu", "Tanh")
        )
        assert OnnxNativeExporter().not_applicable(LMConfig(VOCAB, stack) if lm else stack, options) is None

    @pytest.mark.parametrize(
        ("options", "words"),
        [
            (ExportOptions(opset=13, layout=1), ["layout", "opset >= 14"]),
            (ExportOptions(opset=6), ["opset 6"]),
            (ExportOptions(layout=2), ["layout 2"]),
        ],
    )
    def test_not_applicable_reasons(self, options: ExportOptions, words: list[str]) -> None:
        config = _stack(batch_first=True)
        reason = OnnxNativeExporter().not_applicable(config, options)
        assert reason is not None and all(w in reason for w in words), reason
        with pytest.raises(ValueError, match=r"opset|layout"):
            build_model(config, generate(config, seed=1), options)

    def test_mismatched_weights_are_an_error(self) -> None:
        config = _stack(2, "bidirectional")
        with pytest.raises(ValueError, match="num_layers 1"):
            build_model(config, generate(_stack(1, "bidirectional"), seed=1), ExportOptions())
        with pytest.raises(ValueError, match="LMWeights"):
            build_model(LMConfig(VOCAB, config), generate(config, seed=1), ExportOptions())

    def test_export_writes_the_built_model(self, tmp_path: Any) -> None:
        config = LMConfig(VOCAB, _stack(2, "bidirectional", True))
        weights = generate_lm(config, seed=4)
        options = ExportOptions(opset=14)
        path = tmp_path / "lm.onnx"
        outcome = OnnxNativeExporter().export(config, weights, options, path)
        assert outcome.warnings == () and outcome.module is None
        loaded = onnx.load(str(path))
        assert loaded.SerializeToString() == build_model(config, weights, options).SerializeToString()
        onnx.checker.check_model(str(path), full_check=True)
        tokens = _tokens(config, 4, 2)
        _assert_close(_run_ort(loaded, {"tokens": tokens}), [lm_log_probs(config, weights, tokens)], ["log_probs"])

    def test_import_is_lazy(self) -> None:
        code = "import sys, exporters.onnx_native; sys.exit(bool({'onnx', 'onnxruntime', 'torch'} & set(sys.modules)))"
        assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

    def test_default_opset_without_onnxruntime_is_the_fallback(self) -> None:
        code = (
            "import sys; sys.modules['onnxruntime'] = None\n"
            "from exporters.onnx_native import FALLBACK_OPSET, OnnxNativeExporter, default_opset\n"
            "assert default_opset() == FALLBACK_OPSET, default_opset()\n"
            "assert set(OnnxNativeExporter().versions()) == {'onnx'}"
        )
        result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
