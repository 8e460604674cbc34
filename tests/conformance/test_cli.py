"""The ``conformance`` command line in-process: exit codes, bad input, ``list``, ``export``; imports and --help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conformance import __version__
from conformance.cases import CaseError, available_suites, load_suite
from conformance.cli import main
from conformance.runtimes import all_runtimes, runtime_ids
from exporters.registry import exporter_ids

REPO = Path(__file__).resolve().parents[2]


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Rich table rows by their first cell (continuation lines of wrapped rows are dropped)."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            if cells[0]:
                rows[cells[0]] = cells
    return rows


def bad_input(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI on bad input: exit code 2, nothing on stdout, one ``error:`` line on stderr; return it."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.out == ""
    assert captured.err.endswith("\n")
    line = captured.err.removesuffix("\n")
    assert "\n" not in line, captured.err
    assert line.startswith("error: ")
    assert "Traceback" not in line
    return line


class TestTopLevel:
    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["--version"]) == 0
        assert capsys.readouterr().out == f"conformance {__version__}\n"

    def test_no_command_prints_help_and_exits_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main([]) == 2
        out = capsys.readouterr().out
        assert out.startswith("usage: conformance ")
        for command in ("run", "list", "export"):
            assert command in out
        assert "exit codes: 0 all pass" in out

    def test_argparse_usage_errors_exit_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A usage error is one ``error:`` line naming the command and the option, like any bad input."""
        line = bad_input(["run", "--jobs", "many"], capsys)
        assert line == "error: conformance run: argument --jobs: expected an integer, got 'many'"

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["run", "--timeout", "nan"], "argument --timeout: expected a finite number > 0 and <= 86400, got 'nan'"),
            (["run", "--timeout", "inf"], "argument --timeout: expected a finite number > 0 and <= 86400, got 'inf'"),
            (["run", "--latency-budget", "-1"],
             "argument --latency-budget: expected a finite number > 0 and <= 3600, got '-1'"),
            (["run", "--jobs", "0"], "argument --jobs: expected an integer >= 1 and <= 64, got '0'"),
            (["check", "m.onnx", "--atol", "nan", "--rtol", "0"],
             "argument --atol: expected a finite number >= 0, got 'nan'"),
            (["check", "m.onnx", "--seq-lens", "1,0"], "argument --seq-lens: expected positive integers, got '1,0'"),
            (["compare", "a", "b", "--max-slowdown", "0.5"],
             "argument --max-slowdown: expected a finite number > 1 and <= 1000, got '0.5'"),
        ],
    )  # fmt: skip
    def test_numeric_options_are_finite_and_in_range(
        self, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert bad_input(argv, capsys) == f"error: conformance {argv[0]}: {message}"

    def test_an_internal_error_is_one_line_and_exit_3(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An exception that is not bad input is a bug: exit 3, one line, no traceback (--debug shows it)."""
        from conformance.commands import listing

        def broken(args: object) -> int:
            raise KeyError("boom\nsecond line")

        monkeypatch.setattr(listing, "main", broken)
        assert main(["list"]) == 3
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == (
            "internal error: KeyError: 'boom\\nsecond line' (a bug; rerun with --debug for the traceback)\n"
        )
        with pytest.raises(KeyError):
            main(["--debug", "list"])

    def test_bad_input_from_a_file_cannot_steer_the_terminal(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Text from a user's file in an error line: escapes shown, not obeyed; newlines joined; cut at 2000."""
        from conformance.commands import listing
        from exporters.errors import BadInputError

        def hostile(args: object) -> int:
            raise BadInputError("m.onnx: node '\x1bc\x1b]0;owned\x07'\nsecond" + "x" * 2100)

        monkeypatch.setattr(listing, "main", hostile)
        assert main(["list"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: m.onnx: node '\\x1bc\\x1b]0;owned\\x07' secondxxx")
        assert err.endswith("… (134 more characters)\n")
        assert "\x1b" not in err and err.count("\n") == 1


class TestList:
    def test_everything(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["list"]) == 0
        rows = table_rows(capsys.readouterr().out)
        for suite in available_suites():
            assert suite in rows
        self.check_exporters(rows)
        self.check_runtimes(rows)

    def test_suites(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["list", "suites"]) == 0
        rows = table_rows(capsys.readouterr().out)
        assert set(rows) == set(available_suites())
        assert rows["smoke"][1] == str(len(load_suite("smoke").cases))

    def test_cases(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["list", "cases", "--suite", "smoke"]) == 0
        out = capsys.readouterr().out
        assert "Cases of smoke" in out
        assert set(table_rows(out)) == {case.id for case in load_suite("smoke").cases}

    def test_cases_selected(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["list", "cases", "--suite", "smoke", "-k", "peepholes"]) == 0
        assert set(table_rows(capsys.readouterr().out)) == {"peepholes"}

    def test_exporters(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["list", "exporters"]) == 0
        out = capsys.readouterr().out
        assert "Runtimes" not in out and "Suites" not in out
        self.check_exporters(table_rows(out))

    def test_runtimes(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["list", "runtimes"]) == 0
        out = capsys.readouterr().out
        assert "Exporters" not in out
        self.check_runtimes(table_rows(out))

    @pytest.mark.usefixtures("fake_runtimes")
    def test_plug_in_runtimes_are_listed(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["list", "runtimes"]) == 0
        assert table_rows(capsys.readouterr().out)["crash"][1:3] == ["weights", "yes"]

    @staticmethod
    def check_exporters(rows: dict[str, list[str]]) -> None:
        for exporter_id in exporter_ids(mutants=False):
            assert rows[exporter_id][2] == "yes", rows[exporter_id]
        assert not [row for row in rows if row.startswith("mutant-")]  # selftest's, not the user's
        assert rows["onnx-native"][1] == "onnx"
        assert rows["torch-module"][1] == "torch"

    @staticmethod
    def check_runtimes(rows: dict[str, list[str]]) -> None:
        for runtime in all_runtimes():
            reason = runtime.unavailable()
            available = rows[runtime.id][2]
            if reason is None:
                assert available == "yes", runtime.id
            else:
                assert available.startswith("no: " + reason[:20]), (runtime.id, available)
            assert rows[runtime.id][1] == runtime.consumes


class TestRunBadInput:
    @pytest.fixture(autouse=True)
    def _elsewhere(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)  # a run that went ahead would write conformance-results/ here

    def test_unknown_suite(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["run", "--suite", "smok"], capsys)
        names = ", ".join(available_suites())
        assert line == f"error: unknown suite 'smok' (did you mean 'smoke'?); available: {names}"

    def test_missing_suite_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "missing.toml"
        line = bad_input(["run", "--suite", str(path)], capsys)
        assert line == (f"error: {path}: no such file")

    def test_malformed_suite_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "bad.toml"
        path.write_text('suite = "bad"\n[[case]\nid = "x"\n')
        line = bad_input(["run", "--suite", str(path)], capsys)
        assert line == f"error: {path}:2:7: invalid TOML: Expected ']]' at the end of an array declaration"

    def test_invalid_case(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "bad.toml"
        path.write_text(
            'suite = "bad"\n\n[[case]]\nid = "x"\nmodel = { input_size = 3, hidden_size = 4 }\ncolour = 1\n'
        )
        line = bad_input(["run", "--suite", str(path)], capsys)
        assert line.startswith(f"error: {path}:6: ")
        assert "colour" in line

    def test_unknown_runtime_suggests(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["run", "--runtime", "ort-cpuu"], capsys)
        assert line == (
            f"error: unknown runtime 'ort-cpuu' (did you mean 'ort-cpu'?); available: {', '.join(runtime_ids())}"
        )

    def test_runtime_glob_matching_nothing(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["run", "--runtime", "tensorrt*"], capsys)
        assert line.startswith("error: unknown runtime 'tensorrt*'; available: reference, ort-cpu, ")

    def test_unknown_exporter_suggests(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["run", "--exporter", "onnx-nativ"], capsys)
        assert line.startswith("error: unknown exporter 'onnx-nativ' (did you mean 'onnx-native'?); available: ")
        assert "torch-dynamo" in line

    def test_selection_matching_nothing(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["run", "-k", "no-such-case"], capsys)
        assert line == "error: no case in suite(s) smoke matches -k 'no-such-case'"

    def test_malformed_selection(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["run", "-k", "forward and"], capsys)
        assert line.startswith("error: invalid -k expression 'forward and': ")

    def test_a_selection_that_leaves_no_lane(self, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["run", "-k", "peepholes", "--runtime", "torch-cpu"], capsys)
        assert line == (
            "error: the selection leaves no lane to run (check --runtime/--exporter against `conformance list`)"
        )

    def test_bad_input_writes_no_results(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        bad_input(["run", "--runtime", "ort-cpuu", "--out", str(tmp_path / "out")], capsys)
        assert not (tmp_path / "out").exists()

    def test_debug_reraises(self) -> None:
        with pytest.raises(CaseError, match=r"^unknown suite 'smok'"):
            main(["--debug", "run", "--suite", "smok"])

    def test_nonpositive_timeout(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        argv = ["run", "-k", "forward", "--runtime", "reference", "--timeout", "0", "--out", str(tmp_path)]
        line = bad_input(argv, capsys)
        assert "timeout" in line


@pytest.mark.usefixtures("fake_runtimes")
class TestRunSummary:
    """``run`` ends as ``check`` does: the verdict line (PASS, FAIL, NOTHING CHECKED) is the last it prints."""

    SUITE = """\
suite = "tiny"
[[case]]
id = "one"
model = { input_size = 4, hidden_size = 5 }
inputs = { seq_len = 3, batch = 2 }
runtimes = ["reference", "run-fails"]
"""

    def run(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], runtime: str) -> tuple[int, list[str]]:
        suite, out = tmp_path / "tiny.toml", tmp_path / "out"
        suite.write_text(self.SUITE)
        code = main(["run", "--suite", str(suite), "--runtime", runtime, "--no-latency", "--out", str(out)])
        lines = capsys.readouterr().out.rstrip("\n").splitlines()
        assert lines[0] == f"results: {out / 'results.json'}"  # before the summary, so the verdict stays last
        return code, lines

    def test_a_passing_run_ends_with_pass(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, lines = self.run(tmp_path, capsys, "reference")
        assert code == 0
        assert lines[1].startswith("tiny: 1 lane in ")  # the table's title: one lane, singular
        assert lines[-1] == "PASS: 1 of 1 lane checked, all conform"

    def test_a_failing_run_ends_with_fail(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, lines = self.run(tmp_path, capsys, "run-fails")
        assert code == 1
        assert "1 failing lane:" in lines
        assert lines[-1] == "FAIL: 1 of 1 lane failing"


class TestExport:
    @pytest.mark.parametrize("case_id", ["forward", "bidirectional-2layer", "sequence-lens-mixed"])
    def test_writes_the_onnx_backend_test_layout(
        self, case_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        import onnx
        import onnxruntime
        from onnx import numpy_helper

        out = tmp_path / case_id
        assert main(["export", case_id, "--suite", "smoke", "--out", str(out)]) == 0
        model = onnx.load(str(out / "model.onnx"))
        data = out / "test_data_set_0"
        inputs = [i.name for i in model.graph.input]
        outputs = [o.name for o in model.graph.output]
        assert sorted(p.name for p in data.iterdir()) == sorted(
            [f"input_{k}.pb" for k in range(len(inputs))] + [f"output_{k}.pb" for k in range(len(outputs))]
        )
        assert (
            capsys.readouterr().out
            == f"wrote {out / 'model.onnx'} and {data}/ ({len(inputs) + len(outputs)} tensors)\n"
        )

        def read(name: str) -> tuple[str, np.ndarray]:
            tensor = onnx.TensorProto()
            tensor.ParseFromString((data / name).read_bytes())
            return tensor.name, numpy_helper.to_array(tensor)

        feeds = dict(read(f"input_{k}.pb") for k in range(len(inputs)))
        assert list(feeds) == inputs
        expected = dict(read(f"output_{k}.pb") for k in range(len(outputs)))
        assert list(expected) == outputs == ["Y", "Y_h", "Y_c"]
        session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        actual = dict(zip(outputs, session.run(outputs, feeds), strict=True))
        for name in outputs:
            assert expected[name].dtype == actual[name].dtype == np.float32
            np.testing.assert_allclose(actual[name], expected[name], atol=1e-5, rtol=0, err_msg=name)
        if case_id == "sequence-lens-mixed":
            assert feeds["sequence_lens"].dtype == np.int32

    def test_export_again_replaces_the_data(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        out = tmp_path / "e"
        assert main(["export", "bidirectional-2layer", "--suite", "smoke", "--out", str(out)]) == 0
        assert main(["export", "forward", "--suite", "smoke", "--out", str(out)]) == 0
        assert sorted(p.name for p in (out / "test_data_set_0").iterdir()) == [
            "input_0.pb",
            "output_0.pb",
            "output_1.pb",
            "output_2.pb",
        ]

    def test_unknown_case_suggests(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        line = bad_input(["export", "forwrd", "--suite", "smoke", "--out", str(tmp_path / "e")], capsys)
        assert line == "error: unknown case 'forwrd' (did you mean 'forward'?); `conformance list cases` shows them"
        assert not (tmp_path / "e").exists()

    def test_torch_module_is_refused(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        argv = ["export", "forward", "--suite", "smoke", "--exporter", "torch-module", "--out", str(tmp_path)]
        line = bad_input(argv, capsys)
        assert line == "error: exporter 'torch-module' produces a torch module, not an ONNX file"


def run_python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


class TestStartup:
    def test_importing_the_cli_imports_no_heavy_package(self) -> None:
        code = (
            "import sys, conformance.cli; print(sorted({'torch', 'onnx', 'onnxruntime', 'numpy'} & set(sys.modules)))"
        )
        result = run_python("-c", code)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "[]\n"

    def test_help_in_a_subprocess(self) -> None:
        script = Path(sys.executable).with_name("conformance")
        command = [str(script), "--help"] if script.exists() else [sys.executable, "-m", "conformance", "--help"]
        result = subprocess.run(command, check=False, capture_output=True, text=True, cwd=REPO, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: conformance ")
        assert result.stderr == ""

    def test_help_and_list_without_torch_or_onnxruntime(self, tmp_path: Path) -> None:
        for package in ("torch", "onnxruntime"):
            (tmp_path / package).mkdir()
            (tmp_path / package / "__init__.py").write_text('raise ImportError("blocked by the test")\n')
        env = {"PYTHONPATH": str(tmp_path), "COLUMNS": "250"}
        assert run_python("-m", "conformance", "--help", env=env).returncode == 0
        result = run_python("-m", "conformance", "list", "runtimes", env=env)
        assert result.returncode == 0, result.stderr
        rows = table_rows(result.stdout)
        assert rows["reference"][2] == "yes"
        assert rows["ort-cpu"][2] == "no: onnxruntime does not import: blocked by the test"
        assert rows["torch-cpu"][2] == "no: torch does not import: blocked by the test"


def test_building_the_parser_imports_nothing_heavy() -> None:
    """`conformance --help` builds every subcommand's parser: none of that may pull in NumPy or the runtimes."""
    import subprocess
    import sys

    code = (
        "import sys; from conformance.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('numpy', 'torch', 'onnx', 'onnxruntime', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
