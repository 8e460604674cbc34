"""The runtime protocol: one small class per backend.

A runtime consumes one kind of artifact (``"onnx"``, ``"torch"``, or
``"weights"`` for the NumPy reference itself), says whether it can run here,
and opens a session whose ``run`` returns the model's outputs by name and
nothing hidden. Sessions that know where each node ran report it through
``placement`` (node name -> execution provider).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from exporters.base import AnyWeights, Artifact, Model


class Session(Protocol):
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for the given inputs (names per exporters/base.py)."""

    def placement(self) -> dict[str, str]:
        """Node name -> where it ran, for the runs so far; empty when the backend cannot tell."""

    def timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[Callable[[], object], Callable[[], None] | None, str]:
        """One inference as a bare callable for the timer, a device sync (or None), and what it includes.

        Inputs are prepared (converted, moved to the device) before timing, so the callable does
        the least work the backend allows.
        """

    def close(self) -> None: ...


class Runtime(Protocol):
    id: str
    consumes: str  # "onnx" | "torch" | "weights"
    description: str
    # The execution provider every LSTM node must run on for a pass, or None.
    required_provider: str | None

    def unavailable(self) -> str | None:
        """Why this runtime cannot run here, or ``None``."""

    def settings(self) -> dict[str, Any]:
        """Configuration that shapes results and latency (threads, provider options, ...)."""

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> Session: ...


def fork_hazard(runtime: Any) -> str | None:
    """Why a worker forked from this process now could not run ``runtime`` (a thread pool its library
    started here does not exist in the child, which then waits on it for ever), or ``None``.

    Runtimes may define ``fork_hazard()``; those that do not are fork-safe.
    """
    hazard = getattr(runtime, "fork_hazard", None)
    return hazard() if callable(hazard) else None
