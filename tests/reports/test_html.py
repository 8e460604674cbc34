"""The HTML report: one offline page, escaped, accessible; rendered by headless Chromium where installed."""

from __future__ import annotations

import dataclasses
import re
import shutil
import struct
import subprocess
from collections import Counter
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conformance.diffs import summary_line
from conformance.records import Expected, Result, ResultDocument
from reports.html import render_html
from reports.labels import LOOKS
from reports.text import ID
from tests.reports.conftest import FAIL_LANE, build_document, check_document, record

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
    def test_header_verdict_and_counts(self, document: ResultDocument) -> None:
        page = Page(render_html(document))
        text = " ".join(page.text)
        assert "✗ FAIL: 5 failing lanes" in text
        assert "11 pass" in " ".join(text.split())

    def test_run_title_names_the_suites(self, document: ResultDocument) -> None:
        html = render_html(document)
        assert "<title>lstm-conformance: full, smoke</title>" in html
        assert '<h1>lstm-conformance <span class="muted">· full, smoke</span></h1>' in html
        assert "<h3>Suite <code>full</code>" in html and "<h3>Suite <code>smoke</code>" in html

    def test_passing_verdict(self, passing_document: ResultDocument) -> None:
        assert "✓ PASS: every lane that ran conforms" in render_html(passing_document)

    def test_one_failing_lane_is_singular(self, sample_results: tuple[Result, ...]) -> None:
        html = render_html(build_document([record(sample_results, FAIL_LANE)]))
        assert "✗ FAIL: 1 failing lane<" in html
        assert '<span class="muted">1 case \u00d7 1 lane column</span>' in html
        interrupted = render_html(build_document([], lanes=1, completed=0, interrupted=True))
        assert "The run was interrupted: 0 of 1 planned lane finished." in interrupted

    def test_matrix_has_one_cell_per_lane_with_status_text(self, document: ResultDocument) -> None:
        page = Page(render_html(document))
        assert page.statuses() == Counter(document.summary)
        for cell in page.cells:
            if " st-" in f" {cell['class']}":
                status = cell["class"].split()[1].removeprefix("st-")
                assert cell["text"] == LOOKS[status].symbol + status  # symbol, then the word for screen readers

    def test_cell_tooltip_says_status_and_one_line(self, document: ResultDocument) -> None:
        page = Page(render_html(document))
        fail = record(document.results, FAIL_LANE)
        title = page.cell(FAIL_LANE)["title"]
        assert title.startswith(f"{FAIL_LANE}\nfail: ")
        assert "\n" not in title.split("\n", 1)[1]  # one line after the lane id
        y = fail.output("Y")
        assert y is not None and summary_line(y) in title
        skip = page.cell("clip[forward]/onnx-native/ort-cuda")["title"]
        assert "skip: onnxruntime 1.32.0 has no CUDAExecutionProvider" in skip

    def test_features_come_from_the_record(self, sample_results: tuple[Result, ...]) -> None:
        """Version-1 records get their case id's first word; version-2 records carry the case's features."""
        fail = record(sample_results, FAIL_LANE)
        assert fail.features == ("clip",)
        moved = dataclasses.replace(
            fail,
            suite="/nowhere/gone.toml",
            case="activation-elu",
            features=("activation", "weights:saturating", "T=6"),
        )
        html = render_html(build_document([moved]))
        assert '<span class="feat">activation</span><span class="feat">weights:saturating</span>' in html
        assert '<span class="feat dim">T=6</span>' in html
        assert "<h3>Suite <code>gone</code>" in html  # a suite file, by its stem; nothing is loaded

    def test_failing_lane_messages_in_full(self, document: ResultDocument) -> None:
        html = render_html(document)
        for lane in document.results:
            if lane.status in ("fail", "xpass", "error", "timeout"):
                assert f"<pre>{escape(lane.message)}</pre>" in html
        assert 'href="#lane-' in html  # failing cells link to their message

    def test_error_curves_for_failing_and_worst_passing_lanes(self, document: ResultDocument) -> None:
        html = render_html(document)
        figures = re.findall(r'<figure class="curve">.*?</figure>', html, flags=re.S)
        # 3 failing lanes have a per-step series (2 fail, 1 xpass); error/timeout lanes have no outputs.
        assert len(figures) == 3 + 5
        assert sum("failing ·" in f for f in figures) == 3
        assert "saturating[bidirectional-1]/onnx-native/ort-cpu" in figures[3]  # the least headroom first
        assert all("<svg" in f and "<polyline" in f and "atol = 1.00e-5" in f for f in figures)

    def test_latency_charts_per_runtime(self, document: ResultDocument) -> None:
        html = render_html(document)
        section = html[html.index('<section id="latency">') :]
        assert "<code>ort-cpu (CPUExecutionProvider)</code>" in section
        assert section.count("median latency with p90 whisker</title>") == 4  # onnx-reference, ort-cpu, ...

    def test_no_latency_no_section(self, sample_results: tuple[Result, ...]) -> None:
        untimed = [dataclasses.replace(r, latency=None) for r in sample_results]
        html = render_html(build_document(untimed))
        assert 'id="latency"' not in html and "#latency" not in html

    def test_environment_table(self, document: ResultDocument) -> None:
        html = render_html(document)
        assert "<tr><th scope='row'>onnxruntime</th><td>1.32.0</td></tr>" in html
        assert "<tr><th scope='row'>schema_version</th><td>2</td></tr>" in html

    def test_offline_no_script_no_external_resource(self, document: ResultDocument) -> None:
        html = render_html(document)
        page = Page(html)
        assert page.tags["script"] == page.tags["link"] == page.tags["img"] == page.tags["iframe"] == 0
        assert " src=" not in html and "@import" not in html and "url(" not in html
        assert all(href.startswith("#") for href in page.hrefs)

    def test_empty_document(self) -> None:
        html = render_html(build_document([]))
        assert "nothing was checked" in html and html.rstrip().endswith("</html>")


