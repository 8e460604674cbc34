"""The worker-isolated runner: a crash or a hang costs one lane, results stream to results.jsonl."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.cases import load_suite
from conformance.cli import main
from conformance.lane import NO_EXPORT, Lane
from conformance.records import Result, lane_result
from conformance.runner import ResultSink, read_jsonl, run_lanes
from conformance.status import ERROR, FAIL, PASS, TIMEOUT
from exporters.errors import BadInputError
from tests.conformance.conftest import FAKE_RUNTIMES_ENV
from tests.conformance.fake_runtimes import CRASH_EXIT_CODE

TIMEOUT_S = 3.0
SUITE = """\
suite = "runner"

[defaults]
model = { input_size = 3, hidden_size = 4 }
inputs = { seq_len = 3, batch = 2 }
exporters = ["onnx-native"]
runtimes = ["reference", "crash", "hang"]

[[case]]
id = "first"

[[case]]
id = "second"
model = { hidden_size = 5 }

[[case]]
id = "third"
inputs = { initial_states = true }
"""
CRASH_MESSAGE = f"worker process died (exit code {CRASH_EXIT_CODE}) while running this lane"
TIMEOUT_MESSAGE = f"lane did not finish within {TIMEOUT_S:g} s; worker killed"


def write_suite(folder: Path) -> str:
    path = folder / "runner.toml"
    path.write_text(SUITE)
    return str(path)


def make_lanes(suite: str, *specs: str) -> list[Lane]:
    """``"first/reference"`` -> the lane of case ``first`` on the reference runtime (no export)."""
    with pytest.MonkeyPatch.context() as patch:  # the fake runtime ids must be known while loading
        patch.setenv("CONFORMANCE_EXTRA_RUNTIMES", FAKE_RUNTIMES_ENV)
        cases = {case.id: case for case in load_suite(suite).cases}
    return [Lane(suite, cases[spec.split("/")[0]], NO_EXPORT, spec.split("/")[1]) for spec in specs]


def record(lane_id: str, status: str = PASS, message: str = "", **facts: Any) -> Result:
    case, exporter, runtime = lane_id.split("/")
    return lane_result(
        suite="s", case=case, exporter=exporter, runtime=runtime, status=status, message=message, **facts
    )


def as_dicts(records: list[Result]) -> list[dict[str, Any]]:
    """Records as their JSON form: a file written with sorted keys lists outputs as Y, Y_c, Y_h."""
    return [r.to_dict() for r in records]


def summary_counts(stdout: str) -> dict[str, dict[str, str]]:
    """The console summary table (runtime x status) as {runtime: {status: count}}, empty cells left out."""
    cells = [
        [c.strip() for c in line.strip().strip("┃│").split(c)]
        for line in stdout.splitlines()
        for c in "┃│"
        if line.startswith(c)
    ]
    header, *rows = cells
    return {row[0]: {k: v for k, v in zip(header[1:], row[1:], strict=True) if v} for row in rows}


class MixedRun:
    """One jobs=1 run of passing, crashing and hanging lanes, observed from the callbacks."""

    def __init__(self, folder: Path) -> None:
        self.suite = write_suite(folder)
        self.jsonl = folder / "out" / "results.jsonl"
        self.lanes = make_lanes(
            self.suite, "first/reference", "first/crash", "second/reference", "second/hang", "third/reference"
        )
        self.started: list[Lane] = []
        self.lines_seen: list[list[str]] = []  # results.jsonl's lines as each result is reported
        sink = ResultSink(self.jsonl)
        try:
            self.results = run_lanes(
                self.lanes,
                sink,
                jobs=1,
                timeout=TIMEOUT_S,
                on_start=self.started.append,
                on_result=lambda record: self.lines_seen.append(self.jsonl.read_text().splitlines()),
            )
        finally:
            sink.close()
        self.by_id = {r.id: r for r in self.results}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MixedRun]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONFORMANCE_EXTRA_RUNTIMES", FAKE_RUNTIMES_ENV)
        yield MixedRun(tmp_path_factory.mktemp("mixed"))


@pytest.mark.slow  # the module fixture waits out a hanging lane's timeout
class TestCrashAndHang:
    def test_each_lane_gets_one_result_in_lane_order(self, mixed: MixedRun) -> None:
        assert [r.id for r in mixed.results] == [lane.id for lane in mixed.lanes]
        assert [r.status for r in mixed.results] == [PASS, ERROR, PASS, TIMEOUT, PASS]

    def test_lanes_start_in_the_given_order(self, mixed: MixedRun) -> None:
        assert mixed.started == mixed.lanes

    def test_a_crashing_worker_costs_its_lane_only(self, mixed: MixedRun) -> None:
        record = mixed.by_id["first/none/crash"]
        assert record.to_dict() == {
            "id": "first/none/crash",
            "kind": "lane",
            "suite": mixed.suite,
            "case": "first",
            "exporter": NO_EXPORT,
            "runtime": "crash",
            "status": ERROR,
            "message": CRASH_MESSAGE,
            "features": list(mixed.lanes[1].case.features()),
        }
        assert mixed.by_id["second/none/reference"].status == PASS  # the next lane ran on a fresh worker

    def test_a_hanging_lane_times_out_and_is_killed(self, mixed: MixedRun) -> None:
        record = mixed.by_id["second/none/hang"]
        assert record.status == TIMEOUT
        assert record.message == TIMEOUT_MESSAGE
        assert mixed.by_id["third/none/reference"].status == PASS

    def test_passing_lanes_carry_their_numbers(self, mixed: MixedRun) -> None:
        for lane_id in ("first/none/reference", "second/none/reference", "third/none/reference"):
            record = mixed.by_id[lane_id]
            assert record.message.startswith("worst headroom 0 on ")
            assert {d.name for d in record.outputs} == {"Y", "Y_h", "Y_c"}
            assert all(diff.passed for diff in record.outputs)
            # The lane's own time, measured in the worker: set, and within the run's timeout.
            assert record.duration_s is not None and 0 < record.duration_s < TIMEOUT_S

    def test_results_jsonl_keeps_every_result(self, mixed: MixedRun) -> None:
        assert as_dicts(read_jsonl(mixed.jsonl)) == as_dicts(mixed.results)

    def test_each_result_is_on_disk_before_the_next_is_reported(self, mixed: MixedRun) -> None:
        assert [len(lines) for lines in mixed.lines_seen] == [1, 2, 3, 4, 5]
        for lines, record in zip(mixed.lines_seen, mixed.results, strict=True):
            assert json.loads(lines[-1]) == record.to_dict()
            for line in lines:
                json.loads(line)  # every line is a whole JSON document


@pytest.mark.usefixtures("fake_runtimes")
class TestParallel:
    def test_a_crash_costs_one_lane(self, tmp_path: Path) -> None:
        """The fast check of worker isolation (the hanging lanes are in the slow tests)."""
        lanes = make_lanes(write_suite(tmp_path), "first/crash", "first/reference")
        sink = ResultSink(tmp_path / "results.jsonl")
        try:
            results = run_lanes(lanes, sink, jobs=1, timeout=60)
        finally:
            sink.close()
        assert [(r.id, r.status, r.message) for r in results] == [
            ("first/none/crash", ERROR, CRASH_MESSAGE),
            ("first/none/reference", PASS, results[1].message),
        ]

    @pytest.mark.slow
    def test_two_jobs_run_around_a_hanging_lane(self, tmp_path: Path) -> None:
        suite = write_suite(tmp_path)
        lanes = make_lanes(
            suite, "first/hang", "first/reference", "second/reference", "second/crash", "third/reference"
        )
        sink = ResultSink(tmp_path / "results.jsonl")
        try:
            results = run_lanes(lanes, sink, jobs=2, timeout=TIMEOUT_S)
        finally:
            sink.close()
        assert sorted(r.id for r in results) == sorted(lane.id for lane in lanes)
        statuses = {r.id: r.status for r in results}
        assert statuses == {
            "first/none/hang": TIMEOUT,
            "first/none/reference": PASS,
            "second/none/reference": PASS,
            "second/none/crash": ERROR,
            "third/none/reference": PASS,
        }
        order = [r.id for r in results]
        assert order.index("first/none/reference") < order.index("first/none/hang")  # ran beside the hanging lane
        assert as_dicts(read_jsonl(tmp_path / "results.jsonl")) == as_dicts(results)

    def test_more_jobs_than_lanes(self, tmp_path: Path) -> None:
        lanes = make_lanes(write_suite(tmp_path), "first/reference")
        sink = ResultSink(tmp_path / "results.jsonl")
        try:
            results = run_lanes(lanes, sink, jobs=4)
        finally:
            sink.close()
        assert [r.status for r in results] == [PASS]

    def test_no_lanes(self, tmp_path: Path) -> None:
        sink = ResultSink(tmp_path / "results.jsonl")
        try:
            assert run_lanes([], sink, jobs=2) == []
        finally:
            sink.close()
        assert read_jsonl(tmp_path / "results.jsonl") == []


class TestResultSink:
    def test_a_line_is_on_disk_as_soon_as_it_is_written(self, tmp_path: Path) -> None:
        path = tmp_path / "deep" / "results.jsonl"
        sink = ResultSink(path)
        try:
            sink.write(record("x/e/r"))
            assert [json.loads(line) for line in path.read_text().splitlines()] == [record("x/e/r").to_dict()]
            sink.write(record("y/e/r", FAIL))
            assert read_jsonl(path) == [record("x/e/r"), record("y/e/r", FAIL)]
        finally:
            sink.close()

    def test_appends_to_an_existing_file(self, tmp_path: Path) -> None:
        path = tmp_path / "results.jsonl"
        path.write_text(json.dumps(record("old/e/r").to_dict()) + "\n")
        sink = ResultSink(path)
        sink.write(record("new/e/r"))
        sink.close()
        assert read_jsonl(path) == [record("old/e/r"), record("new/e/r")]

    def test_a_torn_last_line_does_not_swallow_the_next_record(self, tmp_path: Path) -> None:
        path = tmp_path / "results.jsonl"
        path.write_text(json.dumps(record("old/e/r").to_dict()) + '\n{"id": "torn", "sta')
        sink = ResultSink(path)
        sink.write(record("new/e/r"))
        sink.close()
        assert read_jsonl(path) == [record("old/e/r"), record("new/e/r")]

    def test_refuses_nan_rather_than_writing_invalid_json(self, tmp_path: Path) -> None:
        sink = ResultSink(tmp_path / "results.jsonl")
        try:
            with pytest.raises(ValueError, match="JSON compliant"):
                sink.write(record("x/e/r", detail={"max_abs": float("nan")}))
        finally:
            sink.close()

    def test_read_jsonl_drops_a_torn_last_line(self, tmp_path: Path) -> None:
        path = tmp_path / "results.jsonl"
        a, b = (json.dumps(record(f"{x}/e/r").to_dict()) for x in "ab")
        path.write_text(f'{a}\n{b}\n{{"id": "c/e/r", "sta')
        assert read_jsonl(path) == [record("a/e/r"), record("b/e/r")]

    def test_read_jsonl_keeps_the_last_record_of_a_lane(self, tmp_path: Path) -> None:
        """A resumed run may append a lane again: one record per id, the last one, in its place."""
        path = tmp_path / "results.jsonl"
        lines = [record("a/e/r", FAIL, "first try"), record("b/e/r"), record("a/e/r", PASS, "second try")]
        path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in lines))
        assert read_jsonl(path) == [record("b/e/r"), record("a/e/r", PASS, "second try")]

    def test_read_jsonl_refuses_a_line_that_is_not_a_result(self, tmp_path: Path) -> None:
        path = tmp_path / "results.jsonl"
        path.write_text(json.dumps(record("a/e/r").to_dict()) + '\n{"id": "b", "status": "passed"}\n')
        with pytest.raises(BadInputError) as info:
            read_jsonl(path)
        assert str(info.value) == (
            f"{path}:2 'b': unknown status 'passed' "
            "(known: pass, fail, xfail, xpass, error, timeout, skip, not-exercised)"
        )

    def test_read_jsonl_of_a_missing_file(self, tmp_path: Path) -> None:
        assert read_jsonl(tmp_path / "absent.jsonl") == []


@pytest.mark.slow
@pytest.mark.usefixtures("fake_runtimes")
class TestCommandLine:
    def test_crash_and_hang_fail_the_run_and_are_reported(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        suite = write_suite(tmp_path)
        out = tmp_path / "out"
        code = main(["run", "--suite", suite, "-k", "first", "--out", str(out), "--timeout", f"{TIMEOUT_S:g}"])
        stdout = capsys.readouterr().out
        assert code == 1
        assert "3 lanes in" in stdout
        assert summary_counts(stdout) == {
            "crash": {"error": "1", "total": "1"},
            "hang": {"timeout": "1", "total": "1"},
            "reference": {"pass": "1", "total": "1"},
            "all": {"pass": "1", "error": "1", "timeout": "1", "total": "3"},
        }
        assert "ERROR first/none/crash" in stdout
        assert CRASH_MESSAGE in stdout
        assert "TIMEOUT first/none/hang" in stdout
        assert TIMEOUT_MESSAGE in stdout
        assert "2 failing lanes:" in stdout
        records = read_jsonl(out / "results.jsonl")
        assert [(r.id, r.status) for r in records] == [
            ("first/none/reference", PASS),
            ("first/none/crash", ERROR),
            ("first/none/hang", TIMEOUT),
        ]
        document = json.loads((out / "results.json").read_text())
        assert document["summary"] == {"error": 1, "pass": 1, "timeout": 1}
        assert sorted(r["id"] for r in document["results"]) == sorted(r.id for r in records)


def test_the_run_scratch_folder_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers keep temporary files (ORT profiles) in a folder the run removes, even after a kill."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[str] = []
    sink = ResultSink(tmp_path / "out" / "results.jsonl")
    try:
        [forward] = [case for case in load_suite("smoke").cases if case.id == "forward"]
        records = run_lanes(
            [Lane("smoke", forward, NO_EXPORT, "reference")],
            sink,
            on_start=lambda lane: seen.extend(str(p) for p in tmp_path.glob("conformance-run-*")),
        )
    finally:
        sink.close()
    assert [r.status for r in records] == [PASS]
    assert len(seen) == 1  # the scratch folder existed while the lane ran ...
    assert not list(tmp_path.glob("conformance-run-*"))  # ... and is gone now


class TestArtifactAffinity:
    """A worker takes the lanes of the artifacts it already exported first, then an artifact nobody has started:
    two workers that took lanes of one dynamo export at once both exported it (about 2 s each)."""

    def test_own_artifact_first_then_a_fresh_one_then_anything(self) -> None:
        from types import SimpleNamespace

        from conformance.runner import _artifact, _next_for

        def lane(case: str, exporter: str, runtime: str) -> Any:
            return SimpleNamespace(suite="s", case=SimpleNamespace(id=case), exporter=exporter, runtime=runtime)

        pending = [lane("a", "torch-dynamo", "onnx-reference"), lane("b", "torch-dynamo", "ort-cpu"),
                   lane("a", "torch-dynamo", "ort-cpu-noopt")]  # fmt: skip
        owner = {_artifact(lane("a", "torch-dynamo", "ort-cpu")): 0}
        assert _next_for(pending, owner, 0) == 0  # worker 0 exported a: its lanes come first
        assert _next_for(pending, owner, 1) == 1  # worker 1 starts b rather than export a again
        owner[_artifact(pending[1])] = 1
        assert _next_for(pending[:1], owner, 1) == 0  # only a's lanes left: take one (a is cached by now)


class TestDefaultJobs:
    @pytest.mark.parametrize(("timing", "expected"), [(["--no-latency"], "cpus"), ([], 1)])
    def test_all_cpus_unless_lanes_are_timed(
        self, timing: list[str], expected: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from conformance import runner
        from conformance.cli import main
        from conformance.environment import usable_cpus

        seen: dict[str, Any] = {}
        monkeypatch.setattr(runner, "run_lanes", lambda lanes, sink, **kwargs: seen.update(kwargs) or [])
        argv = ["run", "--suite", "smoke", "--exporter", "onnx-native", "--runtime", "ort-cpu", *timing]
        main([*argv, "--out", str(tmp_path / "out")])
        assert seen["jobs"] == (usable_cpus() if expected == "cpus" else expected)
