"""Nothing lost: a run killed or interrupted part-way resumes to the same results as an uninterrupted run.

The runs are real ``python -m conformance run`` subprocesses, each in a
session of its own so that its workers share its process group. Lanes are
slowed by :class:`SleepyRuntime` (the reference, after a short sleep), which
workers import from this module through ``CONFORMANCE_EXTRA_RUNTIMES``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance.runtimes.reference_runtime import ReferenceSession
from exporters.base import AnyWeights, Artifact, Model

REPO = Path(__file__).resolve().parents[2]
SLEEP_S = 0.15
CASES = 10
LANES = 2 * CASES  # per case: the reference and the sleepy runtime
EXTRA_RUNTIMES = f"sleepy={__name__}:SleepyRuntime"
VOLATILE = ("duration_s", "latency")  # what may differ between two runs of the same lane

SUITE = f"""
suite = "resume"

[defaults]
exporters = []
runtimes = ["reference", "sleepy"]
model = {{ input_size = 4, hidden_size = 8 }}
inputs = {{ seq_len = 6, batch = 2 }}

[[case]]
id = "c"
matrix = {{ "inputs.seed" = {list(range(CASES))} }}
"""


class _SleepySession(ReferenceSession):
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(SLEEP_S)
        return super().run(feeds)


class SleepyRuntime:
    """The reference runtime, ``SLEEP_S`` slower per inference: lanes slow enough to interrupt."""

    consumes = "weights"
    description = "the NumPy reference after a sleep (test double)"
    required_provider: str | None = None

    def __init__(self) -> None:
        self.id = "sleepy"

    def unavailable(self) -> str | None:
        return None

    def settings(self) -> dict[str, Any]:
        return {"sleep_s": SLEEP_S}

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> ReferenceSession:
        return _SleepySession(model, weights)


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "resume.toml"
    path.write_text(SUITE, encoding="utf-8")
    return path


def environment() -> dict[str, str]:
    env = dict(os.environ, CONFORMANCE_EXTRA_RUNTIMES=EXTRA_RUNTIMES, COLUMNS="250", NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m conformance ARGV`` as the leader of a new process group; output to ``log``.{out,err}."""
    with open(f"{log}.out", "wb") as out, open(f"{log}.err", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "conformance", *argv],
            cwd=REPO,
            env=environment(),
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def finish(process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> tuple[int, str, str]:
    code = process.wait(timeout=timeout)
    return code, Path(f"{log}.out").read_text(), Path(f"{log}.err").read_text()


def run_argv(suite: Path, out: Path) -> list[str]:
    return ["run", "--suite", str(suite), "--out", str(out), "--no-latency", "--no-cache"]


def jsonl_lines(folder: Path) -> int:
    try:
        return sum(1 for line in (folder / "results.jsonl").read_text().splitlines() if line.endswith("}"))
    except FileNotFoundError:
        return 0


def wait_for_lines(folder: Path, process: subprocess.Popen[bytes], at_least: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = jsonl_lines(folder)
        if lines >= at_least:
            return lines
        assert process.poll() is None, f"the run ended early with exit code {process.returncode}"
        time.sleep(0.02)
    raise AssertionError(f"{folder}/results.jsonl did not reach {at_least} lines in {timeout} s")


def live_group_members(pgid: int) -> list[int]:
    """Processes (zombies aside) still in process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _ppid, group = text.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def assert_no_orphans(pgid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_group_members(pgid) == [], "worker processes outlived their run"


def results(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "results.json").read_text())


def comparable(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Lane id -> record without what varies between runs; every lane must appear exactly once."""
    ids = [r["id"] for r in document["results"]]
    assert len(ids) == len(set(ids)), "a lane appears twice"
    return {r["id"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in document["results"]}


@pytest.fixture(scope="module")
def uninterrupted(suite: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The records of one run that nothing stopped: what every resumed run must end up with."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    code, out, err = finish(start(run_argv(suite, folder / "out"), folder / "log"), folder / "log")
    assert code == 0, out + err
    document = results(folder / "out")
    assert document["run"]["completed"] == document["run"]["lanes"] == LANES
    assert document["run"]["interrupted"] is False
    records = comparable(document)
    assert {r["status"] for r in records.values()} == {"pass"}
    return records


# --- tests ---------------------------------------------------------------------------------------


class TestKilled:
    @pytest.mark.slow
    def test_sigkill_then_resume_gives_every_lane_once(
        self, suite: Path, uninterrupted: dict[str, dict[str, Any]], tmp_path: Path
    ) -> None:
        out = tmp_path / "out"
        process = start(run_argv(suite, out), tmp_path / "first")
        done = wait_for_lines(out, process, at_least=3)
        os.killpg(process.pid, signal.SIGKILL)  # the run and its workers, as an OOM kill or a power cut would
        assert process.wait(timeout=10) == -signal.SIGKILL
        assert_no_orphans(process.pid)
        assert done < LANES
        assert not (out / "results.json").exists()  # never got to the end; the JSONL is all there is

        resumed = start(["run", "--resume", str(out), "--no-latency", "--no-cache"], tmp_path / "resume")
        code, stdout, stderr = finish(resumed, tmp_path / "resume")
        assert code == 0, stdout + stderr
        assert f"resuming {out}: " in stderr
        assert_no_orphans(resumed.pid)
        document = results(out)
        assert document["run"]["completed"] == document["run"]["lanes"] == LANES
        assert comparable(document) == uninterrupted

    def test_workers_of_a_killed_parent_exit_by_themselves(self, suite: Path, tmp_path: Path) -> None:
        """Only the parent dies (the workers are not signalled): they notice the closed pipe and leave."""
        out = tmp_path / "out"
        process = start(run_argv(suite, out), tmp_path / "first")
        wait_for_lines(out, process, at_least=2)
        workers = [pid for pid in live_group_members(process.pid) if pid != process.pid]
        assert workers
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        assert_no_orphans(process.pid, timeout=10)

    @pytest.mark.slow
    def test_a_torn_last_line_loses_no_lane(
        self, suite: Path, uninterrupted: dict[str, dict[str, Any]], tmp_path: Path
    ) -> None:
        """Killed in the middle of writing a record: the torn line is dropped and that lane runs again."""
        out = tmp_path / "out"
        process = start(run_argv(suite, out), tmp_path / "first")
        wait_for_lines(out, process, at_least=4)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        jsonl = out / "results.jsonl"
        lines = jsonl.read_text().splitlines(keepends=True)
        torn = lines[-1][: len(lines[-1]) // 2]  # half a record, no newline
        jsonl.write_text("".join(lines[:-1]) + torn)

        code, stdout, stderr = finish(
            start(["run", "--resume", str(out), "--no-latency"], tmp_path / "r"), tmp_path / "r"
        )
        assert code == 0, stdout + stderr
        document = results(out)
        assert document["run"]["completed"] == LANES
        assert comparable(document) == uninterrupted


@pytest.mark.slow
class TestInterrupted:
    def test_sigint_stops_with_a_partial_report_then_resume_completes(
        self, suite: Path, uninterrupted: dict[str, dict[str, Any]], tmp_path: Path
    ) -> None:
        out = tmp_path / "out"
        process = start(run_argv(suite, out), tmp_path / "first")
        wait_for_lines(out, process, at_least=3)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group
        code, stdout, stderr = finish(process, tmp_path / "first")
        assert code == 130, stdout + stderr
        assert "Traceback" not in stderr
        assert f"continue with: conformance run --resume {out}" in stdout
        assert_no_orphans(process.pid)
        partial = results(out)
        assert partial["run"]["interrupted"] is True
        assert 3 <= partial["run"]["completed"] < partial["run"]["lanes"] == LANES
        assert len(partial["results"]) == partial["run"]["completed"]
        assert all(r["status"] == "pass" for r in partial["results"])  # the lane cut short is not recorded

        resumed = start(["run", "--resume", str(out), "--no-latency", "--no-cache"], tmp_path / "resume")
        code, stdout, stderr = finish(resumed, tmp_path / "resume")
        assert code == 0, stdout + stderr
        assert f"{partial['run']['completed']} lanes already done, {LANES - partial['run']['completed']} to run" in (
            stderr
        )
        document = results(out)
        assert document["run"]["interrupted"] is False
        assert comparable(document) == uninterrupted

    def test_sigterm_is_handled_like_sigint(self, suite: Path, tmp_path: Path) -> None:
        """A service manager's stop: the partial report is written, scratch removed, exit 143."""
        import tempfile

        out = tmp_path / "out"
        process = start(run_argv(suite, out), tmp_path / "first")
        wait_for_lines(out, process, at_least=2)
        os.kill(process.pid, signal.SIGTERM)  # the run alone, as `kill` or systemd sends it
        code, stdout, stderr = finish(process, tmp_path / "first")
        assert code == 143, stdout + stderr
        assert "Traceback" not in stderr
        assert f"continue with: conformance run --resume {out}" in stdout
        assert_no_orphans(process.pid)
        partial = results(out)
        assert partial["run"]["interrupted"] is True and 2 <= partial["run"]["completed"] < LANES
        assert not list(Path(tempfile.gettempdir()).glob(f"conformance-run-{process.pid}-*"))
        assert not (out / "run.lock").exists()


class TestFolderLock:
    """One run owns its folder: a second is refused before it touches a file (it once deleted the first's)."""

    @staticmethod
    def hold(folder: Path) -> Any:
        import fcntl
        import json

        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / "run.lock").open("w")
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write(json.dumps({"pid": 4242, "host": "ci-7", "started": "2026-12-01 05:00:00"}))
        handle.flush()
        return handle

    def test_a_second_run_is_refused_naming_the_holder(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from conformance.cli import main

        out = tmp_path / "out"
        handle = self.hold(out)
        (out / "results.jsonl").write_text("the first run's results\n")
        try:
            code = main(["run", "-k", "forward", "--runtime", "reference", "--no-latency", "--out", str(out)])
        finally:
            handle.close()
        captured = capsys.readouterr()
        assert (code, captured.out) == (2, "")
        assert captured.err == (
            f"error: {out}: another run is writing there (pid 4242 on ci-7, started 2026-12-01 05:00:00); wait for "
            "it, or choose another --out\n"
        )
        assert (out / "results.jsonl").read_text() == "the first run's results\n"  # untouched

    def test_the_lock_of_a_run_that_ended_is_taken_over(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from conformance.cli import main

        out = tmp_path / "out"
        self.hold(out).close()  # the record stays, the flock is gone: a run killed with SIGKILL
        code = main(["run", "-k", "forward", "--runtime", "reference", "--no-latency", "--out", str(out)])
        captured = capsys.readouterr()
        assert code == 0, captured.out + captured.err
        assert (
            f"{out}: took over the lock of a run that has ended (pid 4242 on ci-7, started 2026-12-01 05:00:00)"
        ) in captured.err
        assert not (out / "run.lock").exists()


class TestAtomicResultsFile:
    def test_results_json_appears_whole_by_rename(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """At every rename the source is a complete document, and the target is never opened for writing."""
        from conformance.cli import main

        out = tmp_path / "out"
        target = out / "results.json"
        target.parent.mkdir()
        target.write_text('{"previous": "run"}\n')  # an earlier result stays whole until replaced
        replaced: list[tuple[str, str]] = []
        real_replace, real_open = os.replace, open

        def replace(src: Any, dst: Any) -> None:
            if Path(dst) == target:
                assert Path(src).parent == target.parent and Path(src) != target
                json.loads(Path(src).read_text())  # whole and valid before it takes the name
                assert json.loads(target.read_text()) == {"previous": "run"}
                replaced.append((str(src), str(dst)))
            real_replace(src, dst)

        def guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if isinstance(file, (str, os.PathLike)) and Path(file) == target and set(mode) & set("wax+"):
                raise AssertionError(f"results.json opened with mode {mode!r}: written in place")
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr("builtins.open", guarded_open)
        argv = ["run", "-k", "forward", "--runtime", "reference", "--out", str(out), "--no-latency"]
        assert main(argv) == 0, capsys.readouterr()
        assert len(replaced) == 1
        assert results(out)["run"]["completed"] == 1
        assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.jsonl", "run.json"]
