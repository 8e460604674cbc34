"""A run's folder: the selection it was started with (``run.json``) and its streamed results.

``--resume DIR`` repeats the saved selection; options given again on the command line win.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exporters.errors import BadInputError

SETTINGS_FILE = "run.json"
RESULTS_JSONL = "results.jsonl"
SELECTION_KEYS = ("suite", "select", "runtime", "exporter")


def saved_selection(folder: Path) -> dict[str, Any]:
    """The selection a run in ``folder`` was started with."""
    try:
        saved = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"--resume {folder}: no {SETTINGS_FILE} there; not a conformance run folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise BadInputError(f"--resume {folder}: {SETTINGS_FILE} is not valid JSON") from None
    if not isinstance(saved, dict):
        raise BadInputError(f"--resume {folder}: {SETTINGS_FILE} is not an object")
    return saved


def selection(given: Mapping[str, Any], resume: Path | None) -> dict[str, Any]:
    """The run's selection: from the command line, or from the folder being resumed."""
    if resume is None:
        return {key: given.get(key) for key in SELECTION_KEYS}
    saved = saved_selection(resume)
    return {key: given.get(key) or saved.get(key) for key in SELECTION_KEYS}


def save_selection(folder: Path, chosen: Mapping[str, Any]) -> None:
    (folder / SETTINGS_FILE).write_text(json.dumps(dict(chosen), indent=1), encoding="utf-8")
