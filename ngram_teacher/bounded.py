"""Building a model directory in bounded memory (``ngteach build --memory SIZE``).

The in-memory build (:func:`ngram_teacher.build_model`) holds the whole token stream and
each order's working arrays, about 20 bytes per token. This one streams through files in
a spill folder beside the output, a chunk of the stream at a time, so that its working
memory stays within a budget whatever the corpus's length (what grows with the corpus is
only its vocabulary, and the files). The stages:

1. **scan**: the corpus, block by block, into provisional ids (a spill file) and the
   counts of its word types;
2. **tokens**: the vocabulary made from those counts as ``build`` makes it, and the
   provisional ids mapped to it, chunk by chunk, into ``tokens.npy``;
3. **count**, order by order: for each chunk of positions, the m-gram ending at each
   position as one key (the id of the (m-1)-gram ending just before it, then the word),
   sorted and counted into a *run* (spill files); the runs merged a block at a time into
   the order's table, in the trie's (context id, word) order, while each run learns the
   ids its keys got; then each position's m-gram id is written out (the next order's
   contexts), and the table's files are written from the merged keys.

Nothing is held whole: files are read and written in chunks, never memory-mapped (mapped
pages would count against the budget). The model directory is the in-memory build's,
byte for byte (tests/test_bounded.py). Word-level vocabularies only.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from corpora import NgteachError, WordTokenizer, check_corpus
from corpora.files import temp_dir, writing
from corpora.text import WordScan, corpus_digest
from corpora.vocab import Vocabulary

from . import kernels
from .count import TABLE_ARRAYS
from .kernels import MAX_ORDER, NONE
from .model import COUNTS, TOKENS, check_replaceable, write_model_dir

BYTES_PER_POSITION = 96  # what one position of a chunk costs while its keys are sorted and counted
SMALLEST_BUDGET = 1 << 20
SMALLEST_CHUNK = 16  # positions (a real budget gives far more; the tests make it this small)
U32, U64 = np.dtype("<u4"), np.dtype("<u8")


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``64k`` or a number of bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    value = text.strip().lower().removesuffix("b")
    try:
        size = int(float(value[:-1]) * units[value[-1]]) if value and value[-1] in units else int(value)
    except (ValueError, IndexError):
        raise NgteachError(f"--memory must be a size such as 500M or 2G, not {text!r}") from None
    if size < SMALLEST_BUDGET:
        raise NgteachError(f"--memory must be at least 1M, not {text!r}")
    return size


def build_bounded(corpus: str | os.PathLike, out: str | os.PathLike, order: int, memory: int,
                  min_count: int = 1, max_size: int | None = None, on_bytes: Callable[[int], None] | None = None,
                  on_order: Callable[[int], None] | None = None, source: str | None = None) -> Path:
    """:func:`ngram_teacher.build_model` with a word tokenizer, within ``memory`` bytes of
    working memory (see the module's docstring)."""
    if not 1 <= order <= MAX_ORDER:
        raise NgteachError(f"--order must be between 1 and {MAX_ORDER}, not {order}")
    corpus, out = check_corpus(corpus), Path(out)
    check_replaceable(out)
    spill = temp_dir(out.resolve().parent, f".{out.name}.spill.")
    try:
        with writing(spill, "the spill folder"):
            tokenizer, n = _scan(corpus, spill, min_count, max_size, on_bytes)
        text_sha256, text_bytes = corpus_digest(corpus)
        chunk = max(memory // BYTES_PER_POSITION, SMALLEST_CHUNK)
        with writing(out, "the model directory"):
            write_model_dir(tokenizer, order, out, {"path": source or str(corpus.resolve()), "sha256": text_sha256,
                                                    "bytes": text_bytes},
                            lambda work: _fill(work, spill, tokenizer, n, order, chunk, memory, on_order))
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return out


def _scan(corpus: Path, spill: Path, min_count: int, max_size: int | None, on_bytes) -> tuple[WordTokenizer, int]:
    """Stage 1: the provisional ids to a spill file; the tokenizer from the type counts."""
    if min_count < 1:
        raise NgteachError(f"--min-count must be at least 1, not {min_count}")
    scan, n = WordScan(), 0
    with open(spill / "provisional.u32", "wb") as f:
        for ids in scan.blocks(corpus, on_bytes):
            f.write(ids.astype(U32).tobytes())
            n += len(ids)
    if n >= int(NONE):
        raise NgteachError(f"a corpus of {n:,} tokens is too large (the limit is 2**32 - 1)")
    vocab = Vocabulary.from_counts(scan.types, scan.counts, min_count, max_size)
    np.save(spill / "mapping.npy", vocab.map_types(scan.types))
    return WordTokenizer(vocab, min_count, max_size), n


def _fill(work: Path, spill: Path, tokenizer: WordTokenizer, n: int, order: int, chunk: int, memory: int,
          on_order) -> tuple[int, str, list[int]]:
    """Stages 2 and 3, into the model directory being written."""
    mapping = np.load(spill / "mapping.npy")
    digest = hashlib.sha256()
    with open(spill / "provisional.u32", "rb") as f, _NpyWriter(work / TOKENS, U32, n) as tokens:
        for start in range(0, n, chunk):
            ids = mapping[np.fromfile(f, U32, min(chunk, n - start))].astype(U32)
            tokens.write(ids)
            digest.update(ids.tobytes())
    (spill / "provisional.u32").unlink()
    stream = work / TOKENS
    vocab_size, sizes, ids_path = len(tokenizer.vocab), [], None
    for m in range(1, order + 1):
        counter = _OrderCounter(m, stream, n, ids_path, vocab_size, chunk, memory, spill)
        size, ids_path = counter.count(work / COUNTS, sizes[-1] if sizes else 1)
        sizes.append(size)
        if on_order:
            on_order(m)
    return n, digest.hexdigest(), sizes


class _NpyWriter:
    """A 1-d .npy file written in pieces, with the header :func:`numpy.save` writes."""

    def __init__(self, path: Path, dtype: np.dtype, length: int):
        self.path, self.dtype, self.length, self.written = path, dtype, length, 0
        self.file: BinaryIO | None = None

    def __enter__(self) -> "_NpyWriter":
        self.file = open(self.path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (self.length,)}
        np.lib.format.write_array_header_1_0(self.file, header)
        return self

    def write(self, values: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(values, self.dtype).tobytes())
        self.written += len(values)

    def __exit__(self, *failed) -> None:
        self.file.close()
        if not failed[0] and self.written != self.length:
            raise AssertionError(f"{self.path}: {self.written} values written, {self.length} announced")


def _read(path: Path, dtype: np.dtype, start: int, count: int, header: int = 0) -> np.ndarray:
    with open(path, "rb") as f:
        f.seek(header + start * dtype.itemsize)
        return np.fromfile(f, dtype, count)


def _npy_header(path: Path) -> int:
    """Where the data of a .npy file starts."""
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        return f.tell()


class _OrderCounter:
    """Stage 3 for order m: runs, their merge, the positions' ids and the table's files."""

    def __init__(self, m: int, stream: Path, n: int, lower_ids: Path | None, vocab_size: int, chunk: int,
                 memory: int, spill: Path):
        self.m, self.stream, self.n, self.lower_ids = m, stream, n, lower_ids
        self.vocab_size, self.chunk, self.memory, self.spill = vocab_size, chunk, memory, spill
        self.tokens_at = _npy_header(stream)
        self.folder = spill / f"order-{m}"
        self.folder.mkdir()

    def count(self, counts_dir: Path, n_contexts: int) -> tuple[int, Path]:
        """Write the order's table files into ``counts_dir``; (its size, the ids file)."""
        runs = self._runs()
        size = self._merge(runs)
        ids_path = self.spill / f"ids-{self.m}.u32"
        with open(ids_path, "wb") as out:
            for run in runs:
                ids = np.full(run.stop - run.start, NONE, U32)
                ids[_read(run.folder / "valid.u32", U32, 0, run.n_valid)] = _read(
                    run.folder / "global.u32", U32, 0, run.n_keys)[_read(run.folder / "inverse.u32", U32, 0,
                                                                           run.n_valid)]
                out.write(ids.tobytes())
        if self.lower_ids is not None:
            self.lower_ids.unlink()
        self._write_table(counts_dir, size, n_contexts)
        shutil.rmtree(self.folder)
        return size, ids_path

    def _runs(self) -> list["_Run"]:
        """Each chunk's keys, sorted and counted, and how its positions map to them."""
        runs = []
        for start in range(0, self.n, self.chunk):
            stop = min(start + self.chunk, self.n)
            words = _read(self.stream, U32, start, stop - start, self.tokens_at).astype(np.uint64)
            if self.m == 1:
                context = np.zeros(stop - start, np.uint64)
                valid = np.arange(stop - start)
            else:  # the (m-1)-gram ending one position earlier; none before the stream's start
                before = _read(self.lower_ids, U32, start - 1, stop - start + 1) if start else np.concatenate(
                    ([NONE], _read(self.lower_ids, U32, 0, stop - start)))
                valid = np.flatnonzero(before[:-1] != NONE)
                context, words = before[valid].astype(np.uint64), words[valid]
            keys, inverse, counts = np.unique(context * np.uint64(self.vocab_size) + words, return_inverse=True,
                                              return_counts=True)
            runs.append(_Run(self.folder / f"run-{len(runs)}", start, stop, keys, counts, inverse, valid))
        return runs

    def _merge(self, runs: list["_Run"]) -> int:
        """The runs merged into one sorted file of distinct keys with summed counts; each
        run's keys get their ids (their places in it). The number of distinct keys."""
        block = max(self.memory // (BYTES_PER_POSITION * max(len(runs), 1)), SMALLEST_CHUNK)
        size = 0
        with open(self.folder / "keys.u64", "wb") as keys_out, open(self.folder / "counts.u32", "wb") as counts_out:
            readers = [_RunReader(run, block) for run in runs]
            while readers := [r for r in readers if r.fill()]:
                frontier = min(r.keys[-1] for r in readers)  # every key up to it is loaded from every run
                taken = [r.take(frontier) for r in readers]
                keys = np.concatenate([k for k, _ in taken])
                merged, where = np.unique(keys, return_inverse=True)
                summed = np.bincount(where, weights=np.concatenate([c for _, c in taken]).astype(np.float64))
                keys_out.write(merged.astype(U64).tobytes())
                counts_out.write(summed.astype(U32).tobytes())
                at = 0
                for reader, (k, _) in zip(readers, taken):
                    reader.run.global_ids.write((size + where[at:at + len(k)]).astype(U32).tobytes())
                    at += len(k)
                size += len(merged)
            for run in runs:
                run.global_ids.close()
        return size

    def _write_table(self, counts_dir: Path, size: int, n_contexts: int) -> None:
        """words, counts, offsets, cont_words and cont_counts of the merged keys, a block
        of whole context groups at a time (the last group of a block waits for the next)."""
        with contextlib.ExitStack() as stack:
            writers = {name: stack.enter_context(_NpyWriter(counts_dir / f"{self.m}.{name}.npy", U32,
                                                            n_contexts + 1 if name == "offsets" else size))
                       for name in TABLE_ARRAYS}
            next_context, done = 0, 0
            for start in range(0, size, self.chunk):
                stop = min(start + self.chunk, size)
                keys = _read(self.folder / "keys.u64", U64, done, stop - done)
                counts = _read(self.folder / "counts.u32", U32, done, stop - done)
                contexts, words = keys // np.uint64(self.vocab_size), (keys % np.uint64(self.vocab_size))
                whole = len(keys) if stop == size else int(np.searchsorted(contexts, contexts[-1]))
                if whole == 0:
                    continue  # one group longer than the block: read on with the next one
                contexts, words, counts = contexts[:whole], words[:whole].astype(U32), counts[:whole]
                last = int(contexts[-1])
                firsts = done + np.searchsorted(contexts, np.arange(next_context, last + 1, dtype=np.uint64))
                writers["offsets"].write(firsts)
                local = np.searchsorted(contexts, np.arange(next_context, last + 2, dtype=np.uint64)).astype(U32)
                cont_words, cont_counts = kernels.sort_continuations(words, counts, local)
                for name, values in (("words", words), ("counts", counts), ("cont_words", cont_words),
                                     ("cont_counts", cont_counts)):
                    writers[name].write(values)
                next_context, done = last + 1, done + whole
            writers["offsets"].write(np.full(n_contexts + 1 - next_context, size))


class _Run:
    """One chunk's sorted distinct keys and counts (files), its positions' places in them."""

    def __init__(self, folder: Path, start: int, stop: int, keys: np.ndarray, counts: np.ndarray,
                 inverse: np.ndarray, valid: np.ndarray):
        folder.mkdir()
        self.folder, self.start, self.stop = folder, start, stop
        self.n_keys, self.n_valid = len(keys), len(valid)
        for name, values, dtype in (("keys.u64", keys, U64), ("counts.u32", counts, U32),
                                    ("inverse.u32", inverse.ravel(), U32), ("valid.u32", valid, U32)):
            (folder / name).write_bytes(values.astype(dtype).tobytes())
        self.global_ids = open(folder / "global.u32", "wb")  # filled by the merge, in key order


class _RunReader:
    """A run's keys a block at a time, for the merge."""

    def __init__(self, run: _Run, block: int):
        self.run, self.block, self.read = run, block, 0
        self.keys = np.zeros(0, np.uint64)
        self.counts = np.zeros(0, np.uint32)

    def fill(self) -> bool:
        """Load the next block if the last is used up; whether any key is left."""
        if not len(self.keys) and self.read < self.run.n_keys:
            count = min(self.block, self.run.n_keys - self.read)
            self.keys = _read(self.run.folder / "keys.u64", U64, self.read, count)
            self.counts = _read(self.run.folder / "counts.u32", U32, self.read, count)
            self.read += count
        return len(self.keys) > 0

    def take(self, frontier: np.uint64) -> tuple[np.ndarray, np.ndarray]:
        """The loaded keys up to ``frontier`` (and their counts), no longer loaded after."""
        cut = int(np.searchsorted(self.keys, frontier, side="right"))
        taken = self.keys[:cut], self.counts[:cut]
        self.keys, self.counts = self.keys[cut:], self.counts[cut:]
        return taken
