"""``conformance check MODEL --quantize``: what fp16 and int8-dynamic cost per output, per LSTM node and, for a
language model, in perplexity, against the float64 reference of the original model; the gates; and every
bad input's message.

The figures are held against a direct computation: the transform (exporters.transforms) run here, the
transformed model run on ONNX Runtime with the nodes' outputs exposed, against ``reference.lstm`` /
``reference.models`` in float64 on the same ``--inputs``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from conformance.check.quantize import map_nodes
from conformance.cli import main
from conformance.evaluate import lm_metrics
from conformance.graph import LSTMAttributes, LSTMNode
from exporters.base import ExportOptions
from exporters.onnx_native import build_model
from exporters.transforms import TRANSFORMS
from reference import lstm
from reference.config import LMConfig, LSTMConfig
from reference.models import lm_log_probs, log_softmax, run_stack
from reference.weights import LMWeights, LSTMWeights, generate, generate_lm
from tests.corpus.conftest import corpus  # noqa: F401  (the session fixture: {name: CorpusModel})
from tests.corpus.spec import CorpusModel

STACK = LSTMConfig(input_size=4, hidden_size=8, num_layers=2)
LM = LMConfig(vocab_size=24, lstm=LSTMConfig(input_size=8, hidden_size=16, batch_first=True))
LM_TIME_MAJOR = LMConfig(vocab_size=24, lstm=LSTMConfig(input_size=8, hidden_size=16))
FEW = ["--dim", "seq=3", "--dim", "batch=2"]  # one probed input set besides the --inputs one: fast
KNOWN = "known transforms: fp16, fp16-io32, int8-dynamic"


class Models:
    """The models of this module, their weights and the inputs the figures are computed on."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.stack_weights: LSTMWeights = generate(STACK, seed=0)
        self.stack = self._save("stack.onnx", build_model(STACK, self.stack_weights, ExportOptions()))
        self.lm_weights: LMWeights = generate_lm(LM, seed=0)
        self.lm = self._save("lm.onnx", build_model(LM, self.lm_weights, ExportOptions(opset=21)))
        self.lm_tm_weights: LMWeights = generate_lm(LM_TIME_MAJOR, seed=1)
        logits = build_model(LM_TIME_MAJOR, self.lm_tm_weights, ExportOptions(opset=21))
        self.logits_lm = self._save("logits_lm.onnx", _cut(logits, "LogSoftmax", "logits", 24))
        hidden = build_model(LM_TIME_MAJOR, self.lm_tm_weights, ExportOptions(opset=21))
        self.hidden_lm = self._save("hidden_lm.onnx", _cut(hidden, "MatMul", "lstm.output", 16))
        self.stack_fp16 = folder / "stack_fp16.onnx"
        TRANSFORMS["fp16"].run(self.stack, self.stack_fp16)
        rng = np.random.default_rng(7)
        self.x = rng.uniform(-1, 1, (5, 2, 4)).astype(np.float32)
        np.savez(folder / "x.npz", X=self.x)
        self.tokens = rng.integers(0, 24, (2, 9)).astype(np.int64)  # batch-first
        np.savez(folder / "tokens.npz", tokens=self.tokens)
        np.savez(folder / "tokens_tm.npz", tokens=np.ascontiguousarray(self.tokens.T))

    def _save(self, name: str, model: onnx.ModelProto) -> Path:
        path = self.folder / name
        onnx.save(model, str(path))
        return path

    def transformed(self, source: Path, transform: str) -> Path:
        target = self.folder / f"{source.stem}.{transform}.onnx"
        if not target.exists():
            TRANSFORMS[transform].run(source, target)
        return target


def _cut(model: onnx.ModelProto, op: str, output: str, width: int) -> onnx.ModelProto:
    """``model`` without the nodes from the first ``op`` on, returning ``output`` ([seq, batch, width])."""
    first = next(k for k, n in enumerate(model.graph.node) if n.op_type == op)
    del model.graph.node[first:]
    del model.graph.output[:]
    value = onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, ["seq", "batch", width])
    model.graph.output.append(value)
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return Models(tmp_path_factory.mktemp("quantize"))


