"""The two-sided (cloze) N-gram teacher: the words seen elsewhere between the same left
and right neighbours (FORMATS.md, *How the cloze teacher ranks*).

For position i of a stream, with S = the model's order - 1, the levels are the pairs
(l, r) of left and right context sizes, by total size s = l + r from S down to 0 and,
within one total, more left first: (S, 0), (S-1, 1), ..., (0, S), (S-1, 0), ..., (0, 0).
Level (l, r) applies where position i has l tokens before it and r after it in the
stream; it lists the words w at every position j of the model's corpus whose l tokens
before and r tokens after are position i's, most frequent first, ties by word id,
skipping words already listed, until k are listed. When the ranked stream is the
model's own corpus, position i itself is not counted ("elsewhere"): without that, every
position would find itself. An entry's order is s + 1, so the entries of one total
context size form one partition (the count teacher's orders are the r = 0 case). With
the true word first, entry 0 is it, of order s + 1 for the first level where it occurs
elsewhere (1, score 0, where it occurs nowhere else), and its score is its count there.

The index is, per level, the corpus's positions sorted by their context and word: each
context's continuations as a run of (word, count), most frequent first. The student
never sees the right context: this teacher is the N-gram counterpart of the paper's
masked-LM (BERT) teacher.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .model import NgramModel
from .rank import check_min_order
from .rankfile import COUNT_SCORES


def levels(order: int) -> list[tuple[int, int]]:
    """The (left, right) context sizes in backoff order."""
    return [(s - r, r) for s in range(order - 1, -1, -1) for r in range(s + 1)]


@dataclass
class _Level:
    """The continuations of every (left, right) context of one size in the corpus."""

    left: int
    right: int
    keys: np.ndarray  # [contexts] void: the contexts, sorted
    offsets: np.ndarray  # [contexts + 1]: each context's run in the arrays below
    words: np.ndarray  # [continuations] word ids, each context's most frequent first, ties by id
    counts: np.ndarray  # [continuations]
    by_id: np.ndarray  # [continuations] word ids, each context's in id order (to look a word up)
    counts_by_id: np.ndarray  # [continuations]


def _context_keys(stream: np.ndarray, positions: np.ndarray, left: int, right: int) -> np.ndarray:
    """Each position's context (``left`` tokens before, ``right`` after) as one comparable
    value (the ids big-endian, so that byte order is numeric order)."""
    columns = [stream[positions - d] for d in range(left, 0, -1)] + [stream[positions + d] for d in range(1, right + 1)]
    if not columns:
        return np.zeros(len(positions), np.dtype("V1"))
    packed = np.ascontiguousarray(np.stack(columns, axis=1).astype(">u4"))
    return packed.view(np.dtype(f"V{4 * len(columns)}"))[:, 0]


class ClozeTeacher:
    """A teacher (:mod:`ngram_teacher.teachers`) of a model directory's corpus whose
    candidates for a position are the words seen elsewhere between its neighbours."""

    partition = "order"
    scores = COUNT_SCORES
    online = False  # a row is assembled in Python: fine for a ranks file, too slow for every batch

    def __init__(self, model: NgramModel):
        self.model, self.order = model, model.order
        self.corpus = np.asarray(model.tokens(), dtype=np.int64)
        self.levels = [self._index(left, right) for left, right in levels(self.order)]

    def _index(self, left: int, right: int) -> _Level:
        n = len(self.corpus)
        positions = np.arange(left, max(left, n - right))
        keys = _context_keys(self.corpus, positions, left, right)
        if not len(positions):  # a corpus shorter than the context: no context of this size
            nothing = np.zeros(0, np.int64)
            return _Level(left, right, keys, np.zeros(1, np.int64), nothing, nothing, nothing, nothing)
        words = self.corpus[positions]
        by = np.lexsort((words, keys)) if keys.dtype.itemsize > 1 else np.argsort(words, kind="stable")
        keys, words = keys[by], words[by]
        # runs of one (context, word): a continuation and its count
        new = np.ones(len(words), bool)
        new[1:] = (keys[1:] != keys[:-1]) | (words[1:] != words[:-1])
        starts = np.flatnonzero(new)
        counts = np.diff(np.append(starts, len(words)))
        run_keys, run_words = keys[starts], words[starts]
        context = np.cumsum(np.append(True, run_keys[1:] != run_keys[:-1])) - 1
        best = np.lexsort((run_words, -counts, context))  # each context's most frequent first, ties by id
        offsets = np.searchsorted(context, np.arange(context[-1] + 2))
        unique = run_keys[np.append(True, run_keys[1:] != run_keys[:-1])]
        return _Level(left, right, unique, offsets, run_words[best], counts[best], run_words, counts)

    def describe(self, min_order: int = 1) -> dict:
        return {"kind": "cloze-ngram", "order": self.order, "min_order": min_order, "ties": "word id",
                "partition": self.partition, "levels": [list(level) for level in levels(self.order)],
                "model_tokens_sha256": self.model.meta["tokens_sha256"],
                "model_corpus_sha256": self.model.meta["corpus"]["sha256"]}

    def rank_into(self, stream, ids, orders, scores, gt_first, pad_id, min_order=1, threads=None,
                  on_rows: Callable[[int], None] | None = None):
        check_min_order(min_order, self.order)
        stream, own = self._ranked(stream)  # once for the whole stream, not per block
        block = 1 << 14
        for start in range(0, len(stream), block):
            stop = min(start + block, len(stream))
            self._rank(stream, own, np.arange(start, stop), ids[start:stop], orders[start:stop],
                       None if scores is None else scores[start:stop], gt_first, pad_id, min_order)
            if on_rows:
                on_rows(stop - start)

    def rank_runs(self, stream, runs, ids, orders, scores, gt_first, pad_id, min_order=1):
        check_min_order(min_order, self.order)
        stream, own = self._ranked(stream)
        positions = np.concatenate([np.arange(start, stop) for start, stop in runs])
        self._rank(stream, own, positions, ids, orders, scores, gt_first, pad_id, min_order)

    def _ranked(self, stream) -> tuple[np.ndarray, bool]:
        """The stream as int64, and whether it is the model's own corpus (whose positions
        do not count themselves)."""
        stream = np.asarray(stream, dtype=np.int64)
        return stream, len(stream) == len(self.corpus) and np.array_equal(stream, self.corpus)

    def _rank(self, stream, own, positions, ids, orders, scores, gt_first, pad_id, min_order):
        groups = [self._groups(level, stream, positions) for level in self.levels]
        for row, i in enumerate(positions.tolist()):
            self._row(stream, i, row, groups, ids.shape[1], gt_first, own, min_order, ids, orders, scores, pad_id)

    def _groups(self, level: _Level, stream: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The context of each position in ``level`` (-1 where it has none there)."""
        found = np.full(len(positions), -1, np.int64)
        usable = np.flatnonzero((positions >= level.left) & (positions + level.right < len(stream)))
        if not len(usable) or not len(level.keys):
            return found
        keys = _context_keys(stream, positions[usable], level.left, level.right)
        at = np.minimum(np.searchsorted(level.keys, keys), len(level.keys) - 1)
        hit = level.keys[at] == keys
        found[usable[hit]] = at[hit]
        return found

    def _row(self, stream, i, row, groups, k, gt_first, own, min_order, ids, orders, scores, pad_id):
        """Fill row ``row`` (position ``i``) level by level."""
        truth = int(stream[i])
        entries: list[tuple[int, int, int]] = []  # (word, order, count)
        listed = {truth} if gt_first else set()
        truth_entry = None
        for level, found in zip(self.levels, groups):
            order = level.left + level.right + 1
            g = int(found[row])
            if order < min_order or g < 0:
                continue
            lo, hi = int(level.offsets[g]), int(level.offsets[g + 1])
            at = lo + int(np.searchsorted(level.by_id[lo:hi], truth))
            truth_count = int(level.counts_by_id[at]) if at < hi and level.by_id[at] == truth else 0
            truth_count -= own  # position i is its own context's occurrence of the truth
            if truth_entry is None and truth_count > 0:
                truth_entry = (truth, order, truth_count)
            needed = k - gt_first - len(entries)
            if needed > 0:
                for word, count in self._best(level, lo, hi, truth, truth_count, own, needed + len(listed)):
                    if word not in listed:
                        listed.add(word)
                        entries.append((word, order, count))
                        if len(entries) == k - gt_first:
                            break
        if gt_first:
            entries.insert(0, truth_entry or (truth, 1, 0))
        ids[row], orders[row] = pad_id, 0
        if scores is not None:
            scores[row] = 0
        for j, (word, order, count) in enumerate(entries):
            ids[row, j], orders[row, j] = word, order
            if scores is not None:
                scores[row, j] = count

    @staticmethod
    def _best(level: _Level, lo: int, hi: int, truth: int, truth_count: int, own: bool, m: int) -> list:
        """The first ``m`` (word, count) of a context's continuations, best first; with
        ``own`` the truth counts one less, so it may move down among them (the others keep
        their order, and ``m`` others are enough for what it can be placed before)."""
        words = level.words[lo:min(hi, lo + m + 1)].tolist()
        counts = level.counts[lo:min(hi, lo + m + 1)].tolist()
        if not own or truth not in words:
            return list(zip(words, counts))[:m]
        others = [(w, c) for w, c in zip(words, counts) if w != truth]
        if truth_count > 0:
            others.append((truth, truth_count))
            others.sort(key=lambda wc: (-wc[1], wc[0]))
        return others[:m]
