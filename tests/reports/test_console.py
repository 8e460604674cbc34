"""The one console summary: what it shows, in which order, its verdict line, and that file text stays text."""

from __future__ import annotations

import dataclasses
import io
import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from conformance.records import Expected, Result, ResultDocument, lane_result
from reports.console import default_title, summary
from reports.text import ID, MESSAGE, safe
from tests.reports.conftest import FAIL_LANE, build_document, check_document

# Anything a terminal could act on: C0 but newline, DEL, C1, bidi overrides and isolates.
TERMINAL_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


# Names a hostile file could hold: any character (control ones often), and rich's markup and emoji codes.
FRAGMENTS = ["[", "]", "[/", "[bold]", "[/]", "[link=http://x]", "\x1b", "\x1bc", "\x1b]0;t\x07", ":smile:", "\u202e"]
NAMES = (
    st.lists(
        st.one_of(
            st.text(st.characters(codec="utf-8"), max_size=5),
            st.text(st.characters(max_codepoint=0x9F), max_size=5),
            st.sampled_from(FRAGMENTS),
        ),
        max_size=8,
    )
    .map("".join)
    .filter(bool)
)


def render(
    document: ResultDocument,
    *,
    width: int = 120,
    title: str = "Results",
    show_latency: bool = False,
    baseline: str = "ort-cpu",
) -> str:
    """The summary as printed on a plain console that reads markup and highlights (rich's defaults)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False)
    for part in summary(document, title=title, show_latency=show_latency, baseline=baseline):
        console.print(part)
    return buffer.getvalue()


def lane(
    case: str = "c", *, status: str = "pass", message: str = "ok", runtime: str = "ort-cpu", **facts: object
) -> Result:
    return lane_result(
        suite="full", case=case, exporter="onnx-native", runtime=runtime, status=status, message=message, **facts
    )


class TestSections:
    def test_in_order_ending_with_the_verdict(self, document: ResultDocument) -> None:
        text = render(document, title="full, smoke: 23 lanes")
        marks = [
            "full, smoke: 23 lanes",
            "┃ runtime        ┃ pass ┃ fail ┃ xfail ┃ xpass ┃ error ┃ timeout ┃ skip ┃ total ┃",
            "Expected divergences (confirmed by this run)",
            "Skipped:",
            "5 failing lanes:",
        ]
        assert [text.index(mark) for mark in marks] == sorted(text.index(mark) for mark in marks)
        assert text.rstrip("\n").splitlines()[-1] == "FAIL: 5 of 23 lanes failing"

    def test_status_table(self, document: ResultDocument) -> None:
        lines = render(document).splitlines()
        assert "│ ort-cpu        │    6 │    2 │     1 │     1 │       │         │    1 │    11 │" in lines
        assert "│ all            │   11 │    2 │     3 │     1 │     1 │       1 │    4 │    23 │" in lines

    def test_failures_with_their_messages(self, document: ResultDocument) -> None:
        text = render(document)
        assert (
            f"\nFAIL {FAIL_LANE}\n    Tensor-likes are not close!\n\n    Mismatched elements: 23 / 168 (13.7%)" in text
        )
        assert "\nTIMEOUT long-sequence/torch-dynamo/ort-cpu-noopt\n    lane did not finish within 300 s" in text

    def test_skip_reasons_counted(self, document: ResultDocument) -> None:
        text = render(document, width=200)
        assert "     2 x onnxruntime 1.32.0 has no CUDAExecutionProvider" in text
        assert "     1 x torch-script: torch.nn.LSTM has no reverse-only direction" in text

    def test_expected_divergences_by_reason(self, document: ResultDocument) -> None:
        text = render(document, width=200)
        assert "│     1 │ onnx.reference's LSTM ignores clip" in text
        assert "│ clip[forward]/onnx-native/onnx-reference" in text

    def test_latency_tables_only_when_asked(self, document: ResultDocument) -> None:
        assert "Latency:" not in render(document)
        text = render(document, show_latency=True, baseline="reference")
        assert "Latency: stack[forward-1]" in text
        assert text.index("Latency: stack[forward-1]") < text.index("FAIL: 5 of 23 lanes failing")
        assert "vs the fastest reference lane of the case" in text

    def test_passing_document(self, passing_document: ResultDocument) -> None:
        text = render(passing_document)
        assert "failing" not in text
        assert text.rstrip("\n").splitlines()[-1] == "PASS: 14 of 18 lanes checked, all conform"


class TestVerdictLine:
    def last_line(self, document: ResultDocument) -> str:
        return render(document).rstrip("\n").splitlines()[-1]

    def test_one_lane_is_singular(self) -> None:
        assert self.last_line(build_document([lane()])) == "PASS: 1 of 1 lane checked, all conform"
        failing = build_document([lane(status="fail", message="no")])
        assert self.last_line(failing) == "FAIL: 1 of 1 lane failing"
        assert "1 failing lane:" in render(failing)

    def test_every_failing_status_fails(self) -> None:
        for status in ("fail", "xpass", "error", "timeout"):
            document = build_document([lane("a"), lane("b", status=status, message="m")])
            assert self.last_line(document) == "FAIL: 1 of 2 lanes failing"

    def test_nothing_checked(self) -> None:
        document = build_document(
            [lane("a", status="skip", message="no GPU"), lane("b", status="skip", message="no GPU")]
        )
        assert self.last_line(document) == "NOTHING CHECKED: none of 2 lanes was checked (see the reasons above)"
        assert self.last_line(build_document([])) == "NOTHING CHECKED: there was no lane to check"

    def test_latency_only_runs_pass_without_accuracy(self) -> None:
        skipped = [lane(c, status="skip", message="accuracy not checked (--latency-only)") for c in "ab"]
        document = build_document(skipped, latency_only=True)
        assert self.last_line(document) == "PASS: 2 lanes timed; accuracy not checked (--latency-only)"

    def test_a_check_counts_results(self) -> None:
        text = render(check_document(), width=160)
        assert text.rstrip("\n").splitlines()[-1] == "FAIL: 2 of 7 results failing"
        assert "2 failing results:" in text
        assert "Not exercised:\n     1 x the If took its else branch" in text
        assert "Likely cause:\n  - openvino runs the LSTM in bf16" in text
        two = ResultDocument.of(
            check_document().results, run={**check_document().run, "causes": ["a", "b"]}, environment={}
        )
        assert "Likely causes:\n  - a\n  - b" in render(two, width=160)


class TestDefaultTitle:
    def test_run(self, document: ResultDocument) -> None:
        assert default_title(document) == "full, smoke: 23 lanes in 12.5 s"
        partial = build_document(document.results[:1], lanes=40)
        assert default_title(partial) == "full, smoke: 1/40 lanes in 12.5 s"

    def test_check(self) -> None:
        assert default_title(check_document()) == "check model.onnx: 7 results in 1.2 s"


class TestUntrustedText:
    def test_markup_in_names_is_text(self) -> None:
        odd = lane("y[/x]", status="fail", message="[bold red]boom[/] y[/x]", runtime="[link=http://x]rt[/link]")
        xfail = lane("z", status="xfail", message="m", expected=Expected("[/]reason[/x]"))
        text = render(build_document([odd, xfail]), width=200)
        assert "FAIL y[/x]/onnx-native/[link=http://x]rt[/link]\n    [bold red]boom[/] y[/x]" in text
        assert "│ [link=http://x]rt[/link] │" in text
        assert "[/]reason[/x]" in text

    def test_escape_sequences_are_shown_not_sent(self) -> None:
        reset, title = "\x1bc", "\x1b]0;pwned\x07"
        odd = lane(f"a{reset}b", status="error", message=f"m{title}\r\nline two\x9b31m", runtime=f"rt{title}")
        text = render(build_document([odd]), width=200)
        assert not TERMINAL_CONTROL.search(text)
        assert "ERROR a\\x1bcb/onnx-native/rt\\x1b]0;pwned\\x07" in text
        assert "    m\\x1b]0;pwned\\x07\n    line two\\x9b31m" in text

    def test_long_fields_are_cut(self) -> None:
        odd = lane("c" * 10_000, status="fail", message="m" * 10_000)
        text = render(build_document([odd]), width=200)
        assert f"… ({len(odd.id) - ID:,} more characters)" in text
        assert f"… ({10_000 - MESSAGE:,} more characters)" in text

    def test_a_huge_name_renders_fast(self) -> None:
        huge = "n" * 100_000
        odd = lane(huge, status="fail", message=huge, runtime=huge, expected=Expected(huge))
        skipped = lane(huge + "s", status="skip", message=huge, runtime=huge)
        document = build_document([odd, skipped, dataclasses.replace(odd, id="x", status="xfail")])
        started = time.perf_counter()
        text = render(document, width=120)
        assert time.perf_counter() - started < 1.0
        assert len(text) < 50_000

    @settings(max_examples=60, deadline=None)
    @given(st.lists(NAMES, min_size=3, max_size=3))
    def test_no_name_injects_markup_or_control_characters(self, names: list[str]) -> None:
        case, runtime, message = names
        failing = lane(case, status="fail", message=message, runtime=runtime)
        xfail = lane(case + "x", status="xfail", message=message, runtime=runtime, expected=Expected(message))
        skipped = lane(case + "s", status="skip", message=message, runtime=runtime)
        text = render(build_document([failing, xfail, skipped]), width=1000)
        assert not TERMINAL_CONTROL.search(text)
        assert f"FAIL {safe(failing.id, ID)}\n" in text  # verbatim: nothing read as markup or emoji
        assert f"│ {safe(runtime)} " in text


class TestDeploymentCost:
    def test_perplexity_and_agreement_per_transform_and_runtime(self) -> None:
        def transformed(case: str, exporter: str, increase: float, agreement: float) -> Result:
            lm = {"perplexity_increase": increase, "next_token_agreement": agreement}
            return lane_result(suite="lm", case=case, exporter=exporter, runtime="ort-cpu", status="pass",
                               message="ok", detail={"lm": lm})  # fmt: skip

        results = [
            transformed("a", "torch-script+int8-dynamic", 0.001, 0.99),
            transformed("b", "torch-script+int8-dynamic", 0.03, 0.71),
            transformed("c", "onnx-native+int8-dynamic", 0.002, 0.95),
            transformed("a", "torch-script+fp16", 0.00002, 1.0),
            lane("plain"),  # untransformed lanes have no row
        ]
        text = render(ResultDocument.of(results, run={}, environment={}), width=160)
        assert "Deployment cost on the language models (against the float64 reference)" in text
        rows = [line for line in text.splitlines() if "ort-cpu" in line and ("int8" in line or "fp16" in line)]
        assert re.sub(r"[│ ]+", " ", rows[0]).strip() == "fp16 ort-cpu 1 +0.002% +0.002% 1.000"
        assert re.sub(r"[│ ]+", " ", rows[1]).strip() == "int8-dynamic ort-cpu 3 +0.2% +3% 0.710"

    def test_absent_without_transformed_language_models(self, document: ResultDocument) -> None:
        assert "Deployment cost" not in render(document)
