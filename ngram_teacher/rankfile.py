"""The ranks file, format v1 (FORMATS.md has the byte-level description).

    bytes 0-7    magic b"NGTRANKS"
    bytes 8-11   H, little-endian uint32: length of the JSON header that follows,
                 padded with spaces so that the first array starts at a multiple of 64
    then         ids     [n_positions, k]  id_dtype, row i = token position i
                 orders  [n_positions, k]  uint8, 0 = padding
                 scores  [n_positions, k]  optional, dtype in the header
                 each array starting at a multiple of 64 bytes (zero padding between)

:class:`RankFileWriter` writes one into a temporary file and renames (or copies) it into
place only when it is complete; :class:`RankFile` memory-maps one and refuses any file
whose size, magic or header does not add up.
"""
from __future__ import annotations

import errno
import json
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from corpora import NgteachError
from corpora.files import json_count, temp_file, writing, wrong_field

MAGIC = b"NGTRANKS"
FORMAT_VERSION = 1
ALIGN = 64
PREAMBLE = len(MAGIC) + 4
ID_DTYPES = ("<u2", "<u4")
SCORE_DTYPES = ("<u4", "<f4")
# The header's scores object of the two kinds of scores teachers keep.
COUNT_SCORES = {"kind": "count", "dtype": "<u4"}
LOGPROB_SCORES = {"kind": "logprob", "dtype": "<f4"}


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sha256(value) -> bool:
    return isinstance(value, str) and re.fullmatch("[0-9a-f]{64}", value) is not None


# The fields every header has, and what each must be.
HEADER_FIELDS = {
    "format_version": (_integer, "an integer"),
    "n_positions": (json_count, "a non-negative integer"),
    "k": (lambda v: json_count(v) and v >= 1, "a positive integer"),
    "id_dtype": (lambda v: v in ID_DTYPES, f"one of {', '.join(ID_DTYPES)}"),
    "pad_id": (json_count, "a non-negative integer"),
    "vocab_size": (json_count, "a non-negative integer"),
    "vocab_sha256": (_sha256, "a sha256 digest, 64 hexadecimal digits"),
    "tokens_sha256": (_sha256, "a sha256 digest, 64 hexadecimal digits"),
    "gt_first": (lambda v: isinstance(v, bool), "true or false"),
    "teacher": (lambda v: isinstance(v, dict), "an object"),
    "scores": (lambda v: v is None or (isinstance(v, dict) and v.get("dtype") in SCORE_DTYPES),
               f"null or an object with a dtype in {', '.join(SCORE_DTYPES)}"),
}


def id_dtype_for(vocab_size: int) -> str:
    """uint16 when every id and the padding id (the dtype's maximum) fit, else uint32."""
    return "<u2" if vocab_size < 0xFFFF else "<u4"


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def array_layout(header: dict) -> list[tuple[str, np.dtype, int]]:
    """(name, dtype, byte offset) of each array, given the header and its padded length."""
    arrays = [("ids", np.dtype(header["id_dtype"])), ("orders", np.dtype("u1"))]
    if header["scores"] is not None:
        arrays.append(("scores", np.dtype(header["scores"]["dtype"])))
    offset, layout = header["_data_offset"], []
    for name, dtype in arrays:
        layout.append((name, dtype, offset))
        offset = _aligned(offset + header["n_positions"] * header["k"] * dtype.itemsize)
    return layout


def file_size(header: dict) -> int:
    name, dtype, offset = array_layout(header)[-1]
    return offset + header["n_positions"] * header["k"] * dtype.itemsize


def encode_header(header: dict) -> bytes:
    """Magic, length and JSON, padded with spaces to a multiple of 64 bytes."""
    text = json.dumps({k: v for k, v in header.items() if not k.startswith("_")}, sort_keys=True).encode()
    padded = _aligned(PREAMBLE + len(text)) - PREAMBLE
    return MAGIC + struct.pack("<I", padded) + text.ljust(padded, b" ")


