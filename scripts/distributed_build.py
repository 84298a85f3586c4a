"""Build one model from a corpus on many machines with Dask: one ``build`` per shard as a
task, then ``merge`` (README, *Counting on many machines*).

The corpus is cut at line ends into shard files in --work (a folder every worker can read
and write: a shared filesystem on a real cluster), each shard is built by a worker
(``ngram_teacher.build_model``), and the shard models are merged here
(``ngram_teacher.merge.merge_models``) into the model that building the whole corpus on
one machine gives. Without --scheduler, a local cluster of --workers processes runs the
tasks (what the tests use).

    pip install "dask[distributed]"
    python scripts/distributed_build.py corpus.txt --shards 8 --order 4 --out model
    python scripts/distributed_build.py corpus.txt --scheduler tcp://HOST:8786 --work /shared/tmp --out model
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ngram_teacher import build_model  # noqa: E402
from ngram_teacher.merge import merge_models  # noqa: E402


def cut_at_lines(corpus: Path, shards: int, work: Path) -> list[Path]:
    """``corpus`` in up to ``shards`` files of about equal size, each ending at a line end."""
    size = corpus.stat().st_size
    paths = []
    with open(corpus, "rb") as f:
        start = 0
        for i in range(shards):
            if start >= size:
                break
            f.seek(max(start, (i + 1) * size // shards))
            stop = size if i == shards - 1 else f.tell() + len(f.readline())  # to the end of that line
            paths.append(work / f"shard-{i:04d}.txt")
            f.seek(start)
            with open(paths[-1], "wb") as out:
                left = stop - start
                while left:
                    block = f.read(min(left, 1 << 24))
                    out.write(block)
                    left -= len(block)
            start = stop
    return paths


def build_shard(shard: str, order: int) -> str:
    """One task: the model directory of one shard, beside it."""
    return str(build_model(shard, shard.removesuffix(".txt") + ".model", order=order))


def distributed_build(corpus: Path, out: Path, shards: int, order: int, client, work: Path) -> Path:
    pieces = cut_at_lines(corpus, shards, work)
    models = client.gather(client.map(build_shard, [str(p) for p in pieces], order=order, pure=False))
    return merge_models(models, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--scheduler", help="A Dask scheduler's address (default: a local cluster).")
    parser.add_argument("--workers", type=int, default=2, help="Workers of the local cluster.")
    parser.add_argument("--work", type=Path, help="Folder for the shards, shared by the workers (default: a "
                                                  "temporary folder beside --out).")
    args = parser.parse_args()
    from dask.distributed import Client, LocalCluster

    work = Path(tempfile.mkdtemp(prefix=".shards.", dir=args.work or args.out.resolve().parent))
    try:
        if args.scheduler:
            client = Client(args.scheduler)
        else:
            client = Client(LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True))
        with client:
            distributed_build(args.corpus, args.out, args.shards, args.order, client, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"built {args.out} from {args.shards} shards", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
