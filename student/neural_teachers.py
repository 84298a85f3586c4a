"""Neural teachers: ranks files from a trained student (born-again) or a local Hugging
Face causal or masked LM, in the target model's word vocabulary (FORMATS.md, *How the
neural teachers rank*).

Every teacher turns blocks of positions into log-probabilities over the target
vocabulary, [positions, V] (-inf for words it did not score); :class:`NeuralTeacher`
keeps the top k of each row, with the true word first under ``gt_first``, as the ARPA
teacher does, for :func:`ngram_teacher.write_ranks`. Entries are sorted by probability,
each its own partition (``strict``), all of order 1: a neural teacher has no backoff.
They write ranks files only: scoring the whole vocabulary at every position costs far
more than reading a file's rows, so they do not rank batches online.
"""
from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from corpora import NgteachError
from corpora.text import EOS
from ngram_teacher import NgramModel
from ngram_teacher.model import file_sha256
from ngram_teacher.rankfile import LOGPROB_SCORES

from .train import RunConfig, load_student, run_model

KINDS = ("born-again", "hf-causal", "hf-masked")
# Rows of the born-again teacher read side by side (like evaluation's columns, but more,
# so that one forward pass fills a GPU).
STUDENT_COLUMNS = 64
PIECE_CONTEXT = 128  # subword pieces of context hf-masked sees on each side
POSITIONS_PER_BATCH = 32  # hf-masked
# hf-causal reads the stream in windows of this many pieces, advanced by half a window (FORMATS.md)
WINDOW_PIECES = 256
# Pieces of chained words appended to a window per forward pass of hf-causal: what bounds the
# memory of its logits [pieces, pieces vocabulary] and of its attention mask [pieces, window + pieces].
PIECES_PER_PASS = 512

# One block of teacher output: the stream positions and their log-probabilities [n, V].
Block = tuple[Tensor, Tensor]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class NeuralTeacher:
    """A teacher (:class:`ngram_teacher.Teacher`) of ``model``'s vocabulary: what it is (the
    header's ``teacher`` object) and how it scores a stream."""

    model: NgramModel
    description: dict
    blocks: Callable[[np.ndarray, int], Iterator[Block]]  # (stream, k): a teacher may prune what cannot enter a top k
    order = 1
    partition = "strict"
    scores = LOGPROB_SCORES
    online = False

    def describe(self, min_order: int = 1) -> dict:
        return {**self.description, "partition": self.partition}

    def rank_into(self, stream: np.ndarray, ids: np.ndarray, orders: np.ndarray, scores: np.ndarray | None,
                  gt_first: bool, pad_id: int, min_order: int = 1, threads: int | None = None,
                  on_rows: Callable[[int], None] | None = None) -> None:
        truth_of = torch.from_numpy(np.asarray(stream, np.int64))
        for positions, logp in self.blocks(stream, ids.shape[1]):
            top_ids, top_scores = top_entries(logp.float().cpu(), truth_of[positions], ids.shape[1], gt_first)
            real = torch.isfinite(top_scores)
            if gt_first:  # the true word is an entry even where its probability underflows
                real[:, 0] = True
            rows = positions.numpy()
            ids[rows] = np.where(real.numpy(), top_ids.numpy(), pad_id)
            orders[rows] = real.numpy().astype(np.uint8)
            if scores is not None:
                scores[rows] = top_scores.numpy()
            if on_rows:
                on_rows(len(rows))

    def rank_runs(self, *args, **kwargs) -> None:
        raise NgteachError(f"a {self.description['kind']} teacher ranks to a file only (ngteach rank --teacher "
                           "...), not batch by batch")


def load_neural_teacher(kind: str, path: Path, target: NgramModel, device: torch.device | None = None
                        ) -> NeuralTeacher:
    """The teacher of ``kind`` (``born-again``, ``hf-causal``, ``hf-masked``) at ``path``,
    ranking ``target``'s vocabulary (what :func:`ngram_teacher.load_teacher` calls for these kinds)."""
    device = device or default_device()
    if kind == "born-again":
        return born_again_teacher(path, target, device)
    return hf_teacher(kind, path, target, device)


# ---- writing ranks ---------------------------------------------------------------------

