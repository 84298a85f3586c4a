"""The unbounded-order N-gram teacher: a suffix array answers "where else does this
context occur", for contexts of any length (FORMATS.md, *How the infini teacher ranks*).

For position i of a stream, the match length of another position j of the model's corpus
is the largest L <= min(i, j) with the L tokens before j equal to the L tokens before i.
Level L lists the words at every position j whose match length is at least L, most
frequent first, ties by word id, skipping words already listed; levels go from the
longest match found down to 0 (every position: the unigram counts), until k are listed.
An entry's order is min(L + 1, 255), so the levels are the partitions. When the ranked
stream is the model's own corpus, position i itself is never counted ("elsewhere"):
otherwise every position would match its whole prefix. With the true word first, entry
0 is it, of order 1 + the longest match length at which it occurs elsewhere (1 and
score 0 where it occurs nowhere else), and its score is its count there.

The index is the suffix array of the corpus *reversed* (so that a suffix reads a context
backwards from the position after it) and its longest-common-prefix array, built by
libdivsufsort (``pydivsufsort``) and kept in the model directory (``infini.sa.npy``,
``infini.lcp.npy``, ``infini.json``). Another text is ranked by indexing the corpus, a
separator that matches nothing, and that text together, whose own positions do not count.
"""
from __future__ import annotations

import contextlib
import threading
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from corpora import NgteachError
from corpora.files import read_json_object, temp_file, write_json, writing

from . import kernels
from .model import NgramModel
from .rank import check_min_order
from .rankfile import COUNT_SCORES

MAX_LEVEL_ORDER = 255  # orders are stored in one byte: longer matches share the top order
INDEX_FILES = {"sa": "infini.sa.npy", "lcp": "infini.lcp.npy"}
INDEX_META = "infini.json"
INDEX_FORMAT = "ngteach-infini-index"


def suffix_index(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(suffix array, LCP array) of ``tokens`` reversed: uint32 and int32, one entry per
    token; ``lcp[x]`` is the common prefix of the suffixes ``sa[x]`` and ``sa[x + 1]``."""
    from pydivsufsort import divsufsort, kasai

    if len(tokens) >= 1 << 31:
        raise NgteachError(f"the infini teacher indexes up to 2^31 tokens, not {len(tokens)}")
    reversed_tokens = np.ascontiguousarray(np.asarray(tokens, dtype=np.uint32)[::-1])
    if not len(reversed_tokens):
        return np.zeros(0, np.uint32), np.zeros(0, np.int32)
    sa = divsufsort(reversed_tokens)
    lcp = kasai(reversed_tokens, sa)
    return sa.astype(np.uint32), np.ascontiguousarray(lcp, dtype=np.int32)


def build_index(model: NgramModel) -> Path:
    """Index ``model``'s corpus and keep the index in its directory (each file written
    aside and renamed into place, the record last)."""
    tokens = model.tokens()
    sa, lcp = suffix_index(tokens)
    for name, array in (("sa", sa), ("lcp", lcp)):
        path = model.directory / INDEX_FILES[name]
        tmp = temp_file(model.directory, f".{path.name}.")
        try:
            with writing(path, "the infini index"):
                with open(tmp, "wb") as f:
                    np.save(f, array)
                tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
    write_json(model.directory / INDEX_META, {"format": INDEX_FORMAT, "n_tokens": int(len(tokens)),
                                              "tokens_sha256": model.meta["tokens_sha256"]})
    return model.directory


def load_index(model: NgramModel) -> tuple[np.ndarray, np.ndarray] | None:
    """The index kept in ``model``'s directory, or None if there is none for its corpus."""
    meta_path = model.directory / INDEX_META
    if not meta_path.is_file():
        return None
    meta = read_json_object(meta_path, f"{meta_path}: not an infini index record")
    if meta.get("format") != INDEX_FORMAT or meta.get("tokens_sha256") != model.meta["tokens_sha256"]:
        return None  # of an earlier corpus: made anew
    try:
        sa, lcp = (np.load(model.directory / INDEX_FILES[name], mmap_mode="r") for name in ("sa", "lcp"))
    except (OSError, ValueError, EOFError):
        return None
    n = model.meta["n_tokens"]
    if sa.dtype != np.uint32 or lcp.dtype != np.int32 or sa.shape != (n,) or lcp.shape != (n,):
        return None
    return sa, lcp


