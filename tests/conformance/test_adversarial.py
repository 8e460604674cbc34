"""Adversarial probes beyond tests/conformance/test_bad_input.py: memory bombs under a real address-space
limit, files that are links, folders from another plan, hostile names. Each asserts the exit code, the exact
first line and that no traceback escaped. Every probe once broke the tool (issue 12's list)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format
from onnx import TensorProto, helper, numpy_helper

from conformance.cli import main

REPO = Path(__file__).resolve().parents[2]
IN, H = 4, 5
LIMIT = 1_500_000_000  # bytes of address space for the memory probes: a bypassed budget fails, not swaps


def lstm_model(path: Path, *, name: str = "rnn", w: np.ndarray | None = None) -> Path:
    rng = np.random.default_rng(0)
    weights = {
        "W": w if w is not None else (0.3 * rng.standard_normal((1, 4 * H, IN))).astype(np.float32),
        "R": (0.3 * rng.standard_normal((1, 4 * H, H))).astype(np.float32),
        "B": (0.3 * rng.standard_normal((1, 8 * H))).astype(np.float32),
    }
    node = helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y"], hidden_size=H, name=name)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", IN])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def npz_bomb(path: Path, key: str, shape: tuple[int, ...]) -> Path:
    """An .npz whose one member is a few MB of deflated zeros declaring ``shape`` float32."""
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open(f"{key}.npy", "w", force_zip64=True) as member,
    ):
        header = io.BytesIO()
        npy_format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
        member.write(header.getvalue())
        left, chunk = int(np.prod(shape)) * 4, bytes(1 << 24)
        while left > 0:
            member.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
    return path


def limited(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``conformance ARGV`` in a child whose address space is capped at LIMIT."""
    script = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({LIMIT}, {LIMIT}))
        from conformance.cli import main
        sys.exit(main({argv!r}))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120, check=False
    )


