"""The ARPA text format of backoff N-gram models (what KenLM's ``lmplz`` writes and
``kenlm.Model`` reads), in both directions.

    \\data\\
    ngram 1=N1
    ...
    \\1-grams:
    log10(p)<TAB>w<TAB>log10(backoff)      (no backoff column on the highest order)
    ...
    \\end\\

In memory a model is an :class:`ArpaTables`: the words, and for each order m an
``[n, m]`` array of word indices with the log10 probability and backoff of each n-gram.

Both directions are vectorised with numpy, because models of a few million n-grams are
the normal case: the reader splits whole blocks of lines at once and finds each line's
fields from byte offsets, and the writer assembles whole blocks of lines with one
gather of bytes (words and numbers are formatted once, not once per line).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from corpora import NgteachError
from corpora.files import temp_file, writing

from . import kernels

BLOCK_LINES = 1 << 18
# What bytes.split() splits on, so that the numpy view of a line agrees with it.
_WHITESPACE = np.zeros(256, bool)
_WHITESPACE[list(b" \t\n\r\x0b\x0c")] = True
_COUNT_LINE = re.compile(rb"ngram\s+(\d+)\s*=\s*(\d+)")
# Values are kept as float32, and rankers take their natural logs (x 2.3) in float32 too:
# a value below -LOG10_LIMIT reads as -inf (a probability or backoff of 0), one above
# +LOG10_LIMIT is an error.
LOG10_LIMIT = 1e38


# How ARPA files spell sentence start and end (the token stream's <eos> is ARPA's </s>).
ARPA_BOS, ARPA_EOS = "<s>", "</s>"


@dataclass
class ArpaOrder:
    """The n-grams of one order m: ``ngrams[i]`` holds m indices into ``ArpaTables.words``."""

    ngrams: np.ndarray  # [n, m] int32
    log10_prob: np.ndarray  # [n] float32
    log10_backoff: np.ndarray | None  # [n] float32; None on the highest order


@dataclass
class ArpaTables:
    words: list[str]  # index -> word, with <s>, </s> and <unk>
    orders: list[ArpaOrder]  # orders[m-1] is order m

    @property
    def order(self) -> int:
        return len(self.orders)


# ---- reading ------------------------------------------------------------------------------

def read_arpa(path: str | os.PathLike, on_bytes: Callable[[int], None] | None = None) -> ArpaTables:
    """Parse an ARPA file strictly; any deviation raises NgteachError naming the file, the
    line and the problem. ``on_bytes(n)`` reports progress as n-gram lines are parsed.

    Fields are separated by any run of ASCII whitespace (tabs or spaces); the backoff
    column is optional on every order but the highest (absent = 0). Words are the
    1-grams, in file order; a word of a longer n-gram must be one of them. Numbers are
    what Python's ``float()`` reads; one below -1e38 reads as -inf; a NaN, a positive log
    probability, a +inf or a value above 1e38 is an error, as is an empty file, bytes
    that are not UTF-8, a header count that differs from its section, a missing section
    or ``\\end\\``, and a line of the wrong order.
    """
    path = Path(path)
    lines = _Lines(path, _read_bytes(path))
    lines.check_utf8()
    counts, at = _read_header(lines)
    index: dict[bytes, int] = {}
    orders = []
    for m, count in enumerate(counts, start=1):
        at = _section_start(lines, at, m, count)
        _check_section_length(lines, at, m, count)
        orders.append(_read_section(lines, at, count, m, m == len(counts), index, on_bytes))
        at += count
    _expect_end(lines, at, len(counts))
    return ArpaTables([word.decode("utf-8") for word in index], orders)


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NgteachError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NgteachError(f"{path}: is a directory, not an ARPA file") from None
    if not data:
        raise NgteachError(f"{path}: line 1: the file is empty (an ARPA file starts with \\data\\)")
    return data


class _Lines:
    """The lines of a file as byte offsets (``starts[i]``, ``ends[i]`` excludes the newline)."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data = path, data
        self.bytes = np.frombuffer(data, np.uint8)
        ends = np.flatnonzero(self.bytes == ord("\n"))
        if self.bytes[-1] != ord("\n"):
            ends = np.append(ends, len(self.bytes))  # a last line without a line end
        self.ends = ends
        self.starts = np.concatenate(([0], ends[:-1] + 1))

    def __len__(self) -> int:
        return len(self.ends)

    def text(self, i: int) -> bytes:
        return self.data[self.starts[i]:self.ends[i]].strip()

    def shown(self, i: int) -> str:
        text = self.text(i).decode("utf-8", "replace")
        return repr(text if len(text) <= 60 else text[:57] + "...")

    def fail(self, i: int, what: str) -> NgteachError:
        return NgteachError(f"{self.path}: line {i + 1}: {what}")

    def is_blank(self, i: int) -> bool:
        return not self.text(i)

    def skip_blank(self, i: int) -> int:
        while i < len(self) and self.is_blank(i):
            i += 1
        return i

    def check_utf8(self) -> None:
        """Decode in blocks cut after a newline (never inside a character)."""
        start, block = 0, 1 << 26
        while start < len(self.data):
            stop = (self.data.rfind(b"\n", start, start + block) + 1 or self.data.find(b"\n", start + block) + 1
                    or len(self.data))
            try:
                self.data[start:stop].decode("utf-8")
            except UnicodeDecodeError as e:
                line = int(np.searchsorted(self.ends, start + e.start))
                raise self.fail(line, f"not UTF-8 (byte {start + e.start}: {e.reason})") from None
            start = stop

    def structural(self, first: int, stop: int) -> np.ndarray:
        """Indices of the lines in [first, stop) that are blank or start with a backslash:
        the lines that end a section."""
        starts, ends = self.starts[first:stop], self.ends[first:stop]
        head = self.bytes[np.minimum(starts, len(self.bytes) - 1)]
        maybe = (starts == ends) | (head == ord("\\")) | _WHITESPACE[head]
        found = [first + i for i in np.flatnonzero(maybe).tolist()
                 if self.bytes[starts[i]] == ord("\\") or self.is_blank(first + i)]
        return np.array(found, dtype=np.int64)


