"""How good is each N-gram teacher's top-k at finding the word that comes next?

The model is built on the first lines of a text and the teachers rank the rest (the
held-out tail, so no teacher has seen the words it ranks) without the true word first.
Per teacher: how often the true word is among the k entries, its mean reciprocal rank (0
where it is absent), and where the entries come from: the share of entries per order
(the backoff level that supplied them; an infini entry of order L + 1 matched L tokens).
Then the Kneser-Ney teacher ranks its own training text, with and without each position's
own n-grams (kn-loo): how much it "knows the answer" there, against the held-out figure.

    python bench/teacher_quality.py                  # WT2-mini's training text (WikiText-2 valid)
    python bench/teacher_quality.py --text ../shared/corpora/tinyshakespeare/input.txt --k 20
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ngram_teacher import ArpaTeacher, NgramModel, build_model, load_teacher  # noqa: E402
from ngram_teacher.kneser_ney import LMPLZ_FALLBACK, estimate_kneser_ney  # noqa: E402

BUCKETS = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 8), (9, 255)]


def rank_tail(teacher, stream: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.empty((len(stream), k), np.uint32)
    orders = np.empty((len(stream), k), np.uint8)
    teacher.rank_into(stream, ids, orders, None, False, int(np.iinfo(np.uint32).max))
    return ids, orders


def quality(ids: np.ndarray, orders: np.ndarray, truth: np.ndarray) -> dict:
    found = (ids == truth[:, None]) & (orders > 0)
    hit = found.any(axis=1)
    place = found.argmax(axis=1)
    reciprocal = np.where(hit, 1.0 / (place + 1), 0.0)
    real = orders[orders > 0].astype(int)
    shares = {f"{lo}" if lo == hi else f"{lo}-{hi}": float(((real >= lo) & (real <= hi)).mean()) for lo, hi in BUCKETS}
    return {"top_k": float(hit.mean()), "mrr": float(reciprocal.mean()), "shares": shares}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default=str(REPO.parent / "shared/corpora/wikitext-2/valid.txt"))
    parser.add_argument("--tail", type=float, default=0.1, help="Share of the lines held out (the end).")
    parser.add_argument("--order", type=int, default=4, help="Order of the count and cloze teachers.")
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()

    lines = Path(args.text).read_text(encoding="utf-8").splitlines(keepends=True)
    cut = len(lines) - int(len(lines) * args.tail)
    with tempfile.TemporaryDirectory() as tmp:
        head, tail = Path(tmp) / "head.txt", Path(tmp) / "tail.txt"
        head.write_text("".join(lines[:cut]), encoding="utf-8")
        tail.write_text("".join(lines[cut:]), encoding="utf-8")
        model = NgramModel(build_model(head, Path(tmp) / "m", order=args.order))
        stream = model.tokenizer.encode_file(tail)
        print(f"{args.text}: a model of {len(model.tokens()):,} tokens (order {args.order}) ranks the last "
              f"{len(stream):,} tokens ({args.tail:.0%} of the lines), k = {args.k}, true word not first")
        header = f"{'teacher':<10} {'top-k':>7} {'MRR':>7} {'s':>6}  " + " ".join(
            f"{'o' + (f'{lo}' if lo == hi else f'{lo}-{hi}'):>6}" for lo, hi in BUCKETS)
        print(header)
        for kind in ("count", "cloze", "infini"):
            teacher = load_teacher(f"{kind}:{model.directory}", model, args.k)
            started = time.perf_counter()
            ids, orders = rank_tail(teacher, stream, args.k)
            seconds = time.perf_counter() - started
            q = quality(ids, orders, stream.astype(np.int64))
            print(f"{kind:<10} {q['top_k']:>7.1%} {q['mrr']:>7.3f} {seconds:>6.1f}  "
                  + " ".join(f"{share:>6.1%}" for share in q["shares"].values()))
        print("o<m>: share of the entries of order m (an infini entry of order L + 1 matched L tokens); "
              "s: seconds to rank")
        own = np.asarray(model.tokens())
        kneser_ney = ArpaTeacher(estimate_kneser_ney(model, args.order, LMPLZ_FALLBACK), model.vocab, args.k)
        print(f"\nKneser-Ney (order {args.order}) ranking: {'top-k':>7} {'MRR':>7}")
        for what, teacher, stream in (("the held-out tail", kneser_ney, stream),
                                      ("its own training text", kneser_ney, own),
                                      ("its own text, leave-one-out", load_teacher(f"kn-loo:{model.directory}", model,
                                                                                   args.k), own)):
            q = quality(*rank_tail(teacher, stream, args.k), stream.astype(np.int64))
            print(f"{what:<36} {q['top_k']:>7.1%} {q['mrr']:>7.3f}")


if __name__ == "__main__":
    main()
