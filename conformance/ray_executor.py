"""Run a plan's lanes as Ray tasks (``conformance run --executor ray[=ADDRESS]``), with the guarantees of
:mod:`conformance.runner`: each result goes to the run's ``ResultSink`` (fsync per lane) as its task ends,
so ``--resume`` works after an interrupted run; a lost worker costs its lane (retried once, then
``error``); a lane over the timeout is cancelled, its worker killed, and recorded as ``timeout``; Ctrl-C or
SIGTERM cancels what is outstanding and keeps what was written.

``ray`` starts a Ray instance on this machine for the run (stopped after it); ``ray=HOST:PORT`` connects to
the running cluster whose GCS listens there. Each export artifact (a case on one exporter) is exported
once, by one task, and shared through Ray's object store: every lane of it takes the model's files from
there and writes them to a temporary folder of its own (torch modules, built in memory in 0.01 s, are
built by each worker instead). CUDA lanes ask for a GPU when the cluster has one, so they run on GPU nodes.

This is the driver; the tasks are in :mod:`conformance.ray_worker`. Each is a streaming generator whose first
item is :data:`STARTED`: a lane's clock starts when it starts on a worker, not while it waits in the queue.
Ray is an optional extra, imported only inside functions; no top level here imports anything heavy.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from conformance.ray_worker import STARTED, _export_task, _lane_task, export_payload, run_with_payload
from conformance.status import ERROR, TIMEOUT
from conformance.stopping import STOPS, stops_held
from exporters.errors import BadInputError

if TYPE_CHECKING:
    from conformance.lane import Lane, LatencySettings
    from conformance.records import Result
    from conformance.runner import ResultSink

# The worker side's public names are re-exported: they stay importable from here, as before the split.
__all__ = ["AUTH_MODE", "CONNECT_TIMEOUT_S", "ENV_PREFIX", "INSTALL", "LOST", "LOST_WORKER", "OVERRUN", "POLL_S",
           "STARTED", "Executor", "Key", "check_address", "executor_option", "export_payload", "run_lanes_ray",
           "run_with_payload"]  # fmt: skip

INSTALL = "pip install 'lstm-conformance[ray]'"
CONNECT_TIMEOUT_S = 3.0  # how long an address may take to answer before it is called dead
POLL_S = 1.0  # the driver looks at the clock (and Ctrl-C) at least this often
AUTH_MODE = "RAY_AUTH_MODE"
ENV_PREFIX = "CONFORMANCE_"  # variables the workers must see (plug-in runtimes and exporters, EP libraries)
LOST = "worker process died while {what} ({kind}), on its first run and on its one retry"
OVERRUN = "{what} did not finish within {timeout:g} s; worker killed"
# Ray's errors that say the task's process (or its node) died: the lane is retried once.
LOST_WORKER = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "OutOfMemoryError", "RaySystemError")


class Executor(NamedTuple):
    """``--executor``: ``local`` (worker processes, conformance.runner) or ``ray`` (``address`` None: a Ray
    instance started for the run)."""

    kind: str = "local"
    address: str | None = None


def executor_option(text: str) -> Executor:
    """The ``--executor`` value (an argparse type): ``local``, ``ray`` or ``ray=HOST:PORT``. Ray must be
    installed, and an address must answer within :data:`CONNECT_TIMEOUT_S`, before the run touches a file."""
    kind, equals, address = text.strip().partition("=")
    if kind == "local" and not equals:
        return Executor()
    if kind != "ray" or (equals and not address.strip()):
        raise argparse.ArgumentTypeError(f"expected local, ray or ray=HOST:PORT, got {text!r}")
    if importlib.util.find_spec("ray") is None:
        raise argparse.ArgumentTypeError(f"{text}: Ray is not installed; install it with: {INSTALL}")
    if not equals:
        return Executor("ray")
    try:
        check_address(address.strip())
    except BadInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return Executor("ray", address.strip())


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Bad input unless something accepts a TCP connection at ``address`` (``HOST:PORT``) within ``timeout``
    seconds: ``ray.init`` would wait for a dead address far longer."""
    if "://" in address:
        raise BadInputError(
            f"ray={address}: give the cluster's GCS address as HOST:PORT (Ray Client addresses, ray://, "
            "are not supported); run conformance on a machine of the cluster"
        )
    host, colon, port = address.rpartition(":")
    host = host.strip("[]")
    if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
        raise BadInputError(f"ray={address}: expected HOST:PORT, the address of the cluster's head (its GCS)")
    import socket

    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__
        raise BadInputError(
            f"ray={address}: no Ray cluster answers there ({reason} within {timeout:g} s); "
            "start one with `ray start --head`, or check the address"
        ) from None


