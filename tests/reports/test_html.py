"""The HTML report: one offline page, escaped, accessible; rendered by headless Chromium where installed."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conformance.compare import OutputDiff, summary_line
from reports.html import STATUS_SYMBOL, case_features, render_html
from tests.reports.conftest import build_document, record

FAIL_LANE = "clip[forward]/onnx-native/ort-cpu"
CHROMIUM = shutil.which("chromium")


class Page(HTMLParser):
    """The parts of a page the tests look at: matrix cells, their titles, text, element counts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[dict[str, str]] = []  # class, title, text of each matrix <td class="cell ...">
        self.tags: Counter[str] = Counter()
        self.text: list[str] = []
        self.hrefs: list[str] = []
        self._cell: dict[str, str] | None = None
        self._cell_depth = 0
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.tags[tag] += 1
        if "href" in attributes:
            self.hrefs.append(attributes["href"])
        if tag == "td" and attributes.get("class", "").startswith("cell"):
            self._cell = {"class": attributes["class"], "title": attributes.get("title", ""), "text": ""}
            self.cells.append(self._cell)
            self._cell_depth = 0
        elif self._cell is not None:
            self._cell_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._cell is not None:
            if self._cell_depth == 0 and tag == "td":
                self._cell = None
            else:
                self._cell_depth -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data

    def statuses(self) -> Counter[str]:
        return Counter(c["class"].split()[1].removeprefix("st-") for c in self.cells if " st-" in f" {c['class']}")

    def cell(self, lane_id: str) -> dict[str, str]:
        return next(c for c in self.cells if c["title"].startswith(lane_id + "\n"))


