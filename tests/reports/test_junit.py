"""JUnit XML, read back by junitparser (the parser CI test-report tools build on) and by expat."""

from __future__ import annotations

import dataclasses
import re
import xml.dom.minidom
import xml.etree.ElementTree as ET

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from conformance.records import Result, ResultDocument
from reports.junit import render_junit, xml_safe
from reports.labels import suite_name
from tests.reports.conftest import FAIL_LANE, build_document, check_document, record


def parse(document: ResultDocument) -> dict[str, TestSuite]:
    xml = JUnitXml.fromstring(render_junit(document))
    return {suite.name: suite for suite in xml}


def case(suite: TestSuite, classname: str, name: str) -> TestCase:
    return next(c for c in suite if c.classname == classname and c.name == name)


class TestStructure:
    def test_one_testsuite_per_suite_with_counts(self, document: ResultDocument) -> None:
        suites = parse(document)
        assert sorted(suites) == ["full", "smoke"]
        full, smoke = suites["full"], suites["smoke"]
        # full: 2 fail + 1 xpass are failures, 1 error + 1 timeout are errors.
        assert (full.tests, full.failures, full.errors, full.skipped) == (19, 3, 2, 3)
        assert (smoke.tests, smoke.failures, smoke.errors, smoke.skipped) == (4, 0, 0, 1)
        assert len(list(full)) == 19 and len(list(smoke)) == 4

    def test_totals_on_the_root(self, document: ResultDocument) -> None:
        root = ET.fromstring(render_junit(document))
        assert root.tag == "testsuites"
        assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
            "tests": "23",
            "failures": "3",
            "errors": "2",
            "skipped": "4",
        }

    def test_testcase_names_and_time(self, document: ResultDocument, sample_results: tuple[Result, ...]) -> None:
        full = parse(document)["full"]
        lane = case(full, "full.clip[forward]", "onnx-native/ort-cpu")
        assert lane.time == pytest.approx(record(sample_results, FAIL_LANE).duration_s)
        timeout = case(full, "full.long-sequence", "torch-dynamo/ort-cpu-noopt")
        assert timeout.time == 0  # the runner records no duration for a killed lane

    def test_environment_properties(self, document: ResultDocument) -> None:
        suite = ET.fromstring(render_junit(document)).find("testsuite")
        assert suite is not None and suite.get("name") == "full"
        properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
        versions = document.environment["versions"]
        assert properties["version.onnxruntime"] == versions["onnxruntime"]
        assert properties["version.torch"] == versions["torch"]
        assert properties["python"] == document.environment["python"]
        assert properties["schema_version"] == "2"
        assert properties["gpus"] == "none"
        assert properties["suites"] == "full, smoke"

    def test_an_empty_document_is_valid(self) -> None:
        root = ET.fromstring(render_junit(build_document([])))
        assert root.get("tests") == "0" and list(root) == []

    def test_matches_the_junit_schema_shape(self, document: ResultDocument) -> None:
        """The constraints of the Jenkins junit-10.xsd that readers rely on (no XSD ships in a PyPI package here)."""
        root = ET.fromstring(render_junit(document))
        number = re.compile(r"^\d+(\.\d+)?$")
        for suite in root:
            assert suite.tag == "testsuite"
            assert suite.get("name")
            for key in ("tests", "failures", "errors", "skipped", "time"):
                assert number.match(suite.get(key, "")), (key, suite.get(key))
            assert {child.tag for child in suite} <= {"properties", "testcase", "system-out", "system-err"}
            for testcase in suite.iter("testcase"):
                assert testcase.get("name") and testcase.get("classname")
                assert number.match(testcase.get("time", ""))
                tags = [child.tag for child in testcase]
                assert set(tags) <= {"skipped", "error", "failure", "system-out", "system-err"}
                assert sum(tags.count(t) for t in ("skipped", "error", "failure")) <= 1


