"""``conformance check`` on graphs our exporters did not make: the user-shaped corpus (tests/corpus/).

Correct models pass with every LSTM node found and exercised; planted bugs are named by ``--weights``;
a runtime wrong at one node fails that node only; bad options exit 2 with one line; ``--stream`` and
``--dim`` do what they say. The CLI runs in-process on ``ort-cpu`` unless a test is about runtimes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance.cli import main
from tests.corpus.conftest import corpus  # noqa: F401  (the session fixture: {name: CorpusModel})
from tests.corpus.models import correct_models, planted_bugs
from tests.corpus.spec import CorpusModel

FAST = ["--runtime", "ort-cpu"]

# The corpus's correct models, by name (the float16 ones need onnxconverter-common; absent, they skip).
CORRECT = (
    "char_lm_dynamo",
    "char_lm_torchscript",
    "bilstm_tagger_dynamo",
    "bilstm_tagger_torchscript",
    "conv_lstm_dynamo",
    "conv_lstm_torchscript",
    "stack2_torchscript",
    "packed_stack3_torchscript",
    "function_encoder_torchscript",
    "vad_if_streaming",
    "loop_chunks",
    "scan_chunks",
    "nested_if_loop",
    "weights_as_inputs",
    "two_lstms_attrs",
    "vad_if_fp16",
    "stack2_fp16_io32",
)
IN_IF_BRANCHES = ("vad_if_streaming", "vad_if_fp16", "nested_if_loop")
# Planted bug -> the phrase its "(trained weights)" finding must carry.
BUG_PHRASES = {
    "bug_reverse": "direction='reverse'",
    "bug_hardsigmoid": "HardSigmoid",
    "bug_input_forget": "input_forget=1",
    "bug_clip": "clip=0.5",
    "bug_weight_changed": "R differs from lstm.weight_hh_l1",
}
PERTURBED_ENV = "perturbed=tests.conformance.perturbing_runtime:PerturbingRuntime"


def check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check", *argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def verdict(out: str) -> str:
    """The closing line of ``check``: PASS, FAIL or NOTHING CHECKED (the report path line comes last)."""
    lines = [line for line in out.rstrip().splitlines() if not line.startswith("reports: ")]
    return lines[-1]


def records(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(path.read_text())["results"]
    return found


def node_records(path: Path) -> list[dict[str, Any]]:
    return [r for r in records(path) if r["kind"] == "node"]


def table_row(out: str, row: str) -> str:
    """The line of the node x runtime table whose first cell is ``row``."""
    found = [line for line in out.splitlines() if line.lstrip("│ ").startswith(f"{row} ")]
    assert found, f"no table row {row!r} in:\n{out}"
    return found[0]


def corpus_model(models: dict[str, CorpusModel], name: str) -> CorpusModel:
    if name not in models:
        pytest.skip(f"{name} is not in this corpus build (float16 models need onnxconverter-common)")
    return models[name]


def test_the_name_lists_cover_the_corpus(corpus: dict[str, CorpusModel]) -> None:  # noqa: F811
    assert set(correct_models(corpus)) <= set(CORRECT)
    assert set(planted_bugs(corpus)) == set(BUG_PHRASES)


class TestCorrectModels:
    @pytest.mark.parametrize("name", CORRECT)
    def test_passes_with_every_lstm_node_found(
        self,
        name: str,
        corpus: dict[str, CorpusModel],  # noqa: F811
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        model = corpus_model(corpus, name)
        code, out, _ = check([str(model.path), *FAST, "--json", str(tmp_path / "out.json")], capsys)
        assert code == 0, out
        assert verdict(out).startswith("PASS: ")
        found = {r["node"] for r in node_records(tmp_path / "out.json")}
        assert found == {p.strip("/") for p in model.lstm_paths}
        for path in model.lstm_paths:
            assert "pass" in table_row(out, path.strip("/"))

    @pytest.mark.parametrize("name", IN_IF_BRANCHES)
    def test_every_branch_lstm_is_exercised(
        self,
        name: str,
        corpus: dict[str, CorpusModel],  # noqa: F811
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        model = corpus_model(corpus, name)
        code, out, _ = check([str(model.path), *FAST, "--json", str(tmp_path / "out.json")], capsys)
        assert code == 0, out
        nodes = node_records(tmp_path / "out.json")
        for path in model.lstm_paths:
            statuses = [r["status"] for r in nodes if r["node"] == path.strip("/")]
            assert "pass" in statuses, f"{path} never ran and passed: {statuses}"

    def test_on_the_onnx_reference_evaluator(
        self,
        corpus: dict[str, CorpusModel],  # noqa: F811
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        model = corpus["vad_if_streaming"]
        code, out, _ = check([str(model.path), "--runtime", "onnx-reference"], capsys)
        assert code == 0, out
        assert "pass" in table_row(out, "(whole model)")


class TestTrainedWeights:
    @pytest.mark.parametrize("name", sorted(BUG_PHRASES))
    def test_planted_bug_is_named(
        self,
        name: str,
        corpus: dict[str, CorpusModel],  # noqa: F811
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        model = corpus[name]
        assert model.state_dict is not None and model.bug_node is not None
        argv = [str(model.path), *FAST, "--weights", str(model.state_dict), "--json", str(tmp_path / "out.json")]
        code, out, _ = check(argv, capsys)
        assert code == 1, out
        assert verdict(out).startswith("FAIL: ")
        assert "fail" in table_row(out, "(trained weights)")
        (weights,) = [r for r in records(tmp_path / "out.json") if r["kind"] == "weights"]
        assert weights["status"] == "fail"
        findings = [line for line in weights["message"].splitlines() if line.startswith("- LSTM node ")]
        named = [line for line in findings if line.startswith(f"- LSTM node {model.bug_node.strip('/')}: ")]
        assert len(named) == 1, weights["message"]
        assert BUG_PHRASES[name] in named[0]
        assert BUG_PHRASES[name] in out

    def test_correct_model_with_its_own_state_dict_passes(
        self,
        corpus: dict[str, CorpusModel],  # noqa: F811
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        model = corpus["stack2_torchscript"]
        assert model.state_dict is not None
        argv = [str(model.path), *FAST, "--weights", str(model.state_dict), "--json", str(tmp_path / "out.json")]
        code, out, _ = check(argv, capsys)
        assert code == 0, out
        assert "pass" in table_row(out, "(trained weights)")
        (weights,) = [r for r in records(tmp_path / "out.json") if r["kind"] == "weights"]
        assert weights["status"] == "pass"
        assert weights["message"].startswith("every LSTM node (2 compared) uses the trained weights")


class TestOneRuntimeWrongAtOneNode:
    def test_only_the_perturbed_node_fails_and_only_there(
        self,
        corpus: dict[str, CorpusModel],  # noqa: F811
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        model = corpus["stack2_torchscript"]
        other, perturbed = (p.strip("/") for p in model.lstm_paths)
        monkeypatch.setenv("CONFORMANCE_EXTRA_RUNTIMES", PERTURBED_ENV)
        monkeypatch.setenv("PERTURB_NODE", perturbed)
        argv = [str(model.path), *FAST, "--runtime", "perturbed", "--json", str(tmp_path / "out.json")]
        code, out, _ = check(argv, capsys)
        assert code == 1, out
        found = records(tmp_path / "out.json")

        def statuses(kind: str, runtime: str, node: str | None = None) -> set[str]:
            return {
                r["status"] for r in found if r["kind"] == kind and r["runtime"] == runtime and r.get("node") == node
            }

        assert statuses("node", "perturbed", perturbed) == {"fail"}
        assert statuses("node", "ort-cpu", perturbed) == {"pass"}
        assert statuses("node", "perturbed", other) == {"pass"}
        assert statuses("node", "ort-cpu", other) == {"pass"}
        assert statuses("model", "perturbed") == {"pass"}  # the model's own outputs were left alone
        failed = [r for r in found if r["status"] == "fail"]
        assert all(f"LSTM node {perturbed}: Tensor-likes are not close!" in r["message"] for r in failed)
        assert "fail" in table_row(out, perturbed)
        assert "fail" not in table_row(out, other)


class TestBadInput:
    @pytest.mark.parametrize(
        ("name", "options", "message"),
        [
            (
                "stack2_torchscript",
                ["--dim", "nosuch=3"],
                "--dim nosuch=3: the model has no symbolic dim 'nosuch'; its symbolic dims: seq, batch",
            ),
            ("stack2_torchscript", ["--dim", "seq=0"], "--dim seq=0: 0 is outside 1..1000000"),
            ("stack2_torchscript", ["--dim", "x:9=3"], "--dim x:9=3: input 'x' has 3 axes (0..2)"),
            (
                "stack2_torchscript",
                ["--feed", "nosuch=1"],
                "--feed nosuch=1: the model has no input 'nosuch'; its inputs: x",
            ),
            ("vad_if_streaming", ["--feed", "sr=abc"], "--feed sr=abc: 'abc' is neither a number nor a .npy file"),
            (
                "vad_if_streaming",
                ["--feed", "sr=1.5"],
                "--feed sr=1.5: input 'sr' is int64; '1.5' is not a whole number",
            ),
            ("stack2_torchscript", ["--state", "a=b"], "--state OUT=IN: needs --stream N"),
            (
                "vad_if_streaming",
                ["--stream", "3", "--state", "nosuch=state"],
                "--state nosuch=state: the model has no output 'nosuch'; its outputs: output, stateN",
            ),
        ],
    )
    def test_option_refused_in_one_line(
        self,
        name: str,
        options: list[str],
        message: str,
        corpus: dict[str, CorpusModel],  # noqa: F811
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        code, out, err = check([str(corpus[name].path), *FAST, *options], capsys)
        assert code == 2, out
        assert err == f"error: {message}\n"

    def test_npy_of_the_wrong_shape(
        self,
        corpus: dict[str, CorpusModel],  # noqa: F811
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        wrong = tmp_path / "wrong.npy"
        np.save(wrong, np.zeros((2, 3), np.float32))
        code, _, err = check([str(corpus["stack2_torchscript"].path), *FAST, "--feed", f"x={wrong}"], capsys)
        assert code == 2
        assert err == (
            f"error: --feed x={wrong}: input 'x' has shape [2, 3], the model declares ['seq', 'batch', 10]\n"
        )

    def test_graph_without_lstm_lists_its_ops(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        import onnx
        from onnx import TensorProto, helper

        nodes = [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Add", ["a", "a"], ["b"]),
            helper.make_node("Relu", ["b"], ["y"]),
        ]
        graph = helper.make_graph(
            nodes,
            "no_lstm",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        )
        path = tmp_path / "no_lstm.onnx"
        onnx.save(helper.make_model(graph), str(path))
        code, _, err = check([str(path), *FAST], capsys)
        assert code == 2
        assert err == (
            f"error: {path}: no LSTM node in the graph, its subgraphs or its functions; nothing to check "
            "(ops: Relu x2, Add)\n"
        )


class TestStreamAndDims:
    def test_stream_guesses_the_state_pair_and_reports_each_step(
        self,
        corpus: dict[str, CorpusModel],  # noqa: F811
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        model = corpus["vad_if_streaming"]
        argv = [str(model.path), *FAST, "--stream", "4", "--dim", "batch=1", "--dim", "N=64"]
        code, out, _ = check([*argv, "--json", str(tmp_path / "out.json")], capsys)
        assert code == 0, out
        assert "--state stateN=state" in out
        assert "pass" in table_row(out, "(stream)")
        (stream,) = [r for r in records(tmp_path / "out.json") if "max_abs_error_per_step" in r.get("detail", {})]
        assert stream["status"] == "pass"
        steps = stream["detail"]["max_abs_error_per_step"]
        assert len(steps) == 4
        assert all(isinstance(step, float) and step >= 0 for step in steps)

    def test_dim_narrows_every_record_to_the_given_sizes(
        self,
        corpus: dict[str, CorpusModel],  # noqa: F811
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        model = corpus["stack2_torchscript"]
        argv = [str(model.path), *FAST, "--dim", "seq=5", "--dim", "batch=2", "--json", str(tmp_path / "out.json")]
        code, out, _ = check(argv, capsys)
        assert code == 0, out
        found = records(tmp_path / "out.json")
        assert {r["kind"] for r in found} == {"node", "model"}
        assert all(r["shape"] == {"seq": 5, "batch": 2} for r in found), [r["shape"] for r in found]
