"""Interpolated modified Kneser-Ney estimation, computed as KenLM's ``lmplz`` computes it.

The result is an ARPA backoff model (:class:`ngram_teacher.arpa.ArpaTables`) that matches
``lmplz -o N`` on the same text: the same n-grams, log10 probabilities and backoffs. The
stages follow lmplz's builder pipeline (lm/builder in the KenLM sources):

1. **count** (corpus_count.cc): every line of the corpus is a sentence ``<s> w1 ... wn
   </s>`` (the token stream's ``<eos>`` is ``</s>``); the m-grams of orders 1..N of every
   sentence are counted, none crossing a line end, and ``<s>`` appears only as a first word.
2. **adjust** (adjust_counts.cc): the highest order keeps its raw counts, and so does every
   lower-order n-gram that begins with ``<s>`` (nothing can precede it); every other lower
   n-gram gets its continuation count, the number of distinct words seen before it. The
   unigram ``<s>`` gets 0, and so does ``<unk>`` when the corpus never has it.
3. **discounts** (adjust_counts.cc): per order, D1, D2, D3+ from the counts of counts of
   the adjusted counts (Chen & Goodman's eq. 26). Where they cannot be estimated, an error
   unless fallback discounts are given (lmplz's ``--discount_fallback``).
4. **probabilities** (initial_probabilities.cc, interpolate.cc): for an n-gram g with
   context c and adjusted count a, ``p(g) = (a - D(a)) / sum_c + gamma(c) * p(g[1:])``, where
   ``sum_c`` is the sum of the adjusted counts of c's n-grams and ``gamma(c) = (D1 n1(c) + D2
   n2(c) + D3 n3+(c)) / sum_c`` is the mass the discounts freed; the unigrams interpolate
   with the uniform distribution over the vocabulary (``<unk>`` and ``</s>`` included,
   ``<s>`` not), so an unseen ``<unk>`` gets ``gamma / |V|``. ``<s>`` has probability 1
   (log10 0), as lmplz writes it.
5. **backoffs** (interpolate.cc): an n-gram that is the context of longer n-grams gets
   ``gamma`` of that context as its backoff weight; any other gets 1 (log10 0).

**Pruning** (lmplz's ``--prune t1 t2 ...``; adjust_counts.cc, initial_probabilities.cc): an
m-gram whose raw count is at most t_m is left out of the model (thresholds non-decreasing,
the last one for the orders above; ``<unk>``, ``<s>`` and ``</s>`` are never pruned), so
every kept n-gram's context and suffix are kept too. The discounts are still estimated
from every n-gram, a pruned n-gram's whole adjusted count goes to its context's ``gamma``
(the mass the model then gives through the lower orders), and the unigrams' uniform share
is over the words kept.

The model's words are those of the corpus plus ``<unk>``, ``<s>`` and ``</s>``; vocabulary
entries the corpus never has are left out, as lmplz never sees them. One extension: lmplz
refuses ``<unk>`` in its input (or drops it, with ``--skip_symbols``), while here a corpus
``<unk>`` (WikiText's, or words that ``--min-count`` mapped to it) is counted like any
word, and gets backoffs where it is a context.

The m-grams of one order are held as a trie level like the count tables of FORMATS.md
(``words`` sorted by (context id, word), ``offsets`` per context), plus the id of each
m-gram's last m-1 words (``suffix``), which is what interpolation and continuation
counts need. Unigram ids are word ids (the level is dense over the vocabulary), so words
the corpus never has cost nothing and need no renumbering until the ARPA is assembled.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from corpora import NgteachError
from corpora.text import UNK

from . import kernels
from .arpa import ARPA_BOS, ARPA_EOS, ArpaOrder, ArpaTables
from .kernels import MAX_ORDER
from .model import CountTables

ARPA_SPECIALS = (UNK, ARPA_BOS, ARPA_EOS)  # ARPA words 0, 1, 2, as lmplz numbers them
LMPLZ_FALLBACK = (0.5, 1.0, 1.5)  # lmplz --discount_fallback with no values
BOS_LOG10_PROB = 0.0  # lmplz gives <s> probability 1 (SRILM would write -99); queries never score <s>

Progress = Callable[[str], None]


class DiscountFallbackWarning(UserWarning):
    """Fallback discounts replaced the closed-form estimate for some order."""


@dataclass
class _Level:
    """The m-grams of one order of the sentences, as one level of a trie."""

    words: np.ndarray  # uint32: last word of each m-gram, sorted by (context id, word); id = index
    counts: np.ndarray  # uint32: raw count of each m-gram
    offsets: np.ndarray  # uint32: the m-grams of context c are offsets[c]:offsets[c+1]
    contexts: np.ndarray  # uint32: context id of each m-gram (its first m-1 words, in order m-1)
    suffix: np.ndarray | None  # uint32: id of its last m-1 words in order m-1 (None for unigrams)

    def __len__(self) -> int:
        return len(self.words)


def estimate_kneser_ney(model, order: int | None = None,
                        discount_fallback: Sequence[float] | None = None,
                        progress: Progress | None = None, prune: Sequence[int] | None = None) -> ArpaTables:
    """An interpolated modified Kneser-Ney model of a built model directory's training corpus,
    as ``lmplz -o ORDER`` estimates it (see the module docstring), ready for :func:`write_arpa`.

    ``model`` is an :class:`ngram_teacher.NgramModel`; ``order`` defaults to its order and
    may be any order (the model's count tables are not used: they run across line ends, and
    sentences need their own counts). ``discount_fallback`` (D1, D2, D3+; lmplz's default
    is :data:`LMPLZ_FALLBACK`) replaces the discounts of any order where they cannot be
    estimated, with a :class:`DiscountFallbackWarning`; without it that is an
    :class:`NgteachError`. ``progress(stage)`` is called as each stage ends, ORDER + 2 times:
    ``"count"``, ``"adjust"``, ``"discounts"``, then ``"probabilities of the m-grams"`` for
    m = 2..ORDER. ``prune``: lmplz's ``--prune`` thresholds (see the module docstring).
    """
    vocab = model.vocab
    # count_sentences checks the ids it reads (from the count tables, only a few: the
    # tables' own were checked as the model loaded)
    return kneser_ney(model.tokens(check_ids=False), vocab.tokens, vocab.eos_id, vocab.unk_id, order or model.order,
                      discount_fallback, progress, prune, model.tables)


def kneser_ney(tokens: np.ndarray, vocab: Sequence[str], eos_id: int, unk_id: int, order: int,
               discount_fallback: Sequence[float] | None = None,
               progress: Progress | None = None, prune: Sequence[int] | None = None,
               tables: CountTables | None = None) -> ArpaTables:
    """:func:`estimate_kneser_ney` from a token stream (uint32 ids into ``vocab``, ``eos_id``
    ending every line), and its count ``tables`` if there are any (see :func:`count_sentences`)."""
    progress = progress or (lambda stage: None)
    if not 1 <= order <= MAX_ORDER:
        raise NgteachError(f"the Kneser-Ney order must be between 1 and {MAX_ORDER}, not {order}")
    if eos_id == unk_id:
        raise NgteachError("the vocabulary has no <eos> token to end sentences")
    fallback = _checked_fallback(discount_fallback)
    thresholds = prune_thresholds(prune, order)
    bos_id = len(vocab)  # one id past the vocabulary
    levels = count_sentences(tokens, eos_id, bos_id, order, tables)
    progress("count")
    adjusted = adjust_counts(levels, bos_id)
    kept = [level.counts > threshold for level, threshold in zip(levels, thresholds)]
    kept[0][[unk_id, bos_id, eos_id]] = True
    words, word_ids, arpa_ids = arpa_vocabulary(vocab, (adjusted[0] > 0) & kept[0], eos_id, unk_id, bos_id)
    progress("adjust")
    discounts = [discounts_of_order(m, a, fallback) for m, a in enumerate(adjusted, start=1)]
    progress("discounts")
    # the uniform distribution is over the words kept (<s> left out), as lmplz's
    orders = interpolate(levels, adjusted, discounts, kept, arpa_ids, len(words) - 1, progress)
    return ArpaTables(words, [_model_unigrams(orders[0], word_ids)] + orders[1:])


# ---- 1. count --------------------------------------------------------------------------

def count_sentences(tokens: np.ndarray, eos_id: int, bos_id: int, order: int,
                    tables: CountTables | None = None) -> list[_Level]:
    """The m-grams of orders 1..``order`` of the sentences of ``tokens`` (``bos_id``, one id past
    the vocabulary, starting each), as :func:`count_sentence_ngrams` counts them.

    Where ``order`` ids fit in 64 bits (:func:`kernels.packed_bits`), the sentences' n-grams
    are read off sorted packed keys, one per position and one per sentence start (see
    ``_kernels.c``): taken from the stream's count ``tables`` when they go up to ``order``
    (:func:`_sentence_keys`; no pass over the stream), else made from the stream. Otherwise
    the stream is counted order by order with ``<s>`` inserted (:func:`sentence_stream`)."""
    bits = kernels.packed_bits(bos_id, order)
    n_words = bos_id + 1
    if bits is not None and tables is not None and tables.order >= order:
        _check_lines(tokens, eos_id, int(tables.count([eos_id])), n_words)
        _check_ids(np.concatenate([tokens[:order - 1], tokens[-order:]]), n_words)  # what _sentence_keys reads
        keys, weights = _sentence_keys(tables, tokens, eos_id, bos_id, order, bits)
        builder = kernels.PackedTables(order, bits, len(keys), n_words)
        builder.add(keys, weights)
        unigram_counts = np.zeros(n_words, np.uint32)
        unigram_counts[tables.orders[0].words] = tables.orders[0].counts
        unigram_counts[bos_id] = unigram_counts[eos_id]  # one sentence per line
        built = builder.tables(unigram_counts)
    else:
        tokens = np.ascontiguousarray(tokens, dtype=np.uint32)
        if bits is None:
            return count_sentence_ngrams(sentence_stream(tokens, eos_id, bos_id), n_words, bos_id, order)
        _check_lines(tokens, eos_id, int(np.count_nonzero(tokens == eos_id)), n_words, check_ids=True)
        built = kernels.count_packed(tokens, order, bits, eos_id, bos_id, n_words)
    (_, unigram_counts, _), *above = built
    levels = [_Level(np.arange(n_words, dtype=np.uint32), unigram_counts, np.array([0, n_words], np.uint32),
                     np.zeros(n_words, np.uint32), None)]
    for words, counts, offsets in above:
        lower = levels[-1]
        suffix = kernels.suffix_by_search(words, offsets, lower.suffix, lower.words, lower.offsets)
        levels.append(_Level(words, counts, offsets, _context_ids(offsets), suffix))
    return levels


def _sentence_keys(tables: CountTables, tokens: np.ndarray, eos_id: int, bos_id: int, order: int,
                   bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The sorted sentence keys of :func:`kernels.count_packed` (``stop`` ``eos_id``, ``bos``
    ``bos_id``) and how often each occurs, from the stream's ``order``-grams.

    The ``order``-gram starting at a position, cut after its first ``<eos>``, is that
    position's key; one starting with ``<eos>`` also gives the key of the sentence start
    that follows (``<s>`` and the next words). The table lists the ``order``-grams in
    lexicographic order, and cutting keeps it (the ``order``-grams sharing the cut prefix
    are neighbours, and all become the same key), so both lists come out sorted, the
    second after the first (``<s>`` is the highest word). Only the last ``order - 1``
    positions (no ``order``-gram starts there), the sentence starts after them, and the
    first sentence's start (no ``<eos>`` before it) are made from the stream itself and
    put in their places. (At order 1 the last ``<eos>`` gives a sentence start that does
    not exist; no count is read off order-1 keys, so it changes nothing.)"""
    top = tables.orders[order - 1]
    rows = np.empty((len(top), order), np.uint32)  # the words of each order-gram
    rows[:, -1], ids = top.words, _context_ids(top.offsets)  # ids: of each order-gram's context, a level down
    for m in range(order - 1, 0, -1):
        rows[:, m - 1] = tables.orders[m - 1].words[ids]
        if m > 1:
            ids = _context_ids(tables.orders[m - 1].offsets)[ids]
    starts_line = rows[:, 0] == eos_id
    keys = np.concatenate([kernels.pack_rows(rows, bits, eos_id),
                           kernels.pack_rows(rows[starts_line], bits, eos_id, bos_id)])
    weights = np.concatenate([top.counts, top.counts[starts_line]])
    del rows
    # the positions the table does not cover: the last order - 1, and the first sentence's start
    n, sentinel = len(tokens), (1 << bits) - 1
    tail = range(max(n - order + 1, 0), n)
    padded = np.concatenate([tokens[tail.start:], np.full(order, sentinel, np.uint32)])
    extra = [kernels.pack_rows(np.array([padded[s - tail.start:][:order] for s in tail]).reshape(-1, order), bits,
                               eos_id)]
    line_starts = [s for s in tail if s - 1 >= tail.start and tokens[s - 1] == eos_id]  # its <eos> starts no order-gram
    first_line = np.concatenate([[eos_id], tokens[:order - 1], np.full(order, sentinel, np.uint32)])[:order]
    starts = np.array([first_line] + [padded[s - 1 - tail.start:][:order] for s in line_starts])
    extra.append(kernels.pack_rows(starts, bits, eos_id, bos_id))  # each row: the <eos> before, then the words
    extra = np.sort(np.concatenate(extra))
    at = np.searchsorted(keys, extra)
    return np.insert(keys, at, extra), np.insert(weights, at, np.uint32(1))


