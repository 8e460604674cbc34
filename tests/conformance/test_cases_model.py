"""The case data model (conformance/cases/model.py): expectations, features, export options, hashing."""

from __future__ import annotations

import pickle
from pathlib import Path

from conformance.cases import Case, Expectation, ExportSpec, InputSpec, OutputTolerances, Tolerance, WeightsSpec
from exporters.base import ExportOptions
from reference.config import LMConfig, LSTMConfig
from tests.conformance.case_files import load


def _case(**kwargs: object) -> Case:
    values: dict[str, object] = {
        "id": "c",
        "suite": "s",
        "model": LSTMConfig(4, 5),
        "weights": WeightsSpec(),
        "inputs": InputSpec(7, 3),
        "export": ExportSpec(),
        "exporters": ("onnx-native",),
        "runtimes": ("ort-cpu",),
    }
    values.update(kwargs)
    return Case(**values)  # type: ignore[arg-type]


class TestExpectations:
    def test_globs(self) -> None:
        e = Expectation(reason="r", runtime="ort-*", exporter="torch-*")
        assert e.matches("torch-script", "ort-cuda")
        assert e.matches("torch-dynamo", "ort-cpu-noopt")
        assert not e.matches("onnx-native", "ort-cpu")
        assert not e.matches("torch-script", "onnx-reference")

    def test_output_glob(self) -> None:
        e = Expectation(reason="r", output="Y_[hc]")
        assert e.matches("onnx-native", "ort-cpu")
        assert e.matches("onnx-native", "ort-cpu", "Y_h")
        assert not e.matches("onnx-native", "ort-cpu", "Y")
        assert e.covers(["Y_h", "Y_c"])
        assert not e.covers(["Y", "Y_c"])
        assert Expectation(reason="r").covers(["Y", "Y_h"])

    def test_first_match_wins(self) -> None:
        first = Expectation(reason="first", runtime="onnx-reference")
        second = Expectation(reason="second")
        case = _case(runtimes=("ort-cpu", "onnx-reference"), expect=(first, second))
        assert case.expectation("onnx-native", "onnx-reference") is first
        assert case.expectation("onnx-native", "ort-cpu") is second
        assert Case.expectation(case, "x", "y") is second


class TestTolerances:
    def test_output_tolerance_overrides_the_case(self) -> None:
        case = _case(tolerance=Tolerance(1e-5, 0.0), output_tolerances=OutputTolerances({"Y_c": Tolerance(1e-4, 1e-3)}))
        assert case.tolerance_for("Y_c") == Tolerance(1e-4, 1e-3)
        assert case.tolerance_for("Y") == Tolerance(1e-5, 0.0)
        assert _case().tolerance_for("Y") is None  # the dtype default applies

    def test_equal_cases_hash_alike_and_pickle(self, tmp_path: Path) -> None:
        """Two loads of one file are two objects: equal, with one hash (cases key dicts and cross processes)."""
        body = """
            [[case]]
            id = "a"
            tolerance = { atol = 1e-5, rtol = 0 }
            tolerance_outputs = { Y_c = { atol = 1e-4, rtol = 1e-3 } }
            """
        (first,) = load(tmp_path, body).cases
        (second,) = load(tmp_path, body).cases
        assert first is not second and first.output_tolerances is not second.output_tolerances
        assert first == second
        assert hash(first) == hash(second)
        assert len({first, second}) == 1
        assert pickle.loads(pickle.dumps(first)) == first

    def test_output_tolerances_is_a_read_only_mapping(self) -> None:
        items = {"Y": Tolerance(1e-4, 0.0)}
        tolerances = OutputTolerances(items)
        items["Y_h"] = Tolerance(1.0, 1.0)  # a copy was taken
        assert dict(tolerances) == {"Y": Tolerance(1e-4, 0.0)}
        assert hash(tolerances) == hash(OutputTolerances({"Y": Tolerance(1e-4, 0.0)}))
        assert hash(tolerances) != hash(OutputTolerances({"Y": Tolerance(1e-3, 0.0)}))


class TestExportOptions:
    def test_option_values(self) -> None:
        inputs = InputSpec(seq_len=7, batch=3, initial_states=True, sequence_lens="mixed")
        values = ExportSpec(seq_len=5, opset=17).option_values(inputs)
        assert values == {
            "opset": 17,
            "dynamic": True,
            "example_seq_len": 5,
            "example_batch": 3,
            "initial_states": True,
            "sequence_lens": True,
            "layout": 0,
        }
        assert ExportOptions(**values).example_seq_len == 5
        assert ExportSpec().option_values(InputSpec(2, 1, sequence_lens=(2,)))["sequence_lens"] is True


class TestFeatures:
    def test_plain_case_has_shapes_only(self) -> None:
        assert _case().features() == ("T=7", "B=3", "H=5")

    def test_labels(self) -> None:
        model = LSTMConfig(
            4,
            5,
            num_layers=2,
            direction="bidirectional",
            batch_first=True,
            peepholes=True,
            clip=1.0,
            input_forget=1,
            activations=("Sigmoid", "Tanh", "Tanh", "Relu", "Tanh", "Tanh"),
            activation_alpha=(0.1,),
        )
        case = _case(
            model=model,
            inputs=InputSpec(1000, 3, initial_states=True, sequence_lens="mixed"),
            export=ExportSpec(seq_len=5, layout=1, dynamic=False, opset=17),
        )
        assert case.features() == (
            "bidirectional",
            "2 layers",
            "batch_first",
            "peepholes",
            "activations:Sigmoid,Tanh,Tanh,Relu,Tanh,Tanh",
            "alpha/beta",
            "clip",
            "input_forget",
            "initial_states",
            "seq_lens:mixed",
            "layout=1",
            "static",
            "opset=17",
            "T=1000",
            "B=3",
            "H=5",
            "exported T=5",
        )

    def test_explicit_lengths_and_lm(self) -> None:
        assert "seq_lens:explicit" in _case(inputs=InputSpec(7, 2, sequence_lens=(7, 3))).features()
        lm = _case(model=LMConfig(28, LSTMConfig(16, 32)), inputs=InputSpec(5, 2, tokens="corpus"))
        assert lm.features() == ("lm", "V=28", "tokens:corpus", "T=5", "B=2", "H=32")
        assert lm.outputs == ("log_probs",)
        assert lm.lstm == LSTMConfig(16, 32)


def test_a_release_of_a_runtime_has_the_runtimes_expectations() -> None:
    exact = Expectation(reason="r", runtime="ort-cpu")
    assert exact.matches("onnx-native", "ort-cpu@1.24.4")
    assert not exact.matches("onnx-native", "ort-cpu-noopt@1.24.4")
    assert not Expectation(reason="r", runtime="ort-cpu@1.31.1").matches("onnx-native", "ort-cpu@1.24.4")
