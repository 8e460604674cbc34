"""Runtime registry: every backend the harness can run, available here or not.

:data:`BUILTIN_RUNTIMES` is the one list of built-in runtimes. Case
validation reads it without importing any backend (:func:`declared_runtime_ids`,
:func:`is_nameable`); :func:`all_runtimes` builds the backends from it. Adding
a runtime is one line there (and, for an ONNX Runtime execution provider this
list does not know yet, one name in :data:`ORT_PROVIDERS`).

``ID@VERSION`` (``ort-cpu@1.24.4``) names another release of a runtime that takes versions
(:data:`~conformance.runtimes.versioned.VERSIONED_BASES`), run from an environment of its own
(:mod:`conformance.runtimes.versioned`): :func:`get_runtime` builds it, :func:`is_nameable` accepts it.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass

from conformance.runtimes import versioned
from conformance.runtimes.base import Runtime, Session
from exporters.errors import BadInputError
from exporters.plugins import load_target, plugins_from_env

__all__ = [
    "BUILTIN_RUNTIMES",
    "EXTRA_ENV",
    "ORT_PROVIDERS",
    "PLUGIN_EP_VARIANT_IDS",
    "BuiltinRuntime",
    "Runtime",
    "Session",
    "UnknownRuntimeError",
    "all_runtimes",
    "declared_runtime_ids",
    "extra_runtimes",
    "get_runtime",
    "is_nameable",
    "nameable_runtime_ids",
    "parse_versioned",
    "runtime_ids",
    "unknown_runtime_hint",
]

# Extra runtimes as "id=module:Class" entries, comma-separated (plug-ins and test doubles).
EXTRA_ENV = "CONFORMANCE_EXTRA_RUNTIMES"


@dataclass(frozen=True)
class BuiltinRuntime:
    """A built-in runtime: its id and the factory that builds it, imported only by :func:`all_runtimes`.

    An id with a ``*`` is a family: its factory returns a list, of which the
    runtimes whose ids no fixed entry has are kept.
    """

    id: str
    factory: str  # "module:callable"
    args: tuple[str, ...] = ()


_ORT = "conformance.runtimes.onnxruntime_runtime"
_TORCH = "conformance.runtimes.torch_runtime:TorchRuntime"
_OPENVINO = "conformance.runtimes.openvino_runtime:OpenVinoRuntime"
BUILTIN_RUNTIMES: tuple[BuiltinRuntime, ...] = (
    BuiltinRuntime("reference", "conformance.runtimes.reference_runtime:ReferenceRuntime"),
    BuiltinRuntime("ort-cpu", f"{_ORT}:OrtRuntime", ("CPUExecutionProvider", "all")),
    BuiltinRuntime("ort-cpu-noopt", f"{_ORT}:OrtRuntime", ("CPUExecutionProvider", "noopt")),
    BuiltinRuntime("ort-cuda", f"{_ORT}:OrtRuntime", ("CUDAExecutionProvider", "all")),
    BuiltinRuntime("ort-*", f"{_ORT}:discover"),  # every other compute provider this onnxruntime has
    # onnxruntime-ep-* packages and --ep-library entries: ort-<ep> (and ort-<ep>-auto, see EP_VARIANTS)
    BuiltinRuntime("ort-*", "conformance.runtimes.ort_plugin_ep:discover"),
    BuiltinRuntime("torch-cpu", _TORCH, ("cpu",)),
    BuiltinRuntime("torch-cuda", _TORCH, ("cuda",)),
    BuiltinRuntime("onnx-reference", "conformance.runtimes.onnx_reference:OnnxReferenceRuntime"),
    BuiltinRuntime("openvino-cpu", _OPENVINO, ("f32",)),
    BuiltinRuntime("openvino-cpu-auto", _OPENVINO, ("auto",)),
    BuiltinRuntime("tract", "conformance.runtimes.tract_runtime:TractRuntime"),
)

# Short names (``ort-<name>``) of the ONNX Runtime execution providers that compute graph nodes, whether
# or not this build has them: a case may name ``ort-tensorrt`` for the machines that do. From
# ``onnxruntime.get_all_providers()`` (1.32) plus providers of other builds (acl, armnn, rocm, snpe, tvm,
# nvtensorrtrtx). AzureExecutionProvider is left out: it runs no node itself, so no runtime is built for it.
ORT_PROVIDERS = (
    "acl", "armnn", "cann", "coreml", "cpu", "cuda", "dml", "dnnl", "js", "migraphx", "nnapi", "nvtensorrtrtx",
    "openvino", "qnn", "rknpu", "rocm", "snpe", "tensorrt", "tvm", "vitisai", "vsinpu", "webgpu", "webnn", "xnnpack",
)  # fmt: skip


# Plugin-EP lanes beyond ``ort-<provider>``: the "-auto" variants of ort_plugin_ep.EP_VARIANTS (the EP's
# default precision), nameable in case files whether or not the package is installed.
PLUGIN_EP_VARIANT_IDS = ("ort-openvino-auto",)


class UnknownRuntimeError(BadInputError):
    """A runtime id that no backend provides; the message lists the known ones."""


def extra_runtimes() -> dict[str, str]:
    """Plug-in runtimes named in ``CONFORMANCE_EXTRA_RUNTIMES``: id -> "module:Class" (nothing imported)."""
    return plugins_from_env(EXTRA_ENV)


def declared_runtime_ids() -> list[str]:
    """The fixed built-in ids, then the plug-ins' (imports nothing): a case's runtimes when it names none."""
    return [r.id for r in BUILTIN_RUNTIMES if "*" not in r.id] + list(extra_runtimes())


def nameable_runtime_ids() -> list[str]:
    """Every id a case file may name: :func:`declared_runtime_ids` and ``ort-<provider>`` for each provider."""
    declared = declared_runtime_ids()
    providers = [f"ort-{p}" for p in ORT_PROVIDERS] + list(PLUGIN_EP_VARIANT_IDS)
    return declared + [runtime_id for runtime_id in providers if runtime_id not in declared]


def is_nameable(pattern: str) -> bool:
    """Whether the id or glob ``pattern`` matches an id a case file may name (imports nothing), versioned
    ids (``ort-cpu@1.24.4``) included."""
    if versioned.is_versioned(pattern):
        return versioned.nameable(pattern)
    return any(fnmatch.fnmatchcase(runtime_id, pattern) for runtime_id in nameable_runtime_ids())


def unknown_runtime_hint(runtime_id: str) -> str:
    """`` (did you mean 'ort-cpu'?)`` for a misspelt id, what is wrong with a versioned one, or ``""``."""
    if versioned.is_versioned(runtime_id):
        reason = versioned.problem(runtime_id, nameable_runtime_ids())
        return f" ({reason})" if reason else ""
    close = difflib.get_close_matches(runtime_id, nameable_runtime_ids(), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def all_runtimes() -> list[Runtime]:
    """The built-in runtimes in :data:`BUILTIN_RUNTIMES` order, then the plug-ins (this imports the backends)."""
    fixed = {r.id for r in BUILTIN_RUNTIMES if "*" not in r.id}
    runtimes: list[Runtime] = []
    for builtin in BUILTIN_RUNTIMES:
        made = load_target(builtin.factory)(*builtin.args)
        if "*" in builtin.id:
            runtimes += [r for r in made if r.id not in fixed and fnmatch.fnmatchcase(r.id, builtin.id)]
        else:
            runtimes.append(made)
    for runtime_id, target in extra_runtimes().items():
        runtime = load_target(target, plugin=f"{EXTRA_ENV}: {runtime_id}")()
        runtime.id = runtime_id
        runtimes.append(runtime)
    return runtimes


def runtime_ids() -> list[str]:
    """Ids of :func:`all_runtimes` (this imports the backends)."""
    return [r.id for r in all_runtimes()]


def parse_versioned(runtime_id: str) -> tuple[versioned.VersionedBase, str]:
    """``ort-cpu@1.24.4`` -> (the ort-cpu base, ``"1.24.4"``); bad input (``VersionedIdError``) naming what is
    wrong: no version, not a version, a runtime that takes none, an unknown one."""
    return versioned.parse(runtime_id, nameable_runtime_ids())


def get_runtime(runtime_id: str) -> Runtime:
    """The runtime ``runtime_id``; ``ID@VERSION`` is that release (:func:`versioned.versioned_runtime`: bad
    input when ID takes no version or VERSION is none). An unknown id is bad input."""
    if versioned.is_versioned(runtime_id):
        parse_versioned(runtime_id)
        return versioned.versioned_runtime(runtime_id)
    runtimes = {r.id: r for r in all_runtimes()}
    if runtime_id not in runtimes:
        close = difflib.get_close_matches(runtime_id, runtimes, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownRuntimeError(f"unknown runtime {runtime_id!r}{hint}; available: {', '.join(runtimes)}")
    return runtimes[runtime_id]
