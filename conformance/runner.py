"""Run lanes in worker processes, so a crash or hang costs one lane, and stream results to disk.

Each worker is a long-lived process (torch and onnxruntime are imported
once) that executes lanes one at a time. The parent waits on each with a
timeout: a worker that dies is reported as ``error`` for its lane, one that
overruns is killed and reported as ``timeout``, and a fresh worker takes the
next lane. Every result is appended to ``results.jsonl`` and flushed as soon
as it arrives; ``results.json`` is written atomically at the end.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from conformance.files import scratch_folder
from conformance.lane import Lane
from conformance.records import Result
from conformance.status import ERROR, TIMEOUT
from conformance.stopping import stops_held

DEFAULT_TIMEOUT = 300.0
SCRATCH_ENV = "CONFORMANCE_SCRATCH"  # a folder the run owns; runtimes put temporary files there


def _worker_main(conn: Connection, use_cache: bool, latency: Any = None) -> None:
    """Worker loop: receive a lane, send back its record; exit on ``None``."""

    # Ctrl-C reaches the whole process group: the parent stops the run, workers must not die mid-lane.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from conformance.lane import LaneContext, run_lane

    context = LaneContext(use_cache=use_cache, latency=latency)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        lane: Lane = message
        try:
            record = run_lane(lane, context)
        except Exception as exc:  # a harness bug must still cost one lane only
            record = lane.result(
                ERROR, f"harness error: {type(exc).__name__}: {exc}", detail={"traceback": traceback.format_exc()}
            )
        conn.send(record)


@dataclass
class _Worker:
    process: Any
    conn: Connection
    lane: Lane | None = None
    deadline: float = 0.0
    started: float = 0.0


def _start_worker(ctx: Any, use_cache: bool, latency: Any = None) -> _Worker:
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_worker_main, args=(child, use_cache, latency), daemon=True)
    process.start()
    child.close()
    return _Worker(process, parent)


def _stop(worker: _Worker, *, kill: bool) -> None:
    stop_worker(worker.process, worker.conn, kill=kill)


def stop_worker(process: Any, conn: Any, *, kill: bool) -> None:
    """End a worker process that takes work over ``conn``: killed, or asked to end (``None``, when there is a
    pipe) and given 5 s before it is killed; then its end of the pipe is closed."""
    if kill:
        process.kill()
    elif conn is not None:
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.send(None)
    process.join(timeout=5)
    if process.is_alive():
        process.kill()
        process.join()
    if conn is not None:
        conn.close()


class ResultSink:
    """Appends one JSON line per result and flushes it to disk at once."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        torn = False
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if torn:
            self._fh.write("\n")  # a torn last line (killed mid-write) must not swallow the next record

    def write(self, record: Result) -> None:
        self._fh.write(json.dumps(record.to_dict(), sort_keys=True, allow_nan=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def read_jsonl(path: Path) -> list[Result]:
    """Records from a results.jsonl, one per lane id (the last complete one wins).

    A torn line (killed mid-write) is dropped; a line that is JSON but not a result record is bad input.
    """
    by_id: dict[str, Result] = {}
    if not path.exists():
        return []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            data = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if data is None:
            continue
        record = Result.from_dict(data, where=f"{path}:{number}")
        by_id.pop(record.id, None)
        by_id[record.id] = record
    return list(by_id.values())


def run_lanes(
    lanes: Iterable[Lane],
    sink: ResultSink,
    *,
    jobs: int = 1,
    timeout: float = DEFAULT_TIMEOUT,
    use_cache: bool = True,
    latency: Any = None,
    on_result: Callable[[Result], None] | None = None,
    on_start: Callable[[Lane], None] | None = None,
) -> list[Result]:
    """Execute ``lanes`` on ``jobs`` workers; return their records in completion order."""
    pending = list(lanes)
    if not pending:
        return []
    owner: dict[tuple[str, str, str], int] = {}  # artifact -> the worker that runs its lanes (exports it once)
    # Scratch space for the workers (ORT profiles); removed at the end even when a worker was killed.
    scratch = scratch_folder(SCRATCH_PREFIX)
    previous_scratch = os.environ.get(SCRATCH_ENV)
    os.environ[SCRATCH_ENV] = scratch  # spawned workers inherit it
    ctx = mp.get_context("spawn")
    workers = [_start_worker(ctx, use_cache, latency) for _ in range(max(1, min(jobs, len(pending) or 1)))]
    results: list[Result] = []

    def finish(record: Result) -> None:
        sink.write(record)
        results.append(record)
        if on_result:
            on_result(record)

    try:
        while pending or any(w.lane for w in workers):
            for i in range(len(workers)):
                if workers[i].lane is None and pending:
                    lane = pending.pop(_next_for(pending, owner, i))
                    owner.setdefault(_artifact(lane), i)
                    try:
                        workers[i].conn.send(lane)
                    except (BrokenPipeError, OSError):
                        _stop(workers[i], kill=True)
                        workers[i] = _start_worker(ctx, use_cache, latency)
                        workers[i].conn.send(lane)
                    now = time.monotonic()
                    workers[i].lane, workers[i].started, workers[i].deadline = lane, now, now + timeout
                    if on_start:
                        on_start(lane)
            busy = [w for w in workers if w.lane is not None]
            if not busy:
                continue
            wait_for = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=wait_for)
            now = time.monotonic()
            for i, worker in enumerate(workers):
                running = worker.lane
                if running is None:
                    continue
                if worker.conn in ready or worker.process.sentinel in ready:
                    try:
                        record = worker.conn.recv()
                    except (EOFError, OSError):
                        worker.process.join(timeout=5)
                        code = worker.process.exitcode
                        finish(_lost(running, ERROR, f"worker process died (exit code {code}) while running this lane"))
                        _stop(worker, kill=True)
                        workers[i] = _start_worker(ctx, use_cache, latency)
                        continue
                    worker.lane = None
                    if record.duration_s is None:
                        record = replace(record, duration_s=round(now - worker.started, 4))
                    finish(record)
                elif now >= worker.deadline:
                    _stop(worker, kill=True)
                    finish(_lost(running, TIMEOUT, f"lane did not finish within {timeout:g} s; worker killed"))
                    workers[i] = _start_worker(ctx, use_cache, latency)
    finally:
        # A stop signal now would cut the cleanup short (workers left, scratch kept): hold it until done.
        with stops_held():
            for worker in workers:
                _stop(worker, kill=worker.lane is not None)
            if previous_scratch is None:
                os.environ.pop(SCRATCH_ENV, None)
            else:
                os.environ[SCRATCH_ENV] = previous_scratch
            shutil.rmtree(scratch, ignore_errors=True)
    return results


SCRATCH_PREFIX = "conformance-run-"


def _artifact(lane: Lane) -> tuple[str, str, str]:
    """What a lane's worker exports (or fetches from the export cache): its case on its exporter."""
    return lane.suite, lane.case.id, lane.exporter


def _next_for(pending: list[Lane], owner: dict[tuple[str, str, str], int], worker: int) -> int:
    """The position of the lane worker ``worker`` runs next: the first of an artifact it already exported,
    else the first of an artifact no worker has started, else the first lane. Two workers that took lanes of
    one artifact at once would both export it (a dynamo export: about 2 s each)."""
    fresh = None
    for position, lane in enumerate(pending):
        holder = owner.get(_artifact(lane))
        if holder == worker:
            return position
        if holder is None and fresh is None:
            fresh = position
    return 0 if fresh is None else fresh


def _lost(lane: Lane, status: str, message: str) -> Result:
    """The record of a lane whose worker died (``error``, settled against the case's expected divergences:
    a runtime that crashes the process on a known input is one) or ran out of time (``timeout``)."""
    if status != ERROR:
        return lane.result(status, message)
    from conformance import evaluate

    expectation = lane.case.expectation(lane.exporter, lane.runtime)
    settled, text, expected = evaluate.settle(evaluate.Verdict(ERROR, message), expectation)
    return lane.result(settled, text, expected=expected)
