"""Result files on disk: written atomically, read back as typed documents.

A reader sees the old file or the whole new one, never a part: every report file is written to a
temporary file beside its target, fsynced, then renamed into place.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from conformance.records import ResultDocument
from exporters.errors import BadInputError

MAX_RESULT_FILE = 1 << 30  # bytes; a result file larger than this is not one of ours


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place.

    A path that exists but is not a regular file (a pipe, such as some CI summaries) is written directly.
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


def write_document(path: Path, document: ResultDocument) -> None:
    """The JSON result file (``results.json``), atomically."""
    write_text_atomic(path, json.dumps(document.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n")


def regular_file(path: Path, what: str, *, max_bytes: int | None = None) -> int:
    """``path``'s size when it is a regular file (of at most ``max_bytes``), else bad input naming it: a
    device or a pipe would be read without end (``/dev/zero``) or block for ever (a FIFO nobody writes)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise BadInputError(f"{path}: is a folder, not {what}")
    if not stat.S_ISREG(info.st_mode):
        raise BadInputError(f"{path}: not a regular file (a device or a pipe), not {what}")
    if max_bytes is not None and info.st_size > max_bytes:
        raise BadInputError(
            f"{path}: {info.st_size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.1f} MiB budget for {what}"
        )
    return info.st_size


def load_document(path: Path) -> ResultDocument:
    """Read a result file (schema version 1 or 2); anything else is bad input naming the file."""
    regular_file(path, "a result file")
    try:
        size = path.stat().st_size
        if size > MAX_RESULT_FILE:
            raise BadInputError(f"{path}: {size / (1 << 30):.1f} GiB is not a conformance result file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a folder, not a result file") from None
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: not a conformance result file (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise BadInputError(f"{path}: not a conformance result file (nested too deeply)") from None
    return ResultDocument.from_dict(data, source=str(path))


def scratch_folder(prefix: str) -> str:
    """A new temporary folder ``<prefix><pid>-...``, after removing those of processes that are gone (a
    process killed with SIGKILL runs no cleanup); the caller removes its own."""
    import shutil
    import tempfile

    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = folder.name.removeprefix(prefix).split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # another user's live process
            continue
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")
