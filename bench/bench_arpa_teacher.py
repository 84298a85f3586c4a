"""Benchmark the ARPA teacher: write_arpa, read_arpa, and ranking with an ARPA model.

A synthetic corpus of --tokens tokens (bench/make_corpus.py, cached in bench/data/ as for
bench_teacher.py) is built into an ngteach model, and an order --order Kneser-Ney model is
estimated from it in memory (:func:`ngram_teacher.kneser_ney.estimate_kneser_ney`, as
lmplz estimates). Then, timed in this process (wall time, and CPU time: the machine may
be shared):

- write_arpa of that model (n-grams/s),
- read_arpa of the file written (lines/s),
- ArpaTeacher: indexing the model for the vocabulary, then rank_into of the whole corpus
  with k = --k and the ground truth first, into memory (positions/s).

    python bench/bench_arpa_teacher.py                 # 2M tokens (WikiText-2's size), order 4, k = 20
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # the repo's own package, whatever the installed copy looks like
from bench_teacher import ensure_corpus  # noqa: E402
from make_corpus import parse_count  # noqa: E402
from ngram_teacher import NgramModel, build_model  # noqa: E402
from ngram_teacher.arpa import read_arpa, write_arpa  # noqa: E402
from ngram_teacher.arpa_rank import ArpaTeacher  # noqa: E402
from ngram_teacher.kneser_ney import estimate_kneser_ney  # noqa: E402


def timed(what: str, call, amount: int, unit: str):
    started, cpu = time.perf_counter(), time.process_time()
    result = call()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"{what:<11} {seconds:6.2f} s {amount / seconds:11,.0f} {unit}/s   CPU {cpu:6.2f} s "
          f"{amount / cpu:11,.0f} {unit}/CPU-s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", default="2M")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(dir=BENCH / "data") as tmp:
        tmp = Path(tmp)
        build_model(ensure_corpus(parse_count(args.tokens), args.seed, BENCH / "data"), tmp / "model", order=1)
        model = NgramModel(tmp / "model")
        tables = estimate_kneser_ney(model, args.order)
        n_grams = sum(len(o.ngrams) for o in tables.orders)
        print(f"model: {len(model.tokens()):,} tokens, vocabulary {len(model.vocab):,}, n-grams "
              f"{' / '.join(f'{len(o.ngrams):,}' for o in tables.orders)}")
        timed("write_arpa", lambda: write_arpa(tables, tmp / "model.arpa"), n_grams, "n-grams")
        lines = sum(1 for _ in open(tmp / "model.arpa", "rb"))
        read = timed("read_arpa", lambda: read_arpa(tmp / "model.arpa"), lines, "lines")
        teacher = timed("index", lambda: ArpaTeacher(read, model.vocab, args.k), n_grams, "n-grams")
        stream = np.asarray(model.tokens())
        ids = np.empty((len(stream), args.k), np.uint16)
        orders = np.empty((len(stream), args.k), np.uint8)
        scores = np.empty((len(stream), args.k), np.float32)
        timed("rank_into", lambda: teacher.rank_into(stream, ids, orders, scores), len(stream), "positions")
        shares = np.bincount(orders[:, 1:].ravel(), minlength=args.order + 1) / orders[:, 1:].size
        print("share of the entries after the first by order: "
              + ", ".join(f"{m}: {share:.2f}" for m, share in enumerate(shares)))


if __name__ == "__main__":
    main()
