"""The worker of a versioned runtime (``ort-cpu@1.24.4``): one model server in another Python environment.

This file is run as a script by that environment's Python (``python -I versioned_worker.py onnxruntime``)
and imports only the standard library, NumPy and the runtime package (``onnxruntime`` or ``openvino``):
the environment holds nothing else, lstm-conformance included. ``conformance.runtimes.versioned`` is
the other end.

Protocol, on the worker's stdin and a duplicate of its stdout (the real stdout then goes to stderr, so
what a library prints cannot corrupt a frame): each message is a frame, ``>IQ`` (the lengths of a JSON
header and of a binary payload), the header, the payload. Arrays travel as an ``.npz`` payload whose
members ``a0, a1...`` follow the header's ``names``. The worker first sends its versions; then it
answers each request with ``{"ok": true, ...}`` or ``{"ok": false, "type": ..., "error": ...}``.

Requests: ``load`` (a model; returns a session id), ``run`` (feeds -> outputs), ``placement`` (ORT:
the profile file; OpenVINO: each recurrent layer's precision), ``bind`` (hold feeds for ``tick``),
``tick`` (one inference on the held feeds, nothing returned: what the latency protocol times),
``properties`` (OpenVINO: what a compiled model gets), ``close``, ``exit``.

The worker exits when its parent does (a watchdog thread sees the parent change) or stdin closes.
"""

from __future__ import annotations

import functools
import io
import json
import os
import platform
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

FRAME = struct.Struct(">IQ")
WATCHDOG_S = 0.5


def read_exact(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 24))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return FRAME.pack(len(text), len(payload)) + text + payload


def read_frame(fd: int) -> tuple[dict[str, Any], bytes]:
    size, payload_size = FRAME.unpack(read_exact(fd, FRAME.size))
    header = json.loads(read_exact(fd, size))
    return header, read_exact(fd, payload_size) if payload_size else b""


def pack_arrays(arrays: dict[str, Any]) -> tuple[list[str], bytes]:
    import numpy as np

    buffer = io.BytesIO()
    names = list(arrays)
    values = {}
    for i, name in enumerate(names):
        value = arrays[name]
        if not isinstance(value, np.ndarray) or value.dtype == object:
            raise TypeError(f"output {name!r} is a {type(value).__name__}, not a tensor; the worker returns tensors")
        values[f"a{i}"] = value
    np.savez(buffer, **values)  # type: ignore[arg-type]  # numpy's stub types the keywords as allow_pickle
    return names, buffer.getvalue()


def unpack_arrays(names: list[str], payload: bytes) -> dict[str, Any]:
    import numpy as np

    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return {name: archive[f"a{i}"] for i, name in enumerate(names)}


class OrtModel:
    """An ``onnxruntime.InferenceSession`` as conformance.runtimes.onnxruntime_runtime opens it."""

    def __init__(self, ort: Any, request: dict[str, Any]) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, request["optimization"])
        options.log_severity_level = 4  # failures come back as exceptions, not console noise
        self.profiling = bool(request.get("profile_prefix"))
        if self.profiling:
            options.enable_profiling = True
            options.profile_file_prefix = request["profile_prefix"]
        provider = request["provider"]
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        self.session = ort.InferenceSession(request["path"], sess_options=options, providers=providers)
        if provider not in self.session.get_providers():
            fell_back = self.session.get_providers()
            raise RuntimeError(f"{provider} failed to initialise; the session fell back to {fell_back}")
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.run_options = ort.RunOptions()
        self.run_options.log_severity_level = 4
        self.profile: str | None = None
        self.tick: Callable[[], object] | None = None

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        values = self.session.run(self.output_names, feeds, self.run_options)
        return dict(zip(self.output_names, values, strict=True))

    def placement(self) -> dict[str, Any]:
        if self.profiling and self.profile is None:
            self.profile = self.session.end_profiling() or ""
        return {"profile": self.profile}

    def bind(self, feeds: dict[str, Any]) -> str:
        self.tick = functools.partial(self.session.run, self.output_names, feeds, self.run_options)
        return "InferenceSession.run, inputs and outputs in host memory"


class OpenVinoModel:
    """An OpenVINO compiled model, as conformance.runtimes.openvino_runtime compiles it."""

    def __init__(self, ov: Any, core: Any, request: dict[str, Any]) -> None:
        self.ov = ov
        self.compiled = core.compile_model(request["path"], "CPU", openvino_config(request["precision"]))
        self.request = self.compiled.create_infer_request()
        self.outputs = list(request["outputs"])
        if len(self.outputs) != len(self.compiled.outputs):
            raise RuntimeError(f"OpenVINO compiled {len(self.compiled.outputs)} outputs, the model has {self.outputs}")
        self.tick: Callable[[], object] | None = None

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        results = self.request.infer(feeds)
        return {name: np.array(results[port]) for name, port in zip(self.outputs, self.compiled.outputs, strict=True)}

    def placement(self) -> dict[str, Any]:
        placement = {}
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            layer = any_text(info["layerType"])
            if layer.startswith("RNN"):  # RNNSeq / RNNCell: how the CPU plugin runs LSTM
                placement[f"{op.get_friendly_name()} ({layer})"] = f"CPU {any_text(info['runtimePrecision'])}"
        return {"placement": placement}

    def bind(self, feeds: dict[str, Any]) -> str:
        import numpy as np

        request = self.compiled.create_infer_request()
        for name, value in feeds.items():
            request.set_tensor(name, self.ov.Tensor(np.ascontiguousarray(value)))
        try:
            request.infer(None, share_outputs=True)
            self.tick = functools.partial(request.infer, None, share_outputs=True)
            return "InferRequest.infer, input tensors set before timing, outputs not copied"
        except TypeError:  # releases before share_outputs
            self.tick = request.infer
            return "InferRequest.infer, input tensors set before timing"