def top_entries(logp: Tensor, truth: Tensor, k: int, gt_first: bool) -> tuple[Tensor, Tensor]:
    """(ids, scores) [n, k] of the best entries of each row of ``logp`` [n, V], best first;
    with ``gt_first`` the true word first with its own score, then the k-1 best others.
    Rows with fewer than k finite scores end in score -inf (padding)."""
    if gt_first:
        first = logp.gather(1, truth[:, None])
        scores, ids = logp.scatter(1, truth[:, None], -math.inf).topk(min(k - 1, logp.shape[1]), dim=1)
        scores, ids = torch.cat([first, scores], 1), torch.cat([truth[:, None], ids], 1)
    else:
        scores, ids = logp.topk(min(k, logp.shape[1]), dim=1)
    missing = k - ids.shape[1]  # a vocabulary smaller than k
    return (torch.nn.functional.pad(ids, (0, missing)),
            torch.nn.functional.pad(scores, (0, missing), value=-math.inf))


# ---- born-again: a trained student ------------------------------------------------------

def born_again_teacher(run_dir: Path, target: NgramModel, device: torch.device,
                       columns: int = STUDENT_COLUMNS) -> NeuralTeacher:
    """The best checkpoint of a student run; its vocabulary (recorded with the run, or that of
    its model directory for runs made before it was) must be ``target``'s."""
    config = RunConfig.load(run_dir / "config.json")
    if (config.vocab_sha256 or run_model(config, run_dir).meta["vocab_sha256"]) != target.meta["vocab_sha256"]:
        raise NgteachError(f"{run_dir}: the student's vocabulary (of {config.model_dir} when the run was made) is "
                           f"not the ranked model's ({target.directory})")
    checkpoint = run_dir / "checkpoints" / "best.pt"
    student = load_student(run_dir, config, len(target.vocab))
    student.to(device).eval()
    description = {"kind": "born-again", "run": str(run_dir.resolve()), "checkpoint_sha256": file_sha256(checkpoint),
                   "student": config.student.kind, "columns": columns, "window": config.student.window}
    return NeuralTeacher(target, description, lambda stream, k: student_blocks(
        student, stream, target.vocab.eos_id, columns, config.student.window, device))


