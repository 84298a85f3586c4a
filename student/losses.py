"""Losses that learn from a teacher's ranks, usable from any training loop.

The building blocks (:func:`plackett_luce`, :func:`kl_topk`) take the student's ``logits``
[..., V] and the teacher's ranked candidates ``ranks`` [..., k] (int64 word ids, best
first) and return the loss of each position [...] (no reduction), so callers weight, mask
and average as they like. The objectives of ``ngteach distill --loss NAME`` are built from
them, one function per name with one signature (:data:`OBJECTIVES`, as allRank's losses
are): ``(logits, targets, teacher, terms) -> (loss, cross-entropy)`` per position.

Inputs in float64 are computed in float64 (so ``torch.autograd.gradcheck`` applies); any
narrower input, under autocast too, in float32, whose range the sums need.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from .data import TeacherRows


def _wide(x: Tensor) -> Tensor:
    """``x`` in float64 if it is, else in float32."""
    return x if x.dtype == torch.float64 else x.float()


def plackett_luce(logits: Tensor, ranks: Tensor, partitions: Tensor | None = None,
                  mask: Tensor | None = None) -> Tensor:
    """Plackett-Luce negative log-likelihood of the ranking, summed over its entries.

    ``partitions`` [..., k] gives each entry a partition id; adjacent entries with the same
    id form one partition of equally preferred words (the paper's partitioned preference,
    e.g. the backoff orders of a ranks file); None makes every entry its own partition.
    ``mask`` [..., k] is True for real entries (padding must come last in a row).
    With k = 1 and the true word first this is cross-entropy.
    """
    return plackett_luce_terms(logits, ranks, partitions, mask).sum(-1)


def plackett_luce_terms(logits: Tensor, ranks: Tensor, partitions: Tensor | None = None,
                        mask: Tensor | None = None) -> Tensor:
    """The cost of each entry [..., k] of :func:`plackett_luce` (0 for padding).

    Entry j of partition P costs ``log(sum of exp(logits) over every word not placed in a
    partition before P) - logits[ranks[j]]``. The sums are formed without subtraction:
    the words outside the ranking once (one pass over the vocabulary), plus suffix sums
    over the ranked entries, so a confident model cannot make them cancel. With the true
    word first, entry 0's cost is exactly its cross-entropy.
    """
    logits = _wide(logits)  # under autocast too: the sums need float32's range
    if mask is None:
        mask = torch.ones_like(ranks, dtype=torch.bool)
    ranks = torch.where(mask, ranks, torch.zeros_like(ranks))
    ranked, outside = _RankedAndOutside.apply(logits, ranks, mask)  # [..., k], [..., 1]
    # When the ranking names every word the outside sum is empty; a finite floor keeps
    # the padding's gradients free of NaN.
    outside = outside.clamp_min(torch.finfo(logits.dtype).min)
    # later[j] = log of the sum over entries j..k-1 (a suffix sum, reversed cumsum).
    later = ranked.masked_fill(~mask, float("-inf")).flip(-1).logcumsumexp(-1).flip(-1)
    # Every entry of a partition shares the denominator of the partition's first entry.
    starts = _partition_starts(ranks, partitions)
    denominator = torch.logaddexp(outside, later.gather(-1, starts))
    return (denominator - ranked) * mask


class _RankedAndOutside(torch.autograd.Function):
    """The ranked words' logits, and the log of the sum of exp(logits) over the words the
    ranking does not name.

    One pass over the vocabulary forward and one backward, like cross-entropy: exp(logits
    - max) over the words outside the ranking (the ranked ones zeroed) is both the sum's
    terms and, normalised, its gradient; the ranked logits' gradients are then added in
    place at their k words. The max is the outside words' own: a ranked word far above
    them (by more than float32's ~87 nats) would otherwise underflow the whole sum to 0."""

    @staticmethod
    def forward(ctx, logits: Tensor, ranks: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        # The ranked words set to -inf; amin with +inf leaves padding's target alone even
        # when a real entry names the same word (scatter order among duplicates is unspecified).
        fill = torch.where(mask, float("-inf"), float("inf")).to(logits.dtype)
        outside = logits.scatter_reduce(-1, ranks, fill, reduce="amin")
        top = outside.amax(-1, keepdim=True)
        top = torch.where(torch.isfinite(top), top, 0.0)  # every word ranked: an empty sum
        terms = outside.sub_(top).exp_()
        total = terms.sum(-1, keepdim=True)
        ctx.save_for_backward(terms, total, ranks)
        return logits.gather(-1, ranks), total.log() + top

    @staticmethod
    def backward(ctx, grad_ranked: Tensor, grad_outside: Tensor):
        terms, total, ranks = ctx.saved_tensors
        grad = terms * (grad_outside / total.clamp_min(torch.finfo(total.dtype).tiny))
        return grad.scatter_add_(-1, ranks, grad_ranked), None, None


def _partition_starts(ranks: Tensor, partitions: Tensor | None) -> Tensor:
    """Index of the first entry of each entry's partition (runs of equal ids)."""
    index = torch.arange(ranks.shape[-1], device=ranks.device).expand_as(ranks)
    if partitions is None:
        return index
    new = torch.ones_like(ranks, dtype=torch.bool)
    new[..., 1:] = partitions[..., 1:] != partitions[..., :-1]
    return torch.where(new, index, torch.zeros_like(index)).cummax(-1).values


KL_TAILS = ("uniform", "renormalise", "full")  # full: the teacher's whole distribution (kl_full)


def kl_topk(logits: Tensor, ranks: Tensor, teacher_logprobs: Tensor, temperature: float = 1.0,
            mask: Tensor | None = None, tail: str = "uniform") -> Tensor:
    """KL(teacher || student) from a teacher known only through its top-k.

    The teacher gives probability ``exp(teacher_logprobs[j])`` to word ``ranks[j]``. What
    its top-k leaves is, by ``tail``: ``uniform``, spread over the other words of the
    vocabulary evenly (a label smoothing whose amount is the teacher's leftover at each
    position); ``renormalise``, given to nobody: the top-k is renormalised to sum to 1.
    With ``temperature`` T both distributions are softened (the teacher's renormalised
    ``p ** (1 / T)``, the student's ``softmax(logits / T)``) and the KL is scaled by T**2,
    as in Hinton et al.'s distillation. One pass over the vocabulary per position.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    if tail not in ("uniform", "renormalise"):
        raise ValueError(f"tail must be uniform or renormalise (full: kl_full), not {tail!r}")
    if mask is None:
        mask = torch.ones_like(ranks, dtype=torch.bool)
    ranks = torch.where(mask, ranks, torch.zeros_like(ranks))
    log_q = (_wide(logits) / temperature).log_softmax(-1)
    top_log_q = log_q.gather(-1, ranks)
    teacher = teacher_logprobs.to(log_q.dtype).masked_fill(~mask, float("-inf"))
    n_rest = (logits.shape[-1] - mask.sum(-1)).to(log_q.dtype)
    # Per-word log-probability of the words outside the top-k, before tempering. The
    # leftover is a difference of near-equal numbers, so it is taken in float64.
    left = (1 - teacher.double().exp().sum(-1)).clamp_min(0).to(log_q.dtype)
    rest = torch.where(n_rest > 0, left.log() - n_rest.clamp_min(1).log(), float("-inf"))
    if tail == "renormalise":
        rest = torch.full_like(rest, float("-inf"))
    # Temper and renormalise the teacher: top-k entries, then the n_rest equal others.
    top, rest = teacher / temperature, rest / temperature
    norm = torch.logaddexp(top.logsumexp(-1), rest + n_rest.clamp_min(1).log())
    log_p_top, log_p_rest = top - norm[..., None], rest - norm
    top_terms = torch.where(mask, log_p_top.exp() * (log_p_top - top_log_q), 0).sum(-1)
    rest_log_q = log_q.sum(-1) - (top_log_q * mask).sum(-1)  # sum of log q over the other words
    rest_terms = torch.where(log_p_rest > float("-inf"),
                             log_p_rest.exp() * (n_rest * log_p_rest - rest_log_q), 0)
    return (top_terms + rest_terms) * temperature**2


def kl_full(logits: Tensor, teacher_logprobs: Tensor) -> Tensor:
    """KL(teacher || student) from the teacher's whole natural-log distribution over the
    vocabulary [..., V] (an N-gram model's, under its backoff: what KL distillation from an
    N-gram model means)."""
    log_q = _wide(logits).log_softmax(-1)
    log_p = teacher_logprobs.to(log_q.dtype)
    return torch.where(log_p > float("-inf"), log_p.exp() * (log_p - log_q), 0).sum(-1)


# ---- the objectives of a run, by name ---------------------------------------------------------

TEACHER_SMOOTHING = "teacher"  # smoothing by the teacher's leftover mass at each position


@dataclass
class Terms:
    """How an objective weighs its parts: the teacher's term (``weight``), label smoothing
    of the cross-entropy term (a weight, one per position, or :data:`TEACHER_SMOOTHING`),
    and kl's tail."""

    weight: float
    smoothing: float | str = 0.0
    kl_tail: str = "uniform"


Objective = Callable[[Tensor, Tensor, "TeacherRows | None", Terms], tuple[Tensor, Tensor]]


def cross_entropy(logits: Tensor, targets: Tensor, teacher: TeacherRows | None, terms: Terms) -> tuple[Tensor, Tensor]:
    """``ce``: cross-entropy alone."""
    ce = _cross_entropy(logits, targets)
    return ce, ce


def label_smoothing(logits: Tensor, targets: Tensor, teacher: TeacherRows | None,
                    terms: Terms) -> tuple[Tensor, Tensor]:
    """``ls``: cross-entropy label-smoothed by ``terms.weight``."""
    ce = _cross_entropy(logits, targets)
    return smoothed(ce, logits, targets, terms.weight), ce


def rank(logits: Tensor, targets: Tensor, teacher: TeacherRows, terms: Terms) -> tuple[Tensor, Tensor]:
    """``rank``: cross-entropy (smoothed) plus ``weight`` x the Plackett-Luce terms of the
    teacher's entries after the true word (weight 1: the plain PL loss)."""
    ce, others = _true_word_and_others(logits, targets, teacher)
    return smoothed(ce, logits, targets, _smoothing(terms, teacher)) + terms.weight * others, ce


def paper_pl(logits: Tensor, targets: Tensor, teacher: TeacherRows, terms: Terms) -> tuple[Tensor, Tensor]:
    """``pl``: the paper's objective, the Plackett-Luce terms of every entry (the true
    word's, its cross-entropy, first) averaged over the row's real entries; ``weight``
    scales the entries after the true word."""
    loss, ce = rank(logits, targets, teacher, terms)
    return loss / teacher.mask.sum(-1), ce


def kl(logits: Tensor, targets: Tensor, teacher: TeacherRows, terms: Terms) -> tuple[Tensor, Tensor]:
    """``kl``: ``(1 - weight) x`` cross-entropy (smoothed) ``+ weight x`` KL(teacher || student),
    the teacher known by its top-k and ``terms.kl_tail``, or whole (``full``)."""
    ce = _cross_entropy(logits, targets)
    divergence = (kl_full(logits, teacher.dense) if terms.kl_tail == "full" else
                  kl_topk(logits, teacher.ranks, teacher.logprobs, 1.0, teacher.mask, terms.kl_tail))
    smooth = smoothed(ce, logits, targets, _smoothing(terms, teacher))
    return (1 - terms.weight) * smooth + terms.weight * divergence, ce


OBJECTIVES: dict[str, Objective] = {"ce": cross_entropy, "ls": label_smoothing, "rank": rank, "pl": paper_pl,
                                    "kl": kl}


def objective(config, logits: Tensor, targets: Tensor, teacher: TeacherRows | None,
              weight: float | None = None) -> tuple[Tensor, Tensor]:
    """(loss to minimise, cross-entropy) per target token of the run ``config`` (anything
    with ``loss``, ``weight``, ``smoothing`` and ``kl_tail``), with the teacher's term at
    ``weight`` (default ``config.weight``; a weight schedule gives another)."""
    terms = Terms(config.weight if weight is None else weight, config.smoothing, config.kl_tail)
    return OBJECTIVES[config.loss](logits, targets, teacher, terms)


def smoothed(ce: Tensor, logits: Tensor, targets: Tensor, smoothing: float | Tensor) -> Tensor:
    """Cross-entropy with uniform label smoothing as in F.cross_entropy: ``smoothing / V``
    on every word, the target included (``smoothing``: one weight, or one per position).
    The mean log-probability comes from the cross-entropy already computed (log Z = ce +
    the target's logit): no second softmax."""
    if isinstance(smoothing, (int, float)) and not smoothing:
        return ce
    logits = _wide(logits)
    mean_logp = logits.mean(-1) - (ce + logits.gather(-1, targets[..., None])[..., 0])
    return (1 - smoothing) * ce - smoothing * mean_logp


def leftover_mass(teacher: TeacherRows) -> Tensor:
    """The teacher's probability outside the real entries of each row [...]: what kl's
    uniform tail spreads over the other words. The sum is taken in float64, as kl_topk does."""
    inside = torch.where(teacher.mask, teacher.logprobs.double().exp(), 0).sum(-1)
    return (1 - inside).clamp(0, 1).to(_wide(teacher.logprobs).dtype)


def _smoothing(terms: Terms, teacher: TeacherRows) -> float | Tensor:
    return leftover_mass(teacher) if terms.smoothing == TEACHER_SMOOTHING else terms.smoothing


def _cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    logits = _wide(logits)
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none").view(targets.shape)


def _true_word_and_others(logits: Tensor, targets: Tensor, teacher: TeacherRows) -> tuple[Tensor, Tensor]:
    """(cross-entropy, sum of the Plackett-Luce terms of the entries after the true word):
    when the rows put the true word first its term is the cross-entropy, so one pass gives
    both; otherwise every entry is the teacher's and the cross-entropy is taken apart."""
    terms = plackett_luce_terms(logits, teacher.ranks, teacher.partitions, teacher.mask)
    if teacher.gt_first:
        return terms[..., 0], terms[..., 1:].sum(-1)
    return _cross_entropy(logits, targets), terms.sum(-1)
