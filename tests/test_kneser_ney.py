"""Kneser-Ney estimation (ngram_teacher.kneser_ney) against a hand-worked model, the naive
reference of reference_kn.py, the laws of probability, and KenLM's own query code.

``bench/compare_lmplz.py`` checks the same estimator against KenLM's lmplz binary.
"""
from __future__ import annotations

import math
import os
import random
import shutil
import warnings

import kenlm
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import head_lines
from corpora import NgteachError
from ngram_teacher import NgramModel, build_model, count_orders
from ngram_teacher.model import CountTables
from ngram_teacher.arpa import write_arpa
from ngram_teacher.kneser_ney import DiscountFallbackWarning, estimate_kneser_ney, kneser_ney
from reference import tokenize_file
from reference_kn import BOS, UNK, estimate, log10_prob, score_sentence, sentences_of

FALLBACK = (0.5, 1.0, 1.5)
CLOSE = 1e-5  # float32 log10 values vs the reference's float64


def entries_of(tables) -> list[dict]:
    """ArpaTables as reference_kn's entries: per order, n-gram (words) -> (log10 p, log10 b)."""
    entries = []
    for order in tables.orders:
        words = [tuple(tables.words[i] for i in row) for row in order.ngrams.tolist()]
        backoffs = [None] * len(words) if order.log10_backoff is None else order.log10_backoff.tolist()
        assert len(set(words)) == len(words), "each n-gram once"
        entries.append(dict(zip(words, zip(order.log10_prob.tolist(), backoffs))))
    return entries


def assert_same_model(ours: list[dict], expected: list[dict], tolerance: float = CLOSE) -> None:
    assert len(ours) == len(expected)
    for m, (a, b) in enumerate(zip(ours, expected), start=1):
        assert a.keys() == b.keys(), f"order {m}: n-grams differ, e.g. {sorted(a.keys() ^ b.keys())[:5]}"
        for g, (p, backoff) in b.items():
            assert a[g][0] == pytest.approx(p, abs=tolerance), (g, "prob")
            if backoff is None:
                assert a[g][1] is None, g
            else:
                assert a[g][1] == pytest.approx(backoff, abs=tolerance), (g, "backoff")


def estimate_words(token_words: list[str], vocab: list[str], order: int, fallback=FALLBACK, tables_order=None):
    """kneser_ney on a list of token strings (``<eos>`` ending lines) with the given vocabulary;
    given ``tables_order``, from the stream's count tables of that order too (as a model has)."""
    ids = {w: i for i, w in enumerate(vocab)}
    tokens = np.array([ids[w] for w in token_words], np.uint32)
    tables = None if tables_order is None else CountTables(list(count_orders(tokens, len(vocab), tables_order)),
                                                           len(vocab))
    return kneser_ney(tokens, vocab, ids["<eos>"], ids[UNK], order, discount_fallback=fallback, tables=tables)


@pytest.fixture
def wt2_model(tmp_path_factory, wt2_valid):
    """A model directory of the first 6,000 tokens of WikiText-2 valid, and its tokens."""
    folder = tmp_path_factory.mktemp("kn")
    text = folder / "slice.txt"
    text.write_text(head_lines(wt2_valid, 6000), encoding="utf-8")
    return NgramModel(build_model(text, folder / "model", order=4)), tokenize_file(text)


# ---- a model worked by hand ------------------------------------------------------------------

