"""The exporter registry: ids, availability, validation and the content-addressed cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import onnx
import pytest

from exporters.base import FAILED, NOT_APPLICABLE, OK, ExportOptions
from exporters.plugins import PluginError
from exporters.registry import UnknownExporterError, cache_root, export, exporter_ids, get_exporter, validate_onnx
from reference.config import LSTMConfig
from reference.weights import generate

CONFIG = LSTMConfig(input_size=3, hidden_size=4, num_layers=2, direction="bidirectional")


@pytest.fixture
def weights():
    return generate(CONFIG, seed=0)


class TestIds:
    def test_all_four_exporters_are_registered(self) -> None:
        assert exporter_ids(mutants=False) == ["torch-module", "onnx-native", "torch-script", "torch-dynamo"]

    def test_selftest_mutants_come_after_the_real_exporters(self) -> None:
        ids = exporter_ids()
        assert ids[:4] == exporter_ids(mutants=False)
        transformed = [i for i in ids if "+" in i]  # <onnx exporter>+<transform>: tests/exporters/test_transforms.py
        assert ids[4 : 4 + len(transformed)] == transformed
        rest = ids[4 + len(transformed) :]
        assert "mutant-gate-order" in rest and all(i.startswith("mutant-") for i in rest)

    def test_plugin_exporters_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONFORMANCE_EXTRA_EXPORTERS", "native-copy=exporters.onnx_native:OnnxNativeExporter")
        assert "native-copy" in exporter_ids(mutants=False)
        assert get_exporter("native-copy").produces == "onnx"

    def test_a_malformed_plugin_entry_is_one_line(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The same parser as CONFORMANCE_EXTRA_RUNTIMES (exporters/plugins.py; tests/exporters/test_plugins.py)."""
        monkeypatch.setenv("CONFORMANCE_EXTRA_EXPORTERS", "native-copy=exporters.onnx_native")
        with pytest.raises(PluginError) as info:
            exporter_ids()
        assert str(info.value) == (
            "CONFORMANCE_EXTRA_EXPORTERS: malformed entry 'native-copy=exporters.onnx_native': expected id=module:Class"
        )

    def test_unknown_id_lists_the_available_ones_and_suggests(self) -> None:
        with pytest.raises(UnknownExporterError) as info:
            get_exporter("torch-scrip")
        assert str(info.value) == (
            "unknown exporter 'torch-scrip' (did you mean 'torch-script'?); "
            "available: torch-module, onnx-native, torch-script, torch-dynamo (and the selftest mutants mutant-*)"
        )

    def test_unknown_id_without_a_close_match(self) -> None:
        with pytest.raises(UnknownExporterError, match=r"^unknown exporter 'tf2onnx'; available: "):
            get_exporter("tf2onnx")

    def test_ids_match_the_exporter_objects(self) -> None:
        for exporter_id in exporter_ids():
            assert get_exporter(exporter_id).id == exporter_id

    def test_importing_the_registry_loads_no_heavy_package(self) -> None:
        code = (
            "import sys, exporters.registry; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]"


class TestCache:
    def test_second_export_is_a_cache_hit_with_the_same_file(self, tmp_path: Path, weights) -> None:
        first = export(CONFIG, weights, "onnx-native", cache_dir=tmp_path)
        second = export(CONFIG, weights, "onnx-native", cache_dir=tmp_path)
        assert first.ok and not first.cached
        assert second.ok and second.cached
        assert first.path == second.path
        assert second.meta["op_histogram"] == first.meta["op_histogram"]

    def test_key_changes_with_weights_options_and_config(self, tmp_path: Path, weights) -> None:
        base = export(CONFIG, weights, "onnx-native", cache_dir=tmp_path)
        other_weights = export(CONFIG, generate(CONFIG, seed=1), "onnx-native", cache_dir=tmp_path)
        other_options = export(CONFIG, weights, "onnx-native", ExportOptions(opset=14), cache_dir=tmp_path)
        paths = {base.path, other_weights.path, other_options.path}
        assert len(paths) == 3
        assert not other_weights.cached and not other_options.cached

    def test_a_change_to_the_exporter_code_is_a_new_key(
        self, tmp_path: Path, weights, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        first = export(CONFIG, weights, "onnx-native", cache_dir=tmp_path)
        monkeypatch.setattr("exporters.registry.code_digest", lambda: "edited")
        again = export(CONFIG, weights, "onnx-native", cache_dir=tmp_path)
        assert not again.cached and again.path != first.path

    def test_bypass_exports_again(self, tmp_path: Path, weights) -> None:
        export(CONFIG, weights, "onnx-native", cache_dir=tmp_path)
        again = export(CONFIG, weights, "onnx-native", cache_dir=tmp_path, use_cache=False)
        assert again.ok and not again.cached
        assert "export_seconds" in again.meta

    def test_cache_root_honours_xdg_cache_home(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        assert cache_root() == tmp_path / "lstm-conformance"
        monkeypatch.delenv("XDG_CACHE_HOME")
        assert cache_root() == Path.home() / ".cache" / "lstm-conformance"

    def test_a_concurrent_export_keeps_the_entry_a_lane_may_have_open(
        self, tmp_path: Path, weights, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Two workers miss the cache for one key; the second must not remove the first one's published
        # entry (a runtime in the first worker opens its model.onnx by path: it vanished mid-run before).
        first = export(CONFIG, weights, "onnx-native", cache_dir=tmp_path)
        assert first.path is not None
        inode = first.path.stat().st_ino
        from exporters import registry

        real_read = registry._read_cache
        calls: list[Path] = []

        def miss_once(entry: Path, exporter_id: str) -> Any:
            calls.append(entry)
            return None if len(calls) == 1 else real_read(entry, exporter_id)

        monkeypatch.setattr(registry, "_read_cache", miss_once)
        second = export(CONFIG, weights, "onnx-native", cache_dir=tmp_path)
        assert second.ok and not second.cached and second.path == first.path
        assert first.path.stat().st_ino == inode  # the same file, never removed and replaced

    def test_a_torn_cache_entry_is_exported_again(self, tmp_path: Path, weights) -> None:
        first = export(CONFIG, weights, "onnx-native", cache_dir=tmp_path)
        assert first.path is not None
        (first.path.parent / "meta.json").write_text("{not json")
        again = export(CONFIG, weights, "onnx-native", cache_dir=tmp_path)
        assert again.ok and not again.cached


class TestMetadata:
    def test_artifact_records_what_was_exported(self, tmp_path: Path, weights) -> None:
        artifact = export(CONFIG, weights, "onnx-native", ExportOptions(opset=14), cache_dir=tmp_path)
        meta = artifact.meta
        assert meta["exporter"] == "onnx-native"
        assert meta["opset"] == 14
        assert meta["ir_version"] >= 7
        assert meta["op_histogram"]["LSTM"] == 2
        assert meta["size_bytes"] == artifact.path.stat().st_size
        assert meta["export_seconds"] > 0
        assert meta["warnings"] == []
        assert "onnx" in meta["versions"]


class TestOutcomes:
    def test_torch_cannot_express_peepholes_so_not_applicable(self, tmp_path: Path) -> None:
        config = LSTMConfig(input_size=3, hidden_size=4, peepholes=True)
        artifact = export(config, generate(config, seed=0), "torch-script", cache_dir=tmp_path)
        assert artifact.status == NOT_APPLICABLE
        assert "peephole" in artifact.reason

    def test_a_failing_export_is_a_result_not_a_crash(self, tmp_path: Path, weights) -> None:
        artifact = export(CONFIG, weights, "torch-script", ExportOptions(opset=1), cache_dir=tmp_path)
        assert artifact.status in (FAILED, NOT_APPLICABLE)
        assert artifact.reason

    def test_torch_module_is_built_not_cached(self, tmp_path: Path, weights) -> None:
        artifact = export(CONFIG, weights, "torch-module", cache_dir=tmp_path)
        assert artifact.status == OK and artifact.module is not None and artifact.path is None


class TestValidation:
    def test_an_invalid_model_names_the_checker_problem(self, tmp_path: Path) -> None:
        node = onnx.helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=4)
        graph = onnx.helper.make_graph(
            [node],
            "bad",
            [onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [1, 1, 3])],
            [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)],
        )
        path = tmp_path / "bad.onnx"
        onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 14)]), path)
        with pytest.raises(ValueError, match=r"^ONNX checker: "):
            validate_onnx(path)
