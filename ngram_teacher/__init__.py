"""ngram_teacher: token ids -> n-gram count tables -> top-k ranks (the teacher).

The stages are importable on their own: :func:`count_orders` (ids -> tables),
:func:`build_model` (corpus -> model directory), :func:`rank_into` /
:func:`write_ranks` (tables -> ranks), :class:`RankFile` (read a ranks file).
"""
from .count import OrderTable, count_orders
from .model import CountTables, NgramModel, build_model
from .rank import Candidate, continuations, rank_into, write_ranks
from .rankfile import RankFile, RankFileWriter

__all__ = [
    "Candidate",
    "CountTables",
    "NgramModel",
    "OrderTable",
    "RankFile",
    "RankFileWriter",
    "build_model",
    "continuations",
    "count_orders",
    "rank_into",
    "write_ranks",
]
