"""Typed Python entry points to the C kernels in ``_kernels.c``.

ctypes releases the GIL during each call, which is what lets :mod:`ngram_teacher.rank`
run several position ranges on several cores with plain threads. Array arguments are
checked for dtype and contiguity by ``ndpointer`` before any C code runs.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
from numpy.ctypeslib import ndpointer

from . import _kernels

_lib = ctypes.CDLL(_kernels.__file__)
_u32 = ndpointer(np.uint32, flags="C_CONTIGUOUS")
_u64 = ndpointer(np.uint64, flags="C_CONTIGUOUS")
_u8 = ndpointer(np.uint8, flags="C_CONTIGUOUS")
_f32 = ndpointer(np.float32, flags="C_CONTIGUOUS")
_i64 = ctypes.c_int64
_c_u32 = ctypes.c_uint32
_ptrs = ctypes.POINTER(ctypes.c_void_p)

_lib.sort_positions_by_word.argtypes = [_u32, _i64, _c_u32, _u32, _u32]
_lib.sort_positions_by_word.restype = None
_lib.count_order.argtypes = [_u32, _i64, _u32, _u32, _c_u32, ctypes.c_void_p, _c_u32, _c_u32, _u32, _u32, _u32,
                             _u32, _u32, _u32]
_lib.count_order.restype = _i64
_lib.count_words.argtypes = [_u32, _i64, ndpointer(np.int64, flags="C_CONTIGUOUS")]
_lib.count_words.restype = None
_lib.packed_keys.argtypes = [_u32, _i64, ctypes.c_int, ctypes.c_int, _c_u32, _c_u32, _c_u32, _c_u32, _u64]
_lib.packed_keys.restype = _i64
_lib.pack_rows.argtypes = [_u32, _i64, ctypes.c_int, ctypes.c_int, _c_u32, _c_u32, _u64]
_lib.pack_rows.restype = None
_lib.packed_tables.argtypes = [_u64, _i64, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, _ptrs, _ptrs,
                               _ptrs, ndpointer(np.int64, flags="C_CONTIGUOUS")]
_lib.packed_tables.restype = None
_lib.suffix_by_search.argtypes = [_u32, _u32, _c_u32, ctypes.c_void_p, _u32, _u32, _u32]
_lib.suffix_by_search.restype = None
_lib.arpa_lines.argtypes = [_u8, ndpointer(np.int64, flags="C_CONTIGUOUS"), ndpointer(np.int64, flags="C_CONTIGUOUS"),
                            ndpointer(np.int32, flags="C_CONTIGUOUS"), _i64, ctypes.c_int, _f32, ctypes.c_void_p,
                            _u8]
_lib.arpa_lines.restype = _i64
_lib.suffix_ids.argtypes = [_u32, _u32, _i64, _u32]
_lib.suffix_ids.restype = None
_lib.sort_continuations.argtypes = [_u32, _u32, _u32, _c_u32, _u64, _u32, _u32]
_lib.sort_continuations.restype = None
_lib.rank_rows.argtypes = [_ptrs, _ptrs, _ptrs, _ptrs, _ptrs, _u32, ctypes.c_int, _c_u32, _u32, _i64, _i64,
                           ctypes.c_int, ctypes.c_int, ctypes.c_int, _c_u32, ctypes.c_int, ctypes.c_void_p, _u8,
                           ctypes.c_void_p, _u32]
_lib.rank_rows.restype = None

_lib.infini_rank.argtypes = [_u32, _i64, _i64, _u32, ndpointer(np.int32, flags="C_CONTIGUOUS"), _i64, _i64,
                             ctypes.c_int, _u32, _i64, _u32, ctypes.c_int, ctypes.c_int, ctypes.c_int, _c_u32,
                             ctypes.c_int, ctypes.c_void_p, _u8, ctypes.c_void_p, _u32, _u32, _u32,
                             ndpointer(np.int64, flags="C_CONTIGUOUS")]
_lib.infini_rank.restype = ctypes.c_int

NONE = np.uint32(0xFFFFFFFF)
MAX_ORDER = 16  # _kernels.c keeps a batch of ids per order on the stack


@dataclass
class ByWord:
    """The positions of a stream grouped by word: word w's are positions[starts[w]:starts[w+1]]."""

    positions: np.ndarray  # uint32, ascending within each word
    starts: np.ndarray  # uint32 [vocab_size + 1]


