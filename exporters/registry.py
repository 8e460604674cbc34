"""The exporter registry, ONNX validation and the content-addressed export cache."""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exporters.base import (
    FAILED,
    NOT_APPLICABLE,
    OK,
    UNAVAILABLE,
    AnyWeights,
    Artifact,
    Exporter,
    ExportOptions,
    ExportOutcome,
    Model,
    describe_error,
)
from exporters.errors import BadInputError
from exporters.plugins import load_target, plugins_from_env
from exporters.transforms import (
    SEPARATOR,
    TransformedExporter,
    TransformError,
    not_transformable,
    split_exporter_id,
    transform_ids,
)

# id -> "module:Class"; modules are imported only when an exporter is used.
_EXPORTERS = {
    "torch-module": "exporters.torch_module:TorchModuleExporter",
    "onnx-native": "exporters.onnx_native:OnnxNativeExporter",
    "torch-script": "exporters.torch_onnx:TorchScriptExporter",
    "torch-dynamo": "exporters.torch_onnx:TorchDynamoExporter",
}
CACHE_FORMAT = 1
# Extra exporters as "id=module:Class" entries, comma-separated (plug-ins and test doubles).
EXTRA_ENV = "CONFORMANCE_EXTRA_EXPORTERS"


class UnknownExporterError(BadInputError):
    """An exporter id that is not registered; the message lists the known ones."""


def _registered() -> dict[str, str]:
    return {**_EXPORTERS, **plugins_from_env(EXTRA_ENV)}


def exporter_ids(*, mutants: bool = True, transformed: bool | None = None) -> list[str]:
    """Registered exporter ids, then (``transformed``, by default as ``mutants``) each built-in ONNX exporter
    with each deployment transform (``torch-script+fp16``, exporters/transforms.py), then the selftest
    mutants (``mutant-*``). ``mutants=False`` alone gives the plain exporters: a case's default, what
    ``conformance list`` shows. A plug-in exporter takes a transform too, but is not listed with one."""
    from exporters.mutants import mutant_ids

    transformed = mutants if transformed is None else transformed
    return list(_registered()) + (transformed_ids() if transformed else []) + (mutant_ids() if mutants else [])


@functools.cache
def transformed_ids() -> list[str]:
    """``<exporter>+<transform>`` for each built-in exporter that writes ONNX and each transform."""
    onnx_exporters = [e for e, target in _EXPORTERS.items() if load_target(target).produces == "onnx"]
    return [f"{e}{SEPARATOR}{t}" for e in onnx_exporters for t in transform_ids()]


