"""``conformance report``: every format to stdout or a file, exit codes, and bad input as one-line errors."""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conformance.commands import report
from conformance.files import write_text_atomic
from conformance.records import ResultDocument
from exporters.errors import BadInputError
from reports.json_report import render_json
from tests.reports.conftest import SAMPLE, check_document, sample


def args(results: Path | str, fmt: str = "console", out: Path | None = None) -> argparse.Namespace:
    return argparse.Namespace(results=str(results), format=fmt, out=None if out is None else str(out))


@pytest.fixture
def passing_file(tmp_path: Path, passing_document: ResultDocument) -> Path:
    path = tmp_path / "passing" / "results.json"
    write_text_atomic(path, render_json(passing_document))
    return path


class TestFormats:
    @pytest.mark.parametrize(
        ("fmt", "marker"),
        [
            ("console", "5 failing lanes:"),
            ("json", '"schema_version": 2'),
            ("junit", '<testsuites name="lstm-conformance"'),
            ("markdown", "## ❌ `full`, `smoke`: 5 failing of 23 lanes"),
            ("html", "<!DOCTYPE html>"),
        ],
    )
    def test_to_stdout(self, capsys: pytest.CaptureFixture[str], fmt: str, marker: str) -> None:
        assert report.main(args(SAMPLE, fmt)) == 1  # the sample holds failing lanes
        out, err = capsys.readouterr()
        assert marker in out and err == ""

    @pytest.mark.parametrize("fmt", report.FORMATS)
    def test_to_a_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
        target = tmp_path / "deeper" / f"report.{fmt}"
        assert report.main(args(SAMPLE, fmt, target)) == 1
        out, err = capsys.readouterr()
        assert out == "" and err == f"{fmt} report: {target}\n"
        text = target.read_text(encoding="utf-8")
        assert text.endswith("\n") and list(target.parent.iterdir()) == [target]  # no temporary file left
        if fmt == "json":  # the version-1 file, at the current version
            assert text == render_json(sample())
        if fmt == "junit":
            assert ET.fromstring(text).get("tests") == "23"
        if fmt == "console":
            assert "\x1b[" not in text  # plain text in a file
            assert "clip[forward]/onnx-native/ort-cpu" in text and "Latency: stack[forward-1]" in text
            assert text.rstrip("\n").splitlines()[-1] == "FAIL: 5 of 23 lanes failing"

    def test_passing_results_exit_0(self, passing_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert report.main(args(passing_file, "markdown")) == 0
        assert capsys.readouterr().out.startswith("## ✅")

    def test_a_check_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "check.json"
        write_text_atomic(path, render_json(check_document("speech.onnx")))
        assert report.main(args(path, "html")) == 1
        assert "<title>lstm-conformance check: speech.onnx</title>" in capsys.readouterr().out
        assert report.main(args(path, "console")) == 1
        out = capsys.readouterr().out
        assert out.startswith("LSTM nodes x runtimes (worst over the inputs)")  # a check shows its nodes first
        assert "check speech.onnx: 7 results" in out and out.rstrip("\n").endswith("FAIL: 2 of 7 results failing")

    def test_console_is_the_default(self) -> None:
        parser = argparse.ArgumentParser()
        report.add_parser(parser.add_subparsers(dest="command"))
        parsed = parser.parse_args(["report", "results.json"])
        assert (parsed.command, parsed.results, parsed.format, parsed.out) == (
            "report",
            "results.json",
            "console",
            None,
        )
        parsed = parser.parse_args(["report", "r.json", "--format", "html", "--out", "r.html"])
        assert (parsed.format, parsed.out) == ("html", "r.html")

    def test_an_unknown_format_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        parser = argparse.ArgumentParser()
        report.add_parser(parser.add_subparsers(dest="command"))
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["report", "r.json", "--format", "pdf"])
        assert exc.value.code == 2
        assert "invalid choice: 'pdf'" in capsys.readouterr().err


class TestBadInput:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(BadInputError, match=r"nope\.json: no such file$"):
            report.main(args(tmp_path / "nope.json"))

    def test_a_folder(self, tmp_path: Path) -> None:
        with pytest.raises(BadInputError, match=r"is a folder"):
            report.main(args(tmp_path))

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (b"{not json", r"bad\.json:1:2: not valid JSON"),
            (b"[1, 2]", r"not a conformance result file \(schema_version None, expected 1 or 2\)"),
            (b'{"schema_version": 99}', r"not a conformance result file \(schema_version 99, expected 1 or 2\)"),
            (b'{"schema_version": 1, "results": {}}', r"'results' must be a list, got dict"),
            (
                b'{"schema_version": 1, "results": [{"id": "x"}]}',
                r"results\[0\]: 'status' must be a string, got nothing",
            ),
            (b'{"schema_version": 1, "results": [7]}', r"results\[0\]: expected an object, got int"),
            (b'{"schema_version": 2, "results": [{"id": "x", "status": "crashed"}]}', r"unknown status 'crashed'"),
            (b"\x89PNG\r\n\x1a\n\x00\xff", r"not a conformance result file \(not UTF-8 text\)"),
        ],
    )
    def test_not_a_result_file(self, tmp_path: Path, content: bytes, message: str) -> None:
        path = tmp_path / "bad.json"
        path.write_bytes(content)
        with pytest.raises(BadInputError, match=message) as exc:
            report.main(args(path, "html"))
        assert "\n" not in str(exc.value) and str(path) in str(exc.value)

    def test_nothing_written_on_bad_input(self, tmp_path: Path) -> None:
        target = tmp_path / "out.html"
        with pytest.raises(BadInputError):
            report.main(args(tmp_path / "missing.json", "html", target))
        assert not target.exists()


def test_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conformance import cli

    if "report" not in cli.COMMANDS:
        pytest.skip("`report` is not registered in conformance/cli.py COMMANDS yet")
    assert cli.main(["report", str(SAMPLE), "--format", "junit"]) == 1
    assert "<testsuites" in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.json'}: no such file\n"
