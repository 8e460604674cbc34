"""The bad-input catalogue: every kind of bad input gets one exact ``error:`` line, exit code 2, no traceback.

Each test pins the whole line the user sees (DESIGN.md, "Rules that hold
everywhere"); the README's "what happens when" table is written from them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conformance.cases import CaseError, available_suites
from conformance.cli import main
from conformance.runtimes import declared_runtime_ids, runtime_ids
from exporters.importers import DEFAULT_MAX_TENSOR_BYTES, ModelImportError, load_onnx
from exporters.registry import exporter_ids
from reference.weights import from_torch_state_dict, save

REPO = Path(__file__).resolve().parents[2]
INPUT, HIDDEN = 8, 16


def bad_input(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI in-process: exit 2, nothing on stdout, exactly one ``error:`` line on stderr; return it."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert captured.err.endswith("\n") and captured.err.count("\n") == 1, captured.err
    line = captured.err.removesuffix("\n")
    assert line.startswith("error: ")
    return line


# --- models and data the check cases need ----------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TorchScript export of a 2-layer bidirectional nn.LSTM (model.onnx) and its state_dict (model.pt)."""
    import warnings

    import torch

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(INPUT, HIDDEN, num_layers=2, bidirectional=True).eval()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and batch-size notes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            lstm,
            (torch.randn(5, 2, INPUT),),
            str(folder / "model.onnx"),
            dynamo=False,
            input_names=["x"],
            output_names=["y", "h", "c"],
            dynamic_axes={"x": {0: "T", 1: "B"}, "y": {0: "T", 1: "B"}, "h": {1: "B"}, "c": {1: "B"}},
        )
    torch.save(lstm.state_dict(), folder / "model.pt")
    return folder


def lstm_w_name(model: onnx.ModelProto) -> str:
    return next(n for n in model.graph.node if n.op_type == "LSTM").input[1]


def with_external_w(source: Path, target: Path, *, dims: list[int], location: str) -> Path:
    """``source`` with its first LSTM's W moved to external data at ``location``, declaring ``dims``."""
    model = onnx.load(str(source))
    name = lstm_w_name(model)
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    del tensor.dims[:]
    tensor.dims.extend(dims)
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    return target


def npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def x(shape: tuple[int, ...] = (4, 2, INPUT), dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, shape).astype(dtype)


# --- case files ------------------------------------------------------------------------------------

CASE = 'suite = "t"\n\n[[case]]\nid = "a"\n'
MODEL = "model = { input_size = 3, hidden_size = 4 }\n"
INPUTS = "inputs = { seq_len = 2, batch = 1 }\n"


