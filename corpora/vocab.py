"""The vocabulary: token <-> id, kept as ``vocab.txt`` (line number = id) and a
marisa-trie for fast lookup without loading a Python dictionary."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import marisa_trie
import numpy as np

from .errors import NgteachError
from .text import EOS, UNK

VOCAB_TXT = "vocab.txt"
VOCAB_TRIE = "vocab.marisa"


class Vocabulary:
    """An ordered list of tokens; a token's id is its index."""

    def __init__(self, tokens: list[str], trie: marisa_trie.RecordTrie | None = None):
        self.tokens = list(tokens)
        if len(set(self.tokens)) != len(self.tokens):
            raise NgteachError("vocabulary has duplicate tokens")
        if trie is None:
            trie = marisa_trie.RecordTrie("<I", ((t, (i,)) for i, t in enumerate(self.tokens)))
        if len(trie) != len(self.tokens):
            raise NgteachError("the vocabulary trie does not match vocab.txt")
        self._trie = trie

    @classmethod
    def from_counts(
        cls, types: list[str], counts: np.ndarray, min_count: int = 1, max_size: int | None = None
    ) -> "Vocabulary":
        """Most frequent first, ties by token text (code point order).

        Words rarer than ``min_count``, or beyond ``max_size`` entries, are left out and
        become ``<unk>``, which is always in the vocabulary. ``<eos>`` (among the types of
        every corpus) is kept too, whatever its count: every line ends with it. Where it
        would have survived anyway, the vocabulary is the same as without this rule.
        """
        counts = np.asarray(counts, np.int64)
        reserved = [(int(c), t) for t, c in zip(types, counts) if t == EOS]
        keep = [(int(c), t) for t, c in zip(types, counts) if c >= min_count and t not in (UNK, EOS)]
        keep.sort(key=lambda ct: (-ct[0], ct[1]))
        if max_size is not None:
            keep = keep[: max(max_size - 1 - len(reserved), 0)]
        keep += reserved
        kept = {t for _, t in keep}
        unk_count = sum(int(c) for t, c in zip(types, counts) if t not in kept)
        keep.append((unk_count, UNK))
        keep.sort(key=lambda ct: (-ct[0], ct[1]))
        return cls([t for _, t in keep])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._trie

    def id(self, token: str) -> int:
        """The id of ``token``, or of ``<unk>`` when it is not in the vocabulary."""
        hit = self._trie.get(token)
        return hit[0][0] if hit else self.unk_id

    @property
    def unk_id(self) -> int:
        hit = self._trie.get(UNK)
        if not hit:
            raise NgteachError("vocabulary has no <unk> token")
        return hit[0][0]

    @property
    def eos_id(self) -> int:
        return self.id(EOS)

    def map_types(self, types: list[str]) -> np.ndarray:
        """Ids for a list of word types (unknown ones -> ``<unk>``), as uint32."""
        return np.fromiter((self.id(t) for t in types), np.uint32, len(types))

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        (directory / VOCAB_TXT).write_text("".join(t + "\n" for t in self.tokens), encoding="utf-8")
        self._trie.save(str(directory / VOCAB_TRIE))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Vocabulary":
        directory = Path(directory)
        try:
            text = (directory / VOCAB_TXT).read_text(encoding="utf-8")
            trie = marisa_trie.RecordTrie("<I").mmap(str(directory / VOCAB_TRIE))
        except (OSError, UnicodeDecodeError, RuntimeError) as e:  # marisa reports damage as RuntimeError
            raise NgteachError(f"{directory}: cannot read the vocabulary ({e})") from None
        return cls(text.split("\n")[:-1], trie)

    def sha256(self) -> str:
        """sha256 of ``vocab.txt`` as written by :meth:`save`."""
        return vocab_sha256(self.tokens)


def vocab_sha256(tokens: list[str]) -> str:
    return hashlib.sha256("".join(t + "\n" for t in tokens).encode("utf-8")).hexdigest()
