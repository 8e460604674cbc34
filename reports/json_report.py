"""The JSON result file: schema-versioned, written atomically."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def payload(results: list[dict[str, Any]], *, environment: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The whole result document: schema version, run settings, environment, summary, lanes."""
    ordered = sorted(results, key=lambda r: r["id"])
    return {
        "schema_version": SCHEMA_VERSION,
        "run": run,
        "environment": environment,
        "summary": dict(sorted(Counter(r["status"] for r in ordered).items())),
        "results": ordered,
    }


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place.

    A reader sees the old file or the whole new one, never a part. A path that
    exists but is not a regular file (a pipe, such as some CI summaries) is
    written directly.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_file():
        path.write_text(text, encoding="utf-8")
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, document: dict[str, Any]) -> None:
    """Write the JSON result document atomically."""
    write_text_atomic(path, json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n")


def load(path: Path) -> dict[str, Any]:
    """Read a result file, checking its schema version."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    if not isinstance(document, dict) or document.get("schema_version") != SCHEMA_VERSION:
        found = document.get("schema_version") if isinstance(document, dict) else None
        raise ValueError(f"{path}: not a conformance result file (schema_version {found!r}, expected {SCHEMA_VERSION})")
    return document
