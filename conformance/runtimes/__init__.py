"""Runtime discovery: every backend the harness can run, available here or not."""

from __future__ import annotations

import difflib
import importlib
import os

from conformance.runtimes.base import Runtime, Session

__all__ = ["Runtime", "Session", "UnknownRuntimeError", "all_runtimes", "get_runtime", "runtime_ids"]

# Extra runtimes as "id=module:Class" entries, comma-separated (plug-ins and test doubles).
EXTRA_ENV = "CONFORMANCE_EXTRA_RUNTIMES"


def extra_runtimes() -> dict[str, str]:
    """Plug-in runtimes named in the environment: id -> "module:Class" (nothing imported)."""
    extra = {}
    for entry in filter(None, os.environ.get(EXTRA_ENV, "").split(",")):
        runtime_id, _, target = entry.strip().partition("=")
        extra[runtime_id] = target
    return extra


class UnknownRuntimeError(ValueError):
    """A runtime id that no backend provides; the message lists the known ones."""


def all_runtimes() -> list[Runtime]:
    from conformance.runtimes.onnx_reference import OnnxReferenceRuntime
    from conformance.runtimes.onnxruntime_runtime import discover
    from conformance.runtimes.reference_runtime import ReferenceRuntime
    from conformance.runtimes.torch_runtime import TorchRuntime

    runtimes: list[Runtime] = [ReferenceRuntime()]
    runtimes += discover()
    runtimes += [TorchRuntime("cpu"), TorchRuntime("cuda"), OnnxReferenceRuntime()]
    for runtime_id, target in extra_runtimes().items():
        module_name, _, class_name = target.partition(":")
        runtime = getattr(importlib.import_module(module_name), class_name)()
        runtime.id = runtime_id
        runtimes.append(runtime)
    return runtimes


def runtime_ids() -> list[str]:
    return [r.id for r in all_runtimes()]


def get_runtime(runtime_id: str) -> Runtime:
    runtimes = {r.id: r for r in all_runtimes()}
    if runtime_id not in runtimes:
        close = difflib.get_close_matches(runtime_id, runtimes, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownRuntimeError(f"unknown runtime {runtime_id!r}{hint}; available: {', '.join(runtimes)}")
    return runtimes[runtime_id]
