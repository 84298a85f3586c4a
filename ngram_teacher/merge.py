"""Merging model directories built from shards of one corpus (``ngteach merge``).

Counts are additive. A corpus cut at line ends into shards A, B, ... and built shard by
shard (on as many machines as there are shards) merges into the model that building the
whole corpus gives, file for file, but for the corpus record in ``meta.json`` (which
names the shards: no shard holds the whole text to checksum). The stages:

1. **vocabulary**: each shard's word counts (its order-1 table) summed by word, and the
   vocabulary made from them as ``build`` makes it from the whole text's (most frequent
   first, ties by text). That is only the whole text's vocabulary if no shard left a word
   out, so word-level shards must be built with ``--min-count 1`` and no ``--max-vocab``;
   sentencepiece shards must share one ``tokenizer.model``.
2. **tokens**: each shard's ids mapped to the merged vocabulary, one after the other.
3. **counts**, order by order: each shard's m-grams spelled out (every m-gram is its
   context's (m-1)-gram plus a word), renumbered, pooled with the m-grams that cross a
   boundary between shards (read off the merged stream), and summed; sorted by their
   words, which is the trie's (context id, word) order, and re-linked to the contexts.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from corpora import NgteachError, WordTokenizer
from corpora.files import writing
from corpora.vocab import Vocabulary

from . import kernels
from .count import OrderTable
from .model import NgramModel, check_replaceable, write_model


def merge_models(shards: list[str | os.PathLike], out: str | os.PathLike,
                 on_order: Callable[[int], None] | None = None) -> Path:
    """Merge the model directories ``shards`` (of consecutive pieces of one corpus, in
    order) into a model directory at ``out``."""
    models = [NgramModel(path) for path in shards]
    out = Path(out)
    _check_mergeable(models)
    check_replaceable(out)
    tokenizer, maps = _merged_vocabulary(models)
    tokens = np.concatenate([mapping[model.tokens()] for model, mapping in zip(models, maps)]).astype(np.uint32)
    starts = np.cumsum([0] + [model.meta["n_tokens"] for model in models])[1:-1]
    order = models[0].order
    corpus = {"path": " + ".join(model.meta["corpus"]["path"] for model in models),
              "sha256": "merged:" + ",".join(model.meta["corpus"]["sha256"] for model in models),
              "bytes": sum(model.meta["corpus"]["bytes"] for model in models),
              "shards": [model.meta["corpus"] for model in models]}
    with writing(out, "the model directory"):
        write_model(tokenizer, tokens, merged_tables(models, maps, tokens, starts, order), order, out, on_order,
                    corpus)
    return out


def _check_mergeable(models: list[NgramModel]) -> None:
    if len(models) < 2:
        raise NgteachError("merge needs at least two model directories")
    first = models[0]
    for model in models[1:]:
        if model.order != first.order:
            raise NgteachError(f"{model.directory}: order {model.order}, but {first.directory} has order "
                               f"{first.order}; build every shard with the same --order")
        if model.meta["tokenizer"] != first.meta["tokenizer"]:
            raise NgteachError(f"{model.directory}: its tokenizer settings differ from {first.directory}'s; build "
                               "every shard with the same tokenizer and vocabulary settings")
    settings = first.meta["tokenizer"]
    if settings["kind"] == "word" and (settings.get("min_count", 1) != 1 or settings.get("max_size") is not None):
        raise NgteachError(f"{first.directory}: built with --min-count or --max-vocab, so its shard of the corpus "
                           "lost the words it left out; build the shards with neither and merge")
    if settings["kind"] != "word" and len({m.meta["vocab_sha256"] for m in models}) > 1:
        raise NgteachError("the shards' sentencepiece vocabularies differ; build every shard with the same "
                           "--sp-model")
    if sum(model.meta["n_tokens"] for model in models) >= 0xFFFFFFFF:
        raise NgteachError("the merged corpus is too large (counts and ids are uint32)")


def _merged_vocabulary(models: list[NgramModel]) -> tuple[object, list[np.ndarray]]:
    """The merged tokenizer and, per shard, the map from its word ids to the merged ones."""
    if models[0].meta["tokenizer"]["kind"] != "word":  # one sentencepiece model: one vocabulary
        identity = np.arange(len(models[0].vocab), dtype=np.uint32)
        return models[0].tokenizer, [identity] * len(models)
    totals: dict[str, int] = {}
    for model in models:
        unigrams = model.tables.orders[0]
        counts = np.zeros(len(model.vocab), np.int64)
        counts[np.asarray(unigrams.words)] = unigrams.counts
        for token, count in zip(model.vocab.tokens, counts.tolist()):
            totals[token] = totals.get(token, 0) + count
    seen = [token for token, count in totals.items() if count > 0]
    vocab = Vocabulary.from_counts(seen, np.array([totals[t] for t in seen], np.int64))
    return WordTokenizer(vocab), [vocab.map_types(model.vocab.tokens) for model in models]


def merged_tables(models: list[NgramModel], maps: list[np.ndarray], tokens: np.ndarray, starts: np.ndarray,
                  order: int) -> Iterator[OrderTable]:
    """The merged count tables, order 1 first (see the module's docstring)."""
    spelled = [None] * len(models)  # each shard's m-grams as rows of merged word ids
    previous = None  # the merged (m-1)-grams, as sorted rows
    for m in range(1, order + 1):
        pooled, counts = [], []
        for s, (model, mapping) in enumerate(zip(models, maps)):
            table = model.tables.orders[m - 1]
            words = mapping[np.asarray(table.words)][:, None]
            if m == 1:
                spelled[s] = words
            else:
                context = np.repeat(np.arange(len(table.offsets) - 1), np.diff(np.asarray(table.offsets, np.int64)))
                spelled[s] = np.hstack([spelled[s][context], words])
            pooled.append(spelled[s])
            counts.append(np.asarray(table.counts, np.uint64))
        crossing = _crossing_ngrams(tokens, starts, m)
        pooled.append(crossing)
        counts.append(np.ones(len(crossing), np.uint64))
        rows, summed = _summed(np.vstack(pooled), np.concatenate(counts))
        if m == 1:
            offsets = np.array([0, len(rows)], np.uint32)
        else:
            context = np.searchsorted(_keys(previous), _keys(np.ascontiguousarray(rows[:, :-1])))
            offsets = np.searchsorted(context, np.arange(len(previous) + 1)).astype(np.uint32)
        words = np.ascontiguousarray(rows[:, -1], np.uint32)
        summed = summed.astype(np.uint32)
        cont_words, cont_counts = kernels.sort_continuations(words, summed, offsets)
        yield OrderTable(words, summed, offsets, cont_words, cont_counts)
        previous = rows


def _crossing_ngrams(tokens: np.ndarray, starts: np.ndarray, m: int) -> np.ndarray:
    """The m-grams of the merged stream that no shard holds whole: those over a boundary."""
    ends = np.unique(np.concatenate([np.arange(b, b + m - 1) for b in starts] or [np.zeros(0, np.int64)]))
    ends = ends[(ends >= m - 1) & (ends < len(tokens))]
    if not len(ends):
        return np.zeros((0, m), np.uint32)
    return np.stack([tokens[ends - m + 1 + j] for j in range(m)], axis=1)


def _summed(rows: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows, sorted by their words, with the counts of each summed."""
    by = np.lexsort(rows.T[::-1])
    rows, counts = rows[by], counts[by]
    new = np.ones(len(rows), bool)
    new[1:] = (rows[1:] != rows[:-1]).any(axis=1)
    starts = np.flatnonzero(new)
    return rows[starts], np.add.reduceat(counts, starts) if len(counts) else counts


def _keys(rows: np.ndarray) -> np.ndarray:
    """Each row as one comparable value (big-endian ids, so byte order is numeric order)."""
    packed = np.ascontiguousarray(rows.astype(">u4"))
    return packed.view(np.dtype(f"V{4 * rows.shape[1]}"))[:, 0]