def _check_lines(tokens: np.ndarray, eos_id: int, lines: int, n_words: int, check_ids: bool = False) -> None:
    """NgteachError unless the stream is whole lines (``lines`` of them), each ending with
    ``eos_id``, small enough for uint32 ids with a ``<s>`` per line, and (``check_ids``)
    its ids are below ``n_words`` - 1 (``<s>``)."""
    if len(tokens) == 0:
        raise NgteachError("the corpus is empty: no sentence to estimate a language model from")
    if tokens[-1] != eos_id:
        raise NgteachError("the token stream does not end with <eos> (every line must end with one)")
    if len(tokens) + lines >= int(kernels.NONE):  # ids and counts are uint32
        raise NgteachError(f"a corpus of {len(tokens):,} tokens is too large (the limit is 2**32 - 1 with <s>)")
    if check_ids:
        _check_ids(tokens, n_words)


def _check_ids(tokens: np.ndarray, n_words: int) -> None:
    """NgteachError if a token id is not below ``n_words`` - 1 (``<s>``): the kernels index by them."""
    if len(tokens) and int(tokens.max()) >= n_words - 1:
        raise NgteachError(f"the token stream has id {int(tokens.max())}, beyond its vocabulary of {n_words - 1}")


def sentence_stream(tokens: np.ndarray, eos_id: int, bos_id: int) -> np.ndarray:
    """The stream with ``bos_id`` inserted before every line: ``<s> w1 .. wn <eos> <s> ...``."""
    tokens = np.asarray(tokens)
    line_ends = np.flatnonzero(tokens == eos_id)
    _check_lines(tokens, eos_id, len(line_ends), bos_id + 1, check_ids=True)
    starts = np.concatenate(([0], line_ends[:-1] + 1))
    return np.insert(tokens.astype(np.uint32, copy=False), starts, np.uint32(bos_id))


