"""Benchmark the unbounded-order (infini) teacher against the count teacher, end to end.

On a synthetic corpus (bench/make_corpus.py, cached in bench/data/), each step a child
process (wall time, CPU time and peak RSS as bench_teacher.py measures them):

- count teacher: ``ngteach build --order 4`` then ``ngteach rank --k 20``;
- infini teacher: ``ngteach rank --teacher infini:MODEL --k 20`` on the model of an
  order-1 build (which only tokenizes), its index made on that first use, included.

Target (issue, at 20M tokens): the infini teacher's whole job (tokenizing build, index,
rank) within 5x the count teacher's build + rank. With --repeat N, the medians; the ratio is of the medians of one invocation.

    python bench/bench_infini.py                 # 20M tokens, once
    python bench/bench_infini.py --tokens 5M --repeat 3
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_teacher import NGTEACH, ensure_corpus, run_measured  # noqa: E402
from make_corpus import parse_count  # noqa: E402

TARGET_RATIO = 5.0


def bench_once(corpus: Path, work: Path, k: int) -> dict[str, dict]:
    count, base = work / "count", work / "base"
    steps = {
        "count build": [*NGTEACH, "build", str(corpus), "--order", "4", "-o", str(count)],
        "count rank": [*NGTEACH, "rank", "-m", str(count), "--k", str(k), "-o", str(work / "count.bin")],
        "tokenize": [*NGTEACH, "build", str(corpus), "--order", "1", "-o", str(base)],
        "infini index + rank": [*NGTEACH, "rank", "-m", str(base), "--teacher", f"infini:{base}", "--k", str(k),
                                "-o", str(work / "infini.bin")],
    }
    results = {}
    for name, cmd in steps.items():
        results[name] = run_measured(cmd)
        (work / "count.bin").unlink(missing_ok=True)  # one ranks file on disk at a time
        print(f"  {name:<22} {results[name]['s']:7.1f} s  {results[name]['cpu_s']:7.1f} cpu-s  "
              f"{results[name]['peak_mb']:7.0f} MB peak  (load {results[name]['load']:.1f})", flush=True)
    shutil.rmtree(count)
    shutil.rmtree(base)
    (work / "infini.bin").unlink()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="20M")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    n_tokens = parse_count(args.tokens)
    data = Path(__file__).resolve().parent / "data"
    data.mkdir(exist_ok=True)
    corpus = ensure_corpus(n_tokens, args.seed, data)
    runs = []
    with tempfile.TemporaryDirectory(dir=data) as tmp:
        for r in range(args.repeat):
            print(f"run {r + 1} of {args.repeat}, {n_tokens:,} tokens, k = {args.k}:", flush=True)
            runs.append(bench_once(corpus, Path(tmp), args.k))
    median = {name: statistics.median(run[name]["s"] for run in runs) for name in runs[0]}
    count = median["count build"] + median["count rank"]
    infini = median["tokenize"] + median["infini index + rank"]
    print(f"\ncount teacher (build --order 4 + rank): {count:.1f} s; infini teacher (tokenizing build + index + "
          f"rank): {infini:.1f} s; ratio {infini / count:.2f} (target <= {TARGET_RATIO:.0f})"
          + (f", medians of {args.repeat}" if args.repeat > 1 else ""))

if __name__ == "__main__":
    main()
