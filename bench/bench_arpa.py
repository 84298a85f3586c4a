"""Benchmark the Kneser-Ney job, ``ngteach build`` + ``ngteach arpa``, and optionally KenLM's
``lmplz`` on the same text (the same job in one command).

The synthetic corpus comes from bench/make_corpus.py (cached in bench/data/, as for
bench_teacher.py), sampled from Tiny Shakespeare alone by default, so that it has no ``<unk>``
and both tools estimate exactly the same n-grams. Each measured run is a child process:

- ngteach: ``ngteach build`` then ``ngteach arpa``, the whole job, each timed with its peak RSS
  (``ru_maxrss``); one more run, ``python bench_arpa.py --child MODEL ...``, times the
  estimate's stages inside the process (not counted);
- lmplz: ``lmplz -o N -S MEMORY --skip_symbols < corpus > file.arpa`` (--skip_symbols matters
  only for a corpus with ``<unk>`` in it, e.g. ``--source wikitext-2/valid.txt``: KenLM refuses
  it otherwise, and drops it with the flag, so its model then differs slightly from ngteach's,
  which counts ``<unk>`` as a word). ``-S`` matters: lmplz grabs that much memory up front
  (its default is 80% of the RAM).

lmplz is KenLM's own, built from its sources in Release mode (a Debug build is several
times slower): ``git clone https://github.com/kpu/kenlm; cd kenlm; mkdir build; cd build;
cmake .. -DCMAKE_BUILD_TYPE=Release; make lmplz`` (Boost's program_options, system and
thread development files needed; the figures in the README came from commit 4cb443e).

With --repeat N the tools take turns N times and the medians are printed. The model and
ARPA files (in bench/data/arpa-<N>-o<ORDER>/) are removed at the end unless --keep. The
target (issue 22): ``ngteach build`` plus ``ngteach arpa`` at most half of ``lmplz``'s wall
time, with no more peak memory (checked when --lmplz is given).

    python bench/bench_arpa.py                                   # 20M tokens, order 4, once
    python bench/bench_arpa.py --repeat 3 --lmplz PATH/TO/lmplz
"""
from __future__ import annotations

import argparse
import json
import resource
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # the repo's own package, whatever the installed copy looks like
from bench_teacher import MB, NGTEACH, ensure_corpus, run_measured  # noqa: E402
from make_corpus import parse_count  # noqa: E402

TARGET_RATIO = 0.5  # build + arpa against lmplz -o N, the same peak memory or less


def child(model: Path, out: Path, order: int, report: Path) -> None:
    """Estimate and write in this process; the in-process times go to ``report`` (JSON)."""
    from ngram_teacher import NgramModel
    from ngram_teacher.arpa import write_arpa
    from ngram_teacher.kneser_ney import estimate_kneser_ney

    started = time.perf_counter()
    stages = {}
    tables = estimate_kneser_ney(NgramModel(model), order=order,
                                 progress=lambda stage: stages.__setitem__(stage, time.perf_counter() - started))
    estimated = time.perf_counter()
    estimate_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB
    write_arpa(tables, out)
    report.write_text(json.dumps({"estimate_s": estimated - started, "write_s": time.perf_counter() - estimated,
                                  "estimate_peak_mb": estimate_peak_mb, "stages_s": stages}))


def measure_stages(model: Path, work: Path, order: int) -> dict:
    """The estimate's stages, timed inside a child process (see :func:`child`)."""
    report = work / "child.json"
    run_measured([sys.executable, __file__, "--child", str(model), str(work / "stages.arpa"), str(order), str(report)])
    return json.loads(report.read_text())


def measure_lmplz(lmplz: Path, corpus: Path, work: Path, order: int, memory: str) -> dict:
    command = (f"exec {shlex.quote(str(lmplz))} -o {order} -S {shlex.quote(memory)} -T {shlex.quote(str(work))} "
               f"--skip_symbols < {shlex.quote(str(corpus))} > {shlex.quote(str(work / 'lmplz.arpa'))}")
    run = run_measured(["sh", "-c", command])  # exec: the measured process is lmplz itself
    run["arpa_mb"] = (work / "lmplz.arpa").stat().st_size / MB
    run["command"] = command.removeprefix("exec ")
    return run


