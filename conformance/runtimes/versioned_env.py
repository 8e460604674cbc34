"""Python environments that hold one release of a runtime package, created once and cached.

``<cache>/runtimes/onnxruntime-1.24.4-py311/`` is a virtual environment of this Python with
``onnxruntime==1.24.4``, its own dependencies and a NumPy that release works with, and nothing else
(lstm-conformance is never installed there, and nothing is installed into the user's environment). It
is built in a temporary folder beside it and renamed into place once it imports, so a half-built
environment is never used; a lock file serialises creators, and a creator that loses a race keeps the
winner's. ``conformance-env.json`` in it records what was installed and how.

The installer is ``uv`` when it is on PATH, else ``python -m venv`` and pip (this interpreter's pip,
pointed at the new environment, or the environment's own when this one has none). Only wheels are
installed (no builds from source), with short network timeouts. An installation that fails is
remembered for :data:`FAILURE_TTL_S` seconds (``<name>.failed.json``) so that the lanes of one run do
not retry it one by one: each is skipped with the installer's last error line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FAILURE_TTL_S",
    "INSTALL_TIMEOUT_S",
    "MARKER",
    "Environment",
    "EnvironmentSpec",
    "InstallError",
    "Installer",
    "environments_root",
    "install",
    "numpy_requirement",
    "provision",
]

MARKER = "conformance-env.json"
FAILURE_TTL_S = 600.0  # how long a failed installation is not retried
UV_ERROR = "\N{MULTIPLICATION SIGN}"  # uv starts its error reports with it
INSTALL_TIMEOUT_S = 240.0  # under the default lane timeout (300 s), so a stuck installer is a skip, not a timeout


class InstallError(RuntimeError):
    """The environment could not be made; ``str()`` is one line: what, and the installer's last error line."""


@dataclass(frozen=True)
class EnvironmentSpec:
    """One release of one runtime package, for one Python version."""

    package: str  # "onnxruntime" | "openvino"
    version: str
    python: tuple[int, int] = (sys.version_info.major, sys.version_info.minor)

    @property
    def name(self) -> str:
        return f"{self.package}-{self.version}-py{self.python[0]}{self.python[1]}"

    def requirements(self) -> list[str]:
        numpy = numpy_requirement(self.package, self.version)
        return [f"{self.package}=={self.version}", numpy]


@dataclass(frozen=True)
class Environment:
    """A Python that can import the runtime package: a cached environment, or any interpreter (tests)."""

    python: Path
    root: Path | None = None  # the environment's folder, when it is a cached one


