"""``conformance run --executor ray[=ADDRESS]``: lanes as Ray tasks, with the local executor's guarantees.

A Ray instance is started in this process for each ``--executor ray`` run (two CPUs), and a real cluster
by ``ray start --block`` for the address tests (stopped by its process group, never by ``ray stop``, which
would stop every Ray instance of the machine). Test doubles (a crashing runtime and an exporter that
count their calls) live in this module; Ray workers import it through ``CONFORMANCE_EXTRA_*``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance.cli import main
from conformance.lane import NO_EXPORT, Lane
from conformance.planning import load_cases, plan
from conformance.ray_executor import INSTALL, LOST, OVERRUN, STARTED, _Scheduler
from conformance.records import Result
from conformance.runner import ResultSink
from conformance.runtimes.reference_runtime import ReferenceSession
from conformance.status import ERROR, PASS, TIMEOUT
from exporters.base import AnyWeights, ExportOptions, ExportOutcome, Model
from exporters.onnx_native import OnnxNativeExporter
from tests.conformance.conftest import FAKE_RUNTIMES_ENV
from tests.conformance.fake_runtimes import CRASH_EXIT_CODE, CrashRuntime

pytest.importorskip("ray", reason=f"Ray is not installed: {INSTALL}")

REPO = Path(__file__).resolve().parents[2]
COUNTS_ENV = "CONFORMANCE_TEST_COUNTS"  # a file each counting double appends a line to (workers see CONFORMANCE_*)
SMOKE = ["--suite", "smoke", "--exporter", "onnx-native", "--exporter", "torch-script", "--runtime", "ort-cpu"]
TIMEOUT_S = 6.0
SUITE = """\
suite = "ray"

[defaults]
model = { input_size = 3, hidden_size = 4 }
inputs = { seq_len = 3, batch = 2 }
exporters = ["counting"]
runtimes = ["reference", "ort-cpu", "failing"]

[[case]]
id = "first"
runtimes = ["reference", "ort-cpu", "ort-cpu-noopt", "counted-crash", "hang"]

[[case]]
id = "second"
model = { hidden_size = 5 }

[[case]]
id = "third"
inputs = { batch = 3 }
"""
EXTRA_RUNTIMES = ",".join(
    [
        FAKE_RUNTIMES_ENV,
        f"counted-crash={__name__}:CountedCrashRuntime",
        "failing=tests.conformance.failing_runtime:FailingRuntime",  # ORT CPU that aborts on a batch of 3
    ]
)


def _count(label: str) -> None:
    with open(os.environ[COUNTS_ENV], "a", encoding="utf-8") as fh:
        fh.write(label + "\n")


class CountingExporter(OnnxNativeExporter):
    """onnx-native under its own id, counting its exports."""

    id = "counting"

    def export(self, model: Model, weights: AnyWeights, options: ExportOptions, path: Path) -> ExportOutcome:
        _count(f"export {json.dumps([weights.digest(), options.to_dict()], sort_keys=True)}")
        return super().export(model, weights, options, path)


class _CountedCrashSession(ReferenceSession):
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        _count("crash")
        os._exit(CRASH_EXIT_CODE)


class CountedCrashRuntime(CrashRuntime):
    """Kills its worker in ``run``, counting the runs."""

    def session(self, model: Model, weights: AnyWeights) -> ReferenceSession:
        return _CountedCrashSession(model, weights)


class _SleepySession(ReferenceSession):
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(0.3)
        return super().run(feeds)


class SleepyRuntime(CrashRuntime):
    """The reference after a sleep: lanes slow enough to interrupt."""

    def session(self, model: Model, weights: AnyWeights) -> ReferenceSession:
        return _SleepySession(model, weights)


def statuses(out: Path) -> dict[str, str]:
    document = json.loads((out / "results.json").read_text())
    return {r["id"]: r["status"] for r in document["results"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def session_members(sid: int) -> list[int]:
    """Live processes (zombies aside) of session ``sid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[4]) == sid:
                members.append(int(stat.parent.name))
    return members


@pytest.fixture(scope="module")
def smoke_local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("smoke-local")
    assert main(["run", *SMOKE, "--no-latency", "--out", str(out)]) == 0
    return statuses(out)


class WorkerCrashedError(Exception):
    """Named as Ray's: the scheduler tells a lost worker by the error's type name."""


class FakeRay:
    """Just enough of Ray for the driver's loop: a task runs when submitted; its items are ready at once."""

    def __init__(self, crash: str = "") -> None:
        self.crash = crash  # the lane id whose worker dies on every try
        self.submitted: list[tuple[str, str, dict[str, int]]] = []  # (task, lane id or artifact, resources)

    def remote(self, **options: Any) -> Any:
        assert options["num_returns"] == "streaming" and options["max_retries"] == 0
        return lambda function: FakeRemote(self, function.__name__)

    def wait(self, generators: list[Any], num_returns: int, timeout: float) -> tuple[list[Any], list[Any]]:
        return generators[:num_returns], generators[num_returns:]

    def get(self, item: Any) -> Any:
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self, generator: Any, force: bool) -> None:
        raise AssertionError("nothing overran")


