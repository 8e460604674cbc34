"""The JSON result document as text: what ``results.json`` holds, and ``report --format json`` prints."""

from __future__ import annotations

import json

from conformance.records import ResultDocument

__all__ = ["render_json"]


def render_json(document: ResultDocument) -> str:
    """``document`` at the current schema version: sorted keys, one-space indent, no NaN, a final newline.

    Nothing is cut or cleaned here: the JSON keeps the full text the other renderers shorten.
    """
    return json.dumps(document.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n"