class InfiniTeacher:
    """A teacher (:mod:`ngram_teacher.teachers`) of a model directory's corpus with no
    fixed order: every context, however long, that occurs elsewhere is a level."""

    partition = "order"
    scores = COUNT_SCORES
    online = False  # it walks the whole index per call: fine for a ranks file, not for every batch
    order = MAX_LEVEL_ORDER

    def __init__(self, model: NgramModel):
        self.model = model
        self.corpus = np.ascontiguousarray(model.tokens(), dtype=np.uint32)

    def index(self) -> tuple[np.ndarray, np.ndarray]:
        """The corpus's index, from the model directory, made and kept there on first use
        (or only in memory where the directory cannot be written)."""
        found = load_index(self.model)
        if found is None:
            with contextlib.suppress(NgteachError):  # a read-only or full model directory: in memory only
                build_index(self.model)
                found = load_index(self.model)
        return found if found is not None else suffix_index(self.corpus)

    def describe(self, min_order: int = 1) -> dict:
        return {"kind": "infini-ngram", "order": "unbounded", "max_order": MAX_LEVEL_ORDER,
                "min_order": min_order, "ties": "word id", "partition": self.partition,
                "model_tokens_sha256": self.model.meta["tokens_sha256"],
                "model_corpus_sha256": self.model.meta["corpus"]["sha256"]}

    def rank_into(self, stream, ids, orders, scores, gt_first, pad_id, min_order=1, threads=None,
                  on_rows: Callable[[int], None] | None = None):
        check_min_order(min_order, self.order)
        stream = np.ascontiguousarray(stream, dtype=np.uint32)
        if len(stream) == len(self.corpus) and np.array_equal(stream, self.corpus):
            tokens, (sa, lcp), first = self.corpus, self.index(), 0
        else:  # corpus, a separator no position matches across, the stream
            separator = np.array([len(self.model.vocab)], np.uint32)
            tokens = np.concatenate([self.corpus, separator, stream])
            (sa, lcp), first = suffix_index(tokens), len(self.corpus) + 1
        own = first == 0
        progress = np.zeros(1, np.int64)
        work = partial(kernels.infini_rank, tokens, len(self.corpus), np.ascontiguousarray(sa),
                       np.ascontiguousarray(lcp), first, first + len(stream), own, len(self.model.vocab),
                       ids.shape[1], gt_first, min_order, pad_id, ids, orders, scores, progress)
        _run_with_progress(work, progress, len(tokens), len(stream), on_rows)

    def rank_runs(self, stream, runs, ids, orders, scores, gt_first, pad_id, min_order=1):
        """The rows of ``runs``, cut from the rows of the whole stream."""
        k = ids.shape[1]
        every = [np.empty((len(stream), k), ids.dtype), np.empty((len(stream), k), orders.dtype),
                 None if scores is None else np.empty((len(stream), k), scores.dtype)]
        self.rank_into(stream, *every, gt_first, pad_id, min_order)
        positions = np.concatenate([np.arange(start, stop) for start, stop in runs])
        for out, full in zip((ids, orders, scores), every):
            if out is not None:
                out[:] = full[positions]


def _run_with_progress(work: Callable[[], None], progress: np.ndarray, walked: int, rows: int,
                       on_rows: Callable[[int], None] | None) -> None:
    """Run the kernel on a thread (it releases the GIL) and report its rows as it walks
    (``progress[0]`` of ``walked`` suffixes)."""
    errors: list[BaseException] = []

    def run():
        try:
            work()
        except BaseException as e:  # noqa: BLE001 - re-raised below, on the caller's thread
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    reported = 0
    while thread.is_alive():
        thread.join(0.25)
        done = rows * int(progress[0]) // max(walked, 1)
        if on_rows and done > reported:
            on_rows(done - reported)
            reported = done
    if errors:
        raise errors[0]
    if on_rows and rows > reported:
        on_rows(rows - reported)
