"""ngram_teacher: token ids -> n-gram count tables -> top-k ranks (the teacher).

The stages are importable on their own: :func:`count_orders` (ids -> tables),
:func:`build_model` (corpus -> model directory), :func:`rank_into` (tables -> ranks),
:class:`RankFile` (read a ranks file). Teachers (:mod:`ngram_teacher.teachers`) share one
interface: :class:`CountTeacher`, :class:`ArpaTeacher`, :class:`ClozeTeacher` (two-sided),
:class:`InfiniTeacher` (unbounded order) and the neural ones the student
package adds are made from a spec by :func:`load_teacher`, write a ranks file with
:func:`write_ranks` or give the rows of a batch with :func:`teacher_rows`.
"""
from .arpa_rank import ArpaTeacher
from .cloze import ClozeTeacher
from .count import OrderTable, count_orders
from .infini import InfiniTeacher
from .model import CountTables, NgramModel, build_model
from .rank import Candidate, continuations, rank_into
from .rankfile import RankFile, RankFileWriter
from .teachers import CountTeacher, Rows, Teacher, load_teacher, teacher_rows, write_ranks

__all__ = [
    "ArpaTeacher",
    "Candidate",
    "ClozeTeacher",
    "CountTables",
    "CountTeacher",
    "InfiniTeacher",
    "NgramModel",
    "OrderTable",
    "RankFile",
    "RankFileWriter",
    "Rows",
    "Teacher",
    "build_model",
    "continuations",
    "count_orders",
    "load_teacher",
    "rank_into",
    "teacher_rows",
    "write_ranks",
]