class RankFileWriter:
    """Creates a ranks file in a temporary place and publishes it when complete.

    Use as a context manager: the arrays (``ids``, ``orders``, ``scores``) are writable
    memory maps; leaving the block with an exception removes the temporary file.
    """

    def __init__(self, header: dict, directory: str | os.PathLike | None = None):
        missing = [k for k in HEADER_FIELDS if k not in header]
        if missing:
            raise ValueError(f"ranks header lacks {missing}")
        self.header = dict(header)
        head = encode_header(self.header)
        self.header["_data_offset"] = len(head)
        self.path = temp_file(directory, ".ranks.")
        try:
            with open(self.path, "wb") as f:
                f.write(head)
                f.truncate(file_size(self.header))
                _reserve(f, file_size(self.header))
            shape = (self.header["n_positions"], self.header["k"])
            self.arrays = {name: np.memmap(self.path, dtype, "r+", offset, shape)
                           for name, dtype, offset in array_layout(self.header)}
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise

    def __enter__(self) -> "RankFileWriter":
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.arrays.clear()
        if kind is not None:
            self.path.unlink(missing_ok=True)

    def flush(self) -> None:
        for array in self.arrays.values():
            array.flush()

    def publish(self, target: str | os.PathLike) -> None:
        """Rename the finished file to ``target`` (same file system as the temp file)."""
        self.flush()
        os.replace(self.path, target)

    def copy_to(self, stream: BinaryIO) -> None:
        """Send the finished file to an open binary stream (e.g. standard output)."""
        self.flush()
        with open(self.path, "rb") as f, writing("standard output", "the ranks file"):
            while chunk := f.read(1 << 22):
                _write_all(stream, memoryview(chunk))
            stream.flush()
        self.path.unlink()


def _write_all(stream: BinaryIO, data: memoryview) -> None:
    """Write all of ``data``: a raw stream may take only part of it (a full disk takes
    what fits), which ``shutil.copyfileobj`` would not notice."""
    while data:
        written = stream.write(data)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        data = data[written:]


def _reserve(f, size: int) -> None:
    """Claim the file's disk space now: a memory-mapped write into a full disk is a SIGBUS,
    where reserving it is an ENOSPC error. File systems that cannot reserve are left as
    they are."""
    try:
        os.posix_fallocate(f.fileno(), 0, size)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise


def write_rank_file(header: dict, target: str | os.PathLike | BinaryIO, fill: Callable[[dict], None]) -> None:
    """Create the ranks file described by ``header`` at ``target`` (a path, or an open
    binary stream such as standard output): ``fill(arrays)`` writes the rows into the
    writer's arrays, then the file is published whole; nothing is left if it raises."""
    to_path = isinstance(target, (str, os.PathLike))
    try:
        writer = RankFileWriter(header, Path(target).resolve().parent if to_path else None)
    except OSError as e:
        shown = target if to_path else f"standard output (built in {tempfile.gettempdir()})"
        size = file_size({**header, "_data_offset": len(encode_header(header))})
        raise NgteachError(f"{shown}: cannot create a ranks file of {size:,} bytes ({e.strerror or e})") from None
    with writer:
        fill(writer.arrays)
        if to_path:
            writer.publish(target)
        else:
            writer.copy_to(target)


