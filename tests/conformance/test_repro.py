"""``conformance repro``: lane ids, refusals, minimisation, the runtime worker, the folder and its repro.py.

End-to-end tests run real runtimes on a tiny suite (ONNX Runtime's clip reading, OpenVINO ignoring
``sequence_lens``, tract's reverse and batch divergences) and run each generated ``repro.py`` in a
subprocess, as an upstream maintainer would; those of an optional runtime skip when it is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

from conformance import cli
from conformance.cases import load_suite
from conformance.files import load_document, write_document
from conformance.records import ResultDocument, lane_result
from conformance.repro.distinct import family, folder_name, groups, how
from conformance.repro.lanes import from_results, from_suite
from conformance.repro.minimise import Step, minimise, written_out
from conformance.repro.scripts import NoTemplateError, Script, render, template
from conformance.repro.trial import Trial, Variant, normalised, one_node_model
from conformance.repro.worker import RunJob, Worker
from conformance.runtimes.reference_runtime import ReferenceSession
from exporters.base import AnyWeights, ExportOptions, Model
from exporters.errors import BadInputError
from reference.config import LSTMConfig
from reference.weights import generate
from tests.conformance.fake_runtimes import CrashRuntime

SUITE = """\
suite = "repro-test"
[defaults]
exporters = ["onnx-native"]
runtimes = ["reference", "ort-cpu", "ort-cpu-noopt", "openvino-cpu", "tract", "ort-openvino"]
model = { input_size = 3, hidden_size = 4 }
inputs = { seq_len = 4, batch = 3 }
weights = { recipe = "saturating" }

[[case]]
id = "plain"

[[case]]
id = "clip"
model = { input_size = 3, hidden_size = 4, clip = 0.5 }
inputs = { seq_len = 4, batch = 3, low = -3.0, high = 3.0 }

[[case]]
id = "sequence-lens"
inputs = { seq_len = 4, batch = 3, sequence_lens = [4, 2, 1] }

[[case]]
id = "reverse"
model = { input_size = 3, hidden_size = 4, direction = "reverse", num_layers = 2 }
inputs = { seq_len = 4, batch = 2, initial_states = true }
weights = { recipe = "torch-default" }
"""
GREATEST = re.compile(r"^(\w+): greatest \|actual - expected\| = (\S+)$")
MAX_SCRIPT_LINES = 23


def missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


needs_openvino = pytest.mark.skipif(missing("openvino"), reason="openvino is not installed")
needs_tract = pytest.mark.skipif(missing("tract"), reason="tract is not installed")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "repro-test.toml"
    path.write_text(SUITE)
    return path


def repro(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["repro", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_script(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "repro.py"], cwd=folder, capture_output=True, text=True, timeout=120, check=False
    )


def greatest(printed: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for line in printed.splitlines() if (m := GREATEST.match(line))}


def results_file(tmp_path: Path, suite: Path, lanes: list[tuple[str, str]]) -> Path:
    """A results.json with one lane record per (lane id, status), from ``suite``."""
    records = []
    for lane_id, status in lanes:
        case, exporter, runtime = lane_id.split("/")
        records.append(
            lane_result(suite=str(suite), case=case, exporter=exporter, runtime=runtime, status=status, message="m")
        )
    path = tmp_path / "results.json"
    write_document(path, ResultDocument.of(records, run={"command": "run"}, environment={}))
    return path


def assert_self_contained(folder: Path) -> str:
    """The folder's repro.py is short and imports only the runtime and NumPy; returns its text."""
    script = (folder / "repro.py").read_text()
    assert len(script.splitlines()) <= MAX_SCRIPT_LINES
    imported = re.findall(r"^(?:import|from) (\w+)", script, flags=re.MULTILINE)
    assert not {"conformance", "reference", "exporters", "reports"} & set(imported)
    compile(script, "repro.py", "exec")
    return script


# --- lane ids and refusals --------------------------------------------------------------------------------------


