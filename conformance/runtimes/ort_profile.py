"""Where each node ran, from ONNX Runtime's own profiler: every kernel event names its provider.

Shared by the per-provider runtime and the plugin-EP runtime, so neither imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path


def parse_profile(path: str | Path) -> dict[str, str]:
    """``"node (OpType)"`` -> provider, from an ORT profile (chrome trace JSON)."""
    events = json.loads(Path(path).read_text())
    placement: dict[str, str] = {}
    for event in events:
        if event.get("cat") != "Node":
            continue
        args = event.get("args") or {}
        provider = args.get("provider")
        name = str(event.get("name", ""))
        if not provider or not name.endswith("_kernel_time"):
            continue
        op = args.get("op_name", "?")
        placement[f"{name.removesuffix('_kernel_time')} ({op})"] = provider
    return placement
