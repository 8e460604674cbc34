"""Importing weights from users' models: torch modules/state_dicts and ONNX LSTM initializers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from exporters.base import ExportOptions
from exporters.importers import ModelImportError, from_torch, import_onnx, load_onnx
from exporters.registry import export
from reference.config import LMConfig, LSTMConfig
from reference.weights import IFGO_TO_IOFC, LMWeights, LSTMWeights, generate, generate_lm, permute_gates


def _same(a: LSTMWeights, b: LSTMWeights) -> bool:
    return a.digest() == b.digest()


class TestFromTorch:
    def test_module_round_trip_is_exact(self) -> None:
        torch.manual_seed(0)
        module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
        config, weights = from_torch(module)
        assert config == LSTMConfig(3, 4, num_layers=2, direction="bidirectional", batch_first=True)
        w_ih = module.weight_ih_l1_reverse.detach().double().numpy()
        assert np.array_equal(weights.layers[1].W[1], permute_gates(w_ih, IFGO_TO_IOFC))

    def test_state_dict_infers_layers_and_directions(self) -> None:
        module = torch.nn.LSTM(5, 6, num_layers=3)
        config, weights = from_torch(module.state_dict())
        assert (config.num_layers, config.direction, config.input_size, config.hidden_size) == (3, "forward", 5, 6)
        assert weights.num_layers == 3

    def test_proj_size_is_refused(self) -> None:
        with pytest.raises(ModelImportError, match="proj_size"):
            from_torch(torch.nn.LSTM(3, 4, proj_size=2))


@pytest.mark.parametrize(
    "exporter", ["onnx-native", "torch-script", pytest.param("torch-dynamo", marks=pytest.mark.slow)]
)
class TestFromOnnxExports:
    def test_stack_initializers_equal_the_original_weights(self, exporter: str, tmp_path: Path) -> None:
        config = LSTMConfig(3, 4, num_layers=2, direction="bidirectional")
        weights = generate(config, seed=3)
        artifact = export(config, weights, exporter, ExportOptions(), cache_dir=tmp_path)
        assert artifact.ok, artifact.reason
        imported = import_onnx(artifact.path)
        assert imported.config == config
        assert isinstance(imported.weights, LSTMWeights)
        assert _same(imported.weights, weights)

    def test_language_model_pattern(self, exporter: str, tmp_path: Path) -> None:
        config = LMConfig(11, LSTMConfig(3, 4))
        weights = generate_lm(config, seed=5)
        artifact = export(config, weights, exporter, ExportOptions(), cache_dir=tmp_path)
        assert artifact.ok, artifact.reason
        imported = import_onnx(artifact.path)
        assert imported.config == config
        assert isinstance(imported.weights, LMWeights)
        assert imported.weights.digest() == weights.digest()


def test_torch_module_export_imports_back_exactly(tmp_path: Path) -> None:
    """nn.LSTM -> TorchScript export -> ONNX initializers -> canonical weights == nn.LSTM's."""
    torch.manual_seed(1)
    module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(module, (torch.zeros(5, 2, 3),), str(path), dynamo=False, input_names=["X"])
    _, original = from_torch(module)
    assert _same(import_onnx(path).weights, original)


def test_peepholes_and_attributes_are_recovered(tmp_path: Path) -> None:
    config = LSTMConfig(
        3, 4, direction="reverse", peepholes=True, clip=2.5, input_forget=1, activations=("HardSigmoid", "Tanh", "Elu")
    )
    weights = generate(config, seed=0)
    artifact = export(config, weights, "onnx-native", cache_dir=tmp_path)
    imported = import_onnx(artifact.path)
    assert imported.config == config
    assert _same(imported.weights, weights)


class TestBadModels:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ModelImportError, match=r"missing\.onnx: no such file$"):
            import_onnx(tmp_path / "missing.onnx")

    def test_corrupt_file_is_one_clear_line(self, tmp_path: Path) -> None:
        path = tmp_path / "corrupt.onnx"
        path.write_bytes(b"\x08\x07this is not a protobuf \xff\xfe" * 3)
        with pytest.raises(ModelImportError) as info:
            import_onnx(path)
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"{path}: not a valid ONNX model")

    def test_truncated_model(self, tmp_path: Path) -> None:
        config = LSTMConfig(3, 4)
        artifact = export(config, generate(config, seed=0), "onnx-native", cache_dir=tmp_path)
        data = artifact.path.read_bytes()
        path = tmp_path / "truncated.onnx"
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(ModelImportError, match="not a valid ONNX model"):
            import_onnx(path)

    def test_model_without_lstm(self, tmp_path: Path) -> None:
        graph = onnx.helper.make_graph(
            [onnx.helper.make_node("Relu", ["x"], ["y"])],
            "relu",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
        )
        path = tmp_path / "relu.onnx"
        onnx.save(onnx.helper.make_model(graph), path)
        with pytest.raises(ModelImportError) as info:
            import_onnx(path)
        assert str(info.value) == f"{path}: no LSTM node in the graph (ops: Relu)"

    def test_weights_computed_at_run_time_are_named(self, tmp_path: Path) -> None:
        node = onnx.helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=2)
        inputs = [
            onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [1, 1, 2]),
            onnx.helper.make_tensor_value_info("W", onnx.TensorProto.FLOAT, [1, 8, 2]),
            onnx.helper.make_tensor_value_info("R", onnx.TensorProto.FLOAT, [1, 8, 2]),
        ]
        graph = onnx.helper.make_graph(
            [node], "g", inputs, [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)]
        )
        path = tmp_path / "dyn.onnx"
        onnx.save(onnx.helper.make_model(graph), path)
        with pytest.raises(ModelImportError, match=r"W \('W'\) is computed at run time, not an initializer"):
            import_onnx(path)


class TestSafeLoading:
    def _model_with_external_data(self, tmp_path: Path, location: str) -> Path:
        tensor = onnx.numpy_helper.from_array(np.zeros((2, 2), np.float32), "w")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "16")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        tensor.ClearField("raw_data")
        graph = onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["w"], ["y"])],
            "g",
            [],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 2])],
            initializer=[tensor],
        )
        path = tmp_path / "model" / "m.onnx"
        path.parent.mkdir()
        path.write_bytes(onnx.helper.make_model(graph).SerializeToString())
        return path

    def test_external_data_escaping_the_folder_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
        path = self._model_with_external_data(tmp_path, "../secret.bin")
        with pytest.raises(
            ModelImportError, match=r"external data at '../secret.bin', outside the model's folder; refused"
        ):
            load_onnx(path)

    def test_absolute_external_data_is_refused(self, tmp_path: Path) -> None:
        path = self._model_with_external_data(tmp_path, "/etc/passwd")
        with pytest.raises(ModelImportError, match="outside the model's folder; refused"):
            load_onnx(path)

    def test_external_data_inside_the_folder_loads(self, tmp_path: Path) -> None:
        path = self._model_with_external_data(tmp_path, "w.bin")
        (path.parent / "w.bin").write_bytes(np.ones((2, 2), np.float32).tobytes())
        model = load_onnx(path)
        assert np.array_equal(onnx.numpy_helper.to_array(model.graph.initializer[0]), np.ones((2, 2)))

    def test_oversized_tensor_is_refused_before_reading(self, tmp_path: Path) -> None:
        path = self._model_with_external_data(tmp_path, "w.bin")
        with pytest.raises(ModelImportError, match=r"over the 0\.0 GiB budget; refused"):
            load_onnx(path, max_tensor_bytes=8)
