"""Tokenizers turn a corpus file into a stream of token ids.

Every tokenizer has the same small surface, so the rest of the toolkit does not care
which one a model uses:

- ``vocab``: the :class:`Vocabulary` (id = index);
- ``encode_file(path, on_bytes=None)``: the whole corpus as uint32 ids, ``<eos>`` per line;
- ``encode_text(text)``: one piece of text (no ``<eos>`` added), for queries;
- ``config()``: what ``meta.json`` records; ``save(dir)``; ``load(dir, config)``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import NgteachError
from .text import ByteCallback, scan_words
from .vocab import Vocabulary

MAP_SLICE = 1 << 20  # ids mapped to vocabulary ids at a time


class WordTokenizer:
    """Whitespace words plus ``<eos>``; words outside the vocabulary become ``<unk>``."""

    kind = "word"

    def __init__(self, vocab: Vocabulary, min_count: int = 1, max_size: int | None = None):
        self.vocab = vocab
        self.min_count = min_count
        self.max_size = max_size

    @classmethod
    def train(
        cls,
        path: str | os.PathLike,
        min_count: int = 1,
        max_size: int | None = None,
        on_bytes: ByteCallback | None = None,
    ) -> tuple["WordTokenizer", np.ndarray]:
        """Learn the vocabulary of ``path``; return the tokenizer and the encoded corpus."""
        if min_count < 1:
            raise NgteachError(f"--min-count must be at least 1, not {min_count}")
        if max_size is not None and max_size < 2:
            raise NgteachError(f"--max-vocab must be at least 2, not {max_size}")
        scanned = scan_words(path, on_bytes)
        vocab = Vocabulary.from_counts(scanned.types, scanned.counts, min_count, max_size)
        return cls(vocab, min_count, max_size), _mapped(vocab.map_types(scanned.types), scanned.stream)

    def encode_file(self, path: str | os.PathLike, on_bytes: ByteCallback | None = None) -> np.ndarray:
        scanned = scan_words(path, on_bytes)
        return _mapped(self.vocab.map_types(scanned.types), scanned.stream)

    def encode_text(self, text: str) -> np.ndarray:
        return self.vocab.map_types(text.split())

    def config(self) -> dict:
        return {"kind": self.kind, "min_count": self.min_count, "max_size": self.max_size}

    def save(self, directory: str | os.PathLike) -> None:
        self.vocab.save(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike, config: dict) -> "WordTokenizer":
        return cls(Vocabulary.load(directory), config.get("min_count", 1), config.get("max_size"))


def _mapped(mapping: np.ndarray, stream: np.ndarray) -> np.ndarray:
    """``mapping[stream]``, written over ``stream`` a slice at a time (no second copy of a
    corpus-sized array)."""
    for start in range(0, len(stream), MAP_SLICE):
        stream[start:start + MAP_SLICE] = mapping[stream[start:start + MAP_SLICE]]
    return stream


def load_tokenizer(directory: str | os.PathLike, config: dict):
    """The tokenizer a model directory was built with, from its ``meta.json`` entry."""
    kind = config.get("kind")
    if kind == WordTokenizer.kind:
        return WordTokenizer.load(directory, config)
    if kind == "sentencepiece":
        from .subword import SentencePieceTokenizer

        return SentencePieceTokenizer.load(directory, config)
    raise NgteachError(f"{Path(directory)}: unknown tokenizer kind {kind!r} in meta.json")
