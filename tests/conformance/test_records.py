"""The one result record: builders, round trips, version-1 files, and one exact line for each kind of bad data."""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import numpy as np
import pytest

from conformance.compare import compare_output
from conformance.diffs import OutputDiff, Tolerance
from conformance.files import load_document, write_document
from conformance.records import (
    MAX_DEPTH,
    SCHEMA_VERSION,
    Expected,
    Result,
    ResultDocument,
    lane_result,
    model_result,
    node_result,
    shape_label,
    weights_result,
)
from exporters.errors import BadInputError

KNOWN_STATUSES = "pass, fail, xfail, xpass, error, timeout, skip, not-exercised"
LATENCY = {"median_ms": 1.5, "samples_ms": [1.4, 1.5, 1.6], "includes": "session.run"}


def diff(name: str, error: float = 0.25) -> OutputDiff:
    """A real comparison of a 2x3 output, failing when ``error`` exceeds the tolerance (0.5)."""
    expected = np.arange(6.0).reshape(2, 3)
    actual = expected.copy()
    actual[1, 2] += error
    return compare_output(name, actual, expected, Tolerance(0.5, 0.0))


def full_lane() -> Result:
    """A lane with every field set."""
    return lane_result(
        suite="smoke",
        case="clip[forward]",
        exporter="onnx-native",
        runtime="ort-cpu",
        status="xfail",
        message="Tensor-likes are not close!",
        features=("clip", "T=6"),
        shape={"T": 6, "B": 2},
        settings={"provider": "CPUExecutionProvider", "versions": {"onnxruntime": "1.0"}},
        artifact={"status": "ok", "cached": True, "op_histogram": {"LSTM": 1}},
        expected=Expected("clip is applied after the bias", "fail", "https://example.invalid/1", "Y"),
        outputs=(diff("Y", 0.75), diff("Y_h")),
        placement={"lstm (LSTM)": "CPUExecutionProvider"},
        latency=LATENCY,
        duration_s=0.0123,
        detail={"traceback": "..."},
    )


def lane(**changes: Any) -> dict[str, Any]:
    """A valid record as JSON data, with ``changes`` applied (``None`` deletes a key)."""
    data = lane_result(suite="s", case="c", exporter="e", runtime="r", status="pass", message="ok").to_dict()
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def refused(data: Any, where: str = "result") -> str:
    """The BadInputError ``Result.from_dict`` raises: one line, returned for the caller to pin."""
    with pytest.raises(BadInputError) as info:
        Result.from_dict(data, where=where)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    return message


class TestBuilders:
    def test_one_id_per_kind(self) -> None:
        assert lane_result(suite="s", case="c", exporter="e", runtime="r", status="pass", message="").id == "c/e/r"
        assert model_result("m.onnx", "ort-cpu", "pass", "", label="T=7,B=3").id == "m.onnx[T=7,B=3]/user/ort-cpu"
        assert model_result("m.onnx", "ort-cpu", "skip", "").id == "m.onnx/user/ort-cpu"
        node = node_result("m.onnx", "/lstm/LSTM", "ort-cpu", "pass", "", label="T=1,B=1")
        assert (node.id, node.kind, node.node) == ("m.onnx[T=1,B=1]/lstm/LSTM/ort-cpu", "node", "/lstm/LSTM")
        weights = weights_result("m.onnx", "fail", "differs")
        assert (weights.id, weights.kind, weights.runtime) == ("m.onnx/user/weights", "weights", "weights")

    def test_against_torch_results_name_their_exporter(self) -> None:
        result = model_result("m.onnx", "ort-cpu", "pass", "", exporter="torch", label="T=1,B=1")
        assert result.id == "m.onnx[T=1,B=1]/torch/ort-cpu" and result.kind == "model"

    def test_shape_label(self) -> None:
        assert shape_label({"T": 7, "B": 3}) == "T=7,B=3"

    def test_an_unknown_status_or_kind_is_refused_at_construction(self) -> None:
        with pytest.raises(ValueError, match=r"^result 'c/e/r': unknown status 'passed'$"):
            lane_result(suite="s", case="c", exporter="e", runtime="r", status="passed", message="")
        with pytest.raises(ValueError, match=r"^result 'x': unknown kind 'lanes'$"):
            Result("x", "lanes", "s", "c", "e", "r", "pass", "")

    def test_records_are_frozen(self) -> None:
        result = full_lane()
        with pytest.raises(AttributeError):
            result.status = "pass"  # type: ignore[misc]
        changed = result.with_status("fail", "now failing")
        assert (changed.status, changed.message, result.status) == ("fail", "now failing", "xfail")

    def test_output_by_name(self) -> None:
        result = full_lane()
        assert result.output("Y_h") == diff("Y_h")
        assert result.output("Y_c") is None


