"""Each runtime of a check in a forked worker process: an abort or a hang costs that runtime's results at
the inputs that cause it, never the check."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from conformance.check.model import CheckOptions, InputSet
from conformance.records import Result, model_result
from conformance.status import ERROR

LOST = "worker_lost"  # detail key of the record standing in for a worker that crashed or timed out


class _Worker:
    """A forked worker running one ``work()``: its process, the pipe it answers on, its stderr."""

    def __init__(self, work: Any) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.receive, send = ctx.Pipe(duplex=False)
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _said; its stderr, for a crash message
        self.process = ctx.Process(target=_worker, args=(send, work, self.errors), daemon=True)
        self.process.start()
        send.close()

    def answer(self, ready: bool) -> tuple[str, Any, str]:
        """Its answer (``ready``: the pipe has one, else it timed out), with the worker stopped and reaped."""
        kind: str = "timeout"
        value: Any = None
        try:
            if ready:
                try:
                    kind, value = self.receive.recv()
                except (EOFError, OSError):  # it died while sending, or before
                    kind, value = "died", None
        finally:
            self.stop()
        return kind, value, _said(self.errors)

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.receive.close()


def _verdict(
    worker: _Worker, kind: str, value: Any, said: str, model: str, runtime_id: str, timeout: float
) -> list[Result]:
    if kind == "results":
        if said:
            sys.stderr.write(said)
        return list(value)
    if kind == "raised":
        raise value
    if kind == "timeout":
        message = f"{runtime_id} did not finish within {timeout:g} s; its worker was killed (--timeout)"
        return [model_result(model, runtime_id, "timeout", message, detail={LOST: "timeout"})]
    last = next((line.strip() for line in reversed(said.splitlines()) if line.strip()), "")
    words = f"; its last words: {last[:300]}" if last else ""
    message = f"{runtime_id} crashed the worker process ({_ended(worker.process)}){words}"
    return [model_result(model, runtime_id, ERROR, message, detail={LOST: "crashed"})]


def _forks() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()


def in_worker(work: Any, model: str, runtime_id: str, timeout: float, hazard: str | None = None) -> list[Result]:
    """``work()`` (one runtime's results) in a forked worker process, so that a runtime that aborts the
    process (ONNX Runtime 1.32 on a batch of 0: "terminate called without an active exception") or hangs
    costs that runtime's results only, and the report is still written. Where ``fork`` is not available,
    or the runtime has a fork ``hazard`` (its library's threads already run in this process), the work
    runs here. A bug in the work is raised here, as it would be in-process."""
    if hazard or not _forks():
        result: list[Result] = work()
        return result
    worker = _Worker(work)
    try:
        ready = bool(worker.receive.poll(timeout))
    except BaseException:
        worker.stop()
        raise
    kind, value, said = worker.answer(ready)
    return _verdict(worker, kind, value, said, model, runtime_id, timeout)


def runtimes_in_workers(
    jobs: Sequence[tuple[str, Any, str | None]],
    input_sets: Sequence[InputSet],
    model: str,
    options: CheckOptions,
) -> dict[str, list[Result]]:
    """Each ``(runtime id, work, fork hazard)`` as :func:`isolated_runtime` does it, as many workers at a
    time as this process has CPUs (each runtime's ``--timeout`` counts from its own start); runtimes with a
    hazard run here, one after the other, once the workers are done. Results by runtime id."""
    from multiprocessing.connection import wait

    from conformance.environment import usable_cpus

    slots = usable_cpus()
    results: dict[str, list[Result]] = {}
    queue = [(runtime_id, work) for runtime_id, work, hazard in jobs if not hazard and _forks()]
    running: dict[Any, tuple[str, Any, _Worker, float]] = {}  # receive end -> (id, work, worker, deadline)
    try:
        while queue or running:
            while queue and len(running) < slots:
                runtime_id, work = queue.pop(0)
                worker = _Worker(work)
                running[worker.receive] = (runtime_id, work, worker, time.monotonic() + options.timeout)
            soonest = min(deadline for *_, deadline in running.values())
            ready = wait(list(running), timeout=max(0.0, soonest - time.monotonic()))
            now = time.monotonic()
            for receive in list(running):
                runtime_id, work, worker, deadline = running[receive]
                if receive in ready or deadline <= now:
                    del running[receive]
                    kind, value, said = worker.answer(receive in ready)
                    first = _verdict(worker, kind, value, said, model, runtime_id, options.timeout)
                    results[runtime_id] = _retried(first, work, input_sets, model, runtime_id, options)
    finally:
        for _, _, worker, _ in running.values():
            worker.stop()
    for runtime_id, work, hazard in jobs:
        if runtime_id not in results:
            results[runtime_id] = isolated_runtime(work, input_sets, model, runtime_id, options, hazard)
    return results


def isolated_runtime(
    work: Any,
    input_sets: Sequence[InputSet],
    model: str,
    runtime_id: str,
    options: CheckOptions,
    hazard: str | None = None,
) -> list[Result]:
    """One runtime in one worker; when that worker dies, each input set again in a worker of its own, so
    a crash costs only the inputs that cause it."""
    results = in_worker(work, model, runtime_id, options.timeout, hazard)
    if hazard:
        return results
    return _retried(results, work, input_sets, model, runtime_id, options)


def _retried(
    results: list[Result], work: Any, input_sets: Sequence[InputSet], model: str, runtime_id: str, options: CheckOptions
) -> list[Result]:
    """``results``, or when their worker died, each input set again in a worker of its own."""
    if not _lost(results) or len(input_sets) < 2:
        return results
    retried: list[Result] = []
    for input_set in input_sets:
        one = in_worker(lambda input_set=input_set: work([input_set]), model, runtime_id, options.timeout)
        if _lost(one):
            one = [model_result(model, runtime_id, one[0].status, f"at {input_set.label}: {one[0].message}",
                                label=input_set.label, shape=dict(input_set.sizes) or None,
                                detail=dict(one[0].detail))]  # fmt: skip
        retried += one
    return retried


def _lost(results: Sequence[Result]) -> bool:
    """Whether ``results`` is the one record of a worker that crashed or timed out (``in_worker`` marks it)."""
    return len(results) == 1 and LOST in results[0].detail


def _said(errors: Any) -> str:
    """What a worker wrote to its stderr (at most the last 8 KiB), and the file closed."""
    with errors:
        size = errors.seek(0, 2)
        errors.seek(max(0, size - 8192))
        return str(errors.read().decode("utf-8", "replace"))


def _worker(send: Any, work: Any, errors: Any) -> None:
    sys.stderr.flush()
    os.dup2(errors.fileno(), 2)  # C++ runtimes write to fd 2 directly ("terminate called ...")
    try:
        send.send(("results", work()))
    except BaseException as exc:  # a bug: the parent raises it
        try:
            send.send(("raised", exc))
        except Exception:  # an exception that does not pickle: its text does
            send.send(("raised", RuntimeError(f"{type(exc).__name__}: {exc}")))


def _ended(process: Any) -> str:
    import signal

    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