class RankFile:
    """A ranks file, memory-mapped: ``ids``, ``orders`` and ``scores`` (or None)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.header = _read_header(self.path)
        size = self.path.stat().st_size
        if size != file_size(self.header):
            raise NgteachError(f"{self.path}: truncated or padded ranks file ({size} bytes, the header "
                               f"implies {file_size(self.header)})")
        shape = (self.header["n_positions"], self.header["k"])
        arrays = {name: np.memmap(self.path, dtype, "r", offset, shape)
                  for name, dtype, offset in array_layout(self.header)}
        self.ids, self.orders, self.scores = arrays["ids"], arrays["orders"], arrays.get("scores")

    def __len__(self) -> int:
        return self.header["n_positions"]

    @property
    def k(self) -> int:
        return self.header["k"]

    def check_matches(self, vocab_sha256: str, tokens_sha256: str | None = None, what: str = "the model") -> None:
        """Refuse a file made with another vocabulary (or for another token stream)."""
        if self.header["vocab_sha256"] != vocab_sha256:
            raise NgteachError(f"{self.path}: made with a different vocabulary than {what}")
        if tokens_sha256 is not None and self.header["tokens_sha256"] != tokens_sha256:
            raise NgteachError(f"{self.path}: ranks a different token stream than {what}")

    def check_ids(self, vocab_size: int | None = None) -> None:
        """Read the whole file and refuse ids out of range (at least ``vocab_size``, by
        default the header's) and padding before real entries."""
        pad = self.header["pad_id"]
        vocab_size = self.header["vocab_size"] if vocab_size is None else vocab_size
        for start in range(0, len(self), 1 << 18):
            ids = np.asarray(self.ids[start:start + (1 << 18)])
            padding = np.asarray(self.orders[start:start + (1 << 18)]) == 0
            for bad, why in (((padding & (ids != pad)) | (~padding & (ids >= vocab_size)), "ids out of range"),
                             (padding[:, :-1] & ~padding[:, 1:], "padding before real entries")):
                rows = np.flatnonzero(bad.any(axis=1))
                if len(rows):
                    raise NgteachError(f"{self.path}: corrupt ranks file ({why} in row {start + rows[0]})")

    def leftover_mass(self, quantiles: tuple[float, ...] = (0.5, 0.9)) -> dict[str, float] | None:
        """The teacher's probability outside each row's real entries (what kl's uniform tail
        and ``--smoothing teacher`` spread over the other words): {"mean": ..., and each of
        ``quantiles`` by its name, such as "0.5"} over the positions, the quantiles to
        1/LEFTOVER_BINS; None unless the scores are log-probabilities (or there are no rows).
        Read a block at a time, in bounded memory."""
        if (self.header["scores"] or {}).get("kind") != LOGPROB_SCORES["kind"] or not len(self):
            return None
        counts, total, block = np.zeros(LEFTOVER_BINS + 1, np.int64), 0.0, 1 << 18
        for start in range(0, len(self), block):
            real = np.asarray(self.orders[start:start + block]) > 0
            probs = np.exp(np.asarray(self.scores[start:start + block], dtype=np.float64))
            left = np.clip(1 - np.where(real, probs, 0).sum(axis=1), 0, 1)
            total += float(left.sum())
            counts += np.bincount(np.rint(left * LEFTOVER_BINS).astype(np.int64), minlength=LEFTOVER_BINS + 1)
        below = np.cumsum(counts)  # positions at or under each bin
        return {"mean": total / len(self),
                **{str(q): float(np.searchsorted(below, q * len(self))) / LEFTOVER_BINS for q in quantiles}}


LEFTOVER_BINS = 10_000  # the resolution of RankFile.leftover_mass's quantiles


def _read_header(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            preamble = f.read(PREAMBLE)
            if len(preamble) < PREAMBLE or preamble[: len(MAGIC)] != MAGIC:
                raise NgteachError(f"{path}: not an ngteach ranks file (bad magic)")
            (length,) = struct.unpack("<I", preamble[len(MAGIC):])
            raw = f.read(length)
    except FileNotFoundError:
        raise NgteachError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NgteachError(f"{path}: is a directory, not a ranks file") from None
    if len(raw) != length:
        raise NgteachError(f"{path}: truncated ranks file (header cut short)")
    if (PREAMBLE + length) % ALIGN:
        raise NgteachError(f"{path}: corrupt ranks file (header length {length} is not padded to {ALIGN} bytes)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise NgteachError(f"{path}: corrupt ranks file (header is not JSON)") from None
    _validate_header(path, header)
    header["_data_offset"] = PREAMBLE + length
    return header


def _validate_header(path: Path, header: object) -> None:
    def bad(why: str):
        raise NgteachError(f"{path}: corrupt ranks file header ({why})")

    if not isinstance(header, dict):
        bad("not a JSON object")
    version = header.get("format_version")
    if _integer(version) and version != FORMAT_VERSION:
        raise NgteachError(f"{path}: ranks format version {version} is not supported "
                           f"(this ngteach reads version {FORMAT_VERSION})")
    wrong = wrong_field(header, HEADER_FIELDS)
    if wrong:
        bad(wrong)
    if header["vocab_size"] > np.iinfo(np.dtype(header["id_dtype"])).max:
        bad("vocab_size does not fit id_dtype")
