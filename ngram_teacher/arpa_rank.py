"""An ARPA backoff model as a ranking teacher.

For each position i of a token stream (ids of an ngteach model's vocabulary) the teacher
lists the k words w with the highest p(w | context) under the ARPA model's standard
backoff, best first, each with its natural-log probability and the order of the n-gram
that supplied it:

    p(w | c_J) = P(c_J w)                       if the n-gram c_J w is in the model
               = backoff(c_J) * p(w | c_{J-1})  otherwise (backoff = 1 for a missing c_J)

where c_j is the last j words of the context. The context of a position is the tokens
since the last ``<eos>`` after ``<s>`` (KenLM's ``bos=True``): at the start of the
stream and after every ``<eos>`` it is ``<s>`` alone.

The top k are found without scoring the vocabulary. Let c_M be the longest suffix of
the context that is an n-gram of the model. A word's probability comes from the deepest
level j <= M with c_j w in the model: P(c_j w) times the backoffs of c_{j+1} .. c_M, a
factor shared by every word of level j. ARPA models are closed under suffixes, so the
words listed after any longer context are all listed after c_{j+1}: the words supplied
at level j are the continuations of c_j minus those of c_{j+1}, and within a level they
rank as their P(c_j w) do. Each context's continuations are stored sorted by
probability (ties by word id), so the levels are read from the longest context down,
each from its best entry on, skipping the words that c_{j+1} lists (one hash lookup
each), until the level's next entry would not sort before the row's k-th best so far.
Everything after that entry sorts after it, and shorter contexts only add entries, so
what is left unread can never enter the row: the k kept are exactly the k best.

Order of a row: by natural-log probability as float32 (the value stored), highest
first; equal values by word id, lowest first. The log probability of an entry is its
n-gram's plus the backoffs above it, summed in float32 (as KenLM sums its log10
values) from the natural logs of the file's values.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from corpora import NgteachError
from corpora.text import EOS, UNK
from corpora.vocab import Vocabulary

from .arpa import ARPA_BOS, ARPA_EOS, ArpaOrder, ArpaTables, read_arpa
from .model import NgramModel, file_sha256
from .rank import check_k, check_min_order, position_runs, spread_ranges
from .rankfile import LOGPROB_SCORES

NONE = -1
BLOCK_ROWS = 1 << 14
FIRST_WIDTH = 8  # candidates read per level at first (then 16, 32, ... for the rows that need more)
LN10 = math.log(10)
# KenLM's stand-in for a model without <unk>: log10 p(<unk>) = -100.
MISSING_UNK_LOG10 = -100.0
# A row's entries are sorted as one uint64 each: the score's order-preserving bits, then
# the word id (27 bits) and the order (5 bits, so orders up to 31).
_ID_BITS, _ORDER_BITS = 27, 5
_EMPTY_KEY = np.uint64(0xFFFFFFFFFFFFFFFF)


class _KeyIndex:
    """Finds keys in a sorted array of distinct non-negative int64 keys (a key's node is
    its position), vectorised: a dense array when the keys are small enough, else an
    open-addressing hash table (linear probing, load at most 1/3: most lookups are
    misses, which stop at the first empty slot) for the first six probes, and a binary
    search for the few keys whose probe sequence goes on."""

    _MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of key * 2**64/phi
    _PROBES = 6

    def __init__(self, keys: np.ndarray):
        n = len(keys)
        self.keys, self.dense = keys, None
        span = int(keys[-1]) + 1 if n else 0
        if span <= 4 * n + 1024:
            self.dense = np.full(span, NONE, np.int64)
            self.dense[keys] = np.arange(n)
            return
        bits = max(4, (3 * n).bit_length())
        self.shift, self.mask = np.uint64(64 - bits), (1 << bits) - 1
        slots = np.full((1 << bits, 2), NONE, np.int64)  # (key, node)
        pending, slot = np.arange(n), self._slots(keys)
        while len(pending):
            free = slots[slot, 0] == NONE
            slots[slot[free], 1] = pending[free]  # of several claims on one slot, the last stays
            won = np.zeros(len(pending), bool)
            won[free] = slots[slot[free], 1] == pending[free]
            slots[slot[won], 0] = keys[pending[won]]
            pending, slot = pending[~won], (slot[~won] + 1) & self.mask
        # Each slot as one 16-byte item: a probe fetches key and node in one gather
        # (numpy gathers whole rows of a 2-d array far more slowly).
        self.slots = slots.view(np.complex128).ravel()

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        hashed = np.ascontiguousarray(keys).view(np.uint64) * self._MULTIPLIER
        hashed >>= self.shift
        return hashed.view(np.int64)

    def _probe(self, slot: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The node found at each slot (NONE if not that key), and whether to probe on
        (another key is there)."""
        stored = self.slots[slot].view(np.int64).reshape(-1, 2)
        hit = stored[:, 0] == keys
        return np.where(hit, stored[:, 1], NONE), ~hit & (stored[:, 0] != NONE)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The node of each key, NONE for keys not in the index."""
        if self.dense is not None:
            inside = keys < len(self.dense)
            return np.where(inside, self.dense[np.where(inside, keys, 0)], NONE)
        slot = self._slots(keys)
        found, going_on = self._probe(slot, keys)
        active = np.flatnonzero(going_on)
        for _ in range(self._PROBES - 1):
            slot = (slot[going_on] + 1) & self.mask
            found[active], going_on = self._probe(slot, keys[active])
            active = active[going_on]
        asked = keys[active]
        at = np.minimum(np.searchsorted(self.keys, asked), len(self.keys) - 1)
        found[active] = np.where(self.keys[at] == asked, at, NONE)
        return found


@dataclass
class _Order:
    """Order m of the model: its n-grams as nodes 0..n-1, sorted by (context node, word),
    and the candidates after each context (a node of order m-1, or the one empty
    context for m = 1), each context's run sorted by probability (desc), then id."""

    index: _KeyIndex  # context node * n_words + word -> node
    ln_prob: np.ndarray  # [n] float32 natural-log probability
    ln_backoff: np.ndarray  # [n] float32 natural-log backoff, zeros on the highest order
    offsets: np.ndarray  # [n_contexts + 1] int64: the candidates after context c
    candidate_low: np.ndarray  # uint64: the low half of the sort key, model word id and order
    candidate_words: np.ndarray  # int32 ARPA words (what a longer context is asked about)
    candidate_ln: np.ndarray  # float32 natural-log probability


