"""Benchmark the N-gram teacher end to end: ``ngteach build --order 4`` and ``ngteach rank --k 20``.

For each corpus size, a synthetic corpus (bench/make_corpus.py, cached in bench/data/) is
built and ranked by the ``ngteach`` command, each run as a child process:

- wall time: around the child, interpreter start-up included;
- peak RSS: the child's ``ru_maxrss`` from ``os.wait4``. It counts file-backed pages too
  (the memory-mapped model and ranks file), so the peak of anonymous memory (``RssAnon``,
  the part that cannot be paged out to its file) is also sampled from /proc every 10 ms;
- rank positions/s: positions / wall time of the whole ``rank`` command (start-up, model
  loading and checksums included); ngteach's own figure (from the time after start-up) too;
- output sizes: the model directory and the ranks file.

Then the stages of ``build`` are timed in a fresh process that calls the library directly:
``WordTokenizer.train`` (read + tokenize), then ``count_orders`` order by order, with the
process's peak RSS after each; then one ``build_model`` call, split by its hooks, gives the
time spent writing the tables (np.save) and the checksums + meta.json. Start-up is the wall
time of ``ngteach --version`` (interpreter + imports). With --repeat N, the median of each
number is shown (per-run lines are printed as they finish). With several sizes, a last table
gives the growth exponent of each time between consecutive sizes and the extra memory per
extra token. Outputs go to bench/data/run-<N>/ and are removed after each size unless --keep.

Targets (issue, at 20M tokens): build <= 10 s and <= 1 GB peak RSS, rank >= 2M positions/s.
The comparison with KenLM's ``lmplz`` (the same Kneser-Ney job) is bench_arpa.py's. The
machine is shared: compare CPU seconds as well as wall time, and look at the load printed
with each run.

    python bench/bench_teacher.py                        # 20M tokens, once
    python bench/bench_teacher.py --repeat 3
    python bench/bench_teacher.py --sizes 5M,10M,20M,50M,100M
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))  # the repo's own package, whatever the installed copy looks like
from make_corpus import parse_count  # noqa: E402

NGTEACH = [shutil.which("ngteach", path=Path(sys.executable).parent) or shutil.which("ngteach") or "ngteach"]
TARGET_BUILD_S, TARGET_BUILD_MB, TARGET_RANK_POS_S = 10.0, 1000.0, 2e6
BYTES_PER_TOKEN_ON_DISK = 80  # corpus ~5 + model ~10 + ranks 3 x k=20 (u16 ids + u8 orders), with margin
MB = 1e6


# ---- measuring a child process ------------------------------------------------------------

def _status_kb(pid: int) -> dict[str, int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f) if v.strip().endswith("kB")}
    except (OSError, ValueError):
        return {}


def run_measured(cmd: list[str]) -> dict:
    """Run ``cmd``; wall time, CPU time, peak RSS (ru_maxrss) and sampled peak RssAnon, in MB."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        peak_anon, done = [0], threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                peak_anon[0] = max(peak_anon[0], _status_kb(proc.pid).get("RssAnon", 0))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr}")
    return {"s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss * 1024 / MB,
            "anon_mb": peak_anon[0] * 1024 / MB, "load": load, "stderr": stderr.strip()}


