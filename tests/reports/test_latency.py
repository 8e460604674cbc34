"""Tests for reports.latency: per-case latency tables, speed-ups against a baseline runtime, Markdown."""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.console import Console

from conformance.records import Result, lane_result
from conformance.timing import Latency
from reports.latency import latency_markdown, latency_tables, timed

MS = 1_000_000


def lane(lane_id: str, median_ms: float | None = None, *, converged: bool = True, status: str = "pass") -> Result:
    case, exporter, runtime = lane_id.split("/")
    latency = None
    if median_ms is not None:
        samples = [round(median_ms * MS * f) for f in (0.9, 0.95, 1.0, 1.0, 1.0, 1.05, 1.1, 1.2, 1.3)]
        latency = Latency.from_samples(samples, converged=converged, budget_s=0.5, warmup=3).to_dict(tokens=256)
    return lane_result(
        suite="full", case=case, exporter=exporter, runtime=runtime, status=status, message="", latency=latency
    )


RESULTS = [
    lane("forward/onnx-native/ort-cpu", 2.0),
    lane("forward/onnx-native/ort-cpu-noopt", 4.0),
    lane("forward/torch-script/ort-cpu", 3.0),
    lane("forward/torch-module/torch-cpu", 1.0),
    lane("forward/none/reference", 8.0, converged=False),
    lane("lm/onnx-native/onnx-reference", 50.0, status="xfail"),
    lane("clip[forward]/onnx-native/ort-cpu", 1.5),
    lane("forward/onnx-native/ort-cuda", status="skip"),
]


def render(table: Any) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def rows(text: str) -> dict[tuple[str, str], list[str]]:
    """(runtime, exporter) -> the row's cells, from rendered table text."""
    found = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]] or [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) > 3 and cells[0] not in ("runtime", "---"):
            found[(cells[0].strip("*"), cells[1])] = cells
    return found


class TestConsoleTables:
    def test_one_table_per_timed_case_fastest_first(self) -> None:
        tables = latency_tables(RESULTS)
        assert [str(t.title) for t in tables] == ["Latency: clip[forward]", "Latency: forward", "Latency: lm"]
        assert "Latency: clip[forward]" in render(tables[0])  # a case id, not rich markup
        text = render(tables[1])
        order = [key[0] for key in rows(text)]
        assert order == ["torch-cpu", "ort-cpu", "ort-cpu", "ort-cpu-noopt", "reference"]
        assert "ort-cuda" not in text  # not timed

    def test_speed_up_against_the_baseline_of_the_same_exporter_or_the_best_baseline(self) -> None:
        found = rows(render(latency_tables(RESULTS)[1]))
        assert found[("ort-cpu", "onnx-native")][-1] == "1.00x"
        assert found[("ort-cpu", "torch-script")][-1] == "1.00x"
        assert found[("ort-cpu-noopt", "onnx-native")][-1] == "0.50x"
        assert found[("torch-cpu", "torch-module")][-1] == "2.00x*"  # vs the fastest ort-cpu lane (2 ms)
        assert found[("reference", "none")][-1] == "0.25x*"

    def test_columns_show_the_summary(self) -> None:
        text = render(latency_tables(RESULTS)[1])
        cells = rows(text)[("ort-cpu", "onnx-native")]
        assert cells[:5] == ["ort-cpu", "onnx-native", "pass", "2.000", "12.5%"]  # CI: ranks 1 and 7 of 9: 1.9-2.4
        assert cells[9:11] == ["9", "128,000"]
        assert rows(text)[("reference", "none")][3] == "8.000~"
        assert "* vs the fastest ort-cpu lane of the case" in text
        assert "~ the median's 95% interval did not reach its target width" in text

    def test_no_baseline_drops_the_speed_up_column(self) -> None:
        text = render(latency_tables(RESULTS, baseline=None)[1])
        assert "speed-up" not in text
        assert "x*" not in text

    def test_a_case_without_the_baseline_runtime_has_blank_speed_ups(self) -> None:
        cells = rows(render(latency_tables(RESULTS)[2]))[("onnx-reference", "onnx-native")]
        assert cells[2] == "xfail"
        assert cells[-1] == ""

    def test_nothing_timed(self) -> None:
        assert latency_tables(RESULTS[-1:]) == []
        assert latency_markdown(RESULTS[-1:]) == ""

    def test_a_latency_without_its_numbers_is_not_timed(self) -> None:
        timed_lane = RESULTS[0]
        assert timed_lane.latency is not None and timed(timed_lane) is timed_lane.latency
        for key, value in (("median_ms", None), ("p90_ms", "fast"), ("count", float("nan")), ("min_ms", True)):
            broken = dataclasses.replace(timed_lane, latency={**timed_lane.latency, key: value})
            assert timed(broken) is None
            assert latency_tables([broken]) == []

    def test_names_are_text_not_markup_nor_control_characters(self) -> None:
        odd = dataclasses.replace(RESULTS[0], case="c[/x]\x1b]0;t\x07", runtime="[bold]rt\x1bc")
        text = render(latency_tables([odd])[0])
        assert "Latency: c[/x]\\x1b]0;t\\x07" in text
        assert "[bold]rt\\x1bc" in text and "\x1b" not in text


class TestMarkdown:
    def test_same_content_as_github_tables(self) -> None:
        text = latency_markdown(RESULTS)
        lines = text.splitlines()
        assert lines[0] == "### Latency: clip\\[forward\\]"
        header = "| runtime | exporter | status | median ms | ±CI | p90 ms | p99 ms | min ms | stdev ms | samples"
        assert lines[2].startswith(header)
        assert lines[3] == "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        assert "| **ort-cpu** | onnx-native | pass | 2.000 |" in text
        assert "| torch-cpu | torch-module | pass | 1.000 |" in text
        assert "| 2.00x\\* |" in text
        assert "| 8.000\\~ |" in text
        assert "\\* vs the fastest ort-cpu lane of the case" in text
        assert "### Latency: forward" in text
        assert "### Latency: lm" in text
        assert text.endswith("|\n")
