"""Sampling text from a trained student (``ngteach generate``)."""
from __future__ import annotations

import torch
from torch import nn

from corpora import NgteachError

from .model import StudentConfig


@torch.no_grad()
def sample(model: nn.Module, config: StudentConfig, prompt: list[int], length: int, before: int,
           temperature: float = 1.0, top_k: int = 0, seed: int = 0) -> list[int]:
    """``length`` token ids drawn one at a time after ``prompt`` (with the token ``before``,
    ``<eos>``, in front, as evaluation reads a text), each from the student's distribution
    divided by ``temperature`` and cut to its ``top_k`` most probable words (0: all). An
    LSTM carries its state from token to token; a Transformer reads the last ``window``
    tokens afresh for each. The same seed gives the same tokens."""
    if not temperature > 0:
        raise NgteachError(f"--temperature must be positive, not {temperature}")
    if length < 0 or top_k < 0:
        raise NgteachError(f"--length and --top-k must be 0 or more, not {length} and {top_k}")
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    tokens, drawn = [before, *prompt], []
    feed, state = tokens, None
    for _ in range(length):
        if config.kind == "lstm":
            logits, state = model(torch.tensor([feed]), state)
        else:
            logits, _ = model(torch.tensor([tokens[-config.window:]]))
        scores = logits[0, -1].float() / temperature
        if top_k:
            kept = scores.topk(min(top_k, len(scores)))
            scores = torch.full_like(scores, float("-inf")).scatter(0, kept.indices, kept.values)
        token = int(torch.multinomial(scores.softmax(-1), 1, generator=generator))
        tokens.append(token)
        drawn.append(token)
        feed = [token]
    return drawn