class FakeRemote:
    def __init__(self, ray: FakeRay, name: str) -> None:
        self.ray, self.name = ray, name

    def options(self, **resources: int) -> Any:
        def remote(*args: Any) -> Iterator[Any]:
            if self.name == "_export_task":
                case, exporter, _ = args
                self.ray.submitted.append(("export", f"{case.id}/{exporter}", resources))
                return iter([STARTED, {"payload of": f"{case.id}/{exporter}"}])
            lane, payload = args[:2]
            self.ray.submitted.append(("lane", lane.id, resources))
            if lane.id == self.ray.crash:
                return iter([STARTED, WorkerCrashedError("the worker died")])
            assert payload == (
                None if lane.exporter == NO_EXPORT else {"payload of": f"{lane.case.id}/{lane.exporter}"}
            )
            return iter([STARTED, lane.result(PASS, "ran")])

        return type("Options", (), {"remote": staticmethod(remote)})


def schedule(lanes: list[Lane], tmp_path: Path, *, gpus: int, crash: str = "") -> tuple[FakeRay, list[Result]]:
    ray = FakeRay(crash)
    cluster = {"cpus": 2, "gpus": gpus}
    scheduler = _Scheduler(ray, cluster, jobs=None, timeout=60, use_cache=True, latency=None, scratch=str(tmp_path))
    sink = ResultSink(tmp_path / "results.jsonl")
    try:
        return ray, scheduler.run(lanes, sink, None, None)
    finally:
        sink.close()


class TestScheduling:
    """The driver's loop on a fake Ray: what is submitted, with which resources, in which order."""

    @pytest.fixture(autouse=True)
    def _lanes(self) -> None:
        cases = load_cases(["smoke"], "forward or batch-first")
        self.lanes = plan(cases, {"reference", "ort-cpu", "ort-cuda", "torch-cuda"})

    def test_cuda_lanes_ask_for_a_gpu_when_the_cluster_has_one(self, tmp_path: Path) -> None:
        ray, results = schedule(self.lanes, tmp_path, gpus=1)
        assert sorted(r.id for r in results) == sorted(lane.id for lane in self.lanes)
        asked = {name: resources for kind, name, resources in ray.submitted if kind == "lane"}
        assert {name.rsplit("/", 1)[1] for name, r in asked.items() if r.get("num_gpus") == 1} == {
            "ort-cuda",
            "torch-cuda",
        }
        assert all(r["num_cpus"] == 1 for r in asked.values())

    def test_without_gpus_every_task_takes_a_cpu(self, tmp_path: Path) -> None:
        ray, _ = schedule(self.lanes, tmp_path, gpus=0)
        assert {str(resources) for _, _, resources in ray.submitted} == {"{'num_cpus': 1}"}

    def test_each_artifact_is_exported_once_before_its_lanes(self, tmp_path: Path) -> None:
        ray, _ = schedule(self.lanes, tmp_path, gpus=0)
        exports = [name for kind, name, _ in ray.submitted if kind == "export"]
        artifacts = {f"{lane.case.id}/{lane.exporter}" for lane in self.lanes if lane.exporter != NO_EXPORT}
        assert sorted(exports) == sorted(artifacts) and len(artifacts) > 1
        for artifact in artifacts:  # its export first, then its lanes
            mine = [kind for kind, name, _ in ray.submitted if artifact in (name, name.rsplit("/", 1)[0])]
            assert mine[0] == "export" and "export" not in mine[1:] and len(mine) > 1

    def test_a_lost_worker_is_retried_once(self, tmp_path: Path) -> None:
        crash = next(lane.id for lane in self.lanes if lane.runtime == "ort-cpu")
        ray, results = schedule(self.lanes, tmp_path, gpus=0, crash=crash)
        assert [name for kind, name, _ in ray.submitted if kind == "lane"].count(crash) == 2
        record = next(r for r in results if r.id == crash)
        assert (record.status, record.message) == (
            ERROR,
            LOST.format(what="running this lane", kind="WorkerCrashedError"),
        )
        assert {r.status for r in results if r.id != crash} == {PASS}