def count_sentence_ngrams(stream: np.ndarray, n_words: int, bos_id: int, order: int,
                          ending: list[np.ndarray] | None = None) -> list[_Level]:
    """The m-grams of orders 1..``order`` of a sentence stream, none spanning a ``bos_id``.

    Unigrams are dense (id = word id, count 0 for absent words). Order m is counted from
    the ids of the (m-1)-grams ending at each position, as :func:`count.count_orders` does,
    with positions holding ``<s>`` ending no m-gram of order 2 or more. Given a list as
    ``ending``, those ids (``NONE`` where no m-gram ends) are appended to it, per order.
    """
    counts = np.bincount(stream, minlength=n_words).astype(np.uint32)
    levels = [_Level(np.arange(n_words, dtype=np.uint32), counts, np.array([0, n_words], np.uint32),
                     np.zeros(n_words, np.uint32), None)]
    by_word = kernels.positions_by_word(stream, n_words)
    lower = stream  # the unigram ending at each position: its word
    if ending is not None:
        ending.append(stream)
    for _ in range(2, order + 1):
        ids, words, counts, offsets = kernels.count_order(stream, by_word, lower, len(levels[-1]), bos_id)
        if ending is not None:
            ending.append(ids)
        size = int(offsets[-1])
        suffix = kernels.suffix_ids(ids, lower, size)
        levels.append(_Level(words[:size].copy(), counts[:size].copy(), offsets, _context_ids(offsets), suffix))
        del words, counts  # the kernel's outputs have one slot per position; only the copies stay
        lower = ids
    return levels


