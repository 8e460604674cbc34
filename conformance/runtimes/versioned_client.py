"""The client end of a versioned runtime's worker (:mod:`conformance.runtimes.versioned_worker`).

One worker process per environment and package in a process, started on first use and again after it
died; requests are answered in order, one at a time. Exceptions the runtime raised there come back as
:class:`RemoteError` subclasses named as the runtime's own; a worker that died is a :class:`WorkerError`
with its exit status and the last line it wrote to stderr. Each worker exits with its parent (stdin
closes; a watchdog covers a parent killed mid-inference); :func:`stop_workers` stops them at exit.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conformance.runtimes.versioned_env import Environment

__all__ = ["RemoteError", "Worker", "WorkerError", "remote_error", "stop_workers", "worker_for"]

WORKER_SCRIPT = Path(__file__).with_name("versioned_worker.py")


class WorkerError(RuntimeError):
    """The worker process did not start, or died; ``str()`` says why, with its last words."""


class RemoteError(RuntimeError):
    """An exception the runtime raised in the worker. Subclasses carry the remote type's name, so that
    results name it as the in-process runtime's do (``Fail: [ONNXRuntimeError] ...``)."""


_REMOTE_TYPES: dict[str, type[RemoteError]] = {}


def remote_error(type_name: str, message: str) -> RemoteError:
    """An exception named as the worker's was (``Fail``, ``RuntimeError``...), with its message."""
    name = type_name if type_name.isidentifier() else "RemoteError"
    if name not in _REMOTE_TYPES:
        _REMOTE_TYPES[name] = type(name, (RemoteError,), {"__module__": __name__})
    return _REMOTE_TYPES[name](message)


class Worker:
    """A running ``versioned_worker.py``: one request at a time, answered in order."""

    def __init__(self, python: Path, package: str, label: str) -> None:
        self.label, self.owner = label, os.getpid()
        self._lock = threading.Lock()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        try:
            self.process = subprocess.Popen(
                [str(python), "-I", str(WORKER_SCRIPT), package, str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                bufsize=0,
            )
        except OSError as exc:
            self._stderr.close()
            raise WorkerError(f"{label}: {python} does not start ({exc.strerror or exc})") from None
        assert self.process.stdin is not None and self.process.stdout is not None
        self._to, self._from = self.process.stdin.fileno(), self.process.stdout.fileno()
        header, _ = self._exchange(None)
        if not header.get("ok"):
            self.stop()
            raise WorkerError(f"{label} does not start in {python}: {header.get('type')}: {header.get('error')}")
        self.ready = header

    def alive(self) -> bool:
        return self.process.poll() is None

    def _exchange(self, message: bytes | None) -> tuple[dict[str, Any], bytes]:
        from conformance.runtimes.versioned_worker import read_frame, write_all

        try:
            if message is not None:
                write_all(self._to, message)
            return read_frame(self._from)
        except (EOFError, OSError, ValueError):
            raise WorkerError(self._death()) from None

    def request(self, header: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], bytes]:
        """The answer to one request; the runtime's exception as a :class:`RemoteError`."""
        from conformance.runtimes.versioned_worker import frame

        with self._lock:
            answer, data = self._exchange(frame(header, payload))
        if not answer.get("ok"):
            raise remote_error(str(answer.get("type")), str(answer.get("error")))
        return answer, data

    def tick(self, session: int) -> Callable[[], None]:
        """One inference on the bound inputs per call, with as little around it as the pipe allows."""
        from conformance.runtimes.versioned_worker import FRAME, frame, read_exact, write_all

        request, expected = frame({"op": "tick", "session": session}), frame({"ok": True})
        head, to, source = expected[: FRAME.size], self._to, self._from

        def call() -> None:
            with self._lock:
                try:
                    write_all(to, request)
                    got = read_exact(source, FRAME.size)
                    if got == head and read_exact(source, len(expected) - FRAME.size) == expected[FRAME.size :]:
                        return
                    import json

                    size, payload_size = FRAME.unpack(got)
                    answer = json.loads(read_exact(source, size))
                    read_exact(source, payload_size)
                except (EOFError, OSError, ValueError):
                    raise WorkerError(self._death()) from None
            raise remote_error(str(answer.get("type")), str(answer.get("error")))

        return call

    def _death(self) -> str:
        """``onnxruntime 1.24.4 worker process died (killed by SIGABRT); its last words: ...``."""
        try:
            code = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, self._stderr.tell() - 4000))
        lines = [line.strip() for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()]
        words = f"; its last words: {lines[-1]}" if lines else ""
        return f"the {self.label} worker process died ({how}){words}"

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()  # EOF: the worker exits
                self.process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()


_WORKERS: dict[tuple[str, str], Worker] = {}


def worker_for(environment: Environment, package: str, label: str) -> Worker:
    """This process's worker for the environment, started now if there is none or it died. A process
    forked from the one that started it starts its own (the pipes are the parent's)."""
    key = (str(environment.python), package)
    worker = _WORKERS.get(key)
    if worker is None or worker.owner != os.getpid() or not worker.alive():
        if worker is not None and worker.owner == os.getpid():
            worker.stop()
        worker = _WORKERS[key] = Worker(environment.python, package, label)
    return worker


@atexit.register
def stop_workers() -> None:
    """Stop this process's workers (each also exits on its own when this process is gone)."""
    for key, worker in list(_WORKERS.items()):
        if worker.owner == os.getpid():
            worker.stop()
            del _WORKERS[key]
