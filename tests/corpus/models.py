"""``build_corpus(folder)``: every corpus model, built into ``folder`` once and reused.

The files in ``folder`` are reused while the corpus sources and the torch / onnx / onnxconverter-common
versions are unchanged (a ``FINGERPRINT`` file records them); otherwise they are rebuilt. A build holds
an exclusive lock on ``folder/.lock``, so concurrent sessions do not write the same files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from tests.corpus.spec import CorpusModel

SOURCES = (
    "spec.py",
    "onnx_build.py",
    "torch_models.py",
    "torch_corpus.py",
    "vad.py",
    "graphs.py",
    "float16.py",
    "models.py",
)
PACKAGES = ("torch", "onnx", "onnxscript", "onnxconverter-common", "numpy")


def fingerprint() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    for package in PACKAGES:
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{package}={version}\0".encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _refresh(folder: Path) -> None:
    """Drop files of another corpus version (only the kinds of file the corpus writes)."""
    stamp = folder / "FINGERPRINT"
    current = fingerprint()
    if stamp.exists() and stamp.read_text().strip() == current:
        return
    for pattern in ("*.onnx", "*.pt", "*.partial", "*.partial.onnx"):
        for stale in folder.glob(pattern):
            stale.unlink()
    stamp.write_text(current + "\n")


def build_corpus(folder: Path, *, include_hazards: bool = False) -> dict[str, CorpusModel]:
    """All corpus models by name: correct models first, then planted bugs (``planted_bug`` set).

    ``include_hazards`` adds models that crash ONNX Runtime's process (open those in a subprocess only).
    """
    from tests.corpus.float16 import build_float16_models, build_hazards
    from tests.corpus.graphs import build_graph_models
    from tests.corpus.torch_corpus import build_bugs, build_torch_models
    from tests.corpus.vad import vad_model

    folder = Path(folder)
    with _locked(folder):
        _refresh(folder)
        models = build_torch_models(folder)
        models["vad_if_streaming"] = vad_model(folder / "vad_if_streaming.onnx")
        models.update(build_graph_models(folder))
        models.update(build_float16_models(folder, models))
        bugs = build_bugs(folder, models)
        hazards = build_hazards(folder, models) if include_hazards else {}
    return {**models, **bugs, **hazards}


def correct_models(corpus: dict[str, CorpusModel]) -> dict[str, CorpusModel]:
    return {name: m for name, m in corpus.items() if m.planted_bug is None}


def planted_bugs(corpus: dict[str, CorpusModel]) -> dict[str, CorpusModel]:
    return {name: m for name, m in corpus.items() if m.planted_bug is not None}
