"""Stopping a command cleanly: SIGTERM (``kill``, a service manager, a CI timeout) is handled as Ctrl-C is.

``on_sigterm()`` makes SIGTERM raise ``Terminated``, a ``KeyboardInterrupt``, so the code that keeps a
partial report on Ctrl-C keeps it on SIGTERM too; the command then exits ``exit_code(exc)``: 143 or 130.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process that SIGTERM ended


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would raise ``KeyboardInterrupt``."""


def _raise(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def on_sigterm() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` inside the block (the previous handler is restored after)."""
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


STOPS = frozenset({signal.SIGINT, signal.SIGTERM})


@contextlib.contextmanager
def stops_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (cleanup a stop would cut short); they are taken
    after it. Signals are delivered to the main thread only, so elsewhere this holds nothing."""
    import threading

    held = threading.current_thread() is threading.main_thread()
    if held:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    try:
        yield
    finally:
        if held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)


def exit_code(stop: BaseException | None) -> int | None:
    """The exit code a stop asks for (143 for SIGTERM, 130 for Ctrl-C), None when nothing stopped."""
    if stop is None:
        return None
    return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
