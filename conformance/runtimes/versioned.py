"""Runtimes at a pinned release: ``ort-cpu@1.24.4`` is ONNX Runtime 1.24.4, whatever is installed here.

``ID@VERSION`` names a release of the runtime ``ID`` (:data:`VERSIONED_BASES`: ``ort-cpu``,
``ort-cpu-noopt``, ``openvino-cpu``, ``openvino-cpu-auto``). Its package is installed, with its own
dependencies and NumPy and nothing else, in an environment of its own, created on first use and cached
(:mod:`conformance.runtimes.versioned_env`). A long-lived worker process of that environment's Python
(:mod:`conformance.runtimes.versioned_worker`, standard library + NumPy + the package) loads the models
and runs them; sessions here talk to it through pipes
(:mod:`conformance.runtimes.versioned_client`). The worker opens sessions exactly as the
in-process runtime does (same options, ORT profiling for placement, OpenVINO's precision hint), so a
difference between ``ort-cpu`` and ``ort-cpu@1.24.4`` is a difference between the releases.

A release that cannot be installed is a skip with the installer's last error line. An id that is not
``ID@VERSION`` for a runtime that takes versions is bad input (:class:`VersionedIdError`).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.runtimes.versioned_client import RemoteError, Worker, WorkerError, stop_workers, worker_for
from exporters.errors import BadInputError

if TYPE_CHECKING:
    import numpy as np

    from conformance.runtimes.versioned_env import Environment, Installer
    from exporters.base import AnyWeights, Artifact, Model

__all__ = [
    "VERSIONED_BASES",
    "RemoteError",
    "VersionedBase",
    "VersionedIdError",
    "VersionedRuntime",
    "VersionedSession",
    "WorkerError",
    "is_versioned",
    "nameable",
    "parse",
    "problem",
    "release_key",
    "stop_workers",
    "versioned_runtime",
]

SEPARATOR = "@"
# A release as package indexes spell it: 1.24.4, 2025.4.0, 1.25.0rc1, 1.24.0.dev20251031003 (no epochs,
# no local versions, no spaces).
VERSION = re.compile(r"\d+(?:\.\d+)*(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?")


@dataclass(frozen=True)
class VersionedBase:
    """A runtime that can run at another release: its package and how its sessions are opened."""

    id: str
    package: str  # "onnxruntime" | "openvino"
    description: str
    example: str  # a release, for messages
    options: Mapping[str, str] = field(default_factory=dict)


_ORT_CPU = "CPUExecutionProvider"
_ORT = "ONNX Runtime, CPUExecutionProvider"
_OV = "OpenVINO, CPU plugin"
VERSIONED_BASES: dict[str, VersionedBase] = {
    base.id: base
    for base in (
        VersionedBase("ort-cpu", "onnxruntime", f"{_ORT}, all graph optimisations", "1.24.4",
                      {"provider": _ORT_CPU, "optimization": "ORT_ENABLE_ALL"}),
        VersionedBase("ort-cpu-noopt", "onnxruntime", f"{_ORT}, graph optimisations disabled", "1.24.4",
                      {"provider": _ORT_CPU, "optimization": "ORT_DISABLE_ALL"}),
        VersionedBase("openvino-cpu", "openvino", f"{_OV}, INFERENCE_PRECISION_HINT=f32", "2025.4.0",
                      {"precision": "f32"}),
        VersionedBase("openvino-cpu-auto", "openvino", f"{_OV}, the device's default precision", "2025.4.0",
                      {"precision": "auto"}),
    )
}  # fmt: skip


class VersionedIdError(BadInputError):
    """An ``ID@VERSION`` that names no release of a runtime that takes versions; ``str()`` is one line."""


def is_versioned(runtime_id: str) -> bool:
    return SEPARATOR in runtime_id


def _versioned_listing() -> str:
    return ", ".join(VERSIONED_BASES)


def problem(runtime_id: str, known: Collection[str] = ()) -> str | None:
    """Why ``ID@VERSION`` names no versioned runtime (one clause), or ``None`` when it does. ``known``: the
    runtime ids there are (to tell one that takes no version from a misspelt one)."""
    base_id, _, version = runtime_id.partition(SEPARATOR)
    base = VERSIONED_BASES.get(base_id)
    if base is None:
        if base_id in known:
            return f"{base_id} takes no version; the runtimes that do: {_versioned_listing()}"
        close = difflib.get_close_matches(base_id, [*VERSIONED_BASES, *known], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown runtime {base_id!r}{hint}; the runtimes that take a version: {_versioned_listing()}"
    if not version:
        return f"no version after '{SEPARATOR}'; give a release, e.g. {base.id}{SEPARATOR}{base.example}"
    if not VERSION.fullmatch(version):
        return f"{version!r} is not a version; give a release, e.g. {base.id}{SEPARATOR}{base.example}"
    return None


def parse(runtime_id: str, known: Collection[str] = ()) -> tuple[VersionedBase, str]:
    """``ort-cpu@1.24.4`` -> (the ort-cpu base, ``"1.24.4"``); :class:`VersionedIdError` otherwise (``known``
    as for :func:`problem`; ``conformance.runtimes.parse_versioned`` passes every nameable id)."""
    reason = problem(runtime_id, known)
    if reason is not None:
        raise VersionedIdError(f"runtime {runtime_id!r}: {reason}")
    base_id, _, version = runtime_id.partition(SEPARATOR)
    return VERSIONED_BASES[base_id], version


def nameable(pattern: str) -> bool:
    """Whether a case file may name ``pattern`` (``ID@VERSION``, or a glob such as ``ort-cpu@1.2*``)."""
    base_glob, _, version = pattern.partition(SEPARATOR)
    if not any(fnmatch.fnmatchcase(base_id, base_glob) for base_id in VERSIONED_BASES):
        return False
    return any(c in version for c in "*?[") or VERSION.fullmatch(version) is not None


_RUNTIMES: dict[str, VersionedRuntime] = {}


def versioned_runtime(runtime_id: str) -> VersionedRuntime:
    """The runtime ``ID@VERSION``, one object per id in a process (it holds the worker); nothing is
    installed or started until it is used. Ids are checked by ``conformance.runtimes.get_runtime``."""
    if runtime_id not in _RUNTIMES:
        base, version = parse(runtime_id)
        _RUNTIMES[runtime_id] = VersionedRuntime(base, version)
    return _RUNTIMES[runtime_id]


def release_key(runtime_id: str) -> tuple[str, tuple[int, ...], str]:
    """Sort key: by base, the plain id first, then its releases in numeric order (1.9 before 1.10)."""
    base_id, _, version = runtime_id.partition(SEPARATOR)
    return base_id, tuple(int(n) for n in re.findall(r"\d+", version)) if version else (-1,), runtime_id


def _release(version: str) -> tuple[int, ...]:
    """``1.24`` and ``1.24.0`` -> ``(1, 24)``: releases compared without trailing zeros."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    parts = [int(p) for p in match.group().split(".")] if match else []
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