class TestLocalInstance:
    def test_same_lanes_and_statuses_as_the_local_executor(
        self, smoke_local: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(["run", *SMOKE, "--no-latency", "--executor", "ray", "--jobs", "2", "--out", str(tmp_path)])
        assert code == 0, capsys.readouterr()
        assert statuses(tmp_path) == smoke_local and len(smoke_local) == 12
        run = json.loads((tmp_path / "results.json").read_text())["run"]
        assert run["executor"] == {"executor": "ray", "address": "local", "nodes": 1, "cpus": 2, "gpus": 0}
        assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 12
        assert os.environ.get("RAY_AUTH_MODE") is None  # what ray.init set for its instance is put back


class MixedRun:
    """One ``--executor ray`` run of passing, crashing, aborting and hanging lanes, exporting without cache."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        suite, self.counts, self.out = folder / "ray.toml", folder / "counts.txt", folder / "out"
        suite.write_text(SUITE)
        self.counts.touch()
        monkeypatch.setenv("CONFORMANCE_EXTRA_RUNTIMES", EXTRA_RUNTIMES)
        monkeypatch.setenv("CONFORMANCE_EXTRA_EXPORTERS", f"counting={__name__}:CountingExporter")
        monkeypatch.setenv(COUNTS_ENV, str(self.counts))
        argv = ["run", "--suite", str(suite), "--out", str(self.out), "--executor", "ray", "--jobs", "2"]
        started = time.monotonic()
        self.code = main([*argv, "--no-latency", "--no-cache", "--timeout", f"{TIMEOUT_S:g}"])
        self.seconds = time.monotonic() - started
        self.document = json.loads((self.out / "results.json").read_text())
        self.by_id = {r["id"]: r for r in self.document["results"]}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MixedRun]:
    with pytest.MonkeyPatch.context() as patch:
        yield MixedRun(tmp_path_factory.mktemp("mixed"), patch)


class TestMixedRun:
    def test_every_lane_has_one_result(self, mixed: MixedRun) -> None:
        assert mixed.code == 1
        assert {k: r["status"] for k, r in mixed.by_id.items()} == {
            "first/none/reference": PASS,
            "first/counting/ort-cpu": PASS,
            "first/counting/ort-cpu-noopt": PASS,
            "first/none/counted-crash": ERROR,
            "first/none/hang": TIMEOUT,
            "second/none/reference": PASS,
            "second/counting/ort-cpu": PASS,
            "second/counting/failing": PASS,
            "third/none/reference": PASS,
            "third/counting/ort-cpu": PASS,
            "third/counting/failing": ERROR,  # ONNX Runtime aborts (SIGABRT) on a batch of 3
        }
        lines = (mixed.out / "results.jsonl").read_text().splitlines()
        assert sorted(json.loads(line)["id"] for line in lines) == sorted(mixed.by_id)

    def test_a_dead_worker_is_retried_once_then_costs_its_lane(self, mixed: MixedRun) -> None:
        crashed = mixed.by_id["first/none/counted-crash"]
        assert crashed["message"] == LOST.format(what="running this lane", kind="WorkerCrashedError")
        assert crashed["message"] == (
            "worker process died while running this lane (WorkerCrashedError), on its first run and on its one retry"
        )
        assert mixed.counts.read_text().splitlines().count("crash") == 2
        assert mixed.by_id["third/counting/failing"]["message"] == crashed["message"]

    def test_a_hanging_lane_times_out(self, mixed: MixedRun) -> None:
        assert mixed.by_id["first/none/hang"]["message"] == OVERRUN.format(what="lane", timeout=TIMEOUT_S)
        assert mixed.by_id["first/none/hang"]["message"] == f"lane did not finish within {TIMEOUT_S:g} s; worker killed"
        assert mixed.seconds < 60

    def test_each_artifact_is_exported_once(self, mixed: MixedRun) -> None:
        exports = [line for line in mixed.counts.read_text().splitlines() if line.startswith("export")]
        assert len(exports) == len(set(exports)) == 3  # first, second, third on the counting exporter
        for record in mixed.document["results"]:
            if record["exporter"] == "counting" and record["status"] == PASS:
                assert record["artifact"]["cached"] is False and record["artifact"]["exporter"] == "counting"


class TestAddress:
    def test_an_address_that_does_not_answer_is_bad_input(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        port = free_port()
        code = main(["run", *SMOKE, "--executor", f"ray=127.0.0.1:{port}", "--out", str(tmp_path / "out")])
        assert code == 2
        assert capsys.readouterr().err == (
            f"error: conformance run: argument --executor: ray=127.0.0.1:{port}: no Ray cluster answers there "
            "(Connection refused within 3 s); start one with `ray start --head`, or check the address\n"
        )
        assert not (tmp_path / "out").exists()  # refused before the run touched its folder

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("dask", "expected local, ray or ray=HOST:PORT, got 'dask'"),
            ("ray=", "expected local, ray or ray=HOST:PORT, got 'ray='"),
            ("ray=headnode", "ray=headnode: expected HOST:PORT, the address of the cluster's head (its GCS)"),
            ("ray=ray://head:10001", "ray=ray://head:10001: give the cluster's GCS address as HOST:PORT"),
        ],
    )
    def test_a_malformed_value_is_bad_input(
        self, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["run", *SMOKE, "--executor", value, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: conformance run: argument --executor: {message}") and err.count("\n") == 1

    def test_without_ray_it_names_the_install_command(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
        assert main(["run", *SMOKE, "--executor", "ray", "--out", str(tmp_path)]) == 2
        assert capsys.readouterr().err == (
            "error: conformance run: argument --executor: ray: Ray is not installed; "
            "install it with: pip install 'lstm-conformance[ray]'\n"
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A two-CPU Ray cluster on this machine, with token authentication (Ray's default) and a token of its own;
    yields its address and the environment a driver needs."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex * 2, "COLUMNS": "250"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    head = ["ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--node-ip-address=127.0.0.1"]
    log = tmp_path_factory.mktemp("cluster") / "ray-start.log"
    with open(log, "wb") as fh:
        process = subprocess.Popen(
            [*head, "--disable-usage-stats", "--include-dashboard=false", f"--temp-dir={temp}"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield f"127.0.0.1:{port}", env
    finally:
        process.terminate()  # `ray start --block` stops its cluster on SIGTERM
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pid in session_members(process.pid):  # anything it left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        import shutil

        shutil.rmtree(temp, ignore_errors=True)


class TestCluster:
    def test_same_lanes_and_statuses_as_the_local_executor(
        self, cluster: tuple[str, dict[str, str]], smoke_local: dict[str, str], tmp_path: Path
    ) -> None:
        address, env = cluster
        argv = ["run", *SMOKE, "--no-latency", "--executor", f"ray={address}", "--out", str(tmp_path)]
        done = subprocess.run(
            [sys.executable, "-m", "conformance", *argv], cwd=REPO, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert statuses(tmp_path) == smoke_local
        run = json.loads((tmp_path / "results.json").read_text())["run"]
        assert run["executor"] == {"executor": "ray", "address": address, "nodes": 1, "cpus": 2, "gpus": 0}


SLEEPY_SUITE = """\
suite = "sleepy"

[defaults]
exporters = []
runtimes = ["reference", "sleepy"]
model = { input_size = 4, hidden_size = 8 }
inputs = { seq_len = 6, batch = 2 }

[[case]]
id = "c"
matrix = { "inputs.seed" = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] }
"""


class TestInterrupted:
    """A real ``python -m conformance run --executor ray`` stopped part-way: what finished is kept, the Ray
    instance is stopped, and ``--resume`` (on Ray) runs only the rest."""

    @staticmethod
    def start(argv: list[str], folder: Path) -> subprocess.Popen[str]:
        env = {**os.environ, "CONFORMANCE_EXTRA_RUNTIMES": f"sleepy={__name__}:SleepyRuntime", "COLUMNS": "250"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "conformance", "run", *argv, "--executor", "ray", "--jobs", "2"]
        with open(folder / "log.txt", "a", encoding="utf-8") as log:
            return subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True
            )

    @pytest.mark.parametrize(("stop", "code"), [("SIGINT to the group", 130), ("SIGTERM to the run", 143)])
    def test_stopped_then_resumed(self, stop: str, code: int, tmp_path: Path) -> None:
        (tmp_path / "sleepy.toml").write_text(SLEEPY_SUITE)
        out, jsonl = tmp_path / "out", tmp_path / "out" / "results.jsonl"
        process = self.start(["--suite", str(tmp_path / "sleepy.toml"), "--out", str(out), "--no-latency"], tmp_path)
        deadline = time.monotonic() + 60
        while not (jsonl.exists() and len(jsonl.read_text().splitlines()) >= 3):
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "log.txt").read_text()
            time.sleep(0.05)
        if stop.startswith("SIGINT"):
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the Ray instance's daemons get it too
        else:
            os.kill(process.pid, signal.SIGTERM)  # the run alone: it must stop the Ray instance itself
        assert process.wait(timeout=60) == code, (tmp_path / "log.txt").read_text()
        log = (tmp_path / "log.txt").read_text()
        assert f"continue with: conformance run --resume {out}" in log and "Traceback" not in log
        deadline = time.monotonic() + 15
        while session_members(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert session_members(process.pid) == []  # no Ray process left behind
        done = {json.loads(line)["id"] for line in jsonl.read_text().splitlines()}
        assert 3 <= len(done) < 24

        resumed = self.start(["--resume", str(out), "--no-latency"], tmp_path)
        assert resumed.wait(timeout=120) == 0, (tmp_path / "log.txt").read_text()
        assert f"{len(done)} lanes already done, {24 - len(done)} to run" in (tmp_path / "log.txt").read_text()
        ids = [json.loads(line)["id"] for line in jsonl.read_text().splitlines()]
        assert len(ids) == len(set(ids)) == 24
        assert set(statuses(out).values()) == {PASS}
