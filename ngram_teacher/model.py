"""The model directory: what ``ngteach build`` writes and every other command reads.

Layout (spelled out in FORMATS.md)::

    meta.json                      order, sizes, tokenizer, source corpus, checksums
    vocab.txt, vocab.marisa        the vocabulary (+ tokenizer.model for sentencepiece)
    tokens.npy                     the encoded training corpus, uint32
    counts/{m}.{array}.npy         the count tables of order m (see count.py)

It is written into a temporary sibling directory and renamed into place, so a
crash never leaves a half-built model where a model is expected.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from corpora import NgteachError, WordTokenizer, check_corpus, load_tokenizer
from corpora.text import digest_meanwhile
from corpora.files import json_count, read_json_object, replace_dir, temp_dir, writing, wrong_field
from corpora.provenance import TOOL_VERSION

from .count import TABLE_ARRAYS, OrderTable, count_orders
from .kernels import MAX_ORDER, NONE

MODEL_FORMAT = "ngteach-model"
MODEL_FORMAT_VERSION = 1
META = "meta.json"
TOKENS = "tokens.npy"
COUNTS = "counts"


def tokens_sha256(tokens: np.ndarray) -> str:
    """Checksum of a token stream, as little-endian uint32 (the ranks file records it)."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(tokens, dtype="<u4"))).hexdigest()  # no copy


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass
class CountTables:
    """The count tables of orders 1..N (``orders[m-1]`` is order m)."""

    orders: list[OrderTable]
    vocab_size: int

    @property
    def order(self) -> int:
        return len(self.orders)

    @cached_property
    def unigram_ids(self) -> np.ndarray:
        """Order-1 id of every word (``NONE`` for words never seen), for the kernels."""
        ids = np.full(self.vocab_size, NONE, np.uint32)
        ids[self.orders[0].words] = np.arange(len(self.orders[0]), dtype=np.uint32)
        return ids

    def ngram_id(self, ngram: list[int]) -> int | None:
        """Id of an n-gram (word ids) in the table of its order, or None if unseen."""
        node = 0
        for m, word in enumerate(ngram, start=1):
            table = self.orders[m - 1]
            lo, hi = int(table.offsets[node]), int(table.offsets[node + 1])
            at = lo + int(np.searchsorted(table.words[lo:hi], word))
            if at == hi or table.words[at] != word:
                return None
            node = at
        return node

    def count(self, ngram: list[int]) -> int:
        node = self.ngram_id(ngram)
        return 0 if node is None else int(self.orders[len(ngram) - 1].counts[node])


