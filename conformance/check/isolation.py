"""Each runtime of a check in a forked worker process: an abort or a hang costs that runtime's results at
the inputs that cause it, never the check."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from conformance.check.model import CheckOptions, InputSet
from conformance.records import Result, model_result
from conformance.status import ERROR

LOST = "worker_lost"  # detail key of the record standing in for a worker that crashed or timed out


def in_worker(work: Any, model: str, runtime_id: str, timeout: float) -> list[Result]:
    """``work()`` (one runtime's results) in a forked worker process, so that a runtime that aborts the
    process (ONNX Runtime 1.32 on a batch of 0: "terminate called without an active exception") or hangs
    costs that runtime's results only, and the report is still written. Where ``fork`` is not available
    the work runs here. A bug in the work is raised here, as it would be in-process."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        result: list[Result] = work()
        return result
    ctx = mp.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _said; the worker's stderr, for a crash message
    process = ctx.Process(target=_worker, args=(send, work, errors), daemon=True)
    process.start()
    send.close()
    kind: str = "died"
    value: Any = None
    try:
        if receive.poll(timeout):
            try:
                kind, value = receive.recv()
            except (EOFError, OSError):  # it died while sending, or before
                kind, value = "died", None
        else:
            kind, value = "timeout", None
    finally:
        if kind == "timeout" or process.is_alive():
            process.kill()
        process.join(5)
        receive.close()
        said = _said(errors)
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
    message = f"{runtime_id} crashed the worker process ({_ended(process)}){words}"
    return [model_result(model, runtime_id, ERROR, message, detail={LOST: "crashed"})]


def isolated_runtime(
    work: Any, input_sets: Sequence[InputSet], model: str, runtime_id: str, options: CheckOptions
) -> list[Result]:
    """One runtime in one worker; when that worker dies, each input set again in a worker of its own, so
    a crash costs only the inputs that cause it."""
    results = in_worker(work, model, runtime_id, options.timeout)
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
