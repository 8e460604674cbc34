"""Versioned runtimes (``ort-cpu@1.24.4``): ids, planning, the environment cache, the worker, releases side by side.

The worker is tested for real against the installed onnxruntime (and OpenVINO, when installed): a versioned
runtime pointed at this interpreter runs the worker script in a process of its own. Environment creation is
tested with fake installers; one slow test really installs an older onnxruntime from the package index.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
from rich.console import Console

from conformance import cli
from conformance.cases import load_suite
from conformance.changes import HEADROOM, NEW_FAILURE, compare_runs
from conformance.compare import compare_output
from conformance.diffs import OutputDiff, Tolerance
from conformance.lane import Lane, LaneContext, run_lane
from conformance.planning import load_cases, match_ids, plan
from conformance.records import Result, ResultDocument, lane_result
from conformance.runtimes import get_runtime, is_nameable, parse_versioned, runtime_ids, unknown_runtime_hint, versioned
from conformance.runtimes import versioned_env as env
from conformance.runtimes.onnxruntime_runtime import OrtRuntime
from conformance.runtimes.versioned import (
    VERSIONED_BASES,
    RemoteError,
    VersionedIdError,
    VersionedRuntime,
    WorkerError,
)
from conformance.runtimes.versioned_env import Environment, EnvironmentSpec, InstallError, provision
from conformance.timing import measure
from exporters.base import Artifact, ExportOptions, describe_error
from exporters.registry import export
from reference.config import LSTMConfig
from reference.weights import generate
from reports.console import summary
from tests.conformance.case_files import load

ORT = onnxruntime.__version__
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
PY_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"
LISTING = "ort-cpu, ort-cpu-noopt, openvino-cpu, openvino-cpu-auto"
CONFIG = LSTMConfig(input_size=3, hidden_size=4, direction="bidirectional")
NOT_FOUND = (
    f"cannot install onnxruntime==9.9.9 for Python {PY}: ERROR: No matching distribution found for onnxruntime==9.9.9"
)


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No runtime object, worker or remembered failure carries over from another test."""
    monkeypatch.setattr(versioned, "_RUNTIMES", {})
    monkeypatch.setattr(env, "_failed", {})
    yield
    versioned.stop_workers()


def here(base: str = "ort-cpu", version: str = ORT) -> VersionedRuntime:
    """A versioned runtime whose environment is this interpreter: the real worker, no installation."""
    return VersionedRuntime(VERSIONED_BASES[base], version, environment=Environment(Path(sys.executable)))


@pytest.fixture(scope="module")
def model() -> tuple[Artifact, Any, dict[str, np.ndarray]]:
    weights = generate(CONFIG, seed=1)
    artifact = export(CONFIG, weights, "onnx-native", ExportOptions(example_seq_len=5, example_batch=2))
    assert artifact.ok, artifact.reason
    feeds = {"X": np.random.default_rng(0).uniform(-1, 1, (5, 2, 3)).astype(np.float32)}
    return artifact, weights, feeds


class FakeInstaller:
    """Makes an "environment" whose Python is this interpreter (a link), counting the calls."""

    def __init__(self, *, delay: float = 0.0, error: str | None = None) -> None:
        self.calls: list[Sequence[str]] = []
        self.delay, self.error = delay, error

    def __call__(self, target: Path, requirements: Sequence[str]) -> None:
        self.calls.append(list(requirements))
        time.sleep(self.delay)
        if self.error:
            raise InstallError(self.error)
        python = env.python_of(target)
        python.parent.mkdir(parents=True)
        python.symlink_to(sys.executable)


# --- ids --------------------------------------------------------------------------------------------------