class TestRoundTrip:
    @pytest.mark.parametrize(
        "result",
        [
            full_lane(),
            lane_result(suite="s", case="c", exporter="e", runtime="r", status="skip", message="no GPU"),
            model_result(
                "m.onnx",
                "ort-cpu",
                "fail",
                "at T=7,B=3:",
                label="T=7,B=3",
                shape={"T": 7, "B": 3},
                outputs=(diff("y", 2),),
            ),
            node_result("m.onnx", "/lstm/LSTM", "ort-cpu", "not-exercised", "the If took the other branch"),
            weights_result("m.onnx", "fail", "layer 0 W: gate blocks are in IFGO"),
        ],
        ids=["lane", "skip", "model", "node", "weights"],
    )
    def test_from_dict_inverts_to_dict(self, result: Result) -> None:
        assert Result.from_dict(result.to_dict()) == result
        assert Result.from_dict(json.loads(json.dumps(result.to_dict(), allow_nan=False))) == result

    def test_a_check_result_without_features_stays_without(self) -> None:
        """Only a version-1 record reads its features from its id; a check result has none."""
        result = model_result("model.onnx", "ort-cpu", "pass", "", label="T=1,B=1")
        assert result.features == ()
        assert result.to_dict()["features"] == []
        assert Result.from_dict(result.to_dict()).features == ()

    def test_empty_optional_fields_are_left_out(self) -> None:
        data = lane_result(suite="s", case="c", exporter="e", runtime="r", status="pass", message="").to_dict()
        assert data == {"id": "c/e/r", "kind": "lane", "suite": "s", "case": "c", "exporter": "e", "runtime": "r",
                        "status": "pass", "message": "", "features": []}  # fmt: skip

    def test_non_finite_numbers_travel_as_strings(self) -> None:
        nan = compare_output("Y", np.array([np.nan, np.inf]), np.array([1.0, 2.0]), Tolerance(0.5, 0.0))
        result = lane_result(suite="s", case="c", exporter="e", runtime="r", status="fail", message="",
                             outputs=(nan,))  # fmt: skip
        text = json.dumps(result.to_dict(), allow_nan=False)  # strict JSON: no NaN or Infinity literals
        assert json.loads(text)["outputs"]["Y"]["headroom"] == "inf"
        back = Result.from_dict(json.loads(text))
        assert back.outputs[0].headroom == math.inf and back.to_dict() == result.to_dict()

    def test_a_document_round_trips_through_a_file(self, tmp_path: Any) -> None:
        results = [full_lane(), weights_result("m.onnx", "pass", "same"), model_result("m.onnx", "ort-cpu", "skip", "")]
        document = ResultDocument.of(results, run={"command": "run", "lanes": 3}, environment={"cpu": "x"})
        assert [r.id for r in document.results] == sorted(r.id for r in results)
        assert document.summary == {"pass": 1, "skip": 1, "xfail": 1}
        write_document(tmp_path / "results.json", document)
        data = json.loads((tmp_path / "results.json").read_text())
        assert data["schema_version"] == SCHEMA_VERSION == 2
        assert data["summary"] == {"pass": 1, "skip": 1, "xfail": 1}
        back = load_document(tmp_path / "results.json")
        assert [r.to_dict() for r in back.results] == [r.to_dict() for r in document.results]
        assert (back.run, back.environment, back.schema_version) == (document.run, document.environment, 2)


