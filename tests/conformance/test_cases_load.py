"""Loading suites (conformance/cases/load.py): packaged suites, defaults, matrix expansion, size and nesting limits."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from conformance.cases import CaseError, InputSpec, Tolerance, available_suites, load_suite, loads_suite
from conformance.cases.load import MAX_MATRIX_CASES, MAX_SUITE_CASES
from conformance.cases.locate import MAX_TOML_DEPTH
from conformance.runtimes import declared_runtime_ids, nameable_runtime_ids
from exporters.base import ExportOptions
from exporters.registry import exporter_ids
from reference.config import LMConfig, LSTMConfig
from tests.conformance.case_files import HEADER, error, load


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
            assert set(case.runtimes) <= set(nameable_runtime_ids())
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
        with pytest.raises(CaseError, match=r"nope\.toml: no such file$"):
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
        assert case.runtimes == tuple(declared_runtime_ids())
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

    def test_ids_depend_on_the_id_and_the_matrix_values_only(self, tmp_path: Path) -> None:
        """Result files from two runs line up by id: nothing but ``id`` and the matrix values may change one."""
        plain = '[[case]]\nid = "m"\nmatrix = { "inputs.seq_len" = [1, 2] }\n'
        assert [c.id for c in load(tmp_path, plain).cases] == ["m[1]", "m[2]"]
        edited = (
            '[[case]]\nid = "m"\ndescription = "other"\ntags = ["x"]\nexporters = ["onnx-native"]\n'
            'runtimes = ["ort-cpu"]\ntolerance = { atol = 1e-3, rtol = 0 }\n'
            'inputs = { batch = 2, seed = 9 }\nmodel = { hidden_size = 9, direction = "reverse" }\n'
            'matrix = { "inputs.seq_len" = [1, 2] }\n'
        )
        assert [c.id for c in load(tmp_path, edited).cases] == ["m[1]", "m[2]"]

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


def _values(count: int, start: int = 1) -> str:
    return "[" + ", ".join(str(n) for n in range(start, start + count)) + "]"


class TestSizeLimits:
    """A matrix is counted before it is expanded: a huge one is refused at once, not after minutes of memory."""

    def test_a_matrix_of_six_keys_by_thirty_values(self, tmp_path: Path) -> None:
        keys = ("model.hidden_size", "model.input_size", "model.num_layers", "inputs.seq_len", "inputs.batch")
        body = '[[case]]\nid = "m"\n[case.matrix]\n' + "".join(f'"{k}" = {_values(30)}\n' for k in keys)
        body += f'"inputs.seed" = {_values(30, start=0)}\n'
        start = time.perf_counter()
        message = error(tmp_path, body)
        assert time.perf_counter() - start < 0.5
        assert message == (
            "t.toml:7: matrix: expands to 729,000,000 cases (keys model.hidden_size, model.input_size, "
            "model.num_layers, inputs.seq_len, inputs.batch, inputs.seed), over the limit of 10,000"
        )

    def test_one_past_the_limit(self, tmp_path: Path) -> None:
        assert MAX_MATRIX_CASES == 10_000
        body = f'[[case]]\nid = "m"\nmatrix = {{ "inputs.seed" = {_values(MAX_MATRIX_CASES + 1)} }}\n'
        assert error(tmp_path, body) == (
            "t.toml:7: matrix: expands to 10,001 cases (keys inputs.seed), over the limit of 10,000"
        )

    def test_many_keys_are_summarised(self, tmp_path: Path) -> None:
        keys = ("seq_len", "batch", "seed", "low", "high", "initial_states", "tokens")
        body = '[[case]]\nid = "m"\n[case.matrix]\n' + "".join(f'"inputs.{k}" = [1, 2, 3, 4]\n' for k in keys)
        assert error(tmp_path, body) == (
            "t.toml:7: matrix: expands to 16,384 cases (keys inputs.seq_len, inputs.batch, inputs.seed, inputs.low, "
            "inputs.high, inputs.initial_states, ... (7 keys)), over the limit of 10,000"
        )

    def test_the_whole_file_is_counted_before_any_case_is_built(self, tmp_path: Path) -> None:
        assert MAX_SUITE_CASES == 100_000
        entry = '[[case]]\nid = "m{n}"\nmatrix = {{ "inputs.seed" = {seeds}, "model.hidden_size" = {sizes} }}\n'
        body = "".join(entry.format(n=n, seeds=_values(100, start=0), sizes=_values(100)) for n in range(11))
        start = time.perf_counter()
        message = error(tmp_path, body)
        assert time.perf_counter() - start < 0.5  # building 100,000 cases would take ~20 s
        assert message == "t.toml:37: matrix: brings the suite to 110,000 cases, over the limit of 100,000 per file"


class TestNesting:
    """Arrays and inline tables nested past MAX_TOML_DEPTH are refused before tomllib recurses into them."""

    @pytest.mark.parametrize(
        ("value", "column"),
        [("[" * 3000 + "]" * 3000, 105), ("{a = " * 3000 + "1" + "}" * 3000, 505), ("[" * 101 + "]" * 101, 105)],
        ids=["arrays", "inline-tables", "one-too-deep"],
    )
    def test_too_deep(self, value: str, column: int) -> None:
        assert MAX_TOML_DEPTH == 100
        with pytest.raises(CaseError) as info:
            loads_suite(f'suite = "t"\nx = {value}\n', display="t.toml")
        assert str(info.value) == f"t.toml:2:{column}: invalid TOML: nested deeper than 100 levels"

    def test_at_the_limit_tomllib_parses_it(self) -> None:
        with pytest.raises(CaseError) as info:
            loads_suite('suite = "t"\nx = ' + "[" * 100 + "]" * 100 + "\n", display="t.toml")
        assert str(info.value) == "t.toml:2: x: unknown key; valid keys: suite, description, defaults, case"

    def test_brackets_in_strings_and_comments_do_not_nest(self) -> None:
        text = f'suite = "t"  # {"[" * 200}\ndescription = """{"{" * 200}\n{"[" * 200}"""\n'
        text += f"[defaults]\ntags = ['{'[' * 200}', \"{'[' * 200}\"]\n"
        assert loads_suite(text, display="t.toml").description == "{" * 200 + "\n" + "[" * 200

    def test_a_deep_stack_gets_a_case_error_not_a_recursion_error(self) -> None:
        """Within the limit, tomllib can still overflow a stack that is already deep: one line, all the same."""
        import sys
        import threading

        caught: list[BaseException] = []

        def parse() -> None:  # a new thread starts at depth 0, so the low limit is all that differs
            try:
                loads_suite('suite = "t"\nx = ' + "[" * 90 + "]" * 90 + "\n", display="t.toml")
            except BaseException as exc:
                caught.append(exc)

        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(120)
        try:
            thread = threading.Thread(target=parse)
            thread.start()
            thread.join()
        finally:
            sys.setrecursionlimit(limit)
        assert [type(e) for e in caught] == [CaseError]
        assert str(caught[0]) == "t.toml:2:94: nested 90 levels deep, too deep to load here"