def _context_ids(offsets: np.ndarray) -> np.ndarray:
    """The context of each n-gram of a level, from its offsets."""
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.uint32), np.diff(offsets))


# ---- 2. adjust -------------------------------------------------------------------------

def adjust_counts(levels: list[_Level], bos_id: int) -> list[np.ndarray]:
    """The adjusted count of every n-gram, per order (int64)."""
    adjusted = []
    begins_with_bos = np.arange(len(levels[0])) == bos_id
    for m, level in enumerate(levels, start=1):
        if m > 1:
            begins_with_bos = begins_with_bos[level.contexts]
        if m == len(levels):
            counts = level.counts.astype(np.int64)
        else:
            # Each (m+1)-gram is one distinct word seen before its last m words.
            counts = np.bincount(levels[m].suffix, minlength=len(level))
            counts[begins_with_bos] = level.counts[begins_with_bos]
        if m == 1:
            counts[bos_id] = 0  # lmplz never counts <s> as a word, only as a context
        adjusted.append(counts)
    return adjusted


# ---- 3. discounts ----------------------------------------------------------------------

def discounts_of_order(m: int, adjusted: np.ndarray, fallback: tuple[float, float, float] | None) -> np.ndarray:
    """``[0, D1, D2, D3+]`` for the m-grams, from the counts of counts of their adjusted counts."""
    n = np.bincount(np.minimum(adjusted, 5), minlength=6)[:5]  # n[k] = how many have count k, k <= 4
    try:
        return modified_kn_discounts(n)
    except ValueError as e:
        message = (f"cannot estimate the Kneser-Ney discounts of the {m}-grams: {e} (counts of counts "
                   f"n1..n4 = {', '.join(str(int(x)) for x in n[1:])}); is the corpus tiny, artificial or "
                   "full of duplicated lines?")
        if fallback is None:
            raise NgteachError(message + " Fallback discounts (lmplz's --discount_fallback, "
                               f"{' '.join(f'{d:g}' for d in LMPLZ_FALLBACK)}) would override this.") from None
        warnings.warn(f"{message}; using the fallback discounts D1={fallback[0]:g} D2={fallback[1]:g} "
                      f"D3+={fallback[2]:g}", DiscountFallbackWarning, stacklevel=3)
        return np.array([0.0, *fallback])


