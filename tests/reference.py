"""Naive, plain-Python references the tests compare ngteach against.

Each function is written from the documented behaviour (FORMATS.md and the module
docstrings), not from the implementation: slow and obvious on purpose.
"""
from __future__ import annotations

import io
from collections import Counter

EOS = "<eos>"
UNK = "<unk>"


# ---- tokenization ------------------------------------------------------------------------

def tokenize_bytes(data: bytes) -> list[str]:
    """Words (``str.split()``) of every line as Python's text mode reads them, plus one
    ``<eos>`` per line (blank lines and a last line without a line end included)."""
    tokens: list[str] = []
    for line in io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=None):
        tokens.extend(line.split())
        tokens.append(EOS)
    return tokens


def tokenize_file(path) -> list[str]:
    with open(path, "rb") as f:
        return tokenize_bytes(f.read())


# ---- vocabulary --------------------------------------------------------------------------

def vocabulary(words: list[str], min_count: int = 1, max_size: int | None = None) -> list[str]:
    """The vocabulary of a token list: words seen at least ``min_count`` times, at most
    ``max_size - 1`` of them (the most frequent, ties by text), plus ``<unk>`` holding the
    count of everything else; all sorted by count (desc), then text. ``<eos>``, when it
    occurs, is always kept and counts towards ``max_size``."""
    counts = Counter(words)
    eos = [EOS] if EOS in counts else []
    candidates = [w for w in counts if w not in (UNK, EOS) and counts[w] >= min_count]
    candidates.sort(key=lambda w: (-counts[w], w))
    if max_size is not None:
        candidates = candidates[: max(max_size - 1 - len(eos), 0)]
    candidates += eos
    unk_count = sum(counts.values()) - sum(counts[w] for w in candidates)
    final = {w: counts[w] for w in candidates}
    final[UNK] = unk_count
    return sorted(final, key=lambda w: (-final[w], w))


# ---- counting ----------------------------------------------------------------------------

def ngram_counts(tokens: list[int], m: int) -> Counter:
    """Counter of every m-gram (a tuple) of the token list, one stream across lines."""
    tokens = list(tokens)
    return Counter(tuple(tokens[i - m + 1: i + 1]) for i in range(m - 1, len(tokens)))


def all_ngram_counts(tokens: list[int], order: int) -> dict[int, Counter]:
    return {m: ngram_counts(tokens, m) for m in range(1, order + 1)}


def table_ngrams(tables) -> list[dict[tuple, int]]:
    """Decode OrderTables (as yielded by count_orders) back into {ngram tuple: count},
    one dict per order, following the documented layout: an m-gram's id is its index,
    and its context is the (m-1)-gram c with offsets[c] <= id < offsets[c+1]."""
    decoded: list[dict[tuple, int]] = []
    previous_ngrams: list[tuple] = [()]  # order 0: the single empty context, id 0
    for table in tables:
        words = [int(w) for w in table.words]
        counts = [int(c) for c in table.counts]
        offsets = [int(o) for o in table.offsets]
        ngram_of_id: list[tuple] = [None] * len(words)
        for context_id, context in enumerate(previous_ngrams):
            for ngram_id in range(offsets[context_id], offsets[context_id + 1]):
                ngram_of_id[ngram_id] = context + (words[ngram_id],)
        decoded.append({ngram_of_id[i]: counts[i] for i in range(len(words))})
        previous_ngrams = ngram_of_id
    return decoded


# ---- ranking -----------------------------------------------------------------------------

class NaiveTeacher:
    """The count teacher, straight from its description.

    For position i of a stream and m = min(N, i+1) down to 1: the words w whose m-gram
    (previous m-1 tokens + w) was counted, most frequent first, ties by word id,
    skipping words already listed, until k are listed."""

    def __init__(self, counted_tokens: list[int], order: int):
        self.order = order
        self.counts = all_ngram_counts(counted_tokens, order)
        # context tuple -> [(word, count)] sorted by count desc, word asc, per order
        self.following: dict[int, dict[tuple, list[tuple[int, int]]]] = {}
        for m, counter in self.counts.items():
            groups: dict[tuple, list[tuple[int, int]]] = {}
            for ngram, count in counter.items():
                groups.setdefault(ngram[:-1], []).append((ngram[-1], count))
            for group in groups.values():
                group.sort(key=lambda wc: (-wc[1], wc[0]))
            self.following[m] = groups

    def count(self, ngram: tuple) -> int:
        return self.counts[len(ngram)].get(tuple(ngram), 0) if ngram else 0

    def row(self, stream: list[int], i: int, k: int, gt_first: bool, pad_id: int, min_order: int = 1):
        """(ids, orders, scores) of position i, each a list of k entries; the backoff
        lists orders down to ``min_order`` only."""
        entries: list[tuple[int, int, int]] = []  # (word, order, score)
        listed: set[int] = set()
        if gt_first:
            gt = stream[i]
            gt_order, gt_score = 1, 0
            for m in range(min(self.order, i + 1), 0, -1):
                c = self.count(tuple(stream[i - m + 1: i + 1]))
                if c > 0:
                    gt_order, gt_score = m, c
                    break
            entries.append((gt, gt_order, gt_score))
            listed.add(gt)
        for m in range(min(self.order, i + 1), min_order - 1, -1):
            context = tuple(stream[i - m + 1: i])
            for word, count in self.following[m].get(context, []):
                if len(entries) == k:
                    break
                if word in listed:
                    continue
                listed.add(word)
                entries.append((word, m, count))
        entries = entries[:k]
        while len(entries) < k:
            entries.append((pad_id, 0, 0))
        return [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries]

    def rank(self, stream: list[int], k: int, gt_first: bool = True, pad_id: int = 0xFFFF, min_order: int = 1):
        """Three lists of rows: ids, orders, scores."""
        stream = [int(t) for t in stream]
        rows = [self.row(stream, i, k, gt_first, pad_id, min_order) for i in range(len(stream))]
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
