"""The Markdown job summary: what a reader sees first, and that it always fits GitHub's 1 MiB limit."""

from __future__ import annotations

import dataclasses
import re

import pytest

from conformance.records import Expected, Result, ResultDocument
from reports.markdown import COLLAPSE_AFTER, LIMIT_BYTES, render_markdown
from tests.reports.conftest import FAIL_LANE, build_document, check_document, record


def size(text: str) -> int:
    return len(text.encode("utf-8"))


class TestContent:
    def test_headline_with_counts(self, document: ResultDocument) -> None:
        text = render_markdown(document)
        assert text.startswith("## ❌ `full`, `smoke`: 5 failing of 23 lanes\n")
        assert "✅ 11 pass · ❌ 2 fail · ☑️ 3 xfail · ❗ 1 xpass · 💥 1 error · ⏱️ 1 timeout · ⏭️ 4 skip" in text
        assert "23 lanes in 12.5 s." in text

    def test_passing_headline(self, passing_document: ResultDocument) -> None:
        text = render_markdown(passing_document)
        assert text.startswith("## ✅ `full`, `smoke`: all 14 lanes that ran conform\n")
        assert "Failing lanes" not in text

    def test_runtimes_by_status_table(self, document: ResultDocument) -> None:
        lines = render_markdown(document).splitlines()
        assert "| runtime | ✅ pass | ❌ fail | ☑️ xfail | ❗ xpass | 💥 error | ⏱️ timeout | ⏭️ skip | total |" in lines
        assert "| `ort-cpu` | 6 | 2 | 1 | 1 |  |  | 1 | 11 |" in lines
        assert "| `ort-cpu-noopt` |  |  |  |  | 1 | 1 |  | 2 |" in lines
        assert "| **all** | 11 | 2 | 3 | 1 | 1 | 1 | 4 | 23 |" in lines

    def test_failing_lane_message_verbatim_in_a_text_block(
        self, document: ResultDocument, sample_results: tuple[Result, ...]
    ) -> None:
        text = render_markdown(document)
        message = record(sample_results, FAIL_LANE).message
        assert f"#### ❌ **fail** `{FAIL_LANE}`\n\n```text\n{message}\n```" in text
        assert "### Failing lanes (5)" in text
        assert "<details>" not in text  # five failing lanes are shown open

    def test_many_failing_lanes_are_collapsed(self, sample_results: tuple[Result, ...]) -> None:
        fail = record(sample_results, FAIL_LANE)
        lanes = [dataclasses.replace(fail, id=f"{FAIL_LANE}-{i}") for i in range(COLLAPSE_AFTER + 1)]
        text = render_markdown(build_document(lanes))
        assert text.count("<details><summary>") == COLLAPSE_AFTER + 1
        assert f"<code>{FAIL_LANE}-0</code> — Tensor-likes are not close!</summary>\n\n```text\n" in text

    def test_a_message_with_a_fence_keeps_its_block(self, sample_results: tuple[Result, ...]) -> None:
        lane = dataclasses.replace(record(sample_results, FAIL_LANE), message="before\n```\ninside\n```\nafter")
        text = render_markdown(build_document([lane]))
        assert "````text\nbefore\n```\ninside\n```\nafter\n````" in text

    def test_expected_divergences_grouped_with_reference_links(self, sample_results: tuple[Result, ...]) -> None:
        xfails = [r for r in sample_results if r.status == "xfail"]
        assert xfails[0].expected is not None
        expected = dataclasses.replace(xfails[0].expected, reference="https://example.org/issues/1")
        xfails[0] = dataclasses.replace(xfails[0], expected=expected)
        twin = dataclasses.replace(xfails[0], id="twin/onnx-native/ort-cpu")
        text = render_markdown(build_document([*xfails, twin]))
        assert "### Expected divergences (4 lanes)" in text
        assert f"| 2 | {expected.reason} |" in text
        assert "| 1 | ONNX Runtime rejects layout = 1 at session creation" in text
        assert "| [example.org/issues/1](https://example.org/issues/1) |" in text
        assert "reference/SEMANTICS.md, row 'Padding past sequence\\_lens\\[b\\]'" in text  # not a URL: text

    def test_skipped_reasons(self, document: ResultDocument) -> None:
        text = render_markdown(document)
        assert "### Skipped (4 lanes)" in text
        assert "| 2 | onnxruntime 1.32.0 has no CUDAExecutionProvider" in text
        assert "| 1 | torch-script: torch.nn.LSTM has no reverse-only direction |" in text

    def test_environment_line(self, document: ResultDocument) -> None:
        last = render_markdown(document).rstrip("\n").splitlines()[-1]
        assert last.startswith("<sub>Environment: Python 3.11.7 · ")
        assert "onnxruntime 1.32.0" in last and "torch 2.13.0+cpu" in last and "GPU: none" in last

    def test_latency_table_per_case(self, document: ResultDocument) -> None:
        text = render_markdown(document)
        assert "### Latency: stack\\[forward-1\\]" in text
        assert "| runtime | exporter | status | median ms |" in text
        assert "| **ort-cpu** | onnx-native | pass | 0.130 |" in text

    def test_no_latency_no_latency_section(self, sample_results: tuple[Result, ...]) -> None:
        untimed = [dataclasses.replace(r, latency=None) for r in sample_results]
        assert "Latency" not in render_markdown(build_document(untimed))

    def test_interrupted_run_is_flagged(self, sample_results: tuple[Result, ...]) -> None:
        text = render_markdown(build_document(sample_results, lanes=40, completed=23, interrupted=True))
        assert "> [!WARNING]\n> The run was interrupted: 23 of 40 planned lanes finished." in text
        one = render_markdown(build_document([], lanes=1, completed=0, interrupted=True))
        assert "> The run was interrupted: 0 of 1 planned lane finished." in one

    def test_markdown_specials_in_reasons_are_escaped(self, sample_results: tuple[Result, ...]) -> None:
        skip = dataclasses.replace(
            record(sample_results, "clip[forward]/onnx-native/ort-cuda"), message="a | b <x> *y*\nz"
        )
        text = render_markdown(build_document([skip]))
        assert "| 1 | a \\| b \\<x\\> \\*y\\* z |" in text