def run_lanes_ray(
    lanes: Iterable[Lane],
    sink: ResultSink,
    *,
    address: str | None = None,
    jobs: int | None = None,
    timeout: float = 300.0,
    use_cache: bool = True,
    latency: LatencySettings | None = None,
    on_result: Callable[[Result], None] | None = None,
    on_start: Callable[[Lane], None] | None = None,
    on_connect: Callable[[dict[str, Any]], None] | None = None,
) -> list[Result]:
    """Execute ``lanes`` as Ray tasks; return their records in completion order (``runner.run_lanes``'s contract).

    ``address`` None starts a Ray instance of ``jobs`` CPUs (default: this machine's) for the run; with an
    address, ``jobs`` caps the lanes that run at once (default: the cluster's CPUs). ``on_connect`` is told
    the cluster: ``{"executor": "ray", "address", "nodes", "cpus", "gpus"}``."""
    pending = list(lanes)
    if not pending:
        return []
    import shutil
    import signal
    import tempfile
    import threading
    import uuid

    import ray as ray_module

    ray: Any = ray_module  # its API is used through Any: parts of it are untyped
    owned = not ray.is_initialized()  # else a caller (a library user, a test) connected already: use that
    auth_mode = os.environ.get(AUTH_MODE)  # ray.init sets it for the instance it starts: put it back after
    on_main = threading.current_thread() is threading.main_thread()
    handlers = {stop: signal.getsignal(stop) for stop in STOPS} if on_main else {}
    scratch = Path(tempfile.gettempdir()) / f"conformance-ray-{uuid.uuid4().hex[:12]}"  # the lanes' files
    scheduler = None
    try:
        if owned:
            _connect(ray, address, jobs)
        for stop, handler in handlers.items():  # ray.init put its own (a crash report, then exit) in their place
            if handler is not None:
                signal.signal(stop, handler)
        resources = ray.cluster_resources()
        cluster = {
            "executor": "ray",
            "address": address or "local",
            "nodes": sum(1 for node in ray.nodes() if node.get("Alive")),
            "cpus": int(resources.get("CPU", 0)),
            "gpus": int(resources.get("GPU", 0)),
        }
        if on_connect:
            on_connect(cluster)
        scheduler = _Scheduler(
            ray, cluster, jobs=jobs, timeout=timeout, use_cache=use_cache, latency=latency, scratch=str(scratch)
        )
        return scheduler.run(pending, sink, on_result, on_start)
    finally:
        with stops_held():  # a stop signal now would cut the cleanup short (tasks left running)
            if scheduler is not None:
                scheduler.cancel_all()
            if owned:
                with contextlib.suppress(Exception):
                    ray.shutdown()
                if auth_mode is None:
                    os.environ.pop(AUTH_MODE, None)
            shutil.rmtree(scratch, ignore_errors=True)  # this machine's; a killed lane's stays on another node


def _connect(ray: Any, address: str | None, jobs: int | None) -> None:
    """``ray.init``: a Ray instance of its own for the run (``address`` None), or the cluster at ``address``."""
    import logging

    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        from conformance.environment import usable_cpus

        ray.init(address="local", num_cpus=jobs or usable_cpus(), **quiet)  # "local": never someone else's
        return
    check_address(address)
    try:
        ray.init(address=address, **quiet)
    except Exception as exc:  # ConnectionError, or whatever the GCS client raised
        hint = ""
        if not os.environ.get(AUTH_MODE):  # Ray sends a token to an address it was given only when told to
            hint = f"; a cluster with token authentication (Ray's default) needs {AUTH_MODE}=token and its token here"
        raise BadInputError(f"ray={address}: could not connect to a Ray cluster ({_described(exc)}){hint}") from None


Key = tuple[str, str, str]  # an export artifact: (suite, case id, exporter id)