def test_hand_worked_bigram_model():
    # "<s> a b </s>" and "<s> b </s>". Unigram adjusted counts: a 1 (<s> before it), b 2
    # (a, <s>), </s> 1 (b), <s> 0, <unk> 0; every order lacks counts of 3, so the fallback
    # D = 0.5, 1, 1.5 is used. Unigrams: total 4, freed 0.5 + 1 + 0.5 = 2, gamma 1/2,
    # uniform 1/4 over a, b, </s>, <unk>: p(a) = 0.5/4 + 1/8 = 1/4, p(b) = 1/4 + 1/8,
    # p(</s>) = 1/4, p(<unk>) = 1/8. Bigrams: context <s> has a, b (total 2, gamma 1/2):
    # p(a|<s>) = 1/4 + p(a)/2 = 3/8, p(b|<s>) = 1/4 + 3/16; p(b|a) = 1/2 + 3/16;
    # p(</s>|b) = (2 - 1)/2 + 1/8. Every context's backoff is gamma = 1/2.
    with pytest.warns(DiscountFallbackWarning):
        tables = estimate_words("a b <eos> b <eos>".split(), [UNK, "<eos>", "b", "a"], order=2)
    half = math.log10(0.5)
    expected = [
        {(UNK,): (math.log10(1 / 8), 0.0), (BOS,): (0.0, half), ("</s>",): (math.log10(1 / 4), 0.0),
         ("a",): (math.log10(1 / 4), half), ("b",): (math.log10(3 / 8), half)},
        {(BOS, "a"): (math.log10(3 / 8), None), (BOS, "b"): (math.log10(7 / 16), None),
         ("a", "b"): (math.log10(11 / 16), None), ("b", "</s>"): (math.log10(5 / 8), None)},
    ]
    assert_same_model(entries_of(tables), expected)
    assert tables.words[:3] == [UNK, BOS, "</s>"]
    assert [o.ngrams.dtype for o in tables.orders] == [np.int32, np.int32]
    assert [o.log10_prob.dtype for o in tables.orders] == [np.float32, np.float32]
    assert tables.orders[0].log10_backoff.dtype == np.float32 and tables.orders[1].log10_backoff is None


# ---- against the naive reference -------------------------------------------------------------

WORDS = ["a", "b", "c", "d", "e", UNK]


@st.composite
def corpora(draw):
    """(token words with <eos> per line, a shuffled vocabulary with some unused words, order)."""
    lines = draw(st.lists(st.lists(st.sampled_from(WORDS), max_size=9), min_size=1, max_size=12))
    tokens = [w for line in lines for w in line + ["<eos>"]]
    vocab = draw(st.permutations(WORDS + ["<eos>", "unused1", "unused2"]))
    return tokens, list(vocab), draw(st.integers(1, 5))


@pytest.mark.usefixtures("counting")
@pytest.mark.parametrize("tables_above", [None, 0, 1])  # the stream alone; its count tables, of the order or above
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(corpora())
# D1 comes out 0 for the bigrams (a valid discount, as in lmplz): the context "c" frees no
# mass, so its backoff is log10(0) = -inf
@example(("b <eos> b a a b a c a c b <eos> b a b c a b a c b <eos>".split(), WORDS + ["<eos>"], 2))
def test_matches_reference_on_generated_corpora(tables_above, corpus):
    tokens, vocab, order = corpus
    expected, expected_fallbacks = estimate(sentences_of(tokens), order, FALLBACK)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tables = estimate_words(tokens, vocab, order, tables_order=None if tables_above is None else order + tables_above)
    assert_same_model(entries_of(tables), expected)
    warned = [str(w.message) for w in caught if w.category is DiscountFallbackWarning]
    assert [m for m in range(1, order + 1) if any(f"the {m}-grams" in w for w in warned)] == expected_fallbacks


@pytest.mark.usefixtures("counting")
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(corpora(), st.lists(st.integers(0, 3), min_size=1, max_size=4).map(sorted))
def test_pruned_models_match_the_reference(corpus, prune):
    tokens, vocab, order = corpus
    prune = prune[:order]
    expected, _ = estimate(sentences_of(tokens), order, FALLBACK, prune)
    ids = {w: i for i, w in enumerate(vocab)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiscountFallbackWarning)
        tables = kneser_ney(np.array([ids[w] for w in tokens], np.uint32), vocab, ids["<eos>"], ids[UNK], order,
                            FALLBACK, prune=prune)
    assert_same_model(entries_of(tables), expected)


