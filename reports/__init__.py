"""Renderers of result documents: console (rich), JSON, JUnit XML, Markdown, HTML.

``reports`` reads ``conformance.records``, ``conformance.diffs`` and ``conformance.status`` and nothing
else of ``conformance``; it returns text and writes no file. :data:`RENDERERS` is the one table from a
report format to its renderer; each module is imported when its format is first rendered, so importing
``reports`` costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conformance.records import ResultDocument

__all__ = ["FORMATS", "RENDERERS", "Renderer", "render"]

Renderer = Callable[["ResultDocument"], str]


def _lazy(module: str, function: str) -> Renderer:
    def render(document: ResultDocument) -> str:
        text: str = getattr(importlib.import_module(module), function)(document)
        return text

    render.__name__ = render.__qualname__ = function
    render.__doc__ = f"``{module}.{function}``, imported on first use."
    return render


RENDERERS: Mapping[str, Renderer] = MappingProxyType(
    {
        "json": _lazy("reports.json_report", "render_json"),
        "junit": _lazy("reports.junit", "render_junit"),
        "markdown": _lazy("reports.markdown", "render_markdown"),
        "html": _lazy("reports.html", "render_html"),
    }
)
FORMATS = tuple(RENDERERS)


def render(fmt: str, document: ResultDocument) -> str:
    """``document`` rendered as ``fmt`` (one of :data:`FORMATS`); an unknown format is a ``ValueError``."""
    renderer = RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown report format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return renderer(document)
