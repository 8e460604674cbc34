"""``conformance check`` end to end, in-process: real exports of real PyTorch models, right and wrong.

Users export with ``torch.onnx.export`` themselves; the correct exports must
pass on every runtime, and each classic export bug (a weight off, gates left
in PyTorch's order, a sequence length baked in) must fail with its cause named.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conformance.cli import main
from conformance.compare import DEFAULT_TOLERANCES
from conformance.records import SCHEMA_VERSION
from exporters.base import ExportOptions
from exporters.registry import export
from reference.config import LMConfig, LSTMConfig
from reference.weights import IOFC_TO_IFGO, generate, generate_lm, permute_gates

REPO = Path(__file__).resolve().parents[2]
INPUT, HIDDEN, LAYERS = 8, 16, 2
FAST = ["--runtime", "ort-cpu"]  # one runtime where the test is about the diagnosis, not the runtimes


def torch_export(module: Any, path: Path, *, batch_first: bool = False) -> Path:
    """``torch.onnx.export(dynamo=False)`` with dynamic sequence and batch axes, as users write it."""
    import torch

    seq_batch = {0: "B", 1: "T"} if batch_first else {0: "T", 1: "B"}
    example = torch.randn(2, 5, INPUT) if batch_first else torch.randn(5, 2, INPUT)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and batch-size notes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y", "h", "c"],
            dynamic_axes={"x": seq_batch, "y": seq_batch, "h": {1: "B"}, "c": {1: "B"}},
        )
    return path


@pytest.fixture(scope="module")
def bilstm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.onnx: a 2-layer bidirectional nn.LSTM exported by TorchScript; model.pt: its state_dict."""
    import torch

    folder = tmp_path_factory.mktemp("bilstm")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(INPUT, HIDDEN, num_layers=LAYERS, bidirectional=True).eval()
    torch_export(lstm, folder / "model.onnx")
    torch.save(lstm.state_dict(), folder / "model.pt")
    return folder


def lstm_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "LSTM"]


def edit_initializers(source: Path, target: Path, edit: Any) -> Path:
    """Copy ``source`` to ``target`` with ``edit(node_index, slot, array) -> array`` applied to W, R, B."""
    model = onnx.load(str(source))
    tensors = {t.name: t for t in model.graph.initializer}
    for k, node in enumerate(lstm_nodes(model)):
        for slot in (1, 2, 3):
            tensor = tensors[node.input[slot]]
            tensor.CopyFrom(numpy_helper.from_array(edit(k, slot, numpy_helper.to_array(tensor).copy()), tensor.name))
    onnx.save(model, str(target))
    return target


def check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", *argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out


def verdict(out: str) -> str:
    """The closing line of ``check``: PASS, FAIL or NOTHING CHECKED, with the counts."""
    return out.rstrip().splitlines()[-1]


def json_results(path: Path) -> list[dict[str, Any]]:
    document = json.loads(path.read_text())
    assert document["schema_version"] == SCHEMA_VERSION
    results: list[dict[str, Any]] = document["results"]
    return results