def test_pruning_real_text_keeps_a_closed_model_that_kenlm_loads(wt2_model, tmp_path):
    model, token_words = wt2_model
    tables = estimate_kneser_ney(model, 3, prune=[0, 1, 2])
    assert_same_model(entries_of(tables), estimate(sentences_of(token_words), 3, prune=[0, 1, 2])[0])
    full = estimate_kneser_ney(model, 3)
    assert [len(o.ngrams) for o in tables.orders] < [len(o.ngrams) for o in full.orders]
    write_arpa(tables, tmp_path / "pruned.arpa")
    lm = kenlm.Model(str(tmp_path / "pruned.arpa"))  # KenLM refuses a model missing a context or suffix
    assert lm.order == 3 and math.isfinite(lm.score("the game was released", bos=True, eos=True))
    for bad, says in (([0, 2, 1], "non-decreasing"), ([0, 1, 1, 1], "orders 1 to 4, but the model has order 3")):
        with pytest.raises(NgteachError, match=says):
            estimate_kneser_ney(model, 3, prune=bad)


@pytest.mark.usefixtures("counting")
def test_matches_reference_on_real_text(wt2_model):
    model, token_words = wt2_model
    stages = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real text needs no fallback discounts
        tables = estimate_kneser_ney(model, progress=stages.append)
    expected, fallbacks = estimate(sentences_of(token_words), 4)
    assert fallbacks == []
    assert stages[0] == "count" and stages[-1] == "probabilities of the 4-grams"
    assert_same_model(entries_of(tables), expected)
    assert [len(o.ngrams) for o in tables.orders] == [len(e) for e in expected]


def test_lower_order_than_the_model(wt2_model):
    model, token_words = wt2_model
    expected, _ = estimate(sentences_of(token_words), 2)
    assert_same_model(entries_of(estimate_kneser_ney(model, order=2)), expected)


# ---- laws of probability ---------------------------------------------------------------------

@pytest.mark.parametrize("prune", [None, [0, 1, 1, 2]])
def test_every_context_sums_to_one(wt2_model, prune):
    model, _ = wt2_model
    entries = entries_of(estimate_kneser_ney(model, prune=prune))  # pruned n-grams' mass goes to the backoff
    vocabulary = [g[0] for g in entries[0] if g != (BOS,)]
    rng = random.Random(0)
    contexts = [(), (BOS,), ("</s>",), ("never", "seen", "words")]
    for m in (1, 2, 3):  # seen n-grams as contexts, and seen words in unseen combinations
        contexts += rng.sample(sorted(entries[m - 1]), 6)
        contexts += [tuple(rng.choice(vocabulary) for _ in range(m)) for _ in range(3)]
    for context in contexts:
        total = sum(10 ** log10_prob(entries, context, w) for w in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-5), context


def test_kenlm_scores_agree(wt2_model, wt2_test, tmp_path):
    model, _ = wt2_model
    tables = estimate_kneser_ney(model)
    write_arpa(tables, tmp_path / "model.arpa")
    lm = kenlm.Model(str(tmp_path / "model.arpa"))
    assert lm.order == 4
    entries = entries_of(tables)
    sentences = [line.split() for line in head_lines(wt2_test, 3000).splitlines()]
    sentences += [[], ["<unk>"], ["zebra", "quagga", "the"], ["the", "the", "the", "of"]]
    for words in sentences:
        sentence = " ".join(words)
        per_word = [p for p, _, _ in lm.full_scores(sentence, bos=True, eos=True)]
        history = [BOS] + [w if (w,) in entries[0] else UNK for w in words]
        assert per_word == pytest.approx([log10_prob(entries, tuple(history[:i + 1]), w)
                                          for i, w in enumerate(words + ["</s>"])], abs=1e-5), words
        # kenlm adds the word scores in float32: allow for that on the longest lines
        assert lm.score(sentence, bos=True, eos=True) == pytest.approx(
            score_sentence(entries, words), abs=1e-4, rel=1e-6), words


# ---- discounts that cannot be estimated -------------------------------------------------------