class TestIds:
    def test_id_at_version(self) -> None:
        base, version = parse_versioned("ort-cpu@1.24.4")
        assert (base.id, base.package, version) == ("ort-cpu", "onnxruntime", "1.24.4")
        assert parse_versioned("openvino-cpu-auto@2025.4.0")[0].options == {"precision": "auto"}
        assert parse_versioned("ort-cpu-noopt@1.25.0rc1")[1] == "1.25.0rc1"

    @pytest.mark.parametrize(
        ("runtime_id", "message"),
        [
            ("ort-cpu@", "runtime 'ort-cpu@': no version after '@'; give a release, e.g. ort-cpu@1.24.4"),
            (
                "ort-cpu@latest!",
                "runtime 'ort-cpu@latest!': 'latest!' is not a version; give a release, e.g. ort-cpu@1.24.4",
            ),
            (
                "openvino-cpu@2025 .1",
                "runtime 'openvino-cpu@2025 .1': '2025 .1' is not a version; give a release, "
                "e.g. openvino-cpu@2025.4.0",
            ),
            ("reference@1.0", f"runtime 'reference@1.0': reference takes no version; the runtimes that do: {LISTING}"),
            ("torch-cpu@2.1", f"runtime 'torch-cpu@2.1': torch-cpu takes no version; the runtimes that do: {LISTING}"),
            (
                "ort-cpuu@1.2",
                "runtime 'ort-cpuu@1.2': unknown runtime 'ort-cpuu' (did you mean 'ort-cpu'?); "
                f"the runtimes that take a version: {LISTING}",
            ),
        ],
    )
    def test_bad_ids_name_what_is_wrong(self, runtime_id: str, message: str) -> None:
        with pytest.raises(VersionedIdError) as info:
            get_runtime(runtime_id)
        assert str(info.value) == message

    def test_get_runtime_builds_one_object_per_id_and_installs_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(env, "provision", lambda *a, **k: pytest.fail("nothing is installed to build it"))
        runtime = get_runtime("ort-cpu@1.24.4")
        assert (runtime.id, runtime.consumes, runtime.required_provider) == ("ort-cpu@1.24.4", "onnx", None)
        assert get_runtime("ort-cpu@1.24.4") is runtime

    def test_case_files_may_name_versioned_ids(self) -> None:
        assert is_nameable("ort-cpu@1.24.4") and is_nameable("openvino-cpu-auto@2025.4.0")
        assert is_nameable("ort-cpu@1.2*") and is_nameable("ort-cpu*")  # globs, for expectations
        assert not is_nameable("ort-cpu@latest!") and not is_nameable("reference@1.0")
        assert (
            unknown_runtime_hint("reference@1.0") == f" (reference takes no version; the runtimes that do: {LISTING})"
        )

    def test_a_case_file_with_a_versioned_runtime(self, tmp_path: Path) -> None:
        suite = load(tmp_path, '[[case]]\nid = "c"\nruntimes = ["ort-cpu", "ort-cpu@1.24.4"]\n')
        assert suite.cases[0].runtimes == ("ort-cpu", "ort-cpu@1.24.4")

    def test_expectations_by_glob_cover_the_releases(self) -> None:
        case = next(c for c in load_suite("full").cases if c.id == "layout-1[forward-false]")
        expected = case.expectation("onnx-native", "ort-cpu")
        assert expected is not None and expected.runtime == ("ort-cpu*", "ort-cuda")
        assert case.expectation("onnx-native", "ort-cpu@1.24.4") == expected

    @pytest.mark.parametrize(
        ("argv", "line"),
        [
            (["run", "--runtime", "ort-cpu@latest!"],
             "error: runtime 'ort-cpu@latest!': 'latest!' is not a version; give a release, e.g. ort-cpu@1.24.4"),
            (["run", "--runtime", "ort-cpu", "--runtime", "reference@1.0"],
             f"error: runtime 'reference@1.0': reference takes no version; the runtimes that do: {LISTING}"),
        ],
    )  # fmt: skip
    def test_bad_input_on_the_command_line(
        self, argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert cli.main(argv) == 2
        assert capsys.readouterr().err == line + "\n"

    def test_check_refuses_a_bad_version(
        self, model: tuple[Artifact, Any, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert cli.main(["check", str(model[0].path), "--runtime", "torch-cpu@2.1"]) == 2
        assert capsys.readouterr().err == (
            f"error: runtime 'torch-cpu@2.1': torch-cpu takes no version; the runtimes that do: {LISTING}\n"
        )


# --- planning ---------------------------------------------------------------------------------------------


class TestPlanning:
    def test_a_versioned_id_joins_every_case_that_lists_its_base(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(env, "provision", lambda *a, **k: pytest.fail("planning installs nothing"))
        selected = match_ids(["ort-cpu", "ort-cpu@1.24.4", "ort-cpu@1.9.0"], runtime_ids(), "runtime")
        assert selected == {"ort-cpu", "ort-cpu@1.24.4", "ort-cpu@1.9.0"}
        lanes = plan(load_cases(["smoke"], "forward"), selected)
        assert [(lane.exporter, lane.runtime) for lane in lanes] == [
            (exporter, runtime)
            for runtime in ("ort-cpu", "ort-cpu@1.9.0", "ort-cpu@1.24.4")  # after the base, in release order
            for exporter in ("onnx-native", "torch-script", "torch-dynamo")
        ]

    def test_alone_it_replaces_nothing_else(self) -> None:
        lanes = plan(load_cases(["smoke"], "forward"), match_ids(["ort-cpu-noopt@1.24.4"], runtime_ids(), "runtime"))
        assert lanes == []  # smoke lists ort-cpu, not ort-cpu-noopt

    def test_a_case_file_names_it(self, tmp_path: Path) -> None:
        load(tmp_path, '[[case]]\nid = "c"\nexporters = ["onnx-native"]\nruntimes = ["ort-cpu@1.24.4"]\n')
        lanes = plan(load_cases([str(tmp_path / "t.toml")], None))
        assert [lane.id for lane in lanes] == ["c/onnx-native/ort-cpu@1.24.4"]

    def test_a_bad_version_on_the_command_line(self) -> None:
        with pytest.raises(VersionedIdError, match=r"^runtime 'ort-cpu@1\.2\*': '1\.2\*' is not a version"):
            match_ids(["ort-cpu@1.2*"], runtime_ids(), "runtime")


# --- the environment cache --------------------------------------------------------------------------------


class TestEnvironments:
    def test_created_once_then_reused(self, tmp_path: Path) -> None:
        installer = FakeInstaller()
        spec = EnvironmentSpec("onnxruntime", "1.24.4")
        first = provision(spec, root=tmp_path, installer=installer)
        again = provision(spec, root=tmp_path, installer=installer)
        assert first == again == Environment(tmp_path / f"onnxruntime-1.24.4-{PY_TAG}" / "bin" / "python", first.root)
        assert installer.calls == [["onnxruntime==1.24.4", "numpy"]]
        marker = json.loads((tmp_path / f"onnxruntime-1.24.4-{PY_TAG}" / env.MARKER).read_text())
        assert marker["requirements"] == ["onnxruntime==1.24.4", "numpy"] and marker["python"] == PY
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            f".onnxruntime-1.24.4-{PY_TAG}.lock",
            f"onnxruntime-1.24.4-{PY_TAG}",
        ]

    def test_concurrent_creators_make_it_once(self, tmp_path: Path) -> None:
        installer = FakeInstaller(delay=0.3)
        spec = EnvironmentSpec("openvino", "2025.4.0")
        found: list[Environment] = []
        threads = [
            threading.Thread(target=lambda: found.append(provision(spec, root=tmp_path, installer=installer)))
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(installer.calls) == 1 and len(set(found)) == 1 and len(found) == 3

    def test_a_creator_that_loses_the_race_keeps_the_winners(self, tmp_path: Path) -> None:
        spec = EnvironmentSpec("onnxruntime", "1.24.4")
        final = tmp_path / spec.name

        def racing(target: Path, requirements: Sequence[str]) -> None:
            FakeInstaller()(final, requirements)  # another host finished first, under our feet
            (final / env.MARKER).write_text("{}")
            FakeInstaller()(target, requirements)

        assert provision(spec, root=tmp_path, installer=racing).root == final
        assert sorted(p.name for p in tmp_path.iterdir()) == [f".{spec.name}.lock", spec.name]  # no leftovers

    def test_a_folder_without_its_marker_is_rebuilt(self, tmp_path: Path) -> None:
        spec = EnvironmentSpec("onnxruntime", "1.24.4")
        (tmp_path / spec.name / "bin").mkdir(parents=True)  # killed half-way, by hand
        installer = FakeInstaller()
        assert provision(spec, root=tmp_path, installer=installer).root == tmp_path / spec.name
        assert len(installer.calls) == 1

    def test_a_failure_is_remembered_briefly(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        spec = EnvironmentSpec("onnxruntime", "9.9.9")
        failing = FakeInstaller(error=NOT_FOUND)
        for _ in range(3):
            with pytest.raises(InstallError) as info:
                provision(spec, root=tmp_path, installer=failing)
            assert str(info.value) == NOT_FOUND
        assert len(failing.calls) == 1
        monkeypatch.setattr(env, "_failed", {})  # another process reads the file
        with pytest.raises(InstallError, match="No matching distribution"):
            provision(spec, root=tmp_path, installer=failing)
        assert len(failing.calls) == 1
        monkeypatch.setattr(env, "FAILURE_TTL_S", 0.0)
        assert provision(spec, root=tmp_path, installer=FakeInstaller()).root == tmp_path / spec.name
        assert not (tmp_path / f"{spec.name}.failed.json").exists()

    @pytest.mark.parametrize(
        ("package", "version", "numpy"),
        [("onnxruntime", "1.16.3", "numpy<2"), ("onnxruntime", "1.18.1", "numpy<2"), ("onnxruntime", "1.19.0", "numpy"),
         ("onnxruntime", "1.24.4", "numpy"), ("openvino", "2024.1.0", "numpy<2"), ("openvino", "2025.4.0", "numpy")],
    )  # fmt: skip
    def test_numpy_that_the_release_works_with(self, package: str, version: str, numpy: str) -> None:
        assert EnvironmentSpec(package, version).requirements() == [f"{package}=={version}", numpy]

    def test_installer_commands(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        WHAT = f"onnxruntime==1.24.4 for Python {PY}"
        commands: list[list[str]] = []
        monkeypatch.setattr(env, "_call", lambda command, what, env=None: commands.append([*command, f"({what})"]))
        monkeypatch.setattr(shutil, "which", lambda name: None)
        env.install(tmp_path / "e", ["onnxruntime==1.24.4", "numpy"])
        python = str(env.python_of(tmp_path / "e"))
        assert commands == [
            [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "e"), f"({WHAT})"],
            [sys.executable, "-m", "pip", "--python", python, "install", "--disable-pip-version-check", "--no-input",
             "--quiet", "--timeout", "30", "--retries", "1", "--only-binary=:all:", "onnxruntime==1.24.4", "numpy",
             f"({WHAT})"],
        ]  # fmt: skip
        commands.clear()
        monkeypatch.setattr(shutil, "which", lambda name: "/opt/bin/uv")
        env.install(tmp_path / "e", ["onnxruntime==1.24.4", "numpy"])
        assert [c[:3] for c in commands] == [["/opt/bin/uv", "venv", "--quiet"], ["/opt/bin/uv", "pip", "install"]]

    def test_the_installers_last_error_line(self) -> None:
        pip = (
            "WARNING: Location 'file:///opt/pypi-more/simple/onnxruntime/' is ignored\n"
            "ERROR: Could not find a version that satisfies the requirement onnxruntime==9.9.9 (from versions: 1.1)\n"
            "ERROR: No matching distribution found for onnxruntime==9.9.9\n"
        )
        assert env.last_error_line(pip) == "ERROR: No matching distribution found for onnxruntime==9.9.9"
        assert env.last_error_line("WARNING: slow\nConnection refused\n") == "Connection refused"

    def test_a_failing_installer_command_gives_its_last_line(self, tmp_path: Path) -> None:
        script = "import sys; print('WARNING: x', file=sys.stderr); print('ERROR: no wheel for cp399', file=sys.stderr)"
        with pytest.raises(InstallError) as info:
            env._call([sys.executable, "-c", script + "; sys.exit(1)"], "onnxruntime==1.0")
        assert str(info.value) == "cannot install onnxruntime==1.0: ERROR: no wheel for cp399"

    def test_a_failed_install_is_a_skip_with_its_last_line(self, monkeypatch: pytest.MonkeyPatch) -> None:
        failing = FakeInstaller(error=NOT_FOUND)
        monkeypatch.setattr(env, "install", failing)
        lane = Lane(
            "smoke", next(c for c in load_suite("smoke").cases if c.id == "forward"), "torch-script", "ort-cpu@9.9.9"
        )
        first = run_lane(lane, LaneContext())
        second = run_lane(lane, LaneContext())
        assert (
            (first.status, first.message) == ("skip", f"ort-cpu@9.9.9: {NOT_FOUND}") == (second.status, second.message)
        )
        assert len(failing.calls) == 1
        (env.environments_root() / f"onnxruntime-9.9.9-{PY_TAG}.failed.json").unlink()

    def test_every_lane_of_a_run_skips_without_retrying(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The failure file, written by one process, spares the run's workers the installer."""
        root = env.environments_root()
        root.mkdir(parents=True, exist_ok=True)
        failed = root / f"onnxruntime-9.9.9-{PY_TAG}.failed.json"
        failed.write_text(json.dumps({"at": time.time(), "message": NOT_FOUND}))
        try:
            argv = ["run", "-k", "forward or lm", "--runtime", "ort-cpu@9.9.9", "--no-latency", "--out", str(tmp_path)]
            assert cli.main(argv) == 1  # nothing was checked
        finally:
            failed.unlink()
        records = json.loads((tmp_path / "results.json").read_text())["results"]
        assert len(records) == 6 and {(r["status"], r["message"]) for r in records} == {
            ("skip", f"ort-cpu@9.9.9: {NOT_FOUND}")
        }
        assert not (root / f"onnxruntime-9.9.9-{PY_TAG}").exists()


# --- the worker, for real, on the installed onnxruntime ---------------------------------------------------


class TestWorker:
    def test_same_outputs_placement_and_settings_as_in_process(self, model: tuple[Artifact, Any, Any]) -> None:
        artifact, weights, feeds = model
        runtime = here()
        assert runtime.unavailable() is None
        settings = runtime.settings()
        assert settings == {
            **OrtRuntime().settings(),
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "environment": sys.executable,
            "process": "a worker process of that environment",
        }
        remote, local = runtime.open(artifact, CONFIG, weights), OrtRuntime().open(artifact, CONFIG, weights)
        try:
            got, want = remote.run(feeds), local.run(feeds)
            assert list(got) == list(want) == ["Y", "Y_h", "Y_c"]
            for name in want:
                assert got[name].dtype == want[name].dtype and np.array_equal(got[name], want[name])
            assert remote.placement() == local.placement() != {}
            call, sync, includes = remote.timed(feeds)
            assert sync is None and includes == (
                "InferenceSession.run, inputs and outputs in host memory, in the worker process of "
                f"onnxruntime {ORT}: each call is one request over a pipe"
            )
            latency = measure(call, warmup=1, min_samples=20, max_samples=20, budget_s=10.0)
            assert latency.count == 20 and latency.median_ms > 0
        finally:
            remote.close()
            local.close()

    def test_the_noopt_variant_shares_the_worker(self, model: tuple[Artifact, Any, Any]) -> None:
        plain, noopt = here(), here("ort-cpu-noopt")
        assert plain.worker() is noopt.worker()
        assert noopt.settings()["graph_optimization_level"] == "ORT_DISABLE_ALL"
        session = noopt.open(model[0], CONFIG, model[1])
        assert set(session.run(model[2])) == {"Y", "Y_h", "Y_c"}
        session.close()

    def test_errors_keep_the_runtimes_own_type_and_message(self, tmp_path: Path) -> None:
        corrupt = tmp_path / "model.onnx"
        corrupt.write_bytes(b"not a model")
        artifact = Artifact("onnx-native", "ok", path=corrupt)
        with pytest.raises(Exception) as local:
            OrtRuntime().open(artifact, CONFIG, None)  # type: ignore[arg-type]
        with pytest.raises(RemoteError) as remote:
            here().open(artifact, CONFIG, None)  # type: ignore[arg-type]
        assert describe_error(remote.value) == describe_error(local.value)
        assert type(remote.value).__name__ == type(local.value).__name__ != "RemoteError"

    def test_a_wrong_input_fails_the_run_not_the_worker(self, model: tuple[Artifact, Any, Any]) -> None:
        runtime = here()
        session = runtime.open(model[0], CONFIG, model[1])
        with pytest.raises(RemoteError, match="X"):
            session.run({"X": np.zeros((5, 2, 7), np.float32)})
        assert set(session.run(model[2])) == {"Y", "Y_h", "Y_c"}
        session.close()

    def test_a_dead_worker_is_an_error_then_a_new_one_starts(self, model: tuple[Artifact, Any, Any]) -> None:
        runtime = here()
        session = runtime.open(model[0], CONFIG, model[1])
        worker = runtime.worker()
        os.kill(worker.process.pid, signal.SIGKILL)
        with pytest.raises(WorkerError) as info:
            session.run(model[2])
        assert str(info.value) == f"the onnxruntime {ORT} worker process died (killed by SIGKILL)"
        session.close()  # nothing to close: no exception
        assert runtime.unavailable() is None and runtime.worker() is not worker

    def test_a_release_the_environment_does_not_have(self) -> None:
        assert here(version="1.9.0").unavailable() == (
            f"ort-cpu@1.9.0: the environment {sys.executable} has onnxruntime {ORT}"
        )

    def test_a_python_that_does_not_start(self, tmp_path: Path) -> None:
        runtime = VersionedRuntime(VERSIONED_BASES["ort-cpu"], "1.24.4", environment=Environment(tmp_path / "python"))
        reason = runtime.unavailable()
        assert reason is not None and reason.startswith(f"ort-cpu@1.24.4: onnxruntime 1.24.4: {tmp_path / 'python'}")

    def test_a_worker_started_by_another_process_is_not_used(self) -> None:
        runtime = here()
        worker = runtime.worker()
        worker.owner = -1  # as a forked child sees its parent's worker
        assert runtime.worker() is not worker
        worker.owner = os.getpid()
        worker.stop()

    def test_the_worker_exits_with_its_parent(self, tmp_path: Path) -> None:
        """A lane worker killed for a timeout takes its runtime worker with it."""
        code = (
            "import sys, time; from pathlib import Path; from conformance.runtimes.versioned import "
            "VERSIONED_BASES, VersionedRuntime; from conformance.runtimes.versioned_env import Environment; "
            "e = Environment(Path(sys.executable)); "
            "r = VersionedRuntime(VERSIONED_BASES['ort-cpu'], sys.argv[1], environment=e); "
            "print(r.worker().process.pid, flush=True); time.sleep(60)"
        )  # fmt: skip
        with subprocess.Popen([sys.executable, "-c", code, ORT], stdout=subprocess.PIPE, text=True) as parent:
            assert parent.stdout is not None
            pid = int(parent.stdout.readline())
            parent.kill()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _exited(pid):
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the worker outlived its parent")

    def test_a_lane_on_a_versioned_runtime(self, monkeypatch: pytest.MonkeyPatch) -> None:
        runtime = here()
        monkeypatch.setitem(versioned._RUNTIMES, runtime.id, runtime)
        case = next(c for c in load_suite("smoke").cases if c.id == "forward")
        from conformance.lane import LatencySettings

        record = run_lane(Lane("smoke", case, "onnx-native", runtime.id), LaneContext(latency=LatencySettings(0.05)))
        assert record.id == f"forward/onnx-native/ort-cpu@{ORT}" and record.status == "pass", record.message
        assert record.settings["onnxruntime"] == ORT and record.settings["environment"] == sys.executable
        assert record.latency is not None and "worker process" in record.latency["includes"]
        assert "lstm0 (LSTM)" in record.placement

    def test_openvino_in_the_worker(self, model: tuple[Artifact, Any, Any]) -> None:
        openvino = pytest.importorskip("openvino")
        from conformance.runtimes.openvino_runtime import OpenVinoRuntime

        version = openvino.get_version().split("-")[0]
        for precision, base in (("f32", "openvino-cpu"), ("auto", "openvino-cpu-auto")):
            runtime, local = here(base, version), OpenVinoRuntime(precision)
            assert runtime.unavailable() is None
            settings = runtime.settings()
            assert {k: settings[k] for k in local.settings()} == local.settings()
            remote_session = runtime.open(model[0], CONFIG, model[1])
            local_session = local.open(model[0], CONFIG, model[1])
            got, want = remote_session.run(model[2]), local_session.run(model[2])
            assert all(np.array_equal(got[name], want[name]) for name in want)
            assert list(remote_session.placement().values()) == list(local_session.placement().values())
            call = remote_session.timed(model[2])[0]
            call()
            remote_session.close()


def _exited(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever adopted it to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


# --- releases side by side: the console summary and compare -----------------------------------------------


def diff(name: str, error: float, atol: float = 2e-6) -> OutputDiff:
    return compare_output(name, np.array([1.0 + error]), np.array([1.0]), Tolerance(atol, 0.0), time_axis=None)


def result(lane: str, status: str = "pass", error: float = 1e-7, **facts: Any) -> Result:
    case, exporter, runtime = lane.split("/")
    return lane_result(
        suite="smoke", case=case, exporter=exporter, runtime=runtime, status=status, message=status,
        outputs=(diff("Y", error), diff("Y_h", error / 2)), **facts,
    )  # fmt: skip


def rendered(results: list[Result]) -> str:
    console = Console(record=True, width=200, color_system=None)
    for part in summary(ResultDocument.of(results, run={}, environment={}), title="t"):
        console.print(part)
    return console.export_text()


class TestReleases:
    def test_the_console_names_the_lanes_that_differ(self) -> None:
        results = [
            result("a/onnx-native/ort-cpu"), result("a/onnx-native/ort-cpu@1.24.4", "error"),
            result("b/onnx-native/ort-cpu"), result("b/onnx-native/ort-cpu@1.24.4", error=5e-6),  # > atol apart
            result("c/onnx-native/ort-cpu"), result("c/onnx-native/ort-cpu@1.24.4", error=1.5e-6),  # within atol
            result("d/onnx-native/ort-cpu-noopt"), result("d/onnx-native/reference"),
        ]  # fmt: skip
        text = rendered(results)
        assert (
            "Releases: 2 of 3 lanes differ between ort-cpu and ort-cpu@1.24.4 (status, or greatest errors further "
            "apart than the absolute tolerance):"
        ) in text
        rows = [line for line in text.splitlines() if "onnx-native " in line and "│" in line]
        assert [" ".join(row.replace("│", " ").split()) for row in rows] == [
            "a/onnx-native pass, greatest error 1e-07 error, greatest error 1e-07",
            "b/onnx-native pass, greatest error 1e-07 pass, greatest error 5e-06",
        ]

    def test_the_console_says_when_they_agree(self) -> None:
        text = rendered([result("a/x/ort-cpu"), result("a/x/ort-cpu@1.24.4"), result("b/x/ort-cpu@1.24.4")])
        assert (
            "Releases: ort-cpu@1.24.4 agrees with ort-cpu on 1 lane both ran (same status; greatest errors within "
            "the absolute tolerance of each other)"
        ) in text

    def test_no_section_without_two_releases(self) -> None:
        assert "Releases" not in rendered([result("a/x/ort-cpu"), result("a/x/ort-cpu-noopt")])

    def test_compare_matches_lanes_that_differ_only_in_the_release(self) -> None:
        base = {r.id: r for r in (result("a/x/ort-cpu"), result("b/x/ort-cpu"), result("c/x/ort-cpu"))}
        head = {
            r.id: r
            for r in (result("a/x/ort-cpu@1.24.4", "fail"), result("b/x/ort-cpu@1.24.4", error=1.9e-6),
                      result("c/x/ort-cpu@1.24.4"))
        }  # fmt: skip
        comparison = compare_runs(base, head)
        assert comparison.compared == 3 and comparison.releases == ["ort-cpu -> ort-cpu@1.24.4: 3 lanes"]
        assert [(c.lane, c.kind) for c in comparison.changes] == [
            ("a/x/ort-cpu -> ort-cpu@1.24.4", NEW_FAILURE),
            ("b/x/ort-cpu -> ort-cpu@1.24.4", HEADROOM),  # Y
            ("b/x/ort-cpu -> ort-cpu@1.24.4", HEADROOM),  # Y_h
        ]

    def test_compare_leaves_ambiguous_releases_unmatched(self) -> None:
        base = {"a/x/ort-cpu": result("a/x/ort-cpu")}
        head = {r.id: r for r in (result("a/x/ort-cpu@1.24.4"), result("a/x/ort-cpu@1.20.1"))}
        comparison = compare_runs(base, head)
        assert comparison.compared == 0 and comparison.releases == []

    def test_compare_times_releases_only_when_timed_alike(self) -> None:
        from tests.conformance.test_compare_command import latency

        def timed(lane: str, includes: str, scale: float) -> Result:
            return result(lane, latency={**latency(scale), "includes": includes})

        base = {"a/x/ort-cpu": timed("a/x/ort-cpu", "InferenceSession.run", 1.0)}
        head = {"a/x/ort-cpu@1.24.4": timed("a/x/ort-cpu@1.24.4", "InferenceSession.run, in the worker", 2.0)}
        assert compare_runs(base, head).timed == 0  # the pipe is not a regression
        head = {"a/x/ort-cpu@1.24.4": timed("a/x/ort-cpu@1.24.4", "InferenceSession.run", 2.0)}
        assert [c.kind for c in compare_runs(base, head).changes] == ["slower"]


# --- one real environment, from the package index ---------------------------------------------------------

OLD_ORT = "1.24.4"


def _index_has(package: str, version: str) -> bool:
    try:
        found = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", package],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return found.returncode == 0 and version in found.stdout


@pytest.mark.slow  # installs onnxruntime (about 4 s from a nearby index; a download of ~30 MB otherwise)
def test_a_real_environment_with_an_older_onnxruntime() -> None:
    if not _index_has("onnxruntime", OLD_ORT):
        pytest.skip(f"the package index is unreachable or has no onnxruntime {OLD_ORT}")
    runtime = get_runtime(f"ort-cpu@{OLD_ORT}")
    assert runtime.unavailable() is None
    root = env.environments_root() / f"onnxruntime-{OLD_ORT}-{PY_TAG}"
    assert json.loads((root / env.MARKER).read_text())["requirements"] == [f"onnxruntime=={OLD_ORT}", "numpy"]
    case = next(c for c in load_suite("smoke").cases if c.id == "bidirectional-2layer")
    record = run_lane(Lane("smoke", case, "torch-script", runtime.id), LaneContext())
    assert record.status == "pass", record.message
    assert record.settings["onnxruntime"] == OLD_ORT and record.settings["environment"] == str(root)
    isolated = subprocess.run(
        [str(root / "bin" / "python"), "-I", "-c", "import conformance"], capture_output=True, text=True, check=False
    )
    assert "No module named 'conformance'" in isolated.stderr  # the environment holds the runtime, not this project