class VersionedRuntime:
    """``ID@VERSION``: the runtime ``ID`` at that release, run by a worker of its own environment."""

    consumes = "onnx"
    required_provider: str | None = None  # CPU runtimes: every node runs where the lane says

    def __init__(
        self,
        base: VersionedBase,
        version: str,
        *,
        environment: Environment | None = None,
        installer: Installer | None = None,
        root: Path | None = None,
    ) -> None:
        """``environment``: a Python that has the package (tests); by default the cached environment,
        made by ``installer`` under ``root`` (default: the cache folder) when it does not exist."""
        self.base, self.version = base, version
        self.id = f"{base.id}{SEPARATOR}{version}"
        self.description = f"{base.description}; {base.package} {version} in an environment of its own"
        self._environment, self._installer, self._root = environment, installer, root
        self._properties: dict[str, str] | None = None

    def environment(self) -> Environment:
        """The environment (created now if needed); raises InstallError when it cannot be."""
        from conformance.runtimes.versioned_env import EnvironmentSpec, provision

        if self._environment is None:
            spec = EnvironmentSpec(self.base.package, self.version)
            self._environment = provision(spec, root=self._root, installer=self._installer)
        return self._environment

    def worker(self) -> Worker:
        return worker_for(self.environment(), self.base.package, f"{self.base.package} {self.version}")

    def unavailable(self) -> str | None:
        from conformance.runtimes.versioned_env import InstallError

        try:
            ready = self.worker().ready
        except (InstallError, WorkerError) as exc:
            return f"{self.id}: {exc}"
        found = str(ready.get("version", "")).split("-")[0]
        if _release(found) != _release(self.version):
            return f"{self.id}: the environment {self.environment().python} has {self.base.package} {found}"
        if self.base.package == "onnxruntime" and self.base.options["provider"] not in ready.get("providers", []):
            return f"{self.id}: onnxruntime {found} has no {self.base.options['provider']}"
        if self.base.package == "openvino" and "CPU" not in ready.get("devices", []):
            return f"{self.id}: OpenVINO {found} has no CPU device here (available: {ready.get('devices')})"
        return None

    def settings(self) -> dict[str, Any]:
        ready = self.worker().ready
        environment = self.environment()
        where = {
            "python": ready["python"],
            "numpy": ready["numpy"],
            "environment": str(environment.root or environment.python),
            "process": "a worker process of that environment",
        }
        if self.base.package == "onnxruntime":
            return {
                "onnxruntime": ready["version"],
                "provider": self.base.options["provider"],
                "graph_optimization_level": self.base.options["optimization"],
                "intra_op_num_threads": "default (physical cores)",
                **where,
            }
        from conformance.runtimes.openvino_runtime import TOLERANCE_DTYPES

        precision = self.base.options["precision"]
        if self._properties is None:
            answer = self.worker().request({"op": "properties", "precision": precision})[0]
            self._properties = {str(k): str(v) for k, v in answer["properties"].items()}
        return {
            "openvino": ready["version"],
            "device": "CPU",
            "precision_hint": "device default" if precision == "auto" else precision,
            **self._properties,
            "tolerance_dtype": TOLERANCE_DTYPES.get(self._properties["inference_precision"], "float32"),
            **where,
        }

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> VersionedSession:
        assert artifact is not None and artifact.path is not None
        worker, path = self.worker(), str(artifact.path)
        request: dict[str, Any] = {"op": "load", "path": path, **self.base.options}
        profile_dir = None
        if self.base.package == "onnxruntime":
            # Inside the run's scratch folder when there is one, so a killed worker leaves nothing behind.
            profile_dir = tempfile.mkdtemp(prefix="ort-profile-", dir=os.environ.get("CONFORMANCE_SCRATCH"))
            request["profile_prefix"] = os.path.join(profile_dir, "ort")
        else:
            from conformance.runtimes.openvino_runtime import onnx_output_names

            request["outputs"] = onnx_output_names(path)
        try:
            session = worker.request(request)[0]["session"]
        except RemoteError as exc:
            if profile_dir is not None:
                shutil.rmtree(profile_dir, ignore_errors=True)
            if self.base.package == "openvino":
                from conformance.runtimes.openvino_runtime import condensed_error

                raise RuntimeError(f"OpenVINO cannot compile the model: {condensed_error(str(exc))}") from None
            raise
        return VersionedSession(worker, session, f"{self.base.package} {self.version}", profile_dir)


