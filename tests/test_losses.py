"""plackett_luce against a plain loop over partitions, in float64."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from student.losses import kl_topk, plackett_luce, plackett_luce_terms


def loop_plackett_luce(logits: torch.Tensor, ranks: list[int], partitions: list[int] | None,
                       n_real: int) -> torch.Tensor:
    """The definition, one partition at a time: each entry of a partition costs the
    log-sum-exp over the words not placed in an earlier partition, minus its logit."""
    partitions = list(range(len(ranks))) if partitions is None else partitions
    placed: set[int] = set()
    total = logits.new_zeros(())
    j = 0
    while j < n_real:
        end = j
        while end < n_real and partitions[end] == partitions[j]:
            end += 1
        allowed = [w for w in range(logits.shape[-1]) if w not in placed]
        denominator = torch.logsumexp(logits[allowed], 0)
        for entry in range(j, end):
            total = total + denominator - logits[ranks[entry]]
        placed.update(ranks[j:end])
        j = end
    return total


@st.composite
def rankings(draw):
    vocab = draw(st.integers(2, 40))
    k = draw(st.integers(1, min(vocab, 12)))
    rows = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    ranks, partitions, lengths = [], [], []
    for _ in range(rows):
        ranks.append(draw(st.permutations(range(vocab)))[:k])
        runs = draw(st.lists(st.integers(1, 4), min_size=k, max_size=k))
        ids = [i for i, run in enumerate(runs) for _ in range(run)][:k]
        partitions.append(ids)
        lengths.append(draw(st.integers(1, k)))
    scale = draw(st.sampled_from([1.0, 10.0, 60.0]))
    return vocab, ranks, partitions, lengths, seed, scale


def _tensors(vocab, ranks, partitions, lengths):
    ranks_t = torch.tensor(ranks)
    parts_t = torch.tensor(partitions)
    mask = torch.arange(ranks_t.shape[1]) < torch.tensor(lengths)[:, None]
    # Padding ids are arbitrary: point them at word 0 to check they are ignored.
    ranks_t = torch.where(mask, ranks_t, torch.zeros_like(ranks_t))
    return ranks_t, parts_t, mask


@settings(max_examples=150, deadline=None)
@given(rankings(), st.booleans())
def test_values_and_gradients_match_the_loop(case, strict):
    vocab, ranks, partitions, lengths, seed, scale = case
    ranks_t, parts_t, mask = _tensors(vocab, ranks, partitions, lengths)
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(len(ranks), vocab, generator=generator) * scale).requires_grad_()
    got = plackett_luce(logits, ranks_t, None if strict else parts_t, mask)
    exact_logits = logits.detach().double().requires_grad_()
    expected = torch.stack([loop_plackett_luce(exact_logits[b], ranks[b], None if strict else partitions[b],
                                               lengths[b]) for b in range(len(ranks))])
    torch.testing.assert_close(got.double(), expected.detach(), rtol=1e-5, atol=1e-4 * scale)
    got_grad, = torch.autograd.grad(got.sum(), logits)
    expected_grad, = torch.autograd.grad(expected.sum(), exact_logits)
    assert torch.isfinite(got_grad).all()
    torch.testing.assert_close(got_grad.double(), expected_grad, rtol=1e-4, atol=1e-5)


def test_confident_model_does_not_cancel():
    """Once the ranked words hold nearly all the mass, Z - cumsum(exp) loses every digit
    in float32; the loss must still match the float64 definition."""
    vocab = 1000
    logits = torch.full((1, vocab), -20.0)
    logits[0, :5] = torch.tensor([40.0, 39.0, 38.0, 37.0, 36.0])
    ranks = torch.tensor([[0, 1, 2, 3, 4, 7]])
    got = plackett_luce(logits, ranks)
    expected = loop_plackett_luce(logits[0].double(), ranks[0].tolist(), None, 6)
    torch.testing.assert_close(got[0].double(), expected, rtol=1e-6, atol=1e-4)
    # The trap is real: the subtracting formula is far off (or infinite) on these logits.
    ranked = logits[0, ranks[0]]
    before = torch.cat([torch.zeros(1), torch.exp(ranked).cumsum(0)[:-1]])
    naive = (torch.log(torch.exp(logits[0]).sum() - before) - ranked).sum()
    assert not torch.isfinite(naive) or abs(naive.item() - expected.item()) > 1


def test_a_ranked_word_far_above_the_rest_does_not_empty_the_outside_sum():
    """Hand-worked: word 0 is 200 nats above every other word and ranked first; entry 2
    (word 1, logit 0) then costs log(e^0 + 3 e^5) - 0 over the words {1, 2, 3, 4} left,
    which holds no exp(logit - 200) that float32 could keep."""
    logits = torch.tensor([[200.0, 0.0, 5.0, 5.0, 5.0]], requires_grad=True)
    terms = plackett_luce_terms(logits, torch.tensor([[0, 1]]))
    expected = torch.tensor([[math.log1p(3 * math.exp(-195.0) + math.exp(-200.0)), math.log(1 + 3 * math.exp(5.0))]])
    torch.testing.assert_close(terms.double(), expected.double())
    grad, = torch.autograd.grad(terms.sum(), logits)
    # d/dl of entry 2's log-sum over {1..4}: softmax there, minus 1 at word 1; entry 1 adds ~0
    softmax = torch.tensor([1.0, math.exp(5.0), math.exp(5.0), math.exp(5.0)]) / (1 + 3 * math.exp(5.0))
    torch.testing.assert_close(grad[0, 1:], softmax - torch.tensor([1.0, 0, 0, 0]))


def test_k1_with_truth_first_is_cross_entropy():
    logits = torch.randn(3, 7, 50)
    truth = torch.randint(0, 50, (3, 7))
    got = plackett_luce(logits, truth[..., None])
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), truth.reshape(-1), reduction="none")
    torch.testing.assert_close(got.reshape(-1), expected)


def test_one_partition_shares_one_denominator():
    """Hand-worked: vocabulary {a, b, c} with logits log 1, log 2, log 3; ranking (b, c)
    as one partition costs 2 log 6 - log 2 - log 3; as two, log 6 - log 2 + log 4 - log 3."""
    logits = torch.log(torch.tensor([[1.0, 2.0, 3.0]]))
    ranks = torch.tensor([[1, 2]])
    one = plackett_luce(logits, ranks, torch.tensor([[5, 5]]))
    two = plackett_luce(logits, ranks)
    torch.testing.assert_close(one, torch.log(torch.tensor([36.0 / 6.0])))
    torch.testing.assert_close(two, torch.log(torch.tensor([6.0 / 2.0 * 4.0 / 3.0])))


def test_ranking_the_whole_vocabulary_with_padding_stays_finite():
    logits = torch.randn(2, 3, requires_grad=True)
    ranks = torch.tensor([[2, 0, 1, 0, 0], [1, 2, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    loss = plackett_luce(logits, ranks, None, mask)
    grad, = torch.autograd.grad(loss.sum(), logits)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    expected = loop_plackett_luce(logits[0].detach().double(), [2, 0, 1], None, 3)
    torch.testing.assert_close(loss[0].detach().double(), expected)


@pytest.mark.parametrize("partitioned", [False, True])
def test_bf16_autocast_matches_the_loop_on_the_same_logits(partitioned):
    """Under CPU bf16 autocast the logits come out in bf16; the loss is computed in float32
    and must equal the definition on those same logits, values and gradients."""
    torch.manual_seed(0)
    hidden, weight = torch.randn(6, 32), torch.randn(32, 200)
    ranks = torch.stack([torch.randperm(200)[:10] for _ in range(6)])
    parts = torch.tensor([[0, 1, 1, 1, 2, 2, 2, 2, 2, 2]] * 6) if partitioned else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = (hidden @ weight).detach().requires_grad_()
        loss = plackett_luce(logits, ranks, parts)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    got_grad, = torch.autograd.grad(loss.sum(), logits)

    exact_logits = logits.detach().double().requires_grad_()
    expected = torch.stack([loop_plackett_luce(exact_logits[b], ranks[b].tolist(),
                                               None if parts is None else parts[b].tolist(), 10)
                            for b in range(6)])
    torch.testing.assert_close(loss.double(), expected.detach(), rtol=1e-5, atol=1e-3)
    expected_grad, = torch.autograd.grad(expected.sum(), exact_logits)
    # the gradient reaches bf16 logits rounded to bf16: 8 bits of mantissa
    torch.testing.assert_close(got_grad.double(), expected_grad, rtol=1e-2, atol=1e-3)


def dense_teacher_kl(logits: torch.Tensor, ranks: list[int], teacher_logprobs: list[float],
                     temperature: float) -> torch.Tensor:
    """KL(p || q) with the teacher written out over the whole vocabulary: its top-k
    probabilities, the rest of its mass shared evenly by the other words."""
    vocab = logits.shape[-1]
    p = torch.zeros(vocab, dtype=torch.float64)
    p[ranks] = torch.tensor(teacher_logprobs, dtype=torch.float64).exp()
    others = [w for w in range(vocab) if w not in ranks]
    if others:
        p[others] = (1 - p[ranks].sum()).clamp_min(0) / len(others)
    p = p ** (1 / temperature)
    p = p / p.sum()
    log_q = torch.log_softmax(logits / temperature, -1)
    support = p > 0
    return (p[support] * (p[support].log() - log_q[support])).sum() * temperature**2


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 30), st.integers(0, 2**31 - 1), st.sampled_from([1.0, 2.0, 0.5]), st.booleans())
def test_kl_topk_matches_the_dense_teacher(vocab, seed, temperature, full_mass):
    generator = torch.Generator().manual_seed(seed)
    k = int(torch.randint(1, vocab + 1, (1,), generator=generator))
    rows = 3
    teacher = torch.softmax(torch.randn(rows, vocab, generator=generator, dtype=torch.float64) * 2, -1)
    ranks = torch.stack([torch.randperm(vocab, generator=generator)[:k] for _ in range(rows)])
    top = teacher.gather(-1, ranks)
    if full_mass:  # a teacher whose top-k holds all its mass
        top = top / top.sum(-1, keepdim=True)
    lengths = torch.randint(1, k + 1, (rows,), generator=generator)
    mask = torch.arange(k) < lengths[:, None]
    logits = torch.randn(rows, vocab, generator=generator).requires_grad_()
    teacher_logprobs = top.log().float()  # as a ranks file stores them
    got = kl_topk(logits, torch.where(mask, ranks, 0), teacher_logprobs, temperature, mask)
    exact_logits = logits.detach().double().requires_grad_()
    expected = torch.stack([dense_teacher_kl(exact_logits[b], ranks[b, :lengths[b]].tolist(),
                                             teacher_logprobs[b, :lengths[b]].tolist(), temperature)
                            for b in range(rows)])
    torch.testing.assert_close(got.double(), expected.detach(), rtol=1e-4, atol=1e-5)
    got_grad, = torch.autograd.grad(got.sum(), logits)
    expected_grad, = torch.autograd.grad(expected.sum(), exact_logits)
    torch.testing.assert_close(got_grad.double(), expected_grad, rtol=1e-4, atol=1e-5)


def test_kl_topk_is_zero_when_the_student_is_the_teacher():
    teacher = torch.softmax(torch.randn(4, 25), -1)
    ranks = teacher.argsort(-1, descending=True)[:, :25]
    loss = kl_topk(teacher.log(), ranks, teacher.gather(-1, ranks).log())
    torch.testing.assert_close(loss, torch.zeros(4), atol=1e-5, rtol=0)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 30), st.integers(0, 2**31 - 1), st.sampled_from([1.0, 2.0]))
def test_kl_topk_renormalised_matches_the_dense_teacher_without_a_tail(vocab, seed, temperature):
    generator = torch.Generator().manual_seed(seed)
    k = int(torch.randint(1, vocab + 1, (1,), generator=generator))
    teacher = torch.softmax(torch.randn(vocab, generator=generator, dtype=torch.float64) * 2, -1)
    ranks = torch.randperm(vocab, generator=generator)[:k]
    length = int(torch.randint(1, k + 1, (1,), generator=generator))
    mask = torch.arange(k) < length
    logits = torch.randn(vocab, generator=generator, dtype=torch.float64)
    top = teacher[ranks].log()
    got = kl_topk(logits.float(), torch.where(mask, ranks, 0), top.float(), temperature, mask, tail="renormalise")
    # the dense teacher: the real entries' probabilities renormalised, nothing anywhere else
    p = torch.zeros(vocab, dtype=torch.float64)
    p[ranks[:length]] = teacher[ranks[:length]] ** (1 / temperature)
    p = p / p.sum()
    q = torch.log_softmax(logits / temperature, -1)
    support = p > 0
    expected = (p[support] * (p[support].log() - q[support])).sum() * temperature**2
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="tail must be uniform or renormalise"):
        kl_topk(logits, ranks, top, tail="spread")


def test_float64_inputs_keep_their_precision_and_pass_gradcheck():
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 9, generator=generator, dtype=torch.float64, requires_grad=True)
    ranks = torch.tensor([[3, 1, 7], [0, 8, 2]])
    partitions = torch.tensor([[0, 1, 1], [0, 1, 2]])
    teacher = torch.log(torch.tensor([[0.5, 0.2, 0.1], [0.3, 0.3, 0.2]], dtype=torch.float64))
    assert plackett_luce(logits, ranks, partitions).dtype == torch.float64
    assert kl_topk(logits, ranks, teacher).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda x: plackett_luce(x, ranks, partitions), (logits,))
    assert torch.autograd.gradcheck(lambda x: kl_topk(x, ranks, teacher), (logits,))
    assert torch.autograd.gradcheck(lambda x: kl_topk(x, ranks, teacher, tail="renormalise"), (logits,))
    # narrower inputs are summed in float32
    assert plackett_luce(logits.detach().bfloat16(), ranks, partitions).dtype == torch.float32


def test_every_objective_is_found_by_name_with_one_signature():
    from student.data import TeacherRows
    from student.losses import OBJECTIVES, Terms

    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 11, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 11, (2, 3), generator=generator)
    ranks = torch.cat([targets[..., None], (targets[..., None] + torch.arange(1, 4)) % 11], -1)
    teacher = TeacherRows(ranks, None, torch.ones_like(ranks, dtype=torch.bool),
                          torch.full(ranks.shape, -2.0, dtype=torch.float64), True)
    plain = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    assert set(OBJECTIVES) == {"ce", "ls", "rank", "pl", "kl"}
    for name, loss in OBJECTIVES.items():
        value, ce = loss(logits, targets, teacher, Terms(weight=0.0))
        assert value.shape == ce.shape == targets.shape and value.dtype == torch.float64
        torch.testing.assert_close(ce, plain)
        # at weight 0 (and no smoothing) each is cross-entropy, pl averaged over its 4 entries
        torch.testing.assert_close(value, plain / 4 if name == "pl" else plain)


def test_kl_full_is_the_kl_of_the_whole_distributions_by_a_loop():
    from student.losses import kl_full

    torch.manual_seed(3)
    logits = torch.randn(2, 3, 7, dtype=torch.float64)
    teacher = torch.randn(2, 3, 7, dtype=torch.float64).log_softmax(-1)
    teacher[0, 1, 2] = float("-inf")  # a word the teacher gives nothing: no term
    teacher[0, 1] = teacher[0, 1].log_softmax(-1)
    got = kl_full(logits, teacher)
    for b in range(2):
        for t in range(3):
            q = torch.softmax(logits[b, t], -1).tolist()
            p = teacher[b, t].exp().tolist()
            expected = sum(pv * (math.log(pv) - math.log(qv)) for pv, qv in zip(p, q) if pv > 0)
            assert got[b, t].item() == pytest.approx(expected, rel=1e-12)