@torch.inference_mode()
def student_blocks(student: torch.nn.Module, stream: np.ndarray, before: int, columns: int, length: int,
                   device: torch.device) -> Iterator[Block]:
    """Full-softmax log-probabilities of every position, read as :func:`train.token_logprobs`
    reads a text (``columns`` parts side by side, ``length`` tokens at a time, the state
    carried; ``before`` first), but all columns in one batch."""
    n = len(stream)
    per_column = -(-n // columns)
    # inputs[c, j] is the token before position c * per_column + j; past the end, padding
    # that only ever follows the real positions of its column.
    inputs = torch.zeros(columns * per_column, dtype=torch.int64)
    inputs[:n] = torch.from_numpy(np.concatenate(([before], np.asarray(stream[:-1], np.int64))))
    inputs = inputs.view(columns, per_column)
    positions = torch.arange(columns * per_column).view(columns, per_column)
    state = None
    for start in range(0, per_column, length):
        logits, state = student(inputs[:, start:start + length].to(device), state)
        where = positions[:, start:start + length].reshape(-1)
        real = where < n
        yield where[real], logits.float().log_softmax(-1).flatten(0, 1)[real.to(device)]


# ---- Hugging Face teachers ------------------------------------------------------------------

def _transformers(kind: str):
    try:
        import transformers
    except ImportError:
        raise NgteachError(f"--teacher {kind} needs the optional 'transformers' package: "
                           "pip install ngteach[hf]") from None
    return transformers


def hf_teacher(kind: str, directory: Path, target: NgramModel, device: torch.device) -> NeuralTeacher:
    """A local Hugging Face model directory of the kind named (causal or masked LM),
    loaded offline, scoring ``target``'s words through its own tokenizer."""
    transformers = _transformers(kind)
    from transformers.models.auto import modeling_auto

    if not (directory / "config.json").is_file():
        raise NgteachError(f"{directory}: not a Hugging Face model directory (no config.json)")
    config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
    causal = kind == "hf-causal"
    accepted = (modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES if causal
                else modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES).values()
    architectures = config.architectures or []
    if not any(name in accepted for name in architectures):
        raise NgteachError(f"{directory}: a {'/'.join(architectures) or 'model of unknown architecture'}, not a "
                           f"{'causal' if causal else 'masked'} language model as --teacher {kind} needs")
    auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModelForMaskedLM
    try:
        network = auto.from_pretrained(directory, local_files_only=True).to(device).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as e:
        raise NgteachError(f"{directory}: cannot load the model or its tokenizer ({e})") from None
    pieces = WordPieces.of(tokenizer, target.vocab.tokens, causal)
    description = {"kind": kind, "model": str(directory.resolve()), "architecture": architectures[0],
                   "weights_sha256": _weights_sha256(directory)}
    if not causal:
        description["context_pieces"] = PIECE_CONTEXT
        return NeuralTeacher(target, description, lambda stream, k: masked_blocks(
            network, tokenizer, pieces, stream, k, device))
    window = causal_window(network, pieces)
    description |= {"window_pieces": window, "stride_pieces": window // 2}
    return NeuralTeacher(target, description, lambda stream, k: causal_blocks(
        network, tokenizer, pieces, stream, k, device, window, window // 2))


def _weights_sha256(directory: Path) -> str | None:
    """What identifies the weights: the sha256 of the first weights file found."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return file_sha256(directory / name)
    return None


@dataclass
class WordPieces:
    """The teacher's pieces of every target word: ``table`` [V, longest] (padded with 0),
    ``lengths`` [V]. A word is tokenized alone, after a space (so byte-level BPE gives
    its mid-line form); ``<eos>`` is a line break, or the tokenizer's separator where a
    line break has no piece (WordPiece)."""

    table: Tensor
    lengths: Tensor

    @classmethod
    def of(cls, tokenizer, words: list[str], causal: bool) -> "WordPieces":
        fallback = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.eos_token_id
        line_end = tokenizer.encode("\n", add_special_tokens=False) or [
            tokenizer.eos_token_id if causal else tokenizer.sep_token_id]
        encoded = [line_end if word == EOS else tokenizer.encode(" " + word, add_special_tokens=False) or [fallback]
                   for word in words]
        lengths = torch.tensor([len(p) for p in encoded])
        table = torch.zeros(len(words), int(lengths.max()), dtype=torch.int64)
        for w, p in enumerate(encoded):
            table[w, :len(p)] = torch.tensor(p)
        return cls(table, lengths)

    def stream(self, stream: np.ndarray) -> tuple[Tensor, Tensor]:
        """(pieces of the whole stream, where each position's pieces start)."""
        ids = torch.from_numpy(np.asarray(stream, np.int64))
        lengths = self.lengths[ids]
        starts = torch.cumsum(lengths, 0) - lengths
        keep = torch.arange(self.table.shape[1])[None, :] < lengths[:, None]
        return self.table[ids][keep], starts


def _batches_by_key(lengths: Tensor) -> Iterator[Tensor]:
    """Positions grouped by context length (or shape), at most POSITIONS_PER_BATCH at a time (only
    the positions near the stream's ends have short contexts)."""
    for length in torch.unique(lengths).tolist():
        positions = torch.nonzero(lengths == length)[:, 0]
        yield from positions.split(POSITIONS_PER_BATCH)


def causal_window(network, words: WordPieces) -> int:
    """WINDOW_PIECES, or less where the model's positions cannot hold a window and the pieces
    of a word chained after its last piece."""
    longest = words.table.shape[1]
    limit = getattr(network.config, "max_position_embeddings", None) or WINDOW_PIECES + longest
    window = min(WINDOW_PIECES, limit - longest + 1)
    if window < 2:
        raise NgteachError(f"the model reads {limit} positions: too few for words of {longest} pieces")
    return window


@torch.inference_mode()
def causal_blocks(network, tokenizer, words: WordPieces, stream: np.ndarray, k: int, device: torch.device,
                  window: int, stride: int) -> Iterator[Block]:
    """Exact full-word log-probabilities, chained over pieces, of every word that can
    enter the top k (FORMATS.md). The stream's pieces are read in windows of ``window``
    pieces starting every ``stride`` pieces, and each position is scored in the first window
    that holds the last piece of its context. One forward pass of a window gives the first
    piece of every word at all its positions; a multi-piece word is chained only if its
    first piece alone beats the k-th best single-piece word (a chain is never more probable
    than its first piece), so the top k of each row are exact."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    pieces, ends = words.stream(stream)
    pieces = torch.cat([torch.tensor([start]), pieces])  # position i's context ends at pieces[ends[i]]
    owner = torch.clamp((ends - window + stride) // stride, min=0)  # the first window holding pieces[ends[i]]
    truth = torch.from_numpy(np.asarray(stream, np.int64))
    for positions in _runs(owner):
        first = int(owner[positions[0]]) * stride
        offsets = ends[positions] - first  # where each context ends in the window
        # the window, cut after its last context (the stream's last window is shorter)
        next_pieces, cached = _read_window(network, pieces[first:first + int(offsets[-1]) + 1], offsets, device)
        yield positions, _chained_scores(network, cached, words, offsets, next_pieces, truth[positions], k, device)


def _runs(keys: Tensor) -> list[Tensor]:
    """The indices of each run of equal consecutive ``keys``."""
    return list(torch.arange(len(keys)).split(torch.unique_consecutive(keys, return_counts=True)[1].tolist()))


@dataclass
class CachedWindow:
    """The key-value cache of a forward pass over a window of ``length`` pieces."""

    cache: object
    length: int


def _read_window(network, inputs: Tensor, offsets: Tensor, device: torch.device) -> tuple[Tensor, CachedWindow]:
    """One forward pass over the window ``inputs``: the next-piece log-probabilities after
    each of its pieces ``offsets`` [n, pieces vocabulary], and its cache."""
    out = network(input_ids=inputs[None].to(device), use_cache=True)
    next_pieces = out.logits[0, offsets.to(device)].float().log_softmax(-1).cpu()
    return next_pieces, CachedWindow(out[_cache_argument(network)], len(inputs))


def _cache_argument(network) -> str:
    """The name of the key-value cache among the model's arguments and outputs (``cache``
    since transformers 5.2x, ``past_key_values`` before)."""
    return "cache" if "cache" in inspect.signature(network.forward).parameters else "past_key_values"


def _chained_scores(network, window: CachedWindow, words: WordPieces, offsets: Tensor, first: Tensor,
                    truth: Tensor, k: int, device: torch.device) -> Tensor:
    """[n, V] log-probabilities: every single-piece word, and the multi-piece words whose
    first piece beats the row's k-th best single-piece word (and the true word), -inf
    for the rest (they cannot enter the top k). Row j's context is the window up to its
    piece ``offsets[j]``; ``first`` [n, pieces vocabulary] is the piece after it."""
    logp = first[:, words.table[:, 0]]
    single = words.lengths == 1
    singles = logp[:, single]
    bound = singles.topk(k, dim=1).values[:, -1] if singles.shape[1] >= k else torch.full(
        (len(logp),), -math.inf)
    wanted = (~single)[None, :] & (logp > bound[:, None])
    wanted[torch.arange(len(truth)), truth] |= ~single[truth]
    logp[:, ~single] = -math.inf
    rows, chosen = torch.nonzero(wanted, as_tuple=True)
    logp[rows, chosen] = first[rows, words.table[chosen, 0]] + _continuations(
        network, window, words, offsets[rows], chosen, device)
    return logp


def _continuations(network, window: CachedWindow, words: WordPieces, offsets: Tensor, chosen: Tensor,
                   device: torch.device) -> Tensor:
    """log p(pieces 2.. of each chosen word | its context and the pieces before), the
    words appended after the window about PIECES_PER_PASS pieces at a time (a word is
    never split between passes)."""
    appended = words.lengths[chosen] - 1  # a word's pieces but the last are read, each predicting the next
    total = torch.empty(len(chosen))
    for now in _runs((torch.cumsum(appended, 0) - appended) // PIECES_PER_PASS):
        total[now] = _appended_pass(network, window, words, offsets[now], chosen[now], device)
    return total


def _appended_pass(network, window: CachedWindow, words: WordPieces, offsets: Tensor, chosen: Tensor,
                   device: torch.device) -> Tensor:
    """One forward pass over the pieces but the last of each chosen word, one after another
    after the cached window, with tree attention: each piece sees the window up to its
    context's end and the pieces of its own word up to itself, at the positions that follow
    its context. Returns each word's sum of log p(piece j + 1 | context, pieces 1..j)."""
    counts = words.lengths[chosen] - 1
    word = torch.repeat_interleave(torch.arange(len(chosen)), counts)  # of each appended piece
    order = torch.arange(len(word))
    depth = order - (torch.cumsum(counts, 0) - counts)[word]
    reach = offsets[word]
    sees_window = torch.arange(window.length)[None, :] <= reach[:, None]
    sees_own = (word[None, :] == word[:, None]) & (order[None, :] <= order[:, None])
    sees = torch.cat([sees_window, sees_own], 1)
    # an additive mask (0 or the dtype's minimum), which both eager and sdpa attention take as given
    mask = torch.zeros(sees.shape, dtype=network.dtype).masked_fill_(~sees, torch.finfo(network.dtype).min)
    logits = network(input_ids=words.table[chosen[word], depth][None].to(device),
                     attention_mask=mask[None, None].to(device), position_ids=(reach + 1 + depth)[None].to(device),
                     # a copy: a forward pass appends its own keys and values to the cache it is given
                     **{_cache_argument(network): copy.deepcopy(window.cache)}).logits[0].float()
    following = words.table[chosen[word], depth + 1].to(device)
    logp = logits.gather(1, following[:, None])[:, 0] - logits.logsumexp(-1)
    return torch.zeros(len(chosen)).index_add_(0, word, logp.cpu())


@torch.inference_mode()
def masked_blocks(network, tokenizer, words: WordPieces, stream: np.ndarray, k: int,
                  device: torch.device) -> Iterator[Block]:
    """Word log-probabilities from a masked LM: position i's word is replaced by L
    ``[MASK]`` slots between up to PIECE_CONTEXT pieces on each side, for each piece
    count L of the vocabulary; a word of L pieces scores the sum of its pieces' log
    probabilities at the L slots (read in one pass, not chained). Every word is scored,
    so ``k`` is not needed."""
    pieces, starts = words.stream(stream)
    ends = starts + words.lengths[torch.from_numpy(np.asarray(stream, np.int64))]
    left = torch.clamp(starts, max=PIECE_CONTEXT)
    right = torch.clamp(len(pieces) - ends, max=PIECE_CONTEXT)
    shape = left * (PIECE_CONTEXT + 1) + right  # positions with equal contexts batch together
    for positions in _batches_by_key(shape):
        logp = torch.full((len(positions), len(words.lengths)), -math.inf)
        for count in torch.unique(words.lengths).tolist():
            have = words.lengths == count
            slots = _masked_slots(network, tokenizer, pieces, starts[positions], ends[positions],
                                  int(left[positions[0]]), int(right[positions[0]]), count, device)
            logp[:, have] = slots.gather(2, words.table[have, :count].T[None].expand(len(positions), -1, -1)).sum(1)
        yield positions, logp


def _masked_slots(network, tokenizer, pieces: Tensor, starts: Tensor, ends: Tensor, left: int, right: int,
                  count: int, device: torch.device) -> Tensor:
    """Log-probabilities [n, count, pieces vocabulary] at ``count`` mask slots put in place
    of each position's word, with ``left``/``right`` pieces of context."""
    n = len(starts)
    before = pieces[starts[:, None] - left + torch.arange(left)]
    after = pieces[ends[:, None] + torch.arange(right)]
    special = lambda token: torch.full((n, 1), token)  # noqa: E731
    inputs = torch.cat([special(tokenizer.cls_token_id), before, special(tokenizer.mask_token_id).expand(n, count),
                        after, special(tokenizer.sep_token_id)], 1)
    logits = network(input_ids=inputs.to(device)).logits[:, 1 + left:1 + left + count]
    return logits.float().log_softmax(-1).cpu()