def positions_by_word(tokens: np.ndarray, vocab_size: int) -> ByWord:
    """Positions of ``tokens`` grouped by word, ascending within each word."""
    out = np.empty(len(tokens), np.uint32)
    ends = np.empty(vocab_size + 1, np.uint32)  # the kernel leaves each word's end here
    _lib.sort_positions_by_word(tokens, len(tokens), vocab_size, ends, out)
    return ByWord(out, np.concatenate(([0], ends[:vocab_size])).astype(np.uint32))


def count_order(tokens: np.ndarray, by_word: ByWord, prev: np.ndarray | None, n_contexts: int,
                start: int = NONE):
    """One order of the count tables (see ``_kernels.c``).

    Returns ``(ids, words, counts, offsets)``: ``ids[i]`` is the id of the m-gram ending at
    position i (``NONE`` where there is none), and ``words``/``counts`` may be longer than
    the table; their first ``len`` entries, where ``len = offsets[-1]``, are it. Positions
    holding the word ``start`` (a sentence start) end no m-gram of order 2 or more.
    """
    n = len(tokens)
    ids, words, counts = (np.empty(n, np.uint32) for _ in range(3))
    offsets = np.empty(n_contexts + 1, np.uint32)
    prev_ptr = None if prev is None else prev.ctypes.data
    _lib.count_order(tokens, n, by_word.positions, by_word.starts, len(by_word.starts) - 1, prev_ptr, n_contexts,
                     int(start), np.empty(n_contexts + 1, np.uint32), np.empty(n, np.uint32), ids, words, counts,
                     offsets)
    return ids, words, counts, offsets


def packed_bits(max_id: int, order: int) -> int | None:
    """Bits per word for :func:`count_packed` (ids 0..max_id and a sentinel above them),
    or None where ``order`` such words do not fit in 64 bits (or the order is beyond the
    kernels' :data:`MAX_ORDER`)."""
    bits = (max_id + 1).bit_length()
    return bits if bits * order <= 64 and order <= MAX_ORDER else None


KEY_CHUNK = 1 << 22  # keys sorted at once (32 MB), unless a quarter of the corpus is more


