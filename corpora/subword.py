"""SentencePiece subword tokenization behind the same surface as :class:`WordTokenizer`.

Piece ids are sentencepiece's own, so ``vocab.tokens[i]`` is piece ``i`` and the ids can
be decoded by sentencepiece itself. Lines are read with :func:`read_blocks` (strict
UTF-8) and each is encoded on its own, followed by one ``<eos>`` (blank lines too), so
a piece never spans two lines.

Training uses sentencepiece's defaults except where noted below: every line, in file
order (so the same corpus gives the same model bytes), and every character (so the
training text decodes back exactly, up to sentencepiece's NFKC normalization and its
trimming and collapsing of spaces).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from itertools import chain
from pathlib import Path
from typing import Iterator

import numpy as np
import sentencepiece as spm

from .errors import NgteachError
from .text import EOS, UNK, ByteCallback, read_blocks
from .vocab import Vocabulary

MODEL_FILE = "tokenizer.model"
MODEL_TYPES = ("unigram", "bpe", "char", "word")
# The unigram trainer sums per-thread statistics in floating point, so the model
# depends on the thread count: a fixed count gives the same model on any machine.
_TRAIN_THREADS = 8
# The trainer drops longer lines (its default is 4192 bytes); WikiText paragraphs are
# sometimes longer and should count.
_MAX_LINE_BYTES = 1 << 16
# Lines per call to the encoder: large enough to keep its threads busy, small enough
# that the Python lists it returns stay small.
_ENCODE_BATCH_LINES = 8192
# Sentencepiece logs every training step to stderr; 2 keeps only errors, which it
# raises as exceptions too.
_QUIET = 2
# TrainerSpec.model_type values in sentencepiece_model.proto.
_PROTO_MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


class SentencePieceTokenizer:
    """A sentencepiece model; ``<eos>`` ends every line and unknown text is ``<unk>``."""

    kind = "sentencepiece"

    def __init__(self, model: bytes, name: str = "sentencepiece model"):
        """``model``: the bytes of a ``.model`` file; ``name`` says where they came from,
        for error messages."""
        self._model = model
        self._sp = _load_processor(model, name)
        self.model_type = _proto_model_type(model)
        self.vocab = Vocabulary(_pieces(self._sp))

    @classmethod
    def train(
        cls,
        path: str | os.PathLike,
        vocab_size: int,
        model_type: str = "unigram",
        on_bytes: ByteCallback | None = None,
    ) -> tuple["SentencePieceTokenizer", np.ndarray]:
        """Train a model on every line of ``path``; return it and the encoded corpus.

        The same corpus always gives the same model bytes. ``on_bytes`` follows the
        encoding pass that comes after training.
        """
        if model_type not in MODEL_TYPES:
            choices = ", ".join(MODEL_TYPES)
            raise NgteachError(f"unknown sentencepiece model type {model_type!r}: choose {choices}")
        if vocab_size < 3:
            raise NgteachError(f"sentencepiece vocab_size must be at least 3, not {vocab_size}")
        lines = _TrainingLines(path)
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_writer=model, **_trainer_options(vocab_size, model_type)
            )
        except (RuntimeError, ValueError) as e:
            lines.check()
            raise NgteachError(f"{path}: sentencepiece training failed: {_one_line(e)}") from None
        lines.check()
        tokenizer = cls(model.getvalue())
        return tokenizer, tokenizer.encode_file(path, on_bytes)

    @classmethod
    def from_model(cls, model_path: str | os.PathLike) -> "SentencePieceTokenizer":
        """Use an existing sentencepiece ``.model`` file; it must define an eos piece."""
        path = Path(model_path)
        try:
            model = path.read_bytes()
        except FileNotFoundError:
            raise NgteachError(f"{path}: no such file") from None
        except OSError as e:
            raise NgteachError(f"{path}: cannot read ({e.strerror})") from None
        return cls(model, str(path))

    def encode_file(self, path: str | os.PathLike, on_bytes: ByteCallback | None = None) -> np.ndarray:
        parts = [self._encode_lines(lines) for lines in _line_batches(path, on_bytes)]
        return np.concatenate(parts)

    def encode_text(self, text: str) -> np.ndarray:
        return np.asarray(self._sp.encode(text, out_type=int), np.uint32)

    def _encode_lines(self, lines: list[str]) -> np.ndarray:
        ids = self._sp.encode(lines, out_type=int, add_eos=True, num_threads=os.cpu_count() or 1)
        return np.fromiter(chain.from_iterable(ids), np.uint32, sum(map(len, ids)))

    def config(self) -> dict:
        return {
            "kind": self.kind,
            "vocab_size": len(self.vocab),
            "model": MODEL_FILE,
            "model_type": self.model_type,
            "sha256": hashlib.sha256(self._model).hexdigest(),
        }

    def save(self, directory: str | os.PathLike) -> None:
        """Write the model as ``tokenizer.model`` and the pieces as the vocabulary files."""
        (Path(directory) / MODEL_FILE).write_bytes(self._model)
        self.vocab.save(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike, config: dict) -> "SentencePieceTokenizer":
        """The tokenizer saved in ``directory``; the model must be the one ``config``
        (from ``meta.json``) names, byte for byte."""
        name = config.get("model", MODEL_FILE)
        if not isinstance(name, str):
            raise NgteachError(f"{Path(directory) / 'meta.json'}: the tokenizer's 'model' must be a file name")
        path = Path(directory) / name
        tokenizer = cls.from_model(path)
        expected, actual = config.get("sha256"), tokenizer.config()["sha256"]
        if expected and expected != actual:
            raise NgteachError(f"{path}: not the model meta.json names (sha256 {actual}, expected {expected})")
        return tokenizer


class _TrainingLines:
    """The lines of a corpus for the trainer, keeping our own read error.

    Sentencepiece turns an exception inside its sentence iterator into a bare
    RuntimeError, which would lose the one-line message of read_blocks.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = path
        self.error: NgteachError | None = None
        self.has_text = False

    def __iter__(self) -> Iterator[str]:
        try:
            for block in read_blocks(self.path):
                self.has_text = self.has_text or not block.isspace()
                yield from _lines(block)
        except NgteachError as e:
            self.error = e

    def check(self) -> None:
        """Raise the read error, if any, or complain about a corpus without text."""
        if self.error:
            raise self.error
        if not self.has_text:
            raise NgteachError(f"{self.path}: no text to train on (every line is blank)")


