"""Read trained weights without torch: PyTorch zip checkpoints and ``.npz`` files, safely, within a memory budget.

``import torch`` alone costs about 1.2 s, more than ``check --weights`` may take in all, and
``torch.load`` is the one place a user's file could run code. This module reads the format
``torch.save`` has written by default since PyTorch 1.6 (a zip holding ``<archive>/data.pkl`` and one
``<archive>/data/<key>`` record per storage) with NumPy and the standard library only.

Decisions, written down:

- ``data.pkl`` is first scanned opcode by opcode (no object is built), then unpickled by a restricted
  unpickler. Allowed globals are what a plain state_dict needs and nothing else:
  ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``, ``_rebuild_parameter``,
  ``_rebuild_parameter_with_state`` and the ``torch.*Storage`` type names. Any other global, anywhere in
  the file (also in the metadata beside a wrapped state_dict), refuses the whole file before it is
  called: the refusal names the global and nothing was executed. Tensors are built as NumPy arrays.
- A state_dict is a mapping of names to tensors, at the top level or under ``state_dict`` /
  ``model_state_dict`` (whose sibling entries, e.g. ``epoch``, are ignored). A non-tensor value inside
  the state_dict (a number, a string, a nested dict) is refused with one line naming the entry: silently
  dropping it could hide the weights the user meant.
- Memory: before anything is allocated, every tensor's declared size, every zip record's declared
  uncompressed size and their sum are held against ``max_bytes``; reads are bounded by the declared
  size, so a deflate bomb is refused (or cut off and failed by its CRC), never inflated.
- bfloat16 becomes float32 (exact); bool and integer tensors are returned as they are; complex and
  quantized tensors are refused. Arrays are independent, writable and in native byte order. NaN and Inf
  are read as they are: :func:`refuse_non_finite` refuses them for callers that compare.
- Storage records no tensor of the state_dict uses (an optimizer's, beside a wrapped state_dict) are
  never read, so they cost neither time nor budget.
- Every failure is a :class:`CheckpointError` (bad input, exit 2) whose ``str()`` is one line starting with the path.
  :class:`NotAZipCheckpointError` marks another PyTorch format; for ``kind == "legacy"``
  ``torch.load(weights_only=True)`` can read the file instead.

Why one file of ~650 lines (over the ~500 the project aims for): the PyTorch and ``.npz`` readers share
one zip layer (member budgets, bounded reads, CRC) and one wording of refusals; this is the boundary
untrusted bytes cross, and reviewing it in one place is the point. The seam, when it grows: the zip
layer and wording below ``# --- files and zips`` into a module of their own.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import re
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeGuard

import numpy as np
import numpy.typing as npt

from exporters.errors import BadInputError

DEFAULT_MAX_BYTES = 2 << 30  # the suite's memory budget for one weights file (as exporters.importers)
PICKLE_LIMIT = 64 << 20  # a state_dict's data.pkl holds ~100 bytes per tensor
_CHUNK = 8 << 20  # reads land in preallocated buffers in pieces of this size
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # torch.serialization.MAGIC_NUMBER, pickled
_NPY_HEADER_LIMIT = 10_000  # numpy's own cap on an .npy header

# torch storage type -> (dtype label, NumPy storage dtype or None when refused)
_STORAGES: dict[str, tuple[str, str | None]] = {
    "FloatStorage": ("float32", "f4"),
    "DoubleStorage": ("float64", "f8"),
    "HalfStorage": ("float16", "f2"),
    "BFloat16Storage": ("bfloat16", "u2"),
    "LongStorage": ("int64", "i8"),
    "IntStorage": ("int32", "i4"),
    "ShortStorage": ("int16", "i2"),
    "CharStorage": ("int8", "i1"),
    "ByteStorage": ("uint8", "u1"),
    "BoolStorage": ("bool", "u1"),
    "UntypedStorage": ("uint8", "u1"),
    "ComplexHalfStorage": ("complex32", None),
    "ComplexFloatStorage": ("complex64", None),
    "ComplexDoubleStorage": ("complex128", None),
    "QInt8Storage": ("qint8", None),
    "QUInt8Storage": ("quint8", None),
    "QInt32Storage": ("qint32", None),
    "QUInt4x2Storage": ("quint4x2", None),
    "QUInt2x4Storage": ("quint2x4", None),
}


class CheckpointError(BadInputError):
    """A weights file that is unreadable, unsafe or over budget; ``str()`` is one line starting with the path."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{_shown_path(path)}: {message}")