class TestCorrectExports:
    def test_torchscript_bidirectional_stack_passes_everywhere(
        self, bilstm: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out = check([str(bilstm / "model.onnx")], capsys)
        assert code == 0, out
        first = out.splitlines()[0]
        assert first.startswith(f"{bilstm / 'model.onnx'}: 2 LSTM nodes (LSTM, LSTM_1); 6 input sets; runtimes: ")
        assert verdict(out).startswith("PASS: ")

    def test_with_its_own_trained_weights(self, bilstm: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out = check([str(bilstm / "model.onnx"), "--weights", str(bilstm / "model.pt"), *FAST], capsys)
        assert code == 0, out
        assert "Likely cause" not in out

    def test_batch_first(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        import torch

        torch.manual_seed(1)
        lstm = torch.nn.LSTM(INPUT, HIDDEN, batch_first=True).eval()
        path = torch_export(lstm, tmp_path / "model.onnx", batch_first=True)
        code, out = check([str(path), *FAST], capsys)
        assert code == 0, out
        assert "1 LSTM node (LSTM); 6 input sets" in out

    @pytest.mark.parametrize("exporter", ["onnx-native", "torch-script"])
    def test_language_model(self, exporter: str, capsys: pytest.CaptureFixture[str]) -> None:
        config = LMConfig(vocab_size=20, lstm=LSTMConfig(INPUT, HIDDEN, num_layers=2))
        artifact = export(config, generate_lm(config, seed=3), exporter, ExportOptions())
        assert artifact.ok and artifact.path is not None, artifact.reason
        code, out = check([str(artifact.path), *FAST], capsys)
        assert code == 0, out
        assert "2 LSTM nodes" in out and "PASS" in verdict(out)


class TestBrokenExports:
    def test_one_weight_off_by_ten_tolerances_is_named(
        self, bilstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        tolerance = DEFAULT_TOLERANCES["float32"]
        moved: list[float] = []

        def perturb(layer: int, slot: int, array: np.ndarray) -> np.ndarray:
            if (layer, slot) == (1, 2):  # layer 1's R, reverse direction, one value
                old = array[1, 5, 3]
                array[1, 5, 3] = old + 10 * (tolerance.atol + tolerance.rtol * abs(old))
                moved.append(float(array[1, 5, 3]) - float(old))
            return array

        path = edit_initializers(bilstm / "model.onnx", tmp_path / "model.onnx", perturb)
        report = tmp_path / "check.json"
        code, out = check([str(path), "--weights", str(bilstm / "model.pt"), "--json", str(report), *FAST], capsys)
        assert code == 1, out
        weights = next(r for r in json_results(report) if r["kind"] == "weights")
        assert (
            "- LSTM node LSTM_1: R differs from weight_hh_l1 and weight_hh_l1_reverse: 1 of 2048 values differ, "
            f"greatest by {moved[0]:.3g} at ONNX index (1, 5, 3) = weight_hh_l1_reverse[5, 3] (input gate)"
        ) in weights["message"].splitlines()
        assert verdict(out).startswith("FAIL: ")

    def test_gates_left_in_pytorch_order(
        self, bilstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        def to_ifgo(layer: int, slot: int, array: np.ndarray) -> np.ndarray:
            if slot == 3:  # B = [Wb, Rb]: each half has its own four gate blocks
                half = array.shape[1] // 2
                return np.concatenate(
                    [permute_gates(array[:, :half], IOFC_TO_IFGO, 1), permute_gates(array[:, half:], IOFC_TO_IFGO, 1)],
                    axis=1,
                ).astype(array.dtype)
            return permute_gates(array, IOFC_TO_IFGO, axis=1).astype(array.dtype)

        path = edit_initializers(bilstm / "model.onnx", tmp_path / "model.onnx", to_ifgo)
        report = tmp_path / "check.json"
        code, out = check([str(path), "--weights", str(bilstm / "model.pt"), "--json", str(report), *FAST], capsys)
        assert code == 1, out
        message = next(r for r in json_results(report) if r["kind"] == "weights")["message"]
        for node in ("LSTM", "LSTM_1"):
            assert f"- LSTM node {node}: W differs from" in message
            assert "gate blocks are in IFGO (PyTorch's order), not ONNX's IOFC" in message
        # The nodes themselves conform (they compute what their weights say); the intent check catches it.
        assert all(r["status"] == "pass" for r in json_results(report) if r["kind"] == "node")

    def test_weight_findings_travel_with_the_json_result(
        self, bilstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        def bump(layer: int, slot: int, array: np.ndarray) -> np.ndarray:
            if (layer, slot) == (1, 2):
                array = array.copy()
                array[0, 0, 0] += 0.5
            return array

        path = edit_initializers(bilstm / "model.onnx", tmp_path / "model.onnx", bump)
        report = tmp_path / "check.json"
        code, out = check([str(path), "--weights", str(bilstm / "model.pt"), "--json", str(report), *FAST], capsys)
        assert code == 1, out
        document = json.loads(report.read_text())
        lane = next(r for r in document["results"] if r["runtime"] == "weights")
        assert lane["id"] == "model.onnx/user/weights" and lane["status"] == "fail"
        assert lane["message"].startswith("the model differs from the trained weights (model.onnx vs model.pt):\n")
        assert "- LSTM node LSTM_1: R differs from weight_hh_l1" in lane["message"]

    @pytest.mark.slow
    def test_dynamo_export_bakes_the_sequence_length(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        config = LSTMConfig(INPUT, HIDDEN)
        options = ExportOptions(example_seq_len=5, example_batch=2)
        artifact = export(config, generate(config, seed=0), "torch-dynamo", options)
        assert artifact.ok and artifact.path is not None, artifact.reason
        report = tmp_path / "check.json"
        code, out = check([str(artifact.path), "--json", str(report), *FAST], capsys)
        assert code == 1, out
        document = json.loads(report.read_text())
        rejected = sorted({r["shape"]["seq"] for r in document["results"] if r["status"] == "fail"})
        ran = sorted({r["shape"]["seq"] for r in document["results"] if r["status"] == "pass"})
        assert (rejected, ran) == ([1, 7, 16], [5])
        assert "baked its example sequence length" in document["run"]["causes"][0]


def _cuda_provider() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.skipif(_cuda_provider(), reason="ort-cuda runs here, so its lanes are not skipped")
class TestNothingChecked:
    def test_run_with_every_lane_skipped_is_not_a_pass(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(["run", "-k", "forward", "--runtime", "ort-cuda", "--no-latency", "--out", str(tmp_path)])
        out = capsys.readouterr().out
        assert code == 1, out
        assert "NOTHING CHECKED: none of 3 lanes was checked (see the reasons above)" in out

    def test_against_torch_with_every_lane_skipped_is_not_a_pass(
        self, bilstm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "skipmod.py").write_text("import torch\n\ndef build():\n    return torch.nn.LSTM(8, 16)\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        code, out = check(
            [str(bilstm / "model.onnx"), "--against-torch", "skipmod:build", "--runtime", "ort-cuda"], capsys
        )
        assert code == 1, out
        assert verdict(out) == "NOTHING CHECKED: none of 1 result was checked (see the reasons above)"
        assert "PASS" not in out

    def test_every_lane_skipped_is_not_a_pass(self, bilstm: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out = check([str(bilstm / "model.onnx"), "--runtime", "ort-cuda"], capsys)
        assert code == 1, out
        assert verdict(out) == "NOTHING CHECKED: none of 1 result was checked (see the reasons above)"
        assert "PASS" not in out


class TestInputs:
    def test_npz_inputs_are_compared(self, bilstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        inputs = tmp_path / "mine.npz"
        np.savez(inputs, x=np.random.default_rng(0).uniform(-1, 1, (11, 4, INPUT)).astype(np.float32))
        report = tmp_path / "check.json"
        argv = [str(bilstm / "model.onnx"), "--inputs", str(inputs), "--json", str(report), *FAST]
        code, out = check(argv, capsys)
        assert code == 0, out
        mine = [r for r in json_results(report) if r["case"] == "model.onnx[inputs:mine.npz]" and r["kind"] == "model"]
        assert [r["status"] for r in mine] == ["pass"]
        assert set(mine[0]["outputs"]) == {"y", "h", "c"}
        assert mine[0]["outputs"]["y"]["actual_shape"] == [11, 4, 2 * HIDDEN]  # the user's shape, not a generated one

    def test_onnx_test_data_folder_written_by_export(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        folder = tmp_path / "bundle"
        assert main(["export", "bidirectional-2layer", "--suite", "smoke", "--out", str(folder)]) == 0
        capsys.readouterr()
        report = tmp_path / "check.json"
        argv = [str(folder / "model.onnx"), "--inputs", str(folder / "test_data_set_0"), "--json", str(report)]
        code, out = check([*argv, *FAST], capsys)
        assert code == 0, out
        mine = [
            r
            for r in json_results(report)
            if r["case"] == "model.onnx[inputs:test_data_set_0]" and r["kind"] == "model"
        ]
        assert [r["status"] for r in mine] == ["pass"]
        assert set(mine[0]["outputs"]) == {"Y", "Y_h", "Y_c"}


class TestJson:
    def test_schema_versioned_result_file(
        self, bilstm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = tmp_path / "out" / "check.json"
        code, out = check([str(bilstm / "model.onnx"), "--json", str(report), "--seq-lens", "3", *FAST], capsys)
        assert code == 0, out
        document = json.loads(report.read_text())
        assert document["schema_version"] == SCHEMA_VERSION
        run = document["run"]
        assert isinstance(run.pop("wall_seconds"), float) and isinstance(run.pop("argv"), list)
        notes = ["symbolic dims: T=3 (sequence); B=1,3 (batch); set others with --dim NAME=N[,N...]"]
        assert run == {"command": "check", "model": str(bilstm / "model.onnx"), "causes": [], "against_torch": None,
                       "notes": notes, "interrupted": False}  # fmt: skip
        assert document["summary"] == {"pass": 6}
        assert [r["id"] for r in document["results"]] == [
            f"model.onnx[T=3,B={b}]/{row}/ort-cpu" for b in (1, 3) for row in ("LSTM", "LSTM_1", "user")
        ]
        assert sorted(p.name for p in report.parent.iterdir()) == ["check.json"]  # no temporary left behind
        assert main(["report", str(report)]) == 0  # a result file the other commands read


class TestAgainstTorch:
    @staticmethod
    def package(root: Path, name: str, body: str) -> str:
        (root / name).mkdir()
        (root / name / "__init__.py").write_text("")
        (root / name / "model.py").write_text(textwrap.dedent(body))
        return f"{name}.model:build"

    def test_the_same_module_passes(
        self, bilstm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        spec = self.package(
            tmp_path,
            "check_same_pkg",
            f"""
            import torch

            def build():
                lstm = torch.nn.LSTM({INPUT}, {HIDDEN}, num_layers={LAYERS}, bidirectional=True)
                lstm.load_state_dict(torch.load({str(bilstm / "model.pt")!r}, weights_only=True))
                return lstm
            """,
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        code, out = check([str(bilstm / "model.onnx"), "--against-torch", spec, *FAST], capsys)
        assert code == 0, out
        assert "check against" in out and spec in out

    def test_another_module_fails(
        self, bilstm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        spec = self.package(
            tmp_path,
            "check_other_pkg",
            f"""
            import torch

            def build():
                torch.manual_seed(1)
                return torch.nn.LSTM({INPUT}, {HIDDEN}, num_layers={LAYERS}, bidirectional=True)
            """,
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        code, out = check([str(bilstm / "model.onnx"), "--against-torch", spec, *FAST], capsys)
        assert code == 1, out
        assert "Tensor-likes are not close!" in out
        assert verdict(out) == "FAIL: 6 of 6 results failing"


def test_checking_an_onnx_file_does_not_import_torch(bilstm: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from conformance.cli import main
        code = main(["check", {str(bilstm / "model.onnx")!r}])
        assert code == 0, code
        assert "torch" not in sys.modules, "check imported torch"
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