def code_version() -> str:
    """Commit of the repo and the tracked files changed since (the library is measured as it is on disk)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()
    changed = git("diff", "HEAD", "--name-only")
    return git("rev-parse", "--short", "HEAD") + (f" + uncommitted changes to {', '.join(changed.split())}"
                                                   if changed else "")


def disk_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / MB
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / MB


# ---- the stages of build, in-process (run in a child: python bench_teacher.py --stages CORPUS) --

def time_stages(corpus: Path, order: int, work: Path) -> dict:
    """Peak RSS and time of WordTokenizer.train, then of count_orders alone; then the times of a
    build_model call, split by its hooks (tokenize, orders counted + saved, checksums + meta)."""
    from corpora import WordTokenizer
    from ngram_teacher import build_model, count_orders

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB

    started = time.perf_counter()
    tokenizer, tokens = WordTokenizer.train(corpus)
    stages = {"tokenize_s": time.perf_counter() - started, "tokenize_peak_mb": peak_mb(), "order_s": []}
    started = last = time.perf_counter()
    for table in count_orders(tokens, len(tokenizer.vocab), order):
        stages["order_s"].append(time.perf_counter() - last)
        del table
        last = time.perf_counter()
    stages.update(count_s=time.perf_counter() - started, count_peak_mb=peak_mb())
    del tokenizer, tokens

    marks = {}

    def timed_tokenize(path, on_bytes=None):
        result = WordTokenizer.train(path, on_bytes=on_bytes)
        marks["tokenized"] = time.perf_counter()
        return result

    with tempfile.TemporaryDirectory(dir=work) as tmp:
        started = time.perf_counter()
        build_model(corpus, Path(tmp) / "model", order, timed_tokenize,
                    on_order=lambda m: marks.__setitem__("orders", time.perf_counter()))
        finished = time.perf_counter()
    stages.update(build_model_s=finished - started, build_tokenize_s=marks["tokenized"] - started,
                  orders_saved_s=marks["orders"] - marks["tokenized"], finish_s=finished - marks["orders"])
    return stages


def measure_stages(corpus: Path, order: int, work: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--stages", str(corpus), "--order", str(order),
                          "--data", str(work)], check=True, capture_output=True, text=True).stdout
    stages = json.loads(out)
    stages["startup_s"] = run_measured(NGTEACH + ["--version"])["s"]
    return stages


# ---- one corpus size ----------------------------------------------------------------------

def ensure_corpus(n_tokens: int, seed: int, data: Path, source: str | None = None) -> Path:
    """bench/data/corpus-<N>-s<seed>[-<corpus>].txt, made by make_corpus.py if missing; ``source``
    is one text under ../shared/corpora to sample from (e.g. tinyshakespeare/input.txt; default:
    make_corpus.py's mix)."""
    tag = f"-{Path(source).parts[0]}" if source else ""
    path = data / f"corpus-{n_tokens}-s{seed}{tag}.txt"
    if not path.exists():
        sources = ["--source", str(BENCH.parent.parent / "shared" / "corpora" / source)] if source else []
        subprocess.run([sys.executable, str(BENCH / "make_corpus.py"), "--tokens", str(n_tokens),
                        "--seed", str(seed), "--out", str(path)] + sources, check=True)
    return path


def bench_once(corpus: Path, n_tokens: int, work: Path, args) -> dict:
    model, ranks = work / "model", work / "ranks.bin"
    shutil.rmtree(model, ignore_errors=True)
    ranks.unlink(missing_ok=True)
    build = run_measured(NGTEACH + ["build", str(corpus), "--order", str(args.order), "--out", str(model)])
    rank_cmd = NGTEACH + ["rank", "--model", str(model), "--k", str(args.k), "-o", str(ranks)]
    rank = run_measured(rank_cmd + (["--threads", str(args.threads)] if args.threads else []))
    stages = measure_stages(corpus, args.order, work)
    row = {
        "tokens": n_tokens, "build_s": build["s"], "build_cpu_s": build["cpu_s"], "build_mb": build["peak_mb"],
        "build_anon_mb": build["anon_mb"], "rank_s": rank["s"], "rank_cpu_s": rank["cpu_s"],
        "rank_pos_s": n_tokens / rank["s"], "rank_mb": rank["peak_mb"], "rank_anon_mb": rank["anon_mb"],
        "model_mb": disk_mb(model), "ranks_mb": disk_mb(ranks),
        "startup_s": stages["startup_s"], "tokenize_s": stages["tokenize_s"], "count_s": stages["count_s"],
        "tokenize_peak_mb": stages["tokenize_peak_mb"], "count_peak_mb": stages["count_peak_mb"],
        "build_model_s": stages["build_model_s"], "finish_s": stages["finish_s"],
        "count_write_s": stages["orders_saved_s"],
        "rank_pos_s_cli": float(re.search(r"\(([\d,]+) positions/s\)", rank["stderr"])[1].replace(",", "")),
    }
    row.update({f"order{m}_s": s for m, s in enumerate(stages["order_s"], start=1)})
    for name, run in (("build", build), ("rank", rank)):
        print(f"  {n_tokens / 1e6:g}M {name}: {run['s']:.2f} s, cpu {run['cpu_s']:.2f} s, load {run['load']:.2f}, "
              f"peak {run['peak_mb']:.0f} MB, anon {run['anon_mb']:.0f} MB | {run['stderr'].splitlines()[-1]}",
              flush=True)
    return row


def bench_size(n_tokens: int, args) -> dict:
    args.data.mkdir(parents=True, exist_ok=True)
    free_mb = shutil.disk_usage(args.data).free / MB
    if free_mb < n_tokens * BYTES_PER_TOKEN_ON_DISK / MB:
        raise SystemExit(f"{args.data}: {free_mb:,.0f} MB free, {n_tokens:,} tokens need about "
                         f"{n_tokens * BYTES_PER_TOKEN_ON_DISK / MB:,.0f} MB")
    corpus = ensure_corpus(n_tokens, args.seed, args.data)
    work = args.data / f"run-{n_tokens}"
    work.mkdir(exist_ok=True)
    try:
        runs = [bench_once(corpus, n_tokens, work, args) for _ in range(args.repeat)]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


# ---- reporting ----------------------------------------------------------------------------

def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.rjust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |")
    print()


def report(results: list[dict], order: int, k: int) -> None:
    tok = lambda r: f"{r['tokens'] / 1e6:g}M"  # noqa: E731
    print(f"\n## build --order {order}, rank --k {k} (cpu = user + sys of the child, all threads; "
          "peak = ru_maxrss; anon = sampled peak RssAnon; MB = 1e6 bytes)\n")
    print_table(["tokens", "build s", "build cpu s", "build peak MB", "build anon MB", "rank s", "rank cpu s",
                 "rank pos/s", "rank pos/s (ngteach's own)", "rank peak MB", "rank anon MB", "model dir MB",
                 "ranks file MB"],
                [[tok(r), f"{r['build_s']:.2f}", f"{r['build_cpu_s']:.2f}", f"{r['build_mb']:.0f}",
                  f"{r['build_anon_mb']:.0f}", f"{r['rank_s']:.2f}", f"{r['rank_cpu_s']:.2f}",
                  f"{r['rank_pos_s'] / 1e6:.2f}M", f"{r['rank_pos_s_cli'] / 1e6:.2f}M",
                  f"{r['rank_mb']:.0f}", f"{r['rank_anon_mb']:.0f}", f"{r['model_mb']:.0f}", f"{r['ranks_mb']:.0f}"]
                 for r in results])

    print("## Against the targets (<= 1 passes for time/memory, >= 1 for rank speed)\n")
    verdict = lambda ok: "ok" if ok else "MISS"  # noqa: E731
    print_table(["tokens", "build s / 10 s", "build MB / 1000 MB", "rank pos/s / 2M"],
                [[tok(r), f"{r['build_s'] / TARGET_BUILD_S:.2f} {verdict(r['build_s'] <= TARGET_BUILD_S)}",
                  f"{r['build_mb'] / TARGET_BUILD_MB:.2f} {verdict(r['build_mb'] <= TARGET_BUILD_MB)}",
                  f"{r['rank_pos_s'] / TARGET_RANK_POS_S:.2f} {verdict(r['rank_pos_s'] >= TARGET_RANK_POS_S)}"]
                 for r in results])

    print("## Where build time goes (in-process, library calls: tokenize = WordTokenizer.train, count = "
          "count_orders, per order; build_model split by its hooks: count+write = vocabulary + tokens.npy + "
          "count_orders + np.save of the tables, checksums = tokens/corpus sha256 + meta.json)\n")
    orders = [f"order{m}_s" for m in range(1, order + 1)]
    print_table(["tokens", "ngteach build s", "start-up s", "build_model s", "tokenize s", "count s",
                 *(f"order {m} s" for m in range(1, order + 1)), "count+write s", "checksums s",
                 "tokenize peak MB", "count peak MB"],
                [[tok(r), f"{r['build_s']:.2f}", f"{r['startup_s']:.2f}", f"{r['build_model_s']:.2f}",
                  f"{r['tokenize_s']:.2f}", f"{r['count_s']:.2f}", *(f"{r.get(o, math.nan):.2f}" for o in orders),
                  f"{r['count_write_s']:.2f}", f"{r['finish_s']:.2f}", f"{r['tokenize_peak_mb']:.0f}",
                  f"{r['count_peak_mb']:.0f}"] for r in results])

    if len(results) > 1:
        print("## Growth between consecutive sizes (exponent b in time ~ tokens^b: 1 = linear; "
              "marginal memory = extra bytes per extra token)\n")
        rows = []
        for a, b in zip(results, results[1:]):
            slope = lambda key: math.log(b[key] / a[key]) / math.log(b["tokens"] / a["tokens"])  # noqa: E731
            marginal = lambda key: (b[key] - a[key]) * MB / (b["tokens"] - a["tokens"])  # noqa: E731
            rows.append([f"{tok(a)} -> {tok(b)}", f"{slope('build_s'):.2f}", f"{slope('tokenize_s'):.2f}",
                         f"{slope('count_s'):.2f}", f"{slope('rank_s'):.2f}", f"{slope('rank_cpu_s'):.2f}",
                         f"{marginal('build_mb'):.1f}",
                         f"{marginal('build_anon_mb'):.1f}", f"{marginal('rank_mb'):.1f}",
                         f"{marginal('rank_anon_mb'):.1f}"])
        print_table(["tokens", "build time b", "tokenize b", "count b", "rank time b", "rank cpu b",
                     "build peak B/token", "build anon B/token", "rank peak B/token", "rank anon B/token"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20M", help="comma-separated corpus sizes in tokens (5M,10M,20M,...)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the median is reported")
    parser.add_argument("--keep", action="store_true", help="keep the model and ranks file of each size")
    parser.add_argument("--threads", type=int, default=None, help="ngteach rank --threads (default: all cores)")
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--data", type=Path, default=BENCH / "data", help="corpora and outputs go here")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--stages", type=Path, help=argparse.SUPPRESS)  # internal: time the stages of CORPUS
    args = parser.parse_args(argv)
    if args.stages:
        print(json.dumps(time_stages(args.stages, args.order, args.data)))
        return
    sizes = [parse_count(s) for s in args.sizes.split(",")]
    print(f"ngteach benchmark: sizes {args.sizes}, repeat {args.repeat}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\ncode: {code_version()}", flush=True)
    results = [bench_size(n, args) for n in sizes]
    report(results, args.order, args.k)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
