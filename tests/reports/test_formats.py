"""The format table, the JSON renderer, the version-1 sample, and what ``reports`` may import."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import reports
from conformance.records import SCHEMA_VERSION, ResultDocument
from conformance.status import STATUSES
from reports.json_report import render_json
from reports.labels import LOOKS
from tests.reports.conftest import SAMPLE, check_document, lane_with_latency, sample

REPORTS = Path(reports.__file__).parent
ALLOWED = {"conformance.records", "conformance.diffs", "conformance.status"}


class TestFormatTable:
    def test_one_renderer_per_file_format(self) -> None:
        assert reports.FORMATS == ("json", "junit", "markdown", "html") == tuple(reports.RENDERERS)

    @pytest.mark.parametrize(
        ("fmt", "start"),
        [
            ("json", '{\n "environment": {'),
            ("junit", '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="lstm-conformance"'),
            ("markdown", "## ❌ `full`, `smoke`: 5 failing of 23 lanes\n"),
            ("html", "<!DOCTYPE html>\n"),
        ],
    )
    def test_render(self, document: ResultDocument, fmt: str, start: str) -> None:
        text = reports.render(fmt, document)
        assert text.startswith(start) and text.endswith("\n")
        assert text == reports.RENDERERS[fmt](document)

    def test_an_unknown_format_names_the_known_ones(self, document: ResultDocument) -> None:
        with pytest.raises(
            ValueError, match=r"^unknown report format 'pdf'; known formats: json, junit, markdown, html$"
        ):
            reports.render("pdf", document)

    def test_the_table_cannot_be_changed(self) -> None:
        with pytest.raises(TypeError):
            reports.RENDERERS["pdf"] = reports.RENDERERS["json"]  # type: ignore[index]

    def test_every_status_has_a_look_in_display_order(self) -> None:
        assert tuple(LOOKS) == STATUSES

    def test_importing_reports_loads_no_renderer_rich_or_numpy(self) -> None:
        code = (
            "import sys, reports; "
            "print(sorted(m for m in sys.modules if m.startswith(('reports.', 'rich', 'numpy', 'conformance'))))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "[]"

    def test_no_renderer_imports_numpy(self) -> None:
        names = ", ".join(f"reports.{p.stem}" for p in sorted(REPORTS.glob("*.py")) if p.stem != "__init__")
        code = f"import sys, {names}; print('numpy' in sys.modules, 'conformance.compare' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "False False"


@pytest.mark.parametrize("path", sorted(REPORTS.glob("*.py")), ids=lambda p: p.name)
def test_reports_imports_only_records_diffs_and_status_of_conformance(path: Path) -> None:
    """The layering of DESIGN.md, for this package: stdlib, rich and three NumPy-free conformance modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module)
    ours = {m for m in imported if m.split(".")[0] in ("conformance", "reference", "exporters")}
    assert ours <= ALLOWED, f"{path.name} imports {sorted(ours - ALLOWED)}"
    third_party = (
        {m.split(".")[0] for m in imported} - {"conformance", "reports", "rich"} - set(sys.stdlib_module_names)
    )
    assert not third_party


class TestJson:
    def test_sorted_one_space_indent_final_newline(self, document: ResultDocument) -> None:
        text = render_json(document)
        assert text == json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n"
        data = json.loads(text)
        assert data["schema_version"] == SCHEMA_VERSION == 2
        assert data["summary"] == {"error": 1, "fail": 2, "pass": 11, "skip": 4, "timeout": 1, "xfail": 3, "xpass": 1}

    def test_round_trip(self, document: ResultDocument) -> None:
        again = ResultDocument.from_dict(json.loads(render_json(document)), source="again")
        assert again == document
        check = check_document()
        assert ResultDocument.from_dict(json.loads(render_json(check)), source="check") == check

    def test_full_text_is_kept(self) -> None:
        huge = "\x1bc" + "n" * 100_000
        document = ResultDocument.of([lane_with_latency(huge)], run={}, environment={})
        assert json.loads(render_json(document))["results"][0]["case"] == huge

    def test_non_finite_numbers_are_refused(self) -> None:
        document = ResultDocument.of([lane_with_latency("c", median_ms=math.nan)], run={}, environment={})
        with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
            render_json(document)


class TestVersionOneFile:
    """``data/sample_results.json`` predates the record model: it still loads and renders in every format."""

    def test_loads_through_from_dict(self) -> None:
        raw = json.loads(SAMPLE.read_text(encoding="utf-8"))
        assert raw["schema_version"] == 1
        document = sample()
        assert document.schema_version == 1 and len(document.results) == 23
        assert document.summary == raw["summary"]
        fail = next(r for r in document.results if r.id == "clip[forward]/onnx-native/ort-cpu")
        assert fail.features == ("clip",) and fail.kind == "lane"
        assert [d.name for d in fail.outputs] == ["Y", "Y_c", "Y_h"]

    @pytest.mark.parametrize("fmt", reports.FORMATS)
    def test_renders(self, fmt: str) -> None:
        text = reports.render(fmt, sample())
        assert "clip[forward]" in text or "clip\\[forward\\]" in text
        if fmt == "junit":
            assert ET.fromstring(text).get("tests") == "23"
        if fmt == "json":
            assert json.loads(text)["schema_version"] == 2  # rendered at the current version