def any_text(value: Any) -> str:
    """An rt_info entry as text (an OVAny in recent releases, a plain value in older ones)."""
    return str(value.astype(str)) if hasattr(value, "astype") else str(value)


def openvino_config(precision: str) -> dict[str, str]:
    return {} if precision == "auto" else {"INFERENCE_PRECISION_HINT": precision}


def openvino_api() -> Any:
    import openvino

    if hasattr(openvino, "Core"):
        return openvino
    import openvino.runtime  # releases before 2023.1

    return openvino.runtime


def openvino_properties(ov: Any, core: Any, precision: str) -> dict[str, str]:
    """What a model compiled with ``precision`` gets on the CPU, read from a compiled tiny model."""
    try:
        import openvino.opset8 as ops
    except ImportError:
        import openvino.runtime.opset8 as ops
    x = ops.parameter([1, 4], ov.Type.f32, name="x")
    compiled = core.compile_model(ov.Model([ops.relu(x)], [x], "probe"), "CPU", openvino_config(precision))
    return {
        "inference_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()),
        "inference_num_threads": str(compiled.get_property("INFERENCE_NUM_THREADS")),
        "num_streams": str(compiled.get_property("NUM_STREAMS")),
        "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")).rpartition(".")[2],
    }


class Server:
    def __init__(self, package: str) -> None:
        import numpy as np

        self.package = package
        self.models: dict[int, Any] = {}
        self.next_id = 1
        self.ready: dict[str, Any] = {"python": platform.python_version(), "numpy": np.__version__}
        if package == "onnxruntime":
            import onnxruntime as ort

            ort.set_default_logger_severity(4)
            self.module = ort
            self.ready.update(version=ort.__version__, providers=ort.get_available_providers())
        elif package == "openvino":
            self.module = openvino_api()
            self.core = self.module.Core()
            self.ready.update(version=self.module.get_version(), devices=list(self.core.available_devices))
        else:
            raise ValueError(f"unknown runtime package {package!r}")

    def handle(self, request: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bytes]:
        op = request["op"]
        if op == "load":
            model: Any
            if self.package == "onnxruntime":
                model = OrtModel(self.module, request)
            else:
                model = OpenVinoModel(self.module, self.core, request)
            self.models[self.next_id] = model
            self.next_id += 1
            return {"ok": True, "session": self.next_id - 1}, b""
        if op == "properties":
            return {"ok": True, "properties": openvino_properties(self.module, self.core, request["precision"])}, b""
        model = self.models[request["session"]]
        if op == "run":
            names, data = pack_arrays(model.run(unpack_arrays(request["names"], payload)))
            return {"ok": True, "names": names}, data
        if op == "placement":
            return {"ok": True, **model.placement()}, b""
        if op == "bind":
            return {"ok": True, "includes": model.bind(unpack_arrays(request["names"], payload))}, b""
        if op == "close":
            del self.models[request["session"]]
            return {"ok": True}, b""
        raise ValueError(f"unknown request {op!r}")


def watch_parent(parent: int) -> None:
    """Exit when the parent process is gone (killed for a timeout), even in the middle of an inference."""
    while True:
        time.sleep(WATCHDOG_S)
        if os.getppid() != parent:
            os._exit(3)


def main(argv: list[str]) -> int:
    out = os.dup(1)
    os.dup2(2, 1)  # a library's prints go to stderr, never into a frame
    sys.stdout = sys.stderr
    threading.Thread(target=watch_parent, args=(int(argv[2]),), daemon=True).start()
    try:
        server = Server(argv[1])
    except BaseException as exc:
        write_all(out, frame({"ok": False, "type": type(exc).__name__, "error": str(exc)}))
        return 1
    write_all(out, frame({"ok": True, **server.ready}))
    ticked = frame({"ok": True})
    while True:
        try:
            request, payload = read_frame(0)
        except EOFError:
            return 0
        op = request["op"]
        if op == "tick":  # the timed path: as little as possible around the inference
            tick = server.models[request["session"]].tick
            try:
                tick()
            except Exception as exc:
                write_all(out, frame({"ok": False, "type": type(exc).__name__, "error": str(exc)}))
                continue
            write_all(out, ticked)
            continue
        if op == "exit":
            return 0
        try:
            header, data = server.handle(request, payload)
        except Exception as exc:
            header, data = {"ok": False, "type": type(exc).__name__, "error": str(exc)}, b""
        write_all(out, frame(header, data))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