class TestCaseFiles:
    """``conformance run --suite FILE`` on broken suite files: ``file:line[:column]: key: problem``."""

    @pytest.fixture(autouse=True)
    def _elsewhere(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)  # a run that went ahead would write conformance-results/ here

    def suite(self, text: str, capsys: pytest.CaptureFixture[str]) -> str:
        Path("suite.toml").write_text(text, encoding="utf-8")
        line = bad_input(["run", "--suite", "suite.toml"], capsys)
        assert not Path("conformance-results").exists()
        return line

    def test_malformed_toml_names_line_and_column(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = self.suite(CASE + "model = { input_size = 3, hidden_size = 4\n", capsys)
        assert line == "error: suite.toml:5:42: invalid TOML: Unclosed inline table"

    def test_unknown_key_suggests_the_closest(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = self.suite(CASE + "model = { input_size = 3, hiden_size = 4 }\n" + INPUTS, capsys)
        assert line == "error: suite.toml:5: model.hiden_size: unknown key (did you mean 'hidden_size'?)"

    def test_unknown_defaults_table(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = self.suite('suite = "t"\n[defaults]\nmodle = { input_size = 3 }\n', capsys)
        assert line == "error: suite.toml:3: defaults.modle: unknown key (did you mean 'model'?)"

    def test_wrong_type(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = self.suite(CASE + 'model = { input_size = "3", hidden_size = 4 }\n' + INPUTS, capsys)
        assert line == "error: suite.toml:5: model.input_size: expected an integer, got '3'"

    def test_out_of_range_integer(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = self.suite(CASE + MODEL + "inputs = { seq_len = 0, batch = 1 }\n", capsys)
        assert line == "error: suite.toml:6: inputs.seq_len: expected an integer >= 1, got 0"

    def test_negative_tolerance(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = self.suite(CASE + MODEL + INPUTS + "tolerance = { atol = -1e-3, rtol = 0 }\n", capsys)
        assert line == "error: suite.toml:7: tolerance.atol: expected a finite number >= 0, got -0.001"

    def test_value_not_in_the_choices(self, capsys: pytest.CaptureFixture[str]) -> None:
        model = 'model = { input_size = 3, hidden_size = 4, direction = "sideways" }\n'
        line = self.suite(CASE + model + INPUTS, capsys)
        assert line == (
            "error: suite.toml:5: model.direction: expected one of ['forward', 'reverse', 'bidirectional'], "
            "got 'sideways'"
        )

    def test_unknown_runtime_suggests_the_closest(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = self.suite(CASE + MODEL + INPUTS + 'runtimes = ["refrence"]\n', capsys)
        assert line == (
            "error: suite.toml:7: runtimes: unknown runtime 'refrence' (did you mean 'reference'?); "
            f"known: {', '.join(declared_runtime_ids())}"
        )

    def test_unknown_exporter_suggests_the_closest(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = self.suite(CASE + MODEL + INPUTS + 'exporters = ["onnx-nativ"]\n', capsys)
        assert line == (
            "error: suite.toml:7: exporters: unknown exporter 'onnx-nativ' (did you mean 'onnx-native'?); "
            f"known: {', '.join(exporter_ids(mutants=False))} (and the selftest mutants mutant-*)"
        )

    def test_missing_suite_file(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["run", "--suite", "missing.toml"], capsys)
        assert line == ("error: missing.toml: no such file")

    def test_unknown_packaged_suite(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["run", "--suite", "smok"], capsys)
        assert (
            line == f"error: unknown suite 'smok' (did you mean 'smoke'?); available: {', '.join(available_suites())}"
        )


class TestRunOptions:
    @pytest.fixture(autouse=True)
    def _elsewhere(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)

    @pytest.mark.parametrize(
        ("option", "message"),
        [
            ("--timeout",
             "error: conformance run: argument --timeout: expected a finite number > 0 and <= 86400, got '0'"),
            ("--jobs", "error: conformance run: argument --jobs: expected an integer >= 1 and <= 64, got '0'"),
            ("--latency-budget",
             "error: conformance run: argument --latency-budget: expected a finite number > 0 and <= 3600, got '0'"),
        ],
    )  # fmt: skip
    def test_zero(self, option: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
        assert bad_input(["run", option, "0"], capsys) == message
        assert not Path("conformance-results").exists()

    def test_jobs_are_capped(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Each worker loads onnxruntime and torch (~300 MB): 1000 of them once started unasked."""
        assert bad_input(["run", "--jobs", "1000"], capsys) == (
            "error: conformance run: argument --jobs: expected an integer >= 1 and <= 64, got '1000'"
        )

    def test_unknown_runtime_suggests_the_closest(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["run", "--runtime", "ort-cpuu"], capsys)
        assert (
            line
            == f"error: unknown runtime 'ort-cpuu' (did you mean 'ort-cpu'?); available: {', '.join(runtime_ids())}"
        )

    def test_unknown_exporter_suggests_the_closest(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["run", "--exporter", "onnx-nativ"], capsys)
        assert line == (
            "error: unknown exporter 'onnx-nativ' (did you mean 'onnx-native'?); "
            f"available: {', '.join([*exporter_ids(mutants=False), 'none'])} (and the selftest mutants mutant-*)"
        )

    def test_resume_of_a_folder_that_is_no_run(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["run", "--resume", str(tmp_path)], capsys)
        assert line == f"error: --resume {tmp_path}: no run.json there; not a conformance run folder"

    def test_not_a_number_is_a_usage_error_of_one_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert bad_input(["run", "--jobs", "many"], capsys) == (
            "error: conformance run: argument --jobs: expected an integer, got 'many'"
        )

    @pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
    def test_a_timeout_that_is_not_finite(self, value: str, capsys: pytest.CaptureFixture[str]) -> None:
        assert bad_input(["run", f"--timeout={value}"], capsys) == (
            f"error: conformance run: argument --timeout: expected a finite number > 0 and <= 86400, got {value!r}"
        )
        assert not Path("conformance-results").exists()


class TestCheckModel:
    """``conformance check MODEL``: missing, corrupt and unmappable models."""

    def test_missing_model(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "missing.onnx"
        assert bad_input(["check", str(path)], capsys) == f"error: {path}: no such file"

    def test_truncated_model(self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        data = (models / "model.onnx").read_bytes()
        path = tmp_path / "truncated.onnx"
        path.write_bytes(data[: len(data) // 2])
        assert bad_input(["check", str(path)], capsys) == (
            f"error: {path}: not a valid ONNX model (DecodeError: Error parsing message with type "
            "'onnx.ModelProto': Wire format was corrupt)"
        )

    def test_not_protobuf(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "notes.onnx"
        path.write_bytes(b"these are my notes, not a model \xff\xfe\n" * 8)
        assert bad_input(["check", str(path)], capsys) == (
            f"error: {path}: not a valid ONNX model (DecodeError: Error parsing message with type "
            "'onnx.ModelProto': Wire format was corrupt)"
        )

    def test_empty_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "empty.onnx"
        path.write_bytes(b"")
        assert bad_input(["check", str(path)], capsys) == (
            f"error: {path}: not a valid ONNX model (empty graph; truncated or not protobuf?)"
        )

    def test_no_lstm_node_lists_the_ops(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        value = helper.make_tensor_value_info
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "relu",
            [value("x", TensorProto.FLOAT, ["T", "B", 8])],
            [value("y", TensorProto.FLOAT, ["T", "B", 8])],
        )
        path = tmp_path / "relu.onnx"
        onnx.save(helper.make_model(graph), str(path))
        assert bad_input(["check", str(path)], capsys) == (
            f"error: {path}: no LSTM node in the graph, its subgraphs or its functions; nothing to check (ops: Relu)"
        )

    def test_malformed_lstm_attribute(self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        model = onnx.load(str(models / "model.onnx"))
        next(n for n in model.graph.node if n.op_type == "LSTM").attribute.append(helper.make_attribute("layout", "x"))
        path = tmp_path / "model.onnx"
        onnx.save(model, str(path))
        assert bad_input(["check", str(path)], capsys) == (
            f"error: {path}: LSTM node LSTM: expected a number attribute, got b'x'"
        )

    def test_unknown_tensor_data_type(self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        model = onnx.load(str(models / "model.onnx"))
        tensor = next(t for t in model.graph.initializer if t.name == lstm_w_name(model))
        tensor.data_type = 99
        path = tmp_path / "model.onnx"
        onnx.save(model, str(path))
        assert bad_input(["check", str(path)], capsys) == (
            f"error: {path}: tensor {tensor.name!r} has unknown data type 99"
        )

    def test_unknown_runtime_suggests_the_closest(self, models: Path, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["check", str(models / "model.onnx"), "--runtime", "ort-cpuu"], capsys)
        assert (
            line
            == f"error: unknown runtime 'ort-cpuu' (did you mean 'ort-cpu'?); available: {', '.join(runtime_ids())}"
        )

    def test_atol_without_rtol(self, models: Path, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["check", str(models / "model.onnx"), "--atol", "1e-3"], capsys)
        assert line == "error: --atol and --rtol are given together"

    def test_nonpositive_sequence_length(self, models: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert bad_input(["check", str(models / "model.onnx"), "--seq-lens", "0"], capsys) == (
            "error: conformance check: argument --seq-lens: expected positive integers, got '0'"
        )

    def test_against_torch_needs_module_and_attr(self, models: Path, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["check", str(models / "model.onnx"), "--against-torch", "mymodel"], capsys)
        assert line == "error: --against-torch: expected MODULE:ATTR (e.g. mypkg.model:build), got 'mymodel'"

    def test_debug_reraises(self, tmp_path: Path) -> None:
        with pytest.raises(ModelImportError, match=r"missing\.onnx: no such file$"):
            main(["--debug", "check", str(tmp_path / "missing.onnx")])


class TestMemoryBudget:
    """Tensors declaring more than the budget are refused from their declared dims, before any data is read."""

    def test_load_onnx_with_a_budget(self, models: Path, tmp_path: Path) -> None:
        path = with_external_w(models / "model.onnx", tmp_path / "m" / "model.onnx", dims=[512, 1024], location="w.bin")
        (path.parent / "w.bin").write_bytes(np.zeros(512 * 1024, np.float32).tobytes())
        assert load_onnx(path, max_tensor_bytes=2 << 20) is not None  # 2 MiB declared, 2 MiB allowed: loads
        name = lstm_w_name(onnx.load(str(path), load_external_data=False))
        with pytest.raises(ModelImportError) as info:
            load_onnx(path, max_tensor_bytes=(2 << 20) - 1)
        # The GiB figures round small budgets to 0.0 (cosmetic; tests/exporters/test_importers.py pins it too).
        assert str(info.value) == (
            f"{path}: tensor {name!r} declares 0.0 GiB (shape [512, 1024]), over the 0.0 GiB budget; refused"
        )

    def test_huge_declared_dims_through_check(
        self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # 4 TiB declared; the data file holds 16 bytes. Reading it, or allocating it, would fail differently.
        path = with_external_w(
            models / "model.onnx", tmp_path / "m" / "model.onnx", dims=[1 << 20, 1 << 20], location="w.bin"
        )
        (path.parent / "w.bin").write_bytes(b"\0" * 16)
        name = lstm_w_name(onnx.load(str(path), load_external_data=False))
        assert DEFAULT_MAX_TENSOR_BYTES == 2 << 30
        assert bad_input(["check", str(path)], capsys) == (
            f"error: {path}: tensor {name!r} declares 4096.0 GiB (shape [1048576, 1048576]), "
            "over the 2.0 GiB budget; refused"
        )

    def test_huge_node_attribute_tensor(self, tmp_path: Path) -> None:
        tensor = TensorProto(name="big", data_type=TensorProto.FLOAT, dims=[1 << 16, 1 << 16])  # no data at all
        graph = helper.make_graph(
            [helper.make_node("Constant", [], ["y"], value=tensor)],
            "g",
            [],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        )
        path = tmp_path / "constant.onnx"
        onnx.save(helper.make_model(graph), str(path))
        with pytest.raises(ModelImportError, match=r"tensor 'big' declares 16\.0 GiB .* over the 2\.0 GiB budget"):
            load_onnx(path)


class TestExternalData:
    """External data must stay inside the model's folder (checked through ``conformance check``)."""

    @pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "/etc/passwd"])
    def test_escaping_location(
        self, location: str, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
        path = with_external_w(models / "model.onnx", tmp_path / "m" / "model.onnx", dims=[2, 64, 8], location=location)
        name = lstm_w_name(onnx.load(str(path), load_external_data=False))
        assert bad_input(["check", str(path)], capsys) == (
            f"error: {path}: tensor {name!r} has external data at {location!r}, outside the model's folder; refused"
        )

    def test_symlink_out_of_the_folder(self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
        path = with_external_w(models / "model.onnx", tmp_path / "m" / "model.onnx", dims=[2, 64, 8], location="w.bin")
        os.symlink(tmp_path / "secret.bin", path.parent / "w.bin")
        name = lstm_w_name(onnx.load(str(path), load_external_data=False))
        assert bad_input(["check", str(path)], capsys) == (
            f"error: {path}: tensor {name!r} has external data at 'w.bin', outside the model's folder; refused"
        )

    def test_missing_external_file(self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = with_external_w(models / "model.onnx", tmp_path / "m" / "model.onnx", dims=[2, 64, 8], location="w.bin")
        name = lstm_w_name(onnx.load(str(path), load_external_data=False))
        assert bad_input(["check", str(path)], capsys) == (
            f"error: {path}: external data file 'w.bin' of tensor {name!r} is missing"
        )


class TestCheckInputs:
    """User-supplied ``--inputs``: names, shapes, dtypes and values are checked before anything runs."""

    def check(self, models: Path, inputs: Path, capsys: pytest.CaptureFixture[str]) -> str:
        return bad_input(["check", str(models / "model.onnx"), "--inputs", str(inputs), "--runtime", "ort-cpu"], capsys)

    def test_missing_file(self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "missing.npz"
        assert self.check(models, path, capsys) == f"error: {path}: no such file or folder"

    def test_no_data_for_an_input(self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = npz(tmp_path / "named.npz", inp=x())
        assert self.check(models, path, capsys) == f"error: {path}: no data for model input(s) ['x'] (found: ['inp'])"

    def test_feature_size(self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = npz(tmp_path / "shape.npz", x=x((4, 2, 5)))
        assert self.check(models, path, capsys) == (
            f"error: {path}: input 'x' has shape [4, 2, 5], the model declares ['T', 'B', 8]"
        )

    def test_rank(self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = npz(tmp_path / "rank.npz", x=x((4, INPUT)))
        assert self.check(models, path, capsys) == (
            f"error: {path}: input 'x' has shape [4, 8], the model declares ['T', 'B', 8]"
        )

    def test_integer_dtype(self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = npz(tmp_path / "ints.npz", x=np.zeros((4, 2, INPUT), np.int64))
        assert self.check(models, path, capsys) == (
            f"error: {path}: input 'x' has dtype int64, the model takes float32"
        )

    def test_float64_into_a_float32_model(
        self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # Runtimes do not cast: before the fix this ran and reported every lane as an ERROR (exit 1).
        path = npz(tmp_path / "f64.npz", x=x(dtype=np.float64))
        assert self.check(models, path, capsys) == (
            f"error: {path}: input 'x' has dtype float64, the model takes float32"
        )

    @pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
    def test_non_finite_values_are_refused(
        self, value: float, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        data = x()
        data[1, 1, 3] = value
        path = npz(tmp_path / "nonfinite.npz", x=data)
        assert self.check(models, path, capsys) == (
            f"error: {path}: input 'x' contains NaN or Inf; refusing to compare"
        )

    def test_test_data_folder_with_a_bad_shape(
        self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        folder = tmp_path / "test_data_set_0"
        folder.mkdir()
        (folder / "input_0.pb").write_bytes(numpy_helper.from_array(x((3, INPUT)), "x").SerializeToString())
        assert self.check(models, folder, capsys) == (
            f"error: {folder}: input 'x' has shape [3, 8], the model declares ['T', 'B', 8]"
        )


class TestCheckWeights:
    """``--weights``: missing, non-finite, and pickled checkpoints."""

    def check(self, models: Path, weights: Path, capsys: pytest.CaptureFixture[str]) -> str:
        argv = ["check", str(models / "model.onnx"), "--weights", str(weights), "--runtime", "ort-cpu"]
        return bad_input(argv, capsys)

    def test_missing_file(self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "missing.npz"
        assert self.check(models, path, capsys) == f"error: {path}: no such file"

    def test_npz_that_is_no_weights_file(
        self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = npz(tmp_path / "inputs.npz", x=x())
        assert self.check(models, path, capsys) == (
            f"error: {path}: not an lstm-conformance weights file (no __meta__ entry)"
        )

    def test_nan_in_npz_weights_names_the_tensor(
        self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        import torch

        weights = from_torch_state_dict(torch.load(models / "model.pt", weights_only=True))
        weights.layers[1].R[1, 5, 7] = np.nan
        path = tmp_path / "weights.npz"
        save(path, weights)
        assert self.check(models, path, capsys) == (
            f"error: {path}: tensor 'lstm.1.R' contains NaN or Inf (1 value(s), first at index (1, 5, 7)); "
            "refusing to compare"
        )

    def test_inf_in_a_checkpoint_names_the_tensor(
        self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        import torch

        state = {k: v.clone() for k, v in torch.load(models / "model.pt", weights_only=True).items()}
        state["weight_hh_l1_reverse"][5, 5] = float("inf")
        state["weight_hh_l1_reverse"][6, 0] = float("-inf")
        path = tmp_path / "weights.pt"
        torch.save(state, path)
        assert self.check(models, path, capsys) == (
            f"error: {path}: tensor 'weight_hh_l1_reverse' contains NaN or Inf (2 value(s), first at index (5, 5)); "
            "refusing to compare"
        )

    def test_pickled_object_is_refused_and_never_runs(
        self, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        import torch

        marker = tmp_path / "MARKER"
        path = tmp_path / "model.pt"
        torch.save({"weight_ih_l0": _Payload(str(marker))}, path)
        assert not marker.exists()
        assert self.check(models, path, capsys) == (
            f"error: {path}: refused: the checkpoint needs 'io.open', not a plain state_dict; nothing was executed"
        )
        assert not marker.exists()

    def test_pickled_object_in_a_subprocess_prints_one_line(self, models: Path, tmp_path: Path) -> None:
        """The real command: no pickle-protocol warning or traceback around the one line, and no side effect."""
        marker = tmp_path / "MARKER"
        path = tmp_path / "model.pkl"
        import pickle

        path.write_bytes(pickle.dumps(_Payload(str(marker)), protocol=4))
        argv = ["check", str(models / "model.onnx"), "--weights", str(path), "--runtime", "ort-cpu"]
        proc = subprocess.run(
            [sys.executable, "-m", "conformance", *argv],
            check=False,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        assert proc.stderr == (
            f"error: {path}: is a bare pickle (unpickling it could run code; refused), not a PyTorch checkpoint\n"
        )
        assert not marker.exists()


class _Payload:
    """Unpickling this creates ``marker``: what an attacker's checkpoint would do, harmlessly."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


class TestResultFiles:
    """``report`` and ``compare`` on files that are not result files; ``export`` of an unknown case."""

    def test_report_on_a_non_result_json(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "package.json"
        path.write_text(json.dumps({"name": "x", "version": "1"}))
        assert bad_input(["report", str(path)], capsys) == (
            f"error: {path}: not a conformance result file (schema_version None, expected 1 or 2)"
        )

    def test_report_without_results(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "results.json"
        path.write_text(json.dumps({"schema_version": 1}))
        assert bad_input(["report", str(path)], capsys) == f"error: {path}: 'results' must be a list, got nothing"

    def test_report_on_invalid_json(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "results.json"
        path.write_text('{"schema_version": 1,\n "results": [}\n')
        assert bad_input(["report", str(path)], capsys) == f"error: {path}:2:14: not valid JSON (Expecting value)"

    def test_report_on_a_binary_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "results.json"
        path.write_bytes(b"\x08\xff\xfe\x00")
        assert bad_input(["report", str(path)], capsys) == (
            f"error: {path}: not a conformance result file (not UTF-8 text)"
        )

    def test_compare_with_a_missing_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        base = tmp_path / "base.json"
        base.write_text(json.dumps({"schema_version": 1, "results": []}))
        head = tmp_path / "head.json"
        assert bad_input(["compare", str(base), str(head)], capsys) == f"error: {head}: no such file"

    def test_export_of_an_unknown_case(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["export", "forwrd", "--out", str(tmp_path / "out")], capsys)
        assert line == "error: unknown case 'forwrd' (did you mean 'forward'?); `conformance list cases` shows them"
        assert not (tmp_path / "out").exists()


def test_debug_reraises_case_errors(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    path.write_text(CASE + "model = { input_size = 3, hiden_size = 4 }\n" + INPUTS)
    with pytest.raises(CaseError, match=r"model\.hiden_size: unknown key"):
        main(["--debug", "run", "--suite", str(path)])


class TestPluginsThatDoNotLoad:
    """A plug-in named in the environment whose module does not import is the user's input, not our bug."""

    def test_a_runtime_plugin(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        monkeypatch.setenv("CONFORMANCE_EXTRA_RUNTIMES", "fast=nosuch_pkg.runtime:Fast")
        assert bad_input(["list", "runtimes"], capsys) == (
            "error: CONFORMANCE_EXTRA_RUNTIMES: fast=nosuch_pkg.runtime:Fast: cannot load it "
            "(ModuleNotFoundError: No module named 'nosuch_pkg')"
        )

    def test_an_exporter_plugin_without_the_class(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("CONFORMANCE_EXTRA_EXPORTERS", "mine=json:NoSuchExporter")
        argv = ["export", "bidirectional-2layer", "--suite", "smoke", "--exporter", "mine", "--out", "unused"]
        assert bad_input(argv, capsys) == (
            "error: CONFORMANCE_EXTRA_EXPORTERS: mine=json:NoSuchExporter: cannot load it "
            "(AttributeError: module 'json' has no attribute 'NoSuchExporter')"
        )