def test_bad_discounts_fail_without_fallback_and_warn_with_it():
    tokens = "a b c <eos> a b <eos> c c <eos>".split()
    vocab = [UNK, "<eos>", "a", "b", "c"]
    _, bad_orders = estimate(sentences_of(tokens), 3, FALLBACK)
    assert bad_orders, "the reference must need the fallback here"
    with pytest.raises(NgteachError, match=f"discounts of the {bad_orders[0]}-grams"):
        estimate_words(tokens, vocab, 3, fallback=None)
    with pytest.warns(DiscountFallbackWarning) as caught:
        estimate_words(tokens, vocab, 3, fallback=(0.4, 0.9, 1.2))
    assert len(caught) == len(bad_orders)
    assert all("D1=0.4 D2=0.9 D3+=1.2" in str(w.message) for w in caught)


@pytest.mark.parametrize("fallback", [(0.5, 1.0), (1.5, 1.0, 1.5), (0.5, 1.0, -1.0)])
def test_fallback_discounts_must_be_in_range(fallback):
    with pytest.raises(NgteachError, match="fallback discounts"):
        estimate_words("a <eos>".split(), [UNK, "<eos>", "a"], 2, fallback=fallback)


def test_the_stream_must_hold_whole_lines():
    vocab = [UNK, "<eos>", "a"]
    with pytest.raises(NgteachError, match="does not end with <eos>"):
        kneser_ney(np.array([2, 1, 2], np.uint32), vocab, 1, 0, 2)
    with pytest.raises(NgteachError, match="empty"):
        kneser_ney(np.array([], np.uint32), vocab, 1, 0, 2)


@pytest.mark.parametrize("at", [0, -2])  # the first line's start, the tail: read from the stream itself
def test_a_token_id_beyond_the_vocabulary_is_refused_not_read(wt2_model, tmp_path, at):
    model, _ = wt2_model
    copy = tmp_path / "model"
    shutil.copytree(model.directory, copy)
    tokens = np.load(copy / "tokens.npy")
    tokens[at] = len(model.vocab) + 100
    np.save(copy / "tokens.npy", tokens)
    with pytest.raises(NgteachError, match="beyond its vocabulary"):
        estimate_kneser_ney(NgramModel(copy))


def test_words_reserved_by_arpa_are_refused():
    with pytest.raises(NgteachError, match="</s>"):
        estimate_words("a </s> <eos>".split(), [UNK, "<eos>", "a", "</s>"], 2)


def test_arpa_prune_from_the_command_line(wt2_model, tmp_path):
    import subprocess
    import sys

    from ngram_teacher.arpa import read_arpa

    model, _ = wt2_model
    ngteach = [sys.executable, "-m", "ngteach", "arpa", "-m", str(model.directory), "--order", "3"]
    done = subprocess.run([*ngteach, "--prune", "0,1", "-o", str(tmp_path / "p.arpa")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_same_model(entries_of(read_arpa(tmp_path / "p.arpa")), entries_of(estimate_kneser_ney(model, 3, prune=[0, 1])),
                      1e-6)
    for bad, says in (("0,x", "--prune takes whole numbers"), ("2 1", "non-decreasing")):
        done = subprocess.run([*ngteach, "--prune", bad, "-o", str(tmp_path / "b.arpa")], capture_output=True, text=True)
        assert done.returncode == 1 and says in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "b.arpa").exists()


LMPLZ = os.environ.get("LMPLZ") or shutil.which("lmplz")


@pytest.mark.slow
@pytest.mark.skipif(LMPLZ is None, reason="no lmplz binary (put it on PATH or name it in LMPLZ)")
@pytest.mark.parametrize("options", [[], ["--prune", "0", "1", "2"], ["--prune", "1", "1", "2"],
                                     ["--prune", "0", "0", "1", "--order", "5"]])
def test_the_same_model_as_kenlms_lmplz(options):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / "compare_lmplz.py"
    done = subprocess.run([sys.executable, str(script), LMPLZ, "--lines", "1500", *options], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("agree"), done.stdout + done.stderr