class NotAZipCheckpointError(CheckpointError):
    """Another PyTorch format (``kind``: ``legacy``, ``torchscript``, ``exported-program``).

    Only ``legacy`` files are what ``torch.load(weights_only=True)`` reads; the message says what to do.
    """

    def __init__(self, path: str | Path, message: str, *, kind: str) -> None:
        self.kind = kind
        super().__init__(path, message)


class UnsafeCheckpointError(CheckpointError):
    """The pickle needs a global outside the allowlist; nothing was executed."""


class OverBudgetError(CheckpointError):
    """A declared size exceeds ``max_bytes``; nothing was allocated."""


class NonFiniteWeightsError(CheckpointError):
    """A floating-point tensor holds NaN or Inf."""


class _InvalidError(Exception):
    """Raised inside the unpickler; becomes a CheckpointError carrying the path."""


# --- the PyTorch zip checkpoint ------------------------------------------------------------------


def read_state_dict(path: str | Path, *, max_bytes: int) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save`` zip checkpoint holding a state_dict, as NumPy arrays, without torch."""
    path = Path(path)
    kind = _sniff(path)
    if kind != "zip":
        raise CheckpointError(path, f"is {kind}, not a PyTorch checkpoint")
    with _open_zip(path) as zf:
        prefix = _archive_prefix(path, zf)
        data = _read_member(path, zf, zf.getinfo(f"{prefix}/data.pkl"), min(max_bytes, PICKLE_LIMIT)).tobytes()
        loaded = _unpickle(path, data)
        state = _state_of(path, loaded)
        big = _byteorder(path, zf, prefix)
        return _materialize(path, zf, prefix, state, max_bytes, ">" if big else "<")


@dataclass(frozen=True, slots=True)  # slots: a pickle BUILD cannot rewrite the fields after validation
class _StorageType:
    name: str


@dataclass(frozen=True, slots=True)
class _Storage:
    key: str
    type_name: str
    numel: int


@dataclass(frozen=True, slots=True)
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: object, offset: object, size: object, stride: object, *rest: object) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise _InvalidError(
            "data.pkl rebuilds a tensor from something that is not a storage; not a torch.save checkpoint"
        )
    if not (_is_index(offset) and _is_shape(size) and _is_shape(stride) and len(size) == len(stride)):
        raise _InvalidError("data.pkl rebuilds a tensor with an invalid offset, size or stride; corrupt checkpoint")
    if len(rest) > 3 or (len(rest) == 3 and rest[2] not in (None, {})):
        raise _InvalidError("a tensor carries metadata (a conjugate or negative view) that this reader does not apply")
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data: object, *_rest: object) -> object:
    return data


def _is_index(value: object) -> TypeGuard[int]:
    return type(value) is int and value >= 0


def _is_shape(value: object) -> TypeGuard[tuple[int, ...]]:
    return isinstance(value, tuple) and len(value) <= 32 and all(_is_index(v) for v in value)


_ALLOWED: dict[str, Any] = {
    "collections.OrderedDict": OrderedDict,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
}


def _allowed(module: str, name: str) -> Any:
    if module in ("torch", "torch.cuda") and name in _STORAGES:  # torch.cuda.*: checkpoints from old versions
        return _StorageType(name)
    full = f"{module}.{name}"
    if full in _ALLOWED:
        return _ALLOWED[full]
    raise _InvalidError(f"refused: the checkpoint needs {_name(full)}, not a plain state_dict; nothing was executed")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _allowed(module, name)

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _InvalidError(
                "data.pkl refers to an object outside the pickle that is not a storage; not a state_dict"
            )
        _, storage_type, key, location, numel = pid
        if not (isinstance(storage_type, _StorageType) and isinstance(key, str) and isinstance(location, str)):
            raise _InvalidError("data.pkl refers to a storage with an invalid type or key; corrupt checkpoint")
        if not _is_index(numel):
            raise _InvalidError(f"storage {_name(key)} declares an invalid number of elements; corrupt checkpoint")
        return _Storage(key, storage_type.name, numel)


def _unpickle(path: Path, data: bytes) -> object:
    try:
        _scan(data)
        return _Unpickler(io.BytesIO(data)).load()
    except _InvalidError as exc:
        cls = UnsafeCheckpointError if str(exc).startswith("refused:") else CheckpointError
        raise cls(path, str(exc)) from None
    except Exception as exc:  # whatever hostile bytes make the unpickler raise, it is a corrupt file
        raise CheckpointError(path, f"corrupt data.pkl ({_reason(exc)})") from None


def _scan(data: bytes) -> None:
    """Refuse before building anything: unknown globals, copyreg extensions, and memo indices that would
    make the C unpickler allocate (a 9-byte pickle ``LONG_BINPUT 2**26`` costs 1 GiB of memory)."""
    for count, (opcode, arg, _pos) in enumerate(pickletools.genops(data), start=1):
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and not (isinstance(arg, int) and 0 <= arg <= count):
            raise _InvalidError(f"data.pkl stores memo entry {arg!r} after {count} opcodes; corrupt or hostile pickle")
        if opcode.name in ("GLOBAL", "INST") and isinstance(arg, str):
            _allowed(*arg.split(" ", 1))
        elif opcode.name.startswith("EXT"):
            raise _InvalidError(
                f"refused: the checkpoint needs copyreg extension {arg}, not a plain state_dict; nothing was executed"
            )


def _plain(value: object) -> dict[Any, Any] | None:
    """A fresh dict of a mapping's own items: a pickle BUILD can shadow an OrderedDict's methods, not dict's."""
    return dict(dict.items(value)) if isinstance(value, dict) else None