def median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", default="20M", help="corpus size (20M, 5e6, ...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", default="tinyshakespeare/input.txt",
                        help="the text under ../shared/corpora the corpus is sampled from")
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--lmplz", type=Path, help="also time this lmplz binary")
    parser.add_argument("--lmplz-memory", default="1G", help="lmplz -S (default 1G)")
    parser.add_argument("--data", type=Path, default=BENCH / "data")
    parser.add_argument("--keep", action="store_true", help="keep the model directory and the ARPA files")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "OUT", "ORDER", "REPORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, out, order, report = args.child
        child(Path(model), Path(out), int(order), Path(report))
        return

    n_tokens = parse_count(args.tokens)
    args.data.mkdir(parents=True, exist_ok=True)
    corpus = ensure_corpus(n_tokens, args.seed, args.data, args.source)
    work = args.data / f"arpa-{n_tokens}-o{args.order}"
    work.mkdir(exist_ok=True)
    model, arpa = work / "model", work / "ngteach.arpa"
    print(f"{corpus.name}: {n_tokens:,} tokens, order {args.order}; each repeat runs ngteach build, ngteach arpa"
          + (", lmplz" if args.lmplz else ""), flush=True)
    ours, theirs = [], []
    for _ in range(args.repeat):
        build = run_measured(NGTEACH + ["build", str(corpus), "--order", str(args.order), "--out", str(model)])
        estimate = run_measured(NGTEACH + ["arpa", "--model", str(model), "--output", str(arpa)])
        ours.append({"build_s": build["s"], "arpa_s": estimate["s"], "s": build["s"] + estimate["s"],
                     "build_mb": build["peak_mb"], "arpa_mb": estimate["peak_mb"],
                     "peak_mb": max(build["peak_mb"], estimate["peak_mb"]), "file_mb": arpa.stat().st_size / MB})
        run = ours[-1]
        print(f"  ngteach: build {run['build_s']:.2f} s ({run['build_mb']:.0f} MB) + arpa {run['arpa_s']:.2f} s "
              f"({run['arpa_mb']:.0f} MB) = {run['s']:.2f} s, load {estimate['load']:.2f}", flush=True)
        if args.lmplz:
            theirs.append(measure_lmplz(args.lmplz, corpus, work, args.order, args.lmplz_memory))
            run = theirs[-1]
            print(f"  lmplz: {run['s']:.2f} s, cpu {run['cpu_s']:.2f} s, peak {run['peak_mb']:.0f} MB, "
                  f"load {run['load']:.2f}", flush=True)
    stages = measure_stages(model, work, args.order)

    print(f"\nmedian of {args.repeat}:")
    print(f"{'':>8} {'build s':>8} {'arpa s':>7} {'wall s':>7} {'peak MB':>8} {'ARPA MB':>8}")
    print(f"{'ngteach':>8} {median(ours, 'build_s'):>8.2f} {median(ours, 'arpa_s'):>7.2f} {median(ours, 's'):>7.2f} "
          f"{median(ours, 'peak_mb'):>8.0f} {median(ours, 'file_mb'):>8.0f}")
    if theirs:
        print(f"{'lmplz':>8} {'':>8} {'':>7} {median(theirs, 's'):>7.2f} {median(theirs, 'peak_mb'):>8.0f} "
              f"{median(theirs, 'arpa_mb'):>8.0f}   ({theirs[0]['command']})")
    print(f"  inside ngteach arpa (one more run): estimate {stages['estimate_s']:.2f} s (peak "
          f"{stages['estimate_peak_mb']:.0f} MB), write {stages['write_s']:.2f} s; stage ends (s from start): "
          + ", ".join(f"{k} {v:.2f}" for k, v in stages["stages_s"].items()))
    if theirs:
        ratio = median(ours, "s") / median(theirs, "s")
        met = ratio <= TARGET_RATIO and median(ours, "peak_mb") <= median(theirs, "peak_mb")
        print(f"  build + arpa: {ratio:.2f}x lmplz's time, {median(ours, 'peak_mb'):.0f} MB against "
              f"{median(theirs, 'peak_mb'):.0f} MB -> target (at most {TARGET_RATIO}x, no more memory) "
              f"{'met' if met else 'NOT met'}")
    else:
        print("  no --lmplz: the target (build + arpa at most half of lmplz's time) is not checked")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
