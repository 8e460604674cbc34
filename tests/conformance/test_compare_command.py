"""Tests for ``conformance compare``: lanes matched by id, accuracy and latency changes, exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conformance import changes, cli
from conformance.changes import compare_runs
from conformance.commands import compare
from conformance.compare import compare_output
from conformance.diffs import OutputDiff, Tolerance
from conformance.files import write_document
from conformance.records import SCHEMA_VERSION, Result, ResultDocument, lane_result
from conformance.status import FAILING, PASS, STATUSES, UNCHECKED
from conformance.timing import Latency, measure
from exporters.errors import BadInputError

MS = 1_000_000
ENVIRONMENT = {"cpu": "test cpu", "cpu_count": 2, "gpus": [], "versions": {"onnxruntime": "1.0"}}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="conformance")
    compare.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["compare", *argv])


def latency(scale: float = 1.0, seed: int = 0, n: int = 300) -> dict[str, Any]:
    """A lane's latency record: ~1 ms lognormal samples times ``scale``."""
    samples = np.random.default_rng(seed).lognormal(0.0, 0.1, n) * MS * scale
    return Latency.from_samples(samples.astype(np.int64), converged=True, budget_s=0.5, warmup=3).to_dict()


def output(name: str, headroom: float) -> OutputDiff:
    """A real comparison of one value whose headroom (error / allowed) is ``headroom``."""
    return compare_output(name, np.array([1.0 + headroom]), np.array([1.0]), Tolerance(1.0, 0.0), time_axis=None)


def record(lane: str, status: str = "pass", *, headroom: float = 0.01, **facts: Any) -> Result:
    case, exporter, runtime = lane.split("/")
    return lane_result(
        suite="smoke",
        case=case,
        exporter=exporter,
        runtime=runtime,
        status=status,
        message=f"worst headroom {headroom:.3g} on Y" if status == "pass" else "Tensor-likes are not close!",
        outputs=(output("Y", headroom), output("Y_h", 0.001)),
        **facts,
    )


def by_id(records: list[Result]) -> dict[str, Result]:
    return {r.id: r for r in records}


def write(path: Path, results: list[Result], environment: dict[str, Any] = ENVIRONMENT) -> Path:
    write_document(path, ResultDocument.of(results, run={"suites": ["smoke"]}, environment=environment))
    return path


def run(base: Path, head: Path, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str]:
    code = compare.main(parse(str(base), str(head), *options))
    return code, capsys.readouterr().out


def baseline_records() -> list[Result]:
    return [
        record("forward/onnx-native/ort-cpu", latency=latency(seed=1)),
        record("forward/onnx-native/onnx-reference", latency=latency(seed=2)),
        record("peepholes/onnx-native/ort-cpu", headroom=0.02, latency=latency(seed=3)),
        record("lm/torch-script/ort-cpu", latency=latency(seed=4)),
        record("lm/torch-module/torch-cuda", "skip"),
        record("clip[forward]/onnx-native/ort-cpu", latency=latency(seed=5)),
    ]