class VersionedSession:
    """A model loaded in the worker."""

    def __init__(self, worker: Worker, session: int, label: str, profile_dir: str | None) -> None:
        self._worker, self._session, self._label, self._profile_dir = worker, session, label, profile_dir
        self._placement: dict[str, str] | None = None

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from conformance.runtimes.versioned_worker import pack_arrays, unpack_arrays

        names, payload = pack_arrays(dict(feeds))
        header, data = self._worker.request({"op": "run", "session": self._session, "names": names}, payload)
        return unpack_arrays(header["names"], data)

    def placement(self) -> dict[str, str]:
        if self._placement is None:
            header = self._worker.request({"op": "placement", "session": self._session})[0]
            if "placement" in header:
                self._placement = {str(k): str(v) for k, v in header["placement"].items()}
            elif header.get("profile"):
                from conformance.runtimes.ort_profile import parse_profile

                self._placement = parse_profile(header["profile"])
            else:
                self._placement = {}
        return self._placement

    def timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[Callable[[], object], Callable[[], None] | None, str]:
        """One inference per call, on inputs the worker holds: the call is one request and its answer."""
        from conformance.runtimes.versioned_worker import pack_arrays

        names, payload = pack_arrays(dict(feeds))
        includes = self._worker.request({"op": "bind", "session": self._session, "names": names}, payload)[0]
        what = f"{includes['includes']}, in the worker process of {self._label}: each call is one request over a pipe"
        return self._worker.tick(self._session), None, what

    def close(self) -> None:
        try:
            if self._worker.alive():
                self._worker.request({"op": "close", "session": self._session})
        except (RemoteError, WorkerError):
            pass
        finally:
            if self._profile_dir is not None:
                shutil.rmtree(self._profile_dir, ignore_errors=True)