class TestBadInput:
    def test_no_lane(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert repro([], capsys)[2] == "error: repro: give a LANE_ID (or --all-distinct RESULTS)\n"

    def test_lane_without_out(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert repro(["a/b/c"], capsys)[2] == "error: repro: LANE_ID needs --out DIR\n"

    def test_all_distinct_without_out_root(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, _, err = repro(["--all-distinct", "r.json"], capsys)
        assert (code, err) == (2, "error: repro: --all-distinct needs --out-root DIR\n")

    def test_all_distinct_with_a_lane(self, capsys: pytest.CaptureFixture[str]) -> None:
        err = repro(["a/b/c", "--all-distinct", "r.json", "--out-root", "x"], capsys)[2]
        expected = "--all-distinct takes no LANE_ID, --out, --results or --suite (it reads every lane of RESULTS)"
        assert err == f"error: repro: {expected}\n"

    def test_malformed_lane_id(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, _, err = repro(["clip", "--out", str(tmp_path / "out")], capsys)
        assert code == 2
        assert err == (
            "error: lane id 'clip': expected CASE/EXPORTER/RUNTIME or SUITE/CASE/EXPORTER/RUNTIME "
            "(the id of a lane in results.json)\n"
        )

    def test_out_is_a_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        out = tmp_path / "results.json"
        out.write_text("{}")
        code, _, err = repro(["clip/onnx-native/ort-cpu", "--out", str(out)], capsys)
        assert (code, err) == (2, f"error: --out {out}: is a file; repro writes a new folder and never overwrites\n")
        assert out.read_text() == "{}"

    def test_out_is_a_folder_with_files(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        (tmp_path / "keep.txt").write_text("mine")
        code, _, err = repro(["clip/onnx-native/ort-cpu", "--out", str(tmp_path)], capsys)
        expected = f"error: --out {tmp_path}: the folder is not empty; repro writes a new folder and never overwrites\n"
        assert (code, err) == (2, expected)
        assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]

    def test_out_is_a_link(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        code, _, err = repro(["clip/onnx-native/ort-cpu", "--out", str(tmp_path / "link")], capsys)
        expected = f"--out {tmp_path / 'link'}: a symbolic link; repro writes a new folder, never through a link"
        assert (code, err) == (2, f"error: {expected}\n")

    def test_results_without_the_lane(self, tmp_path: Path, suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
        results = results_file(tmp_path, suite, [("clip/onnx-native/ort-cpu", "fail")])
        code, _, err = repro(["clip/onnx-native/ort-cpx", "--results", str(results), "--out", "o"], capsys)
        assert code == 2
        assert (
            err == f"error: {results}: no lane 'clip/onnx-native/ort-cpx' (did you mean 'clip/onnx-native/ort-cpu'?)\n"
        )

    def test_a_lane_that_passed(self, tmp_path: Path, suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
        results = results_file(tmp_path, suite, [("plain/onnx-native/ort-cpu", "pass")])
        code, _, err = repro(["plain/onnx-native/ort-cpu", "--results", str(results), "--out", "o"], capsys)
        assert code == 2
        assert err == (
            f"error: {results}: lane 'plain/onnx-native/ort-cpu' has status 'pass', not fail, error or xfail: "
            "it does not diverge, so there is nothing to reproduce\n"
        )

    def test_unknown_lane_of_a_suite_suggests_the_matrix_variant(self, tmp_path: Path) -> None:
        path = tmp_path / "m.toml"
        path.write_text(SUITE.replace('id = "plain"', 'id = "plain"\nmatrix = { "inputs.batch" = [1, 2] }'))
        with pytest.raises(BadInputError) as info:
            from_suite("plain/onnx-native/ort-cpu", str(path))
        assert str(info.value) == (
            f"unknown lane 'plain/onnx-native/ort-cpu' in suite '{path}' (did you mean 'plain[1]/onnx-native/ort-cpu'?)"
        )

    def test_runtime_without_a_script_template(
        self, suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = repro([f"{suite}/plain/none/reference", "--out", str(tmp_path / "o")], capsys)
        assert code == 2
        assert err == (
            "error: runtime 'reference' has no repro script template: repro writes scripts for ONNX Runtime "
            "(ort-*), OpenVINO (openvino-cpu*) and tract runtimes\n"
        )
        assert not (tmp_path / "o").exists()

    def test_lane_ids_with_and_without_the_suite(self, suite: Path, tmp_path: Path) -> None:
        with_suite = from_suite(f"{suite}/clip/onnx-native/ort-cpu", None)
        named = from_suite("clip/onnx-native/ort-cpu", str(suite))
        assert (with_suite.id, with_suite.suite, named.id) == ("clip/onnx-native/ort-cpu", str(suite), named.id)
        results = results_file(tmp_path, suite, [("clip/onnx-native/ort-cpu", "xfail")])
        recorded = from_results(f"{suite}/clip/onnx-native/ort-cpu", load_document(results), results)
        assert (recorded.case.id, recorded.found) == ("clip", f"recorded as xfail in {results}")


# --- minimisation, on a model of a divergence ---------------------------------------------------------------------


def fake_run(needs_clip: bool = True, min_steps: int = 2) -> Callable[[Variant], Trial]:
    """A runtime that errors ("boom 12") while clip is set and T >= min_steps, and passes otherwise."""

    def run(variant: Variant) -> Trial:
        case = variant.case
        diverges = (case.lstm.clip is not None or not needs_clip) and case.inputs.seq_len >= min_steps
        return Trial(variant, "error" if diverges else "pass", f"boom {case.inputs.batch}" if diverges else "")

    return run


class TestMinimise:
    @pytest.fixture
    def big(self, tmp_path: Path) -> Variant:
        path = tmp_path / "big.toml"
        path.write_text(
            SUITE
            + textwrap.dedent("""
            [[case]]
            id = "big"
            inputs = { seq_len = 7, batch = 4, initial_states = true, sequence_lens = "mixed" }
            [case.model]
            input_size = 6
            hidden_size = 8
            clip = 0.5
            num_layers = 2
            direction = "bidirectional"
            peepholes = true
            input_forget = 1
            """)
        )
        [case] = [c for c in load_suite(path).cases if c.id == "big"]
        return Variant(case, "onnx-native")

    def test_every_feature_the_divergence_does_not_need_goes(self, big: Variant) -> None:
        run = fake_run()
        found = minimise(run(big), run)
        case = found.trial.variant.case
        lstm = case.lstm
        assert (lstm.num_layers, lstm.direction, lstm.peepholes, lstm.input_forget, lstm.clip) == (
            1,
            "forward",
            False,
            0,
            0.5,
        )
        assert (case.inputs.seq_len, case.inputs.batch, lstm.input_size, lstm.hidden_size) == (2, 1, 1, 1)
        assert (case.inputs.initial_states, case.inputs.sequence_lens, case.weights.recipe) == (
            False,
            "full",
            "torch-default",
        )
        assert found.trial.variant.as_one_node
        assert found.controls == (Step("clip 0.5 removed", "passes"), Step("T 2 -> 1", "passes"))
        assert [s.what for s in found.steps][:3] == [
            "num_layers 2 -> 1",
            "one bare LSTM node (the Transpose and Reshape the export puts around it removed)",
            "direction bidirectional -> forward",
        ]

    def test_a_different_error_is_not_the_same_divergence(self, big: Variant) -> None:
        def run(variant: Variant) -> Trial:
            if variant.case.lstm.num_layers == 1:
                return Trial(variant, "error", "another failure")
            return fake_run()(variant)

        found = minimise(run(big), run)
        assert found.trial.variant.case.lstm.num_layers == 2
        assert Step("num_layers 2 -> 1", "errors: another failure") in found.controls

    def test_error_signatures_ignore_numbers_and_quoted_names(self) -> None:
        a = normalised('Evaluating #6 "lstm0" Scan: Clashing resolution. 1=1 != 4.')
        b = normalised('Evaluating #2 "lstm" Scan: Clashing resolution. 1=1 != 2.')
        assert a == b == "evaluating #N Q scan: clashing resolution. N=N != N."
        assert normalised("Unknown activation function: softsign") != normalised("Unknown activation function: elu")

    def test_sequence_lengths_written_out_and_shrunk(self, big: Variant) -> None:
        explicit = written_out(big, np.array([7, 3, 5, 1], dtype=np.int32))
        assert explicit.case.inputs.sequence_lens == (7, 3, 5, 1)

        def run(variant: Variant) -> Trial:  # diverges while some sequence is shorter than T
            inputs = variant.case.inputs
            lens = inputs.sequence_lens
            short = isinstance(lens, tuple) and min(lens) < inputs.seq_len
            return Trial(variant, "error" if short else "pass", "short")

        found = minimise(run(explicit), run)
        inputs = found.trial.variant.case.inputs
        assert (inputs.seq_len, inputs.batch, inputs.sequence_lens) == (2, 1, (1,))


# --- the worker ---------------------------------------------------------------------------------------------------


class PanicSession(ReferenceSession):
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        os.write(2, b"thread '<unnamed>' panicked at src/ops/rec/common.rs:189:\nUndeterminedSymbol(batch)\n")
        os.abort()  # as tract does on a symbolic batch


class PanicRuntime(CrashRuntime):
    """Prints a Rust-like panic on the process's stderr and aborts."""

    def session(self, model: Model, weights: AnyWeights) -> ReferenceSession:
        return PanicSession(model, weights)


class TestWorker:
    CONFIG = LSTMConfig(input_size=2, hidden_size=3)

    def job(self, runtime_id: str) -> RunJob:
        feeds = {"X": np.zeros((2, 1, 2), np.float32)}
        return RunJob(runtime_id, "unused.onnx", feeds, self.CONFIG, generate(self.CONFIG, seed=0))

    @pytest.mark.usefixtures("fake_runtimes")
    def test_a_runtime_that_kills_its_process_costs_one_run(self) -> None:
        with Worker(timeout=60) as worker:
            assert worker.run(self.job("crash")).error == "crash killed the process (exit code 3)"
            reply = worker.run(self.job("run-fails"))
            assert reply.error == "run-fails failed to run: ValueError: bad input shape"
            assert worker.run(self.job("open-fails")).error == (
                "open-fails could not load the model: RuntimeError: corrupt model"
            )

    def test_what_a_runtime_printed_before_it_aborted(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONFORMANCE_EXTRA_RUNTIMES", "panic=tests.conformance.test_repro:PanicRuntime")
        with Worker(timeout=60) as worker:
            reply = worker.run(self.job("panic"))
        assert reply.error == "panic killed the process (signal SIGABRT): UndeterminedSymbol(batch)"

    @pytest.mark.usefixtures("fake_runtimes")
    def test_a_runtime_that_hangs_is_stopped(self) -> None:
        with Worker(timeout=1) as worker:
            assert worker.run(self.job("hang")).error == "hang did not finish within 1 s; stopped"


# --- scripts and models -----------------------------------------------------------------------------------------


class TestScripts:
    def test_one_template_per_runtime_family(self) -> None:
        from conformance.runtimes.onnxruntime_runtime import OrtRuntime
        from conformance.runtimes.openvino_runtime import OpenVinoRuntime
        from conformance.runtimes.ort_plugin_ep import EpLibrary, PluginEpRuntime
        from conformance.runtimes.ort_plugin_ep import Variant as EpVariant
        from conformance.runtimes.tract_runtime import TractRuntime

        library = EpLibrary("onnxruntime-ep-x", Path("/opt/libx.so"), ("XExecutionProvider",), "--ep-library X=...")
        runtimes = {
            "ort": OrtRuntime("CPUExecutionProvider", "noopt"),
            "ov": OpenVinoRuntime("f32"),
            "ov-auto": OpenVinoRuntime("auto"),
            "tract": TractRuntime(),
            "ep": PluginEpRuntime(library, "XExecutionProvider", EpVariant("", {"k": "v"})),
        }
        inputs = {"X": np.zeros((2, 1, 3), np.float32), "sequence_lens": np.ones(1, np.int32)}
        texts = {
            key: render(template(rt), title="t", inputs=inputs, input_order=["X", "sequence_lens"],
                        output_order=["Y", "Y_h", "Y_c"])
            for key, rt in runtimes.items()
        }  # fmt: skip
        for text in texts.values():
            assert len(text.splitlines()) <= MAX_SCRIPT_LINES
            compile(text, "repro.py", "exec")
        assert "GraphOptimizationLevel.ORT_DISABLE_ALL" in texts["ort"]
        assert '"CPU", {"INFERENCE_PRECISION_HINT": "f32"})' in texts["ov"]
        assert 'compile_model("model.onnx", "CPU")  # the CPU\'s default precision' in texts["ov-auto"]
        assert 'FACTS = {"X": "2,1,3,f32", "sequence_lens": "1,i32"}' in texts["tract"]
        assert 'register_execution_provider_library("onnxruntime-ep-x", "/opt/libx.so")' in texts["ep"]
        assert 'options.add_provider_for_devices(devices, {"k": "v"})' in texts["ep"]

    def test_no_template_for_torch(self) -> None:
        from conformance.runtimes.torch_runtime import TorchRuntime

        with pytest.raises(NoTemplateError, match="runtime 'torch-cpu' has no repro script template"):
            template(TorchRuntime("cpu"))

    def test_script_text(self) -> None:
        script = Script(("pkg",), ("import pkg",), ("    outputs = pkg.run()",), "pkg")
        text = render(script, title="t", inputs={}, input_order=[], output_order=["Y"])
        assert text.splitlines()[:2] == ["# t", "# Run in this folder: python repro.py   (needs only pkg and numpy)"]

    @pytest.mark.parametrize("layout", [0, 1])
    def test_one_node_model_is_the_operator(self, layout: int) -> None:
        import onnx

        from reference.lstm import lstm

        config = LSTMConfig(input_size=3, hidden_size=2, batch_first=bool(layout), direction="bidirectional")
        weights = generate(config, seed=3)
        options = ExportOptions(initial_states=True, sequence_lens=True, layout=layout, opset=14)
        model = one_node_model(config, weights, options)
        assert [n.op_type for n in model.graph.node] == ["LSTM"]
        assert [i.name for i in model.graph.input] == ["X", "sequence_lens", "initial_h", "initial_c"]
        assert [o.name for o in model.graph.output] == ["Y", "Y_h", "Y_c"]
        onnx.checker.check_model(model, full_check=True)
        y = model.graph.output[0].type.tensor_type.shape.dim
        assert [d.dim_param or d.dim_value for d in y] == (["batch", "seq", 2, 2] if layout else ["seq", 2, "batch", 2])
        if layout == 0:  # ONNX Runtime runs layout 0 only
            import onnxruntime as ort

            rng = np.random.default_rng(0)
            x = rng.uniform(-1, 1, (4, 2, 3)).astype(np.float32)
            h0 = rng.uniform(-1, 1, (2, 2, 2)).astype(np.float32)
            lens = np.array([4, 2], np.int32)
            feeds = {"X": x, "sequence_lens": lens, "initial_h": h0, "initial_c": h0}
            session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            got = session.run(None, feeds)
            layer = weights.layers[0]
            want = lstm(x, layer.W, layer.R, layer.B, lens, h0, h0, direction="bidirectional")
            for a, e in zip(got, want, strict=True):
                np.testing.assert_allclose(a, e, atol=2e-6, rtol=2e-5)


class TestDistinct:
    def test_families(self) -> None:
        ids = ("openvino-cpu", "openvino-cpu-auto", "ort-openvino-auto", "ort-cpu-noopt", "tract")
        assert [family(r) for r in ids] == ["openvino", "openvino", "ort-openvino", "ort", "tract"]

    def test_groups_split_by_how_lanes_diverged(self, suite: Path, tmp_path: Path) -> None:
        records = [
            lane_result(suite="s", case="clip[a]", exporter="onnx-native", runtime="tract", status="fail", message="x"),
            lane_result(
                suite="s",
                case="clip[b]",
                exporter="onnx-native",
                runtime="tract",
                status="error",
                message='tract failed: "lstm0" 1=1 != 4',
            ),
            lane_result(
                suite="s",
                case="clip[c]",
                exporter="onnx-native",
                runtime="tract",
                status="error",
                message='tract failed: "lstm0" 1=1 != 2',
            ),
            lane_result(suite="s", case="clip[d]", exporter="onnx-native", runtime="tract", status="pass", message="x"),
        ]
        found = groups(ResultDocument.of(records, run={}, environment={}), None)
        assert {key: [r.case for r in lanes] for key, lanes in found.items()} == {
            ("tract", "clip", "fail"): ["clip[a]"],
            ("tract", "clip", "error: tract failed: Q N=N != N"): ["clip[b]", "clip[c]"],
        }
        assert how(records[1]) == "error: tract failed: Q N=N != N"

    def test_folder_names_follow_the_minimal_model(self, suite: Path) -> None:
        cases = {c.id: c for c in load_suite(suite).cases}
        seq = Trial(Variant(cases["sequence-lens"], "onnx-native"), "fail", "", feeds={"sequence_lens": np.ones(3)})
        plain = Trial(Variant(cases["plain"], "onnx-native"), "error", "")
        assert folder_name("openvino", seq, []) == "openvino-sequence-lens"
        assert folder_name("openvino", seq, ["openvino-sequence-lens"]) == "openvino-sequence-lens-2"
        assert folder_name("tract", plain, []) == "tract-plain-lstm"


# --- end to end, on real runtimes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(suite: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repro folder of ONNX Runtime CPU's clip lane."""
    out = tmp_path_factory.mktemp("ort") / "ort-clip"
    assert cli.main(["repro", "clip/onnx-native/ort-cpu", "--suite", str(suite), "--out", str(out)]) == 0
    return out


class TestOrtCpu:
    """ONNX Runtime's CPU EP reads ``clip`` as the gate pre-activations only (reference/SEMANTICS.md)."""

    def test_files(self, folder: Path) -> None:
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["model.onnx", "inputs.npz", "expected.npz", "actual.npz", "repro.py", "versions.json", "README.md"]
        )
        assert sum(p.stat().st_size for p in folder.iterdir()) < 20_000

    def test_the_model_is_one_small_lstm_node_with_clip(self, folder: Path) -> None:
        import onnx

        model = onnx.load(str(folder / "model.onnx"))
        [node] = model.graph.node
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert (node.op_type, attributes["clip"], attributes["hidden_size"]) == ("LSTM", 0.5, 1)
        steps, batch, features = dict(np.load(folder / "inputs.npz"))["X"].shape
        assert (steps <= 3, batch, features) == (True, 1, 1)

    def test_repro_script_prints_the_difference(self, folder: Path) -> None:
        assert_self_contained(folder)
        done = run_script(folder)
        assert done.returncode == 0, done.stderr
        printed = greatest(done.stdout)
        expected, actual = np.load(folder / "expected.npz"), np.load(folder / "actual.npz")
        assert list(printed) == ["Y", "Y_h", "Y_c"] == list(expected.files)
        for name, value in printed.items():
            assert value == pytest.approx(np.abs(actual[name] - expected[name]).max(), rel=1e-2)
        assert max(printed.values()) > 1e-3  # far outside float32's tolerance (2e-6 + 2e-5 |e|)

    def test_readme(self, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
        import onnx

        readme = (folder / "README.md").read_text()
        assert readme.startswith("# ort-cpu: `LSTM` with `clip=0.5` computes wrong values (Y")
        clip = onnx.defs.get_schema("LSTM").attributes["clip"].description
        assert f"> **`clip`** (attribute): {clip}" in readme
        assert "- clip 0.5 removed: passes" in readme
        assert "\n```\npip install onnxruntime==" in readme
        printed = run_script(folder).stdout.strip()
        assert f"```\n{printed}\n```" in readme

    def test_versions(self, folder: Path) -> None:
        import onnxruntime

        info = json.loads((folder / "versions.json").read_text())
        assert info["packages"] == {"onnxruntime": onnxruntime.__version__}
        assert {"onnx_opset", "python", "numpy", "cpu", "platform", "runtime_settings"} <= set(info)

    def test_from_results(self, suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        results = results_file(tmp_path, suite, [("clip/onnx-native/ort-cpu-noopt", "xfail")])
        out = tmp_path / "noopt"
        code, printed, _ = repro(
            ["clip/onnx-native/ort-cpu-noopt", "--results", str(results), "--out", str(out)], capsys
        )
        assert code == 0
        assert printed.startswith(f"wrote {out}/: ort-cpu-noopt: LSTM with clip=0.5 computes wrong values")
        assert "ORT_DISABLE_ALL" in assert_self_contained(out)
        assert f"(recorded as xfail in {results})" in (out / "README.md").read_text()

    def test_a_lane_that_passes_now(self, suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, printed, _ = repro(
            ["plain/onnx-native/ort-cpu", "--suite", str(suite), "--out", str(tmp_path / "o")], capsys
        )
        assert code == 1
        assert printed.startswith(
            "lane 'plain/onnx-native/ort-cpu' does not diverge now: it passes (greatest difference "
        )
        assert not (tmp_path / "o").exists()

    def test_all_distinct(self, suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        lanes = [
            ("clip/onnx-native/ort-cpu", "fail"),
            ("clip/onnx-native/ort-cpu-noopt", "fail"),
            ("plain/onnx-native/ort-cpu", "pass"),
            ("plain/none/reference", "fail"),
        ]
        results = results_file(tmp_path, suite, lanes)
        root = tmp_path / "divergences"
        code, printed, _ = repro(["--all-distinct", str(results), "--out-root", str(root)], capsys)
        assert code == 0
        assert sorted(p.name for p in root.iterdir()) == ["INDEX.md", "ort-clip"]
        assert printed.startswith("ort-clip: ort-cpu: LSTM with clip=0.5 computes wrong values")
        index = (root / "INDEX.md").read_text()
        assert "| [ort-clip](ort-clip/README.md) | ort-cpu: `LSTM` with `clip=0.5`" in index
        assert "`clip/onnx-native/ort-cpu`, `clip/onnx-native/ort-cpu-noopt` |" in index


@needs_openvino
def test_openvino_ignores_sequence_lens(suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "ov"
    assert cli.main(["repro", f"{suite}/sequence-lens/onnx-native/openvino-cpu", "--out", str(out)]) == 0
    readme = (out / "README.md").read_text()
    assert readme.startswith(
        "# openvino-cpu: `LSTM` with `sequence_lens` gives the outputs of the same model without `sequence_lens`"
    )
    assert "- sequence_lens removed: passes" in readme
    assert 'compile_model("model.onnx", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})' in (assert_self_contained(out))
    done = run_script(out)
    assert done.returncode == 0, done.stderr
    assert max(greatest(done.stdout).values()) > 1e-2


@needs_tract
class TestTract:
    def test_reverse_computed_as_forward(self, suite: Path, tmp_path: Path) -> None:
        out = tmp_path / "tract"
        assert cli.main(["repro", f"{suite}/reverse/onnx-native/tract", "--out", str(out)]) == 0
        readme = (out / "README.md").read_text()
        assert "gives the outputs of the same model with `direction=forward` instead of reverse" in readme
        assert 'FACTS = {"X": "' in assert_self_contained(out)
        done = run_script(out)
        assert done.returncode == 0, done.stderr
        assert max(greatest(done.stdout).values()) > 1e-2

    def test_an_error_is_what_the_script_prints(self, suite: Path, tmp_path: Path) -> None:
        out = tmp_path / "tract-error"
        assert cli.main(["repro", f"{suite}/plain/onnx-native/tract", "--out", str(out)]) == 0
        assert not (out / "actual.npz").exists()
        done = run_script(out)
        assert done.returncode == 1
        assert done.stdout == ""
        assert done.stderr.startswith("tract raised TractError: ")
        assert "Clashing resolution for expression" in done.stderr
        assert "tract: `LSTM` without any optional input or attribute fails: " in (out / "README.md").read_text()


def test_openvino_plugin_ep_refuses_an_activation(tmp_path: Path, suite: Path) -> None:
    from conformance.runtimes import get_runtime

    try:
        runtime = get_runtime("ort-openvino")
    except BadInputError as exc:
        pytest.skip(f"ort-openvino: {exc}")
    reason = runtime.unavailable()
    if reason:
        pytest.skip(f"ort-openvino: {reason}")
    path = tmp_path / "act.toml"
    path.write_text(SUITE + '\n[[case]]\nid = "softsign"\nmodel = { input_size = 3, hidden_size = 4, '
                    'activations = ["Sigmoid", "Softsign", "Tanh"] }\n')  # fmt: skip
    out = tmp_path / "ep"
    assert cli.main(["repro", f"{path}/softsign/onnx-native/ort-openvino", "--out", str(out)]) == 0
    script = assert_self_contained(out)
    assert "import onnxruntime_ep_openvino" in script
    done = run_script(out)
    assert done.returncode == 1
    assert done.stderr.startswith("onnxruntime with OpenVINOExecutionProvider raised ")
    assert "Unknown activation function: softsign" in done.stderr
