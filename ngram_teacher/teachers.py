"""Teachers: anything that ranks candidate next words for positions of a token stream.

Every teacher has one small interface (:class:`Teacher`): it ranks the positions of a
stream, all of them into a ranks file's arrays (:meth:`Teacher.rank_into`, what
:func:`write_ranks` calls) or runs of consecutive ones (:meth:`Teacher.rank_runs`, what
:func:`teacher_rows` calls for a training batch, so that a student can learn from a
teacher without a ranks file), and describes itself for the ranks header, the way its
entries are partitioned included:

- ``order``: its entries come in backoff levels, best level first, and the entries of
  one level are equally preferred (the count teacher).
- ``strict``: its entries are sorted by probability, every entry its own partition (ARPA
  and neural teachers; their orders say which n-gram supplied a probability, not a level).

A teacher is named by a spec, ``KIND:PATH`` (:func:`load_teacher`): ``count:DIR`` (a model
directory's counts), ``cloze:DIR`` (the words between the same neighbours elsewhere in a
model directory's corpus, :mod:`ngram_teacher.cloze`), ``infini:DIR`` (the words after
every earlier context of any length that occurs elsewhere in a model directory's corpus,
:mod:`ngram_teacher.infini`), ``kn-loo:DIR`` (a model directory's own corpus by its Kneser-Ney
model without each ranked position, :mod:`ngram_teacher.leave_one_out`) and ``arpa:FILE`` here; the student package adds ``born-again:RUN``,
``hf-causal:DIR`` and ``hf-masked:DIR`` (neural teachers, which need torch) to
:data:`TEACHER_KINDS` when it is imported.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Protocol

import numpy as np

from corpora import NgteachError

from . import kernels
from .arpa_rank import load_teacher as load_arpa
from .cloze import ClozeTeacher
from .infini import InfiniTeacher
from .kneser_ney import LMPLZ_FALLBACK, DiscountFallbackWarning
from .leave_one_out import LeaveOneOutTeacher
from .model import NgramModel, tokens_sha256
from .rank import check_k, check_min_order, position_runs, rank_into
from .rankfile import COUNT_SCORES, FORMAT_VERSION, id_dtype_for, write_rank_file

PARTITIONS = ("order", "strict")
DEFAULT_K = 20


class Teacher(Protocol):
    """What every teacher offers (see the module's docstring)."""

    model: NgramModel  # whose vocabulary it ranks: the ranks header's vocabulary
    order: int  # the highest order an entry can have (1: no backoff)
    partition: str  # "order" or "strict"
    scores: dict  # the header's scores object when scores are kept (COUNT_SCORES or LOGPROB_SCORES)
    online: bool  # whether rank_runs is cheap enough to run for every training batch

    def describe(self, min_order: int = 1) -> dict:
        """The ranks header's ``teacher`` object (with ``partition``)."""

    def rank_into(self, stream: np.ndarray, ids: np.ndarray, orders: np.ndarray, scores: np.ndarray | None,
                  gt_first: bool, pad_id: int, min_order: int = 1, threads: int | None = None,
                  on_rows: Callable[[int], None] | None = None) -> None:
        """Fill the rows of every position of ``stream`` ([len(stream), k] arrays; scores
        may be None): entries best first, padding (order 0, id ``pad_id``) at the end."""

    def rank_runs(self, stream: np.ndarray, runs: list[tuple[int, int]], ids: np.ndarray, orders: np.ndarray,
                  scores: np.ndarray | None, gt_first: bool, pad_id: int, min_order: int = 1) -> None:
        """The rows of the positions of ``runs`` ((start, stop) pairs of ``stream``), one run
        after the other ([total length, k] arrays), as :meth:`rank_into` would fill them."""


# ---- the count teacher -----------------------------------------------------------------------

class CountTeacher:
    """The N-gram teacher of a model directory's count tables (:mod:`ngram_teacher.rank`):
    words seen after the longest matching context first, most frequent first, then after
    shorter contexts; each backoff level one partition. Scores are counts."""

    partition = "order"
    scores = COUNT_SCORES
    online = True

    def __init__(self, model: NgramModel):
        self.model, self.order = model, model.order

    def describe(self, min_order: int = 1) -> dict:
        return {"kind": "count-ngram", "order": self.model.order, "min_order": min_order, "ties": "word id",
                "partition": self.partition, "model_tokens_sha256": self.model.meta["tokens_sha256"],
                "model_corpus_sha256": self.model.meta["corpus"]["sha256"]}

    def rank_into(self, stream, ids, orders, scores, gt_first, pad_id, min_order=1, threads=None, on_rows=None):
        rank_into(self.model.tables, stream, ids, orders, scores, gt_first, pad_id, threads, on_rows, min_order)

    def rank_runs(self, stream, runs, ids, orders, scores, gt_first, pad_id, min_order=1):
        stream, at = np.ascontiguousarray(stream, dtype=np.uint32), 0
        for start, stop in runs:
            rows = slice(at, at + stop - start)
            kernels.rank_rows(self.model.tables, stream, start, stop, ids.shape[1], gt_first, min_order, pad_id,
                              ids[rows], orders[rows], None if scores is None else scores[rows])
            at += stop - start


# ---- specs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TeacherKind:
    """How to make a teacher of one kind from the PATH of its spec."""

    load: Callable[..., Teacher]  # (path, model, k, **options) -> Teacher
    what: str  # what PATH names, for messages


def _count(path: Path, model: NgramModel, k: int, **options) -> CountTeacher:
    counts = NgramModel(path)
    if counts.meta["vocab_sha256"] != model.meta["vocab_sha256"]:
        raise NgteachError(f"count:{path}: its vocabulary is not that of {model.directory} (build both with the "
                           "same tokenizer and vocabulary settings)")
    return CountTeacher(counts)


def _arpa(path: Path, model: NgramModel, k: int, on_bytes=None, **options) -> Teacher:
    return load_arpa(path, model, k, on_bytes)


def _cloze(path: Path, model: NgramModel, k: int, **options) -> ClozeTeacher:
    return ClozeTeacher(_count(path, model, k).model)


def _infini(path: Path, model: NgramModel, k: int, **options) -> InfiniTeacher:
    return InfiniTeacher(_count(path, model, k).model)


def _kn_loo(path: Path, model: NgramModel, k: int, **options) -> LeaveOneOutTeacher:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiscountFallbackWarning)  # lmplz's fallback where a tiny corpus needs it
        return LeaveOneOutTeacher(_count(path, model, k).model, discount_fallback=LMPLZ_FALLBACK)


