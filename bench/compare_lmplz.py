"""Compare ngteach's Kneser-Ney estimate with KenLM's own ``lmplz`` on the same text.

    python bench/compare_lmplz.py /path/to/lmplz                     # WikiText-2 valid, first 2000 lines, order 4
    python bench/compare_lmplz.py /path/to/lmplz --lines 0 --order 5 \
        --corpus ../shared/corpora/tinyshakespeare/input.txt
    python bench/compare_lmplz.py /path/to/lmplz --prune 0 1 2      # lmplz --prune 0 1 2 and arpa --prune

The first ``--lines`` lines of the corpus are written to a temporary file, with one change:
lmplz refuses the word ``<unk>`` in its input (or, with --skip_symbols, drops it), while
ngteach counts it like any word, so ``<unk>`` tokens are renamed to a plain word
(``--unk-as``) for both tools. ngteach builds a model directory from that file and
estimates with :func:`ngram_teacher.kneser_ney.estimate_kneser_ney`; ``lmplz -o ORDER``
reads the same file. The script prints, per order, whether both ARPA files have the same
n-grams, and the largest differences of log10 probabilities and backoffs; it exits with
status 1 when a set differs or a difference exceeds --tolerance. Without an lmplz binary
at the given path it prints why and exits 0 (skipped). How to build lmplz: bench_arpa.py's
docstring. ``LMPLZ=PATH pytest tests/test_kneser_ney.py`` runs these comparisons as tests.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))  # the repo's own package, whatever the installed copy looks like
from ngram_teacher import NgramModel, build_model  # noqa: E402
from ngram_teacher.arpa import write_arpa  # noqa: E402
from ngram_teacher.kneser_ney import LMPLZ_FALLBACK, estimate_kneser_ney  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "wikitext-2" / "valid.txt"


def read_arpa_entries(path: Path) -> list[dict[str, tuple[float, float]]]:
    """Per order, ``{"w1 w2 ...": (log10 prob, log10 backoff or 0)}`` of an ARPA file."""
    orders: list[dict[str, tuple[float, float]]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.endswith("-grams:") and line.startswith("\\"):
                orders.append({})
            elif orders and line and not line.startswith("\\"):
                fields = line.split("\t")
                backoff = float(fields[2]) if len(fields) > 2 else 0.0
                orders[-1][fields[1]] = (float(fields[0]), backoff)
    return orders


def compare(ours: list[dict], theirs: list[dict]) -> list[dict]:
    """Per order: n-gram counts, set equality, max |diff| of log10 probs and backoffs."""
    rows = []
    for m, (a, b) in enumerate(zip(ours, theirs), start=1):
        common = a.keys() & b.keys()
        rows.append({
            "order": m, "ours": len(a), "lmplz": len(b), "same_set": a.keys() == b.keys(),
            "only_ours": sorted(a.keys() - b.keys())[:3], "only_lmplz": sorted(b.keys() - a.keys())[:3],
            "prob": max((abs(a[g][0] - b[g][0]) for g in common), default=0.0),
            "backoff": max((abs(a[g][1] - b[g][1]) for g in common), default=0.0),
        })
    if len(ours) != len(theirs):
        rows.append({"order": "count", "ours": len(ours), "lmplz": len(theirs), "same_set": False})
    return rows


def prepare_text(corpus: Path, lines: int, unk_as: str, out: Path) -> None:
    with open(corpus, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as w:
        for i, line in enumerate(f):
            if lines and i >= lines:
                break
            w.write(" ".join(unk_as if t == "<unk>" else t for t in line.split()) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lmplz", type=Path, help="the lmplz binary")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--lines", type=int, default=2000, help="first lines of the corpus (0: all)")
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--discount-fallback", action="store_true", help="pass --discount_fallback to both")
    parser.add_argument("--unk-as", default="UNKWORD", help="what <unk> tokens are renamed to")
    parser.add_argument("--memory", default="1G", help="lmplz -S (its default takes 80%% of the RAM)")
    parser.add_argument("--prune", type=int, nargs="+", help="pruning thresholds, given to both")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--keep", type=Path, help="keep the text and both ARPA files in this folder")
    args = parser.parse_args()
    if not (args.lmplz.is_file() and args.lmplz.stat().st_mode & 0o111):
        print(f"skipped: no lmplz binary at {args.lmplz}")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        text, ours, theirs = work / "text.txt", work / "ngteach.arpa", work / "lmplz.arpa"
        prepare_text(args.corpus, args.lines, args.unk_as, text)
        build_model(text, work / "model", order=args.order)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            tables = estimate_kneser_ney(NgramModel(work / "model"),
                                         discount_fallback=LMPLZ_FALLBACK if args.discount_fallback else None,
                                         prune=args.prune)
        write_arpa(tables, ours)
        command = [str(args.lmplz), "-o", str(args.order), "-S", args.memory, "-T", str(work)]
        command += ["--discount_fallback"] if args.discount_fallback else []
        command += ["--prune", *map(str, args.prune)] if args.prune else []
        with open(text, "rb") as stdin, open(theirs, "wb") as stdout:
            done = subprocess.run(command, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
        if done.returncode != 0:
            print(done.stderr.decode(errors="replace"), file=sys.stderr)
            return 1
        rows = compare(read_arpa_entries(ours), read_arpa_entries(theirs))

    part = f"first {args.lines} lines" if args.lines else "all lines"
    print(f"{' '.join(command)} < {args.corpus} ({part}, <unk> -> {args.unk_as})")
    print(f"{'order':>5} {'ngteach':>9} {'lmplz':>9} {'same set':>8} {'max |dprob|':>12} {'max |dbackoff|':>14}")
    ok = True
    for row in rows:
        if "prob" not in row:
            print(f"different numbers of orders: ngteach {row['ours']}, lmplz {row['lmplz']}")
            ok = False
            continue
        print(f"{row['order']:>5} {row['ours']:>9,} {row['lmplz']:>9,} {str(row['same_set']):>8} "
              f"{row['prob']:>12.2e} {row['backoff']:>14.2e}")
        if not row["same_set"]:
            print(f"      only ngteach: {row['only_ours']}  only lmplz: {row['only_lmplz']}")
        ok &= row["same_set"] and row["prob"] <= args.tolerance and row["backoff"] <= args.tolerance
    print("agree" if ok else f"DIFFER (tolerance {args.tolerance:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
