"""Import contract: the graph layer stays off the CLI's --help path and imports no optional runtime."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(statement: str, modules: list[str]) -> list[str]:
    code = f"import sys; {statement}; print(','.join(m for m in {modules!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in result.stdout.strip().split(",") if m]


def test_cli_does_not_import_the_graph_layer() -> None:
    assert _loaded_after("import conformance.cli", ["conformance.graph"]) == []


def test_graph_layer_imports_no_runtime_until_a_run() -> None:
    heavy = ["onnxruntime", "torch", "onnx.reference", "conformance.graph"]
    assert _loaded_after("import conformance.graph", heavy) == ["conformance.graph"]