def _release(version: str) -> tuple[int, ...]:
    """``1.24.0rc1`` -> ``(1, 24, 0)``."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def numpy_requirement(package: str, version: str) -> str:
    """The NumPy to install beside ``package==version``.

    onnxruntime before 1.19 and OpenVINO before 2024.2 were built against NumPy 1.x and break on NumPy 2
    (measured: onnxruntime 1.16.3 with NumPy 2.4 fails at import with "A module that was compiled using
    NumPy 1.x cannot be run in NumPy 2.x"; 1.18.1 declares ``numpy<2`` itself, 1.16.3 does not).
    """
    old = (package == "onnxruntime" and _release(version) < (1, 19)) or (
        package == "openvino" and _release(version) < (2024, 2)
    )
    return "numpy<2" if old else "numpy"


def environments_root() -> Path:
    from exporters.registry import cache_root

    return cache_root() / "runtimes"


# An installer builds an environment in ``target`` (a folder that does not exist yet) with ``requirements``;
# it raises InstallError whose message is the installer's last error line.
Installer = Callable[[Path, Sequence[str]], None]

_failed: dict[str, tuple[float, str]] = {}  # name -> (when, message): this process's memory of failures


def provision(spec: EnvironmentSpec, *, root: Path | None = None, installer: Installer | None = None) -> Environment:
    """The cached environment for ``spec``, created now if it does not exist; :class:`InstallError` if it
    cannot be (or could not be, less than :data:`FAILURE_TTL_S` ago)."""
    root = root or environments_root()
    final = root / spec.name
    if (found := _complete(final)) is not None:
        return found
    _raise_recent_failure(root, spec)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{spec.name}.lock"):
        if (found := _complete(final)) is not None:  # another process made it while this one waited
            return found
        _raise_recent_failure(root, spec)
        if final.exists():  # a folder without its marker, or whose Python is gone: not ours to use
            _discard(final, root)
        building = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=root))
        try:
            target = building / "env"
            started = time.monotonic()
            try:
                (installer or install)(target, spec.requirements())
            except InstallError as exc:
                _remember_failure(root, spec, str(exc))
                raise
            _write_marker(target, spec, time.monotonic() - started)
            try:
                os.rename(target, final)
            except OSError:  # someone without the lock (another tool, another host) won the race: keep theirs
                if _complete(final) is None:
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
        (root / f"{spec.name}.failed.json").unlink(missing_ok=True)
    found = _complete(final)
    if found is None:
        raise InstallError(f"{final}: the environment was made but has no Python")
    return found


def python_of(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _complete(folder: Path) -> Environment | None:
    python = python_of(folder)
    if (folder / MARKER).is_file() and python.exists():  # exists() follows the link to the base Python
        return Environment(python, folder)
    return None


def _discard(folder: Path, root: Path) -> None:
    aside = Path(tempfile.mkdtemp(prefix=".discarded-", dir=root))
    os.rename(folder, aside / "env")
    shutil.rmtree(aside, ignore_errors=True)


def _write_marker(target: Path, spec: EnvironmentSpec, seconds: float) -> None:
    facts = {
        "package": spec.package,
        "version": spec.version,
        "requirements": spec.requirements(),
        "python": ".".join(map(str, spec.python)),
        "base_python": sys.executable,
        "installer": "uv" if shutil.which("uv") else "pip",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(seconds, 2),
    }
    (target / MARKER).write_text(json.dumps(facts, indent=2) + "\n")


def _failure_file(root: Path, spec: EnvironmentSpec) -> Path:
    return root / f"{spec.name}.failed.json"


def _remember_failure(root: Path, spec: EnvironmentSpec, message: str) -> None:
    now = time.time()
    _failed[spec.name] = (now, message)
    with contextlib.suppress(OSError):
        path = _failure_file(root, spec)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps({"at": now, "message": message}))
        os.replace(temporary, path)


def _raise_recent_failure(root: Path, spec: EnvironmentSpec) -> None:
    when, message = _failed.get(spec.name, (0.0, ""))
    if not message:
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads(_failure_file(root, spec).read_text())
            when, message = float(data["at"]), str(data["message"])
    if message and time.time() - when < FAILURE_TTL_S:
        raise InstallError(message)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (blocking); without fcntl, none: the rename alone keeps it whole."""
    with open(path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --- the installer ------------------------------------------------------------------------------------


def install(target: Path, requirements: Sequence[str]) -> None:
    """A new environment at ``target`` with ``requirements`` (wheels only), by uv or venv + pip."""
    what = f"{requirements[0]} for Python {sys.version_info.major}.{sys.version_info.minor}"
    uv = shutil.which("uv")
    if uv:
        _call([uv, "venv", "--quiet", "--python", sys.executable, str(target)], what)
        python = str(python_of(target))
        _call(
            [uv, "pip", "install", "--quiet", "--python", python, "--only-binary", ":all:", *requirements],
            what,
            env={"UV_HTTP_TIMEOUT": "30"},
        )
        return
    if _has_pip():  # this interpreter's pip installs into the new environment: no pip is copied there
        _call([sys.executable, "-m", "venv", "--without-pip", str(target)], what)
        pip = [sys.executable, "-m", "pip", "--python", str(python_of(target))]
    else:
        _call([sys.executable, "-m", "venv", str(target)], what)
        pip = [str(python_of(target)), "-m", "pip"]
    options = ["--disable-pip-version-check", "--no-input", "--quiet", "--timeout", "30", "--retries", "1"]
    _call([*pip, "install", *options, "--only-binary=:all:", *requirements], what)


def _has_pip() -> bool:
    """Whether this interpreter has a pip that can install into another one (``--python``, pip >= 22.3)."""
    try:
        from importlib.metadata import version

        major, minor = (int(part) for part in version("pip").split(".")[:2])
    except Exception:
        return False
    return (major, minor) >= (22, 3)


def _call(command: Sequence[str], what: str, env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=INSTALL_TIMEOUT_S,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stderr or exc.stdout or ""
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        last = last_error_line(text)
        raise InstallError(
            f"cannot install {what}: the installer did not finish in {INSTALL_TIMEOUT_S:g} s"
            + (f" ({last})" if last else "")
        ) from None
    except OSError as exc:
        raise InstallError(f"cannot install {what}: {command[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        last = last_error_line(done.stderr + "\n" + done.stdout) or f"exit code {done.returncode}"
        raise InstallError(f"cannot install {what}: {last}")


def last_error_line(text: str) -> str:
    """The installer's last ``ERROR``/``error`` line, else its last line that is not a warning."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error", UV_ERROR))]
    if errors:
        return errors[-1]
    others = [line for line in lines if not line.lower().startswith("warning")]
    return (others or lines or [""])[-1]