class TestWorseAndBetter:
    def test_slower_lane_new_failure_and_shrunk_headroom_fail_the_comparison(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        base = write(tmp_path / "base.json", baseline_records())
        head_records = baseline_records()
        head_records[0] = record("forward/onnx-native/ort-cpu", latency=latency(scale=1.5, seed=11))
        head_records[1] = record("forward/onnx-native/onnx-reference", "fail", headroom=3.2, latency=latency(seed=12))
        head_records[2] = record("peepholes/onnx-native/ort-cpu", headroom=0.4, latency=latency(seed=13))
        head = write(tmp_path / "head.json", head_records)

        code, out = run(base, head, capsys)

        assert code == 1
        rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 4}
        assert "slower" in rows["forward/onnx-native/ort-cpu"]
        assert "x1.5" in rows["forward/onnx-native/ort-cpu"]
        assert " -> 1.5" in rows["forward/onnx-native/ort-cpu"]  # ms, from ~1.0
        assert "new failure" in rows["forward/onnx-native/onnx-reference"]
        assert "pass -> fail" in rows["forward/onnx-native/onnx-reference"]
        assert "Tensor-likes are not close!" in rows["forward/onnx-native/onnx-reference"]
        assert "Y 0.02 -> 0.4" in rows["peepholes/onnx-native/ort-cpu"]
        assert "headroom x20" in rows["peepholes/onnx-native/ort-cpu"]
        assert "lm/torch-script/ort-cpu" not in rows  # unchanged lanes are not listed
        assert out.strip().splitlines()[-1].startswith("FAIL: 1 new failure, 1 slower, 1 headroom")

    def test_the_changes_are_listed_worst_first(self) -> None:
        base = by_id(baseline_records())
        head = by_id(baseline_records())
        head["lm/torch-script/ort-cpu"] = record("lm/torch-script/ort-cpu", latency=latency(scale=0.5, seed=9))
        head["forward/onnx-native/ort-cpu"] = record("forward/onnx-native/ort-cpu", "error")
        head["peepholes/onnx-native/ort-cpu"] = record("peepholes/onnx-native/ort-cpu", latency=latency(2.0, seed=8))
        comparison = compare_runs(base, head)
        assert [c.kind for c in comparison.changes] == ["new failure", "slower", "faster"]
        assert comparison.failed
        assert (comparison.compared, comparison.timed) == (6, 4)

    def test_identical_files_pass(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        base = write(tmp_path / "base.json", baseline_records())
        head = write(tmp_path / "head.json", baseline_records())
        code, out = run(base, head, capsys)
        assert code == 0
        assert (
            out.strip() == "OK: no new failure, no significant slowdown; no changes (6 lanes compared, 5 timed in both)"
        )

    def test_a_fix_and_a_speed_up_pass_and_are_shown(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        base_records = baseline_records()
        base_records[1] = record("forward/onnx-native/onnx-reference", "fail", latency=latency(seed=2))
        base = write(tmp_path / "base.json", base_records)
        head_records = baseline_records()
        head_records[0] = record("forward/onnx-native/ort-cpu", latency=latency(scale=0.6, seed=21))
        head = write(tmp_path / "head.json", head_records)
        code, out = run(base, head, capsys)
        assert code == 0
        assert "fixed" in out and "faster" in out and "x0.6" in out
        assert out.strip().splitlines()[-1].startswith("OK: no new failure, no significant slowdown; 1 fixed, 1 faster")

    def test_lanes_in_one_file_only(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        base_records = baseline_records()[:4]
        base_records[0] = dataclasses.replace(base_records[0], status="fail")  # failed and gone: not a loss
        base = write(tmp_path / "base.json", base_records)
        head = write(tmp_path / "head.json", [*baseline_records()[1:], record("bidi/onnx-native/ort-cpu")])
        code, out = run(base, head, capsys)
        assert code == 0
        assert "only in base" in out and "forward/onnx-native/ort-cpu" in out
        assert "only in head" in out and "bidi/onnx-native/ort-cpu" in out

    def test_a_passing_lane_gone_from_head_fails(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        base = write(tmp_path / "base.json", baseline_records()[:4])
        head = write(tmp_path / "head.json", baseline_records()[1:4])
        code, out = run(base, head, capsys)
        assert code == 1
        assert "no longer checked" in out and "forward/onnx-native/ort-cpu" in out
        assert out.strip().splitlines()[-1].startswith("FAIL: 1 no longer checked")

    def test_lane_ids_are_text_not_markup(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        base = write(tmp_path / "base.json", baseline_records())
        head_records = baseline_records()
        head_records[-1] = record("clip[forward]/onnx-native/ort-cpu", "fail")
        code, out = run(base, write(tmp_path / "head.json", head_records), capsys)
        assert code == 1
        assert "clip[forward]/onnx-native/ort-cpu" in out

    def test_a_new_lane_that_fails_is_a_new_failure(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        base = write(tmp_path / "base.json", baseline_records())
        head = write(tmp_path / "head.json", [*baseline_records(), record("bidi/onnx-native/ort-cpu", "error")])
        code, out = run(base, head, capsys)
        assert code == 1
        assert "new failure" in out

    @pytest.mark.parametrize(
        ("before", "after", "kind"),
        [
            ("pass", "fail", "new failure"),
            ("xfail", "xpass", "new failure"),
            ("skip", "timeout", "new failure"),
            ("fail", "pass", "fixed"),
            ("error", "xfail", "fixed"),
            ("pass", "skip", "no longer checked"),
            ("xfail", "skip", "no longer checked"),
            ("skip", "pass", "status"),
            ("fail", "error", "status"),
            ("fail", "fail", None),
        ],
    )
    def test_status_transitions(self, before: str, after: str, kind: str | None) -> None:
        lane = "forward/onnx-native/ort-cpu"
        comparison = compare_runs({lane: record(lane, before)}, {lane: record(lane, after)})
        assert [c.kind for c in comparison.changes] == ([kind] if kind else [])

    @pytest.mark.parametrize(
        ("before", "after", "flagged"),
        [(0.01, 0.4, True), (0.2, 0.5, True), (0.01, 0.05, False), (0.2, 0.35, False), (0.0, 0.11, True)],
    )
    def test_headroom_flags_a_doubling_above_a_tenth(self, before: float, after: float, flagged: bool) -> None:
        lane = "forward/onnx-native/ort-cpu"
        comparison = compare_runs({lane: record(lane, headroom=before)}, {lane: record(lane, headroom=after)})
        assert [c.kind for c in comparison.changes] == (["headroom"] if flagged else [])
        assert not comparison.failed

    def test_different_machines_are_noted(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        base = write(tmp_path / "base.json", baseline_records())
        other = {**ENVIRONMENT, "cpu": "other cpu", "versions": {"onnxruntime": "2.0"}}
        head = write(tmp_path / "head.json", baseline_records(), environment=other)
        code, out = run(base, head, capsys)
        assert code == 0
        assert "cpu: test cpu -> other cpu; onnxruntime: 1.0 -> 2.0" in out

    def test_the_threshold_is_an_option(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        base = write(tmp_path / "base.json", baseline_records())
        head_records = baseline_records()
        head_records[0] = record("forward/onnx-native/ort-cpu", latency=latency(scale=1.5, seed=11))
        head = write(tmp_path / "head.json", head_records)
        assert run(base, head, capsys, "--max-slowdown", "2.0")[0] == 0
        assert run(base, head, capsys, "--max-slowdown", "1.2", "--confidence", "0.99")[0] == 1


class TestBadInput:
    def test_missing_file(self, tmp_path: Path) -> None:
        head = write(tmp_path / "head.json", baseline_records())
        with pytest.raises(BadInputError, match=r"nowhere\.json: no such file$"):
            compare.main(parse(str(tmp_path / "nowhere.json"), str(head)))

    def test_not_a_result_file(self, tmp_path: Path) -> None:
        base = tmp_path / "base.json"
        base.write_text(json.dumps({"schema_version": 99, "results": []}))
        head = write(tmp_path / "head.json", baseline_records())
        with pytest.raises(BadInputError, match=r"base\.json: not a conformance result file \(schema_version 99, "):
            compare.main(parse(str(base), str(head)))

    def test_malformed_latency_names_the_lane(self, tmp_path: Path) -> None:
        base = write(tmp_path / "base.json", baseline_records())
        broken = baseline_records()
        assert broken[0].latency is not None
        latency_record = {k: v for k, v in broken[0].latency.items() if k != "samples_ms"}
        broken[0] = dataclasses.replace(broken[0], latency=latency_record)
        head = write(tmp_path / "head.json", broken)
        message = r"head\.json: forward/onnx-native/ort-cpu: latency record: .*samples_ms"
        with pytest.raises(BadInputError, match=message):
            compare.main(parse(str(base), str(head)))

    def test_a_record_without_id(self, tmp_path: Path) -> None:
        base = tmp_path / "base.json"
        base.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "results": [{"status": "pass"}]}))
        with pytest.raises(BadInputError) as info:
            compare.main(parse(str(base), str(base)))
        assert str(info.value) == f"{base}: results[0]: 'id' must be a string, got nothing"

    @pytest.mark.parametrize(("option", "value"), [("--max-slowdown", "0.9"), ("--confidence", "95")])
    def test_bad_options(self, tmp_path: Path, option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
        base = write(tmp_path / "base.json", baseline_records())
        assert cli.main(["compare", str(base), str(base), option, value]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith(f"error: conformance compare: argument {option}: expected a finite number ")
        assert captured.err.endswith(f", got {value!r}\n")


def sort_work() -> Callable[[], object]:
    """About 0.2 ms of single-threaded NumPy work (no BLAS threads to disturb)."""
    values = np.random.default_rng(0).standard_normal(8000)
    return lambda: np.sort(values)


def measured(base: Callable[[], object], head: Callable[[], object]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Latency records of two real runs, sampled in alternating 5 ms slices (ABAB...).

    On a shared machine its speed changes in episodes (20-600 ms at 1.2-1.3x slower on the 2-core
    test machine); alternating slices put base and head in the same episodes, as two lanes measured
    back to back in one job would be.
    """
    pooled: tuple[list[int], list[int]] = ([], [])
    for _ in range(10):
        for i, run in enumerate((base, head)):
            pooled[i].extend(measure(run, warmup=1, budget_s=0.005, target_rel_ci=0.0).samples_ns)
    return Latency.from_samples(pooled[0]).to_dict(), Latency.from_samples(pooled[1]).to_dict()


class TestRealMeasurements:
    """A runtime wrapped to sleep half its own duration is caught; two runs of the same function are not."""

    def test_a_sleeping_runtime_wrapper_is_flagged(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        work = sort_work()
        pause = 0.5 * measure(work, target_rel_ci=0.0, budget_s=0.05).median_ms / 1e3

        def sleeping() -> None:
            work()
            time.sleep(pause)

        base_latency, head_latency = measured(work, sleeping)
        lane = "forward/onnx-native/ort-cpu"
        base = write(tmp_path / "base.json", [record(lane, latency=base_latency)])
        head = write(tmp_path / "head.json", [record(lane, latency=head_latency)])
        code, out = run(base, head, capsys)
        assert code == 1, out
        assert "slower" in out

    def test_noise_alone_is_not_flagged(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        work = sort_work()
        lane = "forward/onnx-native/ort-cpu"
        for trial in range(5):
            base_latency, head_latency = measured(work, work)
            base = write(tmp_path / f"base{trial}.json", [record(lane, latency=base_latency)])
            head = write(tmp_path / f"head{trial}.json", [record(lane, latency=head_latency)])
            code, out = run(base, head, capsys)
            assert code == 0, (trial, out)
            assert "faster" not in out


class TestThroughTheCli:
    def test_exit_codes(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        base = write(tmp_path / "base.json", baseline_records())
        slower = baseline_records()
        slower[0] = record("forward/onnx-native/ort-cpu", latency=latency(scale=1.5, seed=11))
        head = write(tmp_path / "head.json", slower)
        assert cli.main(["compare", str(base), str(base)]) == 0
        assert cli.main(["compare", str(base), str(head)]) == 1
        capsys.readouterr()
        assert cli.main(["compare", str(base), str(tmp_path / "missing.json")]) == 2
        assert capsys.readouterr().err == f"error: {tmp_path / 'missing.json'}: no such file\n"


@pytest.mark.parametrize("status", STATUSES)
def test_a_new_failure_is_a_move_to_a_failing_status(status: str) -> None:
    """compare's idea of failing is the one status vocabulary's: pass -> s is a new failure iff s fails a run."""
    lane = "forward/onnx-native/ort-cpu"
    comparison = compare_runs({lane: record(lane, PASS)}, {lane: record(lane, status)})
    assert (comparison.count(changes.NEW_FAILURE) == 1) == (status in FAILING)
    assert comparison.failed == (status in FAILING or status in UNCHECKED)  # skipped: no longer checked
