"""A run's folder: the selection it was started with (``run.json``), its streamed results, and the lock
(``run.lock``, there while a run owns the folder) of the run that owns it.

``--resume DIR`` repeats the saved selection; options given again on the command line win. One run owns a
folder at a time (``owned``): a second run into it is refused, naming the holder, before it touches a
file. The lock is an ``flock`` on ``run.lock``, released by the kernel when its process ends, so a run
that was killed leaves no stale lock: the next run takes the folder over and says whose lock it found.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from exporters.errors import BadInputError

SETTINGS_FILE = "run.json"
RESULTS_JSONL = "results.jsonl"
LOCK_FILE = "run.lock"
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


@contextlib.contextmanager
def owned(folder: Path, *, notice: Any = None) -> Iterator[None]:
    """Hold ``folder`` for this run; refuse (``BadInputError``) while another run holds it.

    ``notice(text)`` is told when the lock of a run that has ended was found (and taken over)."""
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot open the run lock ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInputError(
                f"{folder}: another run is writing there ({_holder(fd)}); wait for it, or choose another --out"
            ) from None
        previous = _holder(fd)
        if previous != "no record" and notice is not None:
            notice(f"{folder}: took over the lock of a run that has ended ({previous})")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()  # while still held: a run waiting on this file was refused, not let in
    finally:
        os.close(fd)  # releases the flock


def _holder(fd: int) -> str:
    """Who the lock file says holds it: ``pid 123 on host, started ...``."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (ValueError, UnicodeDecodeError):
        return "an unreadable record"
    if not isinstance(data, dict):
        return "no record"
    return f"pid {data.get('pid')} on {data.get('host')}, started {data.get('started')}"