class TestVersionOne:
    """Files written before the record model: lane records without kind and features."""

    V1_RECORD: ClassVar[dict[str, Any]] = {
        "id": "activation-elu[2]/onnx-native/ort-cpu",
        "suite": "full",
        "case": "activation-elu[2]",
        "exporter": "onnx-native",
        "runtime": "ort-cpu",
        "status": "error",
        "message": "harness error: KeyError: 'x'",
        "traceback": "Traceback (most recent call last): ...",
        "expected": {"reason": "ORT ignores alpha", "reference": None, "status": "error"},
        "outputs": {"Y": diff("Y").to_dict()},
        "settings": {"provider": "CPUExecutionProvider"},
        "duration_s": 1,
    }

    def test_a_version_1_record_is_a_lane_with_features_from_its_id(self) -> None:
        result = Result.from_dict(self.V1_RECORD)
        assert (result.kind, result.features) == ("lane", ("activation",))
        assert result.expected == Expected("ORT ignores alpha", "error", None, "*")
        assert result.detail == {"traceback": "Traceback (most recent call last): ..."}
        assert result.outputs == (diff("Y"),)
        assert result.duration_s == 1.0 and isinstance(result.duration_s, float)

    def test_a_version_1_document_loads(self) -> None:
        data = {"schema_version": 1, "run": {"suites": ["full"]}, "environment": {}, "results": [self.V1_RECORD]}
        document = ResultDocument.from_dict(data, source="old.json")
        assert document.schema_version == 1
        assert [r.id for r in document.results] == ["activation-elu[2]/onnx-native/ort-cpu"]
        assert document.to_dict()["schema_version"] == 2  # written again, it is a version-2 file

    @pytest.mark.parametrize(
        ("case", "feature"), [("activation-elu", "activation"), ("shapes-1l[9-1]", "shapes"), ("lm", "lm")]
    )
    def test_the_feature_is_the_case_ids_first_word(self, case: str, feature: str) -> None:
        data = {"id": f"{case}/e/r", "case": case, "status": "pass"}
        assert Result.from_dict(data).features == (feature,)


