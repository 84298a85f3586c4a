"""Kneser-Ney without self-echo: each position of the model's own corpus ranked by the
Kneser-Ney model of the corpus without that position (FORMATS.md, *How the leave-one-out
Kneser-Ney teacher ranks*).

At a training position, the Kneser-Ney teacher's probability of the true word includes
that very occurrence: most 4-grams of a small corpus occur once, so the teacher "knows"
the answer. Here, for position i, the model is the interpolated modified Kneser-Ney
estimate (:mod:`ngram_teacher.kneser_ney`, as ``ngteach arpa`` makes it) of the corpus
with the n-grams that end at i (orders 1..N, within i's sentence, ``<s>`` included)
taken out of the raw counts, keeping the whole corpus's discounts and vocabulary (so its
uniform share). Taking them out changes, at each order m, one adjusted count: that of the
m-gram ending at i, by one where it is a raw count (the highest order, or an n-gram that
begins with ``<s>``) or where its left extension ending at i occurred only there (a
continuation count losing a distinct word); and with it the total and the freed mass of
its context. Every other n-gram is untouched. So each row is the whole model's
interpolation with a handful of numbers changed:

    p(v | c_N) = sum_m  (a_m(v) - D_m(a_m(v))) / S_m  *  prod_{j > m} gamma_j   +   prod_j gamma_j / U

summed over the orders m whose context c_m (the m-1 words before i) remains, with U the
number of words (``<s>`` left out). The rows are computed a block of positions at a time
over the whole vocabulary, and the k most probable words kept, best first, ties by word
id, each with its natural-log probability and the highest order at which the corpus
(without position i) has it after c_m: rows sorted by probability, every entry its own
partition, as the ARPA teacher's.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from corpora import NgteachError

from .arpa_rank import _ORDER_BITS, _pack, _unpack, _without
from .kneser_ney import (_checked_fallback, adjust_counts, count_sentence_ngrams, discounts_of_order,
                         sentence_stream)
from .kernels import NONE
from .model import NgramModel
from .rank import spread_ranges
from .rankfile import LOGPROB_SCORES

BLOCK_ROWS = 256


class _Order:
    """The m-grams of one order of the sentences, with what the rows need of them."""

    def __init__(self, level, adjusted: np.ndarray, discounts: np.ndarray, begins_with_bos: np.ndarray,
                 n_words: int):
        self.words = level.words.astype(np.int64)
        self.offsets = level.offsets.astype(np.int64)
        self.keys = level.contexts.astype(np.int64) * n_words + self.words  # sorted: (context, word)
        self.raw = level.counts
        self.adjusted = adjusted
        self.discounts = discounts
        self.begins_with_bos = begins_with_bos
        self.disc = adjusted - discounts[np.minimum(adjusted, 3)]  # a - D(a)
        n_contexts = len(self.offsets) - 1
        self.totals = np.bincount(level.contexts, weights=adjusted, minlength=n_contexts)
        self.freed = np.bincount(level.contexts, weights=discounts[np.minimum(adjusted, 3)], minlength=n_contexts)

    def discount(self, adjusted: np.ndarray) -> np.ndarray:
        return self.discounts[np.minimum(adjusted, 3)]


class LeaveOneOutTeacher:
    """A teacher (:mod:`ngram_teacher.teachers`) of a model directory's own corpus: the
    Kneser-Ney model of order ``order`` (default the model's) without each ranked position."""

    partition = "strict"
    scores = LOGPROB_SCORES
    online = False  # a row scores the whole vocabulary: fine for a ranks file, slow for every batch

    def __init__(self, model: NgramModel, order: int | None = None,
                 discount_fallback: Sequence[float] | None = None):
        self.model, self.order = model, order or model.order
        vocab = model.vocab
        self.corpus = np.ascontiguousarray(model.tokens(), dtype=np.uint32)
        self.n_vocab, bos = len(vocab), len(vocab)  # <s> is one id past the vocabulary
        self.n_words = self.n_vocab + 1
        stream = sentence_stream(self.corpus, vocab.eos_id, bos)
        self.ending: list[np.ndarray] = []
        levels = count_sentence_ngrams(stream, self.n_words, bos, self.order, self.ending)
        adjusted = adjust_counts(levels, bos)
        fallback = _checked_fallback(discount_fallback)
        self.orders = []
        begins = np.arange(self.n_words) == bos
        for m, (level, counts) in enumerate(zip(levels, adjusted), start=1):
            begins = begins if m == 1 else begins[level.contexts]
            self.orders.append(_Order(level, counts, discounts_of_order(m, counts, fallback), begins, self.n_words))
        # each token's place in the sentence stream: after one <s> per line so far
        lines = np.concatenate(([0], np.cumsum(self.corpus[:-1] == vocab.eos_id)))
        self.at = np.arange(len(self.corpus)) + lines + 1
        seen = adjusted[0][: self.n_vocab] > 0
        specials = [vocab.unk_id, vocab.eos_id]
        self.n_uniform = 2 + int(np.count_nonzero(np.delete(seen, specials)))  # the ARPA words but <s>
        self.unseen = np.flatnonzero(~seen & ~np.isin(np.arange(self.n_vocab), specials))
        self.unk = vocab.unk_id

    def describe(self, min_order: int = 1) -> dict:
        return {"kind": "kneser-ney-leave-one-out", "order": self.order, "min_order": min_order,
                "ties": "word id", "partition": self.partition,
                "model_tokens_sha256": self.model.meta["tokens_sha256"],
                "model_corpus_sha256": self.model.meta["corpus"]["sha256"]}

    # ---- rows --------------------------------------------------------------------------

    def rank_into(self, stream, ids, orders, scores, gt_first, pad_id, min_order=1, threads=None,
                  on_rows: Callable[[int], None] | None = None):
        self._check(stream, min_order)
        for start in range(0, len(stream), BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, len(stream))
            self._fill(np.arange(start, stop), ids[start:stop], orders[start:stop],
                       None if scores is None else scores[start:stop], gt_first, pad_id, min_order)
            if on_rows:
                on_rows(stop - start)

    def rank_runs(self, stream, runs, ids, orders, scores, gt_first, pad_id, min_order=1):
        self._check(stream, min_order)
        positions = np.concatenate([np.arange(start, stop) for start, stop in runs])
        for start in range(0, len(positions), BLOCK_ROWS):
            rows = slice(start, min(start + BLOCK_ROWS, len(positions)))
            self._fill(positions[rows], ids[rows], orders[rows], None if scores is None else scores[rows], gt_first,
                       pad_id, min_order)

    def _check(self, stream, min_order: int) -> None:
        if min_order != 1:
            raise NgteachError("the leave-one-out Kneser-Ney teacher ranks every word by probability; --min-order "
                               "is for the count and ARPA teachers")
        stream = np.asarray(stream)
        if not (len(stream) == len(self.corpus) and np.array_equal(stream, self.corpus)):
            raise NgteachError(f"the leave-one-out Kneser-Ney teacher ranks its own corpus ({self.model.directory}"
                               "'s); rank another text with the ARPA file of the same model (ngteach arpa, then "
                               "--teacher arpa:FILE)")

    def _fill(self, positions, ids, orders, scores, gt_first, pad_id, min_order) -> None:
        k = ids.shape[1]
        truth = self.corpus[positions].astype(np.int64)
        probs, contexts, truth_left = self.distribution(positions)
        with np.errstate(divide="ignore"):
            ln = np.log(probs).astype(np.float32)
        low = np.arange(self.n_vocab, dtype=np.uint64) << np.uint64(_ORDER_BITS)
        keys = _pack(ln, np.broadcast_to(low, ln.shape))
        best = np.sort(np.partition(keys, min(k, self.n_vocab) - 1, axis=1)[:, :k], axis=1)
        if gt_first:
            best = np.concatenate((_pack(ln[np.arange(len(truth)), truth][:, None], (
                truth.astype(np.uint64) << np.uint64(_ORDER_BITS))[:, None]), _without(best, truth, k - 1)), axis=1)
        words, _, values = _unpack(best)
        real = np.arange(words.shape[1]) < min(k, self.n_vocab)  # rows longer than the vocabulary: padding
        ids[:] = np.where(real, words, pad_id)
        orders[:] = np.where(real, self._orders(words, truth, contexts, truth_left), 0)
        if scores is not None:
            scores[:] = np.where(real, values, -np.inf)

    def distribution(self, positions: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """p(v) [n, V] float64 at each position without its own n-grams, the context node of
        each order (-1 where there is none), and, per order, the truth's adjusted count
        left there (0 where the order has no context)."""
        s = self.at[positions]
        n = len(positions)
        contexts, changed = [], []
        above = np.ones(n)
        coef, left = [None] * self.order, [None] * self.order
        for m in range(self.order, 0, -1):
            level = self.orders[m - 1]
            context = np.zeros(n, np.int64) if m == 1 else _node(self.ending[m - 2][s - 1])
            gram = _node(self.ending[m - 1][s])
            has = gram >= 0
            out = self._taken_out(m, gram, s, has)
            a = np.where(has, level.adjusted[np.maximum(gram, 0)], 0)
            total = np.where(has, level.totals[np.maximum(context, 0)], 0.0) - out
            freed = (np.where(has, level.freed[np.maximum(context, 0)], 0.0) - level.discount(a)
                     + level.discount(a - out))
            with np.errstate(invalid="ignore", divide="ignore"):
                coef[m - 1] = np.where(total > 0, above / total, 0.0)
                above = above * np.where(total > 0, freed / total, 1.0)
            left[m - 1] = a - out
            contexts.append(np.where(has, context, -1))
            changed.append((has, a, out))
        contexts.reverse()
        changed.reverse()
        probs = np.empty((n, self.n_vocab))
        probs[:] = above[:, None] / self.n_uniform
        probs += coef[0][:, None] * self.orders[0].disc[None, : self.n_vocab]
        rows = np.arange(n)
        for m in range(2, self.order + 1):
            level, context = self.orders[m - 1], contexts[m - 1]
            has = np.flatnonzero(context >= 0)
            lo, hi = level.offsets[context[has]], level.offsets[context[has] + 1]
            row, at = spread_ranges(has, lo, hi)
            probs[row, level.words[at]] += coef[m - 1][row] * level.disc[at]
        truth = self.corpus[positions].astype(np.int64)
        for m, (has, a, out) in enumerate(changed, start=1):  # the truth's own count, each order
            level = self.orders[m - 1]
            now = a - out
            probs[rows, truth] += np.where(has, coef[m - 1] * ((now - level.discount(now)) - (a - level.discount(a))),
                                           0.0)
        if len(self.unseen):  # a vocabulary word the corpus lacks is scored as <unk>, as ARPA teachers do
            probs[:, self.unseen] = probs[:, [self.unk]]
        return probs, contexts, left

    def _taken_out(self, m: int, gram: np.ndarray, s: np.ndarray, has: np.ndarray) -> np.ndarray:
        """How much the adjusted count of the m-gram ending at each position drops without
        the position: 1 for a raw count (the highest order, or an n-gram that begins with
        <s>), 1 for a continuation count whose left extension ending there occurs only
        there, else 0."""
        level = self.orders[m - 1]
        if m == self.order:
            return has.astype(np.int64)
        longer = _node(self.ending[m][s])
        only_here = (longer >= 0) & (self.orders[m].raw[np.maximum(longer, 0)] == 1)
        return (has & (level.begins_with_bos[np.maximum(gram, 0)] | only_here)).astype(np.int64)

    def _orders(self, words: np.ndarray, truth: np.ndarray, contexts: list[np.ndarray],
                left: list[np.ndarray]) -> np.ndarray:
        """The highest order at which each entry's word follows its context (1 at least)."""
        found = np.ones(words.shape, np.int64)
        for m in range(2, self.order + 1):
            level, context = self.orders[m - 1], contexts[m - 1]
            keys = np.where(context >= 0, context, 0)[:, None] * self.n_words + words
            at = np.minimum(np.searchsorted(level.keys, keys), len(level.keys) - 1)
            there = (context[:, None] >= 0) & (level.keys[at] == keys)
            there &= (words != truth[:, None]) | (left[m - 1][:, None] > 0)  # the truth, if any is left
            found = np.where(there, m, found)
        return found


def _node(ids: np.ndarray) -> np.ndarray:
    """uint32 n-gram ids as int64, -1 where there is none."""
    return np.where(ids == NONE, -1, ids.astype(np.int64))
