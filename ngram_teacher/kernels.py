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
_i64 = ctypes.c_int64
_c_u32 = ctypes.c_uint32
_ptrs = ctypes.POINTER(ctypes.c_void_p)

_lib.sort_positions_by_word.argtypes = [_u32, _i64, _c_u32, _u32, _u32]
_lib.sort_positions_by_word.restype = None
_lib.count_order.argtypes = [_u32, _i64, _u32, _u32, _c_u32, ctypes.c_void_p, _c_u32, _c_u32, _u32, _u32, _u32,
                             _u32, _u32, _u32]
_lib.count_order.restype = _i64
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