def _trainer_options(vocab_size: int, model_type: str) -> dict:
    return {
        "vocab_size": vocab_size,
        "model_type": model_type,
        "unk_id": 0,
        "eos_id": 1,
        "bos_id": -1,
        "pad_id": -1,
        "unk_piece": UNK,
        "eos_piece": EOS,
        # All lines, in file order: no sampling, so no randomness.
        "input_sentence_size": 0,
        "shuffle_input_sentence": False,
        # Every character of the corpus gets a piece, so training text decodes back
        # exactly (the default 0.9995 turns letters as common as "x" into <unk>).
        "character_coverage": 1.0,
        "max_sentence_length": _MAX_LINE_BYTES,
        "num_threads": _TRAIN_THREADS,
        "minloglevel": _QUIET,
    }


def _line_batches(path: str | os.PathLike, on_bytes: ByteCallback | None) -> Iterator[list[str]]:
    """The lines of ``path`` without their line ends, in lists of at most
    ``_ENCODE_BATCH_LINES``; a last line without a newline is a line too."""
    for block in read_blocks(path, on_bytes):
        lines = _lines(block)
        for start in range(0, len(lines), _ENCODE_BATCH_LINES):
            yield lines[start : start + _ENCODE_BATCH_LINES]


def _lines(block: str) -> list[str]:
    """The lines of a block from read_blocks, without their ``\\n``."""
    lines = block.split("\n")
    if block.endswith("\n"):
        lines.pop()
    return lines


def _load_processor(model: bytes, name: str) -> spm.SentencePieceProcessor:
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(model)
    except (RuntimeError, OSError):
        raise NgteachError(f"{name}: not a sentencepiece model") from None
    if sp.eos_id() < 0:
        raise NgteachError(f"{name}: the sentencepiece model has no eos piece, needed to end lines")
    return sp


def _pieces(sp: spm.SentencePieceProcessor) -> list[str]:
    """The pieces in id order, the unknown and eos pieces under the toolkit's names so
    that ``Vocabulary.unk_id``/``eos_id`` are sentencepiece's, whatever a model calls them."""
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    pieces[sp.unk_id()] = UNK
    pieces[sp.eos_id()] = EOS
    return pieces


def _one_line(error: Exception) -> str:
    """Sentencepiece's error text without its source location, on one line."""
    text = " ".join(str(error).split())
    located = re.match(r"(?:[A-Z_]+: )?\S+\.cc\(\d+\) \[(.*?)\] ?(.*)$", text)
    if located:
        return located.group(2) or located.group(1)
    return re.sub(r"^[A-Z_]+: ", "", text)


def _proto_model_type(model: bytes) -> str:
    """The model type recorded in a serialized ModelProto: field 3 of its TrainerSpec
    (field 2). Read by hand because the protobuf package is not a dependency."""
    spec = _proto_field(model, 2)
    kind = _proto_field(spec, 3) if isinstance(spec, bytes) else None
    return _PROTO_MODEL_TYPES.get(kind if isinstance(kind, int) else 1, "unknown")


def _proto_field(data: bytes, number: int) -> int | bytes | None:
    """The last value of field ``number`` in protobuf wire-format ``data`` (a varint or
    a length-delimited payload), or None when the field is absent."""
    found = None
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            value, pos = None, pos + (8 if wire == 1 else 4)
        else:
            return found  # groups never occur in ModelProto; stop rather than misread
        if key >> 3 == number:
            found = value
    return found


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    return value, pos
