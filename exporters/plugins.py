"""Plug-ins named in an environment variable: ``id=module:Class`` entries, comma-separated.

Both registries read their plug-ins this way (``CONFORMANCE_EXTRA_EXPORTERS``
here, ``CONFORMANCE_EXTRA_RUNTIMES`` in ``conformance.runtimes``), so the
parser lives below both of them. Parsing imports nothing: a registry imports a
plug-in's module only when the plug-in is used.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from exporters.errors import BadInputError

__all__ = ["PluginError", "load_target", "plugins_from_env"]


class PluginError(BadInputError):
    """A malformed plug-in entry (bad input); ``str()`` is one line naming the variable and the entry."""


def plugins_from_env(variable: str) -> dict[str, str]:
    """``{id: "module:Class"}`` from ``variable``, in written order; empty entries are skipped."""
    plugins: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in os.environ.get(variable, "").split(","))):
        plugin_id, equals, target = (part.strip() for part in entry.partition("="))
        module, colon, name = target.partition(":")
        if not (plugin_id and equals and module and colon and name):
            raise PluginError(f"{variable}: malformed entry {entry!r}: expected id=module:Class")
        plugins[plugin_id] = target
    return plugins


def load_target(target: str, *, plugin: str | None = None) -> Any:
    """The object a ``"module:Class"`` target names (imports its module).

    For a plug-in (``plugin`` is where it was named, e.g. ``CONFORMANCE_EXTRA_RUNTIMES: fast``), a module
    that does not import or lacks the name is bad input (``PluginError``), not a bug of this tool."""
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        if plugin is None:
            raise
        raise PluginError(f"{plugin}={target}: cannot load it ({type(exc).__name__}: {exc})") from None
