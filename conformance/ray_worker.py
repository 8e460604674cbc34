"""The worker side of :mod:`conformance.ray_executor`: the Ray tasks that export an artifact and run a lane.

Ray imports this module in its workers, so the task functions live at its top level. An export task turns
the artifact into plain data (:func:`export_payload`) that Ray's object store hands to each of its lanes;
a lane task writes those files into a folder of its own and runs the lane through a ``LaneContext`` that
takes the artifact from there instead of exporting it again (:func:`run_with_payload`). Each task is a
streaming generator whose first item is :data:`STARTED`. Nothing heavy is imported at the top level.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.status import ERROR

if TYPE_CHECKING:
    from conformance.lane import Lane
    from conformance.records import Result

STARTED = "started"  # a task's first item: it is running on a worker now


def _export_task(case: Any, exporter_id: str, use_cache: bool) -> Iterator[Any]:
    yield STARTED
    yield export_payload(case, exporter_id, use_cache)


def export_payload(case: Any, exporter_id: str, use_cache: bool) -> dict[str, Any]:
    """An artifact as plain data for its lanes: status, reason, meta, cached and the files of an ONNX model
    (``model.onnx`` and any external data beside it); ``in_memory`` for a torch module, which each worker
    builds itself; or what ``export`` raised (``transform``: the lane's bad input; ``harness``: a bug)."""
    import traceback

    from conformance.inputs import case_weights
    from conformance.lane import export_options
    from exporters.registry import export
    from exporters.transforms import TransformError

    try:
        artifact = export(case.model, case_weights(case), exporter_id, export_options(case), use_cache=use_cache)
    except TransformError as exc:
        return {"raise": "transform", "message": str(exc)}
    except Exception as exc:
        return {"raise": "harness", "message": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    if artifact.ok and artifact.path is None:
        return {"in_memory": True}
    path = artifact.path
    files = {} if path is None else {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()}
    files.pop("meta.json", None)  # the cache's copy of ``meta``
    model = None if path is None else path.name
    return {"status": artifact.status, "reason": artifact.reason, "meta": artifact.meta, "cached": artifact.cached,
            "model": model, "files": files}  # fmt: skip


_CONTEXTS: dict[tuple[bool, Any], Any] = {}  # this worker's LaneContext (its memo of weights and data)


def _lane_task(
    lane: Lane, payload: dict[str, Any] | None, use_cache: bool, latency: Any, scratch: str
) -> Iterator[Any]:
    yield STARTED
    yield run_with_payload(lane, payload, use_cache=use_cache, latency=latency, scratch=scratch)


def run_with_payload(
    lane: Lane, payload: dict[str, Any] | None, *, use_cache: bool, latency: Any, scratch: str
) -> Result:
    """``run_lane``, its artifact written from ``payload`` into a folder of the lane's (removed after)."""
    import shutil
    import tempfile
    import traceback

    from conformance.lane import run_lane
    from conformance.runner import SCRATCH_ENV

    context = _CONTEXTS.get((use_cache, latency))
    if context is None:
        _CONTEXTS.clear()
        context = _CONTEXTS[(use_cache, latency)] = _supplied_context(use_cache, latency)
    Path(scratch).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="lane-", dir=scratch))
    os.environ[SCRATCH_ENV] = str(folder)  # runtimes put their temporary files (ORT profiles) there
    context.supplied = None if payload is None else ((lane.case.id, lane.exporter), payload, folder)
    try:
        return run_lane(lane, context)
    except Exception as exc:  # a harness bug must still cost one lane only
        text = str(exc) if isinstance(exc, _ExportError) else f"{type(exc).__name__}: {exc}"
        return lane.result(ERROR, f"harness error: {text}", detail={"traceback": traceback.format_exc()})
    finally:
        context.supplied = None
        os.environ.pop(SCRATCH_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


class _ExportError(Exception):
    """``export`` raised in the export task (a bug): the lane records it as a local worker would."""


def _supplied_context(use_cache: bool, latency: Any) -> Any:
    """A LaneContext whose ``artifact`` is the one supplied for the lane at hand: nothing is exported again."""
    from conformance.lane import LaneContext
    from exporters.base import Artifact
    from exporters.transforms import TransformError

    class SuppliedContext(LaneContext):
        supplied: tuple[tuple[str, str], dict[str, Any], Path] | None = None

        def artifact(self, case: Any, exporter_id: str) -> Artifact:
            if self.supplied is None or self.supplied[0] != (case.id, exporter_id) or "in_memory" in self.supplied[1]:
                return super().artifact(case, exporter_id)  # a torch module: built here, memoised per worker
            _, payload, folder = self.supplied
            if payload.get("raise") == "transform":
                raise TransformError(payload["message"])
            if payload.get("raise"):
                raise _ExportError(payload["message"])
            for name, data in payload["files"].items():
                (folder / name).write_bytes(data)
            path = folder / payload["model"] if payload["model"] else None
            status, reason, meta, cached = (payload[k] for k in ("status", "reason", "meta", "cached"))
            return Artifact(exporter_id, status, reason, path=path, meta=meta, cached=cached)

    return SuppliedContext(use_cache=use_cache, latency=latency)
