"""The exception every layer raises for bad input: the CLI maps it to exit code 2 by its type.

``str()`` is the one line the user sees, naming what is wrong and where. It subclasses ``ValueError`` so
callers that predate it keep working. Anything else that escapes a command is an internal error (a bug).
"""

from __future__ import annotations


class BadInputError(ValueError):
    """Input the tool cannot use: a file, an option, a model, a case. ``str()`` is one line."""
