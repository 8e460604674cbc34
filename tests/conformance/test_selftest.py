"""``conformance selftest``: every built-in export bug is caught, and a bug that is not fails the command."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import main
from conformance.commands.selftest import CONTROL_EXPORTER, tally
from conformance.compare import DEFAULT_TOLERANCES
from conformance.lane import Lane
from conformance.records import Result, lane_result
from exporters import mutants
from exporters.mutants import MUTATIONS, PREFIX

KILL_RATE = re.compile(r"^kill rate (\d+)/(\d+) \((\d+\.\d)%\), false alarms (\d+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def full_selftest(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    """One real ``conformance selftest`` over the default suites (a few seconds), shared by the tests below."""
    out = tmp_path_factory.mktemp("selftest")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["selftest", "--out", str(out)])
    return code, buffer.getvalue(), out


class TestRealRun:
    @pytest.mark.slow  # the full selftest (shared by the slow tests here) takes a few seconds
    def test_every_mutant_is_killed_and_no_control_fails(self, full_selftest: tuple[int, str, Path]) -> None:
        code, out, _ = full_selftest
        assert code == 0, out
        found = KILL_RATE.search(out)
        assert found is not None, out
        killed, total, rate, false_alarms = found.groups()
        assert killed == total and int(total) >= len(MUTATIONS)
        assert (rate, false_alarms) == ("100.0", "0")
        assert re.search(r"^controls \(unmutated onnx-native\): (\d+)/\1 pass$", out, re.MULTILINE), out
        assert "SURVIVED" not in out and "NOT EXERCISED" not in out and "FALSE ALARM" not in out

    @pytest.mark.slow
    def test_every_mutation_has_a_row(self, full_selftest: tuple[int, str, Path]) -> None:
        _, out, _ = full_selftest
        for name, mutation in MUTATIONS.items():
            row = next(line for line in out.splitlines() if line.startswith(f"│ {name} "))
            assert mutation.description in row
            assert row.rstrip("│ ").endswith("100%"), row

    @pytest.mark.slow
    def test_results_are_streamed_to_the_folder(self, full_selftest: tuple[int, str, Path]) -> None:
        _, out, folder = full_selftest
        total = int(KILL_RATE.search(out).group(2))  # type: ignore[union-attr]
        lines = (folder / "results.jsonl").read_text().splitlines()
        assert len(lines) > total  # the mutants plus the controls

    def test_one_mutation_only(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code = main(["selftest", "--mutation", "gate-order", "--suite", "smoke", "--out", str(tmp_path)])
        out = capsys.readouterr().out
        assert code == 0, out
        rows = [line for line in out.splitlines() if line.startswith("│ ")]
        assert [row.split("│")[1].strip() for row in rows] == ["gate-order"]
        found = KILL_RATE.search(out)
        assert found is not None and found.group(1) == found.group(2) and found.group(4) == "0", out

    def test_unknown_mutation_lists_the_names(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code = main(["selftest", "--mutation", "gate-ordr", "--out", str(tmp_path / "out")])
        captured = capsys.readouterr()
        assert code == 2
        assert captured.out == ""
        assert captured.err == f"error: unknown mutation(s) gate-ordr; available: {', '.join(MUTATIONS)}\n"
        assert not (tmp_path / "out").exists()


def record(exporter: str, status: str, case: str = "c") -> Result:
    return lane_result(suite="smoke", case=case, exporter=exporter, runtime="ort-cpu", status=status, message=status)


class TestTally:
    def test_killed_survived_skipped_and_false_alarms(self) -> None:
        records = [
            record(CONTROL_EXPORTER, "pass", "a"),
            record(CONTROL_EXPORTER, "xfail", "b"),
            record(CONTROL_EXPORTER, "fail", "c"),
            record(PREFIX + "gate-order", "fail", "a"),
            record(PREFIX + "gate-order", "error", "b"),
            record(PREFIX + "gate-order", "timeout", "c"),
            record(PREFIX + "bias-half-dropped", "pass", "a"),
            record(PREFIX + "bias-half-dropped", "xfail", "b"),
            record(PREFIX + "bias-half-dropped", "fail", "c"),
            record(PREFIX + "clip-removed", "skip", "a"),
            record("torch-script", "fail", "a"),  # neither a control nor a mutant: not counted
        ]
        per, false_alarms = tally(records)
        assert per["gate-order"] == {"killed": ["a/mutant-gate-order/ort-cpu", "b/mutant-gate-order/ort-cpu",
                                                "c/mutant-gate-order/ort-cpu"], "survived": []}  # fmt: skip
        assert per["bias-half-dropped"] == {
            "killed": ["c/mutant-bias-half-dropped/ort-cpu"],
            "survived": ["a/mutant-bias-half-dropped/ort-cpu", "b/mutant-bias-half-dropped/ort-cpu"],
        }
        assert "clip-removed" not in per  # skipped: not exercised
        assert [r.id for r in false_alarms] == ["c/onnx-native/ort-cpu"]

    def test_empty(self) -> None:
        per, false_alarms = tally([])
        assert dict(per) == {} and false_alarms == []


class TestExitCode:
    """The command's verdict on synthetic lane outcomes (workers are other processes: run_lanes is replaced)."""

    @staticmethod
    def fake_run_lanes(outcome: dict[str, str]) -> Any:
        def run_lanes(lanes: Iterable[Lane], sink: Any, **_: Any) -> list[Result]:
            records = []
            for lane in lanes:
                name = lane.exporter.removeprefix(PREFIX)
                default = "pass" if lane.exporter == CONTROL_EXPORTER else "fail"
                records.append(lane.result(outcome.get(name, default), ""))
            for item in records:
                sink.write(item)
            return records

        return run_lanes

    def run(
        self, outcome: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> tuple[int, str]:
        monkeypatch.setattr("conformance.runner.run_lanes", self.fake_run_lanes(outcome))
        code = main(["selftest", "--suite", "smoke", "--out", str(tmp_path)])
        return code, capsys.readouterr().out

    def test_all_killed_passes(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        code, out = self.run({}, tmp_path, monkeypatch, capsys)
        assert code == 0, out

    def test_a_surviving_mutant_fails_the_command(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        code, out = self.run({"bias-half-dropped": "pass"}, tmp_path, monkeypatch, capsys)
        assert code == 1
        survivors = [line for line in out.splitlines() if line.startswith("SURVIVED ")]
        assert survivors and all("/mutant-bias-half-dropped/ort-cpu" in line for line in survivors)
        found = KILL_RATE.search(out)
        assert found is not None and found.group(1) != found.group(2)

    def test_a_mutant_hiding_behind_an_expected_divergence_survives(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        code, out = self.run({"gate-order": "xfail"}, tmp_path, monkeypatch, capsys)
        assert code == 1
        assert "SURVIVED " in out

    def test_a_failing_control_is_a_false_alarm(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        code, out = self.run({CONTROL_EXPORTER: "fail"}, tmp_path, monkeypatch, capsys)
        assert code == 1
        assert "FALSE ALARM " in out
        assert re.search(r"false alarms [1-9]", out)

    def test_a_mutation_no_configuration_exercises_fails_the_command(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        code, out = self.run({"clip-removed": "skip"}, tmp_path, monkeypatch, capsys)
        assert code == 1
        assert "NOT EXERCISED clip-removed: no configuration in the suites applies" in out


def test_mutant_tolerances_are_the_float32_defaults() -> None:
    """weight-perturbed moves a weight by 10x the float32 tolerance: the two tables must not drift apart."""
    float32 = DEFAULT_TOLERANCES["float32"]
    assert float32.atol == mutants.FLOAT32_ATOL
    assert float32.rtol == mutants.FLOAT32_RTOL