def modified_kn_discounts(n: np.ndarray) -> np.ndarray:
    """Chen & Goodman's estimate ``D_k = k - (k+1) Y n_{k+1} / n_k``, ``Y = n1 / (n1 + 2 n2)``,
    from the counts of counts ``n[1..4]``; ValueError where lmplz refuses it."""
    for k in (1, 2, 3):
        if n[k] == 0:
            raise ValueError(f"no n-gram has adjusted count {k}" + ("+" if k == 3 else ""))
    y = n[1] / (n[1] + 2.0 * n[2])
    discounts = np.array([0.0] + [k - (k + 1) * y * n[k + 1] / n[k] for k in (1, 2, 3)])
    for k in (1, 2, 3):
        if not 0.0 <= discounts[k] <= k:
            raise ValueError(f"D{k}{'+' if k == 3 else ''} = {discounts[k]:.4g} is outside [0, {k}]")
    return discounts


def prune_thresholds(prune: Sequence[int] | None, order: int) -> list[int]:
    """lmplz's ``--prune`` values, one per order (the last repeated for the orders above;
    none: 0, no pruning), checked as lmplz checks them."""
    thresholds = [int(t) for t in (prune or [0])]
    if len(thresholds) > order:
        raise NgteachError(f"--prune gives thresholds for orders 1 to {len(thresholds)}, but the model has order "
                           f"{order}")
    if any(t < 0 for t in thresholds) or thresholds != sorted(thresholds):
        raise NgteachError(f"--prune thresholds must be non-negative and non-decreasing (so that every kept "
                           f"n-gram keeps its context and suffix), not {' '.join(map(str, thresholds))}")
    return thresholds + [thresholds[-1]] * (order - len(thresholds))


