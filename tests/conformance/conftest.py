"""Fixtures for the harness tests: an isolated export cache, wide console output, fake runtimes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# The test doubles of tests/conformance/fake_runtimes.py, as CONFORMANCE_EXTRA_RUNTIMES entries.
FAKE_RUNTIMES = {
    "crash": "CrashRuntime",
    "hang": "HangRuntime",
    "open-fails": "OpenFailsRuntime",
    "run-fails": "RunFailsRuntime",
    "cuda-on-cpu": "CudaOnCpuRuntime",
    "cuda-on-cuda": "CudaOnCudaRuntime",
    "non-finite": "NonFiniteRuntime",
}
FAKE_RUNTIMES_ENV = ",".join(f"{rid}=tests.conformance.fake_runtimes:{cls}" for rid, cls in FAKE_RUNTIMES.items())


@pytest.fixture(scope="package", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One export cache for the whole package (exports are shared between tests, never with ~/.cache).

    ``COLUMNS`` keeps rich from wrapping the messages the CLI tests look for.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        patch.setenv("COLUMNS", "250")
        patch.delenv("CONFORMANCE_EXTRA_RUNTIMES", raising=False)
        patch.delenv("CONFORMANCE_EXTRA_EXPORTERS", raising=False)
        yield


@pytest.fixture
def fake_runtimes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the fake runtimes; spawned workers inherit the environment."""
    monkeypatch.setenv("CONFORMANCE_EXTRA_RUNTIMES", FAKE_RUNTIMES_ENV)
