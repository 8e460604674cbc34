"""Planning a run: ids matched by glob, cases loaded and selected, lanes planned with their cases."""

from __future__ import annotations

import pytest

from conformance.cases import Case, load_suite
from conformance.lane import NO_EXPORT
from conformance.planning import load_cases, match_ids, plan
from exporters.errors import BadInputError

KNOWN = ["reference", "ort-cpu", "ort-cpu-noopt", "ort-cuda", "torch-cpu"]


class TestMatchIds:
    def test_no_pattern_selects_everything(self) -> None:
        assert match_ids(None, KNOWN, "runtime") == set(KNOWN)
        assert match_ids([], KNOWN, "runtime") == set(KNOWN)

    def test_globs_and_exact_ids(self) -> None:
        assert match_ids(["ort-cpu*", "reference"], KNOWN, "runtime") == {"ort-cpu", "ort-cpu-noopt", "reference"}

    def test_an_unknown_id_suggests_the_closest(self) -> None:
        with pytest.raises(BadInputError) as info:
            match_ids(["ort-cpuu"], KNOWN, "runtime")
        assert str(info.value) == f"unknown runtime 'ort-cpuu' (did you mean 'ort-cpu'?); available: {', '.join(KNOWN)}"

    def test_a_glob_matching_nothing(self) -> None:
        with pytest.raises(BadInputError, match=r"^unknown runtime 'tensorrt\*'; available: reference, ort-cpu, "):
            match_ids(["ort-cpu", "tensorrt*"], KNOWN, "runtime")

    def test_hidden_ids_are_selectable_but_not_listed(self) -> None:
        known = ["onnx-native", "mutant-gate-order"]
        assert match_ids(["mutant-*"], known, "exporter", hidden={"mutant-gate-order"}) == {"mutant-gate-order"}
        with pytest.raises(BadInputError) as info:
            match_ids(["nope"], known, "exporter", hidden={"mutant-gate-order"})
        assert str(info.value) == "unknown exporter 'nope'; available: onnx-native"


class TestLoadCases:
    def test_pairs_of_suite_and_selected_case(self) -> None:
        pairs = load_cases(["smoke"], "peepholes")
        assert [(suite, case.id) for suite, case in pairs] == [("smoke", "peepholes")]
        assert isinstance(pairs[0][1], Case)

    def test_no_expression_loads_every_case_of_every_suite(self) -> None:
        pairs = load_cases(["smoke", "smoke"], None)
        count = len(load_suite("smoke").cases)
        assert len(pairs) == 2 * count and {suite for suite, _ in pairs} == {"smoke"}

    def test_a_selection_matching_nothing_is_bad_input(self) -> None:
        with pytest.raises(BadInputError) as info:
            load_cases(["smoke"], "no-such-case")
        assert str(info.value) == "no case in suite(s) smoke matches -k 'no-such-case'"


class TestPlan:
    def cases(self) -> list[tuple[str, Case]]:
        return [("smoke", case) for case in load_suite("smoke").cases if case.id in ("forward", "peepholes")]

    def test_lanes_in_case_runtime_exporter_order(self) -> None:
        lanes = plan(self.cases(), {"reference", "ort-cpu"}, {"onnx-native", "torch-script", NO_EXPORT})
        assert [lane.id for lane in lanes] == [
            "forward/none/reference",
            "forward/onnx-native/ort-cpu",
            "forward/torch-script/ort-cpu",
            "peepholes/none/reference",
            "peepholes/onnx-native/ort-cpu",
        ]
        assert {lane.suite for lane in lanes} == {"smoke"}

    def test_each_lane_carries_its_case(self) -> None:
        """A worker gets the case with the lane: nothing downstream loads the suite again."""
        pairs = self.cases()
        lanes = plan(pairs, {"reference", "ort-cpu"})
        assert lanes
        by_id = {case.id: case for _, case in pairs}
        for lane in lanes:
            assert lane.case is by_id[lane.case_id]

    def test_runtimes_get_the_artifacts_they_consume(self) -> None:
        lanes = plan(self.cases(), {"torch-cpu", "onnx-reference"})
        assert [lane.id for lane in lanes] == [
            "forward/torch-module/torch-cpu",
            "forward/onnx-native/onnx-reference",
            "forward/torch-script/onnx-reference",
            "forward/torch-dynamo/onnx-reference",
            "peepholes/onnx-native/onnx-reference",
        ]

    def test_exporter_none_selects_the_reference_lanes(self) -> None:
        lanes = plan(self.cases(), None, {NO_EXPORT})
        assert [lane.id for lane in lanes] == ["forward/none/reference", "peepholes/none/reference"]

    def test_an_exporter_filter_leaves_out_the_reference_lanes(self) -> None:
        lanes = plan(self.cases(), None, {"torch-script"})
        assert lanes
        assert all(lane.exporter == "torch-script" for lane in lanes)

    def test_a_case_without_exporters_plans_no_mutant(self) -> None:
        from conformance.cases import loads_suite

        text = 'suite = "s"\n[[case]]\nid = "c"\nmodel = { input_size = 3, hidden_size = 4 }\n'
        case = loads_suite(text + "inputs = { seq_len = 3, batch = 2 }\n", display="s.toml").cases[0]
        assert case.exporters == ("torch-module", "onnx-native", "torch-script", "torch-dynamo")
        assert not [lane for lane in plan([("s.toml", case)], {"ort-cpu"}) if lane.exporter.startswith("mutant-")]