class TestCheckDocument:
    """A ``check`` names its model, not a suite; rows are shapes and nodes, columns the runtimes."""

    def test_title_and_header_name_the_model(self) -> None:
        html = render_html(check_document("models/speech.onnx"))
        assert "<title>lstm-conformance check: speech.onnx</title>" in html  # the file name; the path below
        assert '<h1>lstm-conformance check <span class="muted">· models/speech.onnx</span></h1>' in html
        assert "lstm-conformance · conformance" not in html
        assert "Suite" not in html and "cases" not in html
        assert '<h3>Model <code>models/speech.onnx</code> <span class="muted">4 rows \u00d7 3 runtime columns' in html

    def test_against_torch_names_the_module(self) -> None:
        document = check_document()
        document = ResultDocument.of(document.results, run={**document.run, "against_torch": "lm:Net"}, environment={})
        assert "<title>lstm-conformance check: model.onnx against lm:Net</title>" in render_html(document)

    def test_a_file_without_command_is_still_a_check(self) -> None:
        """Records that are all node, whole-model or weights verdicts are a check, never ``Suite check``."""
        document = check_document("models/speech.onnx")
        document = ResultDocument.of(document.results, run={"wall_seconds": 1.25}, environment={})
        html = render_html(document)
        assert "<title>lstm-conformance check: speech.onnx</title>" in html
        assert '<h1>lstm-conformance check <span class="muted">· models/speech.onnx</span></h1>' in html
        assert "lstm-conformance · conformance" not in html and "Suite" not in html and "cases" not in html
        assert "✗ FAIL: 2 failing results" in " ".join(Page(html).text)

    def test_one_row_and_one_column_are_singular(self) -> None:
        from conformance.records import model_result

        document = check_document()
        one = [model_result("model.onnx", "ort-cpu", "pass", "ok", label="T=7,B=3", shape={"T": 7, "B": 3})]
        html = render_html(ResultDocument.of(one, run=document.run, environment={}))
        assert '<span class="muted">1 row \u00d7 1 runtime column</span>' in html

    def test_one_cell_per_result_nodes_apart(self) -> None:
        document = check_document()
        page = Page(render_html(document))
        assert page.statuses() == Counter(document.summary)
        rows = re.findall(r'<th scope="row" class="case">(.*?)</th>', render_html(document))
        assert rows == ["T=7,B=3 · /lstm/LSTM", "T=7,B=3 · /lstm_1/LSTM", "T=7,B=3 · whole model", "trained weights"]
        cell = page.cell("model.onnx[T=7,B=3]/lstm_1/LSTM/openvino")  # same input, so the same row
        assert cell["title"].endswith("not-exercised: the If took its else branch")

    def test_verdict_counts_results(self) -> None:
        text = " ".join(Page(render_html(check_document())).text)
        assert "✗ FAIL: 2 failing results" in text and "7 results" in text
        assert "1 not-exercised" in " ".join(text.split())

    def test_not_exercised_is_explained(self) -> None:
        html = render_html(check_document())
        assert "<th>not exercised because</th>" in html and "the If took its else branch" in html


class TestUntrustedText:
    def test_text_from_the_file_is_escaped(self, sample_results: tuple[Result, ...]) -> None:
        evil = "<script>alert(1)</script>"
        fail = dataclasses.replace(record(sample_results, FAIL_LANE), message=evil, case=f"x{evil}")
        xfail = next(r for r in sample_results if r.status == "xfail")
        assert xfail.expected is not None
        xfail = dataclasses.replace(xfail, expected=Expected(evil, reference=evil))
        environment = {**build_document([]).environment, "versions": {"torch": evil}}
        html = render_html(build_document([fail, xfail], environment=environment))
        assert "<script" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    def test_control_characters_are_visible_and_names_capped(self, sample_results: tuple[Result, ...]) -> None:
        name = "x\x1bc\x1b]0;title\x07" + "y" * 100_000
        fail = dataclasses.replace(record(sample_results, FAIL_LANE), case=name, id=f"{name}/e/r", message=name)
        html = render_html(build_document([fail]))
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", html)
        assert "x\\x1bc\\x1b]0;title\\x07yyy" in html
        assert f"… ({len(name) - ID:,} more characters)" in html  # ids and row headers are cut at ID characters
        assert len(html) < 300_000


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
    def test_rendered_dom_and_screenshot(self, document: ResultDocument, artifacts: Path, tmp_path: Path) -> None:
        page_path = artifacts / "report.html"
        page_path.write_text(render_html(document), encoding="utf-8")
        url = page_path.resolve().as_uri()

        dom = _chromium("--dump-dom", url, profile=tmp_path / "profile-dom").stdout
        page = Page(dom)
        assert page.statuses() == Counter(document.summary)  # the matrix, one cell per lane
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
