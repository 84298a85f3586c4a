"""The students: an LSTM language model and a causal Transformer, with named sizes.

Both map token ids [B, T] to next-token logits [B, T, V]; the LSTM also carries its
hidden state from one batch to the next (contiguous-stream BPTT), the Transformer sees
fixed windows. Sizes:

| size   | lstm                                        | transformer                          |
|--------|---------------------------------------------|--------------------------------------|
| tiny   | 1 x 64, tied                                | 2 layers, d 64, 2 heads, window 64   |
| small  | 1 x 256, tied, dropout 0.3                  | 4 layers, d 256, 4 heads, window 128 |
| medium | 2 x 650, tied, dropout 0.5 (Zaremba medium) | 8 layers, d 512, 8 heads, window 256 |
| large  | 3 layers, emb 400, hidden 1150 (AWD-LSTM)   | 16 layers, d 410, 10 heads, inner 2100, window 512 (Transformer-XL base) |
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor, nn

from corpora import NgteachError

STUDENTS = ("lstm", "transformer")
SIZES = ("tiny", "small", "medium", "large")


@dataclass(frozen=True)
class StudentConfig:
    """Everything that fixes a student's shape; saved with every run."""

    kind: str = "lstm"
    layers: int = 1
    width: int = 256  # LSTM hidden size / Transformer model dimension
    embedding: int = 256  # embedding size (LSTM; the Transformer uses width)
    heads: int = 4
    inner: int = 1024  # Transformer feed-forward size
    window: int = 128  # Transformer context (and BPTT length for the LSTM)
    dropout: float = 0.3  # on outputs of every layer
    dropout_embedding: float = 0.3
    tie_weights: bool = True


PRESETS: dict[tuple[str, str], StudentConfig] = {
    ("lstm", "tiny"): StudentConfig("lstm", 1, 64, 64, window=35, dropout=0.1, dropout_embedding=0.1),
    ("lstm", "small"): StudentConfig("lstm", 1, 256, 256, window=35, dropout=0.3, dropout_embedding=0.3),
    ("lstm", "medium"): StudentConfig("lstm", 2, 650, 650, window=35, dropout=0.5, dropout_embedding=0.5),
    ("lstm", "large"): StudentConfig("lstm", 3, 1150, 400, window=70, dropout=0.4, dropout_embedding=0.4),
    ("transformer", "tiny"): StudentConfig("transformer", 2, 64, 64, 2, 256, 64, 0.1, 0.1),
    ("transformer", "small"): StudentConfig("transformer", 4, 256, 256, 4, 1024, 128, 0.2, 0.2),
    ("transformer", "medium"): StudentConfig("transformer", 8, 512, 512, 8, 2048, 256, 0.2, 0.2),
    ("transformer", "large"): StudentConfig("transformer", 16, 410, 410, 10, 2100, 512, 0.1, 0.1),
}


def student_config(kind: str, size: str, **overrides) -> StudentConfig:
    """The preset for (kind, size) with explicit overrides (None = keep the preset)."""
    if kind not in STUDENTS:
        raise NgteachError(f"--student must be one of {', '.join(STUDENTS)}, not {kind!r}")
    if size not in SIZES:
        raise NgteachError(f"--size must be one of {', '.join(SIZES)}, not {size!r}")
    config = replace(PRESETS[kind, size], **{k: v for k, v in overrides.items() if v is not None})
    _check(config)
    return config


def _check(config: StudentConfig) -> None:
    for field in ("layers", "width", "embedding", "heads", "inner", "window"):
        if getattr(config, field) < 1:
            raise NgteachError(f"--{field} must be at least 1, not {getattr(config, field)}")
    for field in ("dropout", "dropout_embedding"):
        if not 0 <= getattr(config, field) < 1:
            raise NgteachError(f"--{field.replace('_', '-')} must be in [0, 1), not {getattr(config, field)}")
    if config.kind == "transformer" and config.width % config.heads:
        raise NgteachError(f"--width {config.width} is not divisible by --heads {config.heads}")


class LSTMStudent(nn.Module):
    """Embedding -> LSTM layers -> (projection) -> decoder, tied to the embedding."""

    def __init__(self, config: StudentConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(vocab_size, config.embedding)
        self.drop_in = nn.Dropout(config.dropout_embedding)
        self.lstm = nn.LSTM(config.embedding, config.width, config.layers, batch_first=True,
                            dropout=config.dropout if config.layers > 1 else 0.0)
        self.drop_out = nn.Dropout(config.dropout)
        tied_size = config.embedding if config.tie_weights else config.width
        self.project = nn.Linear(config.width, tied_size) if tied_size != config.width else nn.Identity()
        self.decoder = nn.Linear(tied_size, vocab_size)
        if config.tie_weights:
            self.decoder.weight = self.embed.weight
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, tokens: Tensor, state=None):
        """logits [B, T, V] and the state to pass with the next batch (detach it first)."""
        hidden, state = self.lstm(self.drop_in(self.embed(tokens)), state)
        return self.decoder(self.project(self.drop_out(hidden))), state


class TransformerStudent(nn.Module):
    """A GPT-style pre-norm causal Transformer over fixed windows, learned positions."""

    def __init__(self, config: StudentConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(vocab_size, config.width)
        self.position = nn.Embedding(config.window, config.width)
        self.drop_in = nn.Dropout(config.dropout_embedding)
        layer = nn.TransformerEncoderLayer(config.width, config.heads, config.inner, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.width)
        self.decoder = nn.Linear(config.width, vocab_size)
        if config.tie_weights:
            self.decoder.weight = self.embed.weight
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.position.weight, std=0.02)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, tokens: Tensor, state=None):
        """logits [B, T, V] for windows of T <= window tokens; there is no state to carry."""
        length = tokens.shape[1]
        positions = torch.arange(length, device=tokens.device)
        x = self.drop_in(self.embed(tokens) + self.position(positions))
        causal = torch.full((length, length), float("-inf"), device=tokens.device).triu(1)
        x = self.blocks(x, mask=causal, is_causal=True)
        return self.decoder(self.norm(x)), None


def build_student(config: StudentConfig, vocab_size: int) -> nn.Module:
    return (LSTMStudent if config.kind == "lstm" else TransformerStudent)(config, vocab_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def config_from_dict(values: dict) -> StudentConfig:
    known = {f.name for f in fields(StudentConfig)}
    return StudentConfig(**{k: v for k, v in values.items() if k in known})


def detach_state(state):
    """Cut the graph between batches (truncated BPTT)."""
    if state is None:
        return None
    return tuple(s.detach() for s in state)


def perplexity(mean_nll: float) -> float:
    return math.exp(min(mean_nll, 700.0))