def get_exporter(exporter_id: str) -> Exporter:
    from exporters.mutants import MUTATIONS, PREFIX, MutantExporter

    if SEPARATOR in exporter_id:
        base_id, transform = split_exporter_id(exporter_id)
        assert transform is not None
        try:
            base = get_exporter(base_id)
        except UnknownExporterError as exc:
            raise UnknownExporterError(f"exporter id {exporter_id!r}: {exc}") from None
        if base.produces != "onnx":
            raise not_transformable(exporter_id, base, transform)
        return TransformedExporter(base, transform)
    if exporter_id.startswith(PREFIX) and exporter_id.removeprefix(PREFIX) in MUTATIONS:
        return MutantExporter(exporter_id.removeprefix(PREFIX))
    target = _registered().get(exporter_id)
    if target is None:
        close = difflib.get_close_matches(exporter_id, exporter_ids(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = ", ".join(exporter_ids(mutants=False))
        raise UnknownExporterError(
            f"unknown exporter {exporter_id!r}{hint}; available: {known} (and the selftest mutants mutant-*)"
        )
    plugin = None if exporter_id in _EXPORTERS else f"{EXTRA_ENV}: {exporter_id}"
    exporter: Exporter = load_target(target, plugin=plugin)()
    return exporter


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/lstm-conformance`` (``~/.cache/lstm-conformance`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lstm-conformance"


@functools.cache
def code_digest() -> str:
    """Digest of the code that writes exports (exporters/ and reference/), so an edit invalidates the cache."""
    digest = hashlib.sha256()
    for package in ("exporters", "reference"):
        root = Path(importlib.import_module(package).__file__ or "").parent
        for source in sorted(root.glob("*.py")):
            digest.update(source.name.encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(exporter: Exporter, model: Model, weights: AnyWeights, options: ExportOptions) -> str:
    """Content address of an export: weights digest + config + exporter id, versions, options and code."""
    payload = {
        "format": CACHE_FORMAT,
        "code": code_digest(),
        "exporter": exporter.id,
        "versions": exporter.versions(),
        "model": {"kind": type(model).__name__, **model.to_dict()},
        "weights": weights.digest(),
        "options": options.to_dict(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def validate_onnx(path: Path) -> dict[str, Any]:
    """Run the full ONNX checker and strict shape inference; return the model's metadata.

    Raises ``ValueError`` with the checker's message when the model is invalid.
    """
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path))
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # the checker raises several exception types
        raise ValueError(f"ONNX checker: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}") from exc
    histogram = Counter(node.op_type for node in model.graph.node)
    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    return {
        "opset": opsets.get("ai.onnx"),
        "opset_imports": opsets,
        "ir_version": model.ir_version,
        "op_histogram": dict(sorted(histogram.items())),
        "size_bytes": path.stat().st_size,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
    }


def export(
    model: Model,
    weights: AnyWeights,
    exporter_id: str,
    options: ExportOptions | None = None,
    *,
    use_cache: bool = True,
    cache_dir: Path | None = None,
) -> Artifact:
    """Produce (or fetch from the cache) one artifact. Never raises for an export failure.

    Unknown exporter ids raise :class:`UnknownExporterError`, and a transform that is unknown or finds
    nothing to convert :class:`~exporters.transforms.TransformError`: that is bad input, not an export
    result. A transformed id (``torch-script+fp16``) transforms the base exporter's (cached) artifact and is
    cached under its own key.
    """
    options = options or ExportOptions()
    exporter = get_exporter(exporter_id)
    reason = exporter.unavailable()
    if reason:
        return Artifact(exporter_id, UNAVAILABLE, reason)
    reason = exporter.not_applicable(model, options)
    if reason:
        return Artifact(exporter_id, NOT_APPLICABLE, reason)
    base_meta: dict[str, Any] = {"exporter": exporter_id, "versions": exporter.versions(), "options": options.to_dict()}

    if exporter.produces == "torch":
        start = time.perf_counter()
        try:
            outcome = exporter.export(model, weights, options, Path(os.devnull))
        except Exception as exc:
            return Artifact(exporter_id, FAILED, describe_error(exc, limit=None), meta=base_meta)
        meta = {**base_meta, "export_seconds": time.perf_counter() - start, "warnings": list(outcome.warnings)}
        return Artifact(exporter_id, OK, module=outcome.module, meta=meta)

    root = (cache_dir or cache_root()) / "exports"
    key = cache_key(exporter, model, weights, options)
    entry = root / key
    if use_cache:
        hit = _read_cache(entry, exporter_id)
        if hit is not None:
            return hit

    write: Callable[[Path], ExportOutcome] = functools.partial(exporter.export, model, weights, options)
    if isinstance(exporter, TransformedExporter):
        base = export(model, weights, exporter.base.id, options, use_cache=use_cache, cache_dir=cache_dir)
        if not base.ok or base.path is None:
            return Artifact(exporter_id, base.status, f"{exporter.base.id}: {base.reason}", meta=base_meta)
        write = functools.partial(exporter.transform_file, base.path)
        base_meta["base"] = {k: base.meta[k] for k in ("opset", "op_histogram", "size_bytes") if k in base.meta}

    work = Path(tempfile.mkdtemp(prefix="export-", dir=_ensure(root)))
    try:
        path = work / "model.onnx"
        start = time.perf_counter()
        try:
            outcome = write(path)
        except TransformError:  # nothing to convert: bad input, not a failed export
            raise
        except Exception as exc:
            return Artifact(exporter_id, FAILED, f"export failed: {describe_error(exc, limit=None)}", meta=base_meta)
        seconds = time.perf_counter() - start
        meta = {**base_meta, **outcome.meta, "export_seconds": seconds, "warnings": list(outcome.warnings)}
        try:
            meta.update(validate_onnx(path))
        except ValueError as exc:
            return Artifact(exporter_id, FAILED, str(exc), meta=meta)
        if not use_cache:
            keep = _ensure(root / "uncached") / key
            shutil.rmtree(keep, ignore_errors=True)
            os.replace(work, keep)
            return Artifact(exporter_id, OK, path=keep / "model.onnx", meta=meta)
        (work / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        _publish(work, entry)
        return Artifact(exporter_id, OK, path=entry / "model.onnx", meta=meta)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _publish(work: Path, entry: Path) -> None:
    """Move ``work`` to ``entry`` atomically: a reader sees the whole entry or none.

    Another worker may have published the same key meanwhile (both missed the cache); its entry is
    complete and may be open in a lane right now, so it is kept, never removed and replaced. Only an
    entry without its files (a crash between writes of an older version) is replaced.
    """
    try:
        os.rename(work, entry)  # fails when entry exists and is not empty
        return
    except OSError:
        if _read_cache(entry, "") is not None:
            return
    shutil.rmtree(entry, ignore_errors=True)
    os.replace(work, entry)


def _read_cache(entry: Path, exporter_id: str) -> Artifact | None:
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if not (entry / "model.onnx").is_file():
        return None
    return Artifact(exporter_id, OK, path=entry / "model.onnx", meta=meta, cached=True)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