def _state_of(path: Path, loaded: object) -> dict[str, _Tensor]:
    state = _plain(loaded)
    if state is not None:  # a tensor is never a dict: a dict under these keys is the wrapped state_dict
        wrapped = [_plain(state[k]) for k in ("state_dict", "model_state_dict") if isinstance(state.get(k), dict)]
        state = wrapped[0] if wrapped else state
    if state is None:
        raise CheckpointError(path, f"holds {_kind(loaded)}, not a state_dict (a mapping of names to tensors)")
    for key, value in state.items():
        if type(key) is not str:
            raise CheckpointError(path, f"the state_dict has a key {_name(key)} that is not a string")
        if not isinstance(value, _Tensor):
            raise CheckpointError(
                path,
                f"entry {_name(key)} is {_kind(value)}, not a tensor; expected a plain state_dict (names -> tensors)",
            )
    return state


def _materialize(
    path: Path, zf: zipfile.ZipFile, prefix: str, state: dict[str, _Tensor], max_bytes: int, order: str
) -> dict[str, np.ndarray]:
    storages: dict[str, _Storage] = {}
    uses: dict[str, int] = {}
    for key, t in state.items():  # every check before the first allocation
        label, code = _STORAGES[t.storage.type_name]
        if code is None:
            what = "complex weights are not supported" if label.startswith("complex") else "it is not supported"
            raise CheckpointError(path, f"tensor {_name(key)} is {label}; {what}")
        numel = math.prod(t.size)
        declared = numel * max(np.dtype(code).itemsize, 4 if label == "bfloat16" else 1)
        if declared > max_bytes:
            raise OverBudgetError(
                path,
                f"tensor {_name(key)} declares {_size(declared)} (shape {list(t.size)}, {label}), "
                f"over the {_size(max_bytes)} budget; refused",
            )
        st = storages.setdefault(t.storage.key, t.storage)
        if st != t.storage:
            raise CheckpointError(path, f"storage {_name(st.key)} is declared twice with different types or sizes")
        uses[st.key] = uses.get(st.key, 0) + 1
        end = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride, strict=True))
        if numel and end >= st.numel:
            raise CheckpointError(
                path,
                f"tensor {_name(key)} reaches element {end} of storage {_name(st.key)}, which holds {st.numel}; "
                "corrupt checkpoint",
            )
    infos: dict[str, zipfile.ZipInfo] = {}
    for st in storages.values():
        name = f"{prefix}/data/{st.key}"
        info = _member(zf, name)
        if info is None:
            raise CheckpointError(path, f"storage record {_name(name)} is missing; truncated or corrupt checkpoint")
        _check_member(path, info, max_bytes)
        label, code = _STORAGES[st.type_name]
        need = st.numel * np.dtype(code).itemsize
        if info.file_size != need:
            raise CheckpointError(
                path,
                f"storage record {_name(name)} holds {info.file_size} bytes, but its tensors need {need} "
                f"({st.numel} {label} values); corrupt checkpoint",
            )
        infos[st.key] = info
    copies = sum(_out_bytes(t) for t in state.values() if uses[t.storage.key] > 1 or not _whole(t, order))
    total = sum(info.file_size for info in infos.values()) + copies
    if total > max_bytes:
        raise OverBudgetError(
            path, f"the state_dict's tensors need {_size(total)} in all, over the {_size(max_bytes)} budget; refused"
        )
    raw = {key: _read_member(path, zf, info, max_bytes) for key, info in infos.items()}
    return {key: _tensor(raw[t.storage.key], t, order, uses[t.storage.key] > 1) for key, t in state.items()}