class TestPage:
    def test_header_verdict_and_counts(self, document: dict[str, Any]) -> None:
        page = Page(render_html(document))
        text = " ".join(page.text)
        assert "✗ FAIL: 5 failing lanes" in text
        assert "11 pass" in " ".join(text.split())

    def test_passing_verdict(self, passing_document: dict[str, Any]) -> None:
        assert "✓ PASS: every lane that ran conforms" in render_html(passing_document)

    def test_matrix_has_one_cell_per_lane_with_status_text(self, document: dict[str, Any]) -> None:
        page = Page(render_html(document))
        assert page.statuses() == Counter(document["summary"])
        for cell in page.cells:
            if " st-" in f" {cell['class']}":
                status = cell["class"].split()[1].removeprefix("st-")
                assert cell["text"] == STATUS_SYMBOL[status] + status  # symbol, then the word for screen readers

    def test_cell_tooltip_says_status_and_one_line(
        self, document: dict[str, Any], sample_records: list[dict[str, Any]]
    ) -> None:
        page = Page(render_html(document))
        fail = record(sample_records, FAIL_LANE)
        title = page.cell(FAIL_LANE)["title"]
        assert title.startswith(f"{FAIL_LANE}\nfail: ")
        assert "\n" not in title.split("\n", 1)[1]  # one line after the lane id
        assert summary_line(OutputDiff.from_dict(fail["outputs"]["Y"])) in title
        skip = page.cell("clip[forward]/onnx-native/ort-cuda")["title"]
        assert "skip: onnxruntime 1.32.0 has no CUDAExecutionProvider" in skip

    def test_features_from_the_suite_and_from_the_id(self, sample_records: list[dict[str, Any]]) -> None:
        moved = {**record(sample_records, FAIL_LANE), "suite": "/nowhere/gone.toml", "case": "activation-elu"}
        features = case_features([*sample_records, moved])
        assert features[("full", "clip[forward]")] == ("clip", "weights:saturating", "T=6", "B=4", "H=7")
        assert features[("/nowhere/gone.toml", "activation-elu")] == ("activation",)
        html = render_html(build_document([moved]))
        assert '<span class="feat">activation</span>' in html and "<code>gone</code>" in html

    def test_failing_lane_messages_in_full(
        self, document: dict[str, Any], sample_records: list[dict[str, Any]]
    ) -> None:
        html = render_html(document)
        for lane in sample_records:
            if lane["status"] in ("fail", "xpass", "error", "timeout"):
                assert f"<pre>{_escaped(lane['message'])}</pre>" in html
        assert 'href="#lane-' in html  # failing cells link to their message

    def test_error_curves_for_failing_and_worst_passing_lanes(self, document: dict[str, Any]) -> None:
        html = render_html(document)
        figures = re.findall(r'<figure class="curve">.*?</figure>', html, flags=re.S)
        # 3 failing lanes have a per-step series (2 fail, 1 xpass); error/timeout lanes have no outputs.
        assert len(figures) == 3 + 5
        assert sum("failing ·" in f for f in figures) == 3
        assert "saturating[bidirectional-1]/onnx-native/ort-cpu" in figures[3]  # the least headroom first
        assert all("<svg" in f and "<polyline" in f and "atol = 1.00e-5" in f for f in figures)

    def test_latency_charts_per_runtime(self, document: dict[str, Any]) -> None:
        html = render_html(document)
        section = html[html.index('<section id="latency">') :]
        assert "<code>ort-cpu (CPUExecutionProvider)</code>" in section
        assert section.count("median latency with p90 whisker</title>") == 4  # onnx-reference, ort-cpu, ...

    def test_no_latency_no_section(self, sample_records: list[dict[str, Any]]) -> None:
        untimed = [{k: v for k, v in r.items() if k != "latency"} for r in sample_records]
        html = render_html(build_document(untimed))
        assert 'id="latency"' not in html and "#latency" not in html

    def test_environment_table(self, document: dict[str, Any]) -> None:
        html = render_html(document)
        assert "<tr><th scope='row'>onnxruntime</th><td>1.32.0</td></tr>" in html

    def test_offline_no_script_no_external_resource(self, document: dict[str, Any]) -> None:
        html = render_html(document)
        page = Page(html)
        assert page.tags["script"] == page.tags["link"] == page.tags["img"] == page.tags["iframe"] == 0
        assert " src=" not in html and "@import" not in html and "url(" not in html
        assert all(href.startswith("#") for href in page.hrefs)

    def test_text_from_the_file_is_escaped(self, sample_records: list[dict[str, Any]]) -> None:
        evil = "<script>alert(1)</script>"
        fail = {**record(sample_records, FAIL_LANE), "message": evil, "case": f"x{evil}"}
        xfail = next(r for r in sample_records if r["status"] == "xfail")
        xfail = {**xfail, "expected": {**xfail["expected"], "reason": evil, "reference": evil}}
        document = build_document([fail, xfail])
        document["environment"]["versions"]["torch"] = evil
        html = render_html(document)
        assert "<script" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    def test_empty_document(self) -> None:
        html = render_html(build_document([]))
        assert "nothing ran" in html and html.rstrip().endswith("</html>")


def _escaped(text: str) -> str:
    from html import escape

    return escape(text)


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
class TestInChromium:
    def test_rendered_dom_and_screenshot(self, document: dict[str, Any], artifacts: Path, tmp_path: Path) -> None:
        page_path = artifacts / "report.html"
        page_path.write_text(render_html(document), encoding="utf-8")
        url = page_path.resolve().as_uri()

        dom = _chromium("--dump-dom", url, profile=tmp_path / "profile-dom").stdout
        page = Page(dom)
        assert page.statuses() == Counter(document["summary"])  # the matrix, one cell per lane
        assert '<table class="matrix">' in dom
        assert FAIL_LANE in " ".join(page.text)
        assert "Tensor-likes are not close!" in " ".join(page.text)
        assert page.tags["svg"] == 8 + 4  # error curves, latency charts
        assert "✗ FAIL: 5 failing lanes" in " ".join(page.text)

        shot = artifacts / "report.png"
        _chromium(f"--screenshot={shot}", "--window-size=1400,2000", url, profile=tmp_path / "profile-shot")
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (1400, 2000)
        assert len(data) > 50_000  # a page with content, not a blank one