def count_packed(tokens: np.ndarray, order: int, bits: int, stop: int = NONE, bos: int = NONE,
                 dense_words: int | None = None) -> list[tuple[np.ndarray | None, np.ndarray, np.ndarray]]:
    """``(words, counts, offsets)`` of orders 1..``order`` from sorts of packed keys (see
    ``_kernels.c``): the tables :func:`count_order` makes order by order. With ``stop`` no
    m-gram continues past that word; with ``bos`` too, a sentence-start word ``bos`` begins
    every line (lines start at 0 and after each ``stop``). With ``dense_words``, order 1 is
    every id below it (``words`` is None; ``bos`` counts once per line) and order 2 has a
    group for each.

    The keys are made and sorted a range of first words at a time, each range holding
    about a quarter of the corpus (or :data:`KEY_CHUNK` keys, if more), and the m-grams of the
    ranges are appended in order."""
    first_words = word_counts(tokens, max(int(tokens.max(initial=0)) + 1, bos + 1 if bos != NONE else 0,
                                          dense_words or 0))
    if bos != NONE:
        first_words[bos] = first_words[stop]  # one sentence per line
    n_keys = int(first_words.sum())
    builder = PackedTables(order, bits, n_keys, dense_words)
    ranges = _key_ranges(first_words, max(n_keys // 4, KEY_CHUNK))
    room = np.empty(max(int(first_words[lo:hi].sum()) for lo, hi in ranges) + 1, np.uint64)  # one past: see C
    for lo, hi in ranges:
        keys = room[:_lib.packed_keys(tokens, len(tokens), order, bits, stop, bos, lo, hi, room)]
        keys.sort()  # numpy's vectorised sort, in place
        builder.add(keys)
    del room
    return builder.tables(None if dense_words is None else first_words[:dense_words].astype(np.uint32))


def pack_rows(rows: np.ndarray, bits: int, stop: int = NONE, first: int = NONE) -> np.ndarray:
    """The packed key of each row of words (``[n, width]``; the sentinel, all ones in
    ``bits``, may stand for words past the end), cut after the first ``stop``; with
    ``first``, that word then the row's words but its first (see ``_kernels.c``)."""
    rows = np.ascontiguousarray(rows, dtype=np.uint32)
    keys = np.empty(len(rows), np.uint64)
    _lib.pack_rows(rows, len(rows), rows.shape[1], bits, stop, first, keys)
    return keys


class PackedTables:
    """Count tables made from sorted packed keys (see ``_kernels.c``), added a batch at a
    time, each batch after the last in key order; a key may stand for ``weights`` occurrences.

    The tables' arrays have room for one m-gram per key (``n_keys`` in all): untouched,
    that room is never given memory, and :meth:`tables` copies the tables out."""

    def __init__(self, order: int, bits: int, n_keys: int, dense_words: int | None = None):
        self.order, self.bits, self.dense_words = order, bits, dense_words
        self.words, self.counts = ([np.empty(n_keys, np.uint32) for _ in range(order)] for _ in range(2))
        contexts = max(n_keys, dense_words or 0)
        self.offsets = [np.empty(2, np.uint32)] + [np.empty(contexts + 1, np.uint32) for _ in range(order - 1)]
        if dense_words is not None and order > 1:
            self.offsets[1][: dense_words + 1] = NONE
        self._pointers = [_pointer_table(arrays) for arrays in (self.words, self.counts, self.offsets)]
        self.size = np.zeros(MAX_ORDER + 1, np.int64)

    def add(self, keys: np.ndarray, weights: np.ndarray | None = None) -> None:
        assert weights is None or (weights.dtype == np.uint32 and len(weights) == len(keys))
        _lib.packed_tables(keys, len(keys), None if weights is None else weights.ctypes.data, self.order, self.bits,
                           self.dense_words is not None, *(ptr for ptr, _ in self._pointers), self.size)

    def tables(self, unigram_counts: np.ndarray | None = None) -> list[tuple[np.ndarray | None, np.ndarray,
                                                                              np.ndarray]]:
        """The ``(words, counts, offsets)`` of each order; with dense unigrams, order 1 is
        ``(None, unigram_counts, offsets)``."""
        size, dense = self.size, self.dense_words is not None
        if dense:
            size[1] = self.dense_words
        tables = []
        for m in range(1, self.order + 1):
            offsets = np.array([0, size[1]], np.uint32) if m == 1 else self.offsets[m - 1][: size[m - 1] + 1].copy()
            if m > 1:
                offsets[-1] = size[m]
                if dense and m == 2:  # words never seen: an empty group where the next one starts
                    offsets = np.minimum.accumulate(offsets[::-1])[::-1].copy()
            tables.append((self.words[m - 1][: size[m]].copy(), self.counts[m - 1][: size[m]].copy(), offsets))
            self.words[m - 1] = self.counts[m - 1] = self.offsets[m - 1] = None  # the room goes as copies are made
        if dense:
            tables[0] = (None, unigram_counts, tables[0][2])
        return tables


def word_counts(tokens: np.ndarray, size: int) -> np.ndarray:
    """Occurrences of each id below ``size`` in ``tokens`` (uint32), as int64."""
    counts = np.zeros(size, np.int64)
    _lib.count_words(tokens, len(tokens), counts)
    return counts


def _key_ranges(first_words: np.ndarray, chunk: int) -> list[tuple[int, int]]:
    """Consecutive ranges of word ids, each with about ``chunk`` keys (a word with more is
    a range of its own)."""
    ends = np.cumsum(first_words)
    ranges, lo = [], 0
    while lo < len(first_words):
        hi = max(int(np.searchsorted(ends, (ends[lo - 1] if lo else 0) + chunk, side="right")), lo + 1)
        ranges.append((lo, hi))
        lo = hi
    return ranges


def suffix_by_search(words: np.ndarray, offsets: np.ndarray, context_suffix: np.ndarray | None,
                     lower_words: np.ndarray, lower_offsets: np.ndarray) -> np.ndarray:
    """The id of each m-gram's last m-1 words in the order below (see ``_kernels.c``):
    for bigrams their word; above, a search for the word in the group of the context's suffix."""
    suffix = np.empty(len(words), np.uint32)
    _lib.suffix_by_search(words, offsets, len(offsets) - 1,
                          None if context_suffix is None else context_suffix.ctypes.data,
                          lower_words, lower_offsets, suffix)
    return suffix


def suffix_ids(ids: np.ndarray, lower_ids: np.ndarray, size: int) -> np.ndarray:
    """For each of the ``size`` m-grams, the id of its last m-1 words in the order-(m-1) table,
    from ``ids``/``lower_ids``: the ids of the m-grams and (m-1)-grams ending at each position."""
    suffix = np.empty(size, np.uint32)
    _lib.suffix_ids(ids, lower_ids, len(ids), suffix)
    return suffix


def sort_continuations(words: np.ndarray, counts: np.ndarray, offsets: np.ndarray):
    """Each context's continuations re-sorted by count (desc), then word: ``(words, counts)``."""
    longest = int(np.diff(offsets).max(initial=0))
    cont_words, cont_counts = np.empty_like(words), np.empty_like(counts)
    _lib.sort_continuations(words, counts, offsets, len(offsets) - 1, np.empty(max(longest, 1), np.uint64),
                            cont_words, cont_counts)
    return cont_words, cont_counts


VALUE_WIDTH = 21  # the longest value arpa_lines writes, with its tab: "-" + 11 digits + "." + 7 + tab


def arpa_lines(word_buffer: np.ndarray, words_at: np.ndarray, word_length: np.ndarray, ngrams: np.ndarray,
               log10_prob: np.ndarray, log10_backoff: np.ndarray | None) -> bytes:
    """ARPA lines of n-grams (rows of ``ngrams``, indices of words whose UTF-8 text is
    ``word_buffer[words_at[w]:][:word_length[w]]``), with their values (see ``_kernels.c``);
    ValueError for a value that cannot be written (NaN, +inf, or 1e11 or more)."""
    ngrams = np.ascontiguousarray(ngrams, dtype=np.int32)
    n, m = ngrams.shape
    # a line: two values with their tabs, its end, its words, and a tab or space before each
    out = np.empty(n * (2 * VALUE_WIDTH + 1) + int(word_length[ngrams].sum()) + n * m, np.uint8)
    backoff = None if log10_backoff is None else np.ascontiguousarray(log10_backoff, dtype=np.float32)
    size = _lib.arpa_lines(word_buffer, words_at, word_length, ngrams, n, m,
                           np.ascontiguousarray(log10_prob, dtype=np.float32),
                           None if backoff is None else backoff.ctypes.data, out)
    if size < 0:
        raise ValueError("a log10 value is NaN, +inf or beyond 1e11 and cannot be written to an ARPA file")
    return out[:size].tobytes()


def _pointer_table(arrays: list[np.ndarray]):
    """A C array of data pointers, slot 0 unused so that index = order."""
    table = (ctypes.c_void_p * (len(arrays) + 1))(None, *(a.ctypes.data for a in arrays))
    return ctypes.cast(table, _ptrs), table


def rank_rows(tables, stream: np.ndarray, start: int, stop: int, k: int, gt_first: bool, min_order: int,
              pad_id: int, ids_out: np.ndarray, orders_out: np.ndarray, scores_out: np.ndarray | None) -> None:
    """Fill rows ``start..stop-1`` of the ranks of ``stream`` into the given output slices.

    ``tables`` is a :class:`ngram_teacher.model.CountTables`; outputs hold ``stop - start``
    rows of ``k`` entries, ids as uint16 or uint32, scores (counts) as uint32 or None. The
    backoff lists orders ``tables.order`` down to ``min_order``.
    """
    if not 1 <= tables.order <= MAX_ORDER:
        raise ValueError(f"the rank kernel handles orders 1 to {MAX_ORDER}, not {tables.order}")
    if not 1 <= min_order <= tables.order:
        raise ValueError(f"min_order must be between 1 and {tables.order}, not {min_order}")
    assert ids_out.flags.c_contiguous and ids_out.dtype in (np.uint16, np.uint32)
    assert ids_out.shape == orders_out.shape == (stop - start, k)
    if scores_out is not None:
        assert scores_out.dtype == np.uint32 and scores_out.shape == ids_out.shape and scores_out.flags.c_contiguous
    keep = [_pointer_table([getattr(order, name) for order in tables.orders])
            for name in ("words", "counts", "offsets", "cont_words", "cont_counts")]
    _lib.rank_rows(*(ptr for ptr, _ in keep), tables.unigram_ids, tables.order, tables.vocab_size, stream, start,
                   stop, k, int(gt_first), min_order, pad_id, ids_out.itemsize, ids_out.ctypes.data, orders_out,
                   None if scores_out is None else scores_out.ctypes.data,
                   np.empty(tables.vocab_size, np.uint32))


def infini_rank(tokens: np.ndarray, n_counted: int, sa: np.ndarray, lcp: np.ndarray, first: int, stop: int,
                exclude_self: bool, vocab_size: int, k: int, gt_first: bool, min_order: int, pad_id: int,
                ids_out: np.ndarray, orders_out: np.ndarray, scores_out: np.ndarray | None,
                progress: np.ndarray) -> None:
    """Rows of positions ``first..stop-1`` of ``tokens`` by the unbounded-order teacher
    (see ``_kernels.c``): ``sa``/``lcp`` index ``tokens`` reversed, the words of positions
    below ``n_counted`` count, and ``progress[0]`` counts the suffixes walked so far."""
    assert ids_out.flags.c_contiguous and ids_out.dtype in (np.uint16, np.uint32)
    assert ids_out.shape == orders_out.shape == (stop - first, k) and orders_out.flags.c_contiguous
    if scores_out is not None:
        assert scores_out.dtype == np.uint32 and scores_out.shape == ids_out.shape and scores_out.flags.c_contiguous
    unigram = np.bincount(tokens[:n_counted], minlength=vocab_size).astype(np.uint32)
    seen_words = np.flatnonzero(unigram).astype(np.uint32)
    by_count = seen_words[np.lexsort((seen_words, -unigram[seen_words].astype(np.int64)))]
    uni_sorted = np.ascontiguousarray(np.stack([by_count, unigram[by_count]], axis=1), dtype=np.uint32)
    scratch = [np.zeros(vocab_size, np.uint32) for _ in range(3)]
    failed = _lib.infini_rank(tokens, len(tokens), n_counted, sa, lcp, first, stop, int(exclude_self),
                              uni_sorted.ravel(), len(uni_sorted), unigram, k, int(gt_first), min_order, pad_id,
                              ids_out.itemsize, ids_out.ctypes.data, orders_out,
                              None if scores_out is None else scores_out.ctypes.data, *scratch, progress)
    if failed:
        raise MemoryError("the unbounded-order teacher ran out of memory")
