"""``run --shard K/N`` and ``merge``: a deterministic, balanced partition, and shards that merge into the run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import main
from conformance.planning import load_cases, plan
from conformance.shards import Shard, parse_shard, partition, plan_hash, shard_of
from exporters.errors import BadInputError

# A small plan that still has several artifacts per case: smoke on two exporters and two runtimes.
SELECTION = ["--suite", "smoke", "--exporter", "onnx-native", "--exporter", "torch-script",
             "--runtime", "ort-cpu", "--runtime", "onnx-reference", "--no-latency"]  # fmt: skip


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def keyed(path: Path) -> list[tuple[str, str, str]]:
    results = json.loads(path.read_text())["results"]
    return sorted((r["id"], r["status"], json.dumps(r.get("expected"), sort_keys=True)) for r in results)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three shards and a single run of SELECTION, each in its own folder."""
    root = tmp_path_factory.mktemp("shards")
    folders = {}
    for name, extra in [("single", []), *[(f"s{k}", ["--shard", f"{k}/3"]) for k in (1, 2, 3)]]:
        folders[name] = root / name
        assert main(["run", *SELECTION, *extra, "--out", str(folders[name])]) == 0
    return folders


class TestParse:
    def test_k_of_n(self) -> None:
        assert parse_shard("2/4") == Shard(2, 4)
        assert parse_shard(" 1 / 1 ").label == "1/1"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("3/2", "--shard 3/2: K must be between 1 and N (2); shards are counted from 1"),
            ("0/4", "--shard 0/4: K must be between 1 and N (4); shards are counted from 1"),
            ("1/0", "--shard 1/0: N must be between 1 and 4096"),
            ("a/b", "--shard a/b: expected K/N, such as 1/4 (shard K of N, counted from 1)"),
            ("2", "--shard 2: expected K/N, such as 1/4 (shard K of N, counted from 1)"),
        ],
    )
    def test_bad_specs_are_one_line(self, text: str, message: str) -> None:
        with pytest.raises(BadInputError) as info:
            parse_shard(text)
        assert str(info.value) == message

    def test_the_cli_exits_2_before_running(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, _, err = run(["run", "--suite", "smoke", "--shard", "3/2", "--out", str(tmp_path / "x")], capsys)
        assert code == 2
        assert err == "error: --shard 3/2: K must be between 1 and N (2); shards are counted from 1\n"
        assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def lanes() -> list[Any]:
    """The full suite's plan."""
    return plan(load_cases(["full"], None))


class TestPartition:
    @pytest.mark.parametrize("count", [1, 2, 4, 7])
    def test_every_lane_once_in_plan_order(self, lanes: list[Any], count: int) -> None:
        parts = partition(lanes, count)
        assert len(parts) == count
        ids = [lane.id for part in parts for lane in part]
        assert sorted(ids) == sorted(lane.id for lane in lanes) and len(ids) == len(set(ids))
        order = {lane.id: i for i, lane in enumerate(lanes)}
        for part in parts:
            assert [order[lane.id] for lane in part] == sorted(order[lane.id] for lane in part)

    def test_an_artifact_is_exported_in_one_shard_only(self, lanes: list[Any]) -> None:
        owner: dict[tuple[str, str], int] = {}
        for k, part in enumerate(partition(lanes, 4)):
            for lane in part:
                assert owner.setdefault((lane.case.id, lane.exporter), k) == k

    def test_deterministic_and_balanced(self, lanes: list[Any]) -> None:
        from conformance.shards import EXPORT_SECONDS, lane_cost

        first, again = partition(lanes, 4), partition(list(lanes), 4)
        assert [[lane.id for lane in p] for p in first] == [[lane.id for lane in p] for p in again]
        loads = []
        for part in first:
            exports = {(lane.case.id, lane.exporter) for lane in part}
            loads.append(sum(lane_cost(lane) for lane in part) + sum(EXPORT_SECONDS.get(e, 0.0) for _, e in exports))
        assert max(loads) <= 1.15 * min(loads), loads  # greedy costliest-first: within 15% on the full suite

    def test_the_record_names_the_plan(self, lanes: list[Any]) -> None:
        mine, record = shard_of(lanes, Shard(2, 3))
        assert record["plan_hash"] == plan_hash([lane.id for lane in lanes])
        assert record["plan_ids"] == [lane.id for lane in lanes]
        assert record["lanes"] == [lane.id for lane in mine]
        assert (record["index"], record["count"], record["plan_lanes"]) == (2, 3, len(lanes))


class TestMerge:
    def test_three_shards_merge_into_the_single_run(
        self, shards: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        parts = [str(shards[f"s{k}"]) for k in (3, 1, 2)]  # any order
        code, out, _ = run(["merge", str(tmp_path / "m"), *parts, "--junit", str(tmp_path / "m.xml")], capsys)
        assert code == 0, out
        assert keyed(tmp_path / "m" / "results.json") == keyed(shards["single"] / "results.json")
        merged = json.loads((tmp_path / "m" / "results.json").read_text())
        assert merged["run"]["lanes"] == merged["run"]["completed"] == len(keyed(shards["single"] / "results.json"))
        assert merged["run"]["merged"]["missing"] == []
        assert sorted(merged["environment"]["shards"]) == ["1", "2", "3"]
        assert (tmp_path / "m.xml").is_file()
        assert "merged 3 shards of 3" in out

    def test_a_missing_shard_lists_its_lanes_and_fails(
        self, shards: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        missing = [r[0] for r in keyed(shards["s2"] / "results.json")]
        code, out, _ = run(["merge", str(tmp_path / "m"), str(shards["s1"]), str(shards["s3"])], capsys)
        assert code == 1
        assert f"missing: {len(missing)} lanes of the plan no shard ran: " in out.replace("\n", " ")
        merged = json.loads((tmp_path / "m" / "results.json").read_text())
        assert sorted(merged["run"]["merged"]["missing"]) == sorted(missing)
        code, _, _ = run(
            ["merge", str(tmp_path / "m2"), str(shards["s1"]), str(shards["s3"]), "--allow-missing"], capsys
        )
        assert code == 0

    def test_a_shard_twice_is_bad_input(
        self, shards: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run(["merge", str(tmp_path / "m"), str(shards["s1"]), str(shards["s1"])], capsys)
        assert code == 2
        s1 = shards["s1"] / "results.json"
        assert err == f"error: {s1}: shard 1/3 again (also {s1})\n"

    def test_shards_of_another_plan_are_bad_input(
        self, shards: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        other = tmp_path / "other"
        assert main(["run", "--suite", "smoke", "--exporter", "onnx-native", "--runtime", "ort-cpu", "--no-latency",
                     "--shard", "2/3", "--out", str(other)]) == 0  # fmt: skip
        capsys.readouterr()
        code, _, err = run(["merge", str(tmp_path / "m"), str(shards["s1"]), str(other)], capsys)
        assert code == 2
        assert err.startswith(f"error: {other / 'results.json'}: a shard of another plan (sha256:")
        assert "the suites, selection, runtimes or installed packages differ" in err

    def test_a_run_that_is_not_a_shard_is_bad_input(
        self, shards: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run(["merge", str(tmp_path / "m"), str(shards["single"])], capsys)
        assert code == 2
        assert err == (
            f"error: {shards['single'] / 'results.json'}: not a shard (run it with conformance run --shard K/N)\n"
        )

    def test_resume_keeps_the_shard(self, shards: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
        code, _, err = run(["run", "--resume", str(shards["s1"]), "--shard", "2/3"], capsys)
        assert code == 2
        assert "it holds a run with shard 1/3; --shard 2/3 would be another plan" in err

    def test_each_lane_of_the_plan_is_in_exactly_one_shard(self, shards: dict[str, Path]) -> None:
        counts = Counter(r[0] for k in (1, 2, 3) for r in keyed(shards[f"s{k}"] / "results.json"))
        assert set(counts.values()) == {1}
        assert sorted(counts) == [r[0] for r in keyed(shards["single"] / "results.json")]
