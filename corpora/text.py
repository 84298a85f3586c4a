"""Strict reading of UTF-8 corpora and word-level tokenization.

A corpus is read in blocks of whole lines so that memory stays flat however big
it is; a file ending in ``.gz``, ``.bz2`` or ``.xz`` is read decompressed. Lines are
what Python's text mode calls lines (``\\r\\n`` and ``\\r`` end a line too); every
line, blank ones included, ends with one ``<eos>`` token, and words are what
``str.split()`` returns. The words are found and numbered in C (``_words.c``).
"""
from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import lzma
import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
import ctypes
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
from numpy.ctypeslib import ndpointer

from . import _words
from .errors import NgteachError

_words_lib = ctypes.CDLL(_words.__file__)
_words_lib.words_new.restype = ctypes.c_void_p
_words_lib.words_free.argtypes = [ctypes.c_void_p]
_words_lib.words_free.restype = None
_words_lib.words_scan.argtypes = [ctypes.c_void_p, ndpointer(np.uint8, flags="C_CONTIGUOUS"), ctypes.c_int64,
                                  ndpointer(np.uint32, flags="C_CONTIGUOUS")]
_words_lib.words_scan.restype = ctypes.c_int64
_words_lib.words_types.argtypes = [ctypes.c_void_p]
_words_lib.words_types.restype = ctypes.c_int64
_words_lib.words_arena_bytes.argtypes = [ctypes.c_void_p]
_words_lib.words_arena_bytes.restype = ctypes.c_int64
_words_lib.words_export.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
_words_lib.words_export.restype = None
_words_lib.words_merge.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ndpointer(np.uint32, flags="C_CONTIGUOUS")]
_words_lib.words_merge.restype = ctypes.c_int64

EOS = "<eos>"
UNK = "<unk>"
# Text is read a block at a time (read_blocks decodes each to a str; the word scanner
# reads the bytes), so that memory does not grow with a line or the file.
BLOCK_BYTES = 1 << 22
# A file read as is and at least this big is scanned as two halves, in two threads.
SPLIT_BYTES = 1 << 24
MOVE_SLICE = 1 << 20  # ids renumbered at a time when the halves are joined

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


def corpus_digest(path: str | os.PathLike, stop: threading.Event | None = None) -> tuple[str, int]:
    """(sha256, length) of a corpus's bytes, decompressed: the text, however it is stored.
    Given ``stop``, gives up (returning ("", 0)) as soon as it is set."""
    digest, size = hashlib.sha256(), 0
    with open_corpus(Path(path)) as f:
        while chunk := f.read(BLOCK_BYTES):
            if stop is not None and stop.is_set():
                return "", 0
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@contextmanager
def digest_meanwhile(path: str | os.PathLike) -> Iterator[Callable[[], tuple[str, int]]]:
    """Hash a corpus (:func:`corpus_digest`) in a thread while the body runs (hashlib lets
    go of the GIL, so it takes no time from the body on a second core); yields the function
    that waits for the result, to be called inside the body: leaving it stops the hashing
    (an exception need not wait for it)."""
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        digest = pool.submit(corpus_digest, path, stop)
        try:
            yield digest.result
        finally:
            stop.set()


def read_blocks(path: str | os.PathLike, on_bytes: ByteCallback | None = None,
                within_lines: bool = False) -> Iterator[str]:
    """Yield the text of ``path`` in blocks that end at a line end (the last one may not).
    With ``within_lines`` a line longer than a block is cut too, after a space or tab, so
    that memory does not grow with the length of a line (a word is never cut).

    Refuses binary data (a NUL byte) and invalid UTF-8, naming the byte offset.
    """
    for block, offset in _byte_blocks(path, on_bytes, within_lines):
        text = _checked_text(path, block, offset)
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        yield text


