"""Helpers of the case-file tests (tests/conformance/test_cases_*.py): write a suite, load it, catch its error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conformance.cases import CaseError, Suite, load_suite

# [defaults] every test suite starts with: a small LSTM and its inputs, at lines 1-4.
HEADER = """\
suite = "t"
[defaults]
inputs = { seq_len = 7, batch = 3 }
model = { input_size = 4, hidden_size = 5 }
"""


def write(tmp_path: Path, body: str, *, header: str = HEADER) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(header + textwrap.dedent(body))
    return path


def load(tmp_path: Path, body: str, *, header: str = HEADER) -> Suite:
    return load_suite(write(tmp_path, body, header=header))


def error(tmp_path: Path, body: str, *, header: str = HEADER) -> str:
    """The suite's one-line CaseError, with the file named ``t.toml``."""
    path = write(tmp_path, body, header=header)
    with pytest.raises(CaseError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message
    return message.replace(str(path), "t.toml")
