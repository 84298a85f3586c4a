"""Token streams and teacher ranks, cut into training batches.

Row i of a ranks file belongs to token position i of the training stream (the teacher's
candidates for token i given the tokens before it), so a batch carries, next to its
inputs and targets, the stream positions of its targets to fetch their rows.

- LSTM: contiguous-stream BPTT. The stream is cut into ``columns`` equal parts read side
  by side, ``length`` tokens at a time, so the hidden state carries over between batches.
- Transformer: fixed windows of ``length`` tokens, in a fresh seeded order every epoch.

With several processes (torchrun), process ``rank`` of ``world`` reads every world-th
column or window, so the processes together read the stream once per epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from corpora import NgteachError
from ngram_teacher import RankFile, Teacher, teacher_rows

GT_PARTITION = -1  # no order or count gives it: the ground truth's own partition
PARTITION_MODES = ("order", "count", "strict", "none")


@dataclass
class Batch:
    inputs: Tensor  # [B, T] int64
    targets: Tensor  # [B, T] int64
    positions: Tensor  # [B, T] int64: stream position of each target (= its ranks row)


def bptt_batches(stream: Tensor, columns: int, length: int, rank: int = 0, world: int = 1) -> Iterator[Batch]:
    """Side-by-side columns of the stream, ``length`` tokens per batch, in order."""
    per_column = (len(stream) - 1) // columns
    if per_column < 1:
        raise NgteachError(f"the training text ({len(stream):,} tokens) is too short for {columns} columns "
                           "(--batch-size)")
    mine = torch.arange(rank, columns, world)
    starts = mine * per_column
    for offset in range(0, per_column, length):
        steps = torch.arange(offset, min(offset + length, per_column))
        positions = starts[:, None] + steps[None, :] + 1
        yield Batch(stream[positions - 1], stream[positions], positions)


def window_batches(stream: Tensor, windows_per_batch: int, length: int, seed: int, epoch: int,
                   rank: int = 0, world: int = 1) -> Iterator[Batch]:
    """Fixed windows of ``length`` targets in a seeded random order (the same for every
    process, which then takes its share)."""
    count = (len(stream) - 1) // length
    if count < 1:
        raise NgteachError(f"the training text ({len(stream):,} tokens) is shorter than one window of {length} "
                           "(--window)")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    order = order[rank::world]
    steps = torch.arange(length)
    for first in range(0, len(order), windows_per_batch):
        positions = order[first:first + windows_per_batch, None] * length + steps[None, :] + 1
        yield Batch(stream[positions - 1], stream[positions], positions)


@dataclass
class TeacherRows:
    """The ranks of a batch's targets, ready for the losses."""

    ranks: Tensor  # [B, T, k] int64 word ids (padding replaced by 0)
    partitions: Tensor | None  # [B, T, k] partition ids, None = strict
    mask: Tensor  # [B, T, k] bool, True = real entry
    logprobs: Tensor | None  # [B, T, k] float32 teacher log-probabilities, if the file has them
    gt_first: bool  # entry 0 is the true token (whose Plackett-Luce term is the cross-entropy)
    dense: Tensor | None = None  # [B, T, V] float32 the teacher's whole log-distribution (kl --kl-tail full)


