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
SELECTION_KEYS = ("suite", "select", "runtime", "exporter", "shard")


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
    for key in SELECTION_KEYS:
        value = saved.get(key)
        wanted = str if key in ("select", "shard") else list
        if value is not None and (
            not isinstance(value, wanted) or (wanted is list and not all(isinstance(v, str) for v in value))
        ):
            kind = "a string" if wanted is str else "a list of strings"
            raise BadInputError(f"--resume {folder}: {SETTINGS_FILE}: {key!r} must be {kind}, got {value!r}"[:300])
    return saved


def selection(given: Mapping[str, Any], resume: Path | None) -> dict[str, Any]:
    """The run's selection: from the command line, or from the folder being resumed."""
    if resume is None:
        return {key: given.get(key) for key in SELECTION_KEYS}
    saved = saved_selection(resume)
    for key in SELECTION_KEYS:
        if given.get(key) and given.get(key) != saved.get(key):
            option = "-k" if key == "select" else f"--{key}"
            raise BadInputError(
                f"--resume {resume}: it holds a run with {key} {_shown(saved, key)}; {option} {_shown(given, key)} "
                "would be another plan: run that into another --out"
            )
    return {key: saved.get(key) for key in SELECTION_KEYS}


def _shown(selection: Mapping[str, Any], key: str) -> str:
    value = selection.get(key)
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else ", ".join(value)


def save_selection(folder: Path, chosen: Mapping[str, Any]) -> None:
    refuse_links(folder)
    (folder / SETTINGS_FILE).write_text(json.dumps(dict(chosen), indent=1), encoding="utf-8")


def refuse_links(folder: Path) -> None:
    """A run writes its files in its folder only: one that is a symbolic link (to a file outside, say)
    is refused rather than written through."""
    for name in (SETTINGS_FILE, RESULTS_JSONL):
        if (folder / name).is_symlink():
            raise BadInputError(f"{folder / name}: a symbolic link; a run writes only its own files, not through links")


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