def _out_bytes(t: _Tensor) -> int:
    label, code = _STORAGES[t.storage.type_name]
    return math.prod(t.size) * (4 if label == "bfloat16" else np.dtype(code).itemsize)


def _whole(t: _Tensor, order: str) -> bool:
    """The tensor is its storage as it lies (no slice, no transpose, no conversion): it can be a view of it."""
    expected = 1
    for n, s in zip(reversed(t.size), reversed(t.stride), strict=True):
        if n != 1 and s != expected:
            return False
        expected *= n
    label = _STORAGES[t.storage.type_name][0]
    return t.offset == 0 and expected == t.storage.numel and order == "<" and label not in ("bfloat16", "bool")


def _tensor(raw: npt.NDArray[np.uint8], t: _Tensor, order: str, shared: bool) -> np.ndarray:
    label, code = _STORAGES[t.storage.type_name]
    typed: np.ndarray = raw.view(np.dtype(code).newbyteorder("<" if order == "<" else ">"))
    if not shared and _whole(t, order):
        return typed.reshape(t.size)
    if math.prod(t.size) == 0:
        view = np.empty(t.size, typed.dtype)
    else:
        step = typed.itemsize
        strides = tuple(s * step for s in t.stride)
        view = np.lib.stride_tricks.as_strided(typed[t.offset :], t.size, strides, writeable=False)
    if label == "bfloat16":
        bits = view.astype(np.uint32, order="C")
        bits <<= 16
        return bits.view(np.float32)
    if label == "bool":
        return np.not_equal(view, 0)
    return np.array(view, dtype=typed.dtype.newbyteorder("="), order="C", copy=True)


def _archive_prefix(path: Path, zf: zipfile.ZipFile) -> str:
    names = zf.namelist()
    pickles = sorted({n[: -len("/data.pkl")] for n in names if re.fullmatch(r"[^/]+/data\.pkl", n)})
    tops = {n.split("/", 1)[0] for n in names}
    if any(re.fullmatch(r"[^/]+/(constants\.pkl|code/.*)", n) for n in names):
        raise NotAZipCheckpointError(
            path,
            "is a TorchScript archive (torch.jit.save), not a state_dict; save model.state_dict() with torch.save",
            kind="torchscript",
        )
    if any(re.fullmatch(r"[^/]+/(archive_format|models/.*)", n) for n in names):
        raise NotAZipCheckpointError(
            path,
            "is a torch.export archive (.pt2), not a state_dict; save model.state_dict() with torch.save",
            kind="exported-program",
        )
    if len(pickles) != 1 or len(tops) != 1:
        if names and all(n.endswith(".npy") for n in names):
            raise CheckpointError(path, "is an .npz archive, not a PyTorch checkpoint")
        raise CheckpointError(
            path, f"is a zip archive without exactly one <archive>/data.pkl ({len(pickles)}); not a PyTorch checkpoint"
        )
    return pickles[0]


def _byteorder(path: Path, zf: zipfile.ZipFile, prefix: str) -> bool:
    """True for a big-endian checkpoint; files written before the record existed are little-endian."""
    info = _member(zf, f"{prefix}/byteorder")
    if info is None:
        return False
    mark = _read_member(path, zf, info, 16).tobytes()
    if mark not in (b"little", b"big"):
        raise CheckpointError(path, f"unknown byte order {mark[:16]!r}; corrupt checkpoint")
    return mark == b"big"


# --- .npz ----------------------------------------------------------------------------------------


