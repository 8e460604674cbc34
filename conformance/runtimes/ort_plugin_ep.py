"""ONNX Runtime plugin execution providers: ``onnxruntime-ep-*`` packages and ``--ep-library NAME=PATH``.

A plugin EP is a shared library that the standard ``onnxruntime`` wheel loads
with ``register_execution_provider_library``; it then lists devices through
``get_ep_devices()`` and a session selects them with
``SessionOptions.add_provider_for_devices``. Each EP becomes one runtime,
``ort-<ep>`` (``OpenVINOExecutionProvider`` -> ``ort-openvino``; an EP whose
default precision is not float32 also gets ``ort-<ep>-auto``, see
``EP_VARIANTS``), whose lanes
pass only when every LSTM node ran on that EP: where nodes ran is read from
the session's graph-assignment record and ORT's profile, so an LSTM the EP
handed back to ``CPUExecutionProvider`` fails the lane instead of passing
silently. An EP that binds no device here is unavailable, with that reason.

Registration is process-wide and happens lazily (in ``unavailable`` / ``open``),
so discovering runtimes loads no library. ``--ep-library`` entries reach the
worker processes through the ``CONFORMANCE_EP_LIBRARIES`` environment variable.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporters.base import AnyWeights, Artifact, Model, describe_error
from exporters.errors import BadInputError

PACKAGE_PREFIX = "onnxruntime-ep-"
# "NAME=PATH" entries separated by os.pathsep, as the CLI's --ep-library options wrote them.
EP_LIBRARIES_ENV = "CONFORMANCE_EP_LIBRARIES"
EP_ENTRY_POINT = "CreateEpFactories"  # the symbol every plugin EP library exports (ORT's EP ABI)
SHARED_LIBRARY_MAGIC = (b"\x7fELF", b"MZ", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
SHARED_LIBRARY_SUFFIXES = (".so", ".dll", ".dylib")


@dataclass(frozen=True)
class EpLibrary:
    """A plugin EP library: where it is, the EPs it provides, where it came from, or why it is unusable."""

    name: str  # registration name: the package name, or NAME of --ep-library
    path: Path | None
    ep_names: tuple[str, ...]  # the EPs it provides (declared by the package, or NAME of --ep-library)
    source: str  # "onnxruntime-ep-openvino 1.8.1" or "--ep-library NAME=PATH"
    problem: str | None = None


@dataclass(frozen=True)
class Variant:
    """One way of running an EP: an id suffix, its provider options, and the precision they select."""

    suffix: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    precision: str = "EP default"
    tolerance_dtype: str | None = "float32"  # None: decided from the device (see PluginEpRuntime.settings)


# EPs whose default precision is not float32 everywhere get a float32 lane (the plain id) and a lane with
# the EP's defaults ("-auto"). OpenVINO's EP ignores its "precision" option on this path; it takes the CPU
# plugin's INFERENCE_PRECISION_HINT through load_config (and defaults to bf16 on CPUs with AMX).
OPENVINO_F32 = {"load_config": '{"CPU": {"INFERENCE_PRECISION_HINT": "f32"}}'}
EP_VARIANTS: dict[str, tuple[Variant, ...]] = {
    "OpenVINOExecutionProvider": (
        Variant("", OPENVINO_F32, "f32 (load_config INFERENCE_PRECISION_HINT)"),
        Variant("-auto", {}, "the device's default", None),
    ),
}


def ep_short_name(ep_name: str) -> str:
    """``OpenVINOExecutionProvider`` -> ``openvino``; ``OpenVINOExecutionProvider.AUTO`` -> ``openvino-auto``."""
    return re.sub(r"[^a-z0-9]+", "-", ep_name.replace("ExecutionProvider", "").lower()).strip("-")


# --- --ep-library NAME=PATH -------------------------------------------------------------------------


def check_ep_library(path: Path, what: str) -> None:
    """Raise ``BadInputError`` (one line naming ``what`` and ``path``) unless ``path`` is a plugin EP library."""
    import ctypes

    if not path.exists():
        raise BadInputError(f"{what}: no such file: {path}")
    if not path.is_file():
        raise BadInputError(f"{what}: not a file: {path}")
    with path.open("rb") as stream:
        head = stream.read(4)
    if not head.startswith(SHARED_LIBRARY_MAGIC):
        raise BadInputError(f"{what}: {path} is not a shared library")
    try:
        library = ctypes.CDLL(str(path))
    except OSError as exc:
        raise BadInputError(f"{what}: {path} does not load: {describe_error(exc, 200)}") from None
    if not hasattr(library, EP_ENTRY_POINT):
        raise BadInputError(f"{what}: {path} is not an ONNX Runtime plugin EP library (no {EP_ENTRY_POINT} symbol)")


def parse_ep_library(entry: str) -> EpLibrary:
    """``NAME=PATH`` (NAME: the EP's name as ONNX Runtime reports it) -> a checked ``EpLibrary``.

    Raises ``BadInputError`` (a ``ValueError``: the CLI's exit 2), one line naming the entry: bad
    syntax, a missing file, a file that is not a plugin EP library.
    """
    what = f"--ep-library {entry}"
    name, sep, raw_path = entry.partition("=")
    name, raw_path = name.strip(), raw_path.strip()
    if not sep or not name or not raw_path:
        raise BadInputError(
            f"{what}: expected NAME=PATH (NAME: the execution provider, e.g. OpenVINOExecutionProvider)"
        )
    path = Path(raw_path).expanduser().absolute()
    check_ep_library(path, what)
    return EpLibrary(name=name, path=path, ep_names=(name,), source=what)


def ep_libraries_env(entries: Sequence[str]) -> str:
    """The ``CONFORMANCE_EP_LIBRARIES`` value for checked ``--ep-library`` entries (workers read it)."""
    libraries = [parse_ep_library(entry) for entry in entries]
    return os.pathsep.join(f"{lib.name}={lib.path}" for lib in libraries)


def env_ep_libraries() -> list[EpLibrary]:
    """The ``--ep-library`` entries passed down in the environment; a bad one becomes a library with a problem."""
    libraries = []
    for entry in filter(None, os.environ.get(EP_LIBRARIES_ENV, "").split(os.pathsep)):
        try:
            libraries.append(parse_ep_library(entry))
        except ValueError as exc:
            name = entry.partition("=")[0].strip() or entry
            libraries.append(EpLibrary(name, None, (name,), f"--ep-library {entry}", problem=str(exc)))
    return libraries


# --- onnxruntime-ep-* packages ------------------------------------------------------------------------


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _package_library(dist: Any, module: Any) -> Path | None:
    """The package's EP library: its ``get_library_path()``, else the shared library that exports the entry point."""
    getter = getattr(module, "get_library_path", None)
    if callable(getter):
        return Path(getter())
    import ctypes

    candidates = [Path(str(dist.locate_file(f))) for f in dist.files or () if f.name.endswith(SHARED_LIBRARY_SUFFIXES)]
    candidates.sort(key=lambda p: ("provider" not in p.name and "onnxruntime" not in p.name, p.name))
    for candidate in candidates:
        try:
            if hasattr(ctypes.CDLL(str(candidate)), EP_ENTRY_POINT):
                return candidate
        except OSError:
            continue
    return None


def _package_ep_library(dist: Any) -> EpLibrary:
    import importlib

    name = _normalized(dist.metadata["Name"])
    source = f"{name} {dist.version}"
    top_level = (dist.read_text("top_level.txt") or "").split() or [name.replace("-", "_")]
    try:
        module = importlib.import_module(top_level[0])
        path = _package_library(dist, module)
    except Exception as exc:  # a broken package costs its own runtime only
        return EpLibrary(name, None, (), source, problem=f"{source} does not import: {describe_error(exc)}")
    if path is None:
        return EpLibrary(name, None, (), source, problem=f"{source}: no EP library ({EP_ENTRY_POINT}) in the package")
    names = getattr(module, "get_ep_names", None)
    single = getattr(module, "get_ep_name", None)
    declared = tuple(names()) if callable(names) else (single(),) if callable(single) else ()
    return EpLibrary(name, path, declared, source)


def _may_be_ep_package(dist: Any) -> bool:
    """False for a distribution whose metadata folder (``name-version.dist-info``) names another package:
    reading every distribution's metadata costs ~35 ms, and ``check`` asks on every start."""
    folder = getattr(dist, "_path", None)  # importlib.metadata.PathDistribution's folder
    if folder is None:
        return True
    return _normalized(Path(str(folder)).name.split("-", 1)[0]).startswith(PACKAGE_PREFIX)


@functools.lru_cache(maxsize=1)
def installed_ep_libraries() -> tuple[EpLibrary, ...]:
    """Every installed ``onnxruntime-ep-*`` distribution, in name order."""
    import importlib.metadata

    dists = {
        _normalized(d.metadata["Name"] or ""): d
        for d in importlib.metadata.distributions()
        if _may_be_ep_package(d) and _normalized(d.metadata["Name"] or "").startswith(PACKAGE_PREFIX)
    }
    return tuple(_package_ep_library(dists[name]) for name in sorted(dists))


# --- registration --------------------------------------------------------------------------------------

# Library path -> the EP names whose devices appeared when it was registered, for this process.
_REGISTERED: dict[Path, set[str]] = {}


def register(library: EpLibrary) -> None:
    """Register ``library`` with onnxruntime once per process; raises what ORT raises on failure."""
    import onnxruntime as ort

    assert library.path is not None
    if library.path in _REGISTERED:
        return
    before = {d.ep_name for d in ort.get_ep_devices()}
    try:
        ort.register_execution_provider_library(library.name, str(library.path))
    except Exception as exc:
        if "already registered" not in str(exc):
            raise
    _REGISTERED[library.path] = {d.ep_name for d in ort.get_ep_devices()} - before


def devices_of(ep_name: str) -> list[Any]:
    """The ``OrtEpDevice`` objects of ``ep_name`` (after registration)."""
    import onnxruntime as ort

    return [d for d in ort.get_ep_devices() if d.ep_name == ep_name]


def resolve_ep_names(library: EpLibrary) -> tuple[str, ...]:
    """The EPs ``library`` provides: as declared, else by registering it and reading the devices it added."""
    if library.ep_names or library.path is None:
        return library.ep_names
    import onnxruntime as ort

    before = {d.ep_name for d in ort.get_ep_devices()}
    register(library)
    return tuple(sorted({d.ep_name for d in ort.get_ep_devices()} - before))


# --- session and runtime -------------------------------------------------------------------------------


def assignment_placement(session: Any) -> dict[str, str]:
    """``"node (OpType)"`` -> EP, from ORT's graph-assignment record (original node names, fused or not)."""
    getter = getattr(session, "get_provider_graph_assignment_info", None)
    if getter is None:
        return {}
    return {f"{node.name} ({node.op_type})": sub.ep_name for sub in getter() for node in sub.get_nodes()}


def one_line(text: str) -> str:
    """A plugin's multi-line failure as one line: ORT's prefix and the reason at the end.

    OpenVINO's EP, for one, reports ``[ONNXRuntimeError] : 11 : EP_FAIL : Exception from src/...cpp:117:``
    and a chain of such lines before the reason (``... CALLBACK HAS THROWN: Unknown activation function``).
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) <= 1:
        return text.strip()
    reasons = [line for line in lines[1:] if not line.startswith("Exception from ")] or lines[-1:]
    head = lines[0].partition("Exception from ")[0].strip()
    return f"{head} {reasons[-1].rpartition('CALLBACK HAS THROWN:')[2].strip()}".strip()


# EPs that created a session in this process: their libraries may run thread pools here (the OpenVINO EP
# does), and a worker forked from this process would deadlock in its first session (measured).
_SESSIONS_HERE: set[str] = set()


class PluginEpSession:
    def __init__(self, path: str, ep_name: str, devices: list[Any], options: Mapping[str, str]) -> None:
        import onnxruntime as ort

        _SESSIONS_HERE.add(ep_name)

        ort.set_default_logger_severity(4)  # errors come back as exceptions
        session_options = ort.SessionOptions()
        session_options.log_severity_level = 4
        session_options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        self._profile_dir: str | None = tempfile.mkdtemp(
            prefix="ort-profile-", dir=os.environ.get("CONFORMANCE_SCRATCH")
        )
        session_options.enable_profiling = True
        session_options.profile_file_prefix = os.path.join(self._profile_dir, "ort")
        session_options.add_provider_for_devices(devices, dict(options))
        try:
            try:
                self.session = ort.InferenceSession(path, sess_options=session_options)
            except Exception as exc:
                if "\n" not in str(exc).strip():
                    raise
                raise RuntimeError(one_line(str(exc))) from exc
            if ep_name not in self.session.get_providers():
                raise RuntimeError(f"{ep_name} failed to initialise; the session has {self.session.get_providers()}")
        except BaseException:
            self.close()
            raise
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4
        self._placement: dict[str, str] | None = None

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, dict(feeds), self._run_options)
        return dict(zip(self.output_names, values, strict=True))

    def placement(self) -> dict[str, str]:
        """Profile kernel events, overridden by the assignment record; ends profiling (call before timing)."""
        if self._placement is None:
            from conformance.runtimes.ort_profile import parse_profile

            profile = self.session.end_profiling()
            self._placement = {**(parse_profile(profile) if profile else {}), **assignment_placement(self.session)}
        return self._placement

    def timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[Callable[[], object], Callable[[], None] | None, str]:
        run = functools.partial(self.session.run, self.output_names, dict(feeds), self._run_options)
        return run, None, "InferenceSession.run, inputs and outputs in host memory"

    def close(self) -> None:
        if self._profile_dir is not None:
            import shutil

            shutil.rmtree(self._profile_dir, ignore_errors=True)
            self._profile_dir = None


class PluginEpRuntime:
    consumes = "onnx"

    def __init__(self, library: EpLibrary, ep_name: str, variant: Variant | None = None) -> None:
        self.library = library
        self.ep_name = ep_name
        self.variant = variant or Variant()
        self.id = f"ort-{ep_short_name(ep_name)}{self.variant.suffix}"
        self.required_provider: str | None = ep_name
        self.description = f"ONNX Runtime, {ep_name} plugin EP ({library.source}), precision: {self.variant.precision}"

    def fork_hazard(self) -> str | None:
        if self.ep_name in _SESSIONS_HERE:
            return (
                f"{self.ep_name} ran a session in this process, so a forked worker could wait for ever on its threads"
            )
        return None

    def _devices(self) -> list[Any]:
        register(self.library)
        return devices_of(self.ep_name)

    def unavailable(self) -> str | None:
        if self.library.problem:
            return self.library.problem
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return f"onnxruntime does not import: {exc}"
        if not hasattr(ort, "register_execution_provider_library"):
            return f"onnxruntime {ort.__version__} cannot load plugin EPs (needs 1.22 or later)"
        try:
            devices = self._devices()
        except Exception as exc:
            return f"{self.library.source}: {self.library.path} does not register: {describe_error(exc)}"
        if not devices:
            provided = _REGISTERED.get(self.library.path, set()) if self.library.path else set()
            wrong_name = provided and self.ep_name not in provided  # e.g. --ep-library openvino=...
            hint = f" (the library provides {', '.join(sorted(provided))})" if wrong_name else ""
            return f"no device for {self.ep_name} on this CPU{hint}"
        return None

    def settings(self) -> dict[str, Any]:
        import onnxruntime as ort

        try:  # settings of an unavailable runtime say what they can
            devices = [] if self.library.problem else self._devices()
        except Exception:
            devices = []
        metadata = dict(devices[0].ep_metadata) if devices else {}
        tolerance_dtype = self.variant.tolerance_dtype
        if tolerance_dtype is None:  # the device's default: bf16 where the device says it computes in BF16
            tolerance_dtype = "bfloat16" if "BF16" in metadata.get("OPTIMIZATION_CAPABILITIES", "") else "float32"
        return {
            "onnxruntime": ort.__version__,
            "provider": self.ep_name,
            "plugin": self.library.source,
            "plugin_version": metadata.get("version", "unknown"),
            "library": str(self.library.path),
            "devices": [f"{d.device.type.name} ({d.device.vendor})" for d in devices],
            "provider_options": dict(self.variant.options) or "defaults",
            "precision": self.variant.precision,
            "tolerance_dtype": tolerance_dtype,
        }

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> PluginEpSession:
        assert artifact is not None and artifact.path is not None
        devices = self._devices()
        if not devices:
            raise RuntimeError(f"no device for {self.ep_name} on this CPU")
        return PluginEpSession(str(artifact.path), self.ep_name, devices, self.variant.options)


def discover(extra: Sequence[EpLibrary] | None = None) -> list[PluginEpRuntime]:
    """One runtime per EP of the installed packages and of ``extra`` (default: ``--ep-library`` entries
    from the environment, which replace a package's runtime for the same EP)."""
    libraries = [*installed_ep_libraries(), *(env_ep_libraries() if extra is None else extra)]
    runtimes: dict[str, PluginEpRuntime] = {}
    for library in libraries:
        broken: EpLibrary | None = None
        try:
            names = resolve_ep_names(library)
        except Exception as exc:
            problem = f"{library.source}: {library.path} does not register: {describe_error(exc)}"
            names, broken = (), EpLibrary(library.name, library.path, (), library.source, problem=problem)
        for ep_name in names or (library.name.removeprefix(PACKAGE_PREFIX),):
            for variant in EP_VARIANTS.get(ep_name, (Variant(),)):
                runtime = PluginEpRuntime(broken or library, ep_name, variant)
                runtimes[runtime.id] = runtime
    return list(runtimes.values())


def plugin_ep_names() -> set[str]:
    """EP names that belong to plugin libraries (declared, or seen appearing at registration in this process).

    Registering a plugin adds its EPs to ``onnxruntime.get_available_providers()`` (here
    ``OpenVINOExecutionProvider`` and ``OpenVINOExecutionProvider.AUTO``); ``onnxruntime_runtime.discover``
    must leave these out, or it builds by-name ``OrtRuntime`` duplicates that cannot create a session.
    """
    declared = {name for library in installed_ep_libraries() for name in library.ep_names}
    added = {name for names in _REGISTERED.values() for name in names}
    return declared | {library.name for library in env_ep_libraries()} | added