class TestCheckDocument:
    def test_headline_names_the_model_and_counts_results(self) -> None:
        text = render_markdown(check_document("models/speech.onnx"))
        assert text.startswith("## ❌ check `models/speech.onnx`: 2 failing of 7 results\n")
        assert "✅ 4 pass · ❌ 2 fail · 💤 1 not-exercised" in text
        assert "### Failing results (2)" in text
        assert (
            "### Not exercised (1 result)\n\n| results | reason |\n|--:|:--|\n| 1 | the If took its else branch |"
            in text
        )
        assert "conformance" not in text.splitlines()[0]

    def test_against_torch_names_the_module(self) -> None:
        document = check_document()
        document = ResultDocument.of(document.results, run={**document.run, "against_torch": "lm:Net"}, environment={})
        assert render_markdown(document).startswith("## ❌ check `model.onnx` against `lm:Net`: 2 failing of 7 results")

    def test_a_file_without_command_is_still_a_check(self) -> None:
        document = ResultDocument.of(check_document().results, run={}, environment={})
        assert render_markdown(document).startswith("## ❌ check `model.onnx`: 2 failing of 7 results\n")


class TestUntrustedText:
    def test_names_cannot_inject_markdown_html_or_control_characters(self, sample_results: tuple[Result, ...]) -> None:
        evil = "y[/x] <img src=x> **b** `c` | d \x1bc \x1b]0;title\x07 \u202e"
        fail = dataclasses.replace(record(sample_results, FAIL_LANE), id=evil, message=evil, runtime=evil)
        xfail = next(r for r in sample_results if r.status == "xfail")
        xfail = dataclasses.replace(xfail, expected=Expected(evil, reference=f"https://x.org/{evil}"))
        text = render_markdown(build_document([fail, xfail]))
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", text)
        prose = re.sub(r"^```text\n.*?\n```$", "", text, flags=re.S | re.M).replace("\\`", "")
        prose = re.sub(r"`[^`\n]*`", "", prose)
        assert not re.search(r"(?<!\\)<img", prose)  # raw only in code, where it is text; escaped elsewhere
        assert "`y[/x] <img src=x> **b** 'c' ¦ d \\x1bc \\x1b]0;title\\x07 \\u202e`" in text  # code spans
        assert "y\\[/x\\] \\<img src=x\\> \\*\\*b\\*\\* \\`c\\` \\| d \\\\x1bc" in text  # table cells
        assert "](https://x.org/" not in text  # an odd reference is text, not a link

    def test_a_huge_name_is_cut(self, sample_results: tuple[Result, ...]) -> None:
        name = "n" * 100_000
        lane = dataclasses.replace(record(sample_results, FAIL_LANE), id=name, runtime=name)
        text = render_markdown(build_document([lane]))
        assert f"`{'n' * 200}… (99,800 more characters)`" in text  # the runtime
        assert f"`{'n' * 400}… (99,600 more characters)`" in text  # the id
        assert size(text) < 20_000


class TestSizeLimit:
    def test_within_a_small_limit_with_a_note(self, document: ResultDocument) -> None:
        text = render_markdown(document, limit_bytes=3000)
        assert size(text) <= 3000
        assert text.startswith("## ❌")
        assert "| **all** | 11 | 2 | 3 | 1 | 1 | 1 | 4 | 23 |" in text  # the headline and table always stay
        assert "### Skipped (4 lanes)" in text and "<sub>Environment:" in text
        assert "> [!NOTE]\n> Truncated to fit the 3,000-byte summary limit: 4 failing lanes, 6 latency tables" in text
        assert "#### ❗ **xpass** `clip-loose/onnx-native/ort-cpu`" in text  # the first failing lane fits

    def test_huge_run_fits_githubs_limit(self, sample_results: tuple[Result, ...]) -> None:
        fail = record(sample_results, FAIL_LANE)
        lanes = [
            dataclasses.replace(fail, id=f"case-{i}/onnx-native/ort-cpu", message=fail.message * 20)
            for i in range(1500)
        ]
        text = render_markdown(build_document(lanes))
        assert size(text) <= LIMIT_BYTES < 1024 * 1024
        assert "Truncated to fit the 1,000,000-byte summary limit" in text
        assert "| **all** |" not in text  # one runtime: no total row
        assert "| `ort-cpu` |  | 1500 | 1500 |" in text or "| `ort-cpu` | 1500 | 1500 |" in text

    def test_one_enormous_message_is_cut(self, sample_results: tuple[Result, ...]) -> None:
        lane = dataclasses.replace(record(sample_results, FAIL_LANE), message="x" * 100_000)
        text = render_markdown(build_document([lane]))
        assert "x\n… (80,000 more characters)\n```" in text
        assert size(text) < 30_000

    @pytest.mark.parametrize("limit", [300, 1000])
    def test_even_the_fixed_sections_are_cut_to_the_limit(self, document: ResultDocument, limit: int) -> None:
        text = render_markdown(document, limit_bytes=limit)
        assert size(text) <= limit
        assert text.rstrip().endswith("Truncated to fit the summary limit.")