TEACHER_KINDS: dict[str, TeacherKind] = {
    "count": TeacherKind(_count, "model directory"),
    "arpa": TeacherKind(_arpa, "ARPA file"),
    "cloze": TeacherKind(_cloze, "model directory"),
    "infini": TeacherKind(_infini, "model directory"),
    "kn-loo": TeacherKind(_kn_loo, "model directory"),
}
NGRAM_KINDS = tuple(TEACHER_KINDS)  # the kinds of this package; the student package adds neural ones


def parse_teacher_spec(spec: str) -> tuple[str, Path]:
    """``KIND:PATH`` -> (kind, path), the kind one of :data:`TEACHER_KINDS`."""
    kind, _, path = spec.partition(":")
    if kind not in TEACHER_KINDS or not path:
        raise NgteachError(f"--teacher must be KIND:PATH with KIND one of {', '.join(TEACHER_KINDS)}, not {spec!r}")
    return kind, Path(path)


def load_teacher(spec: str, model: NgramModel, k: int = DEFAULT_K, **options) -> Teacher:
    """The teacher named by ``spec``, ranking ``model``'s vocabulary in rows of up to ``k``
    entries (``options`` go to its kind: ``device`` for neural teachers, ``on_bytes`` for
    ARPA files)."""
    kind, path = parse_teacher_spec(spec)
    if not path.exists():
        raise NgteachError(f"{spec}: no such {TEACHER_KINDS[kind].what}")
    return TEACHER_KINDS[kind].load(path, model, k, **options)


# ---- ranks, to a file or for a batch -----------------------------------------------------------

def ranks_header(teacher: Teacher, stream: np.ndarray, k: int, gt_first: bool, corpus: str,
                 with_scores: bool, min_order: int = 1) -> dict:
    """The header of a ranks file of ``stream`` by ``teacher``."""
    model = teacher.model
    id_dtype = id_dtype_for(len(model.vocab))
    return {
        "format_version": FORMAT_VERSION,
        "n_positions": int(len(stream)),
        "k": k,
        "id_dtype": id_dtype,
        "pad_id": int(np.iinfo(np.dtype(id_dtype)).max),
        "vocab_size": len(model.vocab),
        "vocab_sha256": model.meta["vocab_sha256"],
        "tokens_sha256": tokens_sha256(stream),
        "gt_first": gt_first,
        "corpus": corpus,
        "teacher": teacher.describe(min_order),
        "scores": teacher.scores if with_scores else None,
    }


def write_ranks(
    teacher: Teacher | NgramModel,
    stream: np.ndarray,
    target: str | os.PathLike | BinaryIO,
    k: int,
    gt_first: bool = True,
    with_scores: bool = False,
    corpus: str = "",
    threads: int | None = None,
    on_rows: Callable[[int], None] | None = None,
    min_order: int = 1,
) -> None:
    """Rank ``stream`` (ids of the teacher's vocabulary) into a ranks file at ``target`` (a
    path, or an open binary stream such as standard output), built aside and published
    only once complete. A model directory stands for its count teacher."""
    teacher = CountTeacher(teacher) if isinstance(teacher, NgramModel) else teacher
    check_k(k)
    check_min_order(min_order, teacher.order)
    header = ranks_header(teacher, stream, k, gt_first, corpus, with_scores, min_order)
    write_rank_file(header, target, lambda arrays: teacher.rank_into(
        stream, arrays["ids"], arrays["orders"], arrays.get("scores"), gt_first, header["pad_id"], min_order,
        threads, on_rows))


@dataclass
class Rows:
    """Rows of a teacher for some positions, as a ranks file holds them."""

    ids: np.ndarray  # [n, k]
    orders: np.ndarray  # [n, k] uint8, 0 = padding
    scores: np.ndarray  # [n, k] the teacher's scores (counts or natural-log probabilities)


def teacher_rows(teacher: Teacher, stream: np.ndarray, positions: np.ndarray, k: int, gt_first: bool = True,
                 min_order: int = 1) -> Rows:
    """The rows of ``positions`` (any order, repeats allowed) of ``stream``, exactly as a
    ranks file of ``stream`` by ``teacher`` with this ``k`` holds them (same dtypes, same
    padding), in one call of :meth:`Teacher.rank_runs` for the runs of consecutive positions."""
    id_dtype = np.dtype(id_dtype_for(len(teacher.model.vocab)))
    pad_id = int(np.iinfo(id_dtype).max)
    wanted = np.unique(np.asarray(positions, np.int64))
    ids = np.empty((len(wanted), k), id_dtype)
    orders = np.empty((len(wanted), k), np.uint8)
    scores = np.empty((len(wanted), k), np.dtype(teacher.scores["dtype"]))
    teacher.rank_runs(stream, position_runs(wanted), ids, orders, scores, gt_first, pad_id, min_order)
    where = np.searchsorted(wanted, np.asarray(positions, np.int64))
    return Rows(ids[where], orders[where], scores[where])
