"""Cost of the rank loss: one training step with ``--loss rank`` (k = 20) against the same
step with cross-entropy, for the students the trainer builds.

A step is what the trainer does per batch: fetch the teacher's rows (rank only), forward,
objective, backward, clip, optimizer step. Both objectives run interleaved, one step each
in turn, so that a noisy machine slows both alike; the ratio of the medians is reported.
The data is synthetic (random tokens, random ranks shaped like a ranks file's rows), which
costs the same as real text.

    python bench/bench_losses.py                       # small LSTM, V = 33,278 (WikiText-2)
    python bench/bench_losses.py --student transformer --vocab 13777 --steps 30
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from student.data import GT_PARTITION, TeacherRows  # noqa: E402
from student.model import build_student, student_config  # noqa: E402
from student.train import RunConfig, objective  # noqa: E402


def fake_teacher_rows(targets: torch.Tensor, vocab: int, k: int, generator: torch.Generator) -> TeacherRows:
    """Ground truth first, then k-1 other words in three backoff orders, like a ranks row."""
    shape = (*targets.shape, k)
    ranks = torch.randint(0, vocab, shape, generator=generator)
    ranks[..., 0] = targets
    orders = torch.tensor([GT_PARTITION] + [3] * 3 + [2] * 6 + [1] * (k - 10))[:k].expand(shape).clone()
    return TeacherRows(ranks, orders, torch.ones(shape, dtype=torch.bool), None, True)


def step_seconds(config: RunConfig, model: nn.Module, optimizer, batch, teacher) -> float:
    inputs, targets = batch
    start = time.perf_counter()
    logits, _ = model(inputs)
    loss, _ = objective(config, logits, targets, teacher)
    optimizer.zero_grad(set_to_none=True)
    loss.mean().backward()
    nn.utils.clip_grad_norm_(model.parameters(), config.clip)
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="lstm")
    parser.add_argument("--size", default="small")
    parser.add_argument("--vocab", type=int, default=33278)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    student = student_config(args.student, args.size)
    model = build_student(student, args.vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, args.vocab, (args.batch_size, student.window + 1), generator=generator)
    batch = (tokens[:, :-1], tokens[:, 1:])
    teacher = fake_teacher_rows(batch[1], args.vocab, args.k, generator)
    configs = {"ce": RunConfig(loss="ce"), "rank": RunConfig(loss="rank", weight=0.1, smoothing=0.0)}
    times = {name: [] for name in configs}
    for step in range(args.steps + 3):
        for name, config in configs.items():
            seconds = step_seconds(config, model, optimizer, batch, teacher if name == "rank" else None)
            if step >= 3:  # warm-up
                times[name].append(seconds)
    ce, rank = statistics.median(times["ce"]), statistics.median(times["rank"])
    tokens_per_step = batch[1].numel()
    print(f"{args.student} {args.size}, vocabulary {args.vocab:,}, batch {args.batch_size} x {student.window}, "
          f"k = {args.k}, {args.steps} steps each, {torch.get_num_threads()} threads")
    print(f"  ce    {ce * 1000:8.1f} ms/step  {tokens_per_step / ce:10,.0f} tokens/s")
    print(f"  rank  {rank * 1000:8.1f} ms/step  {tokens_per_step / rank:10,.0f} tokens/s")
    print(f"  rank / ce = {rank / ce:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
