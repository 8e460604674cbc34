"""OpenVINO's CPU plugin, in float32 (``openvino-cpu``) and in the device's default precision (``openvino-cpu-auto``).

OpenVINO reads the ONNX file itself (its ONNX front end) and compiles it for the
CPU. Its default inference precision depends on the processor: bfloat16 where
the CPU has AMX/AVX512-BF16, float32 elsewhere. ``settings`` reports the
precision the compiled model chose (``inference_precision``) and the dtype whose
tolerance judges it (``tolerance_dtype``), so a fast bf16 lane is never judged
as float32 silently. ``placement`` names the precision each recurrent layer ran in.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from exporters.base import AnyWeights, Artifact, Model

INSTALL_HINT = "openvino is not installed (pip install 'lstm-conformance[openvino]')"
DEVICE = "CPU"
# OpenVINO element type names -> the dtype names of conformance.compare.DEFAULT_TOLERANCES.
TOLERANCE_DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64"}


# Set once this process compiles a model: the CPU plugin's thread pool (TBB) then runs here, and a worker
# forked from this process would deadlock in its first compile (measured: ov::threading::ITaskExecutor).
_COMPILED_HERE: set[str] = set()  # {DEVICE} once a model was compiled here
FORK_HAZARD = "OpenVINO compiled a model in this process, so a forked worker would wait for ever on its thread pool"


@functools.lru_cache(maxsize=1)
def _core() -> Any:
    import openvino as ov

    return ov.Core()


AUTO = "auto"  # no precision hint: the device's default


def compile_config(precision: str) -> dict[str, str]:
    """Properties for ``compile_model``: an explicit precision hint, or none for ``"auto"`` (the device's default)."""
    return {} if precision == AUTO else {"INFERENCE_PRECISION_HINT": precision}


@functools.lru_cache(maxsize=4)
def compiled_properties(precision: str) -> dict[str, str]:
    """What a model compiled with ``precision`` gets on the CPU: ``inference_precision`` (``"f32"``,
    ``"bf16"``...), threads, streams, performance hint.

    Read from a compiled (tiny) model, not from the request: that is what the plugin really did.
    """
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 4], ov.Type.f32, name="x")
    _COMPILED_HERE.add(DEVICE)
    compiled = _core().compile_model(ov.Model([ops.relu(x)], [x], "probe"), DEVICE, compile_config(precision))
    return {
        "inference_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()),
        "inference_num_threads": str(compiled.get_property("INFERENCE_NUM_THREADS")),
        "num_streams": str(compiled.get_property("NUM_STREAMS")),
        "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")).rpartition(".")[2],
    }


def condensed_error(text: str) -> str:
    """OpenVINO's multi-line error as one line: the failing transformation and its reason.

    Its messages start with a chain of ``Exception from src/...cpp:N:`` lines; the reason is at the end
    (``... CALLBACK HAS THROWN: Unknown activation function: softsign``).
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception from ")] or lines or [""]
    reason = useful[-1].rpartition("CALLBACK HAS THROWN:")[2].strip()
    passes = [m.group(1) for line in useful if (m := re.match(r"\[(\w+)\]", line))]
    return f"{reason} ({passes[-1]})" if passes else reason


def onnx_output_names(path: str) -> list[str]:
    import onnx

    return [o.name for o in onnx.load(path, load_external_data=False).graph.output]


class OpenVinoSession:
    def __init__(self, path: str, precision: str) -> None:
        _COMPILED_HERE.add(DEVICE)
        try:
            self._compiled = _core().compile_model(path, DEVICE, compile_config(precision))
        except RuntimeError as exc:
            raise RuntimeError(f"OpenVINO cannot compile the model: {condensed_error(str(exc))}") from exc
        self._request = self._compiled.create_infer_request()
        self._outputs = onnx_output_names(path)
        if len(self._outputs) != len(self._compiled.outputs):
            raise RuntimeError(
                f"OpenVINO compiled {len(self._compiled.outputs)} outputs, the model has {self._outputs}"
            )

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._request.infer(dict(feeds))
        # Results follow the model's output order; copy them out of the request's buffers.
        return {name: np.array(results[port]) for name, port in zip(self._outputs, self._compiled.outputs, strict=True)}

    def placement(self) -> dict[str, str]:
        """Recurrent layers of the compiled (runtime) model -> device and precision they ran in."""
        placement = {}
        for op in self._compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            layer = str(info["layerType"].astype(str))
            if layer.startswith("RNN"):  # RNNSeq / RNNCell: how the CPU plugin runs LSTM
                precision = str(info["runtimePrecision"].astype(str))
                placement[f"{op.get_friendly_name()} ({layer})"] = f"{DEVICE} {precision}"
        return placement

    def timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[Callable[[], object], Callable[[], None] | None, str]:
        import openvino as ov

        request = self._compiled.create_infer_request()
        for name, value in feeds.items():
            request.set_tensor(name, ov.Tensor(np.ascontiguousarray(value)))
        call = functools.partial(request.infer, None, share_outputs=True)
        return call, None, "InferRequest.infer, input tensors set before timing, outputs not copied"

    def close(self) -> None:
        pass


class OpenVinoRuntime:
    consumes = "onnx"
    required_provider: str | None = None

    def __init__(self, precision: str = "f32") -> None:
        """``precision``: an OpenVINO ``INFERENCE_PRECISION_HINT`` (``"f32"``, ``"bf16"``...) or ``"auto"``."""
        self.precision = precision
        self.id = "openvino-cpu" if precision == "f32" else f"openvino-cpu-{precision}"
        auto = precision == AUTO
        chosen = "the device's default precision" if auto else f"INFERENCE_PRECISION_HINT={precision}"
        self.description = f"OpenVINO, CPU plugin, {chosen}"

    def fork_hazard(self) -> str | None:
        return FORK_HAZARD if _COMPILED_HERE else None

    def unavailable(self) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return INSTALL_HINT
        devices = _core().available_devices
        if DEVICE not in devices:
            return f"OpenVINO has no {DEVICE} device here (available: {', '.join(devices) or 'none'})"
        return None

    def settings(self) -> dict[str, Any]:
        import openvino as ov

        compiled = compiled_properties(self.precision)
        return {
            "openvino": ov.get_version(),
            "device": DEVICE,
            "precision_hint": "device default" if self.precision == AUTO else self.precision,
            **compiled,
            "tolerance_dtype": TOLERANCE_DTYPES.get(compiled["inference_precision"], "float32"),
        }

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> OpenVinoSession:
        assert artifact is not None and artifact.path is not None
        return OpenVinoSession(str(artifact.path), self.precision)


def discover() -> list[OpenVinoRuntime]:
    return [OpenVinoRuntime("f32"), OpenVinoRuntime(AUTO)]