def _checked_fallback(fallback: Sequence[float] | None) -> tuple[float, float, float] | None:
    if fallback is None:
        return None
    fallback = tuple(float(d) for d in fallback)
    if len(fallback) != 3 or not all(0.0 <= d <= k for k, d in enumerate(fallback, start=1)):
        raise NgteachError(f"fallback discounts must be three numbers D1 in [0, 1], D2 in [0, 2], D3+ in "
                           f"[0, 3], not {fallback}")
    return fallback


# ---- 4. probabilities and 5. backoffs --------------------------------------------------

def interpolate(levels: list[_Level], adjusted: list[np.ndarray], discounts: list[np.ndarray],
                kept: list[np.ndarray], arpa_ids: np.ndarray, n_uniform: int, progress: Progress) -> list[ArpaOrder]:
    """The ARPA orders: interpolated probabilities order by order (each needs the one below),
    and each order's backoffs from the gammas of the order above; only the ``kept``
    n-grams are written. Unigrams are still dense (indexed by word id) and ``<s>`` is not set."""
    probs = unigram_probabilities(adjusted[0], discounts[0], kept[0], n_uniform)
    rows = arpa_ids.reshape(-1, 1)  # the ARPA words of each n-gram of the current order
    orders = []
    for m in range(2, len(levels) + 1):
        level = levels[m - 1]
        gamma_m, probs_m = interpolated_probabilities(level, adjusted[m - 1], discounts[m - 1], kept[m - 1], probs)
        orders.append(_arpa_order(rows, probs, gamma_m, level.offsets, kept[m - 2] if m > 2 else None))
        rows = _extend_rows(rows, level, arpa_ids)
        probs = probs_m
        progress(f"probabilities of the {m}-grams")
    orders.append(_arpa_order(rows, probs, None, None, kept[-1] if len(levels) > 1 else None))
    return orders


