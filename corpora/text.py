"""Strict reading of UTF-8 corpora and word-level tokenization.

A corpus is read in blocks of whole lines so that memory stays flat however big
it is; a file ending in ``.gz``, ``.bz2`` or ``.xz`` is read decompressed. Lines are what Python's text mode calls lines (``\\r\\n`` and ``\\r`` end a
line too); every line, blank ones included, ends with one ``<eos>`` token, and
words are what ``str.split()`` returns.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from .errors import NgteachError

EOS = "<eos>"
UNK = "<unk>"
# A block's words live as Python strings (about 60 bytes each) while it is encoded, so
# blocks are kept small: 4 MiB of text is about 40 MB of strings.
BLOCK_BYTES = 1 << 22
# Stands for a line end inside a block. NUL never occurs in accepted text (binary is
# refused), so it cannot collide with a word.
_LINE_END = "\x00"

ByteCallback = Callable[[int], None]
# Compressed corpora, by their file name's suffix.
DECOMPRESS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def check_corpus(path: str | os.PathLike) -> Path:
    """Return ``path`` if it is a readable file with some text in it (decompressed), else
    raise NgteachError."""
    path = Path(path)
    if not path.exists():
        raise NgteachError(f"{path}: no such file")
    if path.is_dir():
        raise NgteachError(f"{path}: is a directory, not a text file")
    if not path.is_file():  # reading it to check would take what it holds
        raise NgteachError(f"{path}: a pipe or device, not a file (ngteach build and rank --corpus read pipes)")
    with open_corpus(path) as f:
        empty = not f.read(1)
    if empty:
        raise NgteachError(f"{path}: the file is empty")
    return path


@contextmanager
def open_corpus(path: Path) -> Iterator[BinaryIO]:
    """The bytes of a corpus file, decompressed if its name says it is compressed; a
    damaged or truncated compressed file is one line of NgteachError."""
    opener = DECOMPRESS.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as f:
            yield f
    except (EOFError, gzip.BadGzipFile, lzma.LZMAError) as e:
        raise NgteachError(f"{path}: a damaged or truncated {path.suffix} file ({e})") from None
    except OSError as e:
        if opener is bz2.open and not e.errno:  # bz2 reports bad data as a plain OSError
            raise NgteachError(f"{path}: a damaged or truncated {path.suffix} file ({e})") from None
        raise NgteachError(f"{path}: cannot read ({e.strerror or e})") from None


def corpus_digest(path: str | os.PathLike) -> tuple[str, int]:
    """(sha256, length) of a corpus's bytes, decompressed: the text, however it is stored."""
    digest, size = hashlib.sha256(), 0
    with open_corpus(Path(path)) as f:
        while chunk := f.read(BLOCK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def read_blocks(path: str | os.PathLike, on_bytes: ByteCallback | None = None,
                within_lines: bool = False) -> Iterator[str]:
    """Yield the text of ``path`` in blocks that end at a line end (the last one may not).
    With ``within_lines`` a line longer than a block is cut too, after a space or tab, so
    that memory does not grow with the length of a line (a word is never cut).

    Refuses binary data (a NUL byte) and invalid UTF-8, naming the byte offset.
    """
    path = check_corpus(path)
    offset = 0
    carry = b""
    with open_corpus(path) as f:
        while raw := f.read(BLOCK_BYTES):
            data = carry + raw
            cut = data.rfind(b"\n") + 1
            if not cut and within_lines:  # no line end in a whole block: a word boundary will do
                cut = max(data.rfind(b" "), data.rfind(b"\t")) + 1
            block, carry = data[:cut], data[cut:]
            if block:
                yield _decode(path, block, offset)
                offset += len(block)
            if on_bytes:
                on_bytes(len(raw))
    if carry:
        yield _decode(path, carry, offset)


def _decode(path: Path, block: bytes, offset: int) -> str:
    nul = block.find(b"\x00")
    if nul >= 0:
        raise NgteachError(f"{path}: binary data, not text (NUL byte at offset {offset + nul})")
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NgteachError(
            f"{path}: not UTF-8 text (byte 0x{block[e.start]:02x} at offset {offset + e.start})"
        ) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


class _TypeIds(dict):
    """word -> provisional id, handing out the next id to each new word."""

    def __init__(self) -> None:
        super().__init__()
        self.types: list[str] = []
        self[_LINE_END] = self[EOS]

    def __missing__(self, word: str) -> int:
        self.types.append(word)
        self[word] = len(self.types) - 1
        return self[word]


@dataclass
class ScannedText:
    """A corpus as provisional ids: ``types[j]`` is the j-th distinct word in order of
    first use (``<eos>`` is 0)."""

    types: list[str]
    stream: np.ndarray  # uint32, provisional ids
    counts: np.ndarray  # int64, occurrences of each type


class WordScan:
    """A corpus read block by block into provisional ids: ``types[j]`` is the j-th distinct
    word in order of first use (``<eos>`` is 0), ``counts[j]`` its occurrences so far."""

    def __init__(self) -> None:
        self._ids = _TypeIds()
        self.counts = np.zeros(0, np.int64)

    @property
    def types(self) -> list[str]:
        return self._ids.types

    def blocks(self, path: str | os.PathLike, on_bytes: ByteCallback | None = None) -> Iterator[np.ndarray]:
        """Each block's provisional ids, uint32 (no Python work per token beyond one
        dictionary lookup); memory does not grow with the corpus, only with its types."""
        lookup = self._ids.__getitem__
        for block, last in _with_last(read_blocks(path, on_bytes, within_lines=True)):
            if last and not block.endswith("\n"):  # the text's last line ends here
                block += "\n"
            words = block.replace("\n", f" {_LINE_END} ").split()
            ids = np.fromiter(map(lookup, words), np.uint32, len(words))
            del words  # before the next block's words exist
            # counted block by block: bincount of the whole stream would copy it to int64
            block_counts = np.bincount(ids, minlength=len(self.types))
            block_counts[: len(self.counts)] += self.counts
            self.counts = block_counts
            yield ids


def scan_words(path: str | os.PathLike, on_bytes: ByteCallback | None = None) -> ScannedText:
    """Tokenize a corpus in one pass into provisional ids."""
    scan = WordScan()
    parts = list(scan.blocks(path, on_bytes))
    return ScannedText(scan.types, np.concatenate(parts), scan.counts)


def _with_last(items: Iterator[str]) -> Iterator[tuple[str, bool]]:
    """Each item with whether it is the last."""
    previous = next(items, None)
    for item in items:
        yield previous, False
        previous = item
    if previous is not None:
        yield previous, True