def check(argv: list[Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check", *[str(a) for a in argv]])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def records(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(path.read_text())["results"]
    return found


def at(found: list[dict[str, Any]], label: str, node: str | None = None) -> dict[str, Any]:
    """The record at input set ``label`` of ``node`` (None: the whole model)."""
    return next(r for r in found if r["case"].endswith(f"[{label}]") and r.get("node") == node)


def run_exposed(path: Path, feeds: dict[str, np.ndarray], extra: list[str]) -> dict[str, np.ndarray]:
    """``path`` on ONNX Runtime's CPU provider (default options, as ``ort-cpu``), with ``extra`` values
    (the LSTM nodes' outputs) returned too."""
    import onnxruntime as ort

    model = onnx.load(str(path))
    declared = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in extra if name not in declared)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def greatest(actual: np.ndarray, expected: np.ndarray) -> tuple[float, tuple[int, ...]]:
    error = np.abs(actual.astype(np.float64) - expected)
    index = np.unravel_index(int(np.argmax(error)), error.shape)
    return float(error[index]), tuple(int(i) for i in index)


def stack_reference(weights: LSTMWeights, x: np.ndarray) -> dict[str, np.ndarray]:
    """Each node's Y, Y_h, Y_c (``lstm0.Y``...) and the model's outputs, in float64."""
    out: dict[str, np.ndarray] = {}
    layer_input = x.astype(np.float64)
    for k, layer in enumerate(weights.layers):
        result = lstm(layer_input, layer.W, layer.R, layer.B)
        out |= {f"lstm{k}.Y": result.Y, f"lstm{k}.Y_h": result.Y_h, f"lstm{k}.Y_c": result.Y_c}
        layer_input = result.Y[:, 0]
    whole = run_stack(STACK, weights, x)
    return out | {"Y": whole.output, "Y_h": whole.h_n, "Y_c": whole.c_n}


NODE_VALUES = [f"lstm{k}.{role}" for k in (0, 1) for role in ("Y", "Y_h", "Y_c")]


class TestCosts:
    @pytest.mark.parametrize("transform", ["int8-dynamic", "fp16"])
    def test_per_node_and_output_figures_are_the_direct_ones(
        self, models: Models, transform: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = tmp_path / "q.json"
        code, out, _ = check([models.stack, "--quantize", transform, "--inputs", models.folder / "x.npz", *FEW,
                              "--json", report], capsys)  # fmt: skip
        assert code == 0, out
        found = records(report)
        feeds = {"X": models.x.astype(np.float16) if transform == "fp16" else models.x}
        got = run_exposed(models.transformed(models.stack, transform), feeds, NODE_VALUES)
        expected = stack_reference(models.stack_weights, models.x)
        whole = at(found, "inputs:x.npz")
        assert whole["status"] == "pass" and whole["exporter"] == f"user+{transform}"
        assert whole["message"].startswith("cost only: no --max-abs given; at inputs:x.npz: Y max abs ")
        for name in ("Y", "Y_h", "Y_c"):
            value, index = greatest(got[name], expected[name])
            cost = whole["detail"]["cost"][name]
            assert cost["max_abs"] == pytest.approx(value, rel=1e-3, abs=1e-7), name
            assert value > 1e-5, f"{name}: {transform} should cost something measurable"
        op = "DynamicQuantizeLSTM" if transform == "int8-dynamic" else "LSTM"
        for k in (0, 1):
            node = at(found, "inputs:x.npz", f"lstm{k}")
            assert node["detail"]["op_type"] == op
            assert node["detail"]["mapped_by"] == ("name" if transform == "int8-dynamic" else "path")
            assert node["status"] == "pass" and f"within the {transform} error budget" in node["message"]
            for role in ("Y", "Y_h", "Y_c"):
                value, index = greatest(got[f"lstm{k}.{role}"], expected[f"lstm{k}.{role}"])
                cost = node["detail"]["cost"][role]
                if k == 0:  # the same inputs, the same float64 reference: the very numbers
                    assert cost["max_abs"] == pytest.approx(value, rel=1e-9)
                    assert tuple(cost["max_abs_index"]) == index
                else:  # the check's lstm1 reads lstm0's reference output rounded to float32
                    assert cost["max_abs"] == pytest.approx(value, rel=1e-2, abs=1e-6)
        table = out[out.index("What the transform costs") :]
        assert "output Y " in table and "node lstm0" in table and "node lstm1" in table

    def test_int8_keeps_lstms_it_does_not_quantize_and_still_costs_them(
        self,
        corpus: dict[str, CorpusModel],  # noqa: F811
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        report = tmp_path / "q.json"
        path = corpus["loop_chunks"].path
        code, out, _ = check([path, "--quantize", "int8-dynamic", "--json", report, "--dim", "n_chunks=2",
                              "--dim", "chunk_len=3", "--dim", "batch=2"], capsys)  # fmt: skip
        assert code == 0, out
        note = json.loads(report.read_text())["run"]["notes"]
        assert any("0 of 1 LSTM nodes became com.microsoft.DynamicQuantizeLSTM; left as float LSTM by the "
                   "transform: Loop_chunks/body/chunk/rnn/LSTM" in n for n in note)  # fmt: skip
        node = next(r for r in records(report) if r["kind"] == "node")
        assert node["detail"]["op_type"] == "LSTM" and node["detail"]["mapped_by"] == "path"

    def test_fp16_lstm_inside_a_loop_body_is_captured_per_iteration(
        self,
        corpus: dict[str, CorpusModel],  # noqa: F811
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        report = tmp_path / "q.json"
        path = corpus["loop_chunks"].path
        code, out, _ = check([path, "--quantize", "fp16", "--json", report, "--dim", "n_chunks=2",
                              "--dim", "chunk_len=3", "--dim", "batch=2"], capsys)  # fmt: skip
        assert code == 0, out
        node = next(r for r in records(report) if r["kind"] == "node")
        assert node["status"] == "pass" and "(2 invocations)" in node["message"]
        assert node["outputs"]["Y"]["actual_dtype"] == "float16"
        assert len(node["detail"]["cost"]["Y"]["max_abs_index"]) == 5  # the iteration, then [T, D, B, H]


class TestLanguageModel:
    def test_perplexity_and_agreement_are_lm_metrics_on_the_next_tokens(
        self, models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = tmp_path / "q.json"
        code, out, _ = check([models.lm, "--quantize", "int8-dynamic", "--inputs", models.folder / "tokens.npz",
                              *FEW, "--json", report], capsys)  # fmt: skip
        assert code == 0, out
        lm = at(records(report), "inputs:tokens.npz")["detail"]["lm"]
        assert (lm["output"], lm["scores"], lm["time_axis"]) == ("log_probs", "log_probs", 1)
        assert lm["time"] == "axis 1 of 'tokens' (dim 'seq', which moves the LSTM's sequence axis)"
        reference = lm_log_probs(LM, models.lm_weights, models.tokens)
        got = run_exposed(models.transformed(models.lm, "int8-dynamic"), {"tokens": models.tokens}, [])
        direct = lm_metrics(models.tokens, reference, got["log_probs"], batch_first=True)
        assert direct is not None
        assert lm["perplexity_reference"] == pytest.approx(direct["perplexity_reference"], rel=1e-6)
        assert lm["perplexity"] == pytest.approx(direct["perplexity"], rel=1e-6)
        assert lm["perplexity_increase"] == pytest.approx(direct["perplexity_increase"], rel=1e-3, abs=1e-8)
        assert lm["next_token_agreement"] == direct["next_token_agreement"]
        assert lm["scored_tokens"] == 2 * 8
        assert "language model" in out and "perplexity" in out[out.index("What the transform costs") :]

    def test_logits_get_a_log_softmax_and_time_major_tokens_take_axis_0(
        self, models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = tmp_path / "q.json"
        tokens = np.ascontiguousarray(models.tokens.T)
        code, out, _ = check([models.logits_lm, "--quantize", "fp16-io32", "--inputs",
                              models.folder / "tokens_tm.npz", *FEW, "--json", report], capsys)  # fmt: skip
        assert code == 0, out
        lm = at(records(report), "inputs:tokens_tm.npz")["detail"]["lm"]
        assert (lm["output"], lm["scores"], lm["time_axis"]) == ("logits", "logits", 0)
        reference = lm_log_probs(LM_TIME_MAJOR, models.lm_tm_weights, tokens)
        got = run_exposed(models.transformed(models.logits_lm, "fp16-io32"), {"tokens": tokens}, [])
        direct = lm_metrics(tokens, reference, log_softmax(got["logits"].astype(np.float64)))
        assert direct is not None
        assert lm["perplexity"] == pytest.approx(direct["perplexity"], rel=1e-6)
        assert lm["next_token_agreement"] == direct["next_token_agreement"]

    def test_a_torch_export_quantized_to_int8(
        self,
        corpus: dict[str, CorpusModel],  # noqa: F811
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        report = tmp_path / "q.json"
        code, out, _ = check([corpus["char_lm_torchscript"].path, "--quantize", "int8-dynamic", "--json", report],
                             capsys)  # fmt: skip
        assert code == 0, out
        found = records(report)
        nodes = {r["node"]: r["detail"] for r in found if r["kind"] == "node"}
        assert {path: (d["mapped_to"], d["mapped_by"], d["op_type"]) for path, d in nodes.items()} == {
            "lstm/LSTM": ("lstm/LSTM_quant", "name", "DynamicQuantizeLSTM"),
            "lstm/LSTM_1": ("lstm/LSTM_1_quant", "name", "DynamicQuantizeLSTM"),
        }
        lm = next(r for r in found if r["kind"] == "model")["detail"]["lm"]
        assert (lm["output"], lm["scores"], lm["time_axis"]) == ("logits", "logits", 1)


class TestRuntimes:
    def test_a_runtime_that_dies_costs_its_inputs_only_and_its_records_name_the_transform(
        self, models: Models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("CONFORMANCE_EXTRA_RUNTIMES", "failing=tests.conformance.failing_runtime:FailingRuntime")
        monkeypatch.setenv("FAILING_RUNTIME_MODE", "abort")
        report = tmp_path / "q.json"
        code, _, _ = check([models.stack, "--quantize", "int8-dynamic", "--runtime", "failing", "--dim", "seq=3",
                            "--dim", "batch=1,3", "--json", report], capsys)  # fmt: skip
        assert code == 1
        found = records(report)
        died = at(found, "seq=3,batch=3")
        assert died["status"] == "error" and died["exporter"] == "user+int8-dynamic"
        assert died["id"] == "stack.onnx[seq=3,batch=3]/user+int8-dynamic/failing"
        assert at(found, "seq=3,batch=1")["status"] == "pass"


class TestGates:
    def measured(self, models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
        report = tmp_path / "cost.json"
        assert check([models.lm, "--quantize", "int8-dynamic", *FEW, "--json", report], capsys)[0] == 0
        whole = next(r for r in records(report) if r["kind"] == "model")
        return {"abs": max(c["max_abs"] for c in whole["detail"]["cost"].values()),
                "ppl": whole["detail"]["lm"]["perplexity_increase"]}  # fmt: skip

    def test_max_abs_fails_below_the_measured_error_and_passes_above(
        self, models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        cost = self.measured(models, tmp_path, capsys)["abs"]
        report = tmp_path / "q.json"
        code, out, _ = check([models.lm, "--quantize", "int8-dynamic", *FEW, "--max-abs", cost / 2, "--json", report],
                             capsys)  # fmt: skip
        assert code == 1
        message = next(r for r in records(report) if r["kind"] == "model")["message"]
        assert message.startswith(
            f"the int8-dynamic model at batch=2,seq=3:\nlog_probs: greatest absolute error {cost:.3g} at index "
        )
        assert f", over --max-abs {cost / 2:g} (" in message
        code, out, _ = check([models.lm, "--quantize", "int8-dynamic", *FEW, "--max-abs", cost * 2, "--json", report],
                             capsys)  # fmt: skip
        assert code == 0, out
        message = next(r for r in records(report) if r["kind"] == "model")["message"]
        assert message.startswith(f"every output within --max-abs {cost * 2:g}; at batch=2,seq=3: log_probs max abs ")

    def test_max_ppl_increase_fails_below_the_measured_increase_and_passes_above(
        self, models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        increase = self.measured(models, tmp_path, capsys)["ppl"]
        assert increase > 0  # this model and seed: int8 raises the perplexity a little
        report = tmp_path / "q.json"
        code, _, _ = check([models.lm, "--quantize", "int8-dynamic", *FEW, "--max-ppl-increase", increase / 2,
                            "--json", report], capsys)  # fmt: skip
        assert code == 1
        message = next(r for r in records(report) if r["kind"] == "model")["message"]
        assert message.startswith(
            f"the int8-dynamic model at batch=2,seq=3:\nperplexity increase {increase:+.3%} over --max-ppl-increase "
            f"{increase / 2:.3%}\n(at batch=2,seq=3: log_probs max abs "
        )
        code, out, _ = check([models.lm, "--quantize", "int8-dynamic", *FEW, "--max-ppl-increase", increase * 2,
                              "--json", report], capsys)  # fmt: skip
        assert code == 0, out
        message = next(r for r in records(report) if r["kind"] == "model")["message"]
        assert message.startswith(
            f"no --max-abs given (output errors are cost only); perplexity increase {increase:+.3%} within "
            f"--max-ppl-increase {increase * 2:.3%}; at batch=2,seq=3: "
        )

    def test_with_a_gate_nodes_report_their_cost_and_do_not_gate(
        self, models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = tmp_path / "q.json"
        code, _, _ = check([models.stack, "--quantize", "int8-dynamic", *FEW, "--max-abs", 1, "--json", report],
                           capsys)  # fmt: skip
        assert code == 0
        node = next(r for r in records(report) if r["kind"] == "node")
        assert "cost only (the gates decide)" in node["message"]

    def test_reports_render(self, models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        files = {fmt: tmp_path / f"r.{fmt}" for fmt in ("json", "junit", "markdown", "html")}
        options = [a for fmt, path in files.items() for a in (f"--{fmt}", path)]
        assert check([models.lm, "--quantize", "fp16", *FEW, *options], capsys)[0] == 0
        assert all(path.stat().st_size > 0 for path in files.values())
        assert json.loads(files["json"].read_text())["run"]["quantize"] == {
            "transform": "fp16", "max_abs": None, "max_ppl_increase": None}  # fmt: skip


class TestBadInput:
    @pytest.mark.parametrize(
        ("extra", "message"),
        [
            (["--quantize", "int4"], f"--quantize int4: unknown transform 'int4'; {KNOWN}"),
            (["--max-abs", "0.1"], "--max-abs: needs --quantize TRANSFORM (it gates what the transform costs)"),
            (["--max-ppl-increase", "0.1"],
             "--max-ppl-increase: needs --quantize TRANSFORM (it gates what the transform costs)"),
            (["--quantize", "fp16", "--stream", "3"], "--quantize cannot be combined with --stream: the cost is "
             "measured on whole input sets, not on a fed-back stream"),
            (["--quantize", "fp16", "--weights", "w.pt"], "--quantize cannot be combined with --weights: the "
             "transformed weights are rounded on purpose; check --weights without it"),
            (["--quantize", "fp16", "--against-torch", "m:f"], "--quantize cannot be combined with "
             "--against-torch: the cost is measured against the float64 reference of MODEL"),
            (["--quantize", "fp16", "--atol", "1", "--rtol", "1"], "--quantize cannot be combined with "
             "--atol/--rtol: LSTM nodes are held to the transform's measured budget; gate the outputs with --max-abs"),
            (["--quantize", "int8-dynamic", "--runtime", "onnx-reference"], "--runtime onnx-reference: int8-dynamic "
             "makes com.microsoft.DynamicQuantizeLSTM, an ONNX Runtime contrib op; onnx-reference does not "
             "implement it"),
            (["--quantize", "int8-dynamic", "--max-ppl-increase", "0.02"], "--max-ppl-increase: stack.onnx is not "
             "language-model-shaped: no input is read as token ids by a Gather on a constant table"),
        ],
    )  # fmt: skip
    def test_one_line_exit_2(
        self, models: Models, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = check([models.stack, *extra], capsys)
        assert (code, err) == (2, f"error: {message}\n")

    def test_a_model_without_float32_tensors(self, models: Models, capsys: pytest.CaptureFixture[str]) -> None:
        code, _, err = check([models.stack_fp16, "--quantize", "int8-dynamic"], capsys)
        assert (code, err) == (2, "error: transform 'int8-dynamic' cannot apply to exporter id 'stack_fp16.onnx': "
                                  f"the model has no float32 tensor to convert; {KNOWN}\n")  # fmt: skip

    def test_ppl_gate_on_a_token_model_without_a_vocabulary_output(
        self, models: Models, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = check([models.hidden_lm, "--quantize", "fp16", *FEW, "--max-ppl-increase", "0.02"], capsys)
        assert (code, err) == (2, "error: --max-ppl-increase: hidden_lm.onnx is not language-model-shaped: token "
                                  "input 'tokens' indexes a table of 24 rows, but no float output has the shape "
                                  "[3, 2, 24] (the token input's, then 24) at seq=3,batch=2 (outputs: lstm.output "
                                  "[3, 2, 16])\n")  # fmt: skip


def _node(path: str, outputs: dict[str, str] | None = None) -> LSTMNode:
    return LSTMNode(path, path, 0, LSTMAttributes(hidden_size=4), {"X": "x"}, outputs or {}, (), "float32")


class TestNodeMapping:
    def test_by_path_then_quant_name_then_outputs_then_order(self) -> None:
        original = [_node("a"), _node("b"), _node("c", {"Y": "c.Y"}), _node("d")]
        transformed = [_node("a"), _node("b_quant"), _node("zz", {"Y": "c.Y"}), _node("q")]
        mapped, unmapped = map_nodes(original, transformed)
        assert mapped == {"a": ("a", "path"), "b": ("b_quant", "name"), "c": ("zz", "outputs"), "d": ("q", "order")}
        assert unmapped == {}

    def test_a_node_that_nothing_maps_to_says_why(self) -> None:
        mapped, unmapped = map_nodes([_node("a"), _node("b")], [_node("a")])
        assert mapped == {"a": ("a", "path")}
        assert unmapped == {"b": "no LSTM node of the transformed model has its path, name or output names, and "
                                 "the models have 2 and 1 LSTM nodes, so their order cannot tell"}  # fmt: skip
