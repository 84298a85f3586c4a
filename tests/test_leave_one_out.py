"""The leave-one-out Kneser-Ney teacher against a direct recomputation: for each position,
the naive estimator of reference_kn.py run again on the corpus without that position's
n-grams (the whole corpus's discounts and vocabulary kept), scoring every word."""
from __future__ import annotations

import math

import numpy as np
import pytest

from corpora import NgteachError
from ngram_teacher import NgramModel, RankFile, build_model, load_teacher, write_ranks
from ngram_teacher.arpa_rank import ArpaTeacher
from ngram_teacher.kneser_ney import LMPLZ_FALLBACK, estimate_kneser_ney
from ngram_teacher.leave_one_out import LeaveOneOutTeacher
from reference_kn import BOS, EOS, adjusted_counts, discounts, estimate, log10_prob, own_ngrams, raw_counts

ORDER = 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, wt2_valid_module):
    from conftest import head_lines

    folder = tmp_path_factory.mktemp("loo")
    (folder / "c.txt").write_text(head_lines(wt2_valid_module, 700), encoding="utf-8")
    model = NgramModel(build_model(folder / "c.txt", folder / "m", order=ORDER))
    words = [model.vocab.tokens[t] for t in model.tokens().tolist()]
    sentences, sentence = [], [BOS]
    for w in words:
        sentence.append(EOS if w == "<eos>" else w)
        if w == "<eos>":
            sentences.append(sentence)
            sentence = [BOS]
    return model, sentences


@pytest.fixture(scope="module")
def wt2_valid_module():
    from conftest import WT2_VALID, shared_corpus

    return shared_corpus(WT2_VALID)


def reference_distribution(model, sentences, s: int, i: int) -> np.ndarray:
    """p(v | the words before word i of sentence s) for every vocabulary word, by the naive
    estimator of the corpus without the n-grams ending at that word."""
    whole = adjusted_counts(raw_counts(sentences, ORDER))
    fixed = [discounts(a, LMPLZ_FALLBACK)[0] for a in whole]
    entries, _ = estimate(sentences, ORDER, remove=own_ngrams(sentences[s], i, ORDER), fixed_discounts=fixed)
    context = tuple(sentences[s][max(i - ORDER + 1, 0):i])
    tokens = model.vocab.tokens
    return np.array([10 ** log10_prob(entries, context, EOS if t == "<eos>" else t) for t in tokens])


def test_each_row_is_the_model_of_the_corpus_without_its_position(corpus):
    model, sentences = corpus
    teacher = LeaveOneOutTeacher(model, discount_fallback=LMPLZ_FALLBACK)
    places = [(s, i) for s, sentence in enumerate(sentences) for i in range(1, len(sentence))]
    rng = np.random.default_rng(0)
    picked = sorted(rng.choice(len(places), 25, replace=False).tolist()) + [0, 1, len(places) - 1]
    probs, _, _ = teacher.distribution(np.array(picked))
    for row, p in enumerate(picked):
        expected = reference_distribution(model, sentences, *places[p])
        np.testing.assert_allclose(probs[row], expected, rtol=1e-9, atol=1e-15)
        assert probs[row].sum() == pytest.approx(1.0, abs=1e-9)


def test_ranks_are_its_best_words_and_the_true_word_loses_its_self_echo(corpus, tmp_path):
    model, sentences = corpus
    teacher = load_teacher(f"kn-loo:{model.directory}", model, 6)
    write_ranks(teacher, model.tokens(), tmp_path / "r.bin", 6, with_scores=True)
    ranks = RankFile(tmp_path / "r.bin")
    assert ranks.header["teacher"]["kind"] == "kneser-ney-leave-one-out"
    assert ranks.header["teacher"]["partition"] == "strict"
    probs, _, _ = teacher.distribution(np.arange(len(model.tokens())))
    for row in (3, 40, 222, len(probs) - 1):
        truth = int(model.tokens()[row])
        others = sorted((v for v in range(len(probs[row])) if v != truth),
                        key=lambda v: (-np.float32(math.log(probs[row, v])), v))[:5]
        assert ranks.ids[row].tolist() == [truth] + others
        np.testing.assert_allclose(ranks.scores[row], np.log(probs[row, ranks.ids[row]]), rtol=1e-6)
    # without its own occurrence, the true word is almost always less probable: no self-echo
    arpa = ArpaTeacher(estimate_kneser_ney(model, ORDER, LMPLZ_FALLBACK), model.vocab, 6)
    with_it = arpa.word_logprobs(model.tokens(), np.arange(len(probs)), model.tokens()[:, None].astype(np.int64))[:, 0]
    without = np.asarray(ranks.scores[:, 0])
    assert (without < with_it).mean() > 0.9 and (with_it - without).mean() > 1.0
    with pytest.raises(NgteachError, match="ranks its own corpus"):
        teacher.rank_runs(model.tokens()[:10], [(0, 10)], np.empty((10, 6), np.uint32),
                          np.empty((10, 6), np.uint8), None, True, 99)
