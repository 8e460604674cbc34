"""Suite files: loading, validation messages, matrix expansion, expectations and ``-k`` selection."""

from __future__ import annotations

import pickle
import re
import textwrap
from pathlib import Path

import pytest

from conformance.cases import (
    KNOWN_RUNTIMES,
    Case,
    CaseError,
    Expectation,
    ExportSpec,
    InputSpec,
    SelectionError,
    Suite,
    Tolerance,
    available_suites,
    load_suite,
    loads_suite,
    select,
)
from exporters.base import ExportOptions
from exporters.registry import exporter_ids
from reference.config import LMConfig, LSTMConfig

HEADER = """\
suite = "t"
[defaults]
inputs = { seq_len = 7, batch = 3 }
model = { input_size = 4, hidden_size = 5 }
"""


def write(tmp_path: Path, body: str, *, header: str = HEADER) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(header + textwrap.dedent(body))
    return path


def load(tmp_path: Path, body: str, *, header: str = HEADER) -> Suite:
    return load_suite(write(tmp_path, body, header=header))


def error(tmp_path: Path, body: str, *, header: str = HEADER) -> str:
    path = write(tmp_path, body, header=header)
    with pytest.raises(CaseError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message
    return message.replace(str(path), "t.toml")


class TestPackagedSuites:
    def test_the_four_suites_ship(self) -> None:
        assert set(available_suites()) >= {"smoke", "full", "shapes", "lm"}

    @pytest.mark.parametrize("name", ["smoke", "full", "shapes", "lm"])
    def test_loads_and_validates(self, name: str) -> None:
        suite = load_suite(name)
        assert suite.name == name
        assert suite.description
        assert suite.cases
        assert suite.path.is_file()
        for case in suite.cases:
            assert case.suite == name
            assert case.source.startswith(f"cases/{name}.toml:")
            assert set(case.exporters) <= set(exporter_ids())
            assert set(case.runtimes) <= set(KNOWN_RUNTIMES)
            assert case.description
            ExportOptions(**case.option_values())  # the harness's call must accept every key

    def test_smoke_is_small(self) -> None:
        cases = load_suite("smoke").cases
        assert 6 <= len(cases) <= 8
        for case in cases:
            assert case.lstm.input_size <= 8
            assert case.lstm.hidden_size <= 16
            assert case.inputs.seq_len <= 7
            assert case.inputs.batch <= 3

    def test_full_covers_every_activation(self) -> None:
        from reference.activations import ACTIVATIONS

        used = {name for case in load_suite("full").cases for name in case.lstm.activations or ()}
        assert used == set(ACTIVATIONS)

    def test_full_covers_the_operator_features(self) -> None:
        features = {f for case in load_suite("full").cases for f in case.features()}
        for label in ("reverse", "bidirectional", "3 layers", "peepholes", "clip", "input_forget", "layout=1"):
            assert label in features
        for label in ("seq_lens:mixed", "seq_lens:with-zero", "seq_lens:explicit", "initial_states", "alpha/beta"):
            assert label in features
        for label in ("T=1", "B=1", "H=1", "T=1000", "H=256", "weights:saturating"):
            assert label in features

    def test_lm_trained_cases_match_the_shipped_model(self) -> None:
        for case in load_suite("lm").cases:
            assert isinstance(case.model, LMConfig)
            if case.weights.recipe == "trained":
                lstm = case.model.lstm
                assert (case.model.vocab_size, lstm.input_size, lstm.hidden_size, lstm.num_layers) == (28, 16, 32, 1)

    def test_dynamo_expected_to_error_only_at_other_sequence_lengths(self) -> None:
        for case in load_suite("shapes").cases:
            expectation = case.expectation("torch-dynamo", "ort-cpu")
            if case.inputs.seq_len == 5:
                assert expectation is None
            else:
                assert expectation is not None
                multiple = case.inputs.seq_len * case.inputs.batch % 5 == 0
                assert expectation.status == ("fail" if multiple else "error")
                assert "Reshape" in expectation.reason
            assert case.expectation("onnx-native", "ort-cpu") is None

    def test_the_documented_example_loads(self) -> None:
        doc = (Path(__file__).parents[2] / "docs" / "cases.md").read_text()
        example = re.findall(r"```toml\n(.*?)```", doc, re.S)[0]
        suite = loads_suite(example, display="docs/cases.md")
        assert [c.id for c in suite.cases] == [
            "encoder[forward-1]",
            "encoder[forward-2]",
            "encoder[bidirectional-1]",
            "encoder[bidirectional-2]",
        ]

    def test_unknown_suite_name_suggests(self) -> None:
        with pytest.raises(CaseError, match=r"unknown suite 'smok' \(did you mean 'smoke'\?\); available: "):
            load_suite("smok")

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(CaseError, match=r"nope\.toml: cannot read suite file"):
            load_suite(tmp_path / "nope.toml")


class TestDefaultsAndModel:
    def test_defaults_apply_and_tables_merge(self, tmp_path: Path) -> None:
        suite = load(
            tmp_path,
            """
            [[case]]
            id = "a"
            inputs = { batch = 2, initial_states = true }
            """,
        )
        (case,) = suite.cases
        assert case.inputs == InputSpec(seq_len=7, batch=2, initial_states=True)
        assert case.model == LSTMConfig(input_size=4, hidden_size=5)
        assert case.exporters == tuple(exporter_ids(mutants=False))
        assert case.runtimes == KNOWN_RUNTIMES
        assert case.tolerance is None
        assert dict(case.output_tolerances) == {}
        assert case.source == f"{tmp_path / 't.toml'}:6"
        assert suite.name == "t"

    def test_lm_model(self, tmp_path: Path) -> None:
        (case,) = load(
            tmp_path,
            """
            [[case]]
            id = "lm"
            model = { kind = "lm", vocab_size = 30, input_size = 16, hidden_size = 8, num_layers = 2 }
            weights = { recipe = "trained" }
            inputs = { tokens = "corpus" }
            """,
        ).cases
        assert case.model == LMConfig(30, LSTMConfig(input_size=16, hidden_size=8, num_layers=2))
        assert case.outputs == ("log_probs",)
        assert case.features()[:2] == ("lm", "V=30")

    def test_tolerances(self, tmp_path: Path) -> None:
        (case,) = load(
            tmp_path,
            """
            [[case]]
            id = "a"
            tolerance = { atol = 1e-5, rtol = 0 }
            tolerance_outputs = { Y_c = { atol = 1e-4, rtol = 1e-3 } }
            """,
        ).cases
        assert case.tolerance == Tolerance(1e-5, 0.0)
        assert case.tolerance_for("Y_c") == Tolerance(1e-4, 1e-3)
        assert case.tolerance_for("Y") == Tolerance(1e-5, 0.0)
        assert hash(case) == hash(case)
        assert pickle.loads(pickle.dumps(case)) == case

    def test_expectations_concatenate_defaults_first(self, tmp_path: Path) -> None:
        header = HEADER + '[[defaults.expect]]\nruntime = "onnx-reference"\nreason = "suite-wide"\n'
        (case,) = load(
            tmp_path,
            """
            [[case]]
            id = "a"
            [[case.expect]]
            runtime = "ort-*"
            reason = "own"
            """,
            header=header,
        ).cases
        assert [e.reason for e in case.expect] == ["suite-wide", "own"]

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


class TestMatrix:
    def test_cartesian_product_in_written_order(self, tmp_path: Path) -> None:
        suite = load(
            tmp_path,
            """
            [[case]]
            id = "m"
            matrix = { "model.direction" = ["forward", "bidirectional"], "model.num_layers" = [1, 2] }
            """,
        )
        assert [c.id for c in suite.cases] == [
            "m[forward-1]",
            "m[forward-2]",
            "m[bidirectional-1]",
            "m[bidirectional-2]",
        ]
        assert [(c.lstm.direction, c.lstm.num_layers) for c in suite.cases][-1] == ("bidirectional", 2)

    def test_value_rendering(self, tmp_path: Path) -> None:
        suite = load(
            tmp_path,
            """
            [[case]]
            id = "r"
            exporters = ["onnx-native"]
            [case.matrix]
            "inputs.initial_states" = [true, false]
            "model.clip" = [0.5, 3.0]
            "model.activations" = [["Relu", "Tanh", "Tanh"]]
            """,
        )
        assert [c.id for c in suite.cases] == [
            "r[true-0.5-Relu+Tanh+Tanh]",
            "r[true-3.0-Relu+Tanh+Tanh]",
            "r[false-0.5-Relu+Tanh+Tanh]",
            "r[false-3.0-Relu+Tanh+Tanh]",
        ]

    def test_ids_are_stable(self, tmp_path: Path) -> None:
        body = '[[case]]\nid = "m"\nmatrix = { "inputs.seq_len" = [1, 2] }\n'
        assert [c.id for c in load(tmp_path, body).cases] == [c.id for c in load(tmp_path, body).cases]

    def test_matrix_overrides_the_case(self, tmp_path: Path) -> None:
        suite = load(
            tmp_path,
            """
            [[case]]
            id = "m"
            inputs = { seq_len = 3 }
            matrix = { "inputs.seq_len" = [1, 9] }
            """,
        )
        assert [c.inputs.seq_len for c in suite.cases] == [1, 9]

    def test_when_filters_expectations_per_variant(self, tmp_path: Path) -> None:
        suite = load(
            tmp_path,
            """
            [[case]]
            id = "m"
            matrix = { "inputs.seq_len" = [1, 7, 9], "inputs.batch" = [1, 3] }
            [[case.expect]]
            exporter = "torch-dynamo"
            reason = "baked"
            when = { "inputs.seq_len" = [1, 9], "inputs.batch" = 3 }
            """,
        )
        expected = {"m[1-3]", "m[9-3]"}
        assert {c.id for c in suite.cases if c.expect} == expected

    def test_when_compares_with_defaults(self, tmp_path: Path) -> None:
        suite = load(
            tmp_path,
            """
            [[case]]
            id = "m"
            matrix = { "model.direction" = ["forward", "reverse"] }
            [[case.expect]]
            reason = "x"
            when = { "model.num_layers" = 1, "model.direction" = "reverse" }
            """,
        )
        assert [bool(c.expect) for c in suite.cases] == [False, True]

    def test_duplicate_ids(self, tmp_path: Path) -> None:
        message = error(
            tmp_path,
            """
            [[case]]
            id = "a"
            matrix = { "inputs.batch" = [1, 2] }

            [[case]]
            id = "a"
            matrix = { "inputs.batch" = [2] }
            """,
        )
        assert message == "t.toml:10: id: duplicate case id 'a[2]' (first defined at line 6)"

    def test_duplicate_plain_ids(self, tmp_path: Path) -> None:
        message = error(tmp_path, '[[case]]\nid = "a"\n[[case]]\nid = "a"\n')
        assert message == "t.toml:7: id: duplicate case id 'a' (first defined at line 5)"


class TestValidationMessages:
    """Each problem is one line: file, line, key, problem."""

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            pytest.param(
                '[[case]]\nid = "a"\ninputs = { seq_len = "seven" }\n',
                "t.toml:7: inputs.seq_len: expected an integer, got 'seven'",
                id="wrong-type",
            ),
            pytest.param(
                '[[case]]\nid = "a"\ninputs = { seq_len = true }\n',
                "t.toml:7: inputs.seq_len: expected an integer, got true",
                id="bool-is-not-int",
            ),
            pytest.param(
                '[[case]]\nid = "a"\n\nmodel = { hidden_sise = 3 }\n',
                "t.toml:8: model.hidden_sise: unknown key (did you mean 'hidden_size'?)",
                id="unknown-model-key",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nexporter = ["onnx-native"]\n',
                "t.toml:7: exporter: unknown key (did you mean 'exporters'?)",
                id="unknown-case-key",
            ),
            pytest.param(
                '[[case]]\nid = "a"\ninputs = { seq_len = 0 }\n',
                "t.toml:7: inputs.seq_len: expected an integer >= 1, got 0",
                id="seq-len-zero",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nmodel = { direction = "sideways" }\n',
                "t.toml:7: model.direction: expected one of ['forward', 'reverse', 'bidirectional'], got 'sideways'",
                id="unknown-direction",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nmodel = { activations = ["Sigmoid", "Tanh", "Tahn"] }\n',
                "t.toml:7: model.activations: unknown activation 'Tahn'; expected one of: Relu, Tanh, Sigmoid, "
                "Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus",
                id="unknown-activation",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nmodel = { activations = ["Sigmoid", "Tanh"] }\n',
                "t.toml:7: model.activations: expected 3 names (f, g, h per direction), got 2",
                id="activation-count",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nmodel = { clip = -1 }\n',
                "t.toml:7: model.clip: expected a positive threshold, got -1.0",
                id="negative-clip",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nweights = { recipe = "torch-defualt" }\n',
                "t.toml:7: weights.recipe: unknown recipe 'torch-defualt' (did you mean 'torch-default'?); "
                "expected one of: torch-default, saturating, trained",
                id="unknown-recipe",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nweights = { recipe = "trained" }\n',
                "t.toml:7: weights.recipe: 'trained' weights exist for language models only (model.kind = 'lm')",
                id="trained-lstm",
            ),
            pytest.param(
                '[[case]]\nid = "a"\ntolerance_outputs = { Y_x = { atol = 1e-4, rtol = 1e-4 } }\n',
                "t.toml:7: tolerance_outputs.Y_x: unknown output (did you mean 'Y_h'?); outputs: Y, Y_h, Y_c",
                id="unknown-output",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nexporters = ["torch-dynmo"]\n',
                "t.toml:7: exporters: unknown exporter 'torch-dynmo' (did you mean 'torch-dynamo'?); known: "
                "torch-module, onnx-native, torch-script, torch-dynamo (and the selftest mutants mutant-*)",
                id="unknown-exporter",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nruntimes = ["ort-cpu", "tensorrt"]\n',
                "t.toml:7: runtimes: unknown runtime 'tensorrt'; known: reference, ort-cpu, ort-cpu-noopt, "
                "ort-cuda, torch-cpu, torch-cuda, onnx-reference",
                id="unknown-runtime",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nruntimes = ["ort-cpu", "ort-cpu"]\n',
                "t.toml:7: runtimes: runtime 'ort-cpu' listed twice",
                id="duplicate-runtime",
            ),
            pytest.param(
                '[[case]]\nid = "a"\n[[case.expect]]\nreason = "x"\nstatus = "xfail"\n',
                "t.toml:9: expect.status: expected 'fail' or 'error', got 'xfail'",
                id="expectation-status",
            ),
            pytest.param(
                '[[case]]\nid = "a"\n[[case.expect]]\nreason = "x"\n[[case.expect]]\nruntime = "ort-*"\n',
                "t.toml:9: expect.reason: missing: say why the lane diverges",
                id="expectation-reason",
            ),
            pytest.param(
                '[[case]]\nid = "a"\n[[case.expect]]\nreason = "x"\nexporter = "torch-dynmo"\n',
                "t.toml:9: expect.exporter: 'torch-dynmo' matches no known exporter; known: "
                "torch-module, onnx-native, torch-script, torch-dynamo (and the selftest mutants mutant-*)",
                id="expectation-exporter",
            ),
            pytest.param(
                '[[case]]\nid = "a"\n[[case.expect]]\nreason = "x"\noutput = "log_probs"\n',
                "t.toml:9: expect.output: 'log_probs' matches no known output; known: Y, Y_h, Y_c",
                id="expectation-output",
            ),
            pytest.param(
                '[[case]]\nid = "a"\n[[case.expect]]\nreason = "x"\nwhen = { "inputs.seqlen" = 1 }\n',
                "t.toml:9: expect.when.inputs.seqlen: unknown key (did you mean 'inputs.seq_len'?)",
                id="expectation-when",
            ),
            pytest.param(
                '[[case]]\nid = "a"\ninputs = { sequence_lens = [7, 1] }\n',
                "t.toml:7: inputs.sequence_lens: expected 3 lengths (one per batch entry), got 2",
                id="sequence-lens-length",
            ),
            pytest.param(
                '[[case]]\nid = "a"\ninputs = { sequence_lens = [7, 8, 0] }\n',
                "t.toml:7: inputs.sequence_lens: length 8 out of range [0, 7]",
                id="sequence-lens-range",
            ),
            pytest.param(
                '[[case]]\nid = "a"\ninputs = { sequence_lens = "some" }\n',
                "t.toml:7: inputs.sequence_lens: expected one of 'full', 'mixed', 'with-zero' or a list of "
                "lengths, got 'some'",
                id="sequence-lens-pattern",
            ),
            pytest.param(
                '[[case]]\nid = "a"\ninputs = { batch = 1, sequence_lens = "with-zero" }\n',
                "t.toml:7: inputs.sequence_lens: 'with-zero' needs batch >= 2 (one sequence full, one empty)",
                id="with-zero-batch-1",
            ),
            pytest.param(
                '[[case]]\nid = "a"\ninputs = { tokens = "corpus" }\n',
                "t.toml:7: inputs.tokens: only language models (model.kind = 'lm') take tokens",
                id="tokens-on-lstm",
            ),
            pytest.param(
                '[[case]]\nid = "a"\ntolerance = { atol = 1e-5 }\n',
                "t.toml:7: tolerance: atol and rtol must be given together (missing rtol)",
                id="atol-alone",
            ),
            pytest.param(
                '[[case]]\nid = "a"\ntolerance = { atol = -1e-5, rtol = 0 }\n',
                "t.toml:7: tolerance.atol: expected a finite number >= 0, got -1e-05",
                id="negative-atol",
            ),
            pytest.param(
                '[[case]]\nid = "a"\ntolerance_outputs = { Y = { rtol = 0.1 } }\n',
                "t.toml:7: tolerance_outputs.Y: atol and rtol must be given together (missing atol)",
                id="output-rtol-alone",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nexport = { layout = 1 }\n',
                "t.toml:7: export.layout: layout = 1 needs model.batch_first = true",
                id="layout-without-batch-first",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nmatrix = { "model.directions" = ["forward"] }\n',
                "t.toml:7: matrix.model.directions: unknown key (did you mean 'model.direction'?)",
                id="matrix-key",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nmatrix = { "inputs.batch" = [] }\n',
                "t.toml:7: matrix.inputs.batch: expected a non-empty list of values, got []",
                id="matrix-empty",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nmatrix = { "model.num_layers" = [1, 0] }\n',
                "t.toml:7: model.num_layers: expected a positive integer, got 0",
                id="matrix-value",
            ),
            pytest.param(
                '[[case]]\ndescription = "no id"\n',
                "t.toml:5: id: missing: every [[case]] needs an id",
                id="missing-id",
            ),
            pytest.param(
                '[[case]]\nid = "has space"\n',
                "t.toml:6: id: expected a name without spaces, brackets, parentheses or quotes, got 'has space'",
                id="bad-id",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nmodel = { kind = "lm", vocab_size = 1 }\n',
                "t.toml:7: model.vocab_size: expected an integer >= 2, got 1",
                id="lm-vocab",
            ),
            pytest.param(
                '[[case]]\nid = "a"\nmodel = { kind = "lm", vocab_size = 9 }\ninputs = { initial_states = true }\n',
                "t.toml:8: inputs.initial_states: language models take tokens only",
                id="lm-initial-states",
            ),
        ],
    )
    def test_message(self, tmp_path: Path, body: str, expected: str) -> None:
        assert error(tmp_path, body) == expected

    def test_error_in_defaults_points_at_defaults(self, tmp_path: Path) -> None:
        header = 'suite = "t"\n[defaults]\nmodel = { input_size = 4, hidden_size = 5 }\n'
        header += "inputs = { seq_len = 7, batch = -2 }\n"
        message = error(tmp_path, '[[case]]\nid = "a"\n', header=header)
        assert message == "t.toml:4: inputs.batch: expected an integer >= 1, got -2"

    def test_unknown_defaults_key(self, tmp_path: Path) -> None:
        header = HEADER + 'runtime = ["ort-cpu"]\n'
        expected = "t.toml:5: defaults.runtime: unknown key (did you mean 'runtimes'?)"
        assert error(tmp_path, "", header=header) == expected

    def test_unknown_top_level_key(self, tmp_path: Path) -> None:
        header = 'suit = "t"\n' + HEADER
        assert error(tmp_path, "", header=header) == "t.toml:1: suit: unknown key (did you mean 'suite'?)"

    def test_missing_required_key(self, tmp_path: Path) -> None:
        header = 'suite = "t"\n[defaults]\nmodel = { input_size = 4, hidden_size = 5 }\n'
        assert error(tmp_path, '[[case]]\nid = "a"\ninputs = { batch = 2 }\n', header=header) == (
            "t.toml:6: inputs.seq_len: missing (required)"
        )

    def test_key_in_a_sub_table(self, tmp_path: Path) -> None:
        body = '[[case]]\nid = "a"\n\n[case.inputs]\nseq_len = 3\nbatch = 2\nlow = "x"\n'
        assert error(tmp_path, body) == "t.toml:11: inputs.low: expected a number, got 'x'"

    def test_second_case_is_located(self, tmp_path: Path) -> None:
        body = '[[case]]\nid = "a"\ninputs = { seq_len = 2 }\n\n[[case]]\nid = "b"\ninputs = { seq_len = 2.5 }\n'
        assert error(tmp_path, body) == "t.toml:11: inputs.seq_len: expected an integer, got 2.5"

    def test_second_expectation_is_located(self, tmp_path: Path) -> None:
        body = '[[case]]\nid = "a"\n[[case.expect]]\nreason = "x"\n[[case.expect]]\nreason = "y"\nstatus = "no"\n'
        assert error(tmp_path, body) == "t.toml:11: expect.status: expected 'fail' or 'error', got 'no'"

    def test_invalid_toml_has_line_and_column(self, tmp_path: Path) -> None:
        message = error(tmp_path, '[[case]]\nid = "a"\nmodel = { input_size 4 }\n')
        assert message == "t.toml:7:22: invalid TOML: Expected '=' after a key in a key/value pair"

    def test_invalid_toml_at_end_of_document(self, tmp_path: Path) -> None:
        message = error(tmp_path, '[[case]]\nid = "a\n')
        assert message.startswith("t.toml:6:")
        assert "invalid TOML" in message

    def test_packaged_name_in_messages(self) -> None:
        with pytest.raises(CaseError, match=r"^cases/x\.toml:1:9: invalid TOML: Invalid value$"):
            loads_suite("suite = = 1\n", display="cases/x.toml")


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
        case = Case(
            id="c",
            suite="s",
            model=LSTMConfig(2, 3),
            weights=load_suite("smoke").cases[0].weights,
            inputs=InputSpec(3, 2),
            export=ExportSpec(),
            exporters=("onnx-native",),
            runtimes=("ort-cpu", "onnx-reference"),
            expect=(first, second),
        )
        assert case.expectation("onnx-native", "onnx-reference") is first
        assert case.expectation("onnx-native", "ort-cpu") is second
        assert Case.expectation(case, "x", "y") is second