class TestBadRecords:
    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ([], "result: expected an object, got list"),
            ("pass", "result: expected an object, got str"),
            ({"status": "pass"}, "result: 'id' must be a string, got nothing"),
            ({"id": 7, "status": "pass"}, "result: 'id' must be a string, got int"),
            ({"id": "c/e/r"}, "result: 'status' must be a string, got nothing"),
            ({"id": "c/e/r", "status": True}, "result: 'status' must be a string, got bool"),
        ],
    )
    def test_id_and_status_first(self, data: Any, message: str) -> None:
        assert refused(data) == message

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"status": "passed"}, f"unknown status 'passed' (known: {KNOWN_STATUSES})"),
            ({"status": "pa\nss"}, f"unknown status 'pa\\nss' (known: {KNOWN_STATUSES})"),
            ({"kind": "lanes"}, "unknown kind 'lanes' (known: lane, model, node, weights)"),
            ({"message": 3}, "'message' must be str, got int"),
            ({"suite": ["smoke"]}, "'suite' must be str, got list"),
            ({"features": "clip"}, "'features' must be list, got str"),
            ({"shape": [7, 3]}, "'shape' must be Mapping, got list"),
            ({"shape": {"T": "7"}}, "'shape' must map names to integers"),
            ({"shape": {"T": True}}, "'shape' must map names to integers"),
            ({"node": 1}, "'node' must be str, got int"),
            ({"settings": "cpu"}, "'settings' must be Mapping, got str"),
            ({"latency": 1.5}, "'latency' must be Mapping, got float"),
            ({"duration_s": "1s"}, "'duration_s' must be a number, got str"),
            ({"duration_s": True}, "'duration_s' must be a number, got bool"),
            ({"duration_s": math.inf}, "'duration_s' must be finite, got inf"),
            ({"expected": "fail"}, "'expected' must be Mapping, got str"),
            ({"expected": {"status": "fail"}}, "'expected.reason' must be a string, got nothing"),
            ({"outputs": ["Y"]}, "'outputs' must be Mapping, got list"),
        ],
    )
    def test_wrong_types_are_named(self, changes: dict[str, Any], message: str) -> None:
        assert refused(lane(**changes), where="results.jsonl:3") == f"results.jsonl:3 'c/e/r': {message}"

    def test_an_output_that_is_not_a_comparison_record(self) -> None:
        message = refused(lane(outputs={"Y": {"headroom": 0.5}}))
        assert message.startswith("result 'c/e/r': 'outputs' is not a comparison record (OutputDiff record: missing ")

    @pytest.mark.parametrize("key", ["settings", "detail", "artifact", "latency", "placement"])
    def test_nesting_deeper_than_the_limit(self, key: str) -> None:
        deep: Any = "bottom"
        for _ in range(MAX_DEPTH):
            deep = {"x": deep}
        assert Result.from_dict(lane(**{key: deep})).to_dict()[key] == deep  # at the limit: fine
        assert refused(lane(**{key: {"x": deep}})) == f"result 'c/e/r': {key!r} is nested more than 64 levels deep"
        assert refused(lane(**{key: {"x": [[[deep]]]}})) == (
            f"result 'c/e/r': {key!r} is nested more than 64 levels deep"
        )


class TestBadDocuments:
    def refused(self, data: Any) -> str:
        with pytest.raises(BadInputError) as info:
            ResultDocument.from_dict(data, source="r.json")
        message = str(info.value)
        assert "\n" not in message
        return message

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ([], "r.json: not a conformance result file (schema_version None, expected 1 or 2)"),
            ({"results": []}, "r.json: not a conformance result file (schema_version None, expected 1 or 2)"),
            ({"schema_version": 3, "results": []}, "r.json: not a conformance result file (schema_version 3, "
                                                   "expected 1 or 2)"),
            ({"schema_version": True, "results": []}, "r.json: not a conformance result file (schema_version True, "
                                                      "expected 1 or 2)"),
            ({"schema_version": "2", "results": []}, "r.json: not a conformance result file (schema_version '2', "
                                                     "expected 1 or 2)"),
            ({"schema_version": 2}, "r.json: 'results' must be a list, got nothing"),
            ({"schema_version": 2, "results": {}}, "r.json: 'results' must be a list, got dict"),
            ({"schema_version": 2, "results": [], "run": []}, "r.json: 'run' must be an object, got list"),
            ({"schema_version": 2, "results": [], "environment": "x"}, "r.json: 'environment' must be an object, "
                                                                       "got str"),
        ],
    )  # fmt: skip
    def test_structure(self, data: Any, message: str) -> None:
        assert self.refused(data) == message

    def test_a_bad_record_is_named_by_its_index(self) -> None:
        data = {"schema_version": 2, "results": [lane(), {"id": "x", "status": "passed"}]}
        assert self.refused(data) == f"r.json: results[1] 'x': unknown status 'passed' (known: {KNOWN_STATUSES})"

    def test_a_lane_twice(self) -> None:
        data = {"schema_version": 2, "results": [lane(), lane(message="again")]}
        assert self.refused(data) == "r.json: result 'c/e/r' appears twice"

    def test_a_file_nested_too_deeply_for_json(self, tmp_path: Any) -> None:
        path = tmp_path / "deep.json"
        path.write_text("[" * 100_000 + "]" * 100_000)
        with pytest.raises(BadInputError) as info:
            load_document(path)
        assert str(info.value) == f"{path}: not a conformance result file (nested too deeply)"
