"""A naive interpolated modified Kneser-Ney estimator, for the tests of ngram_teacher.kneser_ney.

Written from the definitions (Chen & Goodman 1998, and KenLM's lmplz conventions listed
below), with plain dicts and sets of word tuples: slow and obvious on purpose.

- a corpus is a list of sentences, each ``<s> w1 ... wn </s>``; n-grams stay inside one;
- adjusted count: the raw count for the highest order and for n-grams that begin with
  ``<s>``; otherwise the number of distinct words seen right before the n-gram;
  the unigram ``<s>`` gets 0, and ``<unk>`` is a unigram with count 0 if never seen;
- discounts per order from the counts of counts n1..n4 of the adjusted counts:
  ``D_k = k - (k+1) Y n_{k+1} / n_k``, ``Y = n1 / (n1 + 2 n2)``; refused (fallback used) if
  n1, n2 or n3 is 0 or some D_k is outside [0, k];
- ``p(w | c) = (a(c w) - D(a(c w))) / sum_v a(c v) + gamma(c) p(w | c minus its first
  word)``, ``gamma(c) = sum_v D(a(c v)) / sum_v a(c v)``; the unigrams interpolate with
  1 / (number of unigrams other than ``<s>``); p(<s>) = 1;
- the backoff of an n-gram is gamma of it as a context, 1 if it is no context;
- pruning (lmplz --prune t1 t2 ...): an m-gram whose raw count is at most t_m is left out
  (never ``<unk>``, ``<s>``, ``</s>``), and gives all of its adjusted count to its
  context's gamma instead of its discount; the discounts are those of the unpruned model,
  the uniform share is over the unigrams kept.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict

BOS, EOS, UNK = "<s>", "</s>", "<unk>"

Entries = list[dict[tuple[str, ...], tuple[float, float | None]]]  # per order: n-gram -> (log10 p, log10 b)


def sentences_of(tokens: list[str], eos: str = "<eos>") -> list[list[str]]:
    """Split a token list at every ``eos`` into ``[<s>, w1, ..., </s>]`` sentences."""
    sentences, current = [], [BOS]
    for token in tokens:
        if token == eos:
            sentences.append(current + [EOS])
            current = [BOS]
        else:
            current.append(token)
    assert current == [BOS], "the token list must end with eos"
    return sentences


def raw_counts(sentences: list[list[str]], order: int) -> list[Counter]:
    counts = [Counter() for _ in range(order)]
    for sentence in sentences:
        for m in range(1, order + 1):
            for i in range(len(sentence) - m + 1):
                counts[m - 1][tuple(sentence[i:i + m])] += 1
    return counts


def adjusted_counts(raw: list[Counter]) -> list[dict]:
    order = len(raw)
    adjusted = []
    for m in range(1, order + 1):
        if m == order:
            counts = dict(raw[m - 1])
        else:
            before = defaultdict(set)  # n-gram -> words seen right before it
            for longer in raw[m]:
                before[longer[1:]].add(longer[0])
            counts = {g: (c if g[0] == BOS else len(before[g])) for g, c in raw[m - 1].items()}
        adjusted.append(counts)
    adjusted[0][(BOS,)] = 0
    adjusted[0].setdefault((UNK,), 0)
    return adjusted


def own_ngrams(sentence: list[str], i: int, order: int) -> Counter:
    """The n-grams of orders 1..order that end at word ``i`` of ``sentence`` (``<s>`` at 0)."""
    return Counter(tuple(sentence[i - m + 1:i + 1]) for m in range(1, min(order, i + 1) + 1))


def discounts(adjusted: dict, fallback) -> tuple[list[float], bool]:
    """``([0, D1, D2, D3+], used_fallback)`` for one order."""
    n = [sum(1 for a in adjusted.values() if a == k) for k in range(5)]
    if n[1] and n[2] and n[3]:
        y = n[1] / (n[1] + 2 * n[2])
        d = [0.0] + [k - (k + 1) * y * n[k + 1] / n[k] for k in (1, 2, 3)]
        if all(0 <= d[k] <= k for k in (1, 2, 3)):
            return d, False
    if fallback is None:
        raise ValueError("discounts cannot be estimated")
    return [0.0, *fallback], True


def discount_of(d: list[float], a: int) -> float:
    return d[min(a, 3)]


def estimate(sentences: list[list[str]], order: int, fallback=None, prune=None, remove: Counter | None = None,
             fixed_discounts: list[list[float]] | None = None) -> tuple[Entries, list[int]]:
    """The model as ARPA entries per order, and the orders that needed the fallback
    (ValueError if one does and ``fallback`` is None); ``prune``: lmplz's thresholds.

    ``remove``: n-gram occurrences taken out of the raw counts first (an n-gram left with
    none is gone, but a unigram stays, with count 0: the vocabulary is kept), and
    ``fixed_discounts`` used instead of estimating them: the leave-one-out model of a
    position, whose own n-grams are removed."""
    raw = raw_counts(sentences, order)
    for g, c in (remove or {}).items():
        raw[len(g) - 1][g] -= c
        if raw[len(g) - 1][g] == 0 and len(g) > 1:
            del raw[len(g) - 1][g]
    adjusted = adjusted_counts(raw)
    thresholds = list(prune or [0])
    thresholds += [thresholds[-1]] * (order - len(thresholds))

    def kept(m: int, g: tuple[str, ...]) -> bool:  # (a unigram left with count 0 by remove stays)
        return thresholds[m] == 0 or raw[m][g] > thresholds[m] or g in ((UNK,), (BOS,), (EOS,))
    per_order = ([(d, False) for d in fixed_discounts] if fixed_discounts else
                 [discounts(a, fallback) for a in adjusted])
    fallback_orders = [m for m, (_, used) in enumerate(per_order, start=1) if used]
    d = [x for x, _ in per_order]

    # totals and gammas of every context, per order (context = all words but the last)
    total, freed = [defaultdict(int) for _ in adjusted], [defaultdict(float) for _ in adjusted]
    for m, counts in enumerate(adjusted):
        for g, a in counts.items():
            total[m][g[:-1]] += a
            freed[m][g[:-1]] += discount_of(d[m], a) if kept(m, g) else a
    gamma = [{c: freed[m][c] / total[m][c] for c in total[m]} for m in range(order)]

    probs: list[dict] = []
    n_uniform = sum(1 for g in adjusted[0] if kept(0, g)) - 1  # every unigram kept but <s>
    for m, counts in enumerate(adjusted):
        probs.append({})
        for g, a in counts.items():
            context = g[:-1]
            lower = 1 / n_uniform if m == 0 else probs[m - 1][g[1:]]
            probs[m][g] = (a - discount_of(d[m], a)) / total[m][context] + gamma[m][context] * lower
    probs[0][(BOS,)] = 1.0

    entries: Entries = []
    for m in range(order):
        entries.append({})
        for g, p in probs[m].items():
            if not kept(m, g):
                continue
            if m + 1 == order:
                backoff = None
            else:
                # gamma is 0 where every discount of the context is 0 (a D of 0 is valid, as in lmplz)
                backoff = _log10(gamma[m + 1][g]) if g in gamma[m + 1] else 0.0
            entries[m][g] = (min(math.log10(p), 0.0), backoff)
    return entries, fallback_orders


def _log10(x: float) -> float:
    return math.log10(x) if x > 0 else -math.inf


# ---- querying an ARPA model by backoff ----------------------------------------------------

def log10_prob(entries: Entries, context: tuple[str, ...], word: str) -> float:
    """log10 p(word | context) of a backoff model: the longest n-gram found, plus the
    backoffs of the longer contexts that were not extended by ``word``."""
    if (word,) not in entries[0]:
        word = UNK
    context = context[max(len(context) - (len(entries) - 1), 0):] if len(entries) > 1 else ()
    backoffs = 0.0
    for start in range(len(context) + 1):
        ngram = context[start:] + (word,)
        if ngram in entries[len(ngram) - 1]:
            return entries[len(ngram) - 1][ngram][0] + backoffs
        suffix = context[start:]
        if suffix and suffix in entries[len(suffix) - 1]:
            backoffs += entries[len(suffix) - 1][suffix][1] or 0.0
    raise AssertionError("every word has a unigram")


def score_sentence(entries: Entries, words: list[str]) -> float:
    """log10 p(words </s> | <s>), as kenlm.Model.score(..., bos=True, eos=True)."""
    history, total = (BOS,), 0.0
    for word in words + [EOS]:
        total += log10_prob(entries, history, word)
        history = history + (word if (word,) in entries[0] else UNK,)
    return total
