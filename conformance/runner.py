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
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from conformance.lane import ERROR, TIMEOUT, Lane

DEFAULT_TIMEOUT = 300.0
SCRATCH_ENV = "CONFORMANCE_SCRATCH"  # a folder the run owns; runtimes put temporary files there


def _worker_main(conn: Connection, use_cache: bool, latency: Any = None) -> None:
    """Worker loop: receive a lane, send back its record; exit on ``None``."""
    import signal

    # Ctrl-C reaches the whole process group: the parent stops the run, workers must not die mid-lane.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from conformance.cases import load_suite
    from conformance.lane import LaneContext, run_lane

    context = LaneContext(use_cache=use_cache, latency=latency)
    suites: dict[str, Any] = {}
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        lane = Lane.from_dict(message)
        try:
            if lane.suite not in suites:
                suites[lane.suite] = {c.id: c for c in load_suite(lane.suite).cases}
            record = run_lane(suites[lane.suite][lane.case_id], lane, context)
        except Exception as exc:  # a harness bug must still cost one lane only
            record = {
                "id": lane.id,
                **lane.to_dict(),
                "status": ERROR,
                "message": f"harness error: {type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        conn.send(record)


@dataclass
class _Worker:
    process: Any
    conn: Connection
    lane: Lane | None = None
    deadline: float = 0.0
    started: float = 0.0


@dataclass
class RunProgress:
    """What the CLI's progress display reads; updated by the runner."""

    total: int
    done: int = 0
    current: list[str] = field(default_factory=list)


def _start_worker(ctx: Any, use_cache: bool, latency: Any = None) -> _Worker:
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_worker_main, args=(child, use_cache, latency), daemon=True)
    process.start()
    child.close()
    return _Worker(process, parent)


def _stop(worker: _Worker, *, kill: bool) -> None:
    if kill:
        worker.process.kill()
    else:
        with contextlib.suppress(BrokenPipeError, OSError):
            worker.conn.send(None)
    worker.process.join(timeout=5)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join()
    worker.conn.close()


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

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, sort_keys=True, allow_nan=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records from a results.jsonl; a torn last line (killed mid-write) is dropped."""
    records: list[dict[str, Any]] = []
    if not path.exists():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def run_lanes(
    lanes: Iterable[Lane],
    sink: ResultSink,
    *,
    jobs: int = 1,
    timeout: float = DEFAULT_TIMEOUT,
    use_cache: bool = True,
    latency: Any = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[Lane], None] | None = None,
) -> list[dict[str, Any]]:
    """Execute ``lanes`` on ``jobs`` workers; return their records in completion order."""
    pending = list(lanes)
    if not pending:
        return []
    pending.reverse()  # pop() from the end keeps the given order
    # Scratch space for the workers (ORT profiles); removed at the end even when a worker was killed.
    scratch = tempfile.mkdtemp(prefix="conformance-run-")
    previous_scratch = os.environ.get(SCRATCH_ENV)
    os.environ[SCRATCH_ENV] = scratch  # spawned workers inherit it
    ctx = mp.get_context("spawn")
    workers = [_start_worker(ctx, use_cache, latency) for _ in range(max(1, min(jobs, len(pending) or 1)))]
    results: list[dict[str, Any]] = []

    def finish(record: dict[str, Any]) -> None:
        sink.write(record)
        results.append(record)
        if on_result:
            on_result(record)

    try:
        while pending or any(w.lane for w in workers):
            for i in range(len(workers)):
                if workers[i].lane is None and pending:
                    lane = pending.pop()
                    try:
                        workers[i].conn.send(lane.to_dict())
                    except (BrokenPipeError, OSError):
                        _stop(workers[i], kill=True)
                        workers[i] = _start_worker(ctx, use_cache, latency)
                        workers[i].conn.send(lane.to_dict())
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
                    record.setdefault("duration_s", round(now - worker.started, 4))
                    finish(record)
                elif now >= worker.deadline:
                    _stop(worker, kill=True)
                    finish(_lost(running, TIMEOUT, f"lane did not finish within {timeout:g} s; worker killed"))
                    workers[i] = _start_worker(ctx, use_cache, latency)
    finally:
        for worker in workers:
            _stop(worker, kill=worker.lane is not None)
        if previous_scratch is None:
            os.environ.pop(SCRATCH_ENV, None)
        else:
            os.environ[SCRATCH_ENV] = previous_scratch
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _lost(lane: Lane, status: str, message: str) -> dict[str, Any]:
    return {"id": lane.id, **lane.to_dict(), "status": status, "message": message}