def read_npz(path: str | Path, *, max_bytes: int) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (``np.savez``/``savez_compressed``), every header checked before any data."""
    path = Path(path)
    kind = _sniff(path)
    if kind != "zip":
        raise CheckpointError(path, f"is {kind}, not an .npz archive")
    with _open_zip(path) as zf:
        plans: dict[str, tuple[zipfile.ZipInfo, int, tuple[int, ...], bool, np.dtype[Any]]] = {}
        total = 0
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                if re.fullmatch(r"[^/]+/data\.pkl", name):
                    raise CheckpointError(path, "is a PyTorch checkpoint, not an .npz archive")
                raise CheckpointError(path, f"member {_name(name)} is not an .npy array; not an .npz of arrays")
            key = name[: -len(".npy")]
            if key in plans:
                raise CheckpointError(path, f"member {_name(name)} appears twice; corrupt .npz")
            _check_member(path, info, max_bytes)
            header, shape, fortran, dtype = _npy_header(path, zf, info)
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > max_bytes:
                raise OverBudgetError(
                    path,
                    f"array {_name(key)} declares {_size(nbytes)} (shape {list(shape)}, {dtype}), "
                    f"over the {_size(max_bytes)} budget; refused",
                )
            if info.file_size != header + nbytes:
                raise CheckpointError(
                    path,
                    f"member {_name(name)} holds {info.file_size} bytes, but its header declares shape {list(shape)} "
                    f"{dtype} ({header} + {nbytes} bytes); truncated or corrupt .npz",
                )
            total += nbytes
            plans[key] = (info, header, shape, fortran, dtype)
        if total > max_bytes:
            raise OverBudgetError(
                path, f"the arrays need {_size(total)} in all, over the {_size(max_bytes)} budget; refused"
            )
        arrays = {}
        for key, (info, header, shape, fortran, dtype) in plans.items():
            raw = _read_member(path, zf, info, max_bytes, skip=header)
            arrays[key] = raw.view(dtype).reshape(shape, order="F" if fortran else "C")
        return arrays


def _npy_header(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[int, tuple[int, ...], bool, Any]:
    name = _name(info.filename)
    member = _open_member(path, zf, info)
    try:
        with member:
            fp = _Capped(member, _NPY_HEADER_LIMIT + 16)
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp, max_header_size=_NPY_HEADER_LIMIT)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp, max_header_size=_NPY_HEADER_LIMIT)
            else:
                raise ValueError(f".npy format version {version} is not supported")
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, RuntimeError, NotImplementedError) as exc:
        raise CheckpointError(path, f"zip member {name} is corrupt ({_reason(exc)})") from None
    except Exception as exc:  # numpy parses the header with ast and tokenize: any failure is a bad header
        raise CheckpointError(path, f"member {name} has a bad .npy header ({_reason(exc)})") from None
    if dtype.hasobject or dtype.kind in "OV":
        raise CheckpointError(path, f"member {name} holds Python objects ({dtype}), which would need pickle; refused")
    if dtype.kind == "c":
        raise CheckpointError(path, f"member {name} is {dtype}; complex weights are not supported")
    if dtype.kind not in "biufUS":
        raise CheckpointError(path, f"member {name} has dtype {dtype}, which is not a weight; not supported")
    if not _is_shape(shape):
        raise CheckpointError(path, f"member {name} declares an invalid shape {shape}; corrupt .npz")
    return fp.consumed, shape, fortran, dtype


class _Capped:
    """Reads at most ``limit`` bytes from a stream and counts them (an .npy header's length)."""

    def __init__(self, stream: BinaryIO | Any, limit: int) -> None:
        self._stream = stream
        self._left = limit
        self.consumed = 0

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data: bytes = self._stream.read(n)
        self._left -= len(data)
        self.consumed += len(data)
        return data


# --- files and zips ------------------------------------------------------------------------------


def read_weights(path: str | Path, *, max_bytes: int) -> dict[str, np.ndarray]:
    """A PyTorch zip checkpoint or an ``.npz``, told apart by content (not by suffix)."""
    path = Path(path)
    if _sniff(path) == "zip":
        with _open_zip(path) as zf:
            names = zf.namelist()
        if names and all(n.endswith(".npy") for n in names):
            return read_npz(path, max_bytes=max_bytes)
    return read_state_dict(path, max_bytes=max_bytes)


def refuse_non_finite(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Trained weights holding NaN or Inf make every comparison meaningless, and complex ones cannot be LSTM
    weights (casting would drop the imaginary part unseen): bad input, named."""
    for name, value in arrays.items():
        if value.dtype.kind == "c":
            raise CheckpointError(path, f"tensor {_name(name)} is complex ({value.dtype}); LSTM weights are real")
        if value.dtype.kind != "f":
            continue
        bad = ~np.isfinite(value)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise NonFiniteWeightsError(
                path,
                f"tensor {_name(name)} contains NaN or Inf ({int(bad.sum())} value(s), first at index {index}); "
                "refusing to compare",
            )


def _sniff(path: Path) -> str:
    """``"zip"``, or what the file is instead (for the caller's message); raises for what it cannot read."""
    if path.exists() and not path.is_file():
        raise CheckpointError(path, "is not a file")  # a folder, or a FIFO that open() would block on
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({_reason(exc)})") from None
    if not head:
        raise CheckpointError(path, "empty file; expected a PyTorch state_dict or .npz")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x80") and _LEGACY_MAGIC in head[:32]:
        raise NotAZipCheckpointError(
            path,
            "is in the legacy PyTorch format (before 1.6, or _use_new_zipfile_serialization=False), "
            "which this reader does not parse; torch.load(weights_only=True) can read it",
            kind="legacy",
        )
    if head.startswith(b"\x80"):
        return "a bare pickle (unpickling it could run code; refused)"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array"
    if len(head) > 9 and head[8:10] == b'{"':
        return "a safetensors file"
    return f"not a zip archive (it starts with {head[:8]!r})"


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise CheckpointError(path, f"truncated or corrupt zip archive ({_reason(exc)})") from None


def _member(zf: zipfile.ZipFile, name: str) -> zipfile.ZipInfo | None:
    try:
        return zf.getinfo(name)
    except KeyError:
        return None


def _check_member(path: Path, info: zipfile.ZipInfo, max_bytes: int) -> None:
    """Declared sizes and compression, before a byte is inflated."""
    if info.file_size > max_bytes:
        raise OverBudgetError(
            path,
            f"zip member {_name(info.filename)} declares {_size(info.file_size)} uncompressed, "
            f"over the {_size(max_bytes)} budget; refused",
        )
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointError(
            path,
            f"zip member {_name(info.filename)} uses compression method {info.compress_type}; "
            "only stored or deflated members are read",
        )
    if info.flag_bits & 0x1:
        raise CheckpointError(path, f"zip member {_name(info.filename)} is encrypted")


def _read_member(
    path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int, *, skip: int = 0
) -> npt.NDArray[np.uint8]:
    """The member's bytes after ``skip``, as a uint8 array; never more than its declared size."""
    _check_member(path, info, max_bytes)
    size = info.file_size - skip
    buffer = np.empty(size, np.uint8)
    member = _open_member(path, zf, info)
    try:
        with member:
            _read_exactly(member, skip)
            for start, piece in _pieces(member, size):
                buffer[start : start + len(piece)] = np.frombuffer(piece, np.uint8)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
        raise CheckpointError(path, f"zip member {_name(info.filename)} is corrupt ({_reason(exc)})") from None
    return buffer


def _open_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> IO[bytes]:
    try:
        return zf.open(info)
    except Exception as exc:  # zipfile checks the local header here: BadZipFile, UnicodeDecodeError, ...
        raise CheckpointError(path, f"zip member {_name(info.filename)} is corrupt ({_reason(exc)})") from None


def _pieces(member: Any, size: int) -> Iterable[tuple[int, bytes]]:
    start = 0
    while start < size:
        piece = member.read(min(_CHUNK, size - start))
        if not piece:
            raise EOFError(f"ends after {start} of {size} bytes")
        yield start, piece
        start += len(piece)


def _read_exactly(member: Any, n: int) -> None:
    for _ in _pieces(member, n):
        pass


# --- wording -------------------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _name(text: object) -> str:
    """A name from the file, quoted and escaped (no control characters, one line, bounded length)."""
    if isinstance(text, str):
        return repr(text) if len(text) <= 100 else repr(text[:100]) + f"... ({len(text)} characters)"
    if type(text) is int and abs(text) < 10**18:
        return repr(text)
    return f"of type {type(text).__name__}"


def _shown_path(path: str | Path) -> str:
    text = str(path)
    return text if text.isprintable() else repr(text)[1:-1]


def _kind(value: object) -> str:
    if value is None:
        return "None"
    if isinstance(value, dict):
        return "a dict"
    if isinstance(value, _Storage):
        return "a bare storage"
    if isinstance(value, _Tensor):
        return "a single tensor"
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    text = text if text.isprintable() else repr(text)[1:-1]
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
