"""A small deterministic English-like text and its character vocabulary, for language-model cases.

The text is generated from a tiny grammar with a fixed seed, so the package
ships no data file for it and every install sees the same characters. The
``trained`` weights recipe (``cases/data/lm-trained.npz``) was fitted to it by
``tools/train_lm.py``.
"""

from __future__ import annotations

import random
from functools import cache

_SUBJECTS = ("the cat", "a dog", "the old man", "my sister", "the bird", "a child", "the farmer", "our teacher")
_VERBS = ("sees", "likes", "finds", "follows", "feeds", "paints", "calls", "helps")
_OBJECTS = ("the river", "a red ball", "the small house", "an apple", "the moon", "a green tree", "the road")
_ENDINGS = ("today", "at night", "in the morning", "again", "with care", "by the sea")

VOCAB = " .abcdefghijklmnopqrstuvwxyz"


@cache
def text(sentences: int = 400, seed: int = 1234) -> str:
    rng = random.Random(seed)
    parts = []
    for _ in range(sentences):
        parts.append(f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_ENDINGS)}.")
    return " ".join(parts)


def encode(chars: str) -> list[int]:
    """Token ids of ``chars`` in :data:`VOCAB`; unknown characters are an error."""
    try:
        return [VOCAB.index(ch) for ch in chars]
    except ValueError:
        bad = next(ch for ch in chars if ch not in VOCAB)
        raise ValueError(f"character {bad!r} is not in the corpus vocabulary {VOCAB!r}") from None


def decode(ids: list[int]) -> str:
    return "".join(VOCAB[i] for i in ids)