def _discounted(adjusted: np.ndarray, discounts: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """What each n-gram gives up to its context's gamma: its discount, or all of its
    adjusted count when it is pruned."""
    return np.where(kept, discounts[np.minimum(adjusted, 3)], adjusted)


def unigram_probabilities(adjusted: np.ndarray, discounts: np.ndarray, kept: np.ndarray,
                          n_uniform: int) -> np.ndarray:
    """p(w) for every word id: the discounted adjusted count interpolated with the uniform
    distribution over ``n_uniform`` words (the freed mass gamma goes to it)."""
    total = adjusted.sum()
    discount = _discounted(adjusted, discounts, kept)
    gamma = discount.sum() / total
    return (adjusted - discount) / total + gamma / n_uniform


def interpolated_probabilities(level: _Level, adjusted: np.ndarray, discounts: np.ndarray, kept: np.ndarray,
                               lower_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """gamma of every context (an (m-1)-gram; 0 where it has no m-gram) and p of every m-gram."""
    contexts, n_contexts = level.contexts, len(level.offsets) - 1
    discount = _discounted(adjusted, discounts, kept)
    totals = np.bincount(contexts, weights=adjusted, minlength=n_contexts)
    freed = np.bincount(contexts, weights=discount, minlength=n_contexts)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = np.where(totals > 0, freed / totals, 0.0)
    probs = (adjusted - discount) / totals[contexts] + gamma[contexts] * lower_probs[level.suffix]
    return gamma, probs


def _arpa_order(rows: np.ndarray, probs: np.ndarray, gamma_above: np.ndarray | None,
                offsets_above: np.ndarray | None, kept: np.ndarray | None) -> ArpaOrder:
    """One ARPA order, its ``kept`` n-grams (None: all; the dense unigrams are picked later);
    backoffs (all but the top order) are the gammas of the n-grams that are contexts in the
    order above, and log10 1 = 0 for the others."""
    kept = slice(None) if kept is None else kept
    with np.errstate(divide="ignore"):  # a pruned n-gram may have probability 0: it is not written
        log10_prob = np.minimum(np.log10(probs), 0.0).astype(np.float32)  # lmplz clamps rounding above 1
    if gamma_above is None:
        return ArpaOrder(rows[kept], log10_prob[kept], None)
    is_context = offsets_above[1:] > offsets_above[:-1]
    with np.errstate(divide="ignore"):
        log10_backoff = np.where(is_context, np.log10(gamma_above), 0.0).astype(np.float32)
    return ArpaOrder(rows[kept], log10_prob[kept], log10_backoff[kept])


def _model_unigrams(dense: ArpaOrder, word_ids: np.ndarray) -> ArpaOrder:
    """The unigrams of the model, in ARPA word order (``word_ids``), from the dense ones;
    ``<s>`` gets lmplz's probability."""
    unigrams = ArpaOrder(dense.ngrams[word_ids], dense.log10_prob[word_ids],
                         None if dense.log10_backoff is None else dense.log10_backoff[word_ids])
    unigrams.log10_prob[ARPA_SPECIALS.index(ARPA_BOS)] = BOS_LOG10_PROB
    return unigrams


def _extend_rows(rows: np.ndarray, level: _Level, arpa_ids: np.ndarray) -> np.ndarray:
    """The ARPA words of the m-grams of ``level``, from those of their contexts (``rows``)."""
    m = rows.shape[1] + 1
    extended = np.empty((len(level), m), np.int32)
    extended[:, : m - 1] = rows[level.contexts]
    extended[:, m - 1] = arpa_ids[level.words]
    return extended


def arpa_vocabulary(vocab: Sequence[str], seen: np.ndarray, eos_id: int, unk_id: int,
                    bos_id: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The ARPA words: ``<unk> <s> </s>`` first (as lmplz numbers them), then the ``seen``
    words in vocabulary order; the word id of each; and the ARPA index of every word id
    (-1: not in the model)."""
    others = seen.copy()
    others[[unk_id, bos_id, eos_id]] = False
    ids = np.concatenate(([unk_id, bos_id, eos_id], np.flatnonzero(others)))
    words = list(ARPA_SPECIALS) + [vocab[i] for i in ids[3:].tolist()]
    reserved = set(ARPA_SPECIALS).intersection(words[3:])
    if reserved:
        raise NgteachError(f"the corpus has the word(s) {', '.join(sorted(reserved))}, which ARPA files reserve "
                           "for sentence boundaries and unknown words")
    arpa_ids = np.full(len(seen), -1, np.int32)
    arpa_ids[ids] = np.arange(len(ids), dtype=np.int32)
    return words, ids, arpa_ids