def _read_header(lines: _Lines) -> tuple[list[int], int]:
    """The n-gram counts of the \\data\\ section, and the line after them."""
    at = lines.skip_blank(0)
    if at == len(lines):
        raise lines.fail(at - 1, "the file holds only blank lines (an ARPA file starts with \\data\\)")
    if lines.text(at) != b"\\data\\":
        raise lines.fail(at, f"expected \\data\\, found {lines.shown(at)}")
    counts: list[int] = []
    at += 1
    while at < len(lines) and not lines.is_blank(at) and not lines.text(at).startswith(b"\\"):
        match = _COUNT_LINE.fullmatch(lines.text(at))
        if not match:
            raise lines.fail(at, f"expected 'ngram N=COUNT' in the \\data\\ header, found {lines.shown(at)}")
        m, count = int(match[1]), int(match[2])
        if m != len(counts) + 1:
            raise lines.fail(at, f"expected the count of order {len(counts) + 1}, found order {m}")
        counts.append(count)
        at += 1
    if not counts:
        raise lines.fail(min(at, len(lines) - 1), "the \\data\\ header lists no 'ngram N=COUNT' line")
    if counts[0] == 0:
        raise lines.fail(at - len(counts), "the header counts no 1-grams")
    return counts, at


def _section_start(lines: _Lines, at: int, m: int, count: int) -> int:
    at = lines.skip_blank(at)
    if at == len(lines):
        raise lines.fail(at - 1, f"the file ends before the \\{m}-grams: section")
    if lines.text(at) != f"\\{m}-grams:".encode():
        raise lines.fail(at, f"expected \\{m}-grams: (the header counts {count:,} {m}-grams), "
                             f"found {lines.shown(at)}")
    return at + 1


def _check_section_length(lines: _Lines, first: int, m: int, count: int) -> None:
    """The section must hold exactly ``count`` n-gram lines, then end (blank line,
    next section or end of file)."""
    stop = first + count
    early = lines.structural(first, min(stop, len(lines)))
    if len(early) or stop > len(lines):
        end = int(early[0]) if len(early) else len(lines) - 1
        found = (int(early[0]) if len(early) else len(lines)) - first
        raise lines.fail(end, f"the \\{m}-grams: section ends after {found:,} n-grams, but the header "
                              f"counts {count:,}")
    if stop < len(lines) and not len(lines.structural(stop, stop + 1)):
        raise lines.fail(stop, f"more n-grams in the \\{m}-grams: section than the {count:,} the header counts")


