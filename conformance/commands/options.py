"""Argument types shared by the commands: numbers are finite and in range, or the parser says which."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(*, minimum: float = 0.0, maximum: float = math.inf, inclusive: bool = False) -> Callable[[str], float]:
    """A finite float above ``minimum`` (or equal, when ``inclusive``) and at most ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        low_ok = value >= minimum if inclusive else value > minimum
        if not math.isfinite(value) or not low_ok or value > maximum:
            bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
            upper = f" and <= {maximum:g}" if math.isfinite(maximum) else ""
            raise argparse.ArgumentTypeError(f"expected a finite number {bound}{upper}, got {text!r}")
        return value

    return parse


def integer(*, minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}{upper}, got {text!r}")
        return value

    return parse


def integers(text: str) -> list[int]:
    """Comma-separated positive integers (``1,7,16``)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def size(text: str) -> int:
    """A number of bytes: ``2G``, ``512M``, ``1.5g``, ``100000`` (binary units), at least 1 MiB."""
    cleaned = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = cleaned[-1:] if cleaned[-1:] in _UNITS and not cleaned[-1:].isdigit() else ""
    try:
        value = float(cleaned[: len(cleaned) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 2G or 512M, got {text!r}") from None
    if not math.isfinite(value) or value * _UNITS[unit] < 2**20 or value * _UNITS[unit] > 2**50:
        raise argparse.ArgumentTypeError(f"expected a size from 1M to 1024T, got {text!r}")
    return int(value * _UNITS[unit])


def add_ep_library(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ep-library", action="append", default=[], metavar="NAME=PATH",
        help="an ONNX Runtime plugin execution provider library to load (NAME: the EP, such as "
        "OpenVINOExecutionProvider); its devices become runtime ort-<name> (repeatable)",
    )  # fmt: skip


def apply_ep_libraries(entries: list[str]) -> None:
    """Check each ``--ep-library NAME=PATH`` (bad input: exit 2 naming it) and hand them to the runtime
    registry and the worker processes through the environment."""
    if not entries:
        return
    import os

    from conformance.runtimes.ort_plugin_ep import EP_LIBRARIES_ENV, ep_libraries_env

    os.environ[EP_LIBRARIES_ENV] = ep_libraries_env(entries)