def _byte_blocks(path: str | os.PathLike, on_bytes: ByteCallback | None, within_lines: bool,
                 start: int = 0, stop: int | None = None) -> Iterator[tuple[memoryview, int]]:
    """:func:`read_blocks`'s blocks as bytes, not yet checked, with their offsets in the text;
    of the bytes ``start`` to ``stop`` only (a file read as is), given those.

    The file is read into one buffer, used again and again: a block is a view of it, valid
    until the next block is asked for (copying 100 MB of text three times over cost more
    than scanning it). What follows a block's last line end is moved to the buffer's front,
    and a line longer than the buffer gets a bigger one."""
    path = check_corpus(path)
    offset, held = start, 0  # held: the bytes at the buffer's front that no block has had yet
    left = math.inf if stop is None else stop - start
    buffer = bytearray(2 * BLOCK_BYTES)
    with open_corpus(path) as f:
        f.seek(start)
        while True:
            if len(buffer) < held + BLOCK_BYTES:  # a new buffer, not a resize: views of this one may live on
                bigger = bytearray(2 * (held + BLOCK_BYTES))
                bigger[:held] = buffer[:held]
                buffer = bigger
            got = f.readinto(memoryview(buffer)[held:held + min(BLOCK_BYTES, left)])
            left -= got
            if not got:
                break
            end = held + got
            cut = buffer.rfind(b"\n", 0, end) + 1
            if not cut and within_lines:  # no line end in a whole block: a word boundary will do
                cut = max(buffer.rfind(b" ", 0, end), buffer.rfind(b"\t", 0, end)) + 1
            if cut:
                yield memoryview(buffer)[:cut], offset
                offset += cut
            buffer[:end - cut] = buffer[cut:end]
            held = end - cut
            if on_bytes:
                on_bytes(got)
    if held:
        yield memoryview(buffer)[:held], offset


def _checked_text(path: Path, block: memoryview, offset: int) -> str:
    """The block decoded; NgteachError naming the offset if it is binary (the first NUL
    byte) or not UTF-8."""
    try:
        text = codecs.utf_8_decode(block, "strict", True)[0]
    except UnicodeDecodeError as e:
        text, bad = None, e.start
    nul = bytes(block).find(b"\x00") if text is None else text.find("\x00")
    if nul >= 0:
        at = nul if text is None else len(text[:nul].encode("utf-8"))
        raise NgteachError(f"{path}: binary data, not text (NUL byte at offset {offset + at})")
    if text is None:
        raise NgteachError(f"{path}: not UTF-8 text (byte 0x{block[bad]:02x} at offset {offset + bad})")
    return text


@dataclass
class ScannedText:
    """A corpus as provisional ids: ``types[j]`` is the j-th distinct word in order of
    first use (``<eos>`` is 0)."""

    types: list[str]
    stream: np.ndarray  # uint32, provisional ids
    counts: np.ndarray  # int64, occurrences of each type


class WordScan:
    """A corpus read block by block into provisional ids: ``types[j]`` is the j-th distinct
    word in order of first use (``<eos>`` is 0, and stands for every line end too),
    ``counts[j]`` its occurrences so far. The words are found and looked up in C
    (``_words.c``); Python only checks each block is UTF-8 text."""

    def __init__(self) -> None:
        self._scan = _words_lib.words_new()
        if not self._scan:
            raise MemoryError("no memory for the word table")
        weakref.finalize(self, _words_lib.words_free, self._scan)

    @property
    def types(self) -> list[str]:
        arena = ctypes.create_string_buffer(_words_lib.words_arena_bytes(self._scan))
        _words_lib.words_export(self._scan, arena, None)
        return arena.raw.decode("utf-8").split("\x00")[:-1]

    @property
    def counts(self) -> np.ndarray:
        counts = np.empty(_words_lib.words_types(self._scan), np.int64)
        _words_lib.words_export(self._scan, None, counts.ctypes.data)
        return counts

    def blocks(self, path: str | os.PathLike, on_bytes: ByteCallback | None = None) -> Iterator[np.ndarray]:
        """Each block's provisional ids, uint32; memory does not grow with the corpus, only
        with its types."""
        for block in self._checked_blocks(path, on_bytes):
            ids = np.empty(len(block), np.uint32)
            yield ids[:self.scan_block(block, ids)].copy()  # the buffer has room for one id per byte

    def scan_into(self, path: str | os.PathLike, out: np.ndarray, on_bytes: ByteCallback | None = None,
                  start: int = 0, stop: int | None = None, cancel: threading.Event | None = None) -> int:
        """Write the ids of the corpus (of its bytes ``start`` to ``stop``, if given, a file
        read as is) to ``out`` (room for one id per byte, and one more) and return how many
        there are; stop early, returning -1, once ``cancel`` is set."""
        used = 0
        for block in self._checked_blocks(path, on_bytes, start, stop):
            if cancel is not None and cancel.is_set():
                return -1
            if len(out) - used < len(block):
                raise NgteachError(f"{path}: the file changed while it was read")
            used += self.scan_block(block, out[used:])
        return used

    def merge(self, other: "WordScan") -> np.ndarray:
        """Take in the words of ``other`` (those new here after the others, in its order of
        first use) and their counts; return the id here of each of its ids."""
        mapping = np.empty(_words_lib.words_types(other._scan), np.uint32)
        if _words_lib.words_merge(self._scan, other._scan, mapping) < 0:
            raise MemoryError("no memory for the word table")
        return mapping

    def scan_block(self, block: bytes | memoryview, out: np.ndarray) -> int:
        """Write the ids of a block of text to ``out``, which has room for one per byte;
        return how many."""
        assert len(out) >= len(block) and out.dtype == np.uint32 and out.flags.c_contiguous
        n = _words_lib.words_scan(self._scan, np.frombuffer(block, np.uint8), len(block), out)
        if n < 0:
            raise MemoryError("no memory for the word table")
        return n

    @staticmethod
    def _checked_blocks(path: str | os.PathLike, on_bytes: ByteCallback | None, start: int = 0,
                        stop: int | None = None) -> Iterator[memoryview | bytes]:
        """The corpus's blocks (a line may be cut, a word never), checked as text (see
        :func:`_byte_blocks`: a block lives until the next), then a line end if the text's
        last line has none."""
        ends_line = True
        for block, offset in _byte_blocks(path, on_bytes, True, start, stop):
            _checked_text(path, block, offset)
            ends_line = block[-1] in b"\n\r"
            yield block
        if not ends_line:
            yield b"\n"