def _expect_end(lines: _Lines, at: int, order: int) -> None:
    at = lines.skip_blank(at)
    if at == len(lines):
        raise lines.fail(at - 1, f"missing \\end\\ (the file ends after the \\{order}-grams: section)")
    if lines.text(at) != b"\\end\\":
        raise lines.fail(at, f"expected \\end\\ after the {order}-grams, found {lines.shown(at)}")
    after = lines.skip_blank(at + 1)
    if after < len(lines):
        raise lines.fail(after, f"text after \\end\\: {lines.shown(after)}")


def _read_section(lines: _Lines, first: int, count: int, m: int, top: bool, index: dict[bytes, int],
                  on_bytes: Callable[[int], None] | None) -> ArpaOrder:
    """The n-grams of lines [first, first + count); ``index`` maps each word (bytes) to its
    index: filled here from the 1-grams, read for the longer orders."""
    parts = []
    for start in range(first, first + count, BLOCK_LINES):
        stop = min(start + BLOCK_LINES, first + count)
        parts.append(_read_block(lines, start, stop, m, top, index))
        if on_bytes:
            on_bytes(int(lines.ends[stop - 1] - lines.starts[start]))
    if not parts:
        return ArpaOrder(np.empty((0, m), np.int32), np.empty(0, np.float32),
                         None if top else np.empty(0, np.float32))
    ngrams, probs, backoffs = (np.concatenate(column) for column in zip(*parts))
    return ArpaOrder(ngrams, probs, None if top else backoffs)


def _read_block(lines: _Lines, start: int, stop: int, m: int, top: bool, index: dict[bytes, int]):
    """(ngrams, log10 probs, log10 backoffs) of lines [start, stop) of one section."""
    fields = _fields_per_line(lines, start, stop)
    most = m + 1 if top else m + 2
    wrong = np.flatnonzero((fields < m + 1) | (fields > most))
    if len(wrong):
        i = start + int(wrong[0])
        layout = f"a log10 probability and {m} word{'s' if m > 1 else ''}" + ("" if top else ", then an optional backoff")
        raise lines.fail(i, f"a line of the \\{m}-grams: section holds {layout}; found {fields[wrong[0]]} "
                            f"fields in {lines.shown(i)}")
    tokens = np.array(lines.data[lines.starts[start]:lines.ends[stop - 1]].split(), dtype=object)
    first = np.cumsum(fields) - fields  # token index of each line's first field
    line = np.arange(start, stop)
    probs = _numbers(lines, line, tokens[first], "log10 probability")
    bad = np.flatnonzero(probs > 0)
    if len(bad):
        raise lines.fail(start + int(bad[0]), f"positive log10 probability {probs[bad[0]]}")
    backoffs = np.zeros(len(first), np.float64)
    if not top:
        has = np.flatnonzero(fields == m + 2)
        backoffs[has] = _numbers(lines, line[has], tokens[first[has] + m + 1], "log10 backoff")
    columns = [tokens[first + 1 + j] for j in range(m)]
    if m == 1:
        ngrams = _new_words(lines, start, columns[0], index)
    else:
        ngrams = np.stack([_known_words(lines, start, column, index, m) for column in columns], axis=1)
    return ngrams, probs.astype(np.float32), backoffs.astype(np.float32)


def _fields_per_line(lines: _Lines, start: int, stop: int) -> np.ndarray:
    """How many whitespace-separated fields each line of [start, stop) has: the field
    beginnings found in the bytes, counted between consecutive line starts."""
    lo, hi = lines.starts[start], lines.ends[stop - 1]
    space = _WHITESPACE[lines.bytes[lo:hi]]
    begins = ~space
    begins[1:] &= space[:-1]
    bounds = np.append(lines.starts[start:stop] - lo, hi - lo)
    return np.diff(np.searchsorted(np.flatnonzero(begins), bounds))


