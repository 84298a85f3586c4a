"""Training throughput on a GPU: ``ngteach distill`` against a plain PyTorch LSTM loop.

For the small LSTM and the medium Transformer, in fp32 and in bf16 autocast, one
``ngteach distill --loss ce`` run of a fixed token budget on the corpus given (its
``summary.json`` tokens_per_s: training time only, evaluation excluded). The anchor is
the usual word-language-model loop (PyTorch's examples/word_language_model: embedding,
nn.LSTM, tied decoder, BPTT 35, batch 20, SGD, gradient clipping) at the small LSTM's
size on the same token stream, timed over the same budget after a warm-up.

    python bench/bench_gpu.py --corpus bench/data/corpus-2000000-s0.txt      # on a CUDA machine
    python bench/bench_gpu.py --device cpu --tokens 20000                    # a dry run anywhere
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

NGTEACH = [sys.executable, "-m", "ngteach"]
CONFIGS = [("lstm", "small"), ("transformer", "medium")]
PRECISIONS = ("fp32", "bf16")


def distill_rate(model: Path, out: Path, student: str, size: str, precision: str, tokens: int, device: str) -> float:
    subprocess.run([*NGTEACH, "distill", "-m", str(model), "--student", student, "--size", size, "--loss", "ce",
                    "--epochs", "1000", "--patience", "1000", "--max-tokens", str(tokens), "--checkpoint-every", "0",
                    "--device", device, "--precision", precision, "--out", str(out)], check=True, capture_output=True)
    return json.loads((out / "summary.json").read_text())["tokens_per_s"]


class PlainLSTM(nn.Module):
    """examples/word_language_model's RNNModel (LSTM, tied), the small LSTM's size."""

    def __init__(self, vocab: int, width: int = 256, dropout: float = 0.3):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, width)
        self.rnn = nn.LSTM(width, width, 1)
        self.decoder = nn.Linear(width, vocab)
        self.decoder.weight = self.encoder.weight

    def forward(self, x, hidden):
        output, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
        return self.decoder(self.drop(output)), hidden


def anchor_rate(stream: np.ndarray, vocab: int, precision: str, tokens: int, device: str) -> float:
    """Tokens/s of the plain loop over ``tokens`` training tokens (after 5 warm-up batches)."""
    torch.manual_seed(0)
    batch, bptt = 20, 35
    columns = torch.from_numpy(stream[: len(stream) // batch * batch].astype(np.int64)).view(batch, -1).t()
    columns = columns.contiguous().to(device)
    model = PlainLSTM(vocab).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=20)
    hidden, done, started, step = None, 0, None, 0
    while done < tokens:
        for i in range(0, columns.size(0) - 1 - bptt, bptt):
            if step == 5:
                torch.cuda.synchronize() if device.startswith("cuda") else None
                started, done = time.perf_counter(), 0
            x, y = columns[i:i + bptt], columns[i + 1:i + 1 + bptt]
            hidden = None if hidden is None else tuple(h.detach() for h in hidden)
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits, hidden = model(x, hidden)
                loss = nn.functional.cross_entropy(logits.float().view(-1, vocab), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            optimizer.step()
            done += x.numel()
            step += 1
            if started is not None and done >= tokens:
                break
    torch.cuda.synchronize() if device.startswith("cuda") else None
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="python-docs:train", help="A text file or a named split.")
    parser.add_argument("--tokens", type=int, default=400_000, help="Training tokens per measurement.")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        subprocess.run([*NGTEACH, "build", args.corpus, "--order", "1", "-o", str(model)], check=True,
                       capture_output=True)
        stream = np.load(model / "tokens.npy")
        vocab = len((model / "vocab.txt").read_text(encoding="utf-8").splitlines())
        print(f"{device_name}, torch {torch.__version__}: {args.corpus} ({len(stream):,} tokens, vocabulary "
              f"{vocab:,}), {args.tokens:,} training tokens per figure", flush=True)
        print(f"{'what':<34} {'fp32 tok/s':>12} {'bf16 tok/s':>12}", flush=True)
        anchor = {p: anchor_rate(stream, vocab, p, args.tokens, args.device) for p in PRECISIONS}
        print(f"{'plain PyTorch LSTM loop (anchor)':<34} {anchor['fp32']:>12,.0f} {anchor['bf16']:>12,.0f}",
              flush=True)
        for student, size in CONFIGS:
            rates = {p: distill_rate(model, Path(tmp) / f"{student}-{p}", student, size, p, args.tokens,
                                     args.device) for p in PRECISIONS}
            ratio = "" if student != "lstm" else f"   ({rates['fp32'] / anchor['fp32']:.2f}x / " \
                                                   f"{rates['bf16'] / anchor['bf16']:.2f}x the anchor)"
            print(f"{f'ngteach distill {student} {size}':<34} {rates['fp32']:>12,.0f} {rates['bf16']:>12,.0f}{ratio}",
                  flush=True)


if __name__ == "__main__":
    main()