class FileRows:
    """Rows read from a ranks file (memory-mapped)."""

    def __init__(self, ranks: RankFile):
        self.file, self.name = ranks, str(ranks.path)
        self.k, self.gt_first = ranks.k, bool(ranks.header["gt_first"])
        self.description, self.scores = ranks.header["teacher"], ranks.header["scores"]

    def read(self, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(ids, orders, scores or None) of the first ``k`` entries of the rows of ``positions``."""
        scores = None if self.file.scores is None else np.asarray(self.file.scores[positions, :k])
        return np.asarray(self.file.ids[positions, :k]), np.asarray(self.file.orders[positions, :k]), scores

    def check_rows(self, positions: int, vocab_size: int) -> None:
        """Refuse a file without a row for each of the ``positions`` of the training stream or
        with ids of ``vocab_size`` or more: a corrupt file whose checksums still match."""
        if len(self.file) != positions or self.file.header["vocab_size"] != vocab_size:
            raise NgteachError(f"{self.file.path}: corrupt ranks file ({len(self.file):,} rows and a vocabulary of "
                               f"{self.file.header['vocab_size']:,} for the {positions:,} positions and "
                               f"{vocab_size:,} words of the training stream)")
        self.file.check_ids(vocab_size)


class OnlineRows:
    """Rows computed by a teacher for each batch (:func:`ngram_teacher.teacher_rows`), the
    same as a ranks file of the stream by that teacher, with the true word first, holds."""

    gt_first = True

    def __init__(self, teacher: Teacher, stream: np.ndarray, k: int, name: str):
        if not teacher.online:
            raise NgteachError(f"{name}: this teacher ranks to a file only; write one with ngteach rank --teacher "
                               f"{name} --scores and train from it with --ranks")
        self.teacher, self.stream, self.k, self.name = teacher, stream, k, name
        self.scores, self.description = teacher.scores, teacher.describe()

    def read(self, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = teacher_rows(self.teacher, self.stream, positions, self.k, self.gt_first)
        return rows.ids[:, :k], rows.orders[:, :k], rows.scores[:, :k]

    def distribution(self, positions: np.ndarray) -> np.ndarray:
        """The teacher's natural-log distribution over the vocabulary at ``positions`` [n, V]."""
        return self.teacher.log_distribution(self.stream, positions)

    def check_rows(self, positions: int, vocab_size: int) -> None:
        """Nothing to check: the rows are made from the stream itself."""


class TeacherReader:
    """Reads a teacher's rows (from a ranks file, :class:`FileRows`, or computed batch by
    batch, :class:`OnlineRows`) and shapes them as the rank losses want them.

    ``k`` keeps the first k entries; ``min_order`` drops entries that the backoff found
    below that order (their order is stored, so no new ranks file is needed);
    ``partition``: ``order`` groups entries by backoff order, ``count`` only those of one
    order with the same count (ties are equally preferred; needs counts as scores),
    ``strict`` makes each its own partition, ``none`` puts all teacher entries in one;
    None takes what the teacher declares (``order`` for a ranks file made before teachers
    declared it). The ground truth, when the rows put it first, is always a partition of
    its own.
    """

    def __init__(self, source: FileRows | OnlineRows | RankFile, k: int | None = None, min_order: int = 1,
                 partition: str | None = None, dense: bool = False):
        source = FileRows(source) if isinstance(source, RankFile) else source
        if dense and not (isinstance(source, OnlineRows) and hasattr(source.teacher, "log_distribution")):
            raise NgteachError(f"{source.name}: --kl-tail full needs the teacher's whole distribution at every "
                               "position, which only an ARPA teacher ranking each batch gives (--teacher arpa:FILE)")
        self.dense = dense
        self.scorer = None  # (positions, ids) -> natural-log probabilities, for rows without them
        partition = partition or source.description.get("partition", "order")
        if partition not in PARTITION_MODES:
            raise NgteachError(f"--partition must be one of {', '.join(PARTITION_MODES)}, not {partition!r}")
        if k is not None and not 1 <= k <= source.k:
            raise NgteachError(f"--k must be between 1 and the ranks' k ({source.k}), not {k}")
        order = source.description.get("order", 1)  # a neural teacher's entries are all of order 1
        if isinstance(order, int) and min_order > order:
            raise NgteachError(f"--min-order {min_order} is above the order of the teacher of {source.name} ({order}): "
                               "it would leave out every entry")
        self.source = source
        self.k = k or source.k
        self.min_order = min_order
        self.partition = partition
        self.gt_first = source.gt_first
        scores = source.scores
        self.has_logprobs = scores is not None and scores.get("kind") == "logprob"
        if partition == "count" and (scores is None or scores.get("kind") != "count"):
            raise NgteachError(f"{source.name}: --partition count needs the counts in the ranks file "
                               "(make it with ngteach rank --scores)")

    def check_rows(self, positions: int, vocab_size: int) -> None:
        self.source.check_rows(positions, vocab_size)

    def score_entries(self, scorer) -> None:
        """Give the rows log-probabilities from ``scorer(positions [n], ids [n, k])`` (a
        count teacher's entries under the Kneser-Ney model of its counts)."""
        self.scorer, self.has_logprobs = scorer, True

    def rows(self, positions: Tensor) -> TeacherRows:
        flat = positions.reshape(-1).numpy()
        ids, orders, scores = self.source.read(flat, self.k)
        ids, orders = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(orders.astype(np.int64))
        mask = (orders > 0) & (orders >= self.min_order)
        if self.gt_first:
            mask[:, 0] = orders[:, 0] > 0
        ids = torch.where(mask, ids, torch.zeros_like(ids))
        shape = (*positions.shape, self.k)
        logprobs = None
        if self.scorer is not None:
            scored = torch.from_numpy(self.scorer(flat, ids.numpy())).reshape(shape)
            logprobs = scored.masked_fill(~mask.reshape(shape), float("-inf"))
        elif self.has_logprobs:
            logprobs = torch.from_numpy(np.asarray(scores, dtype=np.float32)).reshape(shape)
        partitions = None if self.partition == "strict" else self._partitions(orders, scores).reshape(shape)
        dense = torch.from_numpy(self.source.distribution(flat)).reshape(*positions.shape, -1) if self.dense else None
        return TeacherRows(ids.reshape(shape), partitions, mask.reshape(shape), logprobs, self.gt_first, dense)

    def _partitions(self, orders: Tensor, scores: np.ndarray | None) -> Tensor:
        if self.partition == "count":  # runs of one (order, count): orders fit in 8 bits
            parts = torch.from_numpy(np.asarray(scores).astype(np.int64)) * 256 + orders
        else:
            parts = orders.clone() if self.partition == "order" else torch.ones_like(orders)
        if self.gt_first:
            parts[:, 0] = GT_PARTITION
        return parts