def scan_words(path: str | os.PathLike, on_bytes: ByteCallback | None = None) -> ScannedText:
    """Tokenize a corpus in one pass into provisional ids.

    A file read as is holds at most one id per byte, and one more if its last line lacks
    a line end, so the ids are written straight into an array of that size, whose untouched
    end never takes memory; the blocks of a compressed file are joined at the end instead.
    A file read as is of :data:`SPLIT_BYTES` or more is scanned as two halves on two
    threads (:func:`_scan_halves`), with the same result."""
    path = check_corpus(path)
    scan = WordScan()
    if path.suffix.lower() in DECOMPRESS:
        stream = np.concatenate(list(scan.blocks(path, on_bytes)))
    else:
        size = os.path.getsize(path)
        room = np.empty(size + 1, np.uint32)
        middle = _line_start_near(path, size // 2) if size >= SPLIT_BYTES else None
        if middle is None:
            stream = room[:scan.scan_into(path, room, on_bytes)]
        else:
            stream = room[:_scan_halves(path, scan, room, middle, on_bytes)]
    return ScannedText(scan.types, stream, scan.counts)


def _scan_halves(path: Path, scan: WordScan, room: np.ndarray, middle: int, on_bytes: ByteCallback | None) -> int:
    """Scan the bytes before ``middle`` (a line start) into ``room`` with ``scan``, and those
    after with a second scan in a thread (the C scanner lets go of the GIL) into an array
    of its own; then merge the second's words into ``scan`` and copy its ids, renumbered,
    after the first's. The ids are those of one scan from the start: a word new in the
    second half gets its id after every word of the first, in order of first use. (Had the
    second half gone to its place in ``room`` at ``middle``, those pages would stay taken
    when the ids move left.)"""
    lock, cancel, second = threading.Lock(), threading.Event(), WordScan()

    def report(n: int) -> None:  # the progress bar hears from both threads
        with lock:
            on_bytes(n)

    report = report if on_bytes else None
    with ThreadPoolExecutor(1) as pool:
        rest = np.empty(len(room) - middle, np.uint32)
        later = pool.submit(second.scan_into, path, rest, report, middle, None, cancel)
        try:
            used = scan.scan_into(path, room[:middle], report, 0, middle)
            rest = rest[:later.result()]
        except BaseException:  # an error, or Ctrl-C while either half is scanned
            cancel.set()
            raise
    mapping = scan.merge(second)
    for at in range(0, len(rest), MOVE_SLICE):
        part = rest[at:at + MOVE_SLICE]
        room[used + at:used + at + len(part)] = mapping[part]
    return used + len(rest)


def _line_start_near(path: Path, offset: int) -> int | None:
    """The first line start (after a ``\\n``) at or after byte ``offset`` of a file, or None
    if there is none before its end."""
    with open(path, "rb") as f:
        f.seek(offset)
        while piece := f.read(1 << 16):
            at = piece.find(b"\n")
            if at >= 0:
                return offset + at + 1
            offset += len(piece)
    return None