def _numbers(lines: _Lines, line: np.ndarray, tokens: np.ndarray, what: str) -> np.ndarray:
    """Parse number tokens (on lines ``line``) with float(), which is also the judge of
    what is a number; float() on bytes objects is faster than anything vectorised tried."""
    try:
        values = np.fromiter(map(float, tokens), np.float64, len(tokens))
    except ValueError:
        i = next(i for i, token in enumerate(tokens.tolist()) if not _is_number(token))
        raise lines.fail(int(line[i]), f"{what} {tokens[i].decode('utf-8', 'replace')!r} is not a number") from None
    bad = np.flatnonzero(np.isnan(values) | (values == np.inf))
    if len(bad):
        raise lines.fail(int(line[bad[0]]), f"{what} {values[bad[0]]} is not a log10 value")
    bad = np.flatnonzero(values > LOG10_LIMIT)
    if len(bad):
        raise lines.fail(int(line[bad[0]]), f"{what} {values[bad[0]]} is too large (the limit is {LOG10_LIMIT:g})")
    values[values < -LOG10_LIMIT] = -np.inf
    return values


def _is_number(token: bytes) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _new_words(lines: _Lines, start: int, tokens: np.ndarray, index: dict[bytes, int]) -> np.ndarray:
    """Give each 1-gram word the next index; a word listed twice is an error."""
    first = len(index)
    for i, word in enumerate(tokens.tolist()):
        if index.setdefault(word, first + i) != first + i:
            raise lines.fail(start + i, f"the 1-gram {word.decode()!r} is listed twice")
    return np.arange(first, first + len(tokens), dtype=np.int32)[:, None]


def _known_words(lines: _Lines, start: int, tokens: np.ndarray, index: dict[bytes, int], m: int) -> np.ndarray:
    try:
        return np.fromiter(map(index.__getitem__, tokens), np.int32, len(tokens))
    except KeyError as e:
        i = next(i for i, word in enumerate(tokens.tolist()) if word not in index)
        raise lines.fail(start + i, f"the word {e.args[0].decode()!r} of this {m}-gram is not one of the "
                                    "1-grams") from None


# ---- writing ------------------------------------------------------------------------------

def write_arpa(tables: ArpaTables, path: str | os.PathLike) -> None:
    """Write ``tables`` to ``path`` atomically (temporary file, then rename).

    Log10 values are written with at most 7 decimals (trailing zeros dropped; 7 is below
    float32's resolution for |x| >= 1): a read back is within 5e-8 of what was written, a
    factor of 1 +- 1.2e-7 on the probabilities. A value must be finite and below 1e11 in
    magnitude, or -inf (ValueError otherwise). Words must be non-empty and hold no ASCII
    whitespace (it would split them)."""
    path = Path(path)
    words = _word_bytes(tables.words)
    with writing(path, "the ARPA file"):
        _write_arpa_file(tables, words, path)


def _write_arpa_file(tables: ArpaTables, words, path: Path) -> None:
    tmp = temp_file(path.parent, f".{path.name}.")
    try:
        with open(tmp, "wb") as f:
            f.write(b"\\data\\\n")
            for m, table in enumerate(tables.orders, 1):
                f.write(f"ngram {m}={len(table.ngrams)}\n".encode())
            for m, table in enumerate(tables.orders, 1):
                f.write(f"\n\\{m}-grams:\n".encode())
                for start in range(0, len(table.ngrams), BLOCK_LINES):
                    f.write(_format_block(words, table, start, min(start + BLOCK_LINES, len(table.ngrams))))
            f.write(b"\n\\end\\\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _word_bytes(words: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All words in one byte buffer: (buffer, start, length)."""
    encoded = [word.encode("utf-8") for word in words]
    for word, raw in zip(words, encoded):
        if raw.split() != [raw]:
            raise ValueError(f"the word {word!r} cannot be written to an ARPA file (empty or holds whitespace)")
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    starts = np.cumsum(lengths) - lengths
    return np.frombuffer(b"".join(encoded), np.uint8), starts, lengths


def _format_block(words: tuple[np.ndarray, np.ndarray, np.ndarray], table: ArpaOrder, start: int,
                  stop: int) -> bytes:
    """Lines [start, stop) of one order as bytes (by the C kernel)."""
    backoff = None if table.log10_backoff is None else table.log10_backoff[start:stop]
    return kernels.arpa_lines(*words, table.ngrams[start:stop], table.log10_prob[start:stop], backoff)