class _Task:
    """A submitted task: a lane's, or an artifact's export (``lane`` is then the artifact's first lane)."""

    __slots__ = ("attempt", "gpu", "kind", "lane", "started")

    def __init__(self, kind: str, lane: Lane, *, attempt: int = 1, gpu: bool = False) -> None:
        self.kind, self.lane, self.attempt, self.gpu = kind, lane, attempt, gpu
        self.started: float | None = None  # time.monotonic() when it started on a worker

    @property
    def doing(self) -> str:
        return "exporting this lane's model" if self.kind == "export" else "running this lane"


class _Broken:
    """Why a task gave no item: its worker died (``lost``), or an error outside the lane's own guard."""

    __slots__ = ("lost", "text")

    def __init__(self, text: str, *, lost: bool = False) -> None:
        self.text, self.lost = text, lost

    def message(self, task: _Task) -> str:
        return LOST.format(what=task.doing, kind=self.text) if self.lost else self.text


class _Scheduler:
    """The driver's loop: submit tasks while slots are free, take their items as they come, watch the clock."""

    def __init__(
        self,
        ray: Any,
        cluster: dict[str, Any],
        *,
        jobs: int | None,
        timeout: float,
        use_cache: bool,
        latency: LatencySettings | None,
        scratch: str,
    ) -> None:
        from conformance.runner import SCRATCH_ENV

        self.ray, self.timeout = ray, timeout
        self.use_cache, self.latency, self.scratch = use_cache, latency, scratch
        self.cpu_slots, self.gpu_slots = max(1, jobs or cluster["cpus"]), cluster["gpus"]
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX) and k != SCRATCH_ENV}
        options = {"num_returns": "streaming", "max_retries": 0, "runtime_env": {"env_vars": env}}
        self.lane_task, self.export_task = ray.remote(**options)(_lane_task), ray.remote(**options)(_export_task)
        self.running: dict[Any, _Task] = {}  # generator -> its task
        self.groups: dict[Key, list[Lane]] = {}  # artifact -> its lanes
        self.payloads: dict[Key, Any] = {}  # artifact -> its export's object ref, while its lanes run
        self.left: dict[Key, int] = {}  # artifact -> its lanes without a result yet
        self.cuda: dict[str, bool] = {}

    def run(
        self,
        lanes: list[Lane],
        sink: ResultSink,
        on_result: Callable[[Result], None] | None,
        on_start: Callable[[Lane], None] | None,
    ) -> list[Result]:
        from conformance.lane import NO_EXPORT

        ready: deque[Lane] = deque(lane for lane in lanes if lane.exporter == NO_EXPORT)
        for lane in lanes:
            if lane.exporter != NO_EXPORT:
                self.groups.setdefault(_artifact(lane), []).append(lane)
        exports: deque[Key] = deque(self.groups)
        self.left = {key: len(group) for key, group in self.groups.items()}
        results: list[Result] = []
        started: set[str] = set()

        def finish(record: Result, lane: Lane, since: float | None = None) -> None:
            if since is not None and record.duration_s is None:
                record = replace(record, duration_s=round(time.monotonic() - since, 4))
            sink.write(record)
            results.append(record)
            key = _artifact(lane)
            if key in self.left:
                self.left[key] -= 1
                if not self.left[key]:
                    self.payloads.pop(key, None)  # its lanes are done: the object store may drop the model
            if on_result:
                on_result(record)

        def fail(task: _Task, status: str, message: str) -> None:
            chosen = self.groups[_artifact(task.lane)] if task.kind == "export" else [task.lane]
            for lane in chosen:
                finish(lane.result(status, message), lane)

        while ready or exports or self.running:
            self._fill(ready, exports)
            now = time.monotonic()
            clocks = [t.started + self.timeout - now for t in self.running.values() if t.started is not None]
            done, _ = self.ray.wait(list(self.running), num_returns=1, timeout=max(0.0, min([POLL_S, *clocks])))
            for generator in done:
                task, item = self.running[generator], self._next(generator)
                if item == STARTED:
                    task.started = time.monotonic()
                    if task.kind == "lane" and task.lane.id not in started:
                        started.add(task.lane.id)
                        if on_start:
                            on_start(task.lane)
                    continue
                del self.running[generator]
                if isinstance(item, _Broken) and item.lost and task.attempt == 1:
                    self._submit(_Task(task.kind, task.lane, attempt=2, gpu=task.gpu))
                elif isinstance(item, _Broken):
                    fail(task, ERROR, item.message(task))
                elif task.kind == "export":
                    self.payloads[_artifact(task.lane)] = item
                    ready.extend(self.groups[_artifact(task.lane)])
                else:
                    finish(item, task.lane, task.started)
            now = time.monotonic()
            for generator, task in list(self.running.items()):
                if task.started is not None and now - task.started >= self.timeout:
                    del self.running[generator]
                    with contextlib.suppress(Exception):
                        self.ray.cancel(generator, force=True)
                    what = "exporting this lane's model" if task.kind == "export" else "lane"
                    fail(task, TIMEOUT, OVERRUN.format(what=what, timeout=self.timeout))
        return results

    def _fill(self, ready: deque[Lane], exports: deque[Key]) -> None:
        """Submit while slots are free: an export while fewer lanes are ready than there are CPU slots, else
        the ready lanes in order (a GPU lane waits for a GPU slot without holding up the others)."""
        busy_gpu = sum(1 for t in self.running.values() if t.gpu)
        busy_cpu = len(self.running) - busy_gpu
        waiting: list[Lane] = []
        while True:
            if exports and busy_cpu < self.cpu_slots and len(ready) < self.cpu_slots:
                self._submit(_Task("export", self.groups[exports.popleft()][0]))
                busy_cpu += 1
                continue
            if not ready:
                break
            lane = ready.popleft()
            gpu = self._gpu(lane)
            if gpu and busy_gpu >= self.gpu_slots:
                waiting.append(lane)
                continue
            if not gpu and busy_cpu >= self.cpu_slots:
                ready.appendleft(lane)
                break
            busy_gpu, busy_cpu = busy_gpu + gpu, busy_cpu + (not gpu)
            self._submit(_Task("lane", lane, gpu=gpu))
        ready.extendleft(reversed(waiting))

    def _submit(self, task: _Task) -> None:
        resources = {"num_cpus": 1, "num_gpus": 1} if task.gpu else {"num_cpus": 1}
        if task.kind == "export":
            remote = self.export_task.options(**resources).remote
            generator = remote(task.lane.case, task.lane.exporter, self.use_cache)
        else:
            remote = self.lane_task.options(**resources).remote
            payload = self.payloads.get(_artifact(task.lane))  # an object ref: Ray hands the lane its value
            generator = remote(task.lane, payload, self.use_cache, self.latency, self.scratch)
        self.running[generator] = task

    def _next(self, generator: Any) -> Any:
        """The generator's next item (:data:`STARTED`, then the payload or record), or why there is none."""
        try:
            return self.ray.get(next(generator))
        except StopIteration:
            return _Broken("harness error: the task ended without a result")
        except Exception as exc:
            if any(cls.__name__ in LOST_WORKER for cls in type(exc).__mro__):
                return _Broken(type(exc).__name__, lost=True)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):  # RayTaskError: raised in the task, outside the lane's guard
                return _Broken(f"harness error: {_described(cause)}")
            return _Broken(f"Ray could not run the task: {_described(exc)}")

    def _gpu(self, lane: Lane) -> bool:
        """Whether ``lane`` asks for a GPU: a CUDA runtime's, on a cluster that has GPUs. Without them it runs
        on a CPU node and is skipped there with its runtime's reason, as the local executor skips it."""
        if not self.gpu_slots:
            return False
        if lane.runtime not in self.cuda:
            self.cuda[lane.runtime] = _wants_cuda(lane.runtime)
        return self.cuda[lane.runtime]

    def cancel_all(self) -> None:
        """Cancel what is outstanding (Ctrl-C, SIGTERM, an error): their workers are killed."""
        for generator in list(self.running):
            with contextlib.suppress(Exception):
                self.ray.cancel(generator, force=True)
        self.running.clear()


def _wants_cuda(runtime_id: str) -> bool:
    if "cuda" in runtime_id.lower():
        return True
    from conformance.runtimes import get_runtime

    try:
        return get_runtime(runtime_id).required_provider == "CUDAExecutionProvider"
    except Exception:  # an id this driver cannot build: its worker will say why
        return False


def _artifact(lane: Lane) -> Key:
    return lane.suite, lane.case.id, lane.exporter


def _described(exc: BaseException) -> str:
    from exporters.base import describe_error

    return describe_error(exc, limit=300)