def _case(**kwargs: object) -> Case:
    values: dict[str, object] = {
        "id": "c",
        "suite": "s",
        "model": LSTMConfig(4, 5),
        "weights": load_suite("smoke").cases[0].weights,
        "inputs": InputSpec(7, 3),
        "export": ExportSpec(),
        "exporters": ("onnx-native",),
        "runtimes": ("ort-cpu",),
    }
    values.update(kwargs)
    return Case(**values)  # type: ignore[arg-type]


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


class TestSelect:
    @pytest.fixture
    def cases(self, tmp_path: Path) -> list[Case]:
        suite = load(
            tmp_path,
            """
            [[case]]
            id = "plain"
            tags = ["core"]

            [[case]]
            id = "deep"
            tags = ["stack"]
            model = { num_layers = 2, direction = "bidirectional" }

            [[case]]
            id = "peep"
            model = { peepholes = true }
            inputs = { sequence_lens = "mixed" }
            """,
        )
        return list(suite.cases)

    @staticmethod
    def ids(cases: list[Case], expr: str | None) -> list[str]:
        return [c.id for c in select(cases, expr)]

    @pytest.mark.parametrize(
        ("expr", "expected"),
        [
            (None, ["plain", "deep", "peep"]),
            ("", ["plain", "deep", "peep"]),
            ("deep", ["deep"]),
            ("DEEP", ["deep"]),
            ("core", ["plain"]),
            ("bidirectional", ["deep"]),
            ("peepholes", ["peep"]),
            ("seq_lens:mixed", ["peep"]),
            ("t", ["plain", "deep", "peep"]),  # the suite name: a substring everywhere
            ("not deep", ["plain", "peep"]),
            ("core or stack", ["plain", "deep"]),
            ("e and not core", ["deep", "peep"]),
            ("not (core or stack)", ["peep"]),
            ("(core or stack) and not bidirectional", ["plain"]),
            ("not not core", ["plain"]),
            ("core or stack and bidirectional", ["plain", "deep"]),  # and binds tighter
            ('"2 layers"', ["deep"]),
            ("'2 layers' or peep", ["deep", "peep"]),
            ("B=3 and H=5", ["plain", "deep", "peep"]),
            ("nothing", []),
        ],
    )
    def test_expressions(self, cases: list[Case], expr: str | None, expected: list[str]) -> None:
        assert self.ids(cases, expr) == expected

    @pytest.mark.parametrize(
        ("expr", "message"),
        [
            (
                "core and",
                "invalid -k expression 'core and': expected a name at column 9, got the end of the expression",
            ),
            ("(core", "invalid -k expression '(core': expected ')' at the end"),
            ("core)", "invalid -k expression 'core)': unexpected ')' at column 5"),
            ("core stack", "invalid -k expression 'core stack': unexpected 'stack' at column 6"),
            ("and core", "invalid -k expression 'and core': expected a name at column 1, got 'and'"),
            ("'core", 'invalid -k expression "\'core": unbalanced quote at column 1'),
        ],
    )
    def test_bad_expressions(self, cases: list[Case], expr: str, message: str) -> None:
        with pytest.raises(SelectionError) as info:
            select(cases, expr)
        assert str(info.value) == message

    def test_packaged_selection(self) -> None:
        full = load_suite("full").cases
        clip = select(full, "clip and not control")
        assert clip
        assert all(c.lstm.clip is not None for c in clip)
        assert {c.id for c in select(full, "stack and bidirectional")} >= {"stack[bidirectional-2]"}
