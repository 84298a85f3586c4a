"""Stage 2 of the teacher: count tables -> top-k ranks for every position of a stream.

For position i, with context the tokens before i, the backoff lists the words seen
after the longest matching context first, most frequent first (ties by word id), then
after shorter contexts, skipping words already listed, until k are listed; each entry
carries its order, the backoff level that supplied it. The C kernel does this per
position; here the stream is cut into blocks that run on several threads (the kernel
releases the GIL) and write straight into the output arrays.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from corpora import NgteachError

from . import kernels
from .model import CountTables, NgramModel

BLOCK_ROWS = 1 << 16


def rank_into(
    tables: CountTables,
    stream: np.ndarray,
    ids: np.ndarray,
    orders: np.ndarray,
    scores: np.ndarray | None = None,
    gt_first: bool = True,
    pad_id: int | None = None,
    threads: int | None = None,
    on_rows: Callable[[int], None] | None = None,
    min_order: int = 1,
) -> None:
    """Fill ``ids``/``orders`` (and ``scores``, counts of the supplying order) with the
    ranks of every position of ``stream``; the arrays are [len(stream), k]. The backoff
    stops at ``min_order`` (2 leaves out the unigram fill-ins)."""
    stream = np.ascontiguousarray(stream, dtype=np.uint32)
    k = ids.shape[1]
    pad_id = np.iinfo(ids.dtype).max if pad_id is None else pad_id

    def block(start: int) -> int:
        stop = min(start + BLOCK_ROWS, len(stream))
        kernels.rank_rows(tables, stream, start, stop, k, gt_first, min_order, pad_id, ids[start:stop],
                          orders[start:stop], None if scores is None else scores[start:stop])
        return stop - start

    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        for done in pool.map(block, range(0, len(stream), BLOCK_ROWS)):
            if on_rows:
                on_rows(done)


def position_runs(positions: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of consecutive positions in ``positions`` (sorted, distinct)."""
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    return [(int(run[0]), int(run[-1]) + 1) for run in np.split(positions, breaks) if len(run)]


def spread_ranges(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every index of the ranges [lo, hi) (one per row of ``rows``), each with its row:
    (row of each index, index), to read many contexts' continuations in one gather."""
    lengths = hi - lo
    row = np.repeat(rows, lengths)
    at = np.arange(len(row)) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(lo, lengths)
    return row, at


@dataclass
class Candidate:
    word: str
    id: int
    order: int
    count: int


def continuations(model: NgramModel, context: str, k: int) -> list[Candidate]:
    """What the teacher ranks after ``context`` (text, tokenized like the corpus)."""
    check_k(k)
    k = min(k, len(model.vocab))  # longer rows would hold only padding
    context_ids = model.tokenizer.encode_text(context)
    stream = np.append(context_ids, np.uint32(0)).astype(np.uint32)
    ids = np.empty((1, k), np.uint32)
    orders = np.empty((1, k), np.uint8)
    counts = np.empty((1, k), np.uint32)
    kernels.rank_rows(model.tables, stream, len(stream) - 1, len(stream), k, False, 1,
                      np.iinfo(np.uint32).max, ids, orders, counts)
    return [Candidate(model.vocab.tokens[i], int(i), int(o), int(c))
            for i, o, c in zip(ids[0], orders[0], counts[0]) if o > 0]


def check_k(k: int) -> None:
    if k < 1:
        raise NgteachError(f"--k must be at least 1, not {k}")


def check_min_order(min_order: int, order: int) -> None:
    if not 1 <= min_order <= order:
        raise NgteachError(f"--min-order must be between 1 and the model's order {order}, not {min_order}")
