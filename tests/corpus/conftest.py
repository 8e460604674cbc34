"""The ``corpus`` fixture: every corpus model, built once per session (or reused from a persistent cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.corpus.models import build_corpus
from tests.corpus.spec import CorpusModel, cache_root


def corpus_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``$LSTM_CORPUS_DIR``, else ``$XDG_CACHE_HOME/lstm-conformance/corpus`` when XDG_CACHE_HOME is set
    (reused across sessions: the build is fingerprinted), else a fresh folder of this session."""
    if os.environ.get("LSTM_CORPUS_DIR"):
        return Path(os.environ["LSTM_CORPUS_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return cache_root()
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CorpusModel]:
    """``{name: CorpusModel}``: correct models first, then the planted bugs."""
    return build_corpus(corpus_folder(tmp_path_factory))
