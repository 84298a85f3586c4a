"""Benchmark the hf-causal teacher: positions/s of ``write_ranks`` (what ``ngteach rank
--teacher hf-causal:DIR`` runs, model loading left out), this working tree against a baseline
revision of student/neural_teachers.py, on the same stream.

The baseline (default c5e9eaa, the first neural teachers) is read from git, not kept in the
package: it ran one forward pass of up to 128 pieces per position and one more of context +
pieces per chained word. The first ``--baseline-positions`` of the stream are ranked by both;
the baseline's cost per position grows with its context until it reaches 128 pieces (about
100 words), so fewer positions flatter it. Its context rule differs (the last 128 pieces, not
strided windows), so the two only agree where both read every piece from the stream's start:
those rows are compared as a check (largest score difference, share of equal ids).

Nothing is downloaded: the models are random GPT-2s (``tiny``: the tests' shape, 1 layer of 32;
``small``: GPT-2 small's shape, 12 layers of 768), with a byte-level BPE trained on the first
lines of WikiText-2 valid (the shared corpora, ../shared/corpora), ranking the word vocabulary
of the same lines. A random model spreads its probability evenly, so it chains more words
than a trained one would. The machine may be shared: run with
OMP_NUM_THREADS=1 for figures that do not depend on the load.

    OMP_NUM_THREADS=1 python bench/bench_neural_teachers.py                  # tiny: 2000 positions, baseline 300
    OMP_NUM_THREADS=1 python bench/bench_neural_teachers.py --models small --positions 200 --baseline-positions 10
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))  # the repo's own package, whatever the installed copy looks like
import student  # noqa: E402, F401  (the neural teachers' specs)
from ngram_teacher import NgramModel, RankFile, build_model, load_teacher, write_ranks  # noqa: E402

SHAPES = {"tiny": dict(n_layer=1, n_embd=32, n_head=2), "small": dict(n_layer=12, n_embd=768, n_head=12)}
SHARED_CORPORA = REPO.parent / "shared" / "corpora"


def baseline_module(revision: str, directory: Path):
    """student/neural_teachers.py as it was at ``revision``, imported inside the student package."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:student/neural_teachers.py"],
                            capture_output=True, text=True, check=True).stdout
    path = directory / "baseline_neural_teachers.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("student.baseline_neural_teachers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def build_teacher(directory: Path, shape: str, lines: list[str], pieces: int) -> Path:
    """A random GPT-2 of ``shape`` with a byte-level BPE of ``pieces`` trained on ``lines``."""
    import tokenizers
    import transformers

    torch.manual_seed(0)
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(lines, vocab_size=pieces, special_tokens=["<|endoftext|>"])
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                                     eos_token="<|endoftext|>")
    end = tokenizer.eos_token_id
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=1024, bos_token_id=end,
                                     eos_token_id=end, **SHAPES[shape])
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def rank(baseline, teacher_dir: Path, model: NgramModel, stream: np.ndarray, k: int, out: Path) -> str:
    """Rank ``stream`` with the hf-causal teacher of this tree, or of the ``baseline``
    module (the progress callback must see every position): positions/s of wall and of CPU time."""
    spec, device = f"hf-causal:{teacher_dir}", torch.device("cpu")
    seen = []
    if baseline is None:
        teacher = load_teacher(spec, model, device=device)
        write = lambda: write_ranks(teacher, stream, out, k, with_scores=True, on_rows=seen.append)  # noqa: E731
    else:  # the baseline's own functions of then
        teacher = baseline.load_neural_teacher(spec, model, device)
        write = lambda: baseline.write_neural_ranks(model, teacher, stream, out, k, on_rows=seen.append)  # noqa: E731
    wall, cpu = time.perf_counter(), time.process_time()
    write()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert sum(seen) == len(stream), (sum(seen), len(stream))
    return (f"{len(stream):6,} positions in {wall:7.1f} s: {len(stream) / wall:8.1f} positions/s "
            f"({len(stream) / cpu:8.1f} per CPU second)")


def agreement(new: RankFile, old: RankFile, teacher_dir: Path, model: NgramModel, stream: np.ndarray,
              context: int) -> str:
    """How the two agree on the rows whose context is every piece from the start under both rules."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir, local_files_only=True)
    lengths = np.array([len(tokenizer.encode("\n" if w == "<eos>" else " " + w)) for w in model.vocab.tokens])
    last_piece = np.cumsum(lengths[stream]) - lengths[stream]  # each context's last piece, the start token 0
    rows = np.flatnonzero(last_piece[:len(old.ids)] < context)
    scores = np.abs(np.asarray(new.scores[rows]) - np.asarray(old.scores[rows]))
    equal = (np.asarray(new.ids[rows]) == np.asarray(old.ids[rows])).mean()
    return f"{len(rows)} rows with the same context: max |score difference| {scores.max():.2e}, ids equal {equal:.1%}"


def bench(shape: str, args, baseline, work: Path) -> None:
    lines = [line for line in (SHARED_CORPORA / "wikitext-2" / "valid.txt").read_text(encoding="utf-8")
             .split("\n")[:args.lines] if line.strip()]
    (work / "target.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    build_model(work / "target.txt", work / "model", order=1)
    model = NgramModel(work / "model")
    teacher_dir = build_teacher(work / shape, shape, lines, args.pieces)
    stream = np.asarray(model.tokens())[:args.positions]
    print(f"{shape}: GPT-2 {SHAPES[shape]}, {args.pieces} pieces; vocabulary {len(model.vocab):,} words of "
          f"{len(lines):,} lines; k={args.k}; {torch.get_num_threads()} threads")
    print(f"  new       {rank(None, teacher_dir, model, stream, args.k, work / 'new.bin')}")
    if args.baseline_positions:
        few = stream[:args.baseline_positions]
        print(f"  new       {rank(None, teacher_dir, model, few, args.k, work / 'new.bin')}")
        print(f"  {args.baseline:9} {rank(baseline, teacher_dir, model, few, args.k, work / 'old.bin')}")
        print("  " + agreement(RankFile(work / "new.bin"), RankFile(work / "old.bin"), teacher_dir, model, few,
                               baseline.PIECE_CONTEXT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny", help="comma-separated: tiny, small")
    parser.add_argument("--positions", type=int, default=2000, help="positions ranked by this tree")
    parser.add_argument("--baseline-positions", type=int, default=300, help="the first of them ranked by the "
                                                                             "baseline (0: none)")
    parser.add_argument("--baseline", default="c5e9eaa", help="git revision of the baseline")
    parser.add_argument("--lines", type=int, default=3000, help="WikiText-2 valid lines (tokenizer and vocabulary)")
    parser.add_argument("--pieces", type=int, default=5000, help="BPE vocabulary size")
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = baseline_module(args.baseline, Path(tmp)) if args.baseline_positions else None
        for shape in args.models.split(","):
            (Path(tmp) / shape).mkdir()
            bench(shape, args, baseline, Path(tmp) / shape)


if __name__ == "__main__":
    main()
