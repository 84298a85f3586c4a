"""The students: an LSTM language model and a causal Transformer, with named sizes.

Both map token ids [B, T] to next-token logits [B, T, V]. The LSTM carries its hidden
state from one batch to the next (contiguous-stream BPTT); the Transformer reads fixed
windows, or, with a memory (the large size), carries the previous segment's layer inputs
like Transformer-XL. Sizes:

| size   | lstm                                        | transformer                          |
|--------|---------------------------------------------|--------------------------------------|
| tiny   | 1 x 64, tied                                | 2 layers, d 64, 2 heads, window 64   |
| small  | 1 x 256, tied, dropout 0.3                  | 4 layers, d 256, 4 heads, window 128 |
| medium | 2 x 650, tied, dropout 0.5 (Zaremba medium) | 8 layers, d 512, 8 heads, window 256 |
| large  | 3 layers, emb 400, hidden 1150 (AWD-LSTM)   | 16 layers, d 410, 10 heads, inner 2100, segments of 150 with a memory of 150 (Transformer-XL base) |
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
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
    window: int = 128  # Transformer context or segment (and BPTT length for the LSTM)
    dropout: float = 0.3  # on outputs of every layer
    dropout_embedding: float = 0.3
    tie_weights: bool = True
    memory: int = 0  # Transformer-XL-like memory: tokens of the previous segment attended to
    # A bias on the output logits. The LSTM keeps it; the Transformer has none, as GPT-NeoX
    # has none, so that it exports exactly (student/export.py); runs saved before that have one.
    decoder_bias: bool = True


PRESETS: dict[tuple[str, str], StudentConfig] = {
    ("lstm", "tiny"): StudentConfig("lstm", 1, 64, 64, window=35, dropout=0.1, dropout_embedding=0.1),
    ("lstm", "small"): StudentConfig("lstm", 1, 256, 256, window=35, dropout=0.3, dropout_embedding=0.3),
    ("lstm", "medium"): StudentConfig("lstm", 2, 650, 650, window=35, dropout=0.5, dropout_embedding=0.5),
    ("lstm", "large"): StudentConfig("lstm", 3, 1150, 400, window=70, dropout=0.4, dropout_embedding=0.4),
    ("transformer", "tiny"): StudentConfig("transformer", 2, 64, 64, 2, 256, 64, 0.1, 0.1, decoder_bias=False),
    ("transformer", "small"): StudentConfig("transformer", 4, 256, 256, 4, 1024, 128, 0.2, 0.2, decoder_bias=False),
    ("transformer", "medium"): StudentConfig("transformer", 8, 512, 512, 8, 2048, 256, 0.2, 0.2, decoder_bias=False),
    ("transformer", "large"): StudentConfig("transformer", 16, 410, 410, 10, 2100, 150, 0.1, 0.1, memory=150,
                                            decoder_bias=False),
}


def student_config(kind: str, size: str, **overrides) -> StudentConfig:
    """The preset for (kind, size) with explicit overrides (None = keep the preset)."""
    _check_kind(kind)
    if size not in SIZES:
        raise NgteachError(f"--size must be one of {', '.join(SIZES)}, not {size!r}")
    config = replace(PRESETS[kind, size], **{k: v for k, v in overrides.items() if v is not None})
    check_student(config)
    return config


def _check_kind(kind: str) -> None:
    if kind not in STUDENTS:
        raise NgteachError(f"--student must be one of {', '.join(STUDENTS)}, not {kind!r}")


def check_student(config: StudentConfig) -> None:
    _check_kind(config.kind)
    for field in ("layers", "width", "embedding", "heads", "inner", "window"):
        if getattr(config, field) < 1:
            raise NgteachError(f"--{field} must be at least 1, not {getattr(config, field)}")
    if config.memory < 0:
        raise NgteachError(f"--memory must be 0 or more, not {config.memory}")
    for field in ("dropout", "dropout_embedding"):
        if not 0 <= getattr(config, field) < 1:
            raise NgteachError(f"--{field.replace('_', '-')} must be in [0, 1), not {getattr(config, field)}")
    if config.kind == "transformer" and (config.width % config.heads or config.width // config.heads % 2):
        raise NgteachError(f"--width {config.width} must split into --heads {config.heads} heads of even size")


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
    """A pre-norm causal Transformer with rotary positions.

    With ``memory = 0`` it reads fixed windows. With ``memory = M`` it is Transformer-XL
    like: every layer also attends to its own inputs for the M tokens before the segment,
    kept from the previous batch (the state, detached between batches like the LSTM's),
    so context runs across segments. Rotary positions make attention depend on relative
    distance only, as Transformer-XL's relative encodings do.
    """

    def __init__(self, config: StudentConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(vocab_size, config.width)
        self.drop_in = nn.Dropout(config.dropout_embedding)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width)
        self.decoder = nn.Linear(config.width, vocab_size, bias=config.decoder_bias)
        if config.tie_weights:
            self.decoder.weight = self.embed.weight
        nn.init.normal_(self.embed.weight, std=0.02)
        if config.decoder_bias:
            nn.init.zeros_(self.decoder.bias)

    def forward(self, tokens: Tensor, state=None):
        """logits [B, T, V], and the memory to pass with the next segment (None without)."""
        x = self.drop_in(self.embed(tokens))
        memory = [None] * len(self.blocks) if state is None else state
        kept = []
        for block, past in zip(self.blocks, memory):
            if self.config.memory:
                kept.append(x if past is None else torch.cat([past, x], 1)[:, -self.config.memory:])
            x = block(x, past)
        return self.decoder(self.norm(x)), tuple(kept) if self.config.memory else None


class _Block(nn.Module):
    def __init__(self, config: StudentConfig):
        super().__init__()
        self.heads = config.heads
        self.norm_attention = nn.LayerNorm(config.width)
        self.query = nn.Linear(config.width, config.width)
        self.key_value = nn.Linear(config.width, 2 * config.width)
        self.out = nn.Linear(config.width, config.width)
        self.norm_ff = nn.LayerNorm(config.width)
        self.ff = nn.Sequential(nn.Linear(config.width, config.inner), nn.GELU(), nn.Linear(config.inner, config.width))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, memory: Tensor | None) -> Tensor:
        h = self.norm_attention(x)
        context = h if memory is None else torch.cat([self.norm_attention(memory), h], 1)
        past = context.shape[1] - h.shape[1]
        q = _rotate(self._split(self.query(h)), torch.arange(past, context.shape[1], device=x.device))
        k, v = (self._split(t) for t in self.key_value(context).chunk(2, -1))
        k = _rotate(k, torch.arange(context.shape[1], device=x.device))
        # query t (at past + t) sees every key up to its own position
        visible = torch.arange(context.shape[1], device=x.device)[None, :] <= past + torch.arange(
            h.shape[1], device=x.device)[:, None]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=visible,
                                                  dropout_p=self.drop.p if self.training else 0.0)
        x = x + self.drop(self.out(attended.transpose(1, 2).flatten(2)))
        return x + self.drop(self.ff(self.norm_ff(x)))

    def _split(self, t: Tensor) -> Tensor:
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [B, heads, L, head size]


def _rotate(x: Tensor, positions: Tensor) -> Tensor:
    """Rotary position embedding: pairs of channels turned by position-dependent angles."""
    half = x.shape[-1] // 2
    frequencies = 10000.0 ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = positions.float()[:, None] * frequencies[None, :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], -1)


def build_student(config: StudentConfig, vocab_size: int) -> nn.Module:
    return (LSTMStudent if config.kind == "lstm" else TransformerStudent)(config, vocab_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def config_from_dict(values: dict) -> StudentConfig:
    known = {f.name for f in fields(StudentConfig)}
    return StudentConfig(**{k: v for k, v in values.items() if k in known})


def carries_state(config: StudentConfig) -> bool:
    """Whether batches must be contiguous columns whose state flows from one to the next."""
    return config.kind == "lstm" or config.memory > 0


def detach_state(state):
    """Cut the graph between batches (truncated BPTT)."""
    if state is None:
        return None
    return tuple(s.detach() for s in state)


def perplexity(mean_nll: float) -> float:
    return math.exp(min(mean_nll, 700.0))
