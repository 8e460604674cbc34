"""ONNX Runtime, one runtime per execution provider and graph-optimisation level.

Where each node ran is read from ORT's own profiler: every kernel event names
the provider that executed it. The CUDA EP hands some LSTM variants to the
CPU EP without failing; the harness uses this placement to refuse a CUDA pass
that was computed on the CPU.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from conformance.runtimes.ort_profile import parse_profile
from exporters.base import AnyWeights, Artifact, Model

__all__ = ["NON_COMPUTE_PROVIDERS", "OrtRuntime", "OrtSession", "discover", "parse_profile", "short_name"]

# Providers that do not execute graph nodes on a device of their own.
NON_COMPUTE_PROVIDERS = {"AzureExecutionProvider"}
OPT_LEVELS = {"all": "ORT_ENABLE_ALL", "noopt": "ORT_DISABLE_ALL"}


def short_name(provider: str) -> str:
    """``CUDAExecutionProvider`` -> ``cuda``."""
    return provider.removesuffix("ExecutionProvider").lower()


class OrtSession:
    def __init__(self, path: str, provider: str, opt_level: str, *, profile: bool) -> None:
        import onnxruntime as ort

        ort.set_default_logger_severity(4)  # errors come back as exceptions; keep the console clean
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt_level])
        options.log_severity_level = 4  # load failures come back as exceptions, not console noise
        self._provider = provider
        self._profile_dir: str | None = None
        if profile:
            # Inside the run's scratch folder when there is one, so a killed worker leaves nothing behind.
            self._profile_dir = tempfile.mkdtemp(prefix="ort-profile-", dir=os.environ.get("CONFORMANCE_SCRATCH"))
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(self._profile_dir, "ort")
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
            if provider not in self.session.get_providers():
                raise RuntimeError(
                    f"{provider} failed to initialise; the session fell back to {self.session.get_providers()}"
                )
        except BaseException:
            self.close()
            raise
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4  # failures come back as exceptions
        self._placement: dict[str, str] | None = None
        self._nodes: dict[str, str] = {}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, dict(feeds), self._run_options)
        return dict(zip(self.output_names, values, strict=True))

    def timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[Callable[[], object], Callable[[], None] | None, str]:
        """CPU: ``session.run`` itself. Other providers: IO binding with inputs and outputs on the device,
        so host/device copies are excluded from the timing."""
        import functools

        if self._provider == "CPUExecutionProvider":
            run = functools.partial(self.session.run, self.output_names, dict(feeds), self._run_options)
            return run, None, "InferenceSession.run, inputs and outputs in host memory"
        import onnxruntime as ort

        device = short_name(self._provider)
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, device, 0))
        for name in self.output_names:
            binding.bind_output(name, device)

        def call() -> None:
            self.session.run_with_iobinding(binding, self._run_options)

        return call, binding.synchronize_outputs, f"run_with_iobinding, inputs/outputs on {device}: copies excluded"

    def placement(self) -> dict[str, str]:
        if self._placement is None:
            if self._profile_dir is None:
                return {}
            profile = self.session.end_profiling()
            self._placement = parse_profile(profile) if profile else {}
        return self._placement

    def close(self) -> None:
        if self._profile_dir is not None:
            import shutil

            shutil.rmtree(self._profile_dir, ignore_errors=True)


class OrtRuntime:
    consumes = "onnx"

    def __init__(self, provider: str = "CPUExecutionProvider", opt_level: str = "all") -> None:
        self.provider = provider
        self.opt_level = opt_level
        suffix = "" if opt_level == "all" else f"-{opt_level}"
        self.id = f"ort-{short_name(provider)}{suffix}"
        level = "all graph optimisations" if opt_level == "all" else "graph optimisations disabled"
        self.description = f"ONNX Runtime, {provider}, {level}"
        self.required_provider = None if provider == "CPUExecutionProvider" else provider

    def unavailable(self) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return f"onnxruntime does not import: {exc}"
        available = ort.get_available_providers()
        if self.provider not in available:
            return f"onnxruntime {ort.__version__} has no {self.provider} (available: {', '.join(available)})"
        return None

    def settings(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "onnxruntime": ort.__version__,
            "provider": self.provider,
            "graph_optimization_level": OPT_LEVELS[self.opt_level],
            "intra_op_num_threads": "default (physical cores)",
        }

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> OrtSession:
        assert artifact is not None and artifact.path is not None
        return OrtSession(str(artifact.path), self.provider, self.opt_level, profile=True)


def discover() -> list[OrtRuntime]:
    """ORT runtimes: CPU (two optimisation levels), CUDA, and any other compute provider installed."""
    runtimes = [
        OrtRuntime("CPUExecutionProvider", "all"),
        OrtRuntime("CPUExecutionProvider", "noopt"),
        OrtRuntime("CUDAExecutionProvider", "all"),
    ]
    try:
        import onnxruntime as ort

        from conformance.runtimes.ort_plugin_ep import plugin_ep_names

        # Plugin EPs are registered by ort_plugin_ep, which opens their sessions by device; opened here by
        # name they would fall back to the CPU.
        skip = {"CPUExecutionProvider", "CUDAExecutionProvider"} | NON_COMPUTE_PROVIDERS | plugin_ep_names()
        extra = [p for p in ort.get_available_providers() if p not in skip]
    except ImportError:
        extra = []
    return runtimes + [OrtRuntime(p, "all") for p in extra]
