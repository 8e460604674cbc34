"""Run a runtime on a model in a worker process, so a runtime that aborts costs one trial, not the command.

tract panics (and aborts the process) on some models, and any native runtime may crash; minimisation
runs dozens of models, so every runtime call happens in one long-lived worker process (runtimes are
imported once) that is replaced when it dies or overruns. The worker's stdout and stderr go to a log
file: what a runtime printed before it died (tract's panic message) becomes the trial's error message.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from conformance.runner import stop_worker
from exporters.base import OK, AnyWeights, Artifact, Model, describe_error

DEFAULT_TIMEOUT = 120.0  # seconds per trial


@dataclass(frozen=True)
class RunJob:
    """Open ``model_path`` with runtime ``runtime_id`` and run it on ``feeds``."""

    runtime_id: str
    model_path: str
    feeds: Mapping[str, np.ndarray]
    model: Model
    weights: AnyWeights


@dataclass(frozen=True)
class RunReply:
    """The outputs by name, or the one-line error (``could not load`` / ``failed to run``); where nodes ran."""

    outputs: dict[str, np.ndarray] | None
    error: str | None = None
    placement: dict[str, str] = field(default_factory=dict)


_RUNTIMES: dict[str, Any] = {}


def _run(job: RunJob) -> RunReply:
    from conformance.runtimes import get_runtime

    if job.runtime_id not in _RUNTIMES:
        _RUNTIMES[job.runtime_id] = get_runtime(job.runtime_id)
    runtime = _RUNTIMES[job.runtime_id]
    artifact = Artifact("repro", OK, path=Path(job.model_path))
    try:
        session = runtime.open(artifact, job.model, job.weights)
    except Exception as exc:
        return RunReply(None, f"{job.runtime_id} could not load the model: {describe_error(exc)}")
    try:
        outputs = session.run(dict(job.feeds))
        placement = session.placement()
    except Exception as exc:
        return RunReply(None, f"{job.runtime_id} failed to run: {describe_error(exc)}")
    finally:
        session.close()
    return RunReply({name: np.asarray(value) for name, value in outputs.items()}, None, placement)


def _worker_main(conn: Connection, log_path: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops the worker
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(log, 1)  # native runtimes print (and tract panics) on the file descriptors, not sys.stderr
    os.dup2(log, 2)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(_run(job))


class Worker:
    """One worker process at a time; :meth:`run` restarts it after a death or a timeout."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._ctx = mp.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._exitcode: int | None = None
        handle, self._log = tempfile.mkstemp(prefix="conformance-repro-", suffix=".log")
        os.close(handle)

    def _start(self) -> Connection:
        parent, child = self._ctx.Pipe()
        self._process = self._ctx.Process(target=_worker_main, args=(child, self._log), daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        return parent

    def run(self, job: RunJob) -> RunReply:
        """The job's reply; a worker that dies or overruns is replaced and the reply says what happened."""
        conn = self._conn or self._start()
        Path(self._log).write_bytes(b"")
        overran = False
        try:
            conn.send(job)
            if conn.poll(self.timeout):
                reply: RunReply = conn.recv()
                return reply
            overran = True
        except (EOFError, OSError):  # the worker died: its end of the pipe closed
            self._process.join(timeout=5)
        self._stop(kill=True)
        if overran:
            return RunReply(None, f"{job.runtime_id} did not finish within {self.timeout:g} s; stopped")
        return RunReply(None, f"{job.runtime_id} {self._death()}")

    def _death(self) -> str:
        """How the worker died, with the last line the runtime printed (tract's panic) when there is one."""
        code = self._exitcode
        how = f"exit code {code}"
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                how = f"signal {signal.Signals(-code).name}"
        text = Path(self._log).read_text(encoding="utf-8", errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("note:")]
        said = f": {lines[-1][:400]}" if lines else ""
        return f"killed the process ({how}){said}"

    def _stop(self, *, kill: bool) -> None:
        self._exitcode = None
        if self._process is None:
            return
        stop_worker(self._process, self._conn, kill=kill)
        self._exitcode = self._process.exitcode
        self._process, self._conn = None, None

    def close(self) -> None:
        self._stop(kill=False)
        Path(self._log).unlink(missing_ok=True)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
