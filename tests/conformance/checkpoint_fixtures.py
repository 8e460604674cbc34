"""Hand-made and hostile weights files for tests/conformance/test_checkpoint.py, built without torch.

A tiny protocol-2 pickle writer emits exactly the opcodes ``torch.save`` emits (or hostile ones), and a
raw zip writer declares any size in the central directory without writing that many bytes.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
GiB = 1 << 30


# --- pickle opcodes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass(frozen=True)
class Call:
    """``func(*args)`` as GLOBAL + args tuple + REDUCE."""

    func: Global
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Persistent:
    """A BINPERSID reference (what ``torch.save`` writes for a storage)."""

    pid: tuple[Any, ...]


@dataclass(frozen=True)
class Ordered:
    """``collections.OrderedDict`` with these items, optionally BUILD with ``state`` afterwards."""

    items: tuple[tuple[Any, Any], ...]
    state: Any = None


@dataclass(frozen=True)
class Raw:
    """Opcodes written as they are."""

    data: bytes


def tensor(
    key: str,
    size: Sequence[int],
    stride: Sequence[int] | None = None,
    *,
    offset: int = 0,
    storage: str = "FloatStorage",
    numel: int | None = None,
) -> Call:
    """What ``torch.save`` writes for a tensor: ``_rebuild_tensor_v2(storage, offset, size, stride, False, {})``."""
    if stride is None:
        stride, step = [], 1
        for n in reversed(size):
            stride.insert(0, step)
            step *= n
    count = numel if numel is not None else int(np.prod(size))
    pid = Persistent(("storage", Global("torch", storage), key, "cpu", count))
    hooks = Ordered(())
    args = (pid, offset, tuple(size), tuple(stride), False, hooks)
    return Call(Global("torch._utils", "_rebuild_tensor_v2"), args)


def pickle_bytes(obj: Any) -> bytes:
    out = io.BytesIO()
    out.write(b"\x80\x02")
    _emit(out, obj)
    out.write(b".")
    return out.getvalue()


def _emit(out: io.BytesIO, obj: Any) -> None:
    if isinstance(obj, Raw):
        out.write(obj.data)
    elif obj is None:
        out.write(b"N")
    elif obj is True or obj is False:
        out.write(b"\x88" if obj else b"\x89")
    elif isinstance(obj, int):
        if 0 <= obj < 256:
            out.write(b"K" + bytes([obj]))
        elif -(2**31) <= obj < 2**31:
            out.write(b"J" + struct.pack("<i", obj))
        else:
            encoded = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
            out.write(b"\x8a" + bytes([len(encoded)]) + encoded)
    elif isinstance(obj, float):
        out.write(b"G" + struct.pack(">d", obj))
    elif isinstance(obj, str):
        encoded = obj.encode("utf-8", "surrogatepass")
        out.write(b"X" + struct.pack("<I", len(encoded)) + encoded)
    elif isinstance(obj, Global):
        out.write(b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n")
    elif isinstance(obj, tuple):
        out.write(b"(")
        for item in obj:
            _emit(out, item)
        out.write(b"t")
    elif isinstance(obj, list):
        out.write(b"](")
        for item in obj:
            _emit(out, item)
        out.write(b"e")
    elif isinstance(obj, Call):
        _emit(out, obj.func)
        _emit(out, obj.args)
        out.write(b"R")
    elif isinstance(obj, Persistent):
        _emit(out, obj.pid)
        out.write(b"Q")
    elif isinstance(obj, Ordered):
        _emit(out, Call(Global("collections", "OrderedDict"), ()))
        _items(out, obj.items)
        if obj.state is not None:
            _emit(out, obj.state)
            out.write(b"b")
    elif isinstance(obj, dict):
        out.write(b"}")
        _items(out, tuple(obj.items()))
    else:
        raise TypeError(f"cannot emit {type(obj).__name__}")


def _items(out: io.BytesIO, items: tuple[tuple[Any, Any], ...]) -> None:
    if items:
        out.write(b"(")
        for key, value in items:
            _emit(out, key)
            _emit(out, value)
        out.write(b"u")


# --- zips ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One zip entry as written: ``data`` (already compressed when ``method`` is deflate) and what the
    central directory declares (``file_size``, ``crc``), which may lie."""

    name: str
    data: bytes
    file_size: int
    crc: int
    method: int = zipfile.ZIP_STORED


def stored(name: str, data: bytes) -> Member:
    return Member(name, data, len(data), zlib.crc32(data))


def raw_zip(path: Path, members: Sequence[Member]) -> Path:
    """A zip written field by field (no zip64: sizes below 4 GiB)."""
    out = io.BytesIO()
    central = io.BytesIO()
    for m in members:
        offset = out.tell()
        name = m.name.encode()
        fields = (20, 0, 0, m.method, 0, 0x21, m.crc, len(m.data), m.file_size, len(name), 0)
        out.write(struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", *fields) + name + m.data)
        fields = (20, 3, 20, 0, 0, m.method, 0, 0x21, m.crc, len(m.data), m.file_size, len(name), 0, 0, 0, 0, 0)
        central.write(struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", *fields, offset) + name)
    start = out.tell()
    directory = central.getvalue()
    out.write(directory)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), start, 0))
    path.write_bytes(out.getvalue())
    return path


def checkpoint(path: Path, obj: Any, records: dict[str, bytes | Member], *, archive: str = "archive") -> Path:
    """A zip laid out as ``torch.save`` lays it out, with a hand-written ``data.pkl``."""
    members = [stored(f"{archive}/data.pkl", pickle_bytes(obj)), stored(f"{archive}/byteorder", b"little")]
    for key, record in records.items():
        members.append(record if isinstance(record, Member) else stored(f"{archive}/data/{key}", record))
    members.append(stored(f"{archive}/version", b"3\n"))
    return raw_zip(path, members)


def zeros_deflate(total: int, chunk: int = 1 << 20) -> bytes:
    """A raw deflate stream of ``total`` zero bytes (a multiple of ``chunk``), built in milliseconds:
    one fully flushed block of ``chunk`` zeros is self-contained, so it can be repeated."""
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = block.compress(bytes(chunk)) + block.flush(zlib.Z_FULL_FLUSH)
    return piece * (total // chunk) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, array, allow_pickle=True)
    return out.getvalue()


def npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue()


def rewrite_zip(src: Path, dst: Path, *, compression: int = zipfile.ZIP_STORED, change: Any = None) -> Path:
    """Copy a zip member by member, optionally compressed and with ``change(name, data) -> data`` applied."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=compression) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info.filename, change(info.filename, data) if change else data)
    return dst


# --- a child process under a memory limit ----------------------------------------------------------


def run_limited(code: str, *, limit: int = 3 * GiB // 2, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter whose address space is capped (RLIMIT_AS), so that a budget
    bypass fails with MemoryError instead of swapping. ``code`` may print; the child's peak RSS (MiB)
    is printed last as ``peak_rss_mib=N`` (VmHWM: ru_maxrss would include the parent's before exec)."""
    prelude = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    epilogue = (
        "\nhwm = [x for x in open('/proc/self/status').read().splitlines() if x.startswith('VmHWM:')][0]"
        "\nprint('peak_rss_mib=%d' % (int(hwm.split()[1]) // 1024))\n"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", prelude + code + epilogue],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        check=False,
    )


def peak_rss_mib(stdout: str) -> int:
    line = [x for x in stdout.splitlines() if x.startswith("peak_rss_mib=")][-1]
    return int(line.split("=", 1)[1])
