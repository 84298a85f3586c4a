"""Stage 1 of the teacher: token ids -> count tables of every order.

Where ``order`` word ids fit in 64 bits (order 4 up to 65,535 words), every order comes
from one sort of the packed n-grams starting at each position, whose m-word prefixes
in sorted order are the m-grams in table order. Otherwise order m is built from order m-1:
the m-gram ending at position i is the pair (id of the (m-1)-gram ending at i-1, word at
i), and the C kernel buckets positions by that pair with counting sorts, so each order
costs a few linear passes and no comparison sort. Both make the same tables, whose layout
is described in FORMATS.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from corpora import NgteachError

from . import kernels

TABLE_ARRAYS = ("words", "counts", "offsets", "cont_words", "cont_counts")


@dataclass
class OrderTable:
    """The m-grams of one order, grouped by context (the (m-1)-gram id)."""

    words: np.ndarray  # uint32: word of each m-gram, by (context, word); m-gram id = index
    counts: np.ndarray  # uint32: count of each m-gram
    offsets: np.ndarray  # uint32: group of context c is offsets[c]:offsets[c+1]
    cont_words: np.ndarray  # uint32: each group re-sorted by count desc, then word
    cont_counts: np.ndarray  # uint32

    def __len__(self) -> int:
        return len(self.words)


def count_orders(tokens: np.ndarray, vocab_size: int, order: int) -> Iterator[OrderTable]:
    """Yield the tables of orders 1..order, lowest first.

    From packed keys, every order is made before the first is yielded (the tables are
    small next to the stream; the keys, 8 bytes each, are sorted a quarter of the stream
    at a time). Order by order, only the working arrays of the order being built stay in
    memory, so a caller that writes each table out and drops it needs about 8 bytes x 4
    per token at the peak.
    """
    tokens = np.ascontiguousarray(tokens, dtype=np.uint32)
    if len(tokens) >= 0xFFFFFFFF:  # ids and counts are uint32
        raise NgteachError(f"a corpus of {len(tokens):,} tokens is too large (the limit is 2**32 - 1)")
    bits = kernels.packed_bits(vocab_size - 1, order)
    if bits is not None:
        tables = kernels.count_packed(tokens, order, bits)
        while tables:
            words, counts, offsets = tables.pop(0)
            yield OrderTable(words, counts, offsets, *kernels.sort_continuations(words, counts, offsets))
        return
    by_word = kernels.positions_by_word(tokens, vocab_size)
    prev, n_contexts = None, 1
    for _ in range(order):
        ids, words, counts, offsets = kernels.count_order(tokens, by_word, prev, n_contexts)
        size = int(offsets[-1])
        words, counts = words[:size], counts[:size]
        cont_words, cont_counts = kernels.sort_continuations(words, counts, offsets)
        yield OrderTable(words, counts, offsets, cont_words, cont_counts)
        prev, n_contexts = ids, size
