"""Benchmark the bounded-memory build against the in-memory one, at 100M tokens by default.

Both ``ngteach build --order 4`` and ``ngteach build --order 4 --memory BUDGET`` run as
child processes on the same synthetic corpus (bench/make_corpus.py, cached in bench/data/),
measured as bench_teacher.py measures (wall, CPU, peak RSS, sampled peak RssAnon: the
anonymous memory, what the budget bounds; RSS also counts file pages the kernel may
drop). Then the two model directories are compared file by file (sha256).

    python bench/bench_bounded.py                              # 100M tokens, budget 500M
    python bench/bench_bounded.py --tokens 20M --memory 200M
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_teacher import NGTEACH, ensure_corpus, run_measured  # noqa: E402
from make_corpus import parse_count  # noqa: E402


def digests(folder: Path) -> dict[str, str]:
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "meta.json":
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 24):
                    digest.update(chunk)
            found[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="100M")
    parser.add_argument("--memory", default="500M")
    parser.add_argument("--order", type=int, default=4)
    args = parser.parse_args()
    data = Path(__file__).resolve().parent / "data"
    data.mkdir(exist_ok=True)
    corpus = ensure_corpus(parse_count(args.tokens), 0, data)
    work = data / "bounded"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        runs = {}
        for name, extra in (("in memory", []), (f"--memory {args.memory}", ["--memory", args.memory])):
            runs[name] = run_measured([*NGTEACH, "build", str(corpus), "--order", str(args.order), "-o",
                                       str(work / name.replace(" ", "_")), *extra])
            r = runs[name]
            print(f"build {name:<16} {r['s']:7.1f} s  {r['cpu_s']:7.1f} cpu-s  peak RSS {r['peak_mb']:6.0f} MB  "
                  f"peak anonymous {r['anon_mb']:6.0f} MB  (load {r['load']:.1f})", flush=True)
        same = digests(work / "in_memory") == digests(work / f"--memory_{args.memory}")
        print(f"{args.tokens} tokens, order {args.order}: the model directories are "
              f"{'identical' if same else 'DIFFERENT'} (every file but meta.json's corpus path)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