class TestStatuses:
    def test_fail_is_a_failure_with_the_formatted_message(
        self, document: ResultDocument, sample_results: tuple[Result, ...]
    ) -> None:
        lane = case(parse(document)["full"], "full.clip[forward]", "onnx-native/ort-cpu")
        assert lane.is_failure
        [result] = lane.result
        assert isinstance(result, Failure)
        message = record(sample_results, FAIL_LANE).message
        assert result.message == "Tensor-likes are not close!"  # the first line
        assert result.text == message
        assert "Greatest absolute difference: 0.05965509623809351 at index (4, 0, 6)" in result.text
        assert result.type == "fail"

    def test_xpass_is_a_failure(self, document: ResultDocument) -> None:
        lane = case(parse(document)["full"], "full.clip-loose", "onnx-native/ort-cpu")
        [result] = lane.result
        assert isinstance(result, Failure) and result.type == "xpass"
        assert result.message.startswith("expected to fail (")

    @pytest.mark.parametrize(
        ("classname", "name", "kind", "start"),
        [
            ("full.layout-1[forward-true]", "onnx-native/ort-cpu-noopt", "error", "ort-cpu-noopt could not load"),
            ("full.long-sequence", "torch-dynamo/ort-cpu-noopt", "timeout", "lane did not finish within 300 s"),
        ],
    )
    def test_error_and_timeout_are_errors(
        self, document: ResultDocument, classname: str, name: str, kind: str, start: str
    ) -> None:
        lane = case(parse(document)["full"], classname, name)
        [result] = lane.result
        assert isinstance(result, Error) and lane.is_error
        assert result.type == kind and result.message.startswith(start) and result.text.startswith(start)

    def test_skip_is_skipped_with_its_reason(self, document: ResultDocument) -> None:
        lane = case(parse(document)["full"], "full.clip[forward]", "onnx-native/ort-cuda")
        [result] = lane.result
        assert isinstance(result, Skipped) and lane.is_skipped
        assert result.message.startswith("onnxruntime 1.32.0 has no CUDAExecutionProvider")

    def test_xfail_passes_and_notes_the_divergence(self, document: ResultDocument) -> None:
        lane = case(parse(document)["smoke"], "smoke.sequence-lens-mixed", "onnx-native/onnx-reference")
        assert lane.is_passed and not lane.result
        assert "expected divergence (fail): onnx.reference's LSTM ignores sequence_lens" in lane.system_out
        assert "reference: reference/SEMANTICS.md, row 'Padding past sequence_lens[b]'" in lane.system_out
        assert "Mismatched elements: 80 / 336 (23.8%)" in lane.system_out

    def test_pass_has_its_message_and_latency(self, document: ResultDocument) -> None:
        lane = case(parse(document)["full"], "full.stack[forward-1]", "onnx-native/ort-cpu")
        assert lane.is_passed
        assert "worst headroom" in lane.system_out
        assert re.search(r"latency: median [\d.]+ ms, p90 [\d.]+ ms", lane.system_out)

    def test_counts_are_singular_or_plural(self) -> None:
        from tests.reports.conftest import lane_with_latency

        once = lane_with_latency("one")
        once = dataclasses.replace(once, latency={**(once.latency or {}), "count": 1})
        document = build_document([once], lanes=1, completed=0, interrupted=True)
        [testcase] = list(parse(document)["full"])
        assert testcase.system_out.endswith(" over 1 run")
        properties = {p.get("name"): p.get("value") for p in ET.fromstring(render_junit(document)).iter("property")}
        assert properties["interrupted"] == "0 of 1 planned lane finished"

    def test_not_exercised_is_skipped(self) -> None:
        lane = case(parse(check_document())["check: model.onnx"], "check.model.onnx[T=7,B=3]", "/lstm_1/LSTM/openvino")
        [result] = lane.result
        assert isinstance(result, Skipped) and result.message == "the If took its else branch"