def one_line(process: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in process.stderr, process.stderr
    lines = process.stderr.strip().splitlines()
    assert lines, process.stdout
    return lines[-1]


class TestMemoryBombsUnderALimit:
    def test_an_npz_of_inputs_that_inflates_to_gigabytes(self, tmp_path: Path) -> None:
        model = lstm_model(tmp_path / "m.onnx")
        bomb = npz_bomb(tmp_path / "bomb.npz", "x", (16384, 8, 4096))  # 2 GiB from ~2 MB
        process = limited(["check", str(model), "--inputs", str(bomb), "--runtime", "ort-cpu"])
        assert process.returncode == 2
        assert one_line(process) == (
            f"error: {bomb}: zip member 'x.npy' declares 2.0 GiB uncompressed, over the 64.0 MiB budget; refused"
        )

    def test_a_weights_npz_that_inflates_to_gigabytes(self, tmp_path: Path) -> None:
        model = lstm_model(tmp_path / "m.onnx")
        bomb = npz_bomb(tmp_path / "weights.npz", "lstm.0.W", (1, 4 * 32768, 4096))  # 2 GiB
        process = limited(["check", str(model), "--weights", str(bomb), "--max-memory", "1G"])
        assert process.returncode == 2
        assert one_line(process) == (
            f"error: {bomb}: zip member 'lstm.0.W.npy' declares 2.0 GiB uncompressed, over the 1.0 GiB budget; refused"
        )

    def test_external_data_without_a_length(self, tmp_path: Path) -> None:
        """onnx reads such a file to its end: a 3 GiB file for a 320-byte tensor once took 6 GiB."""
        path = lstm_model(tmp_path / "m.onnx")
        model = onnx.load(str(path))
        w = next(t for t in model.graph.initializer if t.name == "W")
        values = numpy_helper.to_array(w)
        (tmp_path / "w.bin").write_bytes(values.tobytes())
        with open(tmp_path / "w.bin", "ab") as fh:
            fh.truncate(3 << 30)  # sparse: no disk used
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        w.external_data.add(key="location", value="w.bin")
        onnx.save(model, str(path))
        process = limited(["check", str(path), "--runtime", "ort-cpu"])
        assert process.returncode == 0, process.stdout + process.stderr
        assert "Traceback" not in process.stderr

    def test_external_data_too_short_for_its_tensor(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = lstm_model(tmp_path / "m.onnx")
        model = onnx.load(str(path))
        w = next(t for t in model.graph.initializer if t.name == "W")
        (tmp_path / "w.bin").write_bytes(b"\0" * 10)
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        w.external_data.add(key="location", value="w.bin")
        onnx.save(model, str(path))
        assert main(["check", str(path)]) == 2
        assert capsys.readouterr().err == (
            f"error: {path}: external data file 'w.bin' holds 10 bytes from offset 0, too few for tensor 'W' "
            "(320 bytes)\n"
        )


class TestWeightsThatAreNotWeights:
    @pytest.mark.parametrize(
        ("value", "message"),
        [
            (
                np.ones((1, 20, 4), np.complex64),
                "member 'lstm.0.W.npy' is complex64; complex weights are not supported",
            ),
            (np.array(1.0), "corrupt weights file ('lstm.0.W' is a float64 array of shape [])"),
            (np.array(["a", "b"]), "corrupt weights file ('lstm.0.W' is a <U1 array of shape [2])"),
        ],
    )
    def test_refused_in_one_line(
        self, value: np.ndarray, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        model = lstm_model(tmp_path / "m.onnx")
        weights = tmp_path / "w.npz"
        arrays: dict[str, Any] = {"lstm.0.W": value, "__meta__": np.array("{}")}
        np.savez(weights, **arrays)
        assert main(["check", str(model), "--weights", str(weights)]) == 2
        assert capsys.readouterr().err == f"error: {weights}: {message}\n"

    def test_inf_in_the_models_own_weights(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        w = np.zeros((1, 4 * H, IN), np.float32)
        w[0, 3, 1] = np.inf
        model = lstm_model(tmp_path / "m.onnx", w=w)
        assert main(["check", str(model), "--runtime", "ort-cpu"]) == 2
        assert capsys.readouterr().err == (
            f"error: {model}: LSTM node rnn: its W holds NaN or Inf (1 value(s), first at index (0, 3, 1)); "
            "refusing to compare\n"
        )

    @pytest.mark.parametrize("damage", ["truncated", "crc"])
    def test_a_damaged_npz_of_inputs(self, damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        model = lstm_model(tmp_path / "m.onnx")
        inputs = tmp_path / "x.npz"
        np.savez(inputs, x=np.ones((3, 2, IN), np.float32))
        data = bytearray(inputs.read_bytes())
        if damage == "truncated":
            inputs.write_bytes(bytes(data[: len(data) // 2]))
            expected = "truncated or corrupt zip archive (BadZipFile: File is not a zip file)"
        else:
            data[200] ^= 0xFF  # inside x.npy's data
            inputs.write_bytes(bytes(data))
            expected = "zip member 'x.npy' is corrupt (BadZipFile: Bad CRC-32 for file 'x.npy')"
        assert main(["check", str(model), "--inputs", str(inputs)]) == 2
        assert capsys.readouterr().err == f"error: {inputs}: {expected}\n"


class TestRunFolders:
    @pytest.fixture
    def finished(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
        out = tmp_path / "out"
        assert main(["run", "-k", "forward", "--runtime", "reference", "--no-latency", "--out", str(out)]) == 0
        capsys.readouterr()
        return out

    def test_results_through_a_link_are_refused(
        self, finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        outside = tmp_path / "outside.jsonl"
        outside.write_text("")
        (finished / "results.jsonl").unlink()
        (finished / "results.jsonl").symlink_to(outside)
        assert main(["run", "--resume", str(finished), "--no-latency"]) == 2
        assert capsys.readouterr().err == (
            f"error: {finished / 'results.jsonl'}: a symbolic link; a run writes only its own files, "
            "not through links\n"
        )
        assert outside.read_text() == ""

    def test_a_selection_of_the_wrong_type(self, finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
        (finished / "run.json").write_text(json.dumps({"suite": 5}))
        assert main(["run", "--resume", str(finished)]) == 2
        assert capsys.readouterr().err == (
            f"error: --resume {finished}: run.json: 'suite' must be a list of strings, got 5\n"
        )

    def test_resuming_into_another_plan(self, finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
        before = (finished / "results.json").read_text()
        assert main(["run", "--resume", str(finished), "--suite", "full"]) == 2
        assert capsys.readouterr().err == (
            f"error: --resume {finished}: it holds a run with suite smoke; --suite full would be another plan: "
            "run that into another --out\n"
        )
        assert (finished / "results.json").read_text() == before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300))
def test_no_node_name_reaches_the_terminal_raw(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Markup, escape sequences and control characters in a node's name are shown visibly, never obeyed."""
    import contextlib

    folder = tmp_path_factory.mktemp("names")
    model = lstm_model(folder / "m.onnx", name=name)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(model), "--runtime", "ort-cpu", "--dim", "seq=2", "--dim", "batch=1"])
    assert code == 0, out.getvalue() + err.getvalue()
    shown = out.getvalue()
    assert not any(ord(c) < 32 and c != "\n" for c in shown), repr(shown)
    assert "\x1b" not in shown and "\x9b" not in shown


class TestResultFilesThatLie:
    @pytest.mark.parametrize(
        ("samples", "message"),
        [
            ([], "latency record: 'samples_ms' must be a non-empty list"),
            ([1e308, 1.0], "latency record: every sample must be a number of ms in [1e-06, 1e+09]"),
            ([1e-9, 1.0], "latency record: every sample must be a number of ms in [1e-06, 1e+09]"),
        ],
    )
    def test_latency_samples(
        self, samples: list[float], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = tmp_path / "out"
        argv = ["run", "-k", "forward", "--runtime", "reference", "--latency-budget", "0.01", "--out", str(out)]
        assert main(argv) == 0
        capsys.readouterr()
        document = json.loads((out / "results.json").read_text())
        record = next(r for r in document["results"] if r.get("latency"))
        record["latency"]["samples_ms"] = samples
        head = tmp_path / "head.json"
        head.write_text(json.dumps(document))
        assert main(["compare", str(out / "results.json"), str(head)]) == 2
        assert capsys.readouterr().err == f"error: {head}: {record['id']}: {message}\n"

    def test_an_interrupted_flag_that_is_not_a_bool(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "r.json"
        path.write_text(
            json.dumps({"schema_version": 2, "run": {"interrupted": "yes"}, "environment": {}, "results": []})
        )
        assert main(["report", str(path)]) == 2
        assert capsys.readouterr().err == f"error: {path}: run: 'interrupted' must be bool, got str\n"


class TestFilesThatAreNotWhatTheySeem:
    def test_a_report_over_the_model(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        model = lstm_model(tmp_path / "m.onnx")
        before = model.read_bytes()
        assert main(["check", str(model), "--json", str(model)]) == 2
        assert capsys.readouterr().err == f"error: --json {model}: that is the model; the report would overwrite it\n"
        assert model.read_bytes() == before

    def test_two_reports_into_one_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        model, report = lstm_model(tmp_path / "m.onnx"), tmp_path / "r"
        assert main(["check", str(model), "--json", str(report), "--html", str(report)]) == 2
        assert capsys.readouterr().err == f"error: --html {report}: also given to --json; one file per report\n"

    def test_a_report_over_the_runs_journal(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        out = tmp_path / "out"
        assert main(["run", "--out", str(out), "--junit", str(out / "results.jsonl")]) == 2
        assert capsys.readouterr().err == (
            f"error: --junit {out / 'results.jsonl'}: that is the run's journal ({out / 'results.jsonl'}); "
            "the report would overwrite it\n"
        )

    @pytest.mark.parametrize("command", ["report", "check"])
    def test_a_pipe_nobody_writes(self, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        import os

        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        assert main([command, str(fifo)]) == 2  # once blocked for ever
        what = "a result file" if command == "report" else "an ONNX file"
        assert capsys.readouterr().err == f"error: {fifo}: not a regular file (a device or a pipe), not {what}\n"

    def test_export_through_a_link(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        victim, out = tmp_path / "victim", tmp_path / "out"
        victim.write_text("mine")
        out.mkdir()
        (out / "model.onnx").symlink_to(victim)
        assert main(["export", "peepholes", "--out", str(out)]) == 2
        assert capsys.readouterr().err == (
            f"error: {out / 'model.onnx'}: a symbolic link; export writes only its own files, not through links\n"
        )
        assert victim.read_text() == "mine"


def test_sigterm_keeps_a_checks_partial_report(tmp_path: Path) -> None:
    import os
    import signal
    import time

    model = lstm_model(tmp_path / "m.onnx")
    report = tmp_path / "check.json"
    seq = ",".join(str(n) for n in range(4000, 4012))
    argv = ["check", str(model), "--dim", f"seq={seq}", "--dim", "batch=64,65", "--json", str(report)]
    process = subprocess.Popen(
        [sys.executable, "-m", "conformance", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    os.kill(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stdout + stderr
    assert "Traceback" not in stderr
    assert json.loads(report.read_text())["run"]["interrupted"] is True


def test_an_unknown_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conformance.runtimes import runtime_ids

    assert main(["run", "--out", str(tmp_path / "out"), "--baseline", "ort-cpuu"]) == 2
    assert capsys.readouterr().err == (
        "error: --baseline ort-cpuu: no such runtime (did you mean 'ort-cpu'?); "
        f"available: {', '.join(runtime_ids())}\n"
    )


def test_a_report_that_cannot_be_written_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = lstm_model(tmp_path / "m.onnx")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["check", str(model), "--runtime", "ort-cpu", "--json", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --json {folder}: cannot write the report (") and err.count("\n") == 1
