"""Building a case (conformance/cases/build.py): every check's one-line message, and the runtime ids a case may name."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.cases import CaseError, loads_suite
from conformance.runtimes import ORT_PROVIDERS, declared_runtime_ids
from tests.conformance.case_files import HEADER, error, load


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
                "t.toml:7: runtimes: unknown runtime 'tensorrt' (did you mean 'ort-tensorrt'?); "
                f"known: {', '.join(declared_runtime_ids())}",
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


ORT_TAIL = f"; and ort-<provider> for an ONNX Runtime provider: {', '.join(ORT_PROVIDERS)}"


class TestRuntimeIds:
    """Runtime ids come from conformance.runtimes: built-ins, plug-ins, and ort-<provider> for ORT's providers."""

    def test_any_onnxruntime_provider_may_be_named(self, tmp_path: Path) -> None:
        body = '[[case]]\nid = "a"\nruntimes = ["ort-tensorrt", "ort-openvino", "ort-cpu-noopt"]\n'
        assert load(tmp_path, body).cases[0].runtimes == ("ort-tensorrt", "ort-openvino", "ort-cpu-noopt")

    @pytest.mark.parametrize(
        ("runtime", "hint"),
        [
            ("ort-cpuu", " (did you mean 'ort-cpu'?)"),
            ("ort-tensort", " (did you mean 'ort-tensorrt'?)"),
            ("ort-habana-gaudi", ""),
        ],
    )
    def test_a_misspelt_provider_is_refused_with_the_closest(self, tmp_path: Path, runtime: str, hint: str) -> None:
        assert error(tmp_path, f'[[case]]\nid = "a"\nruntimes = ["{runtime}"]\n') == (
            f"t.toml:7: runtimes: unknown runtime {runtime!r}{hint}; known: {', '.join(declared_runtime_ids())}"
            + ORT_TAIL
        )

    def test_ort_cpu_noopt_is_the_only_noopt(self, tmp_path: Path) -> None:
        message = error(tmp_path, '[[case]]\nid = "a"\nruntimes = ["ort-cuda-noopt"]\n')
        assert message.startswith(
            "t.toml:7: runtimes: unknown runtime 'ort-cuda-noopt' (did you mean 'ort-cpu-noopt'?)"
        )

    def test_expectation_patterns(self, tmp_path: Path) -> None:
        body = '[[case]]\nid = "a"\n[[case.expect]]\nreason = "x"\nruntime = "{}"\n'
        for pattern in ("ort-*", "ort-tensorrt", "torch-*", "*-cuda", "*"):
            assert load(tmp_path, body.format(pattern)).cases[0].expect[0].runtime == pattern
        assert error(tmp_path, body.format("ort-cpuu")) == (
            f"t.toml:9: expect.runtime: 'ort-cpuu' matches no known runtime; known: {', '.join(declared_runtime_ids())}"
            + ORT_TAIL
        )
        assert error(tmp_path, body.format("tensorflow-*")).startswith(
            "t.toml:9: expect.runtime: 'tensorflow-*' matches no known runtime; known: "
        )

    def test_plug_in_runtimes_are_named_and_default(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONFORMANCE_EXTRA_RUNTIMES", "fake-a=tests.x:A, fake-b=tests.x:B")
        (case,) = load(tmp_path, '[[case]]\nid = "a"\n').cases
        assert case.runtimes[-2:] == ("fake-a", "fake-b")
        assert load(tmp_path, '[[case]]\nid = "a"\nruntimes = ["fake-b"]\n').cases[0].runtimes == ("fake-b",)

    def test_a_malformed_plug_in_entry_is_one_line(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONFORMANCE_EXTRA_RUNTIMES", "fake-a")
        with pytest.raises(ValueError) as info:
            loads_suite(HEADER + '[[case]]\nid = "a"\n', display="t.toml")
        assert not isinstance(info.value, CaseError)  # the environment is at fault, not the file
        assert str(info.value) == "CONFORMANCE_EXTRA_RUNTIMES: malformed entry 'fake-a': expected id=module:Class"