class TestCheckDocument:
    def test_the_suite_is_named_by_the_model(self) -> None:
        suites = parse(check_document("models/speech.onnx"))
        assert list(suites) == ["check: models/speech.onnx"]
        suite = suites["check: models/speech.onnx"]
        assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (7, 2, 0, 1)

    def test_against_torch_names_the_module(self) -> None:
        document = check_document()
        document = ResultDocument.of(document.results, run={**document.run, "against_torch": "lm:Net"}, environment={})
        assert list(parse(document)) == ["check: model.onnx against lm:Net"]

    def test_a_file_without_command_is_still_a_check(self) -> None:
        document = ResultDocument.of(check_document().results, run={}, environment={})
        assert list(parse(document)) == ["check: model.onnx"]  # not a suite called "check"

    def test_nodes_and_the_whole_model_are_told_apart(self) -> None:
        suite = parse(check_document())["check: model.onnx"]
        names = sorted((c.classname, c.name) for c in suite)
        assert names == [
            ("check.model.onnx", "trained weights"),
            ("check.model.onnx[T=7,B=3]", "/lstm/LSTM/openvino"),
            ("check.model.onnx[T=7,B=3]", "/lstm/LSTM/ort-cpu"),
            ("check.model.onnx[T=7,B=3]", "/lstm_1/LSTM/openvino"),
            ("check.model.onnx[T=7,B=3]", "/lstm_1/LSTM/ort-cpu"),
            ("check.model.onnx[T=7,B=3]", "whole model/openvino"),
            ("check.model.onnx[T=7,B=3]", "whole model/ort-cpu"),
        ]
        properties = {
            p.get("name"): p.get("value") for p in ET.fromstring(render_junit(check_document())).iter("property")
        }
        assert properties["command"] == "check" and properties["model"] == "model.onnx"


class TestEscaping:
    def test_control_characters_and_markup_survive(self, sample_results: tuple[Result, ...]) -> None:
        nasty = "\x1b[31mred\x1b[0m <b>&amp;</b> \x00 nul \ufffe \"quoted\" 'single'\nsecond line\tend"
        lane = dataclasses.replace(record(sample_results, FAIL_LANE), message=nasty, case='odd"<case>&')
        text = render_junit(build_document([lane]))
        xml.dom.minidom.parseString(text.encode("utf-8"))  # expat: well-formed
        [parsed] = list(next(iter(JUnitXml.fromstring(text))))
        [result] = parsed.result
        assert (
            result.text == "\\x1b[31mred\\x1b[0m <b>&amp;</b> \\x00 nul \\ufffe \"quoted\" 'single'\nsecond line\tend"
        )
        assert result.message == "\\x1b[31mred\\x1b[0m <b>&amp;</b> \\x00 nul \\ufffe \"quoted\" 'single'"
        assert parsed.classname == 'full.odd"<case>&'

    def test_xml_safe(self) -> None:
        assert xml_safe("a\x07b\x0bc\td\ne\rf\r\n") == "a\\x07b\\x0bc\td\ne\\rf\n"
        assert xml_safe("ok \u00e9 \U0001f600") == "ok \u00e9 \U0001f600"
        assert xml_safe("\ud800 \x85 \u202e") == "\\ud800 \\x85 \\u202e"

    def test_a_huge_name_is_cut_and_the_file_stays_small(self, sample_results: tuple[Result, ...]) -> None:
        name = "n" * 100_000
        lane = dataclasses.replace(record(sample_results, FAIL_LANE), case=name, id=f"{name}/onnx-native/ort-cpu")
        text = render_junit(build_document([lane]))
        [parsed] = list(next(iter(JUnitXml.fromstring(text))))
        assert parsed.classname.endswith(f"… ({len('full.') + len(name) - 400:,} more characters)")
        assert len(text) < 20_000

    def test_suite_files_are_named_by_their_stem(self) -> None:
        assert suite_name("smoke") == "smoke"
        assert suite_name("cases/mine.toml") == "mine"
        assert suite_name("C:\\suites\\speech.toml") == "speech"