@dataclass
class _Rows:
    """What the ranking needs about a set of positions: the context node of each length
    j = 0..N-1 (NONE where the model lacks it; length 0 is the empty context, node 0)
    and the natural-log backoff accumulated above each level."""

    nodes: list[np.ndarray]
    above: list[np.ndarray]


class ArpaTeacher:
    """An ARPA model ranking the words of an ngteach vocabulary.

    Vocabulary mapping: the vocabulary's ``<eos>`` is ARPA ``</s>``; every other word is
    the ARPA word spelled the same; a vocabulary word that the ARPA file lacks (or
    spelled ``<s>``/``</s>``) is scored as ARPA ``<unk>`` (KenLM's treatment of unknown
    words). ARPA words outside the vocabulary, and ``<s>``, are never candidates. An
    ARPA model without ``<unk>`` gets one with log10 probability -100, as KenLM does.
    ``k`` is the largest row length asked of it (that many unknown words, all tied at
    ``<unk>``'s probability, are kept as candidates). A teacher (:mod:`ngram_teacher.teachers`)
    of ``model``, when given (the model whose vocabulary it ranks): rows sorted by
    probability, every entry its own partition, natural-log probabilities as scores.
    """

    partition = "strict"
    scores = LOGPROB_SCORES
    online = True

    def __init__(self, tables: ArpaTables, vocab: Vocabulary, k: int, source: dict | None = None,
                 model: NgramModel | None = None):
        check_k(k)
        if not 1 <= tables.order <= 2**_ORDER_BITS - 1:
            raise NgteachError(f"an ARPA model of order 1 to {2**_ORDER_BITS - 1} is needed, not {tables.order}")
        if len(vocab) >= 2**_ID_BITS:
            raise NgteachError(f"vocabularies of {2**_ID_BITS:,} words or more are not supported")
        self.k, self.order, self.source, self.model = k, tables.order, source or {}, model
        words, unigrams = _with_unknown(tables)
        self.n_words = len(words)
        self.unk = words.index(UNK)
        self.bos = words.index(ARPA_BOS) if ARPA_BOS in words else NONE
        self.eos_id = vocab.id(EOS) if EOS in vocab else None
        self.model_to_arpa, self.arpa_to_model, self.unknown_ids = _vocabulary_maps(
            words, unigrams.ngrams[:, 0], vocab, self.unk, k)
        self.orders: list[_Order] = []
        for m, table in enumerate([unigrams] + tables.orders[1:], start=1):
            self.orders.append(self._index_order(m, table, words))

    # ---- building ---------------------------------------------------------------------

    def _index_order(self, m: int, table: ArpaOrder, words: list[str]) -> _Order:
        grams = table.ngrams.astype(np.int64)
        context = np.zeros(len(grams), np.int64) if m == 1 else self._require(grams[:, :-1], grams, words, "context")
        if m > 1:
            self._require(grams[:, 1:], grams, words, "suffix")
        keys = context * self.n_words + grams[:, -1]
        by_key = np.argsort(keys, kind="stable")
        keys, context, last = keys[by_key], context[by_key], grams[by_key, -1]
        twice = np.flatnonzero(keys[1:] == keys[:-1])
        if len(twice):
            raise NgteachError(f"the {m}-gram {_spelled(grams[by_key[twice[0]]], words)!r} is listed twice")
        ln_prob = _natural_log(table.log10_prob[by_key])
        ln_backoff = (np.zeros(len(keys), np.float32) if table.log10_backoff is None
                      else _natural_log(table.log10_backoff[by_key]))
        n_contexts = 1 if m == 1 else len(self.orders[m - 2].ln_prob)
        return _Order(_KeyIndex(keys), ln_prob, ln_backoff, *self._candidates(m, context, last, ln_prob, n_contexts))

    def _require(self, parts: np.ndarray, grams: np.ndarray, words: list[str], what: str) -> np.ndarray:
        """The nodes of ``parts`` (a context or suffix of each n-gram); ARPA models hold
        both for every n-gram (the backoff definition relies on it)."""
        nodes = self._find(parts)
        missing = np.flatnonzero(nodes == NONE)
        if len(missing):
            gram = grams[missing[0]]
            raise NgteachError(f"the {len(gram)}-gram {_spelled(gram, words)!r} has no {what} "
                               f"{_spelled(parts[missing[0]], words)!r} among the {len(gram) - 1}-grams "
                               "(an ARPA model must hold the context and the suffix of every n-gram)")
        return nodes

    def _find(self, grams: np.ndarray) -> np.ndarray:
        """The node of each n-gram (rows of ARPA words), NONE if not in the model."""
        node = np.zeros(len(grams), np.int64)
        for j in range(grams.shape[1]):
            node = self._child(j + 1, node, grams[:, j])
        return node

    def _child(self, m: int, context: np.ndarray, word: np.ndarray) -> np.ndarray:
        """Node of the m-gram (context node, word), NONE where absent or context is NONE."""
        found = np.full(len(context), NONE, np.int64)
        ok = np.flatnonzero((context != NONE) & (word != NONE))
        found[ok] = self.orders[m - 1].index.find(context[ok] * self.n_words + word[ok])
        return found

    def _candidates(self, m: int, context: np.ndarray, last: np.ndarray, ln_prob: np.ndarray, n_contexts: int):
        """(offsets, key low halves, words, natural logs) of the candidates after each
        context: each n-gram's word as a vocabulary id (``<unk>`` as the first k unknown
        ids, none for a word outside the vocabulary), each context's run sorted best
        first, ties by id."""
        is_unk = last == self.unk
        copies = np.where(is_unk, len(self.unknown_ids), self.arpa_to_model[last] != NONE)
        source = np.repeat(np.arange(len(last)), copies)
        within = np.arange(len(source)) - np.repeat(np.cumsum(copies) - copies, copies)
        unknown = np.append(self.unknown_ids, 0)  # an unused entry keeps the index in range
        ids = np.where(is_unk[source], unknown[within], self.arpa_to_model[last[source]])
        context, ln = context[source], ln_prob[source]
        best = np.lexsort((ids, -ln, context))
        offsets = np.searchsorted(context[best], np.arange(n_contexts + 1))
        low = (ids[best].astype(np.uint64) << np.uint64(_ORDER_BITS)) | np.uint64(m)
        return offsets, low, last[source][best].astype(np.int32), ln[best]

    # ---- ranking ----------------------------------------------------------------------

    def rank_into(self, stream: np.ndarray, ids: np.ndarray, orders: np.ndarray, scores: np.ndarray | None = None,
                  gt_first: bool = True, pad_id: int | None = None, min_order: int = 1, threads: int | None = None,
                  on_rows: Callable[[int], None] | None = None, starts_sentence: bool = True) -> None:
        """Fill ``ids``/``orders``/``scores`` ([len(stream), k]; scores natural-log
        float32, may be None) with the ranks of every position of ``stream``. Levels
        below ``min_order`` are left out (rows may end in padding: order 0, id
        ``pad_id``, score -inf). ``starts_sentence``: the stream's first position follows
        ``<s>`` (else it has no context at all). ``threads`` is unused (one thread)."""
        check_min_order(min_order, self.order)
        for start in range(0, len(stream), BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, len(stream))
            self.rank_runs(stream, [(start, stop)], ids[start:stop], orders[start:stop],
                           None if scores is None else scores[start:stop], gt_first, pad_id, min_order,
                           starts_sentence)
            if on_rows:
                on_rows(stop - start)

    def rank_runs(self, stream: np.ndarray, runs: list[tuple[int, int]], ids: np.ndarray, orders: np.ndarray,
                  scores: np.ndarray | None, gt_first: bool = True, pad_id: int | None = None, min_order: int = 1,
                  starts_sentence: bool = True) -> None:
        """The rows of the positions of ``runs`` ((start, stop) pairs), one run after the
        other, into ``ids``/``orders``/``scores``, as :meth:`rank_into` fills them: all
        runs in one vectorized pass, so that a training batch's columns cost one call."""
        k = ids.shape[1]
        if k > self.k:
            raise ValueError(f"this teacher was built for rows of at most {self.k} entries, not {k}")
        pad_id = np.iinfo(ids.dtype).max if pad_id is None else pad_id
        rows = self._rows(stream, runs, starts_sentence)
        truth = np.concatenate([np.asarray(stream[start:stop], np.int64) for start, stop in runs])
        block = self._rank_rows(rows, truth, k, gt_first, min_order)
        ids[:] = np.where(block[1] > 0, block[0], pad_id)
        orders[:] = block[1]
        if scores is not None:
            scores[:] = block[2]

    def _context_words(self, stream: np.ndarray, start: int, stop: int, starts_sentence: bool) -> np.ndarray:
        """The ARPA word before each position of [start, stop): ``<s>`` at a sentence
        start, else the previous token (NONE before the first position of a stream that
        starts mid-sentence)."""
        previous = np.asarray(stream[max(start - 1, 0):stop - 1], np.int64)
        before = self.model_to_arpa[previous]
        if self.eos_id is not None:
            before[previous == self.eos_id] = self.bos
        if start == 0:
            before = np.concatenate(([self.bos if starts_sentence else NONE], before))
        return before

    def _rows(self, stream: np.ndarray, runs: list[tuple[int, int]], starts_sentence: bool) -> _Rows:
        """Context nodes of the positions of ``runs``: the j-gram of context ending at
        position p is the child of the (j-1)-gram ending at p-1, so each length is one
        lookup per position, after a margin of N-2 positions before each run (read side
        by side, no chain reaching from one run into the one before it)."""
        words, keep, first, at = [], [], [], 0
        for start, stop in runs:
            margin = min(start, max(self.order - 2, 0))
            words.append(self._context_words(stream, start - margin, stop, starts_sentence))
            keep.append(np.arange(at + margin, at + margin + stop - start))
            first.append(at)
            at += margin + stop - start
        words, keep = np.concatenate(words), np.concatenate(keep)
        starts_run = np.zeros(len(words), bool)
        starts_run[first] = True
        nodes = [np.zeros(len(keep), np.int64)]
        node = np.zeros(len(words), np.int64)  # the empty context: its children are the 1-grams
        for j in range(1, self.order):
            if j > 1:  # extend the (j-1)-gram ending one position earlier; nothing reaches past <s>
                node = np.where((words == self.bos) | starts_run, NONE, np.concatenate(([NONE], node[:-1])))
            node = self._child(j, node, words)
            nodes.append(node[keep])
        above = [np.zeros(len(keep), np.float32)]
        for j in range(self.order - 1, 0, -1):  # above[j]: backoffs of the contexts longer than j
            backoff = self.orders[j - 1].ln_backoff[np.maximum(nodes[j], 0)]
            above.insert(0, above[0] + np.where(nodes[j] != NONE, backoff, np.float32(0)))
        return _Rows(nodes, above)

    def _rank_rows(self, rows: _Rows, truth: np.ndarray, k: int, gt_first: bool, min_order: int):
        """(ids, orders, scores) [n, k] of a block of positions whose tokens are ``truth``."""
        keys = self._top_keys(rows, k, min_order)
        if gt_first:
            keys = _without(keys, truth, k - 1)
        ids, orders, scores = _unpack(keys)
        if gt_first:
            order, score = self._truth(rows, truth)
            ids, orders, scores = (np.concatenate((first[:, None], rest), axis=1)
                                   for first, rest in ((truth, ids), (order, orders), (score, scores)))
        return ids, orders, scores

    def _top_keys(self, rows: _Rows, k: int, min_order: int) -> np.ndarray:
        """The k best entries of each row as sorted keys [n, k]. Levels go from the
        longest context down, each read in chunks of growing width until its next entry
        would not sort before the row's k-th best so far: the rest of that level cannot
        enter the row, whatever the shorter contexts add."""
        keys = np.full((len(rows.nodes[0]), k), _EMPTY_KEY)
        for j in range(self.order - 1, min_order - 2, -1):
            table, context = self.orders[j], rows.nodes[j]
            lo = np.where(context != NONE, table.offsets[np.maximum(context, 0)], 0)
            hi = np.where(context != NONE, table.offsets[np.maximum(context, 0) + 1], 0)
            active, read, width = np.flatnonzero(lo < hi), 0, FIRST_WIDTH
            while len(active):
                chunk = self._read(rows, j, active, lo[active] + read, hi[active], width, keys[active, -1])
                keys[active] = np.partition(np.concatenate((keys[active], chunk), axis=1), k - 1, axis=1)[:, :k]
                read, width = read + width, 2 * width
                active = active[lo[active] + read < hi[active]]
                first_unread = _pack(self._score(table.candidate_ln[lo[active] + read], rows.above[j][active]),
                                     table.candidate_low[lo[active] + read])
                active = active[first_unread < keys[active, -1]]
        return np.sort(keys, axis=1)

    def _read(self, rows: _Rows, j: int, active: np.ndarray, start: np.ndarray, stop: np.ndarray, width: int,
              bound: np.ndarray) -> np.ndarray:
        """Keys [a, width] of the candidates [start, stop) (at most ``width``) after the
        context of length j of rows ``active``, emptied where they do not sort before
        ``bound`` (the row's k-th best so far) or a longer context supplies the word."""
        table = self.orders[j]
        width = min(width, int((stop - start).max()))  # no wider than the longest rest of a run
        at = start[:, None] + np.arange(width)
        at = np.where(at < stop[:, None], at, NONE)
        keys = _pack(self._score(table.candidate_ln[at], rows.above[j][active, None]), table.candidate_low[at])
        keys[(at == NONE) | (keys >= bound[:, None])] = _EMPTY_KEY
        if j + 1 < self.order:  # a word that the longer context lists is supplied there
            longer = rows.nodes[j + 1][active]
            ask = np.flatnonzero((keys != _EMPTY_KEY) & (longer[:, None] != NONE))
            asked = longer[ask // width] * self.n_words + table.candidate_words[at.ravel()[ask]]
            supplied = self.orders[j + 1].index.find(asked) != NONE
            keys.ravel()[ask[supplied]] = _EMPTY_KEY
        return keys

    def _truth(self, rows: _Rows, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Order and score of each position's own token."""
        order, score = self._word_scores(rows, truth[:, None])
        return order[:, 0], score[:, 0]

    def _word_scores(self, rows: _Rows, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Order and score [n, m] of the vocabulary words ``words`` [n, m] at each row's
        position: from the deepest context that has the word (every word has a 1-gram, so
        there is one)."""
        n, m = words.shape
        word = self.model_to_arpa[words].ravel()
        order = np.zeros(n * m, np.int64)
        score = np.zeros(n * m, np.float32)
        for j in range(self.order - 1, -1, -1):
            node = self._child(j + 1, np.repeat(rows.nodes[j], m), word)
            new = (order == 0) & (node != NONE)
            order[new] = j + 1
            score[new] = self._score(self.orders[j].ln_prob[node[new]], np.repeat(rows.above[j], m)[new])
        return order.reshape(n, m), score.reshape(n, m)

    def word_logprobs(self, stream: np.ndarray, positions: np.ndarray, words: np.ndarray,
                      starts_sentence: bool = True) -> np.ndarray:
        """The natural-log probability [n, m] float32 of the vocabulary words ``words``
        [n, m] at ``positions`` [n] of ``stream`` (any order, repeats allowed)."""
        positions = np.asarray(positions, np.int64)
        wanted, where = np.unique(positions, return_inverse=True)
        rows = self._rows(stream, position_runs(wanted), starts_sentence)
        rows = _Rows([nodes[where] for nodes in rows.nodes], [above[where] for above in rows.above])
        return self._word_scores(rows, np.asarray(words, np.int64))[1]

    @staticmethod
    def _score(ln_prob: np.ndarray, above: np.ndarray) -> np.ndarray:
        """The float32 natural-log probability of entries whose n-gram has natural-log
        probability ``ln_prob`` under backoffs summing to ``above`` (+= 0 turns -0.0
        into 0.0, which the sort keys would tell apart)."""
        score = ln_prob + above
        score += np.float32(0)
        return score

    # ---- the whole distribution -------------------------------------------------------

    def log_distribution(self, stream: np.ndarray, positions: np.ndarray, starts_sentence: bool = True) -> np.ndarray:
        """The model's natural-log distribution over the vocabulary at each of ``positions``
        of ``stream`` [n, V] float32, under the backoff above, renormalised over the
        vocabulary (what falls on ARPA words outside it, ``<s>`` among them, is dropped;
        every vocabulary word the model lacks gets ``<unk>``'s probability).

        Built up from the unigrams: each level's n-grams overwrite, for their words, what
        the shorter contexts gave, each with the backoffs of the contexts above it."""
        positions = np.asarray(positions, np.int64)
        wanted, where = np.unique(positions, return_inverse=True)
        rows = self._rows(stream, position_runs(wanted), starts_sentence)
        unigrams = self.orders[0]  # one context, the empty one: the same row for every position
        dense = np.full((len(wanted), self.n_words), -np.inf, np.float32)
        dense[:, unigrams.candidate_words] = self._score(unigrams.candidate_ln[None, :], rows.above[0][:, None])
        for j in range(1, self.order):
            table, context = self.orders[j], rows.nodes[j]
            has = np.flatnonzero(context != NONE)
            lo, hi = table.offsets[context[has]], table.offsets[context[has] + 1]
            row, at = spread_ranges(has, lo, hi)
            dense[row, table.candidate_words[at]] = self._score(table.candidate_ln[at], rows.above[j][row])
        vocabulary = dense[:, self.model_to_arpa]
        top = vocabulary.max(axis=1, keepdims=True)
        vocabulary -= top + np.log(np.exp(vocabulary - top).sum(axis=1, keepdims=True, dtype=np.float64)).astype(
            np.float32)
        return vocabulary[where]

    # ---- the ranks header ---------------------------------------------------------------

    def describe(self, min_order: int = 1) -> dict:
        """The ranks header's ``teacher`` object."""
        return {"kind": "arpa", **self.source, "order": self.order, "min_order": min_order, "ties": "word id",
                "partition": self.partition}


def _with_unknown(tables: ArpaTables) -> tuple[list[str], ArpaOrder]:
    """The words and 1-grams, with a 1-gram ``<unk>`` added (log10 p -100, backoff 0) if
    there is none."""
    words, unigrams = list(tables.words), tables.orders[0]
    unk = words.index(UNK) if UNK in words else len(words)
    if unk in unigrams.ngrams[:, 0]:
        return words, unigrams
    if unk == len(words):
        words.append(UNK)
    backoff = None if unigrams.log10_backoff is None else np.append(unigrams.log10_backoff, np.float32(0))
    return words, ArpaOrder(np.append(unigrams.ngrams, [[unk]], axis=0).astype(np.int32),
                            np.append(unigrams.log10_prob, np.float32(MISSING_UNK_LOG10)), backoff)


def _vocabulary_maps(words: list[str], unigram_words: np.ndarray, vocab: Vocabulary, unk: int, k: int):
    """(model id -> ARPA word, ARPA word -> model id or NONE, the first k model ids scored
    as <unk>). Only ARPA words with a 1-gram count as known."""
    unigram = {words[w]: w for w in unigram_words.tolist()}
    known = {word: w for word, w in unigram.items() if word not in (ARPA_BOS, ARPA_EOS)}
    model_to_arpa = np.array([known.get(token, unk) for token in vocab.tokens], np.int64)
    if EOS in vocab and ARPA_EOS in unigram:
        model_to_arpa[vocab.id(EOS)] = unigram[ARPA_EOS]
    arpa_to_model = np.full(len(words), NONE, np.int64)
    is_known = model_to_arpa != unk
    arpa_to_model[model_to_arpa[is_known]] = np.flatnonzero(is_known)
    return model_to_arpa, arpa_to_model, np.flatnonzero(~is_known)[:k]


def _natural_log(log10: np.ndarray) -> np.ndarray:
    return (log10.astype(np.float64) * LN10).astype(np.float32)


def _spelled(gram: np.ndarray, words: list[str]) -> str:
    return " ".join(words[w] for w in gram)


def _pack(score: np.ndarray, low: np.ndarray) -> np.ndarray:
    """One uint64 per entry that sorts best first: the float32 score's bits arranged to
    sort descending, then ``low`` (the word id, then the order)."""
    bits = score.view(np.uint32)
    descending = np.where(bits >> 31, bits, bits ^ np.uint32(0x7FFFFFFF))
    return (descending.astype(np.uint64) << np.uint64(32)) | low


def _scores(keys: np.ndarray) -> np.ndarray:
    """The float32 score of each key (-inf for an empty one)."""
    descending = (keys >> np.uint64(32)).astype(np.uint32)
    bits = np.where(descending >> 31, descending, descending ^ np.uint32(0x7FFFFFFF))
    return np.where(keys == _EMPTY_KEY, -np.inf, bits.view(np.float32)).astype(np.float32)


def _unpack(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, orders, scores) of sorted keys; empty entries get order 0 and score -inf."""
    empty = keys == _EMPTY_KEY
    low = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return np.where(empty, 0, low >> _ORDER_BITS), np.where(empty, 0, low & (2**_ORDER_BITS - 1)), _scores(keys)


def _without(keys: np.ndarray, truth: np.ndarray, n: int) -> np.ndarray:
    """The first n keys of each row that are not the row's true token."""
    ids = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64) >> _ORDER_BITS
    is_truth = (ids == truth[:, None]) & (keys != _EMPTY_KEY)
    at = np.where(is_truth.any(axis=1), np.argmax(is_truth, axis=1), keys.shape[1])
    columns = np.arange(n)
    return np.take_along_axis(keys, columns + (columns >= at[:, None]), axis=1)


# ---- files and queries ----------------------------------------------------------------------

def load_teacher(arpa: str | os.PathLike, model: NgramModel, k: int,
                 on_bytes: Callable[[int], None] | None = None) -> ArpaTeacher:
    """Read an ARPA file and index it for ranking ``model``'s vocabulary."""
    path = Path(arpa)
    tables = read_arpa(path, on_bytes)
    return ArpaTeacher(tables, model.vocab, k, {"arpa": path.name, "arpa_sha256": file_sha256(path)}, model)


def arpa_vocabulary(tables: ArpaTables) -> Vocabulary:
    """The words of an ARPA model as a word vocabulary (``</s>`` as ``<eos>``, ``<s>`` left
    out, ``<unk>`` always in), to read a text in it as KenLM's ``query`` reads it."""
    words = [EOS if word == ARPA_EOS else word for word in tables.words if word not in (ARPA_BOS, UNK)]
    return Vocabulary([*words, UNK] if EOS in words else [EOS, *words, UNK])


def token_logprobs(teacher: ArpaTeacher, stream: np.ndarray) -> np.ndarray:
    """The natural-log probability of every token of ``stream`` (lines after ``<s>``, as
    KenLM scores a sentence with ``bos=True``; an out-of-vocabulary token gets ``<unk>``'s)."""
    ids = np.empty((len(stream), 1), np.uint32)
    orders = np.empty((len(stream), 1), np.uint8)
    scores = np.empty((len(stream), 1), np.float32)
    teacher.rank_into(stream, ids, orders, scores, gt_first=True)
    return scores[:, 0]


@dataclass
class ArpaCandidate:
    word: str
    id: int
    order: int
    logprob: float  # natural log


def arpa_continuations(model: NgramModel, teacher: ArpaTeacher, context: str, k: int,
                       bos: bool = False) -> list[ArpaCandidate]:
    """The k best next words after ``context`` (text, tokenized like the corpus), with
    ``bos`` the context starts a line (follows ``<s>``), else it has nothing before it."""
    check_k(k)
    k = min(k, len(model.vocab))  # longer rows would hold only padding
    stream = np.append(model.tokenizer.encode_text(context), 0).astype(np.int64)
    ids = np.empty((len(stream), k), np.int64)
    orders = np.empty((len(stream), k), np.uint8)
    scores = np.empty((len(stream), k), np.float32)
    teacher.rank_into(stream, ids, orders, scores, gt_first=False, starts_sentence=bos)
    return [ArpaCandidate(model.vocab.tokens[i], int(i), int(o), float(s))
            for i, o, s in zip(ids[-1], orders[-1], scores[-1]) if o > 0]
