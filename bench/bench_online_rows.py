"""Online teachers against training: rows per second that the count and ARPA teachers
make for training batches (``ngteach distill --teacher``), next to the tokens per second
of a training step of the small LSTM with the rank loss, both on one core.

The corpus is WT2-mini's training text (WikiText-2 valid, from ../shared/corpora); the
teachers are its 4-gram counts and their Kneser-Ney estimate. Batches are read as
training reads them: 20 columns of 35 consecutive positions. Target: rows at least 20
times faster than training consumes them, so that making rows never holds a step up.

    python bench/bench_online_rows.py              # --batches 200 --train-batches 30
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the repo's own package, whatever the installed copy looks like
from ngram_teacher import NgramModel, build_model, load_teacher, teacher_rows  # noqa: E402
from ngram_teacher.arpa import write_arpa  # noqa: E402
from ngram_teacher.kneser_ney import estimate_kneser_ney  # noqa: E402
from student.data import OnlineRows, TeacherReader, bptt_batches  # noqa: E402
from student.model import build_student, student_config  # noqa: E402
from student.train import RunConfig, objective  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpora" / "wikitext-2" / "valid.txt"
COLUMNS, LENGTH, K = 20, 35, 20


def rows_per_second(teacher, stream: np.ndarray, batches: list) -> float:
    started = time.perf_counter()
    for batch in batches:
        teacher_rows(teacher, stream, batch.positions.reshape(-1).numpy(), K)
    return sum(batch.positions.numel() for batch in batches) / (time.perf_counter() - started)


def training_tokens_per_second(model: NgramModel, teacher, batches: list) -> float:
    """Forward, rank loss, backward and AdamW step of the small LSTM, the rows made
    beforehand (so only training is timed)."""
    config = RunConfig(loss="rank", student=student_config("lstm", "small"))
    student = build_student(config.student, len(model.vocab))
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr)
    reader = TeacherReader(OnlineRows(teacher, np.asarray(model.tokens()), K, "bench"))
    rows = [reader.rows(batch.positions) for batch in batches]
    hidden, started = None, time.perf_counter()
    for batch, teacher_batch in zip(batches, rows):
        logits, hidden = student(batch.inputs, hidden)
        loss, _ = objective(config, logits, batch.targets, teacher_batch)
        optimizer.zero_grad()
        loss.mean().backward()
        optimizer.step()
        hidden = tuple(h.detach() for h in hidden)
    return sum(batch.targets.numel() for batch in batches) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200, help="batches of rows made per teacher")
    parser.add_argument("--train-batches", type=int, default=30, help="training steps timed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_model(CORPUS, tmp / "model", order=4)
        model = NgramModel(tmp / "model")
        write_arpa(estimate_kneser_ney(model, 4), tmp / "kn4.arpa")
        stream = np.asarray(model.tokens())
        batches = list(bptt_batches(torch.from_numpy(stream.astype(np.int64)), COLUMNS, LENGTH))
        teachers = {"count4": load_teacher(f"count:{tmp / 'model'}", model, K),
                    "kn4 (ARPA)": load_teacher(f"arpa:{tmp / 'kn4.arpa'}", model, K)}
        training = training_tokens_per_second(model, teachers["count4"], batches[:args.train_batches])
        print(f"WT2-mini training text: {len(stream):,} tokens, vocabulary {len(model.vocab):,}; batches of "
              f"{COLUMNS} x {LENGTH} positions, k = {K}, one thread")
        print(f"  small LSTM training (rank loss): {training:12,.0f} tokens/s")
        for name, teacher in teachers.items():
            rate = rows_per_second(teacher, stream, batches[:args.batches])
            print(f"  {name:11} online rows:     {rate:12,.0f} rows/s  ({rate / training:,.0f}x training)")


if __name__ == "__main__":
    main()