class NgramModel:
    """A built model directory, memory-mapped."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.meta = _read_meta(self.directory)
        self.tokenizer = load_tokenizer(self.directory, self.meta["tokenizer"])
        self.vocab = self.tokenizer.vocab
        if len(self.vocab) != self.meta["vocab_size"] or self.vocab.sha256() != self.meta["vocab_sha256"]:
            raise NgteachError(f"{self.directory}: vocab.txt does not match meta.json")
        self.tables = CountTables([self._load_order(m) for m in range(1, self.order + 1)], len(self.vocab))

    @property
    def order(self) -> int:
        return self.meta["order"]

    def tokens(self, check_ids: bool = True) -> np.ndarray:
        """The training corpus as ids (memory-mapped); ``check_ids=False`` leaves out the pass
        that checks every id is in the vocabulary, for a caller that reads few of them or
        checks them itself."""
        tokens = _load_array(self.directory / TOKENS)
        if len(tokens) != self.meta["n_tokens"]:
            raise NgteachError(f"{self.directory}: tokens.npy has {len(tokens)} tokens, meta.json says "
                               f"{self.meta['n_tokens']}")
        if check_ids:
            _check_ids(self.directory / TOKENS, tokens, len(self.vocab))  # the rank kernel indexes by token
        return tokens

    def _load_order(self, m: int) -> OrderTable:
        arrays = {name: _load_array(self.directory / COUNTS / f"{m}.{name}.npy") for name in TABLE_ARRAYS}
        table = OrderTable(**arrays)
        expected = self.meta["ngrams"][m - 1]
        n_contexts = 1 if m == 1 else self.meta["ngrams"][m - 2]
        if not (len(table.words) == len(table.counts) == len(table.cont_words) == len(table.cont_counts)
                == expected and len(table.offsets) == n_contexts + 1 and int(table.offsets[-1]) == expected):
            raise NgteachError(f"{self.directory}: the order-{m} count table is incomplete or does not match "
                               "meta.json")
        _check_table(self.directory / COUNTS, m, table, len(self.vocab))
        return table


def _check_table(counts_dir: Path, m: int, table: OrderTable, vocab_size: int) -> None:
    """Refuse a table whose offsets or word ids point outside their arrays: the C kernels
    follow them unchecked, so a corrupt table would crash them. Vectorised O(n) passes."""
    offsets = table.offsets
    if offsets[0] != 0 or np.any(offsets[1:] < offsets[:-1]):
        raise NgteachError(f"{counts_dir}/{m}.offsets.npy: corrupt (offsets must start at 0 and never decrease)")
    for name in ("words", "cont_words"):
        _check_ids(counts_dir / f"{m}.{name}.npy", getattr(table, name), vocab_size)


def _check_ids(path: Path, ids: np.ndarray, vocab_size: int) -> None:
    """Refuse word ids the vocabulary lacks: the kernels index per-word arrays with them."""
    top = int(ids.max(initial=0))
    if len(ids) and top >= vocab_size:
        raise NgteachError(f"{path}: corrupt (word id {top} is outside the vocabulary of {vocab_size} words)")


def _read_meta(directory: Path) -> dict:
    if not directory.is_dir():
        raise NgteachError(f"{directory}: no model directory here (build one with 'ngteach build CORPUS')")
    meta = read_json_object(directory / META, f"{directory}: not an ngteach model (no {META})")
    if meta.get("format") != MODEL_FORMAT:
        raise NgteachError(f"{directory}: not an ngteach model ({META} has no format '{MODEL_FORMAT}')")
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise NgteachError(f"{directory}: model format version {meta.get('format_version')} is not supported "
                           f"(this ngteach reads version {MODEL_FORMAT_VERSION})")
    wrong = wrong_field(meta, _META_FIELDS)
    if wrong:
        raise NgteachError(f"{directory}/{META}: {wrong}")
    if len(meta["ngrams"]) != meta["order"]:
        raise NgteachError(f"{directory}/{META}: 'ngrams' must hold one count per order (order {meta['order']})")
    return meta


# The fields every meta.json has, and what each must be.
_META_FIELDS = {
    "tool_version": (lambda v: isinstance(v, str), "a string"),
    "order": (lambda v: json_count(v) and 1 <= v <= MAX_ORDER, f"an integer from 1 to {MAX_ORDER}"),
    "n_tokens": (json_count, "a non-negative integer"),
    "vocab_size": (json_count, "a non-negative integer"),
    "ngrams": (lambda v: isinstance(v, list) and all(map(json_count, v)), "a list of non-negative integers"),
    "tokenizer": (lambda v: isinstance(v, dict) and isinstance(v.get("kind"), str), 'an object with a "kind"'),
    "vocab_sha256": (lambda v: isinstance(v, str), "a string"),
    "tokens_sha256": (lambda v: isinstance(v, str), "a string"),
    "corpus": (lambda v: isinstance(v, dict) and isinstance(v.get("path"), str) and isinstance(v.get("sha256"), str)
               and json_count(v.get("bytes")), 'an object with "path", "sha256" and "bytes"'),
}


def _load_array(path: Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise NgteachError(f"{path}: missing (the model directory is incomplete)") from None
    except (OSError, ValueError, EOFError) as e:
        raise NgteachError(f"{path}: unreadable or truncated ({e})") from None
    if array.dtype != np.uint32 or array.ndim != 1:
        raise NgteachError(f"{path}: expected a 1-d uint32 array, found {array.ndim}-d {array.dtype}")
    return array


# ---- building ---------------------------------------------------------------------------

def build_model(
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    order: int = 4,
    tokenize: Callable | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_order: Callable[[int], None] | None = None,
    source: str | None = None,
) -> Path:
    """Tokenize ``corpus``, count its n-grams of orders 1..``order`` and write a model
    directory at ``out`` (replacing a model already there). ``source`` is what the model
    records as its corpus's path (default: the resolved path of ``corpus``); the sha256
    and length it records are of the text, decompressed if the file is compressed.

    ``on_bytes(n)`` is called as the corpus is read and ``on_order(m)`` when order m is
    written, for progress bars. ``tokenize(path, on_bytes=...)`` returns the tokenizer
    and the encoded corpus; the default is :meth:`WordTokenizer.train` (words, with the
    vocabulary learned from the corpus).
    """
    if not 1 <= order <= MAX_ORDER:
        raise NgteachError(f"--order must be between 1 and {MAX_ORDER}, not {order}")
    corpus, out = check_corpus(corpus), Path(out)
    check_replaceable(out)
    with digest_meanwhile(corpus) as digest:
        tokenizer, tokens = (tokenize or WordTokenizer.train)(corpus, on_bytes=on_bytes)
        text_sha256, text_bytes = digest()
    with writing(out, "the model directory"):
        write_model(tokenizer, tokens, count_orders(tokens, len(tokenizer.vocab), order), order, out, on_order,
                    {"path": source or str(corpus.resolve()), "sha256": text_sha256, "bytes": text_bytes})
    return out


def write_model(tokenizer, tokens: np.ndarray, tables: Iterable[OrderTable], order: int, out: Path, on_order,
                corpus: dict) -> None:
    """Write a model directory of ``tokens`` and their count ``tables`` (orders 1..``order``,
    lowest first) aside, then put it in place of ``out``."""
    def fill(work: Path) -> tuple[int, str, list[int]]:
        np.save(work / TOKENS, tokens)
        sizes = []
        for m, table in enumerate(tables, start=1):
            for name in TABLE_ARRAYS:
                np.save(work / COUNTS / f"{m}.{name}.npy", getattr(table, name))
            sizes.append(len(table))
            del table
            if on_order:
                on_order(m)
        return len(tokens), tokens_sha256(tokens), sizes

    write_model_dir(tokenizer, order, out, corpus, fill)


def write_model_dir(tokenizer, order: int, out: Path, corpus: dict,
                    fill: Callable[[Path], tuple[int, str, list[int]]]) -> None:
    """Write a model directory aside (the vocabulary, then ``fill(folder)``, which writes
    tokens.npy and the count tables and returns (tokens, their sha256, n-grams per order),
    then meta.json), and put it in place of ``out``."""
    work = temp_dir(out.parent, f".{out.name}.")
    try:
        tokenizer.save(work)
        (work / COUNTS).mkdir()
        n_tokens, sha256, sizes = fill(work)
        meta = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "tool_version": TOOL_VERSION,
            "order": order,
            "n_tokens": int(n_tokens),
            "vocab_size": len(tokenizer.vocab),
            "ngrams": sizes,
            "tokenizer": tokenizer.config(),
            "vocab_sha256": tokenizer.vocab.sha256(),
            "tokens_sha256": sha256,
            "corpus": corpus,
        }
        (work / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        replace_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def check_replaceable(out: Path) -> None:
    """Refuse to overwrite anything but a previous model, and a place we cannot write."""
    if out.exists() and not (out / META).is_file():
        raise NgteachError(f"{out}: exists and is not an ngteach model; remove it or choose another --out")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise NgteachError(f"{parent}: no such directory for --out")
    if not os.access(parent, os.W_OK):
        raise NgteachError(f"{parent}: not writable")

